//! The pipelines of the server's `--pipelines` directory.

use std::sync::Arc;

use axum::extract::State;
use super::error::Path;
use axum::Json;
use petgraph::visit::EdgeRef;
use serde_json::{json, Value};

use super::{ApiError, ApiResult, AppState, Caller};
use crate::catalog::{CatalogEntry, PipelineSummary};
use crate::users::Role;

/// Every pipeline the caller may see.
#[utoipa::path(get, path = "/api/v1/pipelines", responses(
    (status = 200, body = [PipelineSummary]), (status = 401, body = super::ErrorBody)))]
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<Vec<PipelineSummary>>> {
    caller.require(Role::Viewer, None)?;
    Ok(Json(state.catalog.entries().iter().filter(|e| caller.sees(&e.name)).map(CatalogEntry::summary).collect()))
}

/// The pipeline `name` of the catalog, if the caller may see it.
pub fn entry(state: &AppState, caller: &Caller, name: &str) -> ApiResult<CatalogEntry> {
    super::runs::check_name("pipeline", name)?;
    let entry = state.catalog.get(name).ok_or_else(|| ApiError::not_found(format!("no pipeline `{name}` on this server")))?;
    caller.require(Role::Viewer, Some(name))?;
    Ok(entry)
}

/// One pipeline: its summary and its source.
#[utoipa::path(get, path = "/api/v1/pipelines/{name}", params(("name" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn show(State(state): State<Arc<AppState>>, caller: Caller, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let e = entry(&state, &caller, &name)?;
    let source = e.compiled.as_ref().map(|p| p.source.clone()).ok();
    let mut doc = serde_json::to_value(e.summary()).map_err(|e| ApiError::internal(e.to_string()))?;
    doc["source"] = json!(source);
    Ok(Json(doc))
}

/// What the pipeline has deployed, per environment in promotion order: each
/// resource's outputs and the pipeline's `output`s (`stackpipe outputs
/// --json`), secret ones masked.
#[utoipa::path(get, path = "/api/v1/pipelines/{name}/outputs", params(("name" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
    (status = 422, description = "The pipeline does not compile", body = super::ErrorBody)))]
pub async fn outputs(State(state): State<Arc<AppState>>, caller: Caller, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let e = entry(&state, &caller, &name)?;
    let p = e.compiled.map_err(ApiError::unprocessable)?;
    let per_env = stackpipe_runtime::run::outputs::deployed_outputs(&p.graph, state.runs.store(), false)?;
    Ok(Json(stackpipe_runtime::run::outputs::outputs_json(&per_env)))
}

/// The pipeline's graph: its nodes by level, with their dependencies.
#[utoipa::path(get, path = "/api/v1/pipelines/{name}/graph", params(("name" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
    (status = 422, description = "The pipeline does not compile", body = super::ErrorBody)))]
pub async fn graph(State(state): State<Arc<AppState>>, caller: Caller, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let e = entry(&state, &caller, &name)?;
    let p = e.compiled.map_err(ApiError::unprocessable)?;
    let g = &p.graph;
    let nodes: Vec<Value> = g
        .levels()
        .into_iter()
        .flatten()
        .map(|i| {
            let n = g.node(i);
            let needs: Vec<&str> = g.dependencies(i).into_iter().map(|d| g.node(d).name.as_str()).collect();
            json!({ "name": n.name, "type": n.type_name(), "level": n.level, "gate_after": n.gate_after, "needs": needs })
        })
        .collect();
    let edges: Vec<Value> = g
        .graph
        .edge_references()
        .map(|e| json!({ "from": g.node(e.source()).name, "to": g.node(e.target()).name }))
        .collect();
    let environments: Vec<Value> = g
        .environments
        .iter()
        .map(|env| json!({ "name": env.name, "after": env.after, "approval": env.approval }))
        .collect();
    Ok(Json(json!({ "pipeline": g.name, "levels": g.level_count(), "nodes": nodes, "edges": edges, "environments": environments })))
}
