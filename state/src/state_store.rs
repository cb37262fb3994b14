//! [`StateStore`]: the state a command, a server or a runner uses, on
//! whichever backend it is kept (see [`StateBackend`]).

use std::path::Path;
use std::time::Duration;

use crate::backend::StateBackend;
use crate::error::StateError;
use crate::records::{LockHolder, ResourceKey, ResourceRecord};
use crate::redb_store::RedbStore;

/// The state, on redb or elsewhere. Every read and write of
/// [`StateBackend`] is called on it directly (`store.runs()`); the
/// constructors here open the redb store of a directory, and
/// [`StateStore::with_backend`] wraps any other.
#[derive(Debug)]
pub struct StateStore {
    backend: std::sync::Arc<dyn StateBackend>,
}

impl std::ops::Deref for StateStore {
    type Target = dyn StateBackend;

    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

impl StateStore {
    /// The state kept by `backend`.
    pub fn with_backend(backend: impl StateBackend + 'static) -> StateStore {
        StateStore { backend: std::sync::Arc::new(backend) }
    }

    /// The state kept by `backend`, which its owner also uses directly
    /// (a server keeps its users in the same PostgreSQL store).
    pub fn shared(backend: std::sync::Arc<dyn StateBackend>) -> StateStore {
        StateStore { backend }
    }

    fn redb(store: RedbStore) -> StateStore {
        StateStore::with_backend(store)
    }

    /// [`RedbStore::open`]: `<dir>/state.redb`, for writing.
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        RedbStore::open(dir).map(StateStore::redb)
    }

    /// [`RedbStore::open_read_only`].
    pub fn open_read_only(dir: &Path) -> Result<StateStore, StateError> {
        RedbStore::open_read_only(dir).map(StateStore::redb)
    }

    /// [`RedbStore::empty`]: nothing, in memory, read only.
    pub fn empty(dir: &Path) -> Result<StateStore, StateError> {
        RedbStore::empty(dir).map(StateStore::redb)
    }

    /// [`RedbStore::replica`].
    pub fn replica(
        dir: &Path,
        resources: &[(ResourceKey, ResourceRecord)],
        locks: &[(ResourceKey, LockHolder)],
    ) -> Result<StateStore, StateError> {
        RedbStore::replica(dir, resources, locks).map(StateStore::redb)
    }

    /// [`RedbStore::open_read_only_or_empty`].
    pub fn open_read_only_or_empty(dir: &Path) -> Result<StateStore, StateError> {
        RedbStore::open_read_only_or_empty(dir).map(StateStore::redb)
    }

    /// [`RedbStore::open_patiently`].
    pub fn open_patiently(dir: &Path, patience: Duration) -> Result<StateStore, StateError> {
        RedbStore::open_patiently(dir, patience).map(StateStore::redb)
    }

    /// [`RedbStore::open_read_only_patiently`].
    pub fn open_read_only_patiently(dir: &Path, patience: Duration, or_empty: bool) -> Result<StateStore, StateError> {
        RedbStore::open_read_only_patiently(dir, patience, or_empty).map(StateStore::redb)
    }
}
