//! Where a run's control socket is bound, and binding it: always inside a
//! directory only this user can enter, checked after it is opened, so that
//! no other user can reach the socket, take its name first, or connect in
//! the moment between its bind and its chmod.
//!
//! The directory is `control/` in the state directory. When that path is
//! too long for a socket (`sun_path` holds 108 bytes), it is a per-user
//! directory instead: `$XDG_RUNTIME_DIR/stackpipe/` if that runtime
//! directory is this user's, else `/tmp/stackpipe-<uid>/`; the socket in it
//! is named after a hash of the state directory's path.

use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Longest socket path we bind (`sun_path` holds 108 bytes on Linux).
const MAX_SOCKET_PATH: usize = 100;
/// The private directory inside the state directory.
const CONTROL_DIR: &str = "control";
/// The socket's name there.
const SOCKET_NAME: &str = "control.sock";

/// Why the control socket cannot be bound. Each names the path at fault
/// and refuses rather than repairs: a directory someone else made, or a
/// file in the socket's place, is not ours to chmod or remove.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot create the control socket's directory {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot open the control socket's directory {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path} is a {what}, not a directory: refusing to put the control socket there; remove it and try again")]
    NotADirectory { path: PathBuf, what: &'static str },
    #[error(
        "{path} belongs to uid {owner}, not to uid {me} (this user): another user may have made it first; \
         refusing to put the control socket in it; remove it (as its owner or root) and try again"
    )]
    NotOurs { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "{path} has mode {mode:04o}: other users may enter it, and the control socket's directory must be \
         private (0700); refusing to use it (if it is yours: chmod 700 {path})"
    )]
    OpenToOthers { path: PathBuf, mode: u32 },
    #[error("{path} is taken by a {what}, not a socket: refusing to remove it; move it away and try again")]
    Taken { path: PathBuf, what: &'static str },
    #[error("{path} is served by another process (one that outlived its run?); stop it, or remove the socket, and try again")]
    InUse { path: PathBuf },
    #[error("cannot bind the control socket {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("no place for the control socket of {state}: every candidate path is longer than {MAX_SOCKET_PATH} bytes")]
    TooLong { state: PathBuf },
}

impl From<SocketError> for io::Error {
    fn from(e: SocketError) -> io::Error {
        let kind = match &e {
            SocketError::Create { source, .. } | SocketError::Open { source, .. } | SocketError::Bind { source, .. } => {
                source.kind()
            }
            SocketError::NotADirectory { .. } => io::ErrorKind::NotADirectory,
            SocketError::NotOurs { .. } | SocketError::OpenToOthers { .. } => io::ErrorKind::PermissionDenied,
            SocketError::Taken { .. } | SocketError::InUse { .. } => io::ErrorKind::AlreadyExists,
            SocketError::TooLong { .. } => io::ErrorKind::InvalidFilename,
        };
        io::Error::new(kind, e)
    }
}

/// The effective user id: the owner of what this process creates.
pub(super) fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// A control socket, bound and not yet served. Dropping it (or the server
/// it becomes) removes the socket.
pub struct ControlSocket {
    pub(super) listener: tokio::net::UnixListener,
    pub(super) bound: Bound,
}

impl ControlSocket {
    /// Binds the control socket of state directory `state`. Must be called
    /// within a tokio runtime (the listener is registered with it).
    pub fn bind(state: &Path) -> io::Result<ControlSocket> {
        // Absolute, as `owner.json` gives it to clients, which may run in
        // another directory; it is also the length that must fit.
        let state = std::path::absolute(state)?;
        let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        Ok(bind_at(&state, euid(), xdg.as_deref(), Path::new("/tmp"))?)
    }

    /// The socket's path, as clients connect to it (`owner.json` names it).
    pub fn path(&self) -> &Path {
        &self.bound.path
    }
}

/// The socket's file, removed when dropped.
pub(super) struct Bound {
    dir: PrivateDir,
    name: String,
    path: PathBuf,
}

impl Bound {
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        // Through the checked directory: only our own socket can be there.
        let _ = std::fs::remove_file(self.dir.entry(&self.name));
    }
}

/// [`ControlSocket::bind`] with its inputs spelled out (for tests): the
/// user, `$XDG_RUNTIME_DIR`, and the temp directory of the last fallback.
pub(super) fn bind_at(state: &Path, me: u32, xdg: Option<&Path>, tmp: &Path) -> Result<ControlSocket, SocketError> {
    let (dir, name) = place(state, me, xdg, tmp)?;
    let dir = PrivateDir::create(&dir, me)?;
    let path = dir.path.join(&name);
    let entry = dir.entry(&name);
    clear_stale(&entry, &path)?;
    let bind = |e| SocketError::Bind { path: path.clone(), source: e };
    let std_listener = std::os::unix::net::UnixListener::bind(&entry).map_err(bind)?;
    // From here on, an error removes the socket again (Bound's drop).
    let bound = Bound { dir, name, path: path.clone() };
    // Belt and braces: the directory already keeps everyone else out.
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o600)).map_err(bind)?;
    std_listener.set_nonblocking(true).map_err(bind)?;
    let listener = tokio::net::UnixListener::from_std(std_listener).map_err(bind)?;
    Ok(ControlSocket { listener, bound })
}

/// The directory the socket goes in, and its name there.
pub(super) fn place(state: &Path, me: u32, xdg: Option<&Path>, tmp: &Path) -> Result<(PathBuf, String), SocketError> {
    let inside = state.join(CONTROL_DIR);
    if fits(&inside.join(SOCKET_NAME)) {
        return Ok((inside, SOCKET_NAME.to_string()));
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(state.as_os_str().as_encoded_bytes());
    let name = format!("{}.sock", &hex::encode(digest)[..16]);
    let runtime = xdg.filter(|x| runtime_dir_is_ours(x, me)).map(|x| x.join("stackpipe"));
    let candidates = runtime.into_iter().chain([tmp.join(format!("stackpipe-{me}"))]);
    for dir in candidates {
        if fits(&dir.join(&name)) {
            return Ok((dir, name));
        }
    }
    Err(SocketError::TooLong { state: state.to_path_buf() })
}

fn fits(socket: &Path) -> bool {
    socket.as_os_str().len() <= MAX_SOCKET_PATH
}

/// Whether `$XDG_RUNTIME_DIR` is what the XDG spec promises: an absolute
/// path to a directory of this user's that only it can enter. One that is
/// not (say, another user's, kept in the environment by `sudo`) is passed
/// over for the temp directory.
fn runtime_dir_is_ours(dir: &Path, me: u32) -> bool {
    let ok = dir.is_absolute() && std::fs::symlink_metadata(dir).is_ok_and(|m| check(dir, &m, me).is_ok());
    if !ok {
        tracing::debug!("XDG_RUNTIME_DIR={} is not a private directory of uid {me}: not used", dir.display());
    }
    ok
}

/// A directory only this user can enter, held open: what is bound or
/// removed in it goes into the directory that was checked, even if its
/// path is swapped for another afterwards.
pub(super) struct PrivateDir {
    path: PathBuf,
    dir: File,
}

impl PrivateDir {
    /// Creates `path` with mode 0700 unless something is there already,
    /// then opens and checks it.
    fn create(path: &Path, me: u32) -> Result<PrivateDir, SocketError> {
        // The mode is given at creation, not set afterwards, so there is no
        // moment with the directory open to others (the umask can only take
        // bits away). Whatever was there first is checked like our own.
        match DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(SocketError::Create { path: path.to_path_buf(), source: e }),
        }
        Self::open(path, me)
    }

    fn open(path: &Path, me: u32) -> Result<PrivateDir, SocketError> {
        let open_err = |e| SocketError::Open { path: path.to_path_buf(), source: e };
        // Looked at first without opening: a symlink or a file gets a clear
        // message rather than ELOOP or ENOTDIR.
        check(path, &std::fs::symlink_metadata(path).map_err(open_err)?, me)?;
        // Then opened without following a symlink and checked again through
        // the descriptor: what was checked is what is used.
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                    SocketError::NotADirectory { path: path.to_path_buf(), what: "symbolic link or file" }
                }
                _ => open_err(e),
            })?;
        check(path, &dir.metadata().map_err(open_err)?, me)?;
        Ok(PrivateDir { path: path.to_path_buf(), dir })
    }

    /// The path of `name` in this directory: through the open descriptor
    /// (`/proc/self/fd/N/name`) where /proc is mounted, else by its path.
    fn entry(&self, name: &str) -> PathBuf {
        let via_fd = PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd()));
        if via_fd.is_dir() {
            via_fd.join(name)
        } else {
            self.path.join(name)
        }
    }
}

/// A directory of `me`'s (a real one, not a symlink) that nobody else may
/// enter, list or write to.
fn check(path: &Path, meta: &Metadata, me: u32) -> Result<(), SocketError> {
    let path = || path.to_path_buf();
    if !meta.file_type().is_dir() {
        return Err(SocketError::NotADirectory { path: path(), what: kind_of(meta) });
    }
    if meta.uid() != me {
        return Err(SocketError::NotOurs { path: path(), owner: meta.uid(), me });
    }
    if meta.mode() & 0o077 != 0 {
        return Err(SocketError::OpenToOthers { path: path(), mode: meta.mode() & 0o7777 });
    }
    Ok(())
}

fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symbolic link"
    } else if t.is_file() {
        "regular file"
    } else if t.is_socket() {
        "socket"
    } else if t.is_fifo() {
        "fifo"
    } else {
        "device"
    }
}

/// Makes way for the socket at `entry` (shown to the user as `path`): a
/// socket nobody serves any more, left by a runner that died, is removed;
/// anything else there is refused.
fn clear_stale(entry: &Path, path: &Path) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(entry) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SocketError::Bind { path: path.to_path_buf(), source: e }),
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::Taken { path: path.to_path_buf(), what: kind_of(&meta) });
    }
    // This process holds the state database, so no runner of this state
    // directory can be serving it; a socket that still answers belongs to
    // something else alive, and is left alone.
    match std::os::unix::net::UnixStream::connect(entry) {
        Ok(_) => Err(SocketError::InUse { path: path.to_path_buf() }),
        Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound) => {
            match std::fs::remove_file(entry) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SocketError::Bind { path: path.to_path_buf(), source: e }),
                _ => Ok(()),
            }
        }
        Err(e) => Err(SocketError::Bind { path: path.to_path_buf(), source: e }),
    }
}
