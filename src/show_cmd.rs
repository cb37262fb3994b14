//! `show RUN`: what a run was started from, its snapshot: the pipeline's
//! source (`--source`), the values given, the plugin components by digest.

use clap::Args;
use serde_json::Value;
use stackpipe_runtime::control::Request;
use stackpipe_runtime::state::RunSnapshot;

use crate::run_cmd::StateArgs;
use crate::state_cmd::{fail, query};
use crate::EXIT_INVALID;

#[derive(Args)]
pub struct ShowArgs {
    /// The run (`stackpipe runs` lists them).
    pub run: String,
    /// Print the pipeline source the run was started from, as it was.
    #[arg(long)]
    pub source: bool,
    /// The snapshot as JSON: `{"run", "digest", "snapshot"}`.
    #[arg(long, conflicts_with = "source")]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub remote: crate::remote::ServerArgs,
}

pub fn show(a: ShowArgs) -> Result<(), u8> {
    let reach = a.remote.reach(&a.state)?;
    let request = Request::Snapshot { run: a.run.clone() };
    let doc = query(&reach, request, |store| {
        stackpipe_runtime::run::snapshot::snapshot_document(store, &a.run).map_err(|e| {
            eprintln!("error: {e}");
            EXIT_INVALID
        })
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    let digest = doc.get("digest").and_then(Value::as_str).unwrap_or_default().to_string();
    let snapshot: RunSnapshot = serde_json::from_value(doc.get("snapshot").cloned().unwrap_or_default()).map_err(fail)?;
    if a.source {
        let many = snapshot.files.len() > 1;
        for f in &snapshot.files {
            if many {
                println!("# ---- {}", f.path);
            }
            print!("{}", f.text);
            if !f.text.ends_with('\n') {
                println!();
            }
        }
        return Ok(());
    }
    print!("{}", render(&a.run, &digest, &snapshot));
    Ok(())
}

/// The snapshot as people read it.
fn render(run: &str, digest: &str, s: &RunSnapshot) -> String {
    let mut out = format!("run {run}: {} of pipeline `{}`\nsnapshot sha256:{digest}\n", s.operation.name(), s.pipeline);
    out.push_str(&format!("environments: {}\n", s.environment.as_deref().unwrap_or("all, in order")));
    if !s.targets.is_empty() {
        out.push_str(&format!("targets: {}\n", s.targets.join(", ")));
    }
    if s.orphans {
        out.push_str("orphans: what the pipeline no longer declares\n");
    }
    out.push_str("files:\n");
    for f in &s.files {
        let lines = f.text.lines().count();
        out.push_str(&format!(
            "  {} ({lines} line{}, sha256:{})\n",
            f.path,
            if lines == 1 { "" } else { "s" },
            &stackpipe_runtime::plugin::digest(f.text.as_bytes())[..12]
        ));
    }
    if !s.vars.is_empty() || !s.sensitive_vars.is_empty() {
        out.push_str("vars:\n");
        for (k, v) in &s.vars {
            out.push_str(&format!("  {k} = {v}\n"));
        }
        for k in &s.sensitive_vars {
            out.push_str(&format!("  {k} = (sensitive: never stored; given again to resume or rerun)\n"));
        }
    }
    if !s.sets.is_empty() {
        out.push_str("sets:\n");
        for (k, v) in &s.sets {
            out.push_str(&format!("  {k} = {v}\n"));
        }
    }
    out.push_str("plugins:\n");
    let width = s.plugins.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in &s.plugins {
        out.push_str(&format!("  {:width$}  {}  sha256:{}\n", p.name, p.source, p.digest));
    }
    out.push_str(&format!("(`stackpipe show {run} --source` prints the pipeline source)\n"));
    out
}
