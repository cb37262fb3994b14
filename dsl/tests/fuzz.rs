//! No input makes the language panic. Arbitrary text, token soup, and
//! mutations of the real examples go through parse, check, compile and
//! diagnostic rendering; every diagnostic span must lie inside the source, on
//! character boundaries.
//!
//! Briefly in CI (proptest's default case count); longer by hand:
//!   PROPTEST_CASES=50000 cargo test --release -p stackpipe-dsl --test fuzz

use proptest::prelude::*;
use stackpipe_dsl::parser::recognizer_agrees_with_pest;
use stackpipe_dsl::{load, CompileOptions};

mod support;
use support::generate::valid_file;

const EXAMPLES: [&str; 2] =
    [include_str!("../../examples/aws-env.pipeline"), include_str!("../../examples/local-files.pipeline")];

/// Pieces of the language, so random input reaches past the first token.
const TOKENS: &[&str] = &[
    "resource", "var", "plugin", "credentials", "flow", "environment", "output", "pipeline", "vpc", "aws",
    "\"aws.vpc\"", "\"t.step\"", "kind", "source", "\"provisioner\"", "\"credentials\"", "\"builtin:x\"", "config",
    "allow", "limits", "http", "fs", "env", "after", "approval", "vars", "depends_on", "gate", "\"after\"", "refresh",
    "preview", "pause_before_apply", "on_failure", "\"stop-all\"", "locked", "[\"preview\"]", "true", "false",
    "null", "=", "{", "}", "[", "]", "(", ")", ",", ".", ":", "0",
    "-3", "0.5", "1e400", "\"s\"", "\"${", "${", "}\"", "\\", "\"\\u{110000}\"", "\"\\q\"", "<<EOT\n", "<<-EOT\n",
    "\nEOT\n", "EOT", "#", "//", "/*", "*/", "\n", " ", "var.x", "env.name", "pipeline.name", "vpc.id", "a.b[0]",
    "join", "concat(", "cidrsubnet(\"10.0.0.0/16\", 8, 300)", "format(\"%d\", \"x\")", "length(", "string", "number",
    "list", "map", "any", "é", "🦀", "\u{FEFF}", "\r\n", "\t", "sensitive", "sensitivex", "var.secret",
    "service", "\"api\"", "repo", "build", "command", "artifact", "poll", "\"5m\"", "pull_requests", "webhook",
    "resolver", "commit_status", "token", "previews", "service.api.artifact.path", "service.api",
];

fn check_no_panic(src: &str) {
    // The fast recognizer and pest see the same language and build the same
    // trees; a difference is a bug even where nothing panics.
    if let Err(e) = recognizer_agrees_with_pest(src) {
        panic!("{e}\nsource: {src:?}");
    }
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

    /// Generated files that are in the language, with trivia of every kind
    /// between their tokens: both parsers accept them with the same trees.
    #[test]
    fn generated_files(seed in any::<u64>()) {
        let src = valid_file(seed);
        match recognizer_agrees_with_pest(&src) {
            Ok(accepted) => prop_assert!(accepted, "the generated file is not in the language: {:?}", src),
            Err(e) => panic!("{e}\nsource: {src:?}"),
        }
    }

    /// Generated files with a random edit: mostly out of the language, in
    /// every way an edit can take a file out of it.
    #[test]
    fn mutated_generated_files(seed in any::<u64>(), edits in prop::collection::vec(mutation(), 1..4)) {
        let mut src = valid_file(seed);
        for m in &edits {
            src = apply(&src, m);
        }
        check_no_panic(&src);
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

/// The recognizer and pest agree on every hand-written diagnostic case,
/// the examples, and a large generated file.
#[test]
fn recognizer_and_pest_agree_on_the_corpus() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/diagnostics");
    let mut files: Vec<_> = std::fs::read_dir(dir).expect("tests/diagnostics").flatten().map(|e| e.path()).collect();
    files.sort();
    assert!(files.len() >= 40, "{} cases", files.len());
    let mut sources: Vec<String> = files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect();
    sources.extend(EXAMPLES.iter().map(|s| s.to_string()));
    sources.push((0..300).map(valid_file).collect::<Vec<_>>().join("\n"));
    for src in &sources {
        if let Err(e) = recognizer_agrees_with_pest(src) {
            panic!("{e}\nsource: {src:?}");
        }
    }
}

#[test]
fn the_examples_themselves_are_clean() {
    for src in EXAMPLES {
        assert!(load("x", src, &CompileOptions { require_values: true, ..Default::default() }).is_ok());
    }
}

/// `sensitive` ends a var or an output, and is a plain name everywhere else:
/// both parsers accept the same forms with the same trees, and reject the
/// same near-misses.
#[test]
fn recognizer_and_pest_agree_on_sensitive() {
    let accepted = [
        "var db_password: string sensitive",
        "var api_key = \"dev-key\" sensitive",
        "var token: string = \"x\" sensitive",
        "var t sensitive",
        "var t sensitive\nvar u = 1",
        "var t = 1 # c\n  sensitive\n",
        "var t = 1 /* c */sensitive",
        "var t = [1, 2]sensitive",
        "var t = f(x)sensitive",
        "var t = <<EOT\nx\nEOT\nsensitive\n",
        "var sensitive sensitive",
        "var sensitive: string",
        "var t: sensitive",
        "var t = sensitive",
        "var t = sensitive sensitive",
        "output conn = db.url sensitive",
        "output conn = db.url[0] sensitive\noutput b = 1",
        "output conn = \"a-${var.p}\"\nsensitive",
        "output sensitive = sensitive.sensitive sensitive",
        "output x = a.b sensitive output y = c.d",
        "output x = a.b sensitive resource r \"t.step\" {}",
        "resource sensitive \"t.step\" { sensitive = 1 sensitive { sensitive = sensitive.id } }",
        "plugin p { config { sensitive = true } }",
        "var t = { sensitive = 1, \"sensitive\": sensitive }",
    ];
    for src in accepted {
        match recognizer_agrees_with_pest(src) {
            Ok(true) => {}
            Ok(false) => panic!("rejected by both, but it is in the language: {src:?}"),
            Err(e) => panic!("{e}\nsource: {src:?}"),
        }
    }
    let rejected = [
        "var t sensitivex",
        "var t sensitive_",
        "var t sensitive-x",
        "var t Sensitive",
        "var t sensitive sensitive",
        "var t = 1 sensitive sensitive",
        "var t sensitive: string",
        "var t sensitive = 1",
        "var t: string sensitive = 1",
        "var t = <<EOT\nx\nEOT sensitive\n",
        "output x = a.b sensitive = 1",
        "output x = a.b sensitive sensitive",
        "output x = a.b sensitivex",
        "output x sensitive = a.b",
        "output x = sensitive a.b",
        "output x = a.b sensitive.c",
        "output x = a.b sensitive [0]",
        "output sensitive",
        "sensitive",
        "resource r \"t.step\" {} sensitive",
        "resource r \"t.step\" { a = 1 sensitive }",
        "plugin p { sensitive }",
    ];
    for src in rejected {
        match recognizer_agrees_with_pest(src) {
            Ok(false) => {}
            Ok(true) => panic!("accepted by both, but it is not in the language: {src:?}"),
            Err(e) => panic!("{e}\nsource: {src:?}"),
        }
        // And the language does not panic on it.
        check_no_panic(src);
    }
}
