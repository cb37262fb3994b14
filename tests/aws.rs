//! The seed scenario (`examples/aws-env.pipeline`) deployed for real: the
//! `builtin:aws` component speaks the AWS protocols, signed, through the
//! host's wasi:http, to moto server, an AWS API emulator started per test on
//! a free loopback port. What exists afterwards is checked with the
//! emulator's own API, not with stackpipe's state.
//!
//! moto is installed by `scripts/moto.sh install` (into target/moto-venv)
//! the first time a test needs it; CI installs it beforehand.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::moto::{repo, Moto};
use common::{finish, text, Running};
use serde_json::Value;

/// The example, copied into a temp directory with its state beside it.
struct Scenario {
    dir: tempfile::TempDir,
    endpoint: String,
}

impl Scenario {
    fn new(moto: &Moto) -> Scenario {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::copy(repo().join("examples/aws-env.pipeline"), dir.path().join("aws-env.pipeline")).expect("copy the example");
        Scenario { dir, endpoint: moto.url() }
    }

    fn command(&self, args: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>) -> Command {
        let mut c = common::moto::stackpipe_in(self.dir.path());
        c.args(args);
        c
    }

    /// `stackpipe CMD aws-env.pipeline --env dev --var aws_endpoint=... --yes ARGS`
    fn run(&self, cmd: &str, args: &[&str]) -> Output {
        self.command(self.args(cmd, args)).output().expect("the binary runs")
    }

    /// The arguments of [`Self::run`]: `--yes` for a deploy or an undeploy
    /// (it opens no policy's gate: see [`Self::undeploy_approving`]).
    fn args(&self, cmd: &str, args: &[&str]) -> Vec<String> {
        let mut all = vec![cmd.to_string(), "aws-env.pipeline".into(), "--env".into(), "dev".into(), "--var".into()];
        all.push(format!("aws_endpoint={}", self.endpoint));
        if matches!(cmd, "deploy" | "undeploy") {
            all.push("--yes".into());
        }
        all.extend(args.iter().map(|a| a.to_string()));
        all
    }

    /// `run("undeploy")`, in the background, while another process approves
    /// what waits (`stackpipe approve --all`) until it ends: the policy's
    /// approvals of each delete, which `--yes` does not give. The
    /// undeploy's output, and how many gates were approved.
    fn undeploy_approving(&self) -> (Output, usize) {
        let mut command = self.command(self.args("undeploy", &[]));
        let child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
        let mut undeploy = Running::new(child.expect("the binary starts"));
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut approved = 0;
        while undeploy.child().try_wait().expect("the undeploy can be waited for").is_none() {
            assert!(Instant::now() < deadline, "the undeploy is still running");
            let o = self.command(["approve", "--all", "--comment", "scenario teardown"]).output().expect("approve runs");
            // Exit 2 when nothing waits yet (or the run just ended).
            if o.status.code() == Some(0) {
                approved += text(&o.stdout).lines().filter(|l| l.starts_with("approved ")).count();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (finish(undeploy), approved)
    }

    fn status(&self) -> Value {
        let o = self.command(["status", "--json"]).output().expect("the binary runs");
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("status --json is JSON")
    }

    fn outputs(&self) -> Value {
        let o = self.run("outputs", &["--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("outputs --json is JSON")
    }
}

fn succeeded(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

fn nodes(status: &Value) -> Vec<Value> {
    status["environments"][0]["nodes"].as_array().expect("nodes").clone()
}

fn node<'a>(nodes: &'a [Value], name: &str) -> &'a Value {
    nodes.iter().find(|n| n["name"] == name).unwrap_or_else(|| panic!("node {name}"))
}

/// (resource, what it depends on) in the example.
const EDGES: [(&str, &[&str]); 11] = [
    ("public_a", &["vpc"]),
    ("public_b", &["vpc"]),
    ("private_a", &["vpc"]),
    ("private_b", &["vpc"]),
    ("web_sg", &["vpc"]),
    ("db_subnets", &["private_a", "private_b"]),
    ("db", &["db_subnets", "web_sg"]),
    ("lb", &["public_a", "public_b", "web_sg"]),
    ("app_record", &["zone", "lb", "cert", "db"]),
    ("cert", &[]),
    ("zone", &[]),
];

fn ms(n: &Value, key: &str) -> u64 {
    n[key].as_u64().unwrap_or_else(|| panic!("{key} of {n}"))
}

#[test]
fn deploy_builds_the_scenario_in_order_and_undeploy_removes_it_in_reverse() {
    let moto = Moto::start();
    let s = Scenario::new(&moto);
    let out = succeeded(&s.run("deploy", &["-m", "first"]));
    assert!(out.contains("run r000001 succeeded"), "{out}");

    // In the emulator: one VPC, four subnets, a security group, ...
    let (vpcs, subnets, groups) = moto.custom_network();
    assert_eq!((vpcs.len(), subnets.len(), groups.len()), (1, 4, 1), "{vpcs:?} {subnets:?} {groups:?}");
    let described = moto.ec2(&[("Action", "DescribeSubnets"), ("Filter.1.Name", "vpc-id"), ("Filter.1.Value.1", &vpcs[0])]);
    let mut cidrs = Moto::all(&described, "cidrBlock");
    cidrs.sort();
    assert_eq!(cidrs, ["10.0.0.0/24", "10.0.1.0/24", "10.0.10.0/24", "10.0.11.0/24"]);
    assert_eq!(groups, ["web-dev"]);
    let sg = moto.ec2(&[("Action", "DescribeSecurityGroups"), ("Filter.1.Name", "group-name"), ("Filter.1.Value.1", "web-dev")]);
    assert!(sg.contains(&format!("<vpcId>{}</vpcId>", vpcs[0])), "{sg}");
    assert_eq!(Moto::all(&sg, "fromPort"), ["443", "5432"], "{sg}");

    // ... wired: the DB's subnet group holds the private subnets, the DB uses it.
    let outputs = s.outputs();
    let r = &outputs["dev"]["resources"];
    let id = |name: &str| r[name]["id"].as_str().unwrap_or_else(|| panic!("{name}.id in {r}")).to_string();
    let group = moto.rds(&[("Action", "DescribeDBSubnetGroups"), ("DBSubnetGroupName", "db-dev")]);
    let mut in_group = Moto::all(&group, "SubnetIdentifier");
    in_group.sort();
    let mut private = vec![id("private_a"), id("private_b")];
    private.sort();
    assert_eq!(in_group, private);
    let db = moto.rds(&[("Action", "DescribeDBInstances"), ("DBInstanceIdentifier", "app-dev")]);
    assert!(db.contains("<DBSubnetGroupName>db-dev</DBSubnetGroupName>") && db.contains("<Engine>postgres</Engine>"), "{db}");
    assert!(r["db"]["endpoint"].as_str().is_some_and(|e| e.contains(':')), "{}", r["db"]);

    // ... one load balancer in the public subnets, and the record points at its DNS name.
    let lbs = moto.elb(&[("Action", "DescribeLoadBalancers"), ("Names.member.1", "web-dev")]);
    let dns = Moto::all(&lbs, "DNSName");
    assert_eq!(dns.len(), 1, "{lbs}");
    assert_eq!(r["lb"]["dns_name"], dns[0].as_str());
    let mut lb_subnets = Moto::all(&lbs, "SubnetId");
    lb_subnets.sort();
    let mut public = vec![id("public_a"), id("public_b")];
    public.sort();
    assert_eq!(lb_subnets, public);
    let zones = moto.route53_get("hostedzone");
    assert_eq!(Moto::all(&zones, "Name"), ["dev.example.internal."], "{zones}");
    let records = moto.route53_get(&format!("hostedzone/{}/rrset", id("zone")));
    assert!(records.contains("<Name>app.dev.example.internal.</Name>") && records.contains("<Type>CNAME</Type>"), "{records}");
    assert_eq!(Moto::all(&records, "Value").iter().filter(|v| **v == dns[0]).count(), 1, "{records}");
    let certs = moto.acm("ListCertificates", "{}");
    let list = certs["CertificateSummaryList"].as_array().expect("certificates");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["DomainName"], "app.dev.example.internal");
    assert_eq!(outputs["dev"]["outputs"]["lb_dns"], dns[0].as_str());

    // Order, from stackpipe's record: nothing started before its dependencies
    // finished; the subnets of one level ran at the same time.
    let status = s.status();
    let deployed = nodes(&status);
    assert_eq!(deployed.len(), 12);
    for (n, deps) in EDGES {
        let started = ms(node(&deployed, n), "started_ms");
        for d in deps {
            let finished = ms(node(&deployed, d), "finished_ms");
            assert!(started >= finished, "{n} started at {started}, before {d} finished at {finished}");
        }
    }
    let (a, b) = (node(&deployed, "public_a"), node(&deployed, "public_b"));
    assert!(
        ms(a, "started_ms") < ms(b, "finished_ms") && ms(b, "started_ms") < ms(a, "finished_ms"),
        "public_a and public_b did not overlap: {a} {b}"
    );

    // Idempotence: nothing to change, so nothing is applied.
    let plan = succeeded(&s.run("plan", &[]));
    assert!(plan.contains("No changes."), "{plan}");
    succeeded(&s.run("deploy", &[]));
    for n in nodes(&s.status()) {
        assert_eq!(n["change"], "no-op", "{n}");
        let apply = n["operations"].as_array().unwrap().iter().find(|o| o["name"] == "apply").cloned().unwrap();
        assert_eq!((&apply["status"], &apply["message"]), (&"skipped".into(), &"no changes".into()), "{n}");
    }

    // Undeploy: the example's protect-stateful policy asks a person to
    // approve every delete, --yes or not; approved from another process.
    let (o, approved) = s.undeploy_approving();
    let out = succeeded(&o);
    assert!(out.contains("succeeded"), "{out}");
    assert!(text(&o.stderr).contains("which --yes does not give"), "{}", text(&o.stderr));
    let status = s.status();
    assert_eq!(status["operation"], "undeploy");
    let decisions = status["decisions"].as_array().expect("decisions");
    assert_eq!((decisions.len(), approved), (12, 12), "{decisions:#?}");
    for d in decisions {
        assert_eq!((&d["gate"], &d["decision"]), (&"policy".into(), &"approved".into()), "{d}");
        assert!(!d["by"].as_str().unwrap_or_default().contains("--yes"), "a person approved it: {d}");
        assert!(d["reason"].as_str().unwrap_or_default().contains("policy `protect` requires approval: will delete"), "{d}");
    }
    // Dependents first, from stackpipe's record (moto accepts most
    // wrong-order deletes, so it proves nothing).
    let destroyed = nodes(&status);
    for (n, deps) in EDGES {
        let finished = ms(node(&destroyed, n), "finished_ms");
        for d in deps {
            let started = ms(node(&destroyed, d), "started_ms");
            assert!(started >= finished, "{d} destroyed at {started}, before its dependent {n} was gone at {finished}");
        }
    }
    let (vpcs, subnets, groups) = moto.custom_network();
    assert_eq!((vpcs.len(), subnets.len(), groups.len()), (0, 0, 0), "{vpcs:?} {subnets:?} {groups:?}");
    assert!(Moto::all(&moto.rds(&[("Action", "DescribeDBInstances")]), "DBInstanceIdentifier").is_empty());
    assert!(Moto::all(&moto.rds(&[("Action", "DescribeDBSubnetGroups")]), "DBSubnetGroupName").is_empty());
    assert!(Moto::all(&moto.elb(&[("Action", "DescribeLoadBalancers")]), "LoadBalancerArn").is_empty());
    assert!(Moto::all(&moto.route53_get("hostedzone"), "Id").is_empty());
    assert_eq!(moto.acm("ListCertificates", "{}")["CertificateSummaryList"].as_array().map(Vec::len), Some(0));
}

#[test]
fn drift_behind_stackpipes_back_shows_in_the_plan_and_deploy_repairs_it() {
    let moto = Moto::start();
    let s = Scenario::new(&moto);
    succeeded(&s.run("deploy", &[]));
    let outputs = s.outputs();
    let r = &outputs["dev"]["resources"];
    let vpc = r["vpc"]["id"].as_str().expect("vpc id").to_string();
    let zone = r["zone"]["id"].as_str().expect("zone id").to_string();
    let dns = r["lb"]["dns_name"].as_str().expect("lb dns").to_string();

    // Someone renames the VPC and deletes the DNS record by hand.
    moto.ec2(&[("Action", "CreateTags"), ("ResourceId.1", &vpc), ("Tag.1.Key", "Name"), ("Tag.1.Value", "renamed")]);
    let delete = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeBatch><Changes><Change>
<Action>DELETE</Action><ResourceRecordSet><Name>app.dev.example.internal.</Name><Type>CNAME</Type><TTL>300</TTL>
<ResourceRecords><ResourceRecord><Value>{dns}</Value></ResourceRecord></ResourceRecords></ResourceRecordSet>
</Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"#
    );
    moto.route53_post(&format!("hostedzone/{zone}/rrset"), &delete);
    assert!(!moto.route53_get(&format!("hostedzone/{zone}/rrset")).contains("app.dev.example.internal."));

    let plan = succeeded(&s.run("plan", &[]));
    assert!(plan.contains("# vpc (aws.vpc) will be updated in place"), "{plan}");
    assert!(plan.contains("renamed"), "the plan shows the drifted value: {plan}");
    assert!(plan.contains("# app_record (aws.dns_record) will be created"), "{plan}");
    assert!(plan.contains("Plan: 1 to add, 1 to change, 0 to destroy."), "{plan}");

    succeeded(&s.run("deploy", &[]));
    let tags = moto.ec2(&[("Action", "DescribeVpcs"), ("VpcId.1", &vpc)]);
    assert!(tags.contains("<value>aws-env-dev</value>") && !tags.contains("renamed"), "{tags}");
    let records = moto.route53_get(&format!("hostedzone/{zone}/rrset"));
    assert!(records.contains("app.dev.example.internal.") && records.contains(&dns), "{records}");
    assert!(succeeded(&s.run("plan", &[])).contains("No changes."));
}

#[test]
fn an_apply_the_emulator_rejects_fails_its_node_cancels_its_dependents_and_keeps_the_rest() {
    let moto = Moto::start();
    let s = Scenario::new(&moto);
    // private_b's CIDR overlaps private_a's: EC2 refuses the second subnet.
    let o = s.run("deploy", &["--set", "private_b.cidr_block=10.0.10.0/24", "--parallelism", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let status = s.status();
    let all = nodes(&status);
    let private_b = node(&all, "private_b");
    assert_eq!(private_b["status"], "failed");
    let error = private_b["error"].as_str().unwrap_or_default();
    assert!(error.contains("InvalidSubnet.Conflict"), "the API error, verbatim: {error}");
    for dependent in ["db_subnets", "db", "app_record"] {
        assert_eq!(node(&all, dependent)["status"], "cancelled", "{dependent}");
    }
    for independent in ["vpc", "public_a", "public_b", "private_a", "web_sg", "lb", "cert", "zone"] {
        assert_eq!(node(&all, independent)["status"], "succeeded", "{independent}");
    }
    let lbs = moto.elb(&[("Action", "DescribeLoadBalancers")]);
    assert_eq!(Moto::all(&lbs, "LoadBalancerName"), ["web-dev"], "the independent branch is deployed");
    assert!(Moto::all(&moto.rds(&[("Action", "DescribeDBInstances")]), "DBInstanceIdentifier").is_empty());
}
