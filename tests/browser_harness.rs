//! The real-browser harness itself (tests/common/browser.rs), against a real
//! `stackpipe serve` but no console: headless Chromium opens a page of the
//! server, reads it, logs in as the console does, and takes a screenshot.

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::server::TestServer;
use serde_json::json;

#[test]
fn a_headless_chromium_reads_a_page_of_the_server_and_logs_in() {
    let dir = TestServer::prepare(&[]);
    let token = TestServer::add_user(dir.path(), "ada", "admin", &[]);
    let server = TestServer::start(dir, &[]);
    let browser = Browser::start();

    browser.goto(&format!("{}/healthz", server.url));
    let body = browser.js("return document.body.innerText;", vec![]);
    let body = body.as_str().unwrap_or_else(|| panic!("the page's text is a string: {body}"));
    assert!(body.contains(r#""status":"ok""#), "the health page says: {body}");
    browser.wait_until("document.readyState === 'complete'", Duration::from_secs(5), "the page to be loaded");

    let shot = browser.screenshot("harness");
    let png = std::fs::read(&shot).expect("the screenshot is written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", shot.display());

    // The session cookie the login sets is sent by the page's own requests.
    let session = browser.login(&server.url, &token);
    assert_eq!(session["user"], "ada", "{session}");
    let me = browser.js_async(
        "const done = arguments[arguments.length - 1];
         fetch('/api/v1/session').then(async r => done({status: r.status, body: await r.json()}));",
        vec![],
    );
    assert_eq!(me, json!({ "status": 200, "body": session }), "the cookie's session is the login's");
    browser.close();
}
