//! `stackpipe fmt` on generated files: formatting is idempotent, and the
//! formatted file means what the original meant (the same syntax tree, and
//! for files that compile, the same graph and values).
//!
//! Briefly in CI; longer by hand:
//!   PROPTEST_CASES=20000 cargo test --release -p stackpipe-dsl --test format

use proptest::prelude::*;
use stackpipe_dsl::format::{format, FormatError};
use stackpipe_dsl::{load, parser, CompileOptions};

mod support;
use support::generate::{compilable_file, valid_file};

/// `{:?}` of a value with every span taken out: what is left is what the
/// text means, not where it is.
fn without_spans(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug;
    while let Some(i) = rest.find("Span { start: ") {
        out.push_str(&rest[..i]);
        out.push_str("Span");
        rest = &rest[i..];
        rest = rest.find('}').map_or("", |j| &rest[j + 1..]);
    }
    out.push_str(rest);
    out
}

/// What `src` parses to, and the parse's diagnostics, without positions.
fn meaning(src: &str) -> (String, Vec<String>) {
    let (module, diags) = parser::parse(src);
    (
        without_spans(&format!("{module:?}")),
        diags
            .iter()
            .map(|d| format!("{:?}: {}", d.code, d.message))
            .collect(),
    )
}

fn check(src: &str) -> Result<(), TestCaseError> {
    let formatted = match format(src) {
        Ok(f) => f,
        Err(FormatError::Syntax(_)) => return Ok(()),
        Err(e) => return Err(TestCaseError::fail(format!("{e}\nsource: {src:?}"))),
    };
    let again = format(&formatted)
        .map_err(|e| TestCaseError::fail(format!("{e}\nformatted: {formatted:?}")))?;
    prop_assert_eq!(&again, &formatted, "not idempotent; source: {:?}", src);
    prop_assert_eq!(
        meaning(src),
        meaning(&formatted),
        "the meaning changed; source: {:?}",
        src
    );
    let opts = CompileOptions::default();
    match (
        load("a.pipeline", src, &opts),
        load("a.pipeline", &formatted, &opts),
    ) {
        (Ok(a), Ok(b)) => {
            prop_assert_eq!(
                without_spans(&format!("{a:?}")),
                without_spans(&format!("{b:?}")),
                "source: {:?}",
                src
            );
        }
        (Err(a), Err(b)) => {
            let messages = |d: &stackpipe_dsl::Diagnostics| {
                d.items
                    .iter()
                    .map(|d| d.message.clone())
                    .collect::<Vec<_>>()
            };
            prop_assert_eq!(messages(&a), messages(&b));
        }
        (a, b) => prop_assert!(
            false,
            "one compiles, the other not: {:?} / {:?}",
            a.is_ok(),
            b.is_ok()
        ),
    }
    Ok(())
}

proptest! {
    /// Files in the language with trivia of every kind between the tokens.
    #[test]
    fn generated_files(seed in any::<u64>()) {
        check(&valid_file(seed))?;
    }

    /// Files that compile: the graph and every value come out the same.
    #[test]
    fn compilable_files(seed in any::<u64>()) {
        let src = compilable_file(seed);
        prop_assert!(load("a.pipeline", &src, &CompileOptions::default()).is_ok(), "does not compile: {}", src);
        check(&src)?;
    }
}

/// Every fixture that parses is formatted (the others are about syntax
/// errors), and formatting it changes nothing else: CI's check that the
/// repository's pipelines are in `fmt`'s layout (the examples: the unit
/// tests in `src/format/tests.rs`).
#[test]
fn the_fixtures_that_parse_are_formatted() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/diagnostics");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("tests/diagnostics") {
        let path = entry.expect("a fixture").path();
        if path.extension().is_some_and(|e| e == "pipeline") {
            let src = std::fs::read_to_string(&path).expect("a fixture's text");
            check(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if let Ok(formatted) = format(&src) {
                assert!(
                    formatted == src,
                    "{} is not formatted: run `stackpipe fmt tests/diagnostics`",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 60, "only {checked} fixtures parse");
}
