//! RDS: DB subnet groups and DB instances (query protocol, Version 2014-10-31).

use serde_json::{Map, Value, json};

use crate::api::{ApiError, Service};
use crate::attrs::Attrs;
use crate::diff::differs;
use crate::form::Params;
use crate::kinds::{DEFAULT_DB_PASSWORD, Kind};
use crate::resources::Call;
use crate::state::{State, obj};
use crate::xml::Element;

fn call(c: &Call, action: &str, params: &Params) -> Result<Element, ApiError> {
    c.aws.query(Service::Rds, action, params)
}

/// The element at `path` of an answer to `action`.
fn result(root: &Element, action: &str, path: &[&str]) -> Result<Element, String> {
    let mut full = vec![format!("{action}Result")];
    full.extend(path.iter().map(|s| s.to_string()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    root.at(&full).cloned().ok_or_else(|| format!("rds {action} answered without {}", full.join("/")))
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items.dedup();
    items
}

// ---- DB subnet group ------------------------------------------------------

fn subnet_group_state(group: &Element) -> Result<State, String> {
    let name = group.text_at(&["DBSubnetGroupName"]).ok_or("a DB subnet group in AWS's answer has no name")?;
    let subnets = sorted(
        group
            .list(&["Subnets"], "Subnet")
            .iter()
            .filter_map(|s| s.text_at(&["SubnetIdentifier"]).map(str::to_string))
            .collect(),
    );
    Ok(State::new(
        Kind::DbSubnetGroup,
        name,
        obj([
            ("name", json!(name)),
            ("description", json!(group.string_at(&["DBSubnetGroupDescription"]))),
            ("subnet_ids", json!(subnets)),
        ]),
        obj([("id", json!(name)), ("name", json!(name)), ("arn", json!(group.string_at(&["DBSubnetGroupArn"])))]),
    ))
}

pub fn read_subnet_group(c: &Call, name: &str) -> Result<Option<State>, String> {
    let mut p = Params::new();
    p.set("DBSubnetGroupName", name);
    match call(c, "DescribeDBSubnetGroups", &p) {
        Ok(root) => match root.list(&["DescribeDBSubnetGroupsResult", "DBSubnetGroups"], "DBSubnetGroup").first() {
            Some(group) => subnet_group_state(group).map(Some),
            None => Ok(None),
        },
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

pub fn find_subnet_group(c: &Call, desired: &Map<String, Value>) -> Result<Option<State>, String> {
    read_subnet_group(c, &Attrs(desired).str("name")?)
}

fn subnet_group_params(a: &Attrs) -> Result<Params, String> {
    let mut p = Params::new();
    p.set("DBSubnetGroupName", a.str("name")?)
        .set("DBSubnetGroupDescription", a.str("description")?)
        .list("SubnetIds.SubnetIdentifier", &a.list("subnet_ids")?);
    Ok(p)
}

pub fn create_subnet_group(c: &Call, desired: &Map<String, Value>) -> Result<State, String> {
    let root = call(c, "CreateDBSubnetGroup", &subnet_group_params(&Attrs(desired))?)?;
    subnet_group_state(&result(&root, "CreateDBSubnetGroup", &["DBSubnetGroup"])?)
}

pub fn update_subnet_group(c: &Call, prior: &State, desired: &Map<String, Value>) -> Result<State, String> {
    let params = subnet_group_params(&Attrs(desired))?;
    let root = call(c, "ModifyDBSubnetGroup", &params)?;
    let state = subnet_group_state(&result(&root, "ModifyDBSubnetGroup", &["DBSubnetGroup"])?)?;
    // moto (5.2.5 at least) drops a group from its registry when it modifies
    // it: the group just modified reads as not found. Make it again then, or
    // the next refresh would see it gone. Real AWS never takes this branch.
    if read_subnet_group(c, &prior.id)?.is_none() {
        c.log(&format!(
            "DB subnet group {} vanished after ModifyDBSubnetGroup (an emulator bug): creating it again",
            prior.id
        ));
        let root = call(c, "CreateDBSubnetGroup", &params)?;
        return subnet_group_state(&result(&root, "CreateDBSubnetGroup", &["DBSubnetGroup"])?);
    }
    Ok(state)
}

pub fn delete_subnet_group(c: &Call, name: &str) -> Result<(), String> {
    // Refused while a database that is being deleted still uses it.
    c.delete_with_retry(&["InvalidDBSubnetGroupStateFault"], || {
        let mut p = Params::new();
        p.set("DBSubnetGroupName", name);
        call(c, "DeleteDBSubnetGroup", &p).map(drop)
    })
}

// ---- DB instance ----------------------------------------------------------

/// A DB instance as AWS describes it. Modifications applied but not finished
/// yet (`PendingModifiedValues`) count as done: they were asked for. The
/// password cannot be read back: `password_digest` is the one last applied.
fn instance_state(c: &Call, db: &Element, password_digest: Option<&Value>) -> Result<State, String> {
    let id = db.text_at(&["DBInstanceIdentifier"]).ok_or("a DB instance in AWS's answer has no identifier")?;
    let pending = |key: &str| db.text_at(&["PendingModifiedValues", key]).or_else(|| db.text_at(&[key]));
    let class = pending("DBInstanceClass").unwrap_or_default();
    let storage: i64 = pending("AllocatedStorage").and_then(|s| s.parse().ok()).unwrap_or(0);
    let groups: Vec<String> = db
        .list(&["VpcSecurityGroups"], "VpcSecurityGroupMembership")
        .iter()
        .filter(|m| m.text_at(&["Status"]) != Some("removing"))
        .filter_map(|m| m.text_at(&["VpcSecurityGroupId"]).map(str::to_string))
        .collect();
    let mut attributes = obj([
        ("identifier", json!(id)),
        ("engine", json!(db.string_at(&["Engine"]))),
        ("instance_class", json!(class)),
        ("allocated_storage", json!(storage)),
        ("security_groups", json!(sorted(groups))),
        ("master_username", json!(db.string_at(&["MasterUsername"]))),
    ]);
    if let Some(group) = db.text_at(&["DBSubnetGroup", "DBSubnetGroupName"]) {
        attributes.insert("db_subnet_group".into(), json!(group));
    }
    if let Some(d) = password_digest {
        attributes.insert("master_password".into(), d.clone());
    }
    let address = db.string_at(&["Endpoint", "Address"]);
    let port: i64 = db
        .text_at(&["Endpoint", "Port"])
        .or_else(|| db.text_at(&["DbInstancePort"]))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let arn = db.text_at(&["DBInstanceArn"]).map(str::to_string).unwrap_or_else(|| {
        format!("arn:{}:rds:{}:{}:db:{id}", c.partition(), c.aws.region, crate::resources::DEFAULT_ACCOUNT)
    });
    Ok(State::new(
        Kind::DbInstance,
        id,
        attributes,
        obj([
            ("id", json!(id)),
            ("arn", json!(arn)),
            ("endpoint", json!(if address.is_empty() { String::new() } else { format!("{address}:{port}") })),
            ("address", json!(address)),
            ("port", json!(port)),
        ]),
    ))
}

fn describe_instance(c: &Call, id: &str) -> Result<Option<Element>, String> {
    let mut p = Params::new();
    p.set("DBInstanceIdentifier", id);
    match call(c, "DescribeDBInstances", &p) {
        Ok(root) => {
            Ok(root.list(&["DescribeDBInstancesResult", "DBInstances"], "DBInstance").first().map(|e| (*e).clone()))
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

pub fn read_instance(c: &Call, id: &str, prior: &Map<String, Value>) -> Result<Option<State>, String> {
    describe_instance(c, id)?.map(|db| instance_state(c, &db, prior.get("master_password"))).transpose()
}

pub fn find_instance(c: &Call, desired: &Map<String, Value>) -> Result<Option<State>, String> {
    read_instance(c, &Attrs(desired).str("identifier")?, desired)
}

/// The password as given (the digest in `desired` is only for comparing).
fn password(raw: &Map<String, Value>) -> String {
    raw.get("master_password").and_then(Value::as_str).unwrap_or(DEFAULT_DB_PASSWORD).to_string()
}

/// Waits until the instance is `available` (AWS takes minutes; moto none).
fn wait_available(c: &Call, id: &str, digest: Option<&Value>) -> Result<State, String> {
    c.wait_for(&format!("DB instance {id} to be available"), c.cfg.wait_timeout, || match describe_instance(c, id)? {
        Some(db) if db.text_at(&["DBInstanceStatus"]) == Some("available") => instance_state(c, &db, digest).map(Some),
        Some(_) => Ok(None),
        None => Err(format!("DB instance {id} disappeared while it was being created")),
    })
}

pub fn create_instance(c: &Call, desired: &Map<String, Value>, raw: &Map<String, Value>) -> Result<State, String> {
    let a = Attrs(desired);
    if raw.get("master_password").is_none() {
        c.log("no master_password given: using the plugin's fixed default password; set one for anything real");
    }
    let id = a.str("identifier")?;
    let mut p = Params::new();
    p.set("DBInstanceIdentifier", &id)
        .set("Engine", a.str("engine")?)
        .set("DBInstanceClass", a.str("instance_class")?)
        .set("AllocatedStorage", a.int("allocated_storage")?.to_string())
        .set("MasterUsername", a.str("master_username")?)
        .set("MasterUserPassword", password(raw));
    if let Some(group) = a.opt_str("db_subnet_group")? {
        p.set("DBSubnetGroupName", group);
    }
    if let Some(groups) = a.opt_list("security_groups")? {
        p.list("VpcSecurityGroupIds.VpcSecurityGroupId", &groups);
    }
    let root = call(c, "CreateDBInstance", &p)?;
    let db = result(&root, "CreateDBInstance", &["DBInstance"])?;
    let digest = desired.get("master_password");
    if db.text_at(&["DBInstanceStatus"]) == Some("available") && db.text_at(&["Endpoint", "Address"]).is_some() {
        return instance_state(c, &db, digest);
    }
    wait_available(c, &id, digest)
}

pub fn update_instance(
    c: &Call,
    prior: &State,
    desired: &Map<String, Value>,
    raw: &Map<String, Value>,
) -> Result<State, String> {
    let a = Attrs(desired);
    let before = &prior.attributes;
    let mut p = Params::new();
    p.set("DBInstanceIdentifier", &prior.id).set("ApplyImmediately", "true");
    let mut changed = false;
    if differs(before, desired, "instance_class") {
        p.set("DBInstanceClass", a.str("instance_class")?);
        changed = true;
    }
    if differs(before, desired, "allocated_storage") {
        p.set("AllocatedStorage", a.int("allocated_storage")?.to_string());
        changed = true;
    }
    if differs(before, desired, "security_groups") {
        p.list("VpcSecurityGroupIds.VpcSecurityGroupId", &a.list("security_groups")?);
        changed = true;
    }
    if differs(before, desired, "master_password") {
        p.set("MasterUserPassword", password(raw));
        changed = true;
    }
    let digest = desired.get("master_password").or(before.get("master_password"));
    if !changed {
        return read_instance(c, &prior.id, before)?.ok_or_else(|| format!("DB instance {} is gone", prior.id));
    }
    let root = call(c, "ModifyDBInstance", &p)?;
    instance_state(c, &result(&root, "ModifyDBInstance", &["DBInstance"])?, digest)
}

pub fn delete_instance(c: &Call, id: &str) -> Result<(), String> {
    let mut p = Params::new();
    p.set("DBInstanceIdentifier", id).set("SkipFinalSnapshot", "true");
    match call(c, "DeleteDBInstance", &p) {
        Ok(_) => {}
        Err(e) if e.is_not_found() => return Ok(()),
        // Already being deleted: wait for it below.
        Err(e) if e.is("InvalidDBInstanceState") => c.log(&e.to_string()),
        Err(e) => return Err(e.to_string()),
    }
    c.wait_for(&format!("DB instance {id} to be deleted"), c.cfg.wait_timeout, || {
        Ok(describe_instance(c, id)?.is_none().then_some(()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::normalize;
    use crate::resources::testing::{map, with_call};

    const INSTANCE: &str = r#"<DescribeDBInstancesResponse><DescribeDBInstancesResult><DBInstances><DBInstance>
        <DBInstanceIdentifier>app-dev</DBInstanceIdentifier><DBInstanceClass>db.t3.micro</DBInstanceClass>
        <Engine>postgres</Engine><DBInstanceStatus>available</DBInstanceStatus><MasterUsername>stackpipe</MasterUsername>
        <Endpoint><Address>app-dev.x.us-east-1.rds.amazonaws.com</Address><Port>5432</Port></Endpoint>
        <AllocatedStorage>20</AllocatedStorage>
        <VpcSecurityGroups><VpcSecurityGroupMembership><VpcSecurityGroupId>sg-2</VpcSecurityGroupId><Status>active</Status></VpcSecurityGroupMembership>
        <VpcSecurityGroupMembership><VpcSecurityGroupId>sg-1</VpcSecurityGroupId><Status>active</Status></VpcSecurityGroupMembership></VpcSecurityGroups>
        <DBSubnetGroup><DBSubnetGroupName>db-dev</DBSubnetGroupName></DBSubnetGroup>
        <PendingModifiedValues><AllocatedStorage>50</AllocatedStorage></PendingModifiedValues>
        <DBInstanceArn>arn:aws:rds:us-east-1:123456789012:db:app-dev</DBInstanceArn>
        </DBInstance></DBInstances></DescribeDBInstancesResult></DescribeDBInstancesResponse>"#;

    fn desired() -> Map<String, Value> {
        normalize(
            Kind::DbInstance.def(),
            &map(json!({
                "identifier": "app-dev", "engine": "postgres", "instance_class": "db.t3.micro",
                "allocated_storage": 50, "db_subnet_group": "db-dev", "security_groups": ["sg-1", "sg-2"],
                "master_password": "Secret-123456"
            })),
        )
        .unwrap()
    }

    #[test]
    fn reads_an_instance_with_pending_changes_and_keeps_the_digest() {
        let want = desired();
        let s = with_call(
            &[("Action=DescribeDBInstances&Version=2014-10-31&DBInstanceIdentifier=app-dev", 200, INSTANCE)],
            |c| read_instance(c, "app-dev", &want),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.attributes, want, "read back as applied: nothing to plan");
        assert_eq!(s.outputs["endpoint"], "app-dev.x.us-east-1.rds.amazonaws.com:5432");
        assert_eq!(s.outputs["port"], 5432);
        assert!(!s.to_json().contains("Secret-123456"));
    }

    #[test]
    fn creates_with_the_password_and_skips_the_wait_when_available() {
        let want = desired();
        let raw = map(json!({ "master_password": "Secret-123456" }));
        let created = INSTANCE
            .replace("DescribeDBInstances", "CreateDBInstance")
            .replace("<DBInstances>", "")
            .replace("</DBInstances>", "");
        let s = with_call(
            &[(
                "Action=CreateDBInstance&Version=2014-10-31&DBInstanceIdentifier=app-dev&Engine=postgres&DBInstanceClass=db.t3.micro\
                 &AllocatedStorage=50&MasterUsername=stackpipe&MasterUserPassword=Secret-123456&DBSubnetGroupName=db-dev\
                 &VpcSecurityGroupIds.VpcSecurityGroupId.1=sg-1&VpcSecurityGroupIds.VpcSecurityGroupId.2=sg-2",
                200,
                &created,
            )],
            |c| create_instance(c, &want, &raw),
        )
        .unwrap();
        assert_eq!(s.id, "app-dev");
    }

    #[test]
    fn creation_waits_until_available() {
        let want = desired();
        let creating = INSTANCE.replace("<DBInstanceStatus>available", "<DBInstanceStatus>creating");
        let created = creating
            .replace("DescribeDBInstances", "CreateDBInstance")
            .replace("<DBInstances>", "")
            .replace("</DBInstances>", "");
        let s = with_call(
            &[
                ("CreateDBInstance", 200, &created),
                ("DescribeDBInstances", 200, &creating),
                ("DescribeDBInstances", 200, INSTANCE),
            ],
            |c| create_instance(c, &want, &Map::new()),
        )
        .unwrap();
        assert_eq!(s.outputs["address"], "app-dev.x.us-east-1.rds.amazonaws.com");
    }

    #[test]
    fn modifies_only_what_changed() {
        let want = desired();
        let mut before = want.clone();
        before.insert("allocated_storage".into(), json!(20));
        let prior = State::new(Kind::DbInstance, "app-dev", before, Map::new());
        let modified = INSTANCE
            .replace("DescribeDBInstances", "ModifyDBInstance")
            .replace("<DBInstances>", "")
            .replace("</DBInstances>", "");
        let s = with_call(
            &[("Action=ModifyDBInstance&Version=2014-10-31&DBInstanceIdentifier=app-dev&ApplyImmediately=true&AllocatedStorage=50", 200, &modified)],
            |c| update_instance(c, &prior, &want, &Map::new()),
        )
        .unwrap();
        assert_eq!(s.attributes["allocated_storage"], 50);
    }

    #[test]
    fn deletes_without_snapshot_and_waits_until_gone() {
        let gone = "<ErrorResponse><Error><Code>DBInstanceNotFound</Code><Message>DBInstance app-dev not found.</Message></Error></ErrorResponse>";
        with_call(
            &[
                (
                    "Action=DeleteDBInstance&Version=2014-10-31&DBInstanceIdentifier=app-dev&SkipFinalSnapshot=true",
                    200,
                    "<DeleteDBInstanceResponse/>",
                ),
                ("DescribeDBInstances", 200, INSTANCE),
                ("DescribeDBInstances", 404, gone),
            ],
            |c| delete_instance(c, "app-dev"),
        )
        .unwrap();
        with_call(&[("DeleteDBInstance", 404, gone)], |c| delete_instance(c, "app-dev")).unwrap();
    }

    #[test]
    fn subnet_groups() {
        let group = r#"<CreateDBSubnetGroupResponse><CreateDBSubnetGroupResult><DBSubnetGroup><DBSubnetGroupName>db-dev</DBSubnetGroupName>
            <DBSubnetGroupDescription>managed by stackpipe</DBSubnetGroupDescription>
            <Subnets><Subnet><SubnetIdentifier>subnet-b</SubnetIdentifier></Subnet><Subnet><SubnetIdentifier>subnet-a</SubnetIdentifier></Subnet></Subnets>
            <DBSubnetGroupArn>arn:aws:rds:us-east-1:123456789012:subgrp:db-dev</DBSubnetGroupArn></DBSubnetGroup></CreateDBSubnetGroupResult></CreateDBSubnetGroupResponse>"#;
        let want = normalize(
            Kind::DbSubnetGroup.def(),
            &map(json!({ "name": "db-dev", "subnet_ids": ["subnet-b", "subnet-a"] })),
        )
        .unwrap();
        let s = with_call(
            &[(
                "Action=CreateDBSubnetGroup&Version=2014-10-31&DBSubnetGroupName=db-dev&DBSubnetGroupDescription=managed+by+stackpipe\
                 &SubnetIds.SubnetIdentifier.1=subnet-a&SubnetIds.SubnetIdentifier.2=subnet-b",
                200,
                group,
            )],
            |c| create_subnet_group(c, &want),
        )
        .unwrap();
        assert_eq!(s.attributes, want);
        assert_eq!(s.outputs["arn"], "arn:aws:rds:us-east-1:123456789012:subgrp:db-dev");
        let missing = "<ErrorResponse><Error><Code>DBSubnetGroupNotFoundFault</Code><Message>Subnet Group db-dev not found.</Message></Error></ErrorResponse>";
        assert_eq!(
            with_call(&[("DescribeDBSubnetGroups", 404, missing)], |c| read_subnet_group(c, "db-dev")).unwrap(),
            None
        );

        // Modified in place; a group that then reads as missing is made again.
        let modified = group.replace("CreateDBSubnetGroup", "ModifyDBSubnetGroup");
        let described = group
            .replace("CreateDBSubnetGroupResult", "DescribeDBSubnetGroupsResult")
            .replace("<DBSubnetGroup>", "<DBSubnetGroups><DBSubnetGroup>")
            .replace("</DBSubnetGroup>", "</DBSubnetGroup></DBSubnetGroups>");
        let s2 = with_call(
            &[("Action=ModifyDBSubnetGroup&", 200, &modified), ("DescribeDBSubnetGroups", 200, &described)],
            |c| update_subnet_group(c, &s, &want),
        )
        .unwrap();
        assert_eq!(s2.attributes, want);
        with_call(
            &[
                ("ModifyDBSubnetGroup", 200, &modified),
                ("DescribeDBSubnetGroups", 404, missing),
                ("Action=CreateDBSubnetGroup&", 200, group),
            ],
            |c| update_subnet_group(c, &s, &want),
        )
        .unwrap();
    }
}
