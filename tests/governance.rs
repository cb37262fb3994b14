//! Governance nobody can skip, end to end: policies judge every change
//! whatever the flow says about `preview`, an approval a policy requires is
//! a person's (`--yes` does not give it), and a failure policy that stops
//! everything not started (seed 004) next to the default that stops only
//! the dependents (seed 000). The locks on flow keys are compile-time checks:
//! see `tests/diagnostics/` and `dsl/tests/compile.rs`.

mod common;

use common::{finish, spawn, text, wait_status, Project, TEST_PLUGIN};
use serde_json::Value;

fn ok(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

fn op<'a>(node: &'a Value, name: &str) -> &'a Value {
    node["operations"].as_array().and_then(|ops| ops.iter().find(|o| o["name"] == name)).expect("the operation")
}

/// The OS user, as decisions record it.
fn whoami() -> String {
    let o = std::process::Command::new("id").arg("-un").output().expect("id runs");
    text(&o.stdout).trim().to_string()
}

/// A `local.file` whose path is a var (a new path replaces the file), the
/// `test` provisioner, and `protect-stateful` guarding `local.file` in dev:
/// replacing or deleting one is denied, deleting anything else needs approval.
fn guarded(flow: &str) -> Project {
    Project::with_pipeline(&format!(
        r#"pipeline "demo"

var note_path: string = "out/note.txt"

{TEST_PLUGIN}
plugin local {{
  kind   = "provisioner"
  source = "builtin:local"
  allow  {{ fs = ["out"] }}
}}

plugin guard {{
  kind   = "policy"
  source = "builtin:protect-stateful"
  config {{
    environments = ["dev"]
    types        = ["local.file"]
  }}
}}

flow {{ {flow} }}

environment dev {{}}

resource note "local.file" {{
  path    = var.note_path
  content = "kept"
}}
resource scratch "t.step" {{}}
"#
    ))
}

#[test]
fn without_a_preview_the_policies_still_judge_the_real_change() {
    let p = guarded("preview = false");
    ok(&p.run(&["deploy", "demo.pipeline"]));
    let doc = p.status(None);
    let note = Project::node(&doc, "note");
    // Planned for the policies, though the flow skips the preview.
    assert_eq!(op(note, "preview")["status"], "succeeded", "{note:#}");
    assert_eq!(op(note, "preview")["message"], "planned for the policies (flow policy: preview = false)");
    assert_eq!(note["input"]["flow"]["preview"], false);

    // A new path replaces the file. Assumed without a plan, the change
    // would be an update, which the policy allows; the real plan says
    // replace, which it denies: the file is left as it is.
    let o = p.run(&["deploy", "demo.pipeline", "--var", "note_path=out/moved.txt"]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let doc = p.status(None);
    let note = Project::node(&doc, "note");
    assert_eq!(note["status"], "failed", "{note:#}");
    let error = note["error"].as_str().unwrap();
    assert!(error.starts_with("denied by policy `guard`: refusing to replace stateful `note` (local.file)"), "{error}");
    assert_eq!(op(note, "preview")["status"], "failed");
    assert_eq!(op(note, "apply")["status"], "skipped");
    assert!(p.path().join("out/note.txt").is_file() && !p.path().join("out/moved.txt").exists());

    // Without policies, `preview = false` skips the preview as asked.
    let plain = Project::with_pipeline(&format!(
        "pipeline \"demo\"\n\n{TEST_PLUGIN}\nflow {{ preview = false }}\nenvironment dev {{}}\nresource a \"t.step\" {{}}\n"
    ));
    ok(&plain.run(&["deploy", "demo.pipeline"]));
    let doc = plain.status(None);
    let preview = op(Project::node(&doc, "a"), "preview");
    assert_eq!((&preview["status"], &preview["message"]), (&"skipped".into(), &"flow policy: preview = false".into()));
}

#[test]
fn yes_does_not_give_the_approval_a_policy_requires_a_person_does() {
    // Undeploy (with preview = false, which never skips a destroy's policies):
    // deleting `scratch` needs approval, deleting `note` is denied.
    let p = guarded("preview = false");
    ok(&p.run(&["deploy", "demo.pipeline"]));
    let undeploy = spawn(&p, &["undeploy", "demo.pipeline", "--yes"]);
    let doc = wait_status(&p, "scratch to wait for the policy's approval", |d| {
        d["operation"] == "undeploy" && Project::find_node(d, "scratch").is_some_and(|n| n["status"] == "waiting")
    });
    let gate = &Project::node(&doc, "scratch")["waiting_for"];
    assert_eq!(gate["gate"], "policy", "{gate}");
    assert!(gate["reason"].as_str().unwrap().contains("policy `guard` requires approval: will delete `scratch`"), "{gate}");
    // Still waiting a moment later: --yes did not open it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(Project::node(&p.status(None), "scratch")["status"], "waiting");
    assert!(p.ledger().iter().all(|l| !l.starts_with("destroy")), "{:?}", p.ledger());

    let out = ok(&p.run(&["approve", "--node", "scratch", "--comment", "scratch data, reviewed"]));
    assert!(out.contains("approved dev/scratch (policy gate)"), "{out}");
    let o = finish(undeploy);
    assert_eq!(o.status.code(), Some(1), "the denied delete of `note` fails the run");
    let err = text(&o.stderr);
    assert!(
        err.contains("dev/scratch waits for the approval a policy requires, which --yes does not give")
            && err.contains("`stackpipe approve r000002 --env dev --node scratch`"),
        "{err}"
    );
    let doc = p.status(None);
    assert_eq!(Project::node(&doc, "scratch")["status"], "succeeded");
    let note = Project::node(&doc, "note");
    assert!(note["error"].as_str().unwrap().contains("denied by policy `guard`: refusing to delete stateful `note`"), "{note:#}");
    let decisions = doc["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 1, "{doc:#}");
    assert_eq!((&decisions[0]["gate"], &decisions[0]["node"]), (&"policy".into(), &"scratch".into()));
    assert_eq!(decisions[0]["by"], whoami(), "a person approved it, not --yes");
    assert!(p.ledger().contains(&"destroy demo/dev/scratch".to_string()), "{:?}", p.ledger());
}

/// `bad` fails; `dep` depends on it; `slow` and `late` are independent.
/// With two slots, `bad` and `slow` start together and `late` waits for a
/// slot: it has not started when `bad` fails.
fn failing(on_failure: &str) -> Project {
    Project::with_pipeline(&format!(
        r#"pipeline "demo"

{TEST_PLUGIN}
environment dev {{
  {on_failure}
}}

resource bad  "t.step" {{ fail = true }}
resource dep  "t.step" {{ from = bad.id }}
resource slow "t.step" {{ delay_ms = 1000 }}
resource late "t.step" {{}}
"#
    ))
}

#[test]
fn stop_all_lets_what_is_in_flight_finish_and_starts_nothing_else() {
    let p = failing(r#"flow { on_failure = "stop-all" }"#);
    let o = p.run(&["deploy", "demo.pipeline", "--parallelism", "2"]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", text(&o.stdout), text(&o.stderr));
    // `slow` was in flight and finished; `late` never applied.
    assert_eq!(p.ledger(), ["apply demo/dev/slow"]);
    let doc = p.status(None);
    assert_eq!(doc["status"], "failed");
    let status = |n: &str| Project::node(&doc, n)["status"].clone();
    assert_eq!((status("bad"), status("slow")), ("failed".into(), "succeeded".into()));
    assert_eq!(status("dep"), "cancelled");
    assert_eq!(Project::node(&doc, "dep")["error"], "a dependency failed");
    let late = Project::node(&doc, "late");
    assert_eq!(late["status"], "cancelled", "{late:#}");
    assert_eq!(
        late["error"],
        "not started: `bad` failed, and on_failure = \"stop-all\" stops everything not started",
        "{late:#}"
    );
    assert!(late["started_ms"].is_null(), "{late:#}");
    // Each job records the failure policy it ran under.
    assert_eq!(Project::node(&doc, "slow")["input"]["flow"]["on_failure"], "stop-all");
    let out = text(&o.stdout);
    assert!(out.contains("dev/late: cancelled (not started: `bad` failed"), "{out}");
}

#[test]
fn by_default_a_failure_stops_only_its_dependents() {
    let p = failing("");
    let o = p.run(&["deploy", "demo.pipeline", "--parallelism", "2"]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let mut ledger = p.ledger();
    ledger.sort();
    assert_eq!(ledger, ["apply demo/dev/late", "apply demo/dev/slow"]);
    let doc = p.status(None);
    assert_eq!(Project::node(&doc, "dep")["status"], "cancelled");
    assert_eq!(Project::node(&doc, "late")["status"], "succeeded");
    assert_eq!(Project::node(&doc, "late")["input"]["flow"]["on_failure"], "stop-dependents");
}
