//! Deciding a run's gates: approve and reject, for an environment or a node.

use std::sync::Arc;

use axum::extract::State;
use super::error::Path;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use stackpipe_runtime::control::Request;
use stackpipe_runtime::run::gate::GateError;
use stackpipe_runtime::run::GateSelector;
use stackpipe_runtime::state::Decision;

use super::runs::run_pipeline;
use super::error::Body;
use super::{ApiError, ApiResult, AppState, Caller};
use crate::users::Role;

/// Which gate, and why.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    /// The environment whose gate (or whose node's gate) is decided.
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub environment: Option<String>,
    /// The node whose gate is decided (`gate = "after"`, or a policy's).
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub node: Option<String>,
    /// Every gate that matches, not just one.
    #[serde(default)]
    pub all: bool,
    #[schema(max_length = 4096)]
    pub comment: Option<String>,
}

/// Approves a waiting gate of run `id`.
#[utoipa::path(post, path = "/api/v1/runs/{id}/approve", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), request_body = DecideBody, responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn approve(state: State<Arc<AppState>>, caller: Caller, id: Path<String>, body: Body<DecideBody>) -> ApiResult<Json<Value>> {
    decide(state, caller, id, body, Decision::Approved).await
}

/// Rejects a waiting gate of run `id`: what it guards is skipped.
#[utoipa::path(post, path = "/api/v1/runs/{id}/reject", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), request_body = DecideBody, responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn reject(state: State<Arc<AppState>>, caller: Caller, id: Path<String>, body: Body<DecideBody>) -> ApiResult<Json<Value>> {
    decide(state, caller, id, body, Decision::Rejected).await
}

async fn decide(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<DecideBody>,
    decision: Decision,
) -> ApiResult<Json<Value>> {
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Operator, Some(&pipeline))?;
    for (what, name) in [("environment", &body.environment), ("node", &body.node)] {
        if let Some(n) = name {
            super::runs::check_name(what, n)?;
        }
    }
    if body.comment.as_ref().is_some_and(|c| c.len() > 4096) {
        return Err(ApiError::bad_request("the comment is longer than 4096 bytes"));
    }
    let selector = GateSelector { environment: body.environment, node: body.node, all: body.all };
    let Some(live) = state.runs.started(&id).await.filter(|l| !l.over()) else {
        // Another server's run, on the shared database: its owner decides.
        let request = Request::Decide { run: Some(id.clone()), selector, decision, comment: body.comment };
        return match state.runs.ask_owner(&id, &request, &caller.decider()).await {
            Some(Ok(Ok(decided))) => Ok(Json(decided)),
            Some(Ok(Err(e))) if e.contains(" cannot decide this: ") || e.contains("forbids approving your own run") => {
                Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, e))
            }
            Some(Ok(Err(e))) => Err(ApiError::conflict(e)),
            Some(Err(e)) => Err(ApiError::internal(e)),
            None => Err(ApiError::conflict(format!("run {id} is not in progress: it has no gate waiting"))),
        };
    };
    match live.decide(&selector, decision, &caller.decider(), body.comment).await {
        Ok(decided) => Ok(Json(serde_json::to_value(decided).map_err(|e| ApiError::internal(e.to_string()))?)),
        // The environment's `approvers` or `self_approval` refuse this user.
        Err(e @ (GateError::NotAnApprover { .. } | GateError::OwnRun { .. })) => {
            Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, e.to_string()))
        }
        Err(e @ GateError::Journal(_)) => Err(ApiError::internal(e.to_string())),
        Err(e) => Err(ApiError::conflict(e.to_string())),
    }
}
