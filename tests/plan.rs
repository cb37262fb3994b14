//! `plan` tells the whole truth, end to end: a resource whose attributes use
//! an output of a resource that changes before it is shown as changing,
//! with those attributes `(known after apply)`, and counted; the deploy
//! that follows changes just those. With the real `local` and `test`
//! components and a real state file.

mod common;

use common::{text, Project};
use serde_json::Value;

fn ok(p: &Project, args: &[&str]) -> String {
    let o = p.run(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}\n{}\n{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

/// `examples/local-files.pipeline`, as `demo.pipeline` in a temp directory.
fn local_files() -> Project {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/local-files.pipeline");
    Project::with_pipeline(&std::fs::read_to_string(example).expect("the example"))
}

/// Replaces `from` by `to` in the project's pipeline file.
fn edit(p: &Project, from: &str, to: &str) {
    let path = p.path().join("demo.pipeline");
    let now = std::fs::read_to_string(&path).expect("read the pipeline");
    assert!(now.contains(from), "`{from}` is not in the pipeline");
    std::fs::write(&path, now.replace(from, to)).expect("write the pipeline");
}

/// One resource of a plan: its name, its change and, for each attribute
/// change, its path and whether its new value is known only after apply.
type Planned = (String, String, Vec<(String, bool)>);

/// What `plan --json` plans, by resource name.
fn planned(p: &Project, args: &[&str]) -> Vec<Planned> {
    let doc: Value = serde_json::from_str(&ok(p, args)).expect("plan --json is JSON");
    let doc = doc.as_array().expect("an array").iter();
    let mut planned: Vec<_> = doc.map(|c| {
        let changes = c["changes"].as_array().unwrap().iter();
        let changes = changes.map(|a| (a["path"].as_str().unwrap().to_string(), a["after_unknown"] == true)).collect();
        (c["resource"].as_str().unwrap().to_string(), c["change"].as_str().unwrap().to_string(), changes)
    })
    .collect();
    // Resources planned side by side come in the order they were planned.
    planned.sort();
    planned
}

/// The change each node of the latest run made, by name.
fn changes(p: &Project) -> Vec<(String, String)> {
    let status = p.status(None);
    let nodes = status["environments"][0]["nodes"].as_array().unwrap().iter();
    nodes.map(|n| (n["name"].as_str().unwrap().to_string(), n["change"].as_str().unwrap_or("-").to_string())).collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn after_an_edit_of_greeting_the_plan_shows_the_manifest_changing_too_and_the_deploy_does_just_that() {
    let p = local_files();
    ok(&p, &["deploy", "demo.pipeline", "--env", "dev"]);
    edit(&p, r#"var greeting: string = "hello""#, r#"var greeting: string = "hi""#);

    let plan = ok(&p, &["plan", "demo.pipeline", "--env", "dev"]);
    insta::assert_snapshot!("local_files_greeting_edited", plan);
    let json = ok(&p, &["plan", "demo.pipeline", "--env", "dev", "--json"]);
    insta::assert_snapshot!("local_files_greeting_edited_json", json);

    ok(&p, &["deploy", "demo.pipeline", "--env", "dev"]);
    assert_eq!(changes(&p), pairs(&[("site", "no-op"), ("index", "update"), ("manifest", "update")]));
    // And now there is nothing left to do.
    assert!(ok(&p, &["plan", "demo.pipeline", "--env", "dev"]).contains("No changes."));
}

#[test]
fn a_replaced_upstream_replaces_what_its_new_value_forces_to_be_replaced() {
    let p = local_files();
    ok(&p, &["deploy", "demo.pipeline", "--env", "dev"]);
    // The directory moves: the files' paths (made of it) move with it, and a
    // new `path` replaces a file: the plan asks the provisioner whether a
    // new value forces a replacement, without planning the placeholder.
    edit(&p, r#"path = "${env.name}/site""#, r#"path = "${env.name}/www""#);
    let plan = ok(&p, &["plan", "demo.pipeline", "--env", "dev"]);
    insta::assert_snapshot!("local_files_directory_moved", plan);
    // (A deploy of it stops at `site`: `local` moves only an empty directory.)
}

#[test]
fn a_dependent_of_an_output_kept_on_update_is_left_alone_and_one_of_another_output_changes() {
    // `test.step` keeps its `id` on an update (its schema says
    // `keptOnUpdate`); its `inputs` are whatever its attributes are.
    let p = Project::new(
        r#"resource a "t.step" { size = 1 }
resource by_id "t.step" { from = a.id }
resource by_inputs "t.step" { from = jsonencode(a.inputs) }
resource after_that "t.step" { from = "${by_inputs.id}/${jsonencode(by_inputs.inputs)}" }"#,
    );
    ok(&p, &["deploy", "demo.pipeline"]);
    let before = p.ledger().len();

    let set = ["--set", "a.size=2"];
    let plan = planned(&p, &["plan", "demo.pipeline", "--json", set[0], set[1]]);
    let unknown = |path: &str| vec![(path.to_string(), true)];
    assert_eq!(
        plan,
        [
            ("a".into(), "update".into(), vec![("size".into(), false)]),
            ("after_that".into(), "update".into(), unknown("from")),
            ("by_id".into(), "no-op".into(), vec![]),
            ("by_inputs".into(), "update".into(), unknown("from")),
        ]
    );
    let text = ok(&p, &["plan", "demo.pipeline", set[0], set[1]]);
    assert!(text.contains("~ from = \"{\\\"size\\\":1}\" -> (known after apply)"), "{text}");
    assert!(text.contains("Plan: 0 to add, 3 to change, 0 to destroy."), "{text}");

    ok(&p, &["deploy", "demo.pipeline", set[0], set[1]]);
    let applied: Vec<_> = p.ledger()[before..].to_vec();
    assert_eq!(applied, ["apply demo/dev/a", "apply demo/dev/by_inputs", "apply demo/dev/after_that"]);
}

#[test]
fn a_value_that_turns_out_the_same_is_shown_as_known_after_apply_and_then_left_alone() {
    // The documented limit, as in Terraform: `a` changes, so its `inputs`
    // are unknown to the plan, though the part `b` takes does not change.
    let p = Project::new(
        r#"resource a "t.step" { size = 1  color = "blue" }
resource b "t.step" { color = a.inputs.color }"#,
    );
    ok(&p, &["deploy", "demo.pipeline"]);
    let plan = planned(&p, &["plan", "demo.pipeline", "--json", "--set", "a.size=2"]);
    assert_eq!(plan[1], ("b".into(), "update".into(), vec![("color".into(), true)]));
    ok(&p, &["deploy", "demo.pipeline", "--set", "a.size=2"]);
    assert_eq!(changes(&p), pairs(&[("a", "update"), ("b", "no-op")]));
}

#[test]
fn an_output_that_does_not_exist_is_never_shown_as_a_value() {
    // `a` changes in place: what it will output is not known, so a
    // reference to an output it does not have now is unknown too, not an
    // error and not a value; a reference into a resource that does not
    // change is checked against what it has.
    let p = Project::new(
        r#"resource a "t.step" { size = 1 }
resource b "t.step" { from = a.later }"#,
    );
    p.run(&["deploy", "demo.pipeline"]);
    let plan = planned(&p, &["plan", "demo.pipeline", "--json", "--set", "a.size=2"]);
    assert_eq!(plan[1], ("b".into(), "create".into(), vec![("from".into(), true)]));
    let o = p.run(&["plan", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("resource `a` has no output `later`"), "{}", text(&o.stderr));
}
