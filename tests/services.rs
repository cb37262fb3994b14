//! Service pipelines end to end (seed 001): a real `stackpipe serve`, a
//! real repository served by `git daemon` on loopback (and one reached by
//! its path, polled), webhooks signed as GitHub signs them, real builds,
//! deploy runs of the `test` provisioner, the CLI's `service` commands, and
//! a listener that records the commit statuses posted.

mod common;

use std::time::{Duration, Instant};

use common::forge::{pull_request_event, push_event, signature, Forge, StatusSink};
use common::server::{command, TestServer};
use common::TEST_PLUGIN;
use serde_json::{json, Value};

const SECRET: &str = "webhook-s3cret-value";

/// The build: the artifact names the commit it was built from.
const BUILD: &str = "#!/bin/sh\nset -e\nmkdir -p out\necho \"api built from $STACKPIPE_COMMIT\" > out/api.txt\necho building api\n";

fn shop_pipeline(repo: &str, statuses: u16) -> String {
    format!(
        r#"pipeline "shop"

{TEST_PLUGIN}
plugin secrets {{
  kind   = "credentials"
  source = "builtin:env"
  allow  {{ env = ["SHOP_WEBHOOK_SECRET", "SHOP_FORGE_TOKEN"] }}
}}

service "api" {{
  repo          = "{repo}"
  branches      = ["main"]
  tags          = ["v*"]
  pull_requests = "build"
  paths         = ["services/api/"]
  build {{
    command  = ["sh", "services/api/build.sh"]
    artifact = "out/api.txt"
    timeout  = "2m"
  }}
  webhook {{
    resolver = secrets
    config {{ fields = {{ secret = "SHOP_WEBHOOK_SECRET" }} }}
  }}
  commit_status {{
    api = "http://127.0.0.1:{statuses}/repos/acme/shop"
    token {{
      resolver = secrets
      config {{ fields = {{ token = "SHOP_FORGE_TOKEN" }} }}
    }}
  }}
}}

environment dev {{}}
environment staging {{ after = [dev] }}
environment prod {{
  after    = [staging]
  approval = true
}}

resource app "t.step" {{
  version = service.api.artifact.tag
  digest  = service.api.artifact.digest
}}
"#
    )
}

struct Shop {
    server: TestServer,
    forge: Forge,
    operator: String,
    admin: String,
    sink: StatusSink,
}

fn shop() -> Shop {
    let sink = StatusSink::start();
    let dir = TestServer::prepare(&[]);
    let forge = Forge::new(
        &dir.path().join("forge"),
        &[("services/api/build.sh", BUILD), ("README.md", "shop\n")],
        true,
    );
    std::fs::write(dir.path().join("pipelines/shop.pipeline"), shop_pipeline(&forge.url(), sink.port)).unwrap();
    let operator = TestServer::add_user(dir.path(), "otto", "operator", &[]);
    let admin = TestServer::add_user(dir.path(), "ada", "admin", &[]);
    let env = [("SHOP_WEBHOOK_SECRET", SECRET), ("SHOP_FORGE_TOKEN", "forge-token-1")];
    let server = TestServer::start_with_env(dir, &[], &env);
    Shop { server, forge, operator, admin, sink }
}

impl Shop {
    fn deliver(&self, event: &str, body: &[u8], secret: &str) -> common::server::Answer {
        let sig = signature(secret, body);
        self.server.post_signed(
            "/api/v1/services/api/webhook",
            &[("X-GitHub-Event", event), ("X-GitHub-Delivery", "d-1"), ("X-Hub-Signature-256", &sig)],
            body,
        )
    }

    /// A delivery as Gitea and Forgejo send it: their own event header and
    /// the signature as bare hex.
    fn deliver_gitea(&self, event: &str, body: &[u8]) -> common::server::Answer {
        let sig = signature(SECRET, body);
        let hex = sig.trim_start_matches("sha256=");
        self.server.post_signed("/api/v1/services/api/webhook", &[("X-Gitea-Event", event), ("X-Gitea-Signature", hex)], body)
    }

    /// Pushes `branch` and delivers its push event; the answer.
    fn push_and_deliver(&self, branch: &str) -> common::server::Answer {
        let before = self.forge.push(branch);
        let after = self.forge.head();
        self.deliver("push", &push_event(&format!("refs/heads/{branch}"), &before, &after, "a change"), SECRET)
    }

    fn execution(&self, id: &str) -> Value {
        let a = self.server.get(&format!("/api/v1/executions/{id}"), Some(&self.operator));
        assert_eq!(a.status, 200, "{:#}", a.body);
        a.body
    }

    fn wait(&self, id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let x = self.execution(id);
            if ready(&x) {
                return x;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {x:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn executions(&self) -> Vec<Value> {
        let a = self.server.get("/api/v1/services/api/executions", Some(&self.operator));
        assert_eq!(a.status, 200, "{:#}", a.body);
        a.body.as_array().cloned().unwrap()
    }

    fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = command(self.server.path())
            .args(args)
            .args(["--server", &self.server.url])
            .env("STACKPIPE_TOKEN", &self.admin)
            .output()
            .unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    /// The `version` the resource `app` was last applied with in `env`.
    fn deployed_version(&self, env: &str) -> Option<String> {
        let a = self.server.get("/api/v1/state/resources", Some(&self.operator));
        let all = a.body["resources"].as_array().cloned().unwrap_or_default();
        // `[key, record]` pairs.
        all.iter()
            .find(|r| r[0]["environment"] == env && r[0]["resource"] == "app")
            .and_then(|r| r[1]["attributes"]["version"].as_str().map(str::to_string))
    }
}

fn ended(x: &Value) -> bool {
    !matches!(x["status"].as_str(), Some("queued" | "running"))
}

fn id_of(a: &common::server::Answer) -> String {
    assert_eq!(a.status, 202, "{:#}", a.body);
    a.body["id"].as_str().expect("an execution id").to_string()
}

#[test]
fn pushes_build_and_promote_through_the_environments_as_the_service_says() {
    let s = shop();

    // A push to main: built, deployed to dev then staging; prod waits for approval.
    let sha = s.forge.commit(&[("services/api/main.txt", "v1\n")], "Add the api");
    let id = id_of(&s.push_and_deliver("main"));
    let x = s.wait(&id, "prod to wait for its approval", |x| {
        x["deployments"].as_array().is_some_and(|d| d.iter().any(|e| e["name"] == "prod" && e["status"] == "waiting"))
    });
    assert_eq!(x["kind"], "production");
    assert_eq!(x["commit"]["sha"], sha.as_str());
    assert_eq!(x["commit"]["message"], "a change");
    assert_eq!(x["artifact"]["tag"], sha.as_str(), "a branch build's tag is its commit: {x:#}");
    assert_eq!(x["build"]["status"], "succeeded");
    assert_eq!(s.deployed_version("dev").as_deref(), Some(sha.as_str()));
    assert_eq!(s.deployed_version("staging").as_deref(), Some(sha.as_str()));
    assert_eq!(s.deployed_version("prod"), None, "prod waits");
    let (ok, out) = s.cli(&["service", "logs", &id]);
    assert!(ok && out.contains("[build] building api") && out.contains("[deploy dev/app"), "{out}");
    let (ok, out) = s.cli(&["service", "gate", &id, "prod", "yes"]);
    assert!(ok, "{out}");
    let x = s.wait(&id, "the pipeline to end", ended);
    assert_eq!(x["status"], "succeeded", "{x:#}");
    assert_eq!(s.deployed_version("prod").as_deref(), Some(sha.as_str()));
    // The artifact is stored by digest and holds what the build made.
    let stored = std::fs::read_to_string(x["artifact"]["path"].as_str().unwrap()).unwrap();
    assert_eq!(stored, format!("api built from {sha}\n"));

    // A push to another branch, and one outside `paths`, start nothing.
    s.forge.checkout("feature", true);
    s.forge.commit(&[("services/api/main.txt", "v2\n")], "Try");
    let a = s.push_and_deliver("feature");
    assert_eq!(a.status, 200, "{:#}", a.body);
    assert!(a.body["ignored"].as_str().unwrap().contains("feature"), "{:#}", a.body);
    s.forge.checkout("main", false);
    s.forge.commit(&[("README.md", "shop, documented\n")], "Docs");
    let before = s.forge.push("main");
    let a = s.deliver_gitea("push", &push_event("refs/heads/main", &before, &s.forge.head(), "Docs"));
    assert!(a.body["ignored"].as_str().is_some_and(|w| w.contains("no change under services/api/")), "{:#}", a.body);
    assert_eq!(s.executions().len(), 1);

    // A bad or missing signature is 401 and queues nothing.
    let body = push_event("refs/heads/main", &"1".repeat(40), &s.forge.head(), "forged");
    assert_eq!(s.deliver("push", &body, "not-the-secret").status, 401);
    let unsigned = s.server.post_signed("/api/v1/services/api/webhook", &[("X-GitHub-Event", "push")], &body);
    assert_eq!(unsigned.status, 401);
    assert_eq!(s.executions().len(), 1, "a refused delivery queued something");

    // Tag v1.2.0 matches `v*`: the artifact's tag is the git tag. A
    // rejection at prod skips it (and fails the pipeline).
    s.forge.tag("v1.2.0");
    let tagged = s.forge.head();
    let body = push_event("refs/tags/v1.2.0", &"0".repeat(40), &tagged, "Release");
    let id = id_of(&s.deliver("push", &body, SECRET));
    let x = s.wait(&id, "prod to wait", |x| {
        x["deployments"].as_array().is_some_and(|d| d.iter().any(|e| e["name"] == "prod" && e["status"] == "waiting"))
    });
    assert_eq!(x["artifact"]["tag"], "v1.2.0");
    assert_eq!(x["commit"]["tag"], "v1.2.0");
    assert_eq!(s.deployed_version("staging").as_deref(), Some("v1.2.0"));
    let (ok, out) = s.cli(&["service", "gate", &id, "prod", "no", "-m", "not today"]);
    assert!(ok, "{out}");
    let x = s.wait(&id, "the pipeline to end", ended);
    assert_eq!(x["status"], "failed", "{x:#}");
    assert_eq!(s.deployed_version("prod").as_deref(), Some(sha.as_str()), "a rejected prod keeps what it had");

    // A pull request builds only.
    s.forge.checkout("feature", false);
    let pr_sha = s.forge.head();
    s.forge.push("feature");
    let id = id_of(&s.deliver("pull_request", &pull_request_event(7, "main", "feature", &pr_sha), SECRET));
    let x = s.wait(&id, "the pull request's pipeline to end", ended);
    assert_eq!((x["kind"].as_str(), x["status"].as_str()), (Some("preview"), Some("succeeded")), "{x:#}");
    assert_eq!(x["build"]["status"], "succeeded");
    assert_eq!(x["deploy"]["status"], "skipped");
    assert!(x["run"].is_null(), "a build-only pipeline starts no run");

    // Pushes that come while a pipeline runs wait their turn, in order. A
    // cancel in the deploy stage stops the run where it is: prod untouched.
    s.forge.checkout("main", false);
    s.forge.commit(&[("services/api/main.txt", "v3\n")], "Three");
    let first = id_of(&s.push_and_deliver("main"));
    let sha4 = s.forge.commit(&[("services/api/main.txt", "v4\n")], "Four");
    let second = id_of(&s.push_and_deliver("main"));
    s.wait(&first, "prod to wait", |x| {
        x["deployments"].as_array().is_some_and(|d| d.iter().any(|e| e["name"] == "prod" && e["status"] == "waiting"))
    });
    assert_eq!(s.execution(&second)["status"], "queued", "the second push waits for the first");
    let (ok, out) = s.cli(&["service", "cancel", &first]);
    assert!(ok, "{out}");
    let x = s.wait(&first, "the cancelled pipeline to end", ended);
    assert_eq!((x["status"].as_str(), x["deploy"]["status"].as_str()), (Some("cancelled"), Some("cancelled")), "{x:#}");
    assert_eq!(s.deployed_version("prod").as_deref(), Some(sha.as_str()), "a cancelled deploy leaves prod as it was");
    let y = s.wait(&second, "the second push to wait at prod", |x| {
        x["deployments"].as_array().is_some_and(|d| d.iter().any(|e| e["name"] == "prod" && e["status"] == "waiting"))
    });
    assert!(y["started_ms"].as_u64() >= x["ended_ms"].as_u64(), "the second started before the first ended");
    assert_eq!(s.cli(&["service", "gate", &second, "prod", "yes"]).0, true);
    assert_eq!(s.wait(&second, "the second to end", ended)["status"], "succeeded");
    assert_eq!(s.deployed_version("prod").as_deref(), Some(sha4.as_str()));

    // `pull_requests = "deploy"` (the file changed; the server reads it
    // again): a pull request deploys to the `previews = true` environments only.
    let file = s.server.pipelines().join("shop.pipeline");
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replace("pull_requests = \"build\"", "pull_requests = \"deploy\"").replace("environment dev {}", "environment dev { previews = true }");
    std::fs::write(&file, text).unwrap();
    s.forge.checkout("feature", false);
    let pr_sha = s.forge.commit(&[("services/api/main.txt", "preview\n")], "Preview me");
    s.forge.push("feature");
    let id = id_of(&s.deliver("pull_request", &pull_request_event(8, "main", "feature", &pr_sha), SECRET));
    let x = s.wait(&id, "the preview to deploy", ended);
    assert_eq!((x["kind"].as_str(), x["status"].as_str()), (Some("preview"), Some("succeeded")), "{x:#}");
    assert_eq!(x["environments"], json!(["dev"]));
    assert_eq!(s.deployed_version("dev").as_deref(), Some(pr_sha.as_str()));
    assert_eq!(s.deployed_version("staging").as_deref(), Some(sha4.as_str()), "a preview reaches no other environment");

    // Deployments disabled (at run time, audited): a manual trigger builds only.
    let (ok, out) = s.cli(&["service", "disable", "api", "--deploys"]);
    assert!(ok, "{out}");
    s.forge.checkout("main", false);
    let (ok, out) = s.cli(&["service", "run", "api", "--branch", "main", "--follow"]);
    assert!(ok, "{out}");
    let last = &s.executions()[0];
    assert_eq!((last["trigger"].as_str(), last["deploy"]["status"].as_str()), (Some("manual"), Some("skipped")), "{last:#}");
    assert!(last["deploy"]["note"].as_str().unwrap().contains("disabled"), "{last:#}");
    let audit = std::fs::read_to_string(s.server.path().join("state/audit.jsonl")).unwrap_or_default();
    assert!(audit.contains("deployments off") && audit.contains("\"ada\""), "{audit}");
    // Pipelines disabled: nothing runs, manual or pushed.
    let (ok, _) = s.cli(&["service", "disable", "api"]);
    assert!(ok);
    let (ok, out) = s.cli(&["service", "run", "api"]);
    assert!(!ok && out.contains("disabled"), "{out}");

    // The table, filtered by environment: only pipelines that deploy to prod.
    let (ok, out) = s.cli(&["service", "pipelines", "api", "--filter-envs", "prod"]);
    assert!(ok, "{out}");
    assert!(out.lines().next().unwrap().starts_with("ID"), "{out}");
    assert_eq!(out.lines().count(), 1 + 5, "four pushes and the manual run deploy to prod; the pull requests do not:\n{out}");

    // Commit statuses went to the forge: pending, then success, in the GitHub shape.
    let seen = s.sink.seen.lock().unwrap().clone();
    let first: Vec<&(String, String, Value)> = seen.iter().filter(|(p, _, _)| p.ends_with(&sha)).collect();
    assert!(first.len() >= 2, "{seen:#?}");
    assert_eq!(first[0].0, format!("/repos/acme/shop/statuses/{sha}"));
    assert_eq!(first[0].1, "token forge-token-1");
    assert_eq!(first[0].2["state"], "pending");
    assert_eq!(first[0].2["context"], "stackpipe/api");
    assert_eq!(first.last().unwrap().2["state"], "success");
    assert!(first[0].2["target_url"].as_str().unwrap().starts_with(&s.server.url));
    // The secrets never show: not in the server's answers nor its audit log.
    let everything = format!("{}{audit}", serde_json::to_string(&s.executions()).unwrap());
    assert!(!everything.contains(SECRET) && !everything.contains("forge-token-1"));
}

#[test]
fn a_polled_local_repository_builds_and_a_failed_or_cancelled_build_deploys_nothing() {
    let dir = TestServer::prepare(&[]);
    let forge = Forge::new(&dir.path().join("forge"), &[("build.sh", "#!/bin/sh\nmkdir -p out && echo ok > out/a.txt\n")], false);
    let pipeline = format!(
        r#"pipeline "jobs"

{TEST_PLUGIN}
service "worker" {{
  repo = "{0}"
  poll = "5s"
  build {{
    command  = ["sh", "build.sh"]
    artifact = "out/a.txt"
  }}
}}

service "tools" {{
  repo = "{0}"
  build {{
    command  = ["sh", "build.sh"]
    artifact = "out/a.txt"
  }}
}}

environment dev {{}}

resource app "t.step" {{ version = service.worker.artifact.tag }}
"#,
        forge.bare.display()
    );
    std::fs::write(dir.path().join("pipelines/jobs.pipeline"), pipeline).unwrap();
    let token = TestServer::add_user(dir.path(), "otto", "operator", &[]);
    let s = TestServer::start(dir, &[]);
    let list = |s: &TestServer| s.get("/api/v1/services/worker/executions", Some(&token)).body.as_array().cloned().unwrap();
    let wait = |s: &TestServer, what: &str, ready: &dyn Fn(&[Value]) -> bool| -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let all = list(s);
            if ready(&all) {
                return all;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {all:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // The first poll only learns what is there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get("/api/v1/services/worker", Some(&token)).body["service"]["last_poll_ms"].is_null() {
        assert!(Instant::now() < deadline, "the service is never polled");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(list(&s).is_empty());

    // A push the poll finds: built and deployed.
    let sha = forge.commit(&[("src.txt", "1\n")], "One");
    forge.push("main");
    let all = wait(&s, "the polled push to deploy", &|all| all.first().is_some_and(ended));
    assert_eq!(all[0]["trigger"], "poll");
    assert_eq!(all[0]["status"], "succeeded", "{:#}", all[0]);
    assert_eq!(all[0]["commit"]["sha"], sha.as_str());
    assert_eq!(all[0]["commit"]["author"], "Ada Lovelace");

    // A failing build: the deploy stage is skipped.
    forge.commit(&[("build.sh", "#!/bin/sh\necho compiling; exit 3\n")], "Break the build");
    forge.push("main");
    let all = wait(&s, "the failing build", &|all| all.len() == 2 && ended(&all[0]));
    assert_eq!(all[0]["status"], "failed", "{:#}", all[0]);
    assert_eq!(all[0]["build"]["status"], "failed");
    assert_eq!(all[0]["deploy"]["status"], "skipped");
    assert!(all[0]["run"].is_null());

    // A build cancelled: its whole process tree is killed, nothing deploys.
    let pidfile = s.path().join("sleeper.pid");
    let script = format!("#!/bin/sh\nsleep 600 &\necho $! > {}\nwait\n", pidfile.display());
    forge.commit(&[("build.sh", script.as_str())], "A slow build");
    forge.push("main");
    let all = wait(&s, "the slow build to start", &|all| all.len() == 3 && all[0]["build"]["status"] == "running");
    let id = all[0]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pidfile.exists() {
        assert!(Instant::now() < deadline, "the build never started its sleeper");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
    let a = s.post(&format!("/api/v1/executions/{id}/cancel"), Some(&token), &json!({}));
    assert_eq!(a.status, 202, "{:#}", a.body);
    let all = wait(&s, "the cancelled build to end", &|all| ended(&all[0]));
    assert_eq!(all[0]["status"], "cancelled", "{:#}", all[0]);
    assert_eq!(all[0]["deploy"]["status"], "skipped");
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|st| st.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(), "the build's child {pid} outlived the cancel");
    // Rerun of the first pipeline: the same commit, built and deployed again.
    let first = list(&s).last().unwrap()["id"].as_str().unwrap().to_string();
    let a = s.post(&format!("/api/v1/executions/{first}/rerun"), Some(&token), &json!({}));
    assert_eq!(a.status, 201, "{:#}", a.body);
    assert_eq!(a.body["commit"]["sha"], sha.as_str());
    let all = wait(&s, "the rerun", &|all| all.len() == 4 && ended(&all[0]));
    assert_eq!((all[0]["status"].as_str(), all[0]["rerun_of"].as_str()), (Some("succeeded"), Some(first.as_str())), "{:#}", all[0]);

    // A service that no resource uses only builds.
    let a = s.post("/api/v1/services/tools/executions", Some(&token), &json!({ "branch": "main", "commit": sha }));
    assert_eq!(a.status, 201, "{:#}", a.body);
    let id = a.body["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let x = loop {
        let x = s.get(&format!("/api/v1/executions/{id}"), Some(&token)).body;
        if ended(&x) {
            break x;
        }
        assert!(Instant::now() < deadline, "{x:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((x["status"].as_str(), x["build"]["status"].as_str(), x["deploy"]["status"].as_str()), (Some("succeeded"), Some("succeeded"), Some("skipped")), "{x:#}");
    assert!(x["deploy"]["note"].as_str().unwrap().contains("only builds") && x["run"].is_null(), "{x:#}");
}

#[test]
fn a_server_killed_while_a_deploy_waits_follows_the_resumed_run_when_it_starts_again() {
    let dir = TestServer::prepare(&[]);
    let forge = Forge::new(&dir.path().join("forge"), &[("build.sh", "#!/bin/sh\nmkdir -p out && echo ok > out/a.txt\n")], false);
    let pipeline = format!(
        r#"pipeline "gated"

{TEST_PLUGIN}
service "web" {{
  repo = "{}"
  build {{
    command  = ["sh", "build.sh"]
    artifact = "out/a.txt"
  }}
}}

environment prod {{ approval = true }}

resource app "t.step" {{ version = service.web.artifact.tag }}
"#,
        forge.bare.display()
    );
    std::fs::write(dir.path().join("pipelines/gated.pipeline"), pipeline).unwrap();
    let token = TestServer::add_user(dir.path(), "otto", "operator", &[]);
    let s = TestServer::start(dir, &[]);
    let a = s.post("/api/v1/services/web/executions", Some(&token), &json!({ "branch": "main" }));
    assert_eq!(a.status, 201, "{:#}", a.body);
    let id = a.body["id"].as_str().unwrap().to_string();
    let get = |s: &TestServer| s.get(&format!("/api/v1/executions/{id}"), Some(&token)).body;
    let wait = |s: &TestServer, what: &str, ready: &dyn Fn(&Value) -> bool| -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let x = get(s);
            if ready(&x) {
                return x;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {x:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let waiting = |x: &Value| x["deployments"][0]["status"] == "waiting";
    let x = wait(&s, "prod to wait", &waiting);
    let run = x["run"].as_str().unwrap().to_string();
    // A second pipeline waits its turn behind it.
    let a = s.post("/api/v1/services/web/executions", Some(&token), &json!({ "branch": "main" }));
    assert_eq!(a.status, 201, "{:#}", a.body);
    let second = a.body["id"].as_str().unwrap().to_string();

    // kill -9, and started again: the server resumes the run, the pipeline
    // follows it rather than calling itself interrupted, and the second is
    // queued again behind it.
    let dir = s.kill();
    let s = TestServer::start(dir, &[]);
    let x = wait(&s, "the resumed run to wait again", &waiting);
    assert_eq!((x["status"].as_str(), x["run"].as_str()), (Some("running"), Some(run.as_str())), "{x:#}");
    let queued = s.get(&format!("/api/v1/executions/{second}"), Some(&token)).body;
    assert_eq!(queued["status"], "queued", "{queued:#}");
    let a = s.post(&format!("/api/v1/runs/{run}/approve"), Some(&token), &json!({ "environment": "prod" }));
    assert_eq!(a.status, 200, "{:#}", a.body);
    let x = wait(&s, "the pipeline to end", &|x| ended(x));
    assert_eq!(x["status"], "succeeded", "{x:#}");
    // Then the second runs, and waits at prod in its turn.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let y = s.get(&format!("/api/v1/executions/{second}"), Some(&token)).body;
        if y["deployments"][0]["status"] == "waiting" {
            assert!(y["started_ms"].as_u64() >= x["ended_ms"].as_u64(), "{y:#}");
            break;
        }
        assert!(Instant::now() < deadline, "the second pipeline never ran: {y:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
