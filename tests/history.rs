//! `history ENV/RESOURCE` and the attribute diff each job keeps, end to
//! end: the real binary, the `test` provisioner, a real state file.

mod common;

use common::{text, Project, TEST_PLUGIN};
use serde_json::Value;

const SECRET: &str = "hunter2-very-secret";

/// `x` takes a sensitive var and an attribute the provisioner's plan marks
/// sensitive (`sensitive = ["api_key"]`); `size` and `api_key` are what the
/// tests change.
fn pipeline(size: u32, api_key: &str) -> String {
    format!(
        "pipeline \"demo\"\nvar db_password: string sensitive\n{TEST_PLUGIN}\nenvironment dev {{}}\n\n\
         resource x \"t.step\" {{\n  size = {size}\n  password = var.db_password\n  api_key = \"{api_key}\"\n  \
         sensitive = [\"api_key\"]\n}}\n"
    )
}

fn ok(p: &Project, args: &[&str]) -> String {
    let o = p.run(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}\n{}\n{}", text(&o.stdout), text(&o.stderr));
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

fn user() -> String {
    text(&std::process::Command::new("id").arg("-un").output().expect("id runs").stdout).trim().to_string()
}

/// `history` text with what changes from one run of the test to the next
/// (times, durations, the user) made fixed. A job line is laid out in
/// columns: the time at 9..29, the duration at 61..69.
fn scrubbed(out: &str) -> String {
    let mut lines = Vec::new();
    for line in out.lines() {
        let mut line = line.to_string();
        if line.starts_with('r') && line.len() > 69 && line.as_bytes()[28] == b'Z' {
            line.replace_range(9..29, "YYYY-MM-DD hh:mm:ssZ");
            line.replace_range(61..69, "    TOOK");
        }
        lines.push(line.replace(&format!("by {}", user()), "by USER"));
    }
    lines.join("\n") + "\n"
}

/// The state file's bytes.
fn state_file(p: &Project) -> Vec<u8> {
    std::fs::read(p.path().join(".stackpipe/state.redb")).expect("the state file")
}

/// Every record the state holds, as the CLI reads them out: each resource's
/// record, and each run's record, jobs (status), log lines and snapshot.
/// (Not the file's bytes: redb leaves what a deleted record held in its free
/// pages until it reuses them, which depends on the timing of its readers,
/// and no read returns those bytes.)
fn state_records(p: &Project) -> Vec<u8> {
    let mut all = ok(p, &["state", "list", "--json"]);
    let listed: Value = serde_json::from_str(&all).expect("state list --json is JSON");
    for r in listed.as_array().expect("a list") {
        let key = r["key"].as_str().expect("a key");
        all += &ok(p, &["state", "show", key]);
    }
    let runs = ok(p, &["runs", "--json"]);
    let runs_json: Value = serde_json::from_str(&runs).expect("runs --json is JSON");
    all += &runs;
    for run in runs_json.as_array().expect("a list") {
        let id = run["run"].as_str().expect("a run id");
        all += &ok(p, &["status", id, "--json"]);
        all += &ok(p, &["logs", id, "--json"]);
        all += &ok(p, &["show", id, "--json"]);
    }
    all.into_bytes()
}

fn holds(bytes: &[u8], s: &str) -> bool {
    bytes.windows(s.len()).any(|w| w == s.as_bytes())
}

#[test]
fn history_lists_every_job_of_a_resource_with_its_changes_and_never_a_secret() {
    let p = Project::with_pipeline(&pipeline(1, "k-5551234"));
    let var = format!("db_password={SECRET}");
    let mut shown = String::new();
    shown += &ok(&p, &["deploy", "demo.pipeline", "--var", &var, "-m", "first"]);
    std::fs::write(p.path().join("demo.pipeline"), pipeline(2, "k-5559999")).unwrap();
    shown += &ok(&p, &["deploy", "demo.pipeline", "--var", &var]);
    // While x is deployed its provisioner's own state holds the password
    // (it needs it back to manage x): the file has it, so the grep below
    // finds what is there.
    assert!(holds(&state_file(&p), SECRET));
    shown += &ok(&p, &["undeploy", "demo.pipeline", "--var", &var, "--yes"]);

    let listed = ok(&p, &["history", "dev/x"]);
    insta::assert_snapshot!("history_of_dev_x", scrubbed(&listed));
    let diffs = ok(&p, &["history", "dev/x", "--diff"]);
    insta::assert_snapshot!("history_of_dev_x_with_diffs", scrubbed(&diffs));

    let json = ok(&p, &["history", "dev/x", "--json"]);
    let jobs: Value = serde_json::from_str(&json).expect("history --json is JSON");
    let jobs = jobs.as_array().expect("an array");
    let field = |k: &str| jobs.iter().map(|j| j[k].as_str().unwrap_or_default().to_string()).collect::<Vec<_>>();
    assert_eq!(field("run"), ["r000003", "r000002", "r000001"]);
    assert_eq!(field("operation"), ["undeploy", "deploy", "deploy"]);
    assert_eq!(field("change"), ["delete", "update", "create"]);
    assert_eq!(field("status"), ["succeeded"; 3]);
    assert_eq!(field("started_by"), [user(), user(), user()]);
    assert_eq!(field("trigger"), ["cli"; 3]);
    assert_eq!(jobs[2]["message"], "first");
    let change = |job: usize, path: &str| {
        jobs[job]["diff"]["changes"].as_array().unwrap().iter().find(|c| c["path"] == path).cloned().unwrap_or_default()
    };
    assert_eq!((&change(1, "size")["before"], &change(1, "size")["after"]), (&"1".into(), &"2".into()));
    let key = change(1, "api_key");
    assert_eq!((&key["before"], &key["after"], &key["sensitive"]), (&"(sensitive)".into(), &"(sensitive)".into(), &true.into()));
    assert_eq!((&change(2, "size")["before"], &change(2, "size")["after"]), (&Value::Null, &"1".into()));
    assert_eq!((&change(0, "size")["before"], &change(0, "size")["after"]), (&"2".into(), &Value::Null), "a destroy's diff");
    assert_eq!(change(0, "password")["before"], "(sensitive)");
    shown += &json;
    shown += &listed;
    shown += &diffs;

    // The diff in `status`: per job in --json, and in full with --node.
    let status = p.status(Some("r000002"));
    assert_eq!(Project::node(&status, "x")["diff"]["changes"].as_array().map(Vec::len), Some(2), "{status:#}");
    let node = ok(&p, &["status", "r000002", "--node", "x"]);
    assert!(node.contains("changes:") && node.contains("~ size = 1 -> 2"), "{node}");
    assert!(node.contains("~ api_key = (sensitive) -> (sensitive)"), "{node}");
    shown += &node;
    shown += &status.to_string();
    shown += &ok(&p, &["status", "r000003", "--json"]);
    let o = p.run(&["status", "r000002", "--node", "y"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("run r000002 has no node `y`; did you mean `x`?"), "{}", text(&o.stderr));

    // No secret in anything shown, nor in the state's job records: x is
    // gone now, and with it the only record that needed the password.
    let state = state_records(&p);
    assert!(!holds(&state, SECRET), "the sensitive var's value is in a record of the state");
    for secret in [SECRET, "k-5551234", "k-5559999"] {
        assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
        // A literal written in the pipeline file is kept in the run's
        // snapshot of that file, as written (a secret belongs in a
        // sensitive var, whose value is never stored); as a value of any
        // record (`"api_key":"k-..."`) it is not.
        assert!(!holds(&state, &format!(":\"{secret}\"")) && !holds(&state, &format!(": \"{secret}\"")), "{secret} is a value in a record of the state");
    }
    assert!(shown.contains("(sensitive)"));
}

#[test]
fn history_reads_and_writes_nothing() {
    let p = Project::new(r#"resource x "t.step" { size = 1 }"#);
    ok(&p, &["deploy", "demo.pipeline"]);
    let state = p.path().join(".stackpipe");
    let listing = || {
        let mut names: Vec<(String, std::time::SystemTime)> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().modified().unwrap()))
            .collect();
        names.sort();
        names
    };
    let (before, bytes) = (listing(), state_file(&p));
    ok(&p, &["history", "dev/x", "--diff"]);
    ok(&p, &["history", "demo/dev/x", "--json"]);
    assert_eq!(p.run(&["history", "dev/nope"]).status.code(), Some(2));
    assert_eq!(listing(), before);
    assert_eq!(state_file(&p), bytes);
    // Where there is no state, nothing is made.
    let empty = tempfile::tempdir().unwrap();
    let o = p.command(&["history", "dev/x"]).current_dir(empty.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("no state in"), "{}", text(&o.stderr));
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}

#[test]
fn an_unknown_resource_is_named_with_the_nearest_known_one() {
    let p = Project::new("resource network \"t.step\" {}\nresource app \"t.step\" { net = network.id }");
    ok(&p, &["deploy", "demo.pipeline"]);
    for (asked, near) in [("dev/netwrok", "dev/network"), ("prod/app", "dev/app")] {
        let o = p.run(&["history", asked]);
        assert_eq!(o.status.code(), Some(2), "{asked}");
        assert_eq!(
            text(&o.stderr).trim(),
            format!("error: no job in this state touched `{asked}`; did you mean `{near}`?"),
            "{asked}"
        );
    }
    let o = p.run(&["history", "dev/zzzzzzzzzz"]);
    assert_eq!(text(&o.stderr).trim(), "error: no job in this state touched `dev/zzzzzzzzzz` (it knows: dev/app, dev/network)");
    let o = p.run(&["history", "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("expected `ENV/RESOURCE`"), "{}", text(&o.stderr));
}

#[test]
fn a_resource_in_several_pipelines_needs_pipeline() {
    let p = Project::new(r#"resource x "t.step" {}"#);
    let other = std::fs::read_to_string(p.path().join("demo.pipeline")).unwrap().replace("pipeline \"demo\"", "pipeline \"other\"");
    std::fs::write(p.path().join("other.pipeline"), other).unwrap();
    ok(&p, &["deploy", "demo.pipeline"]);
    ok(&p, &["deploy", "other.pipeline"]);
    ok(&p, &["deploy", "other.pipeline", "--set", "x.size=2"]);
    let o = p.run(&["history", "dev/x"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr).trim(),
        "error: `dev/x` is in 2 pipelines of this state (demo, other): name one with --pipeline"
    );
    let runs = |args: &[&str]| -> Vec<String> {
        let jobs: Value = serde_json::from_str(&ok(&p, args)).unwrap();
        jobs.as_array().unwrap().iter().map(|j| format!("{} {}", j["run"].as_str().unwrap(), j["pipeline"].as_str().unwrap())).collect()
    };
    assert_eq!(runs(&["history", "dev/x", "--pipeline", "other", "--json"]), ["r000003 other", "r000002 other"]);
    assert_eq!(runs(&["history", "demo/dev/x", "--json"]), ["r000001 demo"]);
    let o = p.run(&["history", "dev/x", "--pipeline", "third"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(text(&o.stderr).trim(), "error: no job of pipeline `third` touched `dev/x` (it is in: demo, other)");
}

#[test]
fn without_a_preview_no_diff_is_known_and_failed_and_cancelled_jobs_are_listed() {
    let p = Project::new(
        "resource a \"t.step\" {\n  size = 1\n  flow { preview = false }\n}\nresource b \"t.step\" { from = a.id }",
    );
    ok(&p, &["deploy", "demo.pipeline"]);
    let fail = p.run(&["deploy", "demo.pipeline", "--set", "a.size=2", "--set", "a.fail=true"]);
    assert_eq!(fail.status.code(), Some(1), "{}", text(&fail.stderr));
    let jobs: Value = serde_json::from_str(&ok(&p, &["history", "dev/a", "--json"])).unwrap();
    let not_known = serde_json::json!({ "not_computed": "no preview ran (flow policy: preview = false)" });
    assert_eq!((&jobs[0]["status"], &jobs[0]["change"], &jobs[0]["diff"]), (&"failed".into(), &"update".into(), &not_known));
    assert_eq!(jobs[1]["diff"], not_known, "a create without a preview is not known either");
    let a = ok(&p, &["history", "dev/a", "--diff"]);
    assert!(a.contains("    error: plugin `t` apply: injected failure"), "{a}");
    assert!(a.contains("    changes not known: no preview ran (flow policy: preview = false)"), "{a}");
    // b never ran in the second run: listed all the same, and why.
    let b = scrubbed(&ok(&p, &["history", "dev/b", "--diff"]));
    let mut lines = b.lines().skip(1);
    assert!(lines.next().is_some_and(|l| l.starts_with("r000002") && l.contains(" -        cancelled ")), "{b}");
    assert!(lines.next().is_some_and(|l| l.starts_with("    why: ")), "{b}");
    assert_eq!(lines.next(), Some("    no diff recorded"), "{b}");
    assert!(lines.next().is_some_and(|l| l.starts_with("r000001") && l.contains(" create   succeeded ")), "{b}");
    assert!(lines.next().is_some_and(|l| l.starts_with("    + from = \"a-")), "{b}");
}

#[test]
fn while_a_run_holds_the_state_history_and_status_ask_the_run() {
    let p = Project::new("resource a \"t.step\" { size = 1 }\nresource b \"t.step\" {\n  from = a.id\n  flow { pause_before_apply = true }\n}");
    let mut deploy = p
        .command(&["deploy", "demo.pipeline"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the binary starts");
    let waiting = |doc: &Value| Project::node(doc, "b")["status"] == "waiting";
    common::wait_for("b to pause before apply", || {
        let o = p.run(&["status", "--json"]);
        serde_json::from_slice::<Value>(&o.stdout).is_ok_and(|doc| waiting(&doc))
    });
    // The runner holds the database: both are answered through its socket.
    let doc = p.status(None);
    let a = &Project::node(&doc, "a")["diff"]["changes"];
    assert_eq!(a.as_array().map(Vec::len), Some(1), "a ended: its diff is in its record\n{doc:#}");
    let jobs: Value = serde_json::from_str(&ok(&p, &["history", "dev/a", "--json"])).unwrap();
    assert_eq!((&jobs[0]["run"], &jobs[0]["change"], &jobs[0]["status"]), (&"r000001".into(), &"create".into(), &"succeeded".into()));
    let o = p.run(&["history", "dev/c"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("no job in this state touched `dev/c`"), "{}", text(&o.stderr));
    ok(&p, &["reject", "--node", "b", "--comment", "not now"]);
    assert_eq!(deploy.wait().expect("the deploy ends").code(), Some(1));
    // A rejected job is listed with the change it would have made.
    let jobs: Value = serde_json::from_str(&ok(&p, &["history", "dev/b", "--json"])).unwrap();
    assert_eq!((&jobs[0]["status"], &jobs[0]["change"]), (&"skipped".into(), &"create".into()));
    assert!(jobs[0]["error"].as_str().is_some_and(|e| e.contains("not now")), "{jobs:#}");
    assert_eq!(jobs[0]["diff"]["changes"][0]["path"], "from");
}
