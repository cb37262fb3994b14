//! The state on PostgreSQL against the embedded redb store, through the
//! real runtime: 10,000 no-op `test.step` nodes (the graph of
//! `runtime/benches/deploy.rs`, parallelism 10) deployed three ways per
//! round, alternating so that the machine's noise falls on all three:
//!
//! - walked by one process on redb;
//! - walked by one process on PostgreSQL;
//! - on PostgreSQL through the job queue, worked by one runner (in the
//!   same process, 10 jobs at once): every job claimed, run and completed
//!   through the database, the graph advanced there.
//!
//! PostgreSQL is a real cluster on loopback (`tests/common/postgres.rs`),
//! `fsync` off as in the tests: the figure is the cost of the round trips
//! and the server's work, not of the disk.
//!
//!   cargo bench --bench state_postgres

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use stackpipe_dsl::CompileOptions;
use stackpipe_runtime::pipeline::LoadedPipeline;
use stackpipe_runtime::plugin::{ArtifactCache, PluginHost};
use stackpipe_runtime::run::{execute, Events, Mode, Run, RunOptions, Runner, RunnerOptions, Steering, StopSignal};
use stackpipe_runtime::state::{RunStatus, StateStore};
use stackpipe_state_postgres::{JobQueue, PostgresStore};

#[path = "../dsl/benches/support/layered.rs"]
mod layered;
#[path = "support/median.rs"]
mod median;
use median::median;
#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;

/// The nodes deployed (`STACKPIPE_BENCH_NODES` for a quicker look).
fn nodes() -> usize {
    std::env::var("STACKPIPE_BENCH_NODES").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000)
}
const ROUNDS: usize = 3;

/// What a deploy of `text` in `dir` needs: the pipeline, a runtime and a
/// plugin host whose compiled components are cached in `cache`.
fn prepare(dir: &Path, text: &str, cache: &Path) -> (LoadedPipeline, tokio::runtime::Runtime, Arc<PluginHost>) {
    let file = dir.join("bench.pipeline");
    std::fs::write(&file, text).expect("write");
    let pipeline = stackpipe_runtime::pipeline::load(&file, CompileOptions::default(), stackpipe_runtime::pipeline::DEFAULT_MAX_PIPELINE_BYTES)
        .expect("compiles");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let host = Arc::new(PluginHost::new(ArtifactCache::in_dir(cache.to_path_buf())).expect("host"));
    (pipeline, rt, host)
}

/// Deploys `text` on `store`, walked in this process; the wall time in seconds.
fn deploy(dir: &Path, text: &str, store: StateStore, cache: &Path) -> f64 {
    let (pipeline, rt, host) = prepare(dir, text, cache);
    let opts = RunOptions { parallelism: 10, ..Default::default() };
    let started = Instant::now();
    let summary =
        rt.block_on(execute(&pipeline, Mode::Deploy, host, Arc::new(store), &opts, Events::none(), StopSignal::new())).expect("runs");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(summary.status, RunStatus::Succeeded);
    secs
}

/// Deploys `text` on the database at `url` through its job queue, worked
/// by one runner of 10 jobs in this process; the wall time in seconds.
fn deploy_on_a_runner(dir: &Path, text: &str, url: &str, cache: &Path) -> f64 {
    let (pipeline, rt, host) = prepare(dir, text, cache);
    let store = Arc::new(StateStore::with_backend(PostgresStore::connect(url).expect("connects")));
    let queue = JobQueue::connect(url).expect("the queue");
    let opts = RunOptions { parallelism: 10, ..Default::default() };
    let mut worker = RunnerOptions::new("bench".into());
    worker.capacity = 10;
    let started = Instant::now();
    let summary = rt
        .block_on(async {
            let runner = Runner::new(store.clone(), queue.clone(), host.clone(), worker);
            let run = Run::start(&pipeline, Mode::Deploy, host, store, &opts, Steering::default(), None).await?;
            run.on_runners(queue, Some(runner)).await
        })
        .expect("runs");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(summary.status, RunStatus::Succeeded);
    secs
}


fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    let pg = postgres::Postgres::shared();
    let cache = tempfile::tempdir().expect("tmp");
    // Warm the compiled-component cache so it is not part of the figures.
    {
        let dir = tempfile::tempdir().expect("tmp");
        let (text, _) = layered::generate(10, 2, false);
        deploy(dir.path(), &text, StateStore::open(&dir.path().join(".stackpipe")).expect("state"), cache.path());
    }
    let nodes = nodes();
    let (text, _) = layered::generate(nodes, 40, false);
    let (mut on_redb, mut on_pg, mut on_runner) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().expect("tmp");
        let redb = StateStore::open(&dir.path().join(".stackpipe")).expect("state");
        on_redb.push(deploy(dir.path(), &text, redb, cache.path()));
        let shared = StateStore::with_backend(PostgresStore::connect(&pg.database("bench")).expect("connects"));
        on_pg.push(deploy(dir.path(), &text, shared, cache.path()));
        on_runner.push(deploy_on_a_runner(dir.path(), &text, &pg.database("bench"), cache.path()));
        println!(
            "round {}: redb {:.3} s, PostgreSQL {:.3} s, PostgreSQL with a runner {:.3} s",
            round + 1,
            on_redb[round],
            on_pg[round],
            on_runner[round]
        );
    }
    let (redb, walked, worked) = (median(&mut on_redb), median(&mut on_pg), median(&mut on_runner));
    let per_node = |s: f64| s * 1e6 / nodes as f64;
    println!(
        "deploy {nodes} no-op nodes (parallelism 10), median of {ROUNDS}: redb {:.1} us per node; PostgreSQL walked in \
         one process {:.1} us per node ({:.2}x); PostgreSQL through the job queue with one runner {:.1} us per node \
         ({:.2}x redb)",
        per_node(redb),
        per_node(walked),
        walked / redb,
        per_node(worked),
        worked / redb
    );
}
