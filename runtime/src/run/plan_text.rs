//! Plans as people read them, the way `terraform plan` shows one: `+`
//! create, `~` update, `-/+` replace, `-` delete, with the attributes that
//! change. `stackpipe plan` prints whole plans; a gate shows the one change
//! it holds back.

use crate::plugin::{Change, ResourcePlan};

/// An output not known until its resource is applied (plan mode).
pub const UNKNOWN: &str = "(known after apply)";

/// One node's planned change, for `stackpipe plan` and for a gate that
/// holds it back.
#[derive(Debug, Clone)]
pub struct PlannedChange {
    pub environment: String,
    pub node: String,
    pub type_name: String,
    pub plan: ResourcePlan,
    pub policy: Option<String>,
    /// The attributes (top-level names) whose new value is known only after
    /// apply: they use an output of a resource that changes first (see
    /// `known_after_apply`). Their changes' `after` is [`UNKNOWN`].
    pub unknown: Vec<String>,
}

impl PlannedChange {
    /// Whether the new value of the attribute at `path` is known only after apply.
    pub fn after_unknown(&self, path: &str) -> bool {
        super::known_after_apply::is_unknown(&self.unknown, path)
    }
}

/// One resource's change; empty for no change.
pub fn render_change(p: &PlannedChange) -> String {
    let (sign, verb) = match p.plan.change {
        Change::Create => ("+", "will be created"),
        Change::Update => ("~", "will be updated in place"),
        Change::Replace => ("-/+", "must be replaced"),
        Change::Delete => ("-", "will be destroyed"),
        Change::NoOp => return String::new(),
    };
    let mut out = format!("  # {} ({}) {verb}\n", p.node, p.type_name);
    if let Some(note) = &p.policy {
        out.push_str(&format!("  # {note}\n"));
    }
    out.push_str(&format!("  {sign} {} \"{}\" {{\n", p.type_name, p.node));
    for c in &p.plan.changes {
        let show = |v: &Option<String>| match v {
            _ if c.sensitive => "(sensitive value)".to_string(),
            Some(v) if v.trim_matches('"') == UNKNOWN => UNKNOWN.to_string(),
            Some(v) => v.clone(),
            None => "null".to_string(),
        };
        // Unknown, whatever a secret's new value would show.
        let after = if p.after_unknown(&c.path) { UNKNOWN.to_string() } else { show(&c.after) };
        let forces = if c.forces_replacement { " # forces replacement" } else { "" };
        let line = match (&c.before, &c.after) {
            (None, Some(_)) => format!("      + {} = {after}{forces}", c.path),
            (Some(_), None) => format!("      - {} = {}{forces}", c.path, show(&c.before)),
            _ => format!("      ~ {} = {} -> {after}{forces}", c.path, show(&c.before)),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("    }\n");
    out
}

/// A whole plan, by environment, with the totals; or, for a plan that could
/// not be finished, why (`unfinished`) instead of totals that would claim
/// there is nothing more to change.
pub fn render_plan(planned: &[PlannedChange], unfinished: Option<&str>) -> String {
    let mut out = String::new();
    let mut env = "";
    let (mut add, mut change, mut destroy) = (0, 0, 0);
    for p in planned {
        if p.environment != env {
            env = &p.environment;
            out.push_str(&format!("\nenvironment {env}\n"));
        }
        match p.plan.change {
            Change::Create => add += 1,
            Change::Update => change += 1,
            Change::Replace => {
                add += 1;
                destroy += 1
            }
            Change::Delete => destroy += 1,
            Change::NoOp => {}
        }
        out.push_str(&render_change(p));
    }
    if let Some(why) = unfinished {
        out.push_str(&format!("\nPlan incomplete: {why}.\n"));
    } else if add + change + destroy == 0 {
        out.push_str("\nNo changes. The infrastructure matches the pipeline.\n");
    } else {
        out.push_str(&format!("\nPlan: {add} to add, {change} to change, {destroy} to destroy.\n"));
    }
    out
}

/// What changed between two plans of the same pipeline, one line per
/// resource whose planned change is not what it was: what `watch` prints
/// above each new plan. Empty when the plans are the same.
pub fn render_plan_diff(before: &[PlannedChange], now: &[PlannedChange]) -> String {
    use std::collections::BTreeMap;
    let key = |p: &PlannedChange| (p.environment.clone(), p.node.clone());
    let old: BTreeMap<_, _> = before.iter().map(|p| (key(p), p)).collect();
    let new: BTreeMap<_, _> = now.iter().map(|p| (key(p), p)).collect();
    let mut out = String::new();
    for (k, p) in &new {
        let line = match old.get(k) {
            None if p.plan.change == Change::NoOp => continue,
            None => format!("{} (new in the pipeline)", summary(p)),
            Some(q) if same_plan(q, p) => continue,
            Some(q) if q.plan.change == p.plan.change => {
                format!("{} (other attributes than before)", summary(p))
            }
            Some(q) => format!("{} (was: {})", summary(p), verb(q.plan.change)),
        };
        out.push_str(&format!("  {line}\n"));
    }
    for (k, q) in &old {
        if !new.contains_key(k) {
            out.push_str(&format!(
                "  {}/{}: no longer in the plan (was: {})\n",
                q.environment,
                q.node,
                verb(q.plan.change)
            ));
        }
    }
    out
}

fn summary(p: &PlannedChange) -> String {
    let sign = match p.plan.change {
        Change::Create => "+",
        Change::Update => "~",
        Change::Replace => "-/+",
        Change::Delete => "-",
        Change::NoOp => "=",
    };
    format!("{sign} {}/{} ({}): {}", p.environment, p.node, p.type_name, verb(p.plan.change))
}

fn verb(c: Change) -> &'static str {
    match c {
        Change::Create => "create",
        Change::Update => "update in place",
        Change::Replace => "replace",
        Change::Delete => "destroy",
        Change::NoOp => "no change",
    }
}

fn same_plan(a: &PlannedChange, b: &PlannedChange) -> bool {
    a.plan.change == b.plan.change
        && a.policy == b.policy
        && a.plan.changes.len() == b.plan.changes.len()
        && a.plan.changes.iter().zip(&b.plan.changes).all(|(x, y)| {
            x.path == y.path
                && x.before == y.before
                && x.after == y.after
                && x.forces_replacement == y.forces_replacement
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{AttributeChange, ResourcePlan};

    fn planned(node: &str, change: Change, after: &str) -> PlannedChange {
        PlannedChange {
            environment: "dev".into(),
            node: node.into(),
            type_name: "test.thing".into(),
            plan: ResourcePlan {
                change,
                changes: vec![AttributeChange {
                    path: "size".into(),
                    before: None,
                    after: Some(after.into()),
                    sensitive: false,
                    forces_replacement: false,
                }],
            },
            policy: None,
            unknown: Vec::new(),
        }
    }

    #[test]
    fn the_same_plan_twice_has_no_difference() {
        let p = vec![planned("a", Change::Create, "1"), planned("b", Change::NoOp, "1")];
        assert_eq!(render_plan_diff(&p, &p), "");
    }

    #[test]
    fn a_diff_names_new_changed_and_gone_resources() {
        let before =
            vec![planned("a", Change::Create, "1"), planned("b", Change::NoOp, "1"), planned("c", Change::Update, "1")];
        let now = vec![
            planned("a", Change::Create, "2"),
            planned("b", Change::Update, "1"),
            planned("d", Change::Create, "1"),
            planned("e", Change::NoOp, "1"),
        ];
        assert_eq!(
            render_plan_diff(&before, &now),
            "  + dev/a (test.thing): create (other attributes than before)\n\
             \x20 ~ dev/b (test.thing): update in place (was: no change)\n\
             \x20 + dev/d (test.thing): create (new in the pipeline)\n\
             \x20 dev/c: no longer in the plan (was: update in place)\n"
        );
    }
}
