//! [`RedbStore`]: the tables of the module documentation on redb.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::StateError;
use super::file::{empty, open_for_reading, open_for_writing, Db, DB_FILE};
use super::guard::quietly;
use super::owner::{pid_alive, remove_owner, write_owner, OwnerInfo};
use super::records::*;
use super::backend::{keyed_hash_with, sort_jobs};
use super::{Counts, StateBackend, StateDump, Write};

type Key3<'a> = (&'a str, &'a str, &'a str);

const RESOURCES: TableDefinition<Key3, &[u8]> = TableDefinition::new("resources");
const LOCKS: TableDefinition<Key3, &[u8]> = TableDefinition::new("locks");
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");
const JOBS: TableDefinition<Key3, &[u8]> = TableDefinition::new("jobs");
/// `(environment, resource, run_id)`: `jobs` by what they touched (see the crate documentation).
const RESOURCE_JOBS: TableDefinition<Key3, ()> = TableDefinition::new("resource_jobs");
const LOGS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("logs");
const JOURNAL: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("journal");
const DECISIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("decisions");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Run snapshots by digest (see [`RunSnapshot`]).
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
/// Plugin components by SHA-256: what snapshots load.
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
/// Pipeline executions of services, by id; their build logs are in `logs`
/// under the execution's id.
const EXECUTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("executions");
/// What a server keeps of each service, by name.
const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");

const RUN_COUNTER: &str = "run_counter";
const EXECUTION_COUNTER: &str = "execution_counter";
const LOG_SEQ: &str = "log_seq";
const JOURNAL_SEQ: &str = "journal_seq";
const DECISION_SEQ: &str = "decision_seq";
/// Set (to 1) once `resource_jobs` has a row for every job.
const RESOURCE_JOBS_INDEXED: &str = "resource_jobs_indexed";

/// The state database of one state directory. See the module documentation.
pub struct RedbStore {
    /// Dropped by hand, inside the panic guard: redb's own drop reads the
    /// file too (a damaged one can make it panic there).
    db: std::mem::ManuallyDrop<Db>,
    dir: PathBuf,
    path: PathBuf,
    since_ms: u64,
    /// The run this process is running on this store, if any: every other
    /// run still marked running was interrupted (its process is gone, or it
    /// would hold the database).
    /// The runs this process runs (a team server runs several at once).
    current_runs: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The first failure a use of the database met. redb answers every use
    /// after a failed read or write with "Previous I/O error occurred":
    /// they are told what that error was.
    first_failure: std::sync::OnceLock<StateError>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn key3(key: &ResourceKey) -> Key3<'_> {
    (key.pipeline.as_str(), key.environment.as_str(), key.resource.as_str())
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: impl FnOnce() -> String) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt(format!("{}: {e}", what())))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value).map_err(|e| StateError::Corrupt(format!("cannot encode a record: {e}")))
}

/// Just the serial of a stored resource.
#[derive(Deserialize)]
struct Serial {
    serial: u64,
}

impl RedbStore {
    /// Opens `<dir>/state.redb` for writing, creating the directory (0700)
    /// and the database (0600) if needed. An existing database is checked
    /// first (see `file`): a damaged one is [`StateError::Damaged`] and is
    /// left untouched. If it is open elsewhere, returns
    /// [`StateError::Busy`] naming the holder from `<dir>/owner.json`. On
    /// success, writes `owner.json` with this process's pid; it is removed
    /// on drop.
    pub fn open(dir: &Path) -> Result<RedbStore, StateError> {
        let path = dir.join(DB_FILE);
        let db = open_for_writing(dir)?;
        let store = RedbStore {
            db: std::mem::ManuallyDrop::new(Db::Write(db)),
            dir: dir.to_path_buf(),
            path,
            since_ms: now_ms(),
            current_runs: std::sync::Mutex::new(Default::default()),
            first_failure: std::sync::OnceLock::new(),
        };
        store.guarded(|| create_tables(store.writable()?))?;
        write_owner(dir, &OwnerInfo { pid: std::process::id(), run_id: None, since_ms: store.since_ms, control: None })?;
        Ok(store)
    }

    /// Opens `<dir>/state.redb` for reading only: nothing is created, and
    /// the file is never written (see `file`). No database there is
    /// [`StateError::Missing`]; writes through this store fail with
    /// [`StateError::ReadOnly`].
    pub fn open_read_only(dir: &Path) -> Result<RedbStore, StateError> {
        let db = open_for_reading(dir)?;
        Ok(RedbStore {
            db: std::mem::ManuallyDrop::new(db),
            dir: dir.to_path_buf(),
            path: dir.join(DB_FILE),
            since_ms: now_ms(),
            current_runs: std::sync::Mutex::new(Default::default()),
            first_failure: std::sync::OnceLock::new(),
        })
    }

    /// A store with nothing in it, in memory, read only: what a reader of
    /// a directory without state sees (a plan of a pipeline never deployed).
    pub fn empty(dir: &Path) -> Result<RedbStore, StateError> {
        let db = empty()?;
        create_tables(&db)?;
        Ok(RedbStore::in_memory(dir, db))
    }

    /// A read-only store of `db`, a database in memory, standing for the
    /// state in `dir`.
    fn in_memory(dir: &Path, db: Database) -> RedbStore {
        RedbStore {
            db: std::mem::ManuallyDrop::new(Db::Snapshot(db, None)),
            dir: dir.to_path_buf(),
            path: dir.join(DB_FILE),
            since_ms: now_ms(),
            current_runs: std::sync::Mutex::new(Default::default()),
            first_failure: std::sync::OnceLock::new(),
        }
    }

    /// A read-only copy, in memory, of the resources and locks of the
    /// state in `dir`, as the process holding it (a run in progress) gave
    /// them: what a reader in another terminal plans or shows while a run
    /// holds the database. Records are kept as given, serials included.
    pub fn replica(
        dir: &Path,
        resources: &[(ResourceKey, ResourceRecord)],
        locks: &[(ResourceKey, LockHolder)],
    ) -> Result<RedbStore, StateError> {
        let db = empty()?;
        create_tables(&db)?;
        let txn = begin_write(&db, false)?;
        {
            let mut table = txn.open_table(RESOURCES)?;
            for (key, record) in resources {
                table.insert(key3(key), encode(record)?.as_slice())?;
            }
            let mut table = txn.open_table(LOCKS)?;
            for (key, holder) in locks {
                table.insert(key3(key), encode(holder)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(RedbStore::in_memory(dir, db))
    }

    /// [`RedbStore::open_read_only`], or an empty store when the
    /// directory has no state.
    pub fn open_read_only_or_empty(dir: &Path) -> Result<RedbStore, StateError> {
        match RedbStore::open_read_only(dir) {
            Err(StateError::Missing { .. }) => RedbStore::empty(dir),
            other => other,
        }
    }

    /// Whether the run holding a lock is alive: its process is, and, when
    /// that is this process, it still runs the run.
    fn holder_alive(&self, holder: &LockHolder) -> bool {
        if holder.pid == std::process::id() {
            return self.current_runs.lock().is_ok_and(|c| c.contains(&holder.run_id));
        }
        pid_alive(holder.pid)
    }

    fn writable(&self) -> Result<&Database, StateError> {
        match &*self.db {
            Db::Write(db) => Ok(db),
            Db::Read(_) | Db::Snapshot(..) => Err(StateError::ReadOnly { path: self.path.clone() }),
        }
    }

    /// Runs `f` over the database: a panic inside redb (a damaged file) and
    /// a record that does not decode both become [`StateError::Damaged`],
    /// naming the file.
    fn guarded<T>(&self, f: impl FnOnce() -> Result<T, StateError>) -> Result<T, StateError> {
        let damaged = |cause: String| StateError::Damaged { path: self.path.clone(), cause };
        let failure = match quietly(f) {
            Ok(Ok(v)) => return Ok(v),
            // redb's answer to any use after a failure: that failure again.
            Ok(Err(StateError::Db(cause))) if cause.contains("Previous I/O error") => match self.first_failure.get() {
                Some(first) => return Err(first.again()),
                None => StateError::File { path: self.path.clone(), cause },
            },
            Ok(Err(StateError::Corrupt(cause))) => damaged(cause),
            // A read past the end, or of bytes that make no sense: the file is damaged.
            Ok(Err(StateError::Db(cause)))
                if cause.contains("orrupt") || cause.contains("failed to fill whole buffer") || cause.contains("invalid data") =>
            {
                damaged(cause)
            }
            Ok(Err(StateError::Io(e))) if matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData) => {
                damaged(e.to_string())
            }
            Ok(Err(StateError::Db(cause))) => {
                StateError::File { path: self.path.clone(), cause: cause.trim_start_matches("I/O error: ").to_string() }
            }
            Ok(Err(StateError::Io(e))) => StateError::File { path: self.path.clone(), cause: e.to_string() },
            Ok(Err(other)) => other,
            Err(panic) => damaged(panic),
        };
        if matches!(failure, StateError::Damaged { .. } | StateError::File { .. }) {
            let _ = self.first_failure.set(failure.again());
        }
        Err(failure)
    }

    /// Like [`RedbStore::open`], but waits up to `patience` while the
    /// database is held by a process that runs nothing (a `status` or `logs`
    /// from another terminal holds it for milliseconds). A holder that runs
    /// a run is reported at once. (`owner.json` may still name a killed
    /// runner for the moment before a reader replaces it: a dead holder
    /// counts as a reader.)
    pub fn open_patiently(dir: &Path, patience: std::time::Duration) -> Result<RedbStore, StateError> {
        patiently(patience, || RedbStore::open(dir))
    }

    /// [`RedbStore::open_read_only`] (or, `or_empty`,
    /// [`RedbStore::open_read_only_or_empty`]), as patient as
    /// [`RedbStore::open_patiently`].
    pub fn open_read_only_patiently(
        dir: &Path,
        patience: std::time::Duration,
        or_empty: bool,
    ) -> Result<RedbStore, StateError> {
        patiently(patience, || {
            if or_empty {
                RedbStore::open_read_only_or_empty(dir)
            } else {
                RedbStore::open_read_only(dir)
            }
        })
    }

    /// The database file, `<dir>/state.redb`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<ReadTransaction, StateError> {
        Ok(match &*self.db {
            Db::Write(db) | Db::Snapshot(db, _) => db.begin_read()?,
            Db::Read(db) => db.begin_read()?,
        })
    }

    /// A run record as it stands: one stored as running that this process
    /// does not run is interrupted. (Only one process opens the database
    /// for writing, and the one running a run holds it until the run ends;
    /// a reader opens it only when no writer has it.)
    fn as_seen(&self, mut run: RunRecord) -> RunRecord {
        if run.status == RunStatus::Running {
            let runs_here = self.current_runs.lock().is_ok_and(|c| c.contains(&run.id));
            if !runs_here {
                run.status = RunStatus::Interrupted;
            }
        }
        run
    }

    /// The next number of `meta`'s `counter`, durably taken, after `prefix`.
    fn next_id(&self, counter: &str, prefix: char) -> Result<String, StateError> {
        self.guarded(|| {
            let txn = begin_write(self.writable()?, true)?;
            let n = {
                let mut meta = txn.open_table(META)?;
                let n = meta.get(counter)?.map(|v| v.value()).unwrap_or(0) + 1;
                meta.insert(counter, n)?;
                n
            };
            txn.commit()?;
            Ok(format!("{prefix}{n:06}"))
        })
    }

    /// The rows of a `(run_id, seq)` table for one run, in append order.
    fn run_rows<T: DeserializeOwned>(
        &self,
        table: TableDefinition<(&str, u64), &[u8]>,
        run_id: &str,
        what: &str,
    ) -> Result<Vec<T>, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            let table = txn.open_table(table)?;
            let mut out = Vec::new();
            for item in table.range((run_id, 0u64)..=(run_id, u64::MAX))? {
                let (k, v) = item?;
                out.push(decode(v.value(), || format!("{what} {:?}", k.value()))?);
            }
            Ok(out)
        })
    }

    fn unlock_where(
        &self,
        only: Option<&ResourceKey>,
        release: impl Fn(&LockHolder) -> bool,
        durable: bool,
    ) -> Result<Vec<(ResourceKey, LockHolder)>, StateError> {
        self.guarded(|| {
            let txn = begin_write(self.writable()?, durable)?;
            let (released, every_one) = {
                let mut table = txn.open_table(LOCKS)?;
                let candidates = match only {
                    Some(key) => match table.get(key3(key))? {
                        Some(v) => vec![(key.clone(), decode(v.value(), || format!("lock of {key}"))?)],
                        None => Vec::new(),
                    },
                    None => by_key(&table, "lock of")?,
                };
                let (released, kept): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|(_, h)| release(h));
                // Releasing every lock there is (a run ending alone, the usual
                // case) drops the table at once, below, rather than key by key.
                let every_one = only.is_none() && kept.is_empty();
                if !every_one {
                    for (key, _) in &released {
                        table.remove(key3(key))?;
                    }
                }
                (released, every_one)
            };
            if every_one && !released.is_empty() {
                txn.delete_table(LOCKS)?;
                txn.open_table(LOCKS)?;
            }
            if released.is_empty() {
                txn.abort()?;
            } else {
                txn.commit()?;
            }
            Ok(released)
        })
    }
}

impl StateBackend for RedbStore {

    /// Whether this store can write.
    fn is_writable(&self) -> bool {
        matches!(*self.db, Db::Write(_))
    }

    /// Rewrites `owner.json` to name the run this process is running and
    /// the control socket it serves.
    fn set_owner_run(&self, run_id: &str, control: Option<&Path>) -> Result<(), StateError> {
        if let Ok(mut current) = self.current_runs.lock() {
            current.insert(run_id.to_string());
        }
        let owner = OwnerInfo {
            pid: std::process::id(),
            run_id: Some(run_id.into()),
            since_ms: self.since_ms,
            control: control.map(Path::to_path_buf),
        };
        write_owner(&self.dir, &owner)?;
        Ok(())
    }

    /// Run `run_id` is run by this process from now on (a server starting
    /// it: a resumed run reads as running, not interrupted, as soon as it
    /// is taken up).
    fn run_taken_up(&self, run_id: &str) {
        if let Ok(mut current) = self.current_runs.lock() {
            current.insert(run_id.to_string());
        }
    }

    /// Run `run_id` is no longer run by this process: if its record still
    /// says running (it ended on an error), it reads as interrupted.
    fn run_ended(&self, run_id: &str) {
        if let Ok(mut current) = self.current_runs.lock() {
            current.remove(run_id);
        }
    }

    /// A keyed hash (HMAC-SHA256, hex) of a sensitive var's value, what a
    /// run records instead of the value. The key is `<dir>/secrets.key`, 32
    /// random bytes only this user can read, made on first use by a writer:
    /// the hash tells a changed value from the same one, and without the key
    /// it cannot be used to guess the value.
    fn keyed_hash(&self, name: &str, value: &str) -> Result<String, StateError> {
        let key = secrets_key(&self.dir, self.is_writable())?;
        keyed_hash_with(&key, name, value)
    }

    fn control_socket(&self, run_id: &str) -> Result<Option<PathBuf>, StateError> {
        Ok(crate::read_owner(&self.dir)
            .filter(|o| o.run_id.as_deref() == Some(run_id) && pid_alive(o.pid))
            .and_then(|o| o.control))
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    /// The state directory holding the database and `owner.json`.
    fn dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }

    // ---- resources

    fn resource(&self, key: &ResourceKey) -> Result<Option<ResourceRecord>, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            let table = txn.open_table(RESOURCES)?;
            let found = table.get(key3(key))?;
            match found {
                Some(v) => Ok(Some(decode(v.value(), || format!("resource {key}"))?)),
                None => Ok(None),
            }
        })
    }

    /// The resources of a pipeline (of one environment, if given), sorted by key.
    fn resources(
        &self,
        pipeline: &str,
        environment: Option<&str>,
    ) -> Result<Vec<(ResourceKey, ResourceRecord)>, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            let table = txn.open_table(RESOURCES)?;
            let mut out = Vec::new();
            for item in table.range((pipeline, environment.unwrap_or(""), "")..)? {
                let (k, v) = item?;
                let (p, e, r) = k.value();
                if p != pipeline || environment.is_some_and(|env| env != e) {
                    break;
                }
                let key = ResourceKey::new(p, e, r);
                let record = decode(v.value(), || format!("resource {key}"))?;
                out.push((key, record));
            }
            Ok(out)
        })
    }

    /// Every resource of every pipeline, sorted by key.
    fn all_resources(&self) -> Result<Vec<(ResourceKey, ResourceRecord)>, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            by_key(&txn.open_table(RESOURCES)?, "resource")
        })
    }

    /// How many rows each table holds.
    fn counts(&self) -> Result<Counts, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            Ok(Counts {
                resources: txn.open_table(RESOURCES)?.len()?,
                runs: txn.open_table(RUNS)?.len()?,
                jobs: txn.open_table(JOBS)?.len()?,
                log_lines: txn.open_table(LOGS)?.len()?,
                journal_entries: txn.open_table(JOURNAL)?.len()?,
                decisions: txn.open_table(DECISIONS)?.len()?,
                locks: txn.open_table(LOCKS)?.len()?,
            })
        })
    }

    // ---- runs

    fn run(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            Ok(read_run(&txn, id)?.map(|r| self.as_seen(r)))
        })
    }

    /// Every run, most recent first (by `started_ms`, then id).
    fn runs(&self) -> Result<Vec<RunRecord>, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            let table = txn.open_table(RUNS)?;
            let mut out: Vec<RunRecord> = Vec::new();
            for item in table.iter()? {
                let (k, v) = item?;
                out.push(self.as_seen(decode(v.value(), || format!("run {}", k.value()))?));
            }
            out.sort_by(|a, b| (b.started_ms, &b.id).cmp(&(a.started_ms, &a.id)));
            Ok(out)
        })
    }

    /// The run snapshot of that digest.
    fn snapshot(&self, digest: &str) -> Result<Option<RunSnapshot>, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            let table = match txn.open_table(SNAPSHOTS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let found = table.get(digest)?;
            found.map(|v| decode(v.value(), || format!("snapshot {digest}"))).transpose()
        })
    }

    /// The bytes stored under SHA-256 `digest`, checked against it: bytes
    /// that do not hash to their key are damage, never handed out.
    fn blob(&self, digest: &str) -> Result<Option<Vec<u8>>, StateError> {
        use sha2::Digest;
        self.guarded(|| {
            let txn = self.read()?;
            let table = match txn.open_table(BLOBS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let Some(v) = table.get(digest)? else { return Ok(None) };
            let bytes = v.value().to_vec();
            if hex::encode(sha2::Sha256::digest(&bytes)) != digest {
                return Err(StateError::Corrupt(format!("stored component {digest}: its bytes do not match its digest")));
            }
            Ok(Some(bytes))
        })
    }

    /// A new run id, `r` and a zero-padded counter (`r000042`), unique in
    /// this database and sortable (up to a million runs).
    fn new_run_id(&self) -> Result<String, StateError> {
        self.next_id(RUN_COUNTER, 'r')
    }

    /// A new pipeline execution id, `x` and a zero-padded counter (`x000042`).
    fn new_execution_id(&self) -> Result<String, StateError> {
        self.next_id(EXECUTION_COUNTER, 'x')
    }

    // ---- service pipelines

    /// The pipeline execution `id`.
    fn execution(&self, id: &str) -> Result<Option<ExecutionRecord>, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            let table = match txn.open_table(EXECUTIONS) {
                Ok(t) => t,
                // A database no writer has opened since executions were kept.
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let found = table.get(id)?;
            match found {
                Some(v) => Ok(Some(decode(v.value(), || format!("execution {id}"))?)),
                None => Ok(None),
            }
        })
    }

    /// The pipeline executions of `service` (of every service: None), most
    /// recent first.
    fn executions(&self, service: Option<&str>) -> Result<Vec<ExecutionRecord>, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            let table = match txn.open_table(EXECUTIONS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out: Vec<ExecutionRecord> = Vec::new();
            for item in table.iter()? {
                let (k, v) = item?;
                let record: ExecutionRecord = decode(v.value(), || format!("execution {}", k.value()))?;
                if service.is_none_or(|s| s == record.service) {
                    out.push(record);
                }
            }
            out.sort_by(|a, b| b.id.cmp(&a.id));
            Ok(out)
        })
    }

    /// What is kept of the service `name` (nothing yet: the default).
    fn service_record(&self, name: &str) -> Result<ServiceRecord, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            let table = match txn.open_table(SERVICES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(ServiceRecord::default()),
                Err(e) => return Err(e.into()),
            };
            let found = table.get(name)?;
            match found {
                Some(v) => decode(v.value(), || format!("service {name}")),
                None => Ok(ServiceRecord::default()),
            }
        })
    }

    // ---- jobs and logs

    /// The jobs of a run, in the order of the run's environments, then by
    /// level, then by node name. Jobs of environments the run record does
    /// not list (or of a run without a record) come last, by environment.
    fn jobs(&self, run_id: &str) -> Result<Vec<JobRecord>, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            let environments = read_run(&txn, run_id)?.map(|r| r.environments).unwrap_or_default();
            let table = txn.open_table(JOBS)?;
            let mut out: Vec<JobRecord> = Vec::new();
            for item in table.range((run_id, "", "")..)? {
                let (k, v) = item?;
                let (r, e, n) = k.value();
                if r != run_id {
                    break;
                }
                out.push(decode(v.value(), || format!("job {r}/{e}/{n}"))?);
            }
            sort_jobs(&mut out, &environments);
            Ok(out)
        })
    }

    fn job(&self, run_id: &str, environment: &str, node: &str) -> Result<Option<JobRecord>, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            let table = txn.open_table(JOBS)?;
            let found = table.get((run_id, environment, node))?;
            match found {
                Some(v) => Ok(Some(decode(v.value(), || format!("job {run_id}/{environment}/{node}"))?)),
                None => Ok(None),
            }
        })
    }

    /// Every job that touched `resource` in `environment`, in any run of
    /// any pipeline (its run record says which), in run id order: the
    /// `resource_jobs` rows of the resource and a lookup of each job (see
    /// the crate documentation).
    fn resource_jobs(&self, environment: &str, resource: &str) -> Result<Vec<JobRecord>, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            let jobs = txn.open_table(JOBS)?;
            let mut run_ids: Vec<String> = Vec::new();
            match resource_index(&txn)? {
                Some(index) => {
                    for item in index.range((environment, resource, "")..)? {
                        let (k, _) = item?;
                        let (e, r, run_id) = k.value();
                        if e != environment || r != resource {
                            break;
                        }
                        run_ids.push(run_id.to_string());
                    }
                }
                None => {
                    for item in jobs.iter()? {
                        let (k, _) = item?;
                        let (run_id, e, r) = k.value();
                        if e == environment && r == resource {
                            run_ids.push(run_id.to_string());
                        }
                    }
                }
            }
            let mut out = Vec::with_capacity(run_ids.len());
            for run_id in &run_ids {
                // A row without its job is not made by any write: skipped.
                if let Some(v) = jobs.get((run_id.as_str(), environment, resource))? {
                    out.push(decode(v.value(), || format!("job {run_id}/{environment}/{resource}"))?);
                }
            }
            Ok(out)
        })
    }

    /// Every `(environment, resource)` a job touched, sorted, each once:
    /// what the state knows by name, for a "did you mean". Reads every row
    /// of `resource_jobs` (keys only): for an error's help, not for each use.
    fn touched_resources(&self) -> Result<Vec<(String, String)>, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            let mut out: std::collections::BTreeSet<(String, String)> = Default::default();
            match resource_index(&txn)? {
                Some(index) => {
                    for item in index.iter()? {
                        let (k, _) = item?;
                        let (e, r, _) = k.value();
                        if out.last().is_none_or(|(le, lr)| le != e || lr != r) {
                            out.insert((e.to_string(), r.to_string()));
                        }
                    }
                }
                None => {
                    for item in txn.open_table(JOBS)?.iter()? {
                        let (k, _) = item?;
                        let (_, e, r) = k.value();
                        out.insert((e.to_string(), r.to_string()));
                    }
                }
            }
            Ok(out.into_iter().collect())
        })
    }

    /// The log lines of a run (of one node, if given), in append order.
    fn logs(&self, run_id: &str, node: Option<&str>) -> Result<Vec<LogLine>, StateError> {
        let mut lines: Vec<LogLine> = self.run_rows(LOGS, run_id, "log line")?;
        if let Some(n) = node {
            lines.retain(|l| l.node == n);
        }
        Ok(lines)
    }

    /// The journal of a run, in append order.
    fn journal(&self, run_id: &str) -> Result<Vec<JournalEntry>, StateError> {
        self.run_rows(JOURNAL, run_id, "journal entry")
    }

    /// The gate decisions of a run, in the order they were taken.
    fn decisions(&self, run_id: &str) -> Result<Vec<GateDecision>, StateError> {
        self.run_rows(DECISIONS, run_id, "decision")
    }

    // ---- locks

    /// Every lock, sorted by key.
    fn locks(&self) -> Result<Vec<(ResourceKey, LockHolder)>, StateError> {
        self.guarded(|| {
            let txn = self.read()?;
            by_key(&txn.open_table(LOCKS)?, "lock of")
        })
    }

    /// Locks every key for `holder` in one transaction, or none of them. A
    /// key locked by another run fails with [`StateError::Locked`] (the
    /// first such key, in the order given). Keys already held by the same
    /// run are fine; if that run is now in another process (a resume), the
    /// lock passes to `holder`.
    ///
    /// Committed without an fsync: the locks reach the disk with the next
    /// durable commit, which a run makes at once (its record).
    fn lock(&self, keys: &[ResourceKey], holder: &LockHolder) -> Result<(), StateError> {
        self.guarded(|| {
            let txn = begin_write(self.writable()?, false)?;
            {
                let mut table = txn.open_table(LOCKS)?;
                let value = encode(holder)?;
                // In key order, the B-tree is filled leaf by leaf.
                let mut keys: Vec<&ResourceKey> = keys.iter().collect();
                keys.sort_unstable_by(|a, b| key3(a).cmp(&key3(b)));
                // The locks there are, read in one pass (usually: none) rather
                // than looked up key by key.
                let mut held: HashMap<ResourceKey, LockHolder> = by_key(&table, "lock of")?.into_iter().collect();
                for key in keys {
                    match held.remove(key) {
                        Some(h) if h.run_id != holder.run_id => {
                            let holder_alive = self.holder_alive(&h);
                            return Err(StateError::Locked { key: key.clone(), holder: h, holder_alive });
                        }
                        Some(h) if h.pid == holder.pid => {}
                        _ => {
                            table.insert(key3(key), value.as_slice())?;
                        }
                    }
                }
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Releases every lock of a run; returns how many. Committed without an
    /// fsync, like [`lock`](Self::lock): a run's final record, committed
    /// durably right after, takes the release to disk.
    fn unlock_run(&self, run_id: &str) -> Result<usize, StateError> {
        self.unlock_where(None, |h| h.run_id == run_id, false).map(|released| released.len())
    }

    /// `state unlock`: releases the locks whose holder process is gone (all
    /// of them when `force`), of one key only if given. Returns what it
    /// released.
    fn unlock_stale(
        &self,
        key: Option<&ResourceKey>,
        force: bool,
    ) -> Result<Vec<(ResourceKey, LockHolder)>, StateError> {
        self.unlock_where(key, |h| force || !self.holder_alive(h), true)
    }

    // ---- writes

    /// Puts on disk the commits made without durability.
    fn persist(&self) -> Result<(), StateError> {
        self.guarded(|| {
            begin_write(self.writable()?, true)?.commit()?;
            Ok(())
        })
    }

    /// Applies `writes` in one write transaction. When not `durable`, the
    /// transaction is visible to this process at once but reaches the disk
    /// only with the next durable commit; a crash before that loses it.
    fn commit_as(&self, writes: Vec<Write>, durable: bool) -> Result<(), StateError> {
        self.guarded(|| {
            if writes.is_empty() {
                return Ok(());
            }
            let txn = begin_write(self.writable()?, durable)?;
            apply(&txn, writes)?;
            txn.commit()?;
            Ok(())
        })
    }

    fn export(&self) -> Result<StateDump, StateError> {
        let hash_key = match std::fs::read(self.dir.join(SECRETS_KEY)) {
            Ok(key) => Some(key),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let mut dump = self.guarded(|| export_tables(&self.read()?))?;
        dump.hash_key = hash_key;
        dump.normalize();
        Ok(dump)
    }

    fn import(&self, dump: &StateDump) -> Result<(), StateError> {
        if !self.export()?.is_empty() || self.dir.join(SECRETS_KEY).exists() {
            return Err(StateError::NotEmpty { location: self.location() });
        }
        if let Some(key) = &dump.hash_key {
            write_secrets_key(&self.dir, key)?;
        }
        self.guarded(|| {
            let txn = begin_write(self.writable()?, true)?;
            import_tables(&txn, dump)?;
            txn.commit()?;
            Ok(())
        })
    }
}

const SECRETS_KEY: &str = "secrets.key";

/// The state directory's key for [`RedbStore::keyed_hash`]: read, or (by
/// a writer) made, 0600.
fn secrets_key(dir: &Path, create: bool) -> Result<Vec<u8>, StateError> {
    let path = dir.join(SECRETS_KEY);
    match std::fs::read(&path) {
        Ok(key) if key.len() == 32 => return Ok(key),
        Ok(_) => return Err(StateError::Damaged { path, cause: "it is not a 32-byte key".into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {}
        Err(e) => return Err(e.into()),
    }
    let mut key = vec![0u8; 32];
    getrandom::getrandom(&mut key).map_err(|e| StateError::Io(std::io::Error::other(e.to_string())))?;
    write_secrets_key(dir, &key)?;
    Ok(key)
}

/// Writes `<dir>/secrets.key` (0600), which must not exist yet.
fn write_secrets_key(dir: &Path, key: &[u8]) -> Result<(), StateError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(dir.join(SECRETS_KEY))?;
    f.write_all(key)?;
    f.sync_all()?;
    Ok(())
}

/// Tries `open` until it is not refused by a holder that runs nothing (or
/// is gone), or `patience` has passed.
fn patiently(
    patience: std::time::Duration,
    open: impl Fn() -> Result<RedbStore, StateError>,
) -> Result<RedbStore, StateError> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match open() {
            Err(StateError::Busy { holder, .. })
                if std::time::Instant::now() < deadline
                    && holder.as_ref().is_none_or(|h| h.run_id.is_none() || !pid_alive(h.pid)) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Creates every table, so that read transactions can open them
/// unconditionally; and builds `resource_jobs` where it is missing.
fn create_tables(db: &Database) -> Result<(), StateError> {
    let txn = begin_write(db, true)?;
    let indexed = {
        txn.open_table(RESOURCES)?;
        txn.open_table(LOCKS)?;
        txn.open_table(RUNS)?;
        txn.open_table(JOBS)?;
        txn.open_table(RESOURCE_JOBS)?;
        txn.open_table(LOGS)?;
        txn.open_table(JOURNAL)?;
        txn.open_table(DECISIONS)?;
        txn.open_table(EXECUTIONS)?;
        txn.open_table(SERVICES)?;
        txn.open_table(META)?.get(RESOURCE_JOBS_INDEXED)?.is_some()
    };
    txn.commit()?;
    if !indexed {
        // A transaction of its own: with a `meta` row written in the one
        // that creates the tables, a few ordinary writes later (a run
        // record replaced) redb 3.1's `check_integrity` reports the closed
        // file as repaired, which a writer's check takes for damage.
        let txn = begin_write(db, true)?;
        index_every_job(&txn)?;
        txn.open_table(META)?.insert(RESOURCE_JOBS_INDEXED, 1)?;
        txn.commit()?;
    }
    Ok(())
}

/// Builds `resource_jobs` from `jobs`: once, for a database made before the
/// index was kept (and, at no cost, for a new one).
fn index_every_job(txn: &WriteTransaction) -> Result<(), StateError> {
    let jobs = txn.open_table(JOBS)?;
    let mut index = txn.open_table(RESOURCE_JOBS)?;
    for item in jobs.iter()? {
        let (k, _) = item?;
        let (run_id, environment, node) = k.value();
        index.insert((environment, node, run_id), ())?;
    }
    Ok(())
}

/// A write transaction that commits with an fsync, or (not `durable`)
/// without one, reaching the disk with the next durable commit.
fn begin_write(db: &Database, durable: bool) -> Result<WriteTransaction, StateError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
    Ok(txn)
}

/// Every row of a table keyed by resource (resources, locks), in key order;
/// `what` names a row in an error.
fn by_key<T: DeserializeOwned>(
    table: &impl ReadableTable<Key3<'static>, &'static [u8]>,
    what: &str,
) -> Result<Vec<(ResourceKey, T)>, StateError> {
    let mut out = Vec::new();
    for item in table.iter()? {
        let (k, v) = item?;
        let (p, e, r) = k.value();
        let key = ResourceKey::new(p, e, r);
        let row = decode(v.value(), || format!("{what} {key}"))?;
        out.push((key, row));
    }
    Ok(out)
}

/// Reads every row of every table, as the store's own reads would: what a
/// trial in a child process does to a file before this process reads it
/// (see `child`). A table that is missing is skipped (a reader of such a
/// file fails on it later, with an error, not a crash).
pub(crate) fn read_through(txn: &ReadTransaction) -> Result<u64, StateError> {
    use std::hash::Hasher;
    fn rows<K: redb::Key + 'static, V: redb::Value + 'static>(
        txn: &ReadTransaction,
        table: TableDefinition<K, V>,
        mut touch: impl FnMut(K::SelfType<'_>, V::SelfType<'_>),
    ) -> Result<(), StateError> {
        let table = match txn.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        table.len()?;
        for row in table.iter()? {
            let (k, v) = row?;
            touch(k.value(), v.value());
        }
        Ok(())
    }
    // Every key and value, in order: what the database holds, whatever
    // its pages look like (see `file::check_copy`).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for table in [RESOURCES, LOCKS, JOBS] {
        rows(txn, table, |(a, b, c), v| {
            for part in [a.as_bytes(), b.as_bytes(), c.as_bytes(), v] {
                h.write(part);
            }
        })?;
    }
    rows(txn, RESOURCE_JOBS, |(a, b, c), ()| {
        for part in [a, b, c] {
            h.write(part.as_bytes());
        }
    })?;
    for table in [RUNS, SNAPSHOTS, BLOBS] {
        rows(txn, table, |k, v| {
            h.write(k.as_bytes());
            h.write(v);
        })?;
    }
    for table in [LOGS, JOURNAL, DECISIONS] {
        rows(txn, table, |(run, seq), v| {
            h.write(run.as_bytes());
            h.write_u64(seq);
            h.write(v);
        })?;
    }
    rows(txn, META, |k, v| {
        h.write(k.as_bytes());
        h.write_u64(v);
    })?;
    Ok(h.finish())
}

/// `resource_jobs`, if it is complete: None in a database made before it
/// was kept that no writer has opened since (see the crate documentation).
fn resource_index(txn: &ReadTransaction) -> Result<Option<redb::ReadOnlyTable<Key3<'static>, ()>>, StateError> {
    if txn.open_table(META)?.get(RESOURCE_JOBS_INDEXED)?.is_none() {
        return Ok(None);
    }
    Ok(Some(txn.open_table(RESOURCE_JOBS)?))
}

fn read_run(txn: &ReadTransaction, id: &str) -> Result<Option<RunRecord>, StateError> {
    let table = txn.open_table(RUNS)?;
    let found = table.get(id)?;
    match found {
        Some(v) => Ok(Some(decode(v.value(), || format!("run {id}"))?)),
        None => Ok(None),
    }
}

/// The body of [`RedbStore::commit`]: each table is opened once.
fn apply(txn: &WriteTransaction, writes: Vec<Write>) -> Result<(), StateError> {
    let mut resources = txn.open_table(RESOURCES)?;
    let mut runs = txn.open_table(RUNS)?;
    let mut jobs = txn.open_table(JOBS)?;
    let mut logs = txn.open_table(LOGS)?;
    let mut journal = txn.open_table(JOURNAL)?;
    let mut decisions = txn.open_table(DECISIONS)?;
    let mut meta = txn.open_table(META)?;
    let mut snapshots = txn.open_table(SNAPSHOTS)?;
    let mut blobs = txn.open_table(BLOBS)?;
    let log_seq0 = meta.get(LOG_SEQ)?.map(|v| v.value()).unwrap_or(0);
    let journal_seq0 = meta.get(JOURNAL_SEQ)?.map(|v| v.value()).unwrap_or(0);
    let (mut log_seq, mut journal_seq) = (log_seq0, journal_seq0);
    for write in writes {
        match write {
            Write::PutResource(key, mut record) => {
                let previous = match resources.get(key3(&key))? {
                    Some(v) => decode::<Serial>(v.value(), || format!("resource {key}"))?.serial,
                    None => 0,
                };
                record.serial = previous + 1;
                resources.insert(key3(&key), encode(&record)?.as_slice())?;
            }
            Write::DeleteResource(key) => {
                resources.remove(key3(&key))?;
            }
            Write::PutRun(run) => {
                runs.insert(run.id.as_str(), encode(&run)?.as_slice())?;
            }
            Write::PutJob(job) => {
                let key = (job.run_id.as_str(), job.environment.as_str(), job.node.as_str());
                jobs.insert(key, encode(&job)?.as_slice())?;
                txn.open_table(RESOURCE_JOBS)?.insert((job.environment.as_str(), job.node.as_str(), job.run_id.as_str()), ())?;
            }
            Write::Log(line, run_id) => {
                log_seq += 1;
                logs.insert((run_id.as_str(), log_seq), encode(&line)?.as_slice())?;
            }
            Write::Journal(entry) => {
                journal_seq += 1;
                journal.insert((entry.run_id.as_str(), journal_seq), encode(&entry)?.as_slice())?;
            }
            Write::Decision(d) => {
                // Rare: a counter of its own, read and bumped in place.
                let seq = meta.get(DECISION_SEQ)?.map(|v| v.value()).unwrap_or(0) + 1;
                meta.insert(DECISION_SEQ, seq)?;
                decisions.insert((d.run_id.as_str(), seq), encode(&d)?.as_slice())?;
            }
            // Content-addressed: what is there under the digest is the same.
            Write::PutSnapshot(digest, snapshot) => {
                if snapshots.get(digest.as_str())?.is_none() {
                    snapshots.insert(digest.as_str(), encode(&snapshot)?.as_slice())?;
                }
            }
            Write::PutExecution(record) => {
                txn.open_table(EXECUTIONS)?.insert(record.id.as_str(), encode(&record)?.as_slice())?;
            }
            Write::PutService(name, record) => {
                txn.open_table(SERVICES)?.insert(name.as_str(), encode(&record)?.as_slice())?;
            }
            Write::PutBlob(digest, blob) => {
                if blobs.get(digest.as_str())?.is_none() {
                    blobs.insert(digest.as_str(), &*blob.0)?;
                }
            }
            Write::DeleteRun(id) => {
                let id = id.as_str();
                runs.remove(id)?;
                let mut index = txn.open_table(RESOURCE_JOBS)?;
                let mut keys: Vec<(String, String)> = Vec::new();
                for item in jobs.range((id, "", "")..)? {
                    let (k, _) = item?;
                    let (run, environment, node) = k.value();
                    if run != id {
                        break;
                    }
                    keys.push((environment.to_string(), node.to_string()));
                }
                for (environment, node) in &keys {
                    jobs.remove((id, environment.as_str(), node.as_str()))?;
                    index.remove((environment.as_str(), node.as_str(), id))?;
                }
                logs.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
                journal.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
                decisions.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
            }
        }
    }
    if log_seq != log_seq0 {
        meta.insert(LOG_SEQ, log_seq)?;
    }
    if journal_seq != journal_seq0 {
        meta.insert(JOURNAL_SEQ, journal_seq)?;
    }
    Ok(())
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // SAFETY: `db` is taken once, here, and never used again.
        let db = unsafe { std::mem::ManuallyDrop::take(&mut self.db) };
        if let Err(panic) = quietly(move || drop(db)) {
            warn_damaged_on_close(&self.path, &panic);
        }
        remove_owner(&self.dir);
    }
}

/// Says on stderr that closing a damaged database failed inside redb (no
/// logging framework in this crate; this happens only with a damaged file).
fn warn_damaged_on_close(path: &Path, panic: &str) {
    eprintln!("warning: closing the state database {} failed: it is damaged ({panic})", path.display());
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

/// Every row of every table, as stored (see [`StateDump`]).
fn export_tables(txn: &ReadTransaction) -> Result<StateDump, StateError> {
    fn all<K: redb::Key + 'static, V: redb::Value + 'static>(
        txn: &ReadTransaction,
        table: TableDefinition<K, V>,
        mut row: impl FnMut(K::SelfType<'_>, V::SelfType<'_>) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let table = match txn.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for item in table.iter()? {
            let (k, v) = item?;
            row(k.value(), v.value())?;
        }
        Ok(())
    }
    let mut dump = StateDump::default();
    dump.resources = by_key(&txn.open_table(RESOURCES)?, "resource")?;
    dump.locks = by_key(&txn.open_table(LOCKS)?, "lock of")?;
    all(txn, RUNS, |k, v| Ok(dump.runs.push(decode(v, || format!("run {k}"))?)))?;
    all(txn, JOBS, |k, v| Ok(dump.jobs.push(decode(v, || format!("job {k:?}"))?)))?;
    all(txn, LOGS, |(run, seq), v| Ok(dump.logs.push((run.to_string(), decode(v, || format!("log line {run}/{seq}"))?))))?;
    all(txn, JOURNAL, |k, v| Ok(dump.journal.push(decode(v, || format!("journal entry {k:?}"))?)))?;
    all(txn, DECISIONS, |k, v| Ok(dump.decisions.push(decode(v, || format!("decision {k:?}"))?)))?;
    all(txn, SNAPSHOTS, |k, v| Ok(dump.snapshots.push((k.to_string(), decode(v, || format!("snapshot {k}"))?))))?;
    all(txn, BLOBS, |k, v| Ok(dump.blobs.push((k.to_string(), v.to_vec()))))?;
    all(txn, EXECUTIONS, |k, v| Ok(dump.executions.push(decode(v, || format!("execution {k}"))?)))?;
    all(txn, SERVICES, |k, v| Ok(dump.services.push((k.to_string(), decode(v, || format!("service {k}"))?))))?;
    let meta = txn.open_table(META)?;
    for name in [RUN_COUNTER, EXECUTION_COUNTER] {
        if let Some(n) = meta.get(name)? {
            dump.counters.push((name.to_string(), n.value()));
        }
    }
    Ok(dump)
}

/// Writes every row of `dump` as it is (serials included) into an empty state.
fn import_tables(txn: &WriteTransaction, dump: &StateDump) -> Result<(), StateError> {
    {
        let mut resources = txn.open_table(RESOURCES)?;
        for (key, record) in &dump.resources {
            resources.insert(key3(key), encode(record)?.as_slice())?;
        }
        let mut locks = txn.open_table(LOCKS)?;
        for (key, holder) in &dump.locks {
            locks.insert(key3(key), encode(holder)?.as_slice())?;
        }
        let mut snapshots = txn.open_table(SNAPSHOTS)?;
        for (digest, snapshot) in &dump.snapshots {
            snapshots.insert(digest.as_str(), encode(snapshot)?.as_slice())?;
        }
        let mut blobs = txn.open_table(BLOBS)?;
        for (digest, bytes) in &dump.blobs {
            blobs.insert(digest.as_str(), bytes.as_slice())?;
        }
        let mut meta = txn.open_table(META)?;
        for (name, n) in &dump.counters {
            meta.insert(name.as_str(), *n)?;
        }
    }
    // The rest as a batch of writes would be stored, keeping each run's order.
    let writes = dump.record_writes();
    apply(txn, writes)
}
