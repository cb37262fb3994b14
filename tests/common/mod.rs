//! What the end-to-end tests share: a project in a temp directory with a
//! pipeline that uses the real `test` component, and the real binary run in it.
#![allow(dead_code)] // each test file uses its own part of this

pub mod browser;
pub mod forge;
pub mod moto;
pub mod postgres;
pub mod server;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `test` provisioner `t`, with its ledger in `out/ledger.txt`.
pub const TEST_PLUGIN: &str = r#"plugin t {
  kind   = "provisioner"
  source = "builtin:test"
  config { ledger = "out/ledger.txt" }
  allow  { fs = ["out"] }
}
"#;

pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// A project whose pipeline is the `test` provisioner `t` (with a
    /// ledger), one environment `dev`, and `resources`.
    pub fn new(resources: &str) -> Project {
        Project::with_pipeline(&format!("pipeline \"demo\"\n\n{TEST_PLUGIN}\nenvironment dev {{}}\n\n{resources}\n"))
    }

    /// A project whose `demo.pipeline` is `text`.
    pub fn with_pipeline(text: &str) -> Project {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("demo.pipeline"), text).expect("write the pipeline");
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_stackpipe"));
        c.args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("STACKPIPE_CACHE_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-component-cache"));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("the binary runs")
    }

    pub fn ledger(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("out/ledger.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn status(&self, run: Option<&str>) -> Value {
        let mut args = vec!["status", "--json"];
        args.extend(run);
        let o = self.run(&args);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("status --json is JSON")
    }

    pub fn node<'a>(status: &'a Value, name: &str) -> &'a Value {
        Project::find_node(status, name).unwrap_or_else(|| panic!("no node {name} in {status:#}"))
    }

    /// The node, if the status lists it yet: while a run preflights, its
    /// document has no environments.
    pub fn find_node<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
        status["environments"][0]["nodes"].as_array()?.iter().find(|n| n["name"] == name)
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}


/// A process of the binary that is killed if the test ends (or fails) first.
pub struct Running(Option<Child>);

impl Running {
    pub fn new(child: Child) -> Running {
        Running(Some(child))
    }
    pub fn kill(&mut self) {
        if let Some(c) = self.0.as_mut() {
            c.kill().expect("kill -9");
            c.wait().expect("the runner is gone");
        }
    }
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("still running")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The binary run with `args` in `p`, in the background, with no terminal:
/// stdout and stderr are kept for [`finish`].
pub fn spawn(p: &Project, args: &[&str]) -> Running {
    let child = p.command(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    Running::new(child.expect("the binary starts"))
}

/// `status --json` from another process until `ready` holds for it.
pub fn wait_status(p: &Project, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = p.run(&["status", "--json"]);
        if o.status.code() == Some(0) {
            if let Ok(doc) = serde_json::from_slice::<Value>(&o.stdout) {
                if ready(&doc) {
                    return doc;
                }
                assert!(Instant::now() < deadline, "timed out waiting for {what}; last status: {doc:#}");
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {}", text(&o.stderr));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the process to end; what it printed.
pub fn finish(mut running: Running) -> Output {
    let child = running.0.take().expect("still running");
    child.wait_with_output().expect("the run ends")
}

/// Waits for the process at most `limit`; a run still going then is a failure.
pub fn finish_within(mut running: Running, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while running.child().try_wait().expect("the child can be waited for").is_none() {
        if Instant::now() > deadline {
            running.kill();
            panic!("still running after {limit:?}: {}", text(&finish(running).stdout));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    finish(running)
}
