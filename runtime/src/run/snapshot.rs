//! What a run is started from, fixed as it starts ([`RunSource`]): the
//! pipeline's source text, the values given to it and the plugin
//! components it loads, read once. A run that records keeps it in the
//! state as a [`RunSnapshot`] (seed 004: the snapshot is immutable after
//! creation); `resume` continues it and `rerun` runs it again
//! ([`RunSource::restore`]), whatever has changed on disk since.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use stackpipe_dsl::PluginSource;

use super::env_run::Mode;
use super::RunOptions;
use crate::pipeline::LoadedPipeline;
use crate::plugin::{digest, PluginHost};
use crate::state::{Blob, PluginPin, RunKind, RunSnapshot, SourceFile, StateError, StateStore, Write};

/// One plugin component as the run loads it, or why it could not be read.
#[derive(Clone)]
pub struct Component {
    pub bytes: Arc<[u8]>,
    /// SHA-256, hex.
    pub digest: String,
}

/// The run's input, fixed: its snapshot and the plugin components every
/// environment loads (the same bytes in each, whatever happens to the
/// files while the run runs).
pub struct RunSource {
    pub snapshot: RunSnapshot,
    /// The snapshot's digest: the SHA-256 of its JSON, hex.
    pub digest: String,
    /// By source (`builtin:NAME` or the path as the pipeline gives it).
    components: BTreeMap<String, Result<Component, String>>,
}

impl std::fmt::Debug for RunSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSource").field("digest", &self.digest).finish_non_exhaustive()
    }
}

/// Why a run cannot be started again from its snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("no run `{run}`")]
    NoRun { run: String },
    #[error("run {run} has no snapshot (it was started by an older stackpipe)")]
    None { run: String },
    #[error("the snapshot {digest} of run {run} is not in the state")]
    Missing { run: String, digest: String },
    #[error(
        "plugin `{plugin}` ({source_desc}): run {run} was started with the component sha256:{want}, and it is no longer \
         available: {why}"
    )]
    ComponentGone { run: String, plugin: String, source_desc: String, want: String, why: String },
    #[error("plugin component {source_desc}: {why}")]
    Upload { source_desc: String, why: String },
    #[error(transparent)]
    State(#[from] StateError),
}

/// What differs between a snapshot and the files on disk now: said when a
/// run continues from its snapshot anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// A source file's text changed, or the file is gone.
    File { path: String, gone: bool },
    /// A path plugin's component changed, or the file is gone.
    Plugin { name: String, source: String, gone: bool },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::File { path, gone: true } => write!(f, "{path} is gone"),
            Drift::File { path, gone: false } => write!(f, "{path} has changed"),
            Drift::Plugin { name, source, gone: true } => write!(f, "plugin `{name}` ({source}) is gone"),
            Drift::Plugin { name, source, gone: false } => write!(f, "plugin `{name}` ({source}) has changed"),
        }
    }
}

/// `builtin:NAME` or the path as the pipeline gives it.
pub fn source_name(source: &PluginSource) -> String {
    match source {
        PluginSource::Builtin(b) => format!("builtin:{b}"),
        PluginSource::Path(p) => p.clone(),
    }
}

impl RunSource {
    /// The source of a run of `pipeline` starting now: every plugin
    /// component read once (a plugin that cannot be read fails the
    /// preflight of what needs it, not the run).
    pub fn read(pipeline: &LoadedPipeline, mode: Mode, opts: &RunOptions) -> RunSource {
        let path = std::fs::canonicalize(&pipeline.path).unwrap_or_else(|_| pipeline.path.clone()).display().to_string();
        RunSource::assemble(pipeline, mode, opts, path, |name, source| {
            PluginHost::read_source(name, source, &pipeline.base_dir)
                .map(|bytes| Component { digest: digest(&bytes), bytes: bytes.into() })
                .map_err(|e| e.to_string())
        })
    }

    /// The source of a run of `pipeline` whose path plugins' components
    /// were sent to this process (a team server) rather than read here:
    /// `uploaded`, by source as the pipeline gives it, each with the
    /// digest its sender gave, checked. Nothing is read from the paths,
    /// which are the sender's; builtins are this stackpipe's own. Every
    /// component sent must be a path plugin of the pipeline; one the
    /// pipeline needs and was not sent fails the preflight of what needs it.
    pub fn uploaded(
        pipeline: &LoadedPipeline,
        mode: Mode,
        opts: &RunOptions,
        uploaded: BTreeMap<String, Component>,
    ) -> Result<RunSource, SnapshotError> {
        let wanted: std::collections::BTreeSet<String> = pipeline
            .graph
            .environments
            .iter()
            .flat_map(|env| env.plugins.values())
            .filter_map(|spec| match &spec.source {
                PluginSource::Path(p) => Some(p.clone()),
                PluginSource::Builtin(_) => None,
            })
            .collect();
        for (source, c) in &uploaded {
            if !wanted.contains(source) {
                return Err(SnapshotError::Upload {
                    source_desc: source.clone(),
                    why: "no plugin of the pipeline has this source".into(),
                });
            }
            let actual = digest(&c.bytes);
            if actual != c.digest {
                return Err(SnapshotError::Upload {
                    source_desc: source.clone(),
                    why: format!("its bytes have the digest sha256:{actual}, not the sha256:{} sent with them", c.digest),
                });
            }
        }
        let path = pipeline.path.display().to_string();
        Ok(RunSource::assemble(pipeline, mode, opts, path, |name, source| match source {
            PluginSource::Builtin(_) => PluginHost::read_source(name, source, Path::new(""))
                .map(|bytes| Component { digest: digest(&bytes), bytes: bytes.into() })
                .map_err(|e| e.to_string()),
            PluginSource::Path(p) => uploaded
                .get(p)
                .cloned()
                .ok_or_else(|| format!("plugin `{name}`: its component ({p}) was not sent with the run")),
        }))
    }

    /// The snapshot of a run of `pipeline` from `file_path` (as the
    /// snapshot records it), its components as `component_of` gives them
    /// (once per source).
    fn assemble(
        pipeline: &LoadedPipeline,
        mode: Mode,
        opts: &RunOptions,
        file_path: String,
        mut component_of: impl FnMut(&str, &PluginSource) -> Result<Component, String>,
    ) -> RunSource {
        let mut components = BTreeMap::new();
        let mut plugins = BTreeMap::new();
        for env in &pipeline.graph.environments {
            for (name, spec) in &env.plugins {
                let source = source_name(&spec.source);
                let component = components.entry(source.clone()).or_insert_with(|| component_of(name, &spec.source));
                if let Ok(c) = component {
                    plugins.insert((name.clone(), source), c.digest.clone());
                }
            }
        }
        let graph = &pipeline.graph;
        let snapshot = RunSnapshot {
            pipeline: graph.name.clone(),
            operation: if mode == Mode::Undeploy { RunKind::Undeploy } else { RunKind::Deploy },
            environment: pipeline.environment.clone(),
            files: vec![SourceFile { path: file_path, text: pipeline.source.clone() }],
            vars: opts.vars.iter().filter(|(k, _)| !graph.sensitive_vars.contains(k)).cloned().collect(),
            sensitive_vars: opts.vars.iter().filter(|(k, _)| graph.sensitive_vars.contains(k)).map(|(k, _)| k.clone()).collect(),
            sets: opts.sets.clone(),
            targets: opts.selection.targets.clone(),
            orphans: opts.selection.orphans,
            plugins: plugins.into_iter().map(|((name, source), digest)| PluginPin { name, source, digest }).collect(),
            artifacts: graph.artifacts.iter().map(|(service, a)| (service.clone(), a.to_value())).collect(),
            previews_only: pipeline.previews_only,
        };
        RunSource { digest: snapshot_digest(&snapshot), snapshot, components }
    }

    /// The source of run `run` as it was started, from the snapshot it
    /// names, and what differs on disk now. `base_dir` is where its
    /// relative plugin paths start. A component is taken from its file when
    /// that still has its digest, else from the state; a builtin this
    /// stackpipe carries in another version cannot be run again.
    pub fn restore(store: &StateStore, run: &crate::state::RunRecord, base_dir: &Path) -> Result<(RunSource, Vec<Drift>), SnapshotError> {
        let Some(snapshot_id) = &run.snapshot else { return Err(SnapshotError::None { run: run.id.clone() }) };
        RunSource::restore_digest(store, &run.id, snapshot_id, base_dir)
    }

    /// The source kept in the state under `snapshot_id`, for run `run`
    /// (which may not be recorded yet: a queued run), and what differs on
    /// disk now; see [`RunSource::restore`].
    pub fn restore_digest(
        store: &StateStore,
        run: &str,
        snapshot_id: &str,
        base_dir: &Path,
    ) -> Result<(RunSource, Vec<Drift>), SnapshotError> {
        let snapshot = store
            .snapshot(snapshot_id)?
            .ok_or_else(|| SnapshotError::Missing { run: run.to_string(), digest: snapshot_id.to_string() })?;
        let mut drift = Vec::new();
        for file in &snapshot.files {
            match std::fs::read(&file.path) {
                Ok(now) if now == file.text.as_bytes() => {}
                Ok(_) => drift.push(Drift::File { path: file.path.clone(), gone: false }),
                Err(_) => drift.push(Drift::File { path: file.path.clone(), gone: true }),
            }
        }
        let mut components = BTreeMap::new();
        for pin in &snapshot.plugins {
            if components.contains_key(&pin.source) {
                continue;
            }
            let gone = |why: String| SnapshotError::ComponentGone {
                run: run.to_string(),
                plugin: pin.name.clone(),
                source_desc: pin.source.clone(),
                want: pin.digest.clone(),
                why,
            };
            let component = if let Some(name) = pin.source.strip_prefix("builtin:") {
                let source = PluginSource::Builtin(name.to_string());
                let bytes = PluginHost::read_source(&pin.name, &source, base_dir).map_err(|e| gone(e.to_string()))?;
                let now = digest(&bytes);
                if now != pin.digest {
                    return Err(gone(format!(
                        "this stackpipe carries sha256:{now} (another version of it): run it with the stackpipe that \
                         started the run, or start a new run with deploy"
                    )));
                }
                Component { bytes: bytes.into(), digest: now }
            } else {
                let source = PluginSource::Path(pin.source.clone());
                let on_disk = PluginHost::read_source(&pin.name, &source, base_dir).ok();
                match on_disk.map(|b| (digest(&b), b)) {
                    Some((now, bytes)) if now == pin.digest => Component { bytes: bytes.into(), digest: now },
                    found => {
                        drift.push(Drift::Plugin { name: pin.name.clone(), source: pin.source.clone(), gone: found.is_none() });
                        let stored = store.blob(&pin.digest).map_err(|e| gone(e.to_string()))?;
                        let Some(bytes) = stored else {
                            let now = if found.is_some() { "the file has changed" } else { "the file is gone" };
                            return Err(gone(format!("{now}, and the state does not hold the component")));
                        };
                        Component { bytes: bytes.into(), digest: pin.digest.clone() }
                    }
                }
            };
            components.insert(pin.source.clone(), Ok(component));
        }
        Ok((RunSource { digest: snapshot_id.to_string(), snapshot, components }, drift))
    }

    /// The component of plugin `name` from `source`, as the run read it.
    pub fn component(&self, name: &str, source: &PluginSource) -> Result<Component, String> {
        match self.components.get(&source_name(source)) {
            Some(found) => found.clone(),
            None => Err(format!("plugin `{name}`: {} is not part of the run's snapshot", source_name(source))),
        }
    }

    /// What keeps the snapshot in the state: the snapshot, and every path
    /// plugin's component (a builtin's bytes are in stackpipe itself).
    pub fn writes(&self) -> Vec<Write> {
        let mut writes = vec![Write::PutSnapshot(self.digest.clone(), self.snapshot.clone())];
        for pin in self.snapshot.plugins.iter().filter(|p| !p.is_builtin()) {
            if let Some(Ok(c)) = self.components.get(&pin.source) {
                writes.push(Write::PutBlob(c.digest.clone(), Blob(c.bytes.clone())));
            }
        }
        writes
    }
}

/// What `stackpipe show RUN` prints and the control socket answers:
/// `{"run", "digest", "snapshot"}`.
pub fn snapshot_document(store: &StateStore, run: &str) -> Result<serde_json::Value, SnapshotError> {
    let Some(record) = store.run(run)? else { return Err(SnapshotError::NoRun { run: run.to_string() }) };
    let Some(digest) = record.snapshot else { return Err(SnapshotError::None { run: run.to_string() }) };
    let snapshot =
        store.snapshot(&digest)?.ok_or_else(|| SnapshotError::Missing { run: run.to_string(), digest: digest.clone() })?;
    Ok(serde_json::json!({ "run": run, "digest": digest, "snapshot": snapshot }))
}

/// The SHA-256 of a snapshot's JSON, hex: what names it.
fn snapshot_digest(snapshot: &RunSnapshot) -> String {
    // A snapshot is plain data; its JSON cannot fail to encode.
    digest(&serde_json::to_vec(snapshot).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(name: &str, source: &str, digest: &str) -> PluginPin {
        PluginPin { name: name.into(), source: source.into(), digest: digest.into() }
    }

    fn run_with(store: &StateStore, snapshot: RunSnapshot, blobs: &[&[u8]]) -> crate::state::RunRecord {
        let digest = snapshot_digest(&snapshot);
        let mut writes = vec![Write::PutSnapshot(digest.clone(), snapshot)];
        writes.extend(blobs.iter().map(|b| Write::PutBlob(crate::plugin::digest(b), Blob((*b).into()))));
        store.commit(writes).unwrap();
        crate::state::RunRecord {
            id: "r000001".into(),
            pipeline: "p".into(),
            file: String::new(),
            kind: RunKind::Deploy,
            status: crate::state::RunStatus::Failed,
            environments: vec![],
            vars: vec![],
            sensitive_vars: vec![],
            sets: vec![],
            parallelism: 1,
            message: None,
            pid: 1,
            started_ms: 0,
            finished_ms: None,
            outcomes: vec![],
            started_by: String::new(),
            trigger: Default::default(),
            rerun_of: None,
            resumed: vec![],
            snapshot: Some(digest),
            targets: vec![],
            orphans: false,
        }
    }

    fn snapshot(dir: &Path, plugins: Vec<PluginPin>) -> RunSnapshot {
        RunSnapshot {
            pipeline: "p".into(),
            operation: RunKind::Deploy,
            environment: None,
            files: vec![SourceFile { path: dir.join("p.pipeline").display().to_string(), text: "resource a \"t.x\" {}\n".into() }],
            vars: vec![],
            sensitive_vars: vec![],
            sets: vec![],
            targets: vec![],
            orphans: false,
            plugins,
            artifacts: Default::default(),
            previews_only: false,
        }
    }

    #[test]
    fn a_changed_plugin_file_is_run_from_the_state_and_said() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join(".stackpipe")).unwrap();
        let old = b"the component the run started with".as_slice();
        std::fs::write(dir.path().join("p.pipeline"), "resource a \"t.x\" {}\n").unwrap();
        std::fs::write(dir.path().join("x.wasm"), b"rebuilt since").unwrap();
        let run = run_with(&store, snapshot(dir.path(), vec![pin("x", "x.wasm", &digest(old))]), &[old]);
        let (source, drift) = RunSource::restore(&store, &run, dir.path()).unwrap();
        assert_eq!(drift, vec![Drift::Plugin { name: "x".into(), source: "x.wasm".into(), gone: false }]);
        let c = source.component("x", &PluginSource::Path("x.wasm".into())).unwrap();
        assert_eq!(&*c.bytes, old);
        assert_eq!(source.digest, run.snapshot.unwrap());
    }

    #[test]
    fn a_component_neither_on_disk_nor_stored_refuses_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join(".stackpipe")).unwrap();
        let run = run_with(&store, snapshot(dir.path(), vec![pin("x", "x.wasm", &"ab".repeat(32))]), &[]);
        let err = RunSource::restore(&store, &run, dir.path()).unwrap_err().to_string();
        assert!(err.contains("plugin `x` (x.wasm)") && err.contains("the file is gone"), "{err}");
    }

    #[test]
    fn a_builtin_of_another_version_refuses_and_a_changed_file_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join(".stackpipe")).unwrap();
        std::fs::write(dir.path().join("p.pipeline"), "# edited since\n").unwrap();
        let run = run_with(&store, snapshot(dir.path(), vec![pin("t", "builtin:test", &"cd".repeat(32))]), &[]);
        let err = RunSource::restore(&store, &run, dir.path()).unwrap_err().to_string();
        assert!(err.contains("this stackpipe carries sha256:"), "{err}");
        let ok = crate::plugin::digest(crate::plugin::builtin("test").unwrap());
        let mut run = run_with(&store, snapshot(dir.path(), vec![pin("t", "builtin:test", &ok)]), &[]);
        let (_, drift) = RunSource::restore(&store, &run, dir.path()).unwrap();
        assert_eq!(drift, vec![Drift::File { path: dir.path().join("p.pipeline").display().to_string(), gone: false }]);
        run.snapshot = Some("ef".repeat(32));
        assert!(matches!(RunSource::restore(&store, &run, dir.path()), Err(SnapshotError::Missing { .. })));
    }

    #[test]
    fn an_uploaded_source_takes_the_bytes_sent_checks_their_digests_and_reads_no_path() {
        let text = "pipeline \"up\"\nplugin x {\n  kind = \"provisioner\"\n  source = \"/nowhere/x.wasm\"\n}\n\
                    plugin t {\n  kind = \"provisioner\"\n  source = \"builtin:test\"\n}\n\
                    environment dev {}\nresource a \"x.thing\" {}\nresource b \"t.thing\" {}\n";
        let pipeline =
            crate::pipeline::compile(Path::new("/srv/ws/up/up.pipeline"), text.into(), Default::default()).unwrap();
        let opts = RunOptions::default();
        let sent = |bytes: &[u8], claimed: &str| Component { bytes: bytes.into(), digest: claimed.into() };
        let good = BTreeMap::from([("/nowhere/x.wasm".to_string(), sent(b"component", &digest(b"component")))]);
        let source = RunSource::uploaded(&pipeline, Mode::Deploy, &opts, good).unwrap();
        let x = source.component("x", &PluginSource::Path("/nowhere/x.wasm".into())).unwrap();
        assert_eq!(&*x.bytes, b"component");
        assert!(source.component("t", &PluginSource::Builtin("test".into())).is_ok(), "builtins are the server's own");
        assert_eq!(source.snapshot.files[0].path, "/srv/ws/up/up.pipeline");
        assert_eq!(source.snapshot.plugins.len(), 2);

        let forged = BTreeMap::from([("/nowhere/x.wasm".to_string(), sent(b"other", &digest(b"component")))]);
        let err = RunSource::uploaded(&pipeline, Mode::Deploy, &opts, forged).unwrap_err().to_string();
        assert!(err.contains("/nowhere/x.wasm") && err.contains("not the sha256:"), "{err}");
        let stray = BTreeMap::from([("y.wasm".to_string(), sent(b"y", &digest(b"y")))]);
        let err = RunSource::uploaded(&pipeline, Mode::Deploy, &opts, stray).unwrap_err().to_string();
        assert!(err.contains("no plugin of the pipeline"), "{err}");
        let none = RunSource::uploaded(&pipeline, Mode::Deploy, &opts, BTreeMap::new()).unwrap();
        let missing = none.component("x", &PluginSource::Path("/nowhere/x.wasm".into())).err().unwrap();
        assert!(missing.contains("was not sent with the run"), "{missing}");
    }
}
