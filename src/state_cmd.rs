//! Commands that read the state: `runs`, `status`, `logs`, `outputs`, `state`.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use stackpipe_runtime::state::{JobRecord, ResourceKey, RunRecord, StateStore};

use crate::run_cmd::{duration, StateArgs};
use crate::{EXIT_FAILED, EXIT_INVALID};

fn fail(e: impl std::fmt::Display) -> u8 {
    eprintln!("error: {e}");
    EXIT_FAILED
}

#[derive(Args)]
pub struct RunsArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[arg(long)]
    pub json: bool,
}

pub fn runs(a: RunsArgs) -> Result<(), u8> {
    let store = a.state.open(None)?;
    let runs = store.runs().map_err(fail)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&runs).unwrap_or_default());
        return Ok(());
    }
    if runs.is_empty() {
        println!("no runs yet");
    }
    for r in runs {
        let took = r.finished_ms.map(|f| duration(f.saturating_sub(r.started_ms))).unwrap_or_else(|| "-".into());
        println!(
            "{}  {:<8} {:<10} {:<20} {:>8}  {}{}",
            r.id,
            r.kind.name(),
            r.status.name(),
            r.pipeline,
            took,
            r.environments.join(","),
            r.message.map(|m| format!("  \"{m}\"")).unwrap_or_default()
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct StatusArgs {
    /// The run (default: the most recent).
    pub run: Option<String>,
    /// Also show each job's input snapshot: attributes (secrets masked), plugin digest, flow policy.
    #[arg(long)]
    pub inputs: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[arg(long)]
    pub json: bool,
}

fn find_run(store: &StateStore, id: Option<&str>) -> Result<RunRecord, u8> {
    let run = match id {
        Some(id) => store.run(id).map_err(fail)?,
        None => store.latest_run().map_err(fail)?,
    };
    run.ok_or_else(|| {
        match id {
            Some(id) => eprintln!("error: no run `{id}`"),
            None => eprintln!("error: no runs yet"),
        }
        EXIT_INVALID
    })
}

/// The `status --json` document.
pub fn status_doc(run: &RunRecord, jobs: &[JobRecord]) -> Value {
    let envs: Vec<Value> = run
        .environments
        .iter()
        .map(|env| {
            let nodes: Vec<&JobRecord> = jobs.iter().filter(|j| &j.environment == env).collect();
            let status = env_status(&nodes);
            json!({
                "name": env,
                "status": status,
                "nodes": nodes.iter().map(|j| json!({
                    "name": j.node,
                    "level": j.level,
                    "status": j.status,
                    "change": j.change,
                    "started_ms": j.started_ms,
                    "finished_ms": j.finished_ms,
                    "error": j.error,
                    "input": j.input,
                    "operations": j.ops.iter().map(|o| json!({
                        "name": o.name, "status": o.status, "started_ms": o.started_ms,
                        "finished_ms": o.finished_ms, "message": o.message,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "run": run.id,
        "pipeline": run.pipeline,
        "operation": run.kind,
        "status": run.status,
        "message": run.message,
        "started_ms": run.started_ms,
        "finished_ms": run.finished_ms,
        "environments": envs,
    })
}

fn env_status(nodes: &[&JobRecord]) -> &'static str {
    use stackpipe_runtime::state::Status::*;
    if nodes.is_empty() {
        return "skipped";
    }
    if nodes.iter().any(|j| j.status == Failed) {
        "failed"
    } else if nodes.iter().any(|j| matches!(j.status, Running | Queued)) {
        "running"
    } else if nodes.iter().all(|j| j.status == Succeeded) {
        "succeeded"
    } else {
        "cancelled"
    }
}

pub fn status(a: StatusArgs) -> Result<(), u8> {
    let store = a.state.open(None)?;
    let run = find_run(&store, a.run.as_deref())?;
    let jobs = store.jobs(&run.id).map_err(fail)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&status_doc(&run, &jobs)).unwrap_or_default());
        return Ok(());
    }
    println!(
        "run {}: {} {} — {}{}",
        run.id,
        run.kind.name(),
        run.pipeline,
        run.status.name(),
        run.message.as_ref().map(|m| format!(" (\"{m}\")")).unwrap_or_default()
    );
    for env in &run.environments {
        let nodes: Vec<&JobRecord> = jobs.iter().filter(|j| &j.environment == env).collect();
        println!("\n[{env}] {}", env_status(&nodes));
        for j in nodes {
            let took = match (j.started_ms, j.finished_ms) {
                (Some(s), Some(f)) => duration(f.saturating_sub(s)),
                _ => "-".into(),
            };
            let ops: Vec<String> = j.ops.iter().map(|o| format!("{} {}", o.name, o.status.name())).collect();
            println!(
                "  {:<20} {:<10} {:<8} {:>8}  {}",
                j.node,
                j.status.name(),
                j.change.clone().unwrap_or_default(),
                took,
                ops.join(", ")
            );
            if let Some(e) = &j.error {
                println!("  {:<20} error: {e}", "");
            }
            if a.inputs {
                if let Some(input) = &j.input {
                    println!(
                        "  {:<20} input: {}.{} ({}), flow {}, attributes {}",
                        "",
                        input.plugin,
                        input.kind,
                        input.plugin_digest.get(..12).unwrap_or(&input.plugin_digest),
                        input.flow,
                        input.attributes
                    );
                }
            }
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct LogsArgs {
    /// The run (default: the most recent).
    pub run: Option<String>,
    /// Only this node.
    #[arg(long)]
    pub node: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
}

pub fn logs(a: LogsArgs) -> Result<(), u8> {
    let store = a.state.open(None)?;
    let run = find_run(&store, a.run.as_deref())?;
    for l in store.logs(&run.id, a.node.as_deref()).map_err(fail)? {
        println!("{} {}/{} {}: {}", l.ms, l.environment, l.node, l.op, l.text);
    }
    Ok(())
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
    #[arg(long)]
    pub json: bool,
}

/// `outputs FILE`: every resource's outputs and the pipeline's `output`s, per environment.
pub fn outputs(a: OutputsArgs) -> Result<(), u8> {
    let pipeline = a.pipeline.load(false)?;
    let store = a.state.open(Some(&a.pipeline.file))?;
    let graph = &pipeline.graph;
    let mut per_env = Vec::new();
    for env in &graph.environments {
        let records = store.resources(&graph.name, Some(&env.name)).map_err(fail)?;
        let mut resources = Map::new();
        for (k, r) in &records {
            resources.insert(k.resource.clone(), r.outputs.clone());
        }
        let lookup = |r: &str| resources.get(r).cloned();
        let scope =
            stackpipe_dsl::eval::Scope { pipeline: &graph.name, environment: &env.name, vars: &env.vars, outputs: &lookup };
        let mut outs = Map::new();
        for o in &graph.outputs {
            if let Ok(v) = stackpipe_dsl::eval::eval(&o.value, &scope) {
                outs.insert(o.name.name.clone(), v);
            }
        }
        per_env.push((env.name.clone(), resources.clone(), outs));
    }
    if a.json {
        // Top level: the last environment in promotion order (the one
        // `--env` names, or the furthest promoted); every environment under
        // "environments".
        let mut doc = match per_env.last() {
            Some((_, r, o)) => json!({ "resources": r, "outputs": o }),
            None => json!({ "resources": {}, "outputs": {} }),
        };
        doc["environments"] =
            Value::Object(per_env.iter().map(|(e, r, o)| (e.clone(), json!({ "resources": r, "outputs": o }))).collect());
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    for (env, resources, outs) in per_env {
        println!("[{env}]");
        for (r, o) in &resources {
            println!("  {r}: {o}");
        }
        for (k, v) in &outs {
            println!("  output {k} = {v}");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum StateCommand {
    /// List the resources in the state.
    List(StateListArgs),
    /// Show one resource's record: `pipeline/environment/resource`.
    Show(StateShowArgs),
    /// Release locks whose holder process is gone (or any, with --force).
    Unlock(StateUnlockArgs),
}

#[derive(Args)]
pub struct StateListArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct StateShowArgs {
    /// `pipeline/environment/resource`
    pub key: String,
    #[command(flatten)]
    pub state: StateArgs,
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

pub fn state(cmd: StateCommand) -> Result<(), u8> {
    match cmd {
        StateCommand::List(a) => {
            let store = a.state.open(None)?;
            let all = store.all_resources().map_err(fail)?;
            let locks = store.locks().map_err(fail)?;
            if a.json {
                let doc: Vec<Value> = all
                    .iter()
                    .map(|(k, r)| json!({ "key": k.to_string(), "type": format!("{}.{}", r.plugin, r.kind), "serial": r.serial, "outputs": r.outputs }))
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
            let key = parse_key(&a.key)?;
            let store = a.state.open(None)?;
            match store.resource(&key).map_err(fail)? {
                Some(r) => {
                    println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                    Ok(())
                }
                None => {
                    eprintln!("error: no resource `{key}` in the state");
                    Err(EXIT_INVALID)
                }
            }
        }
        StateCommand::Unlock(a) => {
            let key = a.key.as_deref().map(parse_key).transpose()?;
            let store = a.state.open(None)?;
            let released = store.unlock_stale(key.as_ref(), a.force).map_err(fail)?;
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
