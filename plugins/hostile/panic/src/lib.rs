//! panic: apply panics. With panic = "abort" the message goes to the plugin's stderr
//! and the call ends in a trap: the host must report the trap (and may show the message).
#![allow(unused_variables)]

wit_bindgen::generate!({ path: "../../../wit", world: "provisioner-plugin" });
include!("../../common/provisioner.rs");

fn apply(
    ctx: Context,
    kind: String,
    prior: Option<Json>,
    desired: Json,
    cred: Option<Credential>,
) -> Result<Applied, String> {
    panic!("the plugin panicked on purpose")
}
