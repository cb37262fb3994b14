//! The team server end to end: a real `stackpipe serve` on a loopback
//! port, real HTTP, users made by `stackpipe user add`, the `test`
//! provisioner's ledger. Who may do what (every endpoint, every role),
//! hostile requests, runs together and queued, and a server killed with
//! kill -9 in the middle of a deploy.

mod common;

use std::time::Duration;

use common::server::{ended, TestServer};
use common::TEST_PLUGIN;
use serde_json::{json, Value};

/// A pipeline whose environment waits for an approval before it starts.
fn gated() -> String {
    format!("pipeline \"gated\"\n\n{TEST_PLUGIN}\nenvironment dev {{ approval = true }}\n\nresource a \"t.step\" {{}}\nresource b \"t.step\" {{ x = a.id }}\n")
}

/// A pipeline of `n` resources, each taking `delay_ms` to apply.
fn steps(name: &str, n: usize, delay_ms: u64) -> String {
    let mut text = format!("pipeline \"{name}\"\n\n{TEST_PLUGIN}\nenvironment dev {{}}\n\n");
    for i in 0..n {
        let needs = if i >= 3 { format!(" a = r{}.id", i / 3) } else { String::new() };
        text.push_str(&format!("resource r{i} \"t.step\" {{ delay_ms = {delay_ms}{needs} }}\n"));
    }
    text
}

struct Tokens {
    viewer: String,
    operator: String,
    admin: String,
    /// An operator of the pipeline `free` only.
    limited: String,
}

fn server_with_users(pipelines: &[(&str, &str)]) -> (TestServer, Tokens) {
    let dir = TestServer::prepare(pipelines);
    let tokens = Tokens {
        viewer: TestServer::add_user(dir.path(), "vera", "viewer", &[]),
        operator: TestServer::add_user(dir.path(), "otto", "operator", &[]),
        admin: TestServer::add_user(dir.path(), "ada", "admin", &[]),
        limited: TestServer::add_user(dir.path(), "lim", "operator", &["free"]),
    };
    (TestServer::start(dir, &[]), tokens)
}

/// A new run of `gated`, waiting at its approval.
fn waiting_run(s: &TestServer, t: &Tokens) -> String {
    let id = s.start_run(&t.operator, json!({ "pipeline": "gated" }));
    s.wait_run(&id, &t.viewer, "the run to wait for its approval", |d| {
        d["environments"][0]["status"] == "waiting" || d["environments"][0]["waiting_for"].is_object()
    });
    id
}

#[test]
fn every_endpoint_answers_every_role_as_its_role_allows() {
    let free = steps("free", 2, 0);
    let (s, t) = server_with_users(&[("gated", &gated()), ("free", &free)]);
    // A finished run of `gated` to read.
    let done = waiting_run(&s, &t);
    assert_eq!(s.post(&format!("/api/v1/runs/{done}/approve"), Some(&t.operator), &json!({})).status, 200);
    s.wait_run(&done, &t.viewer, "the run to end", ended);

    // Public: health and the API's description.
    for path in ["/healthz", "/api/v1/openapi.json"] {
        assert_eq!(s.get(path, None).status, 200, "{path}");
    }

    // Reading: 401 without a valid token, 200 for every role, 403 for a
    // role limited to another pipeline where the endpoint is of `gated`.
    let reads: &[(String, bool)] = &[
        ("/api/v1/pipelines".into(), false),
        ("/api/v1/pipelines/gated".into(), true),
        ("/api/v1/pipelines/gated/graph".into(), true),
        ("/api/v1/pipelines/gated/outputs".into(), true),
        ("/api/v1/runs".into(), false),
        ("/api/v1/runs?environment=dev&started_by=otto".into(), false),
        ("/api/v1/queue".into(), false),
        (format!("/api/v1/runs/{done}"), true),
        (format!("/api/v1/runs/{done}?view=nodes"), true),
        (format!("/api/v1/runs/{done}/graph"), true),
        (format!("/api/v1/runs/{done}/jobs"), true),
        (format!("/api/v1/runs/{done}/jobs/dev/a"), true),
        (format!("/api/v1/runs/{done}/logs"), true),
        (format!("/api/v1/runs/{done}/snapshot"), true),
        (format!("/api/v1/runs/{done}/events"), true),
        ("/api/v1/state/resources".into(), false),
        ("/api/v1/state/locks".into(), false),
        ("/api/v1/state/history/dev/a?pipeline=gated".into(), true),
    ];
    for (path, of_gated) in reads {
        assert_eq!(s.get(path, None).status, 401, "{path} without a token");
        assert_eq!(s.get(path, Some("spt_0000")).status, 401, "{path} with a bad token");
        for token in [&t.viewer, &t.operator, &t.admin] {
            let a = s.get(path, Some(token));
            assert_eq!(a.status, 200, "{path}: {:#}", a.body);
        }
        let a = s.get(path, Some(&t.limited));
        assert_eq!(a.status, if *of_gated { 403 } else { 200 }, "{path} by an operator of `free` only: {:#}", a.body);
    }
    // The server's event stream never ends: only its answer's status is read.
    assert_eq!(s.status_only("/api/v1/events", None), 401);
    assert_eq!(s.status_only("/api/v1/events", Some(&t.viewer)), 200);
    // What a role limited to `free` lists holds nothing of `gated`.
    let runs = s.get("/api/v1/runs", Some(&t.limited)).body;
    assert_eq!(runs.as_array().map(Vec::len), Some(0), "{runs:#}");
    let pipelines = s.get("/api/v1/pipelines", Some(&t.limited)).body;
    assert_eq!(pipelines.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect::<Vec<_>>(), ["free"]);

    // Deciding gates and cancelling: operator and admin, each on a run of
    // its own; a viewer, an operator of another pipeline and nobody are refused.
    for action in ["approve", "reject", "cancel"] {
        for token in [&t.operator, &t.admin] {
            let id = waiting_run(&s, &t);
            let path = format!("/api/v1/runs/{id}/{action}");
            assert_eq!(s.post(&path, None, &json!({})).status, 401, "{path}");
            let refused = s.post(&path, Some(&t.viewer), &json!({}));
            assert_eq!(refused.status, 403, "{path}: {:#}", refused.body);
            assert!(refused.body["error"].as_str().unwrap().contains("needs the role operator"), "{:#}", refused.body);
            assert_eq!(s.post(&path, Some(&t.limited), &json!({})).status, 403, "{path}");
            let body = if action == "cancel" { json!({}) } else { json!({ "comment": "matrix" }) };
            let a = s.post(&path, Some(token), &body);
            assert_eq!(a.status, 200, "{path}: {:#}", a.body);
            s.wait_run(&id, &t.viewer, "the run to end", ended);
        }
    }

    // Planning: operator and admin; nothing is applied or recorded.
    let applied = s.ledger().len();
    let runs_before = s.get("/api/v1/runs", Some(&t.admin)).body.as_array().map(Vec::len);
    let plan = json!({ "message": "what would change?" });
    assert_eq!(s.post("/api/v1/pipelines/gated/plan", None, &plan).status, 401);
    assert_eq!(s.post("/api/v1/pipelines/gated/plan", Some(&t.viewer), &plan).status, 403);
    assert_eq!(s.post("/api/v1/pipelines/gated/plan", Some(&t.limited), &plan).status, 403);
    for token in [&t.operator, &t.admin] {
        let a = s.post("/api/v1/pipelines/gated/plan", Some(token), &plan);
        assert_eq!(a.status, 200, "{:#}", a.body);
        assert_eq!(a.body["status"], "succeeded", "{:#}", a.body);
        // Deployed already: nothing to change, and the text says so.
        let changes: Vec<&str> = a.body["changes"].as_array().unwrap().iter().map(|c| c["change"].as_str().unwrap()).collect();
        assert_eq!(changes, ["no-op", "no-op"], "{:#}", a.body);
        assert!(a.body["text"].as_str().unwrap().contains("dev"), "{:#}", a.body);
    }
    let undeploy = s.post("/api/v1/pipelines/gated/plan", Some(&t.operator), &json!({ "undeploy": true, "environment": "dev" }));
    assert_eq!(undeploy.status, 200, "{:#}", undeploy.body);
    assert_eq!(undeploy.body["changes"].as_array().unwrap().iter().filter(|c| c["change"] == "delete").count(), 2, "{:#}", undeploy.body);
    assert_eq!(s.ledger().len(), applied, "a plan applied something");
    assert_eq!(s.get("/api/v1/runs", Some(&t.admin)).body.as_array().map(Vec::len), runs_before, "a plan was recorded as a run");
    assert_eq!(s.post("/api/v1/pipelines/gated/plan", Some(&t.operator), &json!({ "bogus": 1 })).status, 400);

    // Starting runs: operator and admin (the second queues behind the first).
    let create = json!({ "pipeline": "gated" });
    assert_eq!(s.post("/api/v1/runs", None, &create).status, 401);
    assert_eq!(s.post("/api/v1/runs", Some(&t.viewer), &create).status, 403);
    assert_eq!(s.post("/api/v1/runs", Some(&t.limited), &create).status, 403);
    let first = s.post("/api/v1/runs", Some(&t.operator), &create);
    assert_eq!((first.status, first.body["status"].as_str()), (201, Some("running")), "{:#}", first.body);
    let second = s.post("/api/v1/runs", Some(&t.admin), &create);
    assert_eq!((second.status, second.body["status"].as_str()), (201, Some("queued")), "{:#}", second.body);
    for run in [&second.body["run"], &first.body["run"]] {
        let a = s.post(&format!("/api/v1/runs/{}/cancel", run.as_str().unwrap()), Some(&t.admin), &json!({}));
        assert_eq!(a.status, 200, "{:#}", a.body);
    }
    // The operator of `free` starts runs of `free`.
    let a = s.post("/api/v1/runs", Some(&t.limited), &json!({ "pipeline": "free" }));
    assert_eq!(a.status, 201, "{:#}", a.body);
    s.wait_run(a.body["run"].as_str().unwrap(), &t.limited, "the run of free to end", ended);

    // A rerun is started like a run.
    let path = format!("/api/v1/runs/{done}/rerun");
    assert_eq!(s.post(&path, Some(&t.viewer), &json!({})).status, 403);
    assert_eq!(s.post(&path, Some(&t.limited), &json!({})).status, 403);
    let a = s.post(&path, Some(&t.operator), &json!({}));
    assert_eq!(a.status, 201, "{:#}", a.body);
    assert_eq!(s.post(&format!("/api/v1/runs/{}/cancel", a.body["run"].as_str().unwrap()), Some(&t.operator), &json!({})).status, 200);
    // Resuming: allowed to operators, and refused (409) for a run that is not interrupted.
    let path = format!("/api/v1/runs/{done}/resume");
    assert_eq!(s.post(&path, Some(&t.viewer), &json!({})).status, 403);
    assert_eq!(s.post(&path, Some(&t.operator), &json!({})).status, 409);

    // Releasing locks: admins only, and never those of a run in progress.
    let unlock = json!({});
    assert_eq!(s.post("/api/v1/state/unlock", None, &unlock).status, 401);
    for token in [&t.viewer, &t.operator, &t.limited] {
        let a = s.post("/api/v1/state/unlock", Some(token), &unlock);
        assert_eq!(a.status, 403, "{:#}", a.body);
        assert!(a.body["error"].as_str().unwrap().contains("needs the role admin"), "{:#}", a.body);
    }
    assert_eq!(s.post("/api/v1/state/unlock", Some(&t.admin), &unlock).status, 200);

    // Forgetting a resource's record and deleting a run: admins only.
    for path in ["/api/v1/state/resources/gated/dev/a".to_string(), format!("/api/v1/runs/{done}")] {
        assert_eq!(s.delete(&path, None).status, 401, "{path}");
        for token in [&t.viewer, &t.operator, &t.limited] {
            let a = s.delete(&path, Some(token));
            assert_eq!(a.status, 403, "{path}: {:#}", a.body);
        }
        let a = s.delete(&path, Some(&t.admin));
        assert_eq!(a.status, 200, "{path}: {:#}", a.body);
        assert_eq!(s.delete(&path, Some(&t.admin)).status, 404, "{path}");
    }
    assert_eq!(s.get(&format!("/api/v1/runs/{done}"), Some(&t.viewer)).status, 404);
    let left = s.get("/api/v1/state/resources", Some(&t.viewer)).body;
    assert!(!left["resources"].as_array().unwrap().iter().any(|r| r[0]["pipeline"] == "gated" && r[0]["resource"] == "a"), "{left:#}");

    // Every mutating request is in the audit log, with who made it.
    let o = common::server::command(s.path()).args(["audit", "--state", "state", "--json"]).output().unwrap();
    let entries: Vec<Value> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let refused = entries.iter().filter(|e| e["status"] == 403).count();
    assert!(refused >= 12, "{entries:#?}");
    assert!(entries.iter().any(|e| e["user"] == "ada" && e["path"] == "/api/v1/state/unlock" && e["status"] == 200));
    assert!(entries.iter().any(|e| e["user"] == "ada" && e["method"] == "DELETE" && e["status"] == 200));
    assert!(entries.iter().any(|e| e["user"].is_null() && e["status"] == 401));
    assert!(entries.iter().all(|e| e["address"].as_str().unwrap().starts_with("127.0.0.1:")));
    assert!(entries.iter().all(|e| e["method"] != "GET"));
    assert!(entries.iter().any(|e| e["user"] == "otto" && e["path"] == "/api/v1/pipelines/gated/plan" && e["status"] == 200
        && e["detail"].as_str().is_some_and(|d| d.starts_with("plan of a deploy of gated"))), "{entries:#?}");
}

/// An environment's `approvers` and `self_approval` hold on a server: who
/// is refused gets 403 naming who may approve, and the gate keeps waiting.
#[test]
fn only_the_approvers_an_environment_names_approve_it_and_not_their_own_run() {
    let pipeline = format!(
        "pipeline \"guarded\"\n\n{TEST_PLUGIN}\nenvironment prod {{\n  approval = true\n  approvers = [\"role:admin\", \"user:otto\"]\n  self_approval = false\n}}\n\nresource a \"t.step\" {{}}\n"
    );
    let dir = TestServer::prepare(&[("guarded", &pipeline)]);
    let otto = TestServer::add_user(dir.path(), "otto", "operator", &[]);
    let olga = TestServer::add_user(dir.path(), "olga", "operator", &[]);
    let ada = TestServer::add_user(dir.path(), "ada", "admin", &[]);
    let s = TestServer::start(dir, &[]);
    let id = s.start_run(&otto, json!({ "pipeline": "guarded" }));
    s.wait_run(&id, &otto, "the run to wait for its approval", |d| d["environments"][0]["status"] == "waiting");
    let path = format!("/api/v1/runs/{id}/approve");
    let own = s.post(&path, Some(&otto), &json!({}));
    assert_eq!(own.status, 403, "{:#}", own.body);
    assert!(own.body["error"].as_str().unwrap().contains("forbids approving your own run"), "{:#}", own.body);
    let other = s.post(&path, Some(&olga), &json!({}));
    assert_eq!(other.status, 403, "{:#}", other.body);
    assert!(other.body["error"].as_str().unwrap().contains("only role:admin or user:otto may approve environment `prod`"), "{:#}", other.body);
    assert_eq!(s.get(&format!("/api/v1/runs/{id}"), Some(&otto)).body["environments"][0]["status"], "waiting");
    let a = s.post(&path, Some(&ada), &json!({ "comment": "ok" }));
    assert_eq!(a.status, 200, "{:#}", a.body);
    let doc = s.wait_run(&id, &otto, "the run to end", ended);
    assert_eq!(doc["status"], "succeeded", "{doc:#}");
    assert_eq!(doc["decisions"][0]["by"], "ada", "{doc:#}");
    assert_eq!(doc["started_by"], "otto", "{doc:#}");
}

/// The console's way in: a token exchanged once for a session cookie
/// (HttpOnly, SameSite=Strict) and a CSRF token that every mutating
/// request made with the cookie must carry; logout, and a rotated token,
/// end the session.
#[test]
fn a_browser_session_is_a_cookie_whose_changes_need_its_csrf_token() {
    let (s, t) = server_with_users(&[("gated", &gated())]);
    let (refused, _) = s.request("POST", "/api/v1/session", &[], Some(&json!({ "token": "spt_nobody" })));
    assert_eq!(refused.status, 401, "{:#}", refused.body);
    let (login, heads) = s.request("POST", "/api/v1/session", &[], Some(&json!({ "token": t.operator })));
    assert_eq!(login.status, 200, "{:#}", login.body);
    assert_eq!((login.body["user"].as_str(), login.body["role"].as_str()), (Some("otto"), Some("operator")));
    let csrf = login.body["csrf"].as_str().unwrap().to_string();
    let set = heads.iter().find(|(k, _)| k == "set-cookie").map(|(_, v)| v.clone()).expect("a cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "no TLS here: {set}");
    let cookie = set.split(';').next().unwrap().to_string();
    assert!(!cookie.contains(&t.operator), "the cookie is not the token");

    // Reads need the cookie only.
    let (runs, _) = s.request("GET", "/api/v1/runs", &[("Cookie", &cookie)], None);
    assert_eq!(runs.status, 200, "{:#}", runs.body);
    let (me, _) = s.request("GET", "/api/v1/session", &[("Cookie", &cookie)], None);
    assert_eq!((me.body["user"].as_str(), me.body["csrf"].as_str()), (Some("otto"), Some(csrf.as_str())));
    // Changes need the CSRF token too: a page of another site sends the cookie but cannot know it.
    let create = json!({ "pipeline": "gated" });
    for headers in [vec![("Cookie", cookie.as_str())], vec![("Cookie", cookie.as_str()), ("X-CSRF-Token", "forged")]] {
        let (forged, _) = s.request("POST", "/api/v1/runs", &headers, Some(&create));
        assert_eq!(forged.status, 403, "{:#}", forged.body);
        assert!(forged.body["error"].as_str().unwrap().contains("CSRF"), "{:#}", forged.body);
    }
    assert_eq!(s.get("/api/v1/queue", Some(&t.viewer)).body, json!([]));
    let (started, _) = s.request("POST", "/api/v1/runs", &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)], Some(&create));
    assert_eq!(started.status, 201, "{:#}", started.body);
    let id = started.body["run"].as_str().unwrap().to_string();
    let (cancelled, _) = s.request("POST", &format!("/api/v1/runs/{id}/cancel"), &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)], Some(&json!({})));
    assert_eq!(cancelled.status, 200, "{:#}", cancelled.body);
    // The audit log names the session's user.
    let o = common::server::command(s.path()).args(["audit", "--state", "state", "--json"]).output().unwrap();
    let audit = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(audit.lines().any(|l| l.contains("\"user\":\"otto\"") && l.contains("/api/v1/session")), "{audit}");

    // Logout ends it.
    let (out, heads) = s.request("DELETE", "/api/v1/session", &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)], None);
    assert_eq!(out.status, 200, "{:#}", out.body);
    assert!(heads.iter().any(|(k, v)| k == "set-cookie" && v.contains("Max-Age=0")), "{heads:?}");
    assert_eq!(s.request("GET", "/api/v1/runs", &[("Cookie", &cookie)], None).0.status, 401);

    // A token made anew ends the sessions opened with the old one.
    let (again, heads) = s.request("POST", "/api/v1/session", &[], Some(&json!({ "token": t.viewer })));
    assert_eq!(again.status, 200);
    let cookie = heads.iter().find(|(k, _)| k == "set-cookie").unwrap().1.split(';').next().unwrap().to_string();
    assert_eq!(s.request("GET", "/api/v1/runs", &[("Cookie", &cookie)], None).0.status, 200);
    std::thread::sleep(Duration::from_millis(5));
    let o = common::server::command(s.path()).args(["user", "token", "vera", "--state", "state"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(s.request("GET", "/api/v1/runs", &[("Cookie", &cookie)], None).0.status, 401);
}

#[test]
fn hostile_requests_are_refused_and_the_server_answers_the_next_good_one() {
    let (s, t) = server_with_users(&[("free", &steps("free", 1, 0))]);
    let admin = Some(t.admin.as_str());
    // Larger than the server takes.
    // (Said by its length: the server answers before the body is sent.)
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut big = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
        t.admin,
        33 << 20
    );
    std::io::Write::write_all(&mut big, head.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut big, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Not JSON, the wrong JSON, unknown fields.
    for body in [&b"{"[..], b"[]", b"\xff\xfe", b"{\"pipeline\": 5}", b"{\"pipeline\": \"free\", \"sudo\": true}"] {
        let a = s.post_raw("/api/v1/runs", admin, "application/json", body);
        assert_eq!(a.status, 400, "{:?}: {:#}", String::from_utf8_lossy(body), a.body);
        assert!(a.body["error"].is_string(), "{:#}", a.body);
    }
    // Names that are paths, or not names at all.
    for path in [
        "/api/v1/pipelines/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/pipelines/%2e%2e",
        "/api/v1/runs/r000001%00",
        "/api/v1/runs/%E2%80%AEr1",
        "/api/v1/pipelines/caf%C3%A9",
        "/api/v1/state/history/..%2Fdev/a",
    ] {
        let a = s.get(path, admin);
        assert_eq!(a.status, 400, "{path}: {:#}", a.body);
    }
    assert_eq!(s.get("/api/v1/../../etc/passwd", admin).status, 404);
    assert_eq!(s.get("/api/v1/pipelines/nope", admin).status, 404);
    assert_eq!(s.get("/api/v1/runs/r999999", admin).status, 404);
    // Tokens that are nobody's, in every shape.
    for i in 0..300 {
        let bad = format!("spt_{i:064x}");
        assert_eq!(s.get("/api/v1/runs", Some(&bad)).status, 401);
    }
    for bad in ["", " ", "Bearer", "spt_", &"x".repeat(8000)] {
        assert_eq!(s.get("/api/v1/runs", Some(bad)).status, 401, "{bad:?}");
    }
    // Bytes no HTTP client library would send.
    for header in ["Authorization: Bearer \u{1F600}", "Authorization: Bearer spt_\u{0}", "Authorization: \u{e9}\u{e9}"] {
        let answer = raw_http(&s, &format!("GET /api/v1/runs HTTP/1.1\r\nHost: x\r\n{header}\r\nConnection: close\r\n\r\n"));
        assert!(answer.starts_with("HTTP/1.1 401") || answer.starts_with("HTTP/1.1 400"), "{header:?}: {answer}");
    }
    // A client that sends half its headers and goes quiet is dropped; others are answered meanwhile.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(&mut slow, b"GET /api/v1/runs HTTP/1.1\r\nHost: x\r\n").unwrap();
    // And the next good request is answered.
    let a = s.get("/api/v1/runs", admin);
    assert_eq!(a.status, 200, "{:#}", a.body);
    let id = s.start_run(&t.admin, json!({ "pipeline": "free", "message": "caf\u{e9} \u{1F680}" }));
    let doc = s.wait_run(&id, &t.admin, "the run to end", ended);
    assert_eq!(doc["status"], "succeeded", "{doc:#}");
    assert_eq!(doc["message"], "caf\u{e9} \u{1F680}");
    drop(slow);
}

/// What the server answers to `request`, sent as it is.
fn raw_http(s: &TestServer, request: &str) -> String {
    let mut c = std::net::TcpStream::connect(s.url.trim_start_matches("http://")).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    std::io::Write::write_all(&mut c, request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut c, &mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A client that goes away while the server writes a large answer to it
/// (a browser tab reloaded mid-answer) must not stop the server: hyper
/// writes with writev, which raises SIGPIPE on a socket the peer reset, so
/// the server ignores that signal (and handles the write's error).
#[test]
fn the_server_is_not_killed_by_a_write_to_a_client_gone() {
    let dir = TestServer::prepare(&[]);
    let s = TestServer::start(dir, &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).expect("the server's /proc status");
    let ignored = status.lines().find_map(|l| l.strip_prefix("SigIgn:")).expect("a SigIgn line").trim();
    let mask = u64::from_str_radix(ignored, 16).expect("a hex mask");
    assert_ne!(mask & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE is not ignored by the server: SigIgn {ignored}");
}

#[test]
fn runs_of_different_resources_run_together_and_a_run_of_the_same_ones_queues_behind() {
    let (s, t) = server_with_users(&[("one", &steps("one", 2, 700)), ("two", &steps("two", 2, 700))]);
    let a = s.start_run(&t.operator, json!({ "pipeline": "one" }));
    let b = s.start_run(&t.operator, json!({ "pipeline": "two" }));
    // Both run at once.
    s.wait_run(&b, &t.viewer, "the second run to be running", |d| d["status"] == "running");
    assert_eq!(s.get(&format!("/api/v1/runs/{a}"), Some(&t.viewer)).body["status"], "running");
    // A second run of `one` waits for the first.
    let c = s.post("/api/v1/runs", Some(&t.operator), &json!({ "pipeline": "one" }));
    assert_eq!((c.status, c.body["status"].as_str()), (201, Some("queued")), "{:#}", c.body);
    let c = c.body["run"].as_str().unwrap().to_string();
    let queued = s.get(&format!("/api/v1/runs/{c}"), Some(&t.viewer)).body;
    assert_eq!(queued["status"], "queued", "{queued:#}");
    assert_eq!(queued["waiting_for"], json!([a]), "{queued:#}");
    assert_eq!(s.get("/api/v1/queue", Some(&t.viewer)).body[0]["run"], c.as_str());
    let first = s.wait_run(&a, &t.viewer, "the first run to end", ended);
    let third = s.wait_run(&c, &t.viewer, "the queued run to end", ended);
    assert_eq!((first["status"].as_str(), third["status"].as_str()), (Some("succeeded"), Some("succeeded")));
    // It started after the first ended.
    assert!(third["started_ms"].as_u64() >= first["finished_ms"].as_u64(), "{first:#}\n{third:#}");
    assert_eq!(s.wait_run(&b, &t.viewer, "the second run to end", ended)["status"], "succeeded");
    let ledger = s.ledger();
    for i in 0..2 {
        assert_eq!(ledger.iter().filter(|l| **l == format!("apply one/dev/r{i}")).count(), 1, "{ledger:?}");
    }
}

/// kill -9 of the server in the middle of a 40-node deploy: started again,
/// it resumes the run from its snapshot, and every resource is applied
/// exactly once (the `test` provisioner's ledger says).
#[test]
fn a_server_killed_mid_deploy_resumes_the_run_and_applies_every_resource_once() {
    let (s, t) = server_with_users(&[("forty", &steps("forty", 40, 60))]);
    let id = s.start_run(&t.operator, json!({ "pipeline": "forty", "parallelism": 2 }));
    common::wait_for("a third of the deploy", || s.ledger().len() >= 14);
    let dir = s.kill();
    let killed_at = std::fs::read_to_string(dir.path().join("pipelines/out/ledger.txt")).unwrap().lines().count();
    assert!(killed_at < 40, "the deploy ended before the kill");
    let s = TestServer::start(dir, &[]);
    let doc = s.wait_run(&id, &t.viewer, "the resumed run to end", |d| d["status"] == "succeeded" || d["status"] == "failed");
    assert_eq!(doc["status"], "succeeded", "{doc:#}");
    assert_eq!(doc["resumed"][0]["by"], "stackpipe-server", "{doc:#}");
    // A follower of the killed server reconnects with an id it had (here,
    // 100): the resumed run's events are numbered above every id of the
    // first, so it gets them all, from the resume's first.
    let stream = raw_http(
        &s,
        &format!("GET /api/v1/runs/{id}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nLast-Event-ID: 100\r\nConnection: close\r\n\r\n", t.viewer),
    );
    let ids: Vec<u64> = stream.lines().filter_map(|l| l.strip_prefix("id: ")).map(|n| n.trim().parse().unwrap()).collect();
    assert_eq!(ids.first(), Some(&((1u64 << 32) + 1)), "{}", &stream[..stream.len().min(600)]);
    assert!(stream.contains("event: run_finished"), "the resumed run's events end with its end");
    let ledger = s.ledger();
    for i in 0..40 {
        let n = ledger.iter().filter(|l| **l == format!("apply forty/dev/r{i}")).count();
        assert_eq!(n, 1, "r{i} applied {n} times: {ledger:?}");
    }
    let resources = s.get("/api/v1/state/resources", Some(&t.viewer)).body;
    assert_eq!(resources["resources"].as_array().unwrap().len(), 40);
    assert_eq!(resources["locks"].as_array().unwrap().len(), 0, "{resources:#}");
    std::thread::sleep(Duration::from_millis(10));
}

/// SIGTERM: the server lets the operations in flight finish, stops, and
/// at its next start resumes the run it stopped.
#[test]
fn a_server_stopped_with_sigterm_resumes_its_runs_when_it_starts_again() {
    let (s, t) = server_with_users(&[("ten", &steps("ten", 10, 100))]);
    let id = s.start_run(&t.operator, json!({ "pipeline": "ten", "parallelism": 1 }));
    common::wait_for("the deploy to start applying", || s.ledger().len() >= 2);
    let dir = s.terminate();
    let s = TestServer::start(dir, &[]);
    let doc = s.wait_run(&id, &t.viewer, "the resumed run to end", |d| d["status"] == "succeeded" || d["status"] == "failed");
    assert_eq!(doc["status"], "succeeded", "{doc:#}");
    let ledger = s.ledger();
    for i in 0..10 {
        assert_eq!(ledger.iter().filter(|l| **l == format!("apply ten/dev/r{i}")).count(), 1, "{ledger:?}");
    }
}

/// A run queued when the server is killed is queued again, under its id,
/// when it starts again, behind the run it waited for (resumed).
#[test]
fn a_queued_run_is_queued_again_by_a_server_started_again() {
    let (s, t) = server_with_users(&[("slow", &steps("slow", 6, 150))]);
    let first = s.start_run(&t.operator, json!({ "pipeline": "slow", "parallelism": 1 }));
    let second = s.post("/api/v1/runs", Some(&t.admin), &json!({ "pipeline": "slow", "message": "after the first" }));
    assert_eq!(second.body["status"], "queued", "{:#}", second.body);
    let second = second.body["run"].as_str().unwrap().to_string();
    common::wait_for("the first run to start applying", || s.ledger().len() >= 2);
    let s = TestServer::start(s.kill(), &[]);
    let queued = s.get(&format!("/api/v1/runs/{second}"), Some(&t.viewer)).body;
    assert_eq!(queued["status"], "queued", "{queued:#}");
    assert_eq!(queued["started_by"], "ada", "{queued:#}");
    let a = s.wait_run(&first, &t.viewer, "the resumed run to end", |d| d["status"] == "succeeded" || d["status"] == "failed");
    let b = s.wait_run(&second, &t.viewer, "the queued run to end", ended);
    assert_eq!((a["status"].as_str(), b["status"].as_str()), (Some("succeeded"), Some("succeeded")), "{b:#}");
    assert_eq!(b["message"], "after the first");
    assert!(b["started_ms"].as_u64() >= a["finished_ms"].as_u64(), "{a:#}\n{b:#}");
    let ledger = s.ledger();
    for i in 0..6 {
        assert_eq!(ledger.iter().filter(|l| **l == format!("apply slow/dev/r{i}")).count(), 1, "{ledger:?}");
    }
}

#[test]
fn with_no_auto_resume_a_killed_run_stays_interrupted_until_resumed() {
    let (s, t) = server_with_users(&[("ten", &steps("ten", 10, 100))]);
    let id = s.start_run(&t.operator, json!({ "pipeline": "ten", "parallelism": 1 }));
    common::wait_for("the deploy to start applying", || s.ledger().len() >= 2);
    let s = TestServer::start(s.kill(), &["--no-auto-resume"]);
    assert_eq!(s.get(&format!("/api/v1/runs/{id}"), Some(&t.viewer)).body["status"], "interrupted");
    let a = s.post(&format!("/api/v1/runs/{id}/resume"), Some(&t.operator), &json!({}));
    assert_eq!(a.status, 201, "{:#}", a.body);
    assert_eq!(a.body["run"], id.as_str());
    let doc = s.wait_run(&id, &t.viewer, "the resumed run to end", ended);
    assert_eq!(doc["status"], "succeeded", "{doc:#}");
    assert_eq!(doc["resumed"][0]["by"], "otto", "{doc:#}");
    let ledger = s.ledger();
    assert_eq!(ledger.iter().filter(|l| l.starts_with("apply")).count(), 10, "{ledger:?}");
}

#[test]
fn a_server_refuses_to_listen_off_loopback_without_tls() {
    let dir = TestServer::prepare(&[]);
    let o = common::server::command(dir.path())
        .args(["serve", "--state", "state", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to listen on 0.0.0.0:0 without TLS"), "{}", String::from_utf8_lossy(&o.stderr));
}
