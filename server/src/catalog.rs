//! The pipelines a server knows: every `*.pipeline` file in its
//! `--pipelines` directory, compiled again whenever the file changes (its
//! size, inode or modification time), else kept compiled.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use stackpipe_dsl::CompileOptions;
use stackpipe_runtime::pipeline::{self, LoadedPipeline, DEFAULT_MAX_PIPELINE_BYTES};

/// One pipeline file of the catalog as it compiles now.
#[derive(Clone)]
pub struct CatalogEntry {
    /// The pipeline's name (`pipeline "NAME"`, else the file's stem).
    pub name: String,
    pub file: PathBuf,
    /// The pipeline compiled with its defaults, or its diagnostics as text.
    pub compiled: Result<Arc<LoadedPipeline>, String>,
}

/// A pipeline as the API lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PipelineSummary {
    pub name: String,
    pub file: String,
    /// Environments in promotion order.
    pub environments: Vec<String>,
    pub resources: usize,
    /// Why the file does not compile, if it does not (no run can start from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CatalogEntry {
    pub fn summary(&self) -> PipelineSummary {
        let (environments, resources, error) = match &self.compiled {
            Ok(p) => (p.graph.all_environments.clone(), p.graph.len(), None),
            Err(e) => (Vec::new(), 0, Some(e.clone())),
        };
        PipelineSummary { name: self.name.clone(), file: self.file.display().to_string(), environments, resources, error }
    }
}

type Stamp = (u64, u64, i64, i64);

/// The `--pipelines` directory (or none: runs then bring their own source).
pub struct Catalog {
    dir: Option<PathBuf>,
    compiled: Mutex<HashMap<PathBuf, (Stamp, CatalogEntry)>>,
}

impl Catalog {
    pub fn new(dir: Option<PathBuf>) -> Catalog {
        Catalog { dir, compiled: Mutex::new(HashMap::new()) }
    }

    /// Every pipeline file of the directory as it is now, by name. Two
    /// files naming the same pipeline: the first by file name wins, and the
    /// other says why it is not used.
    pub fn entries(&self) -> Vec<CatalogEntry> {
        let Some(dir) = &self.dir else { return Vec::new() };
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pipeline") && p.is_file())
                .collect(),
            Err(e) => {
                tracing::warn!("cannot read the pipelines directory {}: {e}", dir.display());
                Vec::new()
            }
        };
        files.sort();
        let mut cache = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|path, _| files.contains(path));
        let mut out: Vec<CatalogEntry> = Vec::new();
        for file in files {
            let Ok(meta) = std::fs::metadata(&file) else { continue };
            let stamp = (meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec());
            let entry = match cache.get(&file) {
                Some((s, e)) if *s == stamp => e.clone(),
                _ => {
                    let e = compile_entry(&file);
                    cache.insert(file.clone(), (stamp, e.clone()));
                    e
                }
            };
            if out.iter().any(|o| o.name == entry.name) {
                let why = format!("another file of the directory names the pipeline `{}` too", entry.name);
                out.push(CatalogEntry { compiled: Err(why), ..entry });
                continue;
            }
            out.push(entry);
        }
        out
    }

    /// The pipeline named `name`, if the directory has it.
    pub fn get(&self, name: &str) -> Option<CatalogEntry> {
        let entries = self.entries();
        let compiled = entries.iter().position(|e| e.name == name && e.compiled.is_ok());
        let at = compiled.or_else(|| entries.iter().position(|e| e.name == name))?;
        entries.into_iter().nth(at)
    }
}

fn compile_entry(file: &Path) -> CatalogEntry {
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let opts = CompileOptions { default_name: stem.clone(), ..Default::default() };
    match pipeline::load(file, opts, DEFAULT_MAX_PIPELINE_BYTES) {
        Ok(p) => CatalogEntry { name: p.graph.name.clone(), file: file.to_path_buf(), compiled: Ok(Arc::new(p)) },
        Err(e) => CatalogEntry { name: stem, file: file.to_path_buf(), compiled: Err(crate::render_load_error(&e)) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_compiled_again_and_a_broken_one_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.pipeline");
        std::fs::write(&file, "pipeline \"web\"\nenvironment dev {}\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a pipeline").unwrap();
        let c = Catalog::new(Some(dir.path().to_path_buf()));
        let e = c.entries();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].summary().environments, vec!["dev"], "{:?}", e[0].summary().error);
        std::fs::write(&file, "pipeline \"web\"\nenvironment dev {}\nenvironment prod { after = dev }\n").unwrap();
        assert_eq!(c.get("web").unwrap().summary().environments, vec!["dev", "prod"]);
        std::fs::write(&file, "pipeline \"web\"\nresource {").unwrap();
        let s = c.get("web").unwrap().summary();
        assert!(s.error.is_some(), "{s:?}");
    }
}
