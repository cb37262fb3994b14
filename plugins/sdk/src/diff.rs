//! Plans from two JSON objects: what a resource's attributes were and what
//! they should be.
//!
//! ```
//! use stackpipe_plugin_sdk::{diff, Change, serde_json::json};
//! let before = json!({ "name": "a", "tags": { "env": "dev" } });
//! let after = json!({ "name": "b", "tags": { "env": "prod" } });
//! let plan = diff::plan(Some(&before), &after, &diff::Rules { immutable: &["name"], sensitive: &[] });
//! assert_eq!(plan.change, Change::Replace);
//! assert_eq!(plan.changes[1].path, "tags.env");
//! ```

use serde_json::{Map, Value};

use crate::types::{AttributeChange, Change, ResourcePlan};

/// Which attributes cannot change in place, and which are secret. A name
/// matches its own path and every path under it (`tags` matches `tags.env`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules<'a> {
    pub immutable: &'a [&'a str],
    pub sensitive: &'a [&'a str],
}

fn matches(names: &[impl AsRef<str>], path: &str) -> bool {
    names.iter().any(|n| {
        let n = n.as_ref();
        path == n || (path.starts_with(n) && path[n.len()..].starts_with('.'))
    })
}

/// The attribute changes from `before` to `after`, in path order. Objects are
/// compared key by key (paths `tags.env`); any other value (lists included)
/// is compared whole. `before`/`after` of a change are JSON texts, none for an
/// attribute that is not there.
pub fn changes(
    before: &Map<String, Value>,
    after: &Map<String, Value>,
    immutable: &[impl AsRef<str>],
    sensitive: &[impl AsRef<str>],
) -> Vec<AttributeChange> {
    let mut out = Vec::new();
    diff_objects("", before, after, immutable, sensitive, &mut out);
    out
}

fn diff_objects(
    prefix: &str,
    before: &Map<String, Value>,
    after: &Map<String, Value>,
    immutable: &[impl AsRef<str>],
    sensitive: &[impl AsRef<str>],
    out: &mut Vec<AttributeChange>,
) {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match (before.get(key), after.get(key)) {
            (Some(Value::Object(b)), Some(Value::Object(a))) => diff_objects(&path, b, a, immutable, sensitive, out),
            (b, a) if b == a => {}
            (b, a) => out.push(AttributeChange {
                before: b.map(Value::to_string),
                after: a.map(Value::to_string),
                sensitive: matches(sensitive, &path),
                forces_replacement: matches(immutable, &path),
                path,
            }),
        }
    }
}

/// The change kind: create without a prior, no-op without changes, replace
/// when a change forces it, update otherwise.
pub fn change_kind(prior_exists: bool, changes: &[AttributeChange]) -> Change {
    if !prior_exists {
        Change::Create
    } else if changes.is_empty() {
        Change::NoOp
    } else if changes.iter().any(|c| c.forces_replacement) {
        Change::Replace
    } else {
        Change::Update
    }
}

/// The plan from `before` (none: not created yet) to `after`. Values that are
/// not objects count as `{}`. On create, every attribute is a change.
pub fn plan(before: Option<&Value>, after: &Value, rules: &Rules) -> ResourcePlan {
    let empty = Map::new();
    let object = |v: Option<&Value>| match v {
        Some(Value::Object(m)) => m.clone(),
        _ => empty.clone(),
    };
    let mut changes = changes(&object(before), &object(Some(after)), rules.immutable, rules.sensitive);
    if before.is_none() {
        // Nothing to replace yet.
        changes.iter_mut().for_each(|c| c.forces_replacement = false);
    }
    ResourcePlan { change: change_kind(before.is_some(), &changes), changes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NONE: &[&str] = &[];

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn dotted_paths_sorted_and_json_values() {
        let c = changes(
            &obj(json!({ "b": 1, "tags": { "env": "dev", "team": "x" }, "list": [1] })),
            &obj(json!({ "a": "new", "tags": { "env": "prod", "team": "x" }, "list": [1, 2] })),
            NONE,
            NONE,
        );
        let got: Vec<(&str, Option<&str>, Option<&str>)> =
            c.iter().map(|c| (c.path.as_str(), c.before.as_deref(), c.after.as_deref())).collect();
        assert_eq!(
            got,
            vec![
                ("a", None, Some("\"new\"")),
                ("b", Some("1"), None),
                ("list", Some("[1]"), Some("[1,2]")),
                ("tags.env", Some("\"dev\""), Some("\"prod\"")),
            ]
        );
        assert!(c.iter().all(|c| !c.sensitive && !c.forces_replacement));
    }

    #[test]
    fn object_replaced_by_scalar_is_one_change() {
        let c = changes(&obj(json!({ "t": { "a": 1 } })), &obj(json!({ "t": 2 })), NONE, NONE);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].path.as_str(), c[0].before.as_deref()), ("t", Some("{\"a\":1}")));
    }

    #[test]
    fn immutable_and_sensitive_match_paths_and_what_is_under_them() {
        let c = changes(
            &obj(json!({ "name": "a", "tags": { "env": "dev" }, "password": "x", "names": 1 })),
            &obj(json!({ "name": "b", "tags": { "env": "prod" }, "password": "y", "names": 2 })),
            &["name", "tags"],
            &["password"],
        );
        let flags: Vec<(&str, bool, bool)> =
            c.iter().map(|c| (c.path.as_str(), c.forces_replacement, c.sensitive)).collect();
        assert_eq!(
            flags,
            vec![("name", true, false), ("names", false, false), ("password", false, true), ("tags.env", true, false)]
        );
    }

    #[test]
    fn change_kinds() {
        let rules = Rules { immutable: &["name"], sensitive: &[] };
        let a = json!({ "name": "a", "size": 1 });
        let created = plan(None, &a, &rules);
        assert_eq!(created.change, Change::Create);
        assert_eq!(created.changes.len(), 2);
        assert!(created.changes.iter().all(|c| !c.forces_replacement && c.before.is_none()));
        assert_eq!(plan(Some(&a), &a, &rules).change, Change::NoOp);
        assert!(plan(Some(&a), &a, &rules).changes.is_empty());
        assert_eq!(plan(Some(&a), &json!({ "name": "a", "size": 2 }), &rules).change, Change::Update);
        assert_eq!(plan(Some(&a), &json!({ "name": "b", "size": 1 }), &rules).change, Change::Replace);
        assert_eq!(plan(Some(&Value::Null), &json!({ "size": 1 }), &rules).change, Change::Update);
    }
}
