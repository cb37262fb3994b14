//! Plans as people read them, the way `terraform plan` shows one: `+`
//! create, `~` update, `-/+` replace, `-` delete, with the attributes that
//! change. `stackpipe plan` prints whole plans; a gate shows the one change
//! it holds back.

use super::stack_job::{PlannedChange, UNKNOWN};
use crate::plugin::Change;

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
        let forces = if c.forces_replacement { " # forces replacement" } else { "" };
        let line = match (&c.before, &c.after) {
            (None, Some(_)) => format!("      + {} = {}{forces}", c.path, show(&c.after)),
            (Some(_), None) => format!("      - {} = {}{forces}", c.path, show(&c.before)),
            _ => format!("      ~ {} = {} -> {}{forces}", c.path, show(&c.before), show(&c.after)),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("    }\n");
    out
}

/// A whole plan, by environment, with the totals.
pub fn render_plan(planned: &[PlannedChange]) -> String {
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
    if add + change + destroy == 0 {
        out.push_str("\nNo changes. The infrastructure matches the pipeline.\n");
    } else {
        out.push_str(&format!("\nPlan: {add} to add, {change} to change, {destroy} to destroy.\n"));
    }
    out
}
