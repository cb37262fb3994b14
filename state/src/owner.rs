//! `owner.json`: who has the state database open; and whether a process is
//! still alive.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The process that has the state database open, as written to
/// `<dir>/owner.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OwnerInfo {
    pub pid: u32,
    pub run_id: Option<String>,
    pub since_ms: u64,
    /// The control socket its run serves, if any.
    #[serde(default)]
    pub control: Option<std::path::PathBuf>,
}

pub(crate) const OWNER_FILE: &str = "owner.json";

/// Reads `owner.json`; missing or unreadable is `None` (it only informs an
/// error message).
pub fn read_owner(dir: &Path) -> Option<OwnerInfo> {
    let bytes = fs::read(dir.join(OWNER_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes `owner.json` through a temporary file and a rename, so that a
/// reader never sees half of it.
pub(crate) fn write_owner(dir: &Path, owner: &OwnerInfo) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(owner).map_err(io::Error::other)?;
    let tmp = dir.join(format!("{OWNER_FILE}.{}.tmp", owner.pid));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&json)?;
    }
    fs::rename(&tmp, dir.join(OWNER_FILE))
}

/// Removes `owner.json` if it names this process.
pub(crate) fn remove_owner(dir: &Path) {
    if read_owner(dir).is_some_and(|o| o.pid == std::process::id()) {
        let _ = fs::remove_file(dir.join(OWNER_FILE));
    }
}

/// Whether process `pid` exists (and is not a zombie). Where there is no
/// `/proc` to ask, a process is assumed alive: a lock is never taken
/// from a holder that may still be running.
pub fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if pid == 0 {
        return false;
    }
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    let dir = proc.join(pid.to_string());
    match fs::read_to_string(dir.join("stat")) {
        // `pid (comm) S ...`: the state follows the last `)`.
        Ok(stat) => {
            let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
            !matches!(state, Some("Z" | "X" | "x"))
        }
        Err(_) => dir.exists(),
    }
}
