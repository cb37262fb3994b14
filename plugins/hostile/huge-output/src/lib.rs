//! huge-output: apply returns outputs that are one JSON string of exactly 64 MiB.
//! The host must refuse the oversized result (or stop the plugin at its memory limit)
//! and report it, rather than store it or run out of memory itself.
#![allow(unused_variables)]

wit_bindgen::generate!({ path: "../../../wit", world: "provisioner-plugin" });
include!("../../common/provisioner.rs");

const OUTPUT_BYTES: usize = 64 << 20;

fn apply(
    ctx: Context,
    kind: String,
    prior: Option<Json>,
    desired: Json,
    cred: Option<Credential>,
) -> Result<Applied, String> {
    let mut outputs = String::with_capacity(OUTPUT_BYTES);
    outputs.push('"');
    outputs.extend(std::iter::repeat('x').take(OUTPUT_BYTES - 2));
    outputs.push('"');
    Ok(Applied { state: "{}".to_string(), outputs })
}
