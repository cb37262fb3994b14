//! A pipeline file read from disk and compiled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stackpipe_dsl::{CompileOptions, Diagnostics, PipelineGraph};

use crate::input::{read_regular_file, InputError};

/// The largest pipeline file read unless the caller allows more. A
/// hand-written pipeline is a few kilobytes and a generated one of 10,000
/// resources (the benchmarks') about 1.4 MB; what is read is held several times over (the text,
/// its parse, the graph), so a cap well above any real file still keeps a
/// mistaken path (a log, a disk image) from taking gigabytes of memory.
pub const DEFAULT_MAX_PIPELINE_BYTES: u64 = 16 << 20;

/// What a pipeline file is called in messages about reading it.
const WHAT: &str = "pipeline file";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not there, not a regular file, too large, or unreadable.
    #[error(transparent)]
    Read(#[from] InputError),
    #[error("cannot read {}: it is not UTF-8 text (an invalid byte at offset {at})", path.display())]
    NotUtf8 { path: PathBuf, at: usize },
    /// The file has mistakes; the diagnostics say which.
    #[error("{} has {} error(s)", .0.source.name(), .0.len())]
    Invalid(Diagnostics),
}

/// A compiled pipeline and where it came from.
#[derive(Debug)]
pub struct LoadedPipeline {
    pub path: PathBuf,
    /// The directory relative paths in the file (plugin sources, fs grants) start from.
    pub base_dir: PathBuf,
    pub source: String,
    /// `--env`: the one environment compiled, if one was asked for.
    pub environment: Option<String>,
    /// Only the environments marked `previews = true` were compiled (a
    /// pull request's deploy).
    pub previews_only: bool,
    /// Shared, not copied, by the runs of the pipeline.
    pub graph: Arc<PipelineGraph>,
}

impl LoadedPipeline {
    /// The state directory a run of this pipeline uses unless told
    /// otherwise: `.stackpipe` beside the file.
    pub fn default_state_dir(&self) -> PathBuf {
        self.base_dir.join(".stackpipe")
    }

    /// Every `fs` grant that is, holds or lies inside `state_dir` (both
    /// resolved, symbolic links followed), as a diagnostic at the grant: a
    /// plugin must never reach stackpipe's own records.
    pub fn check_grants(&self, state_dir: &Path) -> Result<(), LoadError> {
        use crate::plugin::{grant_overlap, resolve_path};
        use stackpipe_dsl::{Code, Diagnostic};
        let state = resolve_path(state_dir);
        let mut diags = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for env in &self.graph.environments {
            for spec in env.plugins.values() {
                for (i, grant) in spec.grants.fs.iter().enumerate() {
                    let Some(how) = grant_overlap(&resolve_path(&self.base_dir.join(grant)), &state) else { continue };
                    let span = spec.grants.fs_spans.get(i).copied().unwrap_or_default();
                    if !seen.insert((span.start, span.end)) {
                        continue;
                    }
                    diags.push(
                        Diagnostic::at(
                            Code::InvalidValue,
                            span,
                            format!("plugin `{}` may not be granted `{grant}`: it {how} the state directory", spec.name),
                        )
                        .with_label(span, format!("{how} {}", state_dir.display()))
                        .help("grant the plugin a directory of its own, like \"out\": stackpipe's state must stay out of every plugin's reach"),
                    );
                }
            }
        }
        if diags.is_empty() {
            return Ok(());
        }
        Err(LoadError::Invalid(Diagnostics::new(&self.path.display().to_string(), &self.source, diags)))
    }
}

/// Reads and compiles `path`, a regular file of at most `max_bytes`. The
/// pipeline's default name is the file stem.
pub fn load(path: &Path, opts: CompileOptions, max_bytes: u64) -> Result<LoadedPipeline, LoadError> {
    let bytes = read_regular_file(path, WHAT, max_bytes)?;
    let source = String::from_utf8(bytes)
        .map_err(|e| LoadError::NotUtf8 { path: path.to_path_buf(), at: e.utf8_error().valid_up_to() })?;
    compile(path, source, opts)
}

/// Compiles `source` as the pipeline file `path` (which need not hold it
/// any more: a run's snapshot is compiled this way). Relative paths in it
/// start from `path`'s directory.
pub fn compile(path: &Path, source: String, mut opts: CompileOptions) -> Result<LoadedPipeline, LoadError> {
    if opts.default_name.is_empty() {
        opts.default_name =
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "pipeline".into());
    }
    let name = path.display().to_string();
    let graph = stackpipe_dsl::load(&name, &source, &opts).map_err(LoadError::Invalid)?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(LoadedPipeline {
        path: path.to_path_buf(),
        base_dir,
        source,
        environment: opts.env,
        previews_only: opts.previews_only,
        graph: Arc::new(graph),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let err = load(Path::new("/nonexistent/x.pipeline"), CompileOptions::default(), DEFAULT_MAX_PIPELINE_BYTES)
            .unwrap_err();
        assert!(matches!(err, LoadError::Read(InputError::Io { .. })));
        assert!(err.to_string().starts_with("cannot read /nonexistent/x.pipeline"), "{err}");
    }

    #[test]
    fn the_file_stem_names_an_unnamed_pipeline() {
        let dir = std::env::temp_dir().join(format!("stackpipe-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("my-stack.pipeline");
        std::fs::write(&file, "plugin t { kind = \"provisioner\" source = \"builtin:test\" }\nresource a \"t.x\" {}\n").unwrap();
        let loaded = load(&file, CompileOptions::default(), DEFAULT_MAX_PIPELINE_BYTES).unwrap();
        assert_eq!(loaded.graph.name, "my-stack");
        assert_eq!(loaded.base_dir, dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_over_the_limit_or_not_utf8_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.pipeline");
        std::fs::write(&file, "# a comment\n").unwrap();
        let err = load(&file, CompileOptions::default(), 5).unwrap_err();
        assert!(matches!(err, LoadError::Read(InputError::TooLarge { size: 12, limit: 5, .. })), "{err:?}");
        std::fs::write(&file, b"# caf\xe9\n").unwrap();
        let err = load(&file, CompileOptions::default(), DEFAULT_MAX_PIPELINE_BYTES).unwrap_err();
        assert!(matches!(err, LoadError::NotUtf8 { at: 5, .. }), "{err:?}");
    }

    #[test]
    fn dev_zero_is_not_a_pipeline() {
        let err = load(Path::new("/dev/zero"), CompileOptions::default(), DEFAULT_MAX_PIPELINE_BYTES).unwrap_err();
        assert!(matches!(err, LoadError::Read(InputError::NotRegular { .. })), "{err:?}");
    }
}
