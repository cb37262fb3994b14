//! A writer reopening a healthy state file, many times over: in a test
//! binary of its own, apart from the unit tests' timings (each open forks
//! a child to check the file; see `child`).

use serde_json::{json, from_value};
use stackpipe_state::{JournalEntry, LockHolder, LogLevel, LogLine, ResourceKey, StateStore, Write};

/// redb 3's integrity check calls some healthy files repaired (after
/// commits that freed pages, cberner/redb#1269); a writer must not take
/// that for damage and refuse the state. Random runs of ordinary commits,
/// each reopened by a writer: this seed met it once in 150 before the
/// check compared what the file holds before and after the repair.
#[test]
fn a_healthy_state_file_is_never_called_damaged() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let run = |id: String| {
        from_value(json!({
            "id": id, "pipeline": "web", "file": "/src/web.pipeline", "kind": "deploy", "status": "running",
            "environments": ["dev"], "vars": [], "sets": [], "parallelism": 10, "message": null, "pid": 1,
            "started_ms": 100, "finished_ms": null
        }))
        .unwrap()
    };
    let job = |run: String, node: String| {
        from_value(json!({
            "run_id": run, "environment": "dev", "node": node, "level": 0, "status": "succeeded", "started_ms": 1,
            "finished_ms": 2, "ops": [], "input": null, "change": "create", "error": null
        }))
        .unwrap()
    };
    let log = LogLine { ms: 5, environment: "dev".into(), node: "n".into(), op: "apply".into(), text: "line".into(), level: LogLevel::Info, plugin: None };
    let journal: JournalEntry = from_value(json!({
        "run_id": "r1", "environment": "dev", "node": "n", "nodes": [], "op": "apply", "phase": "started", "ms": 7
    }))
    .unwrap();
    let holder = LockHolder { run_id: "r1".into(), pid: std::process::id(), since_ms: 11 };
    for iteration in 0..150 {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".stackpipe");
        let store = StateStore::open(&state).unwrap();
        let mut trace = Vec::new();
        for _ in 0..5 + next(25) {
            let op = next(6);
            trace.push(op);
            match op {
                0 => drop(store.new_run_id().unwrap()),
                1 => store.commit(vec![Write::PutRun(run(format!("r{}", next(3))))]).unwrap(),
                2 => store.commit(vec![Write::PutJob(job(format!("r{}", next(3)), format!("n{}", next(4))))]).unwrap(),
                3 => store.commit_as(vec![Write::Log(log.clone(), "r1".into()), Write::Journal(journal.clone())], false).unwrap(),
                4 => store.lock(&[ResourceKey::new("web", "dev", &format!("n{}", next(4)))], &holder).unwrap(),
                _ => drop(store.unlock_run("r1").unwrap()),
            }
        }
        drop(store);
        if let Err(e) = StateStore::open(&state) {
            panic!("iteration {iteration}, commits {trace:?}: {e}");
        }
    }
}
