//! A forge on loopback for the service pipeline tests: a bare repository
//! served by a real `git daemon` on a free port (or reached by its path), a
//! working clone to commit and push from, webhook deliveries in GitHub's
//! shape signed as GitHub signs them, and a listener that records the
//! commit statuses posted to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

pub struct Forge {
    pub root: PathBuf,
    /// The bare repository.
    pub bare: PathBuf,
    /// Where commits are made and pushed from.
    pub work: PathBuf,
    daemon: Option<Child>,
    pub port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Ada Lovelace", "-c", "user.email=ada@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Forge {
    /// A bare repository `origin.git` under `root` with a first commit on
    /// `main` holding `files`; served by `git daemon` when `serve`.
    pub fn new(root: &Path, files: &[(&str, &str)], serve: bool) -> Forge {
        let bare = root.join("origin.git");
        let work = root.join("work");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "--quiet", "--bare"]);
        git(root, &["clone", "--quiet", bare.to_str().unwrap(), work.to_str().unwrap()]);
        git(&work, &["checkout", "--quiet", "-b", "main"]);
        let mut forge = Forge { root: root.to_path_buf(), bare, work, daemon: None, port: 0 };
        forge.commit(files, "first commit");
        forge.push("main");
        if serve {
            forge.port = free_port();
            let child = Command::new("git")
                .args(["daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1"])
                .arg(format!("--port={}", forge.port))
                .arg(format!("--base-path={}", root.display()))
                .arg(root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("git daemon starts");
            forge.daemon = Some(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", forge.port)).is_err() {
                assert!(Instant::now() < deadline, "git daemon does not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        forge
    }

    /// `git://127.0.0.1:PORT/origin.git`
    pub fn url(&self) -> String {
        format!("git://127.0.0.1:{}/origin.git", self.port)
    }

    /// Writes `files` (an empty text deletes), commits; the new SHA.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, text) in files {
            let p = self.work.join(path);
            if text.is_empty() {
                let _ = std::fs::remove_file(&p);
                continue;
            }
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            if path.ends_with(".sh") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "--quiet", "--allow-empty", "-m", message]);
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    pub fn checkout(&self, branch: &str, new: bool) {
        if new {
            git(&self.work, &["checkout", "--quiet", "-b", branch]);
        } else {
            git(&self.work, &["checkout", "--quiet", branch]);
        }
    }

    /// Pushes `what` (a branch or tag name); the SHA it had on the forge before.
    pub fn push(&self, what: &str) -> String {
        let before = Command::new("git")
            .current_dir(&self.bare)
            .args(["rev-parse", "--verify", "--quiet", &format!("refs/heads/{what}")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        git(&self.work, &["push", "--quiet", "origin", what]);
        if before.is_empty() { "0".repeat(40) } else { before }
    }

    pub fn tag(&self, name: &str) {
        git(&self.work, &["tag", "-a", name, "-m", name]);
        git(&self.work, &["push", "--quiet", "origin", name]);
    }
}

impl Drop for Forge {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `sha256=HEX`: the `X-Hub-Signature-256` of `body` with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A GitHub push event's payload.
pub fn push_event(reference: &str, before: &str, after: &str, message: &str) -> Vec<u8> {
    json!({
        "ref": reference,
        "before": before,
        "after": after,
        "pusher": { "name": "ada" },
        "head_commit": { "id": after, "message": message, "author": { "name": "Ada Lovelace" } },
        "repository": { "full_name": "acme/shop" },
    })
    .to_string()
    .into_bytes()
}

/// A GitHub pull_request event's payload.
pub fn pull_request_event(number: u64, base: &str, head_ref: &str, sha: &str) -> Vec<u8> {
    json!({
        "action": "opened",
        "number": number,
        "pull_request": { "title": "Try a thing", "head": { "sha": sha, "ref": head_ref }, "base": { "ref": base }, "user": { "login": "bo" } },
        "sender": { "login": "bo" },
    })
    .to_string()
    .into_bytes()
}

/// A loopback HTTP listener that answers 201 to everything and keeps
/// each request's path, `Authorization` header and JSON body.
pub struct StatusSink {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<(String, String, Value)>>>,
}

impl StatusSink {
    pub fn start() -> StatusSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                let (mut length, mut auth) = (0usize, String::new());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("authorization:") {
                        auth = line["authorization:".len()..].trim().to_string();
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let path = first.split_whitespace().nth(1).unwrap_or_default().to_string();
                kept.lock().unwrap().push((path, auth, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                let _ = stream.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
            }
        });
        StatusSink { port, seen }
    }
}
