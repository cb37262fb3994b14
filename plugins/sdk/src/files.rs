//! What WASI cannot do to a granted file: read and set its permission bits,
//! through the host's `files` interface (provisioners only). Paths are as the
//! plugin opens them, inside a granted directory:
//! `files::set_mode(Path::new("out/keys/id"), 0o600)`. The host refuses a path
//! outside the grants, `..`, a symbolic link that leads out, and bits beyond
//! `0o777` (setuid, setgid, sticky).
//!
//! Natively (unit tests) they act on the path directly: there is no host.

use std::path::Path;

#[cfg(target_arch = "wasm32")]
use crate::bindings::provisioner::stackpipe::plugin::files as host;

/// The permission bits of what is at `path` (`0o640`); none when nothing is there.
pub fn mode(path: &Path) -> Result<Option<u32>, String> {
    #[cfg(target_arch = "wasm32")]
    {
        host::mode(&path.to_string_lossy())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(m.permissions().mode() & 0o777)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read the mode of `{}`: {e}", path.display())),
        }
    }
}

/// Sets the permission bits of what is at `path` (at most `0o777`).
pub fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    {
        host::set_mode(&path.to_string_lossy(), mode)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::os::unix::fs::PermissionsExt;
        if mode > 0o777 {
            return Err(format!("mode {mode:04o} of `{}` is refused: at most 0777", path.display()));
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of `{}` to {mode:04o}: {e}", path.display()))
    }
}
