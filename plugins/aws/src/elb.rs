//! Elastic Load Balancing v2: load balancers (query protocol, Version 2015-12-01).

use serde_json::{Map, Value, json};

use crate::api::{ApiError, Service};
use crate::attrs::Attrs;
use crate::diff::differs;
use crate::form::Params;
use crate::kinds::Kind;
use crate::resources::Call;
use crate::state::{State, obj};
use crate::xml::Element;

fn call(c: &Call, action: &str, params: &Params) -> Result<Element, ApiError> {
    c.aws.query(Service::Elb, action, params)
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items.dedup();
    items
}

fn lb_state(lb: &Element) -> Result<State, String> {
    let arn = lb.text_at(&["LoadBalancerArn"]).ok_or("a load balancer in AWS's answer has no ARN")?;
    let subnets = lb
        .list(&["AvailabilityZones"], "member")
        .iter()
        .filter_map(|z| z.text_at(&["SubnetId"]).map(str::to_string))
        .collect();
    let groups = lb
        .list(&["SecurityGroups"], "member")
        .iter()
        .map(|g| g.text.trim().to_string())
        .filter(|g| !g.is_empty())
        .collect();
    Ok(State::new(
        Kind::LoadBalancer,
        arn,
        obj([
            ("name", json!(lb.string_at(&["LoadBalancerName"]))),
            ("type", json!(lb.string_at(&["Type"]))),
            ("scheme", json!(lb.string_at(&["Scheme"]))),
            ("subnets", json!(sorted(subnets))),
            ("security_groups", json!(sorted(groups))),
        ]),
        obj([
            ("id", json!(arn)),
            ("arn", json!(arn)),
            ("dns_name", json!(lb.string_at(&["DNSName"]))),
            ("zone_id", json!(lb.string_at(&["CanonicalHostedZoneId"]))),
        ]),
    ))
}

fn describe(c: &Call, p: &Params) -> Result<Option<State>, String> {
    match call(c, "DescribeLoadBalancers", p) {
        Ok(root) => match root.list(&["DescribeLoadBalancersResult", "LoadBalancers"], "member").first() {
            Some(lb) => lb_state(lb).map(Some),
            None => Ok(None),
        },
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

pub fn read(c: &Call, arn: &str) -> Result<Option<State>, String> {
    let mut p = Params::new();
    p.set("LoadBalancerArns.member.1", arn);
    describe(c, &p)
}

/// A load balancer's name is unique in its region.
pub fn find(c: &Call, desired: &Map<String, Value>) -> Result<Option<State>, String> {
    let mut p = Params::new();
    p.set("Names.member.1", Attrs(desired).str("name")?);
    describe(c, &p)
}

pub fn create(c: &Call, desired: &Map<String, Value>) -> Result<State, String> {
    let a = Attrs(desired);
    let mut p = Params::new();
    p.set("Name", a.str("name")?).set("Type", a.str("type")?).set("Scheme", a.str("scheme")?);
    p.list("Subnets.member", &a.list("subnets")?);
    if let Some(groups) = a.opt_list("security_groups")? {
        p.list("SecurityGroups.member", &groups);
    }
    let root = call(c, "CreateLoadBalancer", &p)?;
    let lb = root
        .list(&["CreateLoadBalancerResult", "LoadBalancers"], "member")
        .first()
        .map(|e| (*e).clone())
        .ok_or("elasticloadbalancing CreateLoadBalancer answered without a load balancer")?;
    lb_state(&lb)
}

pub fn update(c: &Call, prior: &State, desired: &Map<String, Value>) -> Result<State, String> {
    let a = Attrs(desired);
    if differs(&prior.attributes, desired, "subnets") {
        let mut p = Params::new();
        p.set("LoadBalancerArn", &prior.id).list("Subnets.member", &a.list("subnets")?);
        call(c, "SetSubnets", &p)?;
    }
    if differs(&prior.attributes, desired, "security_groups") {
        let mut p = Params::new();
        p.set("LoadBalancerArn", &prior.id).list("SecurityGroups.member", &a.list("security_groups")?);
        call(c, "SetSecurityGroups", &p)?;
    }
    read(c, &prior.id)?.ok_or_else(|| format!("load balancer {} is gone", prior.id))
}

pub fn delete(c: &Call, arn: &str) -> Result<(), String> {
    c.delete_with_retry(&[], || {
        let mut p = Params::new();
        p.set("LoadBalancerArn", arn);
        call(c, "DeleteLoadBalancer", &p).map(drop)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::normalize;
    use crate::resources::testing::{map, with_call};

    const ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web-dev/0888";

    fn described(subnets: &[&str]) -> String {
        let zones: String = subnets
            .iter()
            .map(|s| format!("<member><ZoneName>z</ZoneName><SubnetId>{s}</SubnetId></member>"))
            .collect();
        format!(
            "<DescribeLoadBalancersResponse><DescribeLoadBalancersResult><LoadBalancers><member>\
             <LoadBalancerArn>{ARN}</LoadBalancerArn><DNSName>web-dev-1.us-east-1.elb.amazonaws.com</DNSName>\
             <CanonicalHostedZoneId>Z2P70J7EXAMPLE</CanonicalHostedZoneId><LoadBalancerName>web-dev</LoadBalancerName>\
             <Scheme>internet-facing</Scheme><Type>application</Type><AvailabilityZones>{zones}</AvailabilityZones>\
             <SecurityGroups><member>sg-1</member></SecurityGroups></member></LoadBalancers></DescribeLoadBalancersResult>\
             </DescribeLoadBalancersResponse>"
        )
    }

    #[test]
    fn reads_and_matches_the_desired_shape() {
        let want = normalize(
            Kind::LoadBalancer.def(),
            &map(json!({ "name": "web-dev", "subnets": ["subnet-b", "subnet-a"], "security_groups": ["sg-1"] })),
        )
        .unwrap();
        let body = described(&["subnet-a", "subnet-b"]);
        let s =
            with_call(&[("LoadBalancerArns.member.1=arn%3Aaws%3Aelasticloadbalancing", 200, &body)], |c| read(c, ARN))
                .unwrap()
                .unwrap();
        assert_eq!(s.attributes, want);
        assert_eq!(
            (s.output("dns_name"), s.output("zone_id")),
            ("web-dev-1.us-east-1.elb.amazonaws.com".into(), "Z2P70J7EXAMPLE".into())
        );
        let missing = "<ErrorResponse><Error><Code>LoadBalancerNotFound</Code><Message>The specified load balancer does not exist.</Message></Error></ErrorResponse>";
        assert_eq!(with_call(&[("DescribeLoadBalancers", 400, missing)], |c| read(c, ARN)).unwrap(), None);
    }

    #[test]
    fn moves_subnets_in_place() {
        let prior = State::new(
            Kind::LoadBalancer,
            ARN,
            map(
                json!({ "name": "web-dev", "type": "application", "scheme": "internet-facing", "subnets": ["subnet-a"], "security_groups": ["sg-1"] }),
            ),
            Map::new(),
        );
        let mut want = prior.attributes.clone();
        want.insert("subnets".into(), json!(["subnet-a", "subnet-c"]));
        let body = described(&["subnet-a", "subnet-c"]);
        let s = with_call(
            &[
                ("Action=SetSubnets&Version=2015-12-01&LoadBalancerArn=", 200, "<SetSubnetsResponse/>"),
                ("DescribeLoadBalancers", 200, &body),
            ],
            |c| update(c, &prior, &want),
        )
        .unwrap();
        assert_eq!(s.attributes["subnets"], json!(["subnet-a", "subnet-c"]));
    }
}
