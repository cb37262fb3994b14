//! Seed corpora for the state fuzz targets:
//!
//! - `<out>/state_file/*.redb`: valid state databases, written through
//!   `StateStore::open` + `commit` as stackpipe writes them (an empty one, a
//!   small one with every kind of record, and one whose writer never closed
//!   it, so that readers take the crash-recovery path). Real databases are
//!   0.5-1 MB, so they are not committed: they are written when needed.
//! - `<out>/state_records/*.json`: the JSON of every record type
//!   (committed; written again identically).
//!
//! The `state_file` target writes them and exits when
//! `STACKPIPE_FUZZ_WRITE_SEEDS` names the corpus root:
//!
//! ```sh
//! STACKPIPE_FUZZ_WRITE_SEEDS=$PWD/fuzz/corpus cargo +nightly fuzz run state_file
//! ```

use std::fs;
use std::path::Path;

use serde_json::json;
use stackpipe_state::*;

/// The variable that makes the `state_file` target write the seeds.
pub const WRITE_SEEDS_ENV: &str = "STACKPIPE_FUZZ_WRITE_SEEDS";

/// Writes the seeds under `out` (see the module documentation) and says
/// what it wrote. Panics on any failure: it runs by hand or in CI, where a
/// failure should stop everything.
pub fn write(out: &Path) {
    let files = out.join("state_file");
    let records = out.join("state_records");
    fs::create_dir_all(&files).expect("create the state_file corpus directory");
    fs::create_dir_all(&records).expect("create the state_records corpus directory");
    let work = tempfile::Builder::new().prefix("stackpipe-fuzz-seeds-").tempdir().expect("a temporary directory");
    let work = work.path();

    // A fresh store: the tables and nothing in them.
    {
        let dir = work.join("empty");
        drop(StateStore::open(&dir).expect("open an empty store"));
        save(&dir, &files.join("empty.redb"));
    }

    // Two runs, with every kind of record, locks taken and some released,
    // a resource deleted: closed cleanly.
    {
        let dir = work.join("small");
        let store = StateStore::open(&dir).expect("open a store");
        fill(&store);
        drop(store);
        save(&dir, &files.join("small.redb"));
    }

    // The same, but its writer never closed it (as after a kill -9): a
    // reader recovers a private copy.
    {
        let dir = work.join("crashed");
        let store = StateStore::open(&dir).expect("open a store");
        fill(&store);
        // Copied while the store is open: the copy is the file as a killed
        // writer leaves it.
        save(&dir, &files.join("crashed.redb"));
        drop(store);
    }

    let write = |name: &str, value: serde_json::Value| {
        let path = records.join(format!("{name}.json"));
        fs::write(&path, serde_json::to_vec(&value).expect("encode")).expect("write a record seed");
    };
    write("run", serde_json::to_value(run("r000001", RunKind::Deploy, RunStatus::Succeeded)).unwrap());
    write("run_running", serde_json::to_value(run("r000002", RunKind::Undeploy, RunStatus::Running)).unwrap());
    write("resource", serde_json::to_value(resource(1)).unwrap());
    write("resource_key", serde_json::to_value(key("prod", "vpc")).unwrap());
    write("job", serde_json::to_value(job("r000001", "dev", "vpc", 0)).unwrap());
    write("log", serde_json::to_value(log("dev", "vpc", "created vpc-1")).unwrap());
    write("journal", serde_json::to_value(journal("r000001", "vpc", JournalPhase::Started)).unwrap());
    write("journal_planned", serde_json::to_value(planned("r000001")).unwrap());
    write("decision", serde_json::to_value(decision("r000001")).unwrap());
    write("lock", serde_json::to_value(holder("r000001")).unwrap());
    write(
        "owner",
        serde_json::to_value(OwnerInfo {
            pid: 4242,
            run_id: Some("r000002".into()),
            since_ms: 1_700_000_000_000,
            control: Some("/tmp/stackpipe/control.sock".into()),
        })
        .unwrap(),
    );
    println!("{}: {} record seeds", records.display(), 11);
}

/// Copies the database of `dir` to `to`, and says how big it is.
/// The digest the seeds' runs name their snapshot by (any 64 hex digits:
/// the store takes a snapshot's digest as given).
pub const SNAPSHOT: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// The SHA-256 of the seeds' stored component, `\0asm a component's bytes`.
const COMPONENT: &str = "6582e6478fddb8bcb75f257bc0686c5b354d8ab8de98511c407bdbbd3cd9ef3d";

fn save(dir: &Path, to: &Path) {
    fs::copy(db_path(dir), to).expect("copy a database");
    println!("{}: {} bytes", to.display(), fs::metadata(to).expect("stat").len());
}

fn fill(store: &StateStore) {
    let mut writes = Vec::new();
    for (i, id) in ["r000001", "r000002"].into_iter().enumerate() {
        let status = if i == 0 { RunStatus::Succeeded } else { RunStatus::Running };
        writes.push(Write::PutRun(run(id, if i == 0 { RunKind::Deploy } else { RunKind::Undeploy }, status)));
        for (level, node) in ["vpc", "subnet", "bucket"].into_iter().enumerate() {
            for env in ["dev", "prod"] {
                writes.push(Write::PutJob(job(id, env, node, level)));
                writes.push(Write::Log(log(env, node, &format!("{node} in {env}: ok")), id.into()));
                writes.push(Write::Journal(journal(id, node, JournalPhase::Done)));
            }
        }
        writes.push(Write::Journal(planned(id)));
        writes.push(Write::Decision(decision(id)));
    }
    for (n, (env, res)) in [("dev", "vpc"), ("dev", "subnet"), ("prod", "vpc"), ("prod", "bucket"), ("dev", "old")]
        .into_iter()
        .enumerate()
    {
        writes.push(Write::PutResource(key(env, res), resource(n as u64)));
    }
    writes.push(Write::DeleteResource(key("dev", "old")));
    // What a run was started from: its snapshot, and a path plugin's bytes.
    let component: &[u8] = b"\0asm a component's bytes";
    let snapshot = RunSnapshot {
        pipeline: "web".into(),
        operation: RunKind::Deploy,
        environment: None,
        files: vec![SourceFile { path: "/src/web.pipeline".into(), text: "resource vpc \"aws.vpc\" {}\n".into() }],
        vars: vec![("region".into(), "eu-west-1".into())],
        sensitive_vars: vec!["db_password".into()],
        sets: Vec::new(),
        targets: vec!["vpc".into()],
        orphans: false,
        plugins: vec![PluginPin { name: "aws".into(), source: "plugins/aws.wasm".into(), digest: COMPONENT.into() }],
        artifacts: Default::default(),
        previews_only: false,
    };
    writes.push(Write::PutSnapshot(SNAPSHOT.into(), snapshot));
    writes.push(Write::PutBlob(COMPONENT.into(), Blob(component.into())));
    store.commit(writes).expect("commit");
    // A second resource write bumps its serial.
    store.commit(vec![Write::PutResource(key("dev", "vpc"), resource(9))]).expect("commit");
    store.lock(&[key("dev", "vpc"), key("prod", "vpc"), key("prod", "bucket")], &holder("r000002")).expect("lock");
    store.unlock_stale(Some(&key("prod", "bucket")), true).expect("unlock");
}

fn key(env: &str, resource: &str) -> ResourceKey {
    ResourceKey::new("web", env, resource)
}

fn resource(n: u64) -> ResourceRecord {
    ResourceRecord {
        plugin: "aws".into(),
        kind: "vpc".into(),
        state: json!({ "id": format!("vpc-{n}"), "arn": format!("arn:aws:ec2:eu-west-1:123456789012:vpc/vpc-{n}") }),
        outputs: json!({ "id": format!("vpc-{n}"), "cidr": "10.0.0.0/16", "zones": ["a", "b"], "ratio": 0.5 }),
        attributes: json!({ "cidr": "10.0.0.0/16", "tags": { "team": "platform", "n": n }, "token": "***", "x": null }),
        depends_on: vec!["network".into(), "dns".into()],
        sensitive: vec!["token".into()],
        sensitive_outputs: vec!["cidr".into()],
        serial: 1,
        run_id: "r000001".into(),
        updated_ms: 1_700_000_000_000 + n,
    }
}

fn run(id: &str, kind: RunKind, status: RunStatus) -> RunRecord {
    RunRecord {
        id: id.into(),
        pipeline: "web".into(),
        file: "/src/web.pipeline".into(),
        kind,
        status,
        environments: vec!["dev".into(), "prod".into()],
        vars: vec![("region".into(), "eu-west-1".into())],
        sensitive_vars: vec![SensitiveVar { name: "db_password".into(), hash: "ab".repeat(32) }],
        sets: vec![("vpc.cidr".into(), "10.1.0.0/16".into())],
        parallelism: 10,
        message: Some("first déploiement 🦀".into()),
        pid: 4242,
        started_ms: 1_700_000_000_000,
        finished_ms: (status != RunStatus::Running).then_some(1_700_000_060_000),
        outcomes: vec![
            EnvOutcome { name: "dev".into(), status: Status::Succeeded, reason: None },
            EnvOutcome {
                name: "prod".into(),
                status: Status::Failed,
                reason: Some("rejected by alice at the environment gate".into()),
            },
        ],
        started_by: "alice".into(),
        trigger: RunTrigger::Rerun,
        rerun_of: Some("r000000".into()),
        resumed: vec![Resumption { by: "bob".into(), ms: 1_700_000_030_000 }],
        snapshot: Some(SNAPSHOT.into()),
        targets: vec!["vpc".into()],
        orphans: true,
    }
}

fn job(run_id: &str, environment: &str, node: &str, level: usize) -> JobRecord {
    JobRecord {
        run_id: run_id.into(),
        environment: environment.into(),
        node: node.into(),
        level,
        status: Status::Succeeded,
        started_ms: Some(1),
        finished_ms: Some(2),
        ops: vec![
            OpRecord { name: "preview".into(), status: Status::Succeeded, started_ms: Some(1), finished_ms: Some(2), message: None },
            OpRecord {
                name: "apply".into(),
                status: Status::Failed,
                started_ms: Some(2),
                finished_ms: None,
                message: Some("quota exceeded".into()),
            },
        ],
        input: Some(JobInput {
            attributes: json!({ "cidr": "10.0.0.0/16" }),
            plugin: "aws".into(),
            plugin_digest: "sha256:abc".into(),
            kind: "vpc".into(),
            flow: json!({ "refresh": true, "preview": true, "pause_before_apply": false }),
            message: None,
        }),
        change: Some("create".into()),
        error: Some("apply failed".into()),
        diff: Some(JobDiff::Changes(vec![
            AttributeDiff {
                path: "cidr".into(),
                before: Some("\"10.0.0.0/24\"".into()),
                after: Some("\"10.0.0.0/16\"".into()),
                sensitive: false,
                forces_replacement: true,
            },
            AttributeDiff {
                path: "token".into(),
                before: None,
                after: Some("(sensitive)".into()),
                sensitive: true,
                forces_replacement: false,
            },
        ])),
    }
}

fn log(environment: &str, node: &str, text: &str) -> LogLine {
    LogLine { ms: 5, environment: environment.into(), node: node.into(), op: "apply".into(), text: text.into(), level: LogLevel::Info, plugin: None }
}

fn journal(run_id: &str, node: &str, phase: JournalPhase) -> JournalEntry {
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

fn planned(run_id: &str) -> JournalEntry {
    JournalEntry {
        run_id: run_id.into(),
        environment: "prod".into(),
        node: String::new(),
        nodes: vec!["vpc".into(), "subnet".into(), "bucket".into()],
        op: "destroy".into(),
        phase: JournalPhase::Planned,
        ms: 8,
    }
}

fn decision(run_id: &str) -> GateDecision {
    GateDecision {
        run_id: run_id.into(),
        gate: GateInfo {
            kind: GateKind::PauseBeforeApply,
            environment: "prod".into(),
            node: Some("vpc".into()),
            reason: "pause before apply".into(),
            detail: Some("create vpc".into()),
            since_ms: 9,
        },
        decision: Decision::Rejected,
        by: "alice".into(),
        at_ms: 10,
        comment: Some("not today".into()),
    }
}

fn holder(run_id: &str) -> LockHolder {
    LockHolder { run_id: run_id.into(), pid: 4_000_000, since_ms: 11 }
}
