//! Records as the tests write them: one of each kind, filled in the way
//! a run fills it. Built for this crate's tests and, with the `fixtures`
//! feature, for the tests of the crates beside it (the suite both
//! backends pass).

use serde_json::json;

use crate::records::*;

pub fn key(env: &str, resource: &str) -> ResourceKey {
    ResourceKey::new("web", env, resource)
}

pub fn resource(n: u64) -> ResourceRecord {
    ResourceRecord {
        sensitive: Vec::new(),
        sensitive_outputs: Vec::new(),
        plugin: "aws".into(),
        kind: "vpc".into(),
        state: json!({ "id": format!("vpc-{n}"), "arn": format!("arn:aws:ec2:eu-west-1:123456789012:vpc/vpc-{n}") }),
        outputs: json!({ "id": format!("vpc-{n}"), "cidr": "10.0.0.0/16" }),
        attributes: json!({ "cidr": "10.0.0.0/16", "tags": { "team": "platform", "n": n }, "token": "***" }),
        depends_on: vec!["network".into(), "dns".into()],
        serial: 99,
        run_id: "r000001".into(),
        updated_ms: 1_700_000_000_000 + n,
    }
}

pub fn run(id: &str, started_ms: u64) -> RunRecord {
    RunRecord {
        sensitive_vars: Vec::new(),
        id: id.into(),
        pipeline: "web".into(),
        file: "/src/web.stackpipe".into(),
        kind: RunKind::Deploy,
        status: RunStatus::Running,
        environments: vec!["dev".into(), "staging".into(), "prod".into()],
        vars: vec![("region".into(), "eu-west-1".into())],
        sets: vec![("vpc.cidr".into(), "10.1.0.0/16".into())],
        parallelism: 10,
        message: Some("first".into()),
        pid: std::process::id(),
        started_ms,
        finished_ms: None,
        outcomes: Vec::new(),
        started_by: String::new(),
        trigger: Default::default(),
        rerun_of: None,
        resumed: Vec::new(),
        snapshot: None,
        targets: Vec::new(),
        orphans: false,
    }
}

pub fn job(run_id: &str, environment: &str, node: &str, level: usize) -> JobRecord {
    JobRecord {
        run_id: run_id.into(),
        environment: environment.into(),
        node: node.into(),
        level,
        status: Status::Succeeded,
        started_ms: Some(1),
        finished_ms: Some(2),
        ops: vec![OpRecord {
            name: "apply".into(),
            status: Status::Succeeded,
            started_ms: Some(1),
            finished_ms: Some(2),
            message: None,
        }],
        input: Some(JobInput {
            attributes: json!({ "cidr": "10.0.0.0/16" }),
            plugin: "aws".into(),
            plugin_digest: "sha256:abc".into(),
            kind: "vpc".into(),
            flow: json!({ "refresh": true, "preview": true, "pause_before_apply": false }),
            message: None,
        }),
        change: Some("create".into()),
        error: None,
        diff: None,
    }
}

pub fn log(environment: &str, node: &str, text: &str) -> LogLine {
    LogLine { ms: 5, environment: environment.into(), node: node.into(), op: "apply".into(), text: text.into(), level: LogLevel::Info, plugin: None }
}

pub fn journal(run_id: &str, node: &str, phase: JournalPhase) -> JournalEntry {
    JournalEntry {
        run_id: run_id.into(),
        environment: "dev".into(),
        node: node.into(),
        nodes: Vec::new(),
        op: "apply".into(),
        phase,
        ms: 7,
    }
}

pub fn holder(run_id: &str, pid: u32) -> LockHolder {
    LockHolder { run_id: run_id.into(), pid, since_ms: 11 }
}


pub fn decision(run_id: &str, env: &str, node: Option<&str>, d: Decision) -> GateDecision {
    GateDecision {
        run_id: run_id.into(),
        gate: GateInfo {
            kind: if node.is_some() { GateKind::After } else { GateKind::Environment },
            environment: env.into(),
            node: node.map(str::to_string),
            reason: "approval = true".into(),
            detail: None,
            since_ms: 1,
        },
        decision: d,
        by: "alice".into(),
        at_ms: 2,
        comment: Some("looks fine".into()),
    }
}
