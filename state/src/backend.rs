//! [`StateBackend`]: what a place that keeps stackpipe's state does, whatever
//! it is. Two implement it: [`RedbStore`](crate::RedbStore), one redb file
//! held by one process, and `stackpipe-state-postgres`'s store, one
//! PostgreSQL database shared by servers and runners on many machines.
//! Callers hold a [`StateStore`](crate::StateStore), which is either.
//!
//! The contract is the redb store's, so that the same suite of tests holds
//! for both (`tests/state_backends.rs`):
//! - a [`Write`] batch is applied whole or not at all;
//! - `PutResource` sets the record's `serial` to the previous one + 1;
//! - a run's log lines, journal entries and decisions come back in the
//!   order they were written;
//! - a run stored as running that no live process runs reads as
//!   interrupted;
//! - locks are taken all at once or not at all, and bound to a run.

use std::path::Path;

use crate::error::StateError;
use crate::records::*;
use serde::Serialize;

/// The state, wherever it is kept. See the module documentation.
pub trait StateBackend: Send + Sync + std::fmt::Debug {
    /// Where the state is, for messages: a file's path, or a database's
    /// URL without its password.
    fn location(&self) -> String;

    /// The local state directory, when the state is in one (redb): where
    /// `owner.json`, the control socket and the server's files are.
    fn dir(&self) -> Option<&Path>;

    /// Whether this store can write.
    fn is_writable(&self) -> bool;

    /// Run `run_id` is run by this process, which serves its control
    /// socket at `control` (if any), from now on.
    fn set_owner_run(&self, run_id: &str, control: Option<&Path>) -> Result<(), StateError>;

    /// The control socket the process running `run_id` serves, if it is
    /// alive and serves one (on its own machine: a path).
    fn control_socket(&self, run_id: &str) -> Result<Option<std::path::PathBuf>, StateError>;

    /// Run `run_id` is run by this process from now on (a server taking
    /// it up): it reads as running, not interrupted.
    fn run_taken_up(&self, run_id: &str);

    /// Run `run_id` is no longer run by this process: if its record still
    /// says running (it ended on an error), it reads as interrupted.
    fn run_ended(&self, run_id: &str);

    /// A keyed hash (HMAC-SHA256, hex) of a sensitive var's value: what a
    /// run records instead of the value. The key is the store's own, made
    /// on first use by a writer and never shown.
    fn keyed_hash(&self, name: &str, value: &str) -> Result<String, StateError>;

    // ---- resources

    fn resource(&self, key: &ResourceKey) -> Result<Option<ResourceRecord>, StateError>;

    /// The resources of a pipeline (of one environment, if given), sorted by key.
    fn resources(&self, pipeline: &str, environment: Option<&str>) -> Result<Vec<(ResourceKey, ResourceRecord)>, StateError>;

    /// Every resource of every pipeline, sorted by key.
    fn all_resources(&self) -> Result<Vec<(ResourceKey, ResourceRecord)>, StateError>;

    /// How many rows each table holds.
    fn counts(&self) -> Result<Counts, StateError>;

    // ---- runs

    fn run(&self, id: &str) -> Result<Option<RunRecord>, StateError>;

    /// Every run, most recent first (by `started_ms`, then id).
    fn runs(&self) -> Result<Vec<RunRecord>, StateError>;

    fn latest_run(&self) -> Result<Option<RunRecord>, StateError> {
        Ok(self.runs()?.into_iter().next())
    }

    /// The run snapshot of that digest.
    fn snapshot(&self, digest: &str) -> Result<Option<RunSnapshot>, StateError>;

    /// The bytes stored under SHA-256 `digest`, checked against it: bytes
    /// that do not hash to their key are damage, never handed out.
    fn blob(&self, digest: &str) -> Result<Option<Vec<u8>>, StateError>;

    /// A new run id, `r` and a zero-padded counter (`r000042`), unique in
    /// this state and sortable (up to a million runs).
    fn new_run_id(&self) -> Result<String, StateError>;

    /// A new pipeline execution id, `x` and a zero-padded counter (`x000042`).
    fn new_execution_id(&self) -> Result<String, StateError>;

    // ---- service pipelines

    fn execution(&self, id: &str) -> Result<Option<ExecutionRecord>, StateError>;

    /// The pipeline executions of `service` (of every service: None), most
    /// recent first.
    fn executions(&self, service: Option<&str>) -> Result<Vec<ExecutionRecord>, StateError>;

    /// What is kept of the service `name` (nothing yet: the default).
    fn service_record(&self, name: &str) -> Result<ServiceRecord, StateError>;

    // ---- jobs and logs

    /// The jobs of a run, in the order of the run's environments, then by
    /// level, then by node name. Jobs of environments the run record does
    /// not list (or of a run without a record) come last, by environment.
    fn jobs(&self, run_id: &str) -> Result<Vec<JobRecord>, StateError>;

    fn job(&self, run_id: &str, environment: &str, node: &str) -> Result<Option<JobRecord>, StateError>;

    /// Every job that touched `resource` in `environment`, in any run of
    /// any pipeline, in run id order.
    fn resource_jobs(&self, environment: &str, resource: &str) -> Result<Vec<JobRecord>, StateError>;

    /// Every `(environment, resource)` a job touched, sorted, each once.
    fn touched_resources(&self) -> Result<Vec<(String, String)>, StateError>;

    /// The log lines of a run (of one node, if given), in append order.
    fn logs(&self, run_id: &str, node: Option<&str>) -> Result<Vec<LogLine>, StateError>;

    /// The journal of a run, in append order.
    fn journal(&self, run_id: &str) -> Result<Vec<JournalEntry>, StateError>;

    /// The gate decisions of a run, in the order they were taken.
    fn decisions(&self, run_id: &str) -> Result<Vec<GateDecision>, StateError>;

    // ---- locks

    /// Every lock, sorted by key.
    fn locks(&self) -> Result<Vec<(ResourceKey, LockHolder)>, StateError>;

    /// Locks every key for `holder`, or none of them. A key locked by
    /// another run fails with [`StateError::Locked`] (the first such key,
    /// in the order given). Keys already held by the same run are fine; if
    /// that run is now in another process (a resume), the lock passes to
    /// `holder`.
    fn lock(&self, keys: &[ResourceKey], holder: &LockHolder) -> Result<(), StateError>;

    /// Releases every lock of a run; returns how many.
    fn unlock_run(&self, run_id: &str) -> Result<usize, StateError>;

    /// `state unlock`: releases the locks whose run no live process runs
    /// (all of them when `force`), of one key only if given. Returns what
    /// it released.
    fn unlock_stale(&self, key: Option<&ResourceKey>, force: bool) -> Result<Vec<(ResourceKey, LockHolder)>, StateError>;

    // ---- writes

    /// Applies `writes` at once, durably.
    fn commit(&self, writes: Vec<Write>) -> Result<(), StateError> {
        self.commit_as(writes, true)
    }

    /// Puts on disk the commits made without durability.
    fn persist(&self) -> Result<(), StateError>;

    /// Applies `writes` at once. When not `durable`, they are visible at
    /// once but may be lost by a crash before the next durable commit.
    fn commit_as(&self, writes: Vec<Write>, durable: bool) -> Result<(), StateError>;

    // ---- the whole state, for `state migrate`

    /// Everything the state holds, as stored, in the order of
    /// [`StateDump::normalize`].
    fn export(&self) -> Result<StateDump, StateError>;

    /// Writes `dump` into this state, which must hold nothing
    /// ([`StateError::NotEmpty`] otherwise), at once and durably: records
    /// exactly as given, serials included.
    fn import(&self, dump: &StateDump) -> Result<(), StateError>;
}

/// One write of a [`StateBackend::commit`] batch.
#[derive(Debug, Clone)]
pub enum Write {
    /// Puts a resource; the store sets its `serial` to the previous one + 1
    /// (1 if new), whatever the record says.
    PutResource(ResourceKey, ResourceRecord),
    DeleteResource(ResourceKey),
    PutRun(RunRecord),
    /// Keyed by `(run_id, environment, node)`; replaces. Indexed by the
    /// resource it touched, in the same transaction.
    PutJob(JobRecord),
    /// A log line of the run given second.
    Log(LogLine, String),
    Journal(JournalEntry),
    Decision(GateDecision),
    /// A run snapshot under its digest; one already there is left as it is.
    PutSnapshot(String, RunSnapshot),
    /// A plugin component under its SHA-256; one already there is left as it is.
    PutBlob(String, Blob),
    /// Puts a pipeline execution's record; replaces.
    PutExecution(ExecutionRecord),
    /// Puts what is kept of a service (by name); replaces.
    PutService(String, ServiceRecord),
    /// Forgets a run: its record, jobs, log lines, journal and decisions
    /// (its snapshot and components stay: other runs may share them).
    DeleteRun(String),
}

/// Bytes kept by their digest (a plugin component), shared, not copied,
/// on their way to the store.
#[derive(Clone)]
pub struct Blob(pub std::sync::Arc<[u8]>);

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

/// How many rows each table of a state database holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub resources: u64,
    pub runs: u64,
    pub jobs: u64,
    pub log_lines: u64,
    pub journal_entries: u64,
    pub decisions: u64,
    pub locks: u64,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} resources, {} runs, {} jobs, {} log lines, {} journal entries, {} gate decisions, {} locks",
            self.resources, self.runs, self.jobs, self.log_lines, self.journal_entries, self.decisions, self.locks
        )
    }
}


/// Puts the jobs of a run in the order [`StateBackend::jobs`] promises:
/// the run's `environments` in order, then by level, then by node name;
/// jobs of other environments last, by environment.
pub fn sort_jobs(jobs: &mut [JobRecord], environments: &[String]) {
    let order: std::collections::HashMap<&str, usize> =
        environments.iter().enumerate().map(|(i, e)| (e.as_str(), i)).collect();
    let rank = |e: &str| order.get(e).copied().unwrap_or(usize::MAX);
    jobs.sort_by(|a, b| {
        (rank(&a.environment), &a.environment, a.level, &a.node).cmp(&(rank(&b.environment), &b.environment, b.level, &b.node))
    });
}

/// HMAC-SHA256 of `name` and `value` under `key`, hex: the body of
/// [`StateBackend::keyed_hash`], whichever backend keeps the key.
pub fn keyed_hash_with(key: &[u8], name: &str, value: &str) -> Result<String, StateError> {
    use hmac::{Mac, SimpleHmac};
    let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(key).map_err(|e| StateError::Db(e.to_string()))?;
    mac.update(name.as_bytes());
    mac.update(b"\0");
    mac.update(value.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Everything a state holds, as stored: what `stackpipe state migrate`
/// copies from one backend to another ([`StateBackend::export`],
/// [`StateBackend::import`]). Runs keep the status they were stored with
/// (a run stored as running stays so, and reads as interrupted in both),
/// resources their serials, and each run's log lines, journal and
/// decisions their order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StateDump {
    pub resources: Vec<(ResourceKey, ResourceRecord)>,
    pub locks: Vec<(ResourceKey, LockHolder)>,
    /// By id.
    pub runs: Vec<RunRecord>,
    /// By run, environment and node.
    pub jobs: Vec<JobRecord>,
    /// By run (or pipeline execution), each one's in the order written.
    pub logs: Vec<(String, LogLine)>,
    pub journal: Vec<JournalEntry>,
    pub decisions: Vec<GateDecision>,
    /// By digest.
    pub snapshots: Vec<(String, RunSnapshot)>,
    pub blobs: Vec<(String, Vec<u8>)>,
    /// By id.
    pub executions: Vec<ExecutionRecord>,
    /// By name.
    pub services: Vec<(String, ServiceRecord)>,
    /// The id counters (`run_counter`, `execution_counter`), by name.
    pub counters: Vec<(String, u64)>,
    /// The key of [`StateBackend::keyed_hash`], once one was made: copied,
    /// so that the hashes the runs recorded still compare.
    pub hash_key: Option<Vec<u8>>,
}

impl StateDump {
    /// Puts every list in the order the dump promises (the journal and
    /// decisions by run, keeping each run's order).
    pub fn normalize(&mut self) {
        let key = |k: &ResourceKey| (k.pipeline.clone(), k.environment.clone(), k.resource.clone());
        self.resources.sort_by_key(|(k, _)| key(k));
        self.locks.sort_by_key(|(k, _)| key(k));
        self.runs.sort_by(|a, b| a.id.cmp(&b.id));
        self.jobs.sort_by(|a, b| (&a.run_id, &a.environment, &a.node).cmp(&(&b.run_id, &b.environment, &b.node)));
        self.logs.sort_by(|a, b| a.0.cmp(&b.0));
        self.journal.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        self.decisions.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        self.snapshots.sort_by(|a, b| a.0.cmp(&b.0));
        self.blobs.sort_by(|a, b| a.0.cmp(&b.0));
        self.executions.sort_by(|a, b| a.id.cmp(&b.id));
        self.services.sort_by(|a, b| a.0.cmp(&b.0));
        self.counters.sort_by(|a, b| a.0.cmp(&b.0));
    }

    /// The runs (with their jobs, log lines, journal and decisions), the
    /// pipeline executions and the services, as the writes that would
    /// store them: what an import applies after the rows kept as they are
    /// (resources with their serials, locks, content, counters).
    pub fn record_writes(&self) -> Vec<Write> {
        let mut writes: Vec<Write> = Vec::new();
        writes.extend(self.runs.iter().cloned().map(Write::PutRun));
        writes.extend(self.jobs.iter().cloned().map(Write::PutJob));
        writes.extend(self.logs.iter().map(|(run, line)| Write::Log(line.clone(), run.clone())));
        writes.extend(self.journal.iter().cloned().map(Write::Journal));
        writes.extend(self.decisions.iter().cloned().map(Write::Decision));
        writes.extend(self.executions.iter().cloned().map(Write::PutExecution));
        writes.extend(self.services.iter().cloned().map(|(name, record)| Write::PutService(name, record)));
        writes
    }

    /// Whether the state holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
            && self.locks.is_empty()
            && self.runs.is_empty()
            && self.jobs.is_empty()
            && self.logs.is_empty()
            && self.journal.is_empty()
            && self.decisions.is_empty()
            && self.snapshots.is_empty()
            && self.blobs.is_empty()
            && self.executions.is_empty()
            && self.services.is_empty()
            && self.counters.iter().all(|(_, n)| *n == 0)
    }
}
