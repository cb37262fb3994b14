//! The database file itself: opened for reading without ever being written,
//! or for writing only after a copy of it has passed redb's integrity check;
//! the backup of the last good state that check leaves behind; and the
//! private modes of the state directory (0700) and its files (0600).
//!
//! A damaged file is never written or "repaired" on the way: every open
//! that finds damage fails with [`StateError::Damaged`], and only
//! `stackpipe state repair` (see `repair`) replaces the file, after copying
//! it aside.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use redb::backends::FileBackend;
use redb::{Builder, Database, DatabaseError, ReadOnlyDatabase, ReadableDatabase, StorageBackend};

use super::child::{in_child, Budget, Trial};
use super::error::StateError;
use super::guard::quietly;
use super::owner::read_owner;
use super::redb_store::read_through;

pub const DB_FILE: &str = "state.redb";
/// The last state a writer found good, kept beside the database (as
/// Terraform keeps `terraform.tfstate.backup`): a copy taken when a writer
/// opens the database, after it passed the integrity check.
pub const BACKUP_FILE: &str = "state.redb.backup";

/// A number of bytes past which the database file may not grow: writes
/// beyond it fail as on a full disk. For tests of what a failed write does,
/// where a small file system cannot be mounted.
pub const SIZE_LIMIT_ENV: &str = "STACKPIPE_STATE_SIZE_LIMIT";

/// redb's file signature: the first bytes of every redb database.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// An open database: for writing, for reading, or (for a reader that found
/// the file in need of crash recovery) a private recovered copy of it, read
/// as the file would read once recovered.
pub(crate) enum Db {
    Write(Database),
    Read(ReadOnlyDatabase),
    /// Read only: a recovered copy (deleted when dropped), or an empty
    /// database in memory (no copy) for a reader of a directory without state.
    Snapshot(Database, #[allow(dead_code)] Option<tempfile::TempPath>),
}

/// An empty database in memory, read as a state directory without state.
pub(crate) fn empty() -> Result<Database, StateError> {
    Builder::new()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .map_err(|e| StateError::Db(e.to_string()))
}

/// Creates `dir` with mode 0700 if it is missing. An existing directory this
/// user owns loses its group and other bits: the state holds run records,
/// logs and provider state, none of them for other users.
pub(crate) fn private_dir(dir: &Path) -> Result<(), StateError> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = fs::metadata(dir)?;
    if meta.uid() == euid() && meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

fn damaged(path: &Path, cause: impl Into<String>) -> StateError {
    StateError::Damaged { path: path.to_path_buf(), cause: cause.into() }
}

/// What a redb error at open says about the file.
fn open_error(path: &Path, dir: &Path, e: DatabaseError) -> StateError {
    match e {
        DatabaseError::DatabaseAlreadyOpen => StateError::Busy { path: path.to_path_buf(), holder: read_owner(dir) },
        // A file too short for what its header says, or whose header makes no sense.
        DatabaseError::Storage(redb::StorageError::Io(e))
            if matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData) =>
        {
            damaged(path, format!("it cannot be read as a database ({e})"))
        }
        DatabaseError::Storage(redb::StorageError::Io(e)) => StateError::Io(e),
        other => damaged(path, other.to_string()),
    }
}

/// Checks that `path` is a regular file that begins as a redb database
/// does; its length.
fn check_shape(path: &Path, file: &File) -> Result<u64, StateError> {
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(damaged(path, "it is not a regular file"));
    }
    if meta.len() == 0 {
        return Err(damaged(
            path,
            "it is empty (0 bytes); a state database never is, so it was truncated or replaced",
        ));
    }
    let mut head = [0u8; REDB_MAGIC.len()];
    // At an offset: the file's position stays where it was.
    if std::os::unix::fs::FileExt::read_exact_at(file, &mut head, 0).is_err() || head != REDB_MAGIC {
        return Err(damaged(path, "it is not a stackpipe state database (it does not begin as a redb file does)"));
    }
    Ok(meta.len())
}

/// Opens `<dir>/state.redb` for writing, creating the directory and the
/// database if there is none. An existing database is first copied, and
/// the copy checked (redb's crash recovery where it needs it, then every
/// page's checksum): a damaged file fails with [`StateError::Damaged`] and
/// is left exactly as it was. A good copy becomes [`BACKUP_FILE`].
pub(crate) fn open_for_writing(dir: &Path) -> Result<Database, StateError> {
    private_dir(dir)?;
    let path = dir.join(DB_FILE);
    if fs::symlink_metadata(&path).is_ok_and(|m| !m.file_type().is_file()) {
        return Err(damaged(&path, "it is not a regular file"));
    }
    let (file, created) = match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(f) => (f, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            (OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW).open(&path)?, false)
        }
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    if meta.uid() == euid() && meta.mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    // The lock first: what is checked below cannot change under us.
    let backend = FileBackend::new(file.try_clone()?).map_err(|e| open_error(&path, dir, e))?;
    if !created {
        check_shape(&path, &file)?;
        check_copy(dir, &path)?;
    }
    let backend: Box<dyn StorageBackend> = match size_limit() {
        Some(limit) => Box::new(LimitedBackend { inner: backend, limit }),
        None => Box::new(backend),
    };
    let db = quietly(|| Builder::new().create_with_backend(BoxedBackend(backend)))
        .map_err(|panic| damaged(&path, panic))?
        .map_err(|e| open_error(&path, dir, e))?;
    Ok(db)
}

/// Copies the database beside it, opens the copy (recovering it if the
/// last writer crashed) and checks every page, in a child process (see
/// `child`); a good copy replaces the backup. Run with the database's lock
/// held.
fn check_copy(dir: &Path, path: &Path) -> Result<(), StateError> {
    let copy = tempfile::Builder::new().prefix(".state.redb.check-").tempfile_in(dir)?;
    let len = {
        let mut from = File::open(path)?;
        let mut to = copy.as_file();
        io::copy(&mut from, &mut to)?
    };
    let copy = copy.into_temp_path();
    let trial = in_child(Budget::for_file(len), || {
        // What the file holds as it is, when it opens without a recovery
        // (it was closed cleanly): read before anything can change the copy.
        let before = match ReadOnlyDatabase::open(&copy) {
            Ok(db) => db.begin_read().ok().and_then(|txn| read_through(&txn).ok()),
            Err(_) => None,
        };
        let mut db = Database::create(&copy).map_err(|e| e.to_string())?;
        if db.check_integrity().map_err(|e| e.to_string())? {
            return Ok(true);
        }
        // "Failed, and repaired". redb 3 says so of some healthy files too
        // (after commits that freed pages: cberner/redb#1269): a repair
        // that changed no row only rebuilt its own bookkeeping. One that
        // did change rows (a commit rolled back) is damage.
        let after = read_through(&db.begin_read().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        Ok(before == Some(after))
    })?;
    match trial {
        Trial::Finished(Ok(true)) => {}
        Trial::Finished(Ok(false)) => {
            return Err(damaged(
                path,
                "its pages do not match their checksums (it was changed outside stackpipe, or the disk is failing)",
            ))
        }
        Trial::Finished(Err(why)) | Trial::Died(why) => return Err(damaged(path, why)),
        Trial::Stopped(why) => return Err(StateError::Io(io::Error::new(io::ErrorKind::Interrupted, why))),
    }
    copy.persist(dir.join(BACKUP_FILE)).map_err(|e| StateError::Io(e.error))?;
    Ok(())
}

/// Runs `read` (an open of `path`, or of its copy, and a read of every
/// row) in a child process first: a file it cannot read whole is damaged.
fn try_reading(path: &Path, len: u64, read: impl FnOnce() -> Result<(), String>) -> Result<(), StateError> {
    let trial = in_child(Budget::for_file(len), || read().map(|()| true))?;
    match trial {
        Trial::Finished(Ok(_)) => Ok(()),
        Trial::Finished(Err(why)) => Err(damaged(path, format!("it cannot be read through ({why})"))),
        Trial::Died(why) => Err(damaged(path, why)),
        Trial::Stopped(why) => Err(StateError::Io(io::Error::new(io::ErrorKind::Interrupted, why))),
    }
}

/// Opens `<dir>/state.redb` for reading only: the file is never written,
/// not even by crash recovery. A database whose last writer crashed is
/// recovered in a private copy, which is what is read. No database there
/// is [`StateError::Missing`].
pub(crate) fn open_for_reading(dir: &Path) -> Result<Db, StateError> {
    let path = dir.join(DB_FILE);
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StateError::Missing { dir: dir.to_path_buf() }),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(damaged(&path, "it is a symbolic link")),
        Err(e) => return Err(e.into()),
    };
    let len = check_shape(&path, &file)?;
    // Held from the trial to the open: no writer changes the file between
    // what the child read and what this process opens.
    match file.try_lock_shared() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(StateError::Busy { path: path.clone(), holder: read_owner(dir) })
        }
        Err(fs::TryLockError::Error(e)) => return Err(e.into()),
    }
    // A file redb cannot even open is left for this process to open and
    // fail on, with redb's own error; one that opens must read whole.
    try_reading(&path, len, || match ReadOnlyDatabase::open(&path) {
        Ok(db) => read_whole(&db),
        Err(_) => Ok(()),
    })?;
    match quietly(|| ReadOnlyDatabase::open(&path)) {
        Ok(Ok(db)) => return Ok(Db::Read(db)),
        Ok(Err(DatabaseError::RepairAborted)) => {}
        Ok(Err(e)) => return Err(open_error(&path, dir, e)),
        Err(panic) => return Err(damaged(&path, panic)),
    }
    // The last writer did not close it (a crash, a kill -9): recover a
    // private copy, taken with the shared lock held, and read that.
    let copy = tempfile::Builder::new().prefix("stackpipe-state-").tempfile()?;
    io::copy(&mut &file, &mut copy.as_file())?;
    let _ = file.unlock();
    let copy = copy.into_temp_path();
    // Recovery writes the copy: the child recovers it, and this process
    // opens what the child left.
    try_reading(&path, len, || match Database::create(&copy) {
        Ok(db) => read_whole(&db),
        Err(DatabaseError::Storage(redb::StorageError::Io(e))) => Err(format!("it cannot be recovered ({e})")),
        Err(e) => Err(e.to_string()),
    })?;
    match quietly(|| Database::create(&copy)) {
        Ok(Ok(db)) => Ok(Db::Snapshot(db, Some(copy))),
        Ok(Err(e)) => Err(match open_error(&path, dir, e) {
            StateError::Io(e) => damaged(&path, format!("it cannot be recovered ({e})")),
            other => other,
        }),
        Err(panic) => Err(damaged(&path, panic)),
    }
}

/// Every row of `db` (see `read_through`).
fn read_whole(db: &impl ReadableDatabase) -> Result<(), String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    read_through(&txn).map(|_| ()).map_err(|e| e.to_string())
}

fn size_limit() -> Option<u64> {
    std::env::var(SIZE_LIMIT_ENV).ok().and_then(|v| v.trim().parse().ok())
}

/// A backend behind a box, for `create_with_backend`'s type parameter.
#[derive(Debug)]
struct BoxedBackend(Box<dyn StorageBackend>);

impl StorageBackend for BoxedBackend {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
}

/// The file, not allowed past `limit` bytes: what a full disk does to a
/// write ([`SIZE_LIMIT_ENV`]).
#[derive(Debug)]
struct LimitedBackend {
    inner: FileBackend,
    limit: u64,
}

fn no_space() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

impl StorageBackend for LimitedBackend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if len > self.limit {
            return Err(no_space());
        }
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset + data.len() as u64 > self.limit {
            return Err(no_space());
        }
        self.inner.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }
}

/// The path of the database in `dir`.
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join(DB_FILE)
}
