//! `watch`: keep a pipeline live while it is edited. Every change to the
//! pipeline file, a plugin it loads from a path, or a file a provisioner
//! reads starts a cycle: recompile, then plan (what changed since the last
//! plan first) or, with `--deploy`, deploy. A change during a run stops it
//! the safe way (operations in flight finish) and the next cycle starts
//! from the new files. A bad save prints its diagnostics and the watch
//! goes on.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use stackpipe_runtime::pipeline::LoadedPipeline;
use stackpipe_runtime::plugin::PluginHost;
use stackpipe_runtime::run::{Events, Mode, PlannedChange, Steering, StopSignal};
use stackpipe_runtime::watch::{pipeline_files, FileWatch};
use tokio::sync::mpsc;

use crate::progress::Steer;
use crate::run_cmd::RunArgs;
use crate::EXIT_FAILED;
use crate::EXIT_INVALID;

#[derive(Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Deploy every change (default: plan it).
    #[arg(long)]
    pub deploy: bool,
    /// How long the files must be quiet after a save before a cycle starts.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    pub debounce_ms: u64,
}

/// What one cycle leaves for the next.
#[derive(Default)]
struct Carried {
    /// The last complete plan, to show what changed since.
    plan: Option<Vec<PlannedChange>>,
    /// The pipeline file and its plugins, as the last pipeline that
    /// compiled has them: they stay watched while the file does not compile.
    made_of: BTreeSet<PathBuf>,
    /// The input files the provisioners named in the last cycle.
    inputs: BTreeSet<PathBuf>,
}

impl Carried {
    /// Everything to watch.
    fn files(&self) -> BTreeSet<PathBuf> {
        self.made_of.union(&self.inputs).cloned().collect()
    }
}

/// How a cycle's run ended.
enum Ended {
    Finished,
    /// Files changed during the run: these.
    Changed(Vec<PathBuf>),
    /// Ctrl-C.
    Quit,
}

pub fn watch(a: WatchArgs) -> Result<(), u8> {
    if a.run.remote.server.is_some() {
        eprintln!("error: `watch` plans and deploys here, against a local state: it takes no --server");
        return Err(EXIT_INVALID);
    }
    let rt = crate::run_cmd::runtime()?;
    let host = crate::run_cmd::host()?;
    rt.block_on(watch_loop(a, host))
}

async fn watch_loop(a: WatchArgs, host: Arc<PluginHost>) -> Result<(), u8> {
    let (mut files, mut changes) = FileWatch::start(Duration::from_millis(a.debounce_ms)).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_FAILED
    })?;
    // True at the first Ctrl-C or SIGTERM: the run in flight stops the safe
    // way and the watch ends.
    let quit = StopSignal::new();
    tokio::spawn(crate::run_cmd::watch_signals(quit.clone(), "\nstopping: operations in flight finish, then the watch ends"));
    let quit = quit.receiver();
    let mode = if a.deploy { Mode::Deploy } else { Mode::Plan };
    let mut carried = Carried { made_of: BTreeSet::from([a.run.pipeline.file.clone()]), ..Default::default() };
    let mut trigger = "started".to_string();
    for cycle in 1.. {
        header(cycle, &trigger, mode, a.run.json);
        let loaded = match a.run.pipeline.load(true) {
            Ok(p) => crate::load::check_types(&p, &host, &a.run.sets).await.ok().map(|_| p),
            Err(_) => None,
        };
        if let Some(p) = &loaded {
            carried.made_of = pipeline_files(p);
        }
        watch_these(&mut files, &carried.files());
        let ended = match loaded {
            Some(p) => cycle_until(p, mode, &a, &host, &mut carried, &mut files, &mut changes, &quit).await,
            None => {
                if !a.run.json {
                    println!("{} has errors (shown above); fix them and save", a.run.pipeline.file.display());
                }
                Ended::Finished
            }
        };
        let changed = match ended {
            Ended::Quit => break,
            Ended::Changed(changed) => changed,
            Ended::Finished => {
                if !a.run.json {
                    println!("\nwatching {} file{}; Ctrl-C to stop", files.len(), crate::plural(files.len()));
                }
                let _ = std::io::stdout().flush();
                let mut quit_rx = quit.clone();
                tokio::select! {
                    Some(changed) = changes.recv() => changed,
                    _ = quit_rx.wait_for(|q| *q) => break,
                }
            }
        };
        // Saves that landed while this cycle ran are part of the next one.
        let mut all: BTreeSet<PathBuf> = changed.into_iter().collect();
        while let Ok(more) = changes.try_recv() {
            all.extend(more);
        }
        trigger = describe(&all);
    }
    if !a.run.json {
        println!("stopped watching");
    }
    Ok(())
}

/// Runs one cycle (a plan, or a deploy) of `p` until it finishes, files
/// change (it is stopped the safe way) or the watch is to quit; keeps what
/// it learned in `carried`, and watches the files it read.
#[allow(clippy::too_many_arguments)]
async fn cycle_until(
    p: LoadedPipeline,
    mode: Mode,
    a: &WatchArgs,
    host: &Arc<PluginHost>,
    carried: &mut Carried,
    files: &mut FileWatch,
    changes: &mut mpsc::UnboundedReceiver<Vec<PathBuf>>,
    quit: &tokio::sync::watch::Receiver<bool>,
) -> Ended {
    let stop = StopSignal::new();
    let run = tokio::spawn(run_cycle(p, mode, a.run.clone(), host.clone(), stop.clone(), carried.plan.clone()));
    tokio::pin!(run);
    let mut quit_rx = quit.clone();
    let (ended, finished) = tokio::select! {
        r = &mut run => (Ended::Finished, Some(r)),
        Some(changed) = changes.recv() => (Ended::Changed(changed), None),
        _ = quit_rx.wait_for(|q| *q) => (Ended::Quit, None),
    };
    let result = match finished {
        Some(r) => r,
        None => {
            if matches!(ended, Ended::Changed(_)) {
                eprintln!("files changed: stopping this {} (operations in flight finish)", mode.name());
            }
            stop.stop();
            run.await
        }
    };
    match result {
        Ok(Some(outcome)) => {
            if let Some(plan) = outcome.plan {
                carried.plan = Some(plan);
            }
            if outcome.inputs != carried.inputs {
                carried.inputs = outcome.inputs;
                watch_these(files, &carried.files());
            }
        }
        Ok(None) => {}
        Err(e) => eprintln!("error: the {} task failed: {e}", mode.name()),
    }
    ended
}

/// What a finished cycle tells the next.
struct CycleOutcome {
    plan: Option<Vec<PlannedChange>>,
    inputs: BTreeSet<PathBuf>,
}

/// One plan or deploy of the freshly compiled pipeline. The state store is
/// opened for the cycle only, so other terminals can read it between cycles.
async fn run_cycle(
    p: LoadedPipeline,
    mode: Mode,
    a: RunArgs,
    host: Arc<PluginHost>,
    stop: StopSignal,
    last_plan: Option<Vec<PlannedChange>>,
) -> Option<CycleOutcome> {
    let store = if mode == Mode::Plan {
        a.state.open_resources(Some(&a.pipeline.file), true)
    } else {
        a.state.open(Some(&a.pipeline.file))
    };
    let store = Arc::new(store.ok()?);
    if mode == Mode::Plan {
        let opts = a.plan_options();
        let (summary, failures) = match crate::run_cmd::plan_once(&p, mode, host, store, &opts, stop.clone()).await {
            Ok(r) => r,
            Err(e) => {
                crate::run_cmd::run_error(e);
                return None;
            }
        };
        if stop.is_stopped() {
            return Some(CycleOutcome { plan: None, inputs: summary.inputs });
        }
        crate::run_cmd::report_plan(&summary, &failures, a.json, last_plan.as_deref());
        let complete = failures.is_empty();
        return Some(CycleOutcome { plan: complete.then_some(summary.planned), inputs: summary.inputs });
    }
    let mut opts = a.run_options(None);
    opts.trigger = stackpipe_runtime::state::RunTrigger::Watch;
    opts.message.get_or_insert_with(|| "stackpipe watch --deploy".into());
    // As `deploy` does: nothing starts unless the whole run passes preflight.
    crate::run_cmd::preflight_first(&p, mode, host.clone(), store.clone(), &mut opts, a.json).await.ok()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let slot = crate::progress::SocketSlot::default();
    // Gates are decided with `stackpipe approve` from another terminal (or
    // --yes, but for policies' approvals): the watch's own terminal is not read, so a save is never
    // mistaken for an answer.
    let printer =
        tokio::spawn(crate::progress::print_events(rx, a.json, false, a.yes, Steer::Local(slot.clone())));
    let steering = Steering { events: Events::new(tx), stop };
    let result = crate::run_cmd::steered_run(&p, mode, host, store, &opts, steering, &slot, None).await;
    let _ = printer.await;
    let s = result.ok()?;
    let _ = crate::run_cmd::finish(&s, a.json);
    Some(CycleOutcome { plan: None, inputs: s.inputs })
}

fn watch_these(files: &mut FileWatch, wanted: &BTreeSet<PathBuf>) {
    match files.watch_files(wanted) {
        Ok(unwatchable) => {
            for f in unwatchable {
                eprintln!("warning: cannot watch {}: its directory does not exist", f.display());
            }
        }
        Err(e) => eprintln!("warning: {e}"),
    }
}

fn header(cycle: u64, trigger: &str, mode: Mode, json: bool) {
    let time = clock();
    if json {
        let line = serde_json::json!({ "event": "watch_cycle", "cycle": cycle, "time": time, "trigger": trigger, "operation": mode.name() });
        println!("{line}");
    } else {
        let title = format!("── {time} · {} #{cycle} · {trigger} ", mode.name());
        let width = title.chars().count();
        println!("\n{title}{}", "─".repeat(72usize.saturating_sub(width)));
    }
}

/// `site.pipeline changed`, `a.wasm, b.html changed`.
fn describe(changed: &BTreeSet<PathBuf>) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let names: Vec<String> = changed.iter().map(|p| shown(p, &cwd)).collect();
    match names.len() {
        0 => "changed".into(),
        1..=3 => format!("{} changed", names.join(", ")),
        n => format!("{}, and {} more changed", names[..2].join(", "), n - 2),
    }
}

fn shown(p: &Path, cwd: &Path) -> String {
    p.strip_prefix(cwd).unwrap_or(p).display().to_string()
}

/// The local wall-clock time, `HH:MM:SS`.
fn clock() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
        as libc::time_t;
    // SAFETY: localtime_r writes only into the `tm` we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return "--:--:--".into();
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}
