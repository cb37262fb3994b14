//! Server-Sent Events: a run's events (ids 1, 2, ... in the run), and every
//! run's events (ids increasing over the server's life). A client that
//! reconnects with `Last-Event-ID` gets what it missed, then what comes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use super::error::Path;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream};

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

/// The `event:` name of a run event's JSON line: its `event` field.
fn kind(line: &str) -> String {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| "message".into())
}

/// Run `id`'s events from its start (or after `Last-Event-ID`) until it
/// ends. A run not in progress here, ended long ago, streams nothing and
/// ends at once.
#[utoipa::path(get, path = "/api/v1/runs/{id}/events", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")), responses(
    (status = 200, description = "text/event-stream of the run's events", content_type = "text/event-stream"),
    (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn run_events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let pipeline = run_pipeline(&state, &id)?;
    caller.require(Role::Viewer, Some(&pipeline))?;
    let after = last_event_id(&headers)? as usize;
    // A queued run's events start when it does: wait for it.
    let runs = state.runs.clone();
    let stream = stream::unfold((runs, id, after, None, false), |(runs, id, sent, mut rx, done)| async move {
        if done {
            return None;
        }
        loop {
            let live = match runs.live(&id) {
                Some(l) => l,
                None if runs.queued(&id).is_some() || runs.is_active(&id) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                None => return None,
            };
            let rx = rx.get_or_insert_with(|| live.subscribe());
            rx.borrow_and_update();
            let (lines, over) = live.events_from(sent);
            if !lines.is_empty() {
                let first = sent + 1;
                let events: Vec<Result<Event, Infallible>> = lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| Ok(Event::default().id((first + i).to_string()).event(kind(l)).data(&**l)))
                    .collect();
                let sent = sent + lines.len();
                let rx = rx.clone();
                return Some((stream::iter(events), (runs, id, sent, Some(rx), over)));
            }
            if over {
                return None;
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    });
    use futures::StreamExt;
    Ok(Sse::new(stream.flatten()).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
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
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(Role::Viewer, None)?;
    let after = last_event_id(&headers)?;
    let events = state.runs.events.clone();
    let rx = events.subscribe();
    // Which pipeline each run is of, for a caller limited to some.
    let runs = state.runs.clone();
    let seen: std::collections::HashMap<String, bool> = Default::default();
    let stream = stream::unfold((events, rx, after, caller, runs, seen), |(events, mut rx, after, caller, runs, mut seen)| async move {
        loop {
            rx.borrow_and_update();
            let batch = events.after(after);
            if let Some(last) = batch.last() {
                let next = last.id;
                let mut out = Vec::new();
                for e in batch {
                    let visible = *seen.entry(e.run.to_string()).or_insert_with(|| {
                        caller.user.pipelines.is_empty()
                            || runs.store().run(&e.run).ok().flatten().is_some_and(|r| caller.sees(&r.pipeline))
                    });
                    if visible {
                        let data = format!("{{\"run\":{},\"event\":{}}}", serde_json::Value::from(e.run.to_string()), e.line);
                        out.push(Ok(Event::default().id(e.id.to_string()).event(kind(&e.line)).data(data)));
                    }
                }
                return Some((stream::iter(out), (events, rx, next, caller, runs, seen)));
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    });
    use futures::StreamExt;
    Ok(Sse::new(stream.flatten()).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
