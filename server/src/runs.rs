//! The runs of a server: started with the same run library as the CLI
//! (`stackpipe_runtime::run::Run`), several at once when they lock
//! different resources, and queued, first come first served, when they
//! would lock a resource a run ahead of them holds (seed 003: `queued`).
//! Each run in progress is a [`LiveRun`] that the API reads and steers;
//! every event of every run also goes to [`ServerEvents`], the server's
//! own stream.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use stackpipe_runtime::control::{LiveRun, RunHandles};
use stackpipe_runtime::pipeline::LoadedPipeline;
use stackpipe_runtime::plugin::PluginHost;
use stackpipe_runtime::run::{Events, Mode, Run, RunOptions, Steering, StopSignal};
use axum::body::Bytes;
use stackpipe_runtime::state::{now_ms, ResourceKey, RunStatus, StateStore};
use stackpipe_state_postgres::JobQueue;
use tokio::sync::{mpsc, watch};

/// How many ended runs keep their events in memory for late followers.
const ENDED_KEPT: usize = 64;
/// How many events the server's own stream keeps for `Last-Event-ID`.
const SERVER_EVENTS_KEPT: usize = 100_000;

/// A run ready to start: its pipeline compiled as the run asks, and how to run it.
pub struct PreparedRun {
    pub pipeline: LoadedPipeline,
    pub mode: Mode,
    pub opts: RunOptions,
    /// Every resource it locks (from its preflight).
    pub keys: HashSet<ResourceKey>,
}

/// A run waiting for the runs ahead of it.
struct Queued {
    id: String,
    prepared: PreparedRun,
    summary: QueuedRun,
    /// How it is kept across a restart (None: it cannot be, having a
    /// sensitive var whose value is never written down).
    kept: Option<KeptRun>,
}

/// A queued run as `server-queue.json` keeps it: its snapshot (in the
/// state, by digest) and how to run it. A server started again queues it
/// again, under the same id.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct KeptRun {
    pub id: String,
    pub snapshot: String,
    /// The pipeline file the snapshot's relative paths start from.
    pub file: String,
    pub started_by: String,
    pub trigger: stackpipe_runtime::state::RunTrigger,
    #[serde(default)]
    pub rerun_of: Option<String>,
    #[serde(default)]
    pub resume: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub parallelism: usize,
}

/// The queue kept beside the state.
pub const QUEUE_FILE: &str = "server-queue.json";

/// A queued run as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueuedRun {
    pub run: String,
    pub pipeline: String,
    pub operation: String,
    pub status: &'static str,
    pub started_by: String,
    pub queued_ms: u64,
    /// The runs it waits for: they hold resources it would lock.
    pub waiting_for: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// Runs in progress and the last ended ones, by id, with their events
    /// as Server-Sent Events.
    live: HashMap<String, (Arc<LiveRun>, Arc<RunFeed>)>,
    /// Status documents made, serialised, by run (see [`Runs::status_json`]).
    status_cache: HashMap<(String, StatusView), (Freshness, Bytes)>,
    ended: VecDeque<String>,
    /// Runs started and not ended, with their pipeline and what they lock.
    active: Vec<(String, String, HashSet<ResourceKey>)>,
    queue: VecDeque<Queued>,
    /// Runs that could not start, and why (they were never recorded).
    /// (pipeline, why), a few hundred at most.
    failed_to_start: HashMap<String, (String, String)>,
    /// Set when the server stops: nothing new starts.
    closing: bool,
}

/// Every run the server runs or queues.
pub struct Runs {
    store: Arc<StateStore>,
    host: Arc<PluginHost>,
    /// With the state in a database: its job queue, whose runners work the
    /// runs this server starts (it owns them: their gates are asked here).
    queue: Option<JobQueue>,
    /// The server's own directory: where its queue is kept.
    dir: PathBuf,
    inner: Mutex<Inner>,
    pub events: Arc<ServerEvents>,
    /// Stops every run when the server shuts down.
    stop_all: StopSignal,
    /// Sent whenever a run ends: the server's shutdown waits on it.
    ended: watch::Sender<usize>,
}

/// How much of a run's status document to make.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusView {
    /// All of it, as `stackpipe status --json` prints it.
    #[default]
    Full,
    /// Each node without its operations, input and diff: what a page of
    /// 10,000 nodes needs at once (a node's own page asks for the rest).
    Nodes,
}

/// What [`Runs::submit`] did with a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Admission {
    Running,
    Queued,
}

impl Runs {
    /// The runs of a server whose state is `store` and whose own files
    /// (its queue) are in `dir`.
    pub fn new(store: Arc<StateStore>, host: Arc<PluginHost>, dir: PathBuf, queue: Option<JobQueue>) -> Arc<Runs> {
        Arc::new(Runs {
            store,
            dir,
            host,
            queue,
            inner: Mutex::new(Inner::default()),
            events: Arc::new(ServerEvents::new()),
            stop_all: StopSignal::new(),
            ended: watch::channel(0).0,
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ids of the runs in progress: a new run's preflight does not
    /// count their locks (it is queued behind them instead).
    pub fn active_ids(&self) -> Vec<String> {
        self.inner().active.iter().map(|(id, _, _)| id.clone()).collect()
    }

    /// The live run `id` (in progress, or ended recently).
    pub fn live(&self, id: &str) -> Option<Arc<LiveRun>> {
        self.inner().live.get(id).map(|(l, _)| l.clone())
    }

    /// The live run `id` with its events as Server-Sent Events.
    pub fn feed(&self, id: &str) -> Option<(Arc<LiveRun>, Arc<RunFeed>)> {
        self.inner().live.get(id).cloned()
    }

    /// Run `id`'s status document as JSON: made again only when the run
    /// has moved (a run in progress: a new event, or half a second since it
    /// was made, for what its journal wrote meanwhile; an ended run: its
    /// record changed), else the bytes made last. A status read every
    /// second by every console and CLI costs the run nothing most times.
    pub fn status_json(&self, id: &str, live: Option<&LiveRun>, view: StatusView) -> Result<(Bytes, Option<u64>), String> {
        let store = &self.store;
        let live = live.filter(|l| !l.over());
        let (freshness, record) = match live {
            Some(l) => (Freshness::Live { events: l.event_count(), at: std::time::Instant::now() }, None),
            None => {
                let record = store.run(id).map_err(|e| e.to_string())?.ok_or_else(|| format!("no run `{id}`"))?;
                let made = Freshness::Ended { status: record.status, finished_ms: record.finished_ms, resumed: record.resumed.len() };
                (made, Some(record))
            }
        };
        // The events a live document covers: read before it is made, and
        // the board takes each event before it is counted, so every one of
        // them is in it (a follower goes on from there).
        let covered = match freshness {
            Freshness::Live { events, .. } => self.feed(id).map(|(_, feed)| feed.id_of(events)),
            Freshness::Ended { .. } => None,
        };
        let key = (id.to_string(), view);
        if let Some((made, bytes)) = self.inner().status_cache.get(&key) {
            if made.still(&freshness) {
                return Ok((bytes.clone(), covered));
            }
        }
        let mut doc = match (live, record) {
            (Some(l), _) => l.status_of(store, view == StatusView::Full)?,
            (None, None) => return Err(format!("no run `{id}`")),
            (None, Some(record)) => {
                let jobs = store.jobs(id).map_err(|e| e.to_string())?;
                let decisions = store.decisions(id).map_err(|e| e.to_string())?;
                stackpipe_runtime::run::status::StatusDocument::stored(&record, &jobs, &decisions)
            }
        };
        if view == StatusView::Nodes {
            for node in doc.environments.iter_mut().flat_map(|e| e.nodes.iter_mut()) {
                node.operations = Vec::new();
                node.input = None;
                node.diff = None;
            }
        }
        let bytes = Bytes::from(serde_json::to_vec(&doc).map_err(|e| e.to_string())?);
        let mut inner = self.inner();
        if inner.status_cache.len() >= STATUS_CACHE_KEPT && !inner.status_cache.contains_key(&key) {
            // Any one goes: it is made again when asked for.
            if let Some(old) = inner.status_cache.keys().next().cloned() {
                inner.status_cache.remove(&old);
            }
        }
        inner.status_cache.insert(key, (freshness, bytes.clone()));
        Ok((bytes, covered))
    }

    /// Forgets what was made of run `id` (its records were deleted).
    pub fn forget(&self, id: &str) {
        self.inner().status_cache.retain(|(run, _), _| run != id);
    }

    /// Whether run `id` is in progress here.
    pub fn is_active(&self, id: &str) -> bool {
        self.inner().active.iter().any(|(a, _, _)| a == id)
    }

    /// The pipeline of run `id` if it is queued or in progress here (it
    /// may not be recorded yet: it is starting).
    pub fn pipeline_of(&self, id: &str) -> Option<String> {
        let inner = self.inner();
        inner
            .active
            .iter()
            .find(|(a, _, _)| a == id)
            .map(|(_, p, _)| p.clone())
            .or_else(|| inner.queue.iter().find(|q| q.id == id).map(|q| q.summary.pipeline.clone()))
            .or_else(|| inner.failed_to_start.get(id).map(|(p, _)| p.clone()))
    }

    /// The live run `id` once it has started (it may be starting now: a
    /// few seconds are waited for that), if it is in progress here.
    pub async fn started(&self, id: &str) -> Option<Arc<LiveRun>> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(l) = self.live(id) {
                return Some(l);
            }
            if !self.is_active(id) || tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The queued run `id`, as shown.
    pub fn queued(&self, id: &str) -> Option<QueuedRun> {
        self.inner().queue.iter().find(|q| q.id == id).map(|q| q.summary.clone())
    }

    /// Every queued run, first to start first.
    pub fn queue(&self) -> Vec<QueuedRun> {
        self.inner().queue.iter().map(|q| q.summary.clone()).collect()
    }

    /// Why run `id` could not start, if it could not.
    pub fn failed_to_start(&self, id: &str) -> Option<String> {
        self.inner().failed_to_start.get(id).map(|(_, why)| why.clone())
    }

    /// Starts run `id` now, or queues it behind the runs it would share a
    /// resource with (those in progress, and those queued before it).
    /// A run that is queued is kept (`kept`, its snapshot's `writes` put in
    /// the state first) so that a server started again queues it again.
    pub fn submit(
        self: &Arc<Self>,
        id: String,
        prepared: PreparedRun,
        summary: QueuedRun,
        kept: Option<(KeptRun, Vec<stackpipe_runtime::state::Write>)>,
    ) -> Admission {
        let mut inner = self.inner();
        let blockers: Vec<String> = inner
            .active
            .iter()
            .filter(|(_, _, keys)| !keys.is_disjoint(&prepared.keys))
            .map(|(id, _, _)| id.clone())
            .chain(inner.queue.iter().filter(|q| !q.prepared.keys.is_disjoint(&prepared.keys)).map(|q| q.id.clone()))
            .collect();
        if blockers.is_empty() && !inner.closing {
            inner.active.push((id.clone(), summary.pipeline.clone(), prepared.keys.clone()));
            drop(inner);
            self.clone().spawn(id, prepared);
            return Admission::Running;
        }
        let summary = QueuedRun { waiting_for: blockers, status: "queued", ..summary };
        let kept = match kept {
            Some((record, writes)) => match self.store.commit(writes) {
                Ok(()) => Some(record),
                Err(e) => {
                    tracing::error!("run {id}: its snapshot cannot be kept ({e}); it is queued, but lost if the server stops");
                    None
                }
            },
            None => {
                tracing::warn!("run {id} has a sensitive var: it is queued, but not kept if the server stops");
                None
            }
        };
        inner.queue.push_back(Queued { id, prepared, summary, kept });
        self.save_queue(&inner);
        Admission::Queued
    }

    /// Takes a queued run off the queue (cancelled before it started).
    pub fn dequeue(&self, id: &str) -> Option<QueuedRun> {
        let mut inner = self.inner();
        let at = inner.queue.iter().position(|q| q.id == id)?;
        let taken = inner.queue.remove(at).map(|q| q.summary);
        self.save_queue(&inner);
        taken
    }

    /// Writes the queue to [`QUEUE_FILE`] in the server's directory
    /// (replacing it whole).
    fn save_queue(&self, inner: &Inner) {
        let dir = self.dir.as_path();
        let kept: Vec<&KeptRun> = inner.queue.iter().filter_map(|q| q.kept.as_ref()).collect();
        let path = dir.join(QUEUE_FILE);
        let written = serde_json::to_vec_pretty(&kept).map_err(std::io::Error::other).and_then(|bytes| {
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut tmp, &bytes)?;
            tmp.as_file().sync_all()?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        });
        if let Err(e) = written {
            tracing::error!("cannot keep the queue in {}: {e}", path.display());
        }
    }

    /// The queue a server left, to queue again.
    pub fn kept_queue(&self) -> Vec<KeptRun> {
        let path = self.dir.join(QUEUE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::error!("{} is not a queue ({e}): its runs are not queued again", path.display());
                Vec::new()
            }),
            Err(_) => Vec::new(),
        }
    }

    /// Starts the queued runs that share no resource with a run in
    /// progress or with a run queued before them.
    fn start_queued(self: &Arc<Self>) {
        let mut to_start = Vec::new();
        let started;
        {
            let mut inner = self.inner();
            if inner.closing {
                return;
            }
            let mut held: Vec<HashSet<ResourceKey>> = inner.active.iter().map(|(_, _, k)| k.clone()).collect();
            let mut i = 0;
            while i < inner.queue.len() {
                let free = held.iter().all(|h| h.is_disjoint(&inner.queue[i].prepared.keys));
                held.push(inner.queue[i].prepared.keys.clone());
                if free {
                    let q = inner.queue.remove(i).expect("in range");
                    inner.active.push((q.id.clone(), q.summary.pipeline.clone(), q.prepared.keys.clone()));
                    to_start.push(q);
                } else {
                    let ahead: Vec<String> = inner
                        .active
                        .iter()
                        .filter(|(_, _, k)| !k.is_disjoint(&inner.queue[i].prepared.keys))
                        .map(|(id, _, _)| id.clone())
                        .collect();
                    if !ahead.is_empty() {
                        inner.queue[i].summary.waiting_for = ahead;
                    }
                    i += 1;
                }
            }
            started = !to_start.is_empty();
            if started {
                self.save_queue(&inner);
            }
        }
        for q in to_start {
            self.clone().spawn(q.id, q.prepared);
        }
    }

    fn spawn(self: Arc<Self>, id: String, prepared: PreparedRun) {
        self.store.run_taken_up(&id);
        let pipeline = prepared.pipeline.graph.name.clone();
        tokio::spawn(async move {
            if let Err(why) = self.execute(&id, prepared).await {
                tracing::warn!("run {id}: {why}");
                let mut inner = self.inner();
                if inner.failed_to_start.len() >= STATUS_CACHE_KEPT {
                    if let Some(old) = inner.failed_to_start.keys().next().cloned() {
                        inner.failed_to_start.remove(&old);
                    }
                }
                inner.failed_to_start.insert(id.clone(), (pipeline, why));
            }
            self.store.run_ended(&id);
            {
                let mut inner = self.inner();
                inner.active.retain(|(a, _, _)| *a != id);
                inner.status_cache.retain(|(run, _), _| *run != id);
                if inner.live.contains_key(&id) {
                    inner.ended.push_back(id.clone());
                    while inner.ended.len() > ENDED_KEPT {
                        if let Some(old) = inner.ended.pop_front() {
                            inner.live.remove(&old);
                        }
                    }
                }
            }
            self.ended.send_modify(|n| *n += 1);
            self.start_queued();
        });
    }

    /// Runs `prepared` to its end. Errors: why it could not start.
    async fn execute(&self, id: &str, prepared: PreparedRun) -> Result<(), String> {
        let PreparedRun { pipeline, mode, mut opts, .. } = prepared;
        if opts.resume.is_none() {
            opts.id = Some(id.to_string());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = StopSignal::new();
        let steering = Steering { events: Events::new(tx), stop: stop.clone() };
        // The server's stop reaches every run.
        let mut all = self.stop_all.receiver();
        let forward = stop.clone();
        let watcher = tokio::spawn(async move {
            if all.wait_for(|s| *s).await.is_ok() {
                forward.stop();
            }
        });
        let started = Run::start(&pipeline, mode, self.host.clone(), self.store.clone(), &opts, steering, None).await;
        let run = match started {
            Ok(run) => run,
            Err(e) => {
                watcher.abort();
                return Err(format!("cannot start: {e}"));
            }
        };
        let Some(gates) = run.gates() else {
            watcher.abort();
            return Err("a plan is not run on a server".into());
        };
        let handles = RunHandles { run_id: run.id().to_string(), journal: run.journal().clone(), gates, cancels: run.cancels(), stop };
        let live = LiveRun::new(handles);
        let events = self.events.clone();
        let resumptions = self.store.run(id).ok().flatten().map_or(0, |r| r.resumed.len());
        let feed = Arc::new(RunFeed::new(resumptions));
        let frames = feed.clone();
        let pump = live.pump(rx, move |run, line| {
            let kind = event_kind(line);
            frames.push(kind, line);
            events.push(run, kind, line);
        });
        self.inner().live.insert(id.to_string(), (live.clone(), feed));
        // Steering from who cannot reach this server (another server, a
        // terminal elsewhere) comes through the database.
        let posted = self.queue.clone().map(|queue| {
            tokio::spawn(stackpipe_runtime::control::answer_posted(self.store.clone(), queue, live.clone()))
        });
        let result = match &self.queue {
            Some(queue) if run.runners_can_work() => run.on_runners(queue.clone(), None).await,
            _ => run.run_to_end().await,
        };
        // Followers get the run's last events.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), pump).await;
        live.close();
        watcher.abort();
        if let Some(posted) = posted {
            // It answers what it took, then sees the run is over.
            let abort = posted.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(5), posted).await.is_err() {
                abort.abort();
            }
        }
        match result {
            Ok(summary) => {
                tracing::info!("run {id} ended: {}", summary.status.name());
                Ok(())
            }
            Err(e) => {
                tracing::warn!("run {id} ended on an error: {e}");
                Ok(())
            }
        }
    }

    /// Asks run `id`'s owner through the database, as `decider`: for a run
    /// in progress that another server (or a terminal elsewhere) owns.
    /// None: this server has no database, or the run is not in progress.
    pub async fn ask_owner(
        &self,
        id: &str,
        request: &stackpipe_runtime::control::Request,
        decider: &stackpipe_runtime::run::Decider,
    ) -> Option<Result<Result<serde_json::Value, String>, String>> {
        let queue = self.queue.as_ref()?;
        let record = self.store.run(id).ok().flatten()?;
        if record.status != RunStatus::Running {
            return None;
        }
        Some(stackpipe_runtime::control::post_and_wait(queue, &self.store, id, request, decider).await.map_err(|e| e.to_string()))
    }

    /// What stops when the server does: its own runner, for one.
    pub fn stopping(&self) -> StopSignal {
        self.stop_all.clone()
    }

    /// Stops every run (operations in flight finish; the runs end
    /// cancelled) and waits for them to end, `patience` at most. Returns
    /// the runs it stopped, to be resumed when the server starts again.
    /// Queued runs are dropped: they were never recorded.
    pub async fn shut_down(&self, patience: std::time::Duration) -> Vec<String> {
        let stopped: Vec<String> = {
            let mut inner = self.inner();
            inner.closing = true;
            inner.queue.clear();
            inner.active.iter().map(|(id, _, _)| id.clone()).collect()
        };
        self.stop_all.stop();
        let mut ended = self.ended.subscribe();
        let _ = tokio::time::timeout(patience, async {
            while !self.inner().active.is_empty() {
                if ended.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        stopped
    }

    pub fn store(&self) -> &Arc<StateStore> {
        &self.store
    }

    pub fn host(&self) -> &Arc<PluginHost> {
        &self.host
    }
}

/// How many runs' status documents are kept made.
const STATUS_CACHE_KEPT: usize = 256;

/// When a status document was made: what says whether it still holds.
#[derive(Debug, Clone, PartialEq)]
enum Freshness {
    Live { events: usize, at: std::time::Instant },
    Ended { status: RunStatus, finished_ms: Option<u64>, resumed: usize },
}

impl Freshness {
    /// Whether a document made at `self` still holds at `now`.
    fn still(&self, now: &Freshness) -> bool {
        match (self, now) {
            (Freshness::Live { events: a, at }, Freshness::Live { events: b, .. }) => {
                a == b && at.elapsed() < std::time::Duration::from_millis(500)
            }
            (ended @ Freshness::Ended { .. }, now @ Freshness::Ended { .. }) => ended == now,
            _ => false,
        }
    }
}

/// The `event` of a run event's JSON line (its first field, as the run's
/// events are written), read without parsing the line.
pub fn event_kind(line: &str) -> &str {
    line.strip_prefix("{\"event\":\"")
        .and_then(|rest| rest.split_once('"'))
        .map(|(kind, _)| kind)
        .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .unwrap_or("message")
}

/// A run's events as Server-Sent Events, each formatted once for every
/// follower: `id`, `event` and `data`. Ids are 1, 2, ... in a run, after
/// the feed's `base`: a run resumed (by a server started again) has a
/// new feed whose ids start above every id of the feeds before it, so a
/// follower that reconnects with an old `Last-Event-ID` gets the new
/// feed whole, not nothing until its count catches up.
#[derive(Default)]
pub struct RunFeed {
    base: u64,
    frames: Mutex<Vec<Bytes>>,
}

/// How far apart the ids of a run's feeds are: one per resumption.
const FEED_SPAN: u64 = 1 << 32;

impl RunFeed {
    /// The feed of a run resumed `resumptions` times.
    pub fn new(resumptions: usize) -> RunFeed {
        RunFeed { base: resumptions as u64 * FEED_SPAN, frames: Mutex::default() }
    }

    fn push(&self, kind: &str, line: &str) {
        let mut frames = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        let id = self.base + frames.len() as u64 + 1;
        frames.push(Bytes::from(format!("id: {id}\nevent: {kind}\ndata: {line}\n\n")));
    }

    /// The id of the `count`th event (0: before the first).
    pub fn id_of(&self, count: usize) -> u64 {
        self.base + count as u64
    }

    /// The frames after the event of id `after` (of this feed, or of an
    /// earlier one of the run: then all of them), in one buffer, and the id
    /// of the last one (`after` if none).
    pub fn after(&self, after: u64) -> (Bytes, u64) {
        let from = after.saturating_sub(self.base) as usize;
        let frames = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        let Some(new) = frames.get(from..).filter(|n| !n.is_empty()) else { return (Bytes::new(), after) };
        let mut out = Vec::with_capacity(new.iter().map(Bytes::len).sum());
        for f in new {
            out.extend_from_slice(f);
        }
        (Bytes::from(out), self.base + frames.len() as u64)
    }
}

/// One event of the server's stream: which run, its id (increasing from 1
/// over the server's life) and its Server-Sent Event, formatted once.
#[derive(Clone)]
pub struct ServerEvent {
    pub id: u64,
    pub run: Arc<str>,
    pub frame: Bytes,
}

/// Every event of every run, for `GET /api/v1/events`: the last
/// [`SERVER_EVENTS_KEPT`] kept, so a follower that reconnects with
/// `Last-Event-ID` misses nothing of the recent past.
pub struct ServerEvents {
    kept: Mutex<VecDeque<ServerEvent>>,
    /// Sent the id of each event kept.
    appended: watch::Sender<u64>,
}

impl ServerEvents {
    fn new() -> ServerEvents {
        ServerEvents { kept: Mutex::new(VecDeque::new()), appended: watch::channel(0).0 }
    }

    fn push(&self, run: &str, kind: &str, line: &str) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        // The one after the last sent: ids are taken and sent under the lock.
        let id = *self.appended.borrow() + 1;
        let data = format!("{{\"run\":{},\"event\":{line}}}", serde_json::Value::from(run));
        let frame = Bytes::from(format!("id: {id}\nevent: {kind}\ndata: {data}\n\n"));
        kept.push_back(ServerEvent { id, run: run.into(), frame });
        while kept.len() > SERVER_EVENTS_KEPT {
            kept.pop_front();
        }
        self.appended.send_replace(id);
    }

    /// The events after `after` (0: every one kept).
    pub fn after(&self, after: u64) -> Vec<ServerEvent> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let skip = kept.partition_point(|e| e.id <= after);
        kept.iter().skip(skip).cloned().collect()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }
}

/// When a queued run was asked for.
pub fn queued_summary(id: &str, pipeline: &str, mode: Mode, started_by: &str, message: Option<String>) -> QueuedRun {
    QueuedRun {
        run: id.to_string(),
        pipeline: pipeline.to_string(),
        operation: mode.name().to_string(),
        status: "queued",
        started_by: started_by.to_string(),
        queued_ms: now_ms(),
        waiting_for: Vec::new(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_s_kind_is_read_from_its_first_field_without_parsing_it() {
        assert_eq!(event_kind(r#"{"event":"op_finished","environment":"dev"}"#), "op_finished");
        assert_eq!(event_kind(r#"{"environment":"dev","event":"op_finished"}"#), "message");
        assert_eq!(event_kind(r#"{"event":"x\ny"}"#), "message");
        assert_eq!(event_kind(""), "message");
    }

    #[test]
    fn a_feed_formats_each_event_once_with_its_id() {
        let feed = RunFeed::default();
        feed.push("run_started", r#"{"event":"run_started"}"#);
        feed.push("log", r#"{"event":"log"}"#);
        let (all, last) = feed.after(0);
        assert_eq!(last, 2);
        assert_eq!(&all[..], b"id: 1\nevent: run_started\ndata: {\"event\":\"run_started\"}\n\nid: 2\nevent: log\ndata: {\"event\":\"log\"}\n\n");
        assert_eq!(feed.after(1).1, 2);
        assert_eq!(feed.after(2), (Bytes::new(), 2));
        assert_eq!(feed.after(7), (Bytes::new(), 7));
    }

    #[test]
    fn a_resumed_runs_feed_starts_above_every_id_before_it() {
        let feed = RunFeed::new(1);
        feed.push("run_started", r#"{"event":"run_started"}"#);
        let (all, last) = feed.after(5_000);
        assert_eq!(last, FEED_SPAN + 1, "an id of the feed before the resume gets this feed whole");
        assert!(all.starts_with(format!("id: {}\n", FEED_SPAN + 1).as_bytes()));
        assert_eq!(feed.after(FEED_SPAN + 1), (Bytes::new(), FEED_SPAN + 1));
        assert_eq!(feed.id_of(1), FEED_SPAN + 1);
    }

    #[test]
    fn a_status_made_holds_while_the_run_has_not_moved() {
        let now = std::time::Instant::now();
        let live = |events| Freshness::Live { events, at: now };
        assert!(live(3).still(&live(3)));
        assert!(!live(3).still(&live(4)));
        let old = Freshness::Live { events: 3, at: now - std::time::Duration::from_secs(1) };
        assert!(!old.still(&live(3)), "half a second at most, for what the journal wrote meanwhile");
        let ended = |finished_ms| Freshness::Ended { status: RunStatus::Succeeded, finished_ms, resumed: 0 };
        assert!(ended(Some(5)).still(&ended(Some(5))));
        assert!(!ended(Some(5)).still(&ended(Some(6))));
        assert!(!live(3).still(&ended(Some(5))));
    }
}
