//! A team server, reached over its HTTP API (`stackpipe serve`, `/api/v1`):
//! the same [`Request`]s the control socket answers, asked of the REST
//! routes that serve the same documents, and a run's events followed as
//! Server-Sent Events, resumed with `Last-Event-ID` when the connection
//! drops. Blocking, as the rest of the other terminal's side is.
//!
//! TLS is rustls, with Mozilla's root certificates; `STACKPIPE_CA_CERT`
//! names a PEM file of the certificates to trust instead (a server with a
//! certificate of the team's own CA, or a self-signed one).

use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::protocol::{Request, StateResources};
use crate::run::RunEvent;

/// Names a PEM file of the CA certificates a server's certificate must
/// chain to, instead of the public roots.
pub const CA_CERT_ENV: &str = "STACKPIPE_CA_CERT";

/// How long an ordinary request may take, in all (the server's own limit is 60 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);
/// How long an event stream may stay silent: the server sends a keep-alive
/// comment every 15 s, so a longer silence is a connection gone bad.
const STREAM_SILENCE: Duration = Duration::from_secs(45);
/// The largest answer read (a status document of a very large run is a few MiB).
const MAX_ANSWER_BYTES: u64 = 256 << 20;
/// The longest line of an event stream (one event's JSON).
const MAX_EVENT_LINE: u64 = 16 << 20;
/// How long a run just started may be unknown to the server (it is
/// recorded as it starts, a moment after the request that started it).
const NEW_RUN_PATIENCE: Duration = Duration::from_secs(10);
/// How long to keep trying to reconnect to a run's events without getting any.
const RECONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// Why a server did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The server said no: 4xx, with its message (`{"error": "..."}`) and
    /// the whole answer (a failed preflight's report is under `preflight`).
    #[error("{message}")]
    Refused { status: u16, message: String, body: Value },
    /// The server failed (5xx), could not be reached, or answered with
    /// something that is not its API's.
    #[error("{0}")]
    Failed(String),
}

impl ServerError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ServerError::Refused { status, .. } => Some(*status),
            ServerError::Failed(_) => None,
        }
    }
}

/// How following a run's events ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// With the run's `run_finished` event.
    Finished,
    /// Without it: the run is not in progress on the server (it ended
    /// before, or the server no longer has its events): its status says
    /// how it ended.
    NotInProgress,
}

/// A team server at a URL, with a token.
#[derive(Clone)]
pub struct ServerClient {
    /// `http(s)://host:port[/prefix]`, without a trailing `/`.
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for ServerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("ServerClient").field("base", &self.base).finish_non_exhaustive()
    }
}

/// `url` as the key of a server: its scheme and host as typed, without a
/// trailing `/`; an error for what is not an http(s) URL.
pub fn normalize_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['?', '#', ' ']) => Ok(url.to_string()),
        _ => Err(format!("`{url}` is not a server URL: expected http://HOST:PORT or https://HOST:PORT")),
    }
}

/// `s` as one segment of a URL path (or a query value): every byte but the
/// unreserved ones percent-encoded, so a name never becomes a path.
pub fn segment(s: &str) -> String {
    if s.bytes().all(|b| b == b'.') {
        // `.` and `..` would be read as moves in the path.
        return s.bytes().map(|_| "%2E").collect();
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The TLS roots: `STACKPIPE_CA_CERT`'s certificates, or Mozilla's.
fn tls_config() -> Result<ureq::tls::TlsConfig, ServerError> {
    use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
    let Some(file) = std::env::var_os(CA_CERT_ENV) else { return Ok(TlsConfig::builder().build()) };
    let shown = std::path::Path::new(&file).display().to_string();
    let pem = std::fs::read(&file).map_err(|e| ServerError::Failed(format!("{CA_CERT_ENV}={shown}: {e}")))?;
    let mut certs = Vec::new();
    for item in parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(ServerError::Failed(format!("{CA_CERT_ENV}={shown}: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(ServerError::Failed(format!("{CA_CERT_ENV}={shown}: no PEM certificate in it")));
    }
    Ok(TlsConfig::builder().root_certs(RootCerts::new_with_certs(&certs)).build())
}

impl ServerClient {
    /// A client of the server at `url` (see [`normalize_url`]) that sends `token`.
    pub fn new(url: &str, token: &str) -> Result<ServerClient, ServerError> {
        let base = normalize_url(url).map_err(ServerError::Failed)?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls_config()?)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(concat!("stackpipe/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(ServerClient { base, token: token.trim().to_string(), agent: ureq::Agent::new_with_config(config) })
    }

    /// The server's URL, as given.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn url_of(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    fn failed(&self, e: impl std::fmt::Display) -> ServerError {
        ServerError::Failed(format!("cannot reach the server {}: {e}", self.base))
    }

    /// The JSON of an answer: the value of a success, the refusal of a
    /// 4xx, a failure of anything else.
    fn answer(&self, response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value, ServerError> {
        let response = response.map_err(|e| self.failed(e))?;
        let status = response.status().as_u16();
        let bytes = response.into_body().with_config().limit(MAX_ANSWER_BYTES).read_to_vec().map_err(|e| self.failed(e))?;
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        match (status, body) {
            (200..=299, Some(v)) => Ok(v),
            (200..=299, None) => Err(ServerError::Failed(format!("the server {} answered with something that is not JSON", self.base))),
            (400..=499, body) => {
                let body = body.unwrap_or(Value::Null);
                let message = match (body.get("error").and_then(Value::as_str), status) {
                    (Some(m), _) => m.to_string(),
                    (None, 413) => format!(
                        "the request is larger than the server {} takes (a run sent with its pipeline and plugin \
                         components: 32 MiB at most, the components as base64)",
                        self.base
                    ),
                    (None, _) => format!("the server {} refused the request (HTTP {status})", self.base),
                };
                Err(ServerError::Refused { status, message, body })
            }
            (_, body) => {
                let said = body.as_ref().and_then(|b| b.get("error")).and_then(Value::as_str).map(|m| format!(": {m}"));
                Err(ServerError::Failed(format!("the server {} failed (HTTP {status}){}", self.base, said.unwrap_or_default())))
            }
        }
    }

    /// `GET /api/v1{path}` (`path` with its query, already encoded).
    pub fn get(&self, path: &str) -> Result<Value, ServerError> {
        let request = self.agent.get(self.url_of(path)).header("Authorization", format!("Bearer {}", self.token));
        self.answer(request.call())
    }

    /// `POST /api/v1{path}` with `body` as JSON.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ServerError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ServerError::Failed(e.to_string()))?;
        let request = self
            .agent
            .post(self.url_of(path))
            .header("Authorization", format!("Bearer {}", self.token))
            .content_type("application/json");
        self.answer(request.send(bytes))
    }

    /// Whether the server takes the token: `GET /api/v1/runs?limit=1`.
    pub fn check_token(&self) -> Result<(), ServerError> {
        self.get("/runs?limit=1").map(drop)
    }

    /// The most recent run, if any.
    pub fn latest_run(&self) -> Result<Option<String>, ServerError> {
        let runs = self.get("/runs?limit=1")?;
        Ok(runs.get(0).and_then(|r| r.get("id")).and_then(Value::as_str).map(str::to_string))
    }

    /// The runs in progress on the server, newest first.
    pub fn runs_in_progress(&self) -> Result<Vec<String>, ServerError> {
        let runs = self.get("/runs?status=running")?;
        let ids = runs.as_array().map(|a| a.iter().filter_map(|r| r.get("id")?.as_str().map(str::to_string)).collect());
        Ok(ids.unwrap_or_default())
    }

    /// The run a request names, or the one in progress (there must be
    /// exactly one, as a runner has one).
    pub fn in_progress(&self, run: &Option<String>) -> Result<Result<String, String>, ServerError> {
        if let Some(r) = run {
            return Ok(Ok(r.clone()));
        }
        let running = self.runs_in_progress()?;
        Ok(match running.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err("no run is in progress".to_string()),
            many => Err(format!("{} runs are in progress on {}: name one ({})", many.len(), self.base, many.join(", "))),
        })
    }

    /// The run a request names, or the most recent one.
    fn named_or_latest(&self, run: &Option<String>) -> Result<Result<String, String>, ServerError> {
        if let Some(r) = run {
            return Ok(Ok(r.clone()));
        }
        Ok(self.latest_run()?.ok_or_else(|| "no runs yet".to_string()))
    }

    /// Run `id`'s status document (`stackpipe status --json`), or, for a
    /// run queued behind others, what it waits for.
    pub fn run(&self, id: &str) -> Result<Value, ServerError> {
        self.get(&format!("/runs/{}", segment(id)))
    }

    /// What run `id` was started from: `{"run", "digest", "snapshot"}`.
    pub fn snapshot(&self, id: &str) -> Result<Value, ServerError> {
        self.get(&format!("/runs/{}/snapshot", segment(id)))
    }

    /// Cancels run `id` as a whole.
    pub fn cancel(&self, id: &str) -> Result<Value, ServerError> {
        self.post(&format!("/runs/{}/cancel", segment(id)), &json!({}))
    }

    /// Every resource record and lock the token may see.
    pub fn resources(&self) -> Result<StateResources, ServerError> {
        let doc = self.get("/state/resources")?;
        serde_json::from_value(doc).map_err(|e| ServerError::Failed(format!("the server's state is not what was expected: {e}")))
    }

    /// One request, one answer, as [`super::ControlClient::request`] gives
    /// it: the value, or the server's refusal (4xx) as a message; an I/O
    /// error when the server could not be reached or failed.
    pub fn request(&self, request: &Request) -> std::io::Result<Result<Value, String>> {
        match self.ask(request) {
            Ok(Ok(v)) => Ok(Ok(v)),
            Ok(Err(message)) | Err(ServerError::Refused { message, .. }) => Ok(Err(message)),
            Err(ServerError::Failed(e)) => Err(std::io::Error::other(e)),
        }
    }

    /// [`ServerClient::request`], refusals kept apart.
    pub fn ask(&self, request: &Request) -> Result<Result<Value, String>, ServerError> {
        Ok(Ok(match request {
            Request::Runs => self.get("/runs")?,
            Request::Resources => self.get("/state/resources")?,
            Request::Snapshot { run } => self.snapshot(run)?,
            Request::Status { run } => match self.named_or_latest(run)? {
                Ok(id) => self.run(&id)?,
                Err(e) => return Ok(Err(e)),
            },
            Request::Logs { run, node } => match self.named_or_latest(run)? {
                Ok(id) => {
                    let only = node.as_ref().map(|n| format!("?node={}", segment(n))).unwrap_or_default();
                    self.get(&format!("/runs/{}/logs{only}", segment(&id)))?
                }
                Err(e) => return Ok(Err(e)),
            },
            Request::History { environment, resource, pipeline } => {
                let only = pipeline.as_ref().map(|p| format!("?pipeline={}", segment(p))).unwrap_or_default();
                self.get(&format!("/state/history/{}/{}{only}", segment(environment), segment(resource)))?
            }
            Request::Decide { run, selector, decision, comment } => match self.in_progress(run)? {
                Ok(id) => {
                    let verb = match decision {
                        crate::state::Decision::Approved => "approve",
                        crate::state::Decision::Rejected => "reject",
                    };
                    let body = json!({
                        "environment": selector.environment, "node": selector.node, "all": selector.all, "comment": comment,
                    });
                    self.post(&format!("/runs/{}/{verb}", segment(&id)), &body)?
                }
                Err(e) => return Ok(Err(e)),
            },
            Request::Cancel { run, environment, node } => match self.in_progress(run)? {
                Ok(id) => self.post(&format!("/runs/{}/cancel", segment(&id)), &json!({ "environment": environment, "node": node }))?,
                Err(e) => return Ok(Err(e)),
            },
            Request::Follow { .. } => return Ok(Err("follow is answered as a stream: see ServerClient::follow".into())),
        }))
    }

    /// Starts a run: `POST /api/v1/runs` with `body`; the answer
    /// (`{"run", "status", ...}`).
    pub fn create_run(&self, body: &Value) -> Result<Value, ServerError> {
        self.post("/runs", body)
    }

    /// Reruns or resumes run `id` (`verb`: `rerun` or `resume`).
    pub fn again(&self, id: &str, verb: &str) -> Result<Value, ServerError> {
        self.post(&format!("/runs/{}/{verb}", segment(id)), &json!({}))
    }

    /// Every event of run `id` after the `after`th (0: from its start), as
    /// it happens, until its `run_finished`; `on_event` gets each with its
    /// JSON line and its id. A connection that drops (or goes silent) is
    /// made again with `Last-Event-ID`, so nothing is missed or repeated,
    /// for as long as the run is in progress on the server.
    pub fn follow(&self, id: &str, after: u64, mut on_event: impl FnMut(&RunEvent, &str, u64)) -> Result<Followed, ServerError> {
        let mut last = after;
        let mut trouble_since: Option<Instant> = None;
        let asked = Instant::now();
        loop {
            let before = last;
            let ended = self.stream(id, &mut last, &mut on_event);
            match ended {
                Ok(true) => return Ok(Followed::Finished),
                // A run the server has just started is recorded a moment later.
                Err(ServerError::Refused { status: 404, .. }) if last == 0 && asked.elapsed() < NEW_RUN_PATIENCE => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(e @ ServerError::Refused { .. }) => return Err(e),
                Ok(false) | Err(ServerError::Failed(_)) => {}
            }
            // The stream ended without the run's end: either the run is not
            // in progress here (any more), or the connection was lost.
            match self.run(id) {
                Ok(doc) => {
                    let status = doc.get("status").and_then(Value::as_str).unwrap_or_default();
                    if status != "running" && status != "queued" {
                        return Ok(Followed::NotInProgress);
                    }
                }
                Err(e @ ServerError::Refused { .. }) => return Err(e),
                Err(ServerError::Failed(_)) => {}
            }
            if last > before {
                trouble_since = None;
            }
            let since = *trouble_since.get_or_insert_with(Instant::now);
            if since.elapsed() > RECONNECT_PATIENCE {
                let why = ended.err().map(|e| format!(": {e}")).unwrap_or_default();
                return Err(ServerError::Failed(format!(
                    "lost the events of run {id} on {} and could not get them back for {} s{why}",
                    self.base,
                    RECONNECT_PATIENCE.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// One connection to run `id`'s events, from after `last` (which is
    /// moved on with each event): whether it saw the run's end.
    fn stream(&self, id: &str, last: &mut u64, on_event: &mut impl FnMut(&RunEvent, &str, u64)) -> Result<bool, ServerError> {
        let mut request = self
            .agent
            .get(self.url_of(&format!("/runs/{}/events", segment(id))))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "text/event-stream");
        if *last > 0 {
            request = request.header("Last-Event-ID", last.to_string());
        }
        let request = request.config().timeout_global(None).timeout_per_read(Some(STREAM_SILENCE)).build();
        let response = request.call().map_err(|e| self.failed(e))?;
        if !response.status().is_success() {
            return self.answer(Ok(response)).map(|_| false);
        }
        let mut reader = BufReader::new(response.into_body().into_reader());
        let mut event = SseEvent::default();
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.by_ref().take(MAX_EVENT_LINE).read_line(&mut line).map_err(|e| self.failed(e))?;
            if n == 0 {
                return Ok(false);
            }
            if !line.ends_with('\n') && n as u64 == MAX_EVENT_LINE {
                return Err(ServerError::Failed(format!("an event of run {id} is longer than {MAX_EVENT_LINE} bytes")));
            }
            let Some(done) = event.feed(line.trim_end_matches(['\n', '\r'])) else { continue };
            if let Some(n) = done.id {
                *last = n;
            }
            if let Ok(e) = serde_json::from_str::<RunEvent>(&done.data) {
                on_event(&e, &done.data, *last);
                if matches!(e, RunEvent::RunFinished { .. }) {
                    return Ok(true);
                }
            }
        }
    }
}

/// One Server-Sent Event, being read: its `id:` and its `data:` lines.
#[derive(Debug, Default)]
struct SseEvent {
    id: Option<u64>,
    data: String,
    has_data: bool,
}

impl SseEvent {
    /// Takes one line of the stream (without its end); at the blank line
    /// that ends an event, the event (when it had data).
    fn feed(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let done = std::mem::take(self);
            return done.has_data.then_some(done);
        }
        if line.starts_with(':') {
            return None; // a comment: the server's keep-alive
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.id = value.parse().ok(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {} // `event:` names what the data's `event` field says; `retry:`
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sent_events_are_read_by_id_and_data() {
        let mut e = SseEvent::default();
        let mut got = Vec::new();
        for line in [": keep-alive", "", "id: 7", "event: log", "data: {\"a\":", "data: 1}", "", "id:8", "data:x", ""] {
            if let Some(done) = e.feed(line) {
                got.push((done.id, done.data));
            }
        }
        assert_eq!(got, vec![(Some(7), "{\"a\":\n1}".to_string()), (Some(8), "x".to_string())]);
    }

    #[test]
    fn names_never_become_paths_and_urls_are_checked() {
        assert_eq!(segment("r000001"), "r000001");
        assert_eq!(segment("../x y/?#"), "..%2Fx%20y%2F%3F%23");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(normalize_url("http://127.0.0.1:7480/").unwrap(), "http://127.0.0.1:7480");
        assert_eq!(normalize_url(" https://ci.example/stackpipe ").unwrap(), "https://ci.example/stackpipe");
        assert!(normalize_url("127.0.0.1:7480").is_err());
        assert!(normalize_url("ftp://x").is_err());
        assert!(normalize_url("http://").is_err());
    }
}
