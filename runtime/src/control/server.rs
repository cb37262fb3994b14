//! The runner's side of the control socket.

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::live::{answer, LiveRun, RunHandles};
use super::protocol::{Request, Response};
use super::socket::{euid, Bound, ControlSocket};
use crate::run::RunEvent;
use crate::state::StateStore;

struct Shared {
    store: Arc<StateStore>,
    live: Arc<LiveRun>,
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
    /// The run it serves, for the other ways it is steered (see `posted`).
    pub fn live(&self) -> Arc<LiveRun> {
        self.shared.live.clone()
    }

    /// Serves `socket` (bound by [`ControlSocket::bind`] before the run is
    /// recorded, so that a socket that cannot be bound leaves nothing
    /// behind); `events` are the run's events.
    pub fn start(
        socket: ControlSocket,
        store: Arc<StateStore>,
        run: RunHandles,
        events: mpsc::UnboundedReceiver<RunEvent>,
    ) -> ControlServer {
        let ControlSocket { listener, bound } = socket;
        let live = LiveRun::new(run);
        let pump = live.pump(events, |_, _| {});
        let shared = Arc::new(Shared { store, live, owner: euid() });
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
            while self.shared.live.followers() > 0 {
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
        self.shared.live.close();
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
        if let Some(other) = run.as_ref().filter(|r| **r != s.live.run_id) {
            let why = format!("run {other} is not in progress here (run {} is)", s.live.run_id);
            return reply(&mut write, Response::Error(why)).await;
        }
        return follow(&s.live, &mut write).await;
    }
    let response = match answer(&s.store, Some(&s.live), request, &crate::run::Decider { user: decider(uid), role: None }).await {
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

/// Every event of the run so far, then each new one, until the run ends.
async fn follow(live: &LiveRun, write: &mut tokio::net::unix::OwnedWriteHalf) -> std::io::Result<()> {
    let mut appended = live.subscribe();
    let mut sent = 0;
    loop {
        appended.borrow_and_update();
        let (lines, over) = live.events_from(sent);
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
