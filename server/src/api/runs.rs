//! Runs: listing them, starting one (`POST /api/v1/runs`), its status
//! document (the same as `stackpipe status --json`), cancelling, rerunning
//! and resuming.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path as FilePath;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stackpipe_dsl::CompileOptions;
use stackpipe_runtime::control::{answer, Request, SourceUpload};
use stackpipe_runtime::pipeline::{self, LoadedPipeline};
use stackpipe_runtime::plugin::WORKSPACES_DIR;
use stackpipe_runtime::run::{Mode, RunOptions, RunSource, Selection};
use stackpipe_runtime::state::{RunKind, RunRecord, RunStatus, RunTrigger};

use super::{created, ApiError, ApiResult, AppState, Caller};
use crate::runs::{queued_summary, Admission, PreparedRun, QueuedRun};
use crate::users::Role;

/// Names in paths and bodies (pipelines, runs, environments, nodes):
/// what the language allows for a name, and never a path.
pub fn check_name(what: &str, name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid {what} name: use 1 to 128 of A-Z a-z 0-9 _ - . (not starting with a dot)"
        )))
    }
}

/// The pipeline of run `id` (queued, or recorded): what the caller's
/// role must cover. 404 when there is no such run.
pub fn run_pipeline(state: &AppState, id: &str) -> ApiResult<String> {
    check_name("run", id)?;
    if let Some(q) = state.runs.queued(id) {
        return Ok(q.pipeline);
    }
    match state.runs.store().run(id)? {
        Some(r) => Ok(r.pipeline),
        None => Err(ApiError::not_found(format!("no run `{id}`"))),
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only the runs of this pipeline.
    pub pipeline: Option<String>,
    /// Only runs with this status (running, succeeded, failed, cancelled, interrupted).
    pub status: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// Every run the caller may see, newest first: the records `stackpipe runs
/// --json` prints. Queued runs are at `/api/v1/queue`.
#[utoipa::path(get, path = "/api/v1/runs", params(ListQuery), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody)))]
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller, Query(q): Query<ListQuery>) -> ApiResult<Json<Vec<RunRecord>>> {
    caller.require(Role::Viewer, None)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            [RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed, RunStatus::Cancelled, RunStatus::Interrupted]
                .into_iter()
                .find(|x| x.name() == s)
                .ok_or_else(|| ApiError::bad_request(format!("unknown status `{s}`")))?,
        ),
    };
    let runs = state
        .runs
        .store()
        .runs()?
        .into_iter()
        .filter(|r| caller.sees(&r.pipeline))
        .filter(|r| q.pipeline.as_ref().is_none_or(|p| *p == r.pipeline))
        .filter(|r| status.is_none_or(|s| r.status == s))
        .take(q.limit.unwrap_or(usize::MAX))
        .collect();
    Ok(Json(runs))
}

/// The runs waiting for others to end, first to start first.
#[utoipa::path(get, path = "/api/v1/queue", responses(
    (status = 200, body = [QueuedRun]), (status = 401, body = super::ErrorBody)))]
pub async fn queue(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<Vec<QueuedRun>>> {
    caller.require(Role::Viewer, None)?;
    Ok(Json(state.runs.queue().into_iter().filter(|q| caller.sees(&q.pipeline)).collect()))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    #[default]
    Deploy,
    Undeploy,
}

/// A run to start: of a pipeline of the server's `--pipelines` directory,
/// or of the pipeline whose source it carries (`source`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// The pipeline's name: one of the server's `--pipelines` directory or,
    /// with `source`, the name the source declares (`pipeline "NAME"`).
    pub pipeline: String,
    /// The pipeline sent with the run instead of taken from the server's
    /// directory (`stackpipe deploy FILE --server URL`): its main file
    /// (`{"path", "text"}`) and each path plugin's component
    /// (`{"components": {SOURCE: {"sha256", "base64"}}}`, by the source as
    /// the pipeline gives it; builtins are the server's own). It is compiled
    /// in the server's workspace of the pipeline, `STATE/workspaces/NAME/`,
    /// where its relative `fs` grants are (a grant outside it is refused).
    #[schema(value_type = Option<Object>)]
    pub source: Option<SourceUpload>,
    #[serde(default)]
    pub operation: Operation,
    /// Only this environment (else every one, in promotion order).
    pub environment: Option<String>,
    /// `--var name=value`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// `--set resource.attribute=value`.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// `--target`: only these resources (and what they need).
    #[serde(default)]
    pub target: Vec<String>,
    /// `--orphans` (undeploy): the deployed resources the pipeline no longer declares.
    #[serde(default)]
    pub orphans: bool,
    pub message: Option<String>,
    /// Nodes at once per environment (0: no limit).
    pub parallelism: Option<usize>,
}

/// A run started or queued.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Created {
    pub run: String,
    /// `running`, or `queued` behind runs that hold resources it locks.
    pub status: String,
    pub pipeline: String,
    pub operation: String,
    /// Where its status is.
    pub url: String,
}

/// Starts a deploy or an undeploy of a pipeline. The whole run is
/// preflighted first: if a node fails it, nothing starts (422, with the
/// report under `preflight`).
#[utoipa::path(post, path = "/api/v1/runs", request_body = CreateRun, responses(
    (status = 201, body = Created), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
    (status = 422, description = "The pipeline, its values or its preflight fail", body = super::ErrorBody)))]
pub async fn create(State(state): State<Arc<AppState>>, caller: Caller, Json(mut body): Json<CreateRun>) -> ApiResult<Response> {
    let upload = body.source.take();
    let catalog = match &upload {
        None => Some(super::pipelines::entry(&state, &caller, &body.pipeline)?),
        Some(_) => {
            check_name("pipeline", &body.pipeline)?;
            None
        }
    };
    let name = catalog.as_ref().map(|e| e.name.clone()).unwrap_or_else(|| body.pipeline.clone());
    caller.require(Role::Operator, Some(&name))?;
    if let Some(e) = &body.environment {
        check_name("environment", e)?;
    }
    if body.message.as_ref().is_some_and(|m| m.len() > 4096) {
        return Err(ApiError::bad_request("the message is longer than 4096 bytes"));
    }
    let mode = if body.operation == Operation::Undeploy { Mode::Undeploy } else { Mode::Deploy };
    let vars: Vec<(String, String)> = body.vars.into_iter().collect();
    let (pipeline, components) = match (catalog, upload) {
        (Some(entry), _) => {
            let source =
                std::fs::read_to_string(&entry.file).map_err(|e| ApiError::not_found(format!("{}: {e}", entry.file.display())))?;
            (compile(&state, &entry.file, source, vars.clone(), body.environment.clone())?, None)
        }
        (None, Some(upload)) => {
            let components = upload.components().map_err(|e| ApiError::bad_request(format!("source: a plugin component: {e}")))?;
            let pipeline = compile_uploaded(&state, &name, upload, vars.clone(), body.environment.clone())?;
            (pipeline, Some(components))
        }
        (None, None) => return Err(ApiError::internal("a run of no pipeline")),
    };
    let sets: Vec<(String, String)> = body.set.into_iter().collect();
    // A path plugin sent with the run is not on this disk: its resources'
    // types are checked by the preflight, which loads it from what was sent.
    check_types(&state, &pipeline, &sets).await?;
    let mut opts = RunOptions {
        parallelism: body.parallelism.unwrap_or(0),
        sets,
        vars,
        message: body.message,
        trigger: RunTrigger::Server,
        selection: Selection { targets: body.target, orphans: body.orphans },
        started_by: Some(caller.user.name.clone()),
        ..RunOptions::default()
    };
    if let Some(components) = components {
        let source = RunSource::uploaded(&pipeline, mode, &opts, components).map_err(|e| ApiError::unprocessable(e.to_string()))?;
        opts.source = Some(Arc::new(source));
    }
    start(&state, &caller, pipeline, mode, opts).await
}

/// A pipeline sent with its run, compiled in its workspace on the server
/// (`STATE/workspaces/NAME/`, made 0700): it must be the pipeline `name`,
/// and every `fs` grant of its plugins must lie inside the workspace.
fn compile_uploaded(
    state: &AppState,
    name: &str,
    upload: SourceUpload,
    vars: Vec<(String, String)>,
    env: Option<String>,
) -> ApiResult<LoadedPipeline> {
    let root = std::fs::canonicalize(&state.state_dir).map_err(|e| ApiError::internal(format!("the state directory: {e}")))?;
    let workspace = root.join(WORKSPACES_DIR).join(name);
    // The sender's file name, when it is a plain one (diagnostics name it).
    let file_name = FilePath::new(&upload.file.path)
        .file_name()
        .and_then(|f| f.to_str())
        .filter(|f| check_name("file", f).is_ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{name}.pipeline"));
    let pipeline = compile(state, &workspace.join(file_name), upload.file.text, vars, env)?;
    if pipeline.graph.name != name {
        return Err(ApiError::unprocessable(format!(
            "the source sent is of pipeline `{}`, not `{name}`: name the pipeline it declares",
            pipeline.graph.name
        )));
    }
    let mut dirs = std::fs::DirBuilder::new();
    dirs.recursive(true).mode(0o700);
    dirs.create(&workspace).map_err(|e| ApiError::internal(format!("cannot make the workspace {}: {e}", workspace.display())))?;
    let inside = stackpipe_runtime::plugin::resolve_path(&workspace);
    for env in &pipeline.graph.environments {
        for (plugin, spec) in &env.plugins {
            for grant in &spec.grants.fs {
                let real = stackpipe_runtime::plugin::resolve_path(&workspace.join(grant));
                if !real.starts_with(&inside) {
                    return Err(ApiError::unprocessable(format!(
                        "plugin `{plugin}`: the fs grant `{grant}` ({}) is outside the pipeline's workspace on the server ({}): \
                         a pipeline sent with its run may grant only directories inside it (relative ones, without `..`)",
                        real.display(),
                        inside.display()
                    )));
                }
            }
        }
    }
    Ok(pipeline)
}

/// Compiles a pipeline as a run asks for it: its vars, its environment,
/// every value required.
fn compile(
    state: &AppState,
    file: &FilePath,
    source: String,
    vars: Vec<(String, String)>,
    env: Option<String>,
) -> ApiResult<LoadedPipeline> {
    let opts = CompileOptions { vars, env, require_values: true, ..Default::default() };
    pipeline::compile(file, source, opts)
        .and_then(|p| p.check_grants(&state.state_dir).map(|()| p))
        .map_err(|e| ApiError::unprocessable(crate::render_load_error(&e)))
}

/// The pipeline checked against its provisioners' schemas.
async fn check_types(state: &AppState, pipeline: &LoadedPipeline, sets: &[(String, String)]) -> ApiResult<()> {
    let overridden: Vec<(String, String)> =
        sets.iter().filter_map(|(target, _)| target.split_once('.')).map(|(r, a)| (r.to_string(), a.to_string())).collect();
    stackpipe_runtime::type_check::check_types(state.runs.host(), pipeline, &overridden)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::unprocessable(crate::render_load_error(&e)))
}

/// Preflights the run and starts or queues it: 201 with its id.
async fn start(state: &AppState, caller: &Caller, pipeline: LoadedPipeline, mode: Mode, mut opts: RunOptions) -> ApiResult<Response> {
    let runs = &state.runs;
    opts.queued_behind = runs.active_ids();
    if opts.source.is_none() {
        opts.source = Some(Arc::new(RunSource::read(&pipeline, mode, &opts)));
    }
    let report = stackpipe_runtime::run::preflight(&pipeline, mode, runs.host().clone(), runs.store().clone(), &opts)
        .await
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    if !report.passed() {
        let mut e = ApiError::unprocessable(report.to_string());
        e.detail = Some(("preflight", serde_json::to_value(&report).unwrap_or(Value::Null)));
        return Err(e);
    }
    let keys: HashSet<_> = report.keys.iter().cloned().collect();
    let id = match &opts.resume {
        Some(id) => id.clone(),
        None => runs.store().new_run_id()?,
    };
    let name = pipeline.graph.name.clone();
    let summary = queued_summary(&id, &name, mode, &caller.user.name, opts.message.clone());
    let admission = runs.submit(id.clone(), PreparedRun { pipeline, mode, opts, keys }, summary);
    let status = match admission {
        Admission::Running => "running",
        Admission::Queued => "queued",
    };
    let doc = Created { url: format!("/api/v1/runs/{id}"), run: id.clone(), status: status.into(), pipeline: name, operation: mode.name().into() };
    Ok(created(doc, format!("run {id} ({status})")))
}

/// The status document of run `id`: the same as `stackpipe status --json`
/// (or, for a queued run, what it waits for).
#[utoipa::path(get, path = "/api/v1/runs/{id}", params(("id" = String, Path)), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn show(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Viewer, Some(&pipeline))?;
    if let Some(q) = state.runs.queued(&id) {
        return Ok(Json(serde_json::to_value(q).unwrap_or(Value::Null)));
    }
    let live = state.runs.live(&id);
    let doc = answer(state.runs.store(), live.as_deref(), Request::Status { run: Some(id) }, &caller.decider())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(doc))
}

/// What of a run to cancel: all of it, an environment, or one node.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    pub environment: Option<String>,
    pub node: Option<String>,
}

/// Cancels run `id` (or an environment or a node of it): operations in
/// flight finish, nothing new starts. A queued run is taken off the queue.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", params(("id" = String, Path)), request_body = CancelBody, responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<CancelBody>>,
) -> ApiResult<Json<Value>> {
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Operator, Some(&pipeline))?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    for (what, name) in [("environment", &body.environment), ("node", &body.node)] {
        if let Some(n) = name {
            check_name(what, n)?;
        }
    }
    if state.runs.dequeue(&id).is_some() {
        return Ok(Json(json!({ "run": id, "target": null, "already_stopping": false, "dequeued": true })));
    }
    let Some(live) = state.runs.live(&id).filter(|l| !l.over()) else {
        return Err(ApiError::conflict(format!("run {id} is not in progress")));
    };
    let request = Request::Cancel { run: Some(id), environment: body.environment, node: body.node };
    let done = answer(state.runs.store(), Some(&live), request, &caller.decider()).await.map_err(ApiError::conflict)?;
    Ok(Json(done))
}

/// Runs run `id`'s snapshot again, as a new run.
#[utoipa::path(post, path = "/api/v1/runs/{id}/rerun", params(("id" = String, Path)), responses(
    (status = 201, body = Created), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody),
    (status = 422, body = super::ErrorBody)))]
pub async fn rerun(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Operator, Some(&pipeline))?;
    let (loaded, mode, mut opts) = from_snapshot(&state, &id)?;
    opts.trigger = RunTrigger::Rerun;
    opts.rerun_of = Some(id);
    opts.started_by = Some(caller.user.name.clone());
    start(&state, &caller, loaded, mode, opts).await
}

/// Resumes run `id`, interrupted (its server was killed, or it stopped on
/// a failed write): it goes on from where it stopped, exactly once.
#[utoipa::path(post, path = "/api/v1/runs/{id}/resume", params(("id" = String, Path)), responses(
    (status = 201, body = Created), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody),
    (status = 422, body = super::ErrorBody)))]
pub async fn resume(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Operator, Some(&pipeline))?;
    if state.runs.is_active(&id) || state.runs.queued(&id).is_some() {
        return Err(ApiError::conflict(format!("run {id} is in progress")));
    }
    let (loaded, mode, mut opts) = resumable(&state, &id)?;
    opts.started_by = Some(caller.user.name.clone());
    start(&state, &caller, loaded, mode, opts).await
}

/// Run `id` ready to be resumed: 409 unless it is interrupted.
pub fn resumable(state: &AppState, id: &str) -> ApiResult<(LoadedPipeline, Mode, RunOptions)> {
    let record = state.runs.store().run(id)?.ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    if record.status != RunStatus::Interrupted {
        return Err(ApiError::conflict(format!("run {id} is {}, not interrupted: only an interrupted run resumes", record.status.name())));
    }
    let (loaded, mode, mut opts) = from_snapshot(state, id)?;
    opts.resume = Some(id.to_string());
    Ok((loaded, mode, opts))
}

/// Run `id`'s snapshot, compiled as it was started: its source, vars,
/// `--set`, selection and plugin components. A run started with a
/// sensitive var cannot be run again by the server, which never had
/// its value kept (422).
fn from_snapshot(state: &AppState, id: &str) -> ApiResult<(LoadedPipeline, Mode, RunOptions)> {
    let store = state.runs.store();
    let record = store.run(id)?.ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    if let Some(v) = record.sensitive_vars.first() {
        return Err(ApiError::unprocessable(format!(
            "run {id} was started with the sensitive var `{}`, whose value the server does not keep: start a new run with it",
            v.name
        )));
    }
    let base_dir = FilePath::new(&record.file).parent().map(FilePath::to_path_buf).unwrap_or_default();
    let (source, drift) = RunSource::restore(store, &record, &base_dir).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    for d in &drift {
        tracing::info!("run {id}: {d} since it started; its snapshot is run");
    }
    let snapshot = &source.snapshot;
    let main = snapshot.files.first().ok_or_else(|| ApiError::unprocessable(format!("run {id}'s snapshot holds no pipeline source")))?;
    let loaded = compile(state, FilePath::new(&main.path), main.text.clone(), snapshot.vars.clone(), snapshot.environment.clone())?;
    let mode = if snapshot.operation == RunKind::Undeploy { Mode::Undeploy } else { Mode::Deploy };
    let opts = RunOptions {
        parallelism: record.parallelism,
        sets: snapshot.sets.clone(),
        vars: snapshot.vars.clone(),
        message: record.message.clone(),
        trigger: RunTrigger::Server,
        selection: Selection { targets: snapshot.targets.clone(), orphans: snapshot.orphans },
        source: None,
        ..RunOptions::default()
    };
    let source = Arc::new(source);
    Ok((loaded, mode, RunOptions { source: Some(source), ..opts }))
}

/// Resumes every interrupted run of the state (the server was killed while
/// they ran), oldest first; what cannot be resumed is logged and left
/// interrupted.
pub async fn resume_interrupted(state: &AppState) {
    let runs = match state.runs.store().runs() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot list the runs to resume: {e}");
            return;
        }
    };
    for record in runs.into_iter().rev().filter(|r| r.status == RunStatus::Interrupted) {
        let id = record.id.clone();
        let who = Caller { user: crate::users::User::server(&record.started_by) };
        let resumed = match resumable(state, &id) {
            Ok((loaded, mode, mut opts)) => {
                opts.started_by = Some("stackpipe-server".into());
                start(state, &who, loaded, mode, opts).await
            }
            Err(e) => Err(e),
        };
        match resumed {
            Ok(_) => tracing::info!("run {id}: resumed"),
            Err(e) => tracing::warn!("run {id} is left interrupted: {}", e.message),
        }
    }
}
