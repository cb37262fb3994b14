//! Compiled components on disk, authenticated so that only artifacts this
//! user's stackpipe wrote are ever loaded.
//!
//! Compiling a component takes tens of milliseconds to seconds; loading the
//! compiled artifact takes well under one. Artifacts are keyed by the
//! component's SHA-256 and by everything in the engine that makes compiled
//! code incompatible (wasmtime version, compiler settings, target), so a
//! stale artifact is never loaded.
//!
//! A compiled artifact is native code that runs in this process, so loading
//! one planted by someone else runs their code as us. The cache is trusted
//! only this far:
//!
//! - **The directory** must be a real directory (not a symlink), owned by the
//!   effective user and writable by no one else. A missing directory is
//!   created, with any missing parents, mode 0700. A directory that fails the
//!   check is not used at all for the rest of the process (every load
//!   compiles, nothing is written there), with one warning per process.
//! - **The key**: `<dir>/key` holds 32 random bytes, made once per user and
//!   directory. It is written to a temporary file (mode 0600, created
//!   exclusively) and linked into place without replacing an existing one, so
//!   two processes racing to create it agree on one key. A key that is a
//!   symlink, not a regular file, owned by someone else, open to group or
//!   others in any way (anything but 0600/0400), or not 32 bytes long makes
//!   the cache unused, as a bad directory does.
//! - **An entry** `<dir>/<key>.cwasm` is the 8-byte magic `SPCWASM1`, then
//!   an HMAC-SHA256 tag (32 bytes), then the bytes of
//!   `Component::serialize`. The tag is computed with the key over a domain
//!   label, the entry's name and the artifact bytes, so an entry copied to
//!   another name does not verify. Before its bytes are used an entry must be
//!   a regular file (not a symlink), owned by the effective user and not
//!   writable by group or others, and its tag must verify (in constant time).
//!   An entry that fails is warned about once, with its path and why, then
//!   the component is compiled and the entry replaced by a good one.
//!
//! The directory is opened once per load without following symlinks and
//! checked through that handle (fstat); the key and entries are opened
//! relative to that handle (`openat`, `O_NOFOLLOW`) and checked through their
//! own handles, so what is checked is what is read. Writes go through the
//! directory's path: a write redirected elsewhere could only lose an entry,
//! whereas reads decide what code runs. Entries are written to a 0600
//! temporary file and renamed into place, so a reader never sees half of
//! one.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{File, Metadata};
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Where compiled components are kept.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
}

impl ArtifactCache {
    /// `STACKPIPE_CACHE_DIR`, else `$XDG_CACHE_HOME/stackpipe/components`,
    /// else `~/.cache/stackpipe/components`.
    pub fn from_env() -> Self {
        let dir = std::env::var_os("STACKPIPE_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("stackpipe/components")))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/stackpipe/components")));
        ArtifactCache { dir }
    }

    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        ArtifactCache { dir: Some(dir.into()) }
    }

    /// No cache: every load compiles.
    pub fn disabled() -> Self {
        ArtifactCache { dir: None }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The component for `bytes`: from the cache when an authentic,
    /// compatible artifact is there, else compiled and then stored. A cache
    /// that cannot be trusted, read or written is skipped, never fatal.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<(Component, CacheOutcome)> {
        self.load_reporting(engine, bytes, &mut emit)
    }

    /// `load`, with each warning handed to `warn` rather than logged, so
    /// tests can see them. Warnings are already deduplicated here: one per
    /// directory per process, one per bad entry until it is replaced.
    fn load_reporting(
        &self,
        engine: &Engine,
        bytes: &[u8],
        warn: &mut dyn FnMut(&CacheWarning),
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Compiled));
        };
        let store = match OpenCache::open(dir) {
            Ok(store) => store,
            Err(CacheError::Io(e)) => {
                // Not a trust problem (no home directory, a read-only file
                // system): quietly compile, as an unwritable cache always did.
                tracing::debug!(dir = %dir.display(), "not using the component cache: {e}");
                return Ok((Component::new(engine, bytes)?, CacheOutcome::Compiled));
            }
            Err(reason) => {
                if first_warning(dir) {
                    warn(&CacheWarning::Unused { dir: dir.clone(), reason });
                }
                return Ok((Component::new(engine, bytes)?, CacheOutcome::Compiled));
            }
        };
        let name = artifact_key(engine, bytes);
        let path = store.entry_path(&name);
        match store.read_entry(&name) {
            Ok(None) => {}
            Ok(Some(artifact)) => {
                // SAFETY: `deserialize` runs the artifact's native code as
                // ours, so it must be an artifact `Component::serialize`
                // made. `read_entry` returned it only after checking that
                // the directory and the file are the user's alone and that
                // its tag verifies under the user's key, which only this
                // user's stackpipe (through `store_entry`) holds; wasmtime
                // further refuses an artifact built by another engine
                // configuration.
                match unsafe { Component::deserialize(engine, &artifact) } {
                    Ok(c) => return Ok((c, CacheOutcome::Hit)),
                    Err(e) => {
                        if first_warning(&path) {
                            let reason = CacheError::Deserialize(format!("{e:#}"));
                            warn(&CacheWarning::BadEntry { path: path.clone(), reason });
                        }
                    }
                }
            }
            Err(CacheError::Io(e)) => {
                tracing::debug!(path = %path.display(), "could not read a compiled artifact: {e}");
            }
            Err(reason) => {
                if first_warning(&path) {
                    warn(&CacheWarning::BadEntry { path: path.clone(), reason });
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        match store.store_entry(&name, &component) {
            // A bad entry now replaced may go bad again; that is worth
            // hearing about again.
            Ok(()) => forget_warning(&path),
            Err(e) => tracing::debug!(path = %path.display(), "could not cache a compiled component: {e:#}"),
        }
        Ok((component, CacheOutcome::Compiled))
    }
}

/// Whether a load compiled the component or found it compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Compiled,
}

/// The SHA-256 of a component, hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn artifact_key(engine: &Engine, bytes: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    format!("{}-{:016x}", digest(bytes), h.finish())
}

/// Starts every entry, so a file of another format (such as an entry from
/// before entries were authenticated) is told apart from a forged one.
const MAGIC: &[u8; 8] = b"SPCWASM1";
const TAG_LEN: usize = 32;
const KEY_LEN: usize = 32;
const KEY_FILE: &str = "key";
/// Prefixed to what is authenticated, so a tag made for anything else with
/// the same key can never pass for an entry's.
const TAG_DOMAIN: &[u8] = b"stackpipe compiled component v1\0";

type HmacSha256 = Hmac<Sha256>;

/// Why the cache, or one entry of it, was not trusted.
#[derive(Debug, thiserror::Error)]
enum CacheError {
    #[error("it is a symbolic link")]
    Symlink,
    #[error("it is not a {0}")]
    WrongType(&'static str),
    #[error("it is owned by uid {owner}, not by this user (uid {euid})")]
    NotOwned { owner: u32, euid: u32 },
    #[error("it is writable by group or others (mode {mode:04o})")]
    Writable { mode: u32 },
    #[error("it is readable or writable by group or others (mode {mode:04o}); it must be 0600")]
    KeyExposed { mode: u32 },
    #[error("it holds {0} bytes, not a {KEY_LEN}-byte key")]
    KeyLength(usize),
    #[error("it is not an authenticated artifact (no stackpipe header)")]
    NoHeader,
    #[error("its authentication tag does not verify")]
    BadTag,
    #[error("wasmtime refused it: {0}")]
    Deserialize(String),
    #[error("its key file `{KEY_FILE}`: {0}")]
    Key(Box<CacheError>),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Something about the cache a user should hear of.
#[derive(Debug)]
enum CacheWarning {
    /// The directory or its key is not trusted: the cache is off.
    Unused { dir: PathBuf, reason: CacheError },
    /// One entry was refused; it is being recompiled and replaced.
    BadEntry { path: PathBuf, reason: CacheError },
}

/// Logs a warning. The path is in the message itself, not a field, so it
/// reads once on a terminal.
fn emit(w: &CacheWarning) {
    match w {
        CacheWarning::Unused { dir, reason } => tracing::warn!(
            "not using the compiled-component cache at {}: {reason}; every plugin is compiled anew. \
             Make the directory and its key file yours alone (chown to this user, `chmod 700` the \
             directory, `chmod 600` its `key`), remove them to start afresh, or point \
             STACKPIPE_CACHE_DIR at a directory of your own",
            dir.display(),
        ),
        CacheWarning::BadEntry { path, reason } => tracing::warn!(
            "ignoring the compiled artifact {}: {reason}; compiling the component again and replacing it",
            path.display(),
        ),
    }
}

/// Paths warned about in this process.
fn warned() -> &'static Mutex<HashSet<PathBuf>> {
    static WARNED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    WARNED.get_or_init(Default::default)
}

/// True the first time `path` is warned about in this process.
fn first_warning(path: &Path) -> bool {
    // A poisoned set only means a panic elsewhere while inserting; the set
    // itself is still usable.
    warned().lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_path_buf())
}

fn forget_warning(path: &Path) {
    warned().lock().unwrap_or_else(|p| p.into_inner()).remove(path);
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Owned by us and writable by no one else: what the directory and every
/// entry must be.
fn check_private(meta: &Metadata, euid: u32) -> Result<(), CacheError> {
    if meta.uid() != euid {
        return Err(CacheError::NotOwned { owner: meta.uid(), euid });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(CacheError::Writable { mode });
    }
    Ok(())
}

/// A cache directory that passed its checks, held open, with its key.
struct OpenCache {
    path: PathBuf,
    dir: File,
    key: [u8; KEY_LEN],
}

impl OpenCache {
    /// Creates the directory if it is missing, checks it and reads (or
    /// makes) its key. An `Io` error means the cache cannot be used; any
    /// other means it must not be.
    fn open(path: &Path) -> Result<OpenCache, CacheError> {
        let euid = euid();
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(CacheError::Symlink),
            // Checked here too so that a directory someone else owns and
            // keeps closed (which we cannot open) is reported as theirs
            // rather than as an I/O error; the check on the open handle
            // below is the one that counts.
            Ok(meta) => check_private(&meta, euid)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Every directory made here, parents included, is ours and
                // closed to others from the start, so there is no moment at
                // which someone else can put a file in it.
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
            }
            Err(e) => return Err(e.into()),
        }
        // O_NOFOLLOW: if the directory was swapped for a symlink since the
        // look above, this fails rather than opening where it points.
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => CacheError::Symlink,
                Some(libc::ENOTDIR) => CacheError::WrongType("directory"),
                _ => CacheError::Io(e),
            })?;
        let meta = dir.metadata()?;
        if !meta.is_dir() {
            return Err(CacheError::WrongType("directory"));
        }
        check_private(&meta, euid)?;
        let key = read_or_make_key(path, &dir).map_err(|e| match e {
            CacheError::Io(e) => CacheError::Io(e),
            // Name the file: the reasons alone read as if about the directory.
            refused => CacheError::Key(Box::new(refused)),
        })?;
        Ok(OpenCache { path: path.to_path_buf(), dir, key })
    }

    fn entry_path(&self, name: &str) -> PathBuf {
        self.path.join(entry_file(name))
    }

    /// The artifact stored under `name`, once its file and tag check out;
    /// `None` if there is none.
    fn read_entry(&self, name: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut file = match open_in(&self.dir, &entry_file(name)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(CacheError::Symlink),
            Err(e) => return Err(e.into()),
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(CacheError::WrongType("regular file"));
        }
        check_private(&meta, euid())?;
        // Read into memory rather than mapping the file: a mapped file that
        // someone truncates under us would crash the process. What is
        // verified below is this copy, which no one else can change.
        let mut contents = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut contents)?;
        let Some(rest) = contents.strip_prefix(MAGIC.as_slice()) else {
            return Err(CacheError::NoHeader);
        };
        if rest.len() < TAG_LEN {
            return Err(CacheError::NoHeader);
        }
        let (tag, artifact) = rest.split_at(TAG_LEN);
        // verify_slice compares in constant time.
        entry_mac(&self.key, name, artifact).verify_slice(tag).map_err(|_| CacheError::BadTag)?;
        Ok(Some(contents.split_off(MAGIC.len() + TAG_LEN)))
    }

    /// Writes atomically (a 0600 temporary file, then a rename), so a reader
    /// never sees half an entry, and whatever was at that name, good or bad,
    /// is replaced.
    fn store_entry(&self, name: &str, component: &Component) -> wasmtime::Result<()> {
        let artifact = component.serialize()?;
        let tag = entry_mac(&self.key, name, &artifact).finalize().into_bytes();
        let mut tmp = private_temp_file(&self.path)?;
        tmp.write_all(MAGIC)?;
        tmp.write_all(&tag)?;
        tmp.write_all(&artifact)?;
        tmp.persist(self.entry_path(name))?;
        Ok(())
    }
}

fn entry_file(name: &str) -> String {
    format!("{name}.cwasm")
}

/// The MAC of an entry: over its name as well as its bytes, so that one
/// component's artifact moved to another's name is refused.
fn entry_mac(key: &[u8; KEY_LEN], name: &str, artifact: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(TAG_DOMAIN);
    mac.update(name.as_bytes());
    // Names never hold a NUL, so this ends the name unambiguously.
    mac.update(b"\0");
    mac.update(artifact);
    mac
}

/// The directory's key, made if there is none yet.
fn read_or_make_key(path: &Path, dir: &File) -> Result<[u8; KEY_LEN], CacheError> {
    // Twice at most: if another process creates the key between our failed
    // open and our link, we read theirs.
    for _ in 0..2 {
        match open_in(dir, KEY_FILE) {
            Ok(file) => return read_key(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(CacheError::Symlink),
            Err(e) => return Err(e.into()),
        }
        let mut key = [0u8; KEY_LEN];
        getrandom::getrandom(&mut key).map_err(|e| io::Error::other(format!("no random key: {e}")))?;
        // Fully written before it has its name, so no one ever reads a short
        // key; `persist_noclobber` links it in place only if no key exists.
        let mut tmp = private_temp_file(path)?;
        tmp.write_all(&key)?;
        match tmp.persist_noclobber(path.join(KEY_FILE)) {
            Ok(_) => return Ok(key),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.error.into()),
        }
    }
    Err(io::Error::other("the key file keeps changing").into())
}

fn read_key(mut file: File) -> Result<[u8; KEY_LEN], CacheError> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(CacheError::WrongType("regular file"));
    }
    let euid = euid();
    if meta.uid() != euid {
        return Err(CacheError::NotOwned { owner: meta.uid(), euid });
    }
    // A key others can read lets them forge entries; one they can write lets
    // them pick it.
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CacheError::KeyExposed { mode });
    }
    // One byte more than a key, to tell a long file from a key.
    let mut buf = Vec::with_capacity(KEY_LEN + 1);
    (&mut file).take(KEY_LEN as u64 + 1).read_to_end(&mut buf)?;
    <[u8; KEY_LEN]>::try_from(buf.as_slice()).map_err(|_| CacheError::KeyLength(buf.len()))
}

/// A temporary file in `dir` that only we can read or write, created
/// exclusively (O_EXCL) under a random name.
fn private_temp_file(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new().permissions(std::fs::Permissions::from_mode(0o600)).tempfile_in(dir)
}

/// Opens `name` in `dir` for reading, never following a symlink, and without
/// blocking should it be a FIFO (the checks on the handle then refuse it).
fn open_in(dir: &File, name: &str) -> io::Result<File> {
    let name = CString::new(name).map_err(io::Error::other)?;
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
    // SAFETY: `dir` is an open directory for the whole call and `name` a
    // NUL-terminated string that outlives it.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component there is (magic and version, nothing else):
    /// it compiles in no time, and its serialized form is as real as any.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";

    /// Another component, so another entry: EMPTY plus a custom section.
    fn other() -> Vec<u8> {
        [EMPTY, &[0x00, 0x02, 0x01, b'x']].concat()
    }

    const NOBODY: u32 = 65534;

    fn is_root() -> bool {
        if euid() == 0 {
            return true;
        }
        eprintln!("note: not root, so the cases that chown a file to another uid are skipped");
        false
    }

    /// A load, and the warnings it gave (their Debug form, to match on).
    fn load(cache: &ArtifactCache, engine: &Engine, bytes: &[u8]) -> (CacheOutcome, Vec<String>) {
        let mut warnings = Vec::new();
        let (_, outcome) =
            cache.load_reporting(engine, bytes, &mut |w| warnings.push(format!("{w:?}"))).expect("the component loads");
        (outcome, warnings)
    }

    fn entry(engine: &Engine, dir: &Path, bytes: &[u8]) -> PathBuf {
        dir.join(entry_file(&artifact_key(engine, bytes)))
    }

    fn key_of(dir: &Path) -> [u8; KEY_LEN] {
        std::fs::read(dir.join(KEY_FILE)).expect("a key file").try_into().expect("a 32-byte key")
    }

    /// What `Component::serialize` makes of `bytes`: a genuine artifact.
    fn serialized(engine: &Engine, bytes: &[u8]) -> Vec<u8> {
        Component::new(engine, bytes).expect("compiles").serialize().expect("serializes")
    }

    /// An entry in the cache's own format, tagged with `key`.
    fn authentic(engine: &Engine, key: &[u8; KEY_LEN], bytes: &[u8]) -> Vec<u8> {
        let artifact = serialized(engine, bytes);
        let tag = entry_mac(key, &artifact_key(engine, bytes), &artifact).finalize().into_bytes();
        [MAGIC.as_slice(), tag.as_slice(), &artifact].concat()
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn chown_nobody(path: &Path) {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).expect("chown");
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).expect("metadata").permissions().mode() & 0o7777
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("a directory")
            .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Loads until a warning-free hit: a refused entry must have been
    /// replaced by a good one, owned by us and private.
    fn assert_replaced(cache: &ArtifactCache, engine: &Engine, bytes: &[u8]) {
        assert_eq!(load(cache, engine, bytes), (CacheOutcome::Hit, vec![]));
        let dir = cache.dir().expect("a cache dir");
        let meta = std::fs::symlink_metadata(entry(engine, dir, bytes)).expect("the entry");
        assert!(meta.is_file());
        assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (euid(), 0o600));
    }

    #[test]
    fn first_load_compiles_second_hits() {
        let engine = Engine::default();
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::in_dir(tmp.path());
        assert_eq!(load(&cache, &engine, EMPTY), (CacheOutcome::Compiled, vec![]));
        assert_eq!(load(&cache, &engine, EMPTY), (CacheOutcome::Hit, vec![]));
        // Through the public entry point too.
        assert_eq!(cache.load(&engine, EMPTY).unwrap().1, CacheOutcome::Hit);

        let path = entry(&engine, tmp.path(), EMPTY);
        assert!(std::fs::read(&path).unwrap().starts_with(MAGIC));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&tmp.path().join(KEY_FILE)), 0o600);
        assert_eq!(std::fs::read(tmp.path().join(KEY_FILE)).unwrap().len(), KEY_LEN);
    }

    #[test]
    fn a_disabled_cache_always_compiles() {
        let engine = Engine::default();
        let cache = ArtifactCache::disabled();
        assert_eq!(load(&cache, &engine, EMPTY), (CacheOutcome::Compiled, vec![]));
        assert_eq!(load(&cache, &engine, EMPTY), (CacheOutcome::Compiled, vec![]));
    }

    #[test]
    fn a_missing_directory_is_created_private() {
        let engine = Engine::default();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/components");
        let cache = ArtifactCache::in_dir(&dir);
        assert_eq!(load(&cache, &engine, EMPTY), (CacheOutcome::Compiled, vec![]));
        for d in [tmp.path().join("a"), tmp.path().join("a/b"), dir.clone()] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        assert_eq!(load(&cache, &engine, EMPTY), (CacheOutcome::Hit, vec![]));
    }

    #[test]
    fn a_planted_artifact_owned_by_another_user_is_not_loaded() {
        if !is_root() {
            return;
        }
        let engine = Engine::default();
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::in_dir(tmp.path());
        // Another component first, so the key exists to forge with.
        assert_eq!(load(&cache, &engine, &other()).0, CacheOutcome::Compiled);
        let key = key_of(tmp.path());
        let path = entry(&engine, tmp.path(), EMPTY);
        // Plain `serialize` output, then one even tagged with the real key:
        // the owner alone disqualifies both.
        for planted in [serialized(&engine, EMPTY), authentic(&engine, &key, EMPTY)] {
            std::fs::write(&path, &planted).unwrap();
            chmod(&path, 0o600);
            chown_nobody(&path);
            let (outcome, warnings) = load(&cache, &engine, EMPTY);
            assert_eq!(outcome, CacheOutcome::Compiled);
            assert!(
                matches!(warnings.as_slice(), [w] if w.contains("BadEntry") && w.contains("NotOwned { owner: 65534")),
                "{warnings:?}"
            );
            assert_replaced(&cache, &engine, EMPTY);
        }
    }

    #[test]
    fn a_planted_artifact_without_a_valid_tag_is_not_loaded() {
        let engine = Engine::default();
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::in_dir(tmp.path());
        assert_eq!(load(&cache, &engine, &other()).0, CacheOutcome::Compiled);
        let path = entry(&engine, tmp.path(), EMPTY);
        let mut foreign_key = [0u8; KEY_LEN];
        getrandom::getrandom(&mut foreign_key).unwrap();
        let zero_tag = [MAGIC.as_slice(), &[0; TAG_LEN], &serialized(&engine, EMPTY)].concat();
        let plantings = [
            (serialized(&engine, EMPTY), "NoHeader"),
            (zero_tag, "BadTag"),
            (authentic(&engine, &foreign_key, EMPTY), "BadTag"),
            (MAGIC.to_vec(), "NoHeader"),
        ];
        for (planted, why) in plantings {
            std::fs::write(&path, &planted).unwrap();
            chmod(&path, 0o600);
            let (outcome, warnings) = load(&cache, &engine, EMPTY);
            assert_eq!(outcome, CacheOutcome::Compiled, "{why}");
            assert!(matches!(warnings.as_slice(), [w] if w.contains("BadEntry") && w.contains(why)), "{warnings:?}");
            assert_replaced(&cache, &engine, EMPTY);
        }
    }

    #[test]
    fn a_tampered_entry_is_recompiled_and_replaced() {
        let engine = Engine::default();
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::in_dir(tmp.path());
        assert_eq!(load(&cache, &engine, EMPTY), (CacheOutcome::Compiled, vec![]));
        let path = entry(&engine, tmp.path(), EMPTY);
        let good = std::fs::read(&path).unwrap();
        // A byte of the artifact, then a byte of the tag.
        for at in [good.len() / 2, MAGIC.len() + 3] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let (outcome, warnings) = load(&cache, &engine, EMPTY);
            assert_eq!(outcome, CacheOutcome::Compiled);
            assert!(matches!(warnings.as_slice(), [w] if w.contains("BadEntry") && w.contains("BadTag")), "{warnings:?}");
            assert_replaced(&cache, &engine, EMPTY);
            assert_eq!(std::fs::read(&path).unwrap(), good, "the same key and artifact make the same entry");
        }
    }

    #[test]
    fn an_entry_moved_to_another_name_is_refused() {
        let engine = Engine::default();
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::in_dir(tmp.path());
        load(&cache, &engine, EMPTY);
        load(&cache, &engine, &other());
        std::fs::copy(entry(&engine, tmp.path(), EMPTY), entry(&engine, tmp.path(), &other())).unwrap();
        let (outcome, warnings) = load(&cache, &engine, &other());
        assert_eq!(outcome, CacheOutcome::Compiled);
        assert!(matches!(warnings.as_slice(), [w] if w.contains("BadTag")), "{warnings:?}");
        assert_replaced(&cache, &engine, &other());
    }

    #[test]
    fn an_entry_others_can_write_or_a_symlink_is_refused() {
        let engine = Engine::default();
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::in_dir(tmp.path());
        load(&cache, &engine, EMPTY);
        let path = entry(&engine, tmp.path(), EMPTY);

        chmod(&path, 0o666);
        let (outcome, warnings) = load(&cache, &engine, EMPTY);
        assert_eq!(outcome, CacheOutcome::Compiled);
        assert!(matches!(warnings.as_slice(), [w] if w.contains("Writable { mode: 438 }")), "{warnings:?}");
        assert_replaced(&cache, &engine, EMPTY);

        // A good entry, but reached through a symlink.
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let (outcome, warnings) = load(&cache, &engine, EMPTY);
        assert_eq!(outcome, CacheOutcome::Compiled);
        assert!(matches!(warnings.as_slice(), [w] if w.contains("Symlink")), "{warnings:?}");
        assert_replaced(&cache, &engine, EMPTY);
    }

    #[test]
    fn a_directory_others_can_write_is_not_used() {
        let engine = Engine::default();
        for dir_mode in [0o777, 0o770, 0o1777] {
            let tmp = tempfile::tempdir().unwrap();
            let cache = ArtifactCache::in_dir(tmp.path());
            chmod(tmp.path(), dir_mode);
            let (outcome, warnings) = load(&cache, &engine, EMPTY);
            assert_eq!(outcome, CacheOutcome::Compiled);
            assert!(matches!(warnings.as_slice(), [w] if w.contains("Unused") && w.contains("Writable")), "{warnings:?}");
            // One warning per process: the next loads only compile.
            assert_eq!(load(&cache, &engine, EMPTY), (CacheOutcome::Compiled, vec![]));
            assert_eq!(load(&cache, &engine, &other()), (CacheOutcome::Compiled, vec![]));
            assert!(listing(tmp.path()).is_empty(), "nothing is written to an untrusted cache");
        }

        // A cache that was good is not read once others can write to it.
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::in_dir(tmp.path());
        load(&cache, &engine, EMPTY);
        chmod(tmp.path(), 0o777);
        let (outcome, warnings) = load(&cache, &engine, EMPTY);
        assert_eq!((outcome, warnings.len()), (CacheOutcome::Compiled, 1));
    }

    #[test]
    fn a_directory_owned_by_another_user_is_not_used() {
        if !is_root() {
            return;
        }
        let engine = Engine::default();
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::in_dir(tmp.path());
        chown_nobody(tmp.path());
        let (outcome, warnings) = load(&cache, &engine, EMPTY);
        assert_eq!(outcome, CacheOutcome::Compiled);
        assert!(matches!(warnings.as_slice(), [w] if w.contains("Unused") && w.contains("NotOwned")), "{warnings:?}");
        assert_eq!(load(&cache, &engine, EMPTY), (CacheOutcome::Compiled, vec![]));
        assert!(listing(tmp.path()).is_empty(), "nothing is written to an untrusted cache");

        // Nor one that was good, with a valid entry, once someone else owns it.
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::in_dir(tmp.path());
        load(&cache, &engine, EMPTY);
        chown_nobody(tmp.path());
        assert_eq!(load(&cache, &engine, EMPTY).0, CacheOutcome::Compiled);
    }

    #[test]
    fn a_symlinked_directory_is_not_used() {
        let engine = Engine::default();
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        load(&ArtifactCache::in_dir(&real), &engine, EMPTY);
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let (outcome, warnings) = load(&ArtifactCache::in_dir(&link), &engine, EMPTY);
        assert_eq!(outcome, CacheOutcome::Compiled);
        assert!(matches!(warnings.as_slice(), [w] if w.contains("Unused") && w.contains("Symlink")), "{warnings:?}");
    }

    #[test]
    fn a_key_others_can_read_makes_the_cache_unused() {
        let engine = Engine::default();
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::in_dir(tmp.path());
        load(&cache, &engine, EMPTY);
        chmod(&tmp.path().join(KEY_FILE), 0o644);
        let (outcome, warnings) = load(&cache, &engine, EMPTY);
        assert_eq!(outcome, CacheOutcome::Compiled, "a valid entry is not loaded with an exposed key");
        assert!(matches!(warnings.as_slice(), [w] if w.contains("Unused") && w.contains("KeyExposed")), "{warnings:?}");
        assert_eq!(load(&cache, &engine, &other()), (CacheOutcome::Compiled, vec![]));
        assert!(!entry(&engine, tmp.path(), &other()).exists(), "nothing is written with an exposed key");
        assert_eq!(mode(&tmp.path().join(KEY_FILE)), 0o644, "the key is left as it was");
    }

    #[test]
    fn a_key_owned_by_another_user_makes_the_cache_unused() {
        if !is_root() {
            return;
        }
        let engine = Engine::default();
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::in_dir(tmp.path());
        load(&cache, &engine, EMPTY);
        chown_nobody(&tmp.path().join(KEY_FILE));
        let (outcome, warnings) = load(&cache, &engine, EMPTY);
        assert_eq!(outcome, CacheOutcome::Compiled);
        assert!(matches!(warnings.as_slice(), [w] if w.contains("Key(NotOwned")), "{warnings:?}");
    }

    #[test]
    fn a_key_of_the_wrong_length_or_a_symlink_makes_the_cache_unused() {
        let engine = Engine::default();
        for (plant, why) in [("short", "KeyLength(7)"), ("long", "KeyLength(33)"), ("symlink", "Key(Symlink)")] {
            let tmp = tempfile::tempdir().unwrap();
            let cache = ArtifactCache::in_dir(tmp.path());
            load(&cache, &engine, EMPTY);
            let key = tmp.path().join(KEY_FILE);
            match plant {
                "short" => std::fs::write(&key, b"garbage").unwrap(),
                "long" => std::fs::write(&key, [7; KEY_LEN + 1]).unwrap(),
                _ => {
                    std::fs::rename(&key, tmp.path().join("real-key")).unwrap();
                    std::os::unix::fs::symlink(tmp.path().join("real-key"), &key).unwrap();
                }
            }
            let (outcome, warnings) = load(&cache, &engine, EMPTY);
            assert_eq!(outcome, CacheOutcome::Compiled, "{plant}");
            assert!(matches!(warnings.as_slice(), [w] if w.contains(why)), "{plant}: {warnings:?}");
        }
    }

    #[test]
    fn caches_sharing_a_directory_share_one_key() {
        let engine = Engine::default();
        let tmp = tempfile::tempdir().unwrap();
        let a = ArtifactCache::in_dir(tmp.path());
        let b = ArtifactCache::in_dir(tmp.path());
        assert_eq!(load(&a, &engine, EMPTY).0, CacheOutcome::Compiled);
        assert_eq!(load(&b, &engine, EMPTY), (CacheOutcome::Hit, vec![]));
        assert_eq!(listing(tmp.path()).len(), 2, "the key and one entry, no stray temporary files");
    }
}
