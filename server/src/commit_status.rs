//! Commit statuses (seed 001, "GitHub integration"): when a service names
//! a `commit_status { api token }`, each pipeline execution posts its state
//! for its commit in the shape of GitHub's commit-status API:
//! `POST {api}/statuses/{sha}` with `state` (`pending`, `success`,
//! `failure`, `error`), `description`, `context` and `target_url` (the
//! execution in the console). Posting is best effort, off the execution's
//! path: a forge that is down is logged, and the pipeline goes on.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stackpipe_runtime::state::{ExecutionRecord, ExecutionStatus, StageStatus};

use crate::api::AppState;

/// How long a forge gets to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The commit-status `state` and `description` of an execution now.
pub fn status_of(record: &ExecutionRecord) -> (&'static str, String) {
    match record.status {
        ExecutionStatus::Queued => ("pending", "queued".into()),
        ExecutionStatus::Running if record.build.status == StageStatus::Running => ("pending", "building".into()),
        ExecutionStatus::Running => ("pending", "deploying".into()),
        ExecutionStatus::Succeeded if record.deploy.status == StageStatus::Skipped => ("success", "built".into()),
        ExecutionStatus::Succeeded => ("success", format!("built and deployed to {}", record.environments.join(", "))),
        ExecutionStatus::Failed if record.build.status == StageStatus::Failed => ("failure", "the build failed".into()),
        ExecutionStatus::Failed => ("failure", "the deploy failed".into()),
        ExecutionStatus::Cancelled => ("error", "cancelled".into()),
        ExecutionStatus::Interrupted => ("error", "interrupted: the server stopped".into()),
    }
}

type Outbox = tokio::sync::mpsc::UnboundedSender<(Arc<AppState>, ExecutionRecord)>;

/// Statuses go out one at a time, in the order they were made: a
/// `success` is never overtaken by the `pending` before it.
static OUTBOX: std::sync::OnceLock<Outbox> = std::sync::OnceLock::new();

/// Posts the status of `record`'s commit, if its service says where.
pub fn post(state: &Arc<AppState>, record: &ExecutionRecord) {
    let outbox = OUTBOX.get_or_init(|| {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Arc<AppState>, ExecutionRecord)>();
        tokio::spawn(async move {
            while let Some((state, record)) = rx.recv().await {
                send(state, record).await;
            }
        });
        tx
    });
    let _ = outbox.send((state.clone(), record.clone()));
}

async fn send(state: Arc<AppState>, record: ExecutionRecord) {
    let Some(entry) = crate::services::catalog_services(&state).remove(&record.service) else { return };
    let Some(target) = entry.spec.commit_status.clone() else { return };
    {
        let token = stackpipe_runtime::service::resolve_secret(
            state.runs.host(),
            &target.token,
            &entry.spec.name,
            &entry.pipeline.graph.name,
            &entry.pipeline.base_dir,
            &state.state_dir,
        )
        .await;
        let token = match token {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("service `{}`: no token for commit statuses: {e}", record.service);
                return;
            }
        };
        let (status, description) = status_of(&record);
        let body = json!({
            "state": status,
            "description": description,
            "context": target.context,
            "target_url": format!("{}/#/services/{}/pipelines/{}", state.public_url, record.service, record.id),
        });
        let url = format!("{}/statuses/{}", target.api.trim_end_matches('/'), record.commit.sha);
        let sent = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(TIMEOUT))
                .http_status_as_error(false)
                .build()
                .into();
            agent
                .post(&url)
                .header("Authorization", &format!("token {token}"))
                .header("Accept", "application/vnd.github+json")
                .header("User-Agent", concat!("stackpipe/", env!("CARGO_PKG_VERSION")))
                .header("Content-Type", "application/json")
                .send(body.to_string())
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        })
        .await;
        match sent {
            Ok(Ok(code)) if (200..300).contains(&code) => {
                tracing::debug!("execution {}: commit status {status} posted", record.id)
            }
            Ok(Ok(code)) => tracing::warn!("execution {}: the forge answered {code} to its commit status", record.id),
            Ok(Err(e)) => tracing::warn!("execution {}: cannot post its commit status: {e}", record.id),
            Err(e) => tracing::warn!("execution {}: {e}", record.id),
        }
    }
}
