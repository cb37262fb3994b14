//! sleep-forever: apply sleeps for an hour on a WASI monotonic-clock timer.
//! The host must stop the blocked call with its wall-time limit and report a timeout.
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
    std::thread::sleep(std::time::Duration::from_secs(3600));
    Err("woke up after sleeping an hour: the host's wall-time limit did not fire".to_string())
}
