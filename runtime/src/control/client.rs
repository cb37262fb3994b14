//! The other terminal's side: reach a state directory, through its runner's
//! control socket while a run is in progress, or by opening the database;
//! or reach a team server's state over its HTTP API (see `remote`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::protocol::{Request, Response, StateResources};
use crate::run::RunEvent;
use crate::state::{pid_alive, OwnerInfo, StateError, StateStore};

/// How long to keep trying while the database is held by a process that
/// serves no socket (another `status`, or a runner just starting).
const PATIENCE: Duration = Duration::from_secs(10);

/// A state directory, reached.
pub enum Reach {
    /// Nobody else had it open: read it directly.
    Store(StateStore),
    /// A run is in progress: ask its runner.
    Runner { client: ControlClient, owner: OwnerInfo },
    /// A team server (`--server URL`): ask it.
    Server(super::remote::ServerClient),
}

impl Reach {
    /// Opens `dir`'s database for reading, or connects to the runner
    /// holding it.
    pub fn open(dir: &Path) -> Result<Reach, StateError> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match StateStore::open_read_only(dir) {
                Ok(store) => return Ok(Reach::Store(store)),
                Err(StateError::Busy { path, holder }) => {
                    if let Some(owner) = holder.as_ref().filter(|h| pid_alive(h.pid)) {
                        if let Some(socket) = &owner.control {
                            let client = ControlClient { path: socket.clone() };
                            if client.ping() {
                                return Ok(Reach::Runner { client, owner: owner.clone() });
                            }
                        }
                    }
                    if Instant::now() >= deadline {
                        return Err(StateError::Busy { path, holder });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Reach {
    /// A shared state (PostgreSQL), reached: the process running its most
    /// recent run in progress, when that process serves a control socket
    /// on this machine; else the state itself, read directly.
    pub fn shared(store: StateStore) -> Reach {
        let running = store.runs().ok().and_then(|runs| runs.into_iter().find(|r| r.status == crate::state::RunStatus::Running));
        if let Some(run) = running {
            if let Ok(Some(socket)) = store.control_socket(&run.id) {
                let client = ControlClient { path: socket.clone() };
                if socket.exists() && client.ping() {
                    let owner = OwnerInfo { pid: run.pid, run_id: Some(run.id), since_ms: run.started_ms, control: Some(socket) };
                    return Reach::Runner { client, owner };
                }
            }
        }
        Reach::Store(store)
    }

    /// The state of `dir` as a reader sees it: the database itself, or,
    /// while a run in progress holds it, a copy of its resources and locks
    /// from that run (see [`StateStore::replica`]): what `plan`, `outputs`
    /// and `state list/show` read. `or_empty`: a directory without state
    /// reads as empty (a plan of a pipeline never deployed).
    pub fn resources(dir: &Path, or_empty: bool) -> Result<StateStore, StateError> {
        match Reach::open(dir) {
            Ok(Reach::Store(store)) => Ok(store),
            Ok(Reach::Runner { client, .. }) => {
                let asked = |e: String| StateError::Io(std::io::Error::other(format!("the run in progress: {e}")));
                let answer = client.request(&Request::Resources).map_err(|e| asked(e.to_string()))?.map_err(asked)?;
                let doc: StateResources = serde_json::from_value(answer).map_err(|e| asked(e.to_string()))?;
                StateStore::replica(dir, &doc.resources, &doc.locks)
            }
            Ok(Reach::Server(server)) => {
                let doc = server.resources().map_err(|e| StateError::Io(std::io::Error::other(e.to_string())))?;
                StateStore::replica(dir, &doc.resources, &doc.locks)
            }
            Err(StateError::Missing { .. }) if or_empty => StateStore::empty(dir),
            Err(e) => Err(e),
        }
    }
}

/// A connection maker for one runner's control socket.
#[derive(Debug, Clone)]
pub struct ControlClient {
    path: PathBuf,
}

impl ControlClient {
    pub fn new(path: PathBuf) -> Self {
        ControlClient { path }
    }

    fn ping(&self) -> bool {
        UnixStream::connect(&self.path).is_ok()
    }

    fn send(&self, request: &Request) -> std::io::Result<BufReader<UnixStream>> {
        let mut stream = UnixStream::connect(&self.path)?;
        let mut line = serde_json::to_string(request).map_err(std::io::Error::other)?;
        line.push('\n');
        stream.write_all(line.as_bytes())?;
        Ok(BufReader::new(stream))
    }

    /// One request, one answer: the value, or the runner's error message.
    pub fn request(&self, request: &Request) -> std::io::Result<Result<Value, String>> {
        let mut reader = self.send(request)?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the runner closed the connection"));
        }
        match serde_json::from_str(&line).map_err(std::io::Error::other)? {
            Response::Ok(v) => Ok(Ok(v)),
            Response::Error(e) => Ok(Err(e)),
        }
    }

    /// Every event of the run in progress, from its start, as it happens,
    /// until the run ends. `on_event` gets each one with its JSON line.
    pub fn follow(&self, run: Option<String>, mut on_event: impl FnMut(&RunEvent, &str)) -> std::io::Result<Result<(), String>> {
        let reader = self.send(&Request::Follow { run })?;
        for line in reader.lines() {
            let line = line?;
            match serde_json::from_str::<RunEvent>(&line) {
                Ok(e) => on_event(&e, &line),
                Err(_) => {
                    if let Ok(Response::Error(e)) = serde_json::from_str(&line) {
                        return Ok(Err(e));
                    }
                }
            }
        }
        Ok(Ok(()))
    }
}
