//! Runs: one deploy or undeploy of a pipeline over its environments, or a
//! plan. Environments run one after another in `after` order (reverse order
//! for undeploy); a failed or rejected environment skips the ones after it.
//! Inside an environment, the graph walker runs one stack job per node.
//! Gates hold back what they guard until someone decides; the control
//! socket lets other terminals watch the run and decide.

pub mod events;
pub mod gate;
pub mod journal;
pub mod plan_text;
pub mod scheduler;
pub mod stack_job;
pub mod status;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use stackpipe_dsl::{EnvironmentPlan, PipelineGraph};
use tokio::sync::watch;

pub use events::{Events, NodeBrief, RunEvent};
pub use gate::{AutoApprove, GateOutcome, GateSelector, Gates};
pub use journal::{RunJournal, DURABLE_EVERY};
pub use scheduler::{walk, NodeEnd, Slot};
pub use crate::secrets::{mask, Secrets, MASKED};
pub use stack_job::{EnvRun, Mode, PlannedChange, StackJob, UNKNOWN};

use crate::pipeline::LoadedPipeline;
use crate::plugin::{LoadedPlugin, PluginHost, PluginLoad, Sandbox};
use crate::state::{
    now_ms, EnvOutcome, GateKind, LockHolder, ResourceKey, RunKind, RunRecord, RunStatus, StateError, StateStore, Status,
    Write,
};

/// Ctrl-C, SIGTERM or `stackpipe cancel`: operations in flight finish,
/// gates stop waiting, nothing new starts.
#[derive(Clone)]
pub struct StopSignal(Arc<watch::Sender<bool>>);

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal(Arc::new(watch::channel(false).0))
    }
}

impl StopSignal {
    pub fn new() -> Self {
        Self::default()
    }
    /// Stops the run; whether it had been stopped already.
    pub fn stop(&self) -> bool {
        self.0.send_replace(true)
    }
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Nodes at once per environment; 0 = no limit.
    pub parallelism: usize,
    /// `--set resource.attribute=value`.
    pub sets: Vec<(String, String)>,
    /// `--var name=value`, kept with the run so `resume` can recompile.
    pub vars: Vec<(String, String)>,
    pub message: Option<String>,
    /// Resume this run instead of starting a new one.
    pub resume: Option<String>,
    /// Gates that open without asking (`--yes`, `--approve-env`).
    pub auto_approve: AutoApprove,
    /// Serve the control socket (status, logs, approvals, cancel) to other terminals.
    pub control: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("invalid --set `{0}`: {1}")]
    BadSet(String, String),
    #[error("{0}")]
    Journal(#[from] journal::JournalError),
    #[error("cannot serve the control socket: {0}")]
    Control(std::io::Error),
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: String,
    pub status: RunStatus,
    /// Per environment: (name, status).
    pub environments: Vec<(String, Status)>,
    /// `plan` only: every node's planned change.
    pub planned: Vec<PlannedChange>,
    /// The pipeline's `output`s per environment, evaluated after the run.
    pub outputs: Vec<(String, serde_json::Map<String, Value>)>,
    /// Files the provisioners read as inputs (see
    /// [`crate::plugin::INPUT_FILE_FORMAT`]), relative to the pipeline's
    /// directory as the attributes give them: what `watch` watches besides
    /// the pipeline and its plugins.
    pub inputs: std::collections::BTreeSet<std::path::PathBuf>,
    /// Deployed resources no longer in the pipeline: (environment, name,
    /// type). stackpipe leaves them as they are; the command line warns.
    pub orphans: Vec<(String, String, String)>,
}

/// Parses `--set r.a=v` values: JSON when they parse as JSON, else text.
pub fn parse_sets(sets: &[(String, String)], graph: &PipelineGraph) -> Result<Vec<(String, String, Value)>, RunError> {
    let mut out = Vec::new();
    for (target, value) in sets {
        let Some((r, a)) = target.split_once('.') else {
            return Err(RunError::BadSet(target.clone(), "write it as `resource.attribute=value`".into()));
        };
        if graph.find(r).is_none() {
            return Err(RunError::BadSet(target.clone(), format!("there is no resource `{r}`")));
        }
        let v = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.clone()));
        out.push((r.to_string(), a.to_string(), v));
    }
    Ok(out)
}

/// Loads every plugin of an environment (grants and config are per
/// environment). A plugin that fails to load fails the preflight of the
/// nodes that need it, with the reason, not the whole run.
pub fn load_plugins(
    host: &PluginHost,
    env: &EnvironmentPlan,
    base_dir: &Path,
    state_dir: Option<&Path>,
) -> HashMap<String, Result<Arc<LoadedPlugin>, String>> {
    let mut out = HashMap::new();
    for (name, spec) in &env.plugins {
        let loaded = (|| {
            let bytes = PluginHost::read_source(name, &spec.source, base_dir).map_err(|e| e.to_string())?;
            let sandbox = Sandbox::guarding(&spec.grants, base_dir, state_dir)
                .map_err(|e| format!("plugin `{name}`: cannot prepare its granted directories: {e}"))?;
            let source_desc = match &spec.source {
                stackpipe_dsl::PluginSource::Builtin(b) => format!("builtin:{b}"),
                stackpipe_dsl::PluginSource::Path(p) => p.clone(),
            };
            host.load(PluginLoad {
                name,
                kind: spec.kind,
                source_desc: &source_desc,
                bytes: &bytes,
                sandbox,
                limits: spec.limits,
                config: &spec.config,
            })
            .map(Arc::new)
            .map_err(|e| e.to_string())
        })();
        out.insert(name.clone(), loaded);
    }
    out
}

/// Runs `mode` over the pipeline's environments.
pub async fn execute(
    pipeline: &LoadedPipeline,
    mode: Mode,
    host: Arc<PluginHost>,
    store: Arc<StateStore>,
    opts: &RunOptions,
    events: Events,
    stop: StopSignal,
) -> Result<RunSummary, RunError> {
    let graph = pipeline.graph.clone();
    let sets = parse_sets(&opts.sets, &graph)?;
    let mut envs: Vec<EnvironmentPlan> = graph.environments.clone();
    if mode == Mode::Undeploy {
        envs.reverse();
    }
    // The control socket is bound before anything of the run is recorded,
    // its id included: if it cannot be, the run ends here with nothing of
    // it left in the state.
    let socket = if mode.records() && opts.control {
        Some(crate::control::ControlSocket::bind(store.dir()).map_err(RunError::Control)?)
    } else {
        None
    };
    let run_id = match (&opts.resume, mode) {
        (_, Mode::Plan | Mode::Preflight) => "plan".to_string(),
        (Some(id), _) => id.clone(),
        (None, _) => store.new_run_id()?,
    };
    let kind = if mode == Mode::Undeploy { RunKind::Undeploy } else { RunKind::Deploy };
    let started_ms = now_ms();
    let mut record = RunRecord {
        id: run_id.clone(),
        pipeline: graph.name.clone(),
        file: std::fs::canonicalize(&pipeline.path).unwrap_or_else(|_| pipeline.path.clone()).display().to_string(),
        kind,
        status: RunStatus::Running,
        environments: envs.iter().map(|e| e.name.clone()).collect(),
        // A sensitive var's value is never stored: the run keeps that it
        // was given, and a keyed hash to tell whether a resume gets the same.
        vars: opts.vars.iter().filter(|(k, _)| !graph.sensitive_vars.contains(k)).cloned().collect(),
        sensitive_vars: if mode.records() {
            opts.vars
                .iter()
                .filter(|(k, _)| graph.sensitive_vars.contains(k))
                .map(|(k, v)| Ok(crate::state::SensitiveVar { name: k.clone(), hash: store.keyed_hash(k, v)? }))
                .collect::<Result<_, StateError>>()?
        } else {
            Vec::new()
        },
        sets: opts.sets.clone(),
        parallelism: opts.parallelism,
        message: opts.message.clone(),
        pid: std::process::id(),
        started_ms,
        finished_ms: None,
        outcomes: Vec::new(),
    };
    if mode == Mode::Preflight {
        // The state part of preflight: nothing this run touches is locked by another run.
        let locks = store.locks()?;
        if let Some((key, holder)) = locks.into_iter().find(|(k, _)| k.pipeline == graph.name) {
            return Err(RunError::State(StateError::Locked {
                holder_alive: crate::state::pid_alive(holder.pid),
                key,
                holder,
            }));
        }
    }
    let journal = RunJournal::start(store.clone());
    // The run stops starting work when whoever runs it says so (Ctrl-C,
    // `stackpipe cancel`), and when a write to the state fails: a run must
    // not go on as if its records were kept.
    let run_stop = StopSignal::new();
    let _forward = {
        let (mut asked, failed, run_stop) = (stop.receiver(), journal.failed(), run_stop.clone());
        AbortOnDrop(
            tokio::spawn(async move {
                tokio::select! {
                    _ = asked.wait_for(|s| *s) => {}
                    _ = failed => {}
                }
                run_stop.stop();
            })
            .abort_handle(),
        )
    };
    let (events, gates, control) = if mode.records() {
        // The control socket follows the run's events; without it, nobody
        // more listens (and events nobody listens to are not even built).
        let (events, rx) = if opts.control {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (events.and(tx), Some(rx))
        } else {
            (events, None)
        };
        let gates = Arc::new(Gates::new(run_id.clone(), opts.auto_approve.clone(), journal.clone(), events.clone()));
        let control = match (rx, socket) {
            (Some(rx), Some(socket)) => Some(crate::control::ControlServer::start(
                socket,
                store.clone(),
                run_id.clone(),
                journal.clone(),
                gates.clone(),
                stop.clone(),
                rx,
            )),
            _ => None,
        };
        if let Some(prev) = store.run(&run_id)? {
            record.started_ms = prev.started_ms;
        }
        // Every resource this run may touch is locked before anything starts.
        let g = &*graph;
        let keys: Vec<ResourceKey> = envs
            .iter()
            .flat_map(|e| g.deploy_order().iter().map(move |&i| ResourceKey::new(&g.name, &e.name, &g.node(i).name)))
            .collect();
        let holder = LockHolder { run_id: run_id.clone(), pid: std::process::id(), since_ms: now_ms() };
        // One fsync for both: the run's record, committed durably, puts the
        // locks taken just before it on disk with it.
        store.lock(&keys, &holder)?;
        journal.record_durably(Write::PutRun(record.clone())).await?;
        store.set_owner_run(&run_id, control.as_ref().map(|c| c.path()))?;
        (events, Some(gates), control)
    } else {
        (events, None, None)
    };
    events.send(RunEvent::RunStarted {
        run: run_id.clone(),
        pipeline: graph.name.clone(),
        operation: match mode {
            Mode::Deploy => "deploy",
            Mode::Undeploy => "undeploy",
            Mode::Plan => "plan",
            Mode::Preflight => "preflight",
        }
        .into(),
        environments: envs.iter().map(|e| e.name.clone()).collect(),
        nodes: graph.len(),
    });
    let walk = EnvironmentWalk {
        pipeline,
        mode,
        opts,
        host,
        store: store.clone(),
        journal: journal.clone(),
        events: events.clone(),
        gates,
        sets,
        run_id: run_id.clone(),
        stop: &run_stop,
    };
    let mut summary = walk.all(envs, &mut record).await?;
    let cancelled = stop.is_stopped();
    summary.status = if journal.failure().is_some() {
        RunStatus::Failed
    } else if summary.environments.iter().all(|(_, s)| *s == Status::Succeeded) {
        RunStatus::Succeeded
    } else if cancelled {
        RunStatus::Cancelled
    } else {
        RunStatus::Failed
    };
    // The run's last writes: a failure of any of them is the run's error.
    let mut ended = Ok(());
    if mode.records() && journal.failure().is_none() {
        record.status = summary.status;
        record.finished_ms = Some(now_ms());
        // Released first, without an fsync of its own: the run's final
        // record, committed durably, takes the release to disk with it.
        ended = match store.unlock_run(&run_id) {
            Ok(_) => journal.record_durably(Write::PutRun(record)).await,
            Err(e) => Err(e.into()),
        };
    }
    let flushed = journal.flush().await;
    let failure = journal.failure().or_else(|| ended.and(flushed).err().map(|e| e.to_string()));
    if failure.is_some() {
        summary.status = RunStatus::Failed;
    }
    events.send(RunEvent::RunFinished { run: run_id, status: summary.status, ms: now_ms().saturating_sub(started_ms) });
    if let Some(control) = control {
        // Followers get the last events before the socket goes away.
        control.finish().await;
    }
    match failure {
        Some(f) => Err(RunError::Journal(journal::JournalError::Write(f))),
        None => Ok(summary),
    }
}

/// What the walk over a run's environments shares.
struct EnvironmentWalk<'a> {
    pipeline: &'a LoadedPipeline,
    mode: Mode,
    opts: &'a RunOptions,
    host: Arc<PluginHost>,
    store: Arc<StateStore>,
    journal: RunJournal,
    events: Events,
    gates: Option<Arc<Gates>>,
    sets: Vec<(String, String, Value)>,
    run_id: String,
    /// Stops the run: the caller's stop, or a failed write.
    stop: &'a StopSignal,
}

impl EnvironmentWalk<'_> {
    /// Runs the environments in order; a summary whose status the caller sets.
    async fn all(&self, envs: Vec<EnvironmentPlan>, record: &mut RunRecord) -> Result<RunSummary, RunError> {
        let (mode, graph, events, stop) = (self.mode, &self.pipeline.graph, &self.events, self.stop);
        let mut summary = RunSummary {
            run_id: self.run_id.clone(),
            status: RunStatus::Succeeded,
            environments: Vec::new(),
            planned: Vec::new(),
            outputs: Vec::new(),
            inputs: Default::default(),
            orphans: Vec::new(),
        };
        // A resumed run does not ask again at an environment gate it was let through.
        let earlier = if self.opts.resume.is_some() { self.store.decisions(&self.run_id)? } else { Vec::new() };
        let approved_before = |env: &str| {
            earlier.iter().any(|d| {
                d.gate.kind == GateKind::Environment && d.gate.environment == env && d.decision == crate::state::Decision::Approved
            })
        };
        // Why the environments after this one are skipped, once one did not succeed.
        let mut blocked: Option<String> = None;
        for env in envs {
            let end_env = |status: Status, reason: Option<String>, summary: &mut RunSummary, record: &mut RunRecord| {
                // A failed write makes whatever was running fail, whatever its nodes said.
                let (status, reason) = match self.journal.failure() {
                    Some(f) if status != Status::Skipped => (Status::Failed, Some(format!("the run stopped: {f}"))),
                    _ => (status, reason),
                };
                events.send(RunEvent::EnvironmentFinished { environment: env.name.clone(), status, reason: reason.clone() });
                summary.environments.push((env.name.clone(), status));
                if mode.records() {
                    record.outcomes.push(EnvOutcome { name: env.name.clone(), status, reason: reason.clone() });
                    self.journal.record(Write::PutRun(record.clone()));
                }
            };
            if stop.is_stopped() {
                let why = match self.journal.failure() {
                    Some(_) => "the run stopped before it started",
                    None => "the run was cancelled",
                };
                end_env(Status::Cancelled, Some(why.into()), &mut summary, record);
                continue;
            }
            if let Some(why) = &blocked {
                end_env(Status::Skipped, Some(why.clone()), &mut summary, record);
                continue;
            }
            if events.listening() {
                let nodes = graph.deploy_order().iter().map(|&i| NodeBrief { name: graph.node(i).name.clone(), level: graph.node(i).level });
                events.send(RunEvent::EnvironmentStarted { run: self.run_id.clone(), environment: env.name.clone(), nodes: nodes.collect() });
            }
            if env.approval && mode.records() && !approved_before(&env.name) {
                if let Some(gates) = &self.gates {
                    let gate = crate::state::GateInfo {
                        kind: GateKind::Environment,
                        environment: env.name.clone(),
                        node: None,
                        reason: format!("environment `{}` has `approval = true`", env.name),
                        detail: None,
                        since_ms: now_ms(),
                    };
                    match gates.wait(gate, stop.receiver()).await {
                        GateOutcome::Approved => {}
                        GateOutcome::Rejected(d) => {
                            let why = format!(
                                "rejected by {}{}",
                                d.by,
                                d.comment.map(|c| format!(": {c}")).unwrap_or_default()
                            );
                            end_env(Status::Skipped, Some(why), &mut summary, record);
                            blocked = Some(format!("environment `{}` was rejected", env.name));
                            continue;
                        }
                        GateOutcome::Cancelled => {
                            end_env(Status::Cancelled, Some("the run was cancelled while it waited for approval".into()), &mut summary, record);
                            continue;
                        }
                    }
                }
            }
            let env_run = EnvRun::new(
                self.run_id.clone(),
                graph.clone(),
                env.clone(),
                mode,
                self.host.clone(),
                self.store.clone(),
                self.journal.clone(),
                events.clone(),
                self.opts.message.clone(),
                self.sets.clone(),
                self.gates.clone(),
                stop.receiver(),
            );
            let env_run = match env_run {
                Ok(e) => Arc::new(e),
                // A plan is told the state cannot be read (a damaged file is
                // the command's error, with the way to repair it); a run that
                // records ends the environment, its records kept.
                Err(e) if !mode.records() => return Err(e.into()),
                Err(e) => {
                    end_env(Status::Failed, Some(format!("cannot read the state: {e}")), &mut summary, record);
                    blocked = Some(format!("environment `{}` failed", env.name));
                    continue;
                }
            };
            let (mut status, mut reason) = run_environment(&env_run, mode, self.opts, stop.receiver(), &self.pipeline.base_dir).await;
            // Its records are on disk before it is said to have succeeded.
            if mode.records() && status == Status::Succeeded {
                if let Err(e) = self.journal.flush().await {
                    (status, reason) = (Status::Failed, Some(format!("the run stopped: {e}")));
                }
            }
            summary.orphans.extend(env_run.orphans.iter().map(|(n, t)| (env.name.clone(), n.clone(), t.clone())));
            if let Ok(inputs) = env_run.inputs.lock() {
                summary.inputs.extend(inputs.iter().map(|f| self.pipeline.base_dir.join(f)));
            }
            if !mode.records() {
                if let Ok(mut p) = env_run.planned.lock() {
                    summary.planned.append(&mut p);
                }
            } else {
                summary.outputs.push((env.name.clone(), pipeline_outputs(&env_run)));
            }
            if status != Status::Succeeded {
                blocked = Some(format!("environment `{}` {}", env.name, if status == Status::Cancelled { "was cancelled" } else { "failed" }));
            }
            end_env(status, reason, &mut summary, record);
            // Freeing the outputs of a large graph takes a while (10k resources:
            // about 20 ms) that the run's end need not wait for.
            let outputs = env_run.outputs.write().map(|mut o| std::mem::take(&mut *o));
            if let Ok(outputs) = outputs {
                drop_aside(outputs);
            }
        }
        Ok(summary)
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Drops `outputs` on a thread of its own when there are many of them, so
/// that nothing waits while they are freed. (Plain data: no handle to the
/// state or the journal outlives the run this way.)
fn drop_aside(outputs: HashMap<String, Value>) {
    const MANY: usize = 1000;
    if outputs.len() < MANY {
        return;
    }
    if let Err(e) = std::thread::Builder::new().name("stackpipe-drop".into()).spawn(move || drop(outputs)) {
        tracing::debug!("freeing outputs inline: {e}");
    }
}

/// Loads the environment's plugins and walks its graph; the environment's
/// status, and why when it did not succeed.
async fn run_environment(
    env: &Arc<EnvRun>,
    mode: Mode,
    opts: &RunOptions,
    stop: watch::Receiver<bool>,
    base_dir: &Path,
) -> (Status, Option<String>) {
    let graph = &env.graph;
    let n = graph.graph.node_count();
    let deps: Vec<Vec<usize>> = graph
        .graph
        .node_indices()
        .map(|i| {
            // Preflight needs no outputs: every node is checked, independently.
            let d = match mode {
                Mode::Preflight => Vec::new(),
                Mode::Undeploy => graph.dependents(i),
                Mode::Deploy | Mode::Plan => graph.dependencies(i),
            };
            d.into_iter().map(|x| x.index()).collect()
        })
        .collect();
    // A resumed run does not redo what it did before it stopped.
    let resumed = if opts.resume.is_some() {
        match Resumed::read(env) {
            Ok(r) => r,
            Err(e) => return (Status::Failed, Some(format!("cannot read what the run did before it stopped: {e}"))),
        }
    } else {
        Resumed::nothing(n)
    };
    let Resumed { done, in_flight, gate_open } = resumed;
    if let Ok(mut f) = env.in_flight.write() {
        *f = in_flight;
    }
    // Every apply this environment may make is on disk before any starts.
    // The journal's writer puts it there while the plugins load.
    let mut planned_on_disk = None;
    if mode == Mode::Deploy {
        let planned = crate::state::JournalEntry {
            run_id: env.run_id.clone(),
            environment: env.env.name.clone(),
            node: String::new(),
            nodes: (0..n).filter(|&i| !done[i]).map(|i| graph.node(petgraph::graph::NodeIndex::new(i)).name.clone()).collect(),
            op: "apply".into(),
            phase: crate::state::JournalPhase::Planned,
            ms: now_ms(),
        };
        planned_on_disk = Some(env.journal.submit_durably(vec![Write::Journal(planned)]));
    }
    let _ = env.plugins.set(load_plugins(&env.host, &env.env, base_dir, Some(env.store.dir())));
    if let Some(wait) = planned_on_disk {
        if let Err(e) = wait.await {
            tracing::error!("cannot journal the environment's plan: {e}");
            return (Status::Failed, Some(format!("cannot journal the environment's plan: {e}")));
        }
    }
    let done = Arc::new(done);
    let gate_open = Arc::new(gate_open);
    // The walk is a task of the runtime, not a future of whoever awaits the
    // run (the CLI's main thread, in `block_on`): a node that ends wakes it
    // twice (its slot is freed, its task is joined), and waking a task on a
    // busy worker is a queue push where waking a parked thread is a syscall
    // and a context switch (10k nodes: about 15% less CPU).
    let (parallelism, walk_stop, walk_env) = (opts.parallelism, stop.clone(), env.clone());
    let walking = tokio::spawn(async move {
        let env = &walk_env;
        walk(&deps, parallelism, walk_stop, |i, slot| {
            let env = env.clone();
            let done = done.clone();
            let gate_open = gate_open.clone();
            async move {
                let idx = petgraph::graph::NodeIndex::new(i);
                // A node done before a resume may not have passed its gate yet: it asks.
                let (end, changed) =
                    if done[i] { (NodeEnd::Succeeded, true) } else { StackJob::new(env.clone(), idx).run(slot.clone()).await };
                let node = env.graph.node(idx);
                // An unchanged node has nothing new to look at: its gate stays open.
                if end != NodeEnd::Succeeded || !node.gate_after || !changed || env.mode != Mode::Deploy || gate_open[i] {
                    return end;
                }
                let gate = env.gate(GateKind::After, Some(&node.name), format!("`{}` has `gate = \"after\"`: approve before its dependents start", node.name), None);
                match env.wait_at(gate, Some(&slot)).await {
                    GateOutcome::Approved => NodeEnd::Succeeded,
                    GateOutcome::Rejected(_) => NodeEnd::Rejected,
                    // Applied; its dependents must not start.
                    GateOutcome::Cancelled => NodeEnd::StoppedAtGate,
                }
            }
        })
        .await
    });
    // Dropped with this future (whoever awaits the run gave up on it), the
    // walk goes too, as it did when it was part of this future.
    let _abort = AbortOnDrop(walking.abort_handle());
    let ends = match walking.await {
        Ok(ends) => ends,
        Err(e) => {
            tracing::error!("the scheduler of environment {} stopped: {e}", env.env.name);
            return (Status::Failed, Some(format!("the scheduler stopped: {e}")));
        }
    };
    let stopped = *stop.borrow();
    let failed_write = env.journal.failure();
    let mut rejected = Vec::new();
    for (i, end) in ends.iter().enumerate() {
        let idx = petgraph::graph::NodeIndex::new(i);
        let (status, why) = match end {
            NodeEnd::Cancelled if failed_write.is_some() => (Status::Cancelled, "the run stopped: its state could not be written".to_string()),
            NodeEnd::Cancelled if stopped => (Status::Cancelled, "the run was cancelled".to_string()),
            NodeEnd::Cancelled => (Status::Cancelled, "a dependency failed".to_string()),
            NodeEnd::Skipped => (Status::Skipped, "a gate before it was rejected".to_string()),
            NodeEnd::Rejected => {
                rejected.push(graph.node(idx).name.clone());
                continue;
            }
            NodeEnd::Succeeded | NodeEnd::Failed | NodeEnd::StoppedAtGate => continue,
        };
        // Nodes that ended without starting get a job record here.
        let record = StackJob::unstarted(env.clone(), idx, status, &why);
        env.events.send(RunEvent::NodeFinished {
            environment: env.env.name.clone(),
            node: record.node.clone(),
            status,
            change: None,
            ms: 0,
            error: Some(why),
        });
        if mode.records() {
            env.journal.record(Write::PutJob(record));
        }
    }
    if ends.iter().all(|e| *e == NodeEnd::Succeeded) {
        (Status::Succeeded, None)
    } else if ends.contains(&NodeEnd::Failed) {
        let failed: Vec<&str> =
            ends.iter().enumerate().filter(|(_, e)| **e == NodeEnd::Failed).map(|(i, _)| graph.node(petgraph::graph::NodeIndex::new(i)).name.as_str()).collect();
        (Status::Failed, Some(format!("failed: {}", failed.join(", "))))
    } else if !rejected.is_empty() {
        (Status::Failed, Some(format!("rejected at a gate: {}", rejected.join(", "))))
    } else if stopped || ends.contains(&NodeEnd::StoppedAtGate) {
        (Status::Cancelled, Some("the run was cancelled".into()))
    } else {
        (Status::Failed, None)
    }
}

/// The pipeline's `output`s, from the environment's resource outputs; a
/// sensitive one (see [`output_is_secret`]) reads as [`MASKED`].
fn pipeline_outputs(env: &EnvRun) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    let Ok(outputs) = env.outputs.read() else {
        return out;
    };
    let lookup = |r: &str| outputs.get(r);
    let scope = stackpipe_dsl::eval::Scope {
        pipeline: &env.graph.name,
        environment: &env.env.name,
        vars: &env.env.vars,
        outputs: &lookup,
    };
    for o in &env.graph.outputs {
        if let Ok(v) = stackpipe_dsl::eval::eval(&o.value, &scope) {
            let secret = output_is_secret(&env.graph, o, |r| {
                env.store.resource(&env.key(r)).ok().flatten().map(|r| r.sensitive_outputs).unwrap_or_default()
            }) || env.secrets.redact(&v.to_string()) != v.to_string();
            out.insert(o.name.name.to_string(), if secret { Value::String(MASKED.into()) } else { v });
        }
    }
    out
}

/// Whether a pipeline `output` is secret: marked `sensitive`, derived from
/// a sensitive var, or made of a resource output the provisioner marks
/// sensitive (`sensitive_outputs` of the resource named).
pub fn output_is_secret(
    graph: &PipelineGraph,
    output: &stackpipe_dsl::ast::OutputDecl,
    sensitive_outputs: impl Fn(&str) -> Vec<String>,
) -> bool {
    graph.output_is_sensitive(output)
        || stackpipe_dsl::resource_references(&output.value)
            .iter()
            .any(|(r, o)| sensitive_outputs(r).iter().any(|s| s == o))
}

/// What a resumed run takes from its own records before it walks an
/// environment again. Read whole or not at all: a resume that could not
/// read which nodes already succeeded would apply them a second time.
struct Resumed {
    /// Nodes that succeeded before the run stopped (their outputs are put
    /// back into the environment): not run again.
    done: Vec<bool>,
    /// Nodes whose apply or destroy was in flight when the run stopped,
    /// said out loud. Their jobs run again from preflight: refresh reads
    /// what is really there (an update that landed plans as no change), and
    /// an apply whose result was lost asks the provisioner what it created.
    in_flight: std::collections::HashSet<String>,
    /// Node gates (`gate = "after"`) approved before: they stay open.
    gate_open: Vec<bool>,
}

impl Resumed {
    /// A run that starts afresh.
    fn nothing(n: usize) -> Resumed {
        Resumed { done: vec![false; n], in_flight: Default::default(), gate_open: vec![false; n] }
    }

    fn read(env: &EnvRun) -> Result<Resumed, StateError> {
        let graph = &env.graph;
        let mut out = Resumed::nothing(graph.graph.node_count());
        for j in env.store.jobs(&env.run_id)? {
            if j.environment != env.env.name || j.status != Status::Succeeded {
                continue;
            }
            if let Some(i) = graph.find(&j.node) {
                out.done[i.index()] = true;
                if let Some(r) = env.store.resource(&env.key(&j.node))? {
                    if let Ok(mut o) = env.outputs.write() {
                        o.insert(j.node.clone(), r.outputs);
                    }
                }
            }
        }
        let mut last: HashMap<(String, String), crate::state::JournalPhase> = HashMap::new();
        for e in env.store.journal(&env.run_id)?.iter().filter(|e| e.environment == env.env.name) {
            for node in e.nodes() {
                last.insert((node.to_string(), e.op.clone()), e.phase);
            }
        }
        for ((node, op), phase) in last {
            use crate::state::JournalPhase::*;
            match phase {
                // Planned but not known to have started: it may have, in the
                // moment between starting and journaling it; ask, quietly.
                Planned => {}
                Started => {
                    let text = format!("{op} was in flight when the run stopped; finding out what it did before going on");
                    tracing::warn!(environment = %env.env.name, node, "{text}");
                    env.events.send(RunEvent::Log { environment: env.env.name.clone(), node: node.clone(), op: "preflight".into(), text });
                }
                Done | Failed | Withdrawn => continue,
            }
            out.in_flight.insert(node);
        }
        for d in env.store.decisions(&env.run_id)? {
            if d.gate.kind != GateKind::After || d.gate.environment != env.env.name {
                continue;
            }
            if let Some(i) = d.gate.node.as_deref().and_then(|n| graph.find(n)) {
                out.gate_open[i.index()] = d.decision == crate::state::Decision::Approved;
            }
        }
        Ok(out)
    }
}