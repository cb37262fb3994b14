//! Tests of the control socket's safety: where it is bound, what is refused
//! there, and that other users can neither reach it nor be heard by it.
//!
//! "Another user" is `nobody` (uid 65534): a small python3 client run under
//! `setpriv`. That needs root; where the tests are not root, or there is no
//! setpriv or python3 that nobody can run, those parts are skipped with a
//! note on stderr.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::server::{admit, decider};
use super::socket::{bind_at, euid, place, ControlSocket, SocketError};
use super::{ControlClient, ControlServer, Request, RunHandles};
use crate::run::{AutoApprove, Events, GateOutcome, GateSelector, Gates, RunJournal, StopSignal};
use crate::state::{Decision, GateInfo, GateKind, StateStore};

const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
}

/// A temp directory other users may walk through (as /tmp/<dir> would
/// usually be), so that the control directory is the only thing in their way.
fn open_tempdir() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    chmod(t.path(), 0o755);
    t
}

fn is_root() -> bool {
    euid() == 0
}

fn skip(why: &str) {
    eprintln!("note: skipped: {why}");
}

/// The error of a bind that must fail.
fn bind_err(state: &Path, xdg: Option<&Path>, tmp: &Path) -> SocketError {
    match bind_at(state, euid(), xdg, tmp) {
        Ok(s) => panic!("bound {} where it should have been refused", s.path().display()),
        Err(e) => e,
    }
}

/// A python3 that `nobody` can run (pyenv's shims live under /root).
fn python_for_nobody() -> Option<&'static str> {
    ["/usr/bin/python3", "/usr/local/bin/python3"].into_iter().find(|p| {
        as_nobody_cmd(p).args(["-c", "print('ok')"]).output().is_ok_and(|o| o.status.success() && o.stdout == b"ok\n")
    })
}

fn as_nobody_cmd(python: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", python]);
    c.env_clear().env("PATH", "/usr/bin:/bin").current_dir("/");
    c
}

/// Connects to `socket` as nobody and sends `line`: `connect failed: errno
/// N` or what came back. None (after a note) when that cannot be done here.
fn as_nobody(socket: &Path, line: &str) -> Option<String> {
    if !is_root() {
        skip("acting as another user needs root");
        return None;
    }
    let Some(python) = python_for_nobody() else {
        skip("no setpriv, or no python3 that uid 65534 can run");
        return None;
    };
    const CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect failed: errno", e.errno)
    sys.exit(0)
try:
    s.sendall(sys.argv[2].encode())
except OSError as e:
    print("send failed: errno", e.errno)
got = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    got += b
print(got.decode(), end="")
"#;
    let out = as_nobody_cmd(python)
        .args(["-c", CLIENT])
        .arg(socket)
        .arg(line)
        .output()
        .expect("setpriv runs");
    assert!(out.status.success(), "the client as nobody failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn the_socket_is_in_a_private_directory_nobody_else_can_enter() {
    let t = open_tempdir();
    let state = t.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    chmod(&state, 0o755);
    let socket = ControlSocket::bind(&state).expect("bind");
    let dir = state.join("control");
    assert_eq!(socket.path(), dir.join("control.sock"));
    let meta = std::fs::symlink_metadata(&dir).expect("stat");
    assert!(meta.file_type().is_dir());
    assert_eq!(meta.uid(), euid());
    assert_eq!(meta.mode() & 0o077, 0, "mode {:o}", meta.mode());
    assert_eq!(mode_of(socket.path()), 0o600);
    if let Some(out) = as_nobody(socket.path(), "{\"request\":\"runs\"}\n") {
        assert_eq!(out.trim(), "connect failed: errno 13", "nobody reached the socket");
    }
    // The socket goes when it is dropped; the directory stays for the next run.
    let path = socket.path().to_path_buf();
    drop(socket);
    assert!(!path.exists());
    assert!(dir.is_dir());
    // And the next run binds there again.
    let again = ControlSocket::bind(&state).expect("bind again");
    assert_eq!(again.path(), path);
}

#[test]
fn only_the_same_user_and_root_are_admitted() {
    assert!(admit(1000, 1000).is_ok());
    assert!(admit(0, 1000).is_ok());
    assert!(admit(0, 0).is_ok());
    let e = admit(NOBODY, 1000).expect_err("another user");
    assert!(e.contains("uid 65534") && e.contains("may not use"), "{e}");
    assert!(admit(1000, 0).expect_err("a user, of root's run").contains("only root may"));
}

#[test]
fn deciders_without_a_name_are_recorded_by_number() {
    assert_eq!(decider(0), "root");
    assert_eq!(decider(3_999_999_999), "uid 3999999999");
}

/// A run's gates and control server over a fresh store in `state`, with one
/// environment gate waiting.
struct Served {
    store: Arc<StateStore>,
    gates: Arc<Gates>,
    server: ControlServer,
    waiting: tokio::task::JoinHandle<GateOutcome>,
}

async fn serve_with_a_gate(state: &Path) -> Served {
    let store = Arc::new(StateStore::open(state).expect("store"));
    let socket = ControlSocket::bind(state).expect("bind");
    let journal = RunJournal::start(store.clone());
    let gates = Arc::new(Gates::new("r000001".into(), AutoApprove::default(), journal.clone(), Events::none()));
    let stop = StopSignal::new();
    let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let handles = RunHandles {
        run_id: "r000001".into(),
        journal,
        gates: gates.clone(),
        cancels: Arc::new(crate::run::Cancels::new()),
        stop: stop.clone(),
    };
    let server = ControlServer::start(socket, store.clone(), handles, rx);
    let gate = GateInfo {
        kind: GateKind::Environment,
        environment: "prod".into(),
        node: None,
        reason: "approval = true".into(),
        detail: None,
        since_ms: 1,
    };
    let g = gates.clone();
    let waiting = tokio::spawn(async move { g.wait(gate, stop.receiver()).await });
    for _ in 0..500 {
        if !gates.waiting().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gates.waiting().len(), 1, "the gate never waited");
    Served { store, gates, server, waiting }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_that_reaches_the_socket_is_refused_before_its_request_is_read() {
    let t = open_tempdir();
    let state = t.path().join("state");
    let served = serve_with_a_gate(&state).await;
    let path = served.server.path().to_path_buf();
    // Open the way as a careless (or hostile) setup might: only the peer
    // check stands between nobody and the gate now.
    chmod(&state, 0o755);
    chmod(&state.join("control"), 0o755);
    chmod(&path, 0o777);
    let approve = serde_json::to_string(&Request::Decide {
        run: None,
        selector: GateSelector::default(),
        decision: Decision::Approved,
        comment: Some("let me in".into()),
    })
    .expect("json")
        + "\n";
    let p = path.clone();
    let answer = tokio::task::spawn_blocking(move || as_nobody(&p, &approve)).await.expect("join");
    if let Some(answer) = answer {
        let v: serde_json::Value = serde_json::from_str(answer.trim()).expect("one JSON answer line");
        let why = v["error"].as_str().unwrap_or_else(|| panic!("not an error: {answer}"));
        assert!(why.contains("uid 65534") && why.contains("may not use"), "{why}");
        assert_eq!(served.gates.waiting().len(), 1, "the gate was decided");
        assert!(served.store.decisions("r000001").expect("decisions").is_empty());
    }
    // The run's own user still gets through, and is recorded by name.
    let client = ControlClient::new(path.clone());
    let decide = Request::Decide { run: None, selector: GateSelector::default(), decision: Decision::Approved, comment: None };
    let answer = tokio::task::spawn_blocking(move || client.request(&decide)).await.expect("join").expect("request");
    answer.expect("approved");
    assert_eq!(served.waiting.await.expect("join"), GateOutcome::Approved);
    let decisions = served.store.decisions("r000001").expect("decisions");
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].by, decider(euid()));
    served.server.finish().await;
    assert!(!path.exists(), "the socket outlived the server");
}

#[tokio::test]
async fn a_control_directory_open_to_others_is_refused_not_chmodded() {
    let t = open_tempdir();
    let state = t.path().join("state");
    std::fs::create_dir_all(state.join("control")).expect("mkdir");
    chmod(&state.join("control"), 0o777);
    let e = bind_err(&state, None, t.path());
    assert!(matches!(e, SocketError::OpenToOthers { mode: 0o777, .. }), "{e}");
    assert!(e.to_string().contains("0777") && e.to_string().contains("control"), "{e}");
    assert_eq!(mode_of(&state.join("control")), 0o777, "someone's directory was chmodded");
    // As it reaches the user, through the io::Error of RunError::Control.
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(io.to_string().contains("must be private"), "{io}");
}

#[tokio::test]
async fn a_control_directory_of_another_user_is_refused() {
    if !is_root() {
        return skip("making a directory another user's needs root");
    }
    let t = open_tempdir();
    let state = t.path().join("state");
    let dir = state.join("control");
    std::fs::create_dir_all(&dir).expect("mkdir");
    chmod(&dir, 0o700);
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown");
    let e = bind_err(&state, None, t.path());
    assert!(matches!(e, SocketError::NotOurs { owner: NOBODY, .. }), "{e}");
    assert!(e.to_string().contains("belongs to uid 65534"), "{e}");
    assert_eq!(std::fs::symlink_metadata(&dir).expect("stat").uid(), NOBODY);
}

#[tokio::test]
async fn a_symlink_for_the_control_directory_is_refused() {
    let t = open_tempdir();
    let state = t.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    chmod(&elsewhere, 0o700);
    std::os::unix::fs::symlink(&elsewhere, state.join("control")).expect("symlink");
    let e = bind_err(&state, None, t.path());
    assert!(matches!(e, SocketError::NotADirectory { what: "symbolic link", .. }), "{e}");
    assert_eq!(std::fs::read_dir(&elsewhere).expect("ls").count(), 0);
}

#[tokio::test]
async fn what_sits_at_the_socket_path_is_refused_unless_a_dead_socket() {
    let t = open_tempdir();
    let state = t.path().join("state");
    let dir = state.join("control");
    std::fs::create_dir_all(&dir).expect("mkdir");
    chmod(&dir, 0o700);
    let sock = dir.join("control.sock");

    std::fs::create_dir(&sock).expect("mkdir");
    let e = bind_err(&state, None, t.path());
    assert!(matches!(e, SocketError::Taken { what: "directory", .. }), "{e}");
    assert!(e.to_string().contains("control.sock is taken by a directory"), "{e}");
    assert!(sock.is_dir());
    std::fs::remove_dir(&sock).expect("rmdir");

    std::fs::write(&sock, "not a socket").expect("write");
    let e = bind_err(&state, None, t.path());
    assert!(matches!(e, SocketError::Taken { what: "regular file", .. }), "{e}");
    assert_eq!(std::fs::read_to_string(&sock).expect("still there"), "not a socket");
    std::fs::remove_file(&sock).expect("rm");

    // A socket still served by something alive is left alone...
    let live = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let e = bind_err(&state, None, t.path());
    assert!(matches!(e, SocketError::InUse { .. }), "{e}");
    // ...and one left by a process that is gone is replaced.
    drop(live);
    assert!(sock.exists());
    let socket = bind_at(&state, euid(), None, t.path()).expect("a stale socket is replaced");
    assert_eq!(socket.path(), sock);
    std::os::unix::net::UnixStream::connect(&sock).expect("the new socket answers");
}

/// A state directory whose `control/control.sock` is too long for a socket.
fn long_state(base: &Path) -> PathBuf {
    let state = base.join("s".repeat(60)).join("t".repeat(60));
    assert!(state.join("control/control.sock").as_os_str().len() > 108);
    state
}

#[tokio::test]
async fn long_state_paths_fall_back_to_a_private_per_user_directory() {
    let t = open_tempdir();
    let tmp = t.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    chmod(&tmp, 0o1777);
    let state = long_state(t.path());
    let me = euid();

    // No XDG_RUNTIME_DIR: the temp directory, in a directory of this user's.
    let (dir, name) = place(&state, me, None, &tmp).expect("place");
    assert_eq!(dir, tmp.join(format!("stackpipe-{me}")));
    assert!(name.ends_with(".sock") && name.len() == 16 + 5, "{name}");
    let socket = bind_at(&state, me, None, &tmp).expect("bind");
    assert_eq!(socket.path(), dir.join(&name));
    assert_eq!(mode_of(&dir), 0o700);
    assert_eq!(std::fs::symlink_metadata(&dir).expect("stat").uid(), me);
    if let Some(out) = as_nobody(socket.path(), "{\"request\":\"runs\"}\n") {
        assert_eq!(out.trim(), "connect failed: errno 13", "nobody reached the socket");
    }
    // Another state directory gets another name; the same one the same.
    let (_, other) = place(&long_state(&t.path().join("x")), me, None, &tmp).expect("place");
    assert_ne!(other, name);
    assert_eq!(place(&state, me, None, &tmp).expect("place").1, name);
    drop(socket);

    // A runtime directory of this user's is preferred.
    let xdg = t.path().join("run-user");
    std::fs::create_dir(&xdg).expect("mkdir");
    chmod(&xdg, 0o700);
    let socket = bind_at(&state, me, Some(&xdg), &tmp).expect("bind");
    assert_eq!(socket.path(), xdg.join("stackpipe").join(&name));
    assert_eq!(mode_of(&xdg.join("stackpipe")), 0o700);
    drop(socket);

    // One that others may enter is passed over for the temp directory.
    chmod(&xdg, 0o755);
    assert_eq!(place(&state, me, Some(&xdg), &tmp).expect("place").0, dir);
    // So is one that is not ours (as with `sudo` keeping the variable).
    if is_root() {
        chmod(&xdg, 0o700);
        std::os::unix::fs::chown(&xdg, Some(NOBODY), Some(NOBODY)).expect("chown");
        assert_eq!(place(&state, me, Some(&xdg), &tmp).expect("place").0, dir);
    }
}

#[tokio::test]
async fn a_fallback_directory_taken_first_is_refused() {
    let t = open_tempdir();
    let tmp = t.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    chmod(&tmp, 0o1777);
    let state = long_state(t.path());
    let me = euid();
    let dir = tmp.join(format!("stackpipe-{me}"));

    // Made first, open to all (by us here; by anyone in /tmp).
    std::fs::create_dir(&dir).expect("mkdir");
    chmod(&dir, 0o777);
    let e = bind_err(&state, None, &tmp);
    assert!(matches!(e, SocketError::OpenToOthers { .. }), "{e}");
    assert_eq!(mode_of(&dir), 0o777, "someone's directory was chmodded");
    std::fs::remove_dir(&dir).expect("rmdir");

    // A symlink to a private directory of ours: still not used.
    let mine = t.path().join("mine");
    std::fs::create_dir(&mine).expect("mkdir");
    chmod(&mine, 0o700);
    std::os::unix::fs::symlink(&mine, &dir).expect("symlink");
    let e = bind_err(&state, None, &tmp);
    assert!(matches!(e, SocketError::NotADirectory { .. }), "{e}");
    std::fs::remove_file(&dir).expect("rm");

    if !is_root() {
        return skip("making the fallback directory another user's needs root");
    }
    // Made first by another user, private to them.
    std::fs::create_dir(&dir).expect("mkdir");
    chmod(&dir, 0o700);
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown");
    let e = bind_err(&state, None, &tmp);
    assert!(matches!(e, SocketError::NotOurs { owner: NOBODY, .. }), "{e}");
    assert!(e.to_string().contains(&format!("stackpipe-{me} belongs to uid 65534")), "{e}");
    let meta = std::fs::symlink_metadata(&dir).expect("stat");
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (NOBODY, 0o700), "someone's directory was changed");
}
