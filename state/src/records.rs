//! What the state store keeps, as plain serde types. Every record is stored
//! as JSON in a redb table, keyed as the store's tables say.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One resource in one environment of one pipeline. Environments never share
/// a key, so `dev` and `prod` of the same resource are separate records.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceKey {
    pub pipeline: String,
    pub environment: String,
    pub resource: String,
}

impl ResourceKey {
    pub fn new(pipeline: &str, environment: &str, resource: &str) -> Self {
        ResourceKey { pipeline: pipeline.into(), environment: environment.into(), resource: resource.into() }
    }
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.pipeline, self.environment, self.resource)
    }
}

/// A deployed resource: what its provisioner returned, and what stackpipe
/// needs to plan, refresh and destroy it later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    /// The provisioner plugin's name in the pipeline (`aws`) and the type (`vpc`).
    pub plugin: String,
    pub kind: String,
    /// The provisioner's state, handed back to read, plan, apply and destroy.
    pub state: Value,
    /// Outputs that dependents can wire.
    pub outputs: Value,
    /// The attributes it was last applied with (secrets masked).
    pub attributes: Value,
    /// The resources it depended on when it was applied: undeploy order for a
    /// resource that is no longer in the pipeline.
    pub depends_on: Vec<String>,
    /// Attributes whose values are secret (a sensitive var flows into them,
    /// or the provisioner marks them): masked wherever the record is shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
    /// Outputs the provisioner's schema marks sensitive: masked unless asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive_outputs: Vec<String>,
    /// Bumped on every write, starting at 1.
    pub serial: u64,
    pub run_id: String,
    pub updated_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Deploy,
    Undeploy,
}

impl RunKind {
    pub fn name(self) -> &'static str {
        match self {
            RunKind::Deploy => "deploy",
            RunKind::Undeploy => "undeploy",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Never stored: how a run stored as running reads once its process is
    /// gone (killed, crashed, or stopped by a failed write). `resume`
    /// finishes it.
    Interrupted,
}

impl RunStatus {
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// Everything needed to re-create a run's input: `resume` and `rerun` use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub pipeline: String,
    /// The pipeline file, absolute.
    pub file: String,
    pub kind: RunKind,
    pub status: RunStatus,
    /// The environments of the run, in order.
    pub environments: Vec<String>,
    /// `--var` values, except the sensitive ones (see `sensitive_vars`).
    pub vars: Vec<(String, String)>,
    /// Sensitive vars given to the run: never their values, only a keyed
    /// hash of each, so that `resume` can tell whether it is given the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive_vars: Vec<SensitiveVar>,
    pub sets: Vec<(String, String)>,
    pub parallelism: usize,
    /// The `-m` message.
    pub message: Option<String>,
    /// The process running it.
    pub pid: u32,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    /// How each environment ended, as it ends (empty while none has).
    #[serde(default)]
    pub outcomes: Vec<EnvOutcome>,
    /// Who started the run: the OS user (empty in records made before
    /// this was kept).
    #[serde(default)]
    pub started_by: String,
    /// How it was started.
    #[serde(default)]
    pub trigger: RunTrigger,
    /// For a `rerun`: the run whose inputs it ran again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<String>,
    /// Every `resume` of the run: who, when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed: Vec<Resumption>,
    /// The digest of the [`RunSnapshot`] the run was started from (None in
    /// records made before runs kept one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// `--target`: the resources the run was aimed at (empty: not aimed).
    /// A deploy takes them and what they need that is not deployed; an
    /// undeploy, them and what depends on them. `resume` and `rerun` keep it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// `--orphans`: the undeploy destroys the resources still in the state
    /// that the pipeline no longer declares.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub orphans: bool,
}

impl RunRecord {
    /// Whether the run takes only part of the pipeline (`--target`, `--orphans`).
    pub fn is_targeted(&self) -> bool {
        !self.targets.is_empty() || self.orphans
    }
}

/// What a run was started from, kept whole: the pipeline's source, the
/// values given to it and the plugins it loaded. `resume` continues it and
/// `rerun` runs it again, whatever has changed on disk since (seed 004:
/// the snapshot is immutable after creation). Stored once per digest (the
/// SHA-256 of its JSON); runs name it by [`RunRecord::snapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSnapshot {
    pub pipeline: String,
    pub operation: RunKind,
    /// `--env`: the one environment asked for, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Every file the pipeline was compiled from, the main file first.
    pub files: Vec<SourceFile>,
    /// `--var` values, except the sensitive ones: of those only the names
    /// (their keyed hashes are in the run record).
    pub vars: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive_vars: Vec<String>,
    /// `--set resource.attribute=value`.
    pub sets: Vec<(String, String)>,
    /// `--target` and `--orphans`: what of the pipeline the run takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub orphans: bool,
    /// Every plugin the run could load, by digest. A path plugin's
    /// component is kept in the store beside it (content-addressed), so a
    /// changed or deleted file does not change what the snapshot runs.
    pub plugins: Vec<PluginPin>,
    /// What builds made, by service: each the value of
    /// `service.NAME.artifact` (`path`, `digest`, `tag`, `commit`, `branch`).
    /// Empty outside a service pipeline's deploy run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, Value>,
    /// Only the environments marked `previews = true` (a pull request's deploy).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub previews_only: bool,
}

/// One source file of a [`RunSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Absolute, as the run read it.
    pub path: String,
    pub text: String,
}

/// A plugin as a run loaded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginPin {
    pub name: String,
    /// `builtin:NAME`, or the component's path as the pipeline gives it.
    pub source: String,
    /// The component's SHA-256, hex.
    pub digest: String,
}

impl PluginPin {
    /// Whether the component is built into stackpipe (its bytes are not
    /// stored: this stackpipe carries them, or a different version of them).
    pub fn is_builtin(&self) -> bool {
        self.source.starts_with("builtin:")
    }
}

/// How a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunTrigger {
    /// `deploy` or `undeploy` on the command line.
    #[default]
    Cli,
    /// `watch --deploy`, on a save.
    Watch,
    /// `rerun RUN`: another run's inputs again.
    Rerun,
    /// Through a team server's API (`stackpipe serve`).
    Server,
    /// The deploy stage of a service's pipeline execution.
    Service,
}

impl RunTrigger {
    pub fn name(self) -> &'static str {
        match self {
            RunTrigger::Cli => "cli",
            RunTrigger::Watch => "watch",
            RunTrigger::Rerun => "rerun",
            RunTrigger::Server => "server",
            RunTrigger::Service => "service",
        }
    }
}

/// One `resume` of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumption {
    pub by: String,
    pub ms: u64,
}

/// A sensitive var a run was given: its name and a keyed hash of its value
/// (HMAC-SHA256 with the state directory's own key, see
/// `StateStore::keyed_hash`), never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensitiveVar {
    pub name: String,
    pub hash: String,
}

/// How one environment of a run ended, and why when it did not succeed
/// (`rejected by alice at the environment gate`, `environment staging failed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvOutcome {
    pub name: String,
    pub status: Status,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    /// Held at a gate until someone approves or rejects.
    Waiting,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl Status {
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Running | Status::Waiting)
    }
    pub fn name(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Waiting => "waiting",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Cancelled => "cancelled",
        }
    }
}

/// One operation of a stack job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRecord {
    /// preflight | init | refresh | preview | apply | destroy
    pub name: String,
    pub status: Status,
    // Absent values are left out of the stored record: a large deploy
    // writes thousands of these, most without a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The input of a stack job as its init resolved it (secrets masked): part
/// of its job record, which is stored once, when the job ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInput {
    /// Resolved attributes, secrets masked.
    pub attributes: Value,
    pub plugin: String,
    pub plugin_digest: String,
    pub kind: String,
    /// refresh / preview / pause_before_apply.
    pub flow: Value,
    pub message: Option<String>,
}

/// The stack job of one node in one environment of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub run_id: String,
    pub environment: String,
    pub node: String,
    pub level: usize,
    pub status: Status,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub ops: Vec<OpRecord>,
    pub input: Option<JobInput>,
    /// create | update | replace | delete | no-op, once previewed.
    pub change: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the job was to change in the resource's attributes, secrets
    /// masked; None when it never got that far (or was recorded before
    /// diffs were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<JobDiff>,
}

/// The attribute changes of a job, as its record keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobDiff {
    /// What its preview planned, or (a destroy) every attribute going
    /// away. Empty: nothing to change.
    Changes(Vec<AttributeDiff>),
    /// Nothing was computed, and why (no preview ran: flow policy
    /// `preview = false`): what the apply changed is not known, which is
    /// not the same as "nothing".
    NotComputed(String),
}

/// One attribute a job changes. Values are JSON text, as a provisioner's
/// plan gives them; a secret one is `(sensitive)`, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeDiff {
    /// A dotted path into the attributes: `tags.env`.
    pub path: String,
    /// None: the attribute is new.
    pub before: Option<String>,
    /// None: the attribute goes away.
    pub after: Option<String>,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default)]
    pub forces_replacement: bool,
}

/// One log line of a job: stackpipe's own, or one its plugins logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub ms: u64,
    pub environment: String,
    pub node: String,
    pub op: String,
    pub text: String,
    /// Lines stored before there were levels read as `info`.
    #[serde(default)]
    pub level: LogLevel,
    /// The plugin that logged it; none for stackpipe's own lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}

/// How much a log line matters, as the plugin interface's `level` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Who holds a resource's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub run_id: String,
    pub pid: u32,
    pub since_ms: u64,
}

/// What the journal knows about a node's apply or destroy in a run, so
/// that a resumed run knows which were in flight. An environment's
/// `Planned` entry (every node it may apply) is on disk before any node
/// starts; `Started` is recorded before the plugin is called and `Done` or
/// `Failed` after it returns (for a destroy, durably before going on; for
/// an apply, within the journal's `DURABLE_EVERY`: a resume asks the
/// provisioner about an apply it does not know ended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub run_id: String,
    pub environment: String,
    /// The node; empty in an entry about several, which names them in `nodes`.
    pub node: String,
    /// An environment's `Planned` entry names all its nodes here: one record
    /// rather than one per node, which for a large graph was most of the
    /// writes at a run's start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// apply | destroy
    pub op: String,
    pub phase: JournalPhase,
    pub ms: u64,
}

impl JournalEntry {
    /// The nodes this entry is about.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        let one = self.nodes.is_empty().then_some(self.node.as_str());
        one.into_iter().chain(self.nodes.iter().map(String::as_str))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalPhase {
    /// The node is to be applied in this run: written for every node of an
    /// environment, in one entry, before the first starts, so no apply ever
    /// waits on a disk write of its own.
    Planned,
    /// The plugin is about to be called.
    Started,
    /// The plugin returned and its result is recorded.
    Done,
    /// The plugin returned an error.
    Failed,
    /// The plugin was never called (nothing to apply, or an earlier
    /// operation failed): the intent is withdrawn.
    Withdrawn,
}

/// The four places a run waits for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateKind {
    /// `approval = true` on an environment: before its first node starts.
    Environment,
    /// `gate = "after"` on a resource: after it, before its dependents.
    After,
    /// Flow policy `pause_before_apply`: between preview and apply (or destroy).
    PauseBeforeApply,
    /// A policy plugin's `require-approval` verdict on the preview.
    Policy,
}

impl GateKind {
    pub fn name(self) -> &'static str {
        match self {
            GateKind::Environment => "environment",
            GateKind::After => "after",
            GateKind::PauseBeforeApply => "pause_before_apply",
            GateKind::Policy => "policy",
        }
    }
}

/// A gate a run waits at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateInfo {
    pub kind: GateKind,
    pub environment: String,
    /// None for an environment gate.
    pub node: Option<String>,
    /// What the run waits for, in words.
    pub reason: String,
    /// The planned change, for a pause or a policy gate.
    pub detail: Option<String>,
    pub since_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approved,
    Rejected,
}

impl Decision {
    pub fn name(self) -> &'static str {
        match self {
            Decision::Approved => "approved",
            Decision::Rejected => "rejected",
        }
    }
}

/// A decision taken at a gate: which, who (the OS user), when, and the comment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateDecision {
    pub run_id: String,
    pub gate: GateInfo,
    pub decision: Decision,
    pub by: String,
    pub at_ms: u64,
    pub comment: Option<String>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What started a pipeline execution of a service (seed 001: its triggers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionTrigger {
    /// A branch push, by webhook.
    Push,
    /// A tag push, by webhook.
    Tag,
    /// A pull request opened or updated, by webhook.
    PullRequest,
    /// A new commit or tag found by polling the repository.
    Poll,
    /// `stackpipe service run`, the API or the console's Trigger button.
    Manual,
    /// `stackpipe service rerun`: the same commit again.
    Rerun,
}

/// Where a pipeline execution stands. It is `running` from its build's
/// start to its deploy run's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Waiting for the service's pipeline ahead of it.
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Ended by a server stopping in its middle; not resumed.
    Interrupted,
}

impl ExecutionStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, ExecutionStatus::Queued | ExecutionStatus::Running)
    }
}

/// How a stage of an execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Not run: see the stage's `note`.
    Skipped,
}

impl StageStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, StageStatus::Pending | StageStatus::Running)
    }
}

/// The commit an execution builds, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommitInfo {
    /// Full SHA.
    pub sha: String,
    /// The branch (empty for a tag build).
    #[serde(default)]
    pub branch: String,
    /// The tag, for a tag build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The pull request's number, for a pull request's pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
    /// The commit's subject line.
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub author: String,
}

/// One stage (build or deploy) of a pipeline execution.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StageRecord {
    pub status: StageStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// Why it failed or was skipped, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What a build stored: the artifact's place and digest, and the name it goes by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub path: String,
    /// `sha256:HEX`.
    pub digest: String,
    /// The git tag of a tag build, else the commit's SHA.
    pub tag: String,
    pub bytes: u64,
    /// `file` or `directory`.
    pub kind: String,
}

/// One pipeline execution of a service (seed 001): its build stage, then
/// its deploy stage, a run of the service's pipeline with the artifact in
/// its snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// `x` and a zero-padded counter (`x000042`).
    pub id: String,
    pub service: String,
    pub pipeline: String,
    pub trigger: ExecutionTrigger,
    /// `preview` (a pull request) or `production` (a branch or tag).
    pub kind: String,
    /// Who: the user of a manual trigger, else the pusher as the forge
    /// says (or `poll`).
    pub started_by: String,
    pub commit: CommitInfo,
    pub status: ExecutionStatus,
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    pub build: StageRecord,
    pub deploy: StageRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactRecord>,
    /// The deploy stage's run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The environments the deploy stage takes, in promotion order.
    #[serde(default)]
    pub environments: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<String>,
    /// Who asked for it to be cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
    /// The webhook delivery it came from (`X-GitHub-Delivery`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
}

/// What a server keeps of a service between executions: the settings
/// switched at run time (over the file's), and what polling saw last.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// `stackpipe service disable|enable`: None follows the file's `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `--deploys`: None follows the file's `deploys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploys: Option<bool>,
    /// Who switched a setting last, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_ms: Option<u64>,
    /// When the repository was last polled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polled_ms: Option<u64>,
    /// The branch and tag heads polling last saw (`refs/heads/main` -> SHA).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seen_refs: BTreeMap<String, String>,
}
