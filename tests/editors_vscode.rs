//! The VS Code extension in `editors/vscode`, checked without Node: its JSON
//! files parse, its manifest points at files that exist, and its grammar
//! keeps up with the language's keywords. (`editors/vscode/test/grammar-check.js`
//! checks the highlighting itself, with the TextMate engine; it needs npm.)

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn extension_dir() -> PathBuf {
    root().join("editors/vscode")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(relative: &str) -> Value {
    let path = extension_dir().join(relative);
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn grammar() -> Value {
    json("syntaxes/pipeline.tmLanguage.json")
}

/// A file a manifest names, relative to the extension's directory.
fn existing(relative: &str) -> PathBuf {
    let path = extension_dir().join(relative.trim_start_matches("./"));
    assert!(
        path.is_file(),
        "{relative} names no file ({})",
        path.display()
    );
    path
}

/// VS Code ignores a manifest, a grammar or a language configuration that is
/// not valid JSON, and says so only in its own log.
#[test]
fn the_json_files_parse() {
    for file in [
        "package.json",
        "language-configuration.json",
        "syntaxes/pipeline.tmLanguage.json",
    ] {
        assert!(json(file).is_object(), "{file}: not a JSON object");
    }
    assert_eq!(grammar()["scopeName"], "source.pipeline");
}

/// The manifest ties `.pipeline` files to the language, the language to its
/// grammar and configuration, and names the code VS Code loads: a wrong
/// name or path there fails silently in the editor.
#[test]
fn the_manifest_declares_the_language_and_names_existing_files() {
    let package = json("package.json");
    let contributes = &package["contributes"];

    let language = contributes["languages"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["id"] == "pipeline"))
        .expect("contributes.languages has no `pipeline`");
    let extensions = language["extensions"]
        .as_array()
        .expect("languages[pipeline].extensions");
    assert!(
        extensions.iter().any(|e| e == ".pipeline"),
        "{extensions:?}"
    );
    existing(
        language["configuration"]
            .as_str()
            .expect("languages[pipeline].configuration"),
    );

    let grammar_entry = contributes["grammars"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["language"] == "pipeline"))
        .expect("contributes.grammars has no `pipeline`");
    assert_eq!(grammar_entry["scopeName"], grammar()["scopeName"]);
    existing(
        grammar_entry["path"]
            .as_str()
            .expect("grammars[pipeline].path"),
    );

    let activation = package["activationEvents"]
        .as_array()
        .expect("activationEvents");
    assert!(
        activation.iter().any(|e| e == "onLanguage:pipeline"),
        "{activation:?}"
    );
    existing(package["main"].as_str().expect("main"));

    let settings = &contributes["configuration"]["properties"];
    assert_eq!(settings["stackpipe.server.path"]["default"], "stackpipe");
    assert_eq!(settings["stackpipe.server.extraArgs"]["type"], "array");
}

/// The extension is only a client: what it runs must be the `lsp`
/// subcommand, with the settings the manifest declares.
#[test]
fn the_extension_starts_the_lsp_subcommand() {
    let main = json("package.json")["main"]
        .as_str()
        .expect("main")
        .to_owned();
    let source = read(&existing(&main));
    assert!(
        source.contains("['lsp'") || source.contains("[\"lsp\""),
        "{main} does not start `lsp` as the first argument"
    );
    assert!(
        source.contains("stackpipe.server"),
        "{main} does not read the stackpipe.server settings"
    );
    assert!(
        source.contains("stackpipe.restartServer"),
        "{main} does not register stackpipe.restartServer"
    );
}

/// The keywords of the language: every `kw_xxx = @{ "xxx" ... }` rule.
fn pest_keywords() -> BTreeSet<String> {
    let pest = read(&root().join("dsl/src/pipeline.pest"));
    pest.lines()
        .filter_map(|line| {
            let (name, rule) = line.split_once('=')?;
            if !name.trim().starts_with("kw_") {
                return None;
            }
            let literal = rule
                .trim_start()
                .strip_prefix("@{")?
                .trim_start()
                .strip_prefix('"')?;
            Some(literal.split('"').next()?.to_owned())
        })
        .collect()
}

/// Every `match` and `begin` regex under a JSON value.
fn regexes<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("match" | "begin", Value::String(s)) => out.push(s),
                    _ => regexes(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| regexes(v, out)),
        _ => {}
    }
}

/// Whether `regex` has `word` as a whole alternative: `(word|`, `|word)`...
fn has_alternative(regex: &str, word: &str) -> bool {
    regex.match_indices(word).any(|(at, _)| {
        let before = regex[..at].chars().next_back();
        let after = regex[at + word.len()..].chars().next();
        matches!(before, Some('(' | '|')) && matches!(after, Some(')' | '|'))
    })
}

/// A keyword added to the grammar in pipeline.pest must be added to the
/// editor's grammar too, or it shows as a plain name.
#[test]
fn the_grammar_highlights_every_keyword_of_the_language() {
    let keywords = pest_keywords();
    // Guards the reading of the pest file: it would pass on an empty set.
    for known in ["resource", "var", "output", "sensitive"] {
        assert!(
            keywords.contains(known),
            "no kw_{known} read from pipeline.pest: {keywords:?}"
        );
    }
    let grammar = grammar();
    let mut patterns = Vec::new();
    regexes(&grammar["repository"]["keywords"], &mut patterns);
    assert!(
        !patterns.is_empty(),
        "the grammar has no repository.keywords patterns"
    );
    let missing: Vec<_> = keywords
        .iter()
        .filter(|k| !patterns.iter().any(|p| has_alternative(p, k)))
        .collect();
    assert!(
        missing.is_empty(),
        "repository.keywords of the grammar lacks {missing:?}: {patterns:#?}"
    );
}

/// Every `include` under a JSON value.
fn includes<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("include", Value::String(s)) => out.push(s),
                    _ => includes(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| includes(v, out)),
        _ => {}
    }
}

/// An include of a missing rule is dropped without a word by VS Code, and
/// what it should highlight is silently plain; a rule nothing includes is
/// dead weight, likely a forgotten include.
#[test]
fn the_grammar_includes_resolve_and_every_rule_is_used() {
    let grammar = grammar();
    let repository = grammar["repository"].as_object().expect("repository");
    let mut found = Vec::new();
    includes(&grammar, &mut found);
    let mut used = BTreeSet::new();
    for include in found {
        match include.strip_prefix('#') {
            Some(name) => {
                assert!(
                    repository.contains_key(name),
                    "`include: {include}` names no repository rule"
                );
                used.insert(name);
            }
            None => assert!(
                include == "$self" || include == "$base",
                "`include: {include}`: the grammar includes no other grammar"
            ),
        }
    }
    let unused: Vec<_> = repository
        .keys()
        .filter(|k| !used.contains(k.as_str()))
        .collect();
    assert!(
        unused.is_empty(),
        "repository rules nothing includes: {unused:?}"
    );
}
