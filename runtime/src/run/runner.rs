//! [`Runner`]: a process that takes stack jobs of runs on a shared
//! database from its job queue, runs each with its own plugin host, and
//! completes it; the queue advances the run's graph as it does. Runners
//! are interchangeable: any one takes any ready job, on any machine.
//!
//! What a job needs comes from the database: the run's snapshot (its
//! pipeline source, vars, settings and plugin components) is compiled once
//! per run; the outputs of what the job needs are read from their
//! resources' records, which the runners that applied them wrote (and put
//! on disk) before they completed. Sensitive vars are not in the state: a
//! runner is given them (`STACKPIPE_VAR_<name>`), and their keyed hashes
//! are checked against the run's.
//!
//! Every job is held under a lease the runner renews. A runner that dies
//! loses its leases; its jobs go back to the queue, and the runner that
//! takes one next runs it as a resume would: it reads what is really
//! there before any apply (the job's intent was journaled before it ran).
//! A runner that lost a lease drops what it was about to complete.
//!
//! Gates mid-job (a policy's approval, `pause_before_apply`) are posted
//! for the run's owner, which holds the run's gates (see
//! [`super::on_runners`]), and answered through the database.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stackpipe_dsl::OnFailure;
use stackpipe_state_postgres::{Claimed, JobKey, JobOutcome, JobQueue};
use tokio::sync::OnceCell;
use tokio::task::JoinSet;

use super::cancel::Cancels;
use super::env_run::{EnvRun, Mode};
use super::events::Events;
use super::execution::{parse_sets, RunShared};
use super::gate::{AutoApprove, Gates};
use super::journal::RunJournal;
use super::resume::Resume;
use super::scheduler::{NodeEnd, Slot};
use super::selection::{EnvironmentSelection, Subject};
use super::snapshot::RunSource;
use super::stack_job::{unstarted_record, StackJob};
use super::StopSignal;
use crate::plugin::PluginHost;
use crate::state::{RunKind, StateStore, Status, Write};

/// How long jobs that end at about the same time wait for each other to
/// be completed together.
const GATHER: Duration = Duration::from_millis(2);

/// How a runner works.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Its name in the queue: unique among the runners of one database.
    pub name: String,
    /// The most jobs it holds at once.
    pub capacity: usize,
    /// How long a job stays this runner's without a renewal.
    pub lease: Duration,
    /// How long it waits before it looks for work again when there was none.
    pub poll: Duration,
    /// Only jobs of this run (a `deploy` working as its own run's runner).
    pub only_run: Option<String>,
    /// Values of sensitive vars (`STACKPIPE_VAR_<name>`), by name.
    pub vars: Vec<(String, String)>,
}

impl RunnerOptions {
    pub fn new(name: String) -> RunnerOptions {
        RunnerOptions {
            name,
            capacity: 10,
            lease: Duration::from_secs(15),
            poll: Duration::from_millis(100),
            only_run: None,
            vars: Vec::new(),
        }
    }
}

/// A runner. See the module documentation.
pub struct Runner {
    store: Arc<StateStore>,
    queue: JobQueue,
    host: Arc<PluginHost>,
    opts: RunnerOptions,
    /// The runs this runner has taken jobs of, each prepared once.
    runs: Mutex<HashMap<String, Arc<OnceCell<Result<Arc<RunOnRunner>, String>>>>>,
}

/// A job of this runner that ended, not completed yet.
struct Finished {
    job: JobKey,
    /// How it ended; None: it could not start (the state could not be read
    /// for it), and goes back to the queue.
    outcome: Option<JobOutcome>,
    /// Where its records go: flushed before it is completed.
    journal: Option<RunJournal>,
}

/// What the jobs of one run on this runner share.
struct RunOnRunner {
    shared: Arc<RunShared>,
    /// The run's records as they were when this runner took it up.
    resume: Resume,
    /// Its environments, each prepared (plugins loaded, records read) once.
    environments: Mutex<HashMap<String, Arc<OnceCell<Result<Arc<EnvRun>, String>>>>>,
    /// Stops the run on this runner: it was cancelled.
    cancelled: StopSignal,
    /// Forwards the cancel and a failed write to the run's stop.
    _forward: super::AbortOnDrop,
}

impl Runner {
    pub fn new(store: Arc<StateStore>, queue: JobQueue, host: Arc<PluginHost>, opts: RunnerOptions) -> Arc<Runner> {
        Arc::new(Runner { store, queue, host, opts, runs: Mutex::new(HashMap::new()) })
    }

    pub fn name(&self) -> &str {
        &self.opts.name
    }

    /// Takes and runs jobs until `stop`; then lets the jobs it holds finish.
    /// The database being away is logged and tried again, never the end.
    ///
    /// The jobs that ended since the last look are completed together,
    /// with the next ones claimed, in one transaction; their runs' records
    /// are put in the state first, in one commit per run.
    pub async fn work(self: Arc<Self>, stop: StopSignal) {
        let mut stopped = stop.receiver();
        let renewing = {
            let runner = self.clone();
            tokio::spawn(async move { runner.renew().await })
        };
        let _renewing = super::AbortOnDrop(renewing.abort_handle());
        let mut jobs: JoinSet<Finished> = JoinSet::new();
        let mut held: HashSet<JobKey> = HashSet::new();
        let mut last_reap = Instant::now() - self.opts.lease;
        let mut last_cancel_check = Instant::now();
        let mut ended: Vec<Finished> = Vec::new();
        // Jobs ended and put in the state, whose completion failed: tried again.
        let mut pending: Vec<(JobKey, JobOutcome)> = Vec::new();
        loop {
            let stopping = stop.is_stopped();
            if stopping && jobs.is_empty() && ended.is_empty() && pending.is_empty() {
                return;
            }
            // A dead runner's jobs go back to the queue: any runner reaps.
            if last_reap.elapsed() >= self.opts.lease / 3 {
                last_reap = Instant::now();
                match self.queue.reap().await {
                    Ok(back) if !back.is_empty() => {
                        tracing::warn!("{} job(s) whose runner stopped renewing went back to the queue", back.len())
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("cannot reap expired leases: {e}"),
                }
            }
            while let Some(done) = jobs.try_join_next() {
                ended.extend(self.joined(done));
            }
            // A completion costs a round of the database whatever it holds:
            // jobs ending at about the same time wait a moment for each
            // other (as the journal gathers writes before a commit).
            if !ended.is_empty() && !jobs.is_empty() {
                let until = tokio::time::Instant::now() + GATHER;
                while !jobs.is_empty() {
                    match tokio::time::timeout_at(until, jobs.join_next()).await {
                        Ok(Some(done)) => ended.extend(self.joined(done)),
                        _ => break,
                    }
                }
            }
            // Jobs that ended and are not completed yet hold their slots.
            let room = if stopping { 0 } else { self.opts.capacity.saturating_sub(jobs.len() + pending.len()) };
            let mut took = false;
            if !ended.is_empty() || !pending.is_empty() || room > 0 {
                let started = Instant::now();
                let ended_now = std::mem::take(&mut ended);
                // One that could not start goes back to the queue: no longer this runner's.
                for f in ended_now.iter().filter(|f| f.outcome.is_none()) {
                    held.remove(&f.job);
                }
                pending.extend(self.put_in_state(ended_now).await);
                let put = started.elapsed();
                let only = self.opts.only_run.as_deref();
                match self.queue.complete_and_claim(&self.opts.name, &pending, room, self.opts.lease, only).await {
                    Ok(completed) => {
                        tracing::debug!(
                            "{} job(s) completed and {} claimed: records put in {put:?}, queue {:?}",
                            pending.len(),
                            completed.claimed.len(),
                            started.elapsed() - put
                        );
                        for (job, _) in pending.drain(..) {
                            held.remove(&job);
                        }
                        for lost in &completed.lost {
                            tracing::warn!("job {lost} was no longer this runner's when it ended: another runner resumes it");
                        }
                        took = !completed.claimed.is_empty();
                        for c in completed.claimed {
                            held.insert(c.job.clone());
                            let runner = self.clone();
                            jobs.spawn(async move { runner.job(c).await });
                        }
                    }
                    // Their records are in the state; they stay this runner's
                    // (their leases renewed) and are completed at the next try.
                    Err(e) => tracing::error!("cannot complete {} job(s) or claim more: {e}; trying again", pending.len()),
                }
            }
            if last_cancel_check.elapsed() >= Duration::from_millis(500) && !held.is_empty() {
                last_cancel_check = Instant::now();
                self.stop_cancelled(&held).await;
            }
            if took && jobs.len() < self.opts.capacity {
                // More may be ready already.
                continue;
            }
            tokio::select! {
                Some(done) = jobs.join_next() => ended.extend(self.joined(done)),
                () = tokio::time::sleep(self.opts.poll) => {}
                _ = stopped.changed(), if !stopping => {}
            }
            if jobs.is_empty() && ended.is_empty() && pending.is_empty() {
                self.forget_idle_runs(&held);
            }
        }
    }

    /// A job's task ended: how, unless the task itself failed (then its
    /// lease runs out, and another runner resumes the job).
    fn joined(&self, done: Result<Finished, tokio::task::JoinError>) -> Option<Finished> {
        done.inspect_err(|e| tracing::error!("a job's task stopped: {e}")).ok()
    }

    /// Puts what the ended jobs wrote in the state, one commit per run,
    /// before anyone hears they ended: their dependents, on any runner,
    /// read their outputs from there. A run whose records cannot be
    /// written is failed (its owner says why), and its jobs with it.
    async fn put_in_state(&self, ended: Vec<Finished>) -> Vec<(JobKey, JobOutcome)> {
        // A job that could not even start goes back for another try.
        let (ended, unstarted): (Vec<Finished>, Vec<Finished>) = ended.into_iter().partition(|f| f.outcome.is_some());
        let unstarted: Vec<JobKey> = unstarted.into_iter().map(|f| f.job).collect();
        if let Err(e) = self.queue.release(&self.opts.name, &unstarted).await {
            tracing::warn!("cannot give {} job(s) back to the queue (their leases run out instead): {e}", unstarted.len());
        }
        let mut failed: HashMap<String, bool> = HashMap::new();
        for f in &ended {
            let Some(journal) = &f.journal else { continue };
            if failed.contains_key(&f.job.run_id) {
                continue;
            }
            let broken = match journal.flush().await {
                Ok(()) => false,
                Err(e) => {
                    // The run's records are not kept: it must not go on as if
                    // they were. Nothing new of it starts.
                    tracing::error!("run {}: {e}", f.job.run_id);
                    self.forget_run(&f.job.run_id);
                    if let Err(q) = self.queue.fail_run(&f.job.run_id, &e.to_string()).await {
                        tracing::error!("cannot fail run {} in the job queue: {q}", f.job.run_id);
                    }
                    true
                }
            };
            failed.insert(f.job.run_id.clone(), broken);
        }
        ended
            .into_iter()
            .filter_map(|f| {
                let outcome = match failed.get(&f.job.run_id) {
                    Some(true) => Some(JobOutcome::Failed { stop_all: true }),
                    _ => f.outcome,
                };
                outcome.map(|o| (f.job, o))
            })
            .collect()
    }

    /// Renews the leases of the jobs this runner holds, and says it is alive.
    async fn renew(&self) {
        loop {
            if let Err(e) = self.queue.heartbeat(&self.opts.name, self.opts.capacity as u32).await {
                tracing::warn!("cannot say this runner is alive: {e}");
            }
            if let Err(e) = self.queue.renew(&self.opts.name, self.opts.lease).await {
                tracing::warn!("cannot renew the leases of this runner's jobs: {e}");
            }
            tokio::time::sleep(self.opts.lease / 3).await;
        }
    }

    /// Stops, on this runner, the runs that were cancelled.
    async fn stop_cancelled(&self, held: &HashSet<JobKey>) {
        let runs: HashSet<&str> = held.iter().map(|j| j.run_id.as_str()).collect();
        for run in runs {
            if let Ok(true) = self.queue.is_cancelled(run).await {
                if let Some(Ok(r)) = self.prepared(run) {
                    r.cancelled.stop();
                }
            }
        }
    }

    fn prepared(&self, run: &str) -> Option<Result<Arc<RunOnRunner>, String>> {
        let runs = self.runs.lock().ok()?;
        runs.get(run)?.get().cloned()
    }

    /// Forgets the runs of which it holds no job: a run may end meanwhile,
    /// and one taken up again is read again.
    fn forget_idle_runs(&self, held: &HashSet<JobKey>) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.retain(|run, _| held.iter().any(|j| &j.run_id == run));
        }
    }

    /// Runs one job; how it ended (it is completed with the others that
    /// ended with it: see [`Runner::work`]).
    async fn job(self: Arc<Self>, c: Claimed) -> Finished {
        let job = c.job.clone();
        match self.run_of(&job.run_id).await {
            Ok(run) => {
                let journal = Some(run.shared.journal.clone());
                let outcome = match self.environment_of(&run, &job.environment).await {
                    Ok(env) => self.run_job(&run, env, &c).await,
                    Err(why) => self.unpreparable(&run.shared, &job, &why),
                };
                Finished { job, outcome, journal }
            }
            Err(why) => {
                tracing::error!("cannot take up run {}: {why}", job.run_id);
                let journal = self.record_unpreparable(&job, &why);
                Finished { job, outcome: Some(JobOutcome::Failed { stop_all: false }), journal: Some(journal) }
            }
        }
    }

    /// Runs the stack job of a claimed job; how it ended, or None when the
    /// state could not be read for it (it goes back to the queue).
    async fn run_job(&self, run: &RunOnRunner, env: Arc<EnvRun>, c: &Claimed) -> Option<JobOutcome> {
        let graph = run.shared.graph.clone();
        let Some(i) = graph.find(&c.job.node) else {
            return self.unpreparable(&run.shared, &c.job, &format!("`{}` is not a resource of the run's pipeline", c.job.node));
        };
        let subject = Subject::Resource(i);
        let prepared = (|| {
            if c.attempt > 1 {
                tracing::warn!(
                    "job {} was taken before (attempt {}) by a runner that stopped; finding out what it did before going on",
                    c.job,
                    c.attempt
                );
                env.take_again(&c.job.node)?;
            }
            env.read_needed_outputs(subject)
        })();
        if let Err(e) = prepared {
            tracing::warn!("job {}: cannot read the state: {e}", c.job);
            return None;
        }
        let (end, changed) = StackJob::new(env.clone(), subject).run(Slot::alone()).await;
        let node = graph.node(i);
        Some(match end {
            NodeEnd::Succeeded if node.gate_after && changed && run.shared.mode == Mode::Deploy => {
                let open = run.resume.environment(&graph, &c.job.environment).gate_open[i.index()];
                if open {
                    JobOutcome::Succeeded
                } else {
                    JobOutcome::Gated
                }
            }
            NodeEnd::Succeeded => JobOutcome::Succeeded,
            NodeEnd::Failed => JobOutcome::Failed { stop_all: env.on_failure() == OnFailure::StopAll },
            NodeEnd::Rejected => JobOutcome::Rejected,
            NodeEnd::Stopped | NodeEnd::Cancelled | NodeEnd::Halted | NodeEnd::Skipped => JobOutcome::Cancelled,
        })
    }

    /// A job whose run or environment could not be prepared on this runner
    /// fails, saying why.
    fn unpreparable(&self, run: &RunShared, job: &JobKey, why: &str) -> Option<JobOutcome> {
        tracing::error!("job {job}: {why}");
        if let Some(i) = run.graph.find(&job.node) {
            let node = run.graph.node(i);
            let record =
                unstarted_record(&job.run_id, &job.environment, &node.name, node.level, run.mode.destroys(), Status::Failed, why);
            run.journal.record(Write::PutJob(record));
        }
        Some(JobOutcome::Failed { stop_all: false })
    }

    /// The failed record of a job of a run this runner could not take up,
    /// in a journal of its own (flushed with the others).
    fn record_unpreparable(&self, job: &JobKey, why: &str) -> RunJournal {
        let why = format!("runner {}: {why}", self.opts.name);
        let record = unstarted_record(&job.run_id, &job.environment, &job.node, 0, false, Status::Failed, &why);
        let journal = RunJournal::start(self.store.clone());
        journal.record(Write::PutJob(record));
        journal
    }

    fn forget_run(&self, run: &str) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.remove(run);
        }
    }

    /// Run `id`, prepared once for all its jobs on this runner.
    async fn run_of(&self, id: &str) -> Result<Arc<RunOnRunner>, String> {
        let cell = {
            let Ok(mut runs) = self.runs.lock() else { return Err("a lock was poisoned".into()) };
            runs.entry(id.to_string()).or_default().clone()
        };
        cell.get_or_init(|| async { self.prepare_run(id).map(Arc::new) }).await.clone()
    }

    /// Compiles run `id` from its snapshot, as a resume does.
    fn prepare_run(&self, id: &str) -> Result<RunOnRunner, String> {
        let store = &self.store;
        let record = store.run(id).map_err(|e| e.to_string())?.ok_or_else(|| format!("there is no run {id} in the state"))?;
        let base_dir = Path::new(&record.file).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let (source, _drift) = RunSource::restore(store, &record, &base_dir).map_err(|e| e.to_string())?;
        let main = source.snapshot.files.first().ok_or_else(|| format!("run {id}'s snapshot holds no pipeline source"))?;
        let mut vars = record.vars.clone();
        for secret in &record.sensitive_vars {
            let name = &secret.name;
            let Some((_, value)) = self.opts.vars.iter().find(|(k, _)| k == name) else {
                return Err(format!(
                    "run {id} was started with the sensitive var `{name}`, which is never stored: give this runner \
                     STACKPIPE_VAR_{name}"
                ));
            };
            if store.keyed_hash(name, value).map_err(|e| e.to_string())? != secret.hash {
                return Err(format!("this runner's STACKPIPE_VAR_{name} is not the value run {id} was started with"));
            }
            vars.push((name.clone(), value.clone()));
        }
        let compile = stackpipe_dsl::CompileOptions {
            vars,
            env: source.snapshot.environment.clone(),
            require_values: true,
            ..Default::default()
        };
        let pipeline = crate::pipeline::compile(Path::new(&main.path), main.text.clone(), compile).map_err(|e| e.to_string())?;
        let graph = pipeline.graph.clone();
        let mode = if record.kind == RunKind::Undeploy { Mode::Undeploy } else { Mode::Deploy };
        let sets = parse_sets(&source.snapshot.sets, &graph).map_err(|e| e.to_string())?;
        let resume = Resume::load(store, id).map_err(|e| e.to_string())?;
        let journal = RunJournal::start(store.clone());
        let events = Events::none();
        // The owner decides; this runner's gates post and wait.
        let gates = Gates::new(id.to_string(), AutoApprove::default(), journal.clone(), events.clone()).posting(self.queue.clone());
        let (stop, cancelled) = (StopSignal::new(), StopSignal::new());
        let forward = super::execution::forward_stops(&cancelled, &journal, &stop);
        let shared = RunShared {
            id: id.to_string(),
            graph,
            mode,
            host: self.host.clone(),
            store: store.clone(),
            journal,
            events,
            gates: Some(Arc::new(gates)),
            stop,
            cancels: Arc::new(Cancels::new()),
            message: record.message.clone(),
            sets,
            base_dir: pipeline.base_dir.clone(),
            source: Arc::new(source),
            parallelism: record.parallelism,
        };
        Ok(RunOnRunner { shared: Arc::new(shared), resume, environments: Mutex::new(HashMap::new()), cancelled, _forward: forward })
    }

    /// Environment `name` of `run`, prepared once on this runner.
    async fn environment_of(&self, run: &RunOnRunner, name: &str) -> Result<Arc<EnvRun>, String> {
        let cell = {
            let Ok(mut envs) = run.environments.lock() else { return Err("a lock was poisoned".into()) };
            envs.entry(name.to_string()).or_default().clone()
        };
        cell.get_or_init(|| async {
            let graph = &run.shared.graph;
            let plan = graph
                .environments
                .iter()
                .find(|e| e.name == name)
                .ok_or_else(|| format!("run {} has no environment `{name}`", run.shared.id))?;
            // The apply of every node is journaled as planned before the
            // run is queued; on a runner, a job known to have been taken
            // before is what may have applied (`take_again`).
            let mut resume = run.resume.environment(graph, name);
            resume.in_flight.clear();
            resume.started.clear();
            let selection = Arc::new(EnvironmentSelection::whole(graph));
            EnvRun::new(run.shared.clone(), plan.clone(), &resume, selection).map(Arc::new).map_err(|e| e.to_string())
        })
        .await
        .clone()
    }
}
