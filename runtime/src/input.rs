//! Reading a file the user named (a pipeline, a plugin component), safely
//! whatever it turns out to be.
//!
//! A path can name a FIFO (`open` blocks until a writer comes, a read until
//! it writes), a device (`/dev/zero` never ends, `/dev/urandom` neither), a
//! directory or a socket; or a regular file larger than anything stackpipe
//! should hold in memory, or one that grows while it is read. So: open
//! without blocking, look at what the handle is (not the path, which could
//! be swapped between a look and the open), refuse anything but a regular
//! file, refuse one over the cap by its size, and read at most one byte over
//! the cap, so that a file growing under the read is caught too.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a file is read as, for messages: "pipeline file", "plugin component".
pub type What = &'static str;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot read {}: it is {kind}, not a regular file", path.display())]
    NotRegular { path: PathBuf, kind: FileKind },
    #[error(
        "{} is too large for a {what}: {}{}, over the limit of {}",
        path.display(),
        if *grew { "at least " } else { "" },
        bytes(*size),
        bytes(*limit)
    )]
    TooLarge {
        what: What,
        path: PathBuf,
        /// Its size when opened, or (`grew`) what was read before the cap stopped the read.
        size: u64,
        grew: bool,
        limit: u64,
    },
}

/// What a path that is not a regular file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
    Other,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
            FileKind::Other => "a special file",
        })
    }
}

fn kind_of(ft: std::fs::FileType) -> Option<FileKind> {
    if ft.is_file() {
        return None;
    }
    if ft.is_dir() {
        return Some(FileKind::Directory);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return Some(FileKind::Fifo);
        }
        if ft.is_char_device() {
            return Some(FileKind::CharDevice);
        }
        if ft.is_block_device() {
            return Some(FileKind::BlockDevice);
        }
        if ft.is_socket() {
            return Some(FileKind::Socket);
        }
    }
    Some(FileKind::Other)
}

/// A size exactly, and in a unit people read when it is large:
/// "512 bytes", "16777216 bytes (16 MiB)", "17825792 bytes (about 17.0 MiB)".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let exact = n % (1u64 << (10 * (unit + 1))) == 0;
    if exact {
        format!("{n} bytes ({value} {})", UNITS[unit])
    } else {
        format!("{n} bytes (about {value:.1} {})", UNITS[unit])
    }
}

/// Opens `path` for reading without blocking on a FIFO or a device whose
/// open waits (a serial line, say).
fn open(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Only the open is non-blocking in effect: the handle is used only if
        // it is a regular file, whose reads never block, O_NONBLOCK or not.
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// The bytes of the regular file at `path`, at most `limit` of them.
pub fn read_regular_file(path: &Path, what: What, limit: u64) -> Result<Vec<u8>, InputError> {
    let io = |source| InputError::Io { path: path.to_path_buf(), source };
    let file = match open(path) {
        Ok(f) => f,
        Err(e) => {
            // A socket cannot be opened at all (ENXIO); say what it is
            // rather than "no such device or address".
            if let Some(kind) = std::fs::metadata(path).ok().and_then(|m| kind_of(m.file_type())) {
                return Err(InputError::NotRegular { path: path.to_path_buf(), kind });
            }
            return Err(io(e));
        }
    };
    // fstat of the handle: what was opened, whatever the path names now.
    let meta = file.metadata().map_err(io)?;
    if let Some(kind) = kind_of(meta.file_type()) {
        return Err(InputError::NotRegular { path: path.to_path_buf(), kind });
    }
    let too_large = |size, grew| InputError::TooLarge { what, path: path.to_path_buf(), size, grew, limit };
    if meta.len() > limit {
        return Err(too_large(meta.len(), false));
    }
    // Bounded even if the file grows while it is read: one byte over the
    // cap says it is over. The size is only a hint for the first allocation.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).saturating_add(1));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64, true));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(16 << 20), "16777216 bytes (16 MiB)");
        assert_eq!(bytes(1536), "1536 bytes (about 1.5 KiB)");
        assert_eq!(bytes((16 << 20) + 1), "16777217 bytes (about 16.0 MiB)");
        assert_eq!(bytes(256 << 20), "268435456 bytes (256 MiB)");
    }

    #[test]
    fn a_regular_file_within_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.pipeline");
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_regular_file(&p, "pipeline file", 10).unwrap(), b"0123456789");
        let err = read_regular_file(&p, "pipeline file", 9).unwrap_err();
        assert!(matches!(err, InputError::TooLarge { size: 10, grew: false, limit: 9, .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("{} is too large for a pipeline file: 10 bytes, over the limit of 9 bytes", p.display())
        );
    }

    #[test]
    fn a_directory_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_regular_file(dir.path(), "pipeline file", 100).unwrap_err();
        assert!(matches!(err, InputError::NotRegular { kind: FileKind::Directory, .. }), "{err:?}");
        assert!(err.to_string().ends_with("it is a directory, not a regular file"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_not_read() {
        let err = read_regular_file(Path::new("/dev/zero"), "pipeline file", 100).unwrap_err();
        assert!(matches!(err, InputError::NotRegular { kind: FileKind::CharDevice, .. }), "{err:?}");
        assert_eq!(err.to_string(), "cannot read /dev/zero: it is a character device, not a regular file");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_without_a_writer_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_regular_file(&p, "pipeline file", 100).unwrap_err();
        assert!(matches!(err, InputError::NotRegular { kind: FileKind::Fifo, .. }), "{err:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_socket_is_named_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&p).unwrap();
        let err = read_regular_file(&p, "pipeline file", 100).unwrap_err();
        assert!(matches!(err, InputError::NotRegular { kind: FileKind::Socket, .. }), "{err:?}");
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let err = read_regular_file(Path::new("/nonexistent/x.pipeline"), "pipeline file", 100).unwrap_err();
        assert!(matches!(err, InputError::Io { .. }));
        assert!(err.to_string().starts_with("cannot read /nonexistent/x.pipeline: "), "{err}");
    }
}
