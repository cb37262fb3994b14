//! The team server's API checked against its own OpenAPI document by
//! schemathesis (from PyPI, in a venv: `scripts/schemathesis.sh`): requests
//! made from the document, valid and not, to a live server; every answer
//! must be one the document allows, and no request may be a server error.

mod common;

use std::process::Command;

use common::server::TestServer;
use common::TEST_PLUGIN;

#[test]
fn the_api_answers_as_its_openapi_document_says() {
    let pipeline = format!("pipeline \"demo\"\n\n{TEST_PLUGIN}\nenvironment dev {{}}\n\nresource a \"t.step\" {{}}\n");
    let dir = TestServer::prepare(&[("demo", &pipeline)]);
    let token = TestServer::add_user(dir.path(), "ada", "admin", &[]);
    let s = TestServer::start(dir, &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/schemathesis.sh");
    // schemathesis keeps a cache where it runs: not in the repository.
    let o = Command::new("bash").args([script, "run", &s.url, &token]).current_dir(s.path()).output().expect("bash runs");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "schemathesis found problems:\n{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("generated"), "{out}");
}
