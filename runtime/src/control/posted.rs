//! Requests for a run on a shared database that its owner's control
//! socket cannot be reached for (the asker is on another machine, or is
//! another team server): the asker posts them to the database, and the
//! owner answers them here, exactly as its socket answers (a decision is
//! held to the environment's rules of who decides).
//!
//! Only steering is posted: a decision at a gate, a cancel. What a
//! reader wants (status, logs) it reads from the database itself.
//!
//! Who asks is who the asking process says (its OS user, or the user a
//! team server authenticated, with their role): whoever can write to the
//! database can write the state itself, so the database is the boundary
//! that decides who may steer, as the socket's directory is on one machine.

use std::sync::Arc;
use std::time::Duration;

use stackpipe_state_postgres::{JobQueue, QueueError};

use super::live::{answer, LiveRun};
use super::protocol::{Request, Response};
use crate::run::{Decider, DeciderRole};
use crate::state::StateStore;

/// How often the owner looks for requests.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// How long an asker waits for an answer once the run has ended.
const AFTER_THE_END: Duration = Duration::from_secs(3);

/// How long an asker waits for the owner's answer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// Answers the requests posted for `live`'s run until the run is over
/// ([`LiveRun::close`]): a request taken is answered, even when its answer
/// ends the run.
pub async fn answer_posted(store: Arc<StateStore>, queue: JobQueue, live: Arc<LiveRun>) {
    loop {
        let over = live.over();
        match queue.open_requests(&live.run_id).await {
            Ok(requests) => {
                for posted in requests {
                    let response = match serde_json::from_str::<Request>(&posted.request) {
                        Ok(request @ (Request::Decide { .. } | Request::Cancel { .. })) => {
                            // No role is the state's owner; a role not known is nobody's.
                            let role = posted.role.as_deref().map(|r| DeciderRole::named(r).ok_or(r));
                            match role.transpose() {
                                Ok(role) => {
                                    let decider = Decider { user: posted.decider.clone(), role };
                                    match answer(&store, Some(&live), request, &decider).await {
                                        Ok(v) => Response::Ok(v),
                                        Err(e) => Response::Error(e),
                                    }
                                }
                                Err(r) => Response::Error(format!("`{r}` is not a role")),
                            }
                        }
                        Ok(_) => Response::Error("only a decision or a cancel is posted to a run's owner".into()),
                        Err(e) => Response::Error(format!("not a request: {e}")),
                    };
                    let text = serde_json::to_string(&response).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                    if let Err(e) = queue.answer_request(posted.id, &text).await {
                        tracing::warn!("cannot answer a request for run {}: {e}", live.run_id);
                    }
                }
            }
            Err(e) => tracing::warn!("cannot read the requests for run {}: {e}", live.run_id),
        }
        if over {
            return;
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// Posts `request` for run `run_id`'s owner as `decider`, and waits for
/// its answer (at most [`ANSWER_WITHIN`]).
pub async fn post_and_wait(
    queue: &JobQueue,
    store: &StateStore,
    run_id: &str,
    request: &Request,
    decider: &Decider,
) -> Result<Result<serde_json::Value, String>, QueueError> {
    let text = serde_json::to_string(request).map_err(|e| QueueError::Build(e.to_string()))?;
    let role = decider.role.map(|r| r.name());
    let id = queue.post_request(run_id, &text, &decider.user, role).await?;
    let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
    let mut ended_at = None;
    loop {
        if let Some(answer) = queue.take_request_answer(id).await? {
            return Ok(match serde_json::from_str::<Response>(&answer) {
                Ok(Response::Ok(v)) => Ok(v),
                Ok(Response::Error(e)) => Err(e),
                Err(e) => Err(format!("the owner's answer is not one: {e}")),
            });
        }
        let ended = match store.run(run_id) {
            Ok(Some(r)) => r.status != crate::state::RunStatus::Running,
            _ => false,
        };
        // The owner answers what it took before it lets go of the run,
        // and the run may end on this very answer: a moment for it.
        if ended && ended_at.get_or_insert_with(tokio::time::Instant::now).elapsed() > AFTER_THE_END {
            queue.withdraw_request(id).await?;
            return Ok(Err(format!("run {run_id} ended before its owner answered")));
        }
        if tokio::time::Instant::now() >= deadline {
            queue.withdraw_request(id).await?;
            return Ok(Err(format!("run {run_id}'s owner did not answer within {} s", ANSWER_WITHIN.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
