//! What goes over the control socket.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::run::{CancelTarget, GateSelector};
use crate::state::Decision;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The status document of a run (default: the one in progress).
    Status { run: Option<String> },
    /// Every run, newest first.
    Runs,
    /// Every resource record and lock of the state ([`StateResources`]):
    /// what a reader plans or shows while the run holds the database.
    Resources,
    /// What a run was started from: `{"run", "digest", "snapshot"}` (see
    /// [`crate::state::RunSnapshot`]).
    Snapshot { run: String },
    /// The stored log lines of a run.
    Logs { run: Option<String>, node: Option<String> },
    /// Every job that touched a resource (see `run::history`).
    History { environment: String, resource: String, pipeline: Option<String> },
    /// Every event of the run in progress, from its start, until it ends.
    Follow { run: Option<String> },
    /// Approve or reject waiting gates. Who decides is the user the kernel
    /// says is on the other end of the socket.
    Decide { run: Option<String>, selector: GateSelector, decision: Decision, comment: Option<String> },
    /// Stop the run, or (`environment`, `node`) part of it: operations in
    /// flight finish, the rest of their jobs is skipped, nothing new starts.
    Cancel {
        run: Option<String>,
        #[serde(default)]
        environment: Option<String>,
        #[serde(default)]
        node: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(Value),
    Error(String),
}

/// The answer to [`Request::Cancel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancelled {
    pub run: String,
    /// What was cancelled: None for the whole run.
    #[serde(default)]
    pub target: Option<CancelTarget>,
    /// Whether it had been cancelled before.
    pub already_stopping: bool,
}

/// The answer to [`Request::Resources`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateResources {
    pub resources: Vec<(crate::state::ResourceKey, crate::state::ResourceRecord)>,
    pub locks: Vec<(crate::state::ResourceKey, crate::state::LockHolder)>,
}
