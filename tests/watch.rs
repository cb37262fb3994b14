//! `stackpipe watch`, end to end: the real binary watching real files,
//! edited the way editors save them, with the real `test` and `local`
//! components and a real redb state file.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{text, Project};
use serde_json::Value;

/// A `stackpipe watch` process; its stdout and stderr are collected as
/// they come. Killed if the test ends first.
struct Watching {
    child: Option<Child>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Watching {
    fn start(p: &Project, args: &[&str]) -> Watching {
        let mut all = vec!["watch", "demo.pipeline"];
        all.extend_from_slice(args);
        let mut child = p
            .command(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let sink = Arc::new(Mutex::new(String::new()));
            let into = sink.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut s = into.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
            sink
        };
        let out = collect(Box::new(child.stdout.take().unwrap()));
        let err = collect(Box::new(child.stderr.take().unwrap()));
        Watching { child: Some(child), out, err }
    }

    fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Waits until stdout satisfies `ready`.
    fn wait(&self, what: &str, ready: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(&self.stdout()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for cycle `n` to be over (the watch says it is watching again).
    fn wait_cycles(&self, n: usize) {
        self.wait(&format!("{n} cycle(s)"), |o| o.matches("\nwatching ").count() >= n);
    }

    /// The output of cycle `n` (1-based), from its header to its end.
    fn cycle(&self, n: usize) -> String {
        let out = self.stdout();
        let at = out.find(&format!(" #{n} · ")).unwrap_or_else(|| panic!("no cycle {n} in\n{out}"));
        let start = out[..at].rfind('\n').map_or(0, |i| i + 1);
        let rest = &out[start..];
        let end = rest.match_indices("\n── ").next().map_or(rest.len(), |(i, _)| i);
        rest[..end].to_string()
    }

    fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Ctrl-C: the watch ends cleanly.
    fn interrupt(mut self) -> (Option<i32>, String, String) {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) with a live child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "the watch did not end after Ctrl-C\n{}", self.stdout());
            std::thread::sleep(Duration::from_millis(20));
        };
        // Let the reader threads drain the pipes.
        std::thread::sleep(Duration::from_millis(100));
        (status.code(), self.stdout(), self.stderr())
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Saves `text` as `path` the way editors do: a new file renamed over the old.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn pipeline(p: &Project) -> std::path::PathBuf {
    p.path().join("demo.pipeline")
}

fn append(p: &Project, more: &str) {
    let path = pipeline(p);
    let now = std::fs::read_to_string(&path).expect("read");
    save(&path, &format!("{now}\n{more}\n"));
}

#[test]
fn an_added_resource_is_planned_and_the_plan_starts_with_what_changed() {
    let p = Project::new(r#"resource a "t.step" {}"#);
    let w = Watching::start(&p, &[]);
    w.wait_cycles(1);
    let first = w.cycle(1);
    assert!(first.contains("plan #1 · started"), "{first}");
    assert!(first.contains("Plan: 1 to add, 0 to change, 0 to destroy."), "{first}");
    assert!(!first.contains("since the last plan"), "{first}");

    append(&p, r#"resource b "t.step" { from_a = a.id }"#);
    w.wait_cycles(2);
    let second = w.cycle(2);
    assert!(second.contains("plan #2 · demo.pipeline changed"), "{second}");
    let diff_at = second.find("since the last plan:\n  + dev/b (t.step): create (new in the pipeline)\n");
    let plan_at = second.find("environment dev");
    assert!(diff_at.is_some() && diff_at < plan_at, "the difference comes first:\n{second}");
    assert!(second.contains("Plan: 2 to add, 0 to change, 0 to destroy."), "{second}");
    // A plan writes nothing.
    assert!(p.ledger().is_empty());
    let (code, out, err) = w.interrupt();
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.ends_with("stopped watching\n"), "{out}");
}

#[test]
fn plan_mode_shows_what_uses_a_changed_output_as_changing() {
    let p = Project::new(
        r#"resource a "t.step" { size = 1 }
resource b "t.step" { from = jsonencode(a.inputs) }
resource c "t.step" { from = a.id }"#,
    );
    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let w = Watching::start(&p, &[]);
    w.wait_cycles(1);
    assert!(w.cycle(1).contains("No changes."), "{}", w.cycle(1));

    // `a` changes: `b` takes its inputs, which change with it; `c` its id, which an update keeps.
    let edited = std::fs::read_to_string(pipeline(&p)).unwrap().replace("size = 1", "size = 2");
    save(&pipeline(&p), &edited);
    w.wait_cycles(2);
    let second = w.cycle(2);
    assert!(second.contains("  ~ dev/b (t.step): update in place (was: no change)\n"), "{second}");
    assert!(second.contains("      ~ from = \"{\\\"size\\\":1}\" -> (known after apply)\n"), "{second}");
    assert!(!second.contains("\"c\""), "{second}");
    assert!(second.contains("Plan: 0 to add, 2 to change, 0 to destroy."), "{second}");
    let (code, out, err) = w.interrupt();
    assert_eq!(code, Some(0), "{out}\n{err}");
}

#[test]
fn a_broken_save_shows_its_diagnostic_and_the_next_save_recovers() {
    let p = Project::new(r#"resource a "t.step" {}"#);
    let w = Watching::start(&p, &[]);
    w.wait_cycles(1);
    append(&p, "resource b \"t.step\" {\n  size = 1 +\n}");
    w.wait_cycles(2);
    assert!(w.cycle(2).contains("demo.pipeline has errors (shown above); fix them and save"), "{}", w.cycle(2));
    common::wait_for("the diagnostic", || w.stderr().contains("demo.pipeline:"));
    let err = w.stderr();
    assert!(err.contains("size = 1 +"), "the diagnostic shows the line: {err}");

    let fixed = std::fs::read_to_string(pipeline(&p)).unwrap().replace("size = 1 +", "size = 1");
    save(&pipeline(&p), &fixed);
    w.wait_cycles(3);
    let third = w.cycle(3);
    assert!(third.contains("Plan: 2 to add"), "{third}");
    // The difference is against the last good plan.
    assert!(third.contains("+ dev/b (t.step): create (new in the pipeline)"), "{third}");
    let (code, _, _) = w.interrupt();
    assert_eq!(code, Some(0));
}

#[test]
fn deploy_mode_applies_only_what_changed_and_what_its_change_reaches() {
    let p = Project::new(
        r#"resource a "t.step" { size = 1  outputs = { url = "http://a" } }
resource b "t.step" { url = a.url }
resource c "t.step" { size = 1 }"#,
    );
    let w = Watching::start(&p, &["--deploy"]);
    w.wait_cycles(1);
    assert!(w.cycle(1).contains("succeeded"), "{}", w.cycle(1));
    assert_eq!(p.ledger().len(), 3, "{:?}", p.ledger());

    // `a` changes in place, but its outputs do not: `b` is not touched.
    let edited = std::fs::read_to_string(pipeline(&p))
        .unwrap()
        .replace(r#"resource a "t.step" { size = 1"#, r#"resource a "t.step" { size = 2"#);
    save(&pipeline(&p), &edited);
    w.wait_cycles(2);
    let ledger = p.ledger();
    assert_eq!(ledger[3..], ["apply demo/dev/a"], "{ledger:?}\n{}", w.cycle(2));
    // Its output changes: now `b` is.
    let edited = edited.replace("http://a", "http://a2");
    save(&pipeline(&p), &edited);
    w.wait_cycles(3);
    let ledger = p.ledger();
    assert_eq!(ledger[4..], ["apply demo/dev/a", "apply demo/dev/b"], "{ledger:?}\n{}", w.cycle(3));
    // A new resource is deployed.
    append(&p, r#"resource d "t.step" { from_c = c.id }"#);
    w.wait_cycles(4);
    assert_eq!(p.ledger()[6..], ["apply demo/dev/d"], "{}", w.cycle(4));

    let (code, out, err) = w.interrupt();
    assert_eq!(code, Some(0), "{out}\n{err}");
    // Nothing is left locked: a deploy from here finds nothing to do.
    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(p.ledger().len(), 7);
}

#[test]
fn a_change_during_a_run_stops_it_the_safe_way_and_the_next_run_uses_the_new_file() {
    let p = Project::new(
        r#"resource slow "t.step" { delay_ms = 1500 }
resource after "t.step" { from = slow.id }"#,
    );
    let w = Watching::start(&p, &["--deploy"]);
    // Save while `slow` is being applied.
    common::wait_for("the first apply to start", || w.stdout().contains("deploy #1"));
    std::thread::sleep(Duration::from_millis(500));
    append(&p, r#"resource extra "t.step" {}"#);
    w.wait("the next run", |o| o.contains("deploy #2 · demo.pipeline changed"));
    let first = w.cycle(1);
    assert!(first.contains("cancelled"), "{first}\n{}", w.stderr());
    assert!(w.stderr().contains("files changed: stopping this deploy (operations in flight finish)"), "{}", w.stderr());
    // The apply in flight finished; `after` never started in that run.
    let ledger = p.ledger();
    assert!(ledger.contains(&"apply demo/dev/slow".to_string()), "{ledger:?}");
    w.wait_cycles(1);
    let second = w.cycle(2);
    assert!(second.contains("succeeded"), "{second}\n{}", w.stderr());
    let ledger = p.ledger();
    assert_eq!(ledger.iter().filter(|l| l.ends_with("/slow")).count(), 1, "slow is applied once: {ledger:?}");
    assert!(
        ledger.contains(&"apply demo/dev/after".to_string()) && ledger.contains(&"apply demo/dev/extra".to_string())
    );
    let (code, _, _) = w.interrupt();
    assert_eq!(code, Some(0));
}

#[test]
fn a_hundred_rapid_saves_end_with_the_state_of_the_last_file() {
    let p = Project::new(r#"resource a "t.step" { outputs = { v = "start" } }"#);
    let mut w = Watching::start(&p, &["--deploy", "--debounce-ms", "20"]);
    w.wait_cycles(1);
    let base = std::fs::read_to_string(pipeline(&p)).unwrap();
    for i in 0..100 {
        let next = base.replace(r#"v = "start""#, &format!(r#"v = "{i}""#));
        if i % 2 == 0 {
            save(&pipeline(&p), &next);
        } else {
            std::fs::write(pipeline(&p), next).unwrap();
        }
        std::thread::sleep(Duration::from_millis(i % 7));
    }
    let last_output = || {
        let o = p.run(&["outputs", "demo.pipeline", "--json"]);
        serde_json::from_slice::<Value>(&o.stdout).ok().map(|d| d["dev"]["resources"]["a"]["v"].clone())
    };
    common::wait_for("the last save deployed", || {
        std::thread::sleep(Duration::from_millis(100));
        last_output() == Some(Value::from("99"))
    });
    assert!(w.is_running(), "the watch is still up");
    let (code, out, err) = w.interrupt();
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Whatever the bursts were, the last run succeeded, with the last file.
    let last = out.rfind("\nrun r").map(|i| &out[i..]).unwrap_or("");
    assert!(last.contains("succeeded"), "{out}");
    assert_eq!(last_output(), Some(Value::from("99")));
}

/// Appends a custom section to a component: the same code, new bytes, a new digest.
fn rebuild(component: &Path, marker: &str) {
    let mut bytes = std::fs::read(component).unwrap();
    let name = b"stackpipe-test-rebuild";
    let payload = marker.as_bytes();
    let size = 1 + name.len() + payload.len();
    assert!(size < 128 && name.len() < 128, "one-byte LEB128 lengths");
    bytes.push(0); // custom section
    bytes.push(size as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    save(component, ""); // a partial write first, as a slow build would leave it
    std::fs::write(component, bytes).unwrap();
}

#[test]
fn a_plugin_rebuilt_on_disk_is_reloaded() {
    let p = Project::with_pipeline(
        r#"pipeline "demo"
plugin t {
  kind   = "provisioner"
  source = "plugins/test.wasm"
  config { ledger = "out/ledger.txt" }
  allow  { fs = ["out"] }
}
environment dev {}
resource a "t.step" {}
"#,
    );
    std::fs::create_dir(p.path().join("plugins")).unwrap();
    let wasm = p.path().join("plugins/test.wasm");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/dist/test.wasm"), &wasm).unwrap();
    let w = Watching::start(&p, &["--deploy"]);
    w.wait_cycles(1);
    assert!(w.stdout().contains("watching 2 files"), "{}", w.stdout());
    rebuild(&wasm, "v2");
    w.wait("a cycle for the plugin", |o| {
        o.contains("plugins/test.wasm changed") && o.matches("\nwatching ").count() >= 2
    });
    let (code, out, _) = w.interrupt();
    assert_eq!(code, Some(0));
    // The last run ran the new component: its digest is in the job's input.
    let runs: Value = serde_json::from_slice(&p.run(&["runs", "--json"]).stdout).unwrap();
    let digest_of = |run: &str| {
        let doc = p.status(Some(run));
        doc["environments"][0]["nodes"][0]["input"]["plugin_digest"].as_str().map(str::to_string)
    };
    let newest = runs[0]["run"].as_str().unwrap().to_string();
    let oldest = runs.as_array().unwrap().last().unwrap()["run"].as_str().unwrap().to_string();
    assert_ne!(newest, oldest, "{out}");
    let (d1, d2) = (digest_of(&oldest), digest_of(&newest));
    assert!(d1.is_some() && d2.is_some() && d1 != d2, "{d1:?} {d2:?}");
}

#[test]
fn a_file_a_provisioner_reads_is_watched_and_its_change_deployed() {
    let p = Project::with_pipeline(
        r#"pipeline "demo"
plugin local {
  kind   = "provisioner"
  source = "builtin:local"
  config { root = "out" }
  allow  { fs = ["out", "templates"] }
}
environment dev {}
resource page "local.file" {
  path   = "${env.name}/index.html"
  source = "templates/index.html"
}
resource sum "local.file" {
  path    = "${env.name}/sum.txt"
  content = page.sha256
}
"#,
    );
    std::fs::create_dir(p.path().join("templates")).unwrap();
    let template = p.path().join("templates/index.html");
    std::fs::write(&template, "<h1>one</h1>\n").unwrap();
    let w = Watching::start(&p, &["--deploy"]);
    w.wait_cycles(1);
    assert!(w.cycle(1).contains("succeeded"), "{}\n{}", w.cycle(1), w.stderr());
    // The pipeline and the template the provisioner declared it reads.
    assert!(w.stdout().contains("watching 2 files"), "{}", w.stdout());
    let page = p.path().join("out/dev/index.html");
    assert_eq!(std::fs::read_to_string(&page).unwrap(), "<h1>one</h1>\n");

    save(&template, "<h1>two</h1>\n");
    w.wait_cycles(2);
    let second = w.cycle(2);
    assert!(second.contains("templates/index.html changed"), "{second}");
    assert!(second.contains("dev/page: update") && second.contains("dev/sum: update"), "{second}");
    assert_eq!(std::fs::read_to_string(&page).unwrap(), "<h1>two</h1>\n");
    let (code, _, _) = w.interrupt();
    assert_eq!(code, Some(0));
}
