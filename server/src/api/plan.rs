//! Plans: what a deploy (or an undeploy) of a pipeline would change, as
//! `stackpipe plan` shows it, asked of the server (the console's Run
//! button). A plan refreshes and previews every node and writes nothing,
//! so it is not a run: it locks nothing, is not recorded, and its answer is
//! the plan itself (the audit log keeps who asked for it).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use stackpipe_runtime::run::plan_text::{plan_document, render_plan};
use stackpipe_runtime::run::{execute, Events, Mode, RunEvent, RunOptions, Selection, StopSignal};
use stackpipe_runtime::state::{LogLevel, RunStatus, Status};

use super::error::{Body, Path};
use super::runs::check_name;
use super::{ApiError, ApiResult, AppState, AuditDetail, Caller};
use crate::users::Role;

/// What to plan.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
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
    /// What an undeploy would destroy, instead of what a deploy would change.
    #[serde(default)]
    pub undeploy: bool,
    /// Why (kept in the audit log).
    #[schema(max_length = 4096)]
    pub message: Option<String>,
}

/// Plans a deploy (or, with `undeploy`, an undeploy) of pipeline `name`:
/// `changes` (as `stackpipe plan --json`), `text` (as `stackpipe plan`
/// prints it), each environment's status and the nodes that could not be
/// planned (`failures`). Secret values are masked.
#[utoipa::path(post, path = "/api/v1/pipelines/{name}/plan", params(("name" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")),
    request_body = PlanBody, responses(
    (status = 200, body = Object), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
    (status = 422, description = "The pipeline or its values do not compile", body = super::ErrorBody)))]
pub async fn plan(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body<PlanBody>,
) -> ApiResult<axum::response::Response> {
    let entry = super::pipelines::entry(&state, &caller, &name)?;
    // A plan reads the cloud with the pipeline's credentials: as much as
    // starting a run asks.
    caller.require(Role::Operator, Some(&entry.name))?;
    if let Some(e) = &body.environment {
        check_name("environment", e)?;
    }
    if body.message.as_ref().is_some_and(|m| m.len() > 4096) {
        return Err(ApiError::bad_request("the message is longer than 4096 bytes"));
    }
    let source = std::fs::read_to_string(&entry.file).map_err(|e| ApiError::not_found(format!("{}: {e}", entry.file.display())))?;
    let vars: Vec<(String, String)> = body.vars.into_iter().collect();
    let pipeline = super::runs::compile(&state, &entry.file, source, vars.clone(), body.environment.clone())?;
    let sets: Vec<(String, String)> = body.set.into_iter().collect();
    super::runs::check_types(&state, &pipeline, &sets).await?;
    let mode = if body.undeploy { Mode::PlanUndeploy } else { Mode::Plan };
    let opts = RunOptions {
        sets,
        vars,
        message: body.message.clone(),
        selection: Selection { targets: body.target, orphans: false },
        started_by: Some(caller.user.name.clone()),
        ..RunOptions::default()
    };
    // What could not be planned, and what plugins warned of meanwhile.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let notes = tokio::spawn(async move {
        let (mut failures, mut warnings) = (Vec::new(), Vec::new());
        while let Some(e) = rx.recv().await {
            match e {
                RunEvent::NodeFinished { environment, node, status: Status::Failed, error, .. } => {
                    failures.push(json!({ "environment": environment, "resource": node, "error": error }));
                }
                RunEvent::Log { environment, node, text, level, plugin, .. } if level >= LogLevel::Warn => {
                    warnings.push(json!({ "environment": environment, "resource": node, "plugin": plugin, "text": text }));
                }
                _ => {}
            }
        }
        (failures, warnings)
    });
    let store = state.runs.store().clone();
    let summary = execute(&pipeline, mode, state.runs.host().clone(), store, &opts, Events::new(tx), StopSignal::new())
        .await
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let (failures, warnings) = notes.await.unwrap_or_default();
    let unfinished = match failures.len() {
        0 if summary.status == RunStatus::Succeeded => None,
        0 => Some("the plan was stopped before every resource was planned".to_string()),
        n => Some(format!("{n} resource(s) could not be planned (see the failures)")),
    };
    let environments: Vec<Value> =
        summary.environments.iter().map(|(env, status)| json!({ "name": env, "status": status.name() })).collect();
    let doc = json!({
        "pipeline": entry.name,
        "operation": if body.undeploy { "plan-undeploy" } else { "plan" },
        "planned_by": caller.user.name,
        "message": body.message,
        "status": summary.status.name(),
        "environments": environments,
        "changes": plan_document(&summary.planned),
        "failures": failures,
        "warnings": warnings,
        "text": render_plan(&summary.planned, unfinished.as_deref()),
    });
    let mut r = axum::response::IntoResponse::into_response(Json(doc));
    let what = if body.undeploy { "an undeploy" } else { "a deploy" };
    r.extensions_mut().insert(AuditDetail(format!("plan of {what} of {}: {}", entry.name, summary.status.name())));
    Ok(r)
}
