//! redb run first in a child process, on any file not yet trusted.
//!
//! redb trusts the pages it reads. The panics a damaged page causes are
//! caught (see `guard`), but not everything is a panic: a damaged page
//! number can make redb allocate terabytes, and a failed allocation aborts
//! the process, which no guard inside it can catch (the fuzzer found such
//! files: `fuzz/artifacts/state_file/`). So whatever redb must do with a
//! file before it is trusted (the writer's check of a copy, a reader's
//! first read, `state repair`'s recovery) is first done in a forked child.
//! A child that dies says "damaged" about the file, not about stackpipe;
//! a child that finishes has read those same bytes, and the parent may.
//!
//! The child is a fork, not a new program: the state crate serves the CLI,
//! the server and tests alike, without a helper binary to find. It runs
//! only redb and the file system on memory it owns; it prints nothing,
//! ignores Ctrl-C (its parent decides what a Ctrl-C means), has a memory
//! limit and a deadline, and leaves by `_exit`.

use std::io;
use std::time::{Duration, Instant};

use super::guard::{install_hook, quietly};

/// How a trial in a child process ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Trial {
    /// What the trial returned.
    Finished(Result<bool, String>),
    /// The child died (an abort, a crash, its memory limit) or did not
    /// finish in time: what redb would have done to this process.
    Died(String),
    /// The child was stopped from outside (a signal meant for the whole
    /// process group, a kill): nothing is known about the file.
    Stopped(String),
}

/// What a trial on a file of `len` bytes may use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Address space beyond what the process already has.
    pub memory: u64,
    pub time: Duration,
}

impl Budget {
    /// Room for redb's cache and a copy of every page several times over
    /// (at least 2 GiB); two minutes and a second per 4 MiB, far beyond
    /// what reading the file takes even in a debug build.
    pub(crate) fn for_file(len: u64) -> Budget {
        Budget {
            memory: (2u64 << 30).max(len.saturating_mul(16)),
            time: Duration::from_secs(120 + len / (4 << 20)),
        }
    }
}

/// Runs `trial` in a forked child within `budget`; how it ended. A panic
/// in the trial is `Finished(Err(message))`.
pub(crate) fn in_child(budget: Budget, trial: impl FnOnce() -> Result<bool, String>) -> io::Result<Trial> {
    // Installed here, so that the child never has to take the lock it is
    // installed under (another thread may hold it at the fork).
    install_hook();
    let limit = address_space()?.saturating_add(budget.memory);
    let mut fds = [0; 2];
    // SAFETY: fds is two ints; close-on-exec keeps the write end out of
    // programs other threads start meanwhile (they would hold it open).
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (read_end, write_end) = (fds[0], fds[1]);
    // SAFETY: the child runs only `child` below, which ends in `_exit`:
    // no destructor, no atexit handler, no stdio buffer of the parent's
    // runs twice. glibc's malloc is usable after a fork; the child takes
    // no lock of the parent's that another thread could be holding.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        close(read_end);
        close(write_end);
        return Err(e);
    }
    if pid == 0 {
        close(read_end);
        child(write_end, limit, trial);
    }
    close(write_end);
    let report = read_report(read_end, budget.time);
    close(read_end);
    let timed_out = report.is_none();
    if timed_out {
        // SAFETY: pid is our child, not yet waited for.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let status = wait(pid)?;
    if timed_out {
        return Ok(Trial::Died(format!("reading it did not finish in {} s", budget.time.as_secs())));
    }
    let report = report.unwrap_or_default();
    Ok(verdict(status, &report))
}

/// What the child's exit status and report say.
fn verdict(status: libc::c_int, report: &[u8]) -> Trial {
    let text = || String::from_utf8_lossy(report.get(1..).unwrap_or_default()).into_owned();
    if libc::WIFEXITED(status) {
        return match (libc::WEXITSTATUS(status), report.first()) {
            (0, Some(b'1')) => Trial::Finished(Ok(true)),
            (0, Some(b'0')) => Trial::Finished(Ok(false)),
            (1, Some(b'E')) => Trial::Finished(Err(text())),
            (code, _) => Trial::Died(format!("reading it ended the process (exit status {code})")),
        };
    }
    let signal = if libc::WIFSIGNALED(status) { libc::WTERMSIG(status) } else { 0 };
    match signal {
        libc::SIGABRT => Trial::Died("reading it made redb abort (a damaged page asked for more memory than there is)".into()),
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGSYS | libc::SIGTRAP => {
            Trial::Died(format!("reading it crashed the process (signal {signal})"))
        }
        _ => Trial::Stopped(format!("the check of the file was stopped (signal {signal})")),
    }
}

/// The child: runs the trial, writes its report, exits.
fn child(report_to: libc::c_int, limit: u64, trial: impl FnOnce() -> Result<bool, String>) -> ! {
    // SAFETY: plain system calls on this process's own signal dispositions,
    // descriptors and limits.
    unsafe {
        // A host's crash handlers (a fuzzer's, a sanitizer's) are not for
        // this child's death: it dies as any process would.
        for signal in [libc::SIGABRT, libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGSYS, libc::SIGTRAP] {
            libc::signal(signal, libc::SIG_DFL);
        }
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null >= 0 {
            libc::dup2(null, 2);
            libc::dup2(null, 1);
        }
        // What other threads of the parent had open is not this child's: a
        // state file of another store, with its lock, would stay locked
        // while this child lives. Only the report's pipe is kept (the trial
        // opens what it reads by path).
        let report_to = report_to as libc::c_uint;
        if report_to > 3 {
            libc::close_range(3, report_to - 1, 0);
        }
        libc::close_range(report_to + 1, libc::c_uint::MAX, 0);
        let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
        libc::setrlimit(libc::RLIMIT_AS, &rlimit);
    }
    let (code, report) = match quietly(trial) {
        Ok(Ok(true)) => (0, b"1".to_vec()),
        Ok(Ok(false)) => (0, b"0".to_vec()),
        Ok(Err(why)) | Err(why) => (1, [b"E".as_slice(), why.as_bytes()].concat()),
    };
    let mut rest = &report[..report.len().min(64 << 10)];
    while !rest.is_empty() {
        // SAFETY: rest is a live slice.
        let n = unsafe { libc::write(report_to, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            break;
        }
        rest = &rest[n as usize..];
    }
    // SAFETY: ends the child without running anything of the parent's.
    unsafe { libc::_exit(code) }
}

/// Reads the child's report to its end; None if that takes longer than
/// `time`.
fn read_report(fd: libc::c_int, time: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + time;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one live pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, ms.max(1)) };
        if ready < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Some(out);
        }
        if ready == 0 {
            continue;
        }
        // SAFETY: buf is live and as long as said.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => return Some(out),
            n if n > 0 => out.extend_from_slice(&buf[..n as usize]),
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return Some(out),
        }
    }
}

/// Waits for the child to end; its wait status.
fn wait(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: pid is our child; status is a live int.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn close(fd: libc::c_int) {
    // SAFETY: fd is a descriptor this module opened and closes once.
    unsafe { libc::close(fd) };
}

/// This process's address space now, in bytes (the child's limit is set
/// beyond it: a fork starts with all of its parent's mappings).
fn address_space() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/self/statm does not say the size"))?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Ok(pages.saturating_mul(page))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Budget {
        Budget { memory: 1 << 30, time: Duration::from_secs(30) }
    }

    #[test]
    fn the_child_holds_none_of_the_parents_files() {
        use std::os::fd::AsRawFd;
        let file = tempfile::tempfile().unwrap();
        let fd = file.as_raw_fd();
        // SAFETY: a plain flock on a file this test owns.
        assert_eq!(unsafe { libc::flock(fd, libc::LOCK_EX) }, 0);
        // In the child, the parent's descriptor (and so its lock) is gone.
        // SAFETY: fcntl on a descriptor number only asks about it.
        let closed = in_child(budget(), || Ok(unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1)).unwrap();
        assert_eq!(closed, Trial::Finished(Ok(true)));
    }

    #[test]
    fn what_the_trial_returns_comes_back() {
        assert_eq!(in_child(budget(), || Ok(true)).unwrap(), Trial::Finished(Ok(true)));
        assert_eq!(in_child(budget(), || Ok(false)).unwrap(), Trial::Finished(Ok(false)));
        assert_eq!(in_child(budget(), || Err("no".into())).unwrap(), Trial::Finished(Err("no".into())));
        match in_child(budget(), || panic!("page 9 out of range")).unwrap() {
            Trial::Finished(Err(m)) => assert!(m.starts_with("page 9 out of range"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_allocation_that_cannot_be_made_kills_the_child_not_the_parent() {
        let t = in_child(budget(), || {
            let v: Vec<u8> = Vec::with_capacity(8 << 40);
            Ok(v.capacity() > 0)
        })
        .unwrap();
        assert!(matches!(&t, Trial::Died(why) if why.contains("abort")), "{t:?}");
        // Beyond the budget but possible on this machine: refused all the same.
        let t = in_child(budget(), || Ok(vec![1u8; 3 << 30].len() > 0)).unwrap();
        assert!(matches!(t, Trial::Died(_)), "{t:?}");
    }

    #[test]
    fn a_child_that_does_not_finish_is_killed_at_its_deadline() {
        let quick = Budget { memory: 1 << 30, time: Duration::from_millis(300) };
        let start = Instant::now();
        let t = in_child(quick, || loop {
            std::thread::sleep(Duration::from_millis(50));
        })
        .unwrap();
        assert!(matches!(&t, Trial::Died(why) if why.contains("did not finish")), "{t:?}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_child_stopped_from_outside_says_nothing_about_the_file() {
        let t = in_child(budget(), || {
            // SAFETY: signals this (child) process.
            unsafe { libc::raise(libc::SIGTERM) };
            Ok(true)
        })
        .unwrap();
        assert!(matches!(t, Trial::Stopped(_)), "{t:?}");
    }
}
