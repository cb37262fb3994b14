//! stackpipe's state on PostgreSQL: [`PostgresStore`], and the schema, as embedded,
//! versioned migrations ([`MIGRATIONS`]) that every server, runner and CLI
//! applies on connecting ([`migrate`]). Each migration runs in a
//! transaction of its own under an advisory lock, so that processes
//! starting together apply it once, and a failed one leaves the database
//! at the version before it. A database newer than this stackpipe (a
//! version it does not know) is refused rather than written.

mod queue;
mod store;
mod tls;

pub use queue::{Advanced, Claimed, Completed, JobKey, JobOutcome, JobQueue, PostedGate, PostedRequest, QueueCounts, QueueError, QueuedEnvironment};
pub use store::{shown_location, shown_url, PostgresStore, RENEW_EVERY, RUN_LEASE};

use tokio_postgres::Client;

/// One migration: its version (applied in increasing order), its name and its SQL.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] =
    &[Migration { version: 1, name: "state", sql: include_str!("migrations/0001_state.sql") }];

/// The key of the advisory lock migrations take (`stackpip` in ASCII).
const MIGRATION_LOCK: i64 = 0x7374_6163_6b70_6970;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Address(String),
    #[error("migration {version} ({name}): {source}")]
    Migration { version: i32, name: &'static str, source: tokio_postgres::Error },
    #[error(
        "the database is at schema version {found}, newer than this stackpipe knows ({known}): upgrade stackpipe \
         before using it"
    )]
    TooNew { found: i32, known: i32 },
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The versions this call applied (none when the database was current).
    pub applied: Vec<i32>,
    /// The schema's version now.
    pub version: i32,
}

/// The newest version this stackpipe knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// Connects to `url` (`postgres://USER@HOST:PORT/DB`) and drives the
/// connection on the current tokio runtime.
pub async fn connect(url: &str) -> Result<Client, PgError> {
    let tls::Address { config, tls } = tls::address(url).map_err(PgError::Address)?;
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        // Ends when the client is dropped, or with the error its next call gets.
        let _ = connection.await;
    });
    Ok(client)
}

/// Brings the database's schema to [`latest_version`]: each missing
/// migration in its own transaction, under an advisory lock.
pub async fn migrate(client: &mut Client) -> Result<Migrated, PgError> {
    // Under the lock too: two `CREATE TABLE IF NOT EXISTS` at once may
    // both try to create it, and one fails.
    let txn = client.transaction().await?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    txn.commit().await?;
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let txn = client.transaction().await?;
        // Held until the transaction ends: a second process waits here,
        // then finds the version applied.
        txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        let done = txn.query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[&m.version]).await?;
        if done.is_some() {
            txn.commit().await?;
            continue;
        }
        txn.batch_execute(m.sql).await.map_err(|source| PgError::Migration { version: m.version, name: m.name, source })?;
        txn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", &[&m.version, &m.name]).await?;
        txn.commit().await?;
        applied.push(m.version);
    }
    let version = schema_version(client).await?;
    if version > latest_version() {
        return Err(PgError::TooNew { found: version, known: latest_version() });
    }
    Ok(Migrated { applied, version })
}

/// The newest migration applied to the database (0: none).
pub async fn schema_version(client: &Client) -> Result<i32, PgError> {
    let row = client.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations", &[]).await?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.name);
            assert!(!m.sql.trim().is_empty());
        }
        assert_eq!(latest_version(), MIGRATIONS.len() as i32);
    }
}
