//! EC2: VPCs, subnets and security groups (query protocol, Version 2016-11-15).

use serde_json::{Map, Value, json};

use crate::api::{ApiError, Service};
use crate::attrs::{Attrs, canonical_protocol, rule, sort_rules};
use crate::diff::differs;
use crate::form::Params;
use crate::kinds::Kind;
use crate::resources::{Call, DEFAULT_ACCOUNT};
use crate::state::{State, obj};
use crate::xml::Element;

fn call(c: &Call, action: &str, params: &Params) -> Result<Element, ApiError> {
    c.aws.query(Service::Ec2, action, params)
}

/// The items of a Describe* answer (`vpcSet`/`item`), or none when the id is not found.
fn describe(c: &Call, action: &str, set: &str, params: &Params) -> Result<Option<Element>, String> {
    match call(c, action, params) {
        Ok(root) => Ok(root.list(&[set], "item").first().map(|e| (*e).clone())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn required<'a>(item: &'a Element, key: &str, what: &str) -> Result<&'a str, String> {
    item.text_at(&[key]).ok_or_else(|| format!("the {what} in AWS's answer has no `{key}`"))
}

fn arn(c: &Call, item: &Element, kind: &str, id: &str) -> String {
    let account = item.text_at(&["ownerId"]).unwrap_or(DEFAULT_ACCOUNT);
    format!("arn:{}:ec2:{}:{account}:{kind}/{id}", c.partition(), c.aws.region)
}

/// Tags from a `tagSet`, less the `aws:` ones (AWS's own, which nobody else can change).
pub fn tags_of(item: &Element) -> Map<String, Value> {
    item.list(&["tagSet"], "item")
        .into_iter()
        .filter_map(|t| Some((t.text_at(&["key"])?.to_string(), json!(t.string_at(&["value"])))))
        .filter(|(k, _)| !k.starts_with("aws:"))
        .collect()
}

/// Makes the tags of `id` go from `before` to `after`: DeleteTags for keys
/// that go, CreateTags for keys that are new or changed.
fn sync_tags(c: &Call, id: &str, before: &Map<String, Value>, after: &Map<String, Value>) -> Result<(), String> {
    let gone: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    if !gone.is_empty() {
        let mut p = Params::new();
        p.set("ResourceId.1", id);
        for (i, k) in gone.iter().enumerate() {
            p.set(format!("Tag.{}.Key", i + 1), k.as_str());
        }
        call(c, "DeleteTags", &p)?;
    }
    let set: Vec<(&String, &Value)> = after.iter().filter(|(k, v)| before.get(*k) != Some(*v)).collect();
    if !set.is_empty() {
        let mut p = Params::new();
        p.set("ResourceId.1", id);
        for (i, (k, v)) in set.iter().enumerate() {
            p.set(format!("Tag.{}.Key", i + 1), k.as_str());
            p.set(format!("Tag.{}.Value", i + 1), v.as_str().unwrap_or_default());
        }
        call(c, "CreateTags", &p)?;
    }
    Ok(())
}

// ---- VPC ------------------------------------------------------------------

fn vpc_state(c: &Call, item: &Element) -> Result<State, String> {
    let id = required(item, "vpcId", "VPC")?;
    let cidr = item.string_at(&["cidrBlock"]);
    Ok(State::new(
        Kind::Vpc,
        id,
        obj([("cidr_block", json!(cidr)), ("tags", Value::Object(tags_of(item)))]),
        obj([("id", json!(id)), ("arn", json!(arn(c, item, "vpc", id))), ("cidr_block", json!(cidr))]),
    ))
}

pub fn read_vpc(c: &Call, id: &str) -> Result<Option<State>, String> {
    let mut p = Params::new();
    p.set("VpcId.1", id);
    describe(c, "DescribeVpcs", "vpcSet", &p)?.map(|item| vpc_state(c, &item)).transpose()
}

pub fn create_vpc(c: &Call, desired: &Map<String, Value>) -> Result<State, String> {
    let a = Attrs(desired);
    let mut p = Params::new();
    p.set("CidrBlock", a.str("cidr_block")?);
    let root = call(c, "CreateVpc", &p)?;
    let item = root.child("vpc").ok_or("CreateVpc answered without a `vpc`")?;
    let mut state = vpc_state(c, item)?;
    let tags = a.map("tags")?;
    sync_tags(c, &state.id, &Map::new(), &tags)?;
    state.attributes.insert("tags".into(), Value::Object(tags));
    Ok(state)
}

pub fn update_vpc(c: &Call, prior: &State, desired: &Map<String, Value>) -> Result<State, String> {
    let tags = Attrs(desired).map("tags")?;
    sync_tags(c, &prior.id, &Attrs(&prior.attributes).map("tags")?, &tags)?;
    let mut state = prior.clone();
    state.attributes.insert("tags".into(), Value::Object(tags));
    Ok(state)
}

pub fn delete_vpc(c: &Call, id: &str) -> Result<(), String> {
    c.delete_with_retry(&["DependencyViolation"], || {
        let mut p = Params::new();
        p.set("VpcId", id);
        call(c, "DeleteVpc", &p).map(drop)
    })
}

// ---- Subnet ---------------------------------------------------------------

fn subnet_state(c: &Call, item: &Element) -> Result<State, String> {
    let id = required(item, "subnetId", "subnet")?;
    let (vpc, cidr, az) =
        (item.string_at(&["vpcId"]), item.string_at(&["cidrBlock"]), item.string_at(&["availabilityZone"]));
    let public = item.text_at(&["mapPublicIpOnLaunch"]) == Some("true");
    let arn = item.text_at(&["subnetArn"]).map(str::to_string).unwrap_or_else(|| arn(c, item, "subnet", id));
    Ok(State::new(
        Kind::Subnet,
        id,
        obj([
            ("vpc_id", json!(vpc)),
            ("cidr_block", json!(cidr)),
            ("availability_zone", json!(az)),
            ("public", json!(public)),
            ("tags", Value::Object(tags_of(item))),
        ]),
        obj([
            ("id", json!(id)),
            ("arn", json!(arn)),
            ("vpc_id", json!(vpc)),
            ("cidr_block", json!(cidr)),
            ("availability_zone", json!(az)),
        ]),
    ))
}

pub fn read_subnet(c: &Call, id: &str) -> Result<Option<State>, String> {
    let mut p = Params::new();
    p.set("SubnetId.1", id);
    describe(c, "DescribeSubnets", "subnetSet", &p)?.map(|item| subnet_state(c, &item)).transpose()
}

/// A VPC's subnets cannot overlap, so its block identifies a subnet.
pub fn find_subnet(c: &Call, desired: &Map<String, Value>) -> Result<Option<State>, String> {
    let a = Attrs(desired);
    let mut p = Params::new();
    p.filter("vpc-id", &a.str("vpc_id")?).filter("cidr-block", &a.str("cidr_block")?);
    describe(c, "DescribeSubnets", "subnetSet", &p)?.map(|item| subnet_state(c, &item)).transpose()
}

fn set_public(c: &Call, id: &str, public: bool) -> Result<(), String> {
    let mut p = Params::new();
    p.set("SubnetId", id).set("MapPublicIpOnLaunch.Value", public.to_string());
    call(c, "ModifySubnetAttribute", &p)?;
    Ok(())
}

pub fn create_subnet(c: &Call, desired: &Map<String, Value>) -> Result<State, String> {
    let a = Attrs(desired);
    let mut p = Params::new();
    p.set("VpcId", a.str("vpc_id")?).set("CidrBlock", a.str("cidr_block")?);
    if let Some(az) = a.opt_str("availability_zone")? {
        p.set("AvailabilityZone", az);
    }
    let root = call(c, "CreateSubnet", &p)?;
    let item = root.child("subnet").ok_or("CreateSubnet answered without a `subnet`")?;
    let mut state = subnet_state(c, item)?;
    if a.bool("public")? {
        set_public(c, &state.id, true)?;
        state.attributes.insert("public".into(), json!(true));
    }
    let tags = a.map("tags")?;
    sync_tags(c, &state.id, &Map::new(), &tags)?;
    state.attributes.insert("tags".into(), Value::Object(tags));
    Ok(state)
}

pub fn update_subnet(c: &Call, prior: &State, desired: &Map<String, Value>) -> Result<State, String> {
    let a = Attrs(desired);
    let mut state = prior.clone();
    if differs(&prior.attributes, desired, "public") {
        let public = a.bool("public")?;
        set_public(c, &prior.id, public)?;
        state.attributes.insert("public".into(), json!(public));
    }
    let tags = a.map("tags")?;
    sync_tags(c, &prior.id, &Attrs(&prior.attributes).map("tags")?, &tags)?;
    state.attributes.insert("tags".into(), Value::Object(tags));
    Ok(state)
}

pub fn delete_subnet(c: &Call, id: &str) -> Result<(), String> {
    c.delete_with_retry(&["DependencyViolation"], || {
        let mut p = Params::new();
        p.set("SubnetId", id);
        call(c, "DeleteSubnet", &p).map(drop)
    })
}

// ---- Security group -------------------------------------------------------

/// The IPv4 ingress rules of a group, one per (permission, range).
pub fn ingress_of(item: &Element) -> Vec<Value> {
    let mut rules = Vec::new();
    for perm in item.list(&["ipPermissions"], "item") {
        let raw = perm.string_at(&["ipProtocol"]);
        let protocol = canonical_protocol(&raw).map(str::to_string).unwrap_or(raw.to_ascii_lowercase());
        let port = |key: &str| perm.text_at(&[key]).and_then(|p| p.parse::<i64>().ok()).unwrap_or(-1);
        let (from, to) = if protocol == "-1" { (-1, -1) } else { (port("fromPort"), port("toPort")) };
        for range in perm.list(&["ipRanges"], "item") {
            if let Some(cidr) = range.text_at(&["cidrIp"]) {
                rules.push(rule(&protocol, from, to, cidr));
            }
        }
    }
    sort_rules(&mut rules);
    rules
}

fn security_group_state(c: &Call, item: &Element) -> Result<State, String> {
    let id = required(item, "groupId", "security group")?;
    let name = item.string_at(&["groupName"]);
    let arn =
        item.text_at(&["securityGroupArn"]).map(str::to_string).unwrap_or_else(|| arn(c, item, "security-group", id));
    Ok(State::new(
        Kind::SecurityGroup,
        id,
        obj([
            ("vpc_id", json!(item.string_at(&["vpcId"]))),
            ("name", json!(name)),
            ("description", json!(item.string_at(&["groupDescription"]))),
            ("ingress", Value::Array(ingress_of(item))),
        ]),
        obj([("id", json!(id)), ("arn", json!(arn)), ("name", json!(name))]),
    ))
}

pub fn read_security_group(c: &Call, id: &str) -> Result<Option<State>, String> {
    let mut p = Params::new();
    p.set("GroupId.1", id);
    describe(c, "DescribeSecurityGroups", "securityGroupInfo", &p)?
        .map(|item| security_group_state(c, &item))
        .transpose()
}

/// A group's name is unique in its VPC.
pub fn find_security_group(c: &Call, desired: &Map<String, Value>) -> Result<Option<State>, String> {
    let a = Attrs(desired);
    let mut p = Params::new();
    p.filter("vpc-id", &a.str("vpc_id")?).filter("group-name", &a.str("name")?);
    describe(c, "DescribeSecurityGroups", "securityGroupInfo", &p)?
        .map(|item| security_group_state(c, &item))
        .transpose()
}

/// `IpPermissions.N.*` for rules, one permission per rule.
fn permissions(group: &str, rules: &[&Value]) -> Params {
    let mut p = Params::new();
    p.set("GroupId", group);
    for (i, r) in rules.iter().enumerate() {
        let n = i + 1;
        let protocol = r["protocol"].as_str().unwrap_or("tcp");
        p.set(format!("IpPermissions.{n}.IpProtocol"), protocol);
        if protocol != "-1" {
            p.set(format!("IpPermissions.{n}.FromPort"), r["from_port"].as_i64().unwrap_or(-1).to_string());
            p.set(format!("IpPermissions.{n}.ToPort"), r["to_port"].as_i64().unwrap_or(-1).to_string());
        }
        p.set(format!("IpPermissions.{n}.IpRanges.1.CidrIp"), r["cidr"].as_str().unwrap_or_default());
    }
    p
}

/// Revokes the rules that go, then authorizes the new ones.
fn sync_ingress(c: &Call, group: &str, before: &[Value], after: &[Value]) -> Result<(), String> {
    let revoke: Vec<&Value> = before.iter().filter(|r| !after.contains(r)).collect();
    let authorize: Vec<&Value> = after.iter().filter(|r| !before.contains(r)).collect();
    if !revoke.is_empty() {
        call(c, "RevokeSecurityGroupIngress", &permissions(group, &revoke))?;
    }
    if !authorize.is_empty() {
        call(c, "AuthorizeSecurityGroupIngress", &permissions(group, &authorize))?;
    }
    Ok(())
}

pub fn create_security_group(c: &Call, desired: &Map<String, Value>) -> Result<State, String> {
    let a = Attrs(desired);
    let (name, vpc, description) = (a.str("name")?, a.str("vpc_id")?, a.str("description")?);
    let mut p = Params::new();
    p.set("GroupName", &name).set("GroupDescription", &description).set("VpcId", &vpc);
    let root = call(c, "CreateSecurityGroup", &p)?;
    let id = root.text_at(&["groupId"]).ok_or("CreateSecurityGroup answered without a `groupId`")?.to_string();
    let ingress = a.values("ingress")?;
    sync_ingress(c, &id, &[], &ingress)?;
    // The answer to CreateSecurityGroup has no owner: describe it for the ARN.
    if let Some(state) = read_security_group(c, &id)? {
        return Ok(state);
    }
    let arn =
        root.text_at(&["securityGroupArn"]).map(str::to_string).unwrap_or_else(|| arn(c, &root, "security-group", &id));
    Ok(State::new(
        Kind::SecurityGroup,
        &id,
        obj([
            ("vpc_id", json!(vpc)),
            ("name", json!(name)),
            ("description", json!(description)),
            ("ingress", Value::Array(ingress)),
        ]),
        obj([("id", json!(id)), ("arn", json!(arn)), ("name", json!(name))]),
    ))
}

pub fn update_security_group(c: &Call, prior: &State, desired: &Map<String, Value>) -> Result<State, String> {
    let ingress = Attrs(desired).values("ingress")?;
    sync_ingress(c, &prior.id, &Attrs(&prior.attributes).values("ingress")?, &ingress)?;
    let mut state = prior.clone();
    state.attributes.insert("ingress".into(), Value::Array(ingress));
    Ok(state)
}

pub fn delete_security_group(c: &Call, id: &str) -> Result<(), String> {
    c.delete_with_retry(&["DependencyViolation"], || {
        let mut p = Params::new();
        p.set("GroupId", id);
        call(c, "DeleteSecurityGroup", &p).map(drop)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::{map, with_call};
    use crate::xml;

    const VPC: &str = r#"<DescribeVpcsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><vpcSet><item>
        <vpcId>vpc-1</vpcId><ownerId>111122223333</ownerId><cidrBlock>10.0.0.0/16</cidrBlock>
        <tagSet><item><key>Name</key><value>aws-env-dev</value></item><item><key>extra</key><value>x</value></item>
        <item><key>aws:cloudformation:stack-name</key><value>s</value></item></tagSet>
        </item></vpcSet></DescribeVpcsResponse>"#;

    #[test]
    fn reads_a_vpc_with_its_tags_and_owner() {
        let s =
            with_call(&[("Action=DescribeVpcs&Version=2016-11-15&VpcId.1=vpc-1", 200, VPC)], |c| read_vpc(c, "vpc-1"))
                .unwrap()
                .unwrap();
        assert_eq!(
            Value::Object(s.attributes),
            json!({ "cidr_block": "10.0.0.0/16", "tags": { "Name": "aws-env-dev", "extra": "x" } })
        );
        assert_eq!(s.outputs["arn"], "arn:aws:ec2:us-east-1:111122223333:vpc/vpc-1");
    }

    #[test]
    fn a_missing_vpc_reads_as_gone() {
        let missing = "<Response><Errors><Error><Code>InvalidVpcID.NotFound</Code><Message>VpcID {'vpc-1'} does not exist.</Message></Error></Errors></Response>";
        assert_eq!(with_call(&[("DescribeVpcs", 400, missing)], |c| read_vpc(c, "vpc-1")).unwrap(), None);
        let empty = "<DescribeVpcsResponse><vpcSet/></DescribeVpcsResponse>";
        assert_eq!(with_call(&[("DescribeVpcs", 200, empty)], |c| read_vpc(c, "vpc-1")).unwrap(), None);
        let other = "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>no</Message></Error></Errors></Response>";
        let e = with_call(&[("DescribeVpcs", 403, other)], |c| read_vpc(c, "vpc-1")).unwrap_err();
        assert_eq!(e, "ec2 DescribeVpcs failed: UnauthorizedOperation: no");
    }

    #[test]
    fn creates_a_vpc_then_tags_it() {
        let created = r#"<CreateVpcResponse><vpc><vpcId>vpc-9</vpcId><cidrBlock>10.0.0.0/16</cidrBlock><tagSet/></vpc></CreateVpcResponse>"#;
        let desired = map(json!({ "cidr_block": "10.0.0.0/16", "tags": { "Name": "n" } }));
        let s = with_call(
            &[
                ("Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0%2F16", 200, created),
                (
                    "Action=CreateTags&Version=2016-11-15&ResourceId.1=vpc-9&Tag.1.Key=Name&Tag.1.Value=n",
                    200,
                    "<CreateTagsResponse/>",
                ),
            ],
            |c| create_vpc(c, &desired),
        )
        .unwrap();
        assert_eq!(s.attributes["tags"], json!({ "Name": "n" }));
        assert_eq!(s.outputs["arn"], "arn:aws:ec2:us-east-1:123456789012:vpc/vpc-9");
    }

    #[test]
    fn tag_changes_delete_and_create() {
        let prior = State::new(
            Kind::Vpc,
            "vpc-1",
            map(json!({ "cidr_block": "10.0.0.0/16", "tags": { "a": "1", "b": "2" } })),
            Map::new(),
        );
        let desired = map(json!({ "cidr_block": "10.0.0.0/16", "tags": { "a": "1", "b": "3", "c": "4" } }));
        with_call(
            &[
                ("Action=CreateTags&Version=2016-11-15&ResourceId.1=vpc-1&Tag.1.Key=b&Tag.1.Value=3&Tag.2.Key=c&Tag.2.Value=4", 200, "<x/>"),
            ],
            |c| update_vpc(c, &prior, &desired),
        )
        .unwrap();
        let desired = map(json!({ "cidr_block": "10.0.0.0/16", "tags": {} }));
        let s = with_call(
            &[("Action=DeleteTags&Version=2016-11-15&ResourceId.1=vpc-1&Tag.1.Key=a&Tag.2.Key=b", 200, "<x/>")],
            |c| update_vpc(c, &prior, &desired),
        )
        .unwrap();
        assert_eq!(s.attributes["tags"], json!({}));
    }

    #[test]
    fn creates_a_public_subnet_and_surfaces_conflicts() {
        let created = r#"<CreateSubnetResponse><subnet><subnetId>subnet-1</subnetId><vpcId>vpc-1</vpcId><cidrBlock>10.0.1.0/24</cidrBlock>
            <availabilityZone>us-east-1a</availabilityZone><mapPublicIpOnLaunch>false</mapPublicIpOnLaunch>
            <subnetArn>arn:aws:ec2:us-east-1:123456789012:subnet/subnet-1</subnetArn></subnet></CreateSubnetResponse>"#;
        let desired = map(
            json!({ "vpc_id": "vpc-1", "cidr_block": "10.0.1.0/24", "availability_zone": "us-east-1a", "public": true, "tags": {} }),
        );
        let s = with_call(
            &[
                ("Action=CreateSubnet&Version=2016-11-15&VpcId=vpc-1&CidrBlock=10.0.1.0%2F24&AvailabilityZone=us-east-1a", 200, created),
                ("Action=ModifySubnetAttribute&Version=2016-11-15&SubnetId=subnet-1&MapPublicIpOnLaunch.Value=true", 200, "<x/>"),
            ],
            |c| create_subnet(c, &desired),
        )
        .unwrap();
        assert_eq!(s.attributes["public"], true);
        assert_eq!(s.outputs["availability_zone"], "us-east-1a");
        let conflict = "<Response><Errors><Error><Code>InvalidSubnet.Conflict</Code><Message>The CIDR '10.0.1.0/24' conflicts with another subnet</Message></Error></Errors></Response>";
        let e = with_call(&[("CreateSubnet", 400, conflict)], |c| create_subnet(c, &desired)).unwrap_err();
        assert!(e.contains("InvalidSubnet.Conflict: The CIDR '10.0.1.0/24' conflicts with another subnet"), "{e}");
    }

    #[test]
    fn finds_a_subnet_by_vpc_and_block() {
        let desired = map(json!({ "vpc_id": "vpc-1", "cidr_block": "10.0.1.0/24" }));
        let none = "<DescribeSubnetsResponse><subnetSet/></DescribeSubnetsResponse>";
        let found = with_call(
            &[(
                "Action=DescribeSubnets&Version=2016-11-15&Filter.1.Name=vpc-id&Filter.1.Value.1=vpc-1&Filter.2.Name=cidr-block&Filter.2.Value.1=10.0.1.0%2F24",
                200,
                none,
            )],
            |c| find_subnet(c, &desired),
        );
        assert_eq!(found.unwrap(), None);
    }

    #[test]
    fn reads_ingress_rules_flattened() {
        let item = xml::parse(
            r#"<item><groupId>sg-1</groupId><ipPermissions>
                <item><ipProtocol>tcp</ipProtocol><fromPort>443</fromPort><toPort>443</toPort>
                    <ipRanges><item><cidrIp>0.0.0.0/0</cidrIp></item><item><cidrIp>10.0.0.0/16</cidrIp></item></ipRanges></item>
                <item><ipProtocol>-1</ipProtocol><groups><item><groupId>sg-2</groupId></item></groups><ipRanges/></item>
                <item><ipProtocol>6</ipProtocol><fromPort>22</fromPort><toPort>22</toPort><ipRanges><item><cidrIp>1.2.3.4/32</cidrIp></item></ipRanges></item>
            </ipPermissions></item>"#,
        )
        .unwrap();
        assert_eq!(
            ingress_of(&item),
            vec![
                rule("tcp", 22, 22, "1.2.3.4/32"),
                rule("tcp", 443, 443, "0.0.0.0/0"),
                rule("tcp", 443, 443, "10.0.0.0/16"),
            ]
        );
    }

    #[test]
    fn ingress_updates_revoke_then_authorize() {
        let old = rule("tcp", 80, 80, "0.0.0.0/0");
        let keep = rule("tcp", 443, 443, "0.0.0.0/0");
        let new = rule("-1", -1, -1, "10.0.0.0/16");
        let prior = State::new(Kind::SecurityGroup, "sg-1", map(json!({ "ingress": [old, keep] })), Map::new());
        let desired = map(json!({ "ingress": [new, keep] }));
        let s = with_call(
            &[
                ("Action=RevokeSecurityGroupIngress&Version=2016-11-15&GroupId=sg-1&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=80&IpPermissions.1.ToPort=80&IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0%2F0", 200, "<x/>"),
                ("Action=AuthorizeSecurityGroupIngress&Version=2016-11-15&GroupId=sg-1&IpPermissions.1.IpProtocol=-1&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0%2F16", 200, "<x/>"),
            ],
            |c| update_security_group(c, &prior, &desired),
        )
        .unwrap();
        assert_eq!(s.attributes["ingress"], desired["ingress"]);
    }

    #[test]
    fn deletes_tolerate_gone_and_report_dependencies() {
        let gone = "<Response><Errors><Error><Code>InvalidSubnetID.NotFound</Code><Message>gone</Message></Error></Errors></Response>";
        with_call(&[("Action=DeleteSubnet&Version=2016-11-15&SubnetId=subnet-1", 400, gone)], |c| {
            delete_subnet(c, "subnet-1")
        })
        .unwrap();
        let busy = "<Response><Errors><Error><Code>DependencyViolation</Code><Message>The vpc 'vpc-1' has dependencies and cannot be deleted.</Message></Error></Errors></Response>";
        let e = with_call(&[("DeleteVpc", 400, busy)], |c| delete_vpc(c, "vpc-1")).unwrap_err();
        assert_eq!(
            e,
            "ec2 DeleteVpc failed: DependencyViolation: The vpc 'vpc-1' has dependencies and cannot be deleted."
        );
    }
}
