//! Compiled components on disk. Compiling a component takes tens of
//! milliseconds to seconds; loading the compiled artifact takes well under
//! one. Artifacts are keyed by the component's SHA-256 and by everything in
//! the engine that makes compiled code incompatible (wasmtime version,
//! compiler settings, target), so a stale artifact is never loaded.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

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

    /// The component for `bytes`: from the cache when a compatible artifact
    /// is there, else compiled and then stored. A cache that cannot be read
    /// or written is skipped, never fatal.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Compiled));
        };
        let path = dir.join(format!("{}.cwasm", artifact_key(engine, bytes)));
        // Read into memory rather than mapping the file: a mapped file that
        // someone truncates under us would crash the process.
        if let Ok(artifact) = std::fs::read(&path) {
            // SAFETY: wasmtime checks the artifact's header and refuses one
            // built by another engine configuration; the file name carries
            // the compatibility hash, and files are only written by `store`
            // below, atomically, from `Component::serialize`.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(e) => tracing::warn!(path = %path.display(), "ignoring a bad compiled artifact: {e:#}"),
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = store(dir, &path, &component) {
            tracing::debug!(path = %path.display(), "could not cache a compiled component: {e:#}");
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

/// Writes atomically (temp file + rename), so a reader never sees half an artifact.
fn store(dir: &Path, path: &Path, component: &Component) -> wasmtime::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &bytes)?;
    tmp.persist(path)?;
    Ok(())
}
