//! `approve`, `reject`, `cancel`: steering a run in progress from another
//! terminal, through its runner's control socket (or, on a shared
//! database, through the database when the run's owner is elsewhere).

use clap::Args;
use serde_json::Value;
use stackpipe_runtime::control::{post_and_wait, Cancelled, Reach, Request};
use stackpipe_runtime::run::{CancelTarget, Decider, GateSelector};
use stackpipe_runtime::state_location::StateLocation;
use stackpipe_state_postgres::JobQueue;
use stackpipe_runtime::state::{Decision, GateDecision, RunStatus, StateStore};

use crate::remote::ServerArgs;
use crate::run_cmd::StateArgs;
use crate::state_cmd::{fail, query};
use crate::EXIT_INVALID;

#[derive(Args)]
pub struct DecideArgs {
    /// The run (`stackpipe runs` lists them; default: the one in progress).
    pub run: Option<String>,
    /// The environment whose gate (or whose node's gate) to decide.
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,
    /// The node whose gate to decide.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Decide every waiting gate that matches, not just one.
    #[arg(long)]
    pub all: bool,
    /// Recorded with the decision.
    #[arg(long)]
    pub comment: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub remote: ServerArgs,
}

#[derive(Args)]
pub struct CancelArgs {
    /// The run (default: the one in progress).
    pub run: Option<String>,
    /// Only this environment: its jobs in flight finish their operation,
    /// the rest of the environment is cancelled.
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,
    /// Only this node (and so its dependents), in --env or the environment
    /// running now: its operation in flight finishes, the rest is skipped.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub remote: ServerArgs,
}

/// Why a run cannot be steered when nobody serves it.
fn not_in_progress(store: &StateStore, run: Option<&str>) -> u8 {
    let record = match run {
        Some(id) => store.run(id).ok().flatten(),
        None => store.latest_run().ok().flatten(),
    };
    match record {
        None => match run {
            Some(id) => eprintln!("error: no run `{id}`"),
            None => eprintln!("error: no run is in progress"),
        },
        Some(r) if r.status == RunStatus::Interrupted => eprintln!(
            "error: run {} is not in progress: its process ({}) is gone; `stackpipe resume {}` finishes it",
            r.id, r.pid, r.id
        ),
        Some(r) => eprintln!("error: run {} is not in progress (it {})", r.id, r.status.name()),
    }
    EXIT_INVALID
}

/// Asks the run in progress; with none, says why not. On a shared
/// database, a run whose owner is not on this machine is asked through the
/// database (see `stackpipe_runtime::control::answer_posted`).
fn ask(reach: Reach, run: Option<&str>, request: Request, state: &StateArgs) -> Result<Value, u8> {
    let posted = request.clone();
    query(&reach, request, |store| match state.location_for(None) {
        StateLocation::Postgres(url) => post(store, &url, run, &posted),
        StateLocation::Dir(_) => Err(not_in_progress(store, run)),
    })
}

/// Posts `request` for the owner of run `run` (default: the one in
/// progress) on the database at `url`, and waits for its answer.
fn post(store: &StateStore, url: &str, run: Option<&str>, request: &Request) -> Result<Value, u8> {
    let record = match run {
        Some(id) => store.run(id).ok().flatten(),
        None => store.runs().ok().and_then(|runs| runs.into_iter().find(|r| r.status == RunStatus::Running)),
    };
    let Some(record) = record.filter(|r| r.status == RunStatus::Running) else {
        return Err(not_in_progress(store, run));
    };
    let queue = JobQueue::connect(url).map_err(fail)?;
    let decider = Decider { user: stackpipe_runtime::os_user::current_user(), role: None };
    let rt = crate::run_cmd::runtime()?;
    match rt.block_on(post_and_wait(&queue, store, &record.id, request, &decider)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            Err(EXIT_INVALID)
        }
        Err(e) => Err(fail(format!("cannot ask run {}'s owner through the database: {e}", record.id))),
    }
}

pub fn decide(a: DecideArgs, decision: Decision) -> Result<(), u8> {
    let reach = a.remote.reach(&a.state)?;
    let request = Request::Decide {
        run: a.run.clone(),
        selector: GateSelector { environment: a.env.clone(), node: a.node.clone(), all: a.all },
        decision,
        comment: a.comment.clone(),
    };
    let decided: Vec<GateDecision> = serde_json::from_value(ask(reach, a.run.as_deref(), request, &a.state)?).map_err(fail)?;
    for d in decided {
        let place = match &d.gate.node {
            Some(n) => format!("{}/{n}", d.gate.environment),
            None => d.gate.environment.clone(),
        };
        println!("{} {place} ({} gate) as {}", decision.name(), d.gate.kind.name(), d.by);
    }
    Ok(())
}

pub fn cancel(a: CancelArgs) -> Result<(), u8> {
    let reach = a.remote.reach(&a.state)?;
    let request = Request::Cancel { run: a.run.clone(), environment: a.env.clone(), node: a.node.clone() };
    let answer = ask(reach, a.run.as_deref(), request, &a.state)?;
    // A team server takes a queued run off its queue: it never started.
    let dequeued = answer.get("dequeued").and_then(Value::as_bool) == Some(true);
    let answer: Cancelled = serde_json::from_value(answer).map_err(fail)?;
    let run = &answer.run;
    if dequeued {
        println!("run {run} was queued: it is taken off the queue and will not run");
        return Ok(());
    }
    match (&answer.target, answer.already_stopping) {
        (None, true) => println!("run {run} is already stopping: operations in flight are finishing"),
        (None, false) => println!("cancelling run {run}: operations in flight finish, nothing more runs"),
        (Some(t), true) => println!("{t} of run {run} is already cancelled"),
        (Some(t @ CancelTarget { node: Some(_), .. }), false) => {
            println!("cancelling {t} in run {run}: its operation in flight finishes; it and its dependents stop")
        }
        (Some(t), false) => println!("cancelling {t} of run {run}: operations in flight finish, nothing more runs there"),
    }
    Ok(())
}
