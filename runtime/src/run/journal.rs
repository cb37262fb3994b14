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

use std::sync::Arc;

use std::time::Instant;

use tokio::sync::oneshot;

use crate::state::{StateError, StateStore, Write};

/// Most writes committed in one transaction.
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
    // A std channel: sending never blocks, and the writer, a thread of its
    // own, can wait for the next write with a timeout.
    tx: std::sync::mpsc::Sender<Queued>,
}

/// The writer thread: commits what has queued up, one transaction per
/// batch, until every handle is dropped.
fn write_batches(store: &StateStore, rx: &std::sync::mpsc::Receiver<Queued>) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut last_durable = Instant::now();
    // Whether a commit since the last durable one is not on disk yet.
    let mut pending = false;
    loop {
        let first = if pending {
            match rx.recv_timeout(DURABLE_EVERY.saturating_sub(last_durable.elapsed())) {
                Ok(q) => q,
                Err(RecvTimeoutError::Timeout) => {
                    persist(store);
                    (pending, last_durable) = (false, Instant::now());
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(q) => q,
                Err(_) => break,
            }
        };
        // A batch somebody waits for is committed at once, with whatever
        // else has queued; one nobody waits for gathers writes for up to
        // `GATHER` first (a commit costs far more than a write).
        let gather_until = Instant::now() + GATHER;
        let mut waited_for = first.done.is_some();
        let mut count = first.writes.len();
        let mut batch = vec![first];
        while count < MAX_BATCH {
            let next = if waited_for {
                rx.try_recv().ok()
            } else {
                rx.recv_timeout(gather_until.saturating_duration_since(Instant::now())).ok()
            };
            let Some(q) = next else { break };
            waited_for |= q.done.is_some();
            count += q.writes.len();
            batch.push(q);
        }
        let mut writes = Vec::with_capacity(count);
        let mut waiters = Vec::new();
        for q in batch {
            writes.extend(q.writes);
            if let Some(d) = q.done {
                waiters.push(d);
            }
        }
        let durable = !waiters.is_empty() || last_durable.elapsed() >= DURABLE_EVERY;
        let result = store.commit_as(writes, durable).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!("state store write failed: {e}");
        }
        if durable {
            (pending, last_durable) = (false, Instant::now());
        } else {
            pending = true;
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
    if pending {
        persist(store);
    }
}

/// Puts every commit made so far on disk.
fn persist(store: &StateStore) {
    if let Err(e) = store.persist() {
        tracing::error!("state store write failed: {e}");
    }
}

impl RunJournal {
    /// Starts the writer thread over `store`. It ends when every handle is
    /// dropped, after putting on disk whatever is not there yet.
    pub fn start(store: Arc<StateStore>) -> RunJournal {
        let (tx, rx) = std::sync::mpsc::channel::<Queued>();
        std::thread::Builder::new()
            .name("stackpipe-journal".into())
            .spawn(move || write_batches(&store, &rx))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the journal thread: {e}"));
        RunJournal { tx }
    }

    /// Queues a write; it is committed with the next batch.
    pub fn record(&self, write: Write) {
        let _ = self.tx.send(Queued { writes: vec![write], done: None });
    }

    /// Queues writes that land together, in one transaction; does not wait.
    pub fn record_all(&self, writes: Vec<Write>) {
        let _ = self.tx.send(Queued { writes, done: None });
    }

    /// Queues a write and waits until it is on disk.
    pub async fn record_durably(&self, write: Write) -> Result<(), JournalError> {
        self.record_all_durably(vec![write]).await
    }

    /// Queues writes that must land together (in one transaction) and waits
    /// until they are on disk.
    pub async fn record_all_durably(&self, writes: Vec<Write>) -> Result<(), JournalError> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Queued { writes, done: Some(done) }).map_err(|_| JournalError::Closed)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(JournalError::Write(e)),
            Err(_) => Err(JournalError::Closed),
        }
    }

    /// Waits until everything queued so far is on disk.
    pub async fn flush(&self) -> Result<(), JournalError> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Queued { writes: Vec::new(), done: Some(done) }).map_err(|_| JournalError::Closed)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(JournalError::Write(e)),
            Err(_) => Err(JournalError::Closed),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the state store could not be written: {0}")]
    Write(String),
    #[error("the state store's writer has stopped")]
    Closed,
}

impl From<StateError> for JournalError {
    fn from(e: StateError) -> Self {
        JournalError::Write(e.to_string())
    }
}
