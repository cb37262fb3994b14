//! One suite, two backends: every promise of `StateBackend` checked against
//! the redb store and against PostgreSQL (a real cluster, started by
//! `tests/common/postgres.rs`, a database per test). What is particular to
//! one backend is tested beside it (redb: `state/src/tests.rs`; PostgreSQL:
//! the `postgres_only` module below).

mod common;

use serde_json::json;
use stackpipe_runtime::state::*;
use stackpipe_state::fixtures::*;
use stackpipe_state_postgres::PostgresStore;

use common::postgres::Postgres;

/// What a test of the suite keeps alive: the store, and its directory.
struct Opened {
    store: StateStore,
    _dir: Option<tempfile::TempDir>,
}

fn redb() -> Opened {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = StateStore::open(&dir.path().join(".stackpipe")).expect("opens");
    Opened { store, _dir: Some(dir) }
}

fn postgres() -> Opened {
    let url = Postgres::shared().database("suite");
    Opened { store: StateStore::with_backend(PostgresStore::connect(&url).expect("connects")), _dir: None }
}

/// Each test of the suite, once on each backend.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $(#[test] fn $name() { super::$name(&super::redb().store) })*
        }
        mod on_postgres {
            $(#[test] fn $name() { super::$name(&super::postgres().store) })*
        }
    };
}

suite!(
    every_record_comes_back_as_written,
    resources_are_per_pipeline_and_environment_in_byte_order,
    a_resources_serial_counts_its_writes,
    runs_come_most_recent_first_and_a_run_nobody_runs_is_interrupted,
    jobs_come_in_environment_then_level_then_node_order,
    a_runs_rows_come_in_the_order_written,
    ids_count_up,
    locks_are_all_or_nothing_and_bound_to_a_run,
    a_deleted_run_leaves_nothing_of_it_and_everything_of_the_others,
    content_is_kept_once_under_its_digest_and_checked,
    executions_and_services,
    a_sensitive_value_is_kept_as_a_keyed_hash,
    counts_count_every_table,
);

/// A run record of the fixtures, stored with `status`.
fn run_as(id: &str, started_ms: u64, status: RunStatus) -> RunRecord {
    RunRecord { status, ..run(id, started_ms) }
}

/// A log line of `dev`.
fn line(node: &str, text: &str) -> LogLine {
    log("dev", node, text)
}

/// A decision at prod's gate.
fn decided(run_id: &str, d: Decision) -> GateDecision {
    decision(run_id, "prod", None, d)
}

/// A lock holder in this process.
fn mine(run_id: &str) -> LockHolder {
    holder(run_id, std::process::id())
}

fn every_record_comes_back_as_written(store: &StateStore) {
    store.set_owner_run("r000001", None).unwrap();
    let r = run_as("r000001", 100, RunStatus::Running);
    let j = job("r000001", "dev", "vpc", 0);
    let l = line("vpc", "created vpc-1");
    let e = journal("r000001", "vpc", JournalPhase::Started);
    let d = decided("r000001", Decision::Approved);
    let res = resource(1);
    store
        .commit(vec![
            Write::PutRun(r.clone()),
            Write::PutJob(j.clone()),
            Write::Log(l.clone(), "r000001".into()),
            Write::Journal(e.clone()),
            Write::Decision(d.clone()),
            Write::PutResource(key("dev", "vpc"), res.clone()),
        ])
        .unwrap();
    assert_eq!(store.run("r000001").unwrap(), Some(r.clone()), "running: this process runs it");
    assert_eq!(store.run("r000002").unwrap(), None);
    assert_eq!(store.job("r000001", "dev", "vpc").unwrap(), Some(j.clone()));
    assert_eq!(store.job("r000001", "prod", "vpc").unwrap(), None);
    assert_eq!(store.jobs("r000001").unwrap(), vec![j]);
    assert_eq!(store.logs("r000001", None).unwrap(), vec![l]);
    assert_eq!(store.journal("r000001").unwrap(), vec![e]);
    assert_eq!(store.decisions("r000001").unwrap(), vec![d]);
    assert_eq!(store.resource(&key("dev", "vpc")).unwrap(), Some(ResourceRecord { serial: 1, ..res }));
    assert_eq!(store.resource(&key("prod", "vpc")).unwrap(), None);
    assert_eq!(store.latest_run().unwrap().map(|r| r.id), Some("r000001".into()));
    // A run the process no longer runs, still recorded as running, was interrupted.
    store.run_ended("r000001");
    assert_eq!(store.run("r000001").unwrap().unwrap().status, RunStatus::Interrupted);
    assert!(store.is_writable());
}

fn resources_are_per_pipeline_and_environment_in_byte_order(store: &StateStore) {
    let other = ResourceKey::new("api", "dev", "db");
    store
        .commit(vec![
            Write::PutResource(key("prod", "vpc"), resource(1)),
            Write::PutResource(key("dev", "b"), resource(2)),
            Write::PutResource(key("dev", "a"), resource(3)),
            // Upper case sorts before lower case, byte by byte, whatever the locale.
            Write::PutResource(key("dev", "Z"), resource(4)),
            Write::PutResource(key("dev", "a-b"), resource(5)),
            Write::PutResource(other.clone(), resource(6)),
        ])
        .unwrap();
    let names = |list: Vec<(ResourceKey, ResourceRecord)>| -> Vec<String> {
        list.into_iter().map(|(k, _)| format!("{}/{}/{}", k.pipeline, k.environment, k.resource)).collect()
    };
    assert_eq!(names(store.resources("web", Some("dev")).unwrap()), ["web/dev/Z", "web/dev/a", "web/dev/a-b", "web/dev/b"]);
    assert_eq!(names(store.resources("web", None).unwrap()), ["web/dev/Z", "web/dev/a", "web/dev/a-b", "web/dev/b", "web/prod/vpc"]);
    assert_eq!(names(store.resources("api", None).unwrap()), ["api/dev/db"]);
    assert_eq!(names(store.resources("none", None).unwrap()), Vec::<String>::new());
    assert_eq!(store.all_resources().unwrap().len(), 6);
    assert_eq!(names(store.all_resources().unwrap())[0], "api/dev/db");
}

fn a_resources_serial_counts_its_writes(store: &StateStore) {
    let k = key("dev", "vpc");
    let serial = || store.resource(&k).unwrap().map(|r| r.serial);
    store.commit(vec![Write::PutResource(k.clone(), resource(1))]).unwrap();
    assert_eq!(serial(), Some(1));
    store.commit(vec![Write::PutResource(k.clone(), resource(2)), Write::PutResource(k.clone(), resource(3))]).unwrap();
    assert_eq!(serial(), Some(3), "two writes in one batch count twice");
    assert_eq!(store.resource(&k).unwrap().unwrap().updated_ms, resource(3).updated_ms, "the last write wins");
    store.commit(vec![Write::DeleteResource(k.clone())]).unwrap();
    assert_eq!(serial(), None);
    store.commit(vec![Write::PutResource(k.clone(), resource(4))]).unwrap();
    assert_eq!(serial(), Some(1), "a new resource starts again");
    // In one batch, as one by one: a deletion between two puts restarts the count.
    store
        .commit(vec![
            Write::PutResource(k.clone(), resource(5)),
            Write::DeleteResource(k.clone()),
            Write::PutResource(k.clone(), resource(6)),
            Write::PutResource(key("dev", "other"), resource(7)),
        ])
        .unwrap();
    assert_eq!(serial(), Some(1));
    assert_eq!(store.resource(&k).unwrap().unwrap().updated_ms, resource(6).updated_ms);
    assert_eq!(store.resource(&key("dev", "other")).unwrap().unwrap().serial, 1);
}

fn runs_come_most_recent_first_and_a_run_nobody_runs_is_interrupted(store: &StateStore) {
    store.set_owner_run("r000003", None).unwrap();
    store
        .commit(vec![
            Write::PutRun(run_as("r000001", 10, RunStatus::Succeeded)),
            Write::PutRun(run_as("r000002", 30, RunStatus::Running)),
            Write::PutRun(run_as("r000003", 20, RunStatus::Running)),
            Write::PutRun(run_as("r000004", 30, RunStatus::Failed)),
        ])
        .unwrap();
    let runs = store.runs().unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r000004", "r000002", "r000003", "r000001"], "by start, then id, most recent first");
    let status: Vec<RunStatus> = runs.iter().map(|r| r.status).collect();
    assert_eq!(status, [RunStatus::Failed, RunStatus::Interrupted, RunStatus::Running, RunStatus::Succeeded]);
    // A record replaced is replaced.
    store.commit(vec![Write::PutRun(run_as("r000003", 20, RunStatus::Succeeded))]).unwrap();
    assert_eq!(store.run("r000003").unwrap().unwrap().status, RunStatus::Succeeded);
}

fn jobs_come_in_environment_then_level_then_node_order(store: &StateStore) {
    store
        .commit(vec![
            Write::PutRun(run_as("r1", 1, RunStatus::Succeeded)),
            Write::PutJob(job("r1", "prod", "a", 0)),
            Write::PutJob(job("r1", "dev", "z", 0)),
            Write::PutJob(job("r1", "dev", "b", 1)),
            Write::PutJob(job("r1", "dev", "a", 1)),
            Write::PutJob(job("r1", "staging", "a", 0)),
            Write::PutJob(job("r1", "other", "a", 0)),
            Write::PutJob(job("r2", "dev", "a", 0)),
        ])
        .unwrap();
    let order: Vec<String> = store.jobs("r1").unwrap().iter().map(|j| format!("{}/{}", j.environment, j.node)).collect();
    assert_eq!(order, ["dev/z", "dev/a", "dev/b", "staging/a", "prod/a", "other/a"]);
    assert_eq!(store.jobs("r2").unwrap().len(), 1, "a run without a record has its jobs too");
    assert_eq!(store.jobs("r3").unwrap(), Vec::new());
    let history: Vec<String> = store.resource_jobs("dev", "a").unwrap().into_iter().map(|j| j.run_id).collect();
    assert_eq!(history, ["r1", "r2"]);
    assert_eq!(
        store.touched_resources().unwrap(),
        [("dev", "a"), ("dev", "b"), ("dev", "z"), ("other", "a"), ("prod", "a"), ("staging", "a")]
            .map(|(e, r)| (e.to_string(), r.to_string()))
    );
}

fn a_runs_rows_come_in_the_order_written(store: &StateStore) {
    // Interleaved between two runs and across batches.
    for i in 0..30 {
        let node = if i % 3 == 0 { "a" } else { "b" };
        store
            .commit(vec![
                Write::Log(line(node, &format!("one {i}")), "r1".into()),
                Write::Log(line(node, &format!("two {i}")), "r2".into()),
                Write::Journal(journal("r1", &format!("n{i}"), JournalPhase::Started)),
                Write::Decision(decided(if i % 2 == 0 { "r1" } else { "r2" }, Decision::Rejected)),
            ])
            .unwrap();
    }
    let texts: Vec<String> = store.logs("r1", None).unwrap().into_iter().map(|l| l.text).collect();
    assert_eq!(texts, (0..30).map(|i| format!("one {i}")).collect::<Vec<_>>());
    let of_a: Vec<String> = store.logs("r2", Some("a")).unwrap().into_iter().map(|l| l.text).collect();
    assert_eq!(of_a, (0..30).step_by(3).map(|i| format!("two {i}")).collect::<Vec<_>>());
    let nodes: Vec<String> = store.journal("r1").unwrap().into_iter().map(|e| e.node).collect();
    assert_eq!(nodes, (0..30).map(|i| format!("n{i}")).collect::<Vec<_>>());
    assert_eq!(store.decisions("r1").unwrap().len(), 15);
    assert_eq!(store.logs("r3", None).unwrap(), Vec::new());
    // Without durability: the same, visible at once.
    store.commit_as(vec![Write::Log(line("a", "quick"), "r1".into())], false).unwrap();
    assert_eq!(store.logs("r1", None).unwrap().last().unwrap().text, "quick");
    store.persist().unwrap();
}

fn ids_count_up(store: &StateStore) {
    assert_eq!(store.new_run_id().unwrap(), "r000001");
    assert_eq!(store.new_run_id().unwrap(), "r000002");
    assert_eq!(store.new_execution_id().unwrap(), "x000001", "a counter of its own");
    assert_eq!(store.new_run_id().unwrap(), "r000003");
}

fn locks_are_all_or_nothing_and_bound_to_a_run(store: &StateStore) {
    store.set_owner_run("r1", None).unwrap();
    store.lock(&[key("dev", "a"), key("dev", "b")], &mine("r1")).unwrap();
    // The same run again: fine, and nothing changes.
    store.lock(&[key("dev", "a")], &mine("r1")).unwrap();
    // Another run: refused on the first key it shares, and it takes nothing.
    match store.lock(&[key("dev", "c"), key("dev", "b")], &mine("r2")) {
        Err(StateError::Locked { key: k, holder: h, holder_alive }) => {
            assert_eq!(k, key("dev", "b"));
            assert_eq!(h.run_id, "r1");
            assert!(holder_alive, "r1 is run by this process");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let held: Vec<(String, String)> = store.locks().unwrap().into_iter().map(|(k, h)| (k.resource, h.run_id)).collect();
    assert_eq!(held, [("a".into(), "r1".into()), ("b".into(), "r1".into())]);
    // A live run's locks are not stale; forced, they go.
    assert_eq!(store.unlock_stale(None, false).unwrap(), Vec::new());
    assert_eq!(store.unlock_stale(Some(&key("dev", "a")), true).unwrap().len(), 1);
    assert_eq!(store.unlock_run("r1").unwrap(), 1);
    assert_eq!(store.unlock_run("r1").unwrap(), 0);
    // Locks of a run nobody runs are stale.
    store.lock(&[key("dev", "c")], &mine("r9")).unwrap();
    let released = store.unlock_stale(None, false).unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].1.run_id, "r9");
    assert_eq!(store.locks().unwrap(), Vec::new());
}

fn a_deleted_run_leaves_nothing_of_it_and_everything_of_the_others(store: &StateStore) {
    for id in ["r1", "r2"] {
        store
            .commit(vec![
                Write::PutRun(run_as(id, 1, RunStatus::Succeeded)),
                Write::PutJob(job(id, "dev", "a", 0)),
                Write::Log(line("a", "x"), id.into()),
                Write::Journal(journal(id, "a", JournalPhase::Done)),
                Write::Decision(decided(id, Decision::Approved)),
            ])
            .unwrap();
    }
    store.commit(vec![Write::DeleteRun("r1".into())]).unwrap();
    assert_eq!(store.run("r1").unwrap(), None);
    assert_eq!(store.jobs("r1").unwrap(), Vec::new());
    assert_eq!(store.logs("r1", None).unwrap(), Vec::new());
    assert_eq!(store.journal("r1").unwrap(), Vec::new());
    assert_eq!(store.decisions("r1").unwrap(), Vec::new());
    assert_eq!(store.resource_jobs("dev", "a").unwrap().len(), 1);
    assert!(store.run("r2").unwrap().is_some());
    assert_eq!(store.jobs("r2").unwrap().len(), 1);
    assert_eq!(store.logs("r2", None).unwrap().len(), 1);
}

fn content_is_kept_once_under_its_digest_and_checked(store: &StateStore) {
    use sha2::Digest;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let digest = hex::encode(sha2::Sha256::digest(&bytes));
    let blob = Blob(bytes.clone().into());
    store.commit(vec![Write::PutBlob(digest.clone(), blob.clone()), Write::PutBlob(digest.clone(), blob)]).unwrap();
    assert_eq!(store.blob(&digest).unwrap(), Some(bytes));
    assert_eq!(store.blob(&"0".repeat(64)).unwrap(), None);
    // Bytes under a digest they do not have are never handed out.
    let wrong = "1".repeat(64);
    store.commit(vec![Write::PutBlob(wrong.clone(), Blob(b"other".to_vec().into()))]).unwrap();
    assert!(matches!(store.blob(&wrong), Err(StateError::Corrupt(_)) | Err(StateError::Damaged { .. })));

    let snapshot: RunSnapshot = serde_json::from_value(json!({
        "pipeline": "web", "operation": "deploy", "files": [], "vars": [["a", "b"]], "sets": [], "plugins": []
    }))
    .expect("a snapshot");
    let mut other = snapshot.clone();
    other.pipeline = "changed".into();
    store.commit(vec![Write::PutSnapshot("d1".into(), snapshot.clone())]).unwrap();
    store.commit(vec![Write::PutSnapshot("d1".into(), other)]).unwrap();
    assert_eq!(store.snapshot("d1").unwrap(), Some(snapshot), "what is under a digest is never replaced");
    assert_eq!(store.snapshot("d2").unwrap(), None);
}

fn execution(id: &str, service: &str) -> ExecutionRecord {
    serde_json::from_value(json!({
        "id": id, "service": service, "pipeline": "web", "trigger": "push", "kind": "production",
        "started_by": "alice", "commit": { "sha": "abc", "branch": "main", "message": "fix" },
        "status": "succeeded", "created_ms": 1, "build": { "status": "succeeded" }, "deploy": { "status": "skipped" }
    }))
    .expect("an execution")
}

fn executions_and_services(store: &StateStore) {
    store
        .commit(vec![
            Write::PutExecution(execution("x000001", "api")),
            Write::PutExecution(execution("x000002", "web")),
            Write::PutExecution(execution("x000003", "api")),
        ])
        .unwrap();
    let ids = |list: Vec<ExecutionRecord>| -> Vec<String> { list.into_iter().map(|e| e.id).collect() };
    assert_eq!(ids(store.executions(Some("api")).unwrap()), ["x000003", "x000001"]);
    assert_eq!(ids(store.executions(None).unwrap()), ["x000003", "x000002", "x000001"]);
    assert_eq!(store.execution("x000002").unwrap(), Some(execution("x000002", "web")));
    assert_eq!(store.execution("x000009").unwrap(), None);
    assert_eq!(store.service_record("api").unwrap(), ServiceRecord::default());
    let record = ServiceRecord { enabled: Some(false), changed_by: Some("bob".into()), ..Default::default() };
    store.commit(vec![Write::PutService("api".into(), record.clone())]).unwrap();
    assert_eq!(store.service_record("api").unwrap(), record);
}

fn a_sensitive_value_is_kept_as_a_keyed_hash(store: &StateStore) {
    let a = store.keyed_hash("token", "hunter2").unwrap();
    assert_eq!(a.len(), 64);
    assert_eq!(store.keyed_hash("token", "hunter2").unwrap(), a, "the same value, the same hash");
    assert_ne!(store.keyed_hash("token", "hunter3").unwrap(), a);
    assert_ne!(store.keyed_hash("other", "hunter2").unwrap(), a, "the name is part of it");
    assert!(!a.contains("hunter2"));
}

fn counts_count_every_table(store: &StateStore) {
    store
        .commit(vec![
            Write::PutResource(key("dev", "a"), resource(1)),
            Write::PutRun(run_as("r1", 1, RunStatus::Succeeded)),
            Write::PutJob(job("r1", "dev", "a", 0)),
            Write::Log(line("a", "x"), "r1".into()),
            Write::Log(line("a", "y"), "r1".into()),
            Write::Journal(journal("r1", "a", JournalPhase::Done)),
            Write::Decision(decided("r1", Decision::Approved)),
        ])
        .unwrap();
    store.lock(&[key("dev", "a")], &mine("r1")).unwrap();
    let c = store.counts().unwrap();
    assert_eq!(
        (c.resources, c.runs, c.jobs, c.log_lines, c.journal_entries, c.decisions, c.locks),
        (1, 1, 1, 2, 1, 1, 1)
    );
}

/// What only a shared database does: several processes at once.
mod postgres_only {
    use super::*;

    fn two_processes() -> (StateStore, StateStore) {
        let url = Postgres::shared().database("shared");
        let a = StateStore::with_backend(PostgresStore::connect(&url).expect("connects"));
        let b = StateStore::with_backend(PostgresStore::connect(&url).expect("connects"));
        (a, b)
    }

    #[test]
    fn a_run_reads_as_running_everywhere_while_its_process_holds_its_lease() {
        let (a, b) = two_processes();
        a.set_owner_run("r1", None).unwrap();
        a.commit(vec![Write::PutRun(run_as("r1", 1, RunStatus::Running))]).unwrap();
        assert_eq!(b.run("r1").unwrap().unwrap().status, RunStatus::Running, "another process sees it running");
        a.lock(&[key("dev", "a")], &mine("r1")).unwrap();
        match b.lock(&[key("dev", "a")], &mine("r2")) {
            Err(StateError::Locked { holder_alive: true, .. }) => {}
            other => panic!("expected a live holder, got {other:?}"),
        }
        assert_eq!(b.unlock_stale(None, false).unwrap(), Vec::new(), "a live run's locks are not stale");
        // The process goes: its run is interrupted, its locks are stale.
        drop(a);
        assert_eq!(b.run("r1").unwrap().unwrap().status, RunStatus::Interrupted);
        match b.lock(&[key("dev", "a")], &mine("r2")) {
            Err(StateError::Locked { holder_alive: false, .. }) => {}
            other => panic!("expected a dead holder, got {other:?}"),
        }
        assert_eq!(b.unlock_stale(None, false).unwrap().len(), 1);
        b.lock(&[key("dev", "a")], &mine("r2")).unwrap();
    }

    #[test]
    fn ids_and_keys_are_shared_and_never_handed_out_twice() {
        let (a, b) = two_processes();
        let ids: Vec<String> = std::thread::scope(|s| {
            let ta = s.spawn(|| (0..25).map(|_| a.new_run_id().unwrap()).collect::<Vec<_>>());
            let tb = s.spawn(|| (0..25).map(|_| b.new_run_id().unwrap()).collect::<Vec<_>>());
            let mut all = ta.join().unwrap();
            all.extend(tb.join().unwrap());
            all
        });
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), 50);
        assert_eq!(a.keyed_hash("k", "v").unwrap(), b.keyed_hash("k", "v").unwrap(), "one key for every process");
    }

    #[test]
    fn locks_taken_at_once_by_two_processes_go_to_one() {
        let (a, b) = two_processes();
        a.set_owner_run("ra", None).unwrap();
        b.set_owner_run("rb", None).unwrap();
        let keys: Vec<ResourceKey> = (0..20).map(|i| key("dev", &format!("n{i:02}"))).collect();
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| a.lock(&keys, &mine("ra")).is_ok());
            let tb = s.spawn(|| b.lock(&keys, &mine("rb")).is_ok());
            (ta.join().unwrap(), tb.join().unwrap())
        });
        assert!(ra ^ rb, "exactly one run gets them: {ra} {rb}");
        let owners: std::collections::BTreeSet<String> = a.locks().unwrap().into_iter().map(|(_, h)| h.run_id).collect();
        assert_eq!(owners.len(), 1);
        assert_eq!(a.locks().unwrap().len(), 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_is_used_from_async_code_without_stalling_it() {
        let url = Postgres::shared().database("async");
        let store = std::sync::Arc::new(StateStore::with_backend(PostgresStore::connect(&url).expect("connects")));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store.commit(vec![Write::Log(line("a", &format!("{i}")), "r1".into())]).unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.logs("r1", None).unwrap().len(), 8);
        // Dropped on a runtime's thread: no panic.
        drop(store);
    }

    #[test]
    fn a_wrong_address_is_an_error_that_shows_no_password() {
        let e = PostgresStore::connect("postgres://me:s3cret@127.0.0.1:1/nothing").unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("postgres://me@127.0.0.1:1/nothing"), "{e}");
    }
}
