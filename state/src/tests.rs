//! The state store's tests: records round-trip, order, locks, ownership,
//! damaged files and what readers and writers do with them.

use std::time::{Duration, Instant};


use super::*;
use crate::fixtures::*;
use crate::{OwnerInfo, StateStore};

/// A pid that cannot exist (Linux's pid_max is at most 2^22).
const DEAD_PID: u32 = 4_000_000;

fn store() -> (tempfile::TempDir, RedbStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(&dir.path().join(".stackpipe")).expect("open");
    (dir, store)
}

#[test]
fn every_record_round_trips() {
    let (_dir, store) = store();
    // A running run reads as running only in the process that runs it.
    store.set_owner_run("r000001", None).unwrap();
    let r = run("r000001", 100);
    let j = job("r000001", "dev", "vpc", 0);
    let l = log("dev", "vpc", "created vpc-1");
    let e = journal("r000001", "vpc", JournalPhase::Started);
    let res = resource(1);
    store
        .commit(vec![
            Write::PutRun(r.clone()),
            Write::PutJob(j.clone()),
            Write::Log(l.clone(), "r000001".into()),
            Write::Journal(e.clone()),
            Write::PutResource(key("dev", "vpc"), res.clone()),
        ])
        .unwrap();

    assert_eq!(store.run("r000001").unwrap(), Some(r));
    assert_eq!(store.run("r000002").unwrap(), None);
    assert_eq!(store.job("r000001", "dev", "vpc").unwrap(), Some(j.clone()));
    assert_eq!(store.job("r000001", "prod", "vpc").unwrap(), None);
    assert_eq!(store.jobs("r000001").unwrap(), vec![j]);
    assert_eq!(store.logs("r000001", None).unwrap(), vec![l]);
    assert_eq!(store.journal("r000001").unwrap(), vec![e]);
    assert_eq!(store.resource(&key("dev", "vpc")).unwrap(), Some(ResourceRecord { serial: 1, ..res.clone() }));
    assert_eq!(store.resource(&key("prod", "vpc")).unwrap(), None);

    let h = holder("r000001", std::process::id());
    store.lock(&[key("dev", "vpc")], &h).unwrap();
    assert_eq!(store.locks().unwrap(), vec![(key("dev", "vpc"), h)]);

    // Survives closing and reopening.
    let dir = store.dir().expect("a directory").to_path_buf();
    drop(store);
    let store = StateStore::open(&dir).unwrap();
    assert_eq!(store.resource(&key("dev", "vpc")).unwrap(), Some(ResourceRecord { serial: 1, ..res }));
    assert_eq!(store.locks().unwrap().len(), 1);
}

#[test]
fn resources_are_per_pipeline_and_environment_and_sorted() {
    let (_dir, store) = store();
    let other = ResourceKey::new("webx", "dev", "a");
    let before = ResourceKey::new("wea", "dev", "a");
    store
        .commit(vec![
            Write::PutResource(key("prod", "b"), resource(1)),
            Write::PutResource(key("dev", "b"), resource(2)),
            Write::PutResource(other.clone(), resource(3)),
            Write::PutResource(key("dev", "a"), resource(4)),
            Write::PutResource(before.clone(), resource(5)),
            Write::PutResource(key("prod", "a"), resource(6)),
        ])
        .unwrap();
    let keys = |v: Vec<(ResourceKey, ResourceRecord)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(keys(store.resources("web", Some("dev")).unwrap()), vec![key("dev", "a"), key("dev", "b")]);
    assert_eq!(keys(store.resources("web", Some("prod")).unwrap()), vec![key("prod", "a"), key("prod", "b")]);
    assert_eq!(keys(store.resources("web", Some("staging")).unwrap()), Vec::<ResourceKey>::new());
    assert_eq!(
        keys(store.resources("web", None).unwrap()),
        vec![key("dev", "a"), key("dev", "b"), key("prod", "a"), key("prod", "b")]
    );
    assert_eq!(keys(store.resources("nope", None).unwrap()), Vec::<ResourceKey>::new());
    let all = keys(store.all_resources().unwrap());
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    assert_eq!(all.len(), 6);
    assert_eq!(all[0], before);
}

#[test]
fn serial_increments_on_every_write() {
    let (_dir, store) = store();
    let k = key("dev", "vpc");
    let serial = |store: &dyn StateBackend| store.resource(&k).unwrap().map(|r| r.serial);
    store.commit(vec![Write::PutResource(k.clone(), resource(1))]).unwrap();
    assert_eq!(serial(&store), Some(1));
    store.commit(vec![Write::PutResource(k.clone(), resource(2))]).unwrap();
    assert_eq!(serial(&store), Some(2));
    // Twice in one batch: each write counts.
    store.commit(vec![Write::PutResource(k.clone(), resource(3)), Write::PutResource(k.clone(), resource(4))]).unwrap();
    assert_eq!(serial(&store), Some(4));
    assert_eq!(store.resource(&k).unwrap().unwrap().updated_ms, resource(4).updated_ms);
    // Other environments have their own serial.
    store.commit(vec![Write::PutResource(key("prod", "vpc"), resource(5))]).unwrap();
    assert_eq!(store.resource(&key("prod", "vpc")).unwrap().unwrap().serial, 1);
    // Deleted and put again: starts over.
    store.commit(vec![Write::DeleteResource(k.clone())]).unwrap();
    assert_eq!(serial(&store), None);
    store.commit(vec![Write::PutResource(k.clone(), resource(6))]).unwrap();
    assert_eq!(serial(&store), Some(1));
}

#[test]
fn runs_most_recent_first() {
    let (_dir, store) = store();
    assert_eq!(store.latest_run().unwrap(), None);
    assert_eq!(store.runs().unwrap(), vec![]);
    let ids: Vec<String> = (0..4).map(|_| store.new_run_id().unwrap()).collect();
    assert_eq!(ids, vec!["r000001", "r000002", "r000003", "r000004"]);
    store
        .commit(vec![
            Write::PutRun(run(&ids[0], 100)),
            Write::PutRun(run(&ids[1], 300)),
            Write::PutRun(run(&ids[2], 200)),
            Write::PutRun(run(&ids[3], 300)),
        ])
        .unwrap();
    let order: Vec<String> = store.runs().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(order, vec!["r000004", "r000002", "r000003", "r000001"]);
    assert_eq!(store.latest_run().unwrap().unwrap().id, "r000004");

    // A run record is replaced.
    let mut done = run(&ids[0], 100);
    done.status = RunStatus::Succeeded;
    done.finished_ms = Some(150);
    store.commit(vec![Write::PutRun(done.clone())]).unwrap();
    assert_eq!(store.run(&ids[0]).unwrap(), Some(done));
    assert_eq!(store.runs().unwrap().len(), 4);

    // The counter survives reopening.
    let dir = store.dir().expect("a directory").to_path_buf();
    drop(store);
    let store = StateStore::open(&dir).unwrap();
    assert_eq!(store.new_run_id().unwrap(), "r000005");
}

#[test]
fn jobs_in_environment_then_level_then_node_order() {
    let (_dir, store) = store();
    // The run's environments are dev, staging, prod: not alphabetical.
    store
        .commit(vec![
            Write::PutRun(run("r1", 1)),
            Write::PutJob(job("r1", "prod", "a", 0)),
            Write::PutJob(job("r1", "dev", "z", 0)),
            Write::PutJob(job("r1", "dev", "b", 1)),
            Write::PutJob(job("r1", "staging", "a", 0)),
            Write::PutJob(job("r1", "dev", "a", 1)),
            Write::PutJob(job("r1", "dev", "c", 0)),
            Write::PutJob(job("r10", "dev", "a", 0)),
            Write::PutJob(job("r0", "dev", "a", 0)),
        ])
        .unwrap();
    let order: Vec<(String, String)> = store.jobs("r1").unwrap().into_iter().map(|j| (j.environment, j.node)).collect();
    let expect: Vec<(String, String)> =
        [("dev", "c"), ("dev", "z"), ("dev", "a"), ("dev", "b"), ("staging", "a"), ("prod", "a")]
            .iter()
            .map(|(e, n)| (e.to_string(), n.to_string()))
            .collect();
    assert_eq!(order, expect);

    // A job is replaced, not duplicated.
    let mut failed = job("r1", "dev", "c", 0);
    failed.status = Status::Failed;
    failed.error = Some("boom".into());
    store.commit(vec![Write::PutJob(failed.clone())]).unwrap();
    assert_eq!(store.jobs("r1").unwrap().len(), 6);
    assert_eq!(store.job("r1", "dev", "c").unwrap(), Some(failed));

    // No run record: by environment name.
    let order: Vec<String> = store.jobs("r10").unwrap().into_iter().map(|j| j.node).collect();
    assert_eq!(order, vec!["a"]);
    assert_eq!(store.jobs("r2").unwrap(), vec![]);
}


#[test]
fn decisions_in_the_order_taken_per_run() {
    let (_dir, store) = store();
    let first = decision("r1", "staging", None, Decision::Approved);
    let other = decision("r2", "dev", Some("db"), Decision::Approved);
    let second = decision("r1", "prod", None, Decision::Rejected);
    store.commit(vec![Write::Decision(first.clone()), Write::Decision(other.clone())]).unwrap();
    store.commit(vec![Write::Decision(second.clone())]).unwrap();
    assert_eq!(store.decisions("r1").unwrap(), vec![first, second]);
    assert_eq!(store.decisions("r2").unwrap(), vec![other]);
    assert!(store.decisions("r3").unwrap().is_empty());
}

#[test]
fn an_environment_plan_is_one_journal_entry_naming_its_nodes() {
    let (_dir, store) = store();
    let plan = JournalEntry {
        node: String::new(),
        nodes: vec!["vpc".into(), "db".into()],
        ..journal("r1", "", JournalPhase::Planned)
    };
    store.commit(vec![Write::Journal(plan.clone()), Write::Journal(journal("r1", "vpc", JournalPhase::Started))]).unwrap();
    let entries = store.journal("r1").unwrap();
    assert_eq!(entries[0], plan);
    assert_eq!(entries[0].nodes().collect::<Vec<_>>(), ["vpc", "db"]);
    assert_eq!(entries[1].nodes().collect::<Vec<_>>(), ["vpc"]);
    // An entry about one node is written without the list, as before it existed.
    let one = serde_json::to_value(&entries[1]).unwrap();
    assert!(one.get("nodes").is_none(), "{one}");
}

#[test]
fn logs_and_journal_in_append_order_per_run() {
    let (_dir, store) = store();
    store
        .commit(vec![
            Write::Log(log("dev", "vpc", "1"), "r1".into()),
            Write::Log(log("dev", "db", "2"), "r1".into()),
            Write::Log(log("dev", "vpc", "other run"), "r2".into()),
            Write::Journal(journal("r1", "vpc", JournalPhase::Started)),
            Write::Journal(journal("r2", "vpc", JournalPhase::Started)),
        ])
        .unwrap();
    store
        .commit(vec![
            Write::Log(log("dev", "vpc", "3"), "r1".into()),
            Write::Journal(journal("r1", "vpc", JournalPhase::Done)),
            Write::Journal(journal("r1", "db", JournalPhase::Failed)),
        ])
        .unwrap();
    let texts = |v: Vec<LogLine>| v.into_iter().map(|l| l.text).collect::<Vec<_>>();
    assert_eq!(texts(store.logs("r1", None).unwrap()), vec!["1", "2", "3"]);
    assert_eq!(texts(store.logs("r1", Some("vpc")).unwrap()), vec!["1", "3"]);
    assert_eq!(texts(store.logs("r1", Some("db")).unwrap()), vec!["2"]);
    assert_eq!(texts(store.logs("r1", Some("nope")).unwrap()), Vec::<String>::new());
    assert_eq!(texts(store.logs("r2", None).unwrap()), vec!["other run"]);
    assert_eq!(texts(store.logs("r", None).unwrap()), Vec::<String>::new());
    let phases: Vec<(String, JournalPhase)> =
        store.journal("r1").unwrap().into_iter().map(|e| (e.node, e.phase)).collect();
    assert_eq!(
        phases,
        vec![
            ("vpc".into(), JournalPhase::Started),
            ("vpc".into(), JournalPhase::Done),
            ("db".into(), JournalPhase::Failed)
        ]
    );
    assert_eq!(store.journal("r2").unwrap().len(), 1);

    // Sequences go on after reopening.
    let dir = store.dir().expect("a directory").to_path_buf();
    drop(store);
    let store = StateStore::open(&dir).unwrap();
    store.commit(vec![Write::Log(log("dev", "vpc", "4"), "r1".into())]).unwrap();
    assert_eq!(texts(store.logs("r1", Some("vpc")).unwrap()), vec!["1", "3", "4"]);
}

#[test]
fn log_lines_keep_their_level_and_plugin_and_old_ones_read_as_info() {
    let old = r#"{"ms":5,"environment":"dev","node":"n","op":"apply","text":"before levels"}"#;
    let line: LogLine = serde_json::from_str(old).unwrap();
    assert_eq!((line.level, line.plugin), (LogLevel::Info, None));
    let warned = LogLine { level: LogLevel::Warn, plugin: Some("local".into()), ..log("dev", "n", "careful") };
    let text = serde_json::to_string(&warned).unwrap();
    assert!(text.contains(r#""level":"warn""#) && text.contains(r#""plugin":"local""#), "{text}");
    assert_eq!(serde_json::from_str::<LogLine>(&text).unwrap(), warned);
    // A line of stackpipe's own is stored without a plugin.
    assert!(!serde_json::to_string(&log("dev", "n", "x")).unwrap().contains("plugin"));
}

#[test]
fn lock_conflict_names_the_holder() {
    let (_dir, store) = store();
    let me = std::process::id();
    let a = holder("r1", me);
    // Alive: this process runs it.
    store.set_owner_run("r1", None).unwrap();
    store.lock(&[key("dev", "vpc"), key("dev", "db")], &a).unwrap();
    // Re-entrant for the same run.
    store.lock(&[key("dev", "vpc"), key("dev", "subnet")], &a).unwrap();
    assert_eq!(store.locks().unwrap().len(), 3);

    // Another run: refused, and nothing of its keys is locked.
    let b = holder("r2", me);
    let err = store.lock(&[key("prod", "vpc"), key("dev", "db")], &b).unwrap_err();
    match &err {
        StateError::Locked { key: k, holder: h, holder_alive } => {
            assert_eq!(k, &key("dev", "db"));
            assert_eq!(h, &a);
            assert!(*holder_alive);
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert_eq!(err.to_string(), format!("web/dev/db is locked by run r1 (pid {me})"));
    assert!(store.locks().unwrap().iter().all(|(_, h)| h.run_id == "r1"));

    // A dead holder is reported as such.
    let dead = holder("r3", DEAD_PID);
    store.lock(&[key("qa", "vpc")], &dead).unwrap();
    let err = store.lock(&[key("qa", "vpc")], &b).unwrap_err();
    assert!(matches!(err, StateError::Locked { holder_alive: false, .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("web/qa/vpc is locked by run r3 (pid {DEAD_PID}, no longer running)"));

    // Resumed in another process: the same run takes the lock over.
    store.lock(&[key("qa", "vpc")], &holder("r3", me)).unwrap();
    let locks = store.locks().unwrap();
    let (_, h) = locks.iter().find(|(k, _)| k == &key("qa", "vpc")).unwrap();
    assert_eq!(h.pid, me);

    // unlock_run
    assert_eq!(store.unlock_run("r1").unwrap(), 3);
    assert_eq!(store.unlock_run("r1").unwrap(), 0);
    store.lock(&[key("dev", "db")], &b).unwrap();
    let remaining: Vec<String> = store.locks().unwrap().into_iter().map(|(k, h)| format!("{k}:{}", h.run_id)).collect();
    assert_eq!(remaining, vec!["web/dev/db:r2", "web/qa/vpc:r3"]);
}

#[test]
fn unlock_stale_releases_dead_holders_only() {
    let (_dir, store) = store();
    let alive = holder("r1", std::process::id());
    store.set_owner_run("r1", None).unwrap();
    let dead = holder("r2", DEAD_PID);
    store.lock(&[key("dev", "a"), key("dev", "b")], &alive).unwrap();
    store.lock(&[key("dev", "c"), key("dev", "d")], &dead).unwrap();

    // One key only.
    assert_eq!(store.unlock_stale(Some(&key("dev", "a")), false).unwrap(), vec![]);
    assert_eq!(store.unlock_stale(Some(&key("dev", "c")), false).unwrap(), vec![(key("dev", "c"), dead.clone())]);
    assert_eq!(store.unlock_stale(Some(&key("dev", "zz")), true).unwrap(), vec![]);
    // Every dead one.
    assert_eq!(store.unlock_stale(None, false).unwrap(), vec![(key("dev", "d"), dead.clone())]);
    assert_eq!(store.locks().unwrap().len(), 2);
    // Forced: one key, then the rest.
    assert_eq!(store.unlock_stale(Some(&key("dev", "b")), true).unwrap(), vec![(key("dev", "b"), alive.clone())]);
    assert_eq!(store.unlock_stale(None, true).unwrap(), vec![(key("dev", "a"), alive)]);
    assert_eq!(store.locks().unwrap(), vec![]);
}

#[test]
fn a_running_run_of_no_process_reads_as_interrupted() {
    let (dir, store) = store();
    store.commit(vec![Write::PutRun(run("r000001", 1)), Write::PutRun(run("r000002", 2))]).unwrap();
    store.set_owner_run("r000002", None).unwrap();
    let status = |runs: Vec<RunRecord>, id: &str| runs.into_iter().find(|r| r.id == id).unwrap().status;
    assert_eq!(status(store.runs().unwrap(), "r000001"), RunStatus::Interrupted);
    assert_eq!(status(store.runs().unwrap(), "r000002"), RunStatus::Running);
    drop(store);
    let reader = StateStore::open_read_only(&dir.path().join(".stackpipe")).unwrap();
    assert_eq!(reader.run("r000002").unwrap().unwrap().status, RunStatus::Interrupted);
}

#[test]
fn pid_liveness() {
    assert!(pid_alive(std::process::id()));
    assert!(!pid_alive(DEAD_PID));
    assert!(!pid_alive(0));
}

#[test]
fn second_open_is_busy_and_names_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".stackpipe");
    let store = RedbStore::open(&state).unwrap();
    assert_eq!(store.path(), state.join("state.redb"));
    let owner: OwnerInfo = serde_json::from_slice(&std::fs::read(state.join("owner.json")).unwrap()).unwrap();
    assert_eq!(owner.pid, std::process::id());
    assert_eq!(owner.run_id, None);

    match StateStore::open(&state) {
        Err(StateError::Busy { path, holder }) => {
            assert_eq!(path, state.join("state.redb"));
            assert_eq!(holder, Some(owner.clone()));
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // The refused open leaves owner.json alone.
    assert!(state.join("owner.json").exists());

    store.set_owner_run("r000007", None).unwrap();
    match StateStore::open(&state) {
        Err(err @ StateError::Busy { .. }) => {
            let StateError::Busy { holder: Some(h), .. } = &err else { panic!("{err:?}") };
            assert_eq!(h.run_id.as_deref(), Some("r000007"));
            assert_eq!(h.since_ms, owner.since_ms);
            assert!(err.to_string().contains(&format!("by process {} (run r000007)", std::process::id())), "{err}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }

    // Without an owner file, still Busy.
    std::fs::remove_file(state.join("owner.json")).unwrap();
    assert!(matches!(StateStore::open(&state), Err(StateError::Busy { holder: None, .. })));

    drop(store);
    assert!(!state.join("owner.json").exists());
    let store = StateStore::open(&state).unwrap();
    assert!(state.join("owner.json").exists());
    drop(store);
    assert!(!state.join("owner.json").exists());
}

#[test]
fn open_replaces_a_stale_owner_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("owner.json"),
        serde_json::to_vec(&OwnerInfo { pid: DEAD_PID, run_id: Some("r9".into()), since_ms: 1, control: None }).unwrap(),
    )
    .unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let owner: OwnerInfo = serde_json::from_slice(&std::fs::read(dir.path().join("owner.json")).unwrap()).unwrap();
    assert_eq!(owner.pid, std::process::id());
    assert_eq!(owner.run_id, None);
    drop(store);
}

#[test]
fn open_fails_on_a_file_that_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.redb"), b"this is not a redb file, not at all, no").unwrap();
    let err = StateStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StateError::Damaged { .. }), "{err:?}");
    // Left as it was.
    assert_eq!(std::fs::read(dir.path().join("state.redb")).unwrap(), b"this is not a redb file, not at all, no");
    // A state dir that is a file.
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    assert!(matches!(StateStore::open(&file), Err(StateError::Io(_))));
}

#[test]
fn corrupt_values_are_errors_not_panics() {
    let (_dir, store) = store();
    store.commit(vec![Write::PutRun(run("r1", 1)), Write::PutResource(key("dev", "ok"), resource(1))]).unwrap();
    {
        let txn = store.writable().unwrap().begin_write().unwrap();
        {
            let bad: &[u8] = b"{\"plugin\": ";
            let not_utf8: &[u8] = &[0xff, 0xfe, 0x00];
            txn.open_table(RESOURCES).unwrap().insert(("web", "dev", "vpc"), bad).unwrap();
            txn.open_table(RUNS).unwrap().insert("r2", not_utf8).unwrap();
            txn.open_table(JOBS).unwrap().insert(("r1", "dev", "vpc"), bad).unwrap();
            txn.open_table(LOGS).unwrap().insert(("r1", 1u64), bad).unwrap();
            txn.open_table(JOURNAL).unwrap().insert(("r1", 1u64), not_utf8).unwrap();
            txn.open_table(LOCKS).unwrap().insert(("web", "dev", "vpc"), bad).unwrap();
        }
        txn.commit().unwrap();
    }
    let corrupt = |r: Result<(), StateError>| match r {
        Err(StateError::Damaged { cause, path }) => {
            assert!(path.ends_with("state.redb"), "{path:?}");
            cause
        }
        other => panic!("expected Damaged, got {other:?}"),
    };
    let msg = corrupt(store.resource(&key("dev", "vpc")).map(drop));
    assert!(msg.contains("web/dev/vpc"), "{msg}");
    corrupt(store.resources("web", None).map(drop));
    corrupt(store.all_resources().map(drop));
    corrupt(store.runs().map(drop));
    corrupt(store.latest_run().map(drop));
    corrupt(store.run("r2").map(drop));
    corrupt(store.jobs("r1").map(drop));
    corrupt(store.job("r1", "dev", "vpc").map(drop));
    corrupt(store.logs("r1", None).map(drop));
    corrupt(store.journal("r1").map(drop));
    corrupt(store.locks().map(drop));
    corrupt(store.lock(&[key("dev", "vpc")], &holder("r1", 1)));
    corrupt(store.unlock_stale(None, true).map(drop));
    corrupt(store.commit(vec![Write::PutResource(key("dev", "vpc"), resource(1))]));
    // The good ones are still readable; a failed batch wrote nothing.
    assert_eq!(store.resource(&key("dev", "ok")).unwrap().unwrap().serial, 1);
    assert_eq!(store.run("r1").unwrap().unwrap().id, "r1");
    // Deleting a corrupt resource and putting it again works.
    store
        .commit(vec![Write::DeleteResource(key("dev", "vpc")), Write::PutResource(key("dev", "vpc"), resource(2))])
        .unwrap();
    assert_eq!(store.resource(&key("dev", "vpc")).unwrap().unwrap().serial, 1);
}

#[test]
fn empty_commit_is_a_no_op() {
    let (_dir, store) = store();
    store.commit(vec![]).unwrap();
    store.lock(&[], &holder("r1", 1)).unwrap();
    assert_eq!(store.locks().unwrap(), vec![]);
}

/// The five writes of one node of a deploy: journal started, job, a log
/// line, the resource, journal done.
fn node_writes(run_id: &str, n: usize) -> Vec<Write> {
    let node = format!("node-{n:05}");
    let mut j = job(run_id, "dev", &node, n % 7);
    j.ops = ["preflight", "init", "refresh", "preview", "apply"]
        .iter()
        .map(|op| OpRecord {
            name: op.to_string(),
            status: Status::Succeeded,
            started_ms: Some(1),
            finished_ms: Some(2),
            message: None,
        })
        .collect();
    vec![
        Write::Journal(journal(run_id, &node, JournalPhase::Started)),
        Write::PutJob(j),
        Write::Log(log("dev", &node, "applied: created vpc-0123456789abcdef"), run_id.into()),
        Write::PutResource(ResourceKey::new("web", "dev", &node), resource(n as u64)),
        Write::Journal(journal(run_id, &node, JournalPhase::Done)),
    ]
}

/// Figures for the lead: a batch of 1,000 writes (200 nodes), and a whole
/// 10,000-node deploy (50,000 writes) in batches of 1,000. Run with
/// `--nocapture` to see them. The bounds are loose (debug build, shared CI
/// disks); the figures are what matters.
#[test]
fn commit_throughput() {
    let (_dir, store) = store();
    let mut batch_times = Vec::new();
    let total = Instant::now();
    let mut writes = Vec::with_capacity(1_000);
    for n in 0..10_000 {
        writes.extend(node_writes("r000001", n));
        if writes.len() >= 1_000 {
            let batch = std::mem::take(&mut writes);
            let t = Instant::now();
            store.commit(batch).unwrap();
            batch_times.push(t.elapsed());
        }
    }
    let total = total.elapsed();
    batch_times.sort();
    let median = batch_times[batch_times.len() / 2];
    let max = batch_times[batch_times.len() - 1];
    println!(
        "state commit: {} batches of 1,000 writes: median {:?}, min {:?}, max {:?}; 10k-node deploy (50k writes, incl. building them) {:?}",
        batch_times.len(),
        median,
        batch_times[0],
        max,
        total
    );

    // Reading it back.
    let t = Instant::now();
    let jobs = store.jobs("r000001").unwrap();
    let logs = store.logs("r000001", None).unwrap();
    let journal = store.journal("r000001").unwrap();
    let resources = store.resources("web", Some("dev")).unwrap();
    println!(
        "state read: {} jobs, {} logs, {} journal entries, {} resources in {:?}",
        jobs.len(),
        logs.len(),
        journal.len(),
        resources.len(),
        t.elapsed()
    );
    assert_eq!((jobs.len(), logs.len(), journal.len(), resources.len()), (10_000, 10_000, 20_000, 10_000));

    // Single small commits (one fsync each): what an unbatched write costs.
    let t = Instant::now();
    for i in 0..20 {
        store.commit(vec![Write::Log(log("dev", "x", "single"), format!("r{i}"))]).unwrap();
    }
    println!("state commit: single-write commit {:?} each", t.elapsed() / 20);

    assert!(median < Duration::from_millis(500), "median batch commit {median:?}");
}

const HOLD_ENV: &str = "STACKPIPE_STATE_TEST_HOLD";
const HOLD_READY: &str = "STACKPIPE-STATE-HOLD-READY";

/// Not a test by itself: the child of `busy_from_another_process`. It
/// holds the store open until its stdin closes.
#[test]
fn hold_open_child() {
    let Some(dir) = std::env::var_os(HOLD_ENV) else { return };
    let store = StateStore::open(std::path::Path::new(&dir)).unwrap();
    store.set_owner_run("r-child", None).unwrap();
    println!("\n{HOLD_READY}");
    let mut sink = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut sink);
    drop(store);
}

#[test]
fn busy_from_another_process() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "redb_store::tests::hold_open_child", "--nocapture", "--test-threads=1"])
        .env(HOLD_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read the child's output on a thread: never block on a child that
    // does not answer.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.trim_end().ends_with(HOLD_READY) {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child never opened the store");
    }

    let result = StateStore::open(dir.path());
    // Let the child go before asserting, so that it never outlives us.
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    match result {
        Err(StateError::Busy { holder: Some(h), .. }) => {
            assert_eq!(h.pid, child.id());
            assert_eq!(h.run_id.as_deref(), Some("r-child"));
        }
        other => panic!("expected Busy with the child as holder, got {other:?}"),
    }
    assert!(status.success());
    // The child is gone, and so is its owner file.
    assert!(!dir.path().join("owner.json").exists());
    assert!(!pid_alive(child.id()));
    let store = StateStore::open(dir.path()).unwrap();
    drop(store);
}

/// What a fresh process would find on disk now: the store's file, copied
/// and opened on its own.
fn on_disk(dir: &std::path::Path) -> (tempfile::TempDir, StateStore) {
    let copy = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(copy.path().join(".stackpipe")).expect("mkdir");
    std::fs::copy(dir.join(".stackpipe/state.redb"), copy.path().join(".stackpipe/state.redb")).expect("copy");
    let store = StateStore::open(&copy.path().join(".stackpipe")).expect("open the copy");
    (copy, store)
}

#[test]
fn a_commit_without_durability_reaches_the_disk_with_the_next_durable_one() {
    let (dir, store) = store();
    store.commit(vec![Write::PutRun(run("r000001", 1))]).unwrap();
    store.commit_as(vec![Write::PutRun(run("r000002", 2))], false).unwrap();
    // Visible here at once, not on disk yet.
    assert!(store.run("r000002").unwrap().is_some());
    let (_c, copy) = on_disk(dir.path());
    assert!(copy.run("r000001").unwrap().is_some());
    assert!(copy.run("r000002").unwrap().is_none());
    drop(copy);
    store.persist().unwrap();
    let (_c, copy) = on_disk(dir.path());
    assert!(copy.run("r000002").unwrap().is_some());
}

/// A state directory with a few runs, resources and log lines, closed.
fn filled() -> tempfile::TempDir {
    let (dir, store) = store();
    for i in 0..20u64 {
        let id = format!("r{i:06}");
        let mut writes = vec![Write::PutRun(run(&id, i)), Write::PutResource(key("dev", &format!("n{i}")), resource(i))];
        writes.extend((0..20).map(|k| Write::Log(log("dev", "n", &format!("line {k} of {i}")), id.clone())));
        store.commit(writes).unwrap();
    }
    drop(store);
    dir
}

/// Every way a state file was found damaged: each open, for reading or
/// writing, fails with `Damaged` (or reads a file whose damage fell where
/// nothing is), never panics, and never changes a byte of the file.
#[test]
fn damaged_files_are_errors_never_panics_and_never_written() {
    let good_dir = filled();
    let good = std::fs::read(good_dir.path().join(".stackpipe/state.redb")).unwrap();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    cases.push(("empty".into(), Vec::new()));
    cases.push(("foreign".into(), b"SQLite format 3\0 and then some".repeat(200)));
    for cut in [1usize, 9, 100, 511, 512, 4096, 4097, good.len() / 3, good.len() / 2, good.len() - 4096, good.len() - 1] {
        cases.push((format!("truncated at {cut}"), good[..cut.min(good.len())].to_vec()));
    }
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..12 {
        let mut bytes = good.clone();
        for _ in 0..200 {
            let i = (next() % bytes.len() as u64) as usize;
            bytes[i] ^= 1 << (next() % 8);
        }
        cases.push((format!("200 flipped bits, round {round}"), bytes));
    }
    for (what, bytes) in cases {
        for writer in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join(".stackpipe");
            std::fs::create_dir_all(&state).unwrap();
            std::fs::write(state.join("state.redb"), &bytes).unwrap();
            let opened = if writer { StateStore::open(&state) } else { StateStore::open_read_only(&state) };
            match opened {
                Err(StateError::Damaged { path, cause }) => {
                    assert_eq!(path, state.join("state.redb"), "{what}");
                    assert!(!cause.is_empty(), "{what}");
                }
                Err(other) => panic!("{what} (writer: {writer}): expected Damaged, got {other:?}"),
                Ok(store) => {
                    // The damage fell where nothing lives: every read works or says Damaged.
                    for r in [store.runs().map(drop), store.all_resources().map(drop), store.logs("r000003", None).map(drop)] {
                        assert!(matches!(r, Ok(()) | Err(StateError::Damaged { .. })), "{what}: {r:?}");
                    }
                    if writer {
                        continue; // a writer that found it good may write it
                    }
                }
            }
            assert_eq!(std::fs::read(state.join("state.redb")).unwrap(), bytes, "{what} (writer: {writer}): the file changed");
            assert!(!state.join(crate::BACKUP_FILE).exists(), "{what}: a damaged file is not a backup");
        }
    }
}

#[test]
fn a_writer_keeps_the_last_good_state_as_a_backup() {
    let dir = filled();
    let state = dir.path().join(".stackpipe");
    let store = StateStore::open(&state).unwrap();
    let backup = state.join(crate::BACKUP_FILE);
    assert!(backup.exists());
    store.commit(vec![Write::PutRun(run("r999999", 999))]).unwrap();
    drop(store);
    // The backup is the state as the writer found it.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(&backup, copy.path().join("state.redb")).unwrap();
    let old = StateStore::open_read_only(copy.path()).unwrap();
    assert_eq!(old.runs().unwrap().len(), 20);
    use std::os::unix::fs::PermissionsExt;
    for f in [state.clone(), state.join("state.redb"), backup] {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{f:?} is {mode:o}");
    }
}

#[test]
fn a_reader_creates_nothing_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".stackpipe");
    assert!(matches!(StateStore::open_read_only(&state), Err(StateError::Missing { .. })));
    assert!(!state.exists());
    let empty = StateStore::open_read_only_or_empty(&state).unwrap();
    assert!(empty.runs().unwrap().is_empty());
    assert!(matches!(empty.commit(vec![Write::PutRun(run("r1", 1))]), Err(StateError::ReadOnly { .. })));
    assert!(!state.exists());

    let dir = filled();
    let file = dir.path().join(".stackpipe/state.redb");
    let before = std::fs::read(&file).unwrap();
    let reader = StateStore::open_read_only(&dir.path().join(".stackpipe")).unwrap();
    assert_eq!(reader.runs().unwrap().len(), 20);
    assert!(matches!(reader.new_run_id(), Err(StateError::ReadOnly { .. })));
    drop(reader);
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn a_reader_of_a_crashed_writer_reads_a_recovered_copy() {
    let (dir, store) = store();
    store.commit(vec![Write::PutRun(run("r000001", 1))]).unwrap();
    // The file as a kill -9 leaves it: copied while the writer holds it.
    let crashed = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join(".stackpipe/state.redb"), crashed.path().join("state.redb")).unwrap();
    drop(store);
    let before = std::fs::read(crashed.path().join("state.redb")).unwrap();
    let reader = StateStore::open_read_only(crashed.path()).unwrap();
    assert_eq!(reader.run("r000001").unwrap().unwrap().status, RunStatus::Interrupted);
    drop(reader);
    assert_eq!(std::fs::read(crashed.path().join("state.redb")).unwrap(), before);
}

#[test]
fn a_write_past_the_size_limit_fails_as_on_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".stackpipe");
    drop(StateStore::open(&state).unwrap());
    // Set for this test's store only: the variable is read at open.
    std::env::set_var(crate::SIZE_LIMIT_ENV, "1200000");
    let store = StateStore::open(&state);
    std::env::remove_var(crate::SIZE_LIMIT_ENV);
    let store = store.unwrap();
    let big = "x".repeat(64 * 1024);
    let mut failed = None;
    for i in 0..100 {
        if let Err(e) = store.commit(vec![Write::Log(log("dev", "n", &big), format!("r{i}"))]) {
            failed = Some(e);
            break;
        }
    }
    let e = failed.expect("a write past the limit fails");
    assert!(e.to_string().contains("No space left on device"), "{e}");
}

/// The files the fuzzer found that made redb abort the process (a damaged
/// page number asks for terabytes; a failed allocation is no panic) or
/// panic in its drop: every open says Damaged, repair copies them aside
/// and says what it could not do, and this process lives on.
#[test]
fn files_that_made_redb_abort_or_panic_are_damaged_and_the_process_lives() {
    let found = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/artifacts/state_file"));
    let mut tried = 0;
    for entry in std::fs::read_dir(found).unwrap() {
        let gz = entry.unwrap().path();
        if gz.extension().is_none_or(|e| e != "gz") {
            continue;
        }
        let out = std::process::Command::new("gzip").arg("-dc").arg(&gz).output().expect("gzip runs");
        assert!(out.status.success(), "{gz:?}");
        let what = gz.file_name().unwrap().to_string_lossy().into_owned();
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".stackpipe");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("state.redb"), &out.stdout).unwrap();
        for opened in [StateStore::open_read_only(&state), StateStore::open(&state)] {
            match opened {
                Err(StateError::Damaged { cause, .. }) => assert!(!cause.is_empty(), "{what}"),
                Err(other) => panic!("{what}: expected Damaged, got {other:?}"),
                Ok(store) => {
                    for r in [store.runs().map(drop), store.all_resources().map(drop), store.counts().map(drop)] {
                        assert!(matches!(r, Ok(()) | Err(StateError::Damaged { .. })), "{what}: {r:?}");
                    }
                }
            }
        }
        // Nothing to recover from: no backup, and the file itself fails.
        match crate::repair(&state, false) {
            Ok(report) => assert_ne!(report.recovered, crate::Recovered::NothingToRepair, "{what}"),
            Err(StateError::Damaged { cause, .. }) => assert!(cause.contains("no backup"), "{what}: {cause}"),
            Err(other) => panic!("{what}: {other:?}"),
        }
        tried += 1;
    }
    assert!(tried >= 4, "the fuzzer's files are where they were");
}

#[test]
fn a_run_keeps_its_selection_and_one_stored_before_reads_as_aimed_at_everything() {
    let (_dir, store) = store();
    let aimed = RunRecord { targets: vec!["db".into()], orphans: true, ..run("r000001", 1) };
    store.commit(vec![Write::PutRun(aimed.clone())]).unwrap();
    let read = store.run("r000001").unwrap().unwrap();
    assert_eq!((read.targets.as_slice(), read.orphans, read.is_targeted()), (&["db".to_string()][..], true, true));
    // A record written before the selection was kept: no such keys.
    let mut old = serde_json::to_value(run("r000002", 2)).unwrap();
    assert!(old.get("targets").is_none() && old.get("orphans").is_none(), "{old}");
    old.as_object_mut().unwrap().remove("started_by");
    let old: RunRecord = serde_json::from_value(old).unwrap();
    assert!(old.targets.is_empty() && !old.orphans && !old.is_targeted());
}

/// The runs whose jobs `resource_jobs` finds, in the order it finds them.
fn runs_of(store: &dyn StateBackend, environment: &str, resource: &str) -> Vec<String> {
    store.resource_jobs(environment, resource).unwrap().into_iter().map(|j| j.run_id).collect()
}

#[test]
fn a_resources_jobs_are_found_through_the_index() {
    let (_dir, store) = store();
    let mut diffed = job("r2", "dev", "vpc", 0);
    diffed.diff = Some(JobDiff::Changes(vec![AttributeDiff {
        path: "cidr".into(),
        before: Some("\"10.0.0.0/24\"".into()),
        after: Some("\"10.0.0.0/16\"".into()),
        sensitive: false,
        forces_replacement: true,
    }]));
    store
        .commit(vec![
            Write::PutJob(job("r1", "dev", "vpc", 0)),
            Write::PutJob(job("r1", "dev", "subnet", 1)),
            Write::PutJob(job("r2", "prod", "vpc", 0)),
            Write::PutJob(diffed.clone()),
            // A second write of a job replaces it: still one row.
            Write::PutJob(diffed.clone()),
        ])
        .unwrap();
    store.commit(vec![Write::PutJob(job("r3", "dev", "vpc", 0))]).unwrap();
    assert_eq!(runs_of(&store, "dev", "vpc"), ["r1", "r2", "r3"]);
    assert_eq!(runs_of(&store, "prod", "vpc"), ["r2"]);
    assert_eq!(runs_of(&store, "dev", "subnet"), ["r1"]);
    assert!(runs_of(&store, "dev", "vp").is_empty());
    assert!(runs_of(&store, "staging", "vpc").is_empty());
    assert_eq!(store.resource_jobs("dev", "vpc").unwrap()[1], diffed, "the job as stored, its diff too");
    let touched = store.touched_resources().unwrap();
    let names: Vec<(&str, &str)> = touched.iter().map(|(e, r)| (e.as_str(), r.as_str())).collect();
    assert_eq!(names, [("dev", "subnet"), ("dev", "vpc"), ("prod", "vpc")]);
    // Read through the index, not a scan: a row taken out of the index
    // takes its job out of the answer.
    {
        let txn = store.writable().unwrap().begin_write().unwrap();
        txn.open_table(RESOURCE_JOBS).unwrap().remove(("dev", "vpc", "r2")).unwrap();
        txn.commit().unwrap();
    }
    assert_eq!(runs_of(&store, "dev", "vpc"), ["r1", "r3"]);
}

#[test]
fn a_database_made_before_the_index_is_scanned_by_readers_and_indexed_by_the_first_writer() {
    let (dir, store) = store();
    store
        .commit(vec![
            Write::PutJob(job("r1", "dev", "vpc", 0)),
            Write::PutJob(job("r2", "dev", "vpc", 0)),
            Write::PutJob(job("r2", "dev", "subnet", 1)),
        ])
        .unwrap();
    // As an older stackpipe left it: no index, no mark.
    {
        let txn = store.writable().unwrap().begin_write().unwrap();
        txn.delete_table(RESOURCE_JOBS).unwrap();
        txn.open_table(META).unwrap().remove(RESOURCE_JOBS_INDEXED).unwrap();
        txn.commit().unwrap();
    }
    drop(store);
    let state = dir.path().join(".stackpipe");
    let file = std::fs::read(state.join("state.redb")).unwrap();
    let reader = RedbStore::open_read_only(&state).unwrap();
    assert_eq!(runs_of(&reader, "dev", "vpc"), ["r1", "r2"]);
    assert_eq!(reader.touched_resources().unwrap().len(), 2);
    drop(reader);
    assert!(std::fs::read(state.join("state.redb")).unwrap() == file, "a reader writes nothing");
    // The first writer builds the index and marks it complete.
    let writer = RedbStore::open(&state).unwrap();
    {
        let txn = writer.read().unwrap();
        assert_eq!(txn.open_table(META).unwrap().get(RESOURCE_JOBS_INDEXED).unwrap().map(|v| v.value()), Some(1));
        assert_eq!(txn.open_table(RESOURCE_JOBS).unwrap().len().unwrap(), 3);
    }
    assert_eq!(runs_of(&writer, "dev", "vpc"), ["r1", "r2"]);
    assert_eq!(runs_of(&writer, "dev", "subnet"), ["r2"]);
}

#[test]
fn a_damaged_job_in_a_resources_history_is_an_error() {
    let (_dir, store) = store();
    store.commit(vec![Write::PutJob(job("r1", "dev", "vpc", 0))]).unwrap();
    {
        let txn = store.writable().unwrap().begin_write().unwrap();
        txn.open_table(JOBS).unwrap().insert(("r1", "dev", "vpc"), b"{\"run_id\": ".as_slice()).unwrap();
        txn.commit().unwrap();
    }
    match store.resource_jobs("dev", "vpc") {
        Err(StateError::Damaged { cause, .. }) => assert!(cause.contains("r1/dev/vpc"), "{cause}"),
        other => panic!("expected Damaged, got {other:?}"),
    }
}

#[test]
fn an_old_job_record_reads_without_a_diff() {
    let old = r#"{"run_id":"r1","environment":"dev","node":"vpc","level":0,"status":"succeeded","started_ms":1,
        "finished_ms":2,"ops":[],"input":null,"change":"update"}"#;
    let j: JobRecord = serde_json::from_str(old).unwrap();
    assert_eq!(j.diff, None);
    let not_computed = JobRecord { diff: Some(JobDiff::NotComputed("no preview ran".into())), ..j };
    let text = serde_json::to_string(&not_computed).unwrap();
    assert!(text.contains(r#""diff":{"not_computed":"no preview ran"}"#), "{text}");
    assert_eq!(serde_json::from_str::<JobRecord>(&text).unwrap(), not_computed);
}


#[test]
fn a_deleted_run_leaves_nothing_of_it_and_everything_of_the_others() {
    let (_dir, store) = store();
    let mut writes = Vec::new();
    for id in ["r1", "r2", "r3"] {
        writes.push(Write::PutRun(run(id, 1)));
        writes.push(Write::PutJob(job(id, "dev", "db", 0)));
        writes.push(Write::Log(log("dev", "db", "applied"), id.into()));
        writes.push(Write::Journal(journal(id, "db", JournalPhase::Started)));
        writes.push(Write::Decision(decision(id, "dev", None, Decision::Approved)));
    }
    store.commit(writes).unwrap();
    store.commit(vec![Write::DeleteRun("r2".into())]).unwrap();
    assert!(store.run("r2").unwrap().is_none());
    assert!(store.jobs("r2").unwrap().is_empty());
    assert!(store.logs("r2", None).unwrap().is_empty());
    assert!(store.journal("r2").unwrap().is_empty());
    assert!(store.decisions("r2").unwrap().is_empty());
    let touched: Vec<String> = store.resource_jobs("dev", "db").unwrap().into_iter().map(|j| j.run_id).collect();
    assert_eq!(touched.len(), 2, "{touched:?}");
    assert!(!touched.contains(&"r2".to_string()));
    for id in ["r1", "r3"] {
        assert!(store.run(id).unwrap().is_some());
        assert_eq!(store.jobs(id).unwrap().len(), 1);
        assert_eq!(store.logs(id, None).unwrap().len(), 1);
        assert_eq!(store.journal(id).unwrap().len(), 1);
        assert_eq!(store.decisions(id).unwrap().len(), 1);
    }
}
