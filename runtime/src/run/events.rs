//! What a run reports as it goes. The command line renders these (a live
//! view, plain lines, or JSON lines); the control socket forwards them.

use serde::Serialize;

use crate::state::Status;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    RunStarted { run: String, pipeline: String, operation: &'static str, environments: Vec<String>, nodes: usize },
    EnvironmentStarted { run: String, environment: String },
    OpStarted { environment: String, node: String, op: &'static str },
    OpFinished { environment: String, node: String, op: &'static str, status: Status, ms: u64, message: Option<String> },
    NodeFinished { environment: String, node: String, status: Status, change: Option<String>, ms: u64, error: Option<String> },
    Log { environment: String, node: String, op: &'static str, text: String },
    EnvironmentFinished { environment: String, status: Status },
    RunFinished { run: String, status: crate::state::RunStatus, ms: u64 },
}

/// Where events go. Dropping events when nobody listens is fine.
#[derive(Clone)]
pub struct Events(Option<tokio::sync::mpsc::UnboundedSender<RunEvent>>);

impl Events {
    pub fn new(tx: tokio::sync::mpsc::UnboundedSender<RunEvent>) -> Self {
        Events(Some(tx))
    }
    pub fn none() -> Self {
        Events(None)
    }
    pub fn send(&self, e: RunEvent) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(e);
        }
    }
}
