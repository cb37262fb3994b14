//! The `stackpipe` command line.

mod control_cmd;
mod fmt_cmd;
mod history_cmd;
mod load;
mod plugin_build;
mod plugin_cmd;
mod plugin_new;
mod progress;
mod remote;
mod remote_run;
mod run_cmd;
mod runner_cmd;
mod serve_cmd;
mod service_cmd;
mod show_cmd;
mod user_cmd;
mod state_cmd;
mod watch_cmd;

use std::io::IsTerminal;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::load::PipelineArgs;

/// Deploy interdependent cloud resources in dependency order.
#[derive(Parser)]
#[command(name = "stackpipe", version, about, propagate_version = true, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check a pipeline; print a one-line summary or every error.
    Check(CheckArgs),
    /// Print the dependency graph: by level (text), Graphviz (dot) or mermaid.
    Graph(GraphArgs),
    /// Rewrite .pipeline files in the canonical layout (`--check`: change nothing, exit 1 if one would change).
    Fmt(fmt_cmd::FmtArgs),
    /// Check that every resource can run: provisioner and type, attributes, credentials, locks.
    Preflight(run_cmd::RunArgs),
    /// Refresh and preview every resource, and show what deploy (or undeploy) would change. Nothing is applied.
    Plan(run_cmd::PlanArgs),
    /// Deploy: every environment in order, every resource in dependency order.
    Deploy(run_cmd::RunArgs),
    /// Destroy what the pipeline deployed, dependents first, environments in reverse order.
    Undeploy(run_cmd::RunArgs),
    /// Re-plan (or with --deploy, re-deploy) whenever the pipeline, a plugin or an input file changes.
    Watch(watch_cmd::WatchArgs),
    /// Finish a run that failed, was cancelled or was killed, from its snapshot; what succeeded is not redone.
    Resume(AgainArgs),
    /// Run a past run again from its snapshot: the same source, vars, settings and plugins.
    Rerun(AgainArgs),
    /// List the runs, most recent first.
    Runs(state_cmd::RunsArgs),
    /// Show a run: every environment, node and operation.
    Status(state_cmd::StatusArgs),
    /// Show what a run was started from: its snapshot (`--source`: the pipeline source as it was).
    Show(show_cmd::ShowArgs),
    /// Every job that touched a resource, most recent first: run, when, who, change, status (`--diff`: what changed).
    History(history_cmd::HistoryArgs),
    /// Show a run's log lines, or follow a run in progress (`--follow`).
    Logs(state_cmd::LogsArgs),
    /// Approve a gate a run in progress is waiting at.
    Approve(control_cmd::DecideArgs),
    /// Reject a gate: what it guards (and all after it) is skipped; the run ends failed.
    Reject(control_cmd::DecideArgs),
    /// Cancel a run in progress: operations in flight finish, nothing new starts.
    Cancel(control_cmd::CancelArgs),
    /// Show the deployed resources' outputs and the pipeline's outputs.
    Outputs(state_cmd::OutputsArgs),
    /// Look at or repair the state: list, show, unlock.
    #[command(subcommand)]
    State(state_cmd::StateCommand),
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(plugin_cmd::PluginCommand),
    /// Manage the users of a team server, on its host: add, list, remove, token.
    #[command(subcommand)]
    User(user_cmd::UserCommand),
    /// Service pipelines on a team server: trigger, list, follow, rerun, cancel, gates, settings.
    #[command(subcommand)]
    Service(service_cmd::ServiceCommand),
    /// Run the team server: an HTTP API for runs, gates, jobs, state and events, with users and roles.
    Serve(serve_cmd::ServeArgs),
    /// Work the runs of a shared database (`--state postgres://…`): take their stack jobs from its queue and run them.
    Runner(runner_cmd::RunnerArgs),
    /// Show the team server's audit log (run on its host): every request that changed something.
    Audit(serve_cmd::AuditArgs),
    /// Save the token for a team server (read from stdin, or asked for): `--server URL` then uses it.
    Login(remote::LoginArgs),
    /// Forget the token saved for a team server.
    Logout(remote::LogoutArgs),
    /// Run the language server for .pipeline files on stdin/stdout (for editors: see editors/).
    Lsp(LspArgs),
    /// Print the shell completions of stackpipe: `stackpipe completions bash > ~/.local/share/bash-completion/completions/stackpipe`.
    Completions(CompletionsArgs),
}

#[derive(Args)]
struct LspArgs {
    /// Do not load the pipeline's provisioner plugins to read their schemas
    /// (no hover, completion or checks from them): for files you do not trust.
    #[arg(long)]
    no_plugin_schemas: bool,
    /// Accepted for editors that pass it; stdio is the only transport.
    #[arg(long, hide = true)]
    stdio: bool,
}

#[derive(Args)]
struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args)]
struct AgainArgs {
    /// The run id (`stackpipe runs` lists them).
    run: String,
    #[command(flatten)]
    state: run_cmd::StateArgs,
    /// One JSON event per line on stdout.
    #[arg(long)]
    json: bool,
    /// Give a var again: needed for the run's sensitive vars, whose values
    /// are never stored (or set `STACKPIPE_VAR_<name>`).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = load::parse_key_value)]
    vars: Vec<(String, String)>,
    #[command(flatten)]
    remote: remote::ServerArgs,
    /// With --server: Ctrl-C cancels the run on the server (and the run is followed to its end; Ctrl-C
    /// again detaches). Without it, Ctrl-C only detaches: the run goes on there.
    #[arg(long)]
    cancel_on_interrupt: bool,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// How to report: for a person (text, on stderr), or one JSON object on
    /// stdout with every diagnostic's file, range, severity, code, message
    /// and help (for CI annotations and editors).
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    format: CheckFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CheckFormat {
    Text,
    Json,
}

#[derive(Args)]
struct GraphArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    format: GraphFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Text,
    Dot,
    Mermaid,
}

/// `stackpipe completions SHELL`: the completion script of every command,
/// option and value clap knows, on stdout.
fn completions(a: CompletionsArgs) -> Result<(), u8> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "stackpipe", &mut script);
    use std::io::Write;
    std::io::stdout().write_all(&script).map_err(|e| {
        eprintln!("error: cannot write the completions: {e}");
        EXIT_FAILED
    })
}

/// Exit codes: 0 success, 1 a run failed, 2 invalid input.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    // Die quietly when stdout is a closed pipe (`stackpipe status | head`),
    // as command-line tools do, instead of panicking on the failed write.
    // SAFETY: called first thing, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Plugin `host.log` lines and the runtime's own go to stderr, filtered by
    // STACKPIPE_LOG (`info`, `debug`, `stackpipe_runtime=trace`, ...); warnings by default.
    let filter = tracing_subscriber::EnvFilter::try_from_env("STACKPIPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(stderr_color())
        .with_target(false)
        .init();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_)) {
        // The server must outlive a client that goes away mid-answer: hyper
        // writes with writev, which (unlike send) raises SIGPIPE on a socket
        // the peer reset. Ignored, the write fails with EPIPE and only that
        // connection ends.
        // SAFETY: no other thread exists yet.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
    let result = match cli.command {
        Command::Check(a) => check(a),
        Command::Fmt(a) => fmt_cmd::fmt(a),
        Command::Lsp(a) => stackpipe_lsp::serve_stdio(!a.no_plugin_schemas).map_err(|e| {
            eprintln!("error: stackpipe lsp: {e}");
            EXIT_FAILED
        }),
        Command::Graph(a) => graph(a),
        Command::Preflight(a) => run_cmd::preflight(a),
        Command::Plan(a) => run_cmd::plan(a),
        Command::Deploy(a) => run_cmd::run(a, stackpipe_runtime::run::Mode::Deploy),
        Command::Undeploy(a) => run_cmd::run(a, stackpipe_runtime::run::Mode::Undeploy),
        Command::Watch(a) => watch_cmd::watch(a),
        Command::Resume(a) => again(a, true),
        Command::Rerun(a) => again(a, false),
        Command::Runs(a) => state_cmd::runs(a),
        Command::Status(a) => state_cmd::status(a),
        Command::Show(a) => show_cmd::show(a),
        Command::Logs(a) => state_cmd::logs(a),
        Command::History(a) => history_cmd::run(a),
        Command::Approve(a) => control_cmd::decide(a, stackpipe_runtime::state::Decision::Approved),
        Command::Reject(a) => control_cmd::decide(a, stackpipe_runtime::state::Decision::Rejected),
        Command::Cancel(a) => control_cmd::cancel(a),
        Command::Outputs(a) => state_cmd::outputs(a),
        Command::State(c) => state_cmd::state(c),
        Command::Plugin(c) => plugin_cmd::run(c),
        Command::User(c) => user_cmd::run(c),
        Command::Service(c) => service_cmd::run(c),
        Command::Serve(a) => serve_cmd::serve(a),
        Command::Audit(a) => serve_cmd::audit(a),
        Command::Runner(a) => runner_cmd::run(a),
        Command::Login(a) => remote::login(a),
        Command::Logout(a) => remote::logout(a),
        Command::Completions(a) => completions(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

/// `resume RUN` / `rerun RUN`: here, or on the team server `--server` names.
fn again(a: AgainArgs, resume: bool) -> Result<(), u8> {
    match a.remote.client(&a.state)? {
        Some(client) => remote_run::again(client, &a.run, resume, a.json, !a.vars.is_empty(), a.cancel_on_interrupt),
        None => run_cmd::again(&a.run, &a.state, resume, a.json, &a.vars),
    }
}

fn check(a: CheckArgs) -> Result<(), u8> {
    if a.format == CheckFormat::Json {
        load::report_as_json();
    }
    let pipeline = a.pipeline.load(true)?;
    let notes = check_schemas(&pipeline)?;
    let graph = pipeline.graph;
    let envs = graph.environments.len();
    if a.format == CheckFormat::Json {
        let report = serde_json::json!({
            "file": a.pipeline.file.display().to_string(),
            "ok": true,
            "resources": graph.len(),
            "environments": envs,
            "levels": graph.level_count(),
            "notes": notes,
            "diagnostics": [],
        });
        println!("{report}");
        return Ok(());
    }
    for note in notes {
        eprintln!("note: {note}");
    }
    println!(
        "ok: {} resource{}, {} environment{}, {} level{}",
        graph.len(),
        plural(graph.len()),
        envs,
        plural(envs),
        graph.level_count(),
        plural(graph.level_count())
    );
    Ok(())
}

/// `check`'s checks against the provisioners' schemas: what could not be
/// checked, as notes. A plugin that cannot be loaded (or a plugin host that
/// cannot start) is preflight's error; here it only leaves the resources it
/// concerns unchecked.
fn check_schemas(pipeline: &stackpipe_runtime::pipeline::LoadedPipeline) -> Result<Vec<String>, u8> {
    use stackpipe_runtime::plugin::{ArtifactCache, PluginHost};
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| PluginHost::new(ArtifactCache::from_env()).map(|host| (rt, host)).map_err(|e| format!("{e:#}")));
    let (rt, host) = match started {
        Ok(started) => started,
        Err(why) => {
            return Ok(vec![format!(
                "the attributes and outputs of the resources were not checked: cannot start the plugin host: {why}"
            )])
        }
    };
    let unchecked = rt.block_on(load::check_types(pipeline, &host, &[]))?;
    Ok(unchecked.iter().map(|u| format!("{u}\n  (`stackpipe preflight` reports this as an error: a deploy would not start)")).collect())
}

fn graph(a: GraphArgs) -> Result<(), u8> {
    let graph = a.pipeline.load(false)?.graph;
    let text = match a.format {
        GraphFormat::Text => stackpipe_dsl::render::text(&graph),
        GraphFormat::Dot => stackpipe_dsl::render::dot(&graph),
        GraphFormat::Mermaid => stackpipe_dsl::render::mermaid(&graph),
    };
    print!("{text}");
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Whether stderr gets colour: a terminal, and NO_COLOR unset.
pub fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}
