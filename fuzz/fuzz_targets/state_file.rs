//! Arbitrary bytes as `state.redb` in a state directory of their own:
//!
//! 1. `StateStore::open_read_only` (what `status`, `logs`, `history` and
//!    `plan` do) and, if it opens, every read method over every run it
//!    lists (and a few run ids it may not list), every resource, every lock
//!    and the history of every resource a job touched;
//! 2. then `StateStore::open` (what `deploy` does: it checks a copy of the
//!    file before it writes) and, if that opens, the same reads and a small
//!    write batch, as a run makes (its record, a log line, a resource, a job).
//!
//! Errors are fine (a damaged file is `StateError::Damaged`); a panic, an
//! abort, a hang or a runaway allocation is a bug.
//!
//! The state directory lives under `$TMPDIR`; when that is not set, under
//! `/dev/shm` if there is one (every input is written, copied and fsynced
//! several times: tmpfs makes that cheap).
//!
//! With `STACKPIPE_FUZZ_WRITE_SEEDS=<corpus root>`, it writes the seed
//! corpora instead (see `src/seeds.rs`) and exits.
#![no_main]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stackpipe_state::*;

/// The directory every input's state directory is made in, once per process.
fn base() -> &'static Path {
    static BASE: OnceLock<tempfile::TempDir> = OnceLock::new();
    BASE.get_or_init(|| {
        if std::env::var_os("TMPDIR").is_none() && Path::new("/dev/shm").is_dir() {
            // Before any other thread exists: libFuzzer runs inputs on the
            // main thread, and this is its first.
            std::env::set_var("TMPDIR", "/dev/shm");
        }
        tempfile::Builder::new().prefix("stackpipe-fuzz-state-").tempdir().expect("a temporary directory")
    })
    .path()
}

/// A fresh state directory holding `data` as its database.
fn state_dir(data: &[u8]) -> PathBuf {
    let dir = base().join("state");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).expect("create the state directory");
    std::fs::write(db_path(&dir), data).expect("write state.redb");
    dir
}

/// Every read the CLI makes, over whatever the store holds.
fn read_everything(store: &StateStore) {
    let mut run_ids: BTreeSet<String> = ["r000001", "r000002", ""].into_iter().map(String::from).collect();
    let mut snapshots: BTreeSet<String> = [stackpipe_fuzz::seeds::SNAPSHOT.to_string()].into_iter().collect();
    if let Ok(runs) = store.runs() {
        snapshots.extend(runs.iter().filter_map(|r| r.snapshot.clone()).take(8));
        run_ids.extend(runs.into_iter().map(|r| r.id));
    }
    for digest in &snapshots {
        if let Ok(Some(snapshot)) = store.snapshot(digest) {
            for pin in snapshot.plugins.iter().take(8) {
                let _ = store.blob(&pin.digest);
            }
        }
    }
    let _ = store.latest_run();
    let _ = store.counts();
    for id in &run_ids {
        let _ = store.run(id);
        if let Ok(jobs) = store.jobs(id) {
            for job in jobs.iter().take(8) {
                let _ = store.job(id, &job.environment, &job.node);
                let _ = store.logs(id, Some(&job.node));
            }
        }
        let _ = store.logs(id, None);
        let _ = store.journal(id).map(|entries| entries.iter().map(|e| e.nodes().count()).sum::<usize>());
        let _ = store.decisions(id);
    }
    let mut scopes: BTreeSet<(String, String)> = BTreeSet::new();
    if let Ok(resources) = store.all_resources() {
        for (key, _) in resources.iter().take(8) {
            let _ = store.resource(key);
        }
        scopes.extend(resources.into_iter().map(|(k, _)| (k.pipeline, k.environment)));
    }
    scopes.insert(("web".into(), "dev".into()));
    for (pipeline, env) in scopes.iter().take(8) {
        let _ = store.resources(pipeline, Some(env));
        let _ = store.resources(pipeline, None);
    }
    let _ = store.locks();
    let mut touched = vec![("dev".to_string(), "vpc".to_string())];
    if let Ok(all) = store.touched_resources() {
        touched.extend(all.into_iter().take(8));
    }
    for (env, resource) in &touched {
        let _ = store.resource_jobs(env, resource);
    }
}

/// What a run does to the store first: a run id, its record, a log line,
/// a resource (whose serial is read from the stored one), its locks.
fn write_a_little(store: &StateStore) {
    let Ok(id) = store.new_run_id() else { return };
    let key = ResourceKey::new("web", "dev", "vpc");
    let run = RunRecord {
        id: id.clone(),
        pipeline: "web".into(),
        file: "/src/web.pipeline".into(),
        kind: RunKind::Deploy,
        status: RunStatus::Running,
        environments: vec!["dev".into()],
        vars: Vec::new(),
        sensitive_vars: Vec::new(),
        sets: Vec::new(),
        parallelism: 4,
        message: None,
        pid: std::process::id(),
        started_ms: 1,
        finished_ms: None,
        outcomes: Vec::new(),
        started_by: "fuzz".into(),
        trigger: RunTrigger::Cli,
        rerun_of: None,
        resumed: Vec::new(),
        snapshot: None,
        targets: Vec::new(),
        orphans: false,
    };
    let resource = ResourceRecord {
        plugin: "aws".into(),
        kind: "vpc".into(),
        state: serde_json::Value::Null,
        outputs: serde_json::Value::Null,
        attributes: serde_json::Value::Null,
        depends_on: Vec::new(),
        sensitive: Vec::new(),
        sensitive_outputs: Vec::new(),
        serial: 0,
        run_id: id.clone(),
        updated_ms: 2,
    };
    let line = LogLine { ms: 3, environment: "dev".into(), node: "vpc".into(), op: "apply".into(), text: "ok".into(), level: LogLevel::Warn, plugin: Some("t".into()) };
    let holder = LockHolder { run_id: id.clone(), pid: std::process::id(), since_ms: 4 };
    if store.lock(std::slice::from_ref(&key), &holder).is_err() {
        return;
    }
    let job = JobRecord {
        run_id: id.clone(),
        environment: "dev".into(),
        node: "vpc".into(),
        level: 0,
        status: Status::Succeeded,
        started_ms: Some(2),
        finished_ms: Some(3),
        ops: Vec::new(),
        input: None,
        change: Some("update".into()),
        error: None,
        diff: Some(JobDiff::Changes(vec![AttributeDiff {
            path: "cidr".into(),
            before: Some("\"10.0.0.0/24\"".into()),
            after: Some("\"10.0.0.0/16\"".into()),
            sensitive: false,
            forces_replacement: true,
        }])),
    };
    let _ = store.commit(vec![
        Write::PutRun(run),
        Write::Log(line, id.clone()),
        Write::PutResource(key, resource),
        Write::PutJob(job),
    ]);
    let _ = store.unlock_run(&id);
}

/// Before libFuzzer starts: write the seeds and exit, if asked to.
fn init() {
    if let Some(out) = std::env::var_os(stackpipe_fuzz::seeds::WRITE_SEEDS_ENV) {
        stackpipe_fuzz::seeds::write(Path::new(&out));
        std::process::exit(0);
    }
}

fuzz_target!(init: init(), |data: &[u8]| {
    let dir = state_dir(data);
    if let Ok(store) = StateStore::open_read_only(&dir) {
        read_everything(&store);
    }
    // The reader is gone (it holds the file's lock while open).
    if let Ok(store) = StateStore::open(&dir) {
        read_everything(&store);
        write_a_little(&store);
    }
});
