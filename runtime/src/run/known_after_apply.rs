//! What a plan cannot know before anything is applied, shown the way
//! Terraform shows it: `(known after apply)`.
//!
//! The rule: the outputs of a resource the plan creates or replaces are
//! unknown; of one it updates in place, all but those its type's outputs
//! schema marks [`KEPT_ON_UPDATE`](crate::plugin::KEPT_ON_UPDATE) (an id); of
//! one it leaves alone, none. An attribute whose value uses an unknown
//! output is unknown, and its resource is planned as changing (an update,
//! or what its provisioner plans if that is more: a create or a replace),
//! with that attribute `(known after apply)`. Its own outputs are then
//! unknown in turn, for its dependents.

use serde_json::Value;

use super::plan_text::UNKNOWN;
use crate::plugin::{AttributeChange, CallContext, Change, Credential, PluginError, ProvisionerSession, ResourcePlan};

/// What a plan makes known of a resource's outputs to its dependents.
#[derive(Debug, Clone, PartialEq)]
pub enum KnownOutputs {
    /// All of them: the resource is not to change.
    All(Value),
    /// Only these (the ones kept on update); the others are unknown.
    Kept(Value),
    /// None: the resource is to be created or replaced.
    None,
}

/// What is known before apply of the outputs of a resource planned to
/// `change`, whose outputs are `outputs` now (none: it does not exist) and
/// whose type keeps `kept` outputs on an update in place.
pub fn known_outputs(change: Change, outputs: Option<Value>, kept: &[String]) -> KnownOutputs {
    match (change, outputs) {
        (Change::NoOp, Some(outputs)) => KnownOutputs::All(outputs),
        (Change::Update, Some(Value::Object(outputs))) => {
            KnownOutputs::Kept(Value::Object(outputs.into_iter().filter(|(k, _)| kept.contains(k)).collect()))
        }
        _ => KnownOutputs::None,
    }
}

/// The value a resource's unknown attribute is planned with: its value now,
/// when it has one that is not masked. The provisioner then plans every
/// other attribute exactly, and sees no change in this one, which the
/// caller marks as changing. `None`: there is nothing to stand in (the
/// resource is new, the attribute is new or secret), and the placeholder
/// [`UNKNOWN`] is planned with instead.
fn stand_in<'a>(attribute: &str, prior: Option<&'a Value>, prior_sensitive: &[String]) -> Option<&'a Value> {
    if prior_sensitive.iter().any(|s| s == attribute) {
        return None;
    }
    prior?.get(attribute)
}

/// The top-level attribute an attribute change's dotted path is in.
fn top(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

/// What [`plan`] gives: the plan, and what it could not find out, to log.
pub struct UnknownPlan {
    pub plan: ResourcePlan,
    pub note: Option<String>,
}

/// Plans a resource some of whose attributes (`unknown`, top-level names)
/// are known only after apply; `desired` holds [`UNKNOWN`] for each.
///
/// What the provisioner plans from the placeholder is never taken for the
/// plan: it would show what the text `(known after apply)` makes (a hash of
/// it), or a change the real value does not make. The attributes are
/// planned with their values now standing in (see [`stand_in`]), so every
/// other attribute's change is exact; each unknown attribute is then one
/// change to `(known after apply)`, and the resource changes (an update at
/// least). Whether a new value forces a replacement, only the provisioner
/// knows: that alone (and whether it is secret) is taken from a plan with
/// the placeholder, a second one when the first had stand-ins.
#[allow(clippy::too_many_arguments)]
pub async fn plan(
    session: &mut ProvisionerSession<'_>,
    ctx: &CallContext,
    kind: &str,
    state: Option<&Value>,
    desired: &Value,
    unknown: &[String],
    prior: Option<&Value>,
    prior_sensitive: &[String],
    cred: Option<&Credential>,
) -> Result<UnknownPlan, PluginError> {
    let mut standing_in = desired.clone();
    let mut stood_in = Vec::new();
    if let Value::Object(attrs) = &mut standing_in {
        for a in unknown {
            if let Some(v) = stand_in(a, prior, prior_sensitive) {
                attrs.insert(a.clone(), v.clone());
                stood_in.push(a.as_str());
            }
        }
    }
    let base = session.plan(ctx, kind, state, &standing_in, cred).await?;
    // What the provisioner says of an unknown attribute that changes:
    // from the base plan where the placeholder was planned, else from a
    // plan with the placeholder (a resource to create needs none).
    let mut said: Vec<AttributeChange> = base.changes.iter().filter(|c| is_unknown(unknown, &c.path)).cloned().collect();
    let mut note = None;
    if !stood_in.is_empty() && state.is_some() {
        match session.plan(ctx, kind, state, desired, cred).await {
            Ok(probe) => said.extend(probe.changes.into_iter().filter(|c| stood_in.contains(&top(&c.path)))),
            Err(e) => {
                note = Some(format!(
                    "could not tell whether a new value of {} forces a replacement: {e}",
                    stood_in.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
                ))
            }
        }
    }
    Ok(UnknownPlan { plan: settle(base, &said, unknown, prior), note })
}

/// The plan of a resource with unknown attributes, from the provisioner's
/// plan of it with stand-ins (`base`) and what it said of the unknown
/// attributes changing (`said`): each unknown attribute one change to
/// `(known after apply)`, and the resource changing.
fn settle(base: ResourcePlan, said: &[AttributeChange], unknown: &[String], prior: Option<&Value>) -> ResourcePlan {
    let mut changes: Vec<AttributeChange> =
        base.changes.into_iter().filter(|c| !is_unknown(unknown, &c.path)).collect();
    let mut forced = false;
    for a in unknown {
        let about = || said.iter().filter(|c| top(&c.path) == a);
        let forces_replacement = about().any(|c| c.forces_replacement);
        forced |= forces_replacement;
        // Its value now as the provisioner shows it (a hash of a long
        // text, say), else as the pipeline gave it.
        let shown = said.iter().find(|c| c.path == *a).map(|c| c.before.clone());
        changes.push(AttributeChange {
            path: a.clone(),
            before: shown.unwrap_or_else(|| prior.and_then(|p| p.get(a)).map(Value::to_string)),
            after: Some(Value::String(UNKNOWN.into()).to_string()),
            sensitive: about().any(|c| c.sensitive),
            forces_replacement,
        });
    }
    changes.sort_by(|x, y| x.path.cmp(&y.path));
    let change = match base.change {
        Change::Create | Change::Replace | Change::Delete => base.change,
        Change::Update | Change::NoOp if forced => Change::Replace,
        Change::Update | Change::NoOp => Change::Update,
    };
    ResourcePlan { change, changes }
}

/// Whether `path` (an attribute, or a dotted path into one) is in one of
/// the `unknown` attributes.
pub fn is_unknown(unknown: &[String], path: &str) -> bool {
    unknown.iter().any(|u| u == top(path))
}

/// The attributes of a resource, as a plan resolves them, with those known
/// only after apply.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub attributes: Value,
    /// Top-level attribute names whose value is [`UNKNOWN`] in `attributes`.
    pub unknown: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(path: &str, before: Option<&str>, after: Option<&str>, forces: bool) -> AttributeChange {
        AttributeChange {
            path: path.into(),
            before: before.map(str::to_string),
            after: after.map(str::to_string),
            sensitive: false,
            forces_replacement: forces,
        }
    }

    #[test]
    fn outputs_of_a_change_are_unknown_but_those_kept_on_update() {
        let now = json!({ "id": "a-1", "inputs": { "v": 1 } });
        assert_eq!(known_outputs(Change::NoOp, Some(now.clone()), &[]), KnownOutputs::All(now.clone()));
        assert_eq!(known_outputs(Change::Update, Some(now.clone()), &["id".into()]), KnownOutputs::Kept(json!({ "id": "a-1" })));
        assert_eq!(known_outputs(Change::Update, Some(now.clone()), &[]), KnownOutputs::Kept(json!({})));
        assert_eq!(known_outputs(Change::Replace, Some(now.clone()), &["id".into()]), KnownOutputs::None);
        assert_eq!(known_outputs(Change::Create, None, &["id".into()]), KnownOutputs::None);
    }

    #[test]
    fn an_unknown_attribute_is_one_change_to_known_after_apply_and_the_resource_changes() {
        let prior = json!({ "content": "{\"sha\":\"ab\"}", "path": "a" });
        // The stand-in was the value now: the provisioner planned no change.
        let plan = settle(ResourcePlan { change: Change::NoOp, changes: vec![] }, &[], &["content".into()], Some(&prior));
        assert_eq!(plan.change, Change::Update);
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].path, "content");
        assert_eq!(plan.changes[0].before.as_deref(), Some("\"{\\\"sha\\\":\\\"ab\\\"}\""));
        assert_eq!(plan.changes[0].after.as_deref(), Some("\"(known after apply)\""));
        assert!(!plan.changes[0].forces_replacement);
    }

    #[test]
    fn what_the_placeholder_made_is_never_shown_and_a_forced_replacement_is_kept() {
        let base = ResourcePlan {
            change: Change::Update,
            changes: vec![
                change("size", Some("1"), Some("2"), false),
                // Planned from the placeholder: not what the value will be.
                change("subnet.id", Some("\"s-1\""), Some("\"(known after apply)\""), true),
                change("subnet.sha", Some("\"x\""), Some("\"hash of the placeholder\""), false),
            ],
        };
        let said: Vec<_> = base.changes[1..].to_vec();
        let plan = settle(base, &said, &["subnet".into()], Some(&json!({ "subnet": { "id": "s-1" }, "size": 1 })));
        assert_eq!(plan.change, Change::Replace);
        let paths: Vec<_> = plan.changes.iter().map(|c| (c.path.as_str(), c.forces_replacement)).collect();
        assert_eq!(paths, [("size", false), ("subnet", true)]);
        assert_eq!(plan.changes[1].after.as_deref(), Some("\"(known after apply)\""));
    }

    #[test]
    fn the_value_now_is_shown_as_the_provisioner_shows_it() {
        let said = [change("content", Some("\"sha256:ab\""), Some("\"sha256:of the placeholder\""), false)];
        let plan = settle(ResourcePlan { change: Change::NoOp, changes: vec![] }, &said, &["content".into()], Some(&json!({ "content": "x" })));
        assert_eq!(plan.changes[0].before.as_deref(), Some("\"sha256:ab\""));
        assert_eq!(plan.changes[0].after.as_deref(), Some("\"(known after apply)\""));
    }

    #[test]
    fn a_create_stays_a_create() {
        let base = ResourcePlan { change: Change::Create, changes: vec![change("a", None, Some("\"(known after apply)\""), false)] };
        let plan = settle(base.clone(), &base.changes, &["a".into()], None);
        assert_eq!(plan.change, Change::Create);
        assert_eq!(plan.changes[0].before, None);
    }

    #[test]
    fn stand_ins_are_values_now_that_are_not_secret() {
        let prior = json!({ "a": 1, "pw": "(sensitive)" });
        assert_eq!(stand_in("a", Some(&prior), &["pw".into()]), Some(&json!(1)));
        assert_eq!(stand_in("pw", Some(&prior), &["pw".into()]), None);
        assert_eq!(stand_in("new", Some(&prior), &[]), None);
        assert_eq!(stand_in("a", None, &[]), None);
    }
}
