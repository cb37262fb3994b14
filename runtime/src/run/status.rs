//! The status document of a run, as `stackpipe status --json` prints it:
//! from the state store for a run that is over, from the control socket's
//! live board for a run in progress. One typed document: whoever builds it,
//! sends it or renders it uses these types, so it has one shape.

use serde::{Deserialize, Serialize};

use crate::state::{
    Decision, EnvOutcome, GateDecision, GateInfo, GateKind, JobDiff, JobInput, JobRecord, OpRecord, Resumption, RunKind,
    RunRecord, RunStatus, RunTrigger, Status,
};

/// The status of one run: what `status --json` prints, what the control
/// socket answers, and what `status` renders as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDocument {
    pub run: String,
    pub pipeline: String,
    pub operation: RunKind,
    pub status: RunStatus,
    pub message: Option<String>,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    /// Who started the run, how, and each resume of it.
    pub started_by: String,
    pub trigger: RunTrigger,
    pub rerun_of: Option<String>,
    pub resumed: Vec<Resumption>,
    /// The digest of the snapshot the run was started from (`stackpipe
    /// show RUN` prints it); None for runs of an older stackpipe.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// `--target`: what the run was aimed at (empty: the whole pipeline).
    /// Resources it did not take are not in `environments`: it did not touch them.
    #[serde(default)]
    pub targets: Vec<String>,
    /// `--orphans`: the run destroyed what the pipeline no longer declares.
    #[serde(default)]
    pub orphans: bool,
    /// Every environment of the run, in run order.
    pub environments: Vec<EnvironmentStatus>,
    /// The gates waiting now.
    pub waiting: Vec<WaitingGate>,
    /// Every gate decided in the run, in the order decided.
    pub decisions: Vec<DecisionTaken>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentStatus {
    pub name: String,
    /// `waiting` while its environment gate waits.
    pub status: Status,
    pub reason: Option<String>,
    /// Its environment gate, while that waits.
    pub waiting_for: Option<GateWait>,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub level: usize,
    /// `waiting` while a gate of the node waits.
    pub status: Status,
    /// create | update | replace | delete | no-op, once previewed.
    pub change: Option<String>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub error: Option<String>,
    pub waiting_for: Option<GateWait>,
    /// What the job was given (secrets masked).
    pub input: Option<JobInput>,
    /// What it was to change, secrets masked: its preview's changes, or
    /// that none were computed (None: it has not got that far, or its
    /// record is from before diffs were kept).
    #[serde(default)]
    pub diff: Option<JobDiff>,
    pub operations: Vec<OperationStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationStatus {
    pub name: String,
    pub status: Status,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub message: Option<String>,
}

/// A gate a node or an environment waits at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateWait {
    pub gate: GateKind,
    pub reason: String,
    /// The planned change, for a pause or a policy gate.
    pub detail: Option<String>,
    pub since_ms: u64,
}

/// A gate waiting now, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitingGate {
    pub environment: String,
    /// None for an environment gate.
    pub node: Option<String>,
    pub gate: GateKind,
    pub reason: String,
    pub detail: Option<String>,
    pub since_ms: u64,
}

/// A gate someone approved or rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionTaken {
    pub environment: String,
    pub node: Option<String>,
    pub gate: GateKind,
    pub reason: String,
    pub decision: Decision,
    pub by: String,
    pub at_ms: u64,
    pub comment: Option<String>,
}

impl From<&GateInfo> for GateWait {
    fn from(g: &GateInfo) -> Self {
        GateWait { gate: g.kind, reason: g.reason.clone(), detail: g.detail.clone(), since_ms: g.since_ms }
    }
}

impl From<&GateInfo> for WaitingGate {
    fn from(g: &GateInfo) -> Self {
        WaitingGate {
            environment: g.environment.clone(),
            node: g.node.clone(),
            gate: g.kind,
            reason: g.reason.clone(),
            detail: g.detail.clone(),
            since_ms: g.since_ms,
        }
    }
}

impl From<&GateDecision> for DecisionTaken {
    fn from(d: &GateDecision) -> Self {
        DecisionTaken {
            environment: d.gate.environment.clone(),
            node: d.gate.node.clone(),
            gate: d.gate.kind,
            reason: d.gate.reason.clone(),
            decision: d.decision,
            by: d.by.clone(),
            at_ms: d.at_ms,
            comment: d.comment.clone(),
        }
    }
}

impl From<&OpRecord> for OperationStatus {
    fn from(o: &OpRecord) -> Self {
        OperationStatus {
            name: o.name.clone(),
            status: o.status,
            started_ms: o.started_ms,
            finished_ms: o.finished_ms,
            message: o.message.clone(),
        }
    }
}

impl StatusDocument {
    /// The document of `run`. `envs` has every environment of the run, in
    /// run order; `waiting` the gates waiting now.
    pub fn new(
        run: &RunRecord,
        envs: &[EnvOutcome],
        jobs: &[JobRecord],
        decisions: &[GateDecision],
        waiting: &[GateInfo],
    ) -> StatusDocument {
        let environments = envs
            .iter()
            .map(|env| {
                let env_gate = waiting.iter().find(|g| g.environment == env.name && g.node.is_none());
                let nodes = jobs
                    .iter()
                    .filter(|j| j.environment == env.name)
                    .map(|j| {
                        let gate = waiting.iter().find(|g| g.environment == env.name && g.node.as_deref() == Some(&j.node));
                        NodeStatus {
                            name: j.node.clone(),
                            level: j.level,
                            status: if gate.is_some() { Status::Waiting } else { j.status },
                            change: j.change.clone(),
                            started_ms: j.started_ms,
                            finished_ms: j.finished_ms,
                            error: j.error.clone(),
                            waiting_for: gate.map(GateWait::from),
                            input: j.input.clone(),
                            diff: j.diff.clone(),
                            operations: j.ops.iter().map(OperationStatus::from).collect(),
                        }
                    })
                    .collect();
                EnvironmentStatus {
                    name: env.name.clone(),
                    status: if env_gate.is_some() { Status::Waiting } else { env.status },
                    reason: env.reason.clone(),
                    waiting_for: env_gate.map(GateWait::from),
                    nodes,
                }
            })
            .collect();
        StatusDocument {
            run: run.id.clone(),
            pipeline: run.pipeline.clone(),
            operation: run.kind,
            status: run.status,
            message: run.message.clone(),
            started_ms: run.started_ms,
            finished_ms: run.finished_ms,
            started_by: run.started_by.clone(),
            trigger: run.trigger,
            rerun_of: run.rerun_of.clone(),
            resumed: run.resumed.clone(),
            snapshot: run.snapshot.clone(),
            targets: run.targets.clone(),
            orphans: run.orphans,
            environments,
            waiting: waiting.iter().map(WaitingGate::from).collect(),
            decisions: decisions.iter().map(DecisionTaken::from).collect(),
        }
    }

    /// The document of a run that is not in progress here: its
    /// environments as stored (see [`stored_outcomes`]), no gate waiting.
    pub fn stored(run: &RunRecord, jobs: &[JobRecord], decisions: &[GateDecision]) -> StatusDocument {
        StatusDocument::new(run, &stored_outcomes(run, jobs), jobs, decisions, &[])
    }
}

/// Every environment of a stored run with its status: as recorded when it
/// ended, or, for one that had not (the run is in progress or was killed),
/// as its jobs say.
pub fn stored_outcomes(run: &RunRecord, jobs: &[JobRecord]) -> Vec<EnvOutcome> {
    run.environments
        .iter()
        .map(|name| {
            if let Some(o) = run.outcomes.iter().find(|o| &o.name == name) {
                return o.clone();
            }
            let nodes: Vec<&JobRecord> = jobs.iter().filter(|j| &j.environment == name).collect();
            let status = if nodes.is_empty() {
                if run.status == RunStatus::Running { Status::Queued } else { Status::Skipped }
            } else if nodes.iter().any(|j| j.status == Status::Failed) {
                Status::Failed
            } else if nodes.iter().all(|j| j.status == Status::Succeeded) && run.status != RunStatus::Running {
                Status::Succeeded
            } else if run.status == RunStatus::Running {
                Status::Running
            } else {
                Status::Cancelled
            };
            EnvOutcome { name: name.clone(), status, reason: None }
        })
        .collect()
}
