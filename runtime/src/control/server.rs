//! The runner's side of the control socket.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::board::RunBoard;
use super::protocol::{Cancelled, Request, Response};
use super::socket::{euid, Bound, ControlSocket};
use crate::run::history::history;
use crate::run::status::StatusDocument;
use crate::run::{CancelTarget, Cancels, Gates, RunEvent, RunJournal, StopSignal};
use crate::state::{JobDiff, StateStore};

/// What of a run its control socket steers: its gates, its cancels and
/// its stop (see [`crate::run::Run`]).
pub struct RunHandles {
    pub run_id: String,
    pub journal: RunJournal,
    pub gates: Arc<Gates>,
    pub cancels: Arc<Cancels>,
    pub stop: StopSignal,
}

struct Shared {
    store: Arc<StateStore>,
    run_id: String,
    journal: RunJournal,
    gates: Arc<Gates>,
    cancels: Arc<Cancels>,
    stop: StopSignal,
    board: Mutex<RunBoard>,
    /// Every event of the run so far, as JSON lines, for followers.
    history: Mutex<Vec<Arc<str>>>,
    /// Sent on every line appended to `history`: whether the run has ended.
    appended: watch::Sender<bool>,
    /// The user this run runs as: the one (with root) who may steer it.
    owner: u32,
}

/// A run's control socket, served until [`ControlServer::finish`].
pub struct ControlServer {
    bound: Bound,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    pump: JoinHandle<()>,
}

impl ControlServer {
    /// Serves `socket` (bound by [`ControlSocket::bind`] before the run is
    /// recorded, so that a socket that cannot be bound leaves nothing
    /// behind); `events` are the run's events.
    pub fn start(
        socket: ControlSocket,
        store: Arc<StateStore>,
        run: RunHandles,
        mut events: mpsc::UnboundedReceiver<RunEvent>,
    ) -> ControlServer {
        let ControlSocket { listener, bound } = socket;
        let RunHandles { run_id, journal, gates, cancels, stop } = run;
        let shared = Arc::new(Shared {
            store,
            run_id,
            journal,
            gates,
            cancels,
            stop,
            board: Mutex::new(RunBoard::default()),
            history: Mutex::new(Vec::new()),
            appended: watch::channel(false).0,
            owner: euid(),
        });
        let s = shared.clone();
        let pump = tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                let last = matches!(e, RunEvent::RunFinished { .. });
                if let Ok(mut b) = s.board.lock() {
                    b.apply(&e);
                }
                match (serde_json::to_string(&e), s.history.lock()) {
                    (Ok(line), Ok(mut h)) => h.push(line.into()),
                    _ => continue,
                }
                s.appended.send_replace(last);
                if last {
                    break;
                }
            }
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, most likely: let some close.
                        tracing::debug!("control socket: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let s = s.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(&s, stream).await {
                        tracing::debug!("control connection: {e}");
                    }
                });
            }
        });
        ControlServer { bound, shared, accept, pump }
    }

    /// The socket's path, as clients connect to it (`owner.json` names it).
    pub fn path(&self) -> &Path {
        self.bound.path()
    }

    /// Waits until the run's last event is out to every follower (a second
    /// at most), then closes the socket.
    pub async fn finish(mut self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.pump).await;
        // Followers hold a receiver each until they have sent the last line.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            while self.shared.appended.receiver_count() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await;
    }
}

/// However the run ends (an error before `finish`, too), the socket stops
/// being served: its tasks hold the run's gates, whose events a printer may
/// be waiting to see the end of.
impl Drop for ControlServer {
    fn drop(&mut self) {
        self.accept.abort();
        self.pump.abort();
        // Followers end with what they have.
        self.shared.appended.send_replace(true);
        // The socket file goes with `self.bound`.
    }
}

async fn serve(s: &Arc<Shared>, stream: UnixStream) -> std::io::Result<()> {
    // Who is on the other end, as the kernel says (SO_PEERCRED), checked
    // before a byte of the request is looked at. The private directory
    // should keep other users from connecting at all; this is what holds if
    // it does not (a socket path handed over, a directory opened up).
    let uid = stream.peer_cred()?.uid();
    if let Err(refusal) = admit(uid, s.owner) {
        return refuse(stream, refusal).await;
    }
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => return reply(&mut write, Response::Error(format!("not a control request: {e}"))).await,
    };
    if let Request::Follow { run } = &request {
        if let Some(other) = run.as_ref().filter(|r| **r != s.run_id) {
            return reply(&mut write, Response::Error(not_current(s, other))).await;
        }
        return follow(s, &mut write).await;
    }
    let response = match answer(s, request, uid).await {
        Ok(v) => Response::Ok(v),
        Err(e) => Response::Error(e),
    };
    reply(&mut write, response).await
}

/// Whether user `peer` may use the control socket of a run that runs as
/// `owner`: only that same user and root may.
pub(super) fn admit(peer: u32, owner: u32) -> Result<(), String> {
    if peer == owner || peer == 0 {
        return Ok(());
    }
    let who = |uid: u32| format!("user `{}` (uid {uid})", decider(uid));
    let allowed = if owner == 0 { "only root may".to_string() } else { format!("only {} and root may", who(owner)) };
    Err(format!("{} may not use this run's control socket: {allowed}", who(peer)))
}

/// Tells a refused peer why, without reading its request.
async fn refuse(stream: UnixStream, why: String) -> std::io::Result<()> {
    let (mut read, mut write) = stream.into_split();
    let answer = reply(&mut write, Response::Error(why)).await;
    // The peer's request is thrown away unread, a little of it for a
    // moment, only so that its write does not fail (EPIPE) before it gets
    // to read the answer.
    let mut discard = (&mut read).take(64 * 1024);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tokio::io::copy(&mut discard, &mut tokio::io::sink()))
        .await;
    answer
}

/// How a decision records who made it: the login name of `uid`, or `uid N`
/// when it has none, so that a decision never names nobody in particular.
pub(super) fn decider(uid: u32) -> String {
    let name = crate::os_user::user_name(uid);
    if name.trim().is_empty() {
        format!("uid {uid}")
    } else {
        name
    }
}

async fn reply(write: &mut tokio::net::unix::OwnedWriteHalf, r: Response) -> std::io::Result<()> {
    let mut text = serde_json::to_string(&r).map_err(std::io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

fn not_current(s: &Shared, other: &str) -> String {
    format!("run {other} is not in progress here (run {} is)", s.run_id)
}

/// Every event of the run so far, then each new one, until the run ends.
async fn follow(s: &Arc<Shared>, write: &mut tokio::net::unix::OwnedWriteHalf) -> std::io::Result<()> {
    let mut appended = s.appended.subscribe();
    let mut sent = 0;
    loop {
        // Read before the history: once the run is over, the history is whole.
        let over = *appended.borrow_and_update();
        let lines: Vec<Arc<str>> = match s.history.lock() {
            Ok(h) => h[sent..].to_vec(),
            Err(_) => return Ok(()),
        };
        let mut text = String::new();
        for l in &lines {
            text.push_str(l);
            text.push('\n');
        }
        sent += lines.len();
        write.write_all(text.as_bytes()).await?;
        if over {
            return write.shutdown().await;
        }
        if appended.changed().await.is_err() {
            return write.shutdown().await;
        }
    }
}

/// What `cancel --env E --node N` names in the run in progress (None: the
/// whole run). A node without an environment is in the environment that
/// runs now.
fn cancel_target(s: &Shared, environment: Option<String>, node: Option<String>) -> Result<Option<CancelTarget>, String> {
    if environment.is_none() && node.is_none() {
        return Ok(None);
    }
    let board = s.board.lock().map_err(|_| "the run's board is poisoned".to_string())?;
    let envs = board.environments();
    let environment = match environment {
        Some(e) if envs.iter().any(|x| x.name == e) => e,
        Some(e) => {
            let names: Vec<&str> = envs.iter().map(|x| x.name.as_str()).collect();
            return Err(format!("run {} has no environment `{e}` (it has: {})", s.run_id, names.join(", ")));
        }
        None => match envs.iter().find(|x| x.status == crate::state::Status::Running) {
            Some(e) => e.name.clone(),
            None => return Err(format!("no environment of run {} is running now: name one with --env", s.run_id)),
        },
    };
    if let Some(n) = &node {
        if !board.jobs().iter().any(|j| j.environment == environment && &j.node == n) {
            return Err(format!("environment `{environment}` of run {} has no node `{n}` (or has not started)", s.run_id));
        }
    }
    Ok(Some(CancelTarget { environment, node }))
}

async fn answer(s: &Arc<Shared>, request: Request, uid: u32) -> Result<Value, String> {
    let store = &s.store;
    let text = |e: crate::state::StateError| e.to_string();
    match request {
        Request::Runs => serde_json::to_value(store.runs().map_err(text)?).map_err(|e| e.to_string()),
        Request::Resources => {
            let doc = super::protocol::StateResources { resources: store.all_resources().map_err(text)?, locks: store.locks().map_err(text)? };
            serde_json::to_value(doc).map_err(|e| e.to_string())
        }
        Request::Snapshot { run } => crate::run::snapshot::snapshot_document(store, &run).map_err(|e| e.to_string()),
        Request::Status { run } => {
            let id = run.unwrap_or_else(|| s.run_id.clone());
            let Some(record) = store.run(&id).map_err(text)? else { return Err(format!("no run `{id}`")) };
            let decisions = store.decisions(&id).map_err(text)?;
            let doc = if id != s.run_id {
                StatusDocument::stored(&record, &store.jobs(&id).map_err(text)?, &decisions)
            } else {
                // The board knows the jobs from events; the diffs of those
                // that ended are in their records (not waited for: a status
                // asked every second must not cost the run an fsync each).
                let mut diffs: HashMap<(String, String), JobDiff> = store
                    .jobs(&id)
                    .map_err(text)?
                    .into_iter()
                    .filter_map(|j| Some(((j.environment, j.node), j.diff?)))
                    .collect();
                let waiting = s.gates.waiting();
                let board = s.board.lock().map_err(|_| "the run's board is poisoned".to_string())?;
                let mut record = record;
                if let Some(st) = board.status() {
                    record.status = st;
                }
                let mut jobs = board.jobs().to_vec();
                for j in &mut jobs {
                    j.diff = diffs.remove(&(j.environment.clone(), j.node.clone()));
                }
                StatusDocument::new(&record, board.environments(), &jobs, &decisions, &waiting)
            };
            serde_json::to_value(doc).map_err(|e| e.to_string())
        }
        Request::History { environment, resource, pipeline } => {
            // Jobs queued for the journal are part of the answer.
            s.journal.flush().await.map_err(|e| e.to_string())?;
            let found = history(store, &environment, &resource, pipeline.as_deref()).map_err(|e| e.to_string())?;
            serde_json::to_value(found).map_err(|e| e.to_string())
        }
        Request::Logs { run, node } => {
            let id = run.unwrap_or_else(|| s.run_id.clone());
            if id == s.run_id {
                // Lines queued for the journal are part of the answer.
                s.journal.flush().await.map_err(|e| e.to_string())?;
            }
            serde_json::to_value(store.logs(&id, node.as_deref()).map_err(text)?).map_err(|e| e.to_string())
        }
        Request::Decide { run, selector, decision, comment } => {
            if let Some(other) = run.as_ref().filter(|r| **r != s.run_id) {
                return Err(not_current(s, other));
            }
            let by = crate::run::Decider { user: decider(uid), role: None };
            let decided = s.gates.decide(&selector, decision, &by, comment).await.map_err(|e| e.to_string())?;
            serde_json::to_value(decided).map_err(|e| e.to_string())
        }
        Request::Cancel { run, environment, node } => {
            if let Some(other) = run.as_ref().filter(|r| **r != s.run_id) {
                return Err(not_current(s, other));
            }
            let answer = match cancel_target(s, environment, node)? {
                None => Cancelled { run: s.run_id.clone(), target: None, already_stopping: s.stop.stop() },
                Some(target) => {
                    let already = s.cancels.cancel(target.clone());
                    Cancelled { run: s.run_id.clone(), target: Some(target), already_stopping: already }
                }
            };
            serde_json::to_value(answer).map_err(|e| e.to_string())
        }
        Request::Follow { .. } => Err("follow is answered as a stream".into()),
    }
}
