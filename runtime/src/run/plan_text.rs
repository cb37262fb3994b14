//! Plans as people read them, the way `terraform plan` shows one: `+`
//! create, `~` update, `-/+` replace, `-` delete, with the attributes that
//! change. `stackpipe plan` prints whole plans; a gate shows the one change
//! it holds back.

use crate::plugin::{Change, ResourcePlan};

/// A plan as JSON (`stackpipe plan --json`, the server's plans): one
/// object per node and environment, secret values masked. A value known
/// only after apply is `"after": null, "after_unknown": true` (as in
/// `terraform show -json`), never the placeholder text as if it were the value.
pub fn plan_document(planned: &[PlannedChange]) -> serde_json::Value {
    let masked = |sensitive: bool, v: &Option<String>| if sensitive && v.is_some() { Some(crate::secrets::MASKED.to_string()) } else { v.clone() };
    planned
        .iter()
        .map(|p| {
            serde_json::json!({
                "environment": p.environment, "resource": p.node, "type": p.type_name,
                "change": crate::plugin::change_name(p.plan.change), "policy": p.policy,
                "changes": p.plan.changes.iter().map(|c| serde_json::json!({
                    "path": c.path,
                    "before": masked(c.sensitive, &c.before),
                    "after": if p.after_unknown(&c.path) { None } else { masked(c.sensitive, &c.after) },
                    "after_unknown": p.after_unknown(&c.path),
                    "sensitive": c.sensitive, "forces_replacement": c.forces_replacement })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

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
    /// Text attributes whose change the provisioner shows by digest or on
    /// one line (a file's `content`): the texts themselves, before and
    /// after, shown as a line diff (see [`text_changes`]).
    pub texts: Vec<TextChange>,
    /// The attributes (top-level names) whose new value is known only after
    /// apply: they use an output of a resource that changes first (see
    /// `known_after_apply`). Their changes' `after` is [`UNKNOWN`].
    pub unknown: Vec<String>,
}

impl PlannedChange {
    /// `node`'s planned change in `environment`: every new value known, no
    /// text diffs yet.
    pub fn new(environment: &str, node: &stackpipe_dsl::ResourceNode, plan: ResourcePlan, policy: Option<String>) -> Self {
        PlannedChange {
            environment: environment.to_string(),
            node: node.name.clone(),
            type_name: node.type_name(),
            plan,
            policy,
            texts: Vec::new(),
            unknown: Vec::new(),
        }
    }

    /// Whether the new value of the attribute at `path` is known only after apply.
    pub fn after_unknown(&self, path: &str) -> bool {
        super::known_after_apply::is_unknown(&self.unknown, path)
    }
}

/// A text attribute before and after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChange {
    pub path: String,
    pub before: String,
    pub after: String,
}

/// The text changes of `plan`: each change to a top-level attribute that
/// is not sensitive and was a string before (`prior`, as last applied,
/// secrets masked) and is one now (`desired`, masked too), when the texts
/// differ and either has more than one line or the provisioner shows
/// something other than the text itself (a digest).
pub fn text_changes(plan: &ResourcePlan, prior: Option<&serde_json::Value>, desired: &serde_json::Value) -> Vec<TextChange> {
    let Some(prior) = prior else { return Vec::new() };
    let mut out = Vec::new();
    for c in plan.changes.iter().filter(|c| !c.sensitive && !c.path.contains('.') && !c.path.contains('[')) {
        let (Some(before), Some(after)) = (prior.get(&c.path).and_then(|v| v.as_str()), desired.get(&c.path).and_then(|v| v.as_str()))
        else {
            continue;
        };
        if before == after || before == super::MASKED || after == super::MASKED {
            continue;
        }
        let shown_as_text = c.after.as_deref() == serde_json::to_string(after).ok().as_deref();
        if before.contains('\n') || after.contains('\n') || !shown_as_text {
            out.push(TextChange { path: c.path.clone(), before: before.to_string(), after: after.to_string() });
        }
    }
    out
}

/// Lines of context kept around each changed line of a text diff.
const CONTEXT: usize = 2;

/// A text attribute's change as a line diff, heredoc style, unchanged runs
/// beyond [`CONTEXT`] lines summarized.
fn render_text(t: &TextChange, forces: &str, out: &mut String) {
    use similar::{ChangeTag, TextDiff};
    let hidden = |n: usize, out: &mut String| {
        if n > 0 {
            out.push_str(&format!("            # ({n} unchanged line{} hidden)\n", plural(n)));
        }
    };
    out.push_str(&format!("      ~ {} = <<-EOT{forces}\n", t.path));
    let diff = TextDiff::from_lines(&t.before, &t.after);
    // Where the last group shown ended, in the old text's lines.
    let mut shown_to = 0;
    for group in diff.grouped_ops(CONTEXT) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else { continue };
        hidden(first.old_range().start.saturating_sub(shown_to), out);
        shown_to = last.old_range().end;
        for op in &group {
            for change in diff.iter_changes(op) {
                let sign = match change.tag() {
                    ChangeTag::Equal => " ",
                    ChangeTag::Delete => "-",
                    ChangeTag::Insert => "+",
                };
                out.push_str(&format!("          {sign} {}\n", change.value().trim_end_matches('\n')));
            }
        }
    }
    hidden(diff.old_slices().len().saturating_sub(shown_to), out);
    out.push_str("        EOT\n");
}

/// A list or a map changed in place, element by element (key by key):
/// what is the same is counted, not printed.
fn render_structured(path: &str, before: &serde_json::Value, after: &serde_json::Value, forces: &str, out: &mut String) -> bool {
    use serde_json::Value;
    match (before, after) {
        (Value::Array(b), Value::Array(a)) => {
            let old: Vec<String> = b.iter().map(Value::to_string).collect();
            let new: Vec<String> = a.iter().map(Value::to_string).collect();
            let old_refs: Vec<&str> = old.iter().map(String::as_str).collect();
            let new_refs: Vec<&str> = new.iter().map(String::as_str).collect();
            let diff = similar::capture_diff_slices(similar::Algorithm::Myers, &old_refs, &new_refs);
            out.push_str(&format!("      ~ {path} = [{forces}\n"));
            let mut same = 0;
            let flush = |same: &mut usize, out: &mut String| {
                if *same > 0 {
                    out.push_str(&format!("            # ({same} unchanged element{} hidden)\n", plural(*same)));
                    *same = 0;
                }
            };
            for op in diff {
                for change in op.iter_changes(&old_refs, &new_refs) {
                    match change.tag() {
                        similar::ChangeTag::Equal => same += 1,
                        similar::ChangeTag::Delete => {
                            flush(&mut same, out);
                            out.push_str(&format!("          - {},\n", change.value()));
                        }
                        similar::ChangeTag::Insert => {
                            flush(&mut same, out);
                            out.push_str(&format!("          + {},\n", change.value()));
                        }
                    }
                }
            }
            flush(&mut same, out);
            out.push_str("        ]\n");
            true
        }
        (Value::Object(b), Value::Object(a)) => {
            out.push_str(&format!("      ~ {path} = {{{forces}\n"));
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            let mut same = 0;
            for k in keys {
                match (b.get(k), a.get(k)) {
                    (Some(x), Some(y)) if x == y => same += 1,
                    (Some(x), Some(y)) => out.push_str(&format!("          ~ {k} = {x} -> {y}\n")),
                    (Some(x), None) => out.push_str(&format!("          - {k} = {x}\n")),
                    (None, Some(y)) => out.push_str(&format!("          + {k} = {y}\n")),
                    (None, None) => {}
                }
            }
            if same > 0 {
                out.push_str(&format!("            # ({same} unchanged attribute{} hidden)\n", plural(same)));
            }
            out.push_str("        }\n");
            true
        }
        _ => false,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
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
        if let Some(t) = p.texts.iter().find(|t| t.path == c.path) {
            render_text(t, forces, &mut out);
            continue;
        }
        if !c.sensitive && !p.after_unknown(&c.path) {
            let parse = |v: &Option<String>| v.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok());
            if let (Some(b), Some(a)) = (parse(&c.before), parse(&c.after)) {
                if render_structured(&c.path, &b, &a, forces, &mut out) {
                    continue;
                }
            }
        }
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
            texts: Vec::new(),
            unknown: Vec::new(),
        }
    }

    fn change(path: &str, before: &str, after: &str) -> AttributeChange {
        AttributeChange {
            path: path.into(),
            before: Some(before.into()),
            after: Some(after.into()),
            sensitive: false,
            forces_replacement: false,
        }
    }

    #[test]
    fn text_is_a_line_diff_and_lists_and_maps_go_element_by_element() {
        let before: String = (1..=10).map(|i| format!("line {i}\n")).collect();
        let after = before.replace("line 5\n", "line five\n");
        let mut p = planned("f", Change::Update, "");
        p.plan.changes = vec![
            change("content", "\"sha256:aaa\"", "\"sha256:bbb\""),
            change("ingress", r#"[{"port":80},{"port":443},{"port":22}]"#, r#"[{"port":80},{"port":8443},{"port":22}]"#),
            change("tags", r#"{"team":"a","env":"dev","keep":1}"#, r#"{"team":"b","env":"dev","new":true}"#),
            change("size", "1", "2"),
        ];
        let prior = serde_json::json!({ "content": before });
        let desired = serde_json::json!({ "content": after });
        p.texts = text_changes(&p.plan, Some(&prior), &desired);
        let expected = r#"  # f (test.thing) will be updated in place
  ~ test.thing "f" {
      ~ content = <<-EOT
            # (2 unchanged lines hidden)
            line 3
            line 4
          - line 5
          + line five
            line 6
            line 7
            # (3 unchanged lines hidden)
        EOT
      ~ ingress = [
            # (1 unchanged element hidden)
          - {"port":443},
          + {"port":8443},
            # (1 unchanged element hidden)
        ]
      ~ tags = {
          - keep = 1
          + new = true
          ~ team = "a" -> "b"
            # (1 unchanged attribute hidden)
        }
      ~ size = 1 -> 2
    }
"#;
        assert_eq!(render_change(&p), expected);
        // A secret is never diffed as text.
        let mut secret = change("content", "\"sha256:aaa\"", "\"sha256:bbb\"");
        secret.sensitive = true;
        p.plan.changes = vec![secret];
        assert!(text_changes(&p.plan, Some(&prior), &desired).is_empty());
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
