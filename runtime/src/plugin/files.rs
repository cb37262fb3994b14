//! The `files` interface stackpipe gives provisioners: the permission bits of
//! a granted file, which WASI has no call for. A path names a file as the
//! plugin opens it: the granted directory whose name it starts with is found
//! as wasi-libc finds a preopen (the longest such name), and the rest is
//! resolved inside that directory by cap-primitives, which is what
//! wasmtime-wasi resolves the plugin's own file operations with: a symbolic
//! link that leads out is refused there, as it is for them.

use std::path::{Component, Path, PathBuf};

use super::bindings;
use super::PluginState;

/// The permission bits a plugin may set: no setuid, setgid or sticky bit,
/// which would let a file it wrote run as the user stackpipe runs as.
const PERMISSION_BITS: u32 = 0o777;

impl bindings::files::Host for PluginState {
    fn mode(&mut self, path: String) -> Result<Option<u32>, String> {
        mode(&self.granted_dirs, &path)
    }

    fn set_mode(&mut self, path: String, mode: u32) -> Result<(), String> {
        set_mode(&self.granted_dirs, &path, mode)
    }
}

/// The permission bits of what is at `path`; none when nothing is there.
pub(super) fn mode(dirs: &[(PathBuf, String)], path: &str) -> Result<Option<u32>, String> {
    use cap_primitives::fs::{FollowSymlinks, MetadataExt};
    let (dir, rest) = open(dirs, path)?;
    match cap_primitives::fs::stat(&dir, &rest, FollowSymlinks::Yes) {
        Ok(meta) => Ok(Some(meta.mode() & PERMISSION_BITS)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read the mode of `{path}`: {e}")),
    }
}

/// Sets the permission bits of what is at `path`.
pub(super) fn set_mode(dirs: &[(PathBuf, String)], path: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if mode & !PERMISSION_BITS != 0 {
        return Err(format!(
            "mode {mode:04o} of `{path}` is refused: only the permission bits (at most 0777) can be set, \
             not setuid, setgid or sticky"
        ));
    }
    let (dir, rest) = open(dirs, path)?;
    let permissions = cap_primitives::fs::Permissions::from_std(std::fs::Permissions::from_mode(mode));
    cap_primitives::fs::set_permissions(&dir, &rest, permissions)
        .map_err(|e| format!("cannot set the mode of `{path}` to {mode:04o}: {e}"))
}

/// The granted directory `path` is in, opened, and the rest of the path inside it.
fn open(dirs: &[(PathBuf, String)], path: &str) -> Result<(std::fs::File, PathBuf), String> {
    let (host, rest) = locate(dirs, path)?;
    let dir = cap_primitives::fs::open_ambient_dir(host, cap_primitives::ambient_authority())
        .map_err(|e| format!("cannot open the granted directory of `{path}`: {e}"))?;
    Ok((dir, rest))
}

/// Which granted directory `path` is in (by the name the plugin sees it
/// under: the longest that is a prefix of `path`, component by component), and
/// the rest of the path inside it (`.` for the directory itself).
fn locate<'a>(dirs: &'a [(PathBuf, String)], path: &str) -> Result<(&'a Path, PathBuf), String> {
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("`{path}` is refused: paths may not use `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("`{path}` is refused: write it relative, as the plugin opens it (`out/a.txt`)"));
            }
        }
    }
    if parts.is_empty() {
        return Err(format!("`{path}` names no file"));
    }
    let guest_parts = |guest: &str| -> Vec<std::ffi::OsString> {
        Path::new(guest).components().filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            _ => None,
        }).collect()
    };
    let found = dirs
        .iter()
        .map(|(host, guest)| (host, guest_parts(guest)))
        .filter(|(_, g)| g.len() <= parts.len() && g.iter().zip(&parts).all(|(a, b)| a.as_os_str() == *b))
        .max_by_key(|(_, g)| g.len());
    let Some((host, guest)) = found else {
        let granted: Vec<String> = dirs.iter().map(|(_, g)| format!("`{g}`")).collect();
        let granted = if granted.is_empty() { "none".to_string() } else { granted.join(", ") };
        return Err(format!("`{path}` is not inside a directory granted to this plugin (granted: {granted})"));
    };
    let rest: PathBuf = parts[guest.len()..].iter().collect();
    Ok((host.as_path(), if rest.as_os_str().is_empty() { PathBuf::from(".") } else { rest }))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn dirs(base: &Path) -> Vec<(PathBuf, String)> {
        vec![(base.join("out"), "out".into()), (base.join("deep"), "out/deep".into()), (base.join("t"), "t".into())]
    }

    #[test]
    fn paths_are_found_in_the_longest_granted_name() {
        let base = Path::new("/h");
        let d = dirs(base);
        assert_eq!(locate(&d, "out/a.txt").unwrap(), (Path::new("/h/out"), PathBuf::from("a.txt")));
        assert_eq!(locate(&d, "./out/./x/a").unwrap(), (Path::new("/h/out"), PathBuf::from("x/a")));
        assert_eq!(locate(&d, "out/deep/k").unwrap(), (Path::new("/h/deep"), PathBuf::from("k")));
        assert_eq!(locate(&d, "out").unwrap(), (Path::new("/h/out"), PathBuf::from(".")));
        assert_eq!(locate(&d, "t/x").unwrap().0, Path::new("/h/t"));
        for (bad, why) in [
            ("output/a", "not inside a directory granted"),
            ("a", "not inside"),
            ("/h/out/a", "relative"),
            ("out/../secret", "`..`"),
            ("out/x/../../y", "`..`"),
            ("", "names no file"),
            (".", "names no file"),
        ] {
            let e = locate(&d, bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let all = vec![(base.to_path_buf(), ".".to_string())];
        assert_eq!(locate(&all, "x/y").unwrap(), (base, PathBuf::from("x/y")));
        assert!(locate(&[], "out/a").unwrap_err().contains("granted: none"));
    }

    #[test]
    fn modes_are_read_and_set_inside_the_grants_only() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        std::fs::create_dir_all(base.join("out/sub")).unwrap();
        std::fs::write(base.join("out/sub/key"), "k").unwrap();
        std::fs::write(base.join("secret"), "s").unwrap();
        std::fs::set_permissions(base.join("secret"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let d = vec![(base.join("out"), "out".to_string())];
        let on_disk = |p: &str| std::fs::metadata(base.join(p)).unwrap().permissions().mode() & 0o7777;

        set_mode(&d, "out/sub/key", 0o600).unwrap();
        assert_eq!(on_disk("out/sub/key"), 0o600);
        assert_eq!(mode(&d, "out/sub/key").unwrap(), Some(0o600));
        assert_eq!(mode(&d, "out/nothing").unwrap(), None);
        set_mode(&d, "out/sub", 0o750).unwrap();
        assert_eq!(on_disk("out/sub"), 0o750);

        for bits in [0o4755, 0o2755, 0o1777, 0o10000] {
            assert!(set_mode(&d, "out/sub/key", bits).unwrap_err().contains("only the permission bits"), "{bits:o}");
        }
        assert_eq!(on_disk("out/sub/key"), 0o600);

        // A symbolic link that leads out of the grant: refused, the target untouched.
        std::os::unix::fs::symlink("../secret", base.join("out/escape")).unwrap();
        std::os::unix::fs::symlink(base.join("secret"), base.join("out/absolute")).unwrap();
        for link in ["out/escape", "out/absolute"] {
            assert!(set_mode(&d, link, 0o777).is_err(), "{link}");
            assert!(mode(&d, link).is_err(), "{link}");
        }
        assert!(set_mode(&d, "out/../secret", 0o777).is_err());
        assert_eq!(on_disk("secret"), 0o644);
        // One that stays inside is followed, as the plugin's own opens are.
        std::os::unix::fs::symlink("sub/key", base.join("out/inside")).unwrap();
        set_mode(&d, "out/inside", 0o640).unwrap();
        assert_eq!(on_disk("out/sub/key"), 0o640);
    }
}
