//! Service pipelines' latency (issue 21, point 10), against a real
//! `stackpipe serve` (the bench profile's binary) and a repository served
//! by `git daemon` on loopback:
//!
//!     cargo bench --bench service_pipeline
//!
//! Twenty times: a commit is pushed to `main`, and its signed push event is
//! delivered to the service's webhook. Measured each time:
//! 1. webhook → build started: from just before the delivery is sent to the
//!    build stage's `started_ms` in the execution's record (one clock: the
//!    same machine). Target: under 1 s.
//! 2. push → first environment deployed: from just before `git push` to
//!    the first time the execution says `dev` succeeded (polled every 5 ms).
//!    The build is trivial (`sh build.sh` writing one file); `dev` holds
//!    one `test` step that takes the artifact's tag.
//!
//! Each pipeline is followed to its end before the next push, so none
//! waits behind another.

#[allow(dead_code)]
#[path = "../tests/common/forge.rs"]
mod forge;
#[allow(dead_code)]
#[path = "../tests/common/server.rs"]
mod server;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use forge::{push_event, signature, Forge};
use server::TestServer;

const SECRET: &str = "bench-webhook-secret";
const ROUNDS: usize = 20;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn pipeline(repo: &str) -> String {
    format!(
        r#"pipeline "bench"

plugin t {{
  kind   = "provisioner"
  source = "builtin:test"
}}
plugin secrets {{
  kind   = "credentials"
  source = "builtin:env"
  allow  {{ env = ["BENCH_WEBHOOK_SECRET"] }}
}}

service "api" {{
  repo = "{repo}"
  build {{
    command  = ["sh", "build.sh"]
    artifact = "out/a.txt"
  }}
  webhook {{
    resolver = secrets
    config {{ fields = {{ secret = "BENCH_WEBHOOK_SECRET" }} }}
  }}
}}

environment dev {{}}

resource app "t.step" {{ version = service.api.artifact.tag }}
"#
    )
}

fn stats(name: &str, mut ms: Vec<u64>) {
    ms.sort_unstable();
    let median = ms[ms.len() / 2];
    println!("{name}: median {median} ms, min {} ms, max {} ms ({} rounds)", ms[0], ms[ms.len() - 1], ms.len());
}

fn main() {
    let dir = TestServer::prepare(&[]);
    let forge = Forge::new(&dir.path().join("forge"), &[("build.sh", "mkdir -p out && echo \"$STACKPIPE_COMMIT\" > out/a.txt\n")], true);
    std::fs::write(dir.path().join("pipelines/bench.pipeline"), pipeline(&forge.url())).unwrap();
    let token = TestServer::add_user(dir.path(), "otto", "operator", &[]);
    let s = TestServer::start_with_env(dir, &[], &[("BENCH_WEBHOOK_SECRET", SECRET)]);
    let (mut to_build, mut to_dev) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        forge.commit(&[("src.txt", &format!("{round}\n"))], &format!("Change {round}"));
        let pushed = Instant::now();
        let before = forge.push("main");
        let body = push_event("refs/heads/main", &before, &forge.head(), "bench");
        let sig = signature(SECRET, &body);
        let sent_ms = now_ms();
        let a = s.post_signed("/api/v1/services/api/webhook", &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)], &body);
        assert_eq!(a.status, 202, "{:#}", a.body);
        let id = a.body["id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut build_started = None;
        loop {
            let x = s.get(&format!("/api/v1/executions/{id}"), Some(&token)).body;
            if build_started.is_none() {
                build_started = x["build"]["started_ms"].as_u64();
            }
            let dev_done = x["deployments"].as_array().is_some_and(|d| d.iter().any(|e| e["name"] == "dev" && e["status"] == "succeeded"));
            if dev_done && to_dev.len() == round {
                to_dev.push(pushed.elapsed().as_millis() as u64);
            }
            if !matches!(x["status"].as_str(), Some("queued" | "running")) {
                assert_eq!(x["status"], "succeeded", "{x:#}");
                break;
            }
            assert!(Instant::now() < deadline, "the pipeline did not end: {x:#}");
            std::thread::sleep(Duration::from_millis(5));
        }
        to_build.push(build_started.expect("the build started").saturating_sub(sent_ms));
    }
    stats("webhook -> build started", to_build);
    stats("push -> dev deployed", to_dev);
}
