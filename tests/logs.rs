//! `logs`: each job's lines and its plugins' own, in local time, as text or
//! JSON lines; plugin warnings in the progress output, never as raw log
//! lines; and the `local` example from deploy to undeploy.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{text, Project};
use serde_json::Value;

fn ok(p: &Project, args: &[&str]) -> String {
    let o = p.run(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}\n{}\n{}", text(&o.stdout), text(&o.stderr));
    no_raw_log_lines(&text(&o.stderr));
    text(&o.stdout)
}

/// stderr holds no tracing-format line (`2025-06-01T10:00:03.140Z  WARN target: ...`).
fn no_raw_log_lines(stderr: &str) {
    for line in stderr.lines() {
        let raw = ["TRACE", "DEBUG", " INFO", " WARN", "ERROR"].iter().any(|l| line.contains(&format!("{l} ")))
            && line.split_whitespace().next().is_some_and(|w| w.len() >= 20 && w.ends_with('Z'));
        assert!(!raw, "a raw log line on stderr: {line}\n{stderr}");
    }
}

/// Whether `s` starts with a local time as `logs` prints it: `2025-06-01 10:00:03.140`.
fn starts_with_local_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    b.len() >= 23
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b' '
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
}

/// `logs` text with what changes from run to run replaced: the times, the
/// steps' random ids, the plugin's digest.
fn scrubbed(out: &str) -> String {
    let mut lines = Vec::new();
    for line in out.lines() {
        let mut line = line.to_string();
        if starts_with_local_time(&line) {
            line.replace_range(0..23, "YYYY-MM-DD hh:mm:ss.mmm");
        }
        for (marker, len) in [("step a-", 16), ("step b-", 16), ("provisioner t (", 12)] {
            if let Some(at) = line.find(marker) {
                let from = at + marker.len();
                line.replace_range(from..(from + len).min(line.len()), &"x".repeat(len));
            }
        }
        lines.push(line);
    }
    lines.join("\n") + "\n"
}

const STEPS: &str = r#"
resource a "t.step" {
  delay_ms = 5
  warn     = "disk almost full"
}
resource b "t.step" { from_a = a.id }
"#;

#[test]
fn logs_show_every_operation_with_the_plugins_own_lines_in_local_time() {
    let p = Project::new(STEPS);
    let out = ok(&p, &["deploy", "demo.pipeline"]);
    // The plugin's warning is part of the progress, under its node.
    let lines: Vec<&str> = out.lines().collect();
    let a = lines.iter().position(|l| l.starts_with("  dev/a: create (")).expect("a's line");
    assert_eq!(lines[a + 1], "    warning: t: disk almost full", "{out}");
    assert_eq!(out.matches("disk almost full").count(), 1, "{out}");

    let shown = ok(&p, &["logs", "r000001", "--node", "a"]);
    insta::assert_snapshot!("logs_of_one_node", scrubbed(&shown));
    for line in shown.lines() {
        assert!(starts_with_local_time(line), "a local time, not epoch milliseconds: {line}");
    }
    // Debug lines are not kept unless STACKPIPE_LOG asks for them.
    assert!(!shown.contains("sleeping"), "{shown}");

    // JSON lines, one object each; the same lines.
    let json = ok(&p, &["logs", "r000001", "--node", "a", "--json"]);
    let objects: Vec<Value> = json.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    assert_eq!(objects.len(), shown.lines().count(), "{json}");
    let warned = objects.iter().find(|o| o["level"] == "warn").expect("the warning");
    assert_eq!((&warned["plugin"], &warned["op"], &warned["text"]), (&"t".into(), &"apply".into(), &"disk almost full".into()));
    assert!(objects.iter().any(|o| o["plugin"].is_null() && o["op"] == "preflight"), "stackpipe's own lines too: {json}");
    let first = &objects[0];
    let ms = first["ms"].as_u64().expect("ms");
    assert!(first["time"].as_str().is_some_and(|t| t.ends_with(&format!(".{:03}Z", ms % 1000))), "{first}");

    // The times are local: in UTC they are the JSON's.
    let o = p.command(&["logs", "r000001", "--node", "a"]).env("TZ", "UTC").output().unwrap();
    let utc = first["time"].as_str().unwrap().replace('T', " ");
    assert!(text(&o.stdout).starts_with(utc.trim_end_matches('Z')), "{}\n{first}", text(&o.stdout));

    // With STACKPIPE_LOG=debug, a plugin's debug lines are kept too, and
    // stderr shows them as debug events: not the warning on its own.
    let changed = format!("pipeline \"demo\"\n\n{}\nenvironment dev {{}}\n{}", common::TEST_PLUGIN, STEPS.replace("5\n", "6\n"));
    std::fs::write(p.path().join("demo.pipeline"), changed).unwrap();
    let o = p.command(&["deploy", "demo.pipeline"]).env("STACKPIPE_LOG", "stackpipe::plugin=debug").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let stderr = text(&o.stderr);
    assert!(stderr.contains("apply: sleeping 6 ms") && stderr.contains("DEBUG"), "{stderr}");
    assert!(!stderr.contains(" WARN "), "{stderr}");
    let shown = ok(&p, &["logs", "r000002", "--node", "a"]);
    assert!(shown.contains("  apply      [t] debug: apply: sleeping 6 ms"), "{shown}");
}

#[test]
fn a_secret_a_plugin_logs_is_masked_in_the_progress_and_the_log() {
    let p = Project::with_pipeline(&format!(
        "pipeline \"demo\"\n\n{}\nvar token: string sensitive\n\nenvironment dev {{}}\n\n{}",
        common::TEST_PLUGIN,
        r#"resource a "t.step" { warn = "token is ${var.token}" }"#
    ));
    let secret = "tok-4417-secret";
    let out = ok(&p, &["deploy", "demo.pipeline", "--var", &format!("token={secret}")]);
    // The attribute holds the secret: its whole value is masked.
    assert!(out.contains("    warning: t: (sensitive)") && !out.contains(secret), "{out}");
    let logs = ok(&p, &["logs", "--node", "a", "--json"]);
    assert!(logs.contains(r#""text":"(sensitive)""#) && !logs.contains(secret), "{logs}");
}

#[test]
fn logs_of_nothing_say_so() {
    let p = Project::new(STEPS);
    ok(&p, &["deploy", "demo.pipeline"]);
    // A node the run does not have is a mistake: exit 2, with the nearest.
    for json in [false, true] {
        let args: &[&str] = if json { &["logs", "--node", "aa", "--json"] } else { &["logs", "--node", "aa"] };
        let o = p.run(args);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
        assert!(text(&o.stderr).contains("has no node `aa`; did you mean `a`?"), "{}", text(&o.stderr));
    }
}

/// The `local` example as a newcomer runs it: a copy, deployed, drifted,
/// deployed again, undeployed.
#[test]
fn the_local_example_deploys_clean_applies_its_mode_and_undeploy_removes_what_it_created() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/local-files.pipeline")).unwrap();
    let p = Project::with_pipeline(&example);
    let out = ok(&p, &["deploy", "demo.pipeline"]);
    assert!(!out.contains("warning"), "{out}");
    let index = p.path().join("out/dev/site/index.html");
    let mode = |f: &std::path::Path| std::fs::metadata(f).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&index), 0o644);
    let logs = ok(&p, &["logs", "--node", "index"]);
    // Named by the path its outputs give.
    assert!(logs.contains("[local] wrote `dev/site/index.html` ("), "{logs}");
    assert!(logs.contains(", mode 0644, sha256 "), "{logs}");

    // A mode changed by hand shows in the plan and is set back.
    std::fs::set_permissions(&index, std::fs::Permissions::from_mode(0o600)).unwrap();
    let plan = ok(&p, &["plan", "demo.pipeline", "--env", "dev"]);
    assert!(plan.contains("mode") && plan.contains("0600") && plan.contains("0644"), "{plan}");
    ok(&p, &["deploy", "demo.pipeline"]);
    assert_eq!(mode(&index), 0o644);

    // Undeploy removes the directories `local` created; only the granted
    // directory itself (made by stackpipe for the grant) is left, empty.
    let out = ok(&p, &["undeploy", "demo.pipeline"]);
    assert!(!out.contains("warning"), "{out}");
    let left: Vec<_> = std::fs::read_dir(p.path().join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
    let logs = ok(&p, &["logs", "--node", "site"]);
    assert!(logs.contains("[local] removed directory `dev/site`"), "{logs}");
    assert!(logs.contains("[local] removed directory `dev` (created by apply, now empty)"), "{logs}");
}

/// A directory holding what stackpipe did not put there is never emptied:
/// the destroy fails and says why; a parent holding something else stays.
#[test]
fn undeploy_leaves_what_local_did_not_create() {
    let p = Project::with_pipeline(
        r#"pipeline "demo"

plugin local {
  kind   = "provisioner"
  source = "builtin:local"
  allow  { fs = ["out"] }
}

environment dev {}

resource site "local.directory" { path = "out/a/site" }
resource key "local.file" {
  path    = "out/b/c/key"
  content = "k"
  mode    = "0600"
}
"#,
    );
    ok(&p, &["deploy", "demo.pipeline"]);
    let key = std::fs::metadata(p.path().join("out/b/c/key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o7777, 0o600);
    std::fs::write(p.path().join("out/a/mine.txt"), "not stackpipe's").unwrap();
    ok(&p, &["undeploy", "demo.pipeline"]);
    assert!(!p.path().join("out/a/site").exists());
    assert!(p.path().join("out/a/mine.txt").exists(), "a parent holding something else stays");
    assert!(!p.path().join("out/b").exists(), "the file's directories, made by its apply, are gone");

    ok(&p, &["deploy", "demo.pipeline"]);
    std::fs::write(p.path().join("out/a/site/mine.txt"), "not stackpipe's").unwrap();
    let o = p.run(&["undeploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("is not empty: stackpipe removes only empty directories"), "{}", text(&o.stdout));
    assert!(p.path().join("out/a/site/mine.txt").exists());
}
