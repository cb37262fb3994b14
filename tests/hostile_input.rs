//! Hostile input: what a red team handed `stackpipe check` to exhaust the
//! machine, each run through the real binary. Each must end quickly with a
//! clear error (exit code 2), bounded output, and no panic.
//!
//! Times are asserted loosely (seconds, in a debug build on a shared
//! machine): the point is that nothing blocks, loops or goes quadratic.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::text;

/// Longest any case may take before it counts as hanging.
const DEADLINE: Duration = Duration::from_secs(10);

/// `stackpipe args...` in `dir`, killed if it outlives [`DEADLINE`]: a
/// case that blocks fails instead of hanging the test run. Returns the
/// output and how long it took.
fn run(dir: &Path, args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stackpipe"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("COLUMNS")
        .env_remove("STACKPIPE_MAX_FILE_SIZE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // Read the pipes on threads, so a child writing much cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut b).map(|_| b)
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut b).map(|_| b)
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the binary") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`stackpipe {}` still running after {DEADLINE:?}: it hangs", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = start.elapsed();
    let stdout = out.join().expect("the stdout reader").expect("reading stdout");
    let stderr = err.join().expect("the stderr reader").expect("reading stderr");
    (Output { status, stdout, stderr }, took)
}

/// The run was refused as invalid input, without panicking.
fn assert_invalid(o: &Output) {
    let stderr = text(&o.stderr);
    assert!(!stderr.contains("panicked"), "stackpipe panicked:\n{stderr}");
    assert_eq!(o.status.code(), Some(2), "exit code; stderr:\n{stderr}");
    assert!(o.stdout.is_empty(), "stdout: {}", text(&o.stdout));
}

/// stderr with the temp dir's path replaced, for snapshots.
fn stderr_in(dir: &Path, o: &Output) -> String {
    text(&o.stderr).replace(&dir.display().to_string(), "[dir]")
}

/// A small valid pipeline, to make big files of.
const HEADER: &str =
    "plugin t {\n  kind   = \"provisioner\"\n  source = \"builtin:test\"\n}\n\nresource a \"t.x\" {}\n";

#[test]
fn dev_zero_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (o, took) = run(dir.path(), &["check", "/dev/zero"]);
    assert_invalid(&o);
    assert!(took < DEADLINE);
    insta::assert_snapshot!(text(&o.stderr), @"error: cannot read /dev/zero: it is a character device, not a regular file");
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("p.pipeline");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(status.success());
    // No writer ever opens it: a blocking open or read would hang here
    // (the run is killed at the deadline and the test fails).
    let (o, _) = run(dir.path(), &["check", "p.pipeline"]);
    assert_invalid(&o);
    insta::assert_snapshot!(text(&o.stderr), @"error: cannot read p.pipeline: it is a FIFO (named pipe), not a regular file");
    // Every command that loads a pipeline reads it the same way.
    let (o, _) = run(dir.path(), &["graph", "p.pipeline"]);
    assert_invalid(&o);
}

#[test]
fn a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("d.pipeline")).unwrap();
    let (o, _) = run(dir.path(), &["check", "d.pipeline"]);
    assert_invalid(&o);
    insta::assert_snapshot!(text(&o.stderr), @"error: cannot read d.pipeline: it is a directory, not a regular file");
}

#[test]
fn a_file_over_the_cap_is_refused_and_the_flag_raises_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    // Just over the default cap of 16 MiB: a valid pipeline (of a type the
    // provisioner has) padded with a comment.
    let cap = 16 << 20;
    let header = HEADER.replace("\"t.x\"", "\"t.step\"");
    let mut f = std::fs::File::create(dir.path().join("big.pipeline")).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    let pad = cap + 1 - header.len() - 3;
    f.write_all(b"# ").unwrap();
    f.write_all(&vec![b'x'; pad]).unwrap();
    f.write_all(b"\n").unwrap();
    drop(f);
    assert_eq!(std::fs::metadata(dir.path().join("big.pipeline")).unwrap().len(), cap as u64 + 1);

    let (o, _) = run(dir.path(), &["check", "big.pipeline"]);
    assert_invalid(&o);
    insta::assert_snapshot!(text(&o.stderr), @r"
    error: big.pipeline is too large for a pipeline file: 16777217 bytes (about 16.0 MiB), over the limit of 16777216 bytes (16 MiB)
    help: if the file really is the pipeline, raise the limit with `--max-file-size BYTES` or STACKPIPE_MAX_FILE_SIZE
    ");

    let (o, _) = run(dir.path(), &["check", "--max-file-size", "17MiB", "big.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "ok: 1 resource, 1 environment, 1 level\n");

    // Exactly at the cap is within it.
    let (o, _) = run(dir.path(), &["check", "--max-file-size", &(cap + 1).to_string(), "big.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));

    let (o, _) = run(dir.path(), &["graph", "--max-file-size", "1KiB", "big.pipeline"]);
    assert_invalid(&o);
    assert!(text(&o.stderr).contains("over the limit of 1024 bytes (1 KiB)"), "{}", text(&o.stderr));
}

#[test]
fn a_megabyte_misspelt_name_is_reported_quickly_and_briefly() {
    let dir = tempfile::tempdir().unwrap();
    // A resource with a 1 MB name, and a reference to it with one letter
    // more: the "did you mean" comparison of the two was quadratic.
    let name = "n".repeat(1 << 20);
    let src = format!("{HEADER}resource {name} \"t.x\" {{}}\nresource b \"t.x\" {{ x = {name}x.id }}\n");
    std::fs::write(dir.path().join("typo.pipeline"), src).unwrap();
    let (o, took) = run(dir.path(), &["check", "typo.pipeline"]);
    assert_invalid(&o);
    assert!(took < DEADLINE, "took {took:?}");
    assert!(o.stderr.len() < 10_000, "{} bytes of stderr", o.stderr.len());
    insta::assert_snapshot!("misspelt_megabyte_name", stderr_in(dir.path(), &o));
}

#[test]
fn an_unterminated_comment_in_a_large_file_is_reported_briefly() {
    let dir = tempfile::tempdir().unwrap();
    // 8 MB of comment on lines of 100 characters, and a last line of 2 MB.
    let mut src = format!("{HEADER}/* never closed\n");
    for _ in 0..80_000 {
        src.push_str(&"c".repeat(99));
        src.push('\n');
    }
    src.push_str(&"z".repeat(2 << 20));
    std::fs::write(dir.path().join("comment.pipeline"), &src).unwrap();
    let (o, took) = run(dir.path(), &["check", "comment.pipeline"]);
    assert_invalid(&o);
    assert!(took < DEADLINE, "took {took:?}");
    assert!(o.stderr.len() < 10_000, "{} bytes of stderr", o.stderr.len());
    insta::assert_snapshot!("comment_never_closed_in_8_mb", stderr_in(dir.path(), &o));

    // The same comment opened on a line of 5 MB: the line is cut around it.
    let src = format!("{HEADER}resource b \"t.x\" {{}} {}/* never closed {}", " ".repeat(3 << 20), "y".repeat(2 << 20));
    std::fs::write(dir.path().join("one-line.pipeline"), &src).unwrap();
    let (o, took) = run(dir.path(), &["check", "one-line.pipeline"]);
    assert_invalid(&o);
    assert!(took < DEADLINE, "took {took:?}");
    assert!(o.stderr.len() < 10_000, "{} bytes of stderr", o.stderr.len());
    insta::assert_snapshot!("comment_never_closed_on_a_5_mb_line", stderr_in(dir.path(), &o));
}

#[test]
fn a_span_over_thousands_of_lines_is_quoted_briefly() {
    let dir = tempfile::tempdir().unwrap();
    // A default of the wrong type, a list of 20,000 lines: its label spans
    // them all, and was quoted whole.
    let mut src = String::from("var n: number = [\n");
    for i in 0..20_000 {
        src.push_str(&format!("  {i},\n"));
    }
    src.push_str("]\n");
    std::fs::write(dir.path().join("span.pipeline"), &src).unwrap();
    let (o, took) = run(dir.path(), &["check", "span.pipeline"]);
    assert_invalid(&o);
    assert!(took < DEADLINE, "took {took:?}");
    let stderr = text(&o.stderr);
    assert!(stderr.lines().count() < 20, "{stderr}");
    insta::assert_snapshot!("span_over_20000_lines", stderr_in(dir.path(), &o));
}

#[test]
fn a_plugin_component_must_be_a_regular_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let (o, _) = run(dir.path(), &["plugin", "inspect", "/dev/zero"]);
    assert_invalid(&o);
    insta::assert_snapshot!(text(&o.stderr), @"error: plugin `zero`: cannot read /dev/zero: it is a character device, not a regular file");
    let status = Command::new("mkfifo").arg(dir.path().join("p.wasm")).status().expect("mkfifo runs");
    assert!(status.success());
    let (o, _) = run(dir.path(), &["plugin", "inspect", "p.wasm"]);
    assert_invalid(&o);
    assert!(text(&o.stderr).contains("it is a FIFO (named pipe), not a regular file"), "{}", text(&o.stderr));
}
