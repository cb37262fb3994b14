//! A run in progress as every front end sees it: the control socket of a
//! CLI run and the team server's HTTP API alike ("one protocol",
//! `../shared/spec/team-platform.md`). [`LiveRun`] folds the run's events
//! into its board and keeps them for followers; [`answer`] answers a
//! [`Request`] from the state store and, for the run in progress, from the
//! live run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::board::RunBoard;
use super::protocol::{Cancelled, Request, StateResources};
use crate::run::gate::Decider;
use crate::run::history::history;
use crate::run::status::StatusDocument;
use crate::run::{CancelTarget, Cancels, Gates, RunEvent, RunJournal, StopSignal};
use crate::state::{JobRecord, StateStore};

/// What of a run its front ends steer: its gates, its cancels and its stop
/// (see [`crate::run::Run`]).
pub struct RunHandles {
    pub run_id: String,
    pub journal: RunJournal,
    pub gates: Arc<Gates>,
    pub cancels: Arc<Cancels>,
    pub stop: StopSignal,
}

/// A run in progress: its handles, its board and its events so far.
pub struct LiveRun {
    pub run_id: String,
    journal: RunJournal,
    gates: Arc<Gates>,
    cancels: Arc<Cancels>,
    stop: StopSignal,
    board: Mutex<RunBoard>,
    /// Every event of the run so far, as JSON lines, for followers. An
    /// event's id is its index here plus one.
    events: Mutex<Vec<Arc<str>>>,
    /// Sent on every event appended: whether the run has ended.
    appended: watch::Sender<bool>,
}

impl LiveRun {
    pub fn new(run: RunHandles) -> Arc<LiveRun> {
        let RunHandles { run_id, journal, gates, cancels, stop } = run;
        Arc::new(LiveRun {
            run_id,
            journal,
            gates,
            cancels,
            stop,
            board: Mutex::new(RunBoard::default()),
            events: Mutex::new(Vec::new()),
            appended: watch::channel(false).0,
        })
    }

    /// Folds `events` (the run's) into the board and the followers' list
    /// until the run's last one; `also` sees each line as it is kept (the
    /// server's stream of every run).
    pub fn pump(
        self: &Arc<Self>,
        mut events: mpsc::UnboundedReceiver<RunEvent>,
        also: impl Fn(&str, &Arc<str>) + Send + 'static,
    ) -> JoinHandle<()> {
        let s = self.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                let last = matches!(e, RunEvent::RunFinished { .. });
                if let Ok(mut b) = s.board.lock() {
                    b.apply(&e);
                }
                let Ok(line) = serde_json::to_string(&e) else { continue };
                let line: Arc<str> = line.into();
                match s.events.lock() {
                    Ok(mut h) => h.push(line.clone()),
                    Err(_) => continue,
                }
                also(&s.run_id, &line);
                s.appended.send_replace(last);
                if last {
                    break;
                }
            }
            // However the events end (the run's sender dropped on an error
            // too), followers end with what they have.
            s.appended.send_replace(true);
        })
    }

    /// Events from the `from`th on (0: every one), and whether the run had
    /// ended when they were taken (then there will be no more).
    pub fn events_from(&self, from: usize) -> (Vec<Arc<str>>, bool) {
        // Read before the list: once the run is over, the list is whole.
        let over = *self.appended.borrow();
        match self.events.lock() {
            Ok(h) => (h.get(from..).map(<[_]>::to_vec).unwrap_or_default(), over),
            Err(_) => (Vec::new(), true),
        }
    }

    /// How many events the run has sent so far.
    pub fn event_count(&self) -> usize {
        self.events.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// Told of every event appended (and of the run's end).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.appended.subscribe()
    }

    /// Whether the run's events have ended.
    pub fn over(&self) -> bool {
        *self.appended.borrow()
    }

    /// How many are following the run now.
    pub fn followers(&self) -> usize {
        self.appended.receiver_count()
    }

    /// Ends the followers: the run's events will not come (an error before
    /// its end, a server shutting down).
    pub fn close(&self) {
        self.appended.send_replace(true);
    }

    /// Decides the gates `selector` picks, as `decider`.
    pub async fn decide(
        &self,
        selector: &crate::run::GateSelector,
        decision: crate::state::Decision,
        decider: &Decider,
        comment: Option<String>,
    ) -> Result<Vec<crate::state::GateDecision>, crate::run::gate::GateError> {
        self.gates.decide(selector, decision, decider, comment).await
    }

    /// One job of the run as a page shows it while it runs: its record as
    /// the board has it, its log lines so far (from the events, which the
    /// state may not have been written yet), and how many of the run's
    /// events that covers: a follower goes on from there.
    pub fn job_view(&self, environment: &str, node: &str) -> (Option<JobRecord>, Vec<Value>, usize) {
        // The events first: the board has taken every one of them.
        let events: Vec<Arc<str>> = self.events.lock().map(|h| h.clone()).unwrap_or_default();
        let job = self
            .board
            .lock()
            .ok()
            .and_then(|b| b.jobs().iter().find(|j| j.environment == environment && j.node == node).cloned());
        let node_field = serde_json::to_string(node).map(|n| format!("\"node\":{n}")).unwrap_or_default();
        let logs = events
            .iter()
            .filter(|line| line.starts_with("{\"event\":\"log\"") && line.contains(&node_field))
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|v| v["environment"] == environment && v["node"] == node)
            .collect();
        (job, logs, events.len())
    }

    /// The status document of the run now: the board's view of the jobs,
    /// with the diffs of those that ended from their records (not waited
    /// for: a status asked every second must not cost the run an fsync).
    pub fn status(&self, store: &StateStore) -> Result<StatusDocument, String> {
        self.status_of(store, true)
    }

    /// The status document, without the jobs' diffs unless `diffs` (they
    /// are read from every job's record: for a run of 10,000 nodes that is
    /// most of the cost, and a page of the whole graph does not show them).
    pub fn status_of(&self, store: &StateStore, diffs: bool) -> Result<StatusDocument, String> {
        let text = |e: crate::state::StateError| e.to_string();
        let id = &self.run_id;
        let Some(mut record) = store.run(id).map_err(text)? else { return Err(format!("no run `{id}`")) };
        let decisions = store.decisions(id).map_err(text)?;
        // A resumed run's board starts again: what its jobs did before the
        // resume is in their records.
        let records_needed = diffs || !record.resumed.is_empty();
        let mut stored: HashMap<(String, String), JobRecord> = if records_needed {
            store.jobs(id).map_err(text)?.into_iter().map(|j| ((j.environment.clone(), j.node.clone()), j)).collect()
        } else {
            HashMap::new()
        };
        let waiting = self.gates.waiting();
        let board = self.board.lock().map_err(|_| "the run's board is poisoned".to_string())?;
        if let Some(st) = board.status() {
            record.status = st;
        }
        let mut jobs = board.jobs().to_vec();
        for j in &mut jobs {
            match stored.remove(&(j.environment.clone(), j.node.clone())) {
                Some(record) if record.status.is_final() && !j.status.is_final() => *j = record,
                Some(record) => j.diff = record.diff,
                None => j.diff = None,
            }
            if !diffs {
                j.diff = None;
            }
        }
        Ok(StatusDocument::new(&record, board.environments(), &jobs, &decisions, &waiting))
    }

    /// What `cancel --env E --node N` names in this run (None: the whole
    /// run). A node without an environment is in the environment that runs
    /// now.
    fn cancel_target(&self, environment: Option<String>, node: Option<String>) -> Result<Option<CancelTarget>, String> {
        if environment.is_none() && node.is_none() {
            return Ok(None);
        }
        let board = self.board.lock().map_err(|_| "the run's board is poisoned".to_string())?;
        let envs = board.environments();
        let run = &self.run_id;
        let environment = match environment {
            Some(e) if envs.iter().any(|x| x.name == e) => e,
            Some(e) => {
                let names: Vec<&str> = envs.iter().map(|x| x.name.as_str()).collect();
                return Err(format!("run {run} has no environment `{e}` (it has: {})", names.join(", ")));
            }
            None => match envs.iter().find(|x| x.status == crate::state::Status::Running) {
                Some(e) => e.name.clone(),
                None => return Err(format!("no environment of run {run} is running now: name one with --env")),
            },
        };
        if let Some(n) = &node {
            if !board.jobs().iter().any(|j| j.environment == environment && &j.node == n) {
                return Err(format!("environment `{environment}` of run {run} has no node `{n}` (or has not started)"));
            }
        }
        Ok(Some(CancelTarget { environment, node }))
    }

    /// Cancels the run, or part of it.
    pub fn cancel(&self, environment: Option<String>, node: Option<String>) -> Result<Cancelled, String> {
        Ok(match self.cancel_target(environment, node)? {
            None => Cancelled { run: self.run_id.clone(), target: None, already_stopping: self.stop.stop() },
            Some(target) => {
                let already = self.cancels.cancel(target.clone());
                Cancelled { run: self.run_id.clone(), target: Some(target), already_stopping: already }
            }
        })
    }
}

fn not_live(live: Option<&LiveRun>, other: &str) -> String {
    match live {
        Some(l) => format!("run {other} is not in progress here (run {} is)", l.run_id),
        None => format!("run {other} is not in progress"),
    }
}

/// Answers `request` (any but [`Request::Follow`], which is a stream) from
/// `store` and, for the run in progress, from `live`. `decider` is who
/// decides a gate, as the transport authenticated them.
pub async fn answer(store: &StateStore, live: Option<&LiveRun>, request: Request, decider: &Decider) -> Result<Value, String> {
    let text = |e: crate::state::StateError| e.to_string();
    let json = |v: Result<Value, serde_json::Error>| v.map_err(|e| e.to_string());
    // The run a request names, or the one in progress.
    let named = |run: Option<String>| -> Result<String, String> {
        run.or_else(|| live.map(|l| l.run_id.clone())).ok_or_else(|| "no run is in progress: name one".to_string())
    };
    let live_named = |run: &Option<String>| -> Result<&LiveRun, String> {
        match (live, run) {
            (Some(l), None) => Ok(l),
            (Some(l), Some(r)) if *r == l.run_id => Ok(l),
            (_, Some(r)) => Err(not_live(live, r)),
            (None, None) => Err("no run is in progress".to_string()),
        }
    };
    match request {
        Request::Runs => json(serde_json::to_value(store.runs().map_err(text)?)),
        Request::Resources => {
            let doc = StateResources { resources: store.all_resources().map_err(text)?, locks: store.locks().map_err(text)? };
            json(serde_json::to_value(doc))
        }
        Request::Snapshot { run } => crate::run::snapshot::snapshot_document(store, &run).map_err(|e| e.to_string()),
        Request::Status { run } => {
            let id = named(run)?;
            let doc = match live.filter(|l| l.run_id == id) {
                Some(l) => l.status(store)?,
                None => {
                    let Some(record) = store.run(&id).map_err(text)? else { return Err(format!("no run `{id}`")) };
                    let decisions = store.decisions(&id).map_err(text)?;
                    StatusDocument::stored(&record, &store.jobs(&id).map_err(text)?, &decisions)
                }
            };
            json(serde_json::to_value(doc))
        }
        Request::History { environment, resource, pipeline } => {
            // Jobs queued for the journal are part of the answer.
            if let Some(l) = live {
                l.journal.flush().await.map_err(|e| e.to_string())?;
            }
            let found = history(store, &environment, &resource, pipeline.as_deref()).map_err(|e| e.to_string())?;
            json(serde_json::to_value(found))
        }
        Request::Logs { run, node } => {
            let id = named(run)?;
            if let Some(l) = live.filter(|l| l.run_id == id) {
                // Lines queued for the journal are part of the answer.
                l.journal.flush().await.map_err(|e| e.to_string())?;
            }
            json(serde_json::to_value(store.logs(&id, node.as_deref()).map_err(text)?))
        }
        Request::Decide { run, selector, decision, comment } => {
            let l = live_named(&run)?;
            let decided = l.decide(&selector, decision, decider, comment).await.map_err(|e| e.to_string())?;
            json(serde_json::to_value(decided))
        }
        Request::Cancel { run, environment, node } => {
            let l = live_named(&run)?;
            json(serde_json::to_value(l.cancel(environment, node)?))
        }
        Request::Follow { .. } => Err("follow is answered as a stream".into()),
    }
}
