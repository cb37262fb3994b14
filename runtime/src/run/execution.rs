//! A run from its start to its end: [`Run::start`] records it and locks
//! what it touches, [`Run::environment`] runs one environment (in `after`
//! order, reverse for undeploy), [`Run::finish`] records how it ended.
//! Whoever drives it (the command line, later the server) watches and
//! steers it through [`Steering`] and the run's [`Gates`]; the run itself
//! serves nobody.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use stackpipe_dsl::{EnvironmentPlan, PipelineGraph};

use super::cancel::Cancels;
use super::env_run::{EnvRun, Mode};
use super::events::{Events, RunEvent};
use super::gate::{GateOutcome, Gates};
use super::journal::{self, RunJournal};
use super::outputs::pipeline_outputs;
use super::resume::{EnvironmentResume, Resume};
use super::selection::{EnvironmentSelection, RunSelection};
use super::snapshot::RunSource;
use super::{AbortOnDrop, RunError, RunOptions, RunSummary, StopSignal};
use crate::pipeline::LoadedPipeline;
use crate::plugin::PluginHost;
use crate::state::{
    now_ms, EnvOutcome, GateInfo, GateKind, JournalEntry, JournalPhase, LockHolder, ResourceKey, Resumption, RunKind,
    RunRecord, RunStatus, StateError, StateStore, Status, Write,
};

/// How the caller watches and steers a run: where its events go (any
/// number of listeners: a terminal, a control socket, a server's
/// subscribers) and the stop it may send (Ctrl-C, `stackpipe cancel`).
/// Gates are decided through [`Run::gates`].
#[derive(Clone, Default)]
pub struct Steering {
    pub events: Events,
    pub stop: StopSignal,
}

/// What one run's environments and stack jobs share.
pub(super) struct RunShared {
    pub id: String,
    pub graph: Arc<PipelineGraph>,
    pub mode: Mode,
    pub host: Arc<PluginHost>,
    pub store: Arc<StateStore>,
    pub journal: RunJournal,
    pub events: Events,
    /// None in a plan or a preflight, which never wait.
    pub gates: Option<Arc<Gates>>,
    /// Stops the run: the caller's stop, or a failed write.
    pub stop: StopSignal,
    /// Parts of the run cancelled from outside: a node, an environment.
    pub cancels: Arc<Cancels>,
    pub message: Option<String>,
    /// `--set r.a=v`, parsed.
    pub sets: Vec<(String, String, Value)>,
    /// The pipeline's directory: plugin paths and grants are relative to it.
    pub base_dir: PathBuf,
    /// What the run started from: its snapshot and plugin components.
    pub source: Arc<RunSource>,
    /// Nodes at once per environment; 0 = no limit.
    pub parallelism: usize,
}

impl RunShared {
    /// Resolves once the run is stopped, or `node` of `environment` (None:
    /// the environment) is cancelled: what ends a wait at its gate.
    pub async fn stopped(&self, environment: &str, node: Option<&str>) {
        let mut stop = self.stop.receiver();
        tokio::select! {
            // A stop whose sender is gone can never fire.
            fired = async { stop.wait_for(|s| *s).await.is_ok() } => if !fired { std::future::pending::<()>().await },
            () = self.cancels.until_covers(environment, node) => {}
        }
    }
}

/// One run of a pipeline, started.
pub struct Run<'a> {
    pub(super) shared: Arc<RunShared>,
    pub(super) pipeline: &'a LoadedPipeline,
    /// The environments, in the order this run takes them.
    pub(super) environments: Vec<EnvironmentPlan>,
    /// What the run takes of each environment.
    pub(super) selection: RunSelection,
    pub(super) record: RunRecord,
    pub(super) resume: Resume,
    pub(super) summary: RunSummary,
    /// Why the environments after one that did not succeed are skipped.
    pub(super) blocked: Option<String>,
    /// The caller's stop (the run's own also stops on a failed write).
    pub(super) asked_stop: StopSignal,
    /// When this process started the run (a resumed run's record keeps
    /// when the run first started).
    started_ms: u64,
    /// Forwards the caller's stop and a failed write to the run's stop.
    _forward: AbortOnDrop,
}

impl<'a> Run<'a> {
    /// Starts `mode` of `pipeline`. A run that records (deploy, undeploy)
    /// locks every resource it may touch and records itself before this
    /// returns; a resume reads what it did before. `control` is where other
    /// processes reach the caller to steer this run, if anywhere: it is
    /// noted beside the state for them.
    pub async fn start(
        pipeline: &'a LoadedPipeline,
        mode: Mode,
        host: Arc<PluginHost>,
        store: Arc<StateStore>,
        opts: &RunOptions,
        steering: Steering,
        control: Option<PathBuf>,
    ) -> Result<Run<'a>, RunError> {
        let graph = pipeline.graph.clone();
        let sets = parse_sets(&opts.sets, &graph)?;
        let mut environments = graph.environments.clone();
        if mode.destroys() {
            environments.reverse();
        }
        // Before the run has an id: a selection that cannot be made leaves nothing behind.
        let selection = RunSelection::new(&store, &graph, mode, &opts.selection, &environments)?;
        let id = match &opts.resume {
            _ if !mode.records() => "plan".to_string(),
            Some(id) => id.clone(),
            None => match &opts.id {
                Some(id) => id.clone(),
                None => store.new_run_id()?,
            },
        };
        let source = match &opts.source {
            Some(source) => source.clone(),
            None => Arc::new(RunSource::read(pipeline, mode, opts)),
        };
        let mut record = run_record(pipeline, mode, &store, opts, &id, &environments)?;
        record.snapshot = Some(source.digest.clone());
        let started_ms = record.started_ms;
        let journal = RunJournal::start(store.clone());
        // The run stops starting work when whoever runs it says so, and
        // when a write to the state fails: a run must not go on as if its
        // records were kept.
        let stop = StopSignal::new();
        let forward = forward_stops(&steering.stop, &journal, &stop);
        let events = steering.events;
        let resume = match &opts.resume {
            Some(run) if mode.records() => Resume::load(&store, run)?,
            _ => Resume::default(),
        };
        if mode.records() {
            // A resume continues the run: who started it, how and when stay;
            // the resume is added to them.
            if let Some(prev) = store.run(&id)? {
                let resumed_by = std::mem::take(&mut record.started_by);
                record.started_ms = prev.started_ms;
                record.started_by = prev.started_by;
                record.trigger = prev.trigger;
                record.rerun_of = prev.rerun_of;
                record.resumed = prev.resumed;
                record.resumed.push(Resumption { by: resumed_by, ms: now_ms() });
            }
            lock_and_record(&store, &journal, &selection.keys(&graph, &environments), &record, &source).await?;
            store.set_owner_run(&id, control.as_deref())?;
        }
        // Who started the run is settled (a resume keeps the first): whom
        // an environment's `self_approval = false` refuses.
        let gates = mode.records().then(|| {
            let rules = graph.environments.iter().map(|e| (e.name.clone(), e.approval_rule.clone()));
            let gates = Gates::new(id.clone(), opts.auto_approve.clone(), journal.clone(), events.clone());
            Arc::new(gates.governed(record.started_by.clone(), rules))
        });
        events.send(RunEvent::RunStarted {
            run: id.clone(),
            pipeline: graph.name.clone(),
            operation: mode.name().into(),
            environments: environments.iter().map(|e| e.name.clone()).collect(),
            nodes: selection.most_nodes(&graph),
            targets: opts.selection.targets.clone(),
            orphans: opts.selection.orphans,
        });
        let shared = RunShared {
            id: id.clone(),
            graph,
            mode,
            host,
            store,
            journal,
            events,
            gates,
            stop,
            cancels: Arc::new(Cancels::new()),
            message: opts.message.clone(),
            sets,
            base_dir: pipeline.base_dir.clone(),
            source,
            parallelism: opts.parallelism,
        };
        Ok(Run {
            shared: Arc::new(shared),
            pipeline,
            environments,
            selection,
            record,
            resume,
            summary: RunSummary::new(id),
            blocked: None,
            asked_stop: steering.stop,
            started_ms,
            _forward: forward,
        })
    }

    /// The run's id (`plan` for a plan or a preflight).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Where gates are decided; None for a plan or a preflight.
    pub fn gates(&self) -> Option<Arc<Gates>> {
        self.shared.gates.clone()
    }

    /// Where a node or an environment of the run is cancelled.
    pub fn cancels(&self) -> Arc<Cancels> {
        self.shared.cancels.clone()
    }

    /// The run's journal: its records go to the state through it.
    pub fn journal(&self) -> &RunJournal {
        &self.shared.journal
    }

    /// The environments, in the order this run takes them.
    pub fn environments(&self) -> &[EnvironmentPlan] {
        &self.environments
    }

    /// Runs every environment, in order, then finishes the run.
    pub async fn run_to_end(mut self) -> Result<RunSummary, RunError> {
        for i in 0..self.environments.len() {
            let env = self.environments[i].clone();
            self.environment(&env).await?;
        }
        self.finish().await
    }

    /// Runs one environment, unless the run was stopped, one before it did
    /// not succeed, or its gate was rejected; its status.
    pub async fn environment(&mut self, env: &EnvironmentPlan) -> Result<Status, RunError> {
        if self.shared.stop.is_stopped() {
            let why = match self.shared.journal.failure() {
                Some(_) => "the run stopped before it started",
                None => "the run was cancelled",
            };
            return Ok(self.end_environment(&env.name, Status::Cancelled, Some(why.into())));
        }
        // A preflight checks every environment, whatever the ones before found.
        if let Some(why) = self.blocked.clone().filter(|_| !self.shared.mode.is_preflight()) {
            return Ok(self.end_environment(&env.name, Status::Skipped, Some(why)));
        }
        let graph = self.shared.graph.clone();
        let selection = self.selection.environment(&graph, &env.name);
        if !selection.is_whole() {
            let names = selection.briefs(&graph).into_iter().map(|b| b.name).collect();
            self.summary.selected.push((env.name.clone(), names));
        }
        if self.shared.events.listening() {
            let nodes = selection.briefs(&graph);
            self.shared.events.send(RunEvent::EnvironmentStarted { run: self.shared.id.clone(), environment: env.name.clone(), nodes });
        }
        // Nothing aimed at here (`--orphans`, and none): no gate asks about nothing.
        if selection.is_empty() && !selection.is_whole() {
            return Ok(self.end_environment(&env.name, Status::Succeeded, None));
        }
        if let Some(ended) = self.environment_gate(env).await {
            return Ok(ended);
        }
        let resume = self.resume.environment(&graph, &env.name);
        let (status, reason) = match self.walk_environment(env, resume, selection).await? {
            Walked::Ran(status, reason, env_run) => {
                self.collect(&env.name, &env_run);
                (status, reason)
            }
            Walked::DidNotStart(why) => (Status::Failed, Some(why)),
        };
        if status != Status::Succeeded {
            let how = if status == Status::Cancelled { "was cancelled" } else { "failed" };
            self.blocked = Some(format!("environment `{}` {how}", env.name));
        }
        Ok(self.end_environment(&env.name, status, reason))
    }

    /// The environment's `approval = true` gate; how the environment ended
    /// if it was not let through.
    async fn environment_gate(&mut self, env: &EnvironmentPlan) -> Option<Status> {
        let gates = self.shared.gates.clone()?;
        if !env.approval || self.resume.environment_approved(&env.name) {
            return None;
        }
        let gate = GateInfo {
            kind: GateKind::Environment,
            environment: env.name.clone(),
            node: None,
            reason: format!("environment `{}` has `approval = true`", env.name),
            detail: None,
            since_ms: now_ms(),
        };
        match gates.wait_until(gate, self.shared.stopped(&env.name, None)).await {
            GateOutcome::Approved => None,
            GateOutcome::Rejected(d) => {
                let why = format!("rejected by {}{}", d.by, d.comment.map(|c| format!(": {c}")).unwrap_or_default());
                self.blocked = Some(format!("environment `{}` was rejected", env.name));
                Some(self.end_environment(&env.name, Status::Skipped, Some(why)))
            }
            GateOutcome::Cancelled => {
                let why = "the run was cancelled while it waited for approval";
                Some(self.end_environment(&env.name, Status::Cancelled, Some(why.into())))
            }
        }
    }

    /// Prepares the environment (its plugins, its records) and walks what
    /// the run takes of it.
    async fn walk_environment(
        &self,
        env: &EnvironmentPlan,
        resume: EnvironmentResume,
        selection: Arc<EnvironmentSelection>,
    ) -> Result<Walked, RunError> {
        let run = &self.shared;
        for (node, op) in &resume.started {
            let text = format!("{op} was in flight when the run stopped; finding out what it did before going on");
            tracing::warn!(environment = %env.name, node, "{text}");
            run.events.send(RunEvent::Log {
                environment: env.name.clone(),
                node: node.clone(),
                op: "preflight".into(),
                text,
                level: crate::state::LogLevel::Info,
                plugin: None,
            });
        }
        // Every apply this environment may make is on disk before any
        // starts. The journal's writer puts it there while the plugins load.
        let planned_on_disk = (run.mode == Mode::Deploy).then(|| {
            let nodes = selection.in_deploy_order(&run.graph).filter(|i| !resume.done[i.index()]);
            let planned = JournalEntry {
                run_id: run.id.clone(),
                environment: env.name.clone(),
                node: String::new(),
                nodes: nodes.map(|i| run.graph.node(i).name.clone()).collect(),
                op: "apply".into(),
                phase: JournalPhase::Planned,
                ms: now_ms(),
            };
            run.journal.submit_durably(vec![Write::Journal(planned)])
        });
        let env_run = match EnvRun::new(self.shared.clone(), env.clone(), &resume, selection) {
            Ok(e) => Arc::new(e),
            // A plan is told the state cannot be read (a damaged file is the
            // command's error, with the way to repair it); a run that
            // records ends the environment, its records kept.
            Err(e) if !run.mode.records() => return Err(e.into()),
            Err(e) => return Ok(Walked::DidNotStart(format!("cannot read the state: {e}"))),
        };
        if let Some(wait) = planned_on_disk {
            if let Err(e) = wait.await {
                tracing::error!("cannot journal the environment's plan: {e}");
                return Ok(Walked::DidNotStart(format!("cannot journal the environment's plan: {e}")));
            }
        }
        let (mut status, mut reason) = env_run.walk(resume.done, resume.gate_open).await;
        // Its records are on disk before it is said to have succeeded.
        if run.mode.records() && status == Status::Succeeded {
            if let Err(e) = run.journal.flush().await {
                (status, reason) = (Status::Failed, Some(format!("the run stopped: {e}")));
            }
        }
        Ok(Walked::Ran(status, reason, env_run))
    }

    /// What an environment that ran adds to the run's summary.
    fn collect(&mut self, env: &str, env_run: &EnvRun) {
        let summary = &mut self.summary;
        summary.orphans.extend(env_run.orphans.iter().map(|(n, t)| (env.to_string(), n.clone(), t.clone())));
        if let Ok(inputs) = env_run.inputs.lock() {
            summary.inputs.extend(inputs.iter().map(|f| self.pipeline.base_dir.join(f)));
        }
        if self.shared.mode.records() {
            summary.outputs.push((env.to_string(), pipeline_outputs(env_run)));
        } else if let Ok(mut p) = env_run.planned.lock() {
            // In the order the run takes them (dependencies first; for an
            // undeploy, dependents first), not the order they finished
            // planning: the same plan reads the same every time.
            let graph = &self.shared.graph;
            let position: std::collections::HashMap<&str, usize> =
                graph.deploy_order().iter().enumerate().map(|(at, &i)| (graph.node(i).name.as_str(), at)).collect();
            let destroys = self.shared.mode.destroys();
            // Resources the pipeline no longer declares (`--orphans`) keep
            // the order they were planned in, which their stored
            // dependencies decided; they come first, as they are destroyed.
            p.sort_by_key(|c| match position.get(c.node.as_str()) {
                Some(&at) if destroys => usize::MAX - at,
                Some(&at) => at + 1,
                None => 0,
            });
            summary.planned.append(&mut p);
        }
        // Freeing the outputs of a large graph takes a while (10k resources:
        // about 20 ms) that the run's end need not wait for.
        if let Ok(mut outputs) = env_run.outputs.write() {
            drop_aside(std::mem::take(&mut *outputs));
        }
    }

    /// Records how an environment ended and says so; its status.
    pub(super) fn end_environment(&mut self, env: &str, status: Status, reason: Option<String>) -> Status {
        // A failed write makes whatever was running fail, whatever its nodes said.
        let (status, reason) = match self.shared.journal.failure() {
            Some(f) if status != Status::Skipped => (Status::Failed, Some(format!("the run stopped: {f}"))),
            _ => (status, reason),
        };
        self.shared.events.send(RunEvent::EnvironmentFinished { environment: env.to_string(), status, reason: reason.clone() });
        self.summary.environments.push((env.to_string(), status));
        if self.shared.mode.records() {
            self.record.outcomes.push(EnvOutcome { name: env.to_string(), status, reason });
            self.shared.journal.record(Write::PutRun(self.record.clone()));
        }
        status
    }

    /// Ends the run: its status, its locks released and its record final
    /// (for a run that records), everything on disk; its summary.
    pub async fn finish(mut self) -> Result<RunSummary, RunError> {
        let run = self.shared.clone();
        let journal = &run.journal;
        let summary = &mut self.summary;
        summary.status = if journal.failure().is_some() {
            RunStatus::Failed
        } else if summary.environments.iter().all(|(_, s)| *s == Status::Succeeded) {
            RunStatus::Succeeded
        } else if self.asked_stop.is_stopped()
            || (summary.environments.iter().any(|(_, s)| *s == Status::Cancelled)
                && !summary.environments.iter().any(|(_, s)| *s == Status::Failed))
        {
            // Cancelled whole, or in part (`cancel --env`, `--node`).
            RunStatus::Cancelled
        } else {
            RunStatus::Failed
        };
        // The run's last writes: a failure of any of them is the run's error.
        let mut ended = Ok(());
        if run.mode.records() && journal.failure().is_none() {
            self.record.status = summary.status;
            self.record.finished_ms = Some(now_ms());
            // Released first, without an fsync of its own: the run's final
            // record, committed durably, takes the release to disk with it.
            ended = match run.store.unlock_run(&run.id) {
                Ok(_) => journal.record_durably(Write::PutRun(self.record.clone())).await,
                Err(e) => Err(e.into()),
            };
        }
        let flushed = journal.flush().await;
        let failure = journal.failure().or_else(|| ended.and(flushed).err().map(|e| e.to_string()));
        if failure.is_some() {
            summary.status = RunStatus::Failed;
        }
        let ms = now_ms().saturating_sub(self.started_ms);
        run.events.send(RunEvent::RunFinished { run: run.id.clone(), status: summary.status, ms });
        match failure {
            Some(f) => Err(RunError::Journal(journal::JournalError::Write(f))),
            None => Ok(self.summary),
        }
    }
}

/// How preparing and walking an environment went.
enum Walked {
    Ran(Status, Option<String>, Arc<EnvRun>),
    /// It could not start (its records could not be read or written): why.
    DidNotStart(String),
}

/// The run's record as it starts.
fn run_record(
    pipeline: &LoadedPipeline,
    mode: Mode,
    store: &StateStore,
    opts: &RunOptions,
    id: &str,
    environments: &[EnvironmentPlan],
) -> Result<RunRecord, StateError> {
    let graph = &pipeline.graph;
    // A sensitive var's value is never stored: the run keeps that it was
    // given, and a keyed hash to tell whether a resume gets the same.
    let sensitive_vars = if mode.records() {
        opts.vars
            .iter()
            .filter(|(k, _)| graph.sensitive_vars.contains(k))
            .map(|(k, v)| Ok(crate::state::SensitiveVar { name: k.clone(), hash: store.keyed_hash(k, v)? }))
            .collect::<Result<_, StateError>>()?
    } else {
        Vec::new()
    };
    Ok(RunRecord {
        id: id.to_string(),
        pipeline: graph.name.clone(),
        file: std::fs::canonicalize(&pipeline.path).unwrap_or_else(|_| pipeline.path.clone()).display().to_string(),
        kind: if mode == Mode::Undeploy { RunKind::Undeploy } else { RunKind::Deploy },
        status: RunStatus::Running,
        environments: environments.iter().map(|e| e.name.clone()).collect(),
        vars: opts.vars.iter().filter(|(k, _)| !graph.sensitive_vars.contains(k)).cloned().collect(),
        sensitive_vars,
        sets: opts.sets.clone(),
        parallelism: opts.parallelism,
        message: opts.message.clone(),
        pid: std::process::id(),
        started_ms: now_ms(),
        finished_ms: None,
        outcomes: Vec::new(),
        started_by: opts.started_by.clone().unwrap_or_else(crate::os_user::current_user),
        trigger: opts.trigger,
        rerun_of: opts.rerun_of.clone(),
        resumed: Vec::new(),
        snapshot: None,
        targets: opts.selection.targets.clone(),
        orphans: opts.selection.orphans,
    })
}

/// Locks every resource the run may touch (`keys`: of an aimed run, only
/// what it takes), then records the run with its snapshot: one fsync for
/// all (the record, committed durably, puts the locks taken just before it
/// on disk with it).
async fn lock_and_record(
    store: &StateStore,
    journal: &RunJournal,
    keys: &[ResourceKey],
    record: &RunRecord,
    source: &RunSource,
) -> Result<(), RunError> {
    let holder = LockHolder { run_id: record.id.clone(), pid: std::process::id(), since_ms: now_ms() };
    store.lock(keys, &holder)?;
    let mut writes = source.writes();
    writes.push(Write::PutRun(record.clone()));
    journal.record_all_durably(writes).await?;
    Ok(())
}

/// Stops `run` when `asked` stops or the journal fails for good.
pub(super) fn forward_stops(asked: &StopSignal, journal: &RunJournal, run: &StopSignal) -> AbortOnDrop {
    let (mut asked, failed, run) = (asked.receiver(), journal.failed(), run.clone());
    AbortOnDrop(
        tokio::spawn(async move {
            tokio::select! {
                _ = asked.wait_for(|s| *s) => {}
                _ = failed => {}
            }
            run.stop();
        })
        .abort_handle(),
    )
}

/// Parses `--set r.a=v` values: JSON when they parse as JSON, else text.
pub fn parse_sets(sets: &[(String, String)], graph: &PipelineGraph) -> Result<Vec<(String, String, Value)>, RunError> {
    let mut out = Vec::new();
    for (target, value) in sets {
        let Some((r, a)) = target.split_once('.') else {
            return Err(RunError::BadSet(target.clone(), "write it as `resource.attribute=value`".into()));
        };
        if graph.find(r).is_none() {
            let names = graph.deploy_order().iter().map(|&i| graph.node(i).name.as_str());
            let hint = stackpipe_dsl::diagnostic::did_you_mean(r, names).map(|d| format!(" ({d})")).unwrap_or_default();
            return Err(RunError::BadSet(target.clone(), format!("there is no resource `{r}`{hint}")));
        }
        let v = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.clone()));
        out.push((r.to_string(), a.to_string(), v));
    }
    Ok(out)
}

/// Drops `outputs` on a thread of its own when there are many of them, so
/// that nothing waits while they are freed. (Plain data: no handle to the
/// state or the journal outlives the run this way.)
fn drop_aside(outputs: std::collections::HashMap<String, Value>) {
    const MANY: usize = 1000;
    if outputs.len() < MANY {
        return;
    }
    if let Err(e) = std::thread::Builder::new().name("stackpipe-drop".into()).spawn(move || drop(outputs)) {
        tracing::debug!("freeing outputs inline: {e}");
    }
}
