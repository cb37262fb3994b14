//! What a resumed run takes from its own records: which nodes already
//! succeeded (and their outputs), which operations were in flight when it
//! stopped, and which gates were decided. Read once, when the run starts,
//! and read whole or not at all: a resume that could not read which nodes
//! already succeeded would apply them a second time.

use std::collections::{HashMap, HashSet};

use stackpipe_dsl::PipelineGraph;

use crate::state::{Decision, GateDecision, GateKind, JournalPhase, StateError, StateStore, Status};

/// A run's records from before it stopped; empty for a run that starts afresh.
#[derive(Debug, Default)]
pub struct Resume {
    /// Per environment: the nodes that succeeded.
    done: HashMap<String, HashSet<String>>,
    /// Per environment: (node, operation, whether it is known to have
    /// started) whose last journal entry says it was to start or started,
    /// and never ended.
    in_flight: HashMap<String, Vec<(String, String, bool)>>,
    decisions: Vec<GateDecision>,
}

/// What one environment of a resumed run starts from.
#[derive(Debug)]
pub struct EnvironmentResume {
    /// Per node index: succeeded before the run stopped, so not run again
    /// (their outputs are in their resources' records).
    pub done: Vec<bool>,
    /// Nodes whose apply or destroy was in flight when the run stopped.
    /// Their jobs run again from preflight: refresh reads what is really
    /// there (an update that landed plans as no change), and an apply whose
    /// result was lost asks the provisioner what it created.
    pub in_flight: HashSet<String>,
    /// (node, operation) of `in_flight` known to have started: said out loud.
    pub started: Vec<(String, String)>,
    /// Per node index: its `gate = "after"` was approved; it stays open.
    pub gate_open: Vec<bool>,
}

impl Resume {
    /// Reads run `run_id`'s records.
    pub fn load(store: &StateStore, run_id: &str) -> Result<Resume, StateError> {
        let mut out = Resume::default();
        for j in store.jobs(run_id)?.into_iter().filter(|j| j.status == Status::Succeeded) {
            out.done.entry(j.environment).or_default().insert(j.node);
        }
        let mut last: HashMap<(String, String, String), JournalPhase> = HashMap::new();
        for e in store.journal(run_id)? {
            for node in e.nodes() {
                last.insert((e.environment.clone(), node.to_string(), e.op.clone()), e.phase);
            }
        }
        for ((env, node, op), phase) in last {
            // Planned but not known to have started: it may have, in the
            // moment between starting and journaling it; its job asks, quietly.
            let started = match phase {
                JournalPhase::Planned => false,
                JournalPhase::Started => true,
                JournalPhase::Done | JournalPhase::Failed | JournalPhase::Withdrawn => continue,
            };
            out.in_flight.entry(env).or_default().push((node, op, started));
        }
        for ops in out.in_flight.values_mut() {
            ops.sort();
        }
        out.decisions = store.decisions(run_id)?;
        Ok(out)
    }

    /// Whether the environment gate of `environment` was approved.
    pub fn environment_approved(&self, environment: &str) -> bool {
        self.decisions.iter().any(|d| {
            d.gate.kind == GateKind::Environment && d.gate.environment == environment && d.decision == Decision::Approved
        })
    }

    /// What environment `environment` of `graph` starts from.
    pub fn environment(&self, graph: &PipelineGraph, environment: &str) -> EnvironmentResume {
        let n = graph.graph.node_count();
        let mut out = EnvironmentResume {
            done: vec![false; n],
            in_flight: HashSet::new(),
            started: Vec::new(),
            gate_open: vec![false; n],
        };
        for node in self.done.get(environment).into_iter().flatten() {
            if let Some(i) = graph.find(node) {
                out.done[i.index()] = true;
            }
        }
        for (node, op, started) in self.in_flight.get(environment).into_iter().flatten() {
            out.in_flight.insert(node.clone());
            if *started {
                out.started.push((node.clone(), op.clone()));
            }
        }
        for d in &self.decisions {
            if d.gate.kind != GateKind::After || d.gate.environment != environment {
                continue;
            }
            if let Some(i) = d.gate.node.as_deref().and_then(|n| graph.find(n)) {
                out.gate_open[i.index()] = d.decision == Decision::Approved;
            }
        }
        out
    }
}
