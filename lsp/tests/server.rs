//! The server in-process, on lsp-server's in-memory connection: what the
//! stdio session in `tests/lsp.rs` does not go through (completion in each
//! place, rename's refusals, a cycle's related information, closing).

use std::time::Duration;

use lsp_server::{Connection, Message, Notification, Request, RequestId};
use serde_json::{json, Value};

struct Client {
    conn: Connection,
    server: Option<std::thread::JoinHandle<()>>,
    next: i32,
    pending: Vec<Notification>,
}

const URI: &str = "file:///nonexistent/p.pipeline";

impl Client {
    fn start() -> Client {
        // Compiled components go where the other tests keep theirs, not in
        // the user's cache (every test sets the same value).
        std::env::set_var("STACKPIPE_CACHE_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/../target/test-component-cache"));
        let (server, conn) = Connection::memory();
        let handle = std::thread::spawn(move || stackpipe_lsp::serve(server, true).expect("the server ends cleanly"));
        let mut c = Client { conn, server: Some(handle), next: 0, pending: Vec::new() };
        c.request("initialize", json!({ "capabilities": {} }));
        c.notify("initialized", json!({}));
        c
    }

    fn recv(&self) -> Message {
        self.conn.receiver.recv_timeout(Duration::from_secs(120)).expect("a message from the server")
    }

    /// The result of a request, or its error as `Err`.
    fn try_request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next += 1;
        let id = RequestId::from(self.next);
        self.conn.sender.send(Message::Request(Request::new(id.clone(), method.into(), params))).unwrap();
        loop {
            match self.recv() {
                Message::Response(r) if r.id == id => {
                    return match r.error {
                        Some(e) => Err(e.message),
                        None => Ok(r.result.unwrap_or(Value::Null)),
                    }
                }
                Message::Notification(n) => self.pending.push(n),
                _ => {}
            }
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.try_request(method, params).unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.conn.sender.send(Message::Notification(Notification::new(method.into(), params))).unwrap();
    }

    fn open(&mut self, version: i32, text: &str) {
        let doc = json!({ "uri": URI, "languageId": "pipeline", "version": version, "text": text });
        self.notify("textDocument/didOpen", json!({ "textDocument": doc }));
    }

    /// The next diagnostics published that `accept` takes.
    fn diagnostics(&mut self, accept: impl Fn(&Value) -> bool) -> Value {
        loop {
            let n = if self.pending.is_empty() {
                match self.recv() {
                    Message::Notification(n) => n,
                    _ => continue,
                }
            } else {
                self.pending.remove(0)
            };
            if n.method == "textDocument/publishDiagnostics" && accept(&n.params) {
                return n.params;
            }
        }
    }

    /// Completion labels just after the first `marker` in `text`.
    fn complete(&mut self, text: &str, marker: &str) -> Vec<String> {
        let at = text.find(marker).expect("the marker") + marker.len();
        let line = text[..at].matches('\n').count();
        let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1);
        let items = self.request(
            "textDocument/completion",
            json!({ "textDocument": { "uri": URI }, "position": { "line": line, "character": col } }),
        );
        items.as_array().expect("a list").iter().map(|i| i["label"].as_str().unwrap().to_string()).collect()
    }

    fn stop(mut self) {
        self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        self.server.take().unwrap().join().unwrap();
    }
}

const PIPELINE: &str = r#"var size: number = 2

plugin t {
  kind   = "provisioner"
  source = "builtin:test"
}

environment dev {}

environment prod {
  after = dev
  vars { size = 3 }
}

resource a "t.step" {
  x = var.size
}

resource b "t.step" {
  y = "${a.id}-${var.size}"
}
"#;

/// Waits until the `test` plugin's schemas are in: a type it does not have
/// is reported only then.
fn with_schemas(c: &mut Client) {
    let text = format!("{PIPELINE}resource probe \"t.no_such_type\" {{}}\n");
    c.open(1, &text);
    c.diagnostics(|p| p["diagnostics"].to_string().contains("unknown_type"));
}

#[test]
fn completion_in_each_place() {
    let mut c = Client::start();
    with_schemas(&mut c);
    let text = format!(
        "{PIPELINE}resource c \"t.\" {{\n  \n}}\nresource d \"t.step\" {{\n  z = var.\n  w = a.\n}}\nenvironment qa {{\n  after = \n}}\n"
    );
    c.open(2, &text);
    let types = c.complete(&text, "resource c \"t.");
    assert!(types.contains(&"t.step".to_string()), "{types:?}");
    let attributes = c.complete(&text, "resource c \"t.\" {\n  ");
    assert!(attributes.contains(&"depends_on".to_string()), "{attributes:?}");
    let attributes = c.complete(&text, "resource b \"t.step\" {\n  ");
    assert!(attributes.len() > 3, "the schema's attributes too: {attributes:?}");
    assert_eq!(c.complete(&text, "z = var."), ["size"]);
    let outputs = c.complete(&text, "w = a.");
    assert!(outputs.contains(&"id".to_string()), "{outputs:?}");
    assert_eq!(c.complete(&text, "after = "), ["dev", "prod"]);
    let top = c.complete(&text, "");
    assert!(top.contains(&"resource".to_string()) && top.contains(&"environment".to_string()), "{top:?}");
    c.stop();
}

#[test]
fn rename_a_var_everywhere_and_refuse_a_name_that_is_not_one() {
    let mut c = Client::start();
    c.open(1, PIPELINE);
    let at = json!({ "textDocument": { "uri": URI }, "position": { "line": 0, "character": 5 } });
    let mut params = at.clone();
    params["newName"] = json!("replicas");
    let edit = c.request("textDocument/rename", params);
    let edits = edit["changes"][URI].as_array().expect("edits").len();
    assert_eq!(edits, 4, "the declaration, `vars {{ size = 3 }}` and two `var.size`: {edit}");
    params = at;
    params["newName"] = json!("two words");
    let refused = c.try_request("textDocument/rename", params).expect_err("not a name");
    assert!(refused.contains("is not a name"), "{refused}");
    c.stop();
}

#[test]
fn a_cycle_carries_its_steps_as_related_information_and_closing_clears_it() {
    let mut c = Client::start();
    c.open(1, "resource a \"t.step\" { x = b.id }\nresource b \"t.step\" { y = a.id }\n");
    let published = c.diagnostics(|p| p["diagnostics"].to_string().contains("cycle"));
    let diagnostics = published["diagnostics"].as_array().unwrap();
    let cycle = diagnostics.iter().find(|d| d["code"] == "stackpipe::cycle").unwrap();
    let related: Vec<&str> =
        cycle["relatedInformation"].as_array().unwrap().iter().map(|r| r["message"].as_str().unwrap()).collect();
    assert!(related.iter().any(|m| m.contains("depends on")), "{related:?}");
    assert!(related.iter().any(|m| m.starts_with("help:")), "{related:?}");

    let format = json!({ "textDocument": { "uri": URI }, "options": { "tabSize": 2, "insertSpaces": true } });
    let edits = c.request("textDocument/formatting", format.clone());
    assert_eq!(edits.as_array().map(Vec::len), Some(1), "the text formatted: {edits}");
    c.open(2, "resource a \"t.step\" {");
    assert_eq!(c.request("textDocument/formatting", format), Value::Null, "no edit for a file with syntax errors");

    c.notify("textDocument/didClose", json!({ "textDocument": { "uri": URI } }));
    let cleared = c.diagnostics(|p| p["diagnostics"] == json!([]) && p.get("version").is_none_or(Value::is_null));
    assert_eq!(cleared["uri"], URI);
    c.stop();
}

#[test]
fn a_did_you_mean_is_a_quick_fix_and_a_name_highlights_its_uses() {
    let mut c = Client::start();
    let text = PIPELINE.replace("x = var.size", "x = var.sise");
    c.open(1, &text);
    c.diagnostics(|p| p["diagnostics"].to_string().contains("sise"));
    let line = text[..text.find("sise").unwrap()].matches('\n').count();
    let at = json!({ "line": line, "character": 10 });
    let actions = c.request(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": URI }, "range": { "start": at, "end": at }, "context": { "diagnostics": [] } }),
    );
    let fix = &actions[0];
    assert_eq!(fix["title"], "Change to `size`", "{actions}");
    let edit = &fix["edit"]["changes"][URI][0];
    assert_eq!(edit["newText"], "size");
    assert_eq!(edit["range"]["start"], json!({ "line": line, "character": 10 }));

    // `a`, declared once and used once (in b's interpolation).
    let line = text[..text.find("resource a").unwrap()].matches('\n').count();
    let highlights = c.request(
        "textDocument/documentHighlight",
        json!({ "textDocument": { "uri": URI }, "position": { "line": line, "character": 9 } }),
    );
    let kinds: Vec<&Value> = highlights.as_array().unwrap().iter().map(|h| &h["kind"]).collect();
    assert_eq!(kinds, [&json!(3), &json!(2)], "write then read: {highlights}");
    c.stop();
}
