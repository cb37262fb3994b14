//! No input makes the language panic. Arbitrary text, token soup, and
//! mutations of the real examples go through parse, check, compile and
//! diagnostic rendering; every diagnostic span must lie inside the source, on
//! character boundaries.
//!
//! Briefly in CI (proptest's default case count); longer by hand:
//!   PROPTEST_CASES=50000 cargo test --release -p stackpipe-dsl --test fuzz

use proptest::prelude::*;
use stackpipe_dsl::{load, CompileOptions};

const EXAMPLES: [&str; 2] =
    [include_str!("../../examples/aws-env.pipeline"), include_str!("../../examples/local-files.pipeline")];

/// Pieces of the language, so random input reaches past the first token.
const TOKENS: &[&str] = &[
    "resource", "var", "plugin", "credentials", "flow", "environment", "output", "pipeline", "vpc", "aws",
    "\"aws.vpc\"", "\"t.step\"", "kind", "source", "\"provisioner\"", "\"credentials\"", "\"builtin:x\"", "config",
    "allow", "limits", "http", "fs", "env", "after", "approval", "vars", "depends_on", "gate", "\"after\"", "refresh",
    "preview", "pause_before_apply", "true", "false", "null", "=", "{", "}", "[", "]", "(", ")", ",", ".", ":", "0",
    "-3", "0.5", "1e400", "\"s\"", "\"${", "${", "}\"", "\\", "\"\\u{110000}\"", "\"\\q\"", "<<EOT\n", "<<-EOT\n",
    "\nEOT\n", "EOT", "#", "//", "/*", "*/", "\n", " ", "var.x", "env.name", "pipeline.name", "vpc.id", "a.b[0]",
    "join", "concat(", "cidrsubnet(\"10.0.0.0/16\", 8, 300)", "format(\"%d\", \"x\")", "length(", "string", "number",
    "list", "map", "any", "é", "🦀", "\u{FEFF}", "\r\n", "\t",
];

fn check_no_panic(src: &str) {
    for opts in [
        CompileOptions { require_values: true, ..Default::default() },
        CompileOptions { env: Some("prod".into()), vars: vec![("x".into(), "[1".into())], ..Default::default() },
    ] {
        if let Err(diags) = load("fuzz.pipeline", src, &opts) {
            for d in &diags.items {
                for l in &d.labels {
                    assert!(l.span.start <= l.span.end && l.span.end <= src.len(), "span {:?} outside source", l.span);
                    assert!(src.is_char_boundary(l.span.start) && src.is_char_boundary(l.span.end));
                }
            }
            let rendered = diags.render_plain(80);
            assert!(!rendered.is_empty());
        }
    }
}

/// A random edit of a valid file.
#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: &'static str },
    Duplicate { at: usize, len: usize },
    Truncate { at: usize },
}

fn apply(src: &str, m: &Mutation) -> String {
    let clamp = |i: usize| {
        let mut i = i % (src.len() + 1);
        while !src.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match *m {
        Mutation::Delete { at, len } => {
            let a = clamp(at);
            let b = clamp(a + len).max(a);
            format!("{}{}", &src[..a], &src[b..])
        }
        Mutation::Insert { at, token } => {
            let a = clamp(at);
            format!("{}{}{}", &src[..a], token, &src[a..])
        }
        Mutation::Duplicate { at, len } => {
            let a = clamp(at);
            let b = clamp(a + len).max(a);
            format!("{}{}", &src[..b], &src[a..])
        }
        Mutation::Truncate { at } => src[..clamp(at)].to_string(),
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (any::<usize>(), 1usize..200).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_text(src in ".{0,400}") {
        check_no_panic(&src);
    }

    #[test]
    fn token_soup(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..80)) {
        check_no_panic(&tokens.join(" "));
        check_no_panic(&tokens.concat());
    }

    #[test]
    fn mutated_examples(which in 0usize..2, edits in prop::collection::vec(mutation(), 1..6)) {
        let mut src = EXAMPLES[which].to_string();
        for m in &edits {
            src = apply(&src, m);
        }
        check_no_panic(&src);
    }
}

#[test]
fn the_examples_themselves_are_clean() {
    for src in EXAMPLES {
        assert!(load("x", src, &CompileOptions { require_values: true, ..Default::default() }).is_ok());
    }
}
