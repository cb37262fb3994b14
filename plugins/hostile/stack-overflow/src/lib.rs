//! stack-overflow: apply recurses without bound, each frame keeping a buffer alive.
//! The host must report the stack exhaustion (a trap) for this call and carry on.
#![allow(unused_variables)]

wit_bindgen::generate!({ path: "../../../wit", world: "provisioner-plugin" });
include!("../../common/provisioner.rs");

#[inline(never)]
#[allow(unconditional_recursion)] // that is the point
fn descend(depth: u64) -> u64 {
    // A buffer on the stack that black_box forces into memory, and work after
    // the call, so this is neither a tail call nor foldable into a loop.
    let frame = std::hint::black_box([depth; 8]);
    let below = descend(std::hint::black_box(depth + 1));
    below.wrapping_add(frame[(depth % 8) as usize])
}

fn apply(
    ctx: Context,
    kind: String,
    prior: Option<Json>,
    desired: Json,
    cred: Option<Credential>,
) -> Result<Applied, String> {
    let deepest = descend(0);
    Err(format!("recursion came back after {deepest}: it should have overflowed"))
}
