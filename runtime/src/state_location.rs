//! [`StateLocation`]: where a command, server or runner keeps its state,
//! as `--state` (or `STACKPIPE_STATE`) names it: a directory, for the
//! embedded redb store, or a `postgres://` address, for a database shared
//! by servers and runners on many machines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::state::{StateError, StateStore};

/// Where the state is. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// A state directory: `state.redb` and the files beside it.
    Dir(PathBuf),
    /// A PostgreSQL database, by its address (which may hold a password:
    /// shown only through [`StateLocation::shown`]).
    Postgres(String),
}

impl StateLocation {
    /// Reads `--state`: a `postgres://` or `postgresql://` address, or a directory.
    pub fn parse(text: &str) -> StateLocation {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            StateLocation::Postgres(text.to_string())
        } else {
            StateLocation::Dir(PathBuf::from(text))
        }
    }

    /// The state directory, for a state kept in one.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            StateLocation::Dir(dir) => Some(dir),
            StateLocation::Postgres(_) => None,
        }
    }

    /// As messages show it: a directory, or an address without its password.
    pub fn shown(&self) -> String {
        match self {
            StateLocation::Dir(dir) => dir.display().to_string(),
            StateLocation::Postgres(url) => stackpipe_state_postgres::shown_url(url),
        }
    }

    /// Opens the state to write. A directory's database held for a moment
    /// by a reader in another terminal is waited for up to `patience`.
    pub fn open(&self, patience: Duration) -> Result<StateStore, StateError> {
        match self {
            StateLocation::Dir(dir) => StateStore::open_patiently(dir, patience),
            StateLocation::Postgres(url) => connect(url),
        }
    }

    /// Opens the state to read, writing nothing: a directory's database
    /// read only; a shared database as it is, beside the processes writing
    /// it, its schema checked but never changed. `or_empty`: a state that
    /// does not exist yet reads as empty.
    pub fn open_read_only(&self, patience: Duration, or_empty: bool) -> Result<StateStore, StateError> {
        match self {
            StateLocation::Dir(dir) => StateStore::open_read_only_patiently(dir, patience, or_empty),
            StateLocation::Postgres(url) => match stackpipe_state_postgres::PostgresStore::connect_read_only(url) {
                Ok(store) => Ok(StateStore::with_backend(store)),
                Err(StateError::Missing { dir }) if or_empty => StateStore::empty(&dir),
                Err(e) => Err(e),
            },
        }
    }
}

fn connect(url: &str) -> Result<StateStore, StateError> {
    stackpipe_state_postgres::PostgresStore::connect(url).map(StateStore::with_backend)
}

impl std::fmt::Display for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}
