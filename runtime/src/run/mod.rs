//! Runs: one deploy or undeploy of a pipeline over its environments, or a
//! plan. Environments run one after another in `after` order (reverse order
//! for undeploy); a failed or rejected environment skips the ones after it.
//! Inside an environment, the graph walker runs one stack job per node the
//! run takes (every one, or what `--target` and `--orphans` select).
//! Gates hold back what they guard until someone decides.
//!
//! A run is driven from outside: [`Run`] (in `execution`) is started,
//! taken through its environments and finished by its caller, who
//! watches it through [`Events`] and steers it through [`Steering`]'s stop
//! and the run's [`Gates`]. [`execute`] does all of it in one call.
//!
//! | file          | what it holds                                           |
//! |---------------|---------------------------------------------------------|
//! | `execution`   | [`Run`]: start (record, locks), environments, finish     |
//! | `env_run`     | [`EnvRun`]: one environment's shared state and its walk |
//! | `stack_job`   | [`StackJob`]: one node's operations                     |
//! | `on_runners`  | [`Run::on_runners`]: a run worked by runners, followed  |
//! | `runner`      | [`Runner`]: takes jobs from a shared database's queue   |
//! | `resume`      | [`Resume`]: what a resumed run did before it stopped    |
//! | `snapshot`    | [`RunSource`]: what a run is started from, kept whole   |
//! | `preflight`   | [`PreflightReport`]: every node checked before a run    |
//! | `selection`   | [`Selection`]: what `--target` and `--orphans` take     |
//! | `scheduler`   | the graph walker: parallelism, slots, cancellation      |
//! | `gate`        | [`Gates`]: waits for a person, decisions                |
//! | `journal`     | [`RunJournal`]: the run's writes to the state           |
//! | `job_log`     | a job's log lines: its own and its plugins'             |
//! | `events`      | [`RunEvent`]s and where they go                         |
//! | `status`      | the typed status document                               |
//! | `history`     | every job that touched one resource                     |
//! | `job_diff`    | a job's attribute diff: made (secrets masked), shown    |
//! | `known_after_apply` | what a plan cannot know yet, and how it plans around it |
//! | `plan_text`   | plans as people read them                               |
//! | `outputs`     | the pipeline's `output`s after an environment           |
//! | `cancel`      | [`Cancels`]: the nodes and environments cancelled       |

pub mod cancel;
pub mod env_run;
pub mod events;
pub mod execution;
pub mod gate;
pub mod history;
pub mod job_diff;
pub mod job_log;
pub mod journal;
pub mod known_after_apply;
pub mod outputs;
pub mod plan_text;
pub mod resume;
pub mod preflight;
pub mod scheduler;
pub mod snapshot;
pub mod selection;
pub mod on_runners;
pub mod runner;
pub mod stack_job;
pub mod status;

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

pub use events::{Events, NodeBrief, RunEvent};
pub use gate::{AutoApprove, Decider, DeciderRole, GateOutcome, GateSelector, Gates};
pub use journal::{RunJournal, DURABLE_EVERY};
pub use scheduler::{walk, NodeEnd, Slot};
pub use crate::secrets::{mask, Secrets, MASKED};
pub use cancel::{CancelTarget, Cancels};
pub use env_run::{load_plugins, EnvRun, Mode};
pub use execution::{parse_sets, Run, Steering};
pub use outputs::output_is_secret;
pub use plan_text::{PlannedChange, UNKNOWN};
pub use preflight::{preflight, NodeCheck, PreflightProblem, PreflightReport};
pub use resume::Resume;
pub use snapshot::{Drift, RunSource, SnapshotError};
pub use selection::{Selection, SelectionError};
pub use stack_job::StackJob;
pub use runner::{Runner, RunnerOptions};

use crate::pipeline::LoadedPipeline;
use crate::plugin::PluginHost;
use crate::state::{RunStatus, RunTrigger, StateError, StateStore, Status};

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
    /// How the run is started (kept with it; a resume keeps the run's own).
    pub trigger: RunTrigger,
    /// For a `rerun`: the run whose inputs are run again.
    pub rerun_of: Option<String>,
    /// What the run starts from, when it is fixed already (`resume`,
    /// `rerun`: a snapshot). None: the pipeline as loaded, its plugins read
    /// as the run starts.
    pub source: Option<Arc<RunSource>>,
    /// What the run takes: `--target`, `--orphans` (kept with the run).
    pub selection: Selection,
    /// The id reserved for the run before it starts (a team server answers
    /// with it while the run is queued). None: the next one.
    pub id: Option<String>,
    /// Who starts the run, as the team server authenticated them. None:
    /// the OS user running this process.
    pub started_by: Option<String>,
    /// Runs whose locks a preflight does not count against this run: it
    /// is queued behind them and starts when they have ended.
    pub queued_behind: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("invalid --set `{0}`: {1}")]
    BadSet(String, String),
    #[error("{0}")]
    Journal(#[from] journal::JournalError),
    /// The job queue of a shared database failed the run.
    #[error("the job queue: {0}")]
    Queue(String),
    /// `--target` or `--orphans` cannot be taken as asked; nothing ran.
    #[error(transparent)]
    Selection(Box<SelectionError>),
}

impl From<SelectionError> for RunError {
    fn from(e: SelectionError) -> RunError {
        match e {
            SelectionError::State(e) => RunError::State(e),
            e => RunError::Selection(Box::new(e)),
        }
    }
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
    /// Deployed resources no longer in the pipeline that the run left
    /// alone: (environment, name, type). The command line warns.
    pub orphans: Vec<(String, String, String)>,
    /// A run aimed at part of the pipeline (`--target`, `--orphans`): per
    /// environment, the resources it took, in the order they are announced.
    /// Empty for a run of the whole pipeline.
    pub selected: Vec<(String, Vec<String>)>,
}

impl RunSummary {
    /// The summary of run `run_id` before anything ran.
    fn new(run_id: String) -> RunSummary {
        RunSummary {
            run_id,
            status: RunStatus::Running,
            environments: Vec::new(),
            planned: Vec::new(),
            outputs: Vec::new(),
            inputs: Default::default(),
            orphans: Vec::new(),
            selected: Vec::new(),
        }
    }
}

/// Runs `mode` over the pipeline's environments: [`Run::start`], every
/// environment, [`Run::finish`]. Nobody steers it from another process.
pub async fn execute(
    pipeline: &LoadedPipeline,
    mode: Mode,
    host: Arc<PluginHost>,
    store: Arc<StateStore>,
    opts: &RunOptions,
    events: Events,
    stop: StopSignal,
) -> Result<RunSummary, RunError> {
    Run::start(pipeline, mode, host, store, opts, Steering { events, stop }, None).await?.run_to_end().await
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
