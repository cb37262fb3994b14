//! Runners on one database, as processes: 1,000 `test.step` nodes that each
//! sleep 50 ms, in 25 layers of 40 (each node needs two of the layer before:
//! the critical path is 25 nodes, 1.25 s), deployed at parallelism 40 with
//! 1, 2 and 4 `stackpipe runner` processes of 10 jobs each. The deploy
//! leaves the work to them (`--no-local-runner`). Each count is run once
//! per round, the counts alternating so that the machine's noise falls on
//! all of them; the figure is the run's own time (from its record: start
//! to end), against the critical path and against the work divided by the
//! jobs that can run at once.
//!
//!   cargo bench --bench runners

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/median.rs"]
mod median;
use median::median;
#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;

const NODES: usize = 1000;
const LAYER: usize = 40;
const SLEEP_MS: u64 = 50;
const CAPACITY: usize = 10;
const ROUNDS: usize = 3;

fn pipeline() -> String {
    let mut text = String::from(
        "pipeline \"bench\"\n\nplugin t {\n  kind   = \"provisioner\"\n  source = \"builtin:test\"\n}\n\nenvironment dev {}\n\n",
    );
    for i in 0..NODES {
        let layer = i / LAYER;
        text.push_str(&format!("resource r{i} \"t.step\" {{\n  delay_ms = {SLEEP_MS}\n"));
        if layer > 0 {
            let before = (layer - 1) * LAYER;
            for (k, d) in [(i * 7) % LAYER, (i * 13 + 5) % LAYER].iter().enumerate() {
                text.push_str(&format!("  in{k} = r{}.id\n", before + d));
            }
        }
        text.push_str("}\n");
    }
    text
}

fn stackpipe(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stackpipe"));
    c.current_dir(dir).env("NO_COLOR", "1").stdin(Stdio::null());
    c
}

/// Kills the runners when dropped.
struct Runners(Vec<Child>);

impl Drop for Runners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Deploys on a new database with `runners` runner processes; the run's
/// own time in seconds.
fn deploy(pg: &postgres::Postgres, dir: &Path, runners: usize) -> f64 {
    let url = pg.database("runners");
    let db = url.rsplit('/').next().expect("a database").to_string();
    let _running = Runners(
        (0..runners)
            .map(|r| {
                stackpipe(dir)
                    .args(["runner", "--state", &url, "--name", &format!("bench-{r}"), "--capacity", &CAPACITY.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("a runner")
            })
            .collect(),
    );
    let deploy = stackpipe(dir)
        .args(["deploy", "bench.pipeline", "--state", &url, "--no-local-runner", "--parallelism", "40"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("deploys");
    // Every runner is up before the run's first job is ready: the figure
    // is theirs, not their start.
    let started = Instant::now();
    while pg.psql(&db, "SELECT count(*) FROM pg_tables WHERE tablename = 'runners'") != "1"
        || pg.psql(&db, "SELECT count(*) FROM runners").parse::<usize>().unwrap_or(0) < runners
    {
        assert!(started.elapsed() < Duration::from_secs(60), "the runners never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = deploy.wait_with_output().expect("the deploy ends");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ms = pg.psql(&db, "SELECT (record::json->>'finished_ms')::bigint - (record::json->>'started_ms')::bigint FROM runs");
    ms.parse::<f64>().expect("the run's time") / 1000.0
}


fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    let pg = postgres::Postgres::shared();
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("bench.pipeline"), pipeline()).expect("write");
    let counts = [1usize, 2, 4];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    for round in 0..ROUNDS {
        for (i, &n) in counts.iter().enumerate() {
            let secs = deploy(pg, dir.path(), n);
            println!("round {}: {n} runner(s): {secs:.3} s", round + 1);
            times[i].push(secs);
        }
    }
    let critical = (NODES / LAYER) as f64 * SLEEP_MS as f64 / 1000.0;
    let work = NODES as f64 * SLEEP_MS as f64 / 1000.0;
    for (i, &n) in counts.iter().enumerate() {
        let slots = (n * CAPACITY).min(40);
        let bound = critical.max(work / slots as f64);
        let t = median(&mut times[i]);
        println!(
            "{NODES} nodes x {SLEEP_MS} ms, parallelism 40, {n} runner(s) of {CAPACITY}: {t:.3} s (median of {ROUNDS}); \
             critical path {critical:.2} s ({:.2}x); work / {slots} slots {:.2} s ({:.2}x of the bound {bound:.2} s)",
            t / critical,
            work / slots as f64,
            t / bound
        );
    }
}
