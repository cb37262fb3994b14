//! From a file save to the new plan printed, in `stackpipe watch`.
//!
//! A pipeline of RESOURCES `test` steps (a chain and a fan-out) and a
//! `local` file is watched in plan mode. Each round saves an edit (as
//! editors do: a new file renamed over the old) and times until the new
//! plan's last line (`Plan: ...`) is on the watch's stdout. The time
//! includes the debounce (the watch's default, 50 ms), the recompile, one
//! read of the state, loading the plugins and every node's refresh and
//! preview through the wasm components.
//!
//!     cargo bench --bench watch

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 40;
const RESOURCES: usize = 20;

fn pipeline(round: usize) -> String {
    let mut p = String::from(
        r#"pipeline "bench"
plugin t {
  kind   = "provisioner"
  source = "builtin:test"
}
plugin local {
  kind   = "provisioner"
  source = "builtin:local"
  allow  { fs = ["out"] }
}
environment dev {}
"#,
    );
    p.push_str(&format!("resource r0 \"t.step\" {{ round = {round} }}\n"));
    for i in 1..RESOURCES {
        let dep = if i % 2 == 0 { format!("from = r{}.id", i - 1) } else { "from = r0.id".to_string() };
        p.push_str(&format!("resource r{i} \"t.step\" {{ {dep} }}\n"));
    }
    p.push_str(&format!(
        "resource page \"local.file\" {{\n  path = \"out/page.txt\"\n  content = \"round {round}\"\n}}\n"
    ));
    p
}

fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn main() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("bench.pipeline");
    std::fs::write(&file, pipeline(0)).expect("write the pipeline");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_stackpipe"))
        .args(["watch", "bench.pipeline"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("STACKPIPE_CACHE_DIR", repo.join("target/bench-component-cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("stackpipe watch starts");
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    // The end of a plan: its last line.
    let plan_done = |lines: &mpsc::Receiver<(Instant, String)>| -> Instant {
        loop {
            let (at, line) = lines.recv_timeout(Duration::from_secs(60)).expect("the watch prints a plan");
            if line.starts_with("Plan: ") || line.starts_with("No changes.") {
                return at;
            }
        }
    };
    plan_done(&lines);
    let mut took = Vec::with_capacity(ROUNDS);
    for round in 1..=ROUNDS {
        // Let the last cycle's "watching" line through, then save.
        std::thread::sleep(Duration::from_millis(150));
        while lines.try_recv().is_ok() {}
        let saved = Instant::now();
        save(&file, &pipeline(round));
        took.push(plan_done(&lines) - saved);
    }
    let _ = child.kill();
    let _ = child.wait();
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "watch: save -> new plan printed ({} resources, plan mode, {ROUNDS} saves): median {:.0} ms, p90 {:.0} ms, min {:.0} ms, max {:.0} ms (target <= 250 ms median)",
        RESOURCES + 1,
        ms(took[took.len() / 2]),
        ms(took[took.len() * 9 / 10]),
        ms(took[0]),
        ms(took[took.len() - 1]),
    );
}
