//! `deploy`, `undeploy`, `resume` and `rerun` on a team server: the
//! pipeline's source sent with the run (`POST /api/v1/runs`), then the run
//! followed from here, from the server's stream of its events, with the
//! same progress, summary and exit code as a run here. Ctrl-C detaches:
//! the run goes on on the server (`--cancel-on-interrupt` cancels it).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use stackpipe_dsl::{CompileOptions, PipelineGraph, PluginSource};
use stackpipe_runtime::control::{Followed, ServerClient, ServerError, SourceUpload, UploadedComponent, UploadedFile};
use stackpipe_runtime::plugin::PluginHost;
use stackpipe_runtime::run::{Mode, RunEvent};
use stackpipe_runtime::state::{RunStatus, StateStore};
use tokio::sync::{mpsc, oneshot};

use crate::progress::{print_events, Steer};
use crate::remote::server_error;
use crate::run_cmd::{runtime, RunArgs};
use crate::{EXIT_FAILED, EXIT_INVALID};

/// The exit code of a command that stopped following a run (Ctrl-C): 128 + SIGINT.
pub const EXIT_DETACHED: u8 = 130;

/// `deploy FILE --server URL` / `undeploy`: the file's source and its path
/// plugins' components sent, the run started (or queued) there, and followed.
pub fn deploy(a: RunArgs, mode: Mode, client: ServerClient) -> Result<(), u8> {
    if a.yes || !a.approve_env.is_empty() {
        eprintln!(
            "error: a team server never approves a gate by itself: --yes and --approve-env are for runs on this machine; \
             approve with `stackpipe approve RUN --server {}`",
            client.url()
        );
        return Err(EXIT_INVALID);
    }
    let pipeline = a.pipeline.load_for_server()?;
    let mut components = BTreeMap::new();
    for env in &pipeline.graph.environments {
        for (name, spec) in &env.plugins {
            let PluginSource::Path(source) = &spec.source else { continue };
            if components.contains_key(source) {
                continue;
            }
            let bytes = PluginHost::read_source(name, &spec.source, &pipeline.base_dir).map_err(|e| {
                eprintln!("error: {e}");
                EXIT_INVALID
            })?;
            components.insert(source.clone(), UploadedComponent::new(&bytes));
        }
    }
    let path = std::fs::canonicalize(&pipeline.path).unwrap_or_else(|_| pipeline.path.clone());
    let source = SourceUpload { file: UploadedFile { path: path.display().to_string(), text: pipeline.source.clone() }, components };
    let vars: BTreeMap<String, String> = a.pipeline.all_vars().into_iter().collect();
    let sets: BTreeMap<String, String> = a.sets.iter().cloned().collect();
    let body = json!({
        "pipeline": pipeline.graph.name,
        "operation": if mode == Mode::Undeploy { "undeploy" } else { "deploy" },
        "environment": a.pipeline.env,
        "vars": vars,
        "set": sets,
        "target": a.targets,
        "orphans": a.orphans,
        "message": a.message,
        "parallelism": a.parallelism,
        "source": source,
    });
    let created = client.create_run(&body).map_err(|e| refused_start(e, client.url(), a.json))?;
    follow_run(&client, &created, a.json, Some(pipeline.graph.clone()), a.cancel_on_interrupt)
}

/// `resume RUN --server URL` / `rerun`: the server runs the run's snapshot
/// (again); it is followed as `deploy` follows its run.
pub fn again(client: ServerClient, run: &str, resume: bool, json: bool, vars_given: bool, cancel_on_interrupt: bool) -> Result<(), u8> {
    if vars_given {
        eprintln!(
            "error: the server runs run {run}'s snapshot as it was, and keeps no sensitive var's value: --var is for runs on \
             this machine (start a new run with `stackpipe deploy FILE --server {} --var ...`)",
            client.url()
        );
        return Err(EXIT_INVALID);
    }
    if resume {
        let status = client.run(run).map_err(|e| server_error(e, client.url()))?;
        if status.get("status").and_then(Value::as_str) == Some(RunStatus::Succeeded.name()) {
            println!("run {run} already succeeded; nothing to resume");
            return Ok(());
        }
    }
    let verb = if resume { "resume" } else { "rerun" };
    let created = client.again(run, verb).map_err(|e| refused_start(e, client.url(), json))?;
    let graph = snapshot_graph(&client, run);
    follow_run(&client, &created, json, graph, cancel_on_interrupt)
}

/// The graph of run `run`'s snapshot, compiled here for its outputs (its
/// sensitive vars, which the server does not keep, unknown); None if it
/// cannot be had.
fn snapshot_graph(client: &ServerClient, run: &str) -> Option<Arc<PipelineGraph>> {
    let doc = client.snapshot(run).ok()?;
    let snapshot: stackpipe_runtime::state::RunSnapshot = serde_json::from_value(doc.get("snapshot")?.clone()).ok()?;
    let main = snapshot.files.first()?;
    let opts = CompileOptions { vars: snapshot.vars.clone(), env: snapshot.environment.clone(), ..Default::default() };
    stackpipe_runtime::pipeline::compile(Path::new(&main.path), main.text.clone(), opts).ok().map(|p| p.graph)
}

/// Prints why the server did not start a run: a failed preflight as a run
/// here prints it (and, with `json`, its `preflight_failed` line); the
/// exit code.
fn refused_start(e: ServerError, url: &str, json: bool) -> u8 {
    let ServerError::Refused { status: 422, message, body } = &e else { return server_error(e, url) };
    let Some(report) = body.get("preflight") else { return server_error(e, url) };
    if json {
        let line = json!({ "event": "preflight_failed", "operation": report.get("operation"), "problems": report.get("problems") });
        println!("{line}");
    }
    eprint!("error: {message}");
    if !message.ends_with('\n') {
        eprintln!();
    }
    EXIT_INVALID
}

/// What following a run saw: how it ended and the environments it ran.
#[derive(Default)]
struct Seen {
    status: Option<RunStatus>,
    environments: Vec<String>,
}

/// Follows the run `created` names (`{"run", "status", ...}`) to its end:
/// its events shown as a run here shows them, then its summary; Ctrl-C
/// detaches (exit 130), or with `cancel_on_interrupt` cancels it first.
fn follow_run(
    client: &ServerClient,
    created: &Value,
    json: bool,
    graph: Option<Arc<PipelineGraph>>,
    cancel_on_interrupt: bool,
) -> Result<(), u8> {
    let Some(run) = created.get("run").and_then(Value::as_str).map(str::to_string) else {
        eprintln!("error: the server {} started a run without saying which", client.url());
        return Err(EXIT_FAILED);
    };
    if created.get("status").and_then(Value::as_str) == Some("queued") {
        let behind = client.run(&run).ok().and_then(|q| {
            let ids: Vec<String> = q.get("waiting_for")?.as_array()?.iter().filter_map(|r| r.as_str().map(str::to_string)).collect();
            Some(ids.join(", "))
        });
        eprintln!(
            "note: run {run} is queued on {}: it starts when the runs holding resources it locks end{}",
            client.url(),
            behind.map(|b| format!(" ({b})")).unwrap_or_default()
        );
    }
    let rt = runtime()?;
    let (tx, rx) = mpsc::unbounded_channel::<RunEvent>();
    let (done_tx, done_rx) = oneshot::channel();
    let follower = client.clone();
    let id = run.clone();
    // A plain thread: its blocking reads must not hold up the runtime's
    // shutdown when this process detaches.
    let spawned = std::thread::Builder::new().name("stackpipe-follow".into()).spawn(move || {
        let mut seen = Seen::default();
        let followed = follower.follow(&id, 0, |e, _, _| {
            match e {
                RunEvent::EnvironmentStarted { environment, .. } => seen.environments.push(environment.clone()),
                RunEvent::RunFinished { status, .. } => seen.status = Some(*status),
                _ => {}
            }
            let _ = tx.send(e.clone());
        });
        drop(tx);
        let _ = done_tx.send((followed, seen));
    });
    if let Err(e) = spawned {
        eprintln!("error: cannot follow run {run}: {e}");
        return Err(EXIT_FAILED);
    }
    let steer = Steer::Server(client.clone());
    let ended = rt.block_on(async {
        let printer = tokio::spawn(print_events(rx, json, true, false, steer));
        let ended = until_end(done_rx, client, &run, cancel_on_interrupt).await;
        if ended.is_some() {
            let _ = printer.await;
        }
        ended
    });
    let Some((followed, seen)) = ended else {
        rt.shutdown_background();
        eprintln!(
            "\ndetached: run {run} goes on on {url}. Follow it again: stackpipe logs {run} --follow --server {url}",
            url = client.url()
        );
        return Err(EXIT_DETACHED);
    };
    let status = match followed {
        Ok(Followed::Finished) => seen.status.unwrap_or(RunStatus::Failed),
        // Its events ended without its end (the server lost them): its status says how it ended.
        Ok(Followed::NotInProgress) => {
            let doc = client.run(&run).map_err(|e| server_error(e, client.url()))?;
            let name = doc.get("status").and_then(Value::as_str).unwrap_or_default();
            let all = [RunStatus::Succeeded, RunStatus::Failed, RunStatus::Cancelled, RunStatus::Interrupted, RunStatus::Running];
            all.into_iter().find(|s| s.name() == name).unwrap_or(RunStatus::Failed)
        }
        Err(e) => return Err(server_error(e, client.url())),
    };
    summary(client, &run, status, &seen.environments, graph.as_deref(), json)
}

/// Waits for the follower to end; None when this process detaches (a
/// Ctrl-C or SIGTERM; with `cancel_on_interrupt`, the first one cancels
/// the run on the server instead, and the run is followed to its end).
async fn until_end(
    mut done: oneshot::Receiver<(Result<Followed, ServerError>, Seen)>,
    client: &ServerClient,
    run: &str,
    cancel_on_interrupt: bool,
) -> Option<(Result<Followed, ServerError>, Seen)> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut cancelled = false;
    loop {
        tokio::select! {
            ended = &mut done => {
                let lost = || (Err(ServerError::Failed(format!("stopped following run {run}"))), Seen::default());
                return Some(ended.unwrap_or_else(|_| lost()));
            }
            r = tokio::signal::ctrl_c() => if r.is_err() { return None },
            Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
        }
        if !cancel_on_interrupt || cancelled {
            return None;
        }
        cancelled = true;
        let (client, id) = (client.clone(), run.to_string());
        match tokio::task::spawn_blocking(move || client.cancel(&id)).await {
            Ok(Ok(_)) => eprintln!(
                "\ncancelling run {run} on the server: operations in flight finish, nothing more runs (Ctrl-C again to detach)"
            ),
            Ok(Err(e)) => eprintln!("error: cannot cancel run {run}: {e} (Ctrl-C again to detach)"),
            Err(e) => eprintln!("error: cannot cancel run {run}: {e}"),
        }
    }
}

/// The end of a run followed from here, as a run here ends: the
/// pipeline's outputs in each environment it ran (from the server's state,
/// secret ones masked), and how it ended; exit 1 unless it succeeded.
fn summary(
    client: &ServerClient,
    run: &str,
    status: RunStatus,
    environments: &[String],
    graph: Option<&PipelineGraph>,
    json: bool,
) -> Result<(), u8> {
    if !json {
        if let Some(graph) = graph.filter(|g| !g.outputs.is_empty()) {
            match client.resources() {
                Ok(doc) => {
                    let store = StateStore::replica(Path::new(""), &doc.resources, &doc.locks);
                    let per_env = store.as_ref().ok().and_then(|s| stackpipe_runtime::run::outputs::deployed_outputs(graph, s, false).ok());
                    // In the order the run took them (an undeploy's is the reverse of the pipeline's).
                    for env in environments.iter().filter_map(|name| per_env.iter().flatten().find(|e| e.environment == *name)) {
                        if !env.outputs.is_empty() {
                            println!("\noutputs ({}):", env.environment);
                            for (k, v) in &env.outputs {
                                println!("  {k} = {v}");
                            }
                        }
                    }
                }
                Err(e) => eprintln!("warning: cannot read the outputs from the server: {e}"),
            }
        }
        println!("\nrun {run} {}", status.name());
    }
    match status {
        RunStatus::Succeeded => Ok(()),
        _ => Err(EXIT_FAILED),
    }
}
