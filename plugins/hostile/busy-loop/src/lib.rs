//! busy-loop: apply spins forever without yielding, blocking or allocating.
//! The host must stop it at its time limit (epoch interruption: the host meters no fuel) and report a timeout.
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
    let mut spins: u64 = 0;
    loop {
        // black_box: the optimizer may not prove the loop side-effect free and drop it.
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
}
