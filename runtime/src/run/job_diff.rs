//! A job's attribute diff as its record keeps it ([`JobDiff`]): made from
//! its preview's plan, or, for a destroy, from the attributes the
//! resource's record says go away; and as people read it (`status --node`,
//! `history --diff`).
//!
//! Secrets are masked when the diff is made, before it is stored: a change
//! the plan marks sensitive reads [`MASKED`], as `plan` shows it; so does a
//! path through a secret-named key (as job inputs are masked), and any
//! secret value the run knows is masked out of the rest.

use serde_json::Value;

use crate::plugin::ResourcePlan;
use crate::secrets::{is_secret_name, Secrets, MASKED};
use crate::state::{AttributeDiff, JobDiff, ResourceRecord};

/// Why a job without a preview has no diff.
pub const NO_PREVIEW: &str = "no preview ran (flow policy: preview = false)";

/// The diff of a preview's plan. Its sensitive changes have been marked
/// (`StackJob::mark_sensitive`): the provisioner's, and those of
/// attributes a sensitive var flows into or the schema marks.
pub fn planned(plan: &ResourcePlan, secrets: &Secrets) -> JobDiff {
    let changes = plan
        .changes
        .iter()
        .map(|c| {
            let sensitive = c.sensitive || c.path.split('.').any(is_secret_name);
            let kept = |v: &Option<String>| v.as_ref().map(|v| if sensitive { MASKED.to_string() } else { secrets.redact(v) });
            AttributeDiff {
                path: c.path.clone(),
                before: kept(&c.before),
                after: kept(&c.after),
                sensitive,
                forces_replacement: c.forces_replacement,
            }
        })
        .collect();
    JobDiff::Changes(changes)
}

/// A destroy's diff: every attribute the resource was last applied with,
/// going away. The record keeps them masked already; the ones it marks
/// sensitive read [`MASKED`] whole.
pub fn destroyed(prior: &ResourceRecord, secrets: &Secrets) -> JobDiff {
    let Value::Object(attributes) = &prior.attributes else { return JobDiff::Changes(Vec::new()) };
    let changes = attributes
        .iter()
        .map(|(name, value)| {
            let sensitive = prior.sensitive.contains(name) || is_secret_name(name);
            let before = if sensitive { MASKED.to_string() } else { secrets.redact(&value.to_string()) };
            AttributeDiff { path: name.clone(), before: Some(before), after: None, sensitive, forces_replacement: false }
        })
        .collect();
    JobDiff::Changes(changes)
}

/// The diff as lines, each begun with `indent`: `+ path = after` (new),
/// `- path = before` (gone), `~ path = before -> after`, and
/// `(forces replacement)` after a change that cannot be made in place.
pub fn render(diff: &JobDiff, indent: &str) -> String {
    let changes = match diff {
        JobDiff::NotComputed(why) => return format!("{indent}changes not known: {}\n", printable(why)),
        JobDiff::Changes(c) if c.is_empty() => return format!("{indent}no attribute changes\n"),
        JobDiff::Changes(c) => c,
    };
    let mut out = String::new();
    for c in changes {
        let path = printable(&c.path);
        let value = |v: &Option<String>| v.as_deref().map_or_else(|| "null".to_string(), printable);
        let line = match (&c.before, &c.after) {
            (None, Some(_)) => format!("+ {path} = {}", value(&c.after)),
            (Some(_), None) => format!("- {path} = {}", value(&c.before)),
            _ => format!("~ {path} = {} -> {}", value(&c.before), value(&c.after)),
        };
        let forces = if c.forces_replacement { " (forces replacement)" } else { "" };
        out.push_str(&format!("{indent}{line}{forces}\n"));
    }
    out
}

/// `text` with its control characters escaped: what a provisioner put in a
/// value never moves the cursor or recolours the terminal.
fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugin::{AttributeChange, Change};

    fn change(path: &str, before: Option<&str>, after: Option<&str>, sensitive: bool) -> AttributeChange {
        AttributeChange {
            path: path.into(),
            before: before.map(String::from),
            after: after.map(String::from),
            sensitive,
            forces_replacement: false,
        }
    }

    #[test]
    fn a_plans_secrets_are_masked_before_the_diff_is_kept() {
        let secrets = Secrets::new();
        secrets.add("hunter2-secret");
        let plan = ResourcePlan {
            change: Change::Update,
            changes: vec![
                change("size", Some("\"small\""), Some("\"large\""), false),
                change("api_key", Some("\"k-old\""), Some("\"k-new\""), true),
                change("auth.password", None, Some("\"plain\""), false),
                change("url", None, Some("\"postgres://u:hunter2-secret@h\""), false),
                AttributeChange { forces_replacement: true, ..change("zone", Some("\"a\""), Some("\"b\""), false) },
            ],
        };
        let JobDiff::Changes(kept) = planned(&plan, &secrets) else { panic!("a plan's diff is its changes") };
        let text = serde_json::to_string(&kept).unwrap();
        for secret in ["k-old", "k-new", "plain", "hunter2-secret"] {
            assert!(!text.contains(secret), "{secret} kept: {text}");
        }
        assert_eq!((kept[1].before.as_deref(), kept[1].after.as_deref(), kept[1].sensitive), (Some(MASKED), Some(MASKED), true));
        assert_eq!((kept[2].before.as_deref(), kept[2].sensitive), (None, true), "nothing before stays nothing");
        assert_eq!(kept[3].after.as_deref(), Some("\"postgres://u:(sensitive)@h\""));
        assert_eq!(
            render(&JobDiff::Changes(kept), "  "),
            "  ~ size = \"small\" -> \"large\"\n  ~ api_key = (sensitive) -> (sensitive)\n  + auth.password = (sensitive)\n\
             \x20 + url = \"postgres://u:(sensitive)@h\"\n  ~ zone = \"a\" -> \"b\" (forces replacement)\n"
        );
    }

    #[test]
    fn a_destroy_shows_the_attributes_going_away_masked() {
        let prior = ResourceRecord {
            plugin: "aws".into(),
            kind: "db".into(),
            state: json!({}),
            outputs: json!({}),
            attributes: json!({ "engine": "postgres", "master_password": "(sensitive)", "api_key": "k-1", "tags": { "a": 1 } }),
            depends_on: Vec::new(),
            sensitive: vec!["api_key".into()],
            sensitive_outputs: Vec::new(),
            serial: 1,
            run_id: "r1".into(),
            updated_ms: 0,
        };
        let diff = destroyed(&prior, &Secrets::new());
        assert_eq!(
            render(&diff, ""),
            "- engine = \"postgres\"\n- master_password = (sensitive)\n- api_key = (sensitive)\n- tags = {\"a\":1}\n"
        );
        assert!(!serde_json::to_string(&diff).unwrap().contains("k-1"));
    }

    #[test]
    fn no_diff_known_is_not_no_changes() {
        assert_eq!(render(&JobDiff::NotComputed(NO_PREVIEW.into()), "  "), format!("  changes not known: {NO_PREVIEW}\n"));
        assert_eq!(render(&JobDiff::Changes(Vec::new()), "  "), "  no attribute changes\n");
    }

    #[test]
    fn control_characters_in_a_value_are_escaped() {
        let diff = JobDiff::Changes(vec![AttributeDiff {
            path: "motd".into(),
            before: None,
            after: Some("\"hi\u{1b}[2J\nthere\"".into()),
            sensitive: false,
            forces_replacement: false,
        }]);
        assert_eq!(render(&diff, ""), "+ motd = \"hi\\u{1b}[2J\\nthere\"\n");
    }
}
