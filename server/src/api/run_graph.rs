//! A run's graph as the console draws it: every node of the run's
//! pipeline (as its snapshot compiles, so an edited file does not change an
//! old run's picture) with its place, the edges, the environments' gates,
//! and what the caller may do on the run.

use std::path::Path as FilePath;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use stackpipe_dsl::CompileOptions;
use stackpipe_runtime::pipeline;
use stackpipe_runtime::run::RunSource;

use super::error::Path;
use super::runs::run_pipeline;
use super::{ApiError, ApiResult, AppState, Caller};
use crate::layout::Drawing;
use crate::users::Role;

/// Run `id`'s graph: `layout` (node names, types, levels, places, edges
/// as index pairs), `environments` with their gates and whether the caller
/// may approve or reject them, and `may_operate` (cancel, rerun).
#[utoipa::path(get, path = "/api/v1/runs/{id}/graph", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
    (status = 422, description = "The run's pipeline does not compile", body = super::ErrorBody)))]
pub async fn graph(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Viewer, Some(&pipeline))?;
    let record = state.runs.store().run(&id)?;
    let started_by = record.as_ref().map(|r| r.started_by.clone()).or_else(|| state.runs.queued(&id).map(|q| q.started_by));
    let drawing = match record.filter(|r| r.snapshot.is_some()) {
        Some(record) => {
            let digest = record.snapshot.clone().unwrap_or_default();
            let state2 = state.clone();
            tokio::task::spawn_blocking(move || state2.layouts.get_or_make(&digest, || of_snapshot(&state2, &record)))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))??
        }
        // Not recorded yet (queued, or starting): the pipeline as the server has it.
        None => {
            let entry = super::pipelines::entry(&state, &caller, &pipeline)?;
            let p = entry.compiled.map_err(ApiError::unprocessable)?;
            Arc::new(tokio::task::spawn_blocking(move || Drawing::of(&p.graph)).await.map_err(|e| ApiError::internal(e.to_string()))?)
        }
    };
    let user = &caller.user;
    let operate = user.may(Role::Operator, Some(&pipeline));
    let environments: Vec<_> = drawing
        .environments
        .iter()
        .map(|e| {
            let decide = operate && e.rule.admits(&user.name, user.role);
            let own = started_by.as_deref() == Some(user.name.as_str());
            json!({
                "name": e.name,
                "after": e.after,
                "approval": e.approval,
                "approvers": e.rule.approvers_text(),
                "self_approval": e.rule.self_approval,
                "may_approve": decide && (e.rule.self_approval || !own),
                "may_reject": decide,
            })
        })
        .collect();
    let rest = json!({
        "run": id,
        "pipeline": pipeline,
        "environments": environments,
        "may_operate": operate,
        "may_delete": user.may(Role::Admin, Some(&pipeline)),
    });
    // The layout is spliced in as it was made: 10,000 nodes are not parsed
    // and written again for every caller.
    let rest = rest.to_string();
    let body = format!("{{\"layout\":{},{}", drawing.layout_json, &rest[1..]);
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// The drawing of `record`'s snapshot: its main file compiled with its
/// vars and environment (values not required: a sensitive var's value is
/// not kept, and the picture does not need it).
fn of_snapshot(state: &AppState, record: &stackpipe_runtime::state::RunRecord) -> ApiResult<Drawing> {
    let base_dir = FilePath::new(&record.file).parent().map(FilePath::to_path_buf).unwrap_or_default();
    let (source, _) = RunSource::restore(state.runs.store(), record, &base_dir).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let snapshot = &source.snapshot;
    let main = snapshot.files.first().ok_or_else(|| ApiError::unprocessable("the run's snapshot holds no pipeline source"))?;
    let opts = CompileOptions {
        vars: snapshot.vars.clone(),
        env: snapshot.environment.clone(),
        artifacts: super::runs::artifacts_of(snapshot)?,
        previews_only: snapshot.previews_only,
        ..Default::default()
    };
    let loaded = pipeline::compile(FilePath::new(&main.path), main.text.clone(), opts)
        .map_err(|e| ApiError::unprocessable(crate::render_load_error(&e)))?;
    Ok(Drawing::of(&loaded.graph))
}
