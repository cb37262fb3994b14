//! The `stackpipe` command line.

mod load;
mod plugin_cmd;

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
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(plugin_cmd::PluginCommand),
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
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

/// Exit codes: 0 success, 1 a run failed, 2 invalid input.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => check(a),
        Command::Graph(a) => graph(a),
        Command::Plugin(c) => plugin_cmd::run(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

fn check(a: CheckArgs) -> Result<(), u8> {
    let graph = a.pipeline.load(true)?.graph;
    let envs = graph.environments.len();
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

