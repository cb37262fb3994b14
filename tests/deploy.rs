//! Deploy, undeploy, plan, cancel and resume, end to end: the real binary,
//! the real `test` component (with its ledger), a real redb state file.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{text, wait_for, Project, TEST_PLUGIN};
use serde_json::Value;

const DIAMOND: &str = r#"
resource a "t.step" { delay_ms = 80  outputs = { url = "http://a" } }
resource b "t.step" { from_a = a.id  delay_ms = 20 }
resource c "t.step" { url = a.url  delay_ms = 60 }
resource d "t.step" { b = b.id  c = c.id }
resource e "t.step" { delay_ms = 10 }
"#;

#[test]
fn deploy_runs_every_node_after_its_dependencies_and_wires_outputs() {
    let p = Project::new(DIAMOND);
    let o = p.run(&["deploy", "demo.pipeline", "-m", "first"]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));

    let status = p.status(None);
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["operation"], "deploy");
    let deps = [("b", vec!["a"]), ("c", vec!["a"]), ("d", vec!["b", "c"])];
    for (node, ds) in deps {
        let started = Project::node(&status, node)["started_ms"].as_u64().unwrap();
        for d in ds {
            let finished = Project::node(&status, d)["finished_ms"].as_u64().unwrap();
            assert!(started >= finished, "{node} started at {started}, before {d} finished at {finished}");
        }
    }
    let input = &Project::node(&status, "b")["input"];
    assert_eq!(input["plugin"], "t");
    assert_eq!(input["plugin_digest"].as_str().map(str::len), Some(64));
    assert_eq!(input["flow"]["refresh"], true);
    assert_eq!(input["message"], "first");
    assert!(input["attributes"]["from_a"].as_str().is_some_and(|s| s.starts_with("a-")), "{input}");
    let ops: Vec<&str> =
        Project::node(&status, "d")["operations"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(ops, ["preflight", "init", "refresh", "preview", "apply"]);

    let o = p.run(&["outputs", "demo.pipeline", "--json"]);
    let outputs: Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &outputs["dev"]["resources"];
    assert_eq!(r["b"]["inputs"]["from_a"], r["a"]["id"], "b got a's id");
    assert_eq!(r["c"]["inputs"]["url"], "http://a");
    assert_eq!(r["d"]["inputs"]["b"], r["b"]["id"]);

    // Nothing changed: a second deploy applies nothing.
    let before = p.ledger();
    assert_eq!(before.len(), 5);
    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(p.ledger(), before);
    assert_eq!(Project::node(&p.status(None), "a")["change"], "no-op");
}

#[test]
fn plan_shows_changes_and_applies_nothing() {
    let p = Project::new(DIAMOND);
    let o = p.run(&["plan", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("+ t.step \"a\" {"), "{out}");
    assert!(out.contains("Plan: 5 to add, 0 to change, 0 to destroy."), "{out}");
    assert!(p.ledger().is_empty());

    p.run(&["deploy", "demo.pipeline"]);
    let o = p.run(&["plan", "demo.pipeline", "--set", "e.size=3"]);
    let out = text(&o.stdout);
    assert!(out.contains("~ t.step \"e\" {") && out.contains("+ size = 3"), "{out}");
    assert!(out.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{out}");
}

#[test]
fn a_failure_cancels_its_dependents_and_nothing_else() {
    // b fails while out/broken exists: a problem outside the pipeline.
    let p = Project::new(
        &DIAMOND.replace("resource b \"t.step\" { from_a = a.id", "resource b \"t.step\" { fail_while_exists = \"out/broken\"  from_a = a.id"),
    );
    std::fs::create_dir_all(p.path().join("out")).unwrap();
    std::fs::write(p.path().join("out/broken"), "").unwrap();
    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(1));
    let status = p.status(None);
    assert_eq!(status["status"], "failed");
    assert_eq!(Project::node(&status, "b")["status"], "failed");
    assert_eq!(Project::node(&status, "b")["error"], "plugin `t` apply: injected failure");
    assert_eq!(Project::node(&status, "d")["status"], "cancelled");
    assert_eq!(Project::node(&status, "c")["status"], "succeeded");
    assert_eq!(Project::node(&status, "e")["status"], "succeeded");
    let ledger = p.ledger();
    assert!(!ledger.iter().any(|l| l.ends_with("/d")), "{ledger:?}");

    // Fixed outside the pipeline and resumed: what succeeded is not redone.
    // The file's edits since (a comment here) are not what a resume runs:
    // it runs the run's snapshot, and says so.
    let run = status["run"].as_str().unwrap().to_string();
    std::fs::remove_file(p.path().join("out/broken")).unwrap();
    let edited = std::fs::read_to_string(p.path().join("demo.pipeline")).unwrap() + "resource z \"t.step\" {}\n";
    std::fs::write(p.path().join("demo.pipeline"), edited).unwrap();
    let o = p.run(&["resume", &run]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let said = text(&o.stderr);
    assert!(said.contains("demo.pipeline has changed since run r000001 started; resuming the run's snapshot"), "{said}");
    assert!(!p.ledger().iter().any(|l| l.ends_with("/z")), "{:?}", p.ledger());
    let ledger = p.ledger();
    for r in ["a", "b", "c", "d", "e"] {
        let applies = ledger.iter().filter(|l| **l == format!("apply demo/dev/{r}")).count();
        assert_eq!(applies, 1, "{r} applied {applies} times: {ledger:?}");
    }
    assert_eq!(p.status(Some(&run))["status"], "succeeded");
}

#[test]
fn undeploy_destroys_dependents_first() {
    let p = Project::new(DIAMOND);
    assert_eq!(p.run(&["deploy", "demo.pipeline"]).status.code(), Some(0));
    let o = p.run(&["undeploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let destroyed: Vec<String> =
        p.ledger().iter().filter_map(|l| l.strip_prefix("destroy demo/dev/").map(str::to_string)).collect();
    let pos = |r: &str| destroyed.iter().position(|x| x == r).unwrap_or_else(|| panic!("{r} not destroyed: {destroyed:?}"));
    assert!(pos("d") < pos("b") && pos("d") < pos("c") && pos("b") < pos("a") && pos("c") < pos("a"), "{destroyed:?}");
    let o = p.run(&["state", "list"]);
    assert_eq!(text(&o.stdout), "");
}

const SLOW_CHAIN: &str = r#"
resource a "t.step" { delay_ms = 10 }
resource b "t.step" { after = a.id  delay_ms = 1500 }
resource c "t.step" { after = b.id }
resource d "t.step" { after = c.id }
"#;

#[test]
fn ctrl_c_lets_in_flight_work_finish_and_cancels_the_rest() {
    let p = Project::new(SLOW_CHAIN);
    let child = p.command(&["deploy", "demo.pipeline"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for("a to be applied", || p.ledger().len() == 1);
    std::thread::sleep(Duration::from_millis(200)); // b is in flight
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("stopping"), "{}", text(&o.stderr));
    let status = p.status(None);
    assert_eq!(status["status"], "cancelled");
    assert_eq!(Project::node(&status, "b")["status"], "succeeded", "the operation in flight finished");
    assert_eq!(Project::node(&status, "c")["status"], "cancelled");
    assert_eq!(p.ledger(), ["apply demo/dev/a", "apply demo/dev/b"]);
    let o = p.run(&["state", "list"]);
    assert!(!text(&o.stdout).contains("locked"), "locks are released: {}", text(&o.stdout));
}

#[test]
fn a_killed_run_keeps_its_locks_until_unlocked_and_resumes() {
    let p = Project::new(SLOW_CHAIN);
    let mut child = p.command(&["deploy", "demo.pipeline"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for("a to be applied", || p.ledger().len() == 1);
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Preflight finds the locks: nothing starts, nothing is recorded.
    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("preflight of the deploy found 1 problem; nothing was started")
            && err.contains("every resource: locked by run r000001 (its process")
            && err.contains("is gone: `stackpipe state unlock` releases it)"),
        "{err}"
    );
    assert_eq!(p.run(&["runs", "--json"]).stdout.iter().filter(|b| **b == b'{').count(), 1, "no second run recorded");

    let o = p.run(&["resume", "r000001"]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(p.ledger(), ["apply demo/dev/a", "apply demo/dev/b", "apply demo/dev/c", "apply demo/dev/d"]);
    assert_eq!(p.status(Some("r000001"))["status"], "succeeded");
}

#[test]
fn state_unlock_releases_the_locks_of_a_dead_run() {
    let p = Project::new(SLOW_CHAIN);
    let mut child = p.command(&["deploy", "demo.pipeline"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for("a to be applied", || p.ledger().len() == 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let o = p.run(&["state", "unlock"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("released demo/dev/a (held by run r000001"), "{}", text(&o.stdout));
    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

#[test]
fn preflight_names_what_is_missing_for_every_node() {
    // A type the provisioner does not have is caught before preflight, at its line.
    let p = Project::new(
        r#"
resource a "t.step" { }
resource b "t.stepp" { x = a.id }
resource c "t.step" { x = b.id }
"#,
    );
    let o = p.run(&["preflight", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("stackpipe::unknown_type") && err.contains("help: did you mean `step`?"), "{err}");

    // What the provisioner's `validate` refuses, preflight names, by node.
    let p = Project::new(
        r#"
resource a "t.step" { }
resource b "t.step" { x = a.id  fail_on = "sometimes" }
resource c "t.step" { x = b.id }
"#,
    );
    let o = p.run(&["preflight", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert_eq!(
        err,
        "error: preflight of the deploy found 1 problem; nothing was started:\n  dev:\n    b: t.step rejects the \
         attributes: `fail_on`: `fail_on` must be one of validate, read, plan, apply, destroy, not `sometimes`\n"
    );
    assert!(p.ledger().is_empty());

    let p = Project::new(DIAMOND);
    let o = p.run(&["preflight", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert_eq!(lines[0], "dev:");
    assert!(lines[1].starts_with("  a  t.step  provisioner t (") && lines[1].contains("credentials none, flow refresh=true"), "{out}");
    assert_eq!(lines[6], "ok: 5 resources passed preflight in 1 environment");
}

/// Seeds 002, 003: if preflight fails, no job is created. A problem in the
/// last environment stops the deploy before the first one applies
/// anything, and the report names every problem by environment and node.
#[test]
fn a_deploy_preflights_every_environment_before_it_applies_anything() {
    let p = Project::with_pipeline(&format!(
        r#"pipeline "demo"
{TEST_PLUGIN}
environment dev {{}}
environment prod {{ after = dev }}
resource a "t.step" {{ }}
resource b "t.step" {{ x = a.id  fail = {{ dev = false, prod = "yes" }}[env.name] }}
resource c "t.step" {{ x = b.id  fail = {{ dev = false, prod = "maybe" }}[env.name] }}
resource d "t.step" {{ fail_on = "sometimes" }}
"#
    ));
    const FAIL_ON: &str =
        "t.step rejects the attributes: `fail_on`: `fail_on` must be one of validate, read, plan, apply, destroy, not `sometimes`";
    for cmd in ["preflight", "deploy"] {
        let o = p.run(&[cmd, "demo.pipeline", "--json"]);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", text(&o.stderr));
        let err = text(&o.stderr);
        assert_eq!(
            err,
            format!("error: preflight of the deploy found 3 problems; nothing was started:\n  dev:\n    d: {FAIL_ON}\n  prod:\n    \
             b, c: t.step rejects the attributes: `fail`: `fail` must be true or false\n    d: {FAIL_ON}\n")
        );
        let doc: Value = serde_json::from_str(&text(&o.stdout)).expect("JSON");
        let problems = if cmd == "deploy" {
            assert_eq!(doc["event"], "preflight_failed");
            &doc["problems"]
        } else {
            &doc["problems"]
        };
        assert_eq!(problems.as_array().map(Vec::len), Some(3), "{doc}");
        assert_eq!(problems[1]["nodes"], serde_json::json!(["b", "c"]), "{doc}");
    }
    assert!(p.ledger().is_empty(), "{:?}", p.ledger());
    assert_eq!(text(&p.run(&["runs"]).stdout), "no runs yet\n", "no run was recorded");

    // An undeploy preflights what it would destroy: here, `b`'s plugin is gone from disk.
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/dist/test.wasm"), p.path().join("u.wasm")).unwrap();
    let two = format!(
        "pipeline \"demo\"\n{TEST_PLUGIN}\nplugin u {{ kind = \"provisioner\" source = \"u.wasm\" }}\n\
         environment dev {{}}\nresource a \"t.step\" {{}}\nresource b \"u.step\" {{ x = a.id }}\n"
    );
    std::fs::write(p.path().join("demo.pipeline"), two).unwrap();
    assert_eq!(p.run(&["deploy", "demo.pipeline"]).status.code(), Some(0));
    std::fs::remove_file(p.path().join("u.wasm")).unwrap();
    let o = p.run(&["undeploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("preflight of the undeploy found 1 problem; nothing was started:\n  dev:\n    b: "), "{}", text(&o.stderr));
    assert!(!p.ledger().iter().any(|l| l.starts_with("destroy")), "{:?}", p.ledger());
}

/// kill -9 at many points of a 30-node deploy, then `resume`: the run
/// finishes, every resource is applied exactly once (the `test`
/// provisioner's ledger), and the state holds all of them, wired.
///
/// Some kills land while a plugin is working (40 ms into a 100 ms apply);
/// others right after an apply was written to the ledger, before its result
/// can have reached the state: there, resume asks the provisioner what the
/// interrupted apply created (`read` without a state) and adopts it.
#[test]
fn kill_9_at_many_points_then_resume_applies_everything_exactly_once() {
    let mut resources = String::new();
    for i in 0..30 {
        let refs = match i {
            0..=2 => String::new(),
            _ => format!("  a = r{}.id\n  b = r{}.id\n", i / 3, (i * 7) % (i - 1)),
        };
        resources.push_str(&format!("resource r{i} \"t.step\" {{\n  delay_ms = 100\n{refs}}}\n"));
    }
    for (kill_after, wait_ms) in [(1, 40), (4, 0), (9, 40), (12, 0), (15, 40), (19, 0), (22, 40), (25, 0), (28, 40)] {
        let p = Project::new(&resources);
        let mut child = p
            .command(&["deploy", "demo.pipeline", "--parallelism", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("the ledger to grow", || p.ledger().len() >= kill_after);
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let killed_at = p.ledger().len();
        assert!(killed_at < 30, "the deploy finished before it was killed");

        let o = p.run(&["resume", "r000001"]);
        assert_eq!(o.status.code(), Some(0), "kill after {kill_after}: {}\n{}", text(&o.stdout), text(&o.stderr));
        let ledger = p.ledger();
        assert_eq!(ledger.len(), 30, "kill after {kill_after}: {ledger:?}");
        for i in 0..30 {
            let n = ledger.iter().filter(|l| **l == format!("apply demo/dev/r{i}")).count();
            assert_eq!(n, 1, "kill after {kill_after}: r{i} applied {n} times");
        }
        let o = p.run(&["outputs", "demo.pipeline", "--json"]);
        let out: Value = serde_json::from_slice(&o.stdout).unwrap();
        let r = &out["dev"]["resources"];
        assert_eq!(r.as_object().unwrap().len(), 30);
        for i in 3..30 {
            assert_eq!(r[format!("r{i}")]["inputs"]["a"], r[format!("r{}", i / 3)]["id"], "r{i} wired");
        }
        assert_eq!(p.status(Some("r000001"))["status"], "succeeded");
    }
}

#[test]
fn a_resource_removed_from_the_pipeline_is_left_alone_with_a_warning() {
    let p = Project::new("resource a \"t.step\" {}\nresource old \"t.step\" {}");
    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let file = p.path().join("demo.pipeline");
    let text_now = std::fs::read_to_string(&file).unwrap().replace("resource old \"t.step\" {}", "");
    std::fs::write(&file, text_now).unwrap();

    let warning = "warning: dev/old (t.step) is deployed but no longer in the pipeline";
    for args in [&["plan", "demo.pipeline"][..], &["deploy", "demo.pipeline"], &["undeploy", "demo.pipeline"]] {
        let o = p.run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(warning), "{args:?}: {}", text(&o.stderr));
    }
    // Nothing touched it: it was applied once and never destroyed.
    assert_eq!(p.ledger().iter().filter(|l| l.ends_with("/old")).collect::<Vec<_>>(), ["apply demo/dev/old"]);
    let o = p.run(&["state", "list"]);
    assert!(text(&o.stdout).contains("demo/dev/old"), "{}", text(&o.stdout));
}

/// Three environments promoted in order, with a flow policy and a per
/// environment var: what a run records and shows, end to end.
fn promoted(staging_fails: bool) -> String {
    format!(
        r#"pipeline "demo"

{TEST_PLUGIN}
var broken: bool = false

environment dev {{}}
environment staging {{
  after = dev
  vars {{ broken = {staging_fails} }}
}}
environment prod {{ after = staging }}

resource a "t.step" {{
  note = "a in ${{env.name}}"
  flow {{ refresh = false }}
}}
resource b "t.step" {{
  from = a.id
  fail = var.broken
}}
"#
    )
}

#[test]
fn a_failed_environment_skips_the_later_ones_and_undeploy_walks_them_in_reverse() {
    let p = Project::with_pipeline(&promoted(true));
    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let doc = p.status(None);
    let envs: Vec<(String, String)> = doc["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["status"].as_str().unwrap().to_string()))
        .collect();
    let expected = [("dev", "succeeded"), ("staging", "failed"), ("prod", "skipped")];
    assert_eq!(envs, expected.map(|(n, s)| (n.to_string(), s.to_string())));
    let prod = &doc["environments"][2];
    assert!(prod["reason"].as_str().unwrap_or("").contains("environment `staging` failed"), "{prod:#}");
    assert!(!p.ledger().iter().any(|l| l.contains("/prod/")), "{:?}", p.ledger());

    std::fs::write(p.path().join("demo.pipeline"), promoted(false)).unwrap();
    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let run = p.status(None)["run"].as_str().unwrap().to_string();

    // `flow { refresh = false }` skips a's refresh, though it is deployed.
    let doc = p.status(None);
    let a = &doc["environments"][0]["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "a").unwrap().clone();
    let refresh = a["operations"].as_array().unwrap().iter().find(|o| o["name"] == "refresh").unwrap();
    assert_eq!((&refresh["status"], &refresh["message"]), (&"skipped".into(), &"flow policy: refresh = false".into()));

    // `status --inputs` shows each job's input; `logs --node` one node's lines.
    let o = p.run(&["status", "--inputs"]);
    let out = text(&o.stdout);
    assert!(out.contains("input: t.step (") && out.contains("\"note\":\"a in staging\""), "{out}");
    let o = p.run(&["logs", &run, "--node", "b"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let lines = text(&o.stdout);
    // `<date> <time>  <env>/<node>  <op>  <text>`, for b in every environment, and nothing else.
    let nodes: std::collections::BTreeSet<&str> = lines.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(nodes.into_iter().collect::<Vec<_>>(), ["dev/b", "prod/b", "staging/b"], "{lines}");

    // `state show` prints the stored record of one resource.
    let o = p.run(&["state", "show", "demo/prod/a"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let shown = text(&o.stdout);
    assert!(shown.contains("a in prod") && shown.contains("\"kind\": \"step\""), "{shown}");

    // Undeploy: prod first, then staging, then dev; dependents first in each.
    let before = p.ledger().len();
    let o = p.run(&["undeploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let destroyed: Vec<String> = p.ledger()[before..].to_vec();
    let expected = ["prod/b", "prod/a", "staging/b", "staging/a", "dev/b", "dev/a"].map(|r| format!("destroy demo/{r}"));
    assert_eq!(destroyed, expected);
}

/// Who started a run and how is kept with it; `runs` filters by it.
#[test]
fn runs_say_who_started_them_and_how_and_filter() {
    let p = Project::new(DIAMOND);
    let user = text(&std::process::Command::new("id").arg("-un").output().unwrap().stdout).trim().to_string();
    assert_eq!(p.run(&["deploy", "demo.pipeline"]).status.code(), Some(0));
    let o = p.run(&["rerun", "r000001"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&p.run(&["runs"]).stdout);
    assert!(out.contains(&format!("by {user} (rerun of r000001)")), "{out}");
    let runs: Value = serde_json::from_slice(&p.run(&["runs", "--json"]).stdout).unwrap();
    assert_eq!((&runs[1]["started_by"], &runs[1]["trigger"]), (&Value::from(user.as_str()), &"cli".into()), "{runs:#}");
    assert_eq!((&runs[0]["trigger"], &runs[0]["rerun_of"]), (&"rerun".into(), &"r000001".into()), "{runs:#}");
    let status = p.status(Some("r000002"));
    assert_eq!((&status["started_by"], &status["trigger"]), (&Value::from(user.as_str()), &"rerun".into()));
    let out = text(&p.run(&["status", "r000002"]).stdout);
    assert!(out.contains(&format!("started by {user}, a rerun of r000001")), "{out}");
    // Filters: by user, status, environment, pipeline.
    assert_eq!(text(&p.run(&["runs", "--user", "nobody-at-all"]).stdout).trim(), "no runs match");
    assert_eq!(text(&p.run(&["runs", "--status", "succeeded", "--env", "dev", "--pipeline", "demo"]).stdout).lines().count(), 2);
    assert_eq!(text(&p.run(&["runs", "--env", "prod"]).stdout).trim(), "no runs match");
    let o = p.run(&["runs", "--status", "sideways"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

/// Seed 004: a run's snapshot is immutable. `rerun` runs what the run was
/// started from (its source, and its plugin component, kept by digest in
/// the state) even after the file and the component on disk changed or
/// went, and says so; `show` prints the snapshot.
#[test]
fn a_rerun_runs_its_snapshot_whatever_changed_on_disk() {
    let component = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/dist/test.wasm")).unwrap();
    let plugin = TEST_PLUGIN.replace("builtin:test", "t.wasm");
    let pipeline = |n: u32| format!("pipeline \"demo\"\n{plugin}\nenvironment dev {{}}\nresource a \"t.step\" {{ n = {n} }}\n");
    let p = Project::with_pipeline(&pipeline(1));
    std::fs::write(p.path().join("t.wasm"), &component).unwrap();
    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));

    let doc: Value = serde_json::from_slice(&p.run(&["show", "r000001", "--json"]).stdout).unwrap();
    let digest = doc["snapshot"]["plugins"][0]["digest"].as_str().unwrap_or_default().to_string();
    assert_eq!(digest.len(), 64, "{doc}");
    let shown = text(&p.run(&["show", "r000001"]).stdout);
    assert!(shown.contains(&format!("  t  t.wasm  sha256:{digest}\n")), "{shown}");
    assert_eq!(text(&p.run(&["show", "r000001", "--source"]).stdout), pipeline(1));
    assert_eq!(p.status(Some("r000001"))["snapshot"], doc["digest"]);

    // The file is edited and the component replaced by something that is
    // not one: a deploy of what is on disk now stops at preflight...
    std::fs::write(p.path().join("demo.pipeline"), pipeline(2)).unwrap();
    std::fs::write(p.path().join("t.wasm"), b"not a component").unwrap();
    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    // ... and a rerun runs the snapshot: its source, its component.
    let o = p.run(&["rerun", "r000001"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let said = text(&o.stderr);
    assert!(said.contains("demo.pipeline has changed since run r000001 started; running again the run's snapshot"), "{said}");
    assert!(said.contains("plugin `t` (t.wasm) has changed since run r000001 started"), "{said}");
    assert_eq!(p.status(None)["snapshot"], doc["digest"], "the rerun's snapshot is the same");
    std::fs::remove_file(p.path().join("t.wasm")).unwrap();
    let o = p.run(&["rerun", "r000001"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("plugin `t` (t.wasm) is gone since run r000001 started"), "{}", text(&o.stderr));
    assert_eq!(p.ledger(), ["apply demo/dev/a"], "n = 1 all along: applied once");

    // A value that is part of the snapshot is not changed by a rerun.
    let o = p.run(&["rerun", "r000001", "--var", "x=1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("`x` is part of run r000001's snapshot"), "{}", text(&o.stderr));
}

/// Issue 18's consistency points: `outputs` as values per environment
/// (JSON keyed by environment), `state show ENV/RESOURCE` when the state
/// holds one pipeline, a `--set` typo exits 2 with a suggestion, and an
/// environment that failed says so once.
#[test]
fn outputs_state_show_and_typos_read_as_people_expect() {
    let p = Project::new("resource alpha \"t.step\" { outputs = { port = 8080 } }\nresource b \"t.step\" { x = alpha.id }\noutput url = \"http://${alpha.id}\"\n");
    assert_eq!(p.run(&["deploy", "demo.pipeline"]).status.code(), Some(0));
    let o = p.run(&["outputs", "demo.pipeline"]);
    let out = text(&o.stdout);
    assert!(out.starts_with("[dev]\n  alpha\n    id     = \"alpha-"), "{out}");
    assert!(out.contains("\n    port   = 8080\n"), "{out}");
    assert!(out.contains("\n  outputs\n    url = \"http://alpha-"), "{out}");
    let doc: Value = serde_json::from_slice(&p.run(&["outputs", "demo.pipeline", "--json"]).stdout).unwrap();
    assert_eq!(doc.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()), Some(vec!["dev".to_string()]), "{doc}");
    assert_eq!(doc["dev"]["resources"]["alpha"]["port"], 8080);

    let o = p.run(&["state", "show", "dev/alpha"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("\"kind\": \"step\""), "{}", text(&o.stdout));
    let o = p.run(&["state", "show", "dev/alpah"]);
    assert_eq!((o.status.code(), text(&o.stderr)), (Some(2), "error: no resource `dev/alpah` in the state (did you mean `dev/alpha`?)\n".into()));

    let o = p.run(&["plan", "demo.pipeline", "--set", "alpah.x=1"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(text(&o.stderr), "error: invalid --set `alpah.x`: there is no resource `alpah` (did you mean `alpha`?)\n");

    std::fs::write(
        p.path().join("demo.pipeline"),
        format!("pipeline \"demo\"\n{TEST_PLUGIN}\nenvironment dev {{}}\nresource alpha \"t.step\" {{ fail = true }}\n"),
    )
    .unwrap();
    let o = p.run(&["deploy", "demo.pipeline"]);
    let out = text(&o.stdout);
    assert!(out.contains("[dev] failed: what failed: alpha"), "{out}");
    assert!(!out.contains("failed: failed"), "{out}");
}

/// A misspelled output (`index.sha265`) is caught against the provisioner's
/// own schema before anything runs: `deploy`, `plan` and `preflight` exit 2
/// at its line with a suggestion, nothing is applied and no run is
/// recorded. `graph` does not load plugins and still draws the file.
#[test]
fn a_misspelled_output_stops_a_deploy_before_anything_runs() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/local-files.pipeline")).unwrap();
    let p = Project::with_pipeline(&example);
    let o = p.run(&["deploy", "demo.pipeline", "--env", "dev"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let site = p.path().join("out/dev/site");
    let deployed = std::fs::read_to_string(site.join("index.html")).expect("the index is written");

    let typo = example.replace("= index.sha256", "= index.sha265");
    assert_ne!(typo, example);
    std::fs::write(p.path().join("demo.pipeline"), &typo).unwrap();
    let at = typo.find("sha265").unwrap();
    let line_start = typo[..at].rfind('\n').map_or(0, |i| i + 1);
    let position = format!("demo.pipeline:{}:{}", typo[..at].matches('\n').count() + 1, at - line_start + 1);
    // A new greeting would change the index, were anything applied.
    for command in ["deploy", "plan", "preflight"] {
        let o = p.run(&[command, "demo.pipeline", "--env", "dev", "--var", "greeting=hi"]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{command}: {err}");
        assert!(err.contains("stackpipe::unknown_output"), "{command}: {err}");
        assert!(err.contains("`index` has no output `sha265`"), "{command}: {err}");
        assert!(err.contains(&position), "{command}: {position} in {err}");
        assert!(err.contains("help: did you mean `sha256`?"), "{command}: {err}");
        assert!(o.stdout.is_empty(), "{command}: {}", text(&o.stdout));
    }
    let runs: Value = serde_json::from_slice(&p.run(&["runs", "--json"]).stdout).unwrap();
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "only the first deploy is recorded: {runs:#}");
    assert_eq!(std::fs::read_to_string(site.join("index.html")).unwrap(), deployed, "nothing was applied");
    assert_eq!(p.run(&["graph", "demo.pipeline"]).status.code(), Some(0));
}
