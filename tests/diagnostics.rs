//! The diagnostics corpus: every `tests/diagnostics/NN-name.pipeline` is a
//! small file with a mistake in it (or several). Each is checked by the real
//! binary, as a user would run it, and what it prints on stderr is compared
//! with `tests/snapshots/diagnostics__NN-name.snap`.
//!
//! Add a case: write the file (first line a `# ` comment saying what mistake
//! it shows), run `INSTA_UPDATE=always cargo test --test diagnostics`, and
//! read the new snapshot before keeping it. A case that is not an error, only
//! a note (`check` exits 0 and prints its summary), says so on its second
//! line: `# exit 0`.

use std::path::{Path, PathBuf};
use std::process::Command;

const CORPUS: &str = "tests/diagnostics";
/// The corpus is meant to cover every check of the language.
const MIN_FILES: usize = 40;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*.pipeline` of the corpus, sorted by name.
fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(CORPUS))
        .expect("the corpus directory exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pipeline"))
        .collect();
    files.sort();
    files
}

/// The exit code a case expects: 0 when its second line is `# exit 0`, else 2.
fn expected_exit(text: &str) -> i32 {
    if text.lines().nth(1).is_some_and(|l| l.trim() == "# exit 0") {
        0
    } else {
        2
    }
}

/// What is wrong with one case, or `Ok` with its stderr. `expected` is the
/// exit code: 2 (invalid input, nothing on stdout) or 0 (the summary on stdout).
fn run_check(rel: &str, expected: i32) -> Result<String, String> {
    let o = Command::new(env!("CARGO_BIN_EXE_stackpipe"))
        .args(["check", rel])
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env("STACKPIPE_CACHE_DIR", root().join("target/test-component-cache"))
        .env_remove("COLUMNS")
        .output()
        .map_err(|e| format!("cannot run stackpipe: {e}"))?;
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    if stderr.contains("panicked") {
        return Err(format!("stackpipe panicked:\n{stderr}"));
    }
    if o.status.code() != Some(expected) {
        return Err(format!("exit code {:?}, expected {expected}\nstdout:\n{stdout}\nstderr:\n{stderr}", o.status.code()));
    }
    match expected {
        2 if !stdout.is_empty() => Err(format!("stdout should be empty, got:\n{stdout}")),
        0 if !stdout.starts_with("ok: ") => Err(format!("stdout should be the summary, got:\n{stdout}")),
        _ => Ok(stderr),
    }
}

#[test]
fn corpus_is_large_enough_and_well_formed() {
    let files = corpus();
    assert!(files.len() >= MIN_FILES, "only {} files in {CORPUS}, want at least {MIN_FILES}", files.len());
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        let (nn, rest) = name.split_once('-').unwrap_or(("", ""));
        assert!(nn.len() >= 2 && nn.chars().all(|c| c.is_ascii_digit()) && !rest.is_empty(), "{name}: want NN-name.pipeline");
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.starts_with("# "), "{name}: the first line should be a `# ` comment saying what mistake it shows");
    }
}

#[test]
fn every_mistake_is_reported_with_exit_code_2_and_every_note_with_0() {
    let mut failures = Vec::new();
    for path in corpus() {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        // Always with `/`, so the path printed in the snapshot is the same on every OS.
        let rel = format!("{CORPUS}/{file_name}");
        let text = std::fs::read_to_string(&path).unwrap();
        let stderr = match run_check(&rel, expected_exit(&text)) {
            Ok(s) => s,
            Err(why) => {
                failures.push(format!("{rel}: {why}"));
                continue;
            }
        };
        let what = text.lines().next().unwrap_or("").trim_start_matches('#').trim().to_string();
        let mut settings = insta::Settings::clone_current();
        settings.set_input_file(&path);
        settings.set_description(what);
        settings.set_omit_expression(true);
        // Keep going after a mismatch, so one run shows every changed snapshot.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            settings.bind(|| insta::assert_snapshot!(stem.as_str(), stderr));
        }));
        if result.is_err() {
            failures.push(format!("{rel}: stderr differs from tests/snapshots/diagnostics__{stem}.snap"));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n  {}", failures.len(), failures.join("\n  "));
}
