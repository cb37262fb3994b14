//! Runs: one deploy or undeploy of a pipeline over its environments, or a
//! plan. Environments run one after another in `after` order (reverse order
//! for undeploy); a failed environment skips the ones after it. Inside an
//! environment, the graph walker runs one stack job per node.

pub mod events;
pub mod journal;
pub mod scheduler;
pub mod stack_job;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use stackpipe_dsl::{EnvironmentPlan, PipelineGraph};
use tokio::sync::watch;

pub use events::{Events, RunEvent};
pub use journal::RunJournal;
pub use scheduler::{walk, NodeEnd};
pub use stack_job::{mask, EnvRun, Mode, PlannedChange, StackJob, UNKNOWN};

use crate::pipeline::LoadedPipeline;
use crate::plugin::{LoadedPlugin, PluginHost, PluginLoad, Sandbox};
use crate::state::{now_ms, LockHolder, ResourceKey, RunKind, RunRecord, RunStatus, StateError, StateStore, Status, Write};

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
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("invalid --set `{0}`: {1}")]
    BadSet(String, String),
    #[error("the state store's writer failed: {0}")]
    Journal(#[from] journal::JournalError),
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
pub fn load_plugins(host: &PluginHost, env: &EnvironmentPlan, base_dir: &Path) -> HashMap<String, Result<Arc<LoadedPlugin>, String>> {
    let mut out = HashMap::new();
    for (name, spec) in &env.plugins {
        let loaded = (|| {
            let bytes = PluginHost::read_source(name, &spec.source, base_dir).map_err(|e| e.to_string())?;
            let sandbox = Sandbox::from_grants(&spec.grants, base_dir)
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
    stop: watch::Receiver<bool>,
) -> Result<RunSummary, RunError> {
    let graph = Arc::new(pipeline.graph.clone());
    let sets = parse_sets(&opts.sets, &graph)?;
    let mut envs: Vec<EnvironmentPlan> = graph.environments.clone();
    if mode == Mode::Undeploy {
        envs.reverse();
    }
    let journal = RunJournal::start(store.clone());
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
        vars: opts.vars.clone(),
        sets: opts.sets.clone(),
        parallelism: opts.parallelism,
        message: opts.message.clone(),
        pid: std::process::id(),
        started_ms,
        finished_ms: None,
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
    if mode.records() {
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
        store.lock(&keys, &holder)?;
        store.set_owner_run(&run_id)?;
        journal.record_durably(Write::PutRun(record.clone())).await?;
    }
    events.send(RunEvent::RunStarted {
        run: run_id.clone(),
        pipeline: graph.name.clone(),
        operation: match mode {
            Mode::Deploy => "deploy",
            Mode::Undeploy => "undeploy",
            Mode::Plan => "plan",
            Mode::Preflight => "preflight",
        },
        environments: envs.iter().map(|e| e.name.clone()).collect(),
        nodes: graph.len(),
    });

    let mut summary =
        RunSummary { run_id: run_id.clone(), status: RunStatus::Succeeded, environments: Vec::new(), planned: Vec::new(), outputs: Vec::new() };
    let mut blocked = false;
    for env in envs {
        if blocked || *stop.borrow() {
            summary.environments.push((env.name.clone(), Status::Skipped));
            events.send(RunEvent::EnvironmentFinished { environment: env.name.clone(), status: Status::Skipped });
            continue;
        }
        events.send(RunEvent::EnvironmentStarted { run: run_id.clone(), environment: env.name.clone() });
        let plugins = load_plugins(&host, &env, &pipeline.base_dir);
        let env_run = Arc::new(EnvRun::new(
            run_id.clone(),
            graph.clone(),
            env.clone(),
            mode,
            host.clone(),
            store.clone(),
            journal.clone(),
            events.clone(),
            plugins,
            opts.message.clone(),
            sets.clone(),
        ));
        let status = run_environment(&env_run, mode, opts, stop.clone()).await;
        if !mode.records() {
            if let Ok(mut p) = env_run.planned.lock() {
                summary.planned.append(&mut p);
            }
        } else {
            summary.outputs.push((env.name.clone(), pipeline_outputs(&env_run)));
        }
        events.send(RunEvent::EnvironmentFinished { environment: env.name.clone(), status });
        summary.environments.push((env.name.clone(), status));
        if status != Status::Succeeded {
            blocked = true;
        }
    }
    summary.status = if summary.environments.iter().all(|(_, s)| *s == Status::Succeeded) {
        RunStatus::Succeeded
    } else if *stop.borrow() {
        RunStatus::Cancelled
    } else {
        RunStatus::Failed
    };
    if mode.records() {
        record.status = summary.status;
        record.finished_ms = Some(now_ms());
        journal.record_durably(Write::PutRun(record)).await?;
        store.unlock_run(&run_id)?;
    }
    journal.flush().await?;
    events.send(RunEvent::RunFinished { run: run_id, status: summary.status, ms: now_ms().saturating_sub(started_ms) });
    Ok(summary)
}

/// Walks one environment's graph; the environment's status.
async fn run_environment(env: &Arc<EnvRun>, mode: Mode, opts: &RunOptions, stop: watch::Receiver<bool>) -> Status {
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
    // A resumed run does not redo nodes that already succeeded in it.
    let mut done = vec![false; n];
    if opts.resume.is_some() {
        if let Ok(jobs) = env.store.jobs(&env.run_id) {
            for j in jobs.iter().filter(|j| j.environment == env.env.name && j.status == Status::Succeeded) {
                if let Some(i) = graph.find(&j.node) {
                    done[i.index()] = true;
                    if let Ok(Some(r)) = env.store.resource(&env.key(&j.node)) {
                        if let Ok(mut o) = env.outputs.write() {
                            o.insert(j.node.clone(), r.outputs);
                        }
                    }
                }
            }
        }
    }
    if opts.resume.is_some() {
        let in_flight = in_flight(env);
        if let Ok(mut f) = env.in_flight.write() {
            *f = in_flight;
        }
    }
    if mode == Mode::Deploy {
        // Every apply this environment may make is on disk before any starts.
        let planned: Vec<Write> = (0..n)
            .filter(|&i| !done[i])
            .map(|i| {
                Write::Journal(crate::state::JournalEntry {
                    run_id: env.run_id.clone(),
                    environment: env.env.name.clone(),
                    node: graph.node(petgraph::graph::NodeIndex::new(i)).name.clone(),
                    op: "apply".into(),
                    phase: crate::state::JournalPhase::Planned,
                    ms: now_ms(),
                })
            })
            .collect();
        if let Err(e) = env.journal.record_all_durably(planned).await {
            tracing::error!("cannot journal the environment's plan: {e}");
            return Status::Failed;
        }
    }
    let done = Arc::new(done);
    let ends = walk(&deps, opts.parallelism, stop.clone(), |i| {
        let env = env.clone();
        let done = done.clone();
        async move {
            if done[i] {
                return true;
            }
            StackJob::new(env, petgraph::graph::NodeIndex::new(i)).run().await
        }
    })
    .await;
    let stopped = *stop.borrow();
    for (i, end) in ends.iter().enumerate() {
        if *end == NodeEnd::Cancelled {
            let idx = petgraph::graph::NodeIndex::new(i);
            let why = if stopped { "the run was cancelled" } else { "a dependency failed" };
            let record = StackJob::cancelled(env.clone(), idx, why);
            env.events.send(RunEvent::NodeFinished {
                environment: env.env.name.clone(),
                node: record.node.clone(),
                status: Status::Cancelled,
                change: None,
                ms: 0,
                error: Some(why.into()),
            });
            if mode.records() {
                env.journal.record(Write::PutJob(record));
            }
        }
    }
    if ends.iter().all(|e| *e == NodeEnd::Succeeded) {
        Status::Succeeded
    } else if stopped && !ends.contains(&NodeEnd::Failed) {
        Status::Cancelled
    } else {
        Status::Failed
    }
}

/// The pipeline's `output`s, from the environment's resource outputs.
fn pipeline_outputs(env: &EnvRun) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    let Ok(outputs) = env.outputs.read() else { return out };
    let lookup = |r: &str| outputs.get(r).cloned();
    let scope = stackpipe_dsl::eval::Scope {
        pipeline: &env.graph.name,
        environment: &env.env.name,
        vars: &env.env.vars,
        outputs: &lookup,
    };
    for o in &env.graph.outputs {
        if let Ok(v) = stackpipe_dsl::eval::eval(&o.value, &scope) {
            out.insert(o.name.name.clone(), v);
        }
    }
    out
}

/// A resumed run: the nodes whose apply or destroy was in flight when the
/// run stopped, said out loud. Their jobs run again from preflight: refresh
/// reads what is really there (an update that landed plans as no change),
/// and an apply whose result was lost asks the provisioner what it created.
fn in_flight(env: &EnvRun) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    let Ok(entries) = env.store.journal(&env.run_id) else { return out };
    let mut last: HashMap<(&str, &str), crate::state::JournalPhase> = HashMap::new();
    for e in entries.iter().filter(|e| e.environment == env.env.name) {
        last.insert((e.node.as_str(), e.op.as_str()), e.phase);
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
                env.events.send(RunEvent::Log { environment: env.env.name.clone(), node: node.to_string(), op: "preflight", text });
            }
            Done | Failed | Withdrawn => continue,
        }
        out.insert(node.to_string());
    }
    out
}
