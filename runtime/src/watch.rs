//! Watching the files a pipeline is made of: the pipeline file, the plugin
//! components it loads from paths, and the files its provisioners read
//! (attributes with the input-file format). A burst of saves becomes one
//! change: the changes are gathered until the files have been quiet for a
//! moment.
//!
//! Files are watched through their directories, not one by one: editors
//! save by writing a new file and renaming it over the old one, which a
//! watch on the old file's inode would not see.
//!
//! The debouncing is ours rather than notify's debouncer crates: the mini
//! debouncer forgets what kind an event was, so stackpipe's own reads of
//! the pipeline (inotify's OPEN) would start the next cycle, and the full
//! one wakes up on a timer all the time, even when nothing changes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use stackpipe_dsl::PluginSource;
use tokio::sync::mpsc;

use crate::pipeline::LoadedPipeline;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch files: {0}")]
    Notify(#[from] notify::Error),
}

/// The pipeline file and the plugins it loads from paths, as the paths are
/// written (relative ones from where stackpipe runs or from the pipeline's
/// directory). The input files come from a run: [`crate::run::RunSummary::inputs`].
pub fn pipeline_files(pipeline: &LoadedPipeline) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::from([pipeline.path.clone()]);
    for env in &pipeline.graph.environments {
        for spec in env.plugins.values() {
            if let PluginSource::Path(p) = &spec.source {
                files.insert(pipeline.base_dir.join(p));
            }
        }
    }
    files
}

/// The watcher: tell it which files ([`FileWatch::watch_files`]); each
/// burst of changes to them arrives on the receiver as the changed files.
pub struct FileWatch {
    watcher: RecommendedWatcher,
    /// The watched files, by the name events carry (canonical directory + file name).
    files: Arc<Mutex<HashMap<PathBuf, PathBuf>>>,
    dirs: HashSet<PathBuf>,
}

impl FileWatch {
    /// Starts watching nothing. A burst of changes is reported once no
    /// watched file has changed for `quiet`. Needs a tokio runtime.
    pub fn start(quiet: Duration) -> Result<(FileWatch, mpsc::UnboundedReceiver<Vec<PathBuf>>), WatchError> {
        let (raw_tx, raw_rx) = mpsc::unbounded_channel::<PathBuf>();
        let files: Arc<Mutex<HashMap<PathBuf, PathBuf>>> = Arc::default();
        let known = files.clone();
        let watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
            let event = match result {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!("file watch: {e}");
                    return;
                }
            };
            if !changes_content(&event.kind) {
                return;
            }
            let Ok(known) = known.lock() else { return };
            // Other files in the same directories are not ours.
            for file in event.paths.iter().filter_map(|p| known.get(p)) {
                let _ = raw_tx.send(file.clone());
            }
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(gather_bursts(raw_rx, tx, quiet));
        Ok((FileWatch { watcher, files, dirs: HashSet::new() }, rx))
    }

    /// Watches exactly `files` from now on. A file whose directory does not
    /// exist cannot be watched; those are returned.
    pub fn watch_files(&mut self, files: &BTreeSet<PathBuf>) -> Result<Vec<PathBuf>, WatchError> {
        let mut by_event_name = HashMap::new();
        let mut dirs = HashSet::new();
        let mut unwatchable = Vec::new();
        for file in files {
            match event_name(file) {
                Some((dir, name)) => {
                    dirs.insert(dir);
                    by_event_name.insert(name, file.clone());
                }
                None => unwatchable.push(file.clone()),
            }
        }
        for gone in self.dirs.difference(&dirs) {
            // A directory removed meanwhile is no longer watched anyway.
            let _ = self.watcher.unwatch(gone);
        }
        for dir in dirs.difference(&self.dirs) {
            self.watcher.watch(dir, RecursiveMode::NonRecursive)?;
        }
        self.dirs = dirs;
        if let Ok(mut known) = self.files.lock() {
            *known = by_event_name;
        }
        Ok(unwatchable)
    }

    /// How many files are watched.
    pub fn len(&self) -> usize {
        self.files.lock().map(|f| f.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether an event can mean new content: not a read (stackpipe reads the
/// files it watches), but a write finishing, a rename, a removal.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Turns single changes into bursts: a burst ends when nothing changed
/// for `quiet`.
async fn gather_bursts(
    mut raw: mpsc::UnboundedReceiver<PathBuf>,
    out: mpsc::UnboundedSender<Vec<PathBuf>>,
    quiet: Duration,
) {
    while let Some(first) = raw.recv().await {
        let mut burst = BTreeSet::from([first]);
        loop {
            match tokio::time::timeout(quiet, raw.recv()).await {
                Ok(Some(file)) => {
                    burst.insert(file);
                }
                Ok(None) => return,
                Err(_quiet) => break,
            }
        }
        if out.send(burst.into_iter().collect()).is_err() {
            return;
        }
    }
}

/// The directory to watch for `file` and the path events name it by: the
/// canonical directory (so two spellings of one directory are one watch)
/// joined with the file name.
fn event_name(file: &Path) -> Option<(PathBuf, PathBuf)> {
    let name = file.file_name()?;
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = std::fs::canonicalize(dir).ok()?;
    let event = dir.join(name);
    Some((dir, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next(rx: &mut mpsc::UnboundedReceiver<Vec<PathBuf>>) -> Option<Vec<PathBuf>> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.ok().flatten()
    }

    #[tokio::test]
    async fn a_burst_of_saves_is_one_change_and_other_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("a.pipeline");
        std::fs::write(&watched, "1").unwrap();
        let (mut fw, mut rx) = FileWatch::start(Duration::from_millis(100)).unwrap();
        assert!(fw.watch_files(&BTreeSet::from([watched.clone()])).unwrap().is_empty());
        assert_eq!(fw.len(), 1);
        for i in 0..20 {
            std::fs::write(&watched, i.to_string()).unwrap();
            std::fs::write(dir.path().join("other.txt"), i.to_string()).unwrap();
        }
        assert_eq!(next(&mut rx).await, Some(vec![watched.clone()]));
        // Quiet afterwards: the burst was one change.
        assert!(tokio::time::timeout(Duration::from_millis(400), rx.recv()).await.is_err());
    }

    #[tokio::test]
    async fn a_save_by_rename_is_seen_and_unwatched_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pipeline");
        let b = dir.path().join("sub/b.wasm");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(&a, "1").unwrap();
        std::fs::write(&b, "1").unwrap();
        let (mut fw, mut rx) = FileWatch::start(Duration::from_millis(50)).unwrap();
        fw.watch_files(&BTreeSet::from([a.clone(), b.clone()])).unwrap();
        let tmp = dir.path().join("sub/.b.wasm.tmp");
        std::fs::write(&tmp, "2").unwrap();
        std::fs::rename(&tmp, &b).unwrap();
        assert_eq!(next(&mut rx).await, Some(vec![b.clone()]));
        // Watching only `a` now: `b` changes unseen.
        fw.watch_files(&BTreeSet::from([a.clone()])).unwrap();
        std::fs::write(&b, "3").unwrap();
        std::fs::write(&a, "3").unwrap();
        assert_eq!(next(&mut rx).await, Some(vec![a.clone()]));
    }

    #[tokio::test]
    async fn reading_a_watched_file_is_not_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pipeline");
        std::fs::write(&a, "1").unwrap();
        let (mut fw, mut rx) = FileWatch::start(Duration::from_millis(50)).unwrap();
        fw.watch_files(&BTreeSet::from([a.clone()])).unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "1");
        assert!(tokio::time::timeout(Duration::from_millis(300), rx.recv()).await.is_err());
    }

    #[tokio::test]
    async fn a_file_in_a_missing_directory_cannot_be_watched() {
        let (mut fw, _rx) = FileWatch::start(Duration::from_millis(50)).unwrap();
        let missing = PathBuf::from("/nonexistent-stackpipe-dir/x.wasm");
        assert_eq!(fw.watch_files(&BTreeSet::from([missing.clone()])).unwrap(), vec![missing]);
        assert!(fw.is_empty());
    }
}
