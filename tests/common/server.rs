//! A real `stackpipe serve` for the end-to-end tests: started on a free
//! loopback port with its own state and pipelines directories and users
//! made by `stackpipe user add`, asked over real HTTP, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A server process and where it is.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub url: String,
    child: Option<Child>,
    /// Kept open: a server whose stdout is closed would fail its next write.
    _stdout: BufReader<std::process::ChildStdout>,
    agent: ureq::Agent,
}

/// An answer: the status and the body (JSON when it is JSON, else the text as a string).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

pub fn command(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stackpipe"));
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env("STACKPIPE_CACHE_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-component-cache"));
    c
}

impl TestServer {
    /// A server directory: `pipelines/` with `pipelines` (name, text), and a user per (name, role, pipelines).
    pub fn prepare(pipelines: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
        for (name, text) in pipelines {
            std::fs::write(dir.path().join("pipelines").join(format!("{name}.pipeline")), text).unwrap();
        }
        dir
    }

    /// Adds a user; their token.
    pub fn add_user(dir: &Path, name: &str, role: &str, pipelines: &[&str]) -> String {
        TestServer::add_user_at(dir, "state", name, role, pipelines)
    }

    /// [`TestServer::add_user`] to the state at `state` (a directory or a database).
    pub fn add_user_at(dir: &Path, state: &str, name: &str, role: &str, pipelines: &[&str]) -> String {
        let mut args = vec!["user", "add", name, "--role", role, "--state", state];
        for p in pipelines {
            args.extend(["--pipeline", p]);
        }
        let o = command(dir).args(&args).output().expect("user add runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().last().expect("a token").trim().to_string()
    }

    /// Starts the server in `dir` (state in `state/`, pipelines in `pipelines/`).
    pub fn start(dir: tempfile::TempDir, extra: &[&str]) -> TestServer {
        TestServer::start_with_env(dir, extra, &[])
    }

    /// [`TestServer::start`], with these variables in the server's environment.
    pub fn start_with_env(dir: tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> TestServer {
        TestServer::start_at(dir, "state", extra, env)
    }

    /// [`TestServer::start_with_env`], the state at `state` (a directory or a database).
    pub fn start_at(dir: tempfile::TempDir, state: &str, extra: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut args = vec!["serve", "--state", state, "--pipelines", "pipelines", "--listen", "127.0.0.1:0"];
        args.extend(extra);
        let mut child = command(dir.path()).args(&args).envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("serve starts");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).expect("the listening line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        TestServer { dir, url, child: Some(child), _stdout: stdout, agent }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("the server is running")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn pipelines(&self) -> PathBuf {
        self.dir.path().join("pipelines")
    }

    /// The test provisioner's ledger of pipelines in `pipelines/`.
    pub fn ledger(&self) -> Vec<String> {
        std::fs::read_to_string(self.pipelines().join("out/ledger.txt")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut r = r.unwrap_or_else(|e| panic!("the server does not answer: {e}"));
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        Self::answer(req.call())
    }

    /// Any request, with the headers given: the status, the answer's
    /// headers (name, value) and its body.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> (Answer, Vec<(String, String)>) {
        let url = format!("{}{path}", self.url);
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = builder.header("Content-Type", "application/json").body(body).expect("a request");
        let mut r = self.agent.run(request).unwrap_or_else(|e| panic!("the server does not answer: {e}"));
        let heads = r.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }, heads)
    }

    /// The status of a GET whose body is not read (an event stream).
    pub fn status_only(&self, path: &str, token: Option<&str>) -> u16 {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        req.call().expect("the server answers").status().as_u16()
    }

    pub fn delete(&self, path: &str, token: Option<&str>) -> Answer {
        let mut req = self.agent.delete(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        Self::answer(req.call())
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        self.post_raw(path, token, "application/json", body.to_string().as_bytes())
    }

    pub fn post_raw(&self, path: &str, token: Option<&str>, content_type: &str, body: &[u8]) -> Answer {
        let mut req = self.agent.post(format!("{}{path}", self.url)).header("Content-Type", content_type);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        Self::answer(req.send(body))
    }

    /// A POST of `body` as it is, with `headers` (a webhook's delivery).
    pub fn post_signed(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut req = self.agent.post(format!("{}{path}", self.url)).header("Content-Type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::answer(req.send(body))
    }

    /// GET `/api/v1/runs/{run}` until `ready` holds.
    pub fn wait_run(&self, run: &str, token: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let a = self.get(&format!("/api/v1/runs/{run}"), Some(token));
            if a.status == 200 && ready(&a.body) {
                return a.body;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {} {:#}", a.status, a.body);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a run; its id.
    pub fn start_run(&self, token: &str, body: Value) -> String {
        let a = self.post("/api/v1/runs", Some(token), &body);
        assert_eq!(a.status, 201, "{:#}", a.body);
        a.body["run"].as_str().expect("a run id").to_string()
    }

    /// kill -9, and the directory back, to start another server on it.
    pub fn kill(mut self) -> tempfile::TempDir {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("the server is gone");
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        dir
    }

    /// SIGTERM, the wait for the server to stop, and the directory back.
    pub fn terminate(mut self) -> tempfile::TempDir {
        if let Some(mut c) = self.child.take() {
            // SAFETY: a plain kill(2) of the child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(60);
            while c.try_wait().expect("the server can be waited for").is_none() {
                assert!(Instant::now() < deadline, "the server did not stop on SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether a run's status document says it ended.
pub fn ended(doc: &Value) -> bool {
    matches!(doc["status"].as_str(), Some("succeeded" | "failed" | "cancelled" | "interrupted"))
}
