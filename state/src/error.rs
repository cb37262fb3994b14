//! What can go wrong with the state: its file (damaged, missing, busy, a
//! failed write), its records, its locks.

use std::path::PathBuf;

use super::owner::OwnerInfo;
use super::records::{LockHolder, ResourceKey};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process (or another store in this process) has the database
    /// open. `holder` is read from its `owner.json`, if there is one.
    #[error("state database {} is in use{}", .path.display(), busy_holder(.holder))]
    Busy { path: PathBuf, holder: Option<OwnerInfo> },
    #[error("state store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The database file cannot be trusted: it is not a database, it does
    /// not pass redb's checks, or reading it failed inside redb. Nothing
    /// writes it; `stackpipe state repair` is how it is replaced.
    #[error("the state database {} is damaged: {cause}", .path.display())]
    Damaged { path: PathBuf, cause: String },
    /// Reading or writing the database failed (a full disk, a failing one).
    #[error("cannot use the state database {}: {cause}", .path.display())]
    File { path: PathBuf, cause: String },
    /// No database in this state directory (a reader creates none).
    #[error("no state in {}", .dir.display())]
    Missing { dir: PathBuf },
    /// A write through a store opened for reading.
    #[error("the state database {} is open for reading only", .path.display())]
    ReadOnly { path: PathBuf },
    /// A shared database (PostgreSQL) could not be reached or refused a
    /// statement. `location` never holds a password.
    #[error("cannot use the state database {location}: {cause}")]
    Database { location: String, cause: String },
    /// A copy into a state that already holds something.
    #[error("the state {location} is not empty: a state is copied only into an empty one")]
    NotEmpty { location: String },
    /// An error of redb, as text.
    #[error("state database: {0}")]
    Db(String),
    /// A record that is not the JSON it should be.
    #[error("corrupt state record: {0}")]
    Corrupt(String),
    /// A resource is locked by another run.
    #[error("{} is locked by run {} (pid {}{})", .key, .holder.run_id, .holder.pid, dead_note(*.holder_alive))]
    Locked { key: ResourceKey, holder: LockHolder, holder_alive: bool },
}

impl StateError {
    /// The same failure told again, for a use of the database after it
    /// (`Damaged` and `File` only; anything else as its text).
    pub(crate) fn again(&self) -> StateError {
        match self {
            StateError::Damaged { path, cause } => StateError::Damaged { path: path.clone(), cause: cause.clone() },
            StateError::File { path, cause } => StateError::File { path: path.clone(), cause: cause.clone() },
            other => StateError::Db(other.to_string()),
        }
    }
}

fn busy_holder(holder: &Option<OwnerInfo>) -> String {
    match holder {
        None => " by another process".into(),
        Some(OwnerInfo { pid, run_id: Some(run), .. }) => format!(" by process {pid} (run {run})"),
        Some(OwnerInfo { pid, run_id: None, .. }) => format!(" by process {pid}"),
    }
}

fn dead_note(alive: bool) -> &'static str {
    if alive {
        ""
    } else {
        ", no longer running"
    }
}

macro_rules! db_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StateError {
            fn from(e: $t) -> Self {
                StateError::Db(e.to_string())
            }
        }
    )*};
}

db_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
