//! A run's jobs: their operations and diffs, their logs, and the run's
//! snapshot (what it was started from).

use std::sync::Arc;

use axum::extract::State;
use super::error::{Path, Query};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::runs::{check_name, run_pipeline};
use super::{ApiError, ApiResult, AppState, Caller};
use crate::users::Role;

/// Every job of run `id`, as recorded (each with its operations and diff).
#[utoipa::path(get, path = "/api/v1/runs/{id}/jobs", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
    (status = 200, body = [Object]), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn jobs(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Viewer, Some(&pipeline))?;
    let jobs = state.runs.store().jobs(&id)?;
    Ok(Json(serde_json::to_value(jobs).map_err(|e| ApiError::internal(e.to_string()))?))
}

/// One job of run `id`: its record (operations, input snapshot digest,
/// diff) and its log lines. For a run in progress, `X-Stackpipe-Event-Id`
/// is the last event they hold (follow the run's events from there).
#[utoipa::path(get, path = "/api/v1/runs/{id}/jobs/{environment}/{node}",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"), ("environment" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"), ("node" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn job(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, environment, node)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    check_name("environment", &environment)?;
    check_name("node", &node)?;
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Viewer, Some(&pipeline))?;
    let missing = || ApiError::not_found(format!("run {id} has no job for `{environment}/{node}`"));
    // A run in progress: as its board has the job, with the log lines of
    // its events so far, and which event that was (its stream goes on from there).
    if let Some(live) = state.runs.live(&id).filter(|l| !l.over()) {
        let (job, logs, covered) = live.job_view(&environment, &node);
        let mut job = job.ok_or_else(missing)?;
        // Its input and diff are recorded when it ends.
        if let Some(stored) = state.runs.store().job(&id, &environment, &node)? {
            if stored.status.is_final() && !job.status.is_final() {
                // Done before the run was resumed: its record is what it did.
                job = stored;
            } else {
                job.input = job.input.or(stored.input);
                job.diff = job.diff.or(stored.diff);
            }
        }
        let mut r = Json(json!({ "job": job, "logs": logs })).into_response();
        if let Some((_, feed)) = state.runs.feed(&id) {
            r.headers_mut().insert(super::runs::EVENT_ID_HEADER, axum::http::HeaderValue::from(feed.id_of(covered)));
        }
        return Ok(r);
    }
    let store = state.runs.store();
    let job = store.jobs(&id)?.into_iter().find(|j| j.environment == environment && j.node == node).ok_or_else(missing)?;
    let logs: Vec<_> = store.logs(&id, Some(&node))?.into_iter().filter(|l| l.environment == environment).collect();
    Ok(Json(json!({ "job": job, "logs": logs })).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Only this node's lines.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub node: Option<String>,
}

/// The stored log lines of run `id` (the job logs `stackpipe logs` shows).
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"), LogsQuery), responses(
    (status = 200, body = [Object]), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn logs(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Json<Value>> {
    if let Some(n) = &q.node {
        check_name("node", n)?;
    }
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Viewer, Some(&pipeline))?;
    let live = state.runs.live(&id);
    let request = stackpipe_runtime::control::Request::Logs { run: Some(id), node: q.node };
    let lines = stackpipe_runtime::control::answer(state.runs.store(), live.as_deref(), request, &caller.decider())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(lines))
}

/// What run `id` was started from: its snapshot (pipeline sources, vars
/// but the sensitive ones, `--set`, target, plugin digests).
#[utoipa::path(get, path = "/api/v1/runs/{id}/snapshot", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn snapshot(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Viewer, Some(&pipeline))?;
    let doc = stackpipe_runtime::run::snapshot::snapshot_document(state.runs.store(), &id)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    Ok(Json(doc))
}
