//! Targeted changes, end to end (seed 000: "deploy or destroy a single
//! resource"): `deploy --target`, `undeploy --target`, `undeploy
//! --orphans` and the plans of each, with the `test` provisioner's ledger
//! showing every apply and destroy.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{text, wait_for, Project, TEST_PLUGIN};
use serde_json::Value;

/// a -> b -> c, and d on its own.
const CHAIN: &str = r#"
resource a "t.step" { outputs = { url = "http://a" } }
resource b "t.step" { from = a.id  url = a.url }
resource c "t.step" { from = b.id }
resource d "t.step" {}
"#;

fn ok(p: &Project, args: &[&str]) -> String {
    let o = p.run(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}\n{}\n{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

/// The ledger's lines from `from` on.
fn ledger_since(p: &Project, from: usize) -> Vec<String> {
    p.ledger().get(from..).map(<[String]>::to_vec).unwrap_or_default()
}

/// The nodes of a run's status, by name, in the order shown.
fn nodes(status: &Value) -> Vec<String> {
    let env = &status["environments"][0]["nodes"];
    env.as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap().to_string()).collect()
}

/// What `plan --json` plans: (resource, change).
fn planned(p: &Project, args: &[&str]) -> Vec<(String, String)> {
    let doc: Value = serde_json::from_str(&ok(p, args)).expect("plan --json is JSON");
    doc.as_array().unwrap().iter().map(|c| (c["resource"].as_str().unwrap().into(), c["change"].as_str().unwrap().into())).collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn deployed(p: &Project) -> Vec<String> {
    ok(p, &["state", "list"]).lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

#[test]
fn deploy_target_takes_the_target_and_what_it_needs_that_is_not_deployed() {
    let p = Project::new(CHAIN);
    let out = ok(&p, &["deploy", "demo.pipeline", "--target", "b"]);
    assert!(out.contains("run r000001: deploy demo --target b"), "{out}");
    assert_eq!(p.ledger(), ["apply demo/dev/a", "apply demo/dev/b"]);
    let status = p.status(None);
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["targets"], serde_json::json!(["b"]));
    // c and d were not run: no job, no event, not in the status.
    assert_eq!(nodes(&status), ["a", "b"]);
    let text_status = ok(&p, &["status"]);
    assert!(text_status.contains("targeted (--target b): b, and what it needs that was not deployed"), "{text_status}");
    assert!(!text_status.contains(" c ") && !text_status.contains(" d "), "{text_status}");
    let events = ok(&p, &["deploy", "demo.pipeline", "--target", "b", "--json"]);
    assert!(!events.contains("\"node\":\"c\"") && !events.contains("\"name\":\"d\""), "{events}");

    // a and b deployed: a target that needs them takes only itself, and
    // b's stored outputs feed it.
    let before = p.ledger().len();
    ok(&p, &["deploy", "demo.pipeline", "--target", "c"]);
    assert_eq!(ledger_since(&p, before), ["apply demo/dev/c"]);
    assert_eq!(nodes(&p.status(None)), ["c"]);
    let outputs: Value = serde_json::from_str(&ok(&p, &["outputs", "demo.pipeline", "--json"])).unwrap();
    assert_eq!(outputs["resources"]["c"]["inputs"]["from"], outputs["resources"]["b"]["id"], "{outputs:#}");

    // `runs` says what each run was aimed at.
    let runs = ok(&p, &["runs"]);
    assert!(runs.lines().next().is_some_and(|l| l.contains("dev --target c")), "{runs}");
    let runs: Value = serde_json::from_str(&ok(&p, &["runs", "--json"])).unwrap();
    assert_eq!((&runs[0]["targets"], &runs[0]["orphans"]), (&serde_json::json!(["c"]), &Value::Bool(false)));
    assert!(!deployed(&p).contains(&"demo/dev/d".to_string()));
}

#[test]
fn undeploy_target_destroys_its_dependents_first_and_nothing_else() {
    let p = Project::new(CHAIN);
    ok(&p, &["deploy", "demo.pipeline"]);
    let before = p.ledger().len();
    ok(&p, &["undeploy", "demo.pipeline", "--target", "b"]);
    assert_eq!(ledger_since(&p, before), ["destroy demo/dev/c", "destroy demo/dev/b"]);
    assert_eq!(deployed(&p), ["demo/dev/a", "demo/dev/d"]);
    let status = p.status(None);
    assert_eq!((&status["operation"], &status["targets"]), (&"undeploy".into(), &serde_json::json!(["b"])));
    assert_eq!(nodes(&status), ["b", "c"]);
    assert!(ok(&p, &["status"]).contains("targeted (--target b): b, and what depends on it"));
}

#[test]
fn plan_shows_exactly_what_a_targeted_run_would_do() {
    let p = Project::new(CHAIN);
    assert_eq!(planned(&p, &["plan", "demo.pipeline", "--target", "b", "--json"]), pairs(&[("a", "create"), ("b", "create")]));
    let out = ok(&p, &["plan", "demo.pipeline", "--target", "b"]);
    assert!(out.contains("targeted: only these resources are planned") && out.contains("  dev: a, b\n"), "{out}");
    assert!(out.contains("Plan: 2 to add, 0 to change, 0 to destroy."), "{out}");
    let checked = ok(&p, &["preflight", "demo.pipeline", "--target", "b"]);
    let names: Vec<&str> = checked.lines().skip(1).filter_map(|l| l.strip_prefix("  ")?.split_whitespace().next()).collect();
    assert_eq!(names, ["a", "b"], "{checked}");
    assert!(checked.ends_with("ok: 2 resources passed preflight in 1 environment\n"), "{checked}");
    assert!(p.ledger().is_empty());

    ok(&p, &["deploy", "demo.pipeline"]);
    // b deployed: only b is planned, though a changes too.
    let changed = |r: &str| format!("{r}.size=3");
    let plan = planned(&p, &["plan", "demo.pipeline", "--target", "b", "--set", &changed("a"), "--set", &changed("b"), "--json"]);
    assert_eq!(plan, pairs(&[("b", "update")]));
    // What `undeploy --target b` would destroy, dependents first.
    assert_eq!(planned(&p, &["plan", "demo.pipeline", "--undeploy", "--target", "b", "--json"]), pairs(&[("c", "delete"), ("b", "delete")]));
    let out = ok(&p, &["plan", "demo.pipeline", "--undeploy", "--target", "b"]);
    assert!(out.contains("- t.step \"c\" {") && out.contains("Plan: 0 to add, 0 to change, 2 to destroy."), "{out}");
    assert_eq!(p.ledger().len(), 4, "a plan applies and destroys nothing: {:?}", p.ledger());
}

#[test]
fn undeploy_orphans_destroys_what_the_pipeline_no_longer_declares_in_reverse_dependency_order() {
    let p = Project::new(CHAIN);
    ok(&p, &["deploy", "demo.pipeline"]);
    // b and c (c depends on b) leave the file.
    let file = p.path().join("demo.pipeline");
    let kept: String = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("resource b") && !l.starts_with("resource c"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, kept).unwrap();

    assert_eq!(planned(&p, &["plan", "demo.pipeline", "--orphans", "--json"]), pairs(&[("c", "delete"), ("b", "delete")]));
    let before = p.ledger().len();
    let o = p.run(&["undeploy", "demo.pipeline", "--orphans"]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
    assert!(!text(&o.stderr).contains("warning"), "what it destroyed is not warned about: {}", text(&o.stderr));
    // Only the orphans, c before b (c depended on b when it was applied).
    assert_eq!(ledger_since(&p, before), ["destroy demo/dev/c", "destroy demo/dev/b"]);
    assert_eq!(deployed(&p), ["demo/dev/a", "demo/dev/d"]);
    let status = p.status(None);
    assert_eq!(status["orphans"], true);
    assert_eq!(nodes(&status), ["b", "c"]);
    // They went through the whole stack job, and are recorded like any other.
    let ops: Vec<(String, String)> = Project::node(&status, "b")["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap().into(), o["status"].as_str().unwrap().into()))
        .collect();
    let all_ran = ["preflight", "init", "refresh", "preview", "destroy"].map(|op| (op.to_string(), "succeeded".to_string()));
    assert_eq!(ops, all_ran);
    assert_eq!(Project::node(&status, "b")["input"]["plugin"], "t");
    let logs = ok(&p, &["logs", status["run"].as_str().unwrap(), "--node", "c"]);
    assert!(logs.contains("  preflight  provisioner t ("), "{logs}");

    // Nothing is left to destroy: the next one touches nothing.
    let before = p.ledger().len();
    ok(&p, &["undeploy", "demo.pipeline", "--orphans"]);
    assert_eq!(ledger_since(&p, before), Vec::<String>::new());
}

#[test]
fn an_orphan_whose_provisioner_is_no_longer_declared_stops_the_run_before_anything_is_destroyed() {
    let other = TEST_PLUGIN.replace("plugin t {", "plugin u {");
    let with_u = format!("pipeline \"demo\"\n\n{TEST_PLUGIN}\n{other}\nenvironment dev {{}}\n\nresource a \"t.step\" {{}}\nresource x \"t.step\" {{}}\nresource y \"u.step\" {{}}\n");
    let p = Project::with_pipeline(&with_u);
    ok(&p, &["deploy", "demo.pipeline"]);
    let without = format!("pipeline \"demo\"\n\n{TEST_PLUGIN}\nenvironment dev {{}}\n\nresource a \"t.step\" {{}}\n");
    std::fs::write(p.path().join("demo.pipeline"), without).unwrap();

    for args in [&["undeploy", "demo.pipeline", "--orphans"][..], &["plan", "demo.pipeline", "--orphans"]] {
        let o = p.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        let err = text(&o.stderr);
        assert!(err.contains("dev/y (u.step) is to be destroyed, but the pipeline no longer declares its provisioner `u`"), "{err}");
    }
    // Not even x, whose provisioner is there, was touched; no run was recorded.
    assert!(!p.ledger().iter().any(|l| l.starts_with("destroy")), "{:?}", p.ledger());
    assert_eq!(deployed(&p), ["demo/dev/a", "demo/dev/x", "demo/dev/y"]);
    assert_eq!(ok(&p, &["runs"]).lines().count(), 1);
}

#[test]
fn an_unknown_target_exits_2_with_a_suggestion_and_records_nothing() {
    let p = Project::new(CHAIN);
    for cmd in ["deploy", "undeploy", "plan", "preflight"] {
        let o = p.run(&[cmd, "demo.pipeline", "--target", "a", "--target", "bb"]);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", text(&o.stderr));
        let err = text(&o.stderr);
        assert!(err.contains("--target bb: the pipeline has no resource `bb`") && err.contains("did you mean `b`?"), "{cmd}: {err}");
    }
    // `--orphans` only destroys.
    let o = p.run(&["deploy", "demo.pipeline", "--orphans"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("use it with `undeploy`"), "{}", text(&o.stderr));
    assert!(p.ledger().is_empty());
    assert_eq!(ok(&p, &["runs"]).trim(), "no runs yet");
}

#[test]
fn resume_and_rerun_keep_the_selection() {
    // b fails while out/broken exists: fixed outside the pipeline (a
    // resume runs the run's snapshot, not an edited file).
    let p = Project::new(&CHAIN.replace("resource b \"t.step\" { from", "resource b \"t.step\" { fail_while_exists = \"out/broken\"  from"));
    std::fs::create_dir_all(p.path().join("out")).unwrap();
    std::fs::write(p.path().join("out/broken"), "").unwrap();
    let o = p.run(&["deploy", "demo.pipeline", "--target", "c"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert_eq!(p.ledger(), ["apply demo/dev/a"]);
    let status = p.status(None);
    assert_eq!(nodes(&status), ["a", "b", "c"]);
    assert_eq!(Project::node(&status, "c")["status"], "cancelled");

    std::fs::remove_file(p.path().join("out/broken")).unwrap();
    ok(&p, &["resume", "r000001"]);
    // a is not applied again, d is never applied.
    assert_eq!(p.ledger(), ["apply demo/dev/a", "apply demo/dev/b", "apply demo/dev/c"]);
    let status = p.status(Some("r000001"));
    assert_eq!((&status["status"], &status["targets"]), (&"succeeded".into(), &serde_json::json!(["c"])));

    // A rerun is aimed at the same: c alone now (what it needs is deployed).
    let o = ok(&p, &["rerun", "r000001"]);
    assert!(o.contains("deploy demo --target c"), "{o}");
    let status = p.status(Some("r000002"));
    assert_eq!((&status["targets"], &status["rerun_of"]), (&serde_json::json!(["c"]), &"r000001".into()));
    assert_eq!(nodes(&status), ["c"]);
    assert!(!deployed(&p).contains(&"demo/dev/d".to_string()));
}

#[test]
fn a_targeted_run_locks_only_what_it_may_touch() {
    let p = Project::new(
        r#"
resource x "t.step" { delay_ms = 10 }
resource y "t.step" { from = x.id  delay_ms = 2000 }
resource a "t.step" {}
resource b "t.step" { from = a.id }
"#,
    );
    let mut child =
        p.command(&["deploy", "demo.pipeline", "--target", "y"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for("x to be applied", || p.ledger().len() == 1);
    std::thread::sleep(Duration::from_millis(200)); // y is in flight
    child.kill().unwrap(); // SIGKILL: its locks stay
    child.wait().unwrap();

    // Resources it could not touch are free.
    ok(&p, &["deploy", "demo.pipeline", "--target", "b"]);
    assert_eq!(ledger_since(&p, 1), ["apply demo/dev/a", "apply demo/dev/b"]);
    // The whole pipeline is not.
    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("    x, y: locked by run r000001"), "{}", text(&o.stderr));
    // The resume finishes what the targeted run took, and nothing else.
    ok(&p, &["resume", "r000001"]);
    assert_eq!(ledger_since(&p, 3), ["apply demo/dev/y"]);
    assert_eq!(nodes(&p.status(Some("r000001"))), ["x", "y"]);
}
