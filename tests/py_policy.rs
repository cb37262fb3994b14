//! A policy plugin written in Python (plugins/py-policy), built into a
//! component by componentize-py (scripts/py-policy.sh) against the same WIT
//! world as the Rust ones, and run by the real binary: it allows creates,
//! asks for approval before a replacement, denies deleting a protected
//! resource, and fails closed on a config it cannot read. The component is
//! large (~18 MB, an embedded CPython), so compiling it takes seconds: only
//! the first load may pay, later ones load the compiled artifact.
//!
//! The script installs componentize-py (into target/py-venv) and builds
//! target/py-policy/policy.wasm the first time; it is a no-op when the
//! component is newer than its sources. CI runs it before the tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{finish, spawn, text, wait_status, Project};
use serde_json::Value;

/// The built component (scripts/py-policy.sh, once per test binary).
fn policy_wasm() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let o = Command::new("bash").arg(repo.join("scripts/py-policy.sh")).output().expect("bash runs");
        assert!(o.status.success(), "scripts/py-policy.sh failed:\n{}{}", text(&o.stdout), text(&o.stderr));
        let wasm = repo.join("target/py-policy/policy.wasm");
        assert!(wasm.is_file(), "scripts/py-policy.sh did not build {}: {}", wasm.display(), text(&o.stdout));
        wasm
    })
}

/// `stackpipe plugin inspect <policy> --json`, timed.
fn inspect() -> (Value, Duration) {
    let wasm = policy_wasm().to_str().unwrap();
    let p = Project::new("");
    let started = Instant::now();
    let o = p.run(&["plugin", "inspect", wasm, "--json"]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    (serde_json::from_slice(&o.stdout).expect("inspect --json is JSON"), took)
}

struct FirstLoad {
    sha256: String,
    took: Duration,
    /// No artifact was there: this load compiled the component.
    compiled: bool,
}

/// The first load of the component in this test binary, before any test
/// uses it: the one load that may compile, so that the tests (in parallel)
/// do not all compile it at once, and the cache test knows what it found.
fn first_load() -> &'static FirstLoad {
    static FIRST: OnceLock<FirstLoad> = OnceLock::new();
    FIRST.get_or_init(|| {
        let (doc, took) = inspect();
        let sha256 = doc["sha256"].as_str().expect("inspect --json has the sha256").to_string();
        let compiled = doc["cache"] == "compiled";
        eprintln!("py-policy: first load {took:?} ({})", if compiled { "compiled" } else { "cached already" });
        FirstLoad { sha256, took, compiled }
    })
}

/// A project with two `test` provisioners (`db`, whose resources the policy
/// protects, and `t`), a `local` one, and the Python policy `guard`.
fn project(policy_config: &str) -> Project {
    project_with_flow(policy_config, "")
}

/// [`project`], with `flow` in the pipeline's `flow { }`.
fn project_with_flow(policy_config: &str, flow: &str) -> Project {
    first_load();
    Project::with_pipeline(&format!(
        r#"pipeline "demo"

var note_path: string = "out/note.txt"

plugin db {{
  kind   = "provisioner"
  source = "builtin:test"
  config {{ ledger = "out/ledger.txt" }}
  allow  {{ fs = ["out"] }}
}}

plugin t {{
  kind   = "provisioner"
  source = "builtin:test"
  config {{ ledger = "out/ledger.txt" }}
  allow  {{ fs = ["out"] }}
}}

plugin local {{
  kind   = "provisioner"
  source = "builtin:local"
  allow  {{ fs = ["out"] }}
}}

plugin guard {{
  kind   = "policy"
  source = "{wasm}"
  config {{ {policy_config} }}
  limits {{
    memory_mb = 128
    timeout_s = 30
  }}
}}

flow {{ {flow} }}

environment dev {{}}

resource data    "db.step" {{}}
resource scratch "t.step" {{}}
resource note    "local.file" {{
  path    = var.note_path
  content = "hello from the Python policy test"
}}
"#,
        wasm = policy_wasm().display(),
    ))
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

#[test]
fn the_python_policy_allows_creates_asks_before_a_replace_and_denies_deleting_a_protected_resource() {
    let p = project(r#"deny_delete = ["db."]"#);

    // Creating is allowed.
    ok(&p.run(&["deploy", "demo.pipeline"]));
    assert!(p.path().join("out/note.txt").is_file());

    // A replacement needs approval; the plan says why, in the policy's words.
    let plan = ok(&p.run(&["plan", "demo.pipeline", "--var", "note_path=out/note2.txt"]));
    assert!(
        plan.contains(
            "policy `guard` requires approval: py-policy: replacing `note` (local.file) in `dev` (forced by path)"
        ),
        "{plan}"
    );
    // --yes does not approve it: the run waits, says on stderr how a person
    // approves it, and `approve` from another terminal opens the gate.
    let deploy = spawn(&p, &["deploy", "demo.pipeline", "--var", "note_path=out/note2.txt", "--yes"]);
    let doc = wait_status(&p, "note to wait for the policy's approval", |d| {
        d["run"] == "r000002" && Project::find_node(d, "note").is_some_and(|n| n["status"] == "waiting")
    });
    assert_eq!(Project::node(&doc, "note")["waiting_for"]["gate"], "policy", "{doc:#}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(Project::node(&p.status(None), "note")["status"], "waiting", "--yes did not open the gate");
    assert!(p.path().join("out/note.txt").is_file() && !p.path().join("out/note2.txt").exists());
    let approved = ok(&p.run(&["approve", "--node", "note", "--comment", "moving the note is fine"]));
    assert!(approved.contains("approved dev/note (policy gate)"), "{approved}");
    let o = finish(deploy);
    let out = ok(&o);
    assert!(out.contains("dev/note: approved by"), "{out}");
    let err = text(&o.stderr);
    assert!(err.contains("dev/note waits for the approval a policy requires, which --yes does not give"), "{err}");
    assert!(err.contains("`stackpipe approve r000002 --env dev --node note`"), "{err}");
    let doc = p.status(None);
    let decision = &doc["decisions"][0];
    assert_eq!((decision["node"].as_str(), decision["gate"].as_str()), (Some("note"), Some("policy")), "{doc:#}");
    let by = decision["by"].as_str().unwrap();
    assert!(!by.contains("--yes"), "a person approved it: {doc:#}");
    assert_eq!(decision["comment"], "moving the note is fine", "{doc:#}");
    assert!(p.path().join("out/note2.txt").is_file() && !p.path().join("out/note.txt").exists());

    // Undeploying: deleting `data` (a db.* type) is denied, the rest goes.
    let o = p.run(&["undeploy", "demo.pipeline", "--var", "note_path=out/note2.txt"]);
    assert_eq!(o.status.code(), Some(1), "the denied delete fails the run: {}\n{}", text(&o.stdout), text(&o.stderr));
    let said = format!("{}{}", text(&o.stdout), text(&o.stderr));
    let denied = "denied by policy `guard`: py-policy: refusing to delete `data` (db.step) in `dev`: its type matches deny_delete `db.`";
    assert!(said.contains(denied), "{said}");
    let doc = p.status(None);
    assert_eq!(doc["operation"], "undeploy", "{doc:#}");
    let data = Project::node(&doc, "data");
    assert_eq!(data["status"], "failed", "{doc:#}");
    assert!(data["error"].as_str().unwrap().contains(denied), "{data:#}");
    assert_eq!(Project::node(&doc, "scratch")["status"], "succeeded", "{doc:#}");
    assert_eq!(Project::node(&doc, "note")["status"], "succeeded", "{doc:#}");

    // The protected resource was not destroyed and is still in the state.
    let ledger = p.ledger();
    assert!(ledger.contains(&"destroy demo/dev/scratch".to_string()), "{ledger:?}");
    assert!(!ledger.contains(&"destroy demo/dev/data".to_string()), "{ledger:?}");
    let state = ok(&p.run(&["state", "list"]));
    assert!(state.contains("demo/dev/data"), "{state}");
    assert!(!state.contains("demo/dev/scratch") && !state.contains("demo/dev/note"), "{state}");
}

#[test]
fn with_preview_false_the_python_policy_still_asks_before_a_replace() {
    let p = project_with_flow(r#"deny_delete = ["db."]"#, "preview = false");
    ok(&p.run(&["deploy", "demo.pipeline"]));
    // The flow skips the preview, not the policy: the replacement waits for
    // a person, who rejects it; the file stays where it was.
    let deploy = spawn(&p, &["deploy", "demo.pipeline", "--var", "note_path=out/note2.txt"]);
    let doc = wait_status(&p, "note to wait for the policy's approval", |d| {
        d["run"] == "r000002" && Project::find_node(d, "note").is_some_and(|n| n["status"] == "waiting")
    });
    let gate = &Project::node(&doc, "note")["waiting_for"];
    assert_eq!(gate["gate"], "policy", "{doc:#}");
    assert!(gate["reason"].as_str().unwrap().contains("py-policy: replacing `note` (local.file)"), "{gate}");
    ok(&p.run(&["reject", "--node", "note", "--comment", "keep it where it is"]));
    let o = finish(deploy);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let doc = p.status(None);
    assert_eq!(Project::node(&doc, "note")["status"], "skipped", "{doc:#}");
    assert!(p.path().join("out/note.txt").is_file() && !p.path().join("out/note2.txt").exists());
}

#[test]
fn the_python_policy_fails_closed_on_a_config_it_cannot_read() {
    let p = project("deny_delete = 5");
    let o = p.run(&["plan", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let err = text(&o.stderr);
    for node in ["data", "scratch", "note"] {
        assert!(
            err.contains(&format!(
                "dev/{node}: denied by policy `guard`: py-policy: `deny_delete` must be a string or a list of strings"
            )),
            "{err}"
        );
    }
}

#[test]
fn only_the_first_load_compiles_the_python_component_later_ones_use_the_cache() {
    let first = first_load();
    let (doc, took) = inspect();
    assert_eq!(doc["kind"], "policy", "{doc:#}");
    assert_eq!(doc["world"], "policy-plugin", "{doc:#}");
    assert_eq!(doc["sha256"], first.sha256.as_str());
    assert_eq!(doc["cache"], "hit", "the second load found the compiled component in the cache: {doc:#}");
    eprintln!(
        "py-policy: cached load {took:?}, {} ms in the host (first load {:?}, compiled: {})",
        doc["load_ms"], first.took, first.compiled
    );
}
