//! The run journal: every write a run makes to the state store goes through
//! here. One writer thread commits whatever has queued up in a single redb
//! transaction (group commit), so a thousand nodes finishing together cost
//! one fsync, not a thousand. Writes that must be on disk before the run
//! goes on (an apply's intent before the plugin is called) wait for their
//! commit; the rest do not.
//!
//! A batch nobody waits for is committed without an fsync, and reaches the
//! disk with the next durable commit: one comes at least every
//! [`DURABLE_EVERY`], so a crash loses at most that much of what was not
//! waited for (which `resume` is built to recover: see `stack_job`).
//!
//! A write that fails (a full disk, a failing one) fails the journal for
//! good: what is queued after it is refused, whoever waits is told, and
//! [`RunJournal::failed`] resolves, so that the run starts nothing more and
//! ends failed. What the failed batches held is recovered by `resume`, as
//! after a crash.

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{oneshot, watch};

use crate::state::{StateError, StateStore, Write};

/// A batch nobody waits for stops gathering at this many writes.
const MAX_BATCH: usize = 4096;

/// How long a batch nobody waits for gathers more writes before it is committed.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);

/// The longest a write nobody waits for stays off the disk.
pub const DURABLE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

struct Queued {
    writes: Vec<Write>,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// A handle to the journal's writer. Cheap to clone.
#[derive(Clone)]
pub struct RunJournal {
    handle: Arc<Handle>,
}

/// Shared by the clones of a [`RunJournal`]; the last one dropped tells the
/// writer to finish, and waits until it has: the writer holds the state
/// store open, and whoever opens it next (the next cycle of `watch`) must
/// find it closed.
struct Handle {
    queue: Arc<Queue>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// The first failed write, as text naming the file and the cause.
    failure: watch::Receiver<Option<String>>,
    /// Where the first failure is said (by the writer, or from elsewhere:
    /// see [`RunJournal::failed_elsewhere`]).
    failed: Arc<watch::Sender<Option<String>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        {
            let mut state = self.queue.lock();
            state.closed = true;
            self.queue.wake.notify_one();
        }
        if let Some(writer) = self.writer.take() {
            // Only what is queued is left to commit: moments, not a wait on anything else.
            let _ = writer.join();
        }
    }
}

/// What is waiting for the writer. A write is queued under a lock, and
/// wakes the writer only when the writer would act on it: when it is idle,
/// or when it is gathering a batch and the write is one somebody waits for.
/// (Waking a thread per write cost more than the writes.)
struct Queue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

#[derive(Default)]
struct QueueState {
    queued: Vec<Queued>,
    /// Writes in `queued`.
    count: usize,
    /// Whether something in `queued` is waited for.
    waited_for: bool,
    writer: Writer,
    closed: bool,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum Writer {
    /// Committing: it looks at the queue when it is done.
    #[default]
    Busy,
    /// Waiting for the first write of the next batch.
    Idle,
    /// Has a batch nobody waits for, and gathers more for a moment.
    Gathering,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding the lock leaves plain data behind: go on with it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, q: Queued) {
        let mut state = self.lock();
        let urgent = q.done.is_some();
        state.count += q.writes.len();
        state.waited_for |= urgent;
        state.queued.push(q);
        let wake = match state.writer {
            Writer::Idle => true,
            Writer::Gathering => urgent || state.count >= MAX_BATCH,
            Writer::Busy => false,
        };
        if wake {
            self.wake.notify_one();
        }
    }
}

impl RunJournal {
    /// Starts the writer thread over `store`. It ends when every handle is
    /// dropped, after putting on disk whatever is not there yet.
    pub fn start(store: Arc<StateStore>) -> RunJournal {
        let queue = Arc::new(Queue { state: Mutex::new(QueueState::default()), wake: Condvar::new() });
        let writer_queue = queue.clone();
        let (failed, failure) = watch::channel(None);
        let failed = Arc::new(failed);
        let writer_failed = failed.clone();
        let writer = std::thread::Builder::new()
            .name("stackpipe-journal".into())
            .spawn(move || write_batches(&store, &writer_queue, &writer_failed))
            .inspect_err(|e| tracing::error!("cannot start the journal thread: {e}"))
            .ok();
        RunJournal { handle: Arc::new(Handle { queue, writer, failure, failed }) }
    }

    /// Another journal of the same run (a runner's, on another machine)
    /// could not write the state: this run's records are not kept either,
    /// and it fails as if this journal's own write had (nothing more is
    /// written through it).
    pub fn failed_elsewhere(&self, failure: String) {
        self.handle.failed.send_if_modified(|f| {
            let news = f.is_none();
            if news {
                *f = Some(failure.clone());
            }
            news
        });
    }

    /// The first write that failed, naming the file and the cause.
    pub fn failure(&self) -> Option<String> {
        self.handle.failure.borrow().clone()
    }

    /// Resolves when a write fails (at once if one has), with what
    /// [`failure`](Self::failure) says; never, if none does.
    pub fn failed(&self) -> impl Future<Output = String> + Send + 'static {
        let mut failure = self.handle.failure.clone();
        async move {
            let found = failure.wait_for(Option::is_some).await.map(|f| f.clone());
            match found {
                Ok(f) => f.unwrap_or_default(),
                // The writer is gone without a failure: nothing more can fail.
                Err(_) => std::future::pending().await,
            }
        }
    }

    /// Queues a write; it is committed with the next batch.
    pub fn record(&self, write: Write) {
        self.handle.queue.push(Queued { writes: vec![write], done: None });
    }

    /// Queues writes that land together, in one transaction; does not wait.
    pub fn record_all(&self, writes: Vec<Write>) {
        self.handle.queue.push(Queued { writes, done: None });
    }

    /// Queues a write and waits until it is on disk.
    pub async fn record_durably(&self, write: Write) -> Result<(), JournalError> {
        self.record_all_durably(vec![write]).await
    }

    /// Queues writes that must land together (in one transaction) and waits
    /// until they are on disk.
    pub async fn record_all_durably(&self, writes: Vec<Write>) -> Result<(), JournalError> {
        self.submit_durably(writes).await
    }

    /// Queues writes that must land together, at once, and returns the wait
    /// until they are on disk: the writer works on them while the caller
    /// does something else.
    pub fn submit_durably(
        &self,
        writes: Vec<Write>,
    ) -> impl Future<Output = Result<(), JournalError>> + Send + 'static {
        let (done, wait) = oneshot::channel();
        self.handle.queue.push(Queued { writes, done: Some(done) });
        async move {
            match wait.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(JournalError::Write(e)),
                Err(_) => Err(JournalError::Closed),
            }
        }
    }

    /// Waits until everything queued so far is on disk.
    pub async fn flush(&self) -> Result<(), JournalError> {
        self.record_all_durably(Vec::new()).await
    }
}

/// The writer thread: commits what has queued up, one transaction per
/// batch, until every handle is dropped.
fn write_batches(store: &StateStore, queue: &Queue, failed: &watch::Sender<Option<String>>) {
    let mut writer = BatchWriter { store, failed, last_durable: Instant::now(), pending: false };
    while let Some((batch, count)) = writer.next_batch(queue) {
        writer.commit(batch, count);
    }
    if writer.pending && writer.failure().is_none() {
        if let Err(e) = store.persist() {
            writer.fail(&e);
            tracing::error!("{}", writer.failure().unwrap_or_default());
        }
    }
}

/// The writer thread's own state.
struct BatchWriter<'a> {
    store: &'a StateStore,
    /// The journal's first failure, for good.
    failed: &'a watch::Sender<Option<String>>,
    last_durable: Instant,
    /// Whether a commit since the last durable one is not on disk yet.
    pending: bool,
}

impl BatchWriter<'_> {
    /// Once a write has failed, nothing more is tried: redb refuses every
    /// write after an I/O error, and a run must not go on as if its records
    /// were kept.
    fn fail(&self, e: &crate::state::StateError) {
        let text = format!("cannot write the state database {}: {}", self.store.location(), cause(e));
        self.failed.send_if_modified(|f| {
            if f.is_some() {
                return false;
            }
            tracing::debug!("{text}");
            *f = Some(text.clone());
            true
        });
    }

    fn failure(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    /// Puts the commits not on disk there.
    fn persist(&mut self) {
        if self.failure().is_none() {
            if let Err(e) = self.store.persist() {
                self.fail(&e);
            }
        }
        (self.pending, self.last_durable) = (false, Instant::now());
    }

    /// Waits for the next batch (and its number of writes); None once the
    /// queue is closed and empty. Commits not on disk are put there when
    /// they are due, meanwhile.
    fn next_batch(&mut self, queue: &Queue) -> Option<(Vec<Queued>, usize)> {
        let mut state = queue.lock();
        // Wait for a first write; with commits not on disk, no longer than
        // until they are due there.
        while state.queued.is_empty() && !state.closed {
            state.writer = Writer::Idle;
            if !self.pending {
                state = queue.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let due = DURABLE_EVERY.saturating_sub(self.last_durable.elapsed());
            let (next, timeout) = queue.wake.wait_timeout(state, due).unwrap_or_else(|p| p.into_inner());
            state = next;
            if timeout.timed_out() && state.queued.is_empty() {
                state.writer = Writer::Busy;
                drop(state);
                self.persist();
                state = queue.lock();
            }
        }
        if state.queued.is_empty() {
            // Closed, and nothing left.
            return None;
        }
        // A batch somebody waits for is committed at once, with whatever
        // else has queued; one nobody waits for gathers writes for up to
        // `GATHER` first (a commit costs far more than a write).
        let gather_until = Instant::now() + GATHER;
        while !state.waited_for && !state.closed && state.count < MAX_BATCH {
            let left = gather_until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state.writer = Writer::Gathering;
            state = queue.wake.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        state.writer = Writer::Busy;
        let batch = std::mem::take(&mut state.queued);
        let count = std::mem::take(&mut state.count);
        state.waited_for = false;
        Some((batch, count))
    }

    /// Commits a batch in one transaction: durably if anyone waits for it
    /// or the last durable commit is `DURABLE_EVERY` old; tells the waiters.
    fn commit(&mut self, batch: Vec<Queued>, count: usize) {
        let mut writes = Vec::with_capacity(count);
        let mut waiters = Vec::new();
        for q in batch {
            writes.extend(q.writes);
            if let Some(d) = q.done {
                waiters.push(d);
            }
        }
        let durable = !waiters.is_empty() || self.last_durable.elapsed() >= DURABLE_EVERY;
        let result = match self.failure() {
            Some(f) => Err(f),
            None => self.store.commit_as(writes, durable).map_err(|e| {
                self.fail(&e);
                self.failure().unwrap_or_else(|| e.to_string())
            }),
        };
        if durable {
            (self.pending, self.last_durable) = (false, Instant::now());
        } else {
            self.pending = true;
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

/// What went wrong in a write, without the store's own prefix.
fn cause(e: &crate::state::StateError) -> String {
    use crate::state::StateError;
    match e {
        StateError::Io(e) => e.to_string(),
        StateError::Db(text) => text.trim_start_matches("I/O error: ").to_string(),
        StateError::File { cause, .. } => cause.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The text names the file and the cause.
    #[error("{0}")]
    Write(String),
    #[error("the state store's writer has stopped")]
    Closed,
}

impl From<StateError> for JournalError {
    fn from(e: StateError) -> Self {
        JournalError::Write(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{RunKind, RunRecord, RunStatus};

    fn run(id: &str) -> RunRecord {
        RunRecord {
            sensitive_vars: Vec::new(),
            id: id.into(),
            pipeline: "web".into(),
            file: "/p/web.pipeline".into(),
            kind: RunKind::Deploy,
            status: RunStatus::Running,
            environments: vec!["dev".into()],
            vars: Vec::new(),
            sets: Vec::new(),
            parallelism: 10,
            message: None,
            pid: 1,
            started_ms: 1,
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

    /// What a fresh process would find on disk now: the store's file,
    /// copied and opened on its own.
    fn on_disk(dir: &std::path::Path) -> (tempfile::TempDir, StateStore) {
        let copy = tempfile::tempdir().expect("tempdir");
        std::fs::copy(dir.join("state.redb"), copy.path().join("state.redb")).expect("copy");
        let store = StateStore::open_read_only(copy.path()).expect("open the copy");
        (copy, store)
    }

    #[test]
    fn the_journal_puts_what_nobody_waits_for_on_disk_soon() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let journal = RunJournal::start(Arc::new(store));
        journal.record(Write::PutRun(run("r000003")));
        std::thread::sleep(DURABLE_EVERY * 3);
        let (_c, copy) = on_disk(dir.path());
        assert!(copy.run("r000003").unwrap().is_some(), "a write nobody waited for is on disk within DURABLE_EVERY");
        drop(journal);
    }

    #[tokio::test]
    async fn a_failed_write_fails_the_journal_for_good_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        drop(StateStore::open(dir.path()).unwrap());
        std::env::set_var(crate::state::SIZE_LIMIT_ENV, "1100000");
        let store = StateStore::open(dir.path());
        std::env::remove_var(crate::state::SIZE_LIMIT_ENV);
        let journal = RunJournal::start(Arc::new(store.unwrap()));
        let failed = journal.failed();
        let big = "x".repeat(64 * 1024);
        let mut refused = None;
        for i in 0..100 {
            let line = crate::state::LogLine { ms: 1, environment: "dev".into(), node: "n".into(), op: "apply".into(), text: big.clone(), level: crate::state::LogLevel::Info, plugin: None };
            if let Err(e) = journal.record_durably(Write::Log(line, format!("r{i}"))).await {
                refused = Some(e.to_string());
                break;
            }
        }
        let refused = refused.expect("a write past the limit is refused");
        assert!(refused.contains("state.redb") && refused.contains("No space left on device"), "{refused}");
        assert_eq!(failed.await, refused);
        assert_eq!(journal.failure().as_deref(), Some(refused.as_str()));
        // Everything after it is refused too, at once.
        assert!(journal.record_durably(Write::PutRun(run("r1"))).await.is_err());
        assert!(journal.flush().await.is_err());
    }
}
