//! Parallel against sequential: `deploy --parallelism 10` and
//! `--parallelism 1` of the seed scenario (`examples/aws-env.pipeline`, 12
//! resources, 5 levels) against moto server, in one run.
//!
//! moto answers in ~10 ms; real AWS API calls take far longer, and resources
//! take seconds to minutes to become ready. Every call therefore goes through
//! `scripts/latency_proxy.py`, which holds each request for
//! STACKPIPE_BENCH_LATENCY_MS (default 150 ms) before forwarding it. Each
//! configuration runs ROUNDS times against a freshly reset emulator; the
//! medians and their ratio are printed.
//!
//!     cargo bench --bench aws_parallel

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::moto::{repo, Moto};

const ROUNDS: usize = 3;

fn deploy(endpoint: &str, parallelism: usize) -> Duration {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::copy(repo().join("examples/aws-env.pipeline"), dir.path().join("aws-env.pipeline")).expect("copy the example");
    let started = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_stackpipe"))
        .args(["deploy", "aws-env.pipeline", "--env", "dev", "--yes", "--var"])
        .arg(format!("aws_endpoint={endpoint}"))
        .args(["--parallelism", &parallelism.to_string()])
        .current_dir(dir.path())
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
        .env("STACKPIPE_CACHE_DIR", repo().join("target/bench-component-cache"))
        .output()
        .expect("stackpipe runs");
    let took = started.elapsed();
    assert!(o.status.success(), "deploy failed:\n{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let latency: u64 = std::env::var("STACKPIPE_BENCH_LATENCY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(150);
    let moto = Moto::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let mut proxy = Command::new("python3")
        .arg(repo().join("scripts/latency_proxy.py"))
        .args([port.to_string(), moto.url(), latency.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the proxy");
    {
        use std::io::BufRead;
        let mut ready = String::new();
        let out = proxy.stdout.as_mut().expect("the proxy's stdout");
        std::io::BufReader::new(out).read_line(&mut ready).expect("the proxy starts");
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    // Warm-up: compiles the component into the cache; moto loads EC2 lazily.
    deploy(&endpoint, 10);
    let (mut sequential, mut parallel) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        moto.reset();
        sequential.push(deploy(&endpoint, 1));
        moto.reset();
        parallel.push(deploy(&endpoint, 10));
    }
    let _ = proxy.kill();
    let _ = proxy.wait();
    let (s, p) = (median(sequential.clone()), median(parallel.clone()));
    println!("seed scenario, 12 resources, every API call +{latency} ms, {ROUNDS} rounds (median):");
    println!("  --parallelism 1:  {:>7.2} s   {sequential:.2?}", s.as_secs_f64());
    println!("  --parallelism 10: {:>7.2} s   {parallel:.2?}", p.as_secs_f64());
    println!("  speed-up: {:.2}x", s.as_secs_f64() / p.as_secs_f64());
}
