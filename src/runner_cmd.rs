//! `stackpipe runner`: works the runs of a shared database, taking their
//! stack jobs from its job queue (see `stackpipe_runtime::run::runner`).

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use stackpipe_runtime::run::{Runner, RunnerOptions, StopSignal};
use stackpipe_runtime::state_location::StateLocation;
use stackpipe_state_postgres::JobQueue;

use crate::run_cmd::StateArgs;
use crate::{EXIT_FAILED, EXIT_INVALID};

#[derive(Args)]
pub struct RunnerArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// This runner's name in the queue, unique among the database's runners
    /// (default: HOST-PID).
    #[arg(long)]
    pub name: Option<String>,
    /// The most stack jobs it runs at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub capacity: u32,
    /// How long (seconds) a job stays this runner's without a renewal: the
    /// longest another runner waits to resume a job of a runner that died.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease: u64,
}

/// The name of a runner not given one: this host and process.
pub fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host = if host.is_empty() { "runner".to_string() } else { host };
    format!("{host}-{}", std::process::id())
}

/// The sensitive vars this process was given (`STACKPIPE_VAR_<name>`):
/// a runner needs them for the runs started with them.
pub fn vars_from_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter_map(|(k, v)| k.strip_prefix(crate::load::VAR_ENV_PREFIX).map(|n| (n.to_string(), v)))
        .filter(|(n, _)| !n.is_empty())
        .collect()
}

/// `stackpipe runner`: until SIGTERM or Ctrl-C; then the jobs it holds finish.
pub fn run(a: RunnerArgs) -> Result<(), u8> {
    let StateLocation::Postgres(url) = a.state.location_for(None) else {
        eprintln!("error: a runner works the runs of a shared database: give it --state postgres://… (or STACKPIPE_STATE)");
        return Err(EXIT_INVALID);
    };
    let rt = crate::run_cmd::runtime()?;
    let host = crate::run_cmd::host()?;
    let store = Arc::new(a.state.open(None)?);
    let queue = JobQueue::connect(&url).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_FAILED
    })?;
    let mut opts = RunnerOptions::new(a.name.unwrap_or_else(default_name));
    opts.capacity = a.capacity as usize;
    opts.lease = Duration::from_secs(a.lease);
    opts.vars = vars_from_env();
    eprintln!(
        "runner {} works the runs of {} (up to {} jobs at once); Ctrl-C stops it once its jobs end",
        opts.name,
        stackpipe_state_postgres::shown_url(&url),
        opts.capacity
    );
    let runner = Runner::new(store, queue, host, opts);
    rt.block_on(async move {
        let stop = StopSignal::new();
        tokio::spawn(crate::run_cmd::watch_signals(stop.clone(), "\nstopping: the jobs this runner holds finish; it takes no new one"));
        runner.work(stop).await;
        Ok(())
    })
}
