//! Service pipelines on the server (seed 001): the services the catalog's
//! pipelines declare, their pipeline executions queued in order per
//! service, and each execution driven through its two stages: the build
//! (the runtime's `service` module: mirror, clean checkout, build, artifact
//! by digest) and the deploy stage, an ordinary run of the service's
//! pipeline with the artifact in its snapshot, environment by environment
//! in promotion order, gates waiting for people. Triggers (webhook,
//! polling, manual, rerun) all come through [`Services::enqueue`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use stackpipe_dsl::{ArtifactRef, CompileOptions, ServiceSpec};
use stackpipe_runtime::pipeline::LoadedPipeline;
use stackpipe_runtime::run::{Mode, RunOptions};
use stackpipe_runtime::service::artifact::ArtifactStore;
use stackpipe_runtime::service::build::{build_environment, run_build, BuildCancel, BuildContext, BuildError};
use stackpipe_runtime::service::git::{self, Mirror};
use stackpipe_runtime::service::{self as svc, Decision, RepoEvent};
use stackpipe_runtime::state::{
    now_ms, ArtifactRecord, CommitInfo, ExecutionRecord, ExecutionStatus, ExecutionTrigger, LogLevel, LogLine, RunStatus,
    RunTrigger, ServiceRecord, StageRecord, StageStatus, StateStore, Write,
};

use crate::api::{ApiError, ApiResult, AppState};

/// Where a server keeps its services' mirrors and build directories.
pub const SERVICES_DIR: &str = "services";

/// How often the deploy stage looks at its run.
const RUN_POLL: Duration = Duration::from_millis(200);
/// Build output lines are written in batches of at most this many.
const LOG_BATCH: usize = 200;

/// A service of the catalog: its spec and the pipeline that declares it.
#[derive(Clone)]
pub struct ServiceEntry {
    pub spec: ServiceSpec,
    pub pipeline: Arc<LoadedPipeline>,
}

/// A service as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServiceSummary {
    pub name: String,
    pub pipeline: String,
    pub repo: String,
    pub branches: Vec<String>,
    pub tags: Vec<String>,
    pub pull_requests: String,
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_s: Option<u64>,
    /// As the file says, or as switched at run time.
    pub enabled: bool,
    pub deploys: bool,
    /// Whether a webhook secret is configured (webhooks are refused without one).
    pub webhook: bool,
    /// Environments in promotion order; those a pull request deploys to.
    pub environments: Vec<String>,
    pub preview_environments: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings_changed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings_changed_ms: Option<u64>,
    /// When its repository was last polled (a service with `poll`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_poll_ms: Option<u64>,
}

/// What a trigger asks for: a commit of the service, and where it came from.
#[derive(Debug, Clone)]
pub struct ExecutionRequest {
    pub trigger: ExecutionTrigger,
    pub started_by: String,
    pub commit: CommitInfo,
    pub preview: bool,
    /// Whether the trigger asks for a deploy stage (a pull request's
    /// `build` does not); the service's settings may still skip it.
    pub deploy: bool,
    pub rerun_of: Option<String>,
    pub delivery: Option<String>,
}

/// The execution a service is running, and how to stop it.
struct Current {
    id: String,
    cancel: BuildCancel,
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<String>,
    current: Option<Current>,
    /// A task is taking executions off the queue.
    working: bool,
}

pub struct Services {
    state_dir: PathBuf,
    lanes: Mutex<HashMap<String, Lane>>,
    /// When each polled service was polled last.
    polled: Mutex<HashMap<String, std::time::Instant>>,
    /// One git operation on a service's mirror at a time (a webhook's
    /// fetch, a poll, a build's checkout): git's ref locks would fail the
    /// second.
    mirror_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Services {
    pub fn new(state_dir: PathBuf) -> Arc<Services> {
        Arc::new(Services {
            state_dir,
            lanes: Mutex::new(HashMap::new()),
            polled: Mutex::new(HashMap::new()),
            mirror_locks: Mutex::new(HashMap::new()),
        })
    }

    /// The service's mirror, and the lock to hold while git works on it.
    fn mirror(&self, entry: &ServiceEntry) -> Result<(Mirror, Arc<Mutex<()>>), String> {
        let dir = self.state_dir.join(SERVICES_DIR).join(&entry.spec.name).join("mirror.git");
        let mirror = Mirror::new(dir, &entry.spec.repo, &entry.pipeline.base_dir).map_err(|e| e.to_string())?;
        let git_lock = lock(&self.mirror_locks).entry(entry.spec.name.clone()).or_default().clone();
        Ok((mirror, git_lock))
    }
}

/// Every service the catalog's pipelines declare, by name. A name declared
/// twice is the first file's (by file name); the other is logged.
pub fn catalog_services(state: &AppState) -> BTreeMap<String, ServiceEntry> {
    let mut out: BTreeMap<String, ServiceEntry> = BTreeMap::new();
    for entry in state.catalog.entries() {
        let Ok(pipeline) = &entry.compiled else { continue };
        for spec in &pipeline.graph.services {
            if let Some(first) = out.get(&spec.name) {
                tracing::warn!(
                    "service `{}` is declared by pipelines `{}` and `{}`: the first is used",
                    spec.name,
                    first.pipeline.graph.name,
                    pipeline.graph.name
                );
                continue;
            }
            out.insert(spec.name.clone(), ServiceEntry { spec: spec.clone(), pipeline: pipeline.clone() });
        }
    }
    out
}

/// The service `name`, 404 if no pipeline declares it.
pub fn service(state: &AppState, name: &str) -> ApiResult<ServiceEntry> {
    catalog_services(state).remove(name).ok_or_else(|| ApiError::not_found(format!("no service `{name}` in the server's pipelines")))
}

/// `enabled` and `deploys` as they are now: switched at run time, else the file's.
pub fn settings(store: &StateStore, spec: &ServiceSpec) -> Result<(bool, bool, ServiceRecord), ApiError> {
    let record = store.service_record(&spec.name)?;
    Ok((record.enabled.unwrap_or(spec.enabled), record.deploys.unwrap_or(spec.deploys), record))
}

pub fn summary(store: &StateStore, entry: &ServiceEntry) -> ApiResult<ServiceSummary> {
    let spec = &entry.spec;
    let (enabled, deploys, record) = settings(store, spec)?;
    let graph = &entry.pipeline.graph;
    Ok(ServiceSummary {
        name: spec.name.clone(),
        pipeline: graph.name.clone(),
        repo: spec.repo.clone(),
        branches: spec.branches.clone(),
        tags: spec.tags.clone(),
        pull_requests: spec.pull_requests.name().into(),
        paths: spec.paths.clone(),
        poll_s: spec.poll_s,
        enabled,
        deploys,
        webhook: spec.webhook.is_some(),
        environments: graph.environments.iter().map(|e| e.name.clone()).collect(),
        preview_environments: graph.environments.iter().filter(|e| e.previews).map(|e| e.name.clone()).collect(),
        settings_changed_by: record.changed_by,
        settings_changed_ms: record.changed_ms,
        last_poll_ms: record.polled_ms,
    })
}

/// Whether any resource of the pipeline uses what the service builds
/// (`service.NAME.artifact`): a service that no resource uses only builds.
fn uses_build(entry: &ServiceEntry) -> bool {
    !stackpipe_dsl::service::resources_using(&entry.pipeline.graph, &entry.spec.name).is_empty()
}

/// The environments a deploy stage takes: all (in promotion order), or
/// the preview ones.
fn deploy_environments(entry: &ServiceEntry, preview: bool) -> Vec<String> {
    entry.pipeline.graph.environments.iter().filter(|e| !preview || e.previews).map(|e| e.name.clone()).collect()
}

/// Queues a pipeline execution of `entry` for `request`; its service's
/// executions run one at a time, in the order they were queued.
pub fn enqueue(state: &Arc<AppState>, entry: &ServiceEntry, request: ExecutionRequest) -> ApiResult<ExecutionRecord> {
    let store = state.runs.store();
    let (enabled, _, _) = settings(store, &entry.spec)?;
    if !enabled {
        return Err(ApiError::conflict(format!(
            "the pipelines of service `{}` are disabled: `stackpipe service enable {}` turns them on",
            entry.spec.name, entry.spec.name
        )));
    }
    let id = store.new_execution_id()?;
    let record = ExecutionRecord {
        id: id.clone(),
        service: entry.spec.name.clone(),
        pipeline: entry.pipeline.graph.name.clone(),
        trigger: request.trigger,
        kind: if request.preview { "preview" } else { "production" }.into(),
        started_by: request.started_by,
        commit: request.commit,
        status: ExecutionStatus::Queued,
        created_ms: now_ms(),
        started_ms: None,
        ended_ms: None,
        build: StageRecord::default(),
        deploy: StageRecord::default(),
        artifact: None,
        run: None,
        environments: if request.deploy && uses_build(entry) { deploy_environments(entry, request.preview) } else { Vec::new() },
        rerun_of: request.rerun_of,
        cancelled_by: None,
        delivery: request.delivery,
    };
    store.commit(vec![Write::PutExecution(record.clone())])?;
    crate::commit_status::post(state, &record);
    let start_worker = {
        let mut lanes = lock(&state.services.lanes);
        let lane = lanes.entry(entry.spec.name.clone()).or_default();
        lane.queue.push_back(id);
        !std::mem::replace(&mut lane.working, true)
    };
    if start_worker {
        let (state, service) = (state.clone(), entry.spec.name.clone());
        tokio::spawn(async move { work(state, service).await });
    }
    Ok(record)
}

/// Takes the service's executions off its queue, one at a time.
async fn work(state: Arc<AppState>, service: String) {
    loop {
        let next = {
            let mut lanes = lock(&state.services.lanes);
            let lane = lanes.entry(service.clone()).or_default();
            match lane.queue.pop_front() {
                Some(id) => {
                    let cancel = BuildCancel::new();
                    lane.current = Some(Current { id: id.clone(), cancel: cancel.clone() });
                    Some((id, cancel))
                }
                None => {
                    lane.current = None;
                    lane.working = false;
                    None
                }
            }
        };
        let Some((id, cancel)) = next else { return };
        if let Err(e) = execute(&state, &service, &id, &cancel).await {
            tracing::error!("pipeline execution {id} of service `{service}`: {e}");
            let _ = finish(&state, &id, |r| {
                r.status = ExecutionStatus::Failed;
                if !r.build.status.is_final() {
                    r.build.status = StageStatus::Failed;
                    r.build.note.get_or_insert(e.clone());
                }
            });
        }
    }
}

/// Execution records are read, changed and written back under this lock:
/// a cancel and the execution's own task do not lose each other's change.
static RECORD_CHANGES: Mutex<()> = Mutex::new(());

/// Changes the stored record of `id` with `change`.
fn update(state: &AppState, id: &str, change: impl FnOnce(&mut ExecutionRecord)) -> Result<ExecutionRecord, String> {
    let _one_at_a_time = lock(&RECORD_CHANGES);
    let store = state.runs.store();
    let mut record = store.execution(id).map_err(|e| e.to_string())?.ok_or_else(|| format!("no execution {id}"))?;
    change(&mut record);
    store.commit(vec![Write::PutExecution(record.clone())]).map_err(|e| e.to_string())?;
    Ok(record)
}

/// Ends `id` as `change` says (which sets its status), and posts its
/// commit's status.
fn finish(state: &Arc<AppState>, id: &str, change: impl FnOnce(&mut ExecutionRecord)) -> Result<ExecutionRecord, String> {
    let record = update(state, id, |r| {
        change(r);
        r.ended_ms = Some(now_ms());
        for stage in [&mut r.build, &mut r.deploy] {
            if stage.status == StageStatus::Pending {
                stage.status = StageStatus::Skipped;
            }
        }
    })?;
    crate::commit_status::post(state, &record);
    Ok(record)
}

/// Runs one execution: build, then deploy.
async fn execute(state: &Arc<AppState>, service: &str, id: &str, cancel: &BuildCancel) -> Result<(), String> {
    let record = state.runs.store().execution(id).map_err(|e| e.to_string())?.ok_or_else(|| format!("no execution {id}"))?;
    if record.status.is_final() {
        // Cancelled while it waited.
        return Ok(());
    }
    let Some(entry) = catalog_services(state).remove(service) else {
        finish(state, id, |r| {
            r.status = ExecutionStatus::Failed;
            r.build.note = Some(format!("no pipeline declares service `{service}` any more"));
        })?;
        return Ok(());
    };
    let record = update(state, id, |r| {
        r.status = ExecutionStatus::Running;
        r.started_ms = Some(now_ms());
        r.build = StageRecord { status: StageStatus::Running, started_ms: Some(now_ms()), ..Default::default() };
    })?;
    crate::commit_status::post(state, &record);
    // The build stage.
    let built = build(state, &entry, &record, cancel).await;
    let artifact = match built {
        Ok(a) => a,
        Err(BuildFailure { error, cancelled }) => {
            finish(state, id, |r| {
                r.status = if cancelled { ExecutionStatus::Cancelled } else { ExecutionStatus::Failed };
                r.build.status = if cancelled { StageStatus::Cancelled } else { StageStatus::Failed };
                r.build.ended_ms = Some(now_ms());
                r.build.note = Some(error);
                r.deploy.note = Some("the build did not succeed".into());
            })?;
            return Ok(());
        }
    };
    let record = update(state, id, |r| {
        r.build.status = StageStatus::Succeeded;
        r.build.ended_ms = Some(now_ms());
        r.artifact = Some(artifact.clone());
    })?;
    // The deploy stage.
    let (_, deploys, _) = settings(state.runs.store(), &entry.spec).map_err(|e| e.message)?;
    let skip = if cancel.is_cancelled() {
        Some("the pipeline was cancelled")
    } else if !uses_build(&entry) {
        Some("no resource uses what the service builds: it only builds")
    } else if record.environments.is_empty() && record.kind == "preview" && entry.spec.pull_requests != stackpipe_dsl::PullRequests::Deploy {
        Some("pull requests of this service build only")
    } else if record.environments.is_empty() && record.kind == "preview" {
        Some("no environment has `previews = true`: a pull request deploys nowhere")
    } else if !deploys {
        Some("deployments of this service are disabled")
    } else if record.environments.is_empty() {
        Some("the pipeline has no environment to deploy to")
    } else {
        None
    };
    if let Some(why) = skip {
        let cancelled = cancel.is_cancelled();
        finish(state, id, |r| {
            r.status = if cancelled { ExecutionStatus::Cancelled } else { ExecutionStatus::Succeeded };
            r.deploy.status = StageStatus::Skipped;
            r.deploy.note = Some(why.into());
        })?;
        return Ok(());
    }
    deploy(state, &entry, record, artifact, cancel).await
}

struct BuildFailure {
    error: String,
    cancelled: bool,
}

/// The build stage: the commit fetched and checked out clean, the build
/// run, its artifact stored.
async fn build(
    state: &Arc<AppState>,
    entry: &ServiceEntry,
    record: &ExecutionRecord,
    cancel: &BuildCancel,
) -> Result<ArtifactRecord, BuildFailure> {
    let fail = |error: String| BuildFailure { error, cancelled: false };
    let (mirror, mirror_lock) = state.services.mirror(entry).map_err(fail)?;
    let work = state.state_dir.join(SERVICES_DIR).join(&entry.spec.name).join("builds");
    std::fs::create_dir_all(&work).map_err(|e| fail(format!("cannot make {}: {e}", work.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix(&format!("{}-", record.id))
        .tempdir_in(&work)
        .map_err(|e| fail(format!("cannot make a build directory in {}: {e}", work.display())))?;
    let store = state.runs.store().clone();
    let spec = entry.spec.clone();
    let (id, commit) = (record.id.clone(), record.commit.clone());
    let cancel = cancel.clone();
    let store_root = state.state_dir.clone();
    let task = tokio::task::spawn_blocking(move || -> Result<ArtifactRecord, BuildFailure> {
        let log = BuildLog::new(&store, &id);
        log.line(LogLevel::Info, format!("fetching {} at {}", mirror.url(), short(&commit.sha)));
        let checkout = scratch.path().join("src");
        let sha = {
            let _git = lock(&mirror_lock);
            mirror.fetch().map_err(|e| fail(e.to_string()))?;
            let sha = mirror.resolve(&commit.sha).map_err(|e| fail(e.to_string()))?;
            mirror.checkout(&sha, &checkout, &spec.paths).map_err(|e| fail(e.to_string()))?;
            sha
        };
        if !spec.paths.is_empty() {
            log.line(LogLevel::Info, format!("sparse checkout of {}", spec.paths.join(", ")));
        }
        let (home, tmp) = (scratch.path().join("home"), scratch.path().join("tmp"));
        for d in [&home, &tmp] {
            std::fs::create_dir_all(d).map_err(|e| fail(format!("cannot make {}: {e}", d.display())))?;
        }
        let ctx = BuildContext {
            service: spec.name.clone(),
            execution: id.clone(),
            commit: sha.clone(),
            branch: commit.branch.clone(),
            tag: commit.tag.clone(),
        };
        let env = build_environment(&spec.build.env, &ctx, &home, &tmp);
        log.line(LogLevel::Info, format!("$ {}", spec.build.command.join(" ")));
        let ran = run_build(&spec.build.command, &checkout, &env, Duration::from_secs(spec.build.timeout_s), &cancel, |l| {
            log.line(LogLevel::Info, l)
        });
        if let Err(e) = ran {
            let cancelled = e == BuildError::Cancelled;
            log.line(if cancelled { LogLevel::Warn } else { LogLevel::Error }, e.to_string());
            log.flush();
            return Err(BuildFailure { error: e.to_string(), cancelled });
        }
        let stored = ArtifactStore::new(&store_root).store(&checkout, &spec.build.artifact);
        let stored = match stored {
            Ok(s) => s,
            Err(e) => {
                log.line(LogLevel::Error, e.to_string());
                log.flush();
                return Err(fail(e.to_string()));
            }
        };
        let tag = commit.tag.clone().unwrap_or_else(|| sha.clone());
        log.line(LogLevel::Info, format!("artifact {} ({} bytes) stored as {}, tag {tag}", spec.build.artifact, stored.bytes, stored.digest));
        log.flush();
        Ok(ArtifactRecord {
            path: stored.path.display().to_string(),
            digest: stored.digest,
            tag,
            bytes: stored.bytes,
            kind: if stored.is_dir { "directory" } else { "file" }.into(),
        })
    });
    match task.await {
        Ok(r) => r,
        Err(e) => Err(fail(format!("the build task failed: {e}"))),
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// A build's output on its way to the state, in batches.
struct BuildLog<'a> {
    store: &'a StateStore,
    id: &'a str,
    pending: Mutex<(Vec<Write>, std::time::Instant)>,
}

impl<'a> BuildLog<'a> {
    fn new(store: &'a StateStore, id: &'a str) -> Self {
        BuildLog { store, id, pending: Mutex::new((Vec::new(), std::time::Instant::now())) }
    }

    fn line(&self, level: LogLevel, text: String) {
        let text = stackpipe_runtime::secrets::redact_all(&text);
        let line = LogLine {
            ms: now_ms(),
            environment: String::new(),
            node: "build".into(),
            op: "build".into(),
            text,
            level,
            plugin: None,
        };
        let full = {
            let mut p = lock(&self.pending);
            p.0.push(Write::Log(line, self.id.to_string()));
            p.0.len() >= LOG_BATCH || p.1.elapsed() > Duration::from_millis(250)
        };
        if full {
            self.flush();
        }
    }

    fn flush(&self) {
        let writes = {
            let mut p = lock(&self.pending);
            p.1 = std::time::Instant::now();
            std::mem::take(&mut p.0)
        };
        if writes.is_empty() {
            return;
        }
        if let Err(e) = self.store.commit_as(writes, false) {
            tracing::error!("execution {}: cannot write build output: {e}", self.id);
        }
    }
}

/// The deploy stage: a run of the pipeline with the artifact, followed to its end.
async fn deploy(
    state: &Arc<AppState>,
    entry: &ServiceEntry,
    record: ExecutionRecord,
    artifact: ArtifactRecord,
    cancel: &BuildCancel,
) -> Result<(), String> {
    let id = record.id.clone();
    let artifact_ref = ArtifactRef {
        path: artifact.path.clone(),
        digest: artifact.digest.clone(),
        tag: artifact.tag.clone(),
        commit: record.commit.sha.clone(),
        branch: record.commit.branch.clone(),
    };
    let preview = record.kind == "preview";
    let source = match std::fs::read_to_string(&entry.pipeline.path) {
        Ok(s) => s,
        Err(e) => return deploy_failed(state, &id, format!("cannot read {}: {e}", entry.pipeline.path.display())),
    };
    let compile_opts = CompileOptions {
        artifacts: BTreeMap::from([(entry.spec.name.clone(), artifact_ref)]),
        previews_only: preview,
        ..Default::default()
    };
    let pipeline = match crate::api::runs::compile_with(state, &entry.pipeline.path, source, compile_opts) {
        Ok(p) => p,
        Err(e) => return deploy_failed(state, &id, e.message),
    };
    let opts = RunOptions {
        trigger: RunTrigger::Service,
        started_by: Some(record.started_by.clone()),
        message: Some(format!("{} {} {}", entry.spec.name, id, commit_line(&record.commit))),
        ..RunOptions::default()
    };
    let created = match crate::api::runs::start_run(state, pipeline, Mode::Deploy, opts).await {
        Ok(c) => c,
        Err(e) => return deploy_failed(state, &id, e.message),
    };
    let run = created.run.clone();
    update(state, &id, |r| {
        r.run = Some(run.clone());
        r.deploy = StageRecord { status: StageStatus::Running, started_ms: Some(now_ms()), ..Default::default() };
    })?;
    follow_run(state, &id, &run, cancel).await
}

/// Follows the deploy stage's run `run` of execution `id` to its end, and
/// ends the execution as the run ended. A cancel of the execution cancels
/// the run (in-flight operations complete, the rest is cancelled).
async fn follow_run(state: &Arc<AppState>, id: &str, run: &str, cancel: &BuildCancel) -> Result<(), String> {
    let run = run.to_string();
    let mut cancel_sent = false;
    let ended = loop {
        if cancel.is_cancelled() && !cancel_sent {
            cancel_sent = true;
            cancel_run(state, &run);
        }
        if let Some(why) = state.runs.failed_to_start(&run) {
            break (RunStatus::Failed, Some(why));
        }
        let active = state.runs.is_active(&run) || state.runs.queued(&run).is_some();
        if !active {
            match state.runs.store().run(&run) {
                Ok(Some(r)) if r.status != RunStatus::Running => {
                    let why = r.outcomes.iter().find_map(|o| o.reason.clone());
                    break (r.status, why);
                }
                Ok(_) => {}
                Err(e) => break (RunStatus::Failed, Some(e.to_string())),
            }
        }
        tokio::time::sleep(RUN_POLL).await;
    };
    let (status, why) = ended;
    let cancelled = cancel.is_cancelled();
    finish(state, id, |r| {
        r.deploy.ended_ms = Some(now_ms());
        let (execution, stage) = match status {
            RunStatus::Succeeded => (ExecutionStatus::Succeeded, StageStatus::Succeeded),
            RunStatus::Cancelled => (ExecutionStatus::Cancelled, StageStatus::Cancelled),
            RunStatus::Interrupted => (ExecutionStatus::Interrupted, StageStatus::Failed),
            _ if cancelled => (ExecutionStatus::Cancelled, StageStatus::Cancelled),
            _ => (ExecutionStatus::Failed, StageStatus::Failed),
        };
        r.status = execution;
        r.deploy.status = stage;
        r.deploy.note = why.or_else(|| (status != RunStatus::Succeeded).then(|| format!("run {run} {}", status.name())));
    })?;
    Ok(())
}

fn commit_line(c: &CommitInfo) -> String {
    let what = match (&c.tag, c.pull_request) {
        (Some(t), _) => format!("tag {t}"),
        (None, Some(n)) => format!("pull request #{n}"),
        (None, None) => c.branch.clone(),
    };
    format!("{what} {}", short(&c.sha))
}

fn deploy_failed(state: &Arc<AppState>, id: &str, why: String) -> Result<(), String> {
    finish(state, id, |r| {
        r.status = ExecutionStatus::Failed;
        r.deploy.status = StageStatus::Failed;
        r.deploy.started_ms.get_or_insert(now_ms());
        r.deploy.ended_ms = Some(now_ms());
        r.deploy.note = Some(why);
    })?;
    Ok(())
}

/// Asks run `run` to stop: taken off the queue, or cancelled.
fn cancel_run(state: &AppState, run: &str) {
    if state.runs.dequeue(run).is_some() {
        return;
    }
    if let Some(live) = state.runs.live(run) {
        if let Err(e) = live.cancel(None, None) {
            tracing::warn!("run {run}: cannot cancel: {e}");
        }
    }
}

/// Cancels execution `id` (seed 001): a queued one never runs; during the
/// build its process tree is killed at once and the deploy stage is
/// skipped; during the deploy stage the run's in-flight operations
/// complete and the rest is cancelled. Asynchronous: it returns at once.
pub fn cancel(state: &Arc<AppState>, record: &ExecutionRecord, by: &str) -> ApiResult<ExecutionRecord> {
    if record.status.is_final() {
        return Err(ApiError::conflict(format!("pipeline execution {} has ended ({:?})", record.id, record.status)));
    }
    let was_queued = {
        let mut lanes = lock(&state.services.lanes);
        let lane = lanes.entry(record.service.clone()).or_default();
        if let Some(pos) = lane.queue.iter().position(|q| *q == record.id) {
            lane.queue.remove(pos);
            true
        } else {
            if let Some(c) = lane.current.as_ref().filter(|c| c.id == record.id) {
                c.cancel.cancel();
            }
            false
        }
    };
    let by = by.to_string();
    if was_queued {
        return finish(state, &record.id, |r| {
            r.status = ExecutionStatus::Cancelled;
            r.cancelled_by = Some(by);
            r.build.note = Some("cancelled before it started".into());
        })
        .map_err(ApiError::internal);
    }
    if let Some(run) = &record.run {
        cancel_run(state, run);
    }
    update(state, &record.id, |r| r.cancelled_by = Some(by)).map_err(ApiError::internal)
}

/// What a restarted server does with the executions it left unfinished:
/// one whose deploy run it resumed is followed again (it holds its
/// service's turn); the queued ones queue again, in their order, behind
/// it; any other is interrupted (its build died with the server, or its
/// run was not resumed).
pub fn recover(state: &Arc<AppState>) {
    let store = state.runs.store();
    let Ok(all) = store.executions(None) else { return };
    let mut left = Vec::new();
    let mut queued: Vec<ExecutionRecord> = Vec::new();
    for r in all.into_iter().filter(|r| !r.status.is_final()) {
        if r.status == ExecutionStatus::Queued {
            queued.push(r);
            continue;
        }
        let resumed = r.run.clone().filter(|run| {
            r.deploy.status == StageStatus::Running && (state.runs.is_active(run) || state.runs.queued(run).is_some())
        });
        let Some(run) = resumed else {
            left.push(r);
            continue;
        };
        let cancel = BuildCancel::new();
        {
            let mut lanes = lock(&state.services.lanes);
            let lane = lanes.entry(r.service.clone()).or_default();
            lane.current = Some(Current { id: r.id.clone(), cancel: cancel.clone() });
            lane.working = true;
        }
        tracing::info!("pipeline execution {}: its deploy run {run} was resumed; followed again", r.id);
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = follow_run(&state, &r.id, &run, &cancel).await {
                tracing::error!("pipeline execution {}: {e}", r.id);
            }
            work(state, r.service).await;
        });
    }
    mark_interrupted(store, left);
    // Ids grow as executions are made: oldest first.
    queued.sort_by(|a, b| a.id.cmp(&b.id));
    let mut idle = Vec::new();
    {
        let mut lanes = lock(&state.services.lanes);
        for r in queued {
            tracing::info!("pipeline execution {} of service `{}`: queued again", r.id, r.service);
            let lane = lanes.entry(r.service.clone()).or_default();
            lane.queue.push_back(r.id);
            if !std::mem::replace(&mut lane.working, true) {
                idle.push(r.service);
            }
        }
    }
    for service in idle {
        tokio::spawn(work(state.clone(), service));
    }
}

/// Ends `left` (executions of a stopped server that nothing continues) as interrupted.
fn mark_interrupted(store: &StateStore, left: Vec<ExecutionRecord>) {
    let writes: Vec<Write> = left
        .into_iter()
        .map(|mut r| {
            r.status = ExecutionStatus::Interrupted;
            r.ended_ms = Some(now_ms());
            for stage in [&mut r.build, &mut r.deploy] {
                if !stage.status.is_final() {
                    stage.status = if stage.status == StageStatus::Pending { StageStatus::Skipped } else { StageStatus::Failed };
                    stage.note.get_or_insert_with(|| "the server stopped".into());
                }
            }
            Write::PutExecution(r)
        })
        .collect();
    if !writes.is_empty() {
        if let Err(e) = store.commit(writes) {
            tracing::error!("cannot mark the executions a stopped server left: {e}");
        }
    }
}

/// What a repository event starts for `entry`: queued executions, or why
/// nothing. The mirror is fetched first (the commit must be in it; `paths`
/// compare with it), off the async workers.
pub async fn on_event(
    state: &Arc<AppState>,
    entry: &ServiceEntry,
    event: RepoEvent,
    trigger: ExecutionTrigger,
    by: String,
    meta: (String, String),
    delivery: Option<String>,
) -> ApiResult<Result<ExecutionRecord, String>> {
    let (enabled, _, _) = settings(state.runs.store(), &entry.spec)?;
    if !enabled {
        return Ok(Err(format!("the pipelines of service `{}` are disabled", entry.spec.name)));
    }
    let (mirror, mirror_lock) = state.services.mirror(entry).map_err(ApiError::unprocessable)?;
    let spec = entry.spec.clone();
    let ev = event.clone();
    let looked = tokio::task::spawn_blocking(move || -> Result<(Option<String>, Option<Vec<String>>, git::CommitMeta), String> {
        let _git = lock(&mirror_lock);
        let refs = mirror.fetch().map_err(|e| e.to_string())?;
        let changed = match &ev {
            RepoEvent::Branch { before, after, .. } if !spec.paths.is_empty() => mirror.changed_files(before, after),
            RepoEvent::PullRequest { base, sha, .. } if !spec.paths.is_empty() => {
                mirror.merge_base(&format!("refs/heads/{base}"), sha).and_then(|b| mirror.changed_files(&b, sha))
            }
            _ => None,
        };
        let meta = mirror.commit_meta(ev.sha()).unwrap_or_default();
        Ok((refs.default_branch, changed, meta))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let (default_branch, changed, found) = looked.map_err(|e| ApiError::unprocessable(format!("service `{}`: {e}", entry.spec.name)))?;
    let (preview, deploy) = match svc::decide(&entry.spec, default_branch.as_deref(), &event) {
        Decision::Run { preview, deploy } => (preview, deploy),
        Decision::Ignore(why) => return Ok(Err(why)),
    };
    if let Some(files) = &changed {
        if !git::touches(files, &entry.spec.paths) {
            return Ok(Err(format!("no change under {}", entry.spec.paths.join(", "))));
        }
    }
    let (message, author) = if meta.0.is_empty() { (found.message, found.author) } else { meta };
    let commit = match &event {
        RepoEvent::Branch { name, after, .. } => CommitInfo { sha: after.clone(), branch: name.clone(), message, author, ..Default::default() },
        RepoEvent::Tag { name, sha } => CommitInfo { sha: sha.clone(), tag: Some(name.clone()), message, author, ..Default::default() },
        RepoEvent::PullRequest { number, sha, head_ref, .. } => CommitInfo {
            sha: sha.clone(),
            branch: head_ref.clone(),
            pull_request: Some(*number),
            message,
            author,
            ..Default::default()
        },
    };
    let request = ExecutionRequest { trigger, started_by: by, commit, preview, deploy, rerun_of: None, delivery };
    enqueue(state, entry, request).map(Ok)
}

/// A manual trigger: `branch` at its head, or at `commit` (which must be on it).
pub async fn manual(
    state: &Arc<AppState>,
    entry: &ServiceEntry,
    branch: Option<String>,
    commit: Option<String>,
    by: String,
) -> ApiResult<ExecutionRecord> {
    let (mirror, mirror_lock) = state.services.mirror(entry).map_err(ApiError::unprocessable)?;
    let spec_name = entry.spec.name.clone();
    let looked = tokio::task::spawn_blocking(move || -> Result<CommitInfo, String> {
        let _git = lock(&mirror_lock);
        let refs = mirror.fetch().map_err(|e| e.to_string())?;
        let branch = match branch.or(refs.default_branch.clone()) {
            Some(b) => b,
            None => return Err("the repository names no default branch: give --branch".into()),
        };
        let head = refs.refs.get(&format!("refs/heads/{branch}")).cloned().ok_or_else(|| format!("no branch `{branch}` in the repository"))?;
        let sha = match commit {
            Some(c) => {
                let sha = mirror.resolve(&c).map_err(|e| e.to_string())?;
                if !mirror.is_on_branch(&sha, &branch) {
                    return Err(format!("commit {c} is not on branch {branch}"));
                }
                sha
            }
            None => head,
        };
        let meta = mirror.commit_meta(&sha).unwrap_or_default();
        Ok(CommitInfo { sha, branch, message: meta.message, author: meta.author, ..Default::default() })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let commit = looked.map_err(|e| ApiError::unprocessable(format!("service `{spec_name}`: {e}")))?;
    let request = ExecutionRequest {
        trigger: ExecutionTrigger::Manual,
        started_by: by,
        commit,
        preview: false,
        deploy: true,
        rerun_of: None,
        delivery: None,
    };
    enqueue(state, entry, request)
}

/// Polls every service that asks to be (`poll`), each at its interval:
/// a branch head or tag that moved since the last poll is a push.
pub async fn poll_forever(state: Arc<AppState>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for entry in catalog_services(&state).into_values() {
            let Some(every) = entry.spec.poll_s else { continue };
            let due = {
                let mut polled = lock(&state.services.polled);
                let last = polled.get(&entry.spec.name);
                let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(every));
                if due {
                    polled.insert(entry.spec.name.clone(), std::time::Instant::now());
                }
                due
            };
            if due {
                if let Err(e) = poll(&state, &entry).await {
                    tracing::warn!("polling service `{}`: {e}", entry.spec.name);
                }
            }
        }
    }
}

async fn poll(state: &Arc<AppState>, entry: &ServiceEntry) -> Result<(), String> {
    let (mirror, mirror_lock) = state.services.mirror(entry)?;
    let refs = tokio::task::spawn_blocking(move || {
        let _git = lock(&mirror_lock);
        mirror.fetch()
    })
    .await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let store = state.runs.store();
    let record = store.service_record(&entry.spec.name).map_err(|e| e.to_string())?;
    let first = record.seen_refs.is_empty();
    let seen = record.seen_refs.clone();
    let mut events = Vec::new();
    for (name, sha) in refs.branches() {
        let before = seen.get(&format!("refs/heads/{name}")).cloned();
        if before.as_deref() != Some(sha) {
            events.push(RepoEvent::Branch { name: name.into(), before: before.unwrap_or_else(|| "0".repeat(40)), after: sha.into() });
        }
    }
    for (name, sha) in refs.tags() {
        if seen.get(&format!("refs/tags/{name}")).map(String::as_str) != Some(sha) {
            events.push(RepoEvent::Tag { name: name.into(), sha: sha.into() });
        }
    }
    // Seen first, so that a trigger that fails is not tried again each poll.
    let mut updated = record;
    updated.seen_refs = refs.refs.clone();
    updated.polled_ms = Some(now_ms());
    store.commit(vec![Write::PutService(entry.spec.name.clone(), updated)]).map_err(|e| e.to_string())?;
    if first {
        // What is there when polling starts is not new.
        return Ok(());
    }
    for event in events {
        match on_event(state, entry, event.clone(), ExecutionTrigger::Poll, "poll".into(), Default::default(), None).await {
            Ok(Ok(x)) => tracing::info!("service `{}`: {event:?} found by polling: execution {}", entry.spec.name, x.id),
            Ok(Err(why)) => tracing::debug!("service `{}`: {event:?} starts nothing: {why}", entry.spec.name),
            Err(e) => tracing::warn!("service `{}`: {}", entry.spec.name, e.message),
        }
    }
    Ok(())
}

/// Switches `enabled` or `deploys` of a service at run time.
pub fn set_settings(
    store: &StateStore,
    spec: &ServiceSpec,
    enabled: Option<bool>,
    deploys: Option<bool>,
    by: &str,
) -> ApiResult<ServiceRecord> {
    let mut record = store.service_record(&spec.name)?;
    if let Some(e) = enabled {
        record.enabled = Some(e);
    }
    if let Some(d) = deploys {
        record.deploys = Some(d);
    }
    record.changed_by = Some(by.to_string());
    record.changed_ms = Some(now_ms());
    store.commit(vec![Write::PutService(spec.name.clone(), record.clone())])?;
    Ok(record)
}
