//! The team server under load (issue 19, point 7): status reads of a
//! 1,000-node run, and 100 SSE followers of a 1,000-node deploy.
//!
//!     cargo bench --bench server            (both parts: about a minute)
//!     cargo bench --bench server -- status  (or `-- sse`: one part)
//!
//! Every figure is of a real `stackpipe serve` (the release binary) on a
//! loopback port, asked over real HTTP/1.1.
//!
//! 1. Status reads. One server, two runs of 1,000 `test` steps (a tree:
//!    r_i needs r_{i/3}, as in tests/server.rs):
//!    - `finished`: the deploy has ended; its status is read;
//!    - `in progress`: 999 steps have ended and one (`hold`) sleeps for
//!      minutes, so the run stays in progress with its whole board: each
//!      read folds the live board and reads the run's 1,000 job records
//!      (the dearest status there is);
//!    and, for scale, a finished run of 2 nodes: what the HTTP stack, the
//!    token check and the handler cost without a big document.
//!    `GET /api/v1/runs/{ID}` is asked by C keep-alive connections at once
//!    (10 as wrk's default, 50 as oha's), each sending its next request
//!    when the last answer has been read whole, for a fixed time after a
//!    warm-up. The load generator is written here (oha and wrk are not on
//!    these machines): one thread, tokio, raw HTTP/1.1, which reads the
//!    answers and parses nothing but their heads. It shares the machine's
//!    two cores with the server: the CPU each used is printed beside the
//!    figures, with the server's CPU per answer. Target: >= 2,000
//!    requests/s with p99 < 50 ms.
//! 2. SSE followers. A 1,000-step deploy (each step sleeps DELAY_MS,
//!    PARALLELISM at once) on a fresh server and state, with no follower
//!    (A) and with 100 followers of `GET /api/v1/runs/{ID}/events` (B)
//!    connected right after the 201 and reading every event until the
//!    stream ends; A and B alternate, PAIRS times. The makespan is the
//!    status document's `finished_ms - started_ms`. The followers share
//!    the cores with the server too (in production they would be other
//!    machines): the ratio is an upper bound of what they cost the run.
//!    The CPU the server and the followers used is printed for each deploy.
//!    Target: median B / median A <= 1.10.
//!
//! The machine is shared: other builds running meanwhile move every
//! figure. The load average at the start is printed; run it again when
//! it was high.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Steps in each pipeline.
const NODES: usize = 1000;
/// Connections at once of the status reads.
const CONNECTIONS: [usize; 2] = [10, 50];
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURED: Duration = Duration::from_secs(6);
/// The SSE deploys: how long each step sleeps, and how many at once.
const DELAY_MS: u64 = 10;
const PARALLELISM: usize = 8;
const FOLLOWERS: usize = 100;
const PAIRS: usize = 5;

const PLUGIN: &str = r#"plugin t {
  kind   = "provisioner"
  source = "builtin:test"
}
environment dev {}
"#;

/// `NODES` steps sleeping `delay_ms`; the last is `hold` sleeping
/// `hold_ms` and needing nothing when that is given.
fn pipeline(name: &str, delay_ms: u64, hold_ms: Option<u64>) -> String {
    let mut text = format!("pipeline \"{name}\"\n\n{PLUGIN}\n");
    let tree = if hold_ms.is_some() { NODES - 1 } else { NODES };
    for i in 0..tree {
        let needs = if i >= 3 { format!(" a = r{}.id", i / 3) } else { String::new() };
        text.push_str(&format!("resource r{i} \"t.step\" {{ delay_ms = {delay_ms}{needs} }}\n"));
    }
    if let Some(ms) = hold_ms {
        text.push_str(&format!("resource hold \"t.step\" {{ delay_ms = {ms} }}\n"));
    }
    text
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------
// A server

struct Server {
    _dir: tempfile::TempDir,
    child: Child,
    /// Kept open: a server whose stdout is closed would fail its next write.
    _stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
    token: String,
    agent: ureq::Agent,
}

fn command(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stackpipe"));
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env("STACKPIPE_CACHE_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-component-cache"));
    c
}

impl Server {
    /// A server of fresh state, knowing `pipelines` (name, text), with an admin.
    fn start(pipelines: &[(&str, String)]) -> Server {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::create_dir_all(dir.path().join("pipelines")).expect("the pipelines directory");
        for (name, text) in pipelines {
            std::fs::write(dir.path().join("pipelines").join(format!("{name}.pipeline")), text).expect("a pipeline");
        }
        let o = command(dir.path()).args(["user", "add", "bench", "--role", "admin", "--state", "state"]).output().expect("user add");
        assert!(o.status.success(), "user add: {}", String::from_utf8_lossy(&o.stderr));
        let token = String::from_utf8_lossy(&o.stdout).lines().last().expect("a token").trim().to_string();
        let mut child = command(dir.path())
            .args(["serve", "--state", "state", "--pipelines", "pipelines", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("serve starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the listening line");
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .parse()
            .expect("an address");
        let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into();
        Server { _dir: dir, child, _stdout: stdout, addr, token, agent }
    }

    fn get(&self, path: &str) -> Value {
        let mut r = self
            .agent
            .get(format!("http://{}{path}", self.addr))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .expect("the server answers");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().expect("a body");
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).expect("JSON")
    }

    /// Starts a run of `pipeline`; its id.
    fn start_run(&self, pipeline: &str, parallelism: usize) -> String {
        let body = json!({ "pipeline": pipeline, "parallelism": parallelism }).to_string();
        let mut r = self
            .agent
            .post(format!("http://{}/api/v1/runs", self.addr))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .expect("the server answers");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().expect("a body");
        assert_eq!(status, 201, "starting {pipeline}: {text}");
        let doc: Value = serde_json::from_str(&text).expect("JSON");
        doc["run"].as_str().expect("a run id").to_string()
    }

    /// Run `id`'s status document once `ready` holds (asked every `every`).
    fn wait_run(&self, id: &str, every: Duration, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let doc = self.get(&format!("/api/v1/runs/{id}"));
            if ready(&doc) {
                return doc;
            }
            assert!(Instant::now() < deadline, "run {id} is still {}", doc["status"]);
            std::thread::sleep(every);
        }
    }

    /// CPU seconds the server has used (user + system).
    fn cpu(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ended(doc: &Value) -> bool {
    matches!(doc["status"].as_str(), Some("succeeded" | "failed" | "cancelled" | "interrupted"))
}

/// Nodes of a status document with status `status`.
fn nodes_with(doc: &Value, status: &str) -> usize {
    let envs = doc["environments"].as_array().map(Vec::as_slice).unwrap_or_default();
    envs.iter().flat_map(|e| e["nodes"].as_array().into_iter().flatten()).filter(|n| n["status"] == status).count()
}

/// user + system CPU seconds of the process whose `/proc/.../stat` this is.
fn cpu_seconds(stat: &str) -> f64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // After the command's `(...)`: state is field 3, utime 14, stime 15.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(14) + ticks(15)) / hz
}

// ---------------------------------------------------------------------
// HTTP/1.1 on a raw connection: just enough to read whole answers.

struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

struct Head {
    status: u16,
    length: Option<usize>,
    chunked: bool,
    close: bool,
}

impl Connection {
    async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, buf: Vec::with_capacity(1 << 16) })
    }

    /// Reads more into the buffer; Err at the end of the stream.
    async fn fill(&mut self) -> std::io::Result<()> {
        let len = self.buf.len();
        self.buf.resize(len + (1 << 16), 0);
        let n = self.stream.read(&mut self.buf[len..]).await;
        self.buf.truncate(len + *n.as_ref().unwrap_or(&0));
        match n? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }

    async fn head(&mut self) -> std::io::Result<Head> {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await?;
        };
        let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "a bad answer head");
        let mut lines = text.split("\r\n");
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let mut head = Head { status, length: None, chunked: false, close: false };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim().to_ascii_lowercase();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => head.length = Some(value.parse().map_err(|_| bad())?),
                "transfer-encoding" => head.chunked = value.contains("chunked"),
                "connection" => head.close = value.contains("close"),
                _ => {}
            }
        }
        Ok(head)
    }

    /// Reads the body after `head`, giving each piece of it to `sink`.
    async fn body(&mut self, head: &Head, mut sink: impl FnMut(&[u8])) -> std::io::Result<()> {
        if let Some(len) = head.length {
            return self.exactly(len, &mut sink).await;
        }
        if !head.chunked {
            // Until the connection closes.
            loop {
                sink(&self.buf);
                self.buf.clear();
                if self.fill().await.is_err() {
                    return Ok(());
                }
            }
        }
        loop {
            let line_end = loop {
                if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                self.fill().await?;
            };
            let size = std::str::from_utf8(&self.buf[..line_end])
                .ok()
                .and_then(|l| usize::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16).ok())
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "a bad chunk size"))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // No trailers: the empty line that ends the body.
                while self.buf.len() < 2 {
                    self.fill().await?;
                }
                self.buf.drain(..2);
                return Ok(());
            }
            self.exactly(size, &mut sink).await?;
            while self.buf.len() < 2 {
                self.fill().await?;
            }
            self.buf.drain(..2);
        }
    }

    async fn exactly(&mut self, mut len: usize, sink: &mut impl FnMut(&[u8])) -> std::io::Result<()> {
        loop {
            let n = len.min(self.buf.len());
            sink(&self.buf[..n]);
            self.buf.drain(..n);
            len -= n;
            if len == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }
}

fn request(addr: SocketAddr, path: &str, token: &str, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nUser-Agent: stackpipe-bench\r\n{connection}\r\n")
        .into_bytes()
}

// ---------------------------------------------------------------------
// 1. Status reads

#[derive(Default)]
struct Load {
    /// Each answer's latency, in microseconds.
    latencies: Vec<u32>,
    errors: usize,
    bytes: u64,
}

/// One keep-alive connection asking `request` until `until`; what is
/// answered after `from` counts.
async fn connection_loop(addr: SocketAddr, request: Arc<[u8]>, from: Instant, until: Instant) -> Load {
    let mut load = Load::default();
    let mut conn: Option<Connection> = None;
    while Instant::now() < until {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Connection::open(addr).await {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    load.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        let answered = tokio::time::timeout(Duration::from_secs(10), async {
            c.stream.write_all(&request).await?;
            let head = c.head().await?;
            let mut bytes = 0u64;
            c.body(&head, |b| bytes += b.len() as u64).await?;
            Ok::<_, std::io::Error>((head, bytes))
        })
        .await;
        let took = sent.elapsed();
        let counted = sent >= from;
        match answered {
            Ok(Ok((head, bytes))) => {
                if head.close {
                    conn = None;
                }
                if counted {
                    if head.status == 200 {
                        load.latencies.push(took.as_micros().min(u32::MAX as u128) as u32);
                        load.bytes += bytes;
                    } else {
                        load.errors += 1;
                    }
                }
            }
            _ => {
                conn = None;
                if counted {
                    load.errors += 1;
                }
            }
        }
    }
    load
}

/// `connections` connections asking `path` for WARM_UP + MEASURED; prints the figures.
fn status_load(server: &Server, what: &str, path: &str, connections: usize) {
    let request: Arc<[u8]> = request(server.addr, path, &server.token, false).into();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let addr = server.addr;
    let (server_cpu, own_cpu) = (server.cpu(), cpu_seconds("/proc/self/stat"));
    let start = Instant::now();
    let from = start + WARM_UP;
    let until = from + MEASURED;
    let loads = runtime.block_on(async move {
        let tasks: Vec<_> =
            (0..connections).map(|_| tokio::spawn(connection_loop(addr, request.clone(), from, until))).collect();
        let mut loads = Vec::new();
        for t in tasks {
            loads.push(t.await.expect("a connection's task"));
        }
        loads
    });
    let wall = start.elapsed().as_secs_f64();
    let (server_cpu, own_cpu) = (server.cpu() - server_cpu, cpu_seconds("/proc/self/stat") - own_cpu);
    let mut latencies: Vec<u32> = loads.iter().flat_map(|l| l.latencies.iter().copied()).collect();
    let errors: usize = loads.iter().map(|l| l.errors).sum();
    let bytes: u64 = loads.iter().map(|l| l.bytes).sum();
    latencies.sort_unstable();
    let at = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or(0);
    let ms = |us: u32| us as f64 / 1000.0;
    let rate = latencies.len() as f64 / MEASURED.as_secs_f64();
    let size = if latencies.is_empty() { 0 } else { bytes / latencies.len() as u64 };
    // Over the warm-up too: CPU is read for the whole load.
    let answered = latencies.len() as f64 * wall / MEASURED.as_secs_f64();
    let verdict = if rate >= 2000.0 && ms(at(0.99)) < 50.0 && errors == 0 { "meets" } else { "MISSES" };
    println!(
        "status reads, {what}, {connections} connections: {rate:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, \
         {errors} errors, {} KB an answer ({verdict} >= 2000/s with p99 < 50 ms)\n  CPU over {wall:.1} s: server {server_cpu:.1} s \
         (~{:.1} ms an answer), load generator {own_cpu:.1} s",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(latencies.last().copied().unwrap_or(0)),
        size / 1024,
        server_cpu * 1000.0 / answered.max(1.0),
    );
}

fn status_reads() {
    let finished = pipeline("finished", 0, None);
    let held = pipeline("held", 0, Some(600_000));
    let small = format!("pipeline \"small\"\n\n{PLUGIN}\nresource r0 \"t.step\" {{}}\nresource r1 \"t.step\" {{ a = r0.id }}\n");
    let server = Server::start(&[("finished", finished), ("held", held), ("small", small)]);
    // For scale: the same request where the document is small (2 nodes).
    let two = server.start_run("small", 0);
    server.wait_run(&two, Duration::from_millis(100), ended);
    status_load(&server, "finished run of 2 nodes (for scale)", &format!("/api/v1/runs/{two}"), CONNECTIONS[1]);
    let took = Instant::now();
    let done = server.start_run("finished", 0);
    let doc = server.wait_run(&done, Duration::from_millis(200), ended);
    assert_eq!(doc["status"], "succeeded", "{doc:#}");
    assert_eq!(nodes_with(&doc, "succeeded"), NODES);
    println!("(the 1,000-step deploy to read took {:.1} s)", took.elapsed().as_secs_f64());
    for c in CONNECTIONS {
        status_load(&server, "finished run", &format!("/api/v1/runs/{done}"), c);
    }
    let running = server.start_run("held", 0);
    let doc = server.wait_run(&running, Duration::from_millis(200), |d| nodes_with(d, "succeeded") == NODES - 1);
    assert_eq!(doc["status"], "running", "{doc:#}");
    for c in CONNECTIONS {
        status_load(&server, "run in progress (999 of 1000 ended)", &format!("/api/v1/runs/{running}"), c);
    }
}

// ---------------------------------------------------------------------
// 2. SSE followers

/// One follower: reads run `id`'s events until the stream ends; how many.
async fn follow(addr: SocketAddr, request: Arc<[u8]>) -> std::io::Result<usize> {
    let mut c = Connection::open(addr).await?;
    c.stream.write_all(&request).await?;
    let head = c.head().await?;
    if head.status != 200 {
        return Err(std::io::Error::other(format!("status {}", head.status)));
    }
    // An event is a line `id: N` (keep-alive comments are not events).
    const ID_LINE: &[u8] = b"\nid:";
    let (mut events, mut matched) = (0, 1);
    c.body(&head, |bytes| {
        for &b in bytes {
            matched = if b == ID_LINE[matched] { matched + 1 } else { usize::from(b == b'\n') };
            if matched == ID_LINE.len() {
                events += 1;
                matched = 0;
            }
        }
    })
    .await?;
    Ok(events)
}

/// One deploy on a fresh server.
struct Deploy {
    makespan: Duration,
    /// The events each follower got.
    got: Vec<usize>,
    /// CPU seconds of the server and of this process (the followers), from the 201 to the run's end.
    server_cpu: f64,
    followers_cpu: f64,
}

/// One deploy on a fresh server with `followers`.
fn deploy(round: usize, followers: usize) -> Deploy {
    let name = format!("sse{round}");
    let server = Server::start(&[(&name, pipeline(&name, DELAY_MS, None))]);
    let id = server.start_run(&name, PARALLELISM);
    let (server_cpu, own_cpu) = (server.cpu(), cpu_seconds("/proc/self/stat"));
    let request: Arc<[u8]> = request(server.addr, &format!("/api/v1/runs/{id}/events"), &server.token, true).into();
    let addr = server.addr;
    let following = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async move {
            let tasks: Vec<_> = (0..followers).map(|_| tokio::spawn(follow(addr, request.clone()))).collect();
            let mut got = Vec::new();
            for t in tasks {
                got.push(t.await.expect("a follower's task").expect("a follower reads the run's events"));
            }
            got
        })
    });
    // Asked seldom: a status of a run in progress is work for the server too.
    let doc = server.wait_run(&id, Duration::from_millis(500), ended);
    assert_eq!(doc["status"], "succeeded", "{doc:#}");
    let got = following.join().expect("the followers");
    let (server_cpu, followers_cpu) = (server.cpu() - server_cpu, cpu_seconds("/proc/self/stat") - own_cpu);
    let makespan = doc["finished_ms"].as_u64().expect("finished_ms") - doc["started_ms"].as_u64().expect("started_ms");
    Deploy { makespan: Duration::from_millis(makespan), got, server_cpu, followers_cpu }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn sse_followers() {
    let (mut alone, mut followed) = (Vec::new(), Vec::new());
    for pair in 0..PAIRS {
        let a = deploy(pair * 2, 0);
        let b = deploy(pair * 2 + 1, FOLLOWERS);
        let (fewest, most) = (b.got.iter().min().copied().unwrap_or(0), b.got.iter().max().copied().unwrap_or(0));
        assert_eq!(fewest, most, "every follower gets every event");
        println!(
            "  pair {}: makespan {:.0} ms alone (server CPU {:.1} s), {:.0} ms with {FOLLOWERS} followers ({most} events each; \
             server CPU {:.1} s, followers' CPU {:.1} s)",
            pair + 1,
            ms(a.makespan),
            a.server_cpu,
            ms(b.makespan),
            b.server_cpu,
            b.followers_cpu,
        );
        alone.push(a.makespan);
        followed.push(b.makespan);
    }
    let (a, b) = (median(alone), median(followed));
    let ratio = b.as_secs_f64() / a.as_secs_f64();
    let verdict = if ratio <= 1.10 { "meets" } else { "MISSES" };
    println!(
        "SSE: a {NODES}-step deploy ({DELAY_MS} ms a step, {PARALLELISM} at once), median makespan of {PAIRS}: \
         {:.0} ms alone, {:.0} ms with {FOLLOWERS} followers: x{ratio:.3} ({verdict} <= x1.10)",
        ms(a),
        ms(b),
    );
}

fn main() {
    // `cargo bench --bench server -- status` (or `sse`): that part only.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let runs = |part: &str| only.is_empty() || only.iter().any(|o| o == part);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("server bench: load average at the start {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    if runs("status") {
        status_reads();
    }
    if runs("sse") {
        sse_followers();
    }
}
