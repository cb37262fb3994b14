//! Arbitrary bytes, when they are UTF-8, as a `.pipeline` file: parsed,
//! checked and compiled with the default options (what `stackpipe graph`
//! does), and the diagnostics of a file that does not compile rendered as
//! the CLI prints them. Nothing may panic, loop or blow the stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stackpipe_dsl::{load, CompileOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(diags) = load("fuzz.pipeline", text, &CompileOptions::default()) {
        // Rendering reads every label's span out of the source: a span past
        // the end or inside a character would panic here.
        let _ = diags.render_plain(80);
    }
});
