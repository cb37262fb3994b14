//! The build of a pipeline execution: the service's `command` run in a
//! clean checkout, in a process group of its own (so that a cancel or a
//! timeout kills every process it started at once), with an environment
//! made from nothing: a fixed `PATH`, a `HOME` and `TMPDIR` of its own,
//! `STACKPIPE_*` naming what is built, and what the service's `build { env }`
//! grants. Its output, stdout and stderr merged, goes out line by line.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `PATH` builds (and git) run with.
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The longest line of build output kept; the rest of it is cut.
const LONGEST_LINE: usize = 8 * 1024;

/// What a build is given besides its command: what it builds.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    pub service: String,
    pub execution: String,
    pub commit: String,
    pub branch: String,
    /// The tag, for a tag build.
    pub tag: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("cannot start `{program}`: {why}")]
    Spawn { program: String, why: String },
    #[error("the build exited with status {0}")]
    Exit(i32),
    #[error("the build was killed by signal {0}")]
    Signal(i32),
    #[error("the build ran longer than its timeout ({0} s) and was killed")]
    Timeout(u64),
    #[error("the build was cancelled")]
    Cancelled,
    #[error("{0}")]
    Io(String),
}

/// Asks a running build to stop: its process group is killed at once.
#[derive(Debug, Clone, Default)]
pub struct BuildCancel(Arc<AtomicBool>);

impl BuildCancel {
    pub fn new() -> Self {
        BuildCancel::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The environment a build runs with: nothing inherited.
pub fn build_environment(spec_env: &BTreeMap<String, String>, ctx: &BuildContext, home: &Path, tmp: &Path) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in spec_env {
        env.insert(k.clone(), v.clone());
    }
    // What every build gets, over anything the file says.
    env.insert("PATH".into(), SAFE_PATH.into());
    env.insert("HOME".into(), home.display().to_string());
    env.insert("TMPDIR".into(), tmp.display().to_string());
    env.insert("LANG".into(), "C.UTF-8".into());
    env.insert("CI".into(), "true".into());
    env.insert("STACKPIPE_SERVICE".into(), ctx.service.clone());
    env.insert("STACKPIPE_EXECUTION".into(), ctx.execution.clone());
    env.insert("STACKPIPE_COMMIT".into(), ctx.commit.clone());
    env.insert("STACKPIPE_BRANCH".into(), ctx.branch.clone());
    env.insert("STACKPIPE_TAG".into(), ctx.tag.clone().unwrap_or_else(|| ctx.commit.clone()));
    env.into_iter().collect()
}

/// Runs `command` in `checkout` with `env` (and nothing else), calling
/// `line` with each line it prints; blocks until it ends, `timeout`
/// passes or `cancel` is asked (both kill its whole process group).
pub fn run_build(
    command: &[String],
    checkout: &Path,
    env: &[(String, String)],
    timeout: Duration,
    cancel: &BuildCancel,
    mut line: impl FnMut(String),
) -> Result<(), BuildError> {
    let Some((program, args)) = command.split_first() else {
        return Err(BuildError::Spawn { program: String::new(), why: "the command is empty".into() });
    };
    let (reader, writer) = std::io::pipe().map_err(|e| BuildError::Io(format!("cannot make a pipe: {e}")))?;
    let writer2 = writer.try_clone().map_err(|e| BuildError::Io(format!("cannot make a pipe: {e}")))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(checkout)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| BuildError::Spawn { program: program.clone(), why: e.to_string() })?;
    // Drop the parent's ends of the pipe (held by `cmd`): the reader then
    // ends when every process of the build has closed its end.
    drop(cmd);
    let pgid = child.id() as i32;
    let kill_group = move || {
        // SAFETY: kill(2) with a negative pid signals the process group the
        // child leads (made by `process_group(0)`); no memory is involved.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    };
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let pump = std::thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    let mut text = text.trim_end_matches(['\n', '\r']).to_string();
                    if text.len() > LONGEST_LINE {
                        let mut cut = LONGEST_LINE;
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        text.truncate(cut);
                        text.push_str(" …(cut)");
                    }
                    if lines_tx.send(text).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let started = Instant::now();
    let mut stopped: Option<BuildError> = None;
    let status = loop {
        while let Ok(text) = lines_rx.try_recv() {
            line(text);
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                kill_group();
                return Err(BuildError::Io(format!("cannot wait for the build: {e}")));
            }
        }
        if stopped.is_none() {
            if cancel.is_cancelled() {
                kill_group();
                stopped = Some(BuildError::Cancelled);
            } else if started.elapsed() > timeout {
                kill_group();
                stopped = Some(BuildError::Timeout(timeout.as_secs()));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The leader is gone; whatever it left in its group goes too, so that
    // nothing a build started outlives it (and the pipe closes).
    kill_group();
    let _ = pump.join();
    while let Ok(text) = lines_rx.try_recv() {
        line(text);
    }
    if let Some(e) = stopped {
        return Err(e);
    }
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(BuildError::Exit(code)),
        (None, Some(sig)) => Err(BuildError::Signal(sig)),
        (None, None) => Err(BuildError::Exit(-1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn output_comes_out_by_line_and_the_exit_status_decides() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Vec::new();
        let env = build_environment(&BTreeMap::new(), &BuildContext::default(), dir.path(), dir.path());
        let r = run_build(&sh("echo one; echo two >&2; exit 3"), dir.path(), &env, Duration::from_secs(10), &BuildCancel::new(), |l| {
            lines.push(l)
        });
        assert_eq!(r, Err(BuildError::Exit(3)));
        assert_eq!(lines, vec!["one", "two"]);
    }

    #[test]
    fn a_build_sees_only_the_environment_it_is_given() {
        // SAFETY: set before any thread of this test reads the environment.
        unsafe { std::env::set_var("STACKPIPE_TEST_SERVER_SECRET", "hunter2") };
        let dir = tempfile::tempdir().unwrap();
        let granted = BTreeMap::from([("GREETING".to_string(), "hi".to_string())]);
        let ctx = BuildContext { service: "api".into(), commit: "abc".into(), ..Default::default() };
        let env = build_environment(&granted, &ctx, dir.path(), dir.path());
        let mut lines = Vec::new();
        run_build(&sh("env | sort"), dir.path(), &env, Duration::from_secs(10), &BuildCancel::new(), |l| lines.push(l)).unwrap();
        let all = lines.join("\n");
        assert!(all.contains("GREETING=hi") && all.contains("STACKPIPE_SERVICE=api") && all.contains("STACKPIPE_TAG=abc"), "{all}");
        assert!(!all.contains("hunter2"), "the server's environment leaked into the build:\n{all}");
    }

    #[test]
    fn a_cancel_kills_the_whole_process_tree_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let cancel = BuildCancel::new();
        let c2 = cancel.clone();
        let pf = pidfile.clone();
        std::thread::spawn(move || {
            while !pf.exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(50));
            c2.cancel();
        });
        let env = build_environment(&BTreeMap::new(), &BuildContext::default(), dir.path(), dir.path());
        let started = Instant::now();
        let r = run_build(&sh(&script), dir.path(), &env, Duration::from_secs(60), &cancel, |_| {});
        assert_eq!(r, Err(BuildError::Cancelled));
        assert!(started.elapsed() < Duration::from_secs(20));
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // Killed means gone or a zombie its new parent has yet to reap.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(), "the build's background process {pid} outlived the cancel");
    }

    #[test]
    fn a_build_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let env = build_environment(&BTreeMap::new(), &BuildContext::default(), dir.path(), dir.path());
        let r = run_build(&sh("sleep 30"), dir.path(), &env, Duration::from_millis(300), &BuildCancel::new(), |_| {});
        assert_eq!(r, Err(BuildError::Timeout(0)));
    }
}
