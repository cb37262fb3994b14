//! The control socket's place on disk, end to end: a deploy whose control
//! directory cannot be trusted stops, with the reason, before anything of
//! the run is recorded; one that can serves its socket from
//! `.stackpipe/control/`, a directory only its user can enter.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{text, Project};
use serde_json::Value;

fn runs(p: &Project) -> Vec<Value> {
    let o = p.run(&["runs", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("runs --json is JSON")
}

#[test]
fn an_untrusted_control_directory_stops_the_run_before_it_is_recorded() {
    let p = Project::new(r#"resource a "t.step" {}"#);
    let control = p.path().join(".stackpipe/control");
    std::fs::create_dir_all(&control).expect("mkdir");
    std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o777)).expect("chmod");

    let o = p.run(&["deploy", "demo.pipeline"]);
    let err = text(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "deployed anyway: {err}");
    assert!(err.contains("cannot serve the control socket") && err.contains("must be private (0700)"), "{err}");
    assert!(p.ledger().is_empty(), "something was applied: {:?}", p.ledger());
    assert!(runs(&p).is_empty(), "a run was recorded: {:?}", runs(&p));
    let mode = std::fs::metadata(&control).expect("stat").mode() & 0o7777;
    assert_eq!(mode, 0o777, "the directory was chmodded, not refused");

    // Made private, it is used: the first run recorded is the first run.
    std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let runs = runs(&p);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["run"], "r000001");
    assert_eq!(runs[0]["status"], "succeeded");
    // The socket went with the run.
    assert_eq!(std::fs::read_dir(&control).expect("ls").count(), 0);
}

#[test]
fn something_in_the_sockets_place_stops_the_run_and_is_left_alone() {
    let p = Project::new(r#"resource a "t.step" {}"#);
    let control = p.path().join(".stackpipe/control");
    std::fs::create_dir_all(control.join("control.sock")).expect("mkdir");
    std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o700)).expect("chmod");

    let o = p.run(&["deploy", "demo.pipeline"]);
    let err = text(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "deployed anyway: {err}");
    assert!(err.contains("control.sock is taken by a directory"), "{err}");
    assert!(runs(&p).is_empty(), "a run was recorded");
    assert!(control.join("control.sock").is_dir());
}

#[test]
fn a_run_serves_from_a_private_directory() {
    let p = Project::new(r#"resource a "t.step" { delay_ms = 1500 }"#);
    let mut child = p.command(&["deploy", "demo.pipeline"]).stdout(std::process::Stdio::null()).spawn().expect("starts");
    let owner = p.path().join(".stackpipe/owner.json");
    let socket = loop {
        let doc: Option<Value> = std::fs::read(&owner).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(path) = doc.as_ref().and_then(|d| d["control"].as_str()) {
            break std::path::PathBuf::from(path);
        }
        assert!(child.try_wait().expect("wait").is_none(), "the run ended before it served its socket");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let dir = p.path().join(".stackpipe/control");
    assert_eq!(socket, dir.join("control.sock"));
    let meta = std::fs::symlink_metadata(&dir).expect("stat");
    assert!(meta.is_dir());
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    assert_eq!(meta.mode() & 0o077, 0, "mode {:o}", meta.mode());
    // Another terminal's `status` reaches the run through it.
    let o = p.run(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let doc: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(doc["run"], "r000001");
    assert!(child.wait().expect("the run ends").success());
    assert!(!socket.exists(), "the socket outlived the run");
}
