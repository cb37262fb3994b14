//! Runs: listing them, starting one (`POST /api/v1/runs`), its status
//! document (the same as `stackpipe status --json`), cancelling, rerunning
//! and resuming.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path as FilePath;
use std::sync::Arc;

use axum::extract::State;
use super::error::{Path, Query};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stackpipe_dsl::CompileOptions;
use stackpipe_runtime::control::{answer, Request, SourceUpload};
use stackpipe_runtime::pipeline::{self, LoadedPipeline};
use stackpipe_runtime::plugin::WORKSPACES_DIR;
use stackpipe_runtime::run::{Mode, RunOptions, RunSource, Selection};
use stackpipe_runtime::state::{RunKind, RunRecord, RunStatus, RunTrigger};

use super::error::Body;
use super::{created, ApiError, ApiResult, AppState, Caller};
use crate::runs::{queued_summary, Admission, KeptRun, PreparedRun, QueuedRun, StatusView};

/// The last event a run's status document holds (see [`show`]).
pub const EVENT_ID_HEADER: &str = "x-stackpipe-event-id";
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
    if let Some(p) = state.runs.pipeline_of(id) {
        return Ok(p);
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
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub pipeline: Option<String>,
    /// Only runs with this status.
    pub status: Option<StatusFilter>,
    /// Only runs that took this environment.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub environment: Option<String>,
    /// Only runs this user started.
    #[param(max_length = 128)]
    pub started_by: Option<String>,
    /// At most this many, newest first.
    #[param(minimum = 0, maximum = 1000000)]
    pub limit: Option<u32>,
}

/// A run status to list.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Interrupted,
}

impl StatusFilter {
    fn status(self) -> RunStatus {
        match self {
            StatusFilter::Running => RunStatus::Running,
            StatusFilter::Succeeded => RunStatus::Succeeded,
            StatusFilter::Failed => RunStatus::Failed,
            StatusFilter::Cancelled => RunStatus::Cancelled,
            StatusFilter::Interrupted => RunStatus::Interrupted,
        }
    }
}

/// Every run the caller may see, newest first: the records `stackpipe runs
/// --json` prints. Queued runs are at `/api/v1/queue`.
#[utoipa::path(get, path = "/api/v1/runs", params(ListQuery), responses(
    (status = 200, body = [Object]), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody)))]
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller, Query(q): Query<ListQuery>) -> ApiResult<Json<Vec<RunRecord>>> {
    caller.require(Role::Viewer, None)?;
    if let Some(p) = &q.pipeline {
        check_name("pipeline", p)?;
    }
    if let Some(e) = &q.environment {
        check_name("environment", e)?;
    }
    if q.started_by.as_ref().is_some_and(|u| u.len() > 128) {
        return Err(ApiError::bad_request("started_by is at most 128 bytes"));
    }
    if q.limit.is_some_and(|n| n > 1_000_000) {
        return Err(ApiError::bad_request("limit is at most 1000000"));
    }
    let status = q.status.map(StatusFilter::status);
    let runs = state
        .runs
        .store()
        .runs()?
        .into_iter()
        .filter(|r| caller.sees(&r.pipeline))
        .filter(|r| q.pipeline.as_ref().is_none_or(|p| *p == r.pipeline))
        .filter(|r| status.is_none_or(|s| r.status == s))
        .filter(|r| q.environment.as_ref().is_none_or(|e| r.environments.contains(e)))
        .filter(|r| q.started_by.as_ref().is_none_or(|u| *u == r.started_by))
        .take(q.limit.map_or(usize::MAX, |n| n as usize))
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
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub pipeline: String,
    /// The pipeline sent with the run instead of taken from the server's
    /// directory (`stackpipe deploy FILE --server URL`): its main file
    /// (`{"path", "text"}`) and each path plugin's component
    /// (`{"components": {SOURCE: {"sha256", "base64"}}}`, by the source as
    /// the pipeline gives it; builtins are the server's own). It is compiled
    /// in the server's workspace of the pipeline, `STATE/workspaces/NAME/`,
    /// where its relative `fs` grants are (a grant outside it is refused).
    #[schema(value_type = Option<SourceUploadSchema>)]
    pub source: Option<SourceUpload>,
    #[serde(default)]
    pub operation: Operation,
    /// Only this environment (else every one, in promotion order).
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
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
    #[schema(max_length = 4096)]
    pub message: Option<String>,
    /// Nodes at once per environment (0: no limit).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(value_type = Option<u32>, minimum = 0, maximum = 100000)]
    pub parallelism: Option<usize>,
}

/// A whole number, however JSON writes it (`40` or `40.0`).
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n: Option<f64> = Option::deserialize(d)?;
    match n {
        None => Ok(None),
        Some(f) if f.fract() == 0.0 && (0.0..=100_000.0).contains(&f) => Ok(Some(f as usize)),
        Some(f) => Err(serde::de::Error::custom(format!("expected a whole number from 0 to 100000, got {f}"))),
    }
}

/// The shape of [`SourceUpload`] in the API's document (the runtime, which
/// defines it, knows nothing of OpenAPI).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SourceUploadSchema {
    /// The pipeline's main file: its path on the sender's machine (only its
    /// name is used) and its text.
    file: UploadedFileSchema,
    /// Each path plugin's component, by its source as the pipeline gives it.
    #[serde(default)]
    components: BTreeMap<String, UploadedComponentSchema>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct UploadedFileSchema {
    path: String,
    text: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct UploadedComponentSchema {
    /// The SHA-256 of the bytes, hex: checked on arrival.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    sha256: String,
    /// The bytes, base64 (standard alphabet, padded).
    #[schema(pattern = "^[A-Za-z0-9+/]*={0,2}$")]
    base64: String,
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
pub async fn create(State(state): State<Arc<AppState>>, caller: Caller, Body(mut body): Body<CreateRun>) -> ApiResult<Response> {
    let upload = body.source.take();
    let catalog = match &upload {
        None => Some(super::pipelines::entry(&state, &caller, &body.pipeline)?),
        Some(_) if !state.uploads => {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "this server runs only the pipelines of its --pipelines directory (it was started with --no-uploads)",
            ))
        }
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
            let components = upload.components().map_err(|e| ApiError::unprocessable(format!("source: a plugin component: {e}")))?;
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
pub(crate) fn compile(
    state: &AppState,
    file: &FilePath,
    source: String,
    vars: Vec<(String, String)>,
    env: Option<String>,
) -> ApiResult<LoadedPipeline> {
    compile_with(state, file, source, CompileOptions { vars, env, ..Default::default() })
}

/// [`compile`] with every option given (a service's artifacts, previews),
/// every value required.
pub(crate) fn compile_with(state: &AppState, file: &FilePath, source: String, opts: CompileOptions) -> ApiResult<LoadedPipeline> {
    let opts = CompileOptions { require_values: true, ..opts };
    pipeline::compile(file, source, opts)
        .and_then(|p| p.check_grants(&state.state_dir).map(|()| p))
        .map_err(|e| ApiError::unprocessable(crate::render_load_error(&e)))
}

/// The pipeline checked against its provisioners' schemas.
pub(crate) async fn check_types(state: &AppState, pipeline: &LoadedPipeline, sets: &[(String, String)]) -> ApiResult<()> {
    let overridden: Vec<(String, String)> =
        sets.iter().filter_map(|(target, _)| target.split_once('.')).map(|(r, a)| (r.to_string(), a.to_string())).collect();
    stackpipe_runtime::type_check::check_types(state.runs.host(), pipeline, &overridden)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::unprocessable(crate::render_load_error(&e)))
}

/// Preflights the run and starts or queues it: 201 with its id.
async fn start(state: &AppState, caller: &Caller, pipeline: LoadedPipeline, mode: Mode, mut opts: RunOptions) -> ApiResult<Response> {
    opts.started_by.get_or_insert_with(|| caller.user.name.clone());
    let doc = start_run(state, pipeline, mode, opts).await?;
    let detail = format!("run {} ({})", doc.run, doc.status);
    Ok(created(doc, detail))
}

/// Preflights a run started by `opts.started_by` and starts or queues it.
pub(crate) async fn start_run(state: &AppState, pipeline: LoadedPipeline, mode: Mode, mut opts: RunOptions) -> ApiResult<Created> {
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
    let id = match (&opts.resume, &opts.id) {
        (Some(id), _) | (None, Some(id)) => id.clone(),
        (None, None) => runs.store().new_run_id()?,
    };
    let name = pipeline.graph.name.clone();
    let by = opts.started_by.clone().unwrap_or_default();
    let summary = queued_summary(&id, &name, mode, &by, opts.message.clone());
    let kept = opts.source.as_ref().filter(|s| s.snapshot.sensitive_vars.is_empty()).map(|source| {
        let record = KeptRun {
            id: id.clone(),
            snapshot: source.digest.clone(),
            file: pipeline.path.display().to_string(),
            started_by: by.clone(),
            trigger: opts.trigger,
            rerun_of: opts.rerun_of.clone(),
            resume: opts.resume.clone(),
            message: opts.message.clone(),
            parallelism: opts.parallelism,
        };
        (record, source.writes())
    });
    let admission = runs.submit(id.clone(), PreparedRun { pipeline, mode, opts, keys }, summary, kept);
    let status = match admission {
        Admission::Running => "running",
        Admission::Queued => "queued",
    };
    Ok(Created { url: format!("/api/v1/runs/{id}"), run: id.clone(), status: status.into(), pipeline: name, operation: mode.name().into() })
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    /// `nodes`: each node without its operations, input and diff.
    pub view: Option<StatusView>,
}

/// The status document of run `id`: the same as `stackpipe status --json`
/// (or, for a queued run, what it waits for). For a run in progress the
/// header `X-Stackpipe-Event-Id` is the last of its events the document
/// holds: its event stream goes on from there (`?after=`).
#[utoipa::path(get, path = "/api/v1/runs/{id}", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"), ShowQuery), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> ApiResult<Response> {
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Viewer, Some(&pipeline))?;
    if let Some(q) = state.runs.queued(&id) {
        return Ok(Json(q).into_response());
    }
    if let Some(why) = state.runs.failed_to_start(&id) {
        // It was answered 201 and then could not start: never recorded.
        return Ok(Json(json!({ "run": id, "pipeline": pipeline, "status": "failed", "error": why })).into_response());
    }
    let live = state.runs.started(&id).await.or_else(|| state.runs.live(&id));
    // Made off the async workers: a document of 10,000 nodes takes a while,
    // and the run's events and other requests go on meanwhile.
    let runs = state.runs.clone();
    let view = q.view.unwrap_or_default();
    let made = tokio::task::spawn_blocking(move || runs.status_json(&id, live.as_deref(), view));
    let (json, covered) = made.await.map_err(|e| ApiError::internal(e.to_string()))?.map_err(ApiError::internal)?;
    let mut r = ([(axum::http::header::CONTENT_TYPE, "application/json")], json).into_response();
    if let Some(n) = covered {
        r.headers_mut().insert(EVENT_ID_HEADER, axum::http::HeaderValue::from(n));
    }
    Ok(r)
}

/// What of a run to cancel: all of it, an environment, or one node.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub environment: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub node: Option<String>,
}

/// Cancels run `id` (or an environment or a node of it): operations in
/// flight finish, nothing new starts. A queued run is taken off the queue.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), request_body = CancelBody, responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<CancelBody>,
) -> ApiResult<Json<Value>> {
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Operator, Some(&pipeline))?;
    for (what, name) in [("environment", &body.environment), ("node", &body.node)] {
        if let Some(n) = name {
            check_name(what, n)?;
        }
    }
    if state.runs.dequeue(&id).is_some() {
        return Ok(Json(json!({ "run": id, "target": null, "already_stopping": false, "dequeued": true })));
    }
    let request = Request::Cancel { run: Some(id.clone()), environment: body.environment, node: body.node };
    let Some(live) = state.runs.started(&id).await.filter(|l| !l.over()) else {
        // Another server's run, on the shared database: its owner cancels it.
        return match state.runs.ask_owner(&id, &request, &caller.decider()).await {
            Some(Ok(Ok(done))) => Ok(Json(done)),
            Some(Ok(Err(e))) => Err(ApiError::conflict(e)),
            Some(Err(e)) => Err(ApiError::internal(e)),
            None => Err(ApiError::conflict(format!("run {id} is not in progress"))),
        };
    };
    let done = answer(state.runs.store(), Some(&live), request, &caller.decider()).await.map_err(ApiError::conflict)?;
    Ok(Json(done))
}

/// Deletes run `id`'s records (admin): its record, jobs, log lines and
/// decisions. A run in progress or queued is not deleted: cancel it first.
/// What it deployed is not touched.
#[utoipa::path(delete, path = "/api/v1/runs/{id}", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn delete(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Admin, Some(&pipeline))?;
    if state.runs.is_active(&id) || state.runs.queued(&id).is_some() {
        return Err(ApiError::conflict(format!("run {id} is in progress or queued: cancel it first")));
    }
    let store = state.runs.store();
    if store.locks()?.iter().any(|(_, h)| h.run_id == id) {
        return Err(ApiError::conflict(format!(
            "run {id} still holds locks (it was interrupted): resume it, or release them with POST /api/v1/state/unlock first"
        )));
    }
    store.commit(vec![stackpipe_runtime::state::Write::DeleteRun(id.clone())])?;
    state.runs.forget(&id);
    Ok(Json(json!({ "deleted": id })))
}

/// Runs run `id`'s snapshot again, as a new run.
#[utoipa::path(post, path = "/api/v1/runs/{id}/rerun", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
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
#[utoipa::path(post, path = "/api/v1/runs/{id}/resume", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
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

/// The runs a server stopped as it shut down (they ended cancelled), kept
/// beside the state so the next start resumes them.
const STOPPED_FILE: &str = "server-stopped.json";

/// Notes the runs a shutdown stopped (see [`STOPPED_FILE`]).
pub fn note_stopped(dir: &FilePath, runs: &[String]) {
    if runs.is_empty() {
        return;
    }
    let path = dir.join(STOPPED_FILE);
    let text = serde_json::to_string(runs).unwrap_or_default();
    if let Err(e) = std::fs::write(&path, text) {
        tracing::error!("cannot note the stopped runs in {}: {e}; resume them with POST /api/v1/runs/ID/resume", path.display());
    }
}

/// Run `id` ready to be resumed: 409 unless it is interrupted (or, with
/// `stopped`, was cancelled by the server's own shutdown).
pub fn resumable(state: &AppState, id: &str) -> ApiResult<(LoadedPipeline, Mode, RunOptions)> {
    resumable_as(state, id, false)
}

fn resumable_as(state: &AppState, id: &str, stopped: bool) -> ApiResult<(LoadedPipeline, Mode, RunOptions)> {
    let record = state.runs.store().run(id)?.ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    let by_shutdown = stopped && record.status == RunStatus::Cancelled;
    if record.status != RunStatus::Interrupted && !by_shutdown {
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
    let file = source.snapshot.files.first().map(|f| f.path.clone()).unwrap_or_default();
    let (loaded, mode, opts) = snapshot_run(state, source, FilePath::new(&file))?;
    Ok((loaded, mode, RunOptions { parallelism: record.parallelism, message: record.message.clone(), trigger: RunTrigger::Server, ..opts }))
}

/// A run of `source` (a snapshot restored from the state), its pipeline
/// compiled as the file `file` from the snapshot's text: its vars,
/// environment, `--set` and selection; the rest is the caller's.
fn snapshot_run(state: &AppState, source: RunSource, file: &FilePath) -> ApiResult<(LoadedPipeline, Mode, RunOptions)> {
    let snapshot = &source.snapshot;
    let main = snapshot.files.first().ok_or_else(|| ApiError::unprocessable("the run's snapshot holds no pipeline source"))?;
    let artifacts = artifacts_of(snapshot)?;
    let compile_opts = CompileOptions {
        vars: snapshot.vars.clone(),
        env: snapshot.environment.clone(),
        artifacts,
        previews_only: snapshot.previews_only,
        ..Default::default()
    };
    let loaded = compile_with(state, file, main.text.clone(), compile_opts)?;
    let mode = if snapshot.operation == RunKind::Undeploy { Mode::Undeploy } else { Mode::Deploy };
    let opts = RunOptions {
        sets: snapshot.sets.clone(),
        vars: snapshot.vars.clone(),
        selection: Selection { targets: snapshot.targets.clone(), orphans: snapshot.orphans },
        ..RunOptions::default()
    };
    Ok((loaded, mode, RunOptions { source: Some(Arc::new(source)), ..opts }))
}

/// The artifacts a snapshot gives its run (`service.NAME.artifact`).
pub(crate) fn artifacts_of(
    snapshot: &stackpipe_runtime::state::RunSnapshot,
) -> ApiResult<BTreeMap<String, stackpipe_dsl::ArtifactRef>> {
    snapshot
        .artifacts
        .iter()
        .map(|(service, v)| {
            serde_json::from_value(v.clone())
                .map(|a| (service.clone(), a))
                .map_err(|e| ApiError::unprocessable(format!("the snapshot's artifact of service `{service}`: {e}")))
        })
        .collect()
}

/// Queues again the runs a stopped server had queued (`server-queue.json`),
/// in their order, under their ids: each from its snapshot, preflighted
/// again. What cannot be queued again is logged.
pub async fn requeue(state: &AppState) {
    for kept in state.runs.kept_queue() {
        let id = kept.id.clone();
        match requeued(state, kept).await {
            Ok(_) => tracing::info!("run {id}: queued again"),
            Err(e) => tracing::warn!("run {id} was queued when the server stopped and cannot be queued again: {}", e.message),
        }
    }
}

async fn requeued(state: &AppState, kept: KeptRun) -> ApiResult<Response> {
    let store = state.runs.store();
    let base_dir = FilePath::new(&kept.file).parent().map(FilePath::to_path_buf).unwrap_or_default();
    let (source, _) = RunSource::restore_digest(store, &kept.id, &kept.snapshot, &base_dir)
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let (loaded, mode, opts) = snapshot_run(state, source, FilePath::new(&kept.file))?;
    let opts = RunOptions {
        parallelism: kept.parallelism,
        message: kept.message,
        trigger: kept.trigger,
        rerun_of: kept.rerun_of,
        resume: kept.resume,
        id: Some(kept.id),
        started_by: Some(kept.started_by.clone()),
        ..opts
    };
    let who = Caller { user: crate::users::User::server() };
    start(state, &who, loaded, mode, opts).await
}

/// Resumes every interrupted run of the state (the server was killed while
/// they ran) and every run its last shutdown stopped, oldest first; what
/// cannot be resumed is logged and left as it is.
pub async fn resume_interrupted(state: &AppState) {
    let runs = match state.runs.store().runs() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot list the runs to resume: {e}");
            return;
        }
    };
    let noted = state.state_dir.join(STOPPED_FILE);
    let stopped: Vec<String> =
        std::fs::read_to_string(&noted).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let _ = std::fs::remove_file(&noted);
    let wanted = |r: &RunRecord| r.status == RunStatus::Interrupted || (r.status == RunStatus::Cancelled && stopped.contains(&r.id));
    for record in runs.into_iter().rev().filter(|r| wanted(r)) {
        let id = record.id.clone();
        let who = Caller { user: crate::users::User::server() };
        let resumed = match resumable_as(state, &id, true) {
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
