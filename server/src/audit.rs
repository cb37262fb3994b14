//! The audit log: every mutating request to the server (who, what, when,
//! from which address, with what result), one JSON line each in
//! `audit.jsonl` beside the state (0600), or a row each of the `audit`
//! table of a PostgreSQL state. `stackpipe audit` shows it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub const AUDIT_FILE: &str = "audit.jsonl";

/// One request, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Milliseconds since the epoch.
    pub ms: u64,
    /// The authenticated user; None when the request had no valid token.
    pub user: Option<String>,
    /// The client's address.
    pub address: String,
    pub method: String,
    pub path: String,
    /// The HTTP status of the answer.
    pub status: u16,
    /// What was done, when the request names it (a run started: its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// The audit log of one state directory, open for appending.
pub struct AuditLog {
    to: AuditTo,
}

enum AuditTo {
    File { path: PathBuf, file: Mutex<File> },
    Shared(std::sync::Arc<stackpipe_state_postgres::PostgresStore>),
}

impl AuditLog {
    /// The audit log of a PostgreSQL state.
    pub fn shared(store: std::sync::Arc<stackpipe_state_postgres::PostgresStore>) -> AuditLog {
        AuditLog { to: AuditTo::Shared(store) }
    }

    /// Every entry of a PostgreSQL state's audit log, oldest first.
    pub fn read_shared(store: &stackpipe_state_postgres::PostgresStore) -> Result<Vec<AuditEntry>, AuditError> {
        let records = store.audit_records().map_err(|e| shared_error(store, e))?;
        // A record that does not read is skipped, as a torn line is.
        Ok(records.iter().filter_map(|r| serde_json::from_str(r).ok()).collect())
    }

    pub fn open(dir: &Path) -> Result<AuditLog, AuditError> {
        let path = dir.join(AUDIT_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| AuditError::Io { path: path.clone(), source })?;
        Ok(AuditLog { to: AuditTo::File { path, file: Mutex::new(file) } })
    }

    /// Appends `entry`. A request whose audit line cannot be written has
    /// been done already; the failure is logged where the operator sees it.
    pub fn append(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        let mut line = serde_json::to_string(entry).unwrap_or_default();
        match &self.to {
            AuditTo::File { path, file } => {
                line.push('\n');
                let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
                f.write_all(line.as_bytes()).map_err(|source| AuditError::Io { path: path.clone(), source })
            }
            AuditTo::Shared(store) => store.append_audit(entry.ms, line).map_err(|e| shared_error(store, e)),
        }
    }

    /// Every entry of `dir`'s audit log, oldest first (none when it has none).
    pub fn read(dir: &Path) -> Result<Vec<AuditEntry>, AuditError> {
        let path = dir.join(AUDIT_FILE);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(AuditError::Io { path, source }),
        };
        let mut out = Vec::new();
        for line in BufReader::new(f).lines() {
            let line = line.map_err(|source| AuditError::Io { path: path.clone(), source })?;
            // A line torn by a crash mid-write is skipped, not fatal.
            if let Ok(e) = serde_json::from_str(&line) {
                out.push(e);
            }
        }
        Ok(out)
    }
}

fn shared_error(store: &stackpipe_state_postgres::PostgresStore, e: stackpipe_runtime::state::StateError) -> AuditError {
    let path = PathBuf::from(format!("{} (audit)", stackpipe_runtime::state::StateBackend::location(store)));
    AuditError::Io { path, source: std::io::Error::other(e.to_string()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_and_read_back_and_the_file_is_private() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let e = AuditEntry {
            ms: 1,
            user: Some("alice".into()),
            address: "127.0.0.1:5000".into(),
            method: "POST".into(),
            path: "/api/v1/runs".into(),
            status: 201,
            detail: None,
        };
        log.append(&e).unwrap();
        log.append(&AuditEntry { user: None, status: 401, ..e.clone() }).unwrap();
        std::fs::OpenOptions::new().append(true).open(dir.path().join(AUDIT_FILE)).unwrap().write_all(b"{\"torn").unwrap();
        let read = AuditLog::read(dir.path()).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0], e);
        assert_eq!(read[1].user, None);
        assert_eq!(std::fs::metadata(dir.path().join(AUDIT_FILE)).unwrap().mode() & 0o777, 0o600);
    }
}
