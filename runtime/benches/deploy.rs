//! Whole-deploy figures, through the real runtime: the `test` component,
//! durable redb state, the group-committing journal.
//!
//! - 10,000 no-op `test.step` nodes in a random layered DAG (~3 references
//!   each), default parallelism: total time, overhead per node, peak RSS.
//!   Targets: <= 2 s, <= 100 us per node, <= 150 MB.
//! - 500 nodes with random `delay_ms` (10-100), `--parallelism 0`: wall time
//!   against the critical path. Target: <= 1.02 x critical path + 20 ms.
//!
//!   cargo bench -p stackpipe-runtime --bench deploy

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use stackpipe_dsl::CompileOptions;
use stackpipe_runtime::plugin::{ArtifactCache, PluginHost};
use stackpipe_runtime::run::{execute, Events, Mode, RunOptions};
use stackpipe_runtime::state::{RunStatus, StateStore};

#[path = "../../dsl/benches/support/layered.rs"]
mod layered;
use layered::generate;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn deploy(dir: &Path, text: &str, parallelism: usize) -> f64 {
    let file = dir.join("bench.pipeline");
    std::fs::write(&file, text).expect("write");
    let pipeline = stackpipe_runtime::pipeline::load(&file, CompileOptions::default(), stackpipe_runtime::pipeline::DEFAULT_MAX_PIPELINE_BYTES)
        .expect("compiles");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let cache = ArtifactCache::in_dir(dir.join("cache"));
    let host = Arc::new(PluginHost::new(cache).expect("host"));
    let store = Arc::new(StateStore::open(&dir.join(".stackpipe")).expect("state"));
    let opts = RunOptions { parallelism, ..Default::default() };
    let stop = stackpipe_runtime::run::StopSignal::new();
    let started = Instant::now();
    let summary = rt.block_on(execute(&pipeline, Mode::Deploy, host, store, &opts, Events::none(), stop)).expect("runs");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(summary.status, RunStatus::Succeeded);
    secs
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    // Warm the compiled-component cache so it is not part of the figures.
    let warm = tempfile::tempdir().expect("tmp");
    let (text, _) = generate(10, 2, false);
    deploy(warm.path(), &text, 10);

    // This machine is shared: one run's wall time varies by a third. The
    // median of several is the figure; CPU time (all threads) is steadier.
    let (text, _) = generate(10_000, 40, false);
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut rss = 0.0;
    for _ in 0..RUNS {
        let dir = tempfile::tempdir().expect("tmp");
        copy_cache(warm.path(), dir.path());
        let cpu = cpu_secs();
        walls.push(deploy(dir.path(), &text, 10));
        cpus.push(cpu_secs() - cpu);
        if rss == 0.0 {
            // The peak of one deploy, as a process running it once would have.
            rss = peak_rss_mb();
        }
    }
    let (wall, cpu) = (median(&mut walls), median(&mut cpus));
    println!(
        "deploy 10,000 no-op nodes (parallelism 10), median of {RUNS}: {:.3} s total, {:.1} us per node \
         (fastest {:.1} us), CPU {:.1} us per node, peak RSS {:.0} MB",
        wall,
        wall * 1e6 / 10_000.0,
        walls[0] * 1e6 / 10_000.0,
        cpu * 1e6 / 10_000.0,
        rss
    );

    let dir = tempfile::tempdir().expect("tmp");
    copy_cache(warm.path(), dir.path());
    let (text, _) = generate(10_000, 40, false);
    let secs = deploy(dir.path(), &text, 0);
    println!("deploy 10,000 no-op nodes (parallelism 0): {:.3} s total, {:.1} us per node", secs, secs * 1e6 / 10_000.0);

    let (text, nodes) = generate(500, 10, true);
    let mut finish = vec![0u64; nodes.len()];
    for (i, (delay, deps)) in nodes.iter().enumerate() {
        finish[i] = deps.iter().map(|&d| finish[d]).max().unwrap_or(0) + delay;
    }
    let critical = *finish.iter().max().unwrap_or(&0) as f64 / 1000.0;
    let mut walls: Vec<f64> = (0..RUNS)
        .map(|_| {
            let dir = tempfile::tempdir().expect("tmp");
            copy_cache(warm.path(), dir.path());
            deploy(dir.path(), &text, 0)
        })
        .collect();
    let secs = median(&mut walls);
    println!(
        "deploy 500 nodes with 10-100 ms delays (parallelism 0), median of {RUNS}: {:.3} s; critical path {:.3} s; \
         ratio {:.3}; over 1.02 x critical: {:+.1} ms",
        secs,
        critical,
        secs / critical,
        (secs - 1.02 * critical) * 1000.0
    );
}

/// Runs of each figure; the median is reported.
const RUNS: usize = 5;

/// The median of `xs`, which it sorts.
fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// CPU time of this process so far, every thread, user and system.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn copy_cache(from: &Path, to: &Path) {
    let (src, dst) = (from.join("cache"), to.join("cache"));
    std::fs::create_dir_all(&dst).ok();
    if let Ok(entries) = std::fs::read_dir(&src) {
        for e in entries.flatten() {
            let _ = std::fs::copy(e.path(), dst.join(e.file_name()));
        }
    }
}
