//! The filesystem side of `local`: plain `std::fs` on paths relative to the
//! directories the host preopened for the plugin.

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::spec::hex;

/// WASI's `ENOTCAPABLE`: the path is outside every preopened directory.
const WASI_ENOTCAPABLE: i32 = 76;

pub fn io_error(what: &str, path: &Path, e: &io::Error) -> String {
    let hint = if e.kind() == ErrorKind::PermissionDenied || e.raw_os_error() == Some(WASI_ENOTCAPABLE) {
        " (is it inside a directory granted to this plugin? grant one with allow { fs = [...] })"
    } else {
        ""
    };
    format!("cannot {what} `{}`: {e}{hint}", path.display())
}

/// The sha256 and size of a file, or none when there is no file.
pub fn hash_file(path: &Path) -> Result<Option<(String, u64)>, String> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", path, &e)),
    };
    if meta.is_dir() {
        return Err(format!("`{}` is a directory, not a file", path.display()));
    }
    let mut file = fs::File::open(path).map_err(|e| io_error("read", path, &e))?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut file, &mut hasher).map_err(|e| io_error("read", path, &e))?;
    Ok(Some((hex(&hasher.finalize()), size)))
}

/// The bytes of a `source` file; a missing one is an error, naming it.
pub fn read_source(path: &Path) -> Result<Vec<u8>, String> {
    if path.is_dir() {
        return Err(format!("cannot read source `{}`: it is a directory, not a file", path.display()));
    }
    fs::read(path).map_err(|e| io_error("read source", path, &e))
}

/// The sha256 of a `source` file, read in pieces (plan needs only the hash).
pub fn hash_source(path: &Path) -> Result<String, String> {
    if path.is_dir() {
        return Err(format!("cannot read source `{}`: it is a directory, not a file", path.display()));
    }
    let mut file = fs::File::open(path).map_err(|e| io_error("read source", path, &e))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|e| io_error("read source", path, &e))?;
    Ok(hex(&hasher.finalize()))
}

/// Writes a file, creating its missing parent directories: those it
/// created, outermost first.
pub fn write_file(path: &Path, content: &[u8]) -> Result<Vec<PathBuf>, String> {
    let created = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => create_dirs(parent)?,
        None => Vec::new(),
    };
    if path.is_dir() {
        return Err(format!("cannot write `{}`: it is a directory", path.display()));
    }
    fs::write(path, content).map_err(|e| io_error("write", path, &e))?;
    Ok(created)
}

/// Deletes a file; one already gone is fine.
pub fn remove_file(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!("cannot delete `{}`: it is a directory, not a file", path.display()));
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("delete", path, &e)),
    }
}

/// Whether a directory exists (an error when something else is there).
pub fn dir_exists(path: &Path) -> Result<bool, String> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(format!("`{}` exists but is not a directory", path.display())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("read", path, &e)),
    }
}

/// Makes `path` a directory, with its missing parents: the directories it
/// created, outermost first (none when it was there).
pub fn create_dirs(path: &Path) -> Result<Vec<PathBuf>, String> {
    let mut missing = Vec::new();
    let mut at = Some(path);
    while let Some(p) = at.filter(|p| !p.as_os_str().is_empty()) {
        if dir_exists(p)? {
            break;
        }
        missing.push(p);
        at = p.parent();
    }
    let mut created = Vec::new();
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => created.push(dir.to_path_buf()),
            // Made meanwhile by someone else: not ours to remove.
            Err(e) if e.kind() == ErrorKind::AlreadyExists && dir_exists(dir)? => {}
            Err(e) => return Err(io_error("create directory", dir, &e)),
        }
    }
    Ok(created)
}

/// Removes, deepest first, those of `dirs` (directories this plugin created)
/// that are empty; one that is not stays, and so do the ones holding it.
/// The ones removed.
pub fn remove_empty_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut deepest_first: Vec<&PathBuf> = dirs.iter().collect();
    deepest_first.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    let mut removed = Vec::new();
    for dir in deepest_first {
        if !dir_exists(dir)? || !dir_is_empty(dir)? {
            continue;
        }
        match fs::remove_dir(dir) {
            Ok(()) => removed.push(dir.clone()),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::DirectoryNotEmpty) => {}
            Err(e) => return Err(io_error("remove directory", dir, &e)),
        }
    }
    Ok(removed)
}

pub fn dir_is_empty(path: &Path) -> Result<bool, String> {
    let mut entries = fs::read_dir(path).map_err(|e| io_error("list", path, &e))?;
    Ok(entries.next().is_none())
}

pub fn not_empty_error(path: &Path) -> String {
    format!(
        "directory `{}` is not empty: stackpipe removes only empty directories (remove what is in it, or the resources that put it there, first)",
        path.display()
    )
}

/// Removes an empty directory; one already gone is fine.
pub fn remove_dir(path: &Path) -> Result<(), String> {
    if !dir_exists(path)? {
        return Ok(());
    }
    if !dir_is_empty(path)? {
        return Err(not_empty_error(path));
    }
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => Err(not_empty_error(path)),
        Err(e) => Err(io_error("remove directory", path, &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("stackpipe-local-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn files_are_written_hashed_and_removed() {
        let dir = scratch("files");
        let f = dir.join("a/b/c.txt");
        assert_eq!(hash_file(&f).unwrap(), None);
        write_file(&f, b"hi").unwrap();
        assert_eq!(hash_file(&f).unwrap(), Some((crate::spec::sha256_hex(b"hi"), 2)));
        assert!(hash_file(&dir.join("a")).unwrap_err().contains("is a directory"));
        remove_file(&f).unwrap();
        remove_file(&f).unwrap();
        assert!(remove_file(&dir.join("a")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sources_are_read_and_hashed_and_missing_ones_named() {
        let dir = scratch("sources");
        let src = dir.join("templates/x.bin");
        let err = read_source(&src).unwrap_err();
        assert!(err.starts_with(&format!("cannot read source `{}`: ", src.display())), "{err}");
        assert!(hash_source(&src).unwrap_err().starts_with("cannot read source `"));
        let bytes = [0u8, 0xff, 0xfe, b'\n', 0x80];
        write_file(&src, &bytes).unwrap();
        assert_eq!(read_source(&src).unwrap(), bytes);
        assert_eq!(hash_source(&src).unwrap(), crate::spec::sha256_hex(&bytes));
        assert!(read_source(&dir.join("templates")).unwrap_err().contains("is a directory"));
        assert!(hash_source(&dir.join("templates")).unwrap_err().contains("is a directory"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn directories_are_removed_only_when_empty() {
        let dir = scratch("dirs");
        let d = dir.join("x/y");
        assert!(!dir_exists(&d).unwrap());
        assert_eq!(create_dirs(&d).unwrap(), [dir.join("x"), d.clone()]);
        assert!(dir_exists(&d).unwrap());
        assert_eq!(create_dirs(&d).unwrap(), Vec::<PathBuf>::new(), "nothing new");
        fs::write(d.join("keep"), "").unwrap();
        let err = remove_dir(&d).unwrap_err();
        assert!(err.contains("not empty") && err.contains("x/y"), "{err}");
        fs::remove_file(d.join("keep")).unwrap();
        remove_dir(&d).unwrap();
        remove_dir(&d).unwrap();
        fs::write(dir.join("file"), "").unwrap();
        assert!(dir_exists(&dir.join("file")).unwrap_err().contains("not a directory"));
        assert!(create_dirs(&dir.join("file/sub")).unwrap_err().to_lowercase().contains("not a directory"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_empty_created_directories_are_removed_deepest_first() {
        let dir = scratch("created");
        let created = write_file(&dir.join("a/b/c/f.txt"), b"x").unwrap();
        assert_eq!(created, [dir.join("a"), dir.join("a/b"), dir.join("a/b/c")]);
        assert_eq!(write_file(&dir.join("a/b/g.txt"), b"y").unwrap(), Vec::<PathBuf>::new());
        remove_file(&dir.join("a/b/c/f.txt")).unwrap();
        // a/b holds g.txt, which is not the first file's: a/b and a stay.
        assert_eq!(remove_empty_dirs(&created).unwrap(), [dir.join("a/b/c")]);
        assert!(dir_exists(&dir.join("a/b")).unwrap());
        remove_file(&dir.join("a/b/g.txt")).unwrap();
        assert_eq!(remove_empty_dirs(&created).unwrap(), [dir.join("a/b"), dir.join("a")]);
        assert!(dir_exists(&dir).unwrap(), "not one it did not create");
        assert_eq!(remove_empty_dirs(&created).unwrap(), Vec::<PathBuf>::new(), "gone is fine");
        fs::remove_dir_all(&dir).unwrap();
    }
}
