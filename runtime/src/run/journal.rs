//! The run journal: every write a run makes to the state store goes through
//! here. One writer thread commits whatever has queued up in a single redb
//! transaction (group commit), so a thousand nodes finishing together cost
//! one fsync, not a thousand. Writes that must be on disk before the run
//! goes on (an apply's intent before the plugin is called, its result before
//! dependents start) wait for their commit; the rest do not.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::state::{StateError, StateStore, Write};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 4096;

struct Queued {
    writes: Vec<Write>,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// A handle to the journal's writer. Cheap to clone.
#[derive(Clone)]
pub struct RunJournal {
    tx: mpsc::UnboundedSender<Queued>,
}

impl RunJournal {
    /// Starts the writer thread over `store`. It ends when every handle is dropped.
    pub fn start(store: Arc<StateStore>) -> RunJournal {
        let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
        std::thread::Builder::new()
            .name("stackpipe-journal".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut batch = vec![first];
                    let mut count = batch[0].writes.len();
                    while count < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(q) => {
                                count += q.writes.len();
                                batch.push(q);
                            }
                            Err(_) => break,
                        }
                    }
                    let mut writes = Vec::with_capacity(batch.len());
                    let mut waiters = Vec::new();
                    for q in batch {
                        writes.extend(q.writes);
                        if let Some(d) = q.done {
                            waiters.push(d);
                        }
                    }
                    let result = store.commit(writes).map_err(|e| e.to_string());
                    if let Err(e) = &result {
                        tracing::error!("state store write failed: {e}");
                    }
                    for w in waiters {
                        let _ = w.send(result.clone());
                    }
                }
            })
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
