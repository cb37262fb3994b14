//! The state: resources and locks (what `plan`, `outputs` and `state list`
//! read), releasing locks, and every job that touched a resource.

use std::sync::Arc;

use axum::extract::State;
use super::error::{Path, Query};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use stackpipe_runtime::control::{answer, Request, StateResources};
use stackpipe_runtime::state::{pid_alive, ResourceKey};

use super::runs::check_name;
use super::error::Body;
use super::{ApiError, ApiResult, AppState, Caller};
use crate::users::Role;

/// Every resource record and lock of the pipelines the caller may see,
/// secrets masked.
#[utoipa::path(get, path = "/api/v1/state/resources", responses(
    (status = 200, body = Object), (status = 401, body = super::ErrorBody)))]
pub async fn resources(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(Role::Viewer, None)?;
    let store = state.runs.store();
    let doc = StateResources {
        // Sensitive outputs and the state of secret attributes masked: no
        // answer holds a secret value.
        resources: store
            .all_resources()?
            .into_iter()
            .filter(|(k, _)| caller.sees(&k.pipeline))
            .map(|(k, r)| (k, stackpipe_runtime::secrets::masked_record(&r)))
            .collect(),
        locks: store.locks()?.into_iter().filter(|(k, _)| caller.sees(&k.pipeline)).collect(),
    };
    Ok(Json(serde_json::to_value(doc).map_err(|e| ApiError::internal(e.to_string()))?))
}

/// Forgets a resource's record (admin), as `terraform state rm` does: the
/// resource itself is not destroyed, and the next deploy creates it anew.
/// A resource locked by a run in progress is not forgotten.
#[utoipa::path(delete, path = "/api/v1/state/resources/{pipeline}/{environment}/{resource}",
    params(("pipeline" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"), ("environment" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"),
        ("resource" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn forget(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((pipeline, environment, resource)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    for (what, name) in [("pipeline", &pipeline), ("environment", &environment), ("resource", &resource)] {
        check_name(what, name)?;
    }
    caller.require(Role::Admin, Some(&pipeline))?;
    let store = state.runs.store();
    let key = ResourceKey::new(&pipeline, &environment, &resource);
    if store.resource(&key)?.is_none() {
        return Err(ApiError::not_found(format!("no resource {key} in the state")));
    }
    if let Some((_, holder)) = store.locks()?.into_iter().find(|(l, _)| *l == key) {
        if state.runs.is_active(&holder.run_id) {
            return Err(ApiError::conflict(format!("{key} is locked by run {}, in progress", holder.run_id)));
        }
    }
    store.commit(vec![stackpipe_runtime::state::Write::DeleteResource(key.clone())])?;
    Ok(Json(json!({ "forgotten": key.to_string() })))
}

/// Every lock held, and by which run.
#[utoipa::path(get, path = "/api/v1/state/locks", responses(
    (status = 200, body = [Object]), (status = 401, body = super::ErrorBody)))]
pub async fn locks(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(Role::Viewer, None)?;
    let locks: Vec<Value> = state
        .runs
        .store()
        .locks()?
        .into_iter()
        .filter(|(k, _)| caller.sees(&k.pipeline))
        .map(|(k, h)| json!({ "pipeline": k.pipeline, "environment": k.environment, "resource": k.resource, "run": h.run_id, "pid": h.pid }))
        .collect();
    Ok(Json(Value::Array(locks)))
}

/// Which locks to release, of those whose run is not in progress on this
/// server: every one, or those of a pipeline, an environment, a resource.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockBody {
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub pipeline: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub environment: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub resource: Option<String>,
}

/// Releases locks left by runs that are not in progress (admin). The locks
/// of a run in progress are never released: cancel it.
#[utoipa::path(post, path = "/api/v1/state/unlock", request_body = UnlockBody, responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn unlock(State(state): State<Arc<AppState>>, caller: Caller, Body(body): Body<UnlockBody>) -> ApiResult<Json<Value>> {
    for (what, name) in [("pipeline", &body.pipeline), ("environment", &body.environment), ("resource", &body.resource)] {
        if let Some(n) = name {
            check_name(what, n)?;
        }
    }
    caller.require(Role::Admin, body.pipeline.as_deref())?;
    let store = state.runs.store();
    let wanted = |k: &ResourceKey| {
        body.pipeline.as_ref().is_none_or(|p| *p == k.pipeline)
            && body.environment.as_ref().is_none_or(|e| *e == k.environment)
            && body.resource.as_ref().is_none_or(|r| *r == k.resource)
    };
    if let (Some(p), Some(e), Some(r)) = (&body.pipeline, &body.environment, &body.resource) {
        let k = ResourceKey::new(p, e, r);
        if let Some((_, holder)) = store.locks()?.into_iter().find(|(l, _)| *l == k) {
            if state.runs.is_active(&holder.run_id) {
                return Err(ApiError::conflict(format!("{k} is locked by run {}, in progress: cancel it instead", holder.run_id)));
            }
        }
    }
    // A lock's holder is gone when its run is not in progress here (this
    // process holds the runs it runs) and its process is not alive.
    let mut released = Vec::new();
    for (k, holder) in store.locks()? {
        if !wanted(&k) || state.runs.is_active(&holder.run_id) {
            continue;
        }
        if holder.pid != std::process::id() && pid_alive(holder.pid) {
            continue;
        }
        released.extend(store.unlock_stale(Some(&k), true)?);
    }
    let released: Vec<Value> =
        released.into_iter().map(|(k, h)| json!({ "pipeline": k.pipeline, "environment": k.environment, "resource": k.resource, "run": h.run_id })).collect();
    Ok(Json(json!({ "released": released })))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// The pipeline, when several deploy an environment and resource of that name.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub pipeline: Option<String>,
}

/// Every job that touched a resource, newest first (`stackpipe history ENV/RESOURCE`).
#[utoipa::path(get, path = "/api/v1/state/history/{environment}/{resource}",
    params(("environment" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"), ("resource" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"), HistoryQuery), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn history(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((environment, resource)): Path<(String, String)>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<Value>> {
    check_name("environment", &environment)?;
    check_name("resource", &resource)?;
    if let Some(p) = &q.pipeline {
        check_name("pipeline", p)?;
    }
    caller.require(Role::Viewer, q.pipeline.as_deref())?;
    let request = Request::History { environment, resource, pipeline: q.pipeline };
    let found = answer(state.runs.store(), None, request, &caller.decider()).await.map_err(ApiError::not_found)?;
    // A user limited to some pipelines sees their jobs only.
    let found = match found {
        Value::Object(mut doc) if !caller.user.pipelines.is_empty() => {
            if let Some(pipeline) = doc.get("pipeline").and_then(Value::as_str) {
                if !caller.sees(pipeline) {
                    return Err(ApiError::not_found("no such resource in the pipelines you may see"));
                }
            }
            doc.remove("other_pipelines");
            Value::Object(doc)
        }
        other => other,
    };
    Ok(Json(found))
}
