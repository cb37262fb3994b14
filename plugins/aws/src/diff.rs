//! Plans: the normalized desired attributes against the state's. An
//! attribute that AWS picks when the pipeline leaves it out is not compared
//! then; maps (tags) are compared key by key; a value not known yet counts as
//! a change.

use serde_json::{Map, Value};

use crate::attrs::{Ty, TypeDef, UNKNOWN};
use stackpipe_plugin_sdk::types::{AttributeChange, Change, ResourcePlan};

fn change(
    path: String,
    before: Option<&Value>,
    after: Option<&Value>,
    sensitive: bool,
    replace: bool,
) -> AttributeChange {
    AttributeChange {
        path,
        before: before.map(Value::to_string),
        after: after.map(Value::to_string),
        sensitive,
        forces_replacement: replace,
    }
}

/// The attribute changes from `before` to `after`, in the type's attribute order.
pub fn changes(def: &TypeDef, before: Option<&Map<String, Value>>, after: &Map<String, Value>) -> Vec<AttributeChange> {
    let mut out = Vec::new();
    for a in def.attrs {
        // Not set, and AWS picks: nothing to compare.
        let Some(want) = after.get(a.name) else { continue };
        let Some(before) = before else {
            out.push(change(a.name.into(), None, Some(want), a.sensitive(), false));
            continue;
        };
        let had = before.get(a.name);
        let unknown = want.as_str() == Some(UNKNOWN);
        match (a.ty, had, want) {
            (Ty::Map, Some(Value::Object(b)), Value::Object(w)) => {
                let mut keys: Vec<&String> = b.keys().chain(w.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    if b.get(k) != w.get(k) {
                        out.push(change(format!("{}.{k}", a.name), b.get(k), w.get(k), false, a.replace));
                    }
                }
            }
            _ if unknown || had != Some(want) => {
                out.push(change(a.name.into(), had, Some(want), a.sensitive(), a.replace));
            }
            _ => {}
        }
    }
    out
}

/// Create without a prior state; replace when a change forces it; update
/// when anything else changes; no-op otherwise.
pub fn plan(def: &TypeDef, prior: Option<&Map<String, Value>>, desired: &Map<String, Value>) -> ResourcePlan {
    let changes = changes(def, prior, desired);
    let change = match prior {
        None => Change::Create,
        Some(_) if changes.iter().any(|c| c.forces_replacement) => Change::Replace,
        Some(_) if changes.is_empty() => Change::NoOp,
        Some(_) => Change::Update,
    };
    ResourcePlan { change, changes }
}

/// Whether going from `prior` to `desired` needs a replacement.
pub fn needs_replacement(def: &TypeDef, prior: &Map<String, Value>, desired: &Map<String, Value>) -> bool {
    changes(def, Some(prior), desired).iter().any(|c| c.forces_replacement)
}

/// Whether the attribute `name` differs (an attribute left to AWS never does).
pub fn differs(prior: &Map<String, Value>, desired: &Map<String, Value>, name: &str) -> bool {
    desired.get(name).is_some_and(|want| prior.get(name) != Some(want))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::attrs::normalize;
    use crate::kinds::Kind;

    fn norm(kind: Kind, v: Value) -> Map<String, Value> {
        normalize(kind.def(), v.as_object().unwrap()).unwrap()
    }

    fn summary(p: &ResourcePlan) -> Vec<(String, Option<String>, Option<String>, bool)> {
        p.changes.iter().map(|c| (c.path.clone(), c.before.clone(), c.after.clone(), c.forces_replacement)).collect()
    }

    #[test]
    fn create_lists_every_set_attribute() {
        let def = Kind::Subnet.def();
        let p = plan(def, None, &norm(Kind::Subnet, json!({ "vpc_id": "vpc-1", "cidr_block": "10.0.1.0/24" })));
        assert_eq!(p.change, Change::Create);
        let paths: Vec<_> = p.changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["vpc_id", "cidr_block", "public", "tags"]);
    }

    #[test]
    fn no_op_when_equal_and_computed_attributes_are_not_compared() {
        let def = Kind::Subnet.def();
        let want = norm(Kind::Subnet, json!({ "vpc_id": "vpc-1", "cidr_block": "10.0.1.0/24" }));
        let mut state = want.clone();
        state.insert("availability_zone".into(), json!("us-east-1c"));
        assert_eq!(plan(def, Some(&state), &want).change, Change::NoOp);
    }

    #[test]
    fn tags_update_key_by_key() {
        let def = Kind::Vpc.def();
        let state = norm(Kind::Vpc, json!({ "cidr_block": "10.0.0.0/16", "tags": { "Name": "a", "team": "x" } }));
        let want = norm(Kind::Vpc, json!({ "cidr_block": "10.0.0.0/16", "tags": { "Name": "b", "env": "dev" } }));
        let p = plan(def, Some(&state), &want);
        assert_eq!(p.change, Change::Update);
        assert_eq!(
            summary(&p),
            [
                ("tags.Name".into(), Some("\"a\"".into()), Some("\"b\"".into()), false),
                ("tags.env".into(), None, Some("\"dev\"".into()), false),
                ("tags.team".into(), Some("\"x\"".into()), None, false),
            ]
        );
    }

    #[test]
    fn immutable_attributes_force_replacement() {
        let def = Kind::Subnet.def();
        let state = norm(Kind::Subnet, json!({ "vpc_id": "vpc-1", "cidr_block": "10.0.1.0/24", "public": true }));
        let want = norm(Kind::Subnet, json!({ "vpc_id": "vpc-1", "cidr_block": "10.0.2.0/24" }));
        let p = plan(def, Some(&state), &want);
        assert_eq!(p.change, Change::Replace);
        assert_eq!(
            summary(&p),
            [
                ("cidr_block".into(), Some("\"10.0.1.0/24\"".into()), Some("\"10.0.2.0/24\"".into()), true),
                ("public".into(), Some("true".into()), Some("false".into()), false),
            ]
        );
        assert!(needs_replacement(def, &state, &want));
        assert!(differs(&state, &want, "public"));
        assert!(!differs(&state, &want, "availability_zone"));
    }

    #[test]
    fn unknown_values_are_changes() {
        let def = Kind::Subnet.def();
        let state = norm(Kind::Subnet, json!({ "vpc_id": "vpc-1", "cidr_block": "10.0.1.0/24" }));
        let want = norm(Kind::Subnet, json!({ "vpc_id": UNKNOWN, "cidr_block": "10.0.1.0/24" }));
        let p = plan(def, Some(&state), &want);
        assert_eq!(p.change, Change::Replace);
        assert_eq!(p.changes[0].after.as_deref(), Some("\"(known after apply)\""));
        let def = Kind::DbSubnetGroup.def();
        let state = norm(Kind::DbSubnetGroup, json!({ "name": "db", "subnet_ids": ["subnet-1"] }));
        let want = norm(Kind::DbSubnetGroup, json!({ "name": "db", "subnet_ids": UNKNOWN }));
        assert_eq!(plan(def, Some(&state), &want).change, Change::Update);
    }

    #[test]
    fn secrets_are_marked_and_in_place() {
        let def = Kind::DbInstance.def();
        let base = json!({ "identifier": "app", "engine": "postgres", "instance_class": "db.t3.micro", "allocated_storage": 20 });
        let state = norm(Kind::DbInstance, base.clone());
        let mut changed = base.clone();
        changed["master_password"] = json!("NewPassword123");
        changed["allocated_storage"] = json!(50);
        let p = plan(def, Some(&state), &norm(Kind::DbInstance, changed));
        assert_eq!(p.change, Change::Update);
        let marks: Vec<_> = p.changes.iter().map(|c| (c.path.as_str(), c.sensitive)).collect();
        assert_eq!(marks, [("allocated_storage", false), ("master_password", true)]);
        assert!(p.changes.iter().all(|c| !c.after.as_deref().unwrap_or("").contains("NewPassword123")));
        let mut engine = base;
        engine["engine"] = json!("mysql");
        assert_eq!(plan(def, Some(&state), &norm(Kind::DbInstance, engine)).change, Change::Replace);
    }

    #[test]
    fn ingress_changes_update_in_place() {
        let def = Kind::SecurityGroup.def();
        let rule = |port: i64| json!({ "protocol": "tcp", "from_port": port, "to_port": port, "cidr": "0.0.0.0/0" });
        let state = norm(Kind::SecurityGroup, json!({ "vpc_id": "vpc-1", "name": "w", "ingress": [rule(443)] }));
        let same =
            norm(Kind::SecurityGroup, json!({ "vpc_id": "vpc-1", "name": "w", "ingress": [rule(443), rule(443)] }));
        assert_eq!(plan(def, Some(&state), &same).change, Change::NoOp);
        let more =
            norm(Kind::SecurityGroup, json!({ "vpc_id": "vpc-1", "name": "w", "ingress": [rule(80), rule(443)] }));
        assert_eq!(plan(def, Some(&state), &more).change, Change::Update);
    }
}
