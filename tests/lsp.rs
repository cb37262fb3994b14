//! `stackpipe lsp` driven over stdio with JSON-RPC, as an editor drives it:
//! initialize, didOpen, didChange, publishDiagnostics, hover, definition,
//! references, completion, rename, formatting and the outline, the answers
//! snapshotted. The `local` plugin is really loaded for its schemas.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

const FILE: &str = r#"pipeline "editor"

var greeting: string = "hello"

plugin local {
  kind   = "provisioner"
  source = "builtin:local"
  allow { fs = ["out"] }
}

environment dev {}

environment prod {
  after = dev
  vars { greeting = "good morning" }
}

# The site's directory.
resource site "local.directory" {
  path = "out/${env.name}"
}

resource index "local.file" {
  path    = "${site.path}/index.html"
  content = var.greting
}

output index_path = index.path
"#;

struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: mpsc::Receiver<Value>,
    next_id: i64,
    uri: String,
    /// Notifications received while waiting for responses.
    notifications: Vec<Value>,
}

impl Client {
    fn start(dir: &std::path::Path) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stackpipe"))
            .arg("lsp")
            .env("STACKPIPE_CACHE_DIR", dir.join("cache"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start stackpipe lsp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut length = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(n) = line.strip_prefix("Content-Length: ") {
                        length = n.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; length.expect("a Content-Length header")];
                reader.read_exact(&mut body).expect("a message body");
                if tx
                    .send(serde_json::from_slice(&body).expect("JSON"))
                    .is_err()
                {
                    return;
                }
            }
        });
        let uri = format!("file://{}", dir.join("editor.pipeline").display());
        Client {
            child,
            stdin,
            messages,
            next_id: 0,
            uri,
            notifications: Vec::new(),
        }
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len())
            .expect("write to the server");
        self.stdin.flush().expect("flush");
    }

    fn receive(&mut self) -> Value {
        self.messages
            .recv_timeout(Duration::from_secs(60))
            .expect("a message from the server within 60 s")
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let m = self.receive();
            if m.get("id") == Some(&json!(id)) {
                assert!(m.get("error").is_none(), "{method}: {m}");
                return m["result"].clone();
            }
            self.notifications.push(m);
        }
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// The next diagnostics published for the file that `accept` takes.
    fn diagnostics_where(&mut self, accept: impl Fn(&Value) -> bool) -> Value {
        loop {
            let m = if self.notifications.is_empty() {
                self.receive()
            } else {
                self.notifications.remove(0)
            };
            if m["method"] == "textDocument/publishDiagnostics" && accept(&m["params"]) {
                return m["params"]["diagnostics"].clone();
            }
        }
    }

    fn at(&self, line: u32, character: u32) -> Value {
        json!({ "textDocument": { "uri": self.uri }, "position": { "line": line, "character": character } })
    }
}

/// `value` as pretty JSON, snapshotted under `name`.
/// (The file's temp directory `dir`, which differs from run to run, as `/DIR`.)
fn snapshot(dir: &str, name: &str, value: impl Into<Value>) {
    let text = serde_json::to_string_pretty(&value.into())
        .expect("JSON")
        .replace(dir, "/DIR");
    insta::assert_snapshot!(name, text);
}

/// Line and column (0-based, UTF-16; the file is ASCII) of the `nth` `needle` in `text`.
fn position_of(text: &str, needle: &str, nth: usize) -> (u32, u32) {
    let offset = text.match_indices(needle).nth(nth).expect("the needle").0;
    let line = text[..offset].matches('\n').count();
    let column = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1);
    (line as u32, column as u32)
}

#[test]
fn an_editor_session() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let d = dir.path().display().to_string();
    let mut c = Client::start(dir.path());
    let init = c.request(
        "initialize",
        json!({ "processId": null, "rootUri": null, "capabilities": {} }),
    );
    snapshot(&d, "initialize", init);
    c.notify("initialized", json!({}));

    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": c.uri, "languageId": "pipeline", "version": 1, "text": FILE } }),
    );
    let diagnostics = c.diagnostics_where(|_| true);
    snapshot(&d, "diagnostics on open", diagnostics);

    // Fix the typo with an incremental change, and add an attribute the
    // schema of `local.file` does not have: reported once the plugin has
    // answered.
    let (line, col) = position_of(FILE, "var.greting", 0);
    c.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": c.uri, "version": 2 },
            "contentChanges": [{
                "range": { "start": { "line": line, "character": col }, "end": { "line": line, "character": col + 11 } },
                "text": "var.greeting\n  colour  = \"blue\""
            }]
        }),
    );
    let text = FILE.replace("var.greting", "var.greeting\n  colour  = \"blue\"");
    let diagnostics = c.diagnostics_where(|p| {
        p["version"] == 2 && !p["diagnostics"].as_array().unwrap().is_empty()
    });
    snapshot(&d, "diagnostics from the plugin schema", diagnostics);

    let (l, ch) = position_of(&text, "greeting", 2); // `var.greeting` in index
    snapshot(
        &d,
        "hover on a var",
        c.request("textDocument/hover", c.at(l, ch + 1)),
    );
    let (l, ch) = position_of(&text, "\"local.file\"", 0);
    snapshot(
        &d,
        "hover on a resource type",
        c.request("textDocument/hover", c.at(l, ch + 3)),
    );
    let (l, ch) = position_of(&text, "site.path", 0);
    snapshot(
        &d,
        "hover on an output",
        c.request("textDocument/hover", c.at(l, ch + 6)),
    );
    snapshot(
        &d,
        "hover on a resource",
        c.request("textDocument/hover", c.at(l, ch + 1)),
    );

    snapshot(
        &d,
        "definition of site",
        c.request("textDocument/definition", c.at(l, ch + 1)),
    );
    let mut refs = c.at(l, ch + 1);
    refs["context"] = json!({ "includeDeclaration": true });
    snapshot(
        &d,
        "references to site",
        c.request("textDocument/references", refs),
    );
    let (l, ch) = position_of(&text, "dev", 1); // `after = dev`
    snapshot(
        &d,
        "definition of an environment",
        c.request("textDocument/definition", c.at(l, ch)),
    );

    let mut rename = c.at(l, ch);
    let (l, ch) = position_of(&text, "site", 1);
    rename = json!({ "textDocument": rename["textDocument"], "position": { "line": l, "character": ch }, "newName": "web" });
    snapshot(
        &d,
        "rename site to web",
        c.request("textDocument/rename", rename),
    );

    // Completion: a resource's outputs after `index.`, on a new line typed at the end.
    let end_line = text.lines().count() as u32;
    c.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": c.uri, "version": 3 },
            "contentChanges": [{
                "range": { "start": { "line": end_line, "character": 0 }, "end": { "line": end_line, "character": 0 } },
                "text": "output size = index."
            }]
        }),
    );
    let completion = c.request("textDocument/completion", c.at(end_line, 20));
    let labels: Vec<&str> = completion
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    snapshot(&d, "completion of outputs", labels);

    let symbols = c.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": c.uri } }),
    );
    let outline: Vec<String> = symbols
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{} ({})", s["name"], s["detail"]))
        .collect();
    snapshot(&d, "outline", outline);

    // Formatting: the text back as `fmt` lays it out.
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": c.uri, "version": 4 }, "contentChanges": [{ "text": "var   x =1\nresource a \"local.directory\" {path=\"out/a\"}\n" }] }),
    );
    let edits = c.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": c.uri }, "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    snapshot(&d, "formatting", edits);

    c.request("shutdown", Value::Null);
    c.notify("exit", Value::Null);
    let status = c.child.wait().expect("the server exits");
    assert!(status.success(), "{status}");
}
