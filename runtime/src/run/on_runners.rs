//! A run worked by runners: [`Run::on_runners`] puts the run's stack jobs
//! in the job queue of its shared database, environment by environment,
//! and follows the run while runners (on any machine, this process among
//! them if it works as one) take the jobs. The process that started the
//! run stays its owner: it holds the run's record, its locks and its
//! gates, as in a run it walks itself. Every gate is asked here, with the
//! environments' rules of who decides and the run's `--yes` /
//! `--approve-env`, and decided here (at this terminal, or through its
//! control socket):
//!
//! - an environment's `approval = true`: the queue leaves the environment
//!   `waiting`; the decision opens or skips it;
//! - a node's `gate = "after"`: its runner completes it `gated`; the
//!   decision lets what needs it start, or skips that;
//! - a gate mid-job (a policy's approval, `pause_before_apply`): the runner
//!   posts it and waits; the decision is its answer.
//!
//! Everything the jobs did is in the state, written by their runners: the
//! owner tells it as events (a node's end, from its job record), records
//! the jobs that never started, ends each environment as it ends in the
//! queue, and finishes the run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stackpipe_dsl::OnFailure;
use stackpipe_state_postgres::{JobKey, JobQueue, QueuedEnvironment};

use super::env_run::Mode;
use super::events::RunEvent;
use super::execution::{Run, RunShared};
use super::gate::{GateOutcome, Gates, PostedAnswer};
use super::runner::Runner;
use super::stack_job::unstarted_record;
use super::{AbortOnDrop, RunError, RunSummary, StopSignal};
use crate::state::{now_ms, GateInfo, GateKind, JobRecord, JournalEntry, JournalPhase, Status, Write};

/// How often the owner looks at the queue.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

impl Run<'_> {
    /// Whether runners can work this run: a deploy or an undeploy of the
    /// whole pipeline, started afresh. (A run aimed at part of it, and a
    /// resume, are walked by the process that starts them.)
    pub fn runners_can_work(&self) -> bool {
        self.shared.mode.records() && self.selection_is_whole() && self.resume_is_empty()
    }

    fn selection_is_whole(&self) -> bool {
        self.environments.iter().all(|e| self.selection.environment(&self.shared.graph, &e.name).is_whole())
    }

    fn resume_is_empty(&self) -> bool {
        self.record.resumed.is_empty()
    }

    /// Puts the run's jobs in `queue` and follows it to its end, while
    /// runners work it; `local`, if given, is a runner this process runs
    /// until the run ends. See the module documentation.
    pub async fn on_runners(mut self, queue: JobQueue, local: Option<Arc<Runner>>) -> Result<RunSummary, RunError> {
        let run = self.shared.clone();
        self.enqueue(&queue).await?;
        let runner_stop = StopSignal::new();
        let local = local.map(|r| {
            let stop = runner_stop.clone();
            let task = tokio::spawn(r.work(stop));
            (task.abort_handle(), task)
        });
        let followed = self.follow(&queue).await;
        runner_stop.stop();
        if let Some((abort, task)) = local {
            let _abort = AbortOnDrop(abort);
            let _ = task.await;
        }
        if let Err(e) = followed {
            // The run's record says it ended with what could be seen; the
            // jobs left in the queue are cancelled, so no runner starts them.
            let _ = queue.cancel_run(&run.id).await;
            tracing::error!("lost the job queue: {e}");
            run.stop.stop();
            return Err(e);
        }
        if let Err(e) = queue.forget_run(&run.id).await {
            tracing::warn!("cannot clear run {} from the job queue: {e}", run.id);
        }
        self.finish().await
    }

    /// Puts every environment's jobs in the queue, in the order the run
    /// takes them. Every apply the run may make is journaled first, as a
    /// walk journals an environment's before any starts.
    async fn enqueue(&self, queue: &JobQueue) -> Result<(), RunError> {
        let run = &self.shared;
        let graph = &run.graph;
        let mut queued = Vec::new();
        let mut planned = Vec::new();
        for env in &self.environments {
            let selection = self.selection.environment(graph, &env.name);
            let names: Vec<String> = selection.subjects().iter().map(|&s| selection.resource(graph, s).name.clone()).collect();
            let waits = selection.waits_for(graph, run.mode);
            let nodes = names.iter().zip(&waits).map(|(n, w)| (n.clone(), w.iter().map(|&d| names[d].clone()).collect())).collect();
            queued.push(QueuedEnvironment { name: env.name.clone(), approval: env.approval, parallelism: run.parallelism, nodes });
            if run.mode == Mode::Deploy {
                planned.push(Write::Journal(JournalEntry {
                    run_id: run.id.clone(),
                    environment: env.name.clone(),
                    node: String::new(),
                    nodes: selection.in_deploy_order(graph).map(|i| graph.node(i).name.clone()).collect(),
                    op: "apply".into(),
                    phase: JournalPhase::Planned,
                    ms: now_ms(),
                }));
            }
        }
        run.journal.record_all_durably(planned).await?;
        queue.enqueue_run(&run.id, &queued).await.map_err(|e| RunError::Queue(e.to_string()))?;
        Ok(())
    }

    /// Follows the run in the queue until every environment has ended.
    async fn follow(&mut self, queue: &JobQueue) -> Result<(), RunError> {
        let run = self.shared.clone();
        let gates = run.gates.clone().ok_or_else(|| RunError::Queue("a run without gates cannot be queued".into()))?;
        let asker = Asker { run: run.clone(), gates, queue: queue.clone(), rejected: Default::default(), asking: Default::default() };
        let mut seen_envs: HashMap<String, String> = HashMap::new();
        // Environments said to start (at their gate, or as they opened),
        // and those whose jobs ran.
        let (mut announced, mut ran): (HashSet<String>, HashSet<String>) = Default::default();
        // Every job's state as last told (ended or gated ones), the ends
        // not dealt with yet (an environment's, before it is seen to run),
        // and the jobs whose end was said.
        let mut states: BTreeMap<JobKey, String> = BTreeMap::new();
        let mut fresh: Vec<(JobKey, String)> = Vec::new();
        let mut said: HashSet<JobKey> = HashSet::new();
        let mut cancelled = false;
        let q = |e: stackpipe_state_postgres::QueueError| RunError::Queue(e.to_string());
        loop {
            if let Some(failure) = queue.run_failure(&run.id).await.map_err(q)? {
                run.journal.failed_elsewhere(failure);
            }
            if !cancelled && (self.asked_stop.is_stopped() || run.stop.is_stopped()) {
                queue.cancel_run(&run.id).await.map_err(q)?;
                cancelled = true;
            }
            let envs = queue.environments(&run.id).await.map_err(q)?;
            for (job, state) in queue.tell(&run.id).await.map_err(q)? {
                states.insert(job.clone(), state.clone());
                fresh.push((job, state));
            }
            // Environment by environment, in the run's order: what started
            // is said before what happened in it, and an environment may
            // have opened and ended between two looks.
            for (env, state) in &envs {
                let started = matches!(state.as_str(), "waiting" | "open" | "succeeded" | "failed");
                if started && announced.insert(env.clone()) {
                    let selection = self.selection.environment(&run.graph, env);
                    run.events.send(RunEvent::EnvironmentStarted {
                        run: run.id.clone(),
                        environment: env.clone(),
                        nodes: selection.briefs(&run.graph),
                    });
                }
                if state == "waiting" {
                    asker.environment_gate(env);
                }
                if matches!(state.as_str(), "open" | "succeeded" | "failed") {
                    ran.insert(env.clone());
                    let (mine, others): (Vec<_>, Vec<_>) = fresh.drain(..).partition(|(j, _)| &j.environment == env);
                    fresh = others;
                    let mut ended = Vec::new();
                    for (job, state) in &mine {
                        if state == "gated" {
                            asker.node_gate(job);
                        }
                        if said.insert(job.clone()) {
                            ended.extend(self.job_record(job, state, cancelled, &states)?);
                        }
                    }
                    // As they ended, not as they are named.
                    ended.sort_by_key(|r| r.finished_ms.unwrap_or(0));
                    for record in ended {
                        self.tell_job(record);
                    }
                }
                if seen_envs.get(env) != Some(state) {
                    seen_envs.insert(env.clone(), state.clone());
                    if !matches!(state.as_str(), "pending" | "waiting" | "open") {
                        self.end_queued_environment(env, state, ran.contains(env), &states, &asker, cancelled);
                    }
                }
            }
            for posted in queue.posted_gates(&run.id).await.map_err(q)? {
                asker.posted_gate(posted);
            }
            if envs.iter().all(|(_, s)| !matches!(s.as_str(), "pending" | "waiting" | "open")) {
                return Ok(());
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }

    /// A job's record once it ended: the one its runner wrote, or, for a
    /// job that never started, one made (and kept) now.
    fn job_record(
        &self,
        job: &JobKey,
        state: &str,
        cancelled: bool,
        jobs: &BTreeMap<JobKey, String>,
    ) -> Result<Option<JobRecord>, RunError> {
        let run = &self.shared;
        Ok(match run.store.job(&run.id, &job.environment, &job.node)? {
            Some(record) => Some(record),
            None if state == "cancelled" || state == "skipped" => {
                let record = self.unstarted(job, state, cancelled, jobs)?;
                run.journal.record(Write::PutJob(record.clone()));
                Some(record)
            }
            // Ended without a record: its runner's writes were lost.
            None => None,
        })
    }

    /// Tells a job's end.
    fn tell_job(&self, record: JobRecord) {
        let ms = match (record.started_ms, record.finished_ms) {
            (Some(s), Some(f)) => f.saturating_sub(s),
            _ => 0,
        };
        self.shared.events.send(RunEvent::NodeFinished {
            environment: record.environment,
            node: record.node,
            status: record.status,
            change: record.change,
            ms,
            error: record.error,
        });
    }

    /// The record of a job the queue cancelled or skipped before it
    /// started, saying why as a walk would: a job after a failed one was
    /// cancelled by it; under `stop-all`, any other by the first failure.
    fn unstarted(&self, job: &JobKey, state: &str, cancelled: bool, jobs: &BTreeMap<JobKey, String>) -> Result<JobRecord, RunError> {
        let run = &self.shared;
        let env = &job.environment;
        let failed: HashSet<&str> =
            jobs.iter().filter(|(j, s)| &j.environment == env && *s == "failed").map(|(j, _)| j.node.as_str()).collect();
        let (status, why) = match state {
            "skipped" => (Status::Skipped, "a gate before it was rejected".to_string()),
            _ if cancelled => (Status::Cancelled, "the run was cancelled".to_string()),
            _ if self.needs_any(env, &job.node, &failed) => (Status::Cancelled, "a dependency failed".to_string()),
            _ if self.on_failure(env) == OnFailure::StopAll => {
                // The first to fail is the one that stopped the rest.
                let mut first: Vec<(u64, &str)> = Vec::new();
                for node in &failed {
                    let at = run.store.job(&run.id, env, node)?.and_then(|r| r.finished_ms).unwrap_or(u64::MAX);
                    first.push((at, node));
                }
                first.sort();
                let name = first.first().map(|(_, n)| format!("`{n}`")).unwrap_or_else(|| "a node".into());
                (Status::Cancelled, format!("not started: {name} failed, and on_failure = \"stop-all\" stops everything not started"))
            }
            _ => (Status::Cancelled, "a dependency failed".to_string()),
        };
        let level = run.graph.find(&job.node).map(|i| run.graph.node(i).level).unwrap_or(0);
        Ok(unstarted_record(&run.id, env, &job.node, level, run.mode.destroys(), status, &why))
    }

    /// Whether `node` of `env` waits (in this run's order, through any
    /// number of jobs) for one of `nodes`.
    fn needs_any(&self, env: &str, node: &str, nodes: &HashSet<&str>) -> bool {
        let graph = &self.shared.graph;
        let selection = self.selection.environment(graph, env);
        let names: Vec<&str> = selection.subjects().iter().map(|&s| selection.resource(graph, s).name.as_str()).collect();
        let waits = selection.waits_for(graph, self.shared.mode);
        let Some(start) = names.iter().position(|n| *n == node) else { return false };
        let mut seen = vec![false; names.len()];
        let mut todo = vec![start];
        while let Some(at) = todo.pop() {
            for &d in &waits[at] {
                if nodes.contains(names[d]) {
                    return true;
                }
                if !std::mem::replace(&mut seen[d], true) {
                    todo.push(d);
                }
            }
        }
        false
    }

    fn on_failure(&self, environment: &str) -> OnFailure {
        self.environments.iter().find(|e| e.name == environment).map(|e| e.on_failure).unwrap_or_default()
    }

    /// Ends an environment as it ended in the queue: its status and why,
    /// as a walk would say them, and its `output`s.
    fn end_queued_environment(
        &mut self,
        env: &str,
        state: &str,
        ran: bool,
        jobs: &BTreeMap<JobKey, String>,
        asker: &Asker,
        cancelled: bool,
    ) {
        let named = |want: &str| {
            let names: Vec<&str> =
                jobs.iter().filter(|(j, s)| j.environment == env && *s == want).map(|(j, _)| j.node.as_str()).collect();
            names.join(", ")
        };
        let (status, reason) = match state {
            "succeeded" => (Status::Succeeded, None),
            "skipped" => match asker.rejected_reason(env) {
                Some(why) => (Status::Skipped, Some(why)),
                None => (Status::Skipped, self.blocked.clone()),
            },
            "cancelled" if asker.was_asked(env) => {
                (Status::Cancelled, Some("the run was cancelled while it waited for approval".to_string()))
            }
            "cancelled" => (Status::Cancelled, Some("the run was cancelled".to_string())),
            _ => {
                let (failed, rejected) = (named("failed"), named("rejected"));
                if !failed.is_empty() {
                    (Status::Failed, Some(format!("what failed: {failed}")))
                } else if !rejected.is_empty() {
                    (Status::Failed, Some(format!("rejected at a gate: {rejected}")))
                } else if cancelled {
                    (Status::Cancelled, Some("the run was cancelled".to_string()))
                } else {
                    (Status::Failed, None)
                }
            }
        };
        if ran && self.shared.mode == Mode::Deploy {
            self.summary.outputs.push((env.to_string(), self.environment_outputs(env)));
        }
        if status != Status::Succeeded && self.blocked.is_none() {
            let how = match status {
                Status::Cancelled => "was cancelled",
                Status::Skipped => "was rejected",
                _ => "failed",
            };
            self.blocked = Some(format!("environment `{env}` {how}"));
        }
        self.end_environment(env, status, reason);
    }

    /// The pipeline's `output`s in `env`, from what the runners applied.
    fn environment_outputs(&self, env: &str) -> serde_json::Map<String, serde_json::Value> {
        let run = &self.shared;
        match super::outputs::deployed_outputs(&run.graph, &run.store, false) {
            Ok(all) => all.into_iter().find(|e| e.environment == env).map(|e| e.outputs).unwrap_or_default(),
            Err(e) => {
                tracing::warn!("cannot read the outputs of environment {env}: {e}");
                Default::default()
            }
        }
    }
}

/// A gate asked: environment, node, and which of the node's.
type Asked = (String, Option<String>, &'static str);

/// Asks the run's gates on behalf of the queue: each gate once, in a task
/// of its own; the decision goes to the queue.
struct Asker {
    run: Arc<RunShared>,
    gates: Arc<Gates>,
    queue: JobQueue,
    /// Environments whose approval was rejected: why.
    rejected: Arc<Mutex<HashMap<String, String>>>,
    /// The gates asked (or being asked): environment, node, which.
    asking: Arc<Mutex<HashSet<Asked>>>,
}

impl Asker {
    /// Whether this gate is asked for the first time now.
    fn first(&self, asked: Asked) -> bool {
        self.asking.lock().map(|mut a| a.insert(asked)).unwrap_or(false)
    }

    fn was_asked(&self, environment: &str) -> bool {
        self.asking.lock().map(|a| a.contains(&(environment.to_string(), None, "approval"))).unwrap_or(false)
    }

    fn rejected_reason(&self, environment: &str) -> Option<String> {
        self.rejected.lock().ok()?.get(environment).cloned()
    }

    fn gate(&self, kind: GateKind, environment: &str, node: Option<&str>, reason: String) -> GateInfo {
        GateInfo { kind, environment: environment.to_string(), node: node.map(str::to_string), reason, detail: None, since_ms: now_ms() }
    }

    /// The environment's `approval = true`.
    fn environment_gate(&self, env: &str) {
        if !self.first((env.to_string(), None, "approval")) {
            return;
        }
        let gate = self.gate(GateKind::Environment, env, None, format!("environment `{env}` has `approval = true`"));
        let (run, gates, queue, rejected, env) = (self.run.clone(), self.gates.clone(), self.queue.clone(), self.rejected.clone(), env.to_string());
        tokio::spawn(async move {
            let approved = match gates.wait_until(gate, run.stopped(&env, None)).await {
                GateOutcome::Approved => true,
                GateOutcome::Rejected(d) => {
                    let why = format!("rejected by {}{}", d.by, d.comment.map(|c| format!(": {c}")).unwrap_or_default());
                    if let Ok(mut r) = rejected.lock() {
                        r.insert(env.clone(), why);
                    }
                    false
                }
                // The run is being cancelled: the queue cancels what waits.
                GateOutcome::Cancelled => return,
            };
            if let Err(e) = queue.decide(&run.id, &env, approved).await {
                tracing::error!("cannot open environment {env} in the job queue: {e}");
                run.stop.stop();
            }
        });
    }

    /// A job done whose node has `gate = "after"`.
    fn node_gate(&self, job: &JobKey) {
        if !self.first((job.environment.clone(), Some(job.node.clone()), "after")) {
            return;
        }
        let reason = format!("`{}` has `gate = \"after\"`: approve before its dependents start", job.node);
        let gate = self.gate(GateKind::After, &job.environment, Some(&job.node), reason);
        let (run, gates, queue, job) = (self.run.clone(), self.gates.clone(), self.queue.clone(), job.clone());
        tokio::spawn(async move {
            let approved = match gates.wait_until(gate, run.stopped(&job.environment, Some(&job.node))).await {
                GateOutcome::Approved => true,
                GateOutcome::Rejected(_) => false,
                GateOutcome::Cancelled => return,
            };
            if let Err(e) = queue.decide_node(&job, approved).await {
                tracing::error!("cannot decide the gate of {job} in the job queue: {e}");
                run.stop.stop();
            }
        });
    }

    /// A gate a runner's job waits at mid-job.
    fn posted_gate(&self, posted: stackpipe_state_postgres::PostedGate) {
        let job = posted.job;
        let asked: Asked = (job.environment.clone(), Some(job.node.clone()), "mid-job");
        if !self.first(asked.clone()) {
            return;
        }
        let gate: GateInfo = match serde_json::from_str(&posted.gate) {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("the gate {job} waits at is not one: {e}");
                return;
            }
        };
        let (run, gates, queue, asking) = (self.run.clone(), self.gates.clone(), self.queue.clone(), self.asking.clone());
        tokio::spawn(async move {
            let answer = match gates.wait_until(gate, run.stopped(&job.environment, Some(&job.node))).await {
                GateOutcome::Rejected(d) => PostedAnswer::Decided(d),
                GateOutcome::Approved => {
                    // The decision is in the state: the answer carries it.
                    match run.store.decisions(&run.id) {
                        Ok(d) => d
                            .into_iter()
                            .rev()
                            .find(|d| d.gate.environment == job.environment && d.gate.node.as_deref() == Some(job.node.as_str()))
                            .map(PostedAnswer::Decided)
                            .unwrap_or(PostedAnswer::Cancelled),
                        Err(e) => {
                            tracing::error!("cannot read the decision at {job}: {e}");
                            PostedAnswer::Cancelled
                        }
                    }
                }
                GateOutcome::Cancelled => PostedAnswer::Cancelled,
            };
            let text = serde_json::to_string(&answer).unwrap_or_else(|_| "\"Cancelled\"".into());
            if let Err(e) = queue.answer_gate(&job, &text).await {
                tracing::error!("cannot answer the gate of {job}: {e}");
            }
            // The same job may wait at a gate again (taken again by another runner).
            if let Ok(mut a) = asking.lock() {
                a.remove(&asked);
            }
        });
    }
}
