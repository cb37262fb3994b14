//! What a run reports as it goes. The command line renders these (a live
//! view, plain lines, or JSON lines); the control socket keeps every one of
//! a run, in order, for `status` and `logs --follow` in other terminals.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::state::{Decision, GateKind, LogLevel, RunStatus, Status};

/// A node of an environment, as announced when the environment starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeBrief {
    pub name: String,
    pub level: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// `nodes`: the most an environment runs. `targets`, `orphans`: what
    /// the run is aimed at, if at part of the pipeline (see `Selection`).
    RunStarted {
        run: String,
        pipeline: String,
        operation: Cow<'static, str>,
        environments: Vec<String>,
        nodes: usize,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        targets: Vec<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        orphans: bool,
    },
    /// `nodes`: what the run takes of the environment (of an aimed run,
    /// only its selection: the others are not run and not announced).
    EnvironmentStarted { run: String, environment: String, nodes: Vec<NodeBrief> },
    OpStarted { environment: String, node: String, op: Cow<'static, str> },
    OpFinished { environment: String, node: String, op: Cow<'static, str>, status: Status, ms: u64, message: Option<String> },
    NodeFinished { environment: String, node: String, status: Status, change: Option<String>, ms: u64, error: Option<String> },
    /// A line of a job's log: stackpipe's own (`plugin` none) or one its
    /// plugins logged, with its level.
    Log {
        environment: String,
        node: String,
        op: Cow<'static, str>,
        text: String,
        #[serde(default)]
        level: LogLevel,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plugin: Option<String>,
    },
    /// The run waits at a gate (`node` is None at an environment gate).
    Waiting { environment: String, node: Option<String>, gate: GateKind, reason: String, detail: Option<String> },
    /// Someone approved or rejected a gate.
    GateDecided {
        environment: String,
        node: Option<String>,
        gate: GateKind,
        decision: Decision,
        by: String,
        comment: Option<String>,
    },
    EnvironmentFinished { environment: String, status: Status, reason: Option<String> },
    RunFinished { run: String, status: RunStatus, ms: u64 },
}

/// Where events go: any number of listeners, each getting every event in
/// the same order. Dropping events when nobody listens is fine.
#[derive(Clone, Default)]
pub struct Events {
    listeners: Vec<tokio::sync::mpsc::UnboundedSender<RunEvent>>,
    /// With several listeners, held while one event goes to all of them, so
    /// that events sent from different threads reach every listener in one order.
    order: Option<std::sync::Arc<std::sync::Mutex<()>>>,
}

impl Events {
    pub fn new(tx: tokio::sync::mpsc::UnboundedSender<RunEvent>) -> Self {
        Events { listeners: vec![tx], order: None }
    }
    pub fn none() -> Self {
        Events::default()
    }
    /// These events, and also to `tx`.
    pub fn and(mut self, tx: tokio::sync::mpsc::UnboundedSender<RunEvent>) -> Self {
        self.listeners.push(tx);
        if self.listeners.len() > 1 {
            self.order.get_or_insert_with(Default::default);
        }
        self
    }
    /// Whether anyone listens: events that are costly to build need not be.
    pub fn listening(&self) -> bool {
        !self.listeners.is_empty()
    }

    /// Sends the event `make` builds, built only if anyone listens: for the
    /// events of every operation of every node.
    pub fn send_with(&self, make: impl FnOnce() -> RunEvent) {
        if self.listening() {
            self.send(make());
        }
    }

    pub fn send(&self, e: RunEvent) {
        match (self.listeners.as_slice(), &self.order) {
            ([], _) => {}
            ([only], _) => {
                let _ = only.send(e);
            }
            (many, order) => {
                let _in_order = order.as_ref().map(|o| o.lock().unwrap_or_else(|p| p.into_inner()));
                for tx in many {
                    let _ = tx.send(e.clone());
                }
            }
        }
    }
}
