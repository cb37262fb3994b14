//! Gates, approvals, policies and control from another terminal, end to
//! end: a deploy runs in one process while a second process (the real
//! binary again) watches it, approves, rejects and cancels through the
//! runner's control socket.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{finish, finish_within, spawn, text, wait_status, Project, TEST_PLUGIN};
use serde_json::Value;

fn pipeline(rest: &str) -> String {
    format!("pipeline \"demo\"\n\n{TEST_PLUGIN}\n{rest}")
}

/// The OS user, as decisions record it.
fn whoami() -> String {
    let o = std::process::Command::new("id").arg("-un").output().expect("id runs");
    text(&o.stdout).trim().to_string()
}

/// An environment of a status document (null while the run has not announced it).
fn env<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["environments"].as_array().and_then(|es| es.iter().find(|e| e["name"] == name)).unwrap_or(&Value::Null)
}

/// A node of a status document (null while its environment has not started).
fn node<'a>(doc: &'a Value, env_name: &str, name: &str) -> &'a Value {
    env(doc, env_name)["nodes"].as_array().and_then(|ns| ns.iter().find(|n| n["name"] == name)).unwrap_or(&Value::Null)
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

#[test]
fn environments_in_order_one_approved_from_another_terminal_one_rejected_and_skipped() {
    let p = Project::with_pipeline(&pipeline(
        r#"
environment dev {}
environment staging {
  after    = dev
  approval = true
}
environment prod {
  after    = staging
  approval = true
}

resource a "t.step" { delay_ms = 10 }
resource b "t.step" { from_a = a.id }
"#,
    ));
    let deploy = spawn(&p, &["deploy", "demo.pipeline"]);

    let doc = wait_status(&p, "staging to wait at its gate", |d| env(d, "staging")["status"] == "waiting");
    assert_eq!(doc["status"], "running");
    assert_eq!(env(&doc, "dev")["status"], "succeeded");
    assert_eq!(env(&doc, "staging")["waiting_for"]["gate"], "environment");
    assert!(env(&doc, "staging")["waiting_for"]["since_ms"].as_u64().is_some());
    assert_eq!(node(&doc, "staging", "a")["status"], "queued", "nothing in staging starts before the approval");
    assert_eq!(env(&doc, "prod")["status"], "queued");

    // Other read-only commands work from here while the run is in progress.
    let runs: Value = serde_json::from_str(&ok(&p.run(&["runs", "--json"]))).unwrap();
    assert_eq!(runs[0]["run"], "r000001");
    assert_eq!(runs[0]["pipeline"], "demo");
    assert_eq!(runs[0]["operation"], "deploy");
    assert_eq!(runs[0]["status"], "running");
    assert!(runs[0]["started_ms"].as_u64().is_some());
    let human = ok(&p.run(&["status"]));
    assert!(human.contains("stackpipe approve r000001 --env staging"), "{human}");

    // A decision for a gate that is not waiting is refused.
    let o = p.run(&["approve", "--env", "prod"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("nothing in run r000001 is waiting for approval in environment `prod`"), "{}", text(&o.stderr));

    let out = ok(&p.run(&["approve", "r000001", "--env", "staging", "--comment", "staging looks fine"]));
    assert!(out.contains("approved staging (environment gate)"), "{out}");

    wait_status(&p, "prod to wait at its gate", |d| env(d, "prod")["status"] == "waiting");
    ok(&p.run(&["reject", "--env", "prod", "--comment", "not today"]));

    let o = finish(deploy);
    assert_eq!(o.status.code(), Some(1), "a rejected environment fails the run\n{}", text(&o.stdout));
    let out = text(&o.stdout);
    assert!(out.contains("[prod] skipped: rejected by"), "{out}");

    let doc = p.status(None);
    assert_eq!(doc["status"], "failed");
    assert_eq!(env(&doc, "dev")["status"], "succeeded");
    assert_eq!(env(&doc, "staging")["status"], "succeeded");
    assert_eq!(env(&doc, "prod")["status"], "skipped");
    let user = whoami();
    assert_eq!(env(&doc, "prod")["reason"], format!("rejected by {user}: not today"));
    let decisions = doc["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 2);
    assert_eq!(
        (&decisions[0]["environment"], &decisions[0]["decision"], &decisions[0]["by"], &decisions[0]["comment"]),
        (&"staging".into(), &"approved".into(), &Value::from(user.clone()), &"staging looks fine".into())
    );
    assert_eq!((&decisions[1]["environment"], &decisions[1]["decision"]), (&"prod".into(), &"rejected".into()));
    assert!(decisions[1]["at_ms"].as_u64() >= decisions[0]["at_ms"].as_u64());
    assert_eq!(
        p.ledger(),
        ["apply demo/dev/a", "apply demo/dev/b", "apply demo/staging/a", "apply demo/staging/b"],
        "nothing is applied in prod"
    );
}

#[test]
fn a_node_gate_holds_back_only_its_dependents() {
    let p = Project::with_pipeline(&pipeline(
        r#"
environment dev {}

resource db  "t.step" { gate = "after" }
resource app "t.step" { db = db.id }
resource cdn "t.step" { delay_ms = 200 }
resource dns "t.step" { cdn = cdn.id }
"#,
    ));
    // One slot: the waiting gate must not hold it.
    let deploy = spawn(&p, &["deploy", "demo.pipeline", "--parallelism", "1"]);
    let doc = wait_status(&p, "the independent branch to finish while db waits", |d| {
        node(d, "dev", "dns")["status"] == "succeeded" && node(d, "dev", "db")["status"] == "waiting"
    });
    assert_eq!(node(&doc, "dev", "db")["waiting_for"]["gate"], "after");
    assert_eq!(node(&doc, "dev", "app")["status"], "queued", "the dependent waits for the approval");
    assert_eq!(env(&doc, "dev")["status"], "running");
    assert_eq!(doc["waiting"].as_array().unwrap().len(), 1);

    let out = ok(&p.run(&["approve", "--node", "db"]));
    assert!(out.contains("approved dev/db (after gate)"), "{out}");
    let o = finish(deploy);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let doc = p.status(None);
    let app_started = node(&doc, "dev", "app")["started_ms"].as_u64().unwrap();
    let approved_at = doc["decisions"][0]["at_ms"].as_u64().unwrap();
    assert!(app_started >= approved_at, "app started at {app_started}, before the approval at {approved_at}");
    assert_eq!(p.ledger().len(), 4);

    // Nothing changed: db has nothing new to look at, so its gate stays open.
    let again = finish_within(spawn(&p, &["deploy", "demo.pipeline"]), Duration::from_secs(30));
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(p.ledger().len(), 4);
}

#[test]
fn pause_before_apply_shows_the_plan_and_a_rejection_skips_the_node_and_its_dependents() {
    let p = Project::with_pipeline(&pipeline(
        r#"
environment dev {}

resource db "t.step" {
  size = 10
  flow { pause_before_apply = true }
}
resource app   "t.step" { db = db.id }
resource other "t.step" {}
"#,
    ));
    let deploy = spawn(&p, &["deploy", "demo.pipeline"]);
    let doc = wait_status(&p, "db to pause before apply", |d| node(d, "dev", "db")["status"] == "waiting");
    let gate = &node(&doc, "dev", "db")["waiting_for"];
    assert_eq!(gate["gate"], "pause_before_apply");
    let plan = gate["detail"].as_str().unwrap();
    assert!(plan.contains("+ t.step \"db\"") && plan.contains("+ size = 10"), "{plan}");
    ok(&p.run(&["reject", "--node", "db", "--comment", "wrong size"]));
    let o = finish(deploy);
    assert_eq!(o.status.code(), Some(1));
    let doc = p.status(None);
    assert_eq!(doc["status"], "failed");
    let db = node(&doc, "dev", "db");
    assert_eq!(db["status"], "skipped");
    assert!(db["error"].as_str().unwrap().contains("wrong size"), "{db}");
    let apply = db["operations"].as_array().unwrap().iter().find(|o| o["name"] == "apply").unwrap();
    assert_eq!(apply["status"], "skipped");
    assert_eq!(node(&doc, "dev", "app")["status"], "skipped");
    assert_eq!(node(&doc, "dev", "other")["status"], "succeeded");
    assert_eq!(p.ledger(), ["apply demo/dev/other"]);

    // --yes approves pauses without asking, and says so in the record.
    let o = p.run(&["deploy", "demo.pipeline", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let doc = p.status(None);
    assert!(doc["decisions"][0]["by"].as_str().unwrap().ends_with("(--yes)"), "{doc:#}");
}

#[test]
fn a_policy_denies_one_change_and_requires_approval_for_another() {
    let p = Project::with_pipeline(&pipeline(
        r#"
plugin s {
  kind   = "provisioner"
  source = "builtin:test"
  config { ledger = "out/ledger.txt" }
  allow  { fs = ["out"] }
}

plugin guard {
  kind   = "policy"
  source = "builtin:protect-stateful"
  config {
    environments = ["dev"]
    types        = ["s.step"]
  }
}

environment dev {}

resource data    "s.step" {}
resource scratch "t.step" {}
"#,
    ));
    // Creating is allowed.
    ok(&p.run(&["deploy", "demo.pipeline"]));

    // Deleting: the stateful one is denied; the other waits for approval.
    let undeploy = spawn(&p, &["undeploy", "demo.pipeline"]);
    let doc = wait_status(&p, "scratch to wait for the policy's approval", |d| {
        d["operation"] == "undeploy" && node(d, "dev", "scratch")["status"] == "waiting"
    });
    let gate = &node(&doc, "dev", "scratch")["waiting_for"];
    assert_eq!(gate["gate"], "policy");
    assert!(gate["reason"].as_str().unwrap().contains("policy `guard` requires approval: will delete `scratch`"), "{gate}");
    ok(&p.run(&["approve", "--node", "scratch"]));
    let o = finish(undeploy);
    assert_eq!(o.status.code(), Some(1), "the denied delete fails the run");
    let doc = p.status(None);
    let data = node(&doc, "dev", "data");
    assert_eq!(data["status"], "failed");
    let err = data["error"].as_str().unwrap();
    assert!(err.contains("denied by policy `guard`: refusing to delete stateful `data` (s.step)"), "{err}");
    let preview = data["operations"].as_array().unwrap().iter().find(|o| o["name"] == "preview").unwrap();
    assert_eq!(preview["status"], "failed");
    assert_eq!(node(&doc, "dev", "scratch")["status"], "succeeded");
    // The decision keeps why the gate was there: the policy's words.
    let decision = &doc["decisions"][0];
    assert_eq!(decision["gate"], "policy");
    assert!(decision["reason"].as_str().unwrap().contains("will delete `scratch`"), "{decision}");
    let text_status = ok(&p.run(&["status"]));
    assert!(text_status.contains("gate: policy `guard` requires approval: will delete `scratch`"), "{text_status}");
    let ledger = p.ledger();
    assert!(ledger.contains(&"destroy demo/dev/scratch".to_string()), "{ledger:?}");
    assert!(!ledger.contains(&"destroy demo/dev/data".to_string()), "{ledger:?}");
}

#[test]
fn cancel_from_another_terminal_while_a_gate_waits() {
    let p = Project::with_pipeline(&pipeline(
        r#"
environment dev {}
environment prod {
  after    = dev
  approval = true
}

resource a "t.step" {}
"#,
    ));
    // --yes does not open an environment's `approval = true` gate.
    let deploy = spawn(&p, &["deploy", "demo.pipeline", "--yes"]);
    wait_status(&p, "prod to wait at its gate", |d| env(d, "prod")["status"] == "waiting");
    let out = ok(&p.run(&["cancel"]));
    assert!(out.contains("cancelling run r000001"), "{out}");
    let o = finish(deploy);
    assert_eq!(o.status.code(), Some(1));
    let doc = p.status(None);
    assert_eq!(doc["status"], "cancelled");
    assert_eq!(env(&doc, "dev")["status"], "succeeded");
    assert_eq!(env(&doc, "prod")["status"], "cancelled");
    assert_eq!(p.ledger(), ["apply demo/dev/a"]);
    let o = p.run(&["state", "list"]);
    assert!(!text(&o.stdout).contains("locked"), "locks are released: {}", text(&o.stdout));
    // With nobody running, control commands say why they cannot act.
    let o = p.run(&["approve"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("run r000001 is not in progress (it cancelled)"), "{}", text(&o.stderr));
}

/// Seed 002: a cancel lets the operation in flight complete, then skips
/// the remaining ones. A job cancelled during its (slow) refresh never
/// previews nor applies; its dependent never starts.
#[test]
fn a_cancel_during_a_refresh_finishes_it_and_applies_nothing() {
    let resources = |value: &str| {
        pipeline(&format!(
            "environment dev {{}}\nresource a \"t.step\" {{\n  value = \"{value}\"\n  refresh_delay_ms = 1500\n}}\nresource b \"t.step\" {{ from = a.id }}\n"
        ))
    };
    let p = Project::with_pipeline(&resources("one"));
    ok(&p.run(&["deploy", "demo.pipeline"]));
    assert_eq!(p.ledger(), ["apply demo/dev/a", "apply demo/dev/b"]);
    std::fs::write(p.path().join("demo.pipeline"), resources("two")).unwrap();
    let deploy = spawn(&p, &["deploy", "demo.pipeline"]);
    let op = |d: &Value, name: &str| {
        node(d, "dev", "a")["operations"].as_array().and_then(|ops| ops.iter().find(|o| o["name"] == name).cloned())
    };
    wait_status(&p, "a's refresh to run", |d| op(d, "refresh").is_some_and(|o| o["status"] == "running"));
    ok(&p.run(&["cancel"]));
    let o = finish(deploy);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    // Nothing applied after the cancel: the ledger has the first deploy only.
    assert_eq!(p.ledger(), ["apply demo/dev/a", "apply demo/dev/b"]);
    let doc = p.status(None);
    assert_eq!(doc["status"], "cancelled");
    let status = |name: &str| op(&doc, name).map(|o| o["status"].clone()).unwrap_or_default();
    assert_eq!(status("refresh"), "succeeded", "the refresh in flight completes");
    assert_eq!(status("preview"), "skipped");
    assert_eq!(status("apply"), "skipped");
    assert_eq!(node(&doc, "dev", "a")["status"], "cancelled");
    assert!(node(&doc, "dev", "a")["error"].as_str().unwrap_or("").contains("cancelled before preview"), "{doc:#}");
    assert_eq!(node(&doc, "dev", "b")["status"], "cancelled");
    // What stands is what the first deploy made; a plan still sees the change.
    let plan = ok(&p.run(&["plan", "demo.pipeline"]));
    assert!(plan.contains("will be updated in place"), "{plan}");
}

/// `cancel --node N` stops one job (its operation in flight finishes) and
/// so its dependents; the independent ones run on, and the environments
/// after are not started.
#[test]
fn cancel_one_node_stops_it_and_its_dependents_only() {
    let resources = |value: &str| {
        pipeline(&format!(
            "environment dev {{}}\nenvironment prod {{ after = dev }}\n\
             resource a \"t.step\" {{\n  value = \"{value}\"\n  refresh_delay_ms = 1500\n}}\n\
             resource b \"t.step\" {{ from = a.id }}\n\
             resource c \"t.step\" {{\n  value = \"{value}\"\n  delay_ms = 300\n}}\n"
        ))
    };
    let p = Project::with_pipeline(&resources("one"));
    ok(&p.run(&["deploy", "demo.pipeline"]));
    let first = p.ledger().len();
    std::fs::write(p.path().join("demo.pipeline"), resources("two")).unwrap();
    let deploy = spawn(&p, &["deploy", "demo.pipeline"]);
    let refreshing = |d: &Value| {
        node(d, "dev", "a")["operations"]
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o["name"] == "refresh" && o["status"] == "running"))
    };
    wait_status(&p, "a's refresh to run", refreshing);
    // What is not in the run is refused, with what is.
    let o = p.run(&["cancel", "--node", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("has no node `nope`"), "{}", text(&o.stderr));
    let o = p.run(&["cancel", "--env", "qa", "--node", "a"]);
    assert!(text(&o.stderr).contains("no environment `qa` (it has: dev, prod)"), "{}", text(&o.stderr));
    let out = ok(&p.run(&["cancel", "--node", "a"]));
    assert!(out.contains("cancelling dev/a in run r000002"), "{out}");
    let o = finish(deploy);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    // c ran on (its update applied); neither a nor b applied again; prod never started.
    assert_eq!(&p.ledger()[first..], ["apply demo/dev/c"]);
    let doc = p.status(None);
    assert_eq!(doc["status"], "cancelled");
    assert_eq!(node(&doc, "dev", "a")["status"], "cancelled");
    assert!(node(&doc, "dev", "a")["error"].as_str().unwrap_or("").starts_with("it was cancelled before preview"), "{doc:#}");
    assert_eq!(node(&doc, "dev", "b")["status"], "cancelled");
    assert_eq!(node(&doc, "dev", "c")["status"], "succeeded");
    assert_eq!((&env(&doc, "dev")["status"], &env(&doc, "dev")["reason"]), (&"cancelled".into(), &"what was cancelled: a".into()));
    assert_eq!(env(&doc, "prod")["status"], "skipped");
}

#[test]
fn logs_follow_in_another_terminal_sees_every_event_of_the_run_in_order() {
    let p = Project::with_pipeline(&pipeline(
        r#"
environment dev {}

resource a "t.step" { delay_ms = 20  gate = "after" }
resource b "t.step" { from_a = a.id }
resource c "t.step" { delay_ms = 30 }
"#,
    ));
    let deploy = spawn(&p, &["deploy", "demo.pipeline", "--json"]);
    wait_status(&p, "a's gate", |d| node(d, "dev", "a")["status"] == "waiting");
    // Joins in the middle of the run: it gets everything from the start.
    let follower = spawn(&p, &["logs", "--follow", "--json"]);
    let text_follower = spawn(&p, &["logs", "-f"]);
    std::thread::sleep(Duration::from_millis(200));
    ok(&p.run(&["approve", "--node", "a"]));
    let ran = finish(deploy);
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
    let followed = finish(follower);
    assert_eq!(followed.status.code(), Some(0), "{}", text(&followed.stderr));
    let ran = text(&ran.stdout);
    let followed = text(&followed.stdout);
    let events: Vec<&str> = ran.lines().collect();
    assert!(events.len() > 20, "{ran}");
    assert!(events.iter().any(|l| l.contains("\"event\":\"gate_decided\"")), "{ran}");
    assert_eq!(followed.lines().collect::<Vec<_>>(), events, "the follower saw exactly the runner's events, in order");

    let t = finish(text_follower);
    let t = text(&t.stdout);
    for needle in ["dev/a apply started", "dev/a: waiting for approval (after gate)", "dev/a: approved by", "run r000001 succeeded"] {
        assert!(t.contains(needle), "`{needle}` in:\n{t}");
    }
}

#[test]
fn a_run_killed_at_a_gate_resumes_without_asking_again_for_what_was_approved() {
    let p = Project::with_pipeline(&pipeline(
        r#"
environment dev {
  approval = true
}

resource a "t.step" { gate = "after" }
resource b "t.step" { from_a = a.id }
"#,
    ));
    let mut deploy = spawn(&p, &["deploy", "demo.pipeline"]);
    wait_status(&p, "the environment gate", |d| env(d, "dev")["status"] == "waiting");
    ok(&p.run(&["approve", "--env", "dev"]));
    wait_status(&p, "a's gate", |d| node(d, "dev", "a")["status"] == "waiting");
    deploy.kill();

    let resume = spawn(&p, &["resume", "r000001"]);
    // The environment was approved; a's own gate was not: it asks again.
    let doc = wait_status(&p, "a's gate again", |d| node(d, "dev", "a")["status"] == "waiting");
    assert_eq!(env(&doc, "dev")["status"], "running");
    ok(&p.run(&["approve", "--node", "a"]));
    let o = finish(resume);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(p.ledger(), ["apply demo/dev/a", "apply demo/dev/b"], "each applied once");
    let doc = p.status(Some("r000001"));
    assert_eq!(doc["status"], "succeeded");
    let gates: Vec<&str> = doc["decisions"].as_array().unwrap().iter().map(|d| d["gate"].as_str().unwrap()).collect();
    assert_eq!(gates, ["environment", "after"]);
}

/// Issue 18: while a deploy waits at a gate in one terminal, another reads
/// the state (`plan`, `preflight`, `status`, `outputs`, `state list/show`,
/// `history`) from the run in progress; a second deploy is refused with
/// what to do instead.
#[test]
fn a_run_waiting_at_a_gate_can_be_read_from_another_terminal() {
    let p = Project::new("resource a \"t.step\" { outputs = { port = 80 }  gate = \"after\" }\nresource b \"t.step\" { x = a.id }\n");
    assert_eq!(p.run(&["deploy", "demo.pipeline", "--yes"]).status.code(), Some(0));
    std::fs::write(
        p.path().join("demo.pipeline"),
        std::fs::read_to_string(p.path().join("demo.pipeline")).unwrap().replace("port = 80", "port = 81"),
    )
    .unwrap();
    let running = spawn(&p, &["deploy", "demo.pipeline"]);
    wait_status(&p, "a's gate to wait", |d| d["waiting"].as_array().is_some_and(|w| !w.is_empty()));

    let read = |args: &[&str]| {
        let o = p.run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?} during the run: {}", text(&o.stderr));
        text(&o.stdout)
    };
    let plan = read(&["plan", "demo.pipeline"]);
    assert!(plan.contains("No changes") || plan.contains("Plan:"), "{plan}");
    let outputs = read(&["outputs", "demo.pipeline"]);
    let port = outputs.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["port", "=", "81"]);
    assert!(port, "a was applied by the run in progress: {outputs}");
    assert!(read(&["state", "list"]).contains("demo/dev/a  t.step  serial 2  locked by r000002"));
    assert!(read(&["state", "show", "dev/a"]).contains("\"port\": 81"));
    assert!(read(&["history", "dev/a"]).contains("r000001"));
    let o = p.run(&["preflight", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("locked by run r000002 (pid"), "{}", text(&o.stderr));

    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("run r000002 is in progress") && err.contains("`stackpipe cancel` stops it"), "{err}");

    assert_eq!(p.run(&["approve", "--all"]).status.code(), Some(0));
    let o = finish_within(running, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

/// Issue 19: an environment names who may approve it. At the control
/// socket the OS user is the state's owner, an admin: a `role:` approver
/// admits them, but where only users are named they must be one of them;
/// `--approve-env` is held to the same rule.
#[test]
fn approvers_admit_the_local_owner_by_role_but_a_user_list_must_name_them() {
    let p = Project::with_pipeline(&pipeline(
        r#"
environment dev { approvers = ["role:admin"] }
environment prod {
  after     = dev
  approval  = true
  approvers = ["user:nobody-here"]
}

resource a "t.step" { gate = "after" }
resource b "t.step" { x = a.id }
"#,
    ));
    let deploy = spawn(&p, &["deploy", "demo.pipeline", "--approve-env", "prod"]);
    wait_status(&p, "dev/a to wait at its gate", |d| node(d, "dev", "a")["status"] == "waiting");
    ok(&p.run(&["approve", "--env", "dev", "--node", "a"]));

    wait_status(&p, "prod to wait, --approve-env notwithstanding", |d| env(d, "prod")["status"] == "waiting");
    let user = whoami();
    for decide in ["approve", "reject"] {
        let o = p.run(&[decide, "--env", "prod"]);
        assert_eq!(o.status.code(), Some(2), "{decide}: {}", text(&o.stdout));
        let want = format!("{user} cannot decide this: only user:nobody-here may approve environment `prod`");
        assert!(text(&o.stderr).contains(&want), "{decide}: {}", text(&o.stderr));
    }
    let doc = p.status(None);
    assert_eq!(env(&doc, "prod")["status"], "waiting", "a refused decision takes nothing");
    assert_eq!(doc["decisions"].as_array().map(Vec::len), Some(1), "{doc:#}");

    ok(&p.run(&["cancel"]));
    let o = finish(deploy);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("--approve-env prod does not approve this gate"), "{err}");
    assert_eq!(p.ledger(), ["apply demo/dev/a", "apply demo/dev/b"]);
}

/// With `self_approval = false` the one who started a run may reject it
/// but not approve it. Locally that is the OS user at the control socket:
/// such an environment is approved through a server, or by another OS user.
#[test]
fn self_approval_false_keeps_the_local_user_who_started_the_run_from_approving_it() {
    let p = Project::with_pipeline(&pipeline(
        r#"
environment prod {
  approval      = true
  self_approval = false
}

resource a "t.step" {}
"#,
    ));
    let deploy = spawn(&p, &["deploy", "demo.pipeline"]);
    wait_status(&p, "prod to wait at its gate", |d| env(d, "prod")["status"] == "waiting");
    let o = p.run(&["approve"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    let want = format!(
        "run r000001 was started by {}, and environment `prod` forbids approving your own run (self_approval = false)",
        whoami()
    );
    assert!(text(&o.stderr).contains(&want), "{}", text(&o.stderr));
    assert_eq!(env(&p.status(None), "prod")["status"], "waiting");

    ok(&p.run(&["reject", "--comment", "not mine to approve"]));
    let o = finish(deploy);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert!(p.ledger().is_empty());
}
