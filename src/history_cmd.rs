//! `history ENV/RESOURCE`: every job that touched a resource, most recent
//! first: run, when, who started it and how, the change, how it ended, and
//! (`--diff`) what it was to change. Read only: it opens the state for
//! reading (or asks the run holding it), and writes nothing.

use clap::Args;
use stackpipe_runtime::control::Request;
use stackpipe_runtime::run::history::{history, HistoryEntry, HistoryError, ResourceHistory};
use stackpipe_runtime::run::job_diff;
use stackpipe_runtime::state::RunTrigger;

use crate::run_cmd::{state_error, StateArgs};
use crate::state_cmd::{fail, query};
use crate::EXIT_INVALID;

#[derive(Args)]
pub struct HistoryArgs {
    /// `ENV/RESOURCE` (or `PIPELINE/ENV/RESOURCE`).
    pub resource: String,
    /// The pipeline, when several in the state have that resource.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Show what each job was to change, attribute by attribute (secrets masked).
    #[arg(long)]
    pub diff: bool,
    /// A JSON array, most recent first, each job with its diff.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub remote: crate::remote::ServerArgs,
}

/// `ENV/RESOURCE` or `PIPELINE/ENV/RESOURCE`, and the pipeline `--pipeline` names.
fn parse_name(a: &HistoryArgs) -> Result<(Option<String>, String, String), u8> {
    let parts: Vec<&str> = a.resource.split('/').collect();
    let (pipeline, env, resource) = match parts.as_slice() {
        [e, r] if !e.is_empty() && !r.is_empty() => (None, *e, *r),
        [p, e, r] if !p.is_empty() && !e.is_empty() && !r.is_empty() => (Some(*p), *e, *r),
        _ => {
            eprintln!("error: expected `ENV/RESOURCE` (or `PIPELINE/ENV/RESOURCE`), got `{}`", a.resource);
            return Err(EXIT_INVALID);
        }
    };
    let pipeline = match (pipeline, a.pipeline.as_deref()) {
        (Some(p), Some(q)) if p != q => {
            eprintln!("error: `{}` names pipeline `{p}`, --pipeline `{q}`", a.resource);
            return Err(EXIT_INVALID);
        }
        (p, q) => p.or(q).map(String::from),
    };
    Ok((pipeline, env.to_string(), resource.to_string()))
}

pub fn run(a: HistoryArgs) -> Result<(), u8> {
    let (pipeline, environment, resource) = parse_name(&a)?;
    let reach = a.remote.reach(&a.state)?;
    let request = Request::History { environment: environment.clone(), resource: resource.clone(), pipeline: pipeline.clone() };
    let doc = query(&reach, request, |store| match history(store, &environment, &resource, pipeline.as_deref()) {
        Ok(found) => serde_json::to_value(found).map_err(fail),
        Err(HistoryError::State(e)) => Err(state_error(e)),
        Err(e) => {
            eprintln!("error: {e}");
            Err(EXIT_INVALID)
        }
    })?;
    let found: ResourceHistory = serde_json::from_value(doc).map_err(fail)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&found.jobs).unwrap_or_default());
        return Ok(());
    }
    print!("{}", render(&found, a.diff));
    Ok(())
}

/// `history` as text.
fn render(h: &ResourceHistory, diffs: bool) -> String {
    let n = h.jobs.len();
    let mut out = format!(
        "{}/{} in pipeline {}: {n} job{}{}\n",
        h.environment,
        h.resource,
        h.pipeline,
        if n == 1 { "" } else { "s" },
        if n > 1 { ", most recent first" } else { "" }
    );
    if n == 0 {
        out.push_str("  deployed, but no job of it is recorded (the state is older than its jobs)\n");
    }
    for j in &h.jobs {
        let took = crate::progress::took(j.started_ms, j.finished_ms);
        out.push_str(&format!(
            "{}  {}  {:<8}  {:<7}  {:<9}  {:>8}  {}{}\n",
            j.run,
            utc(j.started_ms.unwrap_or(j.run_started_ms)),
            j.operation.name(),
            j.change.as_deref().unwrap_or("-"),
            j.status.name(),
            took,
            who(j),
            j.message.as_ref().map(|m| format!("  \"{m}\"")).unwrap_or_default()
        ));
        if let Some(e) = &j.error {
            let what = if j.status == stackpipe_runtime::state::Status::Failed { "error" } else { "why" };
            out.push_str(&format!("    {what}: {e}\n"));
        }
        if diffs {
            match &j.diff {
                Some(d) => out.push_str(&job_diff::render(d, "    ")),
                None => out.push_str("    no diff recorded\n"),
            }
        }
    }
    out
}

/// `by alice`, `by alice (watch)`, `by alice (rerun of r000001)`, `by
/// alice, resumed by bob`.
fn who(j: &HistoryEntry) -> String {
    let by = if j.started_by.is_empty() { "(not recorded)" } else { j.started_by.as_str() };
    let how = match (j.trigger, &j.rerun_of) {
        (RunTrigger::Rerun, Some(of)) => format!(" (rerun of {of})"),
        (RunTrigger::Cli, _) => String::new(),
        (other, _) => format!(" ({})", other.name()),
    };
    let resumed = j.resumed_by.as_ref().map(|r| format!(", resumed by {r}")).unwrap_or_default();
    format!("by {by}{how}{resumed}")
}

/// Milliseconds since the epoch as a UTC time: `2025-06-01 10:00:03Z`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm, for days >= 0).
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_700_000_000_999), "2023-11-14 22:13:20Z");
        assert_eq!(utc(4_102_444_799_000), "2099-12-31 23:59:59Z");
    }
}
