//! One environment of a run: what its stack jobs share (its plugins, the
//! outputs known so far, the credentials and resource types asked once,
//! the secrets seen), and the walk of its graph, one stack job per node.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value};
use stackpipe_dsl::ast::PluginKind;
use stackpipe_dsl::eval::{eval, EvalError, Scope};
use stackpipe_dsl::{EnvironmentPlan, FlowPolicy, OnFailure, ResourceNode};
use tokio::sync::{watch, OnceCell};

use super::execution::RunShared;
use super::gate::GateOutcome;
use super::known_after_apply::{KnownOutputs, Resolved};
use super::plan_text::{PlannedChange, UNKNOWN};
use super::resume::EnvironmentResume;
use super::snapshot::RunSource;
use super::scheduler::{walk, NodeEnd, Slot};
use super::selection::{EnvironmentSelection, Subject};
use super::stack_job::StackJob;
use super::{AbortOnDrop, RunEvent};
use crate::plugin::{CallContext, Credential, LoadedPlugin, PluginHost, PluginLoad, PluginLog, Sandbox};
use crate::secrets::{schema_sensitive, Secrets};
use crate::state::{now_ms, GateInfo, GateKind, ResourceKey, ResourceRecord, StateError, Status, Write};

/// What a run does to each node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Deploy,
    Undeploy,
    /// Refresh and preview only; nothing is applied or written.
    Plan,
    /// What an undeploy would destroy: refresh and preview only; nothing
    /// is destroyed or written.
    PlanUndeploy,
    /// The preflight of a deploy: every node's provisioner, type,
    /// credentials, policies and attributes (`validate`). Nothing is read,
    /// applied or written.
    Preflight,
    /// The preflight of an undeploy: every deployed node's provisioner,
    /// type, credentials and policies. Nothing is read, destroyed or written.
    PreflightUndeploy,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Deploy => "deploy",
            Mode::Undeploy => "undeploy",
            Mode::Plan => "plan",
            Mode::PlanUndeploy => "plan-undeploy",
            Mode::Preflight | Mode::PreflightUndeploy => "preflight",
        }
    }

    /// Whether the run only preflights.
    pub fn is_preflight(self) -> bool {
        matches!(self, Mode::Preflight | Mode::PreflightUndeploy)
    }

    /// Whether the run is recorded: a run record, locks, jobs, logs.
    pub fn records(self) -> bool {
        matches!(self, Mode::Deploy | Mode::Undeploy)
    }

    /// Whether the run destroys, or plans to: it walks dependents first,
    /// and its environments in reverse order.
    pub fn destroys(self) -> bool {
        matches!(self, Mode::Undeploy | Mode::PlanUndeploy | Mode::PreflightUndeploy)
    }
}

/// What a provisioner says about its resource types, asked once per environment.
pub struct ProvisionerTypes {
    pub names: Vec<String>,
    /// Per type, the attributes and the outputs its schemas mark sensitive.
    pub sensitive: HashMap<String, (Vec<String>, Vec<String>)>,
    /// Per type, its input-file attributes (types without any are left out).
    pub inputs: HashMap<String, Vec<String>>,
    /// Per type, the outputs its schema marks kept on update (types without
    /// any are left out).
    pub kept: HashMap<String, Vec<String>>,
}

/// A value asked of a plugin once per environment, by whichever job needs
/// it first; the others wait for that one answer. Keyed by plugin: one
/// plugin's slow first call holds up no other plugin's.
struct AskedOnce<T>(Mutex<HashMap<String, Answer<T>>>);

/// The one answer to a question asked of a plugin, once it is given.
type Answer<T> = Arc<OnceCell<Result<T, String>>>;

impl<T: Clone> AskedOnce<T> {
    fn new() -> Self {
        AskedOnce(Mutex::new(HashMap::new()))
    }

    async fn get(&self, key: &str, ask: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
        let cell = {
            let Ok(mut cells) = self.0.lock() else { return Err("a lock was poisoned".into()) };
            cells.entry(key.to_string()).or_default().clone()
        };
        cell.get_or_init(|| ask).await.clone()
    }
}

/// What every stack job of one environment of a run shares.
pub struct EnvRun {
    pub(super) run: Arc<RunShared>,
    pub(super) plan: EnvironmentPlan,
    /// The nodes the run takes here: its walk's.
    pub(super) selection: Arc<EnvironmentSelection>,
    /// Plugins of this environment (their config and grants can differ per
    /// environment), or why one did not load.
    plugins: HashMap<String, Result<Arc<LoadedPlugin>, String>>,
    /// Outputs of this environment's resources, as they become known.
    pub(super) outputs: RwLock<HashMap<String, Value>>,
    /// In a plan, the resources to be updated in place: `outputs` holds only
    /// the outputs they keep on update, the others are known after apply.
    kept_only: RwLock<HashSet<String>>,
    /// A plan's changes, node by node.
    pub(super) planned: Mutex<Vec<PlannedChange>>,
    /// Resumed run: nodes whose apply was in flight when the run stopped
    /// (on a runner, also jobs a runner before it lost).
    in_flight: Mutex<HashSet<String>>,
    /// The stored records of this environment's resources when it started:
    /// each job takes its own as it starts (one read for the environment,
    /// not one per node).
    prior: Mutex<HashMap<String, ResourceRecord>>,
    /// Deployed resources (name, type) of this environment that are no
    /// longer in the pipeline and that this run leaves alone: nothing
    /// manages them any more.
    pub(super) orphans: Vec<(String, String)>,
    types: AskedOnce<Arc<ProvisionerTypes>>,
    credentials: AskedOnce<Option<Credential>>,
    /// Files the provisioners read, named by input-file attributes (see
    /// [`crate::plugin::INPUT_FILE_FORMAT`]), as the attributes give them.
    pub(super) inputs: Mutex<BTreeSet<String>>,
    /// Secret values seen so far: sensitive vars, credentials, secret
    /// attributes. Masked out of every log line and message.
    pub(super) secrets: Secrets,
    /// The node whose failure stopped everything not started yet (under
    /// `on_failure = "stop-all"`), once one has failed.
    halted_by: watch::Sender<Option<String>>,
}

impl EnvRun {
    /// The environment `plan` of `run`, ready to walk `selection`: its
    /// plugins loaded, its resources' records read (whole, or the
    /// environment does not start: a state it cannot read would hide
    /// orphans and make every resource look new), and what a resume starts
    /// from put in place.
    pub(super) fn new(
        run: Arc<RunShared>,
        plan: EnvironmentPlan,
        resume: &EnvironmentResume,
        selection: Arc<EnvironmentSelection>,
    ) -> Result<EnvRun, StateError> {
        let graph = &run.graph;
        let prior: HashMap<String, ResourceRecord> =
            run.store.resources(&graph.name, Some(&plan.name))?.into_iter().map(|(k, r)| (k.resource, r)).collect();
        let destroyed: HashSet<&str> = selection.orphans().iter().map(|o| o.node.name.as_str()).collect();
        let mut orphans: Vec<(String, String)> = prior
            .iter()
            .filter(|(name, _)| graph.find(name).is_none() && !destroyed.contains(name.as_str()))
            .map(|(name, r)| (name.clone(), format!("{}.{}", r.plugin, r.kind)))
            .collect();
        orphans.sort();
        let secrets = Secrets::new();
        for name in &graph.sensitive_vars {
            if let Some(v) = plan.vars.get(name) {
                secrets.add_value(v);
            }
        }
        // Nodes done before a resume do not run again, and nodes the run
        // does not take do not run: their stored outputs are what their
        // dependents read.
        let outputs = prior
            .iter()
            .filter(|(name, _)| graph.find(name).is_some_and(|i| resume.done[i.index()] || !selection.takes(i)))
            .map(|(name, r)| (name.clone(), r.outputs.clone()))
            .collect();
        let plugins = load_plugins(&run.host, &plan, &run.source, &run.base_dir, run.store.dir());
        Ok(EnvRun {
            plugins,
            outputs: RwLock::new(outputs),
            kept_only: RwLock::new(HashSet::new()),
            planned: Mutex::new(Vec::new()),
            in_flight: Mutex::new(resume.in_flight.clone()),
            prior: Mutex::new(prior),
            orphans,
            types: AskedOnce::new(),
            credentials: AskedOnce::new(),
            inputs: Mutex::new(BTreeSet::new()),
            secrets,
            halted_by: watch::channel(None).0,
            run,
            plan,
            selection,
        })
    }

    /// The resource a node of the walk stands for.
    pub(super) fn resource(&self, s: Subject) -> &ResourceNode {
        self.selection.resource(&self.run.graph, s)
    }

    /// The flow policy of a node of the walk: an orphan, which the file no
    /// longer declares, has its environment's.
    pub(super) fn flow_of(&self, s: Subject) -> FlowPolicy {
        match s {
            Subject::Resource(i) => self.plan.flow_of(i),
            Subject::Orphan(_) => self.plan.environment_flow,
        }
    }

    /// What a node of the walk depends on, by name: recorded with it.
    pub(super) fn depends_on(&self, s: Subject) -> Vec<String> {
        let graph = &self.run.graph;
        match s {
            Subject::Resource(i) => graph.dependencies(i).into_iter().map(|d| graph.node(d).name.clone()).collect(),
            Subject::Orphan(k) => self.selection.orphans()[k].depends_on.clone(),
        }
    }

    pub fn key(&self, node: &str) -> ResourceKey {
        ResourceKey::new(&self.run.graph.name, &self.plan.name, node)
    }

    /// Whether `node`'s apply or destroy was in flight when the run stopped.
    pub(super) fn was_in_flight(&self, node: &str) -> bool {
        // Poisoned: assume the worst, which is a read before any apply.
        self.in_flight.lock().map(|f| f.contains(node)).unwrap_or(true)
    }

    /// `node`'s job is taken again after a runner lost it, maybe mid-apply:
    /// its stored record is read again (that runner may have written it),
    /// and it runs as a resumed job whose apply was in flight (it reads
    /// before it applies).
    pub(super) fn take_again(&self, node: &str) -> Result<(), StateError> {
        let record = self.run.store.resource(&self.key(node))?;
        if let Ok(mut prior) = self.prior.lock() {
            match record {
                Some(r) => prior.insert(node.to_string(), r),
                None => prior.remove(node),
            };
        }
        if let Ok(mut f) = self.in_flight.lock() {
            f.insert(node.to_string());
        }
        Ok(())
    }

    /// Reads from the state the outputs of what `s` needs that this
    /// environment has not seen yet: on a runner, other runners applied
    /// them. (In a walk, every dependency's outputs are published here
    /// before its dependents start.)
    pub(super) fn read_needed_outputs(&self, s: Subject) -> Result<(), StateError> {
        let Subject::Resource(i) = s else { return Ok(()) };
        let graph = &self.run.graph;
        for d in graph.dependencies(i) {
            let name = &graph.node(d).name;
            if self.outputs.read().map(|o| o.contains_key(name)).unwrap_or(false) {
                continue;
            }
            if let Some(r) = self.run.store.resource(&self.key(name))? {
                if let Ok(mut o) = self.outputs.write() {
                    o.insert(name.clone(), r.outputs);
                }
            }
        }
        Ok(())
    }

    /// The stored record of `node` as the environment started (see `prior`).
    pub(super) fn take_prior(&self, node: &str) -> Result<Option<ResourceRecord>, StateError> {
        match self.prior.lock() {
            Ok(mut p) => Ok(p.remove(node)),
            Err(_) => self.run.store.resource(&self.key(node)),
        }
    }

    /// Whether `node` is to stop before its next operation: the run was
    /// stopped, or the node or its environment cancelled.
    pub(super) fn stopped(&self, node: &str) -> bool {
        self.run.stop.is_stopped() || self.run.cancels.covers(&self.plan.name, Some(node))
    }

    /// Waits at a gate of this environment (parking `slot` meanwhile) until
    /// someone decides, the run stops, or what the gate guards is cancelled
    /// (or, with `until_halted`, a failure stops everything not started:
    /// for a gate that guards only what can no longer start). A run without
    /// gates (plan, preflight) goes straight through.
    pub(super) async fn wait_at(&self, gate: GateInfo, slot: Option<&Slot>, until_halted: bool) -> GateOutcome {
        let Some(gates) = &self.run.gates else {
            return GateOutcome::Approved;
        };
        let node = gate.node.clone();
        let ended = async {
            tokio::select! {
                () = self.run.stopped(&self.plan.name, node.as_deref()) => {}
                () = self.until_halted(), if until_halted => {}
            }
        };
        let wait = gates.wait_until(gate, ended);
        match slot {
            Some(slot) => slot.parked(wait).await,
            None => wait.await,
        }
    }

    /// What a failed node stops here. Only a deploy or an undeploy stops
    /// everything on a failure: a plan or a preflight reports every node.
    pub(super) fn on_failure(&self) -> OnFailure {
        if self.run.mode.records() {
            self.plan.on_failure
        } else {
            OnFailure::StopDependents
        }
    }

    /// `node` failed: under `stop-all`, nothing not started yet starts now.
    fn failed(&self, node: &str) {
        if self.on_failure() == OnFailure::StopAll {
            self.halted_by.send_if_modified(|first| {
                // The first failure is the one that stopped the rest.
                let news = first.is_none();
                if news {
                    *first = Some(node.to_string());
                }
                news
            });
        }
    }

    /// Resolves once a failure has stopped everything not started.
    async fn until_halted(&self) {
        let mut halted = self.halted_by.subscribe();
        // The sender is ours: it outlives every wait.
        let _ = halted.wait_for(Option::is_some).await;
    }

    /// A gate of this environment, opening now.
    pub(super) fn gate(&self, kind: GateKind, node: Option<&str>, reason: String, detail: Option<String>) -> GateInfo {
        GateInfo {
            kind,
            environment: self.plan.name.clone(),
            node: node.map(str::to_string),
            reason,
            detail,
            since_ms: now_ms(),
        }
    }

    pub(super) fn context(&self, node: &str) -> CallContext {
        CallContext {
            pipeline: self.run.graph.name.clone(),
            environment: self.plan.name.clone(),
            resource: node.into(),
            run_id: self.run.id.clone(),
            log: PluginLog::default(),
        }
    }

    /// Whether the environment has policy plugins: they judge every change
    /// applied or destroyed here.
    pub(super) fn has_policies(&self) -> bool {
        self.plan.plugins.values().any(|p| p.kind == PluginKind::Policy)
    }

    pub(super) fn plugin(&self, name: &str) -> Result<Arc<LoadedPlugin>, String> {
        match self.plugins.get(name) {
            Some(Ok(p)) => Ok(p.clone()),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("plugin `{name}` is not declared")),
        }
    }

    /// What provisioner `plugin` says about its resource types, asked once.
    pub(super) async fn types_of(&self, plugin: &Arc<LoadedPlugin>) -> Result<Arc<ProvisionerTypes>, String> {
        self.types.get(plugin.name(), async {
            let types = plugin.resource_types(&self.run.host).await.map_err(|e| e.to_string())?;
            Ok(Arc::new(ProvisionerTypes {
                sensitive: types
                    .iter()
                    .map(|t| (t.name.clone(), (schema_sensitive(&t.attributes_schema), schema_sensitive(&t.outputs_schema))))
                    .collect(),
                inputs: types
                    .iter()
                    .map(|t| (t.name.clone(), crate::plugin::input_file_attributes(&t.attributes_schema)))
                    .filter(|(_, a)| !a.is_empty())
                    .collect(),
                kept: types
                    .iter()
                    .map(|t| (t.name.clone(), crate::plugin::kept_on_update_outputs(&t.outputs_schema)))
                    .filter(|(_, o)| !o.is_empty())
                    .collect(),
                names: types.into_iter().map(|t| t.name).collect(),
            }))
        })
        .await
    }

    /// Keeps the files `desired` names in its input-file attributes.
    pub(super) fn note_inputs(&self, attributes: Option<&Vec<String>>, desired: &Value) {
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

    /// The credential of provisioner `plugin`, resolved once for the
    /// environment: by the first job that asks, whose log (`log`) gets what
    /// the resolver logs.
    pub(super) async fn credential(&self, plugin: &str, log: PluginLog) -> Result<Option<Credential>, String> {
        self.credentials.get(plugin, self.resolve_credential(plugin, log)).await
    }

    async fn resolve_credential(&self, plugin: &str, log: PluginLog) -> Result<Option<Credential>, String> {
        let Some(binding) = self.plan.credentials.get(plugin) else {
            return Ok(None);
        };
        let resolver = self
            .plugin(&binding.resolver)
            .map_err(|e| format!("credentials for `{plugin}`: resolver `{}`: {e}", binding.resolver))?;
        let cred = resolver
            .resolve(&self.run.host, &CallContext { log, ..self.context("") }, plugin, &binding.config)
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

    /// Makes `node`'s outputs known to its dependents: as applied, or as a
    /// plan knows them before apply (see [`super::known_after_apply`]).
    pub(super) fn publish_outputs(&self, node: &str, known: KnownOutputs) {
        let (outputs, kept_only) = match known {
            KnownOutputs::All(o) => (o, false),
            KnownOutputs::Kept(o) => (o, true),
            // Left out: every reference to them evaluates as unknown.
            KnownOutputs::None => return,
        };
        if kept_only {
            if let Ok(mut k) = self.kept_only.write() {
                k.insert(node.to_string());
            }
        }
        if let Ok(mut o) = self.outputs.write() {
            o.insert(node.to_string(), outputs);
        }
    }

    /// The node's attributes with upstream outputs filled in and `--set`
    /// applied. Before a run (a plan, a preflight), an attribute that uses
    /// an output not known yet is [`UNKNOWN`], and listed as such.
    pub(super) fn resolve_attributes(&self, s: Subject) -> Result<Resolved, String> {
        let graph = &self.run.graph;
        let node = self.resource(s);
        let outputs = self.outputs.read().map_err(|_| "outputs lock poisoned".to_string())?;
        let kept_only = self.kept_only.read().map_err(|_| "outputs lock poisoned".to_string())?;
        let lookup = |r: &str| outputs.get(r);
        let scope = Scope { pipeline: &graph.name, environment: &self.plan.name, vars: &self.plan.vars, outputs: &lookup, artifacts: &graph.artifacts };
        // Of a resource a plan updates in place, an output it does not keep
        // is unknown (whether or not it has one now): its value now is not
        // what the dependent will get.
        let not_kept = |(r, o): &(String, String)| kept_only.contains(r) && outputs.get(r).is_some_and(|v| v.get(o).is_none());
        let planning = !self.run.mode.records();
        let mut resolved = Resolved::default();
        let mut attrs = Map::new();
        for a in &node.attributes {
            let key = a.key.name.clone();
            if key == "depends_on" {
                continue;
            }
            let v = if planning && stackpipe_dsl::resource_references(&a.value).iter().any(not_kept) {
                None
            } else {
                match eval(&a.value, &scope) {
                    Ok(v) => Some(v),
                    // A plan goes on: what depends on an unknown output is unknown too.
                    Err(EvalError::Unknown { .. }) if planning => None,
                    Err(EvalError::Unknown { resource }) => {
                        if let Some(service) = resource.strip_prefix("service.") {
                            return Err(format!(
                                "`{key}` needs what service `{service}` builds, and this run has no build of it: a \
                                 service's artifact comes with its pipelines (`stackpipe service run {service} --server URL`)"
                            ));
                        }
                        return Err(format!("`{key}` needs an output of `{resource}`, which has none yet"));
                    }
                    Err(EvalError::Invalid(d)) => return Err(format!("`{key}`: {}", d.message)),
                }
            };
            let v = v.unwrap_or_else(|| {
                resolved.unknown.push(key.to_string());
                Value::String(UNKNOWN.into())
            });
            attrs.insert(key.to_string(), v);
        }
        for (r, a, v) in &self.run.sets {
            if r == &node.name {
                attrs.insert(a.clone(), v.clone());
                resolved.unknown.retain(|u| u != a);
            }
        }
        resolved.attributes = Value::Object(attrs);
        Ok(resolved)
    }

    /// Walks the nodes the run takes here (`done` nodes, by node index, are
    /// not run again, and `gate_open` gates do not ask again); the
    /// environment's status, and why when it did not succeed.
    pub(super) async fn walk(self: &Arc<Self>, done: Vec<bool>, gate_open: Vec<bool>) -> (Status, Option<String>) {
        let deps = self.selection.waits_for(&self.run.graph, self.run.mode);
        let (done, gate_open) = (Arc::new(done), Arc::new(gate_open));
        // The walk is a task of the runtime, not a future of whoever awaits the
        // run (the CLI's main thread, in `block_on`): every node that ends wakes
        // it (its task is joined), and waking a task on a busy worker is a queue
        // push where waking a parked thread is a syscall and a context switch
        // (10k nodes: about 15% less CPU).
        let (parallelism, stop, env) = (self.run.parallelism, self.run.stop.receiver(), self.clone());
        let on_failure = self.on_failure();
        let walking = tokio::spawn(async move {
            walk(&deps, parallelism, stop, on_failure, |p, slot| {
                let subject = env.selection.subjects()[p];
                let (done, gate_open) = match subject {
                    Subject::Resource(i) => (done[i.index()], gate_open[i.index()]),
                    // An orphan destroyed before a resume is no longer in the state.
                    Subject::Orphan(_) => (false, false),
                };
                let env = env.clone();
                async move { env.node(subject, done, gate_open, slot).await }
            })
            .await
        });
        // Dropped with this future (whoever awaits the run gave up on it), the
        // walk goes too, as it did when it was part of this future.
        let _abort = AbortOnDrop(walking.abort_handle());
        let ends = match walking.await {
            Ok(ends) => ends,
            Err(e) => {
                tracing::error!("the scheduler of environment {} stopped: {e}", self.plan.name);
                return (Status::Failed, Some(format!("the scheduler stopped: {e}")));
            }
        };
        self.record_unstarted(&ends);
        self.outcome(&ends)
    }

    /// One node: its stack job (unless it was done before a resume), then
    /// its `gate = "after"`, if it has one and changed something.
    async fn node(self: Arc<Self>, subject: Subject, done: bool, gate_open: bool, slot: Slot) -> NodeEnd {
        // A node done before a resume may not have passed its gate yet: it asks.
        let (end, changed) =
            if done { (NodeEnd::Succeeded, true) } else { StackJob::new(self.clone(), subject).run(slot.clone()).await };
        let node = self.resource(subject);
        if end == NodeEnd::Failed {
            self.failed(&node.name);
        }
        // An unchanged node has nothing new to look at: its gate stays open.
        if end != NodeEnd::Succeeded || !node.gate_after || !changed || self.run.mode != Mode::Deploy || gate_open {
            return end;
        }
        // Its dependents will not start after a failure that stopped
        // everything: nobody is asked about them.
        if self.halted_by.borrow().is_some() {
            return end;
        }
        let reason = format!("`{}` has `gate = \"after\"`: approve before its dependents start", node.name);
        let gate = self.gate(GateKind::After, Some(&node.name), reason, None);
        match self.wait_at(gate, Some(&slot), true).await {
            GateOutcome::Approved => NodeEnd::Succeeded,
            GateOutcome::Rejected(_) => NodeEnd::Rejected,
            // The node itself is done; its dependents were halted anyway.
            GateOutcome::Cancelled if self.halted_by.borrow().is_some() => NodeEnd::Succeeded,
            // Applied; its dependents must not start.
            GateOutcome::Cancelled => NodeEnd::Stopped,
        }
    }

    /// Gives every node that ended without starting its job record.
    fn record_unstarted(self: &Arc<Self>, ends: &[NodeEnd]) {
        let stopped = self.run.stop.is_stopped();
        let failed_write = self.run.journal.failure();
        // A task that panicked fails its node without saying so: then every failed node is named.
        let first = self.halted_by.borrow().as_ref().map(|n| format!("`{n}`"));
        let failed = first.unwrap_or_else(|| self.ended(ends, NodeEnd::Failed));
        let halted = format!("not started: {failed} failed, and on_failure = \"stop-all\" stops everything not started");
        for (&subject, end) in self.selection.subjects().iter().zip(ends) {
            let (status, why) = match end {
                NodeEnd::Cancelled if failed_write.is_some() => {
                    (Status::Cancelled, "the run stopped: its state could not be written")
                }
                NodeEnd::Cancelled if stopped => (Status::Cancelled, "the run was cancelled"),
                NodeEnd::Cancelled => (Status::Cancelled, "a dependency failed"),
                NodeEnd::Halted => (Status::Cancelled, halted.as_str()),
                NodeEnd::Skipped => (Status::Skipped, "a gate before it was rejected"),
                NodeEnd::Succeeded | NodeEnd::Failed | NodeEnd::Rejected | NodeEnd::Stopped => continue,
            };
            let record = StackJob::unstarted(self.clone(), subject, status, why);
            self.run.events.send(RunEvent::NodeFinished {
                environment: self.plan.name.clone(),
                node: record.node.clone(),
                status,
                change: None,
                ms: 0,
                error: Some(why.to_string()),
            });
            if self.run.mode.records() {
                self.run.journal.record(Write::PutJob(record));
            }
        }
    }

    /// The nodes that ended `how`, by name, in the walk's order.
    fn ended(&self, ends: &[NodeEnd], how: NodeEnd) -> String {
        let names: Vec<&str> = self
            .selection
            .subjects()
            .iter()
            .zip(ends)
            .filter(|(_, e)| **e == how)
            .map(|(&s, _)| self.resource(s).name.as_str())
            .collect();
        names.join(", ")
    }

    /// The environment's status from how its nodes ended, and why.
    fn outcome(&self, ends: &[NodeEnd]) -> (Status, Option<String>) {
        if ends.iter().all(|e| *e == NodeEnd::Succeeded) {
            (Status::Succeeded, None)
        } else if ends.contains(&NodeEnd::Failed) {
            // Said after the status (`[dev] failed: what failed: b`), never as `failed: failed: b`.
            (Status::Failed, Some(format!("what failed: {}", self.ended(ends, NodeEnd::Failed))))
        } else if ends.contains(&NodeEnd::Rejected) {
            (Status::Failed, Some(format!("rejected at a gate: {}", self.ended(ends, NodeEnd::Rejected))))
        } else if self.run.cancels.covers(&self.plan.name, None) {
            (Status::Cancelled, Some("the environment was cancelled".into()))
        } else if self.run.stop.is_stopped() {
            (Status::Cancelled, Some("the run was cancelled".into()))
        } else if ends.contains(&NodeEnd::Stopped) {
            (Status::Cancelled, Some(format!("what was cancelled: {}", self.ended(ends, NodeEnd::Stopped))))
        } else {
            (Status::Failed, None)
        }
    }
}

/// Loads every plugin of an environment (grants and config are per
/// environment) from the components the run read as it started. A plugin
/// that fails to load fails the preflight of the nodes that need it, with
/// the reason, not the whole run.
pub fn load_plugins(
    host: &PluginHost,
    env: &EnvironmentPlan,
    source: &RunSource,
    base_dir: &Path,
    state_dir: Option<&Path>,
) -> HashMap<String, Result<Arc<LoadedPlugin>, String>> {
    let mut out = HashMap::new();
    for (name, spec) in &env.plugins {
        let loaded = (|| {
            let component = source.component(name, &spec.source)?;
            let bytes = &component.bytes;
            let sandbox = Sandbox::guarding(&spec.grants, base_dir, state_dir)
                .map_err(|e| format!("plugin `{name}`: cannot prepare its granted directories: {e}"))?;
            let source_desc = match &spec.source {
                stackpipe_dsl::PluginSource::Builtin(b) => format!("builtin:{b}"),
                stackpipe_dsl::PluginSource::Path(p) => p.clone(),
            };
            host.load(PluginLoad {
                name,
                kind: spec.kind,
                source_desc: &source_desc,
                bytes,
                sandbox,
                limits: spec.limits,
                config: &spec.config,
            })
            .map(Arc::new)
            .map_err(|e| e.to_string())
        })();
        out.insert(name.clone(), loaded);
    }
    out
}
