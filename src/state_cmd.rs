//! Commands that read the state: `runs`, `status`, `logs`, `outputs`, `state`.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use stackpipe_runtime::control::{Reach, Request};
use stackpipe_runtime::run::job_diff;
use stackpipe_runtime::run::status::{NodeStatus, StatusDocument};
use stackpipe_runtime::run::RunEvent;
use stackpipe_runtime::run::MASKED;
use stackpipe_runtime::state::{
    LogLevel, LogLine, ResourceKey, RunKind, RunRecord, RunStatus, RunTrigger, StateStore, Status,
};

use crate::progress::{duration, plain_line};
use crate::remote::{server_error, ServerArgs};
use crate::run_cmd::{state_error, StateArgs};
use crate::{EXIT_FAILED, EXIT_INVALID};

pub fn fail(e: impl std::fmt::Display) -> u8 {
    eprintln!("error: {e}");
    EXIT_FAILED
}

#[derive(Args)]
pub struct RunsArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub remote: ServerArgs,
    /// Only the runs of this pipeline.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Only the runs that include this environment.
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,
    /// Only the runs with this status: running, succeeded, failed, cancelled, interrupted.
    #[arg(long, value_parser = ["running", "succeeded", "failed", "cancelled", "interrupted"])]
    pub status: Option<String>,
    /// Only the runs this user started.
    #[arg(long)]
    pub user: Option<String>,
    /// A JSON array, newest first: `{"run", "pipeline", "operation", "status", "started_ms", ...}`.
    #[arg(long)]
    pub json: bool,
}

/// Asks the runner, or reads the database: the answer as JSON.
pub fn query(reach: &Reach, request: Request, from_store: impl FnOnce(&StateStore) -> Result<Value, u8>) -> Result<Value, u8> {
    match reach {
        Reach::Store(store) => from_store(store),
        Reach::Runner { client, .. } => match client.request(&request) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                Err(EXIT_INVALID)
            }
            Err(e) => Err(fail(format!("cannot reach the run in progress: {e}"))),
        },
        Reach::Server(client) => match client.ask(&request) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                Err(EXIT_INVALID)
            }
            Err(e) => Err(server_error(e, client.url())),
        },
    }
}

pub fn runs(a: RunsArgs) -> Result<(), u8> {
    let reach = a.remote.reach(&a.state)?;
    let doc = query(&reach, Request::Runs, |store| serde_json::to_value(store.runs().map_err(state_error)?).map_err(fail))?;
    let mut runs: Vec<RunRecord> = serde_json::from_value(doc).map_err(fail)?;
    runs.retain(|r| {
        a.pipeline.as_ref().is_none_or(|p| *p == r.pipeline)
            && a.env.as_ref().is_none_or(|e| r.environments.contains(e))
            && a.status.as_ref().is_none_or(|s| s == r.status.name())
            && a.user.as_ref().is_none_or(|u| *u == r.started_by)
    });
    if a.json {
        let doc: Vec<Value> = runs
            .iter()
            .map(|r| {
                json!({
                    "run": r.id, "pipeline": r.pipeline, "operation": r.kind, "status": r.status,
                    "started_ms": r.started_ms, "finished_ms": r.finished_ms,
                    "environments": r.environments, "message": r.message,
                    "started_by": r.started_by, "trigger": r.trigger, "rerun_of": r.rerun_of, "resumed": r.resumed,
                    "targets": r.targets, "orphans": r.orphans,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    let filtered = a.pipeline.is_some() || a.env.is_some() || a.status.is_some() || a.user.is_some();
    if runs.is_empty() {
        println!("{}", if filtered { "no runs match" } else { "no runs yet" });
    }
    let interrupted: Vec<String> = runs.iter().filter(|r| r.status == RunStatus::Interrupted).map(|r| r.id.clone()).collect();
    for r in &runs {
        let took = r.finished_ms.map(|f| duration(f.saturating_sub(r.started_ms))).unwrap_or_else(|| "-".into());
        println!(
            "{}  {:<8} {:<10} {:<20} {:>8}  {}{}{}{}",
            r.id,
            r.kind.name(),
            r.status.name(),
            r.pipeline,
            took,
            r.environments.join(","),
            aimed_at(&r.targets, r.orphans),
            started_by(r),
            r.message.as_ref().map(|m| format!("  \"{m}\"")).unwrap_or_default()
        );
    }
    if let Some(last) = interrupted.first() {
        println!("\ninterrupted: the process of {} is gone; `stackpipe resume {last}` finishes it", interrupted.join(", "));
    }
    Ok(())
}

/// ` --target b --orphans`: what a run was aimed at; nothing for a run of
/// the whole pipeline.
fn aimed_at(targets: &[String], orphans: bool) -> String {
    let mut out: String = targets.iter().map(|t| format!(" --target {t}")).collect();
    if orphans {
        out.push_str(" --orphans");
    }
    out
}

/// `  by alice`, `  by alice (watch)`, `  by alice (rerun of r000003)`;
/// nothing for a run recorded before who started it was kept.
fn started_by(r: &RunRecord) -> String {
    if r.started_by.is_empty() {
        return String::new();
    }
    let how = match (r.trigger, &r.rerun_of) {
        (RunTrigger::Rerun, Some(of)) => format!(" (rerun of {of})"),
        (RunTrigger::Cli, _) => String::new(),
        (other, _) => format!(" ({})", other.name()),
    };
    format!("  by {}{how}", r.started_by)
}

#[derive(Args)]
pub struct StatusArgs {
    /// The run (default: the one in progress, or the most recent).
    pub run: Option<String>,
    /// Also show each job's input snapshot: attributes (secrets masked), plugin digest, flow policy.
    #[arg(long)]
    pub inputs: bool,
    /// Only this node (in each environment of the run that has it), in full: every operation, its input and
    /// its attribute changes (secrets masked).
    #[arg(long)]
    pub node: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub remote: ServerArgs,
    #[arg(long)]
    pub json: bool,
}

fn find_run(store: &StateStore, id: Option<&str>) -> Result<RunRecord, u8> {
    let run = match id {
        Some(id) => store.run(id).map_err(state_error)?,
        None => store.latest_run().map_err(state_error)?,
    };
    run.ok_or_else(|| {
        match id {
            Some(id) => eprintln!("error: no run `{id}`"),
            None => eprintln!("error: no runs yet"),
        }
        EXIT_INVALID
    })
}

/// The status document of a run that is not in progress, from the database.
fn stored_status(store: &StateStore, id: Option<&str>) -> Result<Value, u8> {
    let run = find_run(store, id)?;
    let jobs = store.jobs(&run.id).map_err(state_error)?;
    let decisions = store.decisions(&run.id).map_err(state_error)?;
    serde_json::to_value(StatusDocument::stored(&run, &jobs, &decisions)).map_err(fail)
}

pub fn status(a: StatusArgs) -> Result<(), u8> {
    let reach = a.remote.reach(&a.state)?;
    let doc = query(&reach, Request::Status { run: a.run.clone() }, |store| stored_status(store, a.run.as_deref()))?;
    if doc.get("status").and_then(Value::as_str) == Some("queued") && doc.get("environments").is_none() {
        return queued_status(&doc, a.json);
    }
    let mut doc: StatusDocument = serde_json::from_value(doc).map_err(fail)?;
    if let Some(node) = &a.node {
        only_node(&mut doc, node)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    let via = match &reach {
        Reach::Server(client) => format!(" --server {}", client.url()),
        _ => String::new(),
    };
    print!("{}", render_status(&doc, a.inputs, a.node.is_some(), &via));
    Ok(())
}

/// The status of a run a team server has queued behind others (it has no
/// status document yet): `{"run", "pipeline", "operation", "status":
/// "queued", "started_by", "queued_ms", "waiting_for"}`.
fn queued_status(doc: &Value, json: bool) -> Result<(), u8> {
    if json {
        println!("{}", serde_json::to_string_pretty(doc).unwrap_or_default());
        return Ok(());
    }
    let field = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or_default();
    let behind: Vec<&str> = doc.get("waiting_for").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    println!("run {}: {} {} — queued", field("run"), field("operation"), field("pipeline"));
    if !field("started_by").is_empty() {
        println!("  started by {}", field("started_by"));
    }
    let since = doc.get("queued_ms").and_then(Value::as_u64).map(since).unwrap_or_default();
    println!("  waiting{since} for {} to end: they hold resources it locks", behind.join(", "));
    Ok(())
}

/// Keeps only `node` in the document (and the environments that have it);
/// a node the run does not have is an error, with the nearest name.
fn only_node(doc: &mut StatusDocument, node: &str) -> Result<(), u8> {
    let names: std::collections::BTreeSet<String> =
        doc.environments.iter().flat_map(|e| e.nodes.iter().map(|n| n.name.clone())).collect();
    if !names.contains(node) {
        let near = stackpipe_dsl::diagnostic::did_you_mean(node, names.iter().map(String::as_str));
        eprintln!("error: run {} has no node `{node}`{}", doc.run, near.map(|n| format!("; {n}")).unwrap_or_default());
        return Err(EXIT_INVALID);
    }
    for env in &mut doc.environments {
        env.nodes.retain(|n| n.name == node);
    }
    doc.environments.retain(|e| !e.nodes.is_empty());
    Ok(())
}

fn since(ms: u64) -> String {
    let now = stackpipe_runtime::state::now_ms();
    format!(" for {}", duration(now.saturating_sub(ms)))
}

/// `status` as text, from the status document; `detail`: every node in
/// full (see `status --node`); `via`: what the commands it suggests need
/// besides the run (` --server URL`).
fn render_status(doc: &StatusDocument, inputs: bool, detail: bool, via: &str) -> String {
    let mut out = String::new();
    let run = &doc.run;
    out.push_str(&format!(
        "run {run}: {} {} — {}{}\n",
        doc.operation.name(),
        doc.pipeline,
        doc.status.name(),
        doc.message.as_ref().map(|m| format!(" (\"{m}\")")).unwrap_or_default()
    ));
    if !doc.started_by.is_empty() {
        let how = match (doc.trigger, &doc.rerun_of) {
            (RunTrigger::Rerun, Some(of)) => format!(", a rerun of {of}"),
            (RunTrigger::Watch, _) => " (stackpipe watch)".to_string(),
            _ => String::new(),
        };
        out.push_str(&format!("  started by {}{how}\n", doc.started_by));
        if let Some(digest) = &doc.snapshot {
            out.push_str(&format!("  from snapshot {} (`stackpipe show {run}`)\n", &digest[..digest.len().min(12)]));
        }
        for r in &doc.resumed {
            out.push_str(&format!("  resumed by {}{} ago\n", r.by, since(r.ms).replacen(" for", "", 1)));
        }
    }
    if !doc.targets.is_empty() || doc.orphans {
        let mut took = Vec::new();
        if !doc.targets.is_empty() {
            let one = doc.targets.len() == 1;
            let around = match (doc.operation, one) {
                (RunKind::Deploy, true) => "what it needs that was not deployed",
                (RunKind::Deploy, false) => "what they need that was not deployed",
                (RunKind::Undeploy, true) => "what depends on it",
                (RunKind::Undeploy, false) => "what depends on them",
            };
            took.push(format!("{}, and {around}", doc.targets.join(", ")));
        }
        if doc.orphans {
            took.push("the resources no longer in the pipeline".to_string());
        }
        out.push_str(&format!(
            "  targeted ({}): {}; the other resources were not touched\n",
            aimed_at(&doc.targets, doc.orphans).trim_start(),
            took.join("; ")
        ));
    }
    if doc.status == RunStatus::Interrupted {
        out.push_str(&format!("  its process is gone (killed, crashed, or stopped by a failed write): `stackpipe resume {run}` finishes it\n"));
    }
    for env in &doc.environments {
        let name = &env.name;
        out.push_str(&format!("\n[{name}] {}", env.status.name()));
        if let Some(r) = &env.reason {
            out.push_str(&format!(": {r}"));
        }
        out.push('\n');
        if let Some(w) = &env.waiting_for {
            out.push_str(&format!("  waiting{} at the environment gate: {}\n", since(w.since_ms), w.reason));
            out.push_str(&format!(
                "  approve: stackpipe approve {run} --env {name}{via}   reject: stackpipe reject {run} --env {name}{via}\n"
            ));
        }
        for j in &env.nodes {
            render_node(&mut out, run, name, j, inputs, detail, via);
        }
    }
    if !doc.decisions.is_empty() {
        out.push_str("\ndecisions:\n");
        for d in &doc.decisions {
            let place = match &d.node {
                Some(n) => format!("{}/{n}", d.environment),
                None => d.environment.clone(),
            };
            out.push_str(&format!(
                "  {place} ({} gate): {} by {}{}\n",
                d.gate.name(),
                d.decision.name(),
                d.by,
                d.comment.as_ref().map(|c| format!(" — \"{c}\"")).unwrap_or_default()
            ));
            out.push_str(&format!("    gate: {}\n", d.reason));
        }
    }
    out
}

/// One node's lines of `status`; `detail`: its input, each operation and
/// its attribute changes too.
fn render_node(out: &mut String, run: &str, env: &str, j: &NodeStatus, inputs: bool, detail: bool, via: &str) {
    let took = crate::progress::took(j.started_ms, j.finished_ms);
    let ops: Vec<String> = j.operations.iter().map(|o| format!("{} {}", o.name, o.status.name())).collect();
    out.push_str(&format!(
        "  {:<20} {:<10} {:<8} {:>8}  {}\n",
        j.name,
        j.status.name(),
        j.change.as_deref().unwrap_or(""),
        took,
        ops.join(", ")
    ));
    if let Some(e) = &j.error {
        out.push_str(&format!("  {:<20} error: {e}\n", ""));
    }
    if let Some(w) = &j.waiting_for {
        let node = &j.name;
        out.push_str(&format!(
            "  {:<20} waiting{} ({} gate): {}\n  {:<20} approve: stackpipe approve {run} --env {env} --node {node}{via}\n",
            "",
            since(w.since_ms),
            w.gate.name(),
            w.reason,
            ""
        ));
        if let Some(d) = w.detail.as_deref().filter(|d| !d.is_empty()) {
            out.push_str(d);
        }
    }
    if let (true, Some(input)) = (inputs || detail, &j.input) {
        let digest = &input.plugin_digest;
        out.push_str(&format!(
            "  {:<20} input: {}.{} ({}), flow {}, attributes {}\n",
            "",
            input.plugin,
            input.kind,
            digest.get(..12).unwrap_or(digest),
            input.flow,
            input.attributes
        ));
    }
    if !detail {
        return;
    }
    for o in &j.operations {
        let took = crate::progress::took(o.started_ms, o.finished_ms);
        out.push_str(&format!(
            "  {:<20} {:<10} {:<10} {:>8}{}\n",
            "",
            o.name,
            o.status.name(),
            took,
            o.message.as_ref().map(|m| format!("  {m}")).unwrap_or_default()
        ));
    }
    match &j.diff {
        Some(d) => {
            out.push_str(&format!("  {:<20} changes:\n", ""));
            out.push_str(&job_diff::render(d, &format!("  {:<20}   ", "")));
        }
        None => out.push_str(&format!("  {:<20} changes: none recorded\n", "")),
    }
}

#[derive(Args)]
pub struct LogsArgs {
    /// The run (default: the one in progress, or the most recent).
    pub run: Option<String>,
    /// Only this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Follow the run in progress: every event from its start, as it
    /// happens, until it ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// One JSON object per line: each log line, `{"time", "ms", "environment", "node", "op", "level",
    /// "plugin", "text"}` (`plugin` null for stackpipe's own lines); with --follow, each event, as
    /// `deploy --json` prints them.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub remote: ServerArgs,
}

pub fn logs(a: LogsArgs) -> Result<(), u8> {
    let reach = a.remote.reach(&a.state)?;
    if a.follow {
        if let Reach::Server(client) = &reach {
            if let Some(followed) = follow_on_server(client, &a)? {
                return Ok(followed);
            }
        }
        if let Reach::Runner { client, .. } = &reach {
            let mut out = std::io::stdout();
            let node = a.node.clone();
            let followed = client.follow(a.run.clone(), |e, line| {
                use std::io::Write;
                if let Some(n) = &node {
                    if event_node(e) != Some(n.as_str()) {
                        return;
                    }
                }
                let text = if a.json { Some(line.to_string()) } else { follow_line(e) };
                if let Some(text) = text {
                    let _ = writeln!(out, "{text}");
                    let _ = out.flush();
                }
            });
            return match followed {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    eprintln!("error: {e}");
                    Err(EXIT_INVALID)
                }
                Err(e) => Err(fail(format!("lost the run in progress: {e}"))),
            };
        }
        // No run in progress: its log is complete; print it.
    }
    let doc = query(&reach, Request::Logs { run: a.run.clone(), node: a.node.clone() }, |store| {
        let run = find_run(store, a.run.as_deref())?;
        if let Some(node) = &a.node {
            // A node the run does not have is a mistake, not an empty log.
            let jobs = store.jobs(&run.id).map_err(state_error)?;
            if !jobs.is_empty() && !jobs.iter().any(|j| &j.node == node) {
                let near = stackpipe_dsl::diagnostic::did_you_mean(node, jobs.iter().map(|j| j.node.as_str()));
                eprintln!("error: run {} has no node `{node}`{}", run.id, near.map(|n| format!("; {n}")).unwrap_or_default());
                return Err(EXIT_INVALID);
            }
        }
        serde_json::to_value(store.logs(&run.id, a.node.as_deref()).map_err(state_error)?).map_err(fail)
    })?;
    let lines: Vec<LogLine> = serde_json::from_value(doc).map_err(fail)?;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if a.json {
        for l in &lines {
            let _ = writeln!(out, "{}", log_json(l));
        }
        return Ok(());
    }
    if lines.is_empty() {
        let _ = writeln!(out, "no log lines{}", a.node.as_ref().map(|n| format!(" of node `{n}`")).unwrap_or_default());
    }
    let width = lines.iter().map(|l| l.environment.len() + 1 + l.node.len()).max().unwrap_or(0);
    for l in &lines {
        let _ = writeln!(out, "{}", log_text(l, width));
    }
    Ok(())
}

/// `logs --follow --server`: the run named, or the one in progress there,
/// followed from its start as long as it is in progress; None when it is
/// not (then its stored log is complete: it is printed, as locally).
fn follow_on_server(client: &stackpipe_runtime::control::ServerClient, a: &LogsArgs) -> Result<Option<()>, u8> {
    let failed = |e| server_error(e, client.url());
    let id = match &a.run {
        Some(id) => id.clone(),
        None => match client.runs_in_progress().map_err(failed)?.as_slice() {
            [one] => one.clone(),
            // No run in progress: the most recent one's log, complete.
            [] => return Ok(None),
            many => {
                eprintln!("error: {} runs are in progress on {}: name one ({})", many.len(), client.url(), many.join(", "));
                return Err(EXIT_INVALID);
            }
        },
    };
    let status = client.run(&id).map_err(failed)?;
    if !matches!(status.get("status").and_then(Value::as_str), Some("running" | "queued")) {
        return Ok(None);
    }
    let mut out = std::io::stdout();
    client
        .follow(&id, 0, |e, line, _| {
            use std::io::Write;
            if a.node.as_ref().is_some_and(|n| event_node(e) != Some(n.as_str())) {
                return;
            }
            let text = if a.json { Some(line.to_string()) } else { follow_line(e) };
            if let Some(text) = text {
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
        })
        .map_err(failed)?;
    Ok(Some(()))
}

/// A stored log line as people read it: the local time, where, the
/// operation, and the text, marked with the plugin that logged it and its
/// level when that is not `info`:
/// `2025-06-01 10:00:03.140  dev/index  apply      [local] warning: ...`.
fn log_text(l: &LogLine, width: usize) -> String {
    let place = format!("{}/{}", l.environment, l.node);
    format!("{}  {place:<width$}  {:<9}  {}", local_time(l.ms), l.op, log_message(l))
}

/// `[plugin] level: text`, each part only when it says something.
fn log_message(l: &LogLine) -> String {
    let plugin = l.plugin.as_ref().map(|p| format!("[{p}] ")).unwrap_or_default();
    let level = match l.level {
        LogLevel::Info => "",
        LogLevel::Warn => "warning: ",
        LogLevel::Error => "error: ",
        LogLevel::Debug => "debug: ",
        LogLevel::Trace => "trace: ",
    };
    format!("{plugin}{level}{}", l.text)
}

/// A stored log line as one JSON object, its time in UTC (RFC 3339).
fn log_json(l: &LogLine) -> Value {
    json!({
        "time": utc_rfc3339(l.ms), "ms": l.ms, "environment": l.environment, "node": l.node,
        "op": l.op, "level": l.level, "plugin": l.plugin, "text": l.text,
    })
}

/// Milliseconds since the epoch as an RFC 3339 UTC time, to the
/// millisecond: `2025-06-01T10:00:03.140Z`.
fn utc_rfc3339(ms: u64) -> String {
    let utc = crate::history_cmd::utc(ms); // `2025-06-01 10:00:03Z`
    format!("{}.{:03}Z", utc.trim_end_matches('Z').replacen(' ', "T", 1), ms % 1000)
}

/// Milliseconds since the epoch as this machine's local time, to the
/// millisecond: `2025-06-01 12:00:03.140`.
pub fn local_time(ms: u64) -> String {
    let secs = (ms / 1000) as libc::time_t;
    // SAFETY: localtime_r writes only into the `tm` we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return crate::history_cmd::utc(ms);
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        ms % 1000
    )
}

fn event_node(e: &RunEvent) -> Option<&str> {
    match e {
        RunEvent::OpStarted { node, .. }
        | RunEvent::OpFinished { node, .. }
        | RunEvent::NodeFinished { node, .. }
        | RunEvent::Log { node, .. } => Some(node),
        RunEvent::Waiting { node, .. } | RunEvent::GateDecided { node, .. } => node.as_deref(),
        _ => None,
    }
}

/// `logs --follow` as text: every event, log lines included.
fn follow_line(e: &RunEvent) -> Option<String> {
    match e {
        RunEvent::Log { environment, node, op, text, level, plugin } => {
            let line = LogLine {
                ms: 0,
                environment: environment.clone(),
                node: node.clone(),
                op: op.to_string(),
                text: text.clone(),
                level: *level,
                plugin: plugin.clone(),
            };
            Some(format!("  {environment}/{node} {op}: {}", log_message(&line)))
        }
        RunEvent::OpStarted { environment, node, op } => Some(format!("  {environment}/{node} {op} started")),
        RunEvent::OpFinished { environment, node, op, status, ms, message } if *status != Status::Failed => Some(format!(
            "  {environment}/{node} {op} {} ({}){}",
            status.name(),
            duration(*ms),
            message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
        )),
        RunEvent::RunFinished { run, status, ms } => Some(format!("run {run} {} ({})", status.name(), duration(*ms))),
        other => plain_line(other),
    }
}

/// With `--json`: `{"resources": {NAME: {OUTPUT: VALUE}}, "outputs": {NAME: VALUE},
/// "environments": {ENV: {"resources", "outputs"}}}`, the top level being the
/// last environment in promotion order (or the one `--env` names).
#[derive(Args)]
pub struct OutputsArgs {
    #[command(flatten)]
    pub pipeline: crate::load::PipelineArgs,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub remote: ServerArgs,
    #[arg(long)]
    pub json: bool,
    /// Show the values of sensitive outputs instead of `(sensitive)`.
    #[arg(long)]
    pub show_sensitive: bool,
}

/// `outputs FILE`: every resource's outputs and the pipeline's `output`s, per environment.
pub fn outputs(a: OutputsArgs) -> Result<(), u8> {
    let pipeline = a.pipeline.load(false)?;
    let store = a.remote.open_resources(&a.state, Some(&a.pipeline.file), true)?;
    let per_env = stackpipe_runtime::run::outputs::deployed_outputs(&pipeline.graph, &store, a.show_sensitive).map_err(state_error)?;
    if a.json {
        let doc = stackpipe_runtime::run::outputs::outputs_json(&per_env);
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    print!("{}", render_outputs(&per_env));
    Ok(())
}

fn render_outputs(per_env: &[stackpipe_runtime::run::outputs::EnvironmentOutputs]) -> String {
    let mut out = String::new();
    for e in per_env {
        let (env, resources, outs) = (&e.environment, &e.resources, &e.outputs);
        out.push_str(&format!("[{env}]\n"));
        if resources.is_empty() {
            out.push_str("  nothing deployed\n");
        }
        for (r, o) in resources {
            out.push_str(&format!("  {r}\n"));
            match o {
                Value::Object(fields) if !fields.is_empty() => {
                    let width = fields.keys().map(String::len).max().unwrap_or(0);
                    for (k, v) in fields {
                        out.push_str(&format!("    {k:width$} = {}\n", shown_value(v)));
                    }
                }
                Value::Object(_) => out.push_str("    (no outputs)\n"),
                other => out.push_str(&format!("    {}\n", shown_value(other))),
            }
        }
        if !outs.is_empty() {
            out.push_str("  outputs\n");
            let width = outs.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in outs {
                out.push_str(&format!("    {k:width$} = {}\n", shown_value(v)));
            }
        }
    }
    out
}

/// A value in text: strings quoted, the masked marker as it is, the rest as JSON.
fn shown_value(v: &Value) -> String {
    match v {
        Value::String(s) if s == MASKED => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Subcommand)]
pub enum StateCommand {
    /// List the resources in the state.
    List(StateListArgs),
    /// Show one resource's record: `environment/resource` (or `pipeline/environment/resource`).
    Show(StateShowArgs),
    /// Release locks whose holder process is gone (or any, with --force).
    Unlock(StateUnlockArgs),
    /// Replace a damaged state database with what can be recovered: from the
    /// file itself, else from state.redb.backup. The damaged file is copied
    /// aside first.
    Repair(StateRepairArgs),
    /// Copy a whole state into an empty one: a directory to a PostgreSQL
    /// database (`--to postgres://…`), or back. The copy is read back and
    /// compared with the original before this says it is done.
    Migrate(StateMigrateArgs),
}

#[derive(Args)]
pub struct StateMigrateArgs {
    /// The state to copy: a state directory, or a `postgres://` address.
    /// It is only read; stop runs and servers that use it first.
    #[arg(long, value_name = "DIR|URL")]
    pub from: String,
    /// Where to copy it: a directory without state, or a database that
    /// holds none.
    #[arg(long, value_name = "DIR|URL")]
    pub to: String,
}

#[derive(Args)]
pub struct StateRepairArgs {
    /// Restore state.redb.backup (the state as the last writer found it)
    /// without trying to recover the file itself.
    #[arg(long)]
    pub from_backup: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Args)]
pub struct StateListArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub remote: ServerArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct StateShowArgs {
    /// `environment/resource` (`pipeline/environment/resource` when the
    /// state holds more than one pipeline with it).
    pub key: String,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub remote: ServerArgs,
}

#[derive(Args)]
pub struct StateUnlockArgs {
    /// Only this resource: `pipeline/environment/resource`.
    pub key: Option<String>,
    /// Release even locks whose holder is alive.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// A resource's outputs with the ones its provisioner marks sensitive masked.
use stackpipe_runtime::secrets::masked_record;

fn parse_key(s: &str) -> Result<ResourceKey, u8> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [p, e, r] => Ok(ResourceKey::new(p, e, r)),
        _ => {
            eprintln!("error: expected `pipeline/environment/resource`, got `{s}`");
            Err(EXIT_INVALID)
        }
    }
}

/// A resource of the state by `pipeline/environment/resource`, or by
/// `environment/resource` when one pipeline in the state has it; a name
/// the state does not hold is refused with the nearest it does.
pub fn resolve_key(store: &StateStore, s: &str) -> Result<ResourceKey, u8> {
    let parts: Vec<&str> = s.split('/').collect();
    let all = store.all_resources().map_err(state_error)?;
    let (pipeline, environment, resource) = match parts.as_slice() {
        [p, e, r] => (Some(*p), *e, *r),
        [e, r] => (None, *e, *r),
        _ => {
            eprintln!("error: expected `environment/resource` or `pipeline/environment/resource`, got `{s}`");
            return Err(EXIT_INVALID);
        }
    };
    let matching: Vec<&ResourceKey> = all
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.environment == environment && k.resource == resource && pipeline.is_none_or(|p| k.pipeline == p))
        .collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            let names: Vec<String> = all
                .iter()
                .map(|(k, _)| if pipeline.is_some() { k.to_string() } else { format!("{}/{}", k.environment, k.resource) })
                .collect();
            let hint = stackpipe_dsl::diagnostic::did_you_mean(s, names.iter().map(String::as_str))
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            eprintln!("error: no resource `{s}` in the state{hint}");
            Err(EXIT_INVALID)
        }
        many => {
            let keys: Vec<String> = many.iter().map(|k| format!("  {k}")).collect();
            eprintln!("error: `{s}` is in more than one pipeline; name one:\n{}", keys.join("\n"));
            Err(EXIT_INVALID)
        }
    }
}

pub fn state(cmd: StateCommand) -> Result<(), u8> {
    match cmd {
        StateCommand::List(a) => {
            let store = a.remote.open_resources(&a.state, None, false)?;
            let all = store.all_resources().map_err(state_error)?;
            let locks = store.locks().map_err(state_error)?;
            if a.json {
                let doc: Vec<Value> = all
                    .iter()
                    .map(|(k, r)| json!({ "key": k.to_string(), "type": format!("{}.{}", r.plugin, r.kind), "serial": r.serial, "outputs": masked_record(r).outputs }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                return Ok(());
            }
            for (k, r) in &all {
                let lock = locks.iter().find(|(lk, _)| lk == k).map(|(_, h)| format!("  locked by {}", h.run_id)).unwrap_or_default();
                println!("{k}  {}.{}  serial {}{lock}", r.plugin, r.kind, r.serial);
            }
            Ok(())
        }
        StateCommand::Show(a) => {
            let store = a.remote.open_resources(&a.state, None, false)?;
            let key = resolve_key(&store, &a.key)?;
            match store.resource(&key).map_err(state_error)? {
                Some(r) => {
                    println!("{}", serde_json::to_string_pretty(&masked_record(&r)).unwrap_or_default());
                    Ok(())
                }
                None => {
                    eprintln!("error: no resource `{key}` in the state");
                    Err(EXIT_INVALID)
                }
            }
        }
        StateCommand::Repair(a) => repair(a),
        StateCommand::Migrate(a) => migrate(a),
        StateCommand::Unlock(a) => {
            let key = a.key.as_deref().map(parse_key).transpose()?;
            let store = a.state.open(None)?;
            let released = store.unlock_stale(key.as_ref(), a.force).map_err(state_error)?;
            if released.is_empty() {
                println!("no locks released");
            }
            for (k, h) in released {
                println!("released {k} (held by run {}, pid {})", h.run_id, h.pid);
            }
            Ok(())
        }
    }
}

fn migrate(a: StateMigrateArgs) -> Result<(), u8> {
    use stackpipe_runtime::state_location::StateLocation;
    let (from, to) = (StateLocation::parse(&a.from), StateLocation::parse(&a.to));
    if from == to {
        eprintln!("error: --from and --to are the same state");
        return Err(EXIT_INVALID);
    }
    let source = from.open_read_only(std::time::Duration::from_secs(10), false).map_err(state_error)?;
    let dump = source.export().map_err(state_error)?;
    let counts = source.counts().map_err(state_error)?;
    drop(source);
    let target = to.open(std::time::Duration::from_secs(10)).map_err(state_error)?;
    target.import(&dump).map_err(|e| {
        let code = state_error(e);
        eprintln!("  nothing was copied");
        code
    })?;
    // Read back: the copy must hold exactly what the original does.
    let copy = target.export().map_err(state_error)?;
    if copy != dump {
        eprintln!("error: the copy in {to} does not read back as the original: do not use it");
        return Err(EXIT_FAILED);
    }
    println!("copied {from} to {to}: {counts}, {} snapshots, {} components, {} pipeline executions", dump.snapshots.len(), dump.blobs.len(), dump.executions.len());
    println!("read back and compared: the same");
    Ok(())
}

fn repair(a: StateRepairArgs) -> Result<(), u8> {
    use stackpipe_runtime::state::Recovered;
    let dir = a.state.dir_for(None)?;
    let report = stackpipe_runtime::state::repair(&dir, a.from_backup).map_err(|e| match e {
        // Said in full by repair itself: what was tried, where the file went.
        e @ stackpipe_runtime::state::StateError::Damaged { .. } => {
            eprintln!("error: {e}");
            crate::EXIT_INVALID
        }
        e => crate::run_cmd::state_error(e),
    })?;
    let file = dir.join("state.redb");
    match report.recovered {
        Recovered::NothingToRepair => {
            println!("{} is not damaged: nothing to repair ({})", file.display(), report.counts);
            return Ok(());
        }
        Recovered::File => println!("recovered {} from the file itself: {}", file.display(), report.counts),
        Recovered::Backup => {
            if let Some(why) = &report.file_problem {
                println!("the file itself could not be recovered: {why}");
            }
            println!(
                "restored {} from {}: {}",
                file.display(),
                stackpipe_runtime::state::BACKUP_FILE,
                report.counts
            );
            println!("  what the runs after that backup recorded is lost; `stackpipe plan` shows how the pipeline compares");
        }
    }
    if let (Recovered::File, Some(b)) = (report.recovered, report.backup_counts) {
        println!("  (the backup, {}, holds {b})", stackpipe_runtime::state::BACKUP_FILE);
    }
    if let Some(aside) = &report.damaged_copy {
        println!("the damaged file was copied to {}", aside.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_as_text_and_json() {
        let line = |level, plugin: Option<&str>| LogLine {
            ms: 1_700_000_000_042,
            environment: "dev".into(),
            node: "index".into(),
            op: "apply".into(),
            text: "wrote it".into(),
            level,
            plugin: plugin.map(str::to_string),
        };
        assert_eq!(log_message(&line(LogLevel::Info, None)), "wrote it");
        assert_eq!(log_message(&line(LogLevel::Info, Some("local"))), "[local] wrote it");
        assert_eq!(log_message(&line(LogLevel::Warn, Some("local"))), "[local] warning: wrote it");
        assert_eq!(log_message(&line(LogLevel::Debug, None)), "debug: wrote it");
        let text = log_text(&line(LogLevel::Error, Some("t")), 12);
        assert!(text.ends_with("  dev/index     apply      [t] error: wrote it"), "{text}");
        assert_eq!(text.len() - text.trim_start_matches(|c: char| c != ' ').len(), 10, "a date first: {text}");
        let json = log_json(&line(LogLevel::Warn, None));
        assert_eq!(json["time"], "2023-11-14T22:13:20.042Z");
        assert_eq!((&json["level"], &json["plugin"], &json["ms"]), (&"warn".into(), &Value::Null, &1_700_000_000_042u64.into()));
    }
}
