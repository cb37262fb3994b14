//! The web console in a real browser: headless Chromium (through
//! chromedriver, tests/common/browser.rs) against a real `stackpipe serve`.
//! An operator logs in, starts a deploy of a gated pipeline from the
//! Pipelines page, watches its nodes turn succeeded without reloading,
//! approves the gate with a comment and sees the decision recorded, and
//! opens a failed node's log; a viewer sees no button to approve or cancel
//! and has a forged approval refused; what users wrote shows as text; the
//! pages meet WCAG AA contrast and work from the keyboard. A service's
//! pipeline is triggered, followed to its deploy and its settings switched
//! from the Services pages. Screenshots of the main pages go to
//! `target/console-screenshots/`.

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::forge::Forge;
use common::server::{ended, TestServer};
use common::TEST_PLUGIN;
use serde_json::{json, Value};

/// What a user writes that must show as text, never as markup.
const XSS: &str = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script>";

const WAIT: Duration = Duration::from_secs(30);

/// `shop`: three levels and a gated prod; `api` logs a warning that is markup.
fn shop() -> String {
    format!(
        "pipeline \"shop\"\n\n{TEST_PLUGIN}\nenvironment dev {{}}\nenvironment prod {{\n  after    = dev\n  approval = true\n}}\n\n\
         resource db \"t.step\" {{ delay_ms = 700 }}\n\
         resource api \"t.step\" {{\n  delay_ms = 700\n  x        = db.id\n  warn     = {warn}\n}}\n\
         resource web \"t.step\" {{\n  delay_ms = 700\n  x        = api.id\n}}\n\
         resource jobs \"t.step\" {{ x = db.id }}\n",
        warn = serde_json::to_string(XSS).unwrap()
    )
}

/// `broken`: its `bad` step fails on apply, after a warning that is markup.
fn broken() -> String {
    format!(
        "pipeline \"broken\"\n\n{TEST_PLUGIN}\nenvironment dev {{}}\n\n\
         resource ok \"t.step\" {{}}\n\
         resource bad \"t.step\" {{\n  x       = ok.id\n  fail    = true\n  fail_on = \"apply\"\n  warn    = {warn}\n}}\n",
        warn = serde_json::to_string(XSS).unwrap()
    )
}

struct Console {
    server: TestServer,
    operator: String,
    viewer: String,
}

fn console() -> Console {
    let dir = TestServer::prepare(&[("shop", &shop()), ("broken", &broken())]);
    let operator = TestServer::add_user(dir.path(), "otto", "operator", &[]);
    let viewer = TestServer::add_user(dir.path(), "vera", "viewer", &[]);
    Console { server: TestServer::start(dir, &[]), operator, viewer }
}

/// Logs in through the login page, as a person does.
fn log_in(b: &Browser, url: &str, token: &str) {
    b.goto(&format!("{url}/"));
    b.wait_for("form#login input#token", WAIT);
    b.fill("#token", token);
    b.click("form#login button[type=submit]");
    b.wait_until("location.hash.startsWith('#/runs') && !document.getElementById('nav').hidden", WAIT, "the console after login");
}

/// The lowest contrast ratio of any visible text on the page against the
/// background it is drawn on (WCAG 2 relative luminance), with where it is;
/// large text (24 px, or 18.66 px bold) needs 3, other text 4.5.
fn contrast_failures(b: &Browser) -> Value {
    b.js(
        r#"
        const lum = (c) => {
          const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
          return 0.2126 * r + 0.7152 * g + 0.0722 * b;
        };
        const rgba = (s) => { const m = s.match(/[\d.]+/g) || ['0', '0', '0', '0']; return m.map(Number).concat(m.length < 4 ? [1] : []); };
        const background = (el) => {
          for (let e = el; e; e = e.parentElement) {
            const c = rgba(getComputedStyle(e).backgroundColor);
            if (c[3] > 0.5) return c.slice(0, 3);
          }
          return [255, 255, 255];
        };
        const bad = [];
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let t = walker.nextNode(); t; t = walker.nextNode()) {
          const el = t.parentElement;
          if (!t.textContent.trim() || !el || !el.getClientRects().length) continue;
          const s = getComputedStyle(el);
          if (s.visibility === 'hidden' || el.closest('.visually-hidden, [hidden]')) continue;
          const fg = rgba(s.color).slice(0, 3);
          const [a, b2] = [lum(fg), lum(background(el))];
          const ratio = (Math.max(a, b2) + 0.05) / (Math.min(a, b2) + 0.05);
          const size = parseFloat(s.fontSize);
          const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
          if (ratio < (large ? 3 : 4.5)) bad.push({ text: t.textContent.trim().slice(0, 40), ratio: Math.round(ratio * 100) / 100, color: s.color });
        }
        return bad;
        "#,
        vec![],
    )
}

fn assert_contrast(b: &Browser, page: &str) {
    let bad = contrast_failures(b);
    assert_eq!(bad, json!([]), "text below WCAG AA contrast on the {page} page");
}

/// Nothing a user wrote ran or became an element.
fn assert_no_markup_ran(b: &Browser, page: &str) {
    let state = b.js("return { xss: window.__xss || 0, imgs: document.querySelectorAll('main img, main script').length };", vec![]);
    assert_eq!(state, json!({ "xss": 0, "imgs": 0 }), "markup a user wrote became elements on the {page} page");
}

/// The statuses the list view's row of `node` shows, each once in turn, until `succeeded`.
fn statuses_until_succeeded(b: &Browser, node: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while seen.last().map(String::as_str) != Some("succeeded") {
        assert!(std::time::Instant::now() < deadline, "{node} never succeeded; seen {seen:?}");
        let st = b.js("return document.querySelector(`#node-list [data-node=${arguments[0]}]`).dataset.status;", vec![json!(node)]);
        let st = st.as_str().unwrap_or("?").to_string();
        if seen.last() != Some(&st) {
            seen.push(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seen
}

#[test]
fn an_operator_deploys_watches_approves_and_reads_a_failed_nodes_log() {
    let c = console();
    let s = &c.server;
    let b = Browser::start();
    // Any page of the console asks for a login first.
    b.goto(&format!("{}/#/pipelines", s.url));
    b.wait_for("form#login input#token", WAIT);
    b.screenshot("login");
    assert_contrast(&b, "login");
    // A wrong token is refused, in words, on the page.
    b.fill("#token", "spt_not-a-token");
    b.click("form#login button[type=submit]");
    b.wait_until("!document.getElementById('login-error').hidden", WAIT, "the login error");
    assert!(b.text("#login-error").contains("not valid"), "{}", b.text("#login-error"));
    log_in(&b, &s.url, &c.operator);

    // Pipelines: each with its environments in promotion order.
    b.goto(&format!("{}/#/pipelines", s.url));
    b.wait_for("[data-pipeline=shop] .promotion li", WAIT);
    let envs = b.js("return [...document.querySelectorAll('[data-pipeline=shop] .promotion li')].map(li => li.dataset.environment);", vec![]);
    assert_eq!(envs, json!(["dev", "prod"]));
    b.screenshot("pipelines");
    assert_contrast(&b, "pipelines");

    // Plan first, from the Run button: what a deploy would change.
    b.click("#run-shop");
    b.wait_for("dialog[open] #t-operation", WAIT);
    b.js("document.getElementById('t-operation').value = 'plan';", vec![]);
    b.click("#t-start");
    b.wait_for("#plan [data-resource=web][data-environment=prod][data-change=create]", WAIT);
    assert_eq!(b.js("return location.hash;", vec![]), json!("#/pipelines/shop/plan"));
    assert_eq!(b.count("#plan tbody tr"), 8, "every node of both environments is planned");
    assert!(b.text("#plan-counts").contains("8 to create"), "{}", b.text("#plan-counts"));
    b.screenshot("plan");
    assert!(s.ledger().is_empty(), "a plan applied something: {:?}", s.ledger());
    b.click(".crumbs a");
    b.wait_for("#run-shop", WAIT);

    // Start a deploy from its Run button, with a message that is markup.
    b.click("#run-shop");
    b.wait_for("dialog[open] #t-operation", WAIT);
    b.js("document.getElementById('t-operation').value = 'deploy';", vec![]);
    b.fill("#t-message", XSS);
    b.screenshot("trigger");
    b.click("#t-start");
    b.wait_until("/^#\\/runs\\/r\\d+$/.test(location.hash)", WAIT, "the new run's page");
    let run = b.js("return location.hash.split('/')[2];", vec![]).as_str().unwrap().to_string();
    b.wait_until("document.getElementById('dag')?.dataset.drawn === 'true'", WAIT, "the graph drawn");
    // The page is never reloaded from here on: a reload would lose this.
    b.js("window.__same_page = true;", vec![]);
    // Every node is drawn before it runs (the whole graph of the environment).
    b.click("#tab-list");
    b.wait_for("#node-list [data-node=web]", WAIT);
    assert_eq!(b.count("#node-list [data-node]"), 4);
    // Watch `web` go from not started to succeeded, live.
    let seen = statuses_until_succeeded(&b, "web");
    assert!(seen.len() >= 2 && seen[0] != "succeeded", "web was seen only as {seen:?}: not followed live");
    assert!(seen.iter().all(|st| ["pending", "blocked", "queued", "running", "succeeded"].contains(&st.as_str())), "{seen:?}");
    b.screenshot("run-list");

    // The gate of prod waits; the operator approves it with a comment.
    b.wait_for("[data-approve=prod]", WAIT);
    b.click("#tab-graph");
    b.screenshot("run-graph-waiting");
    assert_contrast(&b, "run");
    b.click("[data-approve=prod]");
    b.wait_for("dialog[open] #decide-comment", WAIT);
    b.fill("#decide-comment", &format!("ship it {XSS}"));
    b.click("#decide-confirm");
    b.wait_for(".decisions [data-decision=approved] blockquote.comment", WAIT);
    let shown = b.js("return document.querySelector('.decisions [data-decision=approved]').textContent;", vec![]);
    assert!(shown.as_str().unwrap().contains("by otto"), "{shown}");
    let comment = b.js("return document.querySelector('.decisions blockquote.comment').textContent;", vec![]);
    assert_eq!(comment, json!(format!("ship it {XSS}")), "the comment shows as its text");
    // The decision is recorded, by whom and with what.
    let doc = s.wait_run(&run, &c.operator, "the run to end", ended);
    assert_eq!(doc["status"], "succeeded", "{doc:#}");
    assert_eq!(doc["decisions"][0]["by"], "otto");
    assert_eq!(doc["decisions"][0]["comment"], json!(format!("ship it {XSS}")));
    b.wait_until("document.querySelector('[data-run-status]')?.dataset.runStatus === 'succeeded'", WAIT, "the run shown succeeded");
    assert_eq!(b.js("return window.__same_page === true;", vec![]), json!(true), "the run page was reloaded");
    let message = b.js("return [...document.querySelectorAll('.facts dd')].map(d => d.textContent);", vec![]);
    assert!(message.as_array().unwrap().contains(&json!(XSS)), "the message shows as its text: {message}");
    assert_no_markup_ran(&b, "run");
    b.screenshot("run-graph-done");

    // A node's page: its operations, its log (the markup it logged as text), its input.
    b.goto(&format!("{}/#/runs/{run}/dev/api", s.url));
    b.wait_for("#ops [data-op=apply][data-status=succeeded]", WAIT);
    let log = b.text("#log");
    assert!(log.contains(XSS), "the warning shows as its text: {log}");
    assert!(b.text("#input").contains("\"x\""), "the input is shown");
    assert_no_markup_ran(&b, "node");
    b.screenshot("node");
    assert_contrast(&b, "node");

    // The runs list, filtered, and the state pages.
    b.goto(&format!("{}/#/runs?pipeline=shop", s.url));
    b.wait_for(&format!("#runs [data-run={run}] [data-run-status=succeeded]"), WAIT);
    assert_no_markup_ran(&b, "runs");
    b.screenshot("runs");
    assert_contrast(&b, "runs");
    b.goto(&format!("{}/#/state?pipeline=shop", s.url));
    b.wait_for("[data-pipeline=shop] [data-environment=prod] [data-resource=web]", WAIT);
    b.screenshot("state");
    assert_contrast(&b, "state");
    b.click("[data-pipeline=shop] [data-environment=prod] [data-resource=web] a");
    b.wait_for(&format!("#history [data-run={run}]"), WAIT);
    b.screenshot("history");

    // A failed node's log, opened from the run's list.
    let failed = s.start_run(&c.operator, json!({ "pipeline": "broken" }));
    s.wait_run(&failed, &c.operator, "the broken run to end", ended);
    b.goto(&format!("{}/#/runs/{failed}?view=list", s.url));
    b.wait_for("#node-list [data-node=bad][data-status=failed]", WAIT);
    b.wait_for("#node-list [data-node=ok][data-status=succeeded]", WAIT);
    b.click("#node-list [data-node=bad] a");
    b.wait_for("#job-error", WAIT);
    b.wait_for("#ops [data-op=apply][data-status=failed]", WAIT);
    let log = b.text("#log");
    assert!(log.contains("failing on purpose") && log.contains(XSS), "the failed node's log: {log}");
    assert_no_markup_ran(&b, "failed node");
    b.screenshot("node-failed");

    // Cancelling asks first; kept running when the answer is no.
    let waiting = s.start_run(&c.operator, json!({ "pipeline": "shop" }));
    s.wait_run(&waiting, &c.operator, "the run to wait at prod's gate", |d| d["environments"][1]["status"] == "waiting");
    b.goto(&format!("{}/#/runs/{waiting}", s.url));
    b.click("#cancel-run");
    b.wait_for("dialog[open] #cancel-confirm", WAIT);
    b.click("dialog[open] button[value=no]");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.get(&format!("/api/v1/runs/{waiting}"), Some(&c.operator)).body["status"], "running");
    b.click("#cancel-run");
    b.wait_for("dialog[open] #cancel-confirm", WAIT);
    b.screenshot("cancel");
    b.click("#cancel-confirm");
    b.wait_until("document.querySelector('h1 [data-run-status]')?.dataset.runStatus === 'cancelled'", WAIT, "the run shown cancelled");
    assert_eq!(s.get(&format!("/api/v1/runs/{waiting}"), Some(&c.operator)).body["status"], "cancelled");

    // Logging out ends the session: the cookie no longer opens anything.
    b.click("#logout");
    b.wait_until("location.hash.startsWith('#/login')", WAIT, "the login page after logging out");
    let after = b.js_async(
        "const done = arguments[arguments.length - 1]; fetch('/api/v1/runs').then(r => done(r.status));",
        vec![],
    );
    assert_eq!(after, json!(401), "the session outlived its logout");
    b.close();
}

#[test]
fn a_viewer_sees_no_buttons_to_change_a_run_and_a_forged_approval_is_refused() {
    let c = console();
    let s = &c.server;
    let run = s.start_run(&c.operator, json!({ "pipeline": "shop" }));
    s.wait_run(&run, &c.viewer, "the run to wait at prod's gate", |d| {
        d["environments"][1]["status"] == "waiting"
    });
    let b = Browser::start();
    log_in(&b, &s.url, &c.viewer);
    b.goto(&format!("{}/#/runs/{run}", s.url));
    b.wait_for(".gates [data-gate=prod]", WAIT);
    b.wait_until("document.getElementById('dag')?.dataset.drawn === 'true'", WAIT, "the graph drawn");
    assert!(!b.exists("[data-approve]") && !b.exists("[data-reject]"), "a viewer is offered a decision");
    assert!(!b.exists("#cancel-run"), "a viewer is offered a cancel");
    b.screenshot("run-as-viewer");
    b.goto(&format!("{}/#/pipelines", s.url));
    b.wait_for("[data-pipeline=shop]", WAIT);
    assert!(!b.exists("#run-shop"), "a viewer is offered a Run button");

    // A run queued behind it shows its whole graph already, every node pending.
    let queued = s.start_run(&c.operator, json!({ "pipeline": "shop" }));
    assert_eq!(s.get(&format!("/api/v1/runs/{queued}"), Some(&c.viewer)).body["status"], "queued");
    b.goto(&format!("{}/#/runs/{queued}?view=list", s.url));
    b.wait_for("#queued-behind", WAIT);
    assert!(b.text("#queued-behind").contains(&run), "{}", b.text("#queued-behind"));
    b.wait_for("#node-list [data-node=web]", WAIT);
    assert_eq!(b.count("#node-list [data-node][data-status=pending]"), 4);
    b.screenshot("run-queued");
    s.post(&format!("/api/v1/runs/{queued}/cancel"), Some(&c.operator), &json!({}));

    // Forged from the page: with the session's own CSRF token, the role
    // still says no; without it, the cookie alone does nothing.
    let forged = b.js_async(
        "const done = arguments[arguments.length - 1];
         const run = arguments[0];
         (async () => {
           const me = await (await fetch('/api/v1/session')).json();
           const ask = (headers) => fetch(`/api/v1/runs/${run}/approve`, {method: 'POST',
             headers: {'content-type': 'application/json', ...headers}, body: JSON.stringify({environment: 'prod'})});
           const withToken = await ask({'x-csrf-token': me.csrf});
           const without = await ask({});
           const cancel = await fetch(`/api/v1/runs/${run}/cancel`, {method: 'POST',
             headers: {'content-type': 'application/json', 'x-csrf-token': me.csrf}, body: '{}'});
           done([withToken.status, (await withToken.json()).error, without.status, cancel.status]);
         })().catch(e => done(String(e)));",
        vec![json!(run)],
    );
    assert_eq!(forged[0], 403, "{forged}");
    assert!(forged[1].as_str().unwrap().contains("operator"), "{forged}");
    assert_eq!(forged[2], 403, "{forged}");
    assert_eq!(forged[3], 403, "{forged}");
    let doc = s.get(&format!("/api/v1/runs/{run}"), Some(&c.operator)).body;
    assert_eq!(doc["environments"][1]["status"], "waiting", "the gate still waits: {doc:#}");
    assert_eq!(doc["decisions"], json!([]));
    s.post(&format!("/api/v1/runs/{run}/cancel"), Some(&c.operator), &json!({}));
    b.close();
}

#[test]
fn the_graph_and_the_list_work_from_the_keyboard() {
    let c = console();
    let s = &c.server;
    let run = s.start_run(&c.operator, json!({ "pipeline": "shop" }));
    s.wait_run(&run, &c.viewer, "the run to wait at prod's gate", |d| d["environments"][1]["status"] == "waiting");
    let b = Browser::start();
    // Log in with the keyboard alone: type the token, press Enter.
    b.goto(&format!("{}/", s.url));
    b.wait_for("#token", WAIT);
    b.press("#token", &format!("{}\u{E007}", c.viewer));
    b.wait_until("location.hash.startsWith('#/runs')", WAIT, "the console after an Enter on the token");
    b.goto(&format!("{}/#/runs/{run}?env=dev", s.url));
    b.wait_until("document.getElementById('dag')?.dataset.drawn === 'true'", WAIT, "the graph drawn");
    // Find a node by name: it is centred and marked; Enter on the graph opens it.
    b.press("#find", "web\u{E007}");
    b.wait_until("window.stackpipe.dagView().found === 'web'", WAIT, "web found");
    assert!(b.text("#found").contains("web: succeeded"), "{}", b.text("#found"));
    // Zoom and pan with keys on the focused graph.
    let before = b.js("return window.stackpipe.dagView();", vec![]);
    b.press("#dag", "+");
    b.press("#dag", "\u{E014}");
    let after = b.js("return window.stackpipe.dagView();", vec![]);
    assert!(after["zoom"].as_f64() > before["zoom"].as_f64(), "{before} -> {after}");
    assert!(after["x"].as_f64() != before["x"].as_f64(), "ArrowRight pans: {before} -> {after}");
    // Fold a level, from its button.
    b.click(".levels summary");
    b.press("[data-level='1']", "\u{E007}");
    b.wait_until("window.stackpipe.dagView().folded.includes(1)", WAIT, "level 1 folded");
    assert_eq!(b.js("return document.querySelector(\"[data-level='1']\").getAttribute('aria-pressed');", vec![]), json!("true"));
    b.screenshot("run-graph-folded");
    b.press("#dag", "\u{E007}");
    b.wait_until("location.hash.endsWith('/dev/web')", WAIT, "web's page opened with Enter");
    // The list sorts by level with its column's button.
    b.goto(&format!("{}/#/runs/{run}?env=dev&view=list", s.url));
    b.wait_for("#node-list [data-node=web]", WAIT);
    b.press("#sort-level", "\u{E007}");
    let order = b.js("return [...document.querySelectorAll('#node-list tbody tr')].map(r => Number(r.dataset.level));", vec![]);
    let levels: Vec<i64> = order.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert!(levels.windows(2).all(|w| w[0] <= w[1]) && levels.len() == 4, "{levels:?}");
    s.post(&format!("/api/v1/runs/{run}/cancel"), Some(&c.operator), &json!({}));
    s.wait_run(&run, &c.viewer, "the cancelled run to end", ended);

    // An undeploy destroys what needs a node first: `db` waits, blocked, for `api` and `jobs`.
    let undeploy = s.start_run(&c.operator, json!({ "pipeline": "shop", "operation": "undeploy", "environment": "dev" }));
    b.goto(&format!("{}/#/runs/{undeploy}?view=list", s.url));
    b.wait_for("#node-list [data-node=db]", WAIT);
    let seen = statuses_until_succeeded(&b, "db");
    assert!(seen.contains(&"blocked".to_string()), "db was never shown blocked behind what needs it: {seen:?}");
    b.close();
}

/// `web`: the service `api` built from a local repository (its build says
/// so, after a second), deployed to dev, then to prod once approved, as
/// the version of `app`.
fn web_pipeline(repo: &str) -> String {
    format!(
        "pipeline \"web\"\n\n{TEST_PLUGIN}\n\
         service \"api\" {{\n  repo     = {repo}\n  branches = [\"main\"]\n  build {{\n    command  = [\"sh\", \"build.sh\"]\n    artifact = \"out/a.txt\"\n  }}\n}}\n\n\
         environment dev {{}}\nenvironment prod {{\n  after    = dev\n  approval = true\n}}\n\n\
         resource app \"t.step\" {{ version = service.api.artifact.tag }}\n",
        repo = serde_json::to_string(repo).unwrap()
    )
}

#[test]
fn an_operator_triggers_a_service_pipeline_and_follows_it_from_the_services_pages() {
    let dir = TestServer::prepare(&[]);
    let build = "#!/bin/sh\nset -e\nsleep 1\nmkdir -p out\necho \"$STACKPIPE_COMMIT\" > out/a.txt\necho building the api\n";
    let forge = Forge::new(&dir.path().join("forge"), &[("build.sh", build)], false);
    // The commit's message comes from outside: it must show as text.
    let sha = forge.commit(&[("README.md", "api\n")], XSS);
    forge.push("main");
    std::fs::write(dir.path().join("pipelines/web.pipeline"), web_pipeline(&forge.bare.display().to_string())).unwrap();
    let operator = TestServer::add_user(dir.path(), "otto", "operator", &[]);
    let viewer = TestServer::add_user(dir.path(), "vera", "viewer", &[]);
    let s = TestServer::start(dir, &[]);
    let b = Browser::start();
    log_in(&b, &s.url, &operator);

    // Services, from the navigation: `api` of `web`, enabled, never run.
    b.click("[data-nav=services]");
    b.wait_for("#services [data-service=api] [data-state=enabled]", WAIT);
    assert!(b.text("#services [data-service=api]").contains("never run"), "{}", b.text("#services"));
    b.screenshot("services");
    assert_contrast(&b, "services");
    b.click("#services [data-service=api] th a");
    b.wait_for("#trigger-pipeline", WAIT);
    assert_eq!(b.js("return location.hash;", vec![]), json!("#/services/api"));
    assert!(b.text("#executions").contains("No pipeline has run yet"), "{}", b.text("#executions"));
    // The console is never reloaded from here until the settings: a reload would lose this.
    b.js("window.__same_page = true;", vec![]);

    // Trigger a pipeline of main from the dialog.
    b.click("#trigger-pipeline");
    b.wait_for("dialog[open] #tp-branch", WAIT);
    assert_eq!(b.js("return document.getElementById('tp-branch').value;", vec![]), json!("main"), "the branch the service builds is offered");
    b.fill("#tp-branch", "main");
    b.screenshot("service-trigger");
    b.click("#tp-start");
    b.wait_for("#executions tr[data-execution]", WAIT);
    let id = b.js("return document.querySelector('#executions tr[data-execution]').dataset.execution;", vec![]);
    let id = id.as_str().unwrap().to_string();
    // The row follows the pipeline without a reload: building, then waiting at prod's gate.
    let row = format!("#executions tr[data-execution={id}]");
    let mut seen: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while seen.last().map(String::as_str) != Some("running waiting for approval (prod)") {
        assert!(std::time::Instant::now() < deadline, "the pipeline never waited for prod on the list; seen {seen:?}");
        let shown = b.js("const r = document.querySelector(arguments[0]); return `${r.dataset.status}${r.querySelector('.stage')?.textContent || ''}`;", vec![json!(row)]);
        let shown = shown.as_str().unwrap().to_string();
        if seen.last() != Some(&shown) {
            seen.push(shown);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen.iter().any(|st| st == "running building"), "the build was not followed live: {seen:?}");
    let cells = b.js("return [...document.querySelectorAll(arguments[0] + ' td')].map(td => td.textContent);", vec![json!(row)]);
    assert_eq!(cells[0], json!(format!("{} {XSS}", &sha[..8])), "the commit and its message, as text: {cells}");
    assert_eq!(cells[1], "Production");
    assert_eq!(cells[5], "main");
    assert_eq!(cells[6], "Ada Lovelace");
    // The environment filter is kept in the address.
    b.click(".env-filter input[data-environment=prod]");
    b.wait_until("location.hash === '#/services/api?environments=prod'", WAIT, "the filter in the address");
    assert_no_markup_ran(&b, "service");
    b.screenshot("service");
    assert_contrast(&b, "service");

    // The detail: the build's output, the deploy's run, dev deployed and prod's gate, approved here.
    b.click(&format!("{row} th a"));
    b.wait_for("#deployments [data-environment=prod][data-status=waiting]", WAIT);
    assert_eq!(b.js("return location.hash;", vec![]), json!(format!("#/services/api/pipelines/{id}")));
    assert!(b.exists("#deployments [data-environment=dev][data-status=succeeded]"));
    b.wait_until("document.getElementById('build-log').textContent.includes('building the api')", WAIT, "the build's output");
    let run = s.get(&format!("/api/v1/executions/{id}"), Some(&operator)).body["run"].as_str().unwrap().to_string();
    assert_eq!(b.js("return document.getElementById('deploy-run').getAttribute('href');", vec![]), json!(format!("#/runs/{run}")));
    assert_eq!(b.text("#commit-message"), XSS);
    assert!(b.exists("#cancel-execution") && !b.exists("#rerun-execution"), "a running pipeline is cancelled, not rerun");
    b.screenshot("service-pipeline-waiting");
    assert_contrast(&b, "service pipeline");
    b.click("[data-approve=prod]");
    b.wait_for("dialog[open] #decide-comment", WAIT);
    b.fill("#decide-comment", "ship it");
    b.click("#decide-confirm");
    b.wait_for("#deployments [data-environment=prod][data-status=succeeded]", WAIT);
    b.wait_until("document.querySelector('h1 [data-execution-status]')?.dataset.executionStatus === 'succeeded'", WAIT, "the pipeline shown succeeded");
    assert!(b.exists("#rerun-execution") && !b.exists("#cancel-execution"), "an ended pipeline is rerun, not cancelled");
    assert!(b.text("#deploy-log").contains("prod/app apply"), "the deploy log follows prod: {}", b.text("#deploy-log"));
    let doc = s.get(&format!("/api/v1/runs/{run}"), Some(&operator)).body;
    assert_eq!(doc["decisions"][0]["by"], "otto", "{doc:#}");
    assert_eq!(doc["decisions"][0]["comment"], "ship it");
    assert_no_markup_ran(&b, "service pipeline");
    b.screenshot("service-pipeline");
    // Back on the list, the row has followed it; the page was never reloaded.
    b.click(".crumbs a[href='#/services/api']");
    b.wait_for(&format!("{row}[data-status=succeeded]"), WAIT);
    assert_eq!(b.js("return window.__same_page === true;", vec![]), json!(true), "the console was reloaded");

    // Deployments switched off: it sticks, and says who.
    b.wait_for("#set-deploys:checked", WAIT);
    b.click("#set-deploys");
    b.wait_until("document.getElementById('settings-by').textContent.includes('otto')", WAIT, "who changed the settings");
    b.reload();
    b.wait_for("#set-enabled", WAIT);
    assert_eq!(b.js("return [document.getElementById('set-enabled').checked, document.getElementById('set-deploys').checked];", vec![]), json!([true, false]));
    assert!(b.exists("h1 [data-state='deployments disabled']"), "the service's state says so");
    assert_eq!(s.get("/api/v1/services/api", Some(&operator)).body["service"]["deploys"], false);
    b.click(".crumbs a[href='#/services']");
    b.wait_for(&format!("#services [data-service=api] a[href='#/services/api/pipelines/{id}']"), WAIT);
    assert!(b.exists("#services [data-service=api] [data-state='deployments disabled']"), "{}", b.text("#services"));
    assert!(b.exists("#services [data-service=api] [data-execution-status=succeeded]"), "{}", b.text("#services"));

    // A viewer opening the link a commit status carries: the login, then the pipeline; nothing to change.
    b.click("#logout");
    b.wait_until("location.hash.startsWith('#/login')", WAIT, "the login page after logging out");
    b.goto(&format!("{}/#/services/api/pipelines/{id}", s.url));
    b.wait_for("form#login input#token", WAIT);
    b.fill("#token", &viewer);
    b.click("form#login button[type=submit]");
    b.wait_for("#deployments [data-environment=prod][data-status=succeeded]", WAIT);
    assert!(b.text("#build-log").contains("building the api"));
    assert!(!b.exists("#rerun-execution") && !b.exists("#cancel-execution"), "a viewer is offered a rerun or a cancel");
    b.goto(&format!("{}/#/services/api", s.url));
    b.wait_for(&row, WAIT);
    assert!(!b.exists("#trigger-pipeline"), "a viewer is offered the Trigger button");
    assert_eq!(b.js("return document.getElementById('set-deploys').disabled;", vec![]), json!(true));
    b.close();
}
