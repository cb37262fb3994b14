//! `stackpipe service ...`: a team server's service pipelines (seed 001),
//! from the command line: list services, trigger a pipeline, list a
//! service's pipeline executions (`--filter-envs`), the last one, follow
//! one's status and logs, rerun, cancel, decide a gate of its deploy stage,
//! and switch a service's pipelines or deployments off and on. Every
//! command asks the server (`--server URL` or `STACKPIPE_SERVER`).

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use stackpipe_runtime::control::{segment as seg, ServerClient};

use crate::remote::{server_error, ServerArgs};
use crate::run_cmd::StateArgs;
use crate::{EXIT_FAILED, EXIT_INVALID};

/// How often `--follow` asks the server.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// List the services the server's pipelines declare, with their settings.
    List(ListArgs),
    /// Trigger a pipeline: build a branch's head (or one of its commits) and deploy it.
    Run(RunArgs),
    /// List a service's pipeline executions, most recent first.
    Pipelines(PipelinesArgs),
    /// Show a service's last pipeline execution.
    Last(LastArgs),
    /// Show a pipeline execution: its build and deploy stages (`--follow`: until it ends).
    Status(StatusArgs),
    /// Show a pipeline execution's build and deploy logs (`--follow`: as they come).
    Logs(FollowArgs),
    /// Run a pipeline execution's commit again, as a new execution.
    Rerun(IdArgs),
    /// Cancel a pipeline execution: a build is killed at once; a deploy finishes its operations in flight.
    Cancel(IdArgs),
    /// Approve (yes) or reject (no) the gate a pipeline execution's deploy waits at in ENVIRONMENT.
    Gate(GateArgs),
    /// Stop a service's pipelines (`--deploys`: only its deployments; builds go on).
    Disable(SettingArgs),
    /// Let a service's pipelines (`--deploys`: its deployments) run again.
    Enable(SettingArgs),
}

#[derive(Args)]
pub struct Remote {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    state: StateArgs,
}

impl Remote {
    fn client(&self) -> Result<ServerClient, u8> {
        match self.server.client(&self.state)? {
            Some(c) => Ok(c),
            None => {
                eprintln!("error: service pipelines run on a team server: give --server URL (or set STACKPIPE_SERVER)");
                Err(EXIT_INVALID)
            }
        }
    }
}

#[derive(Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct RunArgs {
    /// The service, as its `service "NAME"` block names it.
    service: String,
    /// The branch to build (default: the repository's default branch).
    #[arg(long)]
    branch: Option<String>,
    /// A commit of the branch to build instead of its head.
    #[arg(long)]
    commit: Option<String>,
    /// Follow the pipeline until it ends; the exit code says how it ended.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct PipelinesArgs {
    /// The service, as its `service "NAME"` block names it.
    service: String,
    /// Only pipelines that deploy to one of these environments (comma-separated).
    #[arg(long = "filter-envs", value_name = "ENV,...")]
    filter_envs: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct LastArgs {
    /// The service, as its `service "NAME"` block names it.
    service: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct StatusArgs {
    /// The pipeline execution (`x000042`).
    id: String,
    /// Print each change of status until it ends; the exit code says how it ended.
    #[arg(long)]
    follow: bool,
    /// Print JSON (with --follow: the final document).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct FollowArgs {
    /// The pipeline execution (`x000042`).
    id: String,
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct IdArgs {
    /// The pipeline execution (`x000042`).
    id: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct GateArgs {
    /// The pipeline execution (`x000042`).
    id: String,
    /// The environment whose gate its deploy waits at.
    environment: String,
    /// `yes` approves, `no` rejects.
    #[arg(value_parser = ["yes", "no"])]
    decision: String,
    /// Said with the decision (kept in the run's record).
    #[arg(long, short = 'm')]
    message: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct SettingArgs {
    /// The service, as its `service "NAME"` block names it.
    service: String,
    /// Only the deployments: pipelines still build.
    #[arg(long)]
    deploys: bool,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(command: ServiceCommand) -> Result<(), u8> {
    match command {
        ServiceCommand::List(a) => list(a),
        ServiceCommand::Run(a) => trigger(a),
        ServiceCommand::Pipelines(a) => pipelines(a),
        ServiceCommand::Last(a) => last(a),
        ServiceCommand::Status(a) => status(a),
        ServiceCommand::Logs(a) => logs(a),
        ServiceCommand::Rerun(a) => again(a, "rerun"),
        ServiceCommand::Cancel(a) => again(a, "cancel"),
        ServiceCommand::Gate(a) => gate(a),
        ServiceCommand::Disable(a) => setting(a, false),
        ServiceCommand::Enable(a) => setting(a, true),
    }
}

fn ask<T>(client: &ServerClient, r: Result<T, stackpipe_runtime::control::ServerError>) -> Result<T, u8> {
    r.map_err(|e| server_error(e, client.url()))
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn list(a: ListArgs) -> Result<(), u8> {
    let client = a.remote.client()?;
    let services = ask(&client, client.get("/services"))?;
    if a.json {
        print_json(&services);
        return Ok(());
    }
    let rows = services.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("no services: no pipeline of the server declares a `service` block");
        return Ok(());
    }
    for s in rows {
        let flag = |k: &str| s[k].as_bool().unwrap_or(false);
        let state = match (flag("enabled"), flag("deploys")) {
            (false, _) => "pipelines disabled",
            (true, false) => "deployments disabled",
            (true, true) => "enabled",
        };
        println!("{}  (pipeline {})  {}  {}", text(&s["name"]), text(&s["pipeline"]), text(&s["repo"]), state);
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn trigger(a: RunArgs) -> Result<(), u8> {
    let client = a.remote.client()?;
    let body = json!({ "branch": a.branch, "commit": a.commit });
    let x = ask(&client, client.post(&format!("/services/{}/executions", seg(&a.service)), &body))?;
    let id = text(&x["id"]);
    println!("pipeline {id} of service {} queued: {} {}", a.service, describe_ref(&x), short(&text(&x["commit"]["sha"])));
    if a.follow {
        return follow_status(&client, &id, false);
    }
    println!("  follow it: stackpipe service status {id} --follow");
    Ok(())
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(8)]
}

fn describe_ref(x: &Value) -> String {
    let c = &x["commit"];
    if let Some(t) = c["tag"].as_str() {
        format!("tag {t}")
    } else if let Some(n) = c["pull_request"].as_u64() {
        format!("pull request #{n}")
    } else {
        format!("branch {}", text(&c["branch"]))
    }
}

/// `3 s`, `4 m 10 s`, `2 h 5 m`.
fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} m {} s", s / 60, s % 60),
        _ => format!("{} h {} m", s / 3600, (s % 3600) / 60),
    }
}

fn ago(ms: u64) -> String {
    let now = stackpipe_runtime::state::now_ms();
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// The table of pipeline executions (seed 001's Pipelines tab).
fn table(rows: &[Value]) -> String {
    let mut lines = vec![["ID", "COMMIT", "MESSAGE", "TYPE", "STATUS", "DURATION", "WHEN", "BRANCH", "AUTHOR"].map(String::from).to_vec()];
    for x in rows {
        let message: String = text(&x["commit"]["message"]).chars().take(40).collect();
        let branch = match (x["commit"]["tag"].as_str(), x["commit"]["pull_request"].as_u64()) {
            (Some(t), _) => format!("tag {t}"),
            (None, Some(n)) => format!("{} (#{n})", text(&x["commit"]["branch"])),
            _ => text(&x["commit"]["branch"]),
        };
        lines.push(vec![
            text(&x["id"]),
            short(&text(&x["commit"]["sha"])).to_string(),
            message,
            text(&x["kind"]),
            status_word(x),
            x["duration_ms"].as_u64().map(span).unwrap_or_else(|| "-".into()),
            x["created_ms"].as_u64().map(ago).unwrap_or_default(),
            branch,
            text(&x["commit"]["author"]),
        ]);
    }
    let widths: Vec<usize> = (0..lines[0].len()).map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for l in lines {
        let cells: Vec<String> = l.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The status, with where a running one is (`running: build`, `waiting: prod`).
fn status_word(x: &Value) -> String {
    let status = text(&x["status"]);
    if status != "running" {
        return status;
    }
    if x["build"]["status"] == "running" {
        return "running: build".into();
    }
    let deps = x["deployments"].as_array().cloned().unwrap_or_default();
    if let Some(w) = deps.iter().find(|d| d["status"] == "waiting") {
        return format!("waiting: approval for {}", text(&w["name"]));
    }
    match deps.iter().find(|d| d["status"] == "running") {
        Some(d) => format!("running: deploy {}", text(&d["name"])),
        None => "running: deploy".into(),
    }
}

fn pipelines(a: PipelinesArgs) -> Result<(), u8> {
    let client = a.remote.client()?;
    let mut path = format!("/services/{}/executions?limit={}", seg(&a.service), a.limit);
    if let Some(envs) = &a.filter_envs {
        path.push_str(&format!("&environments={}", seg(envs).replace("%2C", ",")));
    }
    let rows = ask(&client, client.get(&path))?;
    if a.json {
        print_json(&rows);
        return Ok(());
    }
    let rows = rows.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("no pipelines of service {} yet", a.service);
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}

fn last(a: LastArgs) -> Result<(), u8> {
    let client = a.remote.client()?;
    let doc = ask(&client, client.get(&format!("/services/{}", seg(&a.service))))?;
    let last = &doc["last"];
    if a.json {
        print_json(last);
        return Ok(());
    }
    if last.is_null() {
        println!("service {} has run no pipeline yet", a.service);
        return Ok(());
    }
    print!("{}", render(last));
    Ok(())
}

/// An execution as text: what it builds, each stage, each environment.
fn render(x: &Value) -> String {
    let mut out = format!(
        "pipeline {} of service {} ({}): {}\n  {} {} {}{}\n",
        text(&x["id"]),
        text(&x["service"]),
        text(&x["kind"]),
        status_word(x),
        describe_ref(x),
        short(&text(&x["commit"]["sha"])),
        text(&x["commit"]["message"]),
        match text(&x["commit"]["author"]).as_str() {
            "" => String::new(),
            a => format!(" ({a})"),
        },
    );
    out.push_str(&format!("  triggered by {} ({}) {}\n", text(&x["started_by"]), text(&x["trigger"]), x["created_ms"].as_u64().map(ago).unwrap_or_default()));
    let stage = |name: &str, s: &Value| {
        let took = match (s["started_ms"].as_u64(), s["ended_ms"].as_u64()) {
            (Some(a), Some(b)) => format!(" in {}", span(b.saturating_sub(a))),
            _ => String::new(),
        };
        let note = s["note"].as_str().map(|n| format!(": {n}")).unwrap_or_default();
        format!("  {name}: {}{took}{note}\n", text(&s["status"]))
    };
    out.push_str(&stage("build", &x["build"]));
    if let Some(a) = x["artifact"].as_object() {
        out.push_str(&format!("    artifact {} tag {}\n", text(&a["digest"]), text(&a["tag"])));
    }
    out.push_str(&stage("deploy", &x["deploy"]));
    if let Some(run) = x["run"].as_str() {
        out.push_str(&format!("    run {run}\n"));
    }
    for d in x["deployments"].as_array().cloned().unwrap_or_default() {
        let reason = d["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default();
        out.push_str(&format!("    {}: {}{reason}\n", text(&d["name"]), text(&d["status"])));
    }
    out
}

fn ended_code(x: &Value) -> Result<(), u8> {
    match x["status"].as_str() {
        Some("succeeded") => Ok(()),
        _ => Err(EXIT_FAILED),
    }
}

fn is_over(x: &Value) -> bool {
    !matches!(x["status"].as_str(), Some("queued") | Some("running"))
}

fn status(a: StatusArgs) -> Result<(), u8> {
    let client = a.remote.client()?;
    if !a.follow {
        let x = ask(&client, client.get(&format!("/executions/{}", seg(&a.id))))?;
        if a.json {
            print_json(&x);
        } else {
            print!("{}", render(&x));
        }
        return Ok(());
    }
    follow_status(&client, &a.id, a.json)
}

/// Prints each change of an execution's status until it ends.
fn follow_status(client: &ServerClient, id: &str, json: bool) -> Result<(), u8> {
    let mut said = String::new();
    loop {
        let x = ask(client, client.get(&format!("/executions/{}", seg(id))))?;
        let now = status_word(&x);
        if now != said && !json {
            println!("{id}: {now}");
            let _ = std::io::stdout().flush();
            said = now;
        }
        if is_over(&x) {
            if json {
                print_json(&x);
            } else {
                print!("{}", render(&x));
            }
            return ended_code(&x);
        }
        std::thread::sleep(FOLLOW_EVERY);
    }
}

fn logs(a: FollowArgs) -> Result<(), u8> {
    let client = a.remote.client()?;
    let (mut build, mut deploy) = (0usize, 0usize);
    // Once the pipeline has ended, one more ask: the one that saw it end may
    // be behind its last lines.
    let mut ended = false;
    loop {
        let doc = ask(&client, client.get(&format!("/executions/{}/logs?build_after={build}&deploy_after={deploy}", seg(&a.id))))?;
        let mut out = std::io::stdout().lock();
        for l in doc["build"].as_array().cloned().unwrap_or_default() {
            let _ = writeln!(out, "[build] {}", text(&l["text"]));
        }
        for l in doc["deploy"].as_array().cloned().unwrap_or_default() {
            let _ = writeln!(out, "[deploy {}/{} {}] {}", text(&l["environment"]), text(&l["node"]), text(&l["op"]), text(&l["text"]));
        }
        let _ = out.flush();
        build = doc["build_lines"].as_u64().unwrap_or(0) as usize;
        deploy = doc["deploy_lines"].as_u64().unwrap_or(0) as usize;
        if !a.follow || ended {
            return Ok(());
        }
        ended = !matches!(doc["status"].as_str(), Some("queued") | Some("running"));
        if !ended {
            std::thread::sleep(FOLLOW_EVERY);
        }
    }
}

fn again(a: IdArgs, verb: &str) -> Result<(), u8> {
    let client = a.remote.client()?;
    let x = ask(&client, client.post(&format!("/executions/{}/{verb}", seg(&a.id)), &json!({})))?;
    match verb {
        "rerun" => println!("pipeline {} queued: a rerun of {} ({} {})", text(&x["id"]), a.id, describe_ref(&x), short(&text(&x["commit"]["sha"]))),
        _ => println!("pipeline {}: cancel asked; it stops as its stage allows ({})", a.id, status_word(&x)),
    }
    Ok(())
}

fn gate(a: GateArgs) -> Result<(), u8> {
    let client = a.remote.client()?;
    let x = ask(&client, client.get(&format!("/executions/{}", seg(&a.id))))?;
    let Some(run) = x["run"].as_str() else {
        eprintln!("error: pipeline {} has no deploy run (yet): {}", a.id, status_word(&x));
        return Err(EXIT_INVALID);
    };
    let verb = if a.decision == "yes" { "approve" } else { "reject" };
    let body = json!({ "environment": a.environment, "comment": a.message });
    ask(&client, client.post(&format!("/runs/{}/{verb}", seg(run)), &body))?;
    println!("pipeline {}: {} {}", a.id, if verb == "approve" { "approved" } else { "rejected" }, a.environment);
    Ok(())
}

fn setting(a: SettingArgs, on: bool) -> Result<(), u8> {
    let client = a.remote.client()?;
    let body = if a.deploys { json!({ "deploys": on }) } else { json!({ "enabled": on }) };
    let s = ask(&client, client.post(&format!("/services/{}/settings", seg(&a.service)), &body))?;
    let what = if a.deploys { "deployments" } else { "pipelines" };
    println!("service {}: {what} {}", a.service, if on { "enabled" } else { "disabled" });
    if !s["enabled"].as_bool().unwrap_or(true) && a.deploys {
        println!("  (its pipelines are disabled as a whole: `stackpipe service enable {}`)", a.service);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_and_says_where_a_running_pipeline_is() {
        let x = json!({
            "id": "x000002", "kind": "production", "status": "running", "created_ms": 0, "duration_ms": 65000,
            "commit": { "sha": "0123456789abcdef", "branch": "main", "message": "Fix the thing", "author": "Ada" },
            "build": { "status": "succeeded" }, "deployments": [{ "name": "dev", "status": "succeeded" }, { "name": "prod", "status": "waiting" }],
        });
        let t = table(&[x]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID       COMMIT    MESSAGE"), "{t}");
        assert!(lines[1].contains("01234567") && lines[1].contains("waiting: approval for prod") && lines[1].contains("1 m 5 s"), "{t}");
        assert_eq!(lines[0].find("COMMIT"), lines[1].find("01234567"));
    }
}
