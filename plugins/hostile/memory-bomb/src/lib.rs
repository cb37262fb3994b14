//! memory-bomb: apply keeps allocating 1 MiB buffers, writing every byte and keeping them all.
//! The host must stop it at the plugin's memory limit and report that limit (not crash itself).
#![allow(unused_variables)]

wit_bindgen::generate!({ path: "../../../wit", world: "provisioner-plugin" });
include!("../../common/provisioner.rs");

const MIB: usize = 1 << 20;

fn apply(
    ctx: Context,
    kind: String,
    prior: Option<Json>,
    desired: Json,
    cred: Option<Credential>,
) -> Result<Applied, String> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    let mut fill: u8 = 1;
    loop {
        let mut chunk = Vec::<u8>::with_capacity(MIB);
        // Touch every byte, so the pages are really used.
        chunk.resize(MIB, fill);
        fill = fill.wrapping_add(1) | 1;
        hoard.push(std::hint::black_box(chunk));
        std::hint::black_box(&hoard);
    }
}
