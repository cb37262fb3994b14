//! `stackpipe state repair`: replaces a damaged state database with what
//! can be recovered, after copying it aside. Recovery tries the file itself
//! first (redb's own recovery, which falls back to the commit before a torn
//! one), then the backup of the last good state; it never guesses. Nothing
//! is replaced unless the result passes the same check a writer makes.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use redb::backends::FileBackend;
use redb::{Database, DatabaseError, ReadableDatabase};

use super::error::StateError;
use super::file::{BACKUP_FILE, DB_FILE};
use super::child::{in_child, Budget, Trial};
use super::owner::read_owner;
use super::records::now_ms;
use super::redb_store::read_through;
use super::{Counts, StateStore};

/// Where the recovered state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovered {
    /// The database was not damaged; nothing was changed.
    NothingToRepair,
    /// From the damaged file itself.
    File,
    /// From [`BACKUP_FILE`].
    Backup,
}

/// What `repair` did.
#[derive(Debug, Clone)]
pub struct RepairReport {
    pub recovered: Recovered,
    /// Where the damaged file was copied before anything else was done.
    pub damaged_copy: Option<PathBuf>,
    /// What the state holds now.
    pub counts: Counts,
    /// What the backup holds, when there is a readable one.
    pub backup_counts: Option<Counts>,
    /// Why the file itself could not be used, when it could not.
    pub file_problem: Option<String>,
}

/// Repairs `<dir>/state.redb`; `from_backup` skips recovering the file
/// itself and restores the backup.
pub fn repair(dir: &Path, from_backup: bool) -> Result<RepairReport, StateError> {
    let path = dir.join(DB_FILE);
    let file = match fs::OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StateError::Missing { dir: dir.to_path_buf() }),
        Err(e) => return Err(e.into()),
    };
    // Held until the end: nobody opens the database while it is replaced.
    let _lock = FileBackend::new(file).map_err(|e| match e {
        DatabaseError::DatabaseAlreadyOpen => StateError::Busy { path: path.clone(), holder: read_owner(dir) },
        other => StateError::Db(other.to_string()),
    })?;
    let backup = dir.join(BACKUP_FILE);
    let backup_counts = if backup.exists() { recover_copy(&backup, dir).ok().map(|(_, c, _)| c) } else { None };
    if !from_backup {
        if let Ok((_, counts, true)) = recover_copy(&path, dir) {
            return Ok(RepairReport {
                recovered: Recovered::NothingToRepair,
                damaged_copy: None,
                counts,
                backup_counts,
                file_problem: None,
            });
        }
    }
    let aside = dir.join(format!("{DB_FILE}.damaged-{}", now_ms()));
    copy_private(&path, &aside)?;
    let from_file = if from_backup {
        Err("--from-backup: the file itself was not tried".to_string())
    } else {
        recover_copy(&path, dir)
    };
    let (recovered, (fixed, counts), file_problem) = match from_file {
        Ok((fixed, counts, _)) => (Recovered::File, (fixed, counts), None),
        Err(problem) => {
            if !backup.exists() {
                return Err(StateError::Damaged {
                    path,
                    cause: format!(
                        "it cannot be recovered ({problem}), and there is no backup ({BACKUP_FILE}). It was copied to {}; \
                         to start over with no state, remove it (what was deployed stays deployed, but nothing manages it)",
                        aside.display()
                    ),
                });
            }
            match recover_copy(&backup, dir) {
                Ok((fixed, counts, _)) => (Recovered::Backup, (fixed, counts), Some(problem)),
                Err(backup_problem) => {
                    return Err(StateError::Damaged {
                        path,
                        cause: format!(
                            "it cannot be recovered ({problem}), nor can its backup ({backup_problem}). It was copied to {}",
                            aside.display()
                        ),
                    })
                }
            }
        }
    };
    fixed.persist(&path).map_err(|e| StateError::Io(e.error))?;
    File::open(dir)?.sync_all()?;
    Ok(RepairReport { recovered, damaged_copy: Some(aside), counts, backup_counts, file_problem })
}

/// Copies `from` into a private temporary file in `dir` and recovers it
/// there; the recovered file, what it holds and whether it was sound as it
/// was (what a writer's check asks: recovery after a crash is no damage);
/// or why it cannot be recovered.
fn recover_copy(from: &Path, dir: &Path) -> Result<(tempfile::TempPath, Counts, bool), String> {
    let copy = tempfile::Builder::new().prefix(".state.redb.repair-").tempfile_in(dir).map_err(|e| e.to_string())?;
    {
        let mut source = File::open(from).map_err(|e| e.to_string())?;
        let meta = source.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() || meta.len() == 0 {
            return Err(if meta.len() == 0 { "it is empty".into() } else { "it is not a regular file".into() });
        }
        let mut head = [0u8; 4];
        std::os::unix::fs::FileExt::read_exact_at(&source, &mut head, 0).map_err(|e| e.to_string())?;
        if &head != b"redb" {
            return Err("it is not a redb database".into());
        }
        io::copy(&mut source, &mut copy.as_file()).map_err(|e| e.to_string())?;
    }
    let copy = copy.into_temp_path();
    let len = fs::metadata(&copy).map_err(|e| e.to_string())?.len();
    // redb's recovery and check run in a child first (see `child`): the
    // file is as untrusted as files get.
    let trial = in_child(Budget::for_file(len), || {
        let mut db = Database::create(&copy).map_err(|e| e.to_string())?;
        let sound = db.check_integrity().map_err(|e| e.to_string())?;
        read_through(&db.begin_read().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        Ok(sound)
    })
    .map_err(|e| format!("cannot check it: {e}"))?;
    let sound = match trial {
        Trial::Finished(Ok(sound)) => sound,
        Trial::Finished(Err(why)) | Trial::Died(why) | Trial::Stopped(why) => return Err(why),
    };
    // Readable through and through: every table, every record.
    let store_dir = tempfile::tempdir_in(dir).map_err(|e| e.to_string())?;
    fs::hard_link(&copy, store_dir.path().join(DB_FILE)).map_err(|e| e.to_string())?;
    let store = StateStore::open_read_only(store_dir.path()).map_err(|e| e.to_string())?;
    let counts = store.counts().map_err(|e| e.to_string())?;
    store.runs().map_err(|e| e.to_string())?;
    store.all_resources().map_err(|e| e.to_string())?;
    store.locks().map_err(|e| e.to_string())?;
    store.touched_resources().map_err(|e| e.to_string())?;
    for run in store.runs().map_err(|e| e.to_string())? {
        store.jobs(&run.id).map_err(|e| e.to_string())?;
        store.logs(&run.id, None).map_err(|e| e.to_string())?;
        store.journal(&run.id).map_err(|e| e.to_string())?;
        store.decisions(&run.id).map_err(|e| e.to_string())?;
    }
    Ok((copy, counts, sound))
}

/// Copies a file to a new file only its owner can read.
fn copy_private(from: &Path, to: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut source = File::open(from)?;
    let mut target = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(to)?;
    io::copy(&mut source, &mut target)?;
    target.sync_all()?;
    Ok(())
}
