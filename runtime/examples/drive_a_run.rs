//! Driving a run from Rust, as the command line (and later the server)
//! does: start it, take it through its environments while listening to
//! its events, finish it. `cargo run -p stackpipe-runtime --example
//! drive_a_run -- examples/local-files.pipeline` deploys that pipeline.
use std::sync::Arc;

use stackpipe_dsl::CompileOptions;
use stackpipe_runtime::pipeline::{load, DEFAULT_MAX_PIPELINE_BYTES};
use stackpipe_runtime::plugin::{ArtifactCache, PluginHost};
use stackpipe_runtime::run::{Events, Mode, Run, RunEvent, RunOptions, Steering};
use stackpipe_runtime::state::StateStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = std::env::args().nth(1).ok_or("usage: drive_a_run FILE.pipeline")?;
    let opts = CompileOptions { default_name: "example".into(), ..Default::default() };
    let pipeline = load(file.as_ref(), opts, DEFAULT_MAX_PIPELINE_BYTES)?;
    let store = Arc::new(StateStore::open(&pipeline.default_state_dir())?);
    let host = Arc::new(PluginHost::new(ArtifactCache::from_env())?);
    // The observer: every event of the run, in order, on a channel.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let RunEvent::NodeFinished { environment, node, status, .. } = event {
                println!("{environment}/{node}: {}", status.name());
            }
        }
    });
    let steering = Steering { events: Events::new(tx), stop: Default::default() };
    let options = RunOptions { parallelism: 8, ..Default::default() };
    let mut run = Run::start(&pipeline, Mode::Deploy, host, store, &options, steering, None).await?;
    // Gates wait for a person: `run.gates()` is where they are decided
    // (`Gates::decide`), from a control socket, a web console, a test.
    for env in run.environments().to_vec() {
        run.environment(&env).await?;
    }
    let summary = run.finish().await?;
    printer.await?;
    println!("run {} {}", summary.run_id, summary.status.name());
    Ok(())
}
