//! Artifacts, stored by content: what a build left at its `artifact` path
//! is copied under `STATE/artifacts/sha256-HEX` (read-only), where deploy
//! runs find it by the digest their snapshot names. A file's digest is its
//! content's SHA-256; a directory's is the SHA-256 of a manifest listing
//! every entry in name order (type, path, executable bit, content digest or
//! link target), so that the same tree always has the same digest.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

/// The directory of the state that holds artifacts.
pub const ARTIFACTS_DIR: &str = "artifacts";

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("the build left no artifact at `{0}`")]
    Missing(String),
    #[error("the artifact path `{0}` leads outside the checkout")]
    Outside(String),
    #[error("the artifact `{path}`: {why}")]
    Io { path: String, why: String },
}

/// An artifact in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArtifact {
    pub path: PathBuf,
    /// `sha256:HEX`.
    pub digest: String,
    pub bytes: u64,
    pub is_dir: bool,
}

/// `STATE/artifacts`.
pub struct ArtifactStore {
    root: PathBuf,
}

fn io(path: &Path, e: impl std::fmt::Display) -> ArtifactError {
    ArtifactError::Io { path: path.display().to_string(), why: e.to_string() }
}

impl ArtifactStore {
    /// The store under `state_dir`, made absolute: the paths it gives out
    /// are read by resources whatever their working directory.
    pub fn new(state_dir: &Path) -> ArtifactStore {
        let dir = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
        ArtifactStore { root: dir.join(ARTIFACTS_DIR) }
    }

    /// Stores what lies at `relative` inside `checkout` (a file or a
    /// directory; a symbolic link is not followed out of the checkout).
    pub fn store(&self, checkout: &Path, relative: &str) -> Result<StoredArtifact, ArtifactError> {
        if Path::new(relative).components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(ArtifactError::Outside(relative.to_string()));
        }
        let source = checkout.join(relative);
        let meta = std::fs::symlink_metadata(&source).map_err(|_| ArtifactError::Missing(relative.to_string()))?;
        let real = std::fs::canonicalize(&source).map_err(|_| ArtifactError::Missing(relative.to_string()))?;
        let root = std::fs::canonicalize(checkout).map_err(|e| io(checkout, e))?;
        if !real.starts_with(&root) {
            return Err(ArtifactError::Outside(relative.to_string()));
        }
        let is_dir = meta.is_dir() || (meta.file_type().is_symlink() && real.is_dir());
        let (digest, bytes) = if is_dir { dir_digest(&real)? } else { file_digest(&real)? };
        let hex = digest.trim_start_matches("sha256:");
        let target = self.root.join(format!("sha256-{hex}"));
        if !target.exists() {
            let mut dirs = std::fs::DirBuilder::new();
            use std::os::unix::fs::DirBuilderExt;
            dirs.recursive(true).mode(0o700).create(&self.root).map_err(|e| io(&self.root, e))?;
            // Copied beside its place, then renamed: a half-copied artifact
            // is never found under a digest.
            let partial = tempfile::Builder::new().prefix(".partial-").tempdir_in(&self.root).map_err(|e| io(&self.root, e))?;
            let staged = partial.path().join("a");
            if is_dir {
                copy_tree(&real, &staged)?;
            } else {
                std::fs::copy(&real, &staged).map_err(|e| io(&real, e))?;
            }
            let (again, _) = if is_dir { dir_digest(&staged)? } else { file_digest(&staged)? };
            if again != digest {
                return Err(io(&real, "it changed while it was being stored"));
            }
            make_read_only(&staged)?;
            match std::fs::rename(&staged, &target) {
                Ok(()) => {}
                // Stored meanwhile by another build of the same content.
                Err(_) if target.exists() => {}
                Err(e) => return Err(io(&target, e)),
            }
        }
        Ok(StoredArtifact { path: target, digest, bytes, is_dir })
    }
}

fn file_digest(path: &Path) -> Result<(String, u64), ArtifactError> {
    let mut f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), total))
}

/// Every entry under `root`, relative, in name order.
fn walk(root: &Path) -> Result<Vec<PathBuf>, ArtifactError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| io(&dir, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| io(&dir, e))?;
        names.sort();
        for name in names.into_iter().rev() {
            let child = rel.join(name);
            if std::fs::symlink_metadata(root.join(&child)).map_err(|e| io(&dir, e))?.is_dir() {
                stack.push(child.clone());
            }
            out.push(child);
        }
    }
    out.sort();
    Ok(out)
}

fn dir_digest(root: &Path) -> Result<(String, u64), ArtifactError> {
    let mut manifest = String::new();
    let mut total = 0u64;
    for rel in walk(root)? {
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
        let name = rel.display();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| io(&path, e))?;
            manifest.push_str(&format!("l {name} {}\n", target.display()));
        } else if meta.is_dir() {
            manifest.push_str(&format!("d {name}\n"));
        } else {
            let (digest, bytes) = file_digest(&path)?;
            total += bytes;
            let exec = if meta.permissions().mode() & 0o111 != 0 { "x" } else { "-" };
            manifest.push_str(&format!("f {name} {exec} {digest}\n"));
        }
    }
    Ok((format!("sha256:{}", hex::encode(Sha256::digest(manifest.as_bytes()))), total))
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), ArtifactError> {
    std::fs::create_dir(to).map_err(|e| io(to, e))?;
    for rel in walk(from)? {
        let (src, dst) = (from.join(&rel), to.join(&rel));
        let meta = std::fs::symlink_metadata(&src).map_err(|e| io(&src, e))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&src).map_err(|e| io(&src, e))?;
            std::os::unix::fs::symlink(target, &dst).map_err(|e| io(&dst, e))?;
        } else if meta.is_dir() {
            std::fs::create_dir(&dst).map_err(|e| io(&dst, e))?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| io(&src, e))?;
        }
    }
    Ok(())
}

/// Files 0444 (0555 when executable), directories 0555: what deploys read
/// is what the build made.
fn make_read_only(path: &Path) -> Result<(), ArtifactError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| io(path, e))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| io(path, e))? {
            make_read_only(&entry.map_err(|e| io(path, e))?.path())?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o555)).map_err(|e| io(path, e))
    } else {
        let mode = if meta.permissions().mode() & 0o111 != 0 { 0o555 } else { 0o444 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_content_is_stored_once_under_the_same_digest() {
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path().join("checkout");
        std::fs::create_dir_all(checkout.join("out/bin")).unwrap();
        std::fs::write(checkout.join("out/bin/app"), "#!/bin/sh\n").unwrap();
        std::fs::write(checkout.join("out/app.tar"), "tarball").unwrap();
        let store = ArtifactStore::new(&dir.path().join("state"));
        let file = store.store(&checkout, "out/app.tar").unwrap();
        assert_eq!(file.digest, format!("sha256:{}", hex::encode(Sha256::digest(b"tarball"))));
        assert_eq!(std::fs::read(&file.path).unwrap(), b"tarball");
        let tree = store.store(&checkout, "out").unwrap();
        assert!(tree.is_dir && tree.path.join("bin/app").exists());
        assert_eq!(store.store(&checkout, "out").unwrap(), tree, "stored again: the same digest, the same place");
        std::fs::write(checkout.join("out/bin/app"), "#!/bin/sh\necho 2\n").unwrap();
        assert_ne!(store.store(&checkout, "out").unwrap().digest, tree.digest);
    }

    #[test]
    fn an_artifact_outside_the_checkout_or_missing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path().join("checkout");
        std::fs::create_dir_all(&checkout).unwrap();
        std::fs::write(dir.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), checkout.join("link")).unwrap();
        let store = ArtifactStore::new(&dir.path().join("state"));
        assert!(matches!(store.store(&checkout, "link"), Err(ArtifactError::Outside(_))));
        assert!(matches!(store.store(&checkout, "../secret"), Err(ArtifactError::Outside(_))));
        assert!(matches!(store.store(&checkout, "nothing"), Err(ArtifactError::Missing(_))));
    }
}
