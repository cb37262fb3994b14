//! Arbitrary bytes, when they are UTF-8, as a `.pipeline` file: parsed,
//! checked and compiled with the default options (what `stackpipe graph`
//! does), and the diagnostics of a file that does not compile rendered as
//! the CLI prints them; and formatted (`stackpipe fmt`). Nothing may panic,
//! loop or blow the stack; the formatter may refuse a file only for its
//! syntax errors, and formatting what it formatted changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stackpipe_dsl::format::{format, FormatError};
use stackpipe_dsl::{load, CompileOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(diags) = load("fuzz.pipeline", text, &CompileOptions::default()) {
        // Rendering reads every label's span out of the source: a span past
        // the end or inside a character would panic here.
        let _ = diags.render_plain(80);
    }
    match format(text) {
        Ok(formatted) => match format(&formatted) {
            Ok(again) => assert_eq!(again, formatted, "formatting is not idempotent"),
            Err(e) => panic!("the formatted text does not format: {e:?}"),
        },
        Err(FormatError::Syntax(_)) => {}
        Err(e @ FormatError::Internal(_)) => panic!("{e}"),
    }
});
