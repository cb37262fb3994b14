//! [`JobQueue`]: the stack jobs of runs in progress, as rows that runners
//! on any machine take, run and complete. The DAG advances in the
//! database: completing a job counts down `waiting_on` of the jobs that
//! need it, in the same transaction, and a job whose count reaches zero is
//! `ready` for any runner. No process coordinates; PostgreSQL's row locks
//! do (`FOR UPDATE SKIP LOCKED`: two runners never take the same job).
//!
//! A job's states: `held` (its environment is not open yet), `blocked`
//! (waiting for the jobs it needs), `ready`, `claimed` (a runner holds it
//! under a lease), `gated` (done, its `gate = "after"` waiting for a
//! person), then `succeeded`, `failed`, `rejected` (its gate was),
//! `cancelled` (a job it needs failed, or the run was cancelled) or
//! `skipped` (a gate before it was rejected). A claimed job whose lease runs out (its runner died, or lost
//! the database) goes back to `ready` ([`JobQueue::reap`]); the runner
//! that takes it next resumes it, and the one that lost it can no longer
//! complete it ([`QueueError::LeaseLost`]).
//!
//! A run's environments are taken in order, one open at a time
//! (`queue_environments`): the completion that ends an environment's last
//! job opens the next one, in the same transaction, or leaves it
//! `waiting` for a person's decision ([`JobQueue::decide`]) when it has
//! `approval`; an environment that did not succeed skips every later one.
//!
//! Times are the database's (`now()`): runners' clocks never compare.

use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// A run of this many jobs or more has the queue's statistics brought up
/// to date as it is enqueued.
const ANALYZE_AT: usize = 500;

/// One job: a node of an environment of a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub run_id: String,
    pub environment: String,
    pub node: String,
}

impl JobKey {
    pub fn new(run_id: &str, environment: &str, node: &str) -> JobKey {
        JobKey {
            run_id: run_id.into(),
            environment: environment.into(),
            node: node.into(),
        }
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
    /// Done, and its node has `gate = "after"` and changed something: what
    /// needs it waits for [`JobQueue::decide_node`].
    Gated,
    /// Its dependents are cancelled; with `stop_all`, every job of the
    /// environment not started yet is.
    Failed {
        stop_all: bool,
    },
    /// A gate of the job was rejected: its dependents are skipped.
    Rejected,
    /// The run or the job was cancelled before it finished: its
    /// dependents are cancelled.
    Cancelled,
}

/// One environment of a run, as [`JobQueue::enqueue_run`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEnvironment {
    pub name: String,
    /// `approval = true`: it waits for a decision before it opens.
    pub approval: bool,
    /// Jobs of it claimed at once by all runners together; 0: no limit.
    pub parallelism: usize,
    /// Each node with the nodes (of this environment) it needs, in the
    /// order the run takes them (ready jobs are claimed in it).
    pub nodes: Vec<(String, Vec<String>)>,
}

/// What a completion (or a decision) moved on: the environments that
/// ended, with how, and the one now waiting for a decision, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advanced {
    pub ended: Vec<(String, String)>,
    pub waiting: Option<String>,
    /// Every environment of the run has ended.
    pub run_ended: bool,
}

/// What [`JobQueue::complete_and_claim`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completed {
    /// What the completions moved on.
    pub advanced: Advanced,
    /// Jobs the runner no longer held (their lease ran out): nothing of
    /// them was written.
    pub lost: Vec<JobKey>,
    /// The jobs claimed next.
    pub claimed: Vec<Claimed>,
}

/// How many jobs of a run (or of one environment) are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub held: u64,
    pub blocked: u64,
    pub ready: u64,
    pub claimed: u64,
    pub gated: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub rejected: u64,
    pub cancelled: u64,
    pub skipped: u64,
}

impl QueueCounts {
    /// Whether every job has ended.
    pub fn all_ended(&self) -> bool {
        self.held + self.blocked + self.ready + self.claimed + self.gated == 0
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
    /// A decision for an environment that is not waiting for one.
    #[error("environment `{environment}` of run {run_id} is not waiting for a decision")]
    NotWaiting { run_id: String, environment: String },
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
        let crate::tls::Address { config, tls } =
            crate::tls::address(url).map_err(QueueError::Build)?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .build()
            .map_err(|e| QueueError::Build(e.to_string()))?;
        Ok(JobQueue { pool })
    }

    /// Puts a run in the queue: its environments in the order the run takes
    /// them, each job held; then opens the first (or leaves it waiting
    /// for a decision).
    pub async fn enqueue_run(
        &self,
        run_id: &str,
        environments: &[QueuedEnvironment],
    ) -> Result<Advanced, QueueError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        for (position, env) in environments.iter().enumerate() {
            exec(&txn,
                "INSERT INTO queue_environments (run_id, environment, position, approval, parallelism, state) \
                 VALUES ($1, $2, $3, $4, $5, 'pending')",
                &[&run_id, &env.name, &(position as i32), &env.approval, &(env.parallelism.min(i32::MAX as usize) as i32)],
            )
            .await?;
            insert_jobs(&txn, run_id, &env.name, &env.nodes).await?;
        }
        let advanced = advance(&txn, run_id).await?;
        txn.commit().await?;
        // The planner's idea of the queue must know a run this large is in
        // it: with the statistics of a queue of a few jobs it scans the
        // whole table on every claim and completion (10,000 jobs: 50 ms
        // each, until autovacuum gets to it).
        let jobs: usize = environments.iter().map(|e| e.nodes.len()).sum();
        if jobs >= ANALYZE_AT {
            client.batch_execute("ANALYZE job_queue, job_edges").await?;
        }
        Ok(advanced)
    }

    /// Decides the environment waiting for approval: approved, it opens;
    /// rejected, it and every later one are skipped.
    pub async fn decide(
        &self,
        run_id: &str,
        environment: &str,
        approved: bool,
    ) -> Result<Advanced, QueueError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let state = if approved { "open" } else { "skipped" };
        let decided = exec(&txn,
                "UPDATE queue_environments SET state = $3 WHERE run_id = $1 AND environment = $2 AND state = 'waiting'",
                &[&run_id, &environment, &state],
            )
            .await?;
        if decided == 0 {
            return Err(QueueError::NotWaiting {
                run_id: run_id.into(),
                environment: environment.into(),
            });
        }
        let mut advanced = Advanced::default();
        if approved {
            open_jobs(&txn, run_id, environment).await?;
        } else {
            exec(&txn,
                "UPDATE job_queue SET state = 'skipped' WHERE run_id = $1 AND environment = $2 AND state = 'held'",
                &[&run_id, &environment],
            )
            .await?;
            advanced
                .ended
                .push((environment.to_string(), "skipped".into()));
        }
        let more = advance(&txn, run_id).await?;
        advanced.ended.extend(more.ended);
        advanced.waiting = more.waiting;
        advanced.run_ended = more.run_ended;
        txn.commit().await?;
        Ok(advanced)
    }

    /// The environments of a run and their states, in the run's order.
    pub async fn environments(&self, run_id: &str) -> Result<Vec<(String, String)>, QueueError> {
        let client = self.pool.get().await?;
        let rows = rows(
            &client,
            "SELECT environment, state FROM queue_environments WHERE run_id = $1 ORDER BY position",
            &[&run_id],
        )
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Takes up to `max` ready jobs for `runner`, each under a lease of
    /// `lease`, never more of one environment than its `parallelism` lets
    /// all runners hold at once. Two runners never take the same job.
    pub async fn claim(
        &self,
        runner: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, QueueError> {
        self.claim_of(runner, max, lease, None).await
    }

    /// [`JobQueue::claim`], of run `only_run` alone if given.
    pub async fn claim_of(
        &self,
        runner: &str,
        max: usize,
        lease: Duration,
        only_run: Option<&str>,
    ) -> Result<Vec<Claimed>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let claimed = claim_in(&txn, runner, max, lease, only_run).await?;
        txn.commit().await?;
        Ok(claimed)
    }

    /// Renews the lease of every job `runner` holds; how many it holds.
    pub async fn renew(&self, runner: &str, lease: Duration) -> Result<u64, QueueError> {
        let client = self.pool.get().await?;
        let n = exec(
            &client,
            "UPDATE job_queue SET lease_until = now() + make_interval(secs => $2) \
                 WHERE state = 'claimed' AND runner = $1 AND lease_until >= now()",
            &[&runner, &lease.as_secs_f64()],
        )
        .await?;
        Ok(n)
    }

    /// Gives jobs `runner` holds back to the queue, `ready` for any runner
    /// (the one that takes one next runs it as a job taken before).
    pub async fn release(&self, runner: &str, jobs: &[JobKey]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await?;
        let (r, e, n): (Vec<&str>, Vec<&str>, Vec<&str>) = {
            let mut cols = (Vec::new(), Vec::new(), Vec::new());
            for j in jobs {
                cols.0.push(j.run_id.as_str());
                cols.1.push(j.environment.as_str());
                cols.2.push(j.node.as_str());
            }
            cols
        };
        exec(
            &client,
            "UPDATE job_queue q SET state = 'ready', runner = NULL, lease_until = NULL \
             FROM unnest($1::text[], $2::text[], $3::text[]) AS d(r, e, n) \
             WHERE q.run_id = d.r AND q.environment = d.e AND q.node = d.n AND q.state = 'claimed' AND q.runner = $4",
            &[&r, &e, &n, &runner],
        )
        .await?;
        Ok(())
    }

    /// Puts every claimed job whose lease ran out back to `ready`; the
    /// jobs it put back.
    pub async fn reap(&self) -> Result<Vec<JobKey>, QueueError> {
        let client = self.pool.get().await?;
        let rows = rows(&client,
                "UPDATE job_queue SET state = 'ready', runner = NULL, lease_until = NULL \
                 WHERE state = 'claimed' AND lease_until < now() RETURNING run_id, environment, node",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| JobKey {
                run_id: r.get(0),
                environment: r.get(1),
                node: r.get(2),
            })
            .collect())
    }

    /// Completes a job `runner` holds, and advances the DAG in the same
    /// transaction: the jobs that need it count down (and are ready at
    /// zero), or, after a failure or a rejection, are cancelled or skipped,
    /// and theirs after them. A job the runner no longer holds is
    /// [`QueueError::LeaseLost`], and nothing is written.
    pub async fn complete(
        &self,
        runner: &str,
        job: &JobKey,
        outcome: JobOutcome,
    ) -> Result<Advanced, QueueError> {
        let done = self
            .complete_and_claim(runner, &[(job.clone(), outcome)], 0, Duration::ZERO, None)
            .await?;
        match done.lost.first() {
            Some(lost) => Err(QueueError::LeaseLost(lost.clone())),
            None => Ok(done.advanced),
        }
    }

    /// Completes the jobs `done` (each as [`JobQueue::complete`] does; one
    /// the runner no longer holds is left as it is, and listed as lost),
    /// then claims up to `room` more, in one transaction: a runner's jobs
    /// that ended together cost one round of the database, not one each.
    pub async fn complete_and_claim(
        &self,
        runner: &str,
        done: &[(JobKey, JobOutcome)],
        room: usize,
        lease: Duration,
        only_run: Option<&str>,
    ) -> Result<Completed, QueueError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .try_complete_and_claim(runner, done, room, lease, only_run)
                .await
            {
                // Two completions counting down the same jobs in another
                // order: PostgreSQL ends one of them, which goes again.
                Err(QueueError::Db(e))
                    if tries < 5
                        && e.code()
                            == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }

    async fn try_complete_and_claim(
        &self,
        runner: &str,
        done: &[(JobKey, JobOutcome)],
        room: usize,
        lease: Duration,
        only_run: Option<&str>,
    ) -> Result<Completed, QueueError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let mut completed = Completed::default();
        // Every job ended, in one statement: the ones still this runner's.
        let (mut r, mut e, mut n, mut st) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (job, outcome) in done {
            r.push(job.run_id.as_str());
            e.push(job.environment.as_str());
            n.push(job.node.as_str());
            st.push(match outcome {
                JobOutcome::Succeeded => "succeeded",
                JobOutcome::Gated => "gated",
                JobOutcome::Failed { .. } => "failed",
                JobOutcome::Rejected => "rejected",
                JobOutcome::Cancelled => "cancelled",
            });
        }
        let held: std::collections::HashSet<JobKey> = if done.is_empty() {
            Default::default()
        } else {
            rows(
                &txn,
                "UPDATE job_queue q SET state = d.s, lease_until = NULL \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS d(r, e, n, s) \
                 WHERE q.run_id = d.r AND q.environment = d.e AND q.node = d.n AND q.state = 'claimed' AND q.runner = $5 \
                   AND q.run_id = ANY($1) AND q.environment = ANY($2) AND q.node = ANY($3) \
                 RETURNING q.run_id, q.environment, q.node",
                &[&r, &e, &n, &st, &runner],
            )
            .await?
            .iter()
            .map(|row| JobKey::new(row.get(0), row.get(1), row.get(2)))
            .collect()
        };
        let mut runs: Vec<&str> = Vec::new();
        // What needed the jobs that succeeded counts down, in one statement.
        let (mut sr, mut se, mut sn) = (Vec::new(), Vec::new(), Vec::new());
        for (job, outcome) in done {
            if !held.contains(job) {
                completed.lost.push(job.clone());
                continue;
            }
            if !runs.contains(&job.run_id.as_str()) {
                runs.push(&job.run_id);
            }
            match outcome {
                JobOutcome::Succeeded => {
                    sr.push(job.run_id.as_str());
                    se.push(job.environment.as_str());
                    sn.push(job.node.as_str());
                }
                other => follow(&txn, job, *other).await?,
            }
        }
        if !sr.is_empty() {
            exec(
                &txn,
                "UPDATE job_queue q SET waiting_on = q.waiting_on - c.n, \
                        state = CASE WHEN q.state = 'blocked' AND q.waiting_on = c.n THEN 'ready' ELSE q.state END \
                 FROM (SELECT e.run_id, e.environment, e.needing, count(*) AS n \
                       FROM job_edges e JOIN unnest($1::text[], $2::text[], $3::text[]) AS d(r, env, node) \
                         ON e.run_id = d.r AND e.environment = d.env AND e.needed = d.node \
                       WHERE e.run_id = ANY($1) AND e.environment = ANY($2) AND e.needed = ANY($3) \
                       GROUP BY e.run_id, e.environment, e.needing) AS c \
                 WHERE (q.run_id, q.environment, q.node) = (c.run_id, c.environment, c.needing) \
                   AND q.state IN ('held', 'blocked')",
                &[&sr, &se, &sn],
            )
            .await?;
        }
        for run in runs {
            let advanced = advance(&txn, run).await?;
            completed.advanced.ended.extend(advanced.ended);
            completed.advanced.waiting = completed.advanced.waiting.or(advanced.waiting);
            completed.advanced.run_ended |= advanced.run_ended;
        }
        completed.claimed = claim_in(&txn, runner, room, lease, only_run).await?;
        txn.commit().await?;
        Ok(completed)
    }

    /// Decides the `gate = "after"` of a gated job: approved, it succeeded
    /// and what needs it counts down; rejected, what needs it is skipped.
    pub async fn decide_node(&self, job: &JobKey, approved: bool) -> Result<Advanced, QueueError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let state = if approved { "succeeded" } else { "rejected" };
        let decided = exec(&txn,
                "UPDATE job_queue SET state = $4 WHERE run_id = $1 AND environment = $2 AND node = $3 AND state = 'gated'",
                &[&job.run_id, &job.environment, &job.node, &state],
            )
            .await?;
        if decided == 0 {
            return Err(QueueError::NotWaiting {
                run_id: job.run_id.clone(),
                environment: format!("{}/{}", job.environment, job.node),
            });
        }
        follow(
            &txn,
            job,
            if approved {
                JobOutcome::Succeeded
            } else {
                JobOutcome::Rejected
            },
        )
        .await?;
        let advanced = advance(&txn, &job.run_id).await?;
        txn.commit().await?;
        Ok(advanced)
    }
}

/// What follows a job's end for the jobs that need it: a count-down (and
/// ready at zero); nothing yet while it is gated; after a failure, they
/// and theirs are cancelled (with `stop_all`, every job of the environment
/// not started is); after a rejection, skipped.
async fn follow(
    txn: &deadpool_postgres::Transaction<'_>,
    job: &JobKey,
    outcome: JobOutcome,
) -> Result<(), QueueError> {
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&job.run_id, &job.environment, &job.node];
    match outcome {
        JobOutcome::Gated => {}
        JobOutcome::Succeeded => {
            exec(txn,
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
            exec(
                txn,
                "UPDATE job_queue SET state = 'cancelled' \
                 WHERE run_id = $1 AND environment = $2 AND state IN ('held', 'blocked', 'ready')",
                &key[..2],
            )
            .await?;
        }
        JobOutcome::Failed { stop_all: false } | JobOutcome::Rejected | JobOutcome::Cancelled => {
            let after = if outcome == JobOutcome::Rejected {
                "skipped"
            } else {
                "cancelled"
            };
            exec(txn,
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
    Ok(())
}

impl JobQueue {
    /// Cancels every job of a run that has not started; how many.
    pub async fn cancel_run(&self, run_id: &str) -> Result<u64, QueueError> {
        self.stop_run(run_id, None).await
    }

    /// A runner could not write the run's records: the run stops as if
    /// cancelled, and fails with `failure` (see [`JobQueue::run_failure`]).
    pub async fn fail_run(&self, run_id: &str, failure: &str) -> Result<u64, QueueError> {
        self.stop_run(run_id, Some(failure)).await
    }

    /// Why the run failed on a runner, if it did.
    pub async fn run_failure(&self, run_id: &str) -> Result<Option<String>, QueueError> {
        let client = self.pool.get().await?;
        let row = opt(
            &client,
            "SELECT failure FROM queue_cancels WHERE run_id = $1",
            &[&run_id],
        )
        .await?;
        Ok(row.and_then(|r| r.get(0)))
    }

    async fn stop_run(&self, run_id: &str, failure: Option<&str>) -> Result<u64, QueueError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let n = exec(&txn,
                "UPDATE job_queue SET state = 'cancelled' WHERE run_id = $1 AND state IN ('held', 'blocked', 'ready')",
                &[&run_id],
            )
            .await?;
        exec(&txn,
            "INSERT INTO queue_cancels (run_id, failure) VALUES ($1, $2) \
             ON CONFLICT (run_id) DO UPDATE SET failure = coalesce(queue_cancels.failure, EXCLUDED.failure)",
            &[&run_id, &failure],
        )
        .await?;
        // Environments not begun are cancelled; the open one ends once its
        // jobs in flight do.
        exec(&txn,
            "UPDATE queue_environments SET state = 'cancelled' WHERE run_id = $1 AND state IN ('pending', 'waiting')",
            &[&run_id],
        )
        .await?;
        advance(&txn, run_id).await?;
        txn.commit().await?;
        Ok(n)
    }

    /// How many jobs of a run (of one environment, if given) are in each state.
    pub async fn counts(
        &self,
        run_id: &str,
        environment: Option<&str>,
    ) -> Result<QueueCounts, QueueError> {
        let client = self.pool.get().await?;
        let rows = rows(&client,
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
                "gated" => c.gated = n,
                "succeeded" => c.succeeded = n,
                "failed" => c.failed = n,
                "rejected" => c.rejected = n,
                "cancelled" => c.cancelled = n,
                _ => c.skipped = n,
            }
        }
        Ok(c)
    }

    /// Each job of a run's environment and its state, by node.
    pub async fn states(
        &self,
        run_id: &str,
        environment: &str,
    ) -> Result<Vec<(String, String)>, QueueError> {
        let client = self.pool.get().await?;
        let rows = rows(&client,
                "SELECT node, state FROM job_queue WHERE run_id = $1 AND environment = $2 ORDER BY node",
                &[&run_id, &environment],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Says that `runner` is alive and takes up to `capacity` jobs.
    pub async fn heartbeat(&self, runner: &str, capacity: u32) -> Result<(), QueueError> {
        let client = self.pool.get().await?;
        exec(&client,
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
        let rows = rows(&client,
                "SELECT r.name, r.capacity, (SELECT count(*) FROM job_queue q WHERE q.state = 'claimed' AND q.runner = r.name) \
                 FROM runners r WHERE r.heartbeat > now() - make_interval(secs => $1) ORDER BY r.name",
                &[&within.as_secs_f64()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get::<_, i32>(1) as u32,
                    r.get::<_, i64>(2) as u64,
                )
            })
            .collect())
    }
}

/// A gate a runner's job waits at, posted for the run's owner to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedGate {
    pub job: JobKey,
    /// The gate as the runner describes it (the runtime's JSON).
    pub gate: String,
}

impl JobQueue {
    /// The jobs of a run that ended (or are done and `gated`) since the
    /// last time this was asked, with their states: each end is told once.
    /// Only the run's owner asks.
    pub async fn tell(&self, run_id: &str) -> Result<Vec<(JobKey, String)>, QueueError> {
        let client = self.pool.get().await?;
        let rows = rows(
            &client,
            "UPDATE job_queue SET told = state WHERE run_id = $1 \
               AND state IN ('gated', 'succeeded', 'failed', 'rejected', 'cancelled', 'skipped') \
               AND told IS DISTINCT FROM state \
             RETURNING environment, node, state",
            &[&run_id],
        )
        .await?;
        let mut told: Vec<(JobKey, String)> =
            rows.iter().map(|r| (JobKey::new(run_id, r.get(0), r.get(1)), r.get(2))).collect();
        told.sort();
        Ok(told)
    }

    /// Whether the run was cancelled ([`JobQueue::cancel_run`]): what its
    /// runners hold stops before its next operation.
    pub async fn is_cancelled(&self, run_id: &str) -> Result<bool, QueueError> {
        let client = self.pool.get().await?;
        let row = one(
            &client,
            "SELECT count(*) FROM queue_cancels WHERE run_id = $1",
            &[&run_id],
        )
        .await?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    /// Forgets a run that has ended: its jobs, environments, edges and gates.
    pub async fn forget_run(&self, run_id: &str) -> Result<(), QueueError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        for table in [
            "job_queue",
            "job_edges",
            "queue_environments",
            "gate_requests",
            "queue_cancels",
        ] {
            exec(
                &txn,
                &format!("DELETE FROM {table} WHERE run_id = $1"),
                &[&run_id],
            )
            .await?;
        }
        // An answer is its asker's to read (the run may have ended on it);
        // what nobody asks for any more goes: unanswered ones, and answers
        // an asker gave up on.
        exec(&txn,
            "DELETE FROM run_requests WHERE (run_id = $1 AND answer IS NULL) OR posted < now() - interval '1 hour'",
            &[&run_id],
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Posts the gate `job` waits at (again, unanswered, if it was before).
    pub async fn post_gate(&self, job: &JobKey, gate: &str) -> Result<(), QueueError> {
        let client = self.pool.get().await?;
        exec(&client,
                "INSERT INTO gate_requests (run_id, environment, node, gate, answer) VALUES ($1, $2, $3, $4::text::json, NULL) \
                 ON CONFLICT (run_id, environment, node) DO UPDATE SET gate = EXCLUDED.gate, answer = NULL",
                &[&job.run_id, &job.environment, &job.node, &gate],
            )
            .await?;
        Ok(())
    }

    /// The gates of a run that wait for an answer.
    pub async fn posted_gates(&self, run_id: &str) -> Result<Vec<PostedGate>, QueueError> {
        let client = self.pool.get().await?;
        let rows = rows(&client,
                "SELECT environment, node, gate::text FROM gate_requests WHERE run_id = $1 AND answer IS NULL \
                 ORDER BY environment, node",
                &[&run_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| PostedGate {
                job: JobKey::new(run_id, r.get(0), r.get(1)),
                gate: r.get(2),
            })
            .collect())
    }

    /// Answers the gate `job` waits at (the runtime's JSON).
    pub async fn answer_gate(&self, job: &JobKey, answer: &str) -> Result<(), QueueError> {
        let client = self.pool.get().await?;
        exec(&client,
                "UPDATE gate_requests SET answer = $4::text::json WHERE run_id = $1 AND environment = $2 AND node = $3",
                &[&job.run_id, &job.environment, &job.node, &answer],
            )
            .await?;
        Ok(())
    }

    /// The answer to the gate `job` waits at, once there is one; the
    /// request is gone once answered and read.
    pub async fn take_answer(&self, job: &JobKey) -> Result<Option<String>, QueueError> {
        let client = self.pool.get().await?;
        let row = opt(&client,
                "DELETE FROM gate_requests WHERE run_id = $1 AND environment = $2 AND node = $3 AND answer IS NOT NULL \
                 RETURNING answer::text",
                &[&job.run_id, &job.environment, &job.node],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }
}

/// A request for a run in progress, posted for its owner to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedRequest {
    pub id: i64,
    /// The request (the runtime's JSON).
    pub request: String,
    pub decider: String,
    pub role: Option<String>,
}

impl JobQueue {
    /// Posts a request (the runtime's JSON) for run `run_id`'s owner; its id.
    pub async fn post_request(
        &self,
        run_id: &str,
        request: &str,
        decider: &str,
        role: Option<&str>,
    ) -> Result<i64, QueueError> {
        let client = self.pool.get().await?;
        let row = one(&client,
                "INSERT INTO run_requests (run_id, request, decider, role) VALUES ($1, $2::text::json, $3, $4) RETURNING id",
                &[&run_id, &request, &decider, &role],
            )
            .await?;
        Ok(row.get(0))
    }

    /// The requests for run `run_id` not answered yet, oldest first.
    pub async fn open_requests(&self, run_id: &str) -> Result<Vec<PostedRequest>, QueueError> {
        let client = self.pool.get().await?;
        let rows = rows(&client,
                "SELECT id, request::text, decider, role FROM run_requests WHERE run_id = $1 AND answer IS NULL ORDER BY id",
                &[&run_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| PostedRequest {
                id: r.get(0),
                request: r.get(1),
                decider: r.get(2),
                role: r.get(3),
            })
            .collect())
    }

    /// Answers request `id` (the runtime's JSON).
    pub async fn answer_request(&self, id: i64, answer: &str) -> Result<(), QueueError> {
        let client = self.pool.get().await?;
        exec(
            &client,
            "UPDATE run_requests SET answer = $2::text::json WHERE id = $1",
            &[&id, &answer],
        )
        .await?;
        Ok(())
    }

    /// The answer to request `id`, once there is one; the request is gone
    /// once its answer is read.
    pub async fn take_request_answer(&self, id: i64) -> Result<Option<String>, QueueError> {
        let client = self.pool.get().await?;
        let row = opt(
            &client,
            "DELETE FROM run_requests WHERE id = $1 AND answer IS NOT NULL RETURNING answer::text",
            &[&id],
        )
        .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Withdraws request `id`, unanswered (its asker gave up).
    pub async fn withdraw_request(&self, id: i64) -> Result<(), QueueError> {
        let client = self.pool.get().await?;
        exec(&client, "DELETE FROM run_requests WHERE id = $1", &[&id]).await?;
        Ok(())
    }
}

/// [`JobQueue::claim_of`] in `txn`.
async fn claim_in(
    txn: &deadpool_postgres::Transaction<'_>,
    runner: &str,
    max: usize,
    lease: Duration,
    only_run: Option<&str>,
) -> Result<Vec<Claimed>, QueueError> {
    if max == 0 {
        return Ok(Vec::new());
    }
    // The open environments with work, locked in one order: two
    // claimers of one environment count its claimed jobs one after the
    // other. A claimer waits for another's (or a completion's) short
    // transaction rather than skip the environment: skipped, it would
    // find nothing and sleep with free slots.
    let open = rows(
        txn,
        "SELECT e.run_id, e.environment, e.parallelism FROM queue_environments e \
             WHERE e.state = 'open' AND ($1::text IS NULL OR e.run_id = $1) \
               AND EXISTS (SELECT 1 FROM job_queue q WHERE q.run_id = e.run_id \
                   AND q.environment = e.environment AND q.state = 'ready') \
             ORDER BY e.run_id, e.position FOR UPDATE OF e",
        &[&only_run],
    )
    .await?;
    let mut claimed = Vec::new();
    for row in open {
        let left = max - claimed.len();
        if left == 0 {
            break;
        }
        let (run_id, environment, parallelism): (String, String, i32) =
            (row.get(0), row.get(1), row.get(2));
        let room = match parallelism {
            0 => left,
            p => {
                // A statement of its own, so that it sees what a claimer
                // it waited for committed.
                let busy = one(
                        txn,
                        "SELECT count(*) FROM job_queue WHERE run_id = $1 AND environment = $2 AND state = 'claimed'",
                        &[&run_id, &environment],
                    )
                    .await?;
                (p as i64 - busy.get::<_, i64>(0)).clamp(0, left as i64) as usize
            }
        };
        if room == 0 {
            continue;
        }
        let rows = rows(txn,
                    // A locking CTE is evaluated once: never rescanned for
                    // each row updated, so it takes at most `room` rows.
                    "WITH free AS (SELECT node FROM job_queue WHERE run_id = $4 AND environment = $5 AND state = 'ready' \
                                   ORDER BY position LIMIT $3 FOR UPDATE SKIP LOCKED) \
                     UPDATE job_queue q SET state = 'claimed', runner = $1, attempts = q.attempts + 1, \
                            lease_until = now() + make_interval(secs => $2) \
                     FROM free WHERE q.run_id = $4 AND q.environment = $5 AND q.node = free.node \
                     RETURNING q.node, q.attempts",
                    &[&runner, &lease.as_secs_f64(), &(room as i64), &run_id, &environment],
                )
                .await?;
        claimed.extend(rows.iter().map(|r| Claimed {
            job: JobKey::new(&run_id, &environment, r.get(0)),
            attempt: r.get(1),
        }));
    }
    claimed.sort_by(|a, b| a.job.cmp(&b.job));
    Ok(claimed)
}

/// Inserts an environment's jobs (held) and the edges between them.
async fn insert_jobs(
    txn: &deadpool_postgres::Transaction<'_>,
    run_id: &str,
    environment: &str,
    nodes: &[(String, Vec<String>)],
) -> Result<(), QueueError> {
    let names: std::collections::HashSet<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
    let (mut node_col, mut waiting, mut position) = (Vec::new(), Vec::new(), Vec::new());
    let (mut needed, mut needing) = (Vec::new(), Vec::new());
    for (node, needs) in nodes {
        for need in needs {
            if !names.contains(need.as_str()) {
                return Err(QueueError::UnknownNeed {
                    job: JobKey::new(run_id, environment, node),
                    needed: need.clone(),
                });
            }
            needed.push(need.as_str());
            needing.push(node.as_str());
        }
        node_col.push(node.as_str());
        waiting.push(needs.len() as i32);
        position.push(position.len() as i32);
    }
    exec(txn,
        "INSERT INTO job_queue (run_id, environment, node, state, waiting_on, position) \
         SELECT $1, $2, n, 'held', w, p FROM unnest($3::text[], $4::int[], $5::int[]) AS t(n, w, p)",
        &[&run_id, &environment, &node_col, &waiting, &position],
    )
    .await?;
    exec(
        txn,
        "INSERT INTO job_edges (run_id, environment, needed, needing) \
         SELECT $1, $2, a, b FROM unnest($3::text[], $4::text[]) AS t(a, b)",
        &[&run_id, &environment, &needed, &needing],
    )
    .await?;
    Ok(())
}

/// An environment's held jobs become ready (needing nothing) or blocked.
async fn open_jobs(
    txn: &deadpool_postgres::Transaction<'_>,
    run_id: &str,
    environment: &str,
) -> Result<(), QueueError> {
    exec(
        txn,
        "UPDATE job_queue SET state = CASE WHEN waiting_on = 0 THEN 'ready' ELSE 'blocked' END \
         WHERE run_id = $1 AND environment = $2 AND state = 'held'",
        &[&run_id, &environment],
    )
    .await?;
    Ok(())
}

/// Moves a run's environments on as far as they go now: the open one
/// ends once none of its jobs is left to run (succeeded if every one did,
/// else failed, and then every later one is skipped); the next pending
/// one opens, or waits for a decision when it has `approval`.
async fn advance(
    txn: &deadpool_postgres::Transaction<'_>,
    run_id: &str,
) -> Result<Advanced, QueueError> {
    // One advance of a run at a time: two runners ending the last two
    // jobs of an environment at once must not both open the next.
    exec(
        txn,
        "SELECT 1 FROM queue_environments WHERE run_id = $1 ORDER BY position FOR UPDATE",
        &[&run_id],
    )
    .await?;
    let mut advanced = Advanced::default();
    loop {
        let rows = rows(txn, "SELECT environment, approval, state FROM queue_environments WHERE run_id = $1 ORDER BY position", &[&run_id])
            .await?;
        let envs: Vec<(String, bool, String)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let Some(at) = envs
            .iter()
            .position(|(_, _, state)| matches!(state.as_str(), "pending" | "waiting" | "open"))
        else {
            advanced.run_ended = true;
            return Ok(advanced);
        };
        let (env, approval, state) = &envs[at];
        // An environment before it that did not succeed: it and every later one are skipped.
        if envs[..at].iter().any(|(_, _, s)| s != "succeeded") {
            exec(txn,
                "UPDATE queue_environments SET state = 'skipped' WHERE run_id = $1 AND position >= $2 AND state IN ('pending', 'waiting')",
                &[&run_id, &(at as i32)],
            )
            .await?;
            exec(
                txn,
                "UPDATE job_queue SET state = 'skipped' WHERE run_id = $1 AND state = 'held'",
                &[&run_id],
            )
            .await?;
            for (later, _, s) in &envs[at..] {
                if s != "open" {
                    advanced.ended.push((later.clone(), "skipped".into()));
                }
            }
            if state == "open" {
                // Jobs in flight there end on their own; it ends with them.
                return Ok(advanced);
            }
            continue;
        }
        match state.as_str() {
            "pending" if *approval => {
                exec(txn,
                    "UPDATE queue_environments SET state = 'waiting' WHERE run_id = $1 AND environment = $2",
                    &[&run_id, env],
                )
                .await?;
                advanced.waiting = Some(env.clone());
                return Ok(advanced);
            }
            "pending" => {
                exec(txn, "UPDATE queue_environments SET state = 'open' WHERE run_id = $1 AND environment = $2", &[&run_id, env])
                    .await?;
                open_jobs(txn, run_id, env).await?;
            }
            "waiting" => {
                advanced.waiting = Some(env.clone());
                return Ok(advanced);
            }
            _ => {
                // Whether any job is left (one row of the index of jobs not
                // ended: a completion costs the same at the first job of
                // 10,000 as at the last), then, once none is, whether all
                // succeeded.
                let left = one(
                    txn,
                    "SELECT EXISTS (SELECT 1 FROM job_queue WHERE run_id = $1 AND environment = $2 \
                                    AND state IN ('held', 'blocked', 'ready', 'claimed', 'gated'))",
                    &[&run_id, env],
                )
                .await?;
                if left.get::<_, bool>(0) {
                    return Ok(advanced);
                }
                let not_succeeded = one(
                    txn,
                    "SELECT EXISTS (SELECT 1 FROM job_queue WHERE run_id = $1 AND environment = $2 AND state <> 'succeeded')",
                    &[&run_id, env],
                )
                .await?;
                let ended = if not_succeeded.get::<_, bool>(0) {
                    "failed"
                } else {
                    "succeeded"
                };
                exec(txn,
                    "UPDATE queue_environments SET state = $3 WHERE run_id = $1 AND environment = $2",
                    &[&run_id, env, &ended],
                )
                .await?;
                advanced.ended.push((env.clone(), ended.into()));
            }
        }
    }
}

/// Runs `sql`, prepared once per connection (a statement's text is parsed
/// and planned once, not on every call).
async fn exec(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, QueueError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.execute(&statement, params).await?)
}

/// The rows of `sql`, prepared once per connection.
async fn rows(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, QueueError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query(&statement, params).await?)
}

/// The one row of `sql`, prepared once per connection.
async fn one(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, QueueError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_one(&statement, params).await?)
}

/// The row of `sql` if there is one, prepared once per connection.
async fn opt(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, QueueError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&statement, params).await?)
}
