//! Services and their pipeline executions (seed 001): listing, a manual
//! trigger, the webhook, settings, and each execution's record, logs,
//! cancel and rerun. A service's rights are its pipeline's.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stackpipe_runtime::state::{ExecutionRecord, ExecutionTrigger};

use super::error::{Body, Path, Query};
use super::runs::check_name;
use super::{created, ApiError, ApiResult, AppState, AuditDetail, Caller};
use crate::services::{self, ExecutionRequest, ServiceEntry, ServiceSummary};
use crate::users::Role;
use crate::webhook::{self, Reading};

/// The most executions one list answers with.
const MOST_LISTED: usize = 500;

/// A pipeline execution as the API shows it: its record, and how each
/// environment of its deploy stage went.
#[derive(Debug, Serialize)]
pub struct ExecutionView {
    #[serde(flatten)]
    pub record: ExecutionRecord,
    /// Each environment of the deploy stage: `name`, `status`, `reason`.
    pub deployments: Vec<Value>,
    /// From the start of the build to the end (or now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

pub fn view(state: &AppState, record: ExecutionRecord) -> ExecutionView {
    let store = state.runs.store();
    // A run in progress says how each environment stands now; an ended
    // one, how each ended.
    let live = record.run.as_ref().and_then(|r| state.runs.live(r)).filter(|l| !l.over());
    let now: Vec<(String, Value, Option<String>)> = match live.and_then(|l| l.status(store).ok()) {
        Some(doc) => doc.environments.into_iter().map(|e| (e.name, json!(e.status), e.reason)).collect(),
        None => {
            let outcomes = record.run.as_ref().and_then(|r| store.run(r).ok().flatten()).map(|r| r.outcomes).unwrap_or_default();
            outcomes.into_iter().map(|o| (o.name, json!(o.status), o.reason)).collect()
        }
    };
    let deployments = record
        .environments
        .iter()
        .map(|env| match now.iter().find(|(name, _, _)| name == env) {
            Some((_, status, reason)) => json!({ "name": env, "status": status, "reason": reason }),
            None => json!({ "name": env, "status": "pending" }),
        })
        .collect();
    let duration_ms = record.started_ms.map(|s| record.ended_ms.unwrap_or_else(stackpipe_runtime::state::now_ms).saturating_sub(s));
    ExecutionView { record, deployments, duration_ms }
}

fn entry_for(state: &AppState, caller: &Caller, name: &str, needed: Role) -> ApiResult<ServiceEntry> {
    check_name("service", name)?;
    let entry = services::service(state, name)?;
    caller.require(needed, Some(&entry.pipeline.graph.name))?;
    Ok(entry)
}

fn execution_for(state: &AppState, caller: &Caller, id: &str, needed: Role) -> ApiResult<ExecutionRecord> {
    check_name("pipeline execution", id)?;
    let record =
        state.runs.store().execution(id)?.ok_or_else(|| ApiError::not_found(format!("no pipeline execution `{id}`")))?;
    caller.require(needed, Some(&record.pipeline))?;
    Ok(record)
}

/// Every service the caller may see.
#[utoipa::path(get, path = "/api/v1/services", responses((status = 200, body = [ServiceSummary]), (status = 401, body = super::ErrorBody)))]
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<Vec<ServiceSummary>>> {
    caller.require(Role::Viewer, None)?;
    let store = state.runs.store();
    let mut out = Vec::new();
    for entry in services::catalog_services(&state).into_values() {
        if caller.sees(&entry.pipeline.graph.name) {
            out.push(services::summary(store, &entry)?);
        }
    }
    Ok(Json(out))
}

/// One service, with its last pipeline execution.
#[utoipa::path(get, path = "/api/v1/services/{service}", params(("service" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn show(State(state): State<Arc<AppState>>, caller: Caller, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let entry = entry_for(&state, &caller, &name, Role::Viewer)?;
    let store = state.runs.store();
    let last = store.executions(Some(&name))?.into_iter().next().map(|r| view(&state, r));
    Ok(Json(json!({ "service": services::summary(store, &entry)?, "last": last })))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only executions whose deploy stage takes one of these environments (comma-separated).
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}(,[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127})*$")]
    pub environments: Option<String>,
    /// At most this many, most recent first (default and most: 500).
    #[param(minimum = 0, maximum = 1000000)]
    pub limit: Option<u32>,
}

/// The pipeline executions of a service, most recent first.
#[utoipa::path(get, path = "/api/v1/services/{service}/executions", params(("service" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"), ListQuery), responses(
    (status = 200, body = [Object]), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn executions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<ExecutionView>>> {
    entry_for(&state, &caller, &name, Role::Viewer)?;
    let wanted: Vec<String> = q.environments.iter().flat_map(|e| e.split(',')).map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect();
    for e in &wanted {
        check_name("environment", e)?;
    }
    let limit = q.limit.map(|l| l as usize).unwrap_or(MOST_LISTED).min(MOST_LISTED);
    let store = state.runs.store();
    let out = store
        .executions(Some(&name))?
        .into_iter()
        .filter(|r| wanted.is_empty() || r.environments.iter().any(|e| wanted.contains(e)))
        .take(limit)
        .map(|r| view(&state, r))
        .collect();
    Ok(Json(out))
}

/// A manual trigger: a branch (the default one if none) at its head, or at a commit of it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    #[schema(pattern = "^[A-Za-z0-9_./][A-Za-z0-9_./-]{0,254}$")]
    pub branch: Option<String>,
    /// A commit SHA (or a unique prefix) on the branch.
    #[schema(pattern = "^[0-9a-fA-F]{4,64}$")]
    pub commit: Option<String>,
}

fn check_ref(what: &str, value: &str) -> ApiResult<()> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && !value.starts_with('-')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("invalid {what}: use letters, digits and _ - . / (not starting with -)")))
    }
}

/// Queues a pipeline execution of the service (its Trigger button).
#[utoipa::path(post, path = "/api/v1/services/{service}/executions", params(("service" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), request_body = TriggerBody, responses(
    (status = 201, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody),
    (status = 404, body = super::ErrorBody), (status = 409, description = "The service's pipelines are disabled", body = super::ErrorBody),
    (status = 422, body = super::ErrorBody)))]
pub async fn trigger(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body<TriggerBody>,
) -> ApiResult<Response> {
    let entry = entry_for(&state, &caller, &name, Role::Operator)?;
    if let Some(b) = &body.branch {
        check_ref("branch", b)?;
    }
    if let Some(c) = &body.commit {
        if !(4..=64).contains(&c.len()) || !c.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ApiError::bad_request("invalid commit: give its SHA (4 to 64 hex digits)"));
        }
    }
    let record = services::manual(&state, &entry, body.branch, body.commit, caller.user.name.clone()).await?;
    let detail = format!("pipeline execution {} of service {name}", record.id);
    Ok(created(view(&state, record), detail))
}

/// What a settings change says.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// false: no pipeline runs at all (pushed or manual).
    pub enabled: Option<bool>,
    /// false: pipelines build and deploy nothing.
    pub deploys: Option<bool>,
}

/// Switches a service's pipelines or deployments on or off (recorded in the audit log).
#[utoipa::path(post, path = "/api/v1/services/{service}/settings", params(("service" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), request_body = SettingsBody, responses(
    (status = 200, body = ServiceSummary), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn settings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body<SettingsBody>,
) -> ApiResult<Response> {
    let entry = entry_for(&state, &caller, &name, Role::Operator)?;
    let store = state.runs.store();
    if body.enabled.is_none() && body.deploys.is_none() {
        // Nothing to change: how it is.
        return Ok(Json(services::summary(store, &entry)?).into_response());
    }
    services::set_settings(store, &entry.spec, body.enabled, body.deploys, &caller.user.name)?;
    let said = |what: &str, v: Option<bool>| v.map(|v| format!("{what} {}", if v { "on" } else { "off" }));
    let detail = [said("pipelines", body.enabled), said("deployments", body.deploys)].into_iter().flatten().collect::<Vec<_>>().join(", ");
    let mut r = Json(services::summary(store, &entry)?).into_response();
    r.extensions_mut().insert(AuditDetail(format!("service {name}: {detail}")));
    Ok(r)
}

/// A forge's webhook delivery: push, tag and pull_request events in the
/// GitHub or Gitea/Forgejo format, signed with the service's secret
/// (`X-Hub-Signature-256`). A wrong or missing signature is 401 and queues
/// nothing.
#[utoipa::path(post, path = "/api/v1/services/{service}/webhook", params(("service" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), security(()),
    request_body(content = Object, description = "The forge's event payload, as it sends it", content_type = "application/json"), responses(
    (status = 202, description = "A pipeline execution was queued", body = Object), (status = 200, description = "Nothing to do (and why)", body = Object),
    (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
    (status = 409, body = super::ErrorBody)))]
pub async fn webhook(State(state): State<Arc<AppState>>, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    check_name("service", &name)?;
    // Said the same whether the service exists or not, to one who cannot sign.
    let refused = || ApiError::new(StatusCode::UNAUTHORIZED, "the webhook's signature is missing or wrong");
    let entry = services::catalog_services(&state).remove(&name).ok_or_else(refused)?;
    let Some(binding) = &entry.spec.webhook else { return Err(refused()) };
    let secret = stackpipe_runtime::service::resolve_secret(
        state.runs.host(),
        binding,
        &entry.spec.name,
        &entry.pipeline.graph.name,
        &entry.pipeline.base_dir,
        &state.state_dir,
    )
    .await
    .map_err(|e| {
        tracing::error!("service `{name}`: cannot resolve its webhook secret: {e}");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the service's webhook secret cannot be resolved (see the server's log)")
    })?;
    if !webhook::signature_ok(&headers, &body, secret.as_bytes()) {
        return Err(refused());
    }
    let reading = webhook::read(&headers, &body).map_err(ApiError::bad_request)?;
    let delivery = match reading {
        Reading::Ping => return Ok(Json(json!({ "ok": "pong" })).into_response()),
        Reading::Ignored(why) => return Ok(Json(json!({ "ignored": why })).into_response()),
        Reading::Delivery(d) => d,
    };
    let trigger = match &delivery.event {
        stackpipe_runtime::service::RepoEvent::Branch { .. } => ExecutionTrigger::Push,
        stackpipe_runtime::service::RepoEvent::Tag { .. } => ExecutionTrigger::Tag,
        stackpipe_runtime::service::RepoEvent::PullRequest { .. } => ExecutionTrigger::PullRequest,
    };
    let by = if delivery.by.is_empty() { "webhook".to_string() } else { format!("{} (webhook)", delivery.by) };
    let meta = (delivery.message.clone(), delivery.author.clone());
    match services::on_event(&state, &entry, delivery.event, trigger, by, meta, delivery.id).await? {
        Ok(record) => {
            let detail = format!("webhook: pipeline execution {} of service {name}", record.id);
            let mut r = (StatusCode::ACCEPTED, Json(view(&state, record))).into_response();
            r.extensions_mut().insert(AuditDetail(detail));
            Ok(r)
        }
        Err(why) => Ok(Json(json!({ "ignored": why })).into_response()),
    }
}

/// One pipeline execution.
#[utoipa::path(get, path = "/api/v1/executions/{id}", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn execution(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<ExecutionView>> {
    let record = execution_for(&state, &caller, &id, Role::Viewer)?;
    Ok(Json(view(&state, record)))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Skip this many build lines (what a follower has).
    #[param(minimum = 0, maximum = 4000000000_u64)]
    pub build_after: Option<u32>,
    /// Skip this many deploy lines.
    #[param(minimum = 0, maximum = 4000000000_u64)]
    pub deploy_after: Option<u32>,
}

/// The build's output and the deploy run's log lines, each from where a follower is.
#[utoipa::path(get, path = "/api/v1/executions/{id}/logs", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"), LogsQuery), responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn logs(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Json<Value>> {
    let record = execution_for(&state, &caller, &id, Role::Viewer)?;
    let store = state.runs.store().clone();
    let (b, d) = (q.build_after.unwrap_or(0) as usize, q.deploy_after.unwrap_or(0) as usize);
    let run = record.run.clone();
    let doc = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let build = store.logs(&record.id, None)?;
        let deploy = match &run {
            Some(r) => store.logs(r, None)?,
            None => Vec::new(),
        };
        Ok(json!({
            "status": record.status,
            "build": build.iter().skip(b).collect::<Vec<_>>(),
            "build_lines": build.len(),
            "deploy": deploy.iter().skip(d).collect::<Vec<_>>(),
            "deploy_lines": deploy.len(),
            "run": run,
        }))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(doc))
}

/// Cancels a pipeline execution; asynchronous (202).
#[utoipa::path(post, path = "/api/v1/executions/{id}/cancel", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
    (status = 202, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
    (status = 409, body = super::ErrorBody)))]
pub async fn cancel(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let record = execution_for(&state, &caller, &id, Role::Operator)?;
    let record = services::cancel(&state, &record, &caller.user.name)?;
    let mut r = (StatusCode::ACCEPTED, Json(view(&state, record))).into_response();
    r.extensions_mut().insert(AuditDetail(format!("cancel pipeline execution {id}")));
    Ok(r)
}

/// Runs a pipeline execution's commit again, as a new execution.
#[utoipa::path(post, path = "/api/v1/executions/{id}/rerun", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
    (status = 201, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
    (status = 409, body = super::ErrorBody)))]
pub async fn rerun(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let old = execution_for(&state, &caller, &id, Role::Operator)?;
    let entry = entry_for(&state, &caller, &old.service, Role::Operator)?;
    let request = ExecutionRequest {
        trigger: ExecutionTrigger::Rerun,
        started_by: caller.user.name.clone(),
        commit: old.commit.clone(),
        preview: old.kind == "preview",
        deploy: !(old.kind == "preview" && old.environments.is_empty()),
        rerun_of: Some(old.id.clone()),
        delivery: None,
    };
    let record = services::enqueue(&state, &entry, request)?;
    let detail = format!("pipeline execution {} (a rerun of {id})", record.id);
    Ok(created(view(&state, record), detail))
}
