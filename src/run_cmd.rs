//! `plan`, `deploy`, `undeploy`, `resume`, `rerun`: the commands that run a
//! pipeline, and how their progress is shown.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use stackpipe_runtime::plugin::{change_name, ArtifactCache, Change, PluginHost};
use stackpipe_runtime::run::{execute, Events, Mode, PlannedChange, RunEvent, RunOptions, RunSummary};
use stackpipe_runtime::state::{RunKind, RunStatus, StateStore, Status};
use tokio::sync::{mpsc, watch};

use crate::load::PipelineArgs;
use crate::{EXIT_FAILED, EXIT_INVALID};

#[derive(Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Override a resource attribute: `--set resource.attribute=value` (JSON or text).
    #[arg(long = "set", value_name = "RESOURCE.ATTR=VALUE", value_parser = crate::load::parse_key_value)]
    pub sets: Vec<(String, String)>,
    /// Nodes run at once per environment (0 = no limit).
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
    #[command(flatten)]
    pub state: StateArgs,
    /// A message recorded with the run.
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
    /// One JSON event per line on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone, Default)]
pub struct StateArgs {
    /// The state directory (default: `.stackpipe` beside the pipeline file, or `./.stackpipe`).
    #[arg(long = "state", value_name = "DIR", global = true)]
    pub dir: Option<PathBuf>,
}

impl StateArgs {
    pub fn dir_for(&self, pipeline: Option<&Path>) -> PathBuf {
        if let Some(d) = &self.dir {
            return d.clone();
        }
        match pipeline.and_then(Path::parent) {
            Some(p) if !p.as_os_str().is_empty() => p.join(".stackpipe"),
            _ => PathBuf::from(".stackpipe"),
        }
    }

    pub fn open(&self, pipeline: Option<&Path>) -> Result<StateStore, u8> {
        let dir = self.dir_for(pipeline);
        StateStore::open(&dir).map_err(|e| {
            eprintln!("error: {e}");
            EXIT_FAILED
        })
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        EXIT_FAILED
    })
}

fn host() -> Result<Arc<PluginHost>, u8> {
    PluginHost::new(ArtifactCache::from_env()).map(Arc::new).map_err(|e| {
        eprintln!("error: cannot start the plugin host: {e:#}");
        EXIT_FAILED
    })
}

/// `preflight`: for every node in every environment, the provisioner loads
/// and knows the type, `validate` accepts the attributes, credentials
/// resolve, and nothing is locked by another run.
pub fn preflight(a: RunArgs) -> Result<(), u8> {
    plan_like(a, Mode::Preflight)
}

/// `plan`: refresh and preview every node; nothing is applied.
pub fn plan(a: RunArgs) -> Result<(), u8> {
    plan_like(a, Mode::Plan)
}

fn plan_like(a: RunArgs, mode: Mode) -> Result<(), u8> {
    let pipeline = a.pipeline.load(true)?;
    let nodes = pipeline.graph.len();
    let store = Arc::new(a.state.open(Some(&a.pipeline.file))?);
    let rt = runtime()?;
    let (_stop_tx, stop) = watch::channel(false);
    let opts = RunOptions { parallelism: a.parallelism, sets: a.sets.clone(), ..Default::default() };
    let host = host()?;
    let (summary, failures) = rt.block_on(async move {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let failures = tokio::spawn(async move {
            let mut failures = Vec::new();
            while let Some(e) = rx.recv().await {
                if let RunEvent::NodeFinished { environment, node, status: Status::Failed, error, .. } = e {
                    failures.push(format!("{environment}/{node}: {}", error.unwrap_or_default()));
                }
            }
            failures
        });
        let summary = execute(&pipeline, mode, host, store, &opts, Events::new(tx), stop).await;
        (summary, failures.await.unwrap_or_default())
    });
    let summary = summary.map_err(|e| {
        eprintln!("error: {e}");
        EXIT_FAILED
    })?;
    for f in &failures {
        eprintln!("error: {f}");
    }
    if mode == Mode::Preflight {
        if failures.is_empty() {
            let envs = summary.environments.len();
            println!("ok: {} resources passed preflight in {envs} environment{}", nodes, if envs == 1 { "" } else { "s" });
            return Ok(());
        }
        return Err(EXIT_FAILED);
    }
    if a.json {
        let doc: Vec<_> = summary
            .planned
            .iter()
            .map(|p| {
                serde_json::json!({
                    "environment": p.environment, "resource": p.node, "type": p.type_name,
                    "change": change_name(p.plan.change), "policy": p.policy,
                    "changes": p.plan.changes.iter().map(|c| serde_json::json!({
                        "path": c.path, "before": c.before, "after": c.after,
                        "sensitive": c.sensitive, "forces_replacement": c.forces_replacement })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!("{}", render_plan(&summary.planned));
    }
    let failed: Vec<_> = summary.environments.iter().filter(|(_, s)| *s != Status::Succeeded).collect();
    if !failed.is_empty() {
        eprintln!("error: the plan could not be completed");
        return Err(EXIT_FAILED);
    }
    Ok(())
}

/// A plan, as `terraform plan` shows one: `+` create, `~` update, `-/+`
/// replace, `-` delete, with the attributes that change.
pub fn render_plan(planned: &[PlannedChange]) -> String {
    let mut out = String::new();
    let mut env = "";
    let (mut add, mut change, mut destroy) = (0, 0, 0);
    for p in planned {
        if p.environment != env {
            env = &p.environment;
            out.push_str(&format!("\nenvironment {env}\n"));
        }
        let (sign, verb) = match p.plan.change {
            Change::Create => ("+", "will be created"),
            Change::Update => ("~", "will be updated in place"),
            Change::Replace => ("-/+", "must be replaced"),
            Change::Delete => ("-", "will be destroyed"),
            Change::NoOp => continue,
        };
        match p.plan.change {
            Change::Create => add += 1,
            Change::Update => change += 1,
            Change::Replace => {
                add += 1;
                destroy += 1
            }
            Change::Delete => destroy += 1,
            Change::NoOp => {}
        }
        out.push_str(&format!("  # {} ({}) {verb}\n", p.node, p.type_name));
        if let Some(note) = &p.policy {
            out.push_str(&format!("  # {note}\n"));
        }
        out.push_str(&format!("  {sign} {} \"{}\" {{\n", p.type_name, p.node));
        for c in &p.plan.changes {
            let show = |v: &Option<String>| match v {
                _ if c.sensitive => "(sensitive value)".to_string(),
                Some(v) if v.trim_matches('"') == stackpipe_runtime::run::UNKNOWN => stackpipe_runtime::run::UNKNOWN.to_string(),
                Some(v) => v.clone(),
                None => "null".to_string(),
            };
            let forces = if c.forces_replacement { " # forces replacement" } else { "" };
            let line = match (&c.before, &c.after) {
                (None, Some(_)) => format!("      + {} = {}{forces}", c.path, show(&c.after)),
                (Some(_), None) => format!("      - {} = {}{forces}", c.path, show(&c.before)),
                _ => format!("      ~ {} = {} -> {}{forces}", c.path, show(&c.before), show(&c.after)),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str("    }\n");
    }
    if add + change + destroy == 0 {
        out.push_str("\nNo changes. The infrastructure matches the pipeline.\n");
    } else {
        out.push_str(&format!("\nPlan: {add} to add, {change} to change, {destroy} to destroy.\n"));
    }
    out
}

/// `deploy` / `undeploy` (and `resume` / `rerun`, which re-enter here).
pub fn run(a: RunArgs, mode: Mode, resume: Option<String>) -> Result<(), u8> {
    let pipeline = a.pipeline.load(true)?;
    let store = Arc::new(a.state.open(Some(&a.pipeline.file))?);
    let rt = runtime()?;
    let opts = RunOptions {
        parallelism: a.parallelism,
        sets: a.sets.clone(),
        vars: a.pipeline.vars.clone(),
        message: a.message.clone(),
        resume,
    };
    let host = host()?;
    let summary = rt.block_on(async move {
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(watch_signals(stop_tx));
        let (tx, rx) = mpsc::unbounded_channel();
        let printer = tokio::spawn(print_events(rx, a.json));
        let r = execute(&pipeline, mode, host, store, &opts, Events::new(tx), stop).await;
        let _ = printer.await;
        r
    });
    match summary {
        Ok(s) => finish(&s, a.json),
        Err(e) => {
            eprintln!("error: {e}");
            Err(EXIT_FAILED)
        }
    }
}

fn finish(s: &RunSummary, json: bool) -> Result<(), u8> {
    if !json {
        for (env, outputs) in &s.outputs {
            if !outputs.is_empty() {
                println!("\noutputs ({env}):");
                for (k, v) in outputs {
                    println!("  {k} = {v}");
                }
            }
        }
        println!("\nrun {} {}", s.run_id, s.status.name());
    }
    match s.status {
        RunStatus::Succeeded => Ok(()),
        _ => Err(EXIT_FAILED),
    }
}

/// Ctrl-C (or SIGTERM) once: finish what is in flight, start nothing new.
/// Again: say that it is still finishing.
async fn watch_signals(stop: watch::Sender<bool>) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return,
    };
    let mut first = true;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_err() { return },
            _ = term.recv() => {}
        }
        if first {
            eprintln!("\nstopping: operations in flight will finish; nothing new starts (Ctrl-C again to see this again)");
            stop.send_replace(true);
            first = false;
        } else {
            eprintln!("still finishing the operations in flight; stackpipe never abandons a half-applied resource");
        }
    }
}

/// Renders events: JSON lines, or one plain line per event.
async fn print_events(mut rx: mpsc::UnboundedReceiver<RunEvent>, json: bool) {
    if !json && std::io::stdout().is_terminal() {
        return live_view(rx).await;
    }
    let mut out = std::io::stdout();
    while let Some(e) = rx.recv().await {
        let line = if json { serde_json::to_string(&e).ok() } else { plain_line(&e) };
        if let Some(line) = line {
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = out.flush();
}

/// On a terminal: one spinner per node in flight, showing its operation and
/// time; finished nodes scroll above as plain lines; a summary line counts
/// done, running and failed nodes.
async fn live_view(mut rx: mpsc::UnboundedReceiver<RunEvent>) {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    use std::collections::HashMap;
    use std::time::Duration;

    let multi = MultiProgress::new();
    let summary = multi.add(ProgressBar::new_spinner());
    summary.set_style(ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    summary.enable_steady_tick(Duration::from_millis(120));
    let node_style = ProgressStyle::with_template("    {spinner} {prefix:<24} {msg} {elapsed:>4}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let mut bars: HashMap<(String, String), ProgressBar> = HashMap::new();
    let (mut total, mut done, mut failed) = (0usize, 0usize, 0usize);
    let mut env_name = String::new();
    while let Some(e) = rx.recv().await {
        match &e {
            RunEvent::RunStarted { nodes, .. } => total = *nodes,
            RunEvent::EnvironmentStarted { environment, .. } => {
                env_name = environment.clone();
                (done, failed) = (0, 0);
            }
            RunEvent::OpStarted { environment, node, op } => {
                let bar = bars.entry((environment.clone(), node.clone())).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.set_style(node_style.clone());
                    b.set_prefix(node.clone());
                    b.enable_steady_tick(Duration::from_millis(120));
                    b
                });
                bar.set_message(*op);
            }
            RunEvent::NodeFinished { environment, node, status, .. } => {
                if let Some(b) = bars.remove(&(environment.clone(), node.clone())) {
                    b.finish_and_clear();
                    multi.remove(&b);
                }
                done += 1;
                if *status == Status::Failed {
                    failed += 1;
                }
            }
            _ => {}
        }
        if let Some(line) = plain_line(&e) {
            let _ = multi.println(line);
        }
        let running = bars.len();
        summary.set_message(format!(
            "{env_name}: {done}/{total} done, {running} running{}",
            if failed > 0 { format!(", {failed} failed") } else { String::new() }
        ));
    }
    summary.finish_and_clear();
}

fn plain_line(e: &RunEvent) -> Option<String> {
    Some(match e {
        RunEvent::RunStarted { run, pipeline, operation, environments, nodes } => {
            format!("run {run}: {operation} {pipeline} ({nodes} resources; environments: {})", environments.join(" -> "))
        }
        RunEvent::EnvironmentStarted { environment, .. } => format!("\n[{environment}]"),
        RunEvent::OpStarted { .. } => return None,
        RunEvent::OpFinished { environment, node, op, status: Status::Failed, message, .. } => {
            format!("  {environment}/{node}: {op} failed: {}", message.clone().unwrap_or_default())
        }
        RunEvent::OpFinished { .. } => return None,
        RunEvent::NodeFinished { environment, node, status, change, ms, error } => match status {
            Status::Succeeded => format!(
                "  {environment}/{node}: {} ({})",
                change.clone().unwrap_or_else(|| "done".into()),
                duration(*ms)
            ),
            Status::Cancelled => format!("  {environment}/{node}: cancelled ({})", error.clone().unwrap_or_default()),
            _ => format!("  {environment}/{node}: {}", status.name()),
        },
        RunEvent::Log { .. } => return None,
        RunEvent::EnvironmentFinished { environment, status } => format!("[{environment}] {}", status.name()),
        RunEvent::RunFinished { .. } => return None,
    })
}

pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// `resume RUN` / `rerun RUN`: the run's pipeline file and options from the state.
pub fn again(run_id: &str, state: &StateArgs, resume: bool, json: bool) -> Result<(), u8> {
    let store = state.open(None)?;
    let Some(run) = store.run(run_id).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_FAILED
    })?
    else {
        eprintln!("error: no run `{run_id}` in {}", state.dir_for(None).display());
        return Err(EXIT_INVALID);
    };
    if resume && run.status == RunStatus::Succeeded {
        println!("run {run_id} already succeeded; nothing to resume");
        return Ok(());
    }
    drop(store);
    let env = if run.environments.len() == 1 { run.environments.first().cloned() } else { None };
    let args = RunArgs {
        pipeline: PipelineArgs { file: PathBuf::from(&run.file), env, vars: run.vars.clone() },
        sets: run.sets.clone(),
        parallelism: run.parallelism,
        state: StateArgs { dir: Some(state.dir_for(None)) },
        message: run.message.clone(),
        json,
    };
    let mode = if run.kind == RunKind::Undeploy { Mode::Undeploy } else { Mode::Deploy };
    self::run(args, mode, resume.then(|| run_id.to_string()))
}
