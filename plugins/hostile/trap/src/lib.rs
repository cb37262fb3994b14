//! trap: apply executes the wasm `unreachable` instruction.
//! The host must report a trap (wasm `unreachable`) for this call and carry on.
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
    core::arch::wasm32::unreachable()
}
