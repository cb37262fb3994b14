//! The status document of a run, as `stackpipe status --json` prints it:
//! from the state store for a run that is over, from the control socket's
//! live board for a run in progress. Both build it here, so it has one shape.

use serde_json::{json, Value};

use crate::state::{EnvOutcome, GateDecision, GateInfo, JobRecord, RunRecord, RunStatus, Status};

fn gate_json(g: &GateInfo) -> Value {
    json!({
        "gate": g.kind, "reason": g.reason, "detail": g.detail, "since_ms": g.since_ms,
    })
}

/// The document. `envs` has every environment of the run, in run order;
/// `waiting` the gates waiting now.
pub fn document(run: &RunRecord, envs: &[EnvOutcome], jobs: &[JobRecord], decisions: &[GateDecision], waiting: &[GateInfo]) -> Value {
    let environments: Vec<Value> = envs
        .iter()
        .map(|env| {
            let env_gate = waiting.iter().find(|g| g.environment == env.name && g.node.is_none());
            let nodes: Vec<Value> = jobs
                .iter()
                .filter(|j| j.environment == env.name)
                .map(|j| {
                    let gate = waiting.iter().find(|g| g.environment == env.name && g.node.as_deref() == Some(&j.node));
                    json!({
                        "name": j.node,
                        "level": j.level,
                        "status": if gate.is_some() { Status::Waiting } else { j.status },
                        "change": j.change,
                        "started_ms": j.started_ms,
                        "finished_ms": j.finished_ms,
                        "error": j.error,
                        "waiting_for": gate.map(gate_json),
                        "input": j.input,
                        "operations": j.ops.iter().map(|o| json!({
                            "name": o.name, "status": o.status, "started_ms": o.started_ms,
                            "finished_ms": o.finished_ms, "message": o.message,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "name": env.name,
                "status": if env_gate.is_some() { Status::Waiting } else { env.status },
                "reason": env.reason,
                "waiting_for": env_gate.map(gate_json),
                "nodes": nodes,
            })
        })
        .collect();
    json!({
        "run": run.id,
        "pipeline": run.pipeline,
        "operation": run.kind,
        "status": run.status,
        "message": run.message,
        "started_ms": run.started_ms,
        "finished_ms": run.finished_ms,
        "environments": environments,
        "waiting": waiting.iter().map(|g| json!({
            "environment": g.environment, "node": g.node, "gate": g.kind,
            "reason": g.reason, "detail": g.detail, "since_ms": g.since_ms,
        })).collect::<Vec<_>>(),
        "decisions": decisions.iter().map(|d| json!({
            "environment": d.gate.environment, "node": d.gate.node, "gate": d.gate.kind,
            "reason": d.gate.reason, "decision": d.decision, "by": d.by, "at_ms": d.at_ms, "comment": d.comment,
        })).collect::<Vec<_>>(),
    })
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
