//! One node's work in one environment of a run: preflight, init, refresh,
//! preview, then apply (deploy) or destroy (undeploy). Every operation has a
//! status, start and end times and log lines, all recorded in the state
//! store through the run journal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use petgraph::graph::NodeIndex;
use serde_json::{json, Map, Value};
use stackpipe_dsl::ast::PluginKind;
use stackpipe_dsl::eval::{eval, EvalError, Scope};
use stackpipe_dsl::{EnvironmentPlan, FlowPolicy, PipelineGraph};
use tokio::sync::{watch, Mutex as AsyncMutex};

use super::events::{Events, RunEvent};
use super::gate::{GateOutcome, Gates};
use super::journal::RunJournal;
use super::scheduler::{NodeEnd, Slot};
use crate::secrets::{mask_keys, schema_sensitive, Secrets};
use crate::plugin::{change_name, CallContext, Change, Credential, LoadedPlugin, PluginHost, PolicyVerdict, ResourcePlan};
use crate::state::{
    now_ms, GateInfo, GateKind, JobInput, JobRecord, JournalEntry, JournalPhase, LogLine, OpRecord, ResourceKey,
    ResourceRecord, StateStore, Status, Write,
};

/// What a run does to each node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Deploy,
    Undeploy,
    /// Refresh and preview only; nothing is applied or written.
    Plan,
    /// Preflight and validation only; nothing is read, applied or written.
    Preflight,
}

impl Mode {
    /// Whether the run is recorded: a run record, locks, jobs, logs.
    pub fn records(self) -> bool {
        matches!(self, Mode::Deploy | Mode::Undeploy)
    }
}

/// An output not known until its resource is applied (plan mode).
pub const UNKNOWN: &str = "(known after apply)";

/// One node's planned change, for `stackpipe plan`.
#[derive(Debug, Clone)]
pub struct PlannedChange {
    pub environment: String,
    pub node: String,
    pub type_name: String,
    pub plan: ResourcePlan,
    pub policy: Option<String>,
}

/// What a provisioner says about its resource types, asked once per environment.
pub struct ProvisionerTypes {
    pub names: Vec<String>,
    /// Per type, the attributes and the outputs its schemas mark sensitive.
    pub sensitive: HashMap<String, (Vec<String>, Vec<String>)>,
    /// Per type, its input-file attributes (types without any are left out).
    pub inputs: HashMap<String, Vec<String>>,
}

/// What every stack job of one environment of a run shares.
pub struct EnvRun {
    pub run_id: String,
    pub graph: Arc<PipelineGraph>,
    pub env: EnvironmentPlan,
    pub mode: Mode,
    pub host: Arc<PluginHost>,
    pub store: Arc<StateStore>,
    pub journal: RunJournal,
    pub events: Events,
    /// Plugins of this environment (their config and grants can differ per environment), or why one did not load.
    /// Set once, when `run_environment` has loaded them.
    pub plugins: OnceLock<HashMap<String, Result<Arc<LoadedPlugin>, String>>>,
    pub message: Option<String>,
    /// `--set r.a=v`, parsed.
    pub sets: Vec<(String, String, Value)>,
    /// Outputs of this environment's resources, as they become known.
    pub outputs: RwLock<HashMap<String, Value>>,
    pub planned: Mutex<Vec<PlannedChange>>,
    /// Resumed run: nodes whose apply was in flight when the run stopped.
    pub in_flight: RwLock<std::collections::HashSet<String>>,
    /// The stored records of this environment's resources when it started:
    /// each job takes its own as it starts (one read for the environment,
    /// not one per node).
    prior: Mutex<HashMap<String, ResourceRecord>>,
    /// Deployed resources (name, type) of this environment that are no
    /// longer in the pipeline: nothing manages them any more.
    pub orphans: Vec<(String, String)>,
    /// The run's gates; None in a plan or a preflight, which never wait.
    pub gates: Option<Arc<Gates>>,
    /// Ctrl-C or `stackpipe cancel`: ends waits at gates.
    pub stop: watch::Receiver<bool>,
    types: AsyncMutex<HashMap<String, Result<Arc<ProvisionerTypes>, String>>>,
    /// Files the provisioners read, named by input-file attributes (see
    /// [`crate::plugin::INPUT_FILE_FORMAT`]), as the attributes give them.
    pub inputs: Mutex<std::collections::BTreeSet<String>>,
    credentials: AsyncMutex<HashMap<String, Result<Option<Credential>, String>>>,
    /// Secret values seen so far: sensitive vars, credentials, secret
    /// attributes. Masked out of every log line and message.
    pub secrets: Secrets,
}

impl EnvRun {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run_id: String,
        graph: Arc<PipelineGraph>,
        env: EnvironmentPlan,
        mode: Mode,
        host: Arc<PluginHost>,
        store: Arc<StateStore>,
        journal: RunJournal,
        events: Events,
        message: Option<String>,
        sets: Vec<(String, String, Value)>,
        gates: Option<Arc<Gates>>,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, crate::state::StateError> {
        // What the environment's resources were when it starts: read whole,
        // or the environment does not start (a state it cannot read would
        // hide orphans and make every resource look new).
        let prior: HashMap<String, ResourceRecord> = store
            .resources(&graph.name, Some(&env.name))?
            .into_iter()
            .map(|(k, r)| (k.resource, r))
            .collect();
        let mut orphans: Vec<(String, String)> = prior
            .iter()
            .filter(|(name, _)| graph.find(name).is_none())
            .map(|(name, r)| (name.clone(), format!("{}.{}", r.plugin, r.kind)))
            .collect();
        orphans.sort();
        let secrets = Secrets::new();
        for name in &graph.sensitive_vars {
            if let Some(v) = env.vars.get(name) {
                secrets.add_value(v);
            }
        }
        Ok(EnvRun {
            prior: Mutex::new(prior),
            orphans,
            run_id,
            graph,
            env,
            mode,
            host,
            store,
            journal,
            events,
            plugins: OnceLock::new(),
            message,
            sets,
            outputs: RwLock::new(HashMap::new()),
            planned: Mutex::new(Vec::new()),
            in_flight: RwLock::new(Default::default()),
            gates,
            stop,
            types: AsyncMutex::new(HashMap::new()),
            inputs: Mutex::new(Default::default()),
            credentials: AsyncMutex::new(HashMap::new()),
            secrets,
        })
    }

    pub fn key(&self, node: &str) -> ResourceKey {
        ResourceKey::new(&self.graph.name, &self.env.name, node)
    }

    /// The stored record of `node` as the environment started (see `prior`).
    fn take_prior(&self, node: &str) -> Result<Option<ResourceRecord>, crate::state::StateError> {
        match self.prior.lock() {
            Ok(mut p) => Ok(p.remove(node)),
            Err(_) => self.store.resource(&self.key(node)),
        }
    }

    /// Waits at a gate of this environment (parking `slot` meanwhile). A
    /// run without gates (plan, preflight) goes straight through.
    pub async fn wait_at(&self, gate: GateInfo, slot: Option<&Slot>) -> GateOutcome {
        let Some(gates) = &self.gates else {
            return GateOutcome::Approved;
        };
        let wait = gates.wait(gate, self.stop.clone());
        match slot {
            Some(slot) => slot.parked(wait).await,
            None => wait.await,
        }
    }

    /// A gate of this environment, opening now.
    pub fn gate(&self, kind: GateKind, node: Option<&str>, reason: String, detail: Option<String>) -> GateInfo {
        GateInfo {
            kind,
            environment: self.env.name.clone(),
            node: node.map(str::to_string),
            reason,
            detail,
            since_ms: now_ms(),
        }
    }

    fn context(&self, node: &str) -> CallContext {
        CallContext {
            pipeline: self.graph.name.clone(),
            environment: self.env.name.clone(),
            resource: node.into(),
            run_id: self.run_id.clone(),
        }
    }

    fn plugin(&self, name: &str) -> Result<Arc<LoadedPlugin>, String> {
        match self.plugins.get().and_then(|p| p.get(name)) {
            Some(Ok(p)) => Ok(p.clone()),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("plugin `{name}` is not declared")),
        }
    }

    async fn types_of(&self, plugin: &Arc<LoadedPlugin>) -> Result<Arc<ProvisionerTypes>, String> {
        let mut cache = self.types.lock().await;
        if let Some(t) = cache.get(plugin.name()) {
            return t.clone();
        }
        let t = plugin
            .resource_types(&self.host)
            .await
            .map(|ts| {
                Arc::new(ProvisionerTypes {
                    sensitive: ts
                        .iter()
                        .map(|t| (t.name.clone(), (schema_sensitive(&t.attributes_schema), schema_sensitive(&t.outputs_schema))))
                        .collect(),
                    inputs: ts
                        .iter()
                        .map(|t| (t.name.clone(), crate::plugin::input_file_attributes(&t.attributes_schema)))
                        .filter(|(_, a)| !a.is_empty())
                        .collect(),
                    names: ts.into_iter().map(|t| t.name).collect(),
                })
            })
            .map_err(|e| e.to_string());
        cache.insert(plugin.name().to_string(), t.clone());
        t
    }

    /// Keeps the files `desired` names in its input-file attributes.
    fn note_inputs(&self, attributes: Option<&Vec<String>>, desired: &Value) {
        let Some(attributes) = attributes else { return };
        let Ok(mut inputs) = self.inputs.lock() else {
            return;
        };
        for a in attributes {
            match desired.get(a) {
                Some(Value::String(s)) => {
                    inputs.insert(s.clone());
                }
                Some(Value::Array(items)) => inputs.extend(items.iter().filter_map(Value::as_str).map(str::to_string)),
                _ => {}
            }
        }
    }

    /// The credential for provisioner `plugin`, resolved once per environment.
    async fn credential(&self, plugin: &str) -> Result<Option<Credential>, String> {
        let mut cache = self.credentials.lock().await;
        if let Some(c) = cache.get(plugin) {
            return c.clone();
        }
        let c = self.resolve_credential(plugin).await;
        cache.insert(plugin.to_string(), c.clone());
        c
    }

    async fn resolve_credential(&self, plugin: &str) -> Result<Option<Credential>, String> {
        let Some(binding) = self.env.credentials.get(plugin) else {
            return Ok(None);
        };
        let resolver = self
            .plugin(&binding.resolver)
            .map_err(|e| format!("credentials for `{plugin}`: resolver `{}`: {e}", binding.resolver))?;
        let cred = resolver
            .resolve(&self.host, &self.context(""), plugin, &binding.config)
            .await
            .map_err(|e| format!("credentials for `{plugin}`: {e}"))?;
        for (_, value) in &cred.fields {
            self.secrets.add(value);
        }
        if let Some(at) = cred.expires_at {
            if at <= now_ms() / 1000 {
                return Err(format!(
                    "credentials for `{plugin}` from resolver `{}` expired at {at} (unix seconds)",
                    binding.resolver
                ));
            }
        }
        Ok(Some(cred))
    }

    /// The node's attributes with upstream outputs filled in and `--set` applied.
    fn resolve_attributes(&self, i: NodeIndex) -> Result<Value, String> {
        let node = self.graph.node(i);
        let outputs = self.outputs.read().map_err(|_| "outputs lock poisoned".to_string())?;
        let lookup = |r: &str| outputs.get(r);
        let scope = Scope { pipeline: &self.graph.name, environment: &self.env.name, vars: &self.env.vars, outputs: &lookup };
        let mut attrs = Map::new();
        for a in &node.attributes {
            let key = a.key.name.clone();
            if key == "depends_on" {
                continue;
            }
            let v = match eval(&a.value, &scope) {
                Ok(v) => v,
                Err(EvalError::Unknown { resource }) if !self.mode.records() => {
                    let _ = resource;
                    Value::String(UNKNOWN.into())
                }
                Err(EvalError::Unknown { resource }) => {
                    return Err(format!("`{key}` needs an output of `{resource}`, which has none yet"))
                }
                Err(EvalError::Invalid(d)) => return Err(format!("`{key}`: {}", d.message)),
            };
            attrs.insert(key.to_string(), v);
        }
        for (r, a, v) in &self.sets {
            if r == &node.name {
                attrs.insert(a.clone(), v.clone());
            }
        }
        Ok(Value::Object(attrs))
    }
}

/// Why a stack job stopped short of its last operation.
#[derive(Debug)]
enum Halt {
    /// The operation failed with this message.
    Failed(&'static str, String),
    /// Someone rejected the gate before this operation.
    Rejected(&'static str, String),
    /// The run was stopped while this operation waited at a gate.
    Cancelled(&'static str),
}

impl From<(&'static str, String)> for Halt {
    fn from((op, message): (&'static str, String)) -> Halt {
        Halt::Failed(op, message)
    }
}

/// The stack job of one node.
pub struct StackJob {
    env: Arc<EnvRun>,
    index: NodeIndex,
    record: JobRecord,
    started: std::time::Instant,
    /// Whether apply called the plugin.
    apply_called: bool,
    /// Whether this run changed the resource: applied it, or adopted what
    /// an interrupted apply of this run created.
    changed: bool,
    /// Its share of the run's parallelism, parked while it waits at a gate.
    slot: Option<Slot>,
    /// The node's secret attributes (see [`StackJob::sensitive_keys`]),
    /// grown by what its plan marks sensitive.
    sensitive: Vec<String>,
    /// The outputs its type's schema marks sensitive.
    sensitive_outputs: Vec<String>,
}

/// A stack job's operations, in order.
pub const DEPLOY_OPS: [&str; 5] = ["preflight", "init", "refresh", "preview", "apply"];
pub const UNDEPLOY_OPS: [&str; 5] = ["preflight", "init", "refresh", "preview", "destroy"];

impl StackJob {
    pub fn new(env: Arc<EnvRun>, index: NodeIndex) -> Self {
        let node = env.graph.node(index);
        let ops = if env.mode == Mode::Undeploy { UNDEPLOY_OPS } else { DEPLOY_OPS };
        let record = JobRecord {
            run_id: env.run_id.clone(),
            environment: env.env.name.clone(),
            node: node.name.clone(),
            level: node.level,
            status: Status::Queued,
            started_ms: None,
            finished_ms: None,
            ops: ops
                .iter()
                .map(|o| OpRecord { name: (*o).into(), status: Status::Queued, started_ms: None, finished_ms: None, message: None })
                .collect(),
            input: None,
            change: None,
            error: None,
        };
        StackJob {
            env,
            index,
            record,
            started: std::time::Instant::now(),
            apply_called: false,
            changed: false,
            slot: None,
            sensitive: Vec::new(),
            sensitive_outputs: Vec::new(),
        }
    }

    /// A job for a node that never started: `Cancelled` (a dependency
    /// failed, or the run stopped) or `Skipped` (a gate before it was rejected).
    pub fn unstarted(env: Arc<EnvRun>, index: NodeIndex, status: Status, why: &str) -> JobRecord {
        let mut job = StackJob::new(env, index);
        for op in &mut job.record.ops {
            op.status = status;
        }
        job.record.status = status;
        job.record.error = Some(why.into());
        job.record
    }

    fn name(&self) -> &str {
        &self.record.node
    }

    fn log(&self, op: &'static str, text: String) {
        let env = &self.env;
        let text = env.secrets.redact(&text);
        env.events.send_with(|| RunEvent::Log {
            environment: env.env.name.clone(),
            node: self.name().into(),
            op: op.into(),
            text: text.clone(),
        });
        if env.mode.records() {
            let line = LogLine { ms: now_ms(), environment: env.env.name.clone(), node: self.name().into(), op: op.into(), text };
            env.journal.record(Write::Log(line, env.run_id.clone()));
        }
    }

    fn op_index(&self, op: &str) -> usize {
        self.record.ops.iter().position(|o| o.name == op).unwrap_or(0)
    }

    fn begin(&mut self, op: &'static str) {
        let i = self.op_index(op);
        self.record.ops[i].status = Status::Running;
        self.record.ops[i].started_ms = Some(now_ms());
        let env = &self.env;
        env.events.send_with(|| RunEvent::OpStarted { environment: env.env.name.clone(), node: self.name().into(), op: op.into() });
    }

    fn end(&mut self, op: &'static str, status: Status, message: Option<String>) {
        let message = message.map(|m| self.env.secrets.redact(&m));
        let i = self.op_index(op);
        let now = now_ms();
        let o = &mut self.record.ops[i];
        if o.started_ms.is_none() && status != Status::Skipped {
            o.started_ms = Some(now);
        }
        o.status = status;
        o.finished_ms = Some(now);
        o.message = message;
        let ms = o.started_ms.map(|s| now.saturating_sub(s)).unwrap_or(0);
        let env = &self.env;
        env.events.send_with(|| RunEvent::OpFinished {
            environment: env.env.name.clone(),
            node: self.name().into(),
            op: op.into(),
            status,
            ms,
            message: self.record.ops[i].message.clone(),
        });
    }

    fn skip(&mut self, op: &'static str, why: &str) {
        self.end(op, Status::Skipped, Some(why.into()));
    }

    /// Runs every operation in `slot`; how the node ended, and whether it
    /// changed anything (a node gate has nothing new to show when it did not).
    pub async fn run(mut self, slot: Slot) -> (NodeEnd, bool) {
        self.slot = Some(slot);
        self.record.status = Status::Running;
        self.record.started_ms = Some(now_ms());
        // The job is stored when it ends; while it runs, its operations are
        // reported as events, and the journal's intent marks it in flight.
        let result = match self.env.mode {
            Mode::Deploy | Mode::Plan | Mode::Preflight => self.deploy().await,
            Mode::Undeploy => self.undeploy().await,
        };
        let ops = if self.env.mode == Mode::Undeploy { UNDEPLOY_OPS } else { DEPLOY_OPS };
        let (status, end) = match result {
            Ok(()) => (Status::Succeeded, NodeEnd::Succeeded),
            Err(Halt::Failed(op, message)) => {
                let message = self.env.secrets.redact(&message);
                self.end(op, Status::Failed, Some(message.clone()));
                self.end_remaining(ops, Status::Skipped, &format!("{op} failed"));
                self.record.error = Some(message);
                (Status::Failed, NodeEnd::Failed)
            }
            Err(Halt::Rejected(op, why)) => {
                self.end(op, Status::Skipped, Some(why.clone()));
                self.end_remaining(ops, Status::Skipped, &why);
                self.record.error = Some(why);
                (Status::Skipped, NodeEnd::Rejected)
            }
            Err(Halt::Cancelled(op)) => {
                let why = "the run was cancelled while it waited for approval";
                self.end(op, Status::Cancelled, Some(why.into()));
                self.end_remaining(ops, Status::Cancelled, why);
                self.record.error = Some(why.into());
                (Status::Cancelled, NodeEnd::StoppedAtGate)
            }
        };
        self.record.status = status;
        self.record.finished_ms = Some(now_ms());
        let env = &self.env;
        let finished = env.events.listening().then(|| RunEvent::NodeFinished {
            environment: env.env.name.clone(),
            node: self.record.node.clone(),
            status: self.record.status,
            change: self.record.change.clone(),
            ms: self.started.elapsed().as_millis() as u64,
            error: self.record.error.clone(),
        });
        let changed = self.changed || self.apply_called;
        // The job is stored once, as it ended, before anyone hears it ended.
        if env.mode.records() {
            env.journal.record(Write::PutJob(self.record));
        }
        if let Some(e) = finished {
            env.events.send(e);
        }
        (end, changed)
    }

    fn end_remaining(&mut self, ops: [&'static str; 5], status: Status, why: &str) {
        for o in ops {
            if self.record.ops[self.op_index(o)].status == Status::Queued {
                self.end(o, status, Some(why.into()));
            }
        }
    }

    /// Holds `op` (apply or destroy) at a gate until someone decides.
    async fn approval(&mut self, op: &'static str, kind: GateKind, reason: String, detail: String) -> Result<(), Halt> {
        let env = self.env.clone();
        let gate = env.gate(kind, Some(self.name()), reason, Some(detail));
        self.log("preview", format!("waiting for approval before {op}: {}", gate.reason));
        self.record.status = Status::Waiting;
        let outcome = env.wait_at(gate, self.slot.as_ref()).await;
        self.record.status = Status::Running;
        match outcome {
            GateOutcome::Approved => Ok(()),
            GateOutcome::Rejected(d) => Err(Halt::Rejected(
                op,
                format!("rejected by {}{}", d.by, d.comment.map(|c| format!(": {c}")).unwrap_or_default()),
            )),
            GateOutcome::Cancelled => Err(Halt::Cancelled(op)),
        }
    }

    /// The gate between preview and apply|destroy, if the policies or the
    /// flow policy ask for one.
    async fn gate_before(&mut self, op: &'static str, flow: &FlowPolicy, plan: &PlannedChange) -> Result<(), Halt> {
        if let Some(reason) = &plan.policy {
            let detail = super::plan_text::render_change(plan);
            return self.approval(op, GateKind::Policy, reason.clone(), detail).await;
        }
        if flow.pause_before_apply {
            let detail = super::plan_text::render_change(plan);
            return self.approval(op, GateKind::PauseBeforeApply, format!("pause_before_apply: review the plan before {op}"), detail).await;
        }
        Ok(())
    }

    /// Preflight: the provisioner (loads, knows the type), the credentials,
    /// the state (this run holds the lock) and the flow policy.
    async fn preflight(
        &mut self,
    ) -> Result<(Arc<LoadedPlugin>, Arc<ProvisionerTypes>, Option<Credential>, FlowPolicy), (&'static str, String)> {
        self.begin("preflight");
        let graph = self.env.graph.clone();
        let node = graph.node(self.index);
        let fail = |m: String| ("preflight", m);
        let plugin = self.env.plugin(&node.plugin).map_err(|e| fail(format!("provisioner: {e}")))?;
        if plugin.kind() != PluginKind::Provisioner {
            return Err(fail(format!("provisioner: `{}` is a {} plugin", node.plugin, plugin.kind().name())));
        }
        let types = self.env.types_of(&plugin).await.map_err(|e| fail(format!("provisioner: {e}")))?;
        if !types.names.contains(&node.kind) {
            return Err(fail(format!(
                "provisioner `{}` has no resource type `{}` (it has: {})",
                node.plugin,
                node.kind,
                types.names.join(", ")
            )));
        }
        let cred = self.env.credential(&node.plugin).await.map_err(fail)?;
        let flow = self.env.env.flow_of(self.index);
        self.log(
            "preflight",
            format!(
                "provisioner {} ({}), credentials {}, flow refresh={} preview={} pause_before_apply={}",
                node.plugin,
                &plugin.digest()[..12],
                if cred.is_some() { "resolved" } else { "none" },
                flow.refresh,
                flow.preview,
                flow.pause_before_apply
            ),
        );
        self.end("preflight", Status::Succeeded, None);
        Ok((plugin, types, cred, flow))
    }

    async fn deploy(&mut self) -> Result<(), Halt> {
        let outcome = self.deploy_steps().await;
        if self.env.mode == Mode::Deploy && !self.apply_called {
            // The environment's plan of applies (see `run_environment`)
            // included this node; it never reached the plugin.
            self.env.journal.record(Write::Journal(self.journal_entry("apply", JournalPhase::Withdrawn)));
        }
        outcome
    }

    async fn deploy_steps(&mut self) -> Result<(), Halt> {
        let (plugin, types, cred, flow) = self.preflight().await?;
        let env = self.env.clone();
        let graph = env.graph.clone();
        let node = graph.node(self.index);
        let ctx = env.context(&node.name);
        let key = env.key(&node.name);

        // init: one instance for the whole job; resolve the attributes,
        // validate them, snapshot the input.
        self.begin("init");
        let mut session = plugin.session(&env.host).await.map_err(|e| ("init", e.to_string()))?;
        let desired = env.resolve_attributes(self.index).map_err(|e| ("init", e))?;
        env.note_inputs(types.inputs.get(&node.kind), &desired);
        let problems = session.validate(&ctx, &node.kind, &desired).await.map_err(|e| ("init", e.to_string()))?;
        if !problems.is_empty() {
            let text = problems
                .iter()
                .map(|d| match &d.attribute {
                    Some(a) => format!("`{a}`: {}", d.message),
                    None => d.message.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Halt::Failed("init", format!("{} rejects the attributes: {text}", node.type_name())));
        }
        let prior = env.take_prior(&node.name).map_err(|e| ("init", e.to_string()))?;
        self.sensitive_keys(node, &types, prior.as_ref(), &desired);
        self.record.input = Some(JobInput {
            attributes: mask_keys(&desired, &self.sensitive),
            plugin: node.plugin.clone(),
            plugin_digest: plugin.digest().to_string(),
            kind: node.kind.clone(),
            flow: json!({ "refresh": flow.refresh, "preview": flow.preview, "pause_before_apply": flow.pause_before_apply }),
            message: env.message.clone(),
        });
        self.end("init", Status::Succeeded, None);
        if env.mode == Mode::Preflight {
            // Published as unknown, so dependents' attributes still resolve.
            for op in ["refresh", "preview", "apply"] {
                self.skip(op, "preflight only");
            }
            return Ok(());
        }

        // An apply of this node was in flight when this run stopped, and its
        // result never reached the state: ask the provisioner what it created.
        let mut prior = prior;
        let in_flight = env.in_flight.read().map(|f| f.contains(&node.name)).unwrap_or(false);
        let recovering = in_flight && prior.is_none();
        if recovering {
            self.begin("refresh");
            match session.read(&ctx, &node.kind, None, &desired, cred.as_ref()).await {
                Ok(Some(found)) => {
                    self.log("refresh", "found what the interrupted apply created; adopting it".into());
                    self.changed = true;
                    let record = self.record_of(node, found.state, found.outputs, &desired);
                    env.journal
                        .record_all_durably(vec![
                            Write::PutResource(key.clone(), record.clone()),
                            Write::Journal(self.journal_entry("apply", JournalPhase::Done)),
                        ])
                        .await
                        .map_err(|e| ("refresh", e.to_string()))?;
                    prior = Some(record);
                }
                Ok(None) => self.log("refresh", "the interrupted apply created nothing; applying".into()),
                Err(e) => return Err(Halt::Failed("refresh", e.to_string())),
            }
            self.end("refresh", Status::Succeeded, None);
        }

        // refresh: what is really there now.
        let mut prior_state = prior.as_ref().map(|r| r.state.clone());
        let mut prior_outputs = prior.as_ref().map(|r| r.outputs.clone());
        if recovering {
            // Refreshed above.
        } else if !flow.refresh {
            self.skip("refresh", "flow policy: refresh = false");
        } else if let Some(state) = prior_state.clone() {
            self.begin("refresh");
            match session.read(&ctx, &node.kind, Some(&state), &desired, cred.as_ref()).await {
                Ok(Some(now)) => {
                    prior_state = Some(now.state);
                    prior_outputs = Some(now.outputs);
                }
                Ok(None) => {
                    self.log("refresh", "the resource is gone (deleted outside stackpipe); it will be created".into());
                    prior_state = None;
                    prior_outputs = None;
                }
                Err(e) => return Err(Halt::Failed("refresh", e.to_string())),
            }
            self.end("refresh", Status::Succeeded, None);
        } else {
            self.skip("refresh", "not deployed yet");
        }

        // preview: what apply would do; policies judge it.
        let planned = |plan: ResourcePlan, policy: Option<String>| PlannedChange {
            environment: env.env.name.clone(),
            node: node.name.clone(),
            type_name: node.type_name(),
            plan,
            policy,
        };
        let planned = if flow.preview || env.mode == Mode::Plan {
            self.begin("preview");
            let mut plan = session
                .plan(&ctx, &node.kind, prior_state.as_ref(), &desired, cred.as_ref())
                .await
                .map_err(|e| ("preview", e.to_string()))?;
            self.mark_sensitive(&mut plan, &desired);
            let policy = self.policies(node, &plan, &desired).await?;
            self.log("preview", format!("{} ({} attribute change(s))", change_name(plan.change), plan.changes.len()));
            let planned = planned(plan, policy);
            if env.mode == Mode::Plan {
                env.planned.lock().map_err(|_| ("preview", "lock poisoned".to_string()))?.push(planned.clone());
            }
            self.end("preview", Status::Succeeded, None);
            planned
        } else {
            self.skip("preview", "flow policy: preview = false");
            let change = if prior_state.is_some() { Change::Update } else { Change::Create };
            planned(ResourcePlan { change, changes: Vec::new() }, None)
        };
        let change = planned.plan.change;
        self.record.change = Some(change_name(change).into());

        if env.mode == Mode::Plan {
            // Outputs of what exists are known; of what would be created or replaced, not.
            let outputs = match (&prior_outputs, change) {
                (Some(o), Change::NoOp | Change::Update) => o.clone(),
                _ => json!({}),
            };
            self.publish_outputs(&node.name, outputs, change != Change::NoOp && change != Change::Update);
            self.skip("apply", "plan only");
            return Ok(());
        }
        if change == Change::NoOp {
            let outputs = prior_outputs.unwrap_or_else(|| json!({}));
            self.publish_outputs(&node.name, outputs, false);
            self.skip("apply", "no changes");
            return Ok(());
        }
        self.gate_before("apply", &flow, &planned).await?;

        // apply: this node's intent has been on disk since the environment
        // started (`JournalPhase::Planned`); `Started` only narrows it down.
        self.begin("apply");
        self.apply_called = true;
        env.journal.record(Write::Journal(self.journal_entry("apply", JournalPhase::Started)));
        let applied = match session.apply(&ctx, &node.kind, prior_state.as_ref(), &desired, cred.as_ref()).await {
            Ok(a) => a,
            Err(e) => {
                env.journal.record(Write::Journal(self.journal_entry("apply", JournalPhase::Failed)));
                return Err(Halt::Failed("apply", e.to_string()));
            }
        };
        let record = self.record_of(node, applied.state, applied.outputs.clone(), &desired);
        // Not waited for: the journal puts it on disk within
        // `DURABLE_EVERY`. A crash before then leaves this node `Planned` or
        // `Started`, and `resume` asks the provisioner what it created
        // (`read` without a state) rather than applying again.
        env.journal.record_all(vec![
            Write::PutResource(key, record),
            Write::Journal(self.journal_entry("apply", JournalPhase::Done)),
        ]);
        self.publish_outputs(&node.name, applied.outputs, false);
        self.end("apply", Status::Succeeded, None);
        Ok(())
    }

    /// Makes a node's outputs visible to its dependents. In a plan, the
    /// outputs of a resource to be created or replaced are not known: they
    /// stay out, so references to them evaluate as unknown.
    fn publish_outputs(&self, node: &str, outputs: Value, unknown: bool) {
        if unknown {
            return;
        }
        if let Ok(mut o) = self.env.outputs.write() {
            o.insert(node.to_string(), outputs);
        }
    }

    /// Every policy plugin of the environment judges the planned change.
    /// `Some(reason)` when a policy requires approval before the change.
    async fn policies(
        &mut self,
        node: &stackpipe_dsl::ResourceNode,
        plan: &ResourcePlan,
        attributes: &Value,
    ) -> Result<Option<String>, (&'static str, String)> {
        let env = self.env.clone();
        if !env.env.plugins.values().any(|p| p.kind == PluginKind::Policy) {
            return Ok(None);
        }
        let mut approvals = Vec::new();
        let hidden = |v: &Option<String>, sensitive: bool| match v {
            Some(_) if sensitive => json!("(sensitive)"),
            other => json!(other),
        };
        // Policies see what a reviewer would: secrets masked.
        let input = json!({
            "resource": node.name,
            "type": node.type_name(),
            "change": change_name(plan.change),
            "changes": plan.changes.iter().map(|c| json!({
                "path": c.path,
                "before": hidden(&c.before, c.sensitive),
                "after": hidden(&c.after, c.sensitive),
                "sensitive": c.sensitive,
                "forces_replacement": c.forces_replacement,
            })).collect::<Vec<_>>(),
            "attributes": mask_keys(attributes, &self.sensitive),
            "environment": env.env.name,
        });
        for (name, spec) in &env.env.plugins {
            if spec.kind != PluginKind::Policy {
                continue;
            }
            let policy = env.plugin(name).map_err(|e| ("preview", format!("policy `{name}`: {e}")))?;
            match policy.evaluate(&env.host, &env.context(&node.name), &input).await.map_err(|e| ("preview", e.to_string()))? {
                PolicyVerdict::Allow => {}
                PolicyVerdict::Deny(reason) => return Err(("preview", format!("denied by policy `{name}`: {reason}"))),
                PolicyVerdict::RequireApproval(reason) => {
                    approvals.push(format!("policy `{name}` requires approval: {reason}"));
                }
            }
        }
        Ok((!approvals.is_empty()).then(|| approvals.join("; ")))
    }

    async fn undeploy(&mut self) -> Result<(), Halt> {
        let env = self.env.clone();
        let graph = env.graph.clone();
        let node = graph.node(self.index);
        let key = env.key(&node.name);
        let Some(prior) = env.take_prior(&node.name).map_err(|e| ("preflight", e.to_string()))? else {
            for op in UNDEPLOY_OPS {
                self.skip(op, "not deployed");
            }
            self.record.change = Some("no-op".into());
            return Ok(());
        };
        let (plugin, _, cred, flow) = self.preflight().await?;
        let ctx = env.context(&node.name);
        self.begin("init");
        self.record.input = Some(JobInput {
            attributes: prior.attributes.clone(),
            plugin: node.plugin.clone(),
            plugin_digest: plugin.digest().to_string(),
            kind: node.kind.clone(),
            flow: json!({ "refresh": flow.refresh, "preview": flow.preview, "pause_before_apply": flow.pause_before_apply }),
            message: env.message.clone(),
        });
        self.end("init", Status::Succeeded, None);
        let mut session = plugin.session(&env.host).await.map_err(|e| ("init", e.to_string()))?;
        let mut state = prior.state.clone();
        if flow.refresh {
            self.begin("refresh");
            match session.read(&ctx, &node.kind, Some(&state), &prior.attributes, cred.as_ref()).await {
                Ok(Some(now)) => state = now.state,
                Ok(None) => {
                    self.end("refresh", Status::Succeeded, None);
                    self.log("refresh", "already gone; forgetting it".into());
                    self.skip("preview", "already gone");
                    self.skip("destroy", "already gone");
                    env.journal.record_durably(Write::DeleteResource(key)).await.map_err(|e| ("refresh", e.to_string()))?;
                    self.record.change = Some("delete".into());
                    return Ok(());
                }
                Err(e) => return Err(Halt::Failed("refresh", e.to_string())),
            }
            self.end("refresh", Status::Succeeded, None);
        } else {
            self.skip("refresh", "flow policy: refresh = false");
        }
        self.begin("preview");
        let plan = ResourcePlan { change: Change::Delete, changes: Vec::new() };
        let policy = self.policies(node, &plan, &prior.attributes).await?;
        self.end("preview", Status::Succeeded, None);
        self.record.change = Some("delete".into());
        let planned =
            PlannedChange { environment: env.env.name.clone(), node: node.name.clone(), type_name: node.type_name(), plan, policy };
        self.gate_before("destroy", &flow, &planned).await?;

        self.begin("destroy");
        env.journal
            .record_durably(Write::Journal(self.journal_entry("destroy", JournalPhase::Started)))
            .await
            .map_err(|e| ("destroy", e.to_string()))?;
        if let Err(e) = session.destroy(&ctx, &node.kind, &state, cred.as_ref()).await {
            env.journal.record(Write::Journal(self.journal_entry("destroy", JournalPhase::Failed)));
            return Err(Halt::Failed("destroy", e.to_string()));
        }
        env.journal
            .record_all_durably(vec![
                Write::DeleteResource(key),
                Write::Journal(self.journal_entry("destroy", JournalPhase::Done)),
            ])
            .await
            .map_err(|e| ("destroy", e.to_string()))?;
        self.end("destroy", Status::Succeeded, None);
        Ok(())
    }

    /// The state record of this node after an apply (or an adoption).
    fn record_of(&self, node: &stackpipe_dsl::ResourceNode, state: Value, outputs: Value, desired: &Value) -> ResourceRecord {
        let env = &self.env;
        // Outputs the schema marks, and outputs that hold a secret.
        let mut sensitive_outputs = self.sensitive_outputs.clone();
        if let Value::Object(o) = &outputs {
            sensitive_outputs.extend(o.iter().filter(|(_, v)| env.secrets.holds(v)).map(|(k, _)| k.clone()));
        }
        sensitive_outputs.sort();
        sensitive_outputs.dedup();
        ResourceRecord {
            plugin: node.plugin.clone(),
            kind: node.kind.clone(),
            state,
            outputs,
            attributes: mask_keys(desired, &self.sensitive),
            sensitive: self.sensitive.clone(),
            sensitive_outputs,
            depends_on: env.graph.dependencies(self.index).into_iter().map(|d| env.graph.node(d).name.clone()).collect(),
            serial: 0,
            run_id: env.run_id.clone(),
            updated_ms: now_ms(),
        }
    }

    /// The node's secret attributes: those a sensitive var flows into, those
    /// its type's schema marks, and those marked on the resource before;
    /// their values are kept as the run's secrets, to mask out of text.
    fn sensitive_keys(&mut self, node: &stackpipe_dsl::ResourceNode, types: &ProvisionerTypes, prior: Option<&ResourceRecord>, desired: &Value) {
        let (by_schema, outputs) = types.sensitive.get(&node.kind).cloned().unwrap_or_default();
        let mut keys: Vec<String> = node.sensitive_attributes.iter().cloned().chain(by_schema).collect();
        keys.extend(prior.map(|p| p.sensitive.clone()).unwrap_or_default());
        for k in &keys {
            if let Some(v) = desired.get(k) {
                self.env.secrets.add_value(v);
            }
        }
        // And every attribute whose value holds a secret, however it got
        // there (an upstream output made of a sensitive var, say).
        if let Value::Object(attrs) = desired {
            keys.extend(attrs.iter().filter(|(_, v)| self.env.secrets.holds(v)).map(|(k, _)| k.clone()));
        }
        keys.sort();
        keys.dedup();
        self.sensitive = keys;
        self.sensitive_outputs = outputs;
    }

    /// Marks sensitive every change to a secret attribute (the provisioner
    /// may not know a sensitive var flows into it), and takes as secret every
    /// attribute the provisioner marks.
    fn mark_sensitive(&mut self, plan: &mut ResourcePlan, desired: &Value) {
        let mut grew = false;
        for c in &mut plan.changes {
            let top = c.path.split('.').next().unwrap_or_default().to_string();
            if self.sensitive.contains(&top) {
                c.sensitive = true;
            } else if c.sensitive {
                if let Some(v) = desired.get(&top) {
                    self.env.secrets.add_value(v);
                }
                self.sensitive.push(top);
                grew = true;
            }
        }
        if grew {
            if let Some(input) = &mut self.record.input {
                input.attributes = mask_keys(desired, &self.sensitive);
            }
        }
    }

    fn journal_entry(&self, op: &str, phase: JournalPhase) -> JournalEntry {
        JournalEntry {
            run_id: self.env.run_id.clone(),
            environment: self.env.env.name.clone(),
            node: self.record.node.clone(),
            nodes: Vec::new(),
            op: op.into(),
            phase,
            ms: now_ms(),
        }
    }
}
