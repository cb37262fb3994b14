//! The state on PostgreSQL against the embedded redb store, through the
//! real runtime: one process deploys 10,000 no-op `test.step` nodes (the
//! graph of `runtime/benches/deploy.rs`, parallelism 10), once on each
//! backend per round, the two alternating so that the machine's noise
//! falls on both. PostgreSQL is a real cluster on loopback
//! (`tests/common/postgres.rs`), `fsync` off as in the tests: the figure
//! is the cost of the round trips and the server's work, not of the disk.
//!
//!   cargo bench --bench state_postgres

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use stackpipe_dsl::CompileOptions;
use stackpipe_runtime::plugin::{ArtifactCache, PluginHost};
use stackpipe_runtime::run::{execute, Events, Mode, RunOptions, StopSignal};
use stackpipe_runtime::state::{RunStatus, StateStore};
use stackpipe_state_postgres::PostgresStore;

#[path = "../dsl/benches/support/layered.rs"]
mod layered;
#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;

const NODES: usize = 10_000;
const ROUNDS: usize = 3;

/// Deploys `text` on `store`; the wall time in seconds.
fn deploy(dir: &Path, text: &str, store: StateStore, cache: &Path) -> f64 {
    let file = dir.join("bench.pipeline");
    std::fs::write(&file, text).expect("write");
    let pipeline = stackpipe_runtime::pipeline::load(&file, CompileOptions::default(), stackpipe_runtime::pipeline::DEFAULT_MAX_PIPELINE_BYTES)
        .expect("compiles");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let host = Arc::new(PluginHost::new(ArtifactCache::in_dir(cache.to_path_buf())).expect("host"));
    let opts = RunOptions { parallelism: 10, ..Default::default() };
    let started = Instant::now();
    let summary =
        rt.block_on(execute(&pipeline, Mode::Deploy, host, Arc::new(store), &opts, Events::none(), StopSignal::new())).expect("runs");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(summary.status, RunStatus::Succeeded);
    secs
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
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
    let (text, _) = layered::generate(NODES, 40, false);
    let (mut on_redb, mut on_pg) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().expect("tmp");
        let redb = StateStore::open(&dir.path().join(".stackpipe")).expect("state");
        on_redb.push(deploy(dir.path(), &text, redb, cache.path()));
        let shared = StateStore::with_backend(PostgresStore::connect(&pg.database("bench")).expect("connects"));
        on_pg.push(deploy(dir.path(), &text, shared, cache.path()));
        println!("round {}: redb {:.3} s, PostgreSQL {:.3} s", round + 1, on_redb[round], on_pg[round]);
    }
    let (redb, pg) = (median(&mut on_redb), median(&mut on_pg));
    let per_node = |s: f64| s * 1e6 / NODES as f64;
    println!(
        "deploy {NODES} no-op nodes (parallelism 10), median of {ROUNDS}: redb {:.1} us per node, PostgreSQL {:.1} us per \
         node: {:.2}x",
        per_node(redb),
        per_node(pg),
        pg / redb
    );
}
