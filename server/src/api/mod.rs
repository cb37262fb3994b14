//! The HTTP API, `/api/v1`: the control protocol of a run (the same
//! requests the control socket answers, see `stackpipe_runtime::control`)
//! plus what a server adds: its pipelines, starting runs, a queue, users'
//! roles, and events as Server-Sent Events. The OpenAPI document
//! (`/api/v1/openapi.json`) is made from the handlers' annotations.
//!
//! | file        | what it serves                                   |
//! |-------------|--------------------------------------------------|
//! | `auth`      | [`Caller`]: the bearer token or session, roles, 401 and 403 |
//! | `session`   | browser sessions: login, cookie, CSRF, logout      |
//! | `pipelines` | the `--pipelines` directory: list, show, graph    |
//! | `plan`      | plans of a pipeline (nothing applied or recorded)  |
//! | `runs`      | runs: list, start, status, cancel, rerun, resume, delete |
//! | `run_graph` | a run's graph as the console draws it, and who may do what |
//! | `gates`     | approve and reject                                |
//! | `jobs`      | a run's jobs, logs and snapshot                   |
//! | `state`     | resources (and forgetting one), locks, unlock, history |
//! | `events`    | Server-Sent Events of a run and of the server     |
//! | `error`     | [`ApiError`]: `{"error": "..."}` with a status    |

pub mod auth;
pub mod error;
pub mod events;
pub mod gates;
pub mod jobs;
pub mod pipelines;
pub mod plan;
pub mod run_graph;
pub mod runs;
pub mod session;
pub mod services;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::OpenApi;

pub use auth::Caller;
pub use error::{ApiError, ApiResult};

use crate::audit::{AuditEntry, AuditLog};
use crate::catalog::Catalog;
use crate::runs::Runs;
use crate::users::UsersCache;

/// The largest request body: a run's request with its pipeline's source
/// and plugin components inline.
pub const MAX_BODY_BYTES: usize = 32 << 20;
/// How long a request (other than an event stream) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What every handler shares.
pub struct AppState {
    pub state_dir: PathBuf,
    pub users: UsersCache,
    pub catalog: Catalog,
    pub runs: Arc<Runs>,
    pub audit: AuditLog,
    /// Whether a run may bring its own pipeline source and plugins
    /// (`deploy FILE --server`); `serve --no-uploads` says no.
    pub uploads: bool,
    /// Browser sessions (the console's).
    pub sessions: session::Sessions,
    /// Whether the server speaks TLS (session cookies are then `Secure`).
    pub tls: bool,
    /// The console's drawings of run graphs, by snapshot.
    pub layouts: crate::layout::LayoutCache,
    /// The services' queues of pipeline executions.
    pub services: Arc<crate::services::Services>,
    /// How the server is reached (`http://127.0.0.1:8080`): links to the
    /// console in commit statuses.
    pub public_url: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "stackpipe server API", description = "Runs, gates, jobs, state and events of a stackpipe team server."),
    paths(
        health,
        session::login, session::current, session::logout,
        pipelines::list, pipelines::show, pipelines::graph, pipelines::outputs, plan::plan,
        runs::list, runs::create, runs::show, run_graph::graph, runs::delete, runs::cancel, runs::rerun, runs::resume, runs::queue,
        gates::approve, gates::reject,
        jobs::jobs, jobs::job, jobs::logs, jobs::snapshot,
        state::resources, state::forget, state::locks, state::unlock, state::history,
        events::run_events, events::server_events,
        services::list, services::show, services::executions, services::trigger, services::settings, services::webhook,
        services::execution, services::logs, services::cancel, services::rerun,
    ),
    components(schemas(
        crate::catalog::PipelineSummary, crate::runs::QueuedRun, crate::runs::StatusView, runs::CreateRun, plan::PlanBody, runs::Created, runs::CancelBody,
        session::Login, session::SessionInfo, services::TriggerBody, services::SettingsBody, crate::services::ServiceSummary, runs::Operation, runs::StatusFilter, runs::SourceUploadSchema, gates::DecideBody, state::UnlockBody, ErrorBody,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// `{"error": "..."}`: every answer that is not a success.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

/// The API's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let timed = Router::new()
        .route("/healthz", get(health))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/session", get(session::current).post(session::login).delete(session::logout))
        .route("/api/v1/pipelines", get(pipelines::list))
        .route("/api/v1/pipelines/{name}", get(pipelines::show))
        .route("/api/v1/pipelines/{name}/graph", get(pipelines::graph))
        .route("/api/v1/pipelines/{name}/outputs", get(pipelines::outputs))
        .route("/api/v1/pipelines/{name}/plan", post(plan::plan))
        .route("/api/v1/runs", get(runs::list).post(runs::create))
        .route("/api/v1/queue", get(runs::queue))
        .route("/api/v1/runs/{id}", get(runs::show).delete(runs::delete))
        .route("/api/v1/runs/{id}/graph", get(run_graph::graph))
        .route("/api/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/api/v1/runs/{id}/rerun", post(runs::rerun))
        .route("/api/v1/runs/{id}/resume", post(runs::resume))
        .route("/api/v1/runs/{id}/approve", post(gates::approve))
        .route("/api/v1/runs/{id}/reject", post(gates::reject))
        .route("/api/v1/runs/{id}/jobs", get(jobs::jobs))
        .route("/api/v1/runs/{id}/jobs/{environment}/{node}", get(jobs::job))
        .route("/api/v1/runs/{id}/logs", get(jobs::logs))
        .route("/api/v1/runs/{id}/snapshot", get(jobs::snapshot))
        .route("/api/v1/state/resources", get(state::resources))
        .route("/api/v1/state/resources/{pipeline}/{environment}/{resource}", axum::routing::delete(state::forget))
        .route("/api/v1/state/locks", get(state::locks))
        .route("/api/v1/state/unlock", post(state::unlock))
        .route("/api/v1/state/history/{environment}/{resource}", get(state::history))
        .route("/api/v1/services", get(services::list))
        .route("/api/v1/services/{service}", get(services::show))
        .route("/api/v1/services/{service}/executions", get(services::executions).post(services::trigger))
        .route("/api/v1/services/{service}/settings", post(services::settings))
        .route("/api/v1/services/{service}/webhook", post(services::webhook))
        .route("/api/v1/executions/{id}", get(services::execution))
        .route("/api/v1/executions/{id}/logs", get(services::logs))
        .route("/api/v1/executions/{id}/cancel", post(services::cancel))
        .route("/api/v1/executions/{id}/rerun", post(services::rerun))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT));
    // Event streams last as long as their runs: no request timeout.
    let streams = Router::new()
        .route("/api/v1/runs/{id}/events", get(events::run_events))
        .route("/api/v1/events", get(events::server_events));
    timed
        .merge(streams)
        .merge(crate::console::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), audit))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A body said to be larger is refused before a byte of it is read.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint (the API is under /api/v1; /api/v1/openapi.json describes it)")
}

/// Whether the server is up.
#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, description = "The server is up", body = Object)))]
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// What a handler that started something notes for the audit log.
#[derive(Clone)]
pub struct AuditDetail(pub String);

/// Writes every mutating request to the audit log after it is answered:
/// who (as authenticated, or nobody), what, from where, and the status.
async fn audit(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !mutating {
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "unknown".into());
    // The caller's name is known once the handler has extracted it; the
    // handler's extensions are not the response's, so it is passed back
    // through a shared slot.
    let slot = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut request = request;
    request.extensions_mut().insert(AuditSlot(slot.clone()));
    let response = next.run(request).await;
    let user = slot.lock().ok().and_then(|s| s.clone());
    let detail = response.extensions().get::<AuditDetail>().map(|d| d.0.clone());
    let entry = AuditEntry {
        ms: stackpipe_runtime::state::now_ms(),
        user,
        address,
        method: method.to_string(),
        path,
        status: response.status().as_u16(),
        detail,
    };
    if let Err(e) = state.audit.append(&entry) {
        tracing::error!("{e}");
    }
    response
}

/// Where the [`Caller`] extractor leaves the user's name for [`audit`].
#[derive(Clone)]
pub struct AuditSlot(pub Arc<std::sync::Mutex<Option<String>>>);

/// `value` as JSON with status 201 Created and, for the audit log, `detail`.
pub fn created(value: impl serde::Serialize, detail: String) -> Response {
    let mut r = (StatusCode::CREATED, Json(value)).into_response();
    r.extensions_mut().insert(AuditDetail(detail));
    r
}
