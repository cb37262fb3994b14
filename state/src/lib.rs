//! The state store. Callers hold a [`StateStore`], over a [`StateBackend`]:
//! the redb store here ([`RedbStore`]), or PostgreSQL (the
//! `stackpipe-state-postgres` crate).
//!
//! # The redb store
//!
//! One redb database, `<dir>/state.redb` (by default
//! `.stackpipe/state.redb` next to the pipeline file), opened by one process
//! at a time.
//!
//! # Tables
//!
//! Every value is the JSON of a record type of [`records`], stored as bytes
//! (`&[u8]`, so that a damaged value is a [`StateError::Corrupt`] rather than
//! a panic in redb's UTF-8 decoding). Keys are redb tuples of `&str` (and a
//! `u64` sequence), so names never need escaping and one environment's keys
//! never collide with another's.
//!
//! | table       | key                                   | value            |
//! |-------------|---------------------------------------|------------------|
//! | `resources` | `(pipeline, environment, resource)`   | [`ResourceRecord`] |
//! | `locks`     | `(pipeline, environment, resource)`   | [`LockHolder`]   |
//! | `runs`      | `run_id`                              | [`RunRecord`]    |
//! | `jobs`      | `(run_id, environment, node)`         | [`JobRecord`]    |
//! | `resource_jobs` | `(environment, resource, run_id)` | `()`           |
//! | `logs`      | `(run_id, seq)`                       | [`LogLine`]      |
//! | `journal`   | `(run_id, seq)`                       | [`JournalEntry`] |
//! | `decisions` | `(run_id, seq)`                       | [`GateDecision`] |
//! | `executions` | `execution_id`                       | [`ExecutionRecord`] |
//! | `services`  | `service`                             | [`ServiceRecord`] |
//! | `meta`      | `name`                                | `u64` counter    |
//!
//! A pipeline execution's build log lines are in `logs` under its id.
//!
//! `meta` holds `run_counter` and `execution_counter` (the last number handed out by
//! [`RedbStore::new_run_id`]), and `log_seq` / `journal_seq` / `decision_seq`: store-wide,
//! strictly increasing sequences, so that the `(run_id, seq)` keys of a run
//! are in append order and one run's lines are a single range scan.
//!
//! `resource_jobs` indexes `jobs` by what they touched: a row per job,
//! written in the same transaction as the job, so that the history of one
//! resource ([`RedbStore::resource_jobs`]) is a range scan of its rows and
//! a lookup per job, not a read of every job of every run. A database made
//! before the index was kept gets it built from `jobs` by the first writer
//! that opens it (`meta`'s `resource_jobs_indexed` then says it is
//! complete); until then, a reader finds the jobs by scanning `jobs`' keys.
//!
//! All tables are created when the store is opened, so that read
//! transactions can open them unconditionally.
//!
//! # Ownership
//!
//! redb takes an exclusive file lock on `state.redb`; a second open (from
//! another process, or from this one) fails with [`StateError::Busy`]. The
//! process that holds the database writes `<dir>/owner.json`
//! ([`OwnerInfo`]: its pid, its run, since when) so that the refused one can
//! say who holds it, and where its control socket is (see `control`); the
//! file is removed when the store is dropped.
//!
//! # Writes
//!
//! [`RedbStore::commit`] applies a batch of [`Write`]s in one write
//! transaction with [`redb::Durability::Immediate`]: one fsync per batch.
//! [`RedbStore::commit_as`] without durability, [`RedbStore::lock`] and
//! [`RedbStore::unlock_run`] commit without an fsync: what they wrote
//! reaches the disk with the next durable commit, which the run journal
//! (runtime's `run::journal`) makes at least every `DURABLE_EVERY`, and a
//! run makes at once after taking or releasing its locks (its record).

mod backend;
mod child;
mod error;
mod file;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
mod guard;
mod owner;
mod records;
mod redb_store;
mod repair;
mod state_store;

pub use error::StateError;
pub use file::{db_path, BACKUP_FILE, SIZE_LIMIT_ENV};
pub use owner::{pid_alive, read_owner, OwnerInfo};
pub use records::*;
pub use repair::{repair, Recovered, RepairReport};
pub use backend::{keyed_hash_with, sort_jobs, Blob, Counts, StateBackend, StateDump, Write};
pub use redb_store::RedbStore;
pub use state_store::StateStore;
