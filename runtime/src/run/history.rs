//! The history of one resource: every job of every run that touched it,
//! most recent first, with when, who started its run and how, what it was
//! to change and how it ended. What `stackpipe history` prints, and what
//! the control socket answers while a run holds the state.
//!
//! Found through the state's `resource_jobs` index (a range scan and a
//! lookup per job), then each job's run record, read once per run.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::state::{JobDiff, JobRecord, RunKind, RunRecord, RunTrigger, StateError, StateStore, Status};

/// Every job that touched one resource of one pipeline, most recent first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceHistory {
    pub pipeline: String,
    pub environment: String,
    pub resource: String,
    pub jobs: Vec<HistoryEntry>,
}

/// One job that touched the resource, with its run's who and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub run: String,
    pub pipeline: String,
    pub environment: String,
    pub resource: String,
    /// deploy | undeploy
    pub operation: RunKind,
    /// create | update | replace | delete | no-op, once previewed.
    pub change: Option<String>,
    /// How the job ended: cancelled and skipped jobs are here too.
    pub status: Status,
    /// Why it failed, was skipped or was cancelled.
    pub error: Option<String>,
    /// When the job started and ended (None: it never started).
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// When its run started.
    pub run_started_ms: u64,
    /// Who started the run (empty for a run recorded before that was kept).
    pub started_by: String,
    pub trigger: RunTrigger,
    pub rerun_of: Option<String>,
    /// Who resumed the run, when the job ran in a resumption of it.
    pub resumed_by: Option<String>,
    /// The run's `-m` message.
    pub message: Option<String>,
    /// What it was to change, secrets masked (see [`JobDiff`]).
    pub diff: Option<JobDiff>,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    State(#[from] StateError),
    /// Nothing in the state by that name.
    #[error("no job in this state touched `{name}`{}", help(.suggestion, .known))]
    Unknown { name: String, suggestion: Option<String>, known: Vec<String> },
    /// The name is in several pipelines of the state.
    #[error(
        "`{name}` is in {} pipelines of this state ({}): name one with --pipeline",
        .pipelines.len(),
        .pipelines.join(", ")
    )]
    Ambiguous { name: String, pipelines: Vec<String> },
    /// The name is in the state, but not in the pipeline asked for.
    #[error("no job of pipeline `{pipeline}` touched `{name}` (it is in: {})", .pipelines.join(", "))]
    NotInPipeline { name: String, pipeline: String, pipelines: Vec<String> },
}

/// How many names an unknown one lists, when none is close to it.
const KNOWN_LISTED: usize = 10;

fn help(suggestion: &Option<String>, known: &[String]) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None if known.is_empty() => String::new(),
        None if known.len() <= KNOWN_LISTED => format!(" (it knows: {})", known.join(", ")),
        None => format!(" ({} resources are known; `stackpipe state list` lists the deployed ones)", known.len()),
    }
}

/// The history of `environment/resource`, of `pipeline` (needed when
/// several pipelines of the state have that name).
pub fn history(
    store: &StateStore,
    environment: &str,
    resource: &str,
    pipeline: Option<&str>,
) -> Result<ResourceHistory, HistoryError> {
    let name = format!("{environment}/{resource}");
    let jobs = store.resource_jobs(environment, resource)?;
    let mut runs: HashMap<String, RunRecord> = HashMap::new();
    for job in &jobs {
        if !runs.contains_key(&job.run_id) {
            // A job without its run record is made by no write: left out below.
            if let Some(run) = store.run(&job.run_id)? {
                runs.insert(job.run_id.clone(), run);
            }
        }
    }
    let mut found: Vec<(&JobRecord, &RunRecord)> =
        jobs.iter().filter_map(|j| runs.get(&j.run_id).map(|r| (j, r))).collect();
    // Deployed, with no job recorded (a state older than its jobs): an
    // empty history rather than an unknown name.
    let mut pipelines: BTreeSet<&str> = found.iter().map(|(_, r)| r.pipeline.as_str()).collect();
    let deployed = store.all_resources()?;
    if found.is_empty() {
        pipelines.extend(
            deployed.iter().filter(|(k, _)| k.environment == environment && k.resource == resource).map(|(k, _)| k.pipeline.as_str()),
        );
    }
    if pipelines.is_empty() {
        let mut known: BTreeSet<String> = store.touched_resources()?.into_iter().map(|(e, r)| format!("{e}/{r}")).collect();
        known.extend(deployed.iter().map(|(k, _)| format!("{}/{}", k.environment, k.resource)));
        // A near name, or the same resource in another environment.
        let suggestion = stackpipe_dsl::diagnostic::closest(&name, known.iter().map(String::as_str))
            .or_else(|| known.iter().map(String::as_str).find(|k| k.rsplit('/').next() == Some(resource)))
            .map(String::from);
        return Err(HistoryError::Unknown { name, suggestion, known: known.into_iter().collect() });
    }
    let pipeline = match pipeline {
        Some(p) if pipelines.contains(p) => p.to_string(),
        Some(p) => {
            let pipelines = pipelines.iter().map(|p| p.to_string()).collect();
            return Err(HistoryError::NotInPipeline { name, pipeline: p.to_string(), pipelines });
        }
        None if pipelines.len() > 1 => {
            return Err(HistoryError::Ambiguous { name, pipelines: pipelines.iter().map(|p| p.to_string()).collect() });
        }
        None => pipelines.first().map(|p| p.to_string()).unwrap_or_default(),
    };
    found.retain(|(_, r)| r.pipeline == pipeline);
    // Most recent first: by when the job ran (or, never started, when its
    // run did), then by run id.
    let when = |(j, r): &(&JobRecord, &RunRecord)| j.started_ms.or(j.finished_ms).unwrap_or(r.started_ms);
    found.sort_by(|a, b| (when(b), &b.0.run_id).cmp(&(when(a), &a.0.run_id)));
    let jobs = found.into_iter().map(|(j, r)| entry(j, r, &pipeline)).collect();
    Ok(ResourceHistory { pipeline, environment: environment.into(), resource: resource.into(), jobs })
}

fn entry(job: &JobRecord, run: &RunRecord, pipeline: &str) -> HistoryEntry {
    // The resumption the job ran in: the last one before it started.
    let ran_at = job.started_ms.or(job.finished_ms);
    let resumed_by = ran_at.and_then(|at| run.resumed.iter().filter(|r| r.ms <= at).max_by_key(|r| r.ms)).map(|r| r.by.clone());
    HistoryEntry {
        run: job.run_id.clone(),
        pipeline: pipeline.to_string(),
        environment: job.environment.clone(),
        resource: job.node.clone(),
        operation: run.kind,
        change: job.change.clone(),
        status: job.status,
        error: job.error.clone(),
        started_ms: job.started_ms,
        finished_ms: job.finished_ms,
        run_started_ms: run.started_ms,
        started_by: run.started_by.clone(),
        trigger: run.trigger,
        rerun_of: run.rerun_of.clone(),
        resumed_by,
        message: run.message.clone(),
        diff: job.diff.clone(),
    }
}
