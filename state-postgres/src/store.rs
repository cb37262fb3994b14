//! [`PostgresStore`]: the [`StateBackend`] on a PostgreSQL database that
//! servers, runners and commands on many machines share.
//!
//! The backend's callers are synchronous (the trait is what the redb store
//! is), and many of them run on a tokio runtime. The store therefore owns a
//! small runtime of its own that drives its connection pool: a call sends
//! its statements there and waits for the answer, on a worker of the
//! caller's runtime without stalling it (`block_in_place`), or plainly on
//! any other thread.
//!
//! Whether a run is alive is a lease (`run_leases`): the process that runs
//! a run renews it every [`RENEW_EVERY`]; a run recorded as running whose
//! lease has run out reads as interrupted, and its locks are stale. Writes
//! without durability are transactions with `synchronous_commit = off`:
//! visible at once, on disk with the next durable commit.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::de::DeserializeOwned;
use serde::Serialize;
use stackpipe_state::{
    keyed_hash_with, sort_jobs, Counts, ExecutionRecord, GateDecision, JobRecord, JournalEntry, LockHolder, LogLine,
    ResourceKey, ResourceRecord, RunRecord, RunSnapshot, RunStatus, ServiceRecord, StateBackend, StateDump, StateError,
    Write,
};

/// How long a run's lease lasts without being renewed.
pub const RUN_LEASE: Duration = Duration::from_secs(15);
/// How often the process running a run renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// Connections the store keeps open at most.
const POOL_SIZE: usize = 16;
/// The advisory lock taking resource locks is serialised under (`spplocks`).
const LOCKS_LOCK: i64 = 0x7370_706c_6f63_6b73;
/// The advisory lock changes of the server's users are serialised under (`spusers_`).
const USERS_LOCK: i64 = 0x7370_7573_6572_735f;

/// The state in one PostgreSQL database. See the module documentation.
pub struct PostgresStore {
    location: String,
    pool: Pool,
    /// Taken (to shut it down without blocking) only on drop.
    runtime: Option<tokio::runtime::Runtime>,
    /// This process, as `run_leases` names it: host, pid and a random tag.
    owner: String,
    /// The runs this process runs: their leases are renewed.
    current_runs: Arc<Mutex<BTreeSet<String>>>,
    hash_key: OnceLock<Vec<u8>>,
    /// Connected by a command that only reads: it writes nothing.
    read_only: bool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("location", &self.location).finish_non_exhaustive()
    }
}

/// `url` as messages show it: user, host, port and database, never a password.
pub fn shown_location(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{host}:{port}/{db}")
}

/// An address as messages show it (see [`shown_location`]); one that
/// does not parse shows as `postgres://…`.
pub fn shown_url(url: &str) -> String {
    match crate::tls::address(url) {
        Ok(address) => shown_location(&address.config),
        Err(_) => "postgres://…".into(),
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB`,
    /// or the key=value form), brings its schema up to date (see
    /// [`crate::migrate`]) and starts renewing the leases of the runs
    /// this process will run.
    pub fn connect(url: &str) -> Result<PostgresStore, StateError> {
        PostgresStore::open(url, false)
    }

    /// Connects to read only: the schema is checked, never changed, and
    /// every write is [`StateError::ReadOnly`], as a reader of a state
    /// directory writes nothing. A database without a stackpipe state is
    /// [`StateError::Missing`]; one whose schema is older than this
    /// stackpipe's is refused (a command that writes brings it up to date).
    pub fn connect_read_only(url: &str) -> Result<PostgresStore, StateError> {
        PostgresStore::open(url, true)
    }

    fn open(url: &str, read_only: bool) -> Result<PostgresStore, StateError> {
        let crate::tls::Address { config, tls } =
            crate::tls::address(url).map_err(|cause| StateError::Database { location: shown_url(url), cause })?;
        let location = shown_location(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("stackpipe-postgres")
            .enable_all()
            .build()
            .map_err(StateError::Io)?;
        let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StateError::Database { location: location.clone(), cause: e.to_string() })?;
        let mut tag = [0u8; 4];
        getrandom::getrandom(&mut tag).map_err(|e| StateError::Io(std::io::Error::other(e.to_string())))?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let owner = format!("{}:{}:{}", host.trim(), std::process::id(), hex::encode(tag));
        let store = PostgresStore {
            location,
            pool,
            runtime: Some(runtime),
            owner,
            current_runs: Arc::new(Mutex::new(BTreeSet::new())),
            hash_key: OnceLock::new(),
            read_only,
        };
        let location = store.location.clone();
        if read_only {
            store.call(move |pool| async move {
                let client = pool.get().await.map_err(|e| pool_error(&location, e))?;
                let kept = client
                    .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
                    .await
                    .map_err(|e| db_error(&location, e))?;
                let version = match kept.get::<_, bool>(0) {
                    true => crate::schema_version(&client).await.map_err(|e| StateError::Database { location: location.clone(), cause: e.to_string() })?,
                    false => 0,
                };
                let known = crate::latest_version();
                match version {
                    0 => Err(StateError::Missing { dir: std::path::PathBuf::from(location) }),
                    v if v < known => Err(StateError::Database {
                        location,
                        cause: format!(
                            "its schema is at version {v}, older than this stackpipe's ({known}); a command that writes (a \
                             deploy, `state migrate --to`) brings it up to date"
                        ),
                    }),
                    v if v > known => {
                        Err(StateError::Database { location, cause: crate::PgError::TooNew { found: v, known }.to_string() })
                    }
                    _ => Ok(()),
                }
            })?;
            return Ok(store);
        }
        store.call(move |pool| async move {
            let mut client = pool.get().await.map_err(|e| pool_error(&location, e))?;
            crate::migrate(&mut client).await.map_err(|e| StateError::Database { location, cause: e.to_string() })?;
            Ok(())
        })?;
        store.start_renewing();
        Ok(store)
    }

    /// [`StateError::ReadOnly`] for a store connected to read only.
    fn writable(&self) -> Result<(), StateError> {
        if self.read_only {
            return Err(StateError::ReadOnly { path: std::path::PathBuf::from(&self.location) });
        }
        Ok(())
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("taken only on drop")
    }

    /// Runs `f` on the store's runtime and waits for its answer (see the
    /// module documentation).
    fn call<T, F>(&self, f: impl FnOnce(Pool) -> F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StateError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let work = f(self.pool.clone());
        self.runtime().spawn(async move {
            let _ = tx.send(work.await);
        });
        let location = self.location.clone();
        let wait = move || {
            rx.recv().unwrap_or_else(|_| {
                Err(StateError::Database { location, cause: "the store's connections were shut down".into() })
            })
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// Runs `f` with a connection of the pool (and the store's location, for
    /// its errors) on the store's runtime; see [`PostgresStore::call`].
    fn on_client<T, F>(&self, f: impl FnOnce(deadpool_postgres::Object, String) -> F + Send + 'static) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StateError>> + Send + 'static,
    {
        let location = self.location.clone();
        self.call(move |pool| async move {
            let client = pool.get().await.map_err(|e| pool_error(&location, e))?;
            f(client, location).await
        })
    }

    /// Renews, every [`RENEW_EVERY`], the leases of the runs this process runs.
    fn start_renewing(&self) {
        let pool = self.pool.clone();
        let owner = self.owner.clone();
        let runs = self.current_runs.clone();
        self.runtime().spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            loop {
                tick.tick().await;
                let ids: Vec<String> = runs.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default();
                if ids.is_empty() {
                    continue;
                }
                // A failure is retried at the next tick; a lease that runs
                // out meanwhile reads as an interrupted run.
                // A lease not taken yet (its first taking failed) is taken
                // now; one another process took over (a resume elsewhere)
                // stays that process's.
                if let Ok(client) = pool.get().await {
                    let _ = client
                        .execute(
                            "INSERT INTO run_leases (run_id, owner, lease_until) \
                             SELECT id, $1, now() + make_interval(secs => $2) FROM unnest($3::text[]) AS t(id) \
                             ON CONFLICT (run_id) DO UPDATE SET lease_until = excluded.lease_until \
                             WHERE run_leases.owner = $1",
                            &[&owner, &RUN_LEASE.as_secs_f64(), &ids],
                        )
                        .await;
                }
            }
        });
    }

    /// Takes (or renews) the lease of `run_id` for this process.
    fn take_lease(&self, run_id: &str, control: Option<&Path>) -> Result<(), StateError> {
        let (owner, run_id) = (self.owner.clone(), run_id.to_string());
        let control = control.map(|p| p.display().to_string());
        self.on_client(move |client, location| async move {
            client
                .execute(
                    "INSERT INTO run_leases (run_id, owner, control, lease_until) \
                     VALUES ($1, $2, $3, now() + make_interval(secs => $4)) \
                     ON CONFLICT (run_id) DO UPDATE SET owner = $2, control = $3, lease_until = excluded.lease_until",
                    &[&run_id, &owner, &control, &RUN_LEASE.as_secs_f64()],
                )
                .await
                .map_err(|e| db_error(&location, e))?;
            Ok(())
        })
    }

    fn runs_here(&self, run_id: &str) -> bool {
        self.current_runs.lock().is_ok_and(|r| r.contains(run_id))
    }

    /// A run as it stands: recorded as running, but neither run here nor
    /// under a live lease, it is interrupted.
    fn as_seen(&self, mut run: RunRecord, leased: bool) -> RunRecord {
        if run.status == RunStatus::Running && !leased && !self.runs_here(&run.id) {
            run.status = RunStatus::Interrupted;
        }
        run
    }

    /// Rows of one query, each decoded from its first column (JSON text).
    fn records<T: DeserializeOwned + Send + 'static>(
        &self,
        sql: &'static str,
        params: Vec<Param>,
        what: &'static str,
    ) -> Result<Vec<T>, StateError> {
        self.on_client(move |client, location| async move {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(Param::as_sql).collect();
            let rows = client.query(sql, &refs).await.map_err(|e| db_error(&location, e))?;
            rows.iter().map(|row| decode(row.get::<_, &str>(0), what)).collect()
        })
    }

    fn record<T: DeserializeOwned + Send + 'static>(
        &self,
        sql: &'static str,
        params: Vec<Param>,
        what: &'static str,
    ) -> Result<Option<T>, StateError> {
        Ok(self.records(sql, params, what)?.into_iter().next())
    }

    /// Runs, each with whether a live lease holds it.
    fn leased_runs(&self, only: Option<String>) -> Result<Vec<RunRecord>, StateError> {
        let rows = self.on_client(move |client, location| async move {
            let rows = client
                .query(
                    "SELECT r.record::text, coalesce(l.lease_until > now(), false) FROM runs r \
                     LEFT JOIN run_leases l ON l.run_id = r.id \
                     WHERE $1::text IS NULL OR r.id = $1 ORDER BY r.started_ms DESC, r.id DESC",
                    &[&only],
                )
                .await
                .map_err(|e| db_error(&location, e))?;
            rows.iter()
                .map(|row| Ok((decode::<RunRecord>(row.get::<_, &str>(0), "run")?, row.get::<_, bool>(1))))
                .collect::<Result<Vec<_>, StateError>>()
        })?;
        Ok(rows.into_iter().map(|(run, leased)| self.as_seen(run, leased)).collect())
    }

    /// The next number of counter `name`, after `prefix`, zero-padded.
    fn next_id(&self, name: &'static str, prefix: char) -> Result<String, StateError> {
        self.writable()?;
        let n = self.on_client(move |client, location| async move {
            let row = client
                .query_one(
                    "INSERT INTO counters (name, value) VALUES ($1, 1) \
                     ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
                    &[&name],
                )
                .await
                .map_err(|e| db_error(&location, e))?;
            Ok(row.get::<_, i64>(0))
        })?;
        Ok(format!("{prefix}{n:06}"))
    }

    /// Releases the locks `release` picks (of `only`, if given), with
    /// whether each holder's run is alive; returns what it released.
    fn unlock_where(
        &self,
        only: Option<ResourceKey>,
        release: impl Fn(&LockHolder, bool) -> bool + Send + 'static,
    ) -> Result<Vec<(ResourceKey, LockHolder)>, StateError> {
        self.on_client(move |mut client, location| async move {
            let txn = client.transaction().await.map_err(|e| db_error(&location, e))?;
            txn.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCKS_LOCK]).await.map_err(|e| db_error(&location, e))?;
            let (p, e, r) = match &only {
                Some(k) => (Some(k.pipeline.clone()), Some(k.environment.clone()), Some(k.resource.clone())),
                None => (None, None, None),
            };
            let rows = txn
                .query(
                    "SELECT l.pipeline, l.environment, l.resource, l.holder::text, \
                            coalesce(s.lease_until > now(), false) \
                     FROM locks l LEFT JOIN run_leases s ON s.run_id = l.run_id \
                     WHERE $1::text IS NULL OR (l.pipeline = $1 AND l.environment = $2 AND l.resource = $3) \
                     ORDER BY 1, 2, 3",
                    &[&p, &e, &r],
                )
                .await
                .map_err(|e| db_error(&location, e))?;
            let mut released = Vec::new();
            for row in &rows {
                let key = ResourceKey::new(row.get(0), row.get(1), row.get(2));
                let holder: LockHolder = decode(row.get::<_, &str>(3), "lock holder")?;
                if release(&holder, row.get::<_, bool>(4)) {
                    txn.execute(
                        "DELETE FROM locks WHERE pipeline = $1 AND environment = $2 AND resource = $3",
                        &[&key.pipeline, &key.environment, &key.resource],
                    )
                    .await
                    .map_err(|e| db_error(&location, e))?;
                    released.push((key, holder));
                }
            }
            txn.commit().await.map_err(|e| db_error(&location, e))?;
            Ok(released)
        })
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The runs this process still ran read as interrupted at once,
        // not a lease later.
        let ids: Vec<String> = self.current_runs.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default();
        if !ids.is_empty() {
            let owner = self.owner.clone();
            let _ = self.call(move |pool| async move {
                if let Ok(client) = pool.get().await {
                    let _ = client.execute("DELETE FROM run_leases WHERE owner = $1 AND run_id = ANY($2)", &[&owner, &ids]).await;
                }
                Ok(())
            });
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A parameter of [`PostgresStore::records`], owned so that it can go to
/// the store's runtime.
enum Param {
    Text(String),
    OptText(Option<String>),
}

impl Param {
    fn as_sql(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Param::Text(s) => s,
            Param::OptText(s) => s,
        }
    }
}

fn text(s: &str) -> Param {
    Param::Text(s.to_string())
}

fn decode<T: DeserializeOwned>(json: &str, what: &str) -> Result<T, StateError> {
    serde_json::from_str(json).map_err(|e| StateError::Corrupt(format!("{what}: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<String, StateError> {
    serde_json::to_string(value).map_err(|e| StateError::Corrupt(format!("cannot encode a record: {e}")))
}

fn db_error(location: &str, e: tokio_postgres::Error) -> StateError {
    // The server's own message (its `DETAIL` too) says what was wrong.
    let cause = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => with_sources(&e),
    };
    StateError::Database { location: location.to_string(), cause }
}

/// An error and what caused it, down the chain (a failed TLS handshake
/// says why only in its source).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

fn pool_error(location: &str, e: deadpool_postgres::PoolError) -> StateError {
    let cause = match e {
        deadpool_postgres::PoolError::Backend(e) => return db_error(location, e),
        other => with_sources(&other),
    };
    StateError::Database { location: location.to_string(), cause }
}

impl StateBackend for PostgresStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn dir(&self) -> Option<&Path> {
        None
    }

    fn is_writable(&self) -> bool {
        !self.read_only
    }

    fn set_owner_run(&self, run_id: &str, control: Option<&Path>) -> Result<(), StateError> {
        self.writable()?;
        if let Ok(mut runs) = self.current_runs.lock() {
            runs.insert(run_id.to_string());
        }
        self.take_lease(run_id, control)
    }

    fn control_socket(&self, run_id: &str) -> Result<Option<std::path::PathBuf>, StateError> {
        let run_id = run_id.to_string();
        self.on_client(move |client, location| async move {
            let row = client
                .query_opt("SELECT control FROM run_leases WHERE run_id = $1 AND lease_until > now()", &[&run_id])
                .await
                .map_err(|e| db_error(&location, e))?;
            Ok(row.and_then(|r| r.get::<_, Option<String>>(0)).map(std::path::PathBuf::from))
        })
    }

    fn run_taken_up(&self, run_id: &str) {
        if let Ok(mut runs) = self.current_runs.lock() {
            runs.insert(run_id.to_string());
        }
        // A failure here is made good at the next renewal; meanwhile the
        // run reads as running in this process.
        let _ = self.take_lease(run_id, None);
    }

    fn run_ended(&self, run_id: &str) {
        if let Ok(mut runs) = self.current_runs.lock() {
            runs.remove(run_id);
        }
        let (owner, run_id) = (self.owner.clone(), run_id.to_string());
        let _ = self.on_client(move |client, location| async move {
            client
                .execute("DELETE FROM run_leases WHERE run_id = $1 AND owner = $2", &[&run_id, &owner])
                .await
                .map_err(|e| db_error(&location, e))?;
            Ok(())
        });
    }

    fn keyed_hash(&self, name: &str, value: &str) -> Result<String, StateError> {
        if let Some(key) = self.hash_key.get() {
            return keyed_hash_with(key, name, value);
        }
        let mut fresh = vec![0u8; 32];
        getrandom::getrandom(&mut fresh).map_err(|e| StateError::Io(std::io::Error::other(e.to_string())))?;
        let read_only = self.read_only;
        // The first writer to make one keeps it; every other process reads it.
        let key = self.on_client(move |client, location| async move {
            if !read_only {
                client
                    .execute("INSERT INTO store_keys (name, key) VALUES ('keyed_hash', $1) ON CONFLICT (name) DO NOTHING", &[&fresh])
                    .await
                    .map_err(|e| db_error(&location, e))?;
            }
            let row = client
                .query_opt("SELECT key FROM store_keys WHERE name = 'keyed_hash'", &[])
                .await
                .map_err(|e| db_error(&location, e))?;
            row.map(|r| r.get::<_, Vec<u8>>(0)).ok_or(StateError::ReadOnly { path: std::path::PathBuf::from(location) })
        })?;
        if key.len() != 32 {
            return Err(StateError::Corrupt("the store's hash key is not 32 bytes".into()));
        }
        keyed_hash_with(self.hash_key.get_or_init(|| key), name, value)
    }

    // ---- resources

    fn resource(&self, key: &ResourceKey) -> Result<Option<ResourceRecord>, StateError> {
        self.record(
            "SELECT record::text FROM resources WHERE pipeline = $1 AND environment = $2 AND resource = $3",
            vec![text(&key.pipeline), text(&key.environment), text(&key.resource)],
            "resource",
        )
    }

    fn resources(&self, pipeline: &str, environment: Option<&str>) -> Result<Vec<(ResourceKey, ResourceRecord)>, StateError> {
        let all = self.keyed_resources(
            "SELECT pipeline, environment, resource, record::text FROM resources \
             WHERE pipeline = $1 AND ($2::text IS NULL OR environment = $2) ORDER BY environment, resource",
            vec![text(pipeline), Param::OptText(environment.map(str::to_string))],
        )?;
        Ok(all)
    }

    fn all_resources(&self) -> Result<Vec<(ResourceKey, ResourceRecord)>, StateError> {
        self.keyed_resources(
            "SELECT pipeline, environment, resource, record::text FROM resources ORDER BY pipeline, environment, resource",
            Vec::new(),
        )
    }

    fn counts(&self) -> Result<Counts, StateError> {
        self.on_client(move |client, location| async move {
            let row = client
                .query_one(
                    "SELECT (SELECT count(*) FROM resources), (SELECT count(*) FROM runs), (SELECT count(*) FROM jobs), \
                            (SELECT count(*) FROM logs), (SELECT count(*) FROM journal), \
                            (SELECT count(*) FROM decisions), (SELECT count(*) FROM locks)",
                    &[],
                )
                .await
                .map_err(|e| db_error(&location, e))?;
            let n = |i: usize| row.get::<_, i64>(i) as u64;
            Ok(Counts {
                resources: n(0),
                runs: n(1),
                jobs: n(2),
                log_lines: n(3),
                journal_entries: n(4),
                decisions: n(5),
                locks: n(6),
            })
        })
    }

    // ---- runs

    fn run(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        Ok(self.leased_runs(Some(id.to_string()))?.into_iter().next())
    }

    fn runs(&self) -> Result<Vec<RunRecord>, StateError> {
        self.leased_runs(None)
    }

    fn snapshot(&self, digest: &str) -> Result<Option<RunSnapshot>, StateError> {
        self.record("SELECT snapshot::text FROM snapshots WHERE digest = $1", vec![text(digest)], "snapshot")
    }

    fn blob(&self, digest: &str) -> Result<Option<Vec<u8>>, StateError> {
        use sha2::Digest;
        let wanted = digest.to_string();
        let bytes = self.on_client(move |client, location| async move {
            let row = client
                .query_opt("SELECT bytes FROM blobs WHERE digest = $1", &[&wanted])
                .await
                .map_err(|e| db_error(&location, e))?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })?;
        match bytes {
            Some(bytes) if hex::encode(sha2::Sha256::digest(&bytes)) != digest => Err(StateError::Corrupt(format!(
                "stored component {digest}: its bytes do not match its digest"
            ))),
            other => Ok(other),
        }
    }

    fn new_run_id(&self) -> Result<String, StateError> {
        self.next_id("run_counter", 'r')
    }

    fn new_execution_id(&self) -> Result<String, StateError> {
        self.next_id("execution_counter", 'x')
    }

    // ---- service pipelines

    fn execution(&self, id: &str) -> Result<Option<ExecutionRecord>, StateError> {
        self.record("SELECT record::text FROM executions WHERE id = $1", vec![text(id)], "execution")
    }

    fn executions(&self, service: Option<&str>) -> Result<Vec<ExecutionRecord>, StateError> {
        self.records(
            "SELECT record::text FROM executions WHERE $1::text IS NULL OR service = $1 ORDER BY id DESC",
            vec![Param::OptText(service.map(str::to_string))],
            "execution",
        )
    }

    fn service_record(&self, name: &str) -> Result<ServiceRecord, StateError> {
        Ok(self.record("SELECT record::text FROM services WHERE name = $1", vec![text(name)], "service")?.unwrap_or_default())
    }

    // ---- jobs and logs

    fn jobs(&self, run_id: &str) -> Result<Vec<JobRecord>, StateError> {
        let environments = self
            .record::<RunRecord>("SELECT record::text FROM runs WHERE id = $1", vec![text(run_id)], "run")?
            .map(|r| r.environments)
            .unwrap_or_default();
        let mut jobs: Vec<JobRecord> =
            self.records("SELECT record::text FROM jobs WHERE run_id = $1", vec![text(run_id)], "job")?;
        sort_jobs(&mut jobs, &environments);
        Ok(jobs)
    }

    fn job(&self, run_id: &str, environment: &str, node: &str) -> Result<Option<JobRecord>, StateError> {
        self.record(
            "SELECT record::text FROM jobs WHERE run_id = $1 AND environment = $2 AND node = $3",
            vec![text(run_id), text(environment), text(node)],
            "job",
        )
    }

    fn resource_jobs(&self, environment: &str, resource: &str) -> Result<Vec<JobRecord>, StateError> {
        self.records(
            "SELECT record::text FROM jobs WHERE environment = $1 AND node = $2 ORDER BY run_id",
            vec![text(environment), text(resource)],
            "job",
        )
    }

    fn touched_resources(&self) -> Result<Vec<(String, String)>, StateError> {
        self.on_client(move |client, location| async move {
            let rows = client
                .query("SELECT DISTINCT environment, node FROM jobs ORDER BY 1, 2", &[])
                .await
                .map_err(|e| db_error(&location, e))?;
            Ok(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))).collect())
        })
    }

    fn logs(&self, run_id: &str, node: Option<&str>) -> Result<Vec<LogLine>, StateError> {
        let mut lines: Vec<LogLine> =
            self.records("SELECT line::text FROM logs WHERE run_id = $1 ORDER BY seq", vec![text(run_id)], "log line")?;
        if let Some(n) = node {
            lines.retain(|l| l.node == n);
        }
        Ok(lines)
    }

    fn journal(&self, run_id: &str) -> Result<Vec<JournalEntry>, StateError> {
        self.records("SELECT entry::text FROM journal WHERE run_id = $1 ORDER BY seq", vec![text(run_id)], "journal entry")
    }

    fn decisions(&self, run_id: &str) -> Result<Vec<GateDecision>, StateError> {
        self.records("SELECT decision::text FROM decisions WHERE run_id = $1 ORDER BY seq", vec![text(run_id)], "decision")
    }

    // ---- locks

    fn locks(&self) -> Result<Vec<(ResourceKey, LockHolder)>, StateError> {
        self.on_client(move |client, location| async move {
            let rows = client
                .query("SELECT pipeline, environment, resource, holder::text FROM locks ORDER BY 1, 2, 3", &[])
                .await
                .map_err(|e| db_error(&location, e))?;
            rows.iter()
                .map(|r| Ok((ResourceKey::new(r.get(0), r.get(1), r.get(2)), decode(r.get::<_, &str>(3), "lock holder")?)))
                .collect()
        })
    }

    fn lock(&self, keys: &[ResourceKey], holder: &LockHolder) -> Result<(), StateError> {
        self.writable()?;
        let mut keys: Vec<ResourceKey> = keys.to_vec();
        keys.sort_unstable_by(|a, b| {
            (&a.pipeline, &a.environment, &a.resource).cmp(&(&b.pipeline, &b.environment, &b.resource))
        });
        let holder = holder.clone();
        let value = encode(&holder)?;
        self.on_client(move |mut client, location| async move {
            let txn = client.transaction().await.map_err(|e| db_error(&location, e))?;
            // One taker at a time: two runs locking overlapping keys at
            // once would otherwise both find them free.
            txn.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCKS_LOCK]).await.map_err(|e| db_error(&location, e))?;
            let rows = txn
                .query(
                    "SELECT l.pipeline, l.environment, l.resource, l.holder::text, \
                            coalesce(s.lease_until > now(), false) \
                     FROM locks l LEFT JOIN run_leases s ON s.run_id = l.run_id",
                    &[],
                )
                .await
                .map_err(|e| db_error(&location, e))?;
            let mut held: std::collections::HashMap<ResourceKey, (LockHolder, bool)> = std::collections::HashMap::new();
            for row in &rows {
                let key = ResourceKey::new(row.get(0), row.get(1), row.get(2));
                held.insert(key, (decode(row.get::<_, &str>(3), "lock holder")?, row.get::<_, bool>(4)));
            }
            let mut taking: Vec<&ResourceKey> = Vec::new();
            for key in &keys {
                match held.remove(key) {
                    Some((h, alive)) if h.run_id != holder.run_id => {
                        return Err(StateError::Locked { key: key.clone(), holder: h, holder_alive: alive });
                    }
                    Some((h, _)) if h.pid == holder.pid => {}
                    _ => taking.push(key),
                }
            }
            if !taking.is_empty() {
                let (p, e, r) = columns3(taking.iter().map(|k| (&k.pipeline, &k.environment, &k.resource)));
                txn.execute(
                    "INSERT INTO locks (pipeline, environment, resource, run_id, holder) \
                     SELECT p, e, r, $4, $5::text::json FROM unnest($1::text[], $2::text[], $3::text[]) AS t(p, e, r) \
                     ON CONFLICT (pipeline, environment, resource) DO UPDATE SET run_id = $4, holder = $5::text::json",
                    &[&p, &e, &r, &holder.run_id, &value],
                )
                .await
                .map_err(|e| db_error(&location, e))?;
            }
            txn.commit().await.map_err(|e| db_error(&location, e))?;
            Ok(())
        })
    }

    fn unlock_run(&self, run_id: &str) -> Result<usize, StateError> {
        self.writable()?;
        let run_id = run_id.to_string();
        self.on_client(move |client, location| async move {
            let n = client.execute("DELETE FROM locks WHERE run_id = $1", &[&run_id]).await.map_err(|e| db_error(&location, e))?;
            Ok(n as usize)
        })
    }

    fn unlock_stale(&self, key: Option<&ResourceKey>, force: bool) -> Result<Vec<(ResourceKey, LockHolder)>, StateError> {
        self.writable()?;
        self.unlock_where(key.cloned(), move |_, alive| force || !alive)
    }

    // ---- writes

    fn persist(&self) -> Result<(), StateError> {
        self.writable()?;
        // A durable commit flushes the log up to it, the commits made
        // before it without durability included.
        self.on_client(move |client, location| async move {
            client
                .execute(
                    "INSERT INTO counters (name, value) VALUES ('persisted', 1) \
                     ON CONFLICT (name) DO UPDATE SET value = counters.value + 1",
                    &[],
                )
                .await
                .map_err(|e| db_error(&location, e))?;
            Ok(())
        })
    }

    fn commit_as(&self, writes: Vec<Write>, durable: bool) -> Result<(), StateError> {
        self.writable()?;
        if writes.is_empty() {
            return Ok(());
        }
        self.on_client(move |mut client, location| async move {
            let txn = client.transaction().await.map_err(|e| db_error(&location, e))?;
            if !durable {
                txn.batch_execute("SET LOCAL synchronous_commit = off").await.map_err(|e| db_error(&location, e))?;
            }
            apply(&txn, writes).await.map_err(|e| match e {
                Applied::Db(e) => db_error(&location, e),
                Applied::State(e) => e,
            })?;
            txn.commit().await.map_err(|e| db_error(&location, e))?;
            Ok(())
        })
    }

    fn export(&self) -> Result<StateDump, StateError> {
        let mut dump = self.on_client(move |mut client, location| async move {
            // One snapshot of the database for every table.
            let txn = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(|e| db_error(&location, e))?;
            export_tables(&txn).await.map_err(|e| match e {
                Applied::Db(e) => db_error(&location, e),
                Applied::State(e) => e,
            })
        })?;
        dump.normalize();
        Ok(dump)
    }

    fn import(&self, dump: &StateDump) -> Result<(), StateError> {
        self.writable()?;
        if !self.export()?.is_empty() || self.stored_hash_key()?.is_some() {
            return Err(StateError::NotEmpty { location: self.location() });
        }
        let dump = dump.clone();
        self.on_client(move |mut client, location| async move {
            let txn = client.transaction().await.map_err(|e| db_error(&location, e))?;
            import_tables(&txn, &dump).await.map_err(|e| match e {
                Applied::Db(e) => db_error(&location, e),
                Applied::State(e) => e,
            })?;
            txn.commit().await.map_err(|e| db_error(&location, e))?;
            Ok(())
        })
    }
}

impl PostgresStore {
    /// The key of keyed hashes, if one was made.
    fn stored_hash_key(&self) -> Result<Option<Vec<u8>>, StateError> {
        self.on_client(move |client, location| async move {
            let row = client
                .query_opt("SELECT key FROM store_keys WHERE name = 'keyed_hash'", &[])
                .await
                .map_err(|e| db_error(&location, e))?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn keyed_resources(
        &self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<Vec<(ResourceKey, ResourceRecord)>, StateError> {
        self.on_client(move |client, location| async move {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(Param::as_sql).collect();
            let rows = client.query(sql, &refs).await.map_err(|e| db_error(&location, e))?;
            rows.iter()
                .map(|r| Ok((ResourceKey::new(r.get(0), r.get(1), r.get(2)), decode(r.get::<_, &str>(3), "resource")?)))
                .collect()
        })
    }
}

/// What applying a batch met.
enum Applied {
    Db(tokio_postgres::Error),
    State(StateError),
}

impl From<tokio_postgres::Error> for Applied {
    fn from(e: tokio_postgres::Error) -> Self {
        Applied::Db(e)
    }
}

impl From<StateError> for Applied {
    fn from(e: StateError) -> Self {
        Applied::State(e)
    }
}

/// The body of [`StateBackend::commit_as`]: the writes, in `txn`, with the
/// effect of applying them one by one, in a few statements: a statement a
/// table (rows as arrays, `unnest`ed) for each run of writes between two
/// deletions. A batch of a run's journal holds hundreds of writes; one
/// round trip each would be most of a deploy's time.
async fn apply(txn: &deadpool_postgres::Transaction<'_>, writes: Vec<Write>) -> Result<(), Applied> {
    let mut batch = Batch::default();
    for write in writes {
        match write {
            Write::PutResource(key, record) => {
                let puts = batch.resources.get(&key).map_or(0, |(_, puts)| *puts);
                batch.resources.put(key, (record, puts + 1));
            }
            Write::PutRun(run) => {
                let started = run.started_ms as i64;
                batch.runs.put(run.id.clone(), (started, encode(&run)?));
            }
            Write::PutJob(job) => {
                let key = (job.run_id.clone(), job.environment.clone(), job.node.clone());
                batch.jobs.put(key, encode(&job)?);
            }
            Write::Log(line, run_id) => batch.logs.push((run_id, encode(&line)?)),
            Write::Journal(entry) => batch.journal.push((entry.run_id.clone(), encode(&entry)?)),
            Write::Decision(d) => batch.decisions.push((d.run_id.clone(), encode(&d)?)),
            // Content-addressed: the first one stands.
            Write::PutSnapshot(digest, snapshot) => {
                if !batch.snapshots.iter().any(|(d, _)| *d == digest) {
                    batch.snapshots.push((digest, encode(&snapshot)?));
                }
            }
            Write::PutBlob(digest, blob) => {
                if !batch.blobs.iter().any(|(d, _)| *d == digest) {
                    batch.blobs.push((digest, blob.0.to_vec()));
                }
            }
            Write::PutExecution(record) => batch.executions.put(record.id.clone(), (record.service.clone(), encode(&record)?)),
            Write::PutService(name, record) => batch.services.put(name, encode(&record)?),
            Write::DeleteResource(key) => {
                std::mem::take(&mut batch).flush(txn).await?;
                txn.execute(
                    &txn.prepare_cached("DELETE FROM resources WHERE pipeline = $1 AND environment = $2 AND resource = $3").await?,
                    &[&key.pipeline, &key.environment, &key.resource],
                )
                .await?;
            }
            Write::DeleteRun(id) => {
                std::mem::take(&mut batch).flush(txn).await?;
                for sql in [
                    "DELETE FROM runs WHERE id = $1",
                    "DELETE FROM jobs WHERE run_id = $1",
                    "DELETE FROM logs WHERE run_id = $1",
                    "DELETE FROM journal WHERE run_id = $1",
                    "DELETE FROM decisions WHERE run_id = $1",
                ] {
                    txn.execute(&txn.prepare_cached(sql).await?, &[&id]).await?;
                }
            }
        }
    }
    batch.flush(txn).await
}

/// Rows by key, the last put of a key standing, in the order keys first came.
struct Keyed<K, V> {
    at: std::collections::HashMap<K, usize>,
    rows: Vec<(K, V)>,
}

impl<K, V> Default for Keyed<K, V> {
    fn default() -> Self {
        Keyed { at: Default::default(), rows: Vec::new() }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V> Keyed<K, V> {
    fn get(&self, key: &K) -> Option<&V> {
        self.at.get(key).map(|&i| &self.rows[i].1)
    }

    fn put(&mut self, key: K, value: V) {
        match self.at.get(&key) {
            Some(&i) => self.rows[i].1 = value,
            None => {
                self.at.insert(key.clone(), self.rows.len());
                self.rows.push((key, value));
            }
        }
    }
}

/// The writes of a batch between two deletions, by table (see [`apply`]).
#[derive(Default)]
struct Batch {
    /// Each key's last record, and how many puts it had (its serial goes up by that).
    resources: Keyed<ResourceKey, (ResourceRecord, u64)>,
    runs: Keyed<String, (i64, String)>,
    jobs: Keyed<(String, String, String), String>,
    logs: Vec<(String, String)>,
    journal: Vec<(String, String)>,
    decisions: Vec<(String, String)>,
    snapshots: Vec<(String, String)>,
    blobs: Vec<(String, Vec<u8>)>,
    executions: Keyed<String, (String, String)>,
    services: Keyed<String, String>,
}

impl Batch {
    async fn flush(self, txn: &deadpool_postgres::Transaction<'_>) -> Result<(), Applied> {
        if !self.resources.rows.is_empty() {
            let (p, e, r) = columns3(self.resources.rows.iter().map(|(k, _)| (&k.pipeline, &k.environment, &k.resource)));
            let rows = txn
                .query(
                    &txn.prepare_cached("SELECT pipeline, environment, resource, serial FROM resources \
                     WHERE (pipeline, environment, resource) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[])) \
                     FOR UPDATE").await?,
                    &[&p, &e, &r],
                )
                .await?;
            let previous: std::collections::HashMap<(String, String, String), i64> =
                rows.iter().map(|row| ((row.get(0), row.get(1), row.get(2)), row.get(3))).collect();
            let mut serials = Vec::new();
            let mut records = Vec::new();
            for (k, (record, puts)) in &self.resources.rows {
                let key = (k.pipeline.clone(), k.environment.clone(), k.resource.clone());
                let serial = previous.get(&key).copied().unwrap_or(0) as u64 + puts;
                serials.push(serial as i64);
                records.push(encode(&ResourceRecord { serial, ..record.clone() })?);
            }
            txn.execute(
                &txn.prepare_cached("INSERT INTO resources (pipeline, environment, resource, serial, record) \
                 SELECT p, e, r, s, j::json FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[]) AS t(p, e, r, s, j) \
                 ON CONFLICT (pipeline, environment, resource) DO UPDATE SET serial = excluded.serial, record = excluded.record").await?,
                &[&p, &e, &r, &serials, &records],
            )
            .await?;
        }
        if !self.runs.rows.is_empty() {
            let ids: Vec<&String> = self.runs.rows.iter().map(|(k, _)| k).collect();
            let started: Vec<i64> = self.runs.rows.iter().map(|(_, (s, _))| *s).collect();
            let records: Vec<&String> = self.runs.rows.iter().map(|(_, (_, r))| r).collect();
            txn.execute(
                &txn.prepare_cached("INSERT INTO runs (id, started_ms, record) SELECT i, s, j::json FROM unnest($1::text[], $2::bigint[], $3::text[]) AS t(i, s, j) \
                 ON CONFLICT (id) DO UPDATE SET started_ms = excluded.started_ms, record = excluded.record").await?,
                &[&ids, &started, &records],
            )
            .await?;
        }
        if !self.jobs.rows.is_empty() {
            let (r, e, n) = columns3(self.jobs.rows.iter().map(|((r, e, n), _)| (r, e, n)));
            let records: Vec<&String> = self.jobs.rows.iter().map(|(_, j)| j).collect();
            txn.execute(
                &txn.prepare_cached("INSERT INTO jobs (run_id, environment, node, record) \
                 SELECT r, e, n, j::json FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(r, e, n, j) \
                 ON CONFLICT (run_id, environment, node) DO UPDATE SET record = excluded.record").await?,
                &[&r, &e, &n, &records],
            )
            .await?;
        }
        // Appended in the order written: `seq` is taken row by row, in `n` order.
        for (rows, sql) in [
            (&self.logs, "INSERT INTO logs (run_id, line) SELECT r, j::json FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(r, j, n) ORDER BY n"),
            (&self.journal, "INSERT INTO journal (run_id, entry) SELECT r, j::json FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(r, j, n) ORDER BY n"),
            (&self.decisions, "INSERT INTO decisions (run_id, decision) SELECT r, j::json FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(r, j, n) ORDER BY n"),
        ] {
            if !rows.is_empty() {
                let (runs, json): (Vec<&String>, Vec<&String>) = rows.iter().map(|(r, j)| (r, j)).unzip();
                txn.execute(&txn.prepare_cached(sql).await?, &[&runs, &json]).await?;
            }
        }
        if !self.snapshots.is_empty() {
            let (digests, json): (Vec<&String>, Vec<&String>) = self.snapshots.iter().map(|(d, j)| (d, j)).unzip();
            txn.execute(
                &txn.prepare_cached("INSERT INTO snapshots (digest, snapshot) SELECT d, j::json FROM unnest($1::text[], $2::text[]) AS t(d, j) \
                 ON CONFLICT (digest) DO NOTHING").await?,
                &[&digests, &json],
            )
            .await?;
        }
        for (digest, bytes) in &self.blobs {
            txn.execute(&txn.prepare_cached("INSERT INTO blobs (digest, bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING").await?, &[digest, bytes]).await?;
        }
        if !self.executions.rows.is_empty() {
            let ids: Vec<&String> = self.executions.rows.iter().map(|(k, _)| k).collect();
            let services: Vec<&String> = self.executions.rows.iter().map(|(_, (s, _))| s).collect();
            let records: Vec<&String> = self.executions.rows.iter().map(|(_, (_, r))| r).collect();
            txn.execute(
                &txn.prepare_cached("INSERT INTO executions (id, service, record) SELECT i, s, j::json FROM unnest($1::text[], $2::text[], $3::text[]) AS t(i, s, j) \
                 ON CONFLICT (id) DO UPDATE SET service = excluded.service, record = excluded.record").await?,
                &[&ids, &services, &records],
            )
            .await?;
        }
        if !self.services.rows.is_empty() {
            let (names, records): (Vec<&String>, Vec<&String>) = self.services.rows.iter().map(|(n, r)| (n, r)).unzip();
            txn.execute(
                &txn.prepare_cached("INSERT INTO services (name, record) SELECT n, j::json FROM unnest($1::text[], $2::text[]) AS t(n, j) \
                 ON CONFLICT (name) DO UPDATE SET record = excluded.record").await?,
                &[&names, &records],
            )
            .await?;
        }
        Ok(())
    }
}

/// Three columns of arrays from rows of three.
fn columns3<'a>(rows: impl Iterator<Item = (&'a String, &'a String, &'a String)>) -> (Vec<&'a String>, Vec<&'a String>, Vec<&'a String>) {
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for (x, y, z) in rows {
        a.push(x);
        b.push(y);
        c.push(z);
    }
    (a, b, c)
}

/// Every row of every table, as stored (see [`StateDump`]).
async fn export_tables(txn: &deadpool_postgres::Transaction<'_>) -> Result<StateDump, Applied> {
    async fn rows(txn: &deadpool_postgres::Transaction<'_>, sql: &str) -> Result<Vec<tokio_postgres::Row>, Applied> {
        Ok(txn.query(sql, &[]).await?)
    }
    let key = |r: &tokio_postgres::Row| ResourceKey::new(r.get(0), r.get(1), r.get(2));
    let mut dump = StateDump::default();
    for r in rows(txn, "SELECT pipeline, environment, resource, record::text FROM resources ORDER BY 1, 2, 3").await? {
        dump.resources.push((key(&r), decode(r.get::<_, &str>(3), "resource")?));
    }
    for r in rows(txn, "SELECT pipeline, environment, resource, holder::text FROM locks ORDER BY 1, 2, 3").await? {
        dump.locks.push((key(&r), decode(r.get::<_, &str>(3), "lock holder")?));
    }
    for r in rows(txn, "SELECT record::text FROM runs ORDER BY id").await? {
        dump.runs.push(decode(r.get::<_, &str>(0), "run")?);
    }
    for r in rows(txn, "SELECT record::text FROM jobs ORDER BY run_id, environment, node").await? {
        dump.jobs.push(decode(r.get::<_, &str>(0), "job")?);
    }
    for r in rows(txn, "SELECT run_id, line::text FROM logs ORDER BY run_id, seq").await? {
        dump.logs.push((r.get(0), decode(r.get::<_, &str>(1), "log line")?));
    }
    for r in rows(txn, "SELECT entry::text FROM journal ORDER BY run_id, seq").await? {
        dump.journal.push(decode(r.get::<_, &str>(0), "journal entry")?);
    }
    for r in rows(txn, "SELECT decision::text FROM decisions ORDER BY run_id, seq").await? {
        dump.decisions.push(decode(r.get::<_, &str>(0), "decision")?);
    }
    for r in rows(txn, "SELECT digest, snapshot::text FROM snapshots ORDER BY digest").await? {
        dump.snapshots.push((r.get(0), decode(r.get::<_, &str>(1), "snapshot")?));
    }
    for r in rows(txn, "SELECT digest, bytes FROM blobs ORDER BY digest").await? {
        dump.blobs.push((r.get(0), r.get(1)));
    }
    for r in rows(txn, "SELECT record::text FROM executions ORDER BY id").await? {
        dump.executions.push(decode(r.get::<_, &str>(0), "execution")?);
    }
    for r in rows(txn, "SELECT name, record::text FROM services ORDER BY name").await? {
        dump.services.push((r.get(0), decode(r.get::<_, &str>(1), "service")?));
    }
    for r in rows(txn, "SELECT name, value FROM counters WHERE name IN ('run_counter', 'execution_counter') ORDER BY name").await? {
        dump.counters.push((r.get(0), r.get::<_, i64>(1) as u64));
    }
    dump.hash_key = rows(txn, "SELECT key FROM store_keys WHERE name = 'keyed_hash'").await?.first().map(|r| r.get(0));
    Ok(dump)
}

/// Writes every row of `dump` as it is (serials included) into an empty state.
async fn import_tables(txn: &deadpool_postgres::Transaction<'_>, dump: &StateDump) -> Result<(), Applied> {
    for (k, record) in &dump.resources {
        txn.execute(
            "INSERT INTO resources (pipeline, environment, resource, serial, record) VALUES ($1, $2, $3, $4, $5::text::json)",
            &[&k.pipeline, &k.environment, &k.resource, &(record.serial as i64), &encode(record)?],
        )
        .await?;
    }
    for (k, holder) in &dump.locks {
        txn.execute(
            "INSERT INTO locks (pipeline, environment, resource, run_id, holder) VALUES ($1, $2, $3, $4, $5::text::json)",
            &[&k.pipeline, &k.environment, &k.resource, &holder.run_id, &encode(holder)?],
        )
        .await?;
    }
    for (name, n) in &dump.counters {
        txn.execute("INSERT INTO counters (name, value) VALUES ($1, $2)", &[name, &(*n as i64)]).await?;
    }
    if let Some(key) = &dump.hash_key {
        txn.execute("INSERT INTO store_keys (name, key) VALUES ('keyed_hash', $1)", &[key]).await?;
    }
    for (digest, bytes) in &dump.blobs {
        txn.execute("INSERT INTO blobs (digest, bytes) VALUES ($1, $2)", &[digest, bytes]).await?;
    }
    // Content-addressed snapshots, then the rest as a batch of writes
    // would be stored, keeping each run's order.
    let mut writes: Vec<Write> = dump.snapshots.iter().cloned().map(|(d, s)| Write::PutSnapshot(d, s)).collect();
    writes.extend(dump.record_writes());
    apply(txn, writes).await
}

/// The team server's users and audit log: records the server reads (its
/// own formats, as JSON text), kept here when its state is.
impl PostgresStore {
    /// Every user's record, by name.
    pub fn user_records(&self) -> Result<Vec<(String, String)>, StateError> {
        self.on_client(move |client, location| async move {
            let rows =
                client.query("SELECT name, record::text FROM users ORDER BY name", &[]).await.map_err(|e| db_error(&location, e))?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    /// Replaces the users whole with `next`, if they are still `previous`
    /// (as [`PostgresStore::user_records`] gave them); whether they were.
    /// Two changes made at once: one is refused, and is made again from
    /// what the other left.
    pub fn swap_user_records(&self, previous: Vec<(String, String)>, next: Vec<(String, String)>) -> Result<bool, StateError> {
        self.writable()?;
        self.on_client(move |mut client, location| async move {
            let txn = client.transaction().await.map_err(|e| db_error(&location, e))?;
            // One change at a time; the read below sees the one before.
            txn.execute("SELECT pg_advisory_xact_lock($1)", &[&USERS_LOCK]).await.map_err(|e| db_error(&location, e))?;
            let rows =
                txn.query("SELECT name, record::text FROM users ORDER BY name", &[]).await.map_err(|e| db_error(&location, e))?;
            let now: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            if now != previous {
                return Ok(false);
            }
            txn.execute("DELETE FROM users", &[]).await.map_err(|e| db_error(&location, e))?;
            let (names, records): (Vec<&String>, Vec<&String>) = next.iter().map(|(n, r)| (n, r)).unzip();
            let inserted = txn
                .execute(
                    "INSERT INTO users (name, record) SELECT n, r::json FROM unnest($1::text[], $2::text[]) AS t(n, r)",
                    &[&names, &records],
                )
                .await;
            inserted.map_err(|e| db_error(&location, e))?;
            txn.commit().await.map_err(|e| db_error(&location, e))?;
            Ok(true)
        })
    }

    /// Appends an entry (its JSON) to the audit log.
    pub fn append_audit(&self, ms: u64, entry: String) -> Result<(), StateError> {
        self.writable()?;
        self.on_client(move |client, location| async move {
            client
                .execute("INSERT INTO audit (ms, entry) VALUES ($1, $2::text::json)", &[&(ms as i64), &entry])
                .await
                .map_err(|e| db_error(&location, e))?;
            Ok(())
        })
    }

    /// Every audit entry (its JSON), oldest first.
    pub fn audit_records(&self) -> Result<Vec<String>, StateError> {
        self.on_client(move |client, location| async move {
            let rows = client.query("SELECT entry::text FROM audit ORDER BY seq", &[]).await.map_err(|e| db_error(&location, e))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }
}
