//! [`JobQueue`]: the stack jobs of runs in progress, as rows that runners
//! on any machine take, run and complete. The DAG advances in the
//! database: completing a job counts down `waiting_on` of the jobs that
//! need it, in the same transaction, and a job whose count reaches zero is
//! `ready` for any runner. No process coordinates; PostgreSQL's row locks
//! do (`FOR UPDATE SKIP LOCKED`: two runners never take the same job).
//!
//! A job's states: `held` (its environment is not open yet), `blocked`
//! (waiting for the jobs it needs), `ready`, `claimed` (a runner holds it
//! under a lease), then `succeeded`, `failed`, `cancelled` (a job it needs
//! failed, or the run was cancelled) or `skipped` (a gate before it was
//! rejected). A claimed job whose lease runs out (its runner died, or lost
//! the database) goes back to `ready` ([`JobQueue::reap`]); the runner
//! that takes it next resumes it, and the one that lost it can no longer
//! complete it ([`QueueError::LeaseLost`]).
//!
//! Times are the database's (`now()`): runners' clocks never compare.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

/// One job: a node of an environment of a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub run_id: String,
    pub environment: String,
    pub node: String,
}

impl JobKey {
    pub fn new(run_id: &str, environment: &str, node: &str) -> JobKey {
        JobKey { run_id: run_id.into(), environment: environment.into(), node: node.into() }
    }
}

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.run_id, self.environment, self.node)
    }
}

/// A job a runner took: what to run, and how many times it was taken
/// before (more than one: a runner before this one lost it, maybe mid-apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub job: JobKey,
    pub attempt: i32,
}

/// How a job ended, as its runner reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Succeeded,
    /// Its dependents are cancelled; with `stop_all`, every job of the
    /// environment not started yet is.
    Failed { stop_all: bool },
    /// A gate of the job was rejected: its dependents are skipped.
    Rejected,
}

/// How many jobs of a run (or of one environment) are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub held: u64,
    pub blocked: u64,
    pub ready: u64,
    pub claimed: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub skipped: u64,
}

impl QueueCounts {
    /// Whether every job has ended.
    pub fn all_ended(&self) -> bool {
        self.held + self.blocked + self.ready + self.claimed == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the job queue: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("the job queue: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("the job queue: {0}")]
    Build(String),
    /// The job is no longer this runner's: its lease ran out and it went
    /// back to the queue (another runner may hold it now). Nothing of the
    /// completion was written.
    #[error("job {0} is no longer held by this runner: its lease ran out")]
    LeaseLost(JobKey),
    /// A node named as needed is not a node of the environment.
    #[error("job {job} needs `{needed}`, which is not a job of its environment")]
    UnknownNeed { job: JobKey, needed: String },
}

/// The work queue of one database. See the module documentation.
#[derive(Clone)]
pub struct JobQueue {
    pool: Pool,
}

impl JobQueue {
    /// The queue of the database at `url`, whose schema is already current
    /// (a [`crate::PostgresStore`] on it migrates it).
    pub fn connect(url: &str) -> Result<JobQueue, QueueError> {
        let crate::tls::Address { config, tls } = crate::tls::address(url).map_err(QueueError::Build)?;
        let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(8).build().map_err(|e| QueueError::Build(e.to_string()))?;
        Ok(JobQueue { pool })
    }

    /// Puts one environment of a run in the queue: each node with the
    /// nodes (of the same environment) it needs. `open`: its jobs may start
    /// now (else they are `held` until [`JobQueue::open`]).
    pub async fn enqueue(&self, run_id: &str, environment: &str, nodes: &[(String, Vec<String>)], open: bool) -> Result<(), QueueError> {
        let names: std::collections::HashSet<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
        let (mut node_col, mut waiting, mut states) = (Vec::new(), Vec::new(), Vec::new());
        let (mut needed, mut needing) = (Vec::new(), Vec::new());
        for (node, needs) in nodes {
            for need in needs {
                if !names.contains(need.as_str()) {
                    return Err(QueueError::UnknownNeed { job: JobKey::new(run_id, environment, node), needed: need.clone() });
                }
                needed.push(need.as_str());
                needing.push(node.as_str());
            }
            node_col.push(node.as_str());
            waiting.push(needs.len() as i32);
            states.push(match (open, needs.is_empty()) {
                (false, _) => "held",
                (true, true) => "ready",
                (true, false) => "blocked",
            });
        }
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        txn.execute(
            "INSERT INTO job_queue (run_id, environment, node, state, waiting_on) \
             SELECT $1, $2, n, s, w FROM unnest($3::text[], $4::text[], $5::int[]) AS t(n, s, w)",
            &[&run_id, &environment, &node_col, &states, &waiting],
        )
        .await?;
        txn.execute(
            "INSERT INTO job_edges (run_id, environment, needed, needing) \
             SELECT $1, $2, a, b FROM unnest($3::text[], $4::text[]) AS t(a, b)",
            &[&run_id, &environment, &needed, &needing],
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Opens an environment: its held jobs that need nothing become ready,
    /// the others blocked. Returns how many became ready.
    pub async fn open(&self, run_id: &str, environment: &str) -> Result<u64, QueueError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "UPDATE job_queue SET state = CASE WHEN waiting_on = 0 THEN 'ready' ELSE 'blocked' END \
                 WHERE run_id = $1 AND environment = $2 AND state = 'held' RETURNING state",
                &[&run_id, &environment],
            )
            .await?;
        Ok(rows.iter().filter(|r| r.get::<_, &str>(0) == "ready").count() as u64)
    }

    /// Takes up to `max` ready jobs for `runner`, each under a lease of
    /// `lease`. Two runners never take the same job.
    pub async fn claim(&self, runner: &str, max: usize, lease: Duration) -> Result<Vec<Claimed>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "UPDATE job_queue q SET state = 'claimed', runner = $1, attempts = q.attempts + 1, \
                        lease_until = now() + make_interval(secs => $2) \
                 FROM (SELECT run_id, environment, node FROM job_queue WHERE state = 'ready' \
                       ORDER BY run_id, environment, node LIMIT $3 FOR UPDATE SKIP LOCKED) AS free \
                 WHERE (q.run_id, q.environment, q.node) = (free.run_id, free.environment, free.node) \
                 RETURNING q.run_id, q.environment, q.node, q.attempts",
                &[&runner, &lease.as_secs_f64(), &(max as i64)],
            )
            .await?;
        let mut claimed: Vec<Claimed> = rows
            .iter()
            .map(|r| Claimed { job: JobKey { run_id: r.get(0), environment: r.get(1), node: r.get(2) }, attempt: r.get(3) })
            .collect();
        claimed.sort_by(|a, b| a.job.cmp(&b.job));
        Ok(claimed)
    }

    /// Renews the lease of every job `runner` holds; how many it holds.
    pub async fn renew(&self, runner: &str, lease: Duration) -> Result<u64, QueueError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE job_queue SET lease_until = now() + make_interval(secs => $2) \
                 WHERE state = 'claimed' AND runner = $1 AND lease_until >= now()",
                &[&runner, &lease.as_secs_f64()],
            )
            .await?;
        Ok(n)
    }

    /// Puts every claimed job whose lease ran out back to `ready`; the
    /// jobs it put back.
    pub async fn reap(&self) -> Result<Vec<JobKey>, QueueError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "UPDATE job_queue SET state = 'ready', runner = NULL, lease_until = NULL \
                 WHERE state = 'claimed' AND lease_until < now() RETURNING run_id, environment, node",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| JobKey { run_id: r.get(0), environment: r.get(1), node: r.get(2) }).collect())
    }

    /// Completes a job `runner` holds, and advances the DAG in the same
    /// transaction: the jobs that need it count down (and are ready at
    /// zero), or, after a failure or a rejection, are cancelled or skipped,
    /// and theirs after them. A job the runner no longer holds is
    /// [`QueueError::LeaseLost`], and nothing is written.
    pub async fn complete(&self, runner: &str, job: &JobKey, outcome: JobOutcome) -> Result<(), QueueError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let state = match outcome {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Failed { .. } => "failed",
            JobOutcome::Rejected => "skipped",
        };
        let held = txn
            .execute(
                "UPDATE job_queue SET state = $5, lease_until = NULL \
                 WHERE run_id = $1 AND environment = $2 AND node = $3 AND state = 'claimed' AND runner = $4",
                &[&job.run_id, &job.environment, &job.node, &runner, &state],
            )
            .await?;
        if held == 0 {
            return Err(QueueError::LeaseLost(job.clone()));
        }
        let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&job.run_id, &job.environment, &job.node];
        match outcome {
            JobOutcome::Succeeded => {
                txn.execute(
                    "UPDATE job_queue q SET waiting_on = q.waiting_on - 1, \
                            state = CASE WHEN q.state = 'blocked' AND q.waiting_on = 1 THEN 'ready' ELSE q.state END \
                     FROM job_edges e \
                     WHERE e.run_id = $1 AND e.environment = $2 AND e.needed = $3 \
                       AND (q.run_id, q.environment, q.node) = (e.run_id, e.environment, e.needing) \
                       AND q.state IN ('held', 'blocked')",
                    &key,
                )
                .await?;
            }
            JobOutcome::Failed { stop_all: true } => {
                txn.execute(
                    "UPDATE job_queue SET state = 'cancelled' \
                     WHERE run_id = $1 AND environment = $2 AND state IN ('held', 'blocked', 'ready')",
                    &key[..2],
                )
                .await?;
            }
            JobOutcome::Failed { stop_all: false } | JobOutcome::Rejected => {
                let after = if outcome == JobOutcome::Rejected { "skipped" } else { "cancelled" };
                txn.execute(
                    "WITH RECURSIVE after(node) AS ( \
                         SELECT needing FROM job_edges WHERE run_id = $1 AND environment = $2 AND needed = $3 \
                         UNION \
                         SELECT e.needing FROM job_edges e JOIN after a ON e.needed = a.node \
                         WHERE e.run_id = $1 AND e.environment = $2) \
                     UPDATE job_queue SET state = $4 \
                     WHERE run_id = $1 AND environment = $2 AND node IN (SELECT node FROM after) \
                       AND state IN ('held', 'blocked', 'ready')",
                    &[&job.run_id, &job.environment, &job.node, &after],
                )
                .await?;
            }
        }
        txn.commit().await?;
        Ok(())
    }

    /// Cancels every job of a run that has not started; how many.
    pub async fn cancel_run(&self, run_id: &str) -> Result<u64, QueueError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "UPDATE job_queue SET state = 'cancelled' WHERE run_id = $1 AND state IN ('held', 'blocked', 'ready')",
                &[&run_id],
            )
            .await?)
    }

    /// How many jobs of a run (of one environment, if given) are in each state.
    pub async fn counts(&self, run_id: &str, environment: Option<&str>) -> Result<QueueCounts, QueueError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT state, count(*) FROM job_queue WHERE run_id = $1 AND ($2::text IS NULL OR environment = $2) GROUP BY state",
                &[&run_id, &environment],
            )
            .await?;
        let mut c = QueueCounts::default();
        for r in rows {
            let n = r.get::<_, i64>(1) as u64;
            match r.get::<_, &str>(0) {
                "held" => c.held = n,
                "blocked" => c.blocked = n,
                "ready" => c.ready = n,
                "claimed" => c.claimed = n,
                "succeeded" => c.succeeded = n,
                "failed" => c.failed = n,
                "cancelled" => c.cancelled = n,
                _ => c.skipped = n,
            }
        }
        Ok(c)
    }

    /// Each job of a run's environment and its state, by node.
    pub async fn states(&self, run_id: &str, environment: &str) -> Result<Vec<(String, String)>, QueueError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT node, state FROM job_queue WHERE run_id = $1 AND environment = $2 ORDER BY node",
                &[&run_id, &environment],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Says that `runner` is alive and takes up to `capacity` jobs.
    pub async fn heartbeat(&self, runner: &str, capacity: u32) -> Result<(), QueueError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO runners (name, capacity, started, heartbeat) VALUES ($1, $2, now(), now()) \
                 ON CONFLICT (name) DO UPDATE SET capacity = $2, heartbeat = now()",
                &[&runner, &(capacity as i32)],
            )
            .await?;
        Ok(())
    }

    /// The runners heard from within `within`: name, capacity, and how
    /// many jobs each holds now.
    pub async fn runners(&self, within: Duration) -> Result<Vec<(String, u32, u64)>, QueueError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT r.name, r.capacity, (SELECT count(*) FROM job_queue q WHERE q.state = 'claimed' AND q.runner = r.name) \
                 FROM runners r WHERE r.heartbeat > now() - make_interval(secs => $1) ORDER BY r.name",
                &[&within.as_secs_f64()],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get::<_, i32>(1) as u32, r.get::<_, i64>(2) as u64)).collect())
    }
}
