//! The command line as a team server's client (issue 19, "the CLI is its
//! client"): a real `stackpipe serve` on a loopback port, users made with
//! `stackpipe user add`, and the real CLI with `--server`, which must print
//! what it prints locally, with the same exit codes.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{finish_within, text, Project, Running, TEST_PLUGIN};
use serde_json::Value;

/// A `stackpipe serve` of its own, killed when the test ends.
struct Server {
    url: String,
    state: PathBuf,
    _process: Running,
}

impl Server {
    /// A server with its state in `p/server-state` and an empty pipelines
    /// directory (runs bring their pipeline), and two users: `alice`, an
    /// operator, and `vic`, a viewer. Their tokens: [`Server::token`].
    fn start(p: &Project) -> Server {
        let state = p.path().join("server-state");
        let pipelines = p.path().join("server-pipelines");
        std::fs::create_dir_all(&pipelines).expect("the pipelines directory");
        for (name, role) in [("alice", "operator"), ("vic", "viewer")] {
            let o = p.run(&["user", "add", name, "--role", role, "--state", path_str(&state)]);
            assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
            let token = text(&o.stdout).lines().last().expect("the token, last").trim().to_string();
            std::fs::write(p.path().join(format!("{name}.token")), token).expect("keep the token");
        }
        let log = std::fs::File::create(p.path().join("server.log")).expect("the server's log");
        let mut child = p
            .command(&["serve", "--state", path_str(&state), "--pipelines", path_str(&pipelines), "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("the server starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("its stdout"));
        let process = Running::new(child);
        let mut first = String::new();
        stdout.read_line(&mut first).expect("the listening line");
        // Whatever else it prints must not fill the pipe and stop it.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let url = first
            .trim()
            .strip_prefix("stackpipe server listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("not the listening line: {first:?}"))
            .to_string();
        Server { url, state, _process: process }
    }

    fn token(p: &Project, user: &str) -> String {
        std::fs::read_to_string(p.path().join(format!("{user}.token"))).expect("the token")
    }

    /// `GET /api/v1{path}` as `user`: the JSON.
    fn get(&self, p: &Project, user: &str, path: &str) -> Value {
        let mut answer = ureq::get(format!("{}/api/v1{path}", self.url))
            .header("Authorization", format!("Bearer {}", Server::token(p, user)))
            .call()
            .expect("the server answers");
        serde_json::from_slice(&answer.body_mut().read_to_vec().expect("the body")).expect("JSON")
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The binary, in `p`, as `user` (None: with no token at all) against
/// `server`; no saved logins are read but the test's own.
fn client(p: &Project, user: Option<&str>, args: &[&str]) -> Command {
    let mut c = p.command(args);
    c.env_remove("STACKPIPE_SERVER").env("XDG_CONFIG_HOME", p.path().join("config")).env_remove("STACKPIPE_TOKEN");
    if let Some(u) = user {
        c.env("STACKPIPE_TOKEN", Server::token(p, u));
    }
    c
}

fn run_as(p: &Project, user: Option<&str>, args: &[&str]) -> Output {
    client(p, user, args).stdin(Stdio::null()).output().expect("the binary runs")
}

fn spawn_as(p: &Project, user: Option<&str>, args: &[&str]) -> Running {
    let child = client(p, user, args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    Running::new(child.expect("the binary starts"))
}

/// `status --json --server` until `ready` holds for it.
fn wait_status(p: &Project, server: &Server, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = run_as(p, Some("alice"), &["status", "--json", "--server", &server.url]);
        if let Ok(doc) = serde_json::from_slice::<Value>(&o.stdout) {
            if ready(&doc) {
                return doc;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {} {}", text(&o.stdout), text(&o.stderr));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The lines a run prints, with what depends on the clock and on who
/// approved (and how) left out.
fn comparable(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !l.contains("approved by") && !l.contains("waiting for approval"))
        .map(|l| match (l.rfind(" ("), l.ends_with(" ms)") || l.ends_with(" s)")) {
            (Some(at), true) => format!("{} (TIME)", &l[..at]),
            _ => l.to_string(),
        })
        .collect()
}

const GATED: &str = r#"pipeline "demo"

PLUGIN
environment dev {
  approval = true
}

resource a "t.step" { delay_ms = 20  outputs = { url = "http://a" } }
resource b "t.step" { from_a = a.url }

output url = a.url
"#;

/// `deploy FILE --server` sends the pipeline and follows the run there as
/// a local deploy shows one: the same lines, the same summary; its gate is
/// approved from another process with `approve --server`, which a viewer
/// may not do and nobody without a token; `status --json`, `runs`, `logs`
/// and `outputs` read the server's.
#[test]
fn a_deploy_sent_to_a_server_is_followed_here_and_approved_from_elsewhere() {
    let pipeline = GATED.replace("PLUGIN", TEST_PLUGIN);
    let p = Project::with_pipeline(&pipeline);
    let server = Server::start(&p);
    let url = server.url.as_str();

    let deploy = spawn_as(&p, Some("alice"), &["deploy", "demo.pipeline", "--server", url, "-m", "from afar"]);
    wait_status(&p, &server, "the environment gate", |d| d["environments"][0]["waiting_for"].is_object());

    let o = run_as(&p, Some("vic"), &["approve", "--server", url, "--env", "dev"]);
    assert_eq!(o.status.code(), Some(2), "a viewer's approval is refused as invalid use: {}", text(&o.stderr));
    assert_eq!(text(&o.stderr), "error: this needs the role operator on pipeline `demo`; user `vic` has the role viewer\n");
    let o = run_as(&p, None, &["approve", "--server", url, "--env", "dev"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).starts_with(&format!("error: no token for the server {url}: run `stackpipe login {url}`")), "{}", text(&o.stderr));

    let o = run_as(&p, Some("alice"), &["approve", "--server", url, "--env", "dev"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "approved dev (environment gate) as alice\n");

    let o = finish_within(deploy, Duration::from_secs(60));
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains(&format!("  ? waiting for approval of dev: stackpipe approve r000001 --env dev --server {url}")), "{out}");
    // The same run here, its gate approved in advance, prints the same.
    let local = Project::with_pipeline(&pipeline);
    let here = local.run(&["deploy", "demo.pipeline", "--approve-env", "dev", "-m", "from afar"]);
    assert_eq!(here.status.code(), Some(0), "{}", text(&here.stderr));
    assert_eq!(comparable(&out), comparable(&text(&here.stdout)), "remote:\n{out}\nlocal:\n{}", text(&here.stdout));
    assert!(out.ends_with("\noutputs (dev):\n  url = \"http://a\"\n\nrun r000001 succeeded\n"), "{out}");
    // It ran on the server, in its workspace of the pipeline.
    let ledger = std::fs::read_to_string(server.state.join("workspaces/demo/out/ledger.txt")).expect("the server's ledger");
    assert_eq!(ledger.lines().filter(|l| l.starts_with("apply ")).count(), 2, "{ledger}");
    assert!(p.ledger().is_empty(), "nothing ran here");

    let o = run_as(&p, Some("vic"), &["status", "--json", "--server", url]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let status: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(status, server.get(&p, "vic", "/runs/r000001"), "status --json is the server's document");
    assert_eq!(status["message"], "from afar");

    let o = run_as(&p, Some("vic"), &["runs", "--server", url]);
    assert!(text(&o.stdout).starts_with("r000001  deploy   succeeded  demo "), "{}", text(&o.stdout));
    let o = run_as(&p, Some("vic"), &["logs", "r000001", "--server", url, "--node", "b", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let lines: Vec<Value> = text(&o.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l["node"] == "b"), "{lines:?}");
    let o = run_as(&p, Some("vic"), &["outputs", "demo.pipeline", "--server", url]);
    assert!(text(&o.stdout).contains("  outputs\n    url = \"http://a\"\n"), "{}", text(&o.stdout));
}

/// Ctrl-C detaches a deploy from its run, which goes on on the server;
/// `logs --follow --server` follows it (its events from the start), and
/// `cancel --server` cancels it.
#[test]
fn a_detached_run_goes_on_and_is_followed_and_cancelled_through_the_server() {
    let p = Project::with_pipeline(&GATED.replace("PLUGIN", TEST_PLUGIN));
    let server = Server::start(&p);
    let url = server.url.as_str();

    let mut deploy = spawn_as(&p, Some("alice"), &["deploy", "demo.pipeline", "--server", url]);
    wait_status(&p, &server, "the environment gate", |d| d["environments"][0]["waiting_for"].is_object());
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(deploy.child().id() as i32, libc::SIGINT) };
    let o = finish_within(deploy, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(130), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains(&format!("detached: run r000001 goes on on {url}. Follow it again: stackpipe logs r000001 --follow --server {url}")),
        "{}",
        text(&o.stderr)
    );
    let doc = wait_status(&p, &server, "the run, still waiting", |d| d["status"] == "running");
    assert!(doc["environments"][0]["waiting_for"].is_object(), "{doc:#}");

    let follow = spawn_as(&p, Some("vic"), &["logs", "--follow", "--server", url]);
    std::thread::sleep(Duration::from_millis(300));
    let o = run_as(&p, Some("alice"), &["cancel", "--server", url]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "cancelling run r000001: operations in flight finish, nothing more runs\n");
    let o = finish_within(follow, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.starts_with("run r000001: deploy demo (2 resources; environments: dev)\n"), "from the run's start: {out}");
    assert!(out.lines().last().is_some_and(|l| l.starts_with("run r000001 cancelled (")), "{out}");

    let o = run_as(&p, Some("alice"), &["cancel", "r000001", "--server", url]);
    assert_eq!(o.status.code(), Some(2), "as locally, a run not in progress cannot be cancelled");
    assert!(text(&o.stderr).contains("run r000001 is not in progress"), "{}", text(&o.stderr));
    assert!(p.ledger().is_empty() && !server.state.join("workspaces/demo/out/ledger.txt").exists(), "nothing was applied");
}

/// A run the server's preflight refuses reads as one refused here: exit 2,
/// the same report (and `preflight_failed` with --json), nothing started.
/// `login` saves the token the other commands then send; `logout` forgets it.
#[test]
fn a_refused_preflight_reads_as_a_local_one_and_login_keeps_the_token() {
    let p = Project::new(r#"resource a "t.step" { fail_on = "sometimes" }"#);
    let server = Server::start(&p);
    let url = server.url.as_str();
    let here = p.run(&["deploy", "demo.pipeline", "--json"]);
    assert_eq!(here.status.code(), Some(2));
    let there = run_as(&p, Some("alice"), &["deploy", "demo.pipeline", "--json", "--server", url]);
    assert_eq!(there.status.code(), Some(2), "{}", text(&there.stderr));
    assert_eq!(text(&there.stderr), text(&here.stderr));
    assert_eq!(text(&there.stdout), text(&here.stdout));
    assert!(text(&there.stdout).contains("\"event\":\"preflight_failed\""), "{}", text(&there.stdout));
    let o = run_as(&p, Some("alice"), &["runs", "--server", url]);
    assert_eq!(text(&o.stdout), "no runs yet\n");

    let mut login = client(&p, None, &["login", url]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("login");
    std::io::Write::write_all(login.stdin.as_mut().expect("stdin"), format!("{}\n", Server::token(&p, "vic")).as_bytes())
        .expect("the token on stdin");
    let o = login.wait_with_output().expect("login ends");
    assert_eq!(o.status.code(), Some(0));
    let saved = p.path().join("config/stackpipe/credentials.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&saved).expect("saved").permissions().mode() & 0o777, 0o600);
    let o = run_as(&p, None, &["runs", "--server", &format!("{url}/")]);
    assert_eq!((o.status.code(), text(&o.stdout)), (Some(0), "no runs yet\n".to_string()), "{}", text(&o.stderr));
    let o = run_as(&p, None, &["logout", url]);
    assert_eq!(o.status.code(), Some(0));
    let o = run_as(&p, None, &["runs", "--server", url]);
    assert_eq!(o.status.code(), Some(2), "no token any more");

    let mut bad = client(&p, None, &["login", url]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("login");
    std::io::Write::write_all(bad.stdin.as_mut().expect("stdin"), b"spt_not-a-token\n").expect("stdin");
    let o = bad.wait_with_output().expect("login ends");
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).starts_with("error: the token is not valid"), "{}", text(&o.stderr));
}
