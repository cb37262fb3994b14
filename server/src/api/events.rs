//! Server-Sent Events: a run's events (ids 1, 2, ... in the run; a run
//! resumed by a server started again goes on above them), and every
//! run's events (ids increasing over the server's life). A client that
//! reconnects with `Last-Event-ID` gets what it missed, then what comes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use super::error::{Path, Query};
use axum::http::HeaderMap;
use futures::stream::{self, Stream, StreamExt};

use super::runs::run_pipeline;
use super::{ApiError, ApiResult, AppState, Caller};
use crate::users::Role;

/// `Last-Event-ID`, if the client sent one that is a number.
fn last_event_id(headers: &HeaderMap) -> ApiResult<u64> {
    match headers.get("last-event-id") {
        None => Ok(0),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be the id of an event (a number)")),
    }
}

/// How often an idle stream says it is alive (a comment line), so that
/// proxies and clients do not take it for dead.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A `text/event-stream` answer of `chunks` (each holds whole events).
fn event_stream(chunks: impl Stream<Item = Bytes> + Send + 'static) -> Response {
    let body = axum::body::Body::from_stream(chunks.map(Ok::<_, Infallible>));
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

const ALIVE: &[u8] = b": keep-alive\n\n";

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunEventsQuery {
    /// Start after this event (the `X-Stackpipe-Event-Id` of the status
    /// document read first); `Last-Event-ID`, when later, wins.
    #[param(minimum = 0)]
    pub after: Option<u64>,
}

/// Run `id`'s events from its start (or after `?after=` or
/// `Last-Event-ID`) until it ends. A run not in progress here, ended long
/// ago, streams nothing and ends at once.
#[utoipa::path(get, path = "/api/v1/runs/{id}/events", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"), RunEventsQuery), responses(
    (status = 200, description = "text/event-stream of the run's events", content_type = "text/event-stream"),
    (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn run_events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<RunEventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Viewer, Some(&pipeline))?;
    let after = last_event_id(&headers)?.max(q.after.unwrap_or(0));
    let runs = state.runs.clone();
    // Each wake-up sends every event that came since, in one chunk, each
    // event formatted once for all followers (see `RunFeed`).
    let chunks = stream::unfold((runs, id, after, None::<tokio::sync::watch::Receiver<bool>>, false), |(runs, id, sent, mut rx, done)| async move {
        if done {
            return None;
        }
        loop {
            let Some((live, feed)) = runs.feed(&id) else {
                // A queued or starting run's events come when it starts.
                if runs.queued(&id).is_some() || runs.is_active(&id) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                return None;
            };
            let rx = rx.get_or_insert_with(|| live.subscribe());
            rx.borrow_and_update();
            // Read before the frames: once the run is over, they are all there.
            let over = live.over();
            let (chunk, last) = feed.after(sent);
            if !chunk.is_empty() {
                let next = (runs, id, last, Some(rx.clone()), over);
                return Some((chunk, next));
            }
            if over {
                return None;
            }
            match tokio::time::timeout(KEEP_ALIVE, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return None,
                Err(_) => {
                    let next = (runs, id, sent, Some(rx.clone()), false);
                    return Some((Bytes::from_static(ALIVE), next));
                }
            }
        }
    });
    Ok(event_stream(chunks))
}

/// Every event of every run the caller may see, as they happen (after
/// `Last-Event-ID`: from the one after it, of those the server keeps).
/// Each event's data is `{"run": ID, "event": {...}}`.
#[utoipa::path(get, path = "/api/v1/events", responses(
    (status = 200, description = "text/event-stream of every run's events", content_type = "text/event-stream"),
    (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody)))]
pub async fn server_events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.require(Role::Viewer, None)?;
    let after = last_event_id(&headers)?;
    let events = state.runs.events.clone();
    let rx = events.subscribe();
    let runs = state.runs.clone();
    // Which runs the caller may see, found once each (a role limited to
    // some pipelines sees theirs only).
    let seen: std::collections::HashMap<Arc<str>, bool> = Default::default();
    let chunks = stream::unfold((events, rx, after, caller, runs, seen), |(events, mut rx, mut after, caller, runs, mut seen)| async move {
        loop {
            rx.borrow_and_update();
            let batch = events.after(after);
            if let Some(last) = batch.last() {
                let next = last.id;
                let mut chunk = Vec::new();
                for e in &batch {
                    let visible = *seen.entry(e.run.clone()).or_insert_with(|| {
                        caller.user.pipelines.is_empty()
                            || runs.pipeline_of(&e.run).or_else(|| runs.store().run(&e.run).ok().flatten().map(|r| r.pipeline))
                                .is_some_and(|p| caller.sees(&p))
                    });
                    if visible {
                        chunk.extend_from_slice(&e.frame);
                    }
                }
                if chunk.is_empty() {
                    after = next;
                    continue;
                }
                return Some((Bytes::from(chunk), (events, rx, next, caller, runs, seen)));
            }
            match tokio::time::timeout(KEEP_ALIVE, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return None,
                Err(_) => return Some((Bytes::from_static(ALIVE), (events, rx, after, caller, runs, seen))),
            }
        }
    });
    Ok(event_stream(chunks))
}
