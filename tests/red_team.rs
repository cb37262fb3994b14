//! The standing red-team suite: every probe of the state-integrity and
//! security review, repeated against the real binary. (Hostile input has
//! its own file, `hostile_input.rs`; the control socket's probes are in
//! `control_socket.rs`; the compiled-plugin cache's planted and tampered
//! entries are also unit-tested beside the cache.)

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{text, wait_for, Project};
use serde_json::Value;

/// Runs a command, killing it if it has not ended within `limit`: a probe
/// must never hang the suite, and a hang is what some of them look for.
fn run_within(mut c: Command, limit: Duration) -> Output {
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the binary runs");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().expect("output");
            panic!("still running after {limit:?}\nstdout: {}\nstderr: {}", text(&o.stdout), text(&o.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn nodes(n: usize) -> String {
    (0..n).map(|i| format!("resource r{i} \"t.step\" {{}}\n")).collect()
}

fn applied_once_each(p: &Project, n: usize) {
    let ledger = p.ledger();
    for i in 0..n {
        let count = ledger.iter().filter(|l| **l == format!("apply demo/dev/r{i}")).count();
        assert_eq!(count, 1, "r{i} applied {count} times");
    }
}

/// What a failed write must lead to: the run ends failed at once, naming
/// the file and the cause; no environment claims success; the run reads as
/// interrupted; once there is room, `resume` finishes it with every
/// resource applied once.
fn failed_write_then_resume(p: &Project, deploy: Command, state_args: &[&str], make_room: impl FnOnce()) {
    let o = run_within(deploy, Duration::from_secs(60));
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert!(err.contains("state.redb") && err.contains("No space left on device"), "{err}");
    assert!(!out.contains("succeeded"), "a false success: {out}");
    assert!(out.contains("[dev] failed"), "{out}");
    make_room();
    let o = p.run(&[&["runs"][..], state_args].concat());
    assert!(text(&o.stdout).contains("interrupted"), "{}", text(&o.stdout));
    let o = run_within(p.command(&[&["resume", "r000001"][..], state_args].concat()), Duration::from_secs(120));
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
    applied_once_each(p, 400);
}

#[test]
fn a_write_past_a_full_disk_fails_the_run_and_resume_finishes_it() {
    let p = Project::new(&nodes(400));
    // The database may not grow past this: a deploy of 400 nodes needs more.
    let mut deploy = p.command(&["deploy", "demo.pipeline"]);
    deploy.env("STACKPIPE_STATE_SIZE_LIMIT", "2000000");
    failed_write_then_resume(&p, deploy, &[], || {});
}

/// Unmounts a file system when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_tmpfs_fails_the_run_and_resume_finishes_it() {
    let p = Project::new(&nodes(400));
    let mnt = p.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("note: cannot mount a tmpfs here (not root?); the size-limit probe covers a full disk");
        return;
    }
    let _unmount = Mount(mnt.clone());
    let state = mnt.join(".stackpipe");
    let state = state.to_str().unwrap();
    let deploy = p.command(&["deploy", "demo.pipeline", "--state", state]);
    failed_write_then_resume(&p, deploy, &["--state", state], || {
        let grown = Command::new("mount").args(["-o", "remount,size=64m"]).arg(&mnt).status().unwrap();
        assert!(grown.success());
    });
}

#[test]
fn sigterm_and_sigint_stop_a_run_promptly() {
    for signal in [libc_signal::TERM, libc_signal::INT] {
        let p = Project::new(&(0..20).map(|i| format!("resource r{i} \"t.step\" {{ delay_ms = 200 }}\n")).collect::<String>());
        let child = p.command(&["deploy", "demo.pipeline", "--parallelism", "2"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        wait_for("a first apply", || !p.ledger().is_empty());
        let sent = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
        assert!(sent.success());
        let start = Instant::now();
        let o = child.wait_with_output().unwrap();
        assert!(start.elapsed() < Duration::from_secs(10), "{signal}: took {:?}", start.elapsed());
        assert_eq!(o.status.code(), Some(1), "{signal}: {}", text(&o.stderr));
        assert!(text(&o.stdout).contains("cancelled"), "{signal}: {}", text(&o.stdout));
        assert!(p.ledger().len() < 20);
    }
}

mod libc_signal {
    pub const TERM: &str = "-TERM";
    pub const INT: &str = "-INT";
}

/// Ways a state file is found damaged, each made from a good one.
fn damaged_copies(good: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("empty".to_string(), Vec::new()),
        ("foreign".to_string(), b"PK\x03\x04 not a database at all".repeat(100)),
    ];
    for cut in [5, 100, 4096, good.len() / 2, good.len() - 100] {
        out.push((format!("truncated at {cut}"), good[..cut].to_vec()));
    }
    let mut seed = 0x9E3779B97F4A7C15u64;
    for round in 0..4 {
        let mut bytes = good.to_vec();
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed % bytes.len() as u64) as usize;
            bytes[i] ^= 1 << (seed % 8);
        }
        out.push((format!("200 flipped bits ({round})"), bytes));
    }
    out
}

#[test]
fn damaged_state_is_never_made_worse_and_repair_recovers_it() {
    let p = Project::new(&nodes(5));
    // Two deploys: the second finds the first's state good and keeps it as the backup.
    for _ in 0..2 {
        let o = p.run(&["deploy", "demo.pipeline"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    }
    let db = p.path().join(".stackpipe/state.redb");
    let good = std::fs::read(&db).unwrap();
    let applied = p.ledger().len();
    for (what, bytes) in damaged_copies(&good) {
        std::fs::write(&db, &bytes).unwrap();
        let readers: [&[&str]; 5] = [
            &["runs"],
            &["status"],
            &["state", "list"],
            &["outputs", "demo.pipeline"],
            &["plan", "demo.pipeline"],
        ];
        for args in readers.iter().copied().chain([&["deploy", "demo.pipeline"][..]]) {
            let o = run_within(p.command(args), Duration::from_secs(60));
            let err = text(&o.stderr);
            assert!(!err.contains("panicked"), "{what}: {args:?} panicked: {err}");
            match o.status.code() {
                Some(2) => {
                    assert!(err.contains("state.redb") && err.contains("damaged"), "{what}: {args:?}: {err}");
                    assert!(err.contains("stackpipe state repair"), "{what}: {args:?}: {err}");
                }
                // The damage fell where nothing lives, and the file reads whole.
                Some(0) => {}
                other => panic!("{what}: {args:?} exited {other:?}: {err}"),
            }
            if o.status.code() == Some(2) || args[0] != "deploy" {
                assert_eq!(std::fs::read(&db).unwrap(), bytes, "{what}: {args:?} changed the file");
            }
        }
        assert_eq!(p.ledger().len(), applied, "{what}: a resource was applied again");
        let o = p.run(&["state", "repair"]);
        assert_eq!(o.status.code(), Some(0), "{what}: {}\n{}", text(&o.stdout), text(&o.stderr));
        let out = text(&o.stdout);
        assert!(out.contains("5 resources"), "{what}: {out}");
        let o = p.run(&["deploy", "demo.pipeline"]);
        assert_eq!(o.status.code(), Some(0), "{what}: after repair: {}", text(&o.stderr));
        assert_eq!(p.ledger().len(), applied, "{what}: after repair, a resource was applied again");
        std::fs::write(&db, &good).unwrap();
    }
    // What repair copied aside is kept, private.
    let asides: Vec<_> = std::fs::read_dir(p.path().join(".stackpipe"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("state.redb.damaged-"))
        .collect();
    assert!(!asides.is_empty());
    for a in asides {
        assert_eq!(a.metadata().unwrap().permissions().mode() & 0o077, 0);
    }
}

#[test]
fn read_only_commands_create_nothing() {
    let p = Project::new(&nodes(1));
    let nowhere = ["status", "--state", "/nonexistent/stackpipe-state"];
    for args in [&["runs"][..], &["status"], &["logs"], &["state", "list"], &["history", "dev/r0"], &["show", "r000001"], &nowhere] {
        let o = p.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("no state in"), "{args:?}: {}", text(&o.stderr));
    }
    let o = p.run(&["plan", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(!p.path().join(".stackpipe").exists(), "a reader created the state directory");
    assert!(!std::path::Path::new("/nonexistent").exists());
}

#[test]
fn no_plugin_is_granted_the_state() {
    let pipeline = |grant: &str, resource: &str| {
        format!(
            r#"pipeline "demo"
plugin files {{
  kind   = "provisioner"
  source = "builtin:local"
  allow  {{ fs = ["{grant}"] }}
}}
environment dev {{}}
{resource}
"#
        )
    };
    let overwrite = r#"resource db "files.file" { path = ".stackpipe/state.redb" content = "pwned" }"#;
    for grant in [".", "./", ".stackpipe", ".stackpipe/inner", "sub/../"] {
        let p = Project::with_pipeline(&pipeline(grant, overwrite));
        let o = p.run(&["check", "demo.pipeline"]);
        assert_eq!(o.status.code(), Some(2), "{grant}: {}", text(&o.stdout));
        let err = text(&o.stderr);
        assert!(err.contains("may not be granted") && err.contains("state directory"), "{grant}: {err}");
        let o = p.run(&["deploy", "demo.pipeline"]);
        assert_eq!(o.status.code(), Some(2), "{grant}: {}", text(&o.stderr));
        assert!(!p.path().join(".stackpipe/state.redb").exists() || std::fs::read(p.path().join(".stackpipe/state.redb")).unwrap() != b"pwned");
    }
    // A grant that is a symbolic link into the state directory.
    let p = Project::with_pipeline(&pipeline("out", r#"resource f "files.file" { path = "out/state.redb" content = "pwned" }"#));
    std::fs::create_dir_all(p.path().join(".stackpipe")).unwrap();
    std::os::unix::fs::symlink(p.path().join(".stackpipe"), p.path().join("out")).unwrap();
    let o = p.run(&["check", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let o = p.run(&["deploy", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(2));
    // --state inside a granted directory, at run start.
    let p = Project::with_pipeline(&pipeline("out", r#"resource f "files.file" { path = "out/x.txt" content = "x" }"#));
    let o = p.run(&["check", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = p.run(&["deploy", "demo.pipeline", "--state", "out/state"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("state directory"), "{}", text(&o.stderr));
    assert!(!p.path().join("out/x.txt").exists());
}

#[test]
fn a_tampered_or_planted_compiled_plugin_is_never_loaded() {
    let p = Project::new("");
    let cache = p.path().join("cache");
    let inspect = |cache: &std::path::Path| {
        let mut c = p.command(&["plugin", "inspect", "builtin:test"]);
        c.env("STACKPIPE_CACHE_DIR", cache);
        c.output().unwrap()
    };
    let o = inspect(&cache);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = inspect(&cache);
    assert!(text(&o.stdout).contains("from the cache"), "{}", text(&o.stdout));
    // Flip a byte of every entry: each is refused, recompiled and replaced.
    for e in std::fs::read_dir(&cache).unwrap().filter_map(|e| e.ok()) {
        if e.path().extension().is_some_and(|x| x == "cwasm") {
            let mut bytes = std::fs::read(e.path()).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(e.path(), bytes).unwrap();
        }
    }
    let o = inspect(&cache);
    assert!(!text(&o.stdout).contains("from the cache"), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains("WARN"), "{}", text(&o.stderr));
    // A cache directory others can write is not used at all.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = inspect(&cache);
    assert!(!text(&o.stdout).contains("from the cache"), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains("writable by group or others"), "{}", text(&o.stderr));
}

const SECRET: &str = "hunter2-very-secret";

fn secret_project() -> Project {
    Project::with_pipeline(
        r#"pipeline "demo"
var db_password: string sensitive
plugin t {
  kind   = "provisioner"
  source = "builtin:test"
  config { ledger = "out/ledger.txt" }
  allow  { fs = ["out"] }
}
environment dev {}
resource db "t.step" {
  password  = var.db_password
  api_key   = "k-5551234"
  sensitive = ["api_key"]
  outputs   = { url = "postgres://u:${var.db_password}@h/db" }
}
resource app "t.step" {
  conn = db.url
}
output conn = db.url
"#,
    )
}

#[test]
fn secrets_are_never_shown_nor_kept_in_run_records() {
    let p = secret_project();
    let var = format!("db_password={SECRET}");
    let mut seen = String::new();
    for args in [
        &["plan", "demo.pipeline", "--var", &var][..],
        &["plan", "demo.pipeline", "--var", &var, "--json"],
        &["deploy", "demo.pipeline", "--var", &var],
        &["deploy", "demo.pipeline", "--var", &var, "--json"],
        &["status"],
        &["status", "--json"],
        &["status", "--inputs"],
        &["status", "--node", "db"],
        &["status", "--node", "app"],
        &["history", "dev/db", "--diff"],
        &["history", "dev/app", "--diff"],
        &["history", "dev/app", "--json"],
        &["logs"],
        &["logs", "--json"],
        &["runs", "--json"],
        &["outputs", "demo.pipeline"],
        &["outputs", "demo.pipeline", "--json"],
        &["state", "show", "demo/dev/db"],
        &["state", "show", "demo/dev/app"],
        &["state", "list", "--json"],
    ] {
        let o = p.run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
        assert!(!all.contains(SECRET), "{args:?} shows the secret:\n{all}");
        assert!(!all.contains("k-5551234"), "{args:?} shows the marked attribute:\n{all}");
        seen.push_str(&all);
    }
    assert!(seen.contains("(sensitive)"));
    // Deliberately.
    let o = p.run(&["outputs", "demo.pipeline", "--show-sensitive"]);
    assert!(text(&o.stdout).contains(SECRET), "{}", text(&o.stdout));
    // The state is private.
    let dir = p.path().join(".stackpipe");
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    for e in std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().is_file()) {
        assert_eq!(e.metadata().unwrap().permissions().mode() & 0o077, 0, "{:?}", e.path());
    }
    // The run records hold no value of it: `runs --json` and `status --json` are the records.
    let o = p.run(&["runs", "--json"]);
    let runs: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2);
}

#[test]
fn resume_and_rerun_ask_for_a_sensitive_var_again() {
    let p = secret_project();
    let o = p.run(&["deploy", "demo.pipeline", "--var", &format!("db_password={SECRET}")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = p.run(&["rerun", "r000001"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("sensitive var `db_password`") && err.contains("STACKPIPE_VAR_db_password"), "{err}");
    let o = p.command(&["rerun", "r000001"]).env("STACKPIPE_VAR_db_password", SECRET).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("is taken from what you gave now"), "{}", text(&o.stderr));
    // A resume of an interrupted run refuses another value.
    let p = Project::with_pipeline(
        &std::fs::read_to_string(secret_project().path().join("demo.pipeline"))
            .unwrap()
            .replace("resource app \"t.step\" {", "resource app \"t.step\" {\n  delay_ms = 3000"),
    );
    let mut child = p
        .command(&["deploy", "demo.pipeline", "--var", &format!("db_password={SECRET}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("db applied", || p.ledger().len() == 1);
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let o = p.run(&["resume", "r000001", "--var", "db_password=something-else"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("not the one run r000001 was started with"), "{}", text(&o.stderr));
    let o = p.run(&["resume", "r000001", "--var", &format!("db_password={SECRET}")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

#[test]
fn a_killed_run_reads_as_interrupted_with_the_way_out() {
    let p = Project::new(&(0..10).map(|i| format!("resource r{i} \"t.step\" {{ delay_ms = 300 }}\n")).collect::<String>());
    let mut child =
        p.command(&["deploy", "demo.pipeline", "--parallelism", "1"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for("a first apply", || !p.ledger().is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    let o = p.run(&["runs"]);
    let out = text(&o.stdout);
    assert!(out.contains("interrupted") && out.contains("stackpipe resume r000001"), "{out}");
    let o = p.run(&["status"]);
    let out = text(&o.stdout);
    assert!(out.contains("interrupted") && out.contains("`stackpipe resume r000001`"), "{out}");
    assert_eq!(p.status(None)["status"], "interrupted");
    let o = p.run(&["resume", "r000001"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let doc = p.status(None);
    assert_eq!(doc["status"], "succeeded");
    // The resume is kept with the run; who started it stays.
    assert_eq!(doc["resumed"].as_array().map(Vec::len), Some(1), "{doc:#}");
    assert_eq!(doc["resumed"][0]["by"], doc["started_by"], "{doc:#}");
}
