//! wrong-world: a well-behaved component of the POLICY world (it allows everything).
//! Loaded where a provisioner is expected, the host must refuse it with an error
//! naming the missing `stackpipe:plugin/provisioner` export, before any call.

wit_bindgen::generate!({ path: "../../../wit", world: "policy-plugin" });

use exports::stackpipe::plugin::policy::{Context, Guest, Json, Verdict};

struct WrongWorld;

impl Guest for WrongWorld {
    fn evaluate(_ctx: Context, _input: Json) -> Verdict {
        Verdict::Allow
    }
}

export!(WrongWorld);
