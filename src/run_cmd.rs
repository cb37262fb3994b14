//! `plan`, `deploy`, `undeploy`, `resume`, `rerun`: the commands that run a
//! pipeline, and how their progress is shown.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use stackpipe_runtime::pipeline::LoadedPipeline;
use stackpipe_runtime::plugin::{ArtifactCache, PluginHost};
use stackpipe_runtime::run::{Runner, RunnerOptions, 
    execute, AutoApprove, Events, Mode, PlannedChange, Run, RunError, RunEvent, RunOptions, RunSource, RunSummary, Selection,
    SelectionError, SnapshotError, Steering, StopSignal,
};
use stackpipe_runtime::state::{LogLevel, RunKind, RunStatus, RunTrigger, StateStore, Status};
use tokio::sync::mpsc;

use stackpipe_runtime::control::{ControlServer, ControlSocket, Reach, RunHandles};
use stackpipe_runtime::state_location::StateLocation;

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
    /// Approve pauses (`pause_before_apply`) and node gates (`gate = "after"`)
    /// without asking. Never an environment's `approval = true` (see
    /// --approve-env), nor an approval a policy requires: a person gives that
    /// with `stackpipe approve` (or at the running terminal).
    #[arg(long)]
    pub yes: bool,
    /// Approve environment E's `approval = true` gate in advance (repeatable).
    #[arg(long = "approve-env", value_name = "ENV")]
    pub approve_env: Vec<String>,
    /// Only this resource (repeatable): a deploy (or plan) takes it and what
    /// it needs that is not deployed yet; an undeploy, it and everything
    /// that depends on it. Nothing else is touched.
    #[arg(long = "target", value_name = "RESOURCE")]
    pub targets: Vec<String>,
    /// Undeploy: destroy the resources still in the state that the pipeline
    /// no longer declares, in reverse order of their recorded dependencies;
    /// alone, it touches nothing else. Plan: what that would destroy.
    #[arg(long)]
    pub orphans: bool,
    #[command(flatten)]
    pub remote: crate::remote::ServerArgs,
    /// With --server: Ctrl-C cancels the run on the server (and the run is followed to its end; Ctrl-C again
    /// detaches). Without it, Ctrl-C only detaches: the run goes on there.
    #[arg(long)]
    pub cancel_on_interrupt: bool,
    /// With the state in PostgreSQL: leave the run's jobs to the runners
    /// (`stackpipe runner`) and only follow it. By default this process
    /// works as one of them until its run ends.
    #[arg(long)]
    pub no_local_runner: bool,
    /// How the run is started (not an argument: `watch` and `rerun` set it).
    #[arg(skip)]
    pub trigger: RunTrigger,
    /// For a `rerun`: the run whose inputs are run again.
    #[arg(skip)]
    pub rerun_of: Option<String>,
}

impl RunArgs {
    /// How to plan or preflight: nothing is recorded, nothing waits.
    pub fn plan_options(&self) -> RunOptions {
        RunOptions { parallelism: self.parallelism, sets: self.sets.clone(), selection: self.selection(), ..Default::default() }
    }

    /// What `--target` and `--orphans` select.
    pub fn selection(&self) -> Selection {
        Selection { targets: self.targets.clone(), orphans: self.orphans }
    }

    /// How to deploy or undeploy (or resume `resume`): a recorded run with
    /// its gates.
    pub fn run_options(&self, resume: Option<String>) -> RunOptions {
        RunOptions {
            parallelism: self.parallelism,
            sets: self.sets.clone(),
            vars: self.pipeline.all_vars(),
            message: self.message.clone(),
            resume,
            auto_approve: AutoApprove { yes: self.yes, environments: self.approve_env.clone() },
            trigger: self.trigger,
            rerun_of: self.rerun_of.clone(),
            selection: self.selection(),
            ..RunOptions::default()
        }
    }
}

#[derive(Args, Clone)]
pub struct PlanArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Plan what `undeploy` (with the same `--target`, `--orphans`) would
    /// destroy. `--orphans` implies it.
    #[arg(long)]
    pub undeploy: bool,
}

#[derive(Args, Clone, Default)]
pub struct StateArgs {
    /// Where the state is: a directory (default: `.stackpipe` beside the
    /// pipeline file, or `./.stackpipe`), or a PostgreSQL database shared by
    /// servers and runners (`postgres://USER@HOST:PORT/DB`; a password is
    /// best given through STACKPIPE_STATE, not on the command line).
    #[arg(long = "state", value_name = "DIR|URL", global = true, env = "STACKPIPE_STATE", hide_env_values = true)]
    pub location: Option<String>,
}

impl StateArgs {
    /// Where the state of the pipeline file `pipeline` (or of this
    /// directory) is.
    pub fn location_for(&self, pipeline: Option<&Path>) -> StateLocation {
        match &self.location {
            Some(text) => StateLocation::parse(text),
            None => StateLocation::Dir(default_dir(pipeline)),
        }
    }

    /// The state directory given, if a directory was given.
    pub fn given_dir(&self) -> Option<PathBuf> {
        self.location.as_deref().map(StateLocation::parse).and_then(|l| l.dir().map(Path::to_path_buf))
    }

    /// The state directory, for what keeps files in one (a server's
    /// users, a repair). A database given instead is an error, said.
    pub fn dir_for(&self, pipeline: Option<&Path>) -> Result<PathBuf, u8> {
        match self.location_for(pipeline) {
            StateLocation::Dir(dir) => Ok(dir),
            StateLocation::Postgres(_) => {
                eprintln!("error: this command works on a state directory: pass --state DIR");
                Err(EXIT_INVALID)
            }
        }
    }

    /// Opens the state for writing; a reader from another terminal that
    /// holds a directory's database for a moment is waited for.
    pub fn open(&self, pipeline: Option<&Path>) -> Result<StateStore, u8> {
        self.location_for(pipeline).open(std::time::Duration::from_secs(10)).map_err(state_error)
    }

    /// Opens the state for reading only: nothing is created or
    /// written. `or_empty`: a directory without state reads as empty
    /// (a plan of a pipeline never deployed).
    pub fn open_read_only(&self, pipeline: Option<&Path>, or_empty: bool) -> Result<StateStore, u8> {
        self.location_for(pipeline).open_read_only(std::time::Duration::from_secs(10), or_empty).map_err(state_error)
    }

    /// The resources and locks of the state, to read: from the database,
    /// or from the run in progress that holds a directory's database (see
    /// `Reach::resources`). `or_empty`: a directory without state reads
    /// as empty.
    pub fn open_resources(&self, pipeline: Option<&Path>, or_empty: bool) -> Result<StateStore, u8> {
        match self.location_for(pipeline) {
            StateLocation::Dir(dir) => Reach::resources(&dir, or_empty).map_err(state_error),
            shared @ StateLocation::Postgres(_) => {
                shared.open_read_only(std::time::Duration::ZERO, or_empty).map_err(state_error)
            }
        }
    }

    /// The state database, or the runner holding it (see `control`).
    pub fn reach(&self, pipeline: Option<&Path>) -> Result<Reach, u8> {
        match self.location_for(pipeline) {
            StateLocation::Dir(dir) => Reach::open(&dir).map_err(state_error),
            // Read directly, beside the processes that run; a run in
            // progress on this machine is asked, as for a directory.
            shared @ StateLocation::Postgres(_) => {
                shared.open_read_only(std::time::Duration::ZERO, false).map(Reach::shared).map_err(state_error)
            }
        }
    }
}

/// The default state directory: `.stackpipe` beside the pipeline file, or
/// in this directory.
fn default_dir(pipeline: Option<&Path>) -> PathBuf {
    match pipeline.and_then(Path::parent) {
        Some(p) if !p.as_os_str().is_empty() => p.join(".stackpipe"),
        _ => PathBuf::from(".stackpipe"),
    }
}

/// Prints a state error, with what to do about it; its exit code: 2 for a
/// state directory that cannot be used as it is (damaged, missing), 1 else.
pub fn state_error(e: stackpipe_runtime::state::StateError) -> u8 {
    use stackpipe_runtime::state::StateError;
    eprintln!("error: {e}");
    match &e {
        StateError::Damaged { path, .. } => {
            let dir = path.parent().map(|d| d.display().to_string()).unwrap_or_else(|| ".".into());
            eprintln!(
                "  nothing was written to it. `stackpipe state repair --state {dir}` copies it aside and recovers what it \
                 can (from the file, or from {}, the last good state)",
                stackpipe_runtime::state::BACKUP_FILE
            );
            EXIT_INVALID
        }
        StateError::Missing { dir } if dir.starts_with("postgres:") => {
            eprintln!("  nothing has been run with this database yet: a deploy makes its state");
            EXIT_INVALID
        }
        StateError::Missing { .. } => {
            eprintln!("  pass --state DIR, or run from the pipeline's directory");
            EXIT_INVALID
        }
        // Another process writes here: most often a run, in progress.
        StateError::Busy { holder: Some(owner), .. } if owner.run_id.is_some() => {
            let run = owner.run_id.as_deref().unwrap_or_default();
            eprintln!(
                "  run {run} is in progress (pid {}): `stackpipe status` shows what it does and waits for, `stackpipe \
                 approve` or `reject` decides a gate it waits at, `stackpipe cancel` stops it; run this again once it has \
                 ended",
                owner.pid
            );
            EXIT_FAILED
        }
        _ => EXIT_FAILED,
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        EXIT_FAILED
    })
}

pub fn host() -> Result<Arc<PluginHost>, u8> {
    PluginHost::new(ArtifactCache::from_env()).map(Arc::new).map_err(|e| {
        eprintln!("error: cannot start the plugin host: {e:#}");
        EXIT_FAILED
    })
}

/// `preflight`: for every node in every environment, the provisioner loads
/// and knows the type, `validate` accepts the attributes, credentials
/// resolve, policies load, and nothing is locked by another run. The report
/// `deploy` prints when it does not start; exit 2 when there is a problem.
pub fn preflight(a: RunArgs) -> Result<(), u8> {
    let rt = runtime()?;
    let host = host()?;
    let pipeline = rt.block_on(a.pipeline.load_checked(a.state.given_dir().as_deref(), &host, &a.sets))?;
    let store = Arc::new(a.remote.open_resources(&a.state, Some(&a.pipeline.file), true)?);
    let report =
        rt.block_on(stackpipe_runtime::run::preflight(&pipeline, Mode::Deploy, host, store, &a.plan_options())).map_err(run_error)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    }
    if report.passed() {
        if !a.json {
            print!("{}{report}", report.render_nodes());
        }
        return Ok(());
    }
    eprint!("error: {report}");
    Err(EXIT_INVALID)
}

/// `plan`: refresh and preview every node (or what `--target` takes); nothing
/// is applied. `--undeploy` (or `--orphans`): what an undeploy would destroy.
pub fn plan(a: PlanArgs) -> Result<(), u8> {
    let mode = if a.undeploy || a.run.orphans { Mode::PlanUndeploy } else { Mode::Plan };
    plan_like(a.run, mode)
}

fn plan_like(a: RunArgs, mode: Mode) -> Result<(), u8> {
    let rt = runtime()?;
    let host = host()?;
    let pipeline = rt.block_on(a.pipeline.load_checked(a.state.given_dir().as_deref(), &host, &a.sets))?;
    let store = Arc::new(a.remote.open_resources(&a.state, Some(&a.pipeline.file), true)?);
    let opts = a.plan_options();
    let (summary, failures) =
        rt.block_on(plan_once(&pipeline, mode, host, store, &opts, StopSignal::new())).map_err(run_error)?;
    report_plan(&summary, &failures, a.json, None);
    let failed: Vec<_> = summary.environments.iter().filter(|(_, s)| *s != Status::Succeeded).collect();
    if !failed.is_empty() {
        eprintln!("error: the plan could not be completed");
        return Err(EXIT_FAILED);
    }
    Ok(())
}

/// Prints a plan: the nodes that could not be planned (as errors), the
/// orphans (as warnings), then the plan as text (after what changed
/// `since` an earlier plan, for `watch`) or JSON.
pub fn report_plan(summary: &RunSummary, failures: &[String], json: bool, since: Option<&[PlannedChange]>) {
    for f in failures {
        eprintln!("error: {f}");
    }
    warn_orphans(summary);
    if json {
        println!("{}", plan_json(summary));
        return;
    }
    if let Some(taken) = describe_selection(summary) {
        println!("{taken}");
    }
    if let Some(last) = since {
        let diff = stackpipe_runtime::run::plan_text::render_plan_diff(last, &summary.planned);
        if diff.is_empty() {
            println!("since the last plan: no difference");
        } else {
            print!("since the last plan:\n{diff}");
        }
    }
    print!("{}", render_plan(summary, failures));
}

/// The plan as a JSON array, one object per node and environment.
pub fn plan_json(summary: &RunSummary) -> String {
    let doc = stackpipe_runtime::run::plan_text::plan_document(&summary.planned);
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Plans (or preflights) once: the summary and, for every node that
/// could not be planned, `env/node: why`. What plugins warn of while they
/// plan goes to stderr as it comes: `warning: env/node: plugin: text`.
pub async fn plan_once(
    pipeline: &LoadedPipeline,
    mode: Mode,
    host: Arc<PluginHost>,
    store: Arc<StateStore>,
    opts: &RunOptions,
    stop: StopSignal,
) -> Result<(RunSummary, Vec<String>), RunError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let failures = tokio::spawn(async move {
        let mut failures = Vec::new();
        while let Some(e) = rx.recv().await {
            match e {
                RunEvent::NodeFinished { environment, node, status: Status::Failed, error, .. } => {
                    failures.push(format!("{environment}/{node}: {}", error.unwrap_or_default()));
                }
                RunEvent::Log { environment, node, text, level, plugin, .. } if level >= LogLevel::Warn => {
                    let what = if level == LogLevel::Error { "error" } else { "warning" };
                    let from = plugin.map(|p| format!("{p}: ")).unwrap_or_default();
                    eprintln!("{what}: {environment}/{node}: {from}{text}");
                }
                _ => {}
            }
        }
        failures
    });
    let summary = execute(pipeline, mode, host, store, opts, Events::new(tx), stop).await?;
    Ok((summary, failures.await.unwrap_or_default()))
}

/// The plan as text; a plan some nodes could not finish says so instead
/// of claiming there is nothing to change.
pub fn render_plan(summary: &RunSummary, failures: &[String]) -> String {
    let why = match failures.len() {
        0 if summary.status == RunStatus::Succeeded => None,
        0 => Some("the plan was stopped before every resource was planned".to_string()),
        1 => Some("1 resource could not be planned (see the errors)".to_string()),
        n => Some(format!("{n} resources could not be planned (see the errors)")),
    };
    stackpipe_runtime::run::plan_text::render_plan(&summary.planned, why.as_deref())
}

/// `deploy` / `undeploy`: the pipeline file as it is now (run here, or
/// sent to the team server `--server` names and followed from here).
pub fn run(a: RunArgs, mode: Mode) -> Result<(), u8> {
    if let Some(client) = a.remote.client(&a.state)? {
        return crate::remote_run::deploy(a, mode, client);
    }
    let rt = runtime()?;
    let host = host()?;
    let pipeline = rt.block_on(a.pipeline.load_checked(a.state.given_dir().as_deref(), &host, &a.sets))?;
    let opts = a.run_options(None);
    run_loaded(&pipeline, a, mode, opts, &rt, host)
}

/// Runs `pipeline` as `opts` say (`deploy`, `undeploy`, or a `resume` /
/// `rerun` of a snapshot, whose `opts.source` is set): the whole run is
/// preflighted first, and nothing starts unless every node passes (exit 2).
fn run_loaded(
    pipeline: &LoadedPipeline,
    a: RunArgs,
    mode: Mode,
    mut opts: RunOptions,
    rt: &tokio::runtime::Runtime,
    host: Arc<PluginHost>,
) -> Result<(), u8> {
    let store = Arc::new(a.state.open(Some(&a.pipeline.file))?);
    rt.block_on(preflight_first(pipeline, mode, host.clone(), store.clone(), &mut opts, a.json))?;
    let slot = crate::progress::SocketSlot::default();
    let runners = RunnersOf::for_run(&a)?;
    let summary = rt.block_on(async move {
        let stop = StopSignal::new();
        tokio::spawn(watch_signals(
            stop.clone(),
            "\nstopping: operations in flight will finish; nothing new starts (Ctrl-C again to see this again)",
        ));
        let (tx, rx) = mpsc::unbounded_channel();
        let printer = tokio::spawn(crate::progress::print_events(rx, a.json, true, a.yes, crate::progress::Steer::Local(slot.clone())));
        let r = steered_run(pipeline, mode, host, store, &opts, Steering { events: Events::new(tx), stop }, &slot, runners).await;
        let _ = printer.await;
        r
    });
    finish(&summary?, a.json)
}

/// The whole run's preflight, before a deploy or an undeploy starts: when
/// a node fails it, the report (and with `json` a `preflight_failed`
/// line on stdout) and exit 2; nothing of the run is started or recorded.
/// The plugin components are read here, once, into `opts.source` (unless
/// a snapshot fixed them already): the run loads the very bytes its
/// preflight checked.
pub async fn preflight_first(
    pipeline: &LoadedPipeline,
    mode: Mode,
    host: Arc<PluginHost>,
    store: Arc<StateStore>,
    opts: &mut RunOptions,
    json: bool,
) -> Result<(), u8> {
    if opts.source.is_none() {
        opts.source = Some(Arc::new(RunSource::read(pipeline, mode, opts)));
    }
    let report = stackpipe_runtime::run::preflight(pipeline, mode, host, store, opts).await.map_err(run_error)?;
    if report.passed() {
        return Ok(());
    }
    if json {
        let line = serde_json::json!({ "event": "preflight_failed", "operation": report.operation, "problems": report.problems });
        println!("{line}");
    }
    eprint!("error: {report}");
    Err(EXIT_INVALID)
}

/// Runs `mode` (a deploy or an undeploy, which record) and serves its
/// control socket meanwhile: `status`, `logs --follow`, `approve`,
/// `reject` and `cancel` from other terminals. Errors are printed; the
/// exit code.
pub async fn steered_run(
    pipeline: &LoadedPipeline,
    mode: Mode,
    host: Arc<PluginHost>,
    store: Arc<StateStore>,
    opts: &RunOptions,
    steering: Steering,
    slot: &crate::progress::SocketSlot,
    runners: Option<RunnersOf>,
) -> Result<RunSummary, u8> {
    // Bound before anything of the run is recorded, its id included: if it
    // cannot be, the run ends here with nothing of it left in the state.
    // A state directory has the socket beside it; a run on a shared
    // database has it in a private directory of its own, for this
    // terminal (other terminals read the database).
    let private;
    let socket_dir = match store.dir() {
        Some(dir) => dir,
        None => {
            private = tempfile::Builder::new().prefix("stackpipe-run-").tempdir().map_err(|e| {
                eprintln!("error: cannot make a directory for the control socket: {e}");
                EXIT_FAILED
            })?;
            private.path()
        }
    };
    let socket = ControlSocket::bind(socket_dir).map_err(|e| {
        eprintln!("error: cannot serve the control socket: {e}");
        EXIT_FAILED
    })?;
    let _ = slot.set(socket.path().to_path_buf());
    // The control socket follows the run's events.
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = steering.stop.clone();
    let steering = Steering { events: steering.events.and(tx), stop: steering.stop };
    let path = Some(socket.path().to_path_buf());
    if let (Some(r), Some(id)) = (&runners, &opts.resume) {
        r.take_back(id).await?;
    }
    let run = Run::start(pipeline, mode, host.clone(), store.clone(), opts, steering, path).await.map_err(run_error)?;
    let control = run.gates().map(|gates| {
        let handles =
            RunHandles { run_id: run.id().to_string(), journal: run.journal().clone(), gates, cancels: run.cancels(), stop };
        ControlServer::start(socket, store.clone(), handles, rx)
    });
    // On a shared database, who cannot reach the socket posts to the database.
    let posted = match (&runners, &control) {
        (Some(r), Some(control)) => {
            let answering = stackpipe_runtime::control::answer_posted(store.clone(), r.queue.clone(), control.live());
            let task = tokio::spawn(answering);
            Some((AbortOnDrop(task.abort_handle()), task))
        }
        _ => None,
    };
    let summary = match runners {
        Some(r) if run.runners_can_work() => {
            let local = r.local.map(|mut o| {
                o.only_run = Some(run.id().to_string());
                Runner::new(store.clone(), r.queue.clone(), host, o)
            });
            run.on_runners(r.queue, local).await
        }
        _ => run.run_to_end().await,
    };
    if let Some(control) = control {
        // Followers get the last events before the socket goes away.
        control.finish().await;
    }
    if let Some((_abort, task)) = posted {
        // It answers what it took, then sees the run is over.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    summary.map_err(run_error)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Who works a run on a shared database: the runners of its job queue,
/// and this process as one of them unless `--no-local-runner`.
pub struct RunnersOf {
    queue: stackpipe_state_postgres::JobQueue,
    local: Option<RunnerOptions>,
}

impl RunnersOf {
    /// For a run with the state in PostgreSQL; None for a state directory.
    pub fn for_run(a: &RunArgs) -> Result<Option<RunnersOf>, u8> {
        let StateLocation::Postgres(url) = a.state.location_for(Some(&a.pipeline.file)) else {
            return Ok(None);
        };
        let queue = stackpipe_state_postgres::JobQueue::connect(&url).map_err(|e| {
            eprintln!("error: {e}");
            EXIT_FAILED
        })?;
        let local = (!a.no_local_runner).then(|| {
            let mut o = RunnerOptions::new(crate::runner_cmd::default_name());
            o.capacity = if a.parallelism == 0 { 1000 } else { a.parallelism };
            o.vars = a.pipeline.all_vars();
            o
        });
        Ok(Some(RunnersOf { queue, local }))
    }

    /// Before run `id` is resumed here: what is left of it in the queue
    /// (its owner is gone) is cancelled, and the jobs runners still run of
    /// it are waited for (at most a lease), so that nothing of it runs
    /// twice at once.
    async fn take_back(&self, id: &str) -> Result<(), u8> {
        let failed = |e: stackpipe_state_postgres::QueueError| {
            eprintln!("error: cannot take run {id} back from the job queue: {e}");
            EXIT_FAILED
        };
        self.queue.cancel_run(id).await.map_err(failed)?;
        let deadline = std::time::Instant::now() + stackpipe_runtime::run::RunnerOptions::new(String::new()).lease;
        loop {
            let counts = self.queue.counts(id, None).await.map_err(failed)?;
            if counts.claimed == 0 {
                break;
            }
            if std::time::Instant::now() >= deadline {
                // A lease is renewed while its runner lives: theirs are gone.
                break;
            }
            eprintln!("note: waiting for {} job(s) of run {id} that runners still run", counts.claimed);
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        self.queue.forget_run(id).await.map_err(failed)
    }
}

/// What an aimed plan takes, one environment a line; None for a plan of
/// the whole pipeline.
pub fn describe_selection(s: &RunSummary) -> Option<String> {
    if s.selected.is_empty() {
        return None;
    }
    let mut out = String::from("targeted: only these resources are planned; the others are left as they are");
    for (env, names) in &s.selected {
        let names = if names.is_empty() { "none".to_string() } else { names.join(", ") };
        out.push_str(&format!("\n  {env}: {names}"));
    }
    Some(out)
}

/// Prints why a run could not run or end; its exit code (a state that
/// cannot be used as it is: see [`state_error`]).
pub fn run_error(e: RunError) -> u8 {
    match e {
        RunError::State(e) => state_error(e),
        // What the user typed.
        e @ RunError::BadSet(..) => {
            eprintln!("error: {e}");
            EXIT_INVALID
        }
        RunError::Selection(e) => {
            eprintln!("error: {e}");
            if let SelectionError::UnknownTarget(t) = &*e {
                eprintln!("  help: {}", t.help);
            }
            EXIT_INVALID
        }
        e => {
            eprintln!("error: {e}");
            EXIT_FAILED
        }
    }
}

pub fn finish(s: &RunSummary, json: bool) -> Result<(), u8> {
    warn_orphans(s);
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

/// Resources deployed by this pipeline that it no longer declares: nothing
/// plans, refreshes or destroys them now, which a user must not learn late.
pub fn warn_orphans(s: &RunSummary) {
    for (env, name, type_name) in &s.orphans {
        eprintln!(
            "warning: {env}/{name} ({type_name}) is deployed but no longer in the pipeline: stackpipe leaves it as it is \
             (put it back in the pipeline to manage it, or destroy it with `stackpipe undeploy FILE --orphans`)"
        );
    }
}

/// Ctrl-C (or SIGTERM) once: stop (what is in flight finishes, nothing new
/// starts) and say `first`. Again: say that it is still finishing.
pub async fn watch_signals(stop: StopSignal, first: &'static str) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else { return };
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_err() { return },
            _ = term.recv() => {}
        }
        if stop.stop() {
            eprintln!("still finishing the operations in flight; stackpipe never abandons a half-applied resource");
        } else {
            eprintln!("{first}");
        }
    }
}

/// `resume RUN` / `rerun RUN`: the run's snapshot (its pipeline source,
/// vars, settings and plugin components), whatever has changed on disk
/// since; what changed is said. Sensitive vars are not in the state: they
/// are asked for again (`--var`, or `STACKPIPE_VAR_<name>`), and a resume
/// refuses a value other than the one the run was started with.
pub fn again(run_id: &str, state: &StateArgs, resume: bool, json: bool, given: &[(String, String)]) -> Result<(), u8> {
    let store = state.open_read_only(None, false)?;
    let Some(run) = store.run(run_id).map_err(state_error)?
    else {
        eprintln!("error: no run `{run_id}` in {}", state.location_for(None));
        return Err(EXIT_INVALID);
    };
    if resume && run.status == RunStatus::Succeeded {
        println!("run {run_id} already succeeded; nothing to resume");
        return Ok(());
    }
    let file = PathBuf::from(&run.file);
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let restored = match RunSource::restore(&store, &run, &base_dir) {
        Ok(restored) => Some(restored),
        Err(e @ SnapshotError::None { .. }) => {
            eprintln!("note: {e}: running {} as it is now", run.file);
            None
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Err(EXIT_INVALID);
        }
    };
    if restored.is_some() {
        if let Some((name, _)) = given.iter().find(|(k, _)| !run.sensitive_vars.iter().any(|s| &s.name == k)) {
            eprintln!(
                "error: `{name}` is part of run {run_id}'s snapshot, which a {} runs as it was: start a new run with \
                 `stackpipe deploy --var {name}=...` to change it",
                if resume { "resume" } else { "rerun" }
            );
            return Err(EXIT_INVALID);
        }
    }
    let mut vars = run.vars.clone();
    vars.retain(|(k, _)| !given.iter().any(|(g, _)| g == k));
    vars.extend(given.iter().filter(|(k, _)| !run.sensitive_vars.iter().any(|s| &s.name == k)).cloned());
    for secret in &run.sensitive_vars {
        let name = &secret.name;
        let value = match given.iter().find(|(k, _)| k == name) {
            Some((_, v)) => v.clone(),
            None => match crate::load::var_from_env(name) {
                Some(v) => v,
                None => {
                    eprintln!(
                        "error: run {run_id} was started with the sensitive var `{name}`, whose value is not kept in the state: \
                         give it again with --var {name}=... or the environment variable {}{name}",
                        crate::load::VAR_ENV_PREFIX
                    );
                    return Err(EXIT_INVALID);
                }
            },
        };
        match store.keyed_hash(name, &value) {
            Ok(h) if h == secret.hash => {}
            Ok(_) if resume => {
                eprintln!(
                    "error: the value given for the sensitive var `{name}` is not the one run {run_id} was started with; \
                     a resume continues the same run (start a new one with `stackpipe deploy`)"
                );
                return Err(EXIT_INVALID);
            }
            Ok(_) => eprintln!("note: the sensitive var `{name}` has another value than in run {run_id}"),
            Err(e) => eprintln!("warning: cannot check the sensitive var `{name}` against run {run_id}: {e}"),
        }
        eprintln!("note: the sensitive var `{name}` is taken from what you gave now (its value is never stored)");
        vars.push((name.clone(), value));
    }
    drop(store);
    let env = match &restored {
        Some((source, _)) => source.snapshot.environment.clone(),
        None if run.environments.len() == 1 => run.environments.first().cloned(),
        None => None,
    };
    let args = RunArgs {
        pipeline: PipelineArgs { file: file.clone(), env, vars: vars.clone(), max_file_size: None },
        sets: run.sets.clone(),
        parallelism: run.parallelism,
        state: StateArgs { location: Some(state.location.clone().unwrap_or_else(|| default_dir(None).display().to_string())) },
        message: run.message.clone(),
        json,
        yes: false,
        approve_env: Vec::new(),
        trigger: if resume { RunTrigger::Cli } else { RunTrigger::Rerun },
        rerun_of: (!resume).then(|| run_id.to_string()),
        targets: run.targets.clone(),
        orphans: run.orphans,
        remote: Default::default(),
        cancel_on_interrupt: false,
        no_local_runner: false,
    };
    let mode = if run.kind == RunKind::Undeploy { Mode::Undeploy } else { Mode::Deploy };
    let resume = resume.then(|| run_id.to_string());
    let rt = runtime()?;
    let host = host()?;
    let Some((source, drift)) = restored else {
        let pipeline = rt.block_on(args.pipeline.load_checked(args.state.given_dir().as_deref(), &host, &args.sets))?;
        let opts = args.run_options(resume);
        return run_loaded(&pipeline, args, mode, opts, &rt, host);
    };
    let doing = if resume.is_some() { "resuming" } else { "running again" };
    for d in &drift {
        eprintln!("note: {d} since run {run_id} started; {doing} the run's snapshot (`stackpipe show {run_id} --source` prints it)");
    }
    let snapshot = &source.snapshot;
    let Some(main) = snapshot.files.first() else {
        eprintln!("error: run {run_id}'s snapshot holds no pipeline source");
        return Err(EXIT_INVALID);
    };
    let compile = stackpipe_dsl::CompileOptions { vars: vars.clone(), env: snapshot.environment.clone(), require_values: true, ..Default::default() };
    let pipeline = stackpipe_runtime::pipeline::compile(Path::new(&main.path), main.text.clone(), compile)
        .and_then(|p| match args.state.given_dir() {
            Some(dir) => p.check_grants(&dir).map(|()| p),
            None if args.state.location.is_none() => p.check_grants(&default_dir(None)).map(|()| p),
            None => Ok(p),
        })
        .map_err(crate::load::report_load_error)?;
    let mut opts = args.run_options(resume);
    // Exactly the snapshot's vars (and the sensitive ones given again):
    // none from the environment that the run was not started with.
    opts.vars = vars;
    opts.sets = snapshot.sets.clone();
    let mode = if snapshot.operation == RunKind::Undeploy { Mode::Undeploy } else { Mode::Deploy };
    opts.source = Some(Arc::new(source));
    // Not checked against the schemas of the plugins on disk again: the
    // run's components are its snapshot's, and it was checked as it started.
    run_loaded(&pipeline, args, mode, opts, &rt, host)
}
