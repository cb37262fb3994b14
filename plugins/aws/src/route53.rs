//! Route53: hosted zones and record sets (REST-XML under `/2013-04-01/`).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::api::ApiError;
use crate::attrs::Attrs;
use crate::diff::differs;
use crate::form::query_value;
use crate::kinds::{Kind, canonical_domain, canonical_zone_id};
use crate::resources::{Call, Origin};
use crate::state::{State, obj};
use crate::xml::{Element, escape};

const NS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";
const BASE: &str = "/2013-04-01";

fn document(root: &str, inner: &str) -> String {
    format!(r#"<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{NS}">{inner}</{root}>"#)
}

fn el(name: &str, text: &str) -> String {
    format!("<{name}>{}</{name}>", escape(text))
}

// ---- Hosted zone ----------------------------------------------------------

/// `{run-id}/{pipeline}/{environment}/{resource}/`: what a zone's
/// CallerReference starts with, so that the zone an interrupted apply
/// created can be told from others of the same name.
pub fn caller_prefix(origin: &Origin) -> String {
    let prefix = format!("{}/{}/{}/{}/", origin.run_id, origin.pipeline, origin.environment, origin.resource);
    // CallerReference takes 128 characters; keep room for the time.
    prefix.chars().take(100).collect()
}

/// A CallerReference unique to this request: the prefix and the time in ms
/// (a zone replaced in the same run needs a new one).
pub fn caller_reference(origin: &Origin, now: SystemTime) -> String {
    let ms = now.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("{}{ms}", caller_prefix(origin))
}

/// The state from a `HostedZone` and the answer's `DelegationSet`.
fn zone_state(root: &Element) -> Result<State, String> {
    let zone = root.child("HostedZone").ok_or("route53 answered without a `HostedZone`")?;
    let id = canonical_zone_id(zone.text_at(&["Id"]).ok_or("a hosted zone in AWS's answer has no id")?);
    let name = canonical_domain(&zone.string_at(&["Name"]));
    let servers: Vec<String> =
        root.list(&["DelegationSet", "NameServers"], "NameServer").iter().map(|n| n.text.trim().to_string()).collect();
    Ok(State::new(
        Kind::DnsZone,
        &id,
        obj([("name", json!(name)), ("comment", json!(zone.string_at(&["Config", "Comment"])))]),
        obj([("id", json!(id)), ("name", json!(name)), ("name_servers", json!(servers))]),
    ))
}

fn get_zone(c: &Call, id: &str) -> Result<Option<Element>, String> {
    match c.aws.route53("GET", &format!("{BASE}/hostedzone/{id}"), None) {
        Ok(root) => Ok(Some(root)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

pub fn read_zone(c: &Call, id: &str) -> Result<Option<State>, String> {
    get_zone(c, id)?.map(|root| zone_state(&root)).transpose()
}

/// Zone names are not unique in Route53: the zone an interrupted apply made
/// is the one of that name whose CallerReference has this call's prefix.
pub fn find_zone(c: &Call, desired: &Map<String, Value>) -> Result<Option<State>, String> {
    let name = Attrs(desired).str("name")?;
    let prefix = caller_prefix(c.origin);
    let path = format!("{BASE}/hostedzonesbyname?dnsname={}&maxitems=100", query_value(&name));
    let root = c.aws.route53("GET", &path, None)?;
    let found = root.list(&["HostedZones"], "HostedZone").into_iter().find(|z| {
        canonical_domain(&z.string_at(&["Name"])) == name && z.string_at(&["CallerReference"]).starts_with(&prefix)
    });
    match found.and_then(|z| z.text_at(&["Id"])) {
        Some(id) => read_zone(c, &canonical_zone_id(id)),
        None => Ok(None),
    }
}

pub fn create_zone(c: &Call, desired: &Map<String, Value>) -> Result<State, String> {
    let a = Attrs(desired);
    let comment = a.opt_str("comment")?.unwrap_or_default();
    let mut inner =
        el("Name", &a.str("name")?) + &el("CallerReference", &caller_reference(c.origin, SystemTime::now()));
    if !comment.is_empty() {
        inner.push_str(&format!("<HostedZoneConfig>{}</HostedZoneConfig>", el("Comment", &comment)));
    }
    let root =
        c.aws.route53("POST", &format!("{BASE}/hostedzone"), Some(document("CreateHostedZoneRequest", &inner)))?;
    zone_state(&root)
}

pub fn update_zone(c: &Call, prior: &State, desired: &Map<String, Value>) -> Result<State, String> {
    if differs(&prior.attributes, desired, "comment") {
        let body = document("UpdateHostedZoneCommentRequest", &el("Comment", &Attrs(desired).str("comment")?));
        c.aws.route53("POST", &format!("{BASE}/hostedzone/{}", prior.id), Some(body))?;
    }
    read_zone(c, &prior.id)?.ok_or_else(|| format!("hosted zone {} is gone", prior.id))
}

pub fn delete_zone(c: &Call, id: &str) -> Result<(), String> {
    c.delete_with_retry(&[], || c.aws.route53("DELETE", &format!("{BASE}/hostedzone/{id}"), None).map(drop))
}

// ---- Record set -----------------------------------------------------------

/// The full name of a record: `name` when it is in the zone already, else `name` under the zone.
pub fn fqdn(name: &str, zone: &str) -> String {
    let (name, zone) = (canonical_domain(name), canonical_domain(zone));
    if name == zone || name.ends_with(&format!(".{zone}")) { name } else { format!("{name}.{zone}") }
}

/// A record set as Route53 lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSet {
    pub ttl: i64,
    pub records: Vec<String>,
}

/// The record set `fqdn`/`kind` of a zone; none when it or the zone is gone.
fn get_record(c: &Call, zone: &str, fqdn: &str, kind: &str) -> Result<Option<RecordSet>, String> {
    let path = format!("{BASE}/hostedzone/{zone}/rrset?name={}&type={kind}&maxitems=1", query_value(fqdn));
    let root = match c.aws.route53("GET", &path, None) {
        Ok(root) => root,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    // The listing starts at the name and type asked for: the first set may be a later one.
    let set = root
        .list(&["ResourceRecordSets"], "ResourceRecordSet")
        .into_iter()
        .find(|s| canonical_domain(&s.string_at(&["Name"])) == fqdn && s.text_at(&["Type"]) == Some(kind));
    Ok(set.map(|s| {
        let mut records: Vec<String> = s
            .list(&["ResourceRecords"], "ResourceRecord")
            .iter()
            .filter_map(|r| r.text_at(&["Value"]).map(str::to_string))
            .collect();
        records.sort();
        records.dedup();
        RecordSet { ttl: s.text_at(&["TTL"]).and_then(|t| t.parse().ok()).unwrap_or(0), records }
    }))
}

fn record_state(zone: &str, name: &str, fqdn: &str, kind: &str, set: &RecordSet) -> State {
    let id = format!("{zone}_{fqdn}_{kind}");
    State::new(
        Kind::DnsRecord,
        &id,
        obj([
            ("zone_id", json!(zone)),
            ("name", json!(name)),
            ("type", json!(kind)),
            ("ttl", json!(set.ttl)),
            ("records", json!(set.records)),
        ]),
        obj([("id", json!(id)), ("name", json!(name)), ("fqdn", json!(fqdn))]),
    )
}

pub fn read_record(c: &Call, state: &State) -> Result<Option<State>, String> {
    let (zone, name, kind, fqdn) =
        (state.attr("zone_id"), state.attr("name"), state.attr("type"), state.output("fqdn"));
    Ok(get_record(c, &zone, &fqdn, &kind)?.map(|set| record_state(&zone, &name, &fqdn, &kind, &set)))
}

/// The zone's name, to make the record's full name.
fn zone_name(c: &Call, zone: &str) -> Result<Option<String>, String> {
    Ok(get_zone(c, zone)?.and_then(|root| root.text_at(&["HostedZone", "Name"]).map(canonical_domain)))
}

/// A record set is unique by zone, name and type.
pub fn find_record(c: &Call, desired: &Map<String, Value>) -> Result<Option<State>, String> {
    let a = Attrs(desired);
    let (zone, name, kind) = (a.str("zone_id")?, a.str("name")?, a.str("type")?);
    let Some(zone_name) = zone_name(c, &zone)? else { return Ok(None) };
    let fqdn = fqdn(&name, &zone_name);
    Ok(get_record(c, &zone, &fqdn, &kind)?.map(|set| record_state(&zone, &name, &fqdn, &kind, &set)))
}

fn change(c: &Call, zone: &str, action: &str, fqdn: &str, kind: &str, set: &RecordSet) -> Result<(), ApiError> {
    let values: String =
        set.records.iter().map(|v| format!("<ResourceRecord>{}</ResourceRecord>", el("Value", v))).collect();
    let record = el("Name", fqdn) + &el("Type", kind) + &el("TTL", &set.ttl.to_string());
    let inner = format!(
        "<ChangeBatch><Changes><Change>{}<ResourceRecordSet>{record}<ResourceRecords>{values}</ResourceRecords>\
         </ResourceRecordSet></Change></Changes></ChangeBatch>",
        el("Action", action)
    );
    let body = document("ChangeResourceRecordSetsRequest", &inner);
    c.aws.route53("POST", &format!("{BASE}/hostedzone/{zone}/rrset"), Some(body)).map(drop)
}

fn desired_set(a: &Attrs) -> Result<RecordSet, String> {
    Ok(RecordSet { ttl: a.int("ttl")?, records: a.list("records")? })
}

pub fn create_record(c: &Call, desired: &Map<String, Value>) -> Result<State, String> {
    let a = Attrs(desired);
    let (zone, name, kind) = (a.str("zone_id")?, a.str("name")?, a.str("type")?);
    let zone_name = zone_name(c, &zone)?.ok_or_else(|| format!("hosted zone {zone} does not exist"))?;
    let fqdn = fqdn(&name, &zone_name);
    let set = desired_set(&a)?;
    // CREATE, not UPSERT: a record someone else made is not silently taken over.
    change(c, &zone, "CREATE", &fqdn, &kind, &set)?;
    Ok(record_state(&zone, &name, &fqdn, &kind, &set))
}

pub fn update_record(c: &Call, prior: &State, desired: &Map<String, Value>) -> Result<State, String> {
    let (zone, name, kind, fqdn) =
        (prior.attr("zone_id"), prior.attr("name"), prior.attr("type"), prior.output("fqdn"));
    let set = desired_set(&Attrs(desired))?;
    change(c, &zone, "UPSERT", &fqdn, &kind, &set)?;
    Ok(record_state(&zone, &name, &fqdn, &kind, &set))
}

/// DELETE must name the set's current TTL and values: they are read first.
pub fn delete_record(c: &Call, state: &State) -> Result<(), String> {
    let (zone, kind, fqdn) = (state.attr("zone_id"), state.attr("type"), state.output("fqdn"));
    let Some(set) = get_record(c, &zone, &fqdn, &kind)? else { return Ok(()) };
    match change(c, &zone, "DELETE", &fqdn, &kind, &set) {
        // Deleted by someone else in between.
        Err(e) if e.is("InvalidChangeBatch") && e.message.contains("not found") => Ok(()),
        other => other.map_err(String::from),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::resources::testing::{map, origin, with_call};

    const ZONE: &str = r#"<GetHostedZoneResponse><HostedZone><Id>/hostedzone/Z1</Id><Name>dev.example.internal.</Name>
        <CallerReference>run-1/aws-env/dev/res/1</CallerReference><Config><PrivateZone>false</PrivateZone></Config></HostedZone>
        <DelegationSet><NameServers><NameServer>ns-1.awsdns-1.com</NameServer><NameServer>ns-2.awsdns-2.net</NameServer></NameServers></DelegationSet>
        </GetHostedZoneResponse>"#;

    const SETS: &str = r#"<ListResourceRecordSetsResponse><ResourceRecordSets><ResourceRecordSet>
        <Name>app.dev.example.internal.</Name><Type>CNAME</Type><TTL>300</TTL>
        <ResourceRecords><ResourceRecord><Value>web-dev-1.us-east-1.elb.amazonaws.com</Value></ResourceRecord></ResourceRecords>
        </ResourceRecordSet></ResourceRecordSets><IsTruncated>false</IsTruncated></ListResourceRecordSetsResponse>"#;

    #[test]
    fn caller_references() {
        let o = origin();
        assert_eq!(caller_prefix(&o), "run-1/aws-env/dev/res/");
        assert_eq!(caller_reference(&o, UNIX_EPOCH + Duration::from_millis(1234)), "run-1/aws-env/dev/res/1234");
        let long = Origin { resource: "r".repeat(200), ..o };
        assert!(caller_reference(&long, SystemTime::now()).len() <= 128);
    }

    #[test]
    fn full_names() {
        assert_eq!(fqdn("app.dev.example.internal", "dev.example.internal."), "app.dev.example.internal");
        assert_eq!(fqdn("app", "dev.example.internal"), "app.dev.example.internal");
        assert_eq!(fqdn("dev.example.internal", "dev.example.internal"), "dev.example.internal");
        assert_eq!(fqdn("xdev.example.internal", "dev.example.internal"), "xdev.example.internal.dev.example.internal");
    }

    #[test]
    fn reads_a_zone_without_its_prefix() {
        let s = with_call(&[("GET /2013-04-01/hostedzone/Z1", 200, ZONE)], |c| read_zone(c, "Z1")).unwrap().unwrap();
        assert_eq!(s.id, "Z1");
        assert_eq!(Value::Object(s.attributes), json!({ "name": "dev.example.internal", "comment": "" }));
        assert_eq!(s.outputs["name_servers"], json!(["ns-1.awsdns-1.com", "ns-2.awsdns-2.net"]));
        let missing = "<ErrorResponse><Error><Code>NoSuchHostedZone</Code><Message>No hosted zone found with ID: Z1</Message></Error></ErrorResponse>";
        assert_eq!(
            with_call(&[("GET /2013-04-01/hostedzone/Z1", 404, missing)], |c| read_zone(c, "Z1")).unwrap(),
            None
        );
    }

    #[test]
    fn creates_a_zone_with_an_escaped_comment() {
        let desired = map(json!({ "name": "dev.example.internal", "comment": "a & b" }));
        let created = ZONE.replace("GetHostedZoneResponse", "CreateHostedZoneResponse");
        let s = with_call(
            &[(
                "POST /2013-04-01/hostedzone <?xml version=\"1.0\" encoding=\"UTF-8\"?><CreateHostedZoneRequest \
                 xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Name>dev.example.internal</Name><CallerReference>run-1/aws-env/dev/res/",
                201,
                &created,
            )],
            |c| create_zone(c, &desired),
        )
        .unwrap();
        assert_eq!(s.outputs["id"], "Z1");
        let seen =
            with_call(&[("<HostedZoneConfig><Comment>a &amp; b</Comment></HostedZoneConfig>", 201, &created)], |c| {
                create_zone(c, &desired)
            });
        assert!(seen.is_ok());
    }

    #[test]
    fn finds_the_zone_by_caller_reference() {
        let listed = r#"<ListHostedZonesByNameResponse><HostedZones>
            <HostedZone><Id>/hostedzone/Z0</Id><Name>dev.example.internal.</Name><CallerReference>someone-else</CallerReference></HostedZone>
            <HostedZone><Id>/hostedzone/Z1</Id><Name>dev.example.internal.</Name><CallerReference>run-1/aws-env/dev/res/99</CallerReference></HostedZone>
            </HostedZones></ListHostedZonesByNameResponse>"#;
        let desired = map(json!({ "name": "dev.example.internal", "comment": "" }));
        let s = with_call(
            &[
                ("GET /2013-04-01/hostedzonesbyname?dnsname=dev.example.internal&maxitems=100", 200, listed),
                ("GET /2013-04-01/hostedzone/Z1", 200, ZONE),
            ],
            |c| find_zone(c, &desired),
        )
        .unwrap();
        assert_eq!(s.map(|s| s.id), Some("Z1".to_string()));
    }

    #[test]
    fn records_create_read_and_delete_with_current_values() {
        let desired = map(
            json!({ "zone_id": "Z1", "name": "app", "type": "CNAME", "ttl": 300, "records": ["web-dev-1.us-east-1.elb.amazonaws.com"] }),
        );
        let s = with_call(
            &[
                ("GET /2013-04-01/hostedzone/Z1 ", 200, ZONE),
                ("<Action>CREATE</Action><ResourceRecordSet><Name>app.dev.example.internal</Name><Type>CNAME</Type><TTL>300</TTL>", 200, "<ChangeResourceRecordSetsResponse/>"),
            ],
            |c| create_record(c, &desired),
        )
        .unwrap();
        assert_eq!(s.id, "Z1_app.dev.example.internal_CNAME");
        assert_eq!((s.output("name"), s.output("fqdn")), ("app".to_string(), "app.dev.example.internal".to_string()));

        let read = with_call(
            &[("GET /2013-04-01/hostedzone/Z1/rrset?name=app.dev.example.internal&type=CNAME&maxitems=1", 200, SETS)],
            |c| read_record(c, &s),
        )
        .unwrap()
        .unwrap();
        assert_eq!(read, s, "read back as created");

        let changed = SETS.replace("<TTL>300</TTL>", "<TTL>60</TTL>");
        with_call(
            &[("rrset?name=", 200, &changed), ("<Action>DELETE</Action><ResourceRecordSet><Name>app.dev.example.internal</Name><Type>CNAME</Type><TTL>60</TTL>", 200, "<x/>")],
            |c| delete_record(c, &s),
        )
        .unwrap();
        let empty = "<ListResourceRecordSetsResponse><ResourceRecordSets/></ListResourceRecordSetsResponse>";
        with_call(&[("rrset?name=", 200, empty)], |c| delete_record(c, &s)).unwrap();
    }

    #[test]
    fn a_later_record_in_the_listing_is_not_this_one() {
        let other = SETS.replace("app.dev", "bpp.dev");
        let s = record_state("Z1", "app", "app.dev.example.internal", "CNAME", &RecordSet { ttl: 1, records: vec![] });
        assert_eq!(with_call(&[("rrset?name=", 200, &other)], |c| read_record(c, &s)).unwrap(), None);
    }
}
