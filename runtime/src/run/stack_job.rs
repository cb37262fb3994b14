//! One node's work in one environment of a run: preflight, init, refresh,
//! preview, then apply (deploy) or destroy (undeploy). Every operation has a
//! status, start and end times and log lines, all recorded in the state
//! store through the run journal.

use std::sync::Arc;

use serde_json::{json, Value};
use stackpipe_dsl::ast::PluginKind;
use stackpipe_dsl::FlowPolicy;

use super::env_run::{EnvRun, Mode, ProvisionerTypes};
use super::events::RunEvent;
use super::gate::GateOutcome;
use super::job_diff;
use super::job_log::JobLog;
use super::known_after_apply::{self, known_outputs, KnownOutputs};
use super::plan_text::PlannedChange;
use super::scheduler::{NodeEnd, Slot};
use super::selection::Subject;
use crate::plugin::{
    change_name, CallContext, Change, Credential, LoadedPlugin, PolicyVerdict, ProvisionerSession, ResourcePlan,
};
use crate::secrets::mask_keys;
use crate::state::{
    now_ms, GateKind, JobDiff, JobInput, JobRecord, JournalEntry, JournalPhase, OpRecord, ResourceRecord, Status, Write,
};

/// Why a stack job stopped short of its last operation.
#[derive(Debug)]
enum Halt {
    /// The operation failed with this message.
    Failed(&'static str, String),
    /// Someone rejected the gate before this operation.
    Rejected(&'static str, String),
    /// The run was stopped while this operation waited at a gate.
    Cancelled(&'static str),
    /// The run was stopped before this operation started: the one in
    /// flight finished, this one and the rest are skipped (it never
    /// applies after a cancel).
    Stopped(&'static str),
}

impl From<(&'static str, String)> for Halt {
    fn from((op, message): (&'static str, String)) -> Halt {
        Halt::Failed(op, message)
    }
}

/// What every provisioner call of one job passes.
struct Call<'a> {
    ctx: CallContext,
    kind: &'a str,
    cred: Option<&'a Credential>,
}

/// The stack job of one node.
pub struct StackJob {
    env: Arc<EnvRun>,
    subject: Subject,
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
    /// Its log: its own lines, and what its plugins log during its calls.
    log: Arc<JobLog>,
    /// In a plan, its attributes known only after apply: they use an
    /// output not known yet (see [`known_after_apply`]).
    unknown: Vec<String>,
    /// Its stored attributes (secrets masked) and the names of its secret
    /// ones: what a plan shows a text attribute's change against (see
    /// `plan_text::text_changes`), and what unknown attributes stand in
    /// for when it is planned.
    prior_attributes: Option<(Value, Vec<String>)>,
}

/// The record of `node`'s job in `environment` of run `run_id`, queued:
/// every operation still to come.
fn queued_record(run_id: &str, environment: &str, node: &str, level: usize, destroys: bool) -> JobRecord {
    let ops = if destroys { UNDEPLOY_OPS } else { DEPLOY_OPS };
    JobRecord {
        run_id: run_id.to_string(),
        environment: environment.to_string(),
        node: node.to_string(),
        level,
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
        diff: None,
    }
}

/// The record of a job that never started (see [`StackJob::unstarted`]),
/// or of one that could not be prepared (`Failed`, on a runner).
pub(super) fn unstarted_record(
    run_id: &str,
    environment: &str,
    node: &str,
    level: usize,
    destroys: bool,
    status: Status,
    why: &str,
) -> JobRecord {
    let mut record = queued_record(run_id, environment, node, level, destroys);
    for op in &mut record.ops {
        op.status = status;
    }
    record.status = status;
    record.error = Some(why.into());
    record
}

/// A stack job's operations, in order.
pub const DEPLOY_OPS: [&str; 5] = ["preflight", "init", "refresh", "preview", "apply"];
pub const UNDEPLOY_OPS: [&str; 5] = ["preflight", "init", "refresh", "preview", "destroy"];

impl StackJob {
    pub fn new(env: Arc<EnvRun>, subject: Subject) -> Self {
        let node = env.resource(subject);
        let record = queued_record(&env.run.id, &env.plan.name, &node.name, node.level, env.run.mode.destroys());
        let log = JobLog::new(env.clone(), node.name.clone());
        StackJob {
            env,
            subject,
            record,
            started: std::time::Instant::now(),
            apply_called: false,
            changed: false,
            slot: None,
            sensitive: Vec::new(),
            sensitive_outputs: Vec::new(),
            log,
            unknown: Vec::new(),
            prior_attributes: None,
        }
    }

    /// A job for a node that never started: `Cancelled` (a dependency
    /// failed, or the run stopped) or `Skipped` (a gate before it was rejected).
    pub fn unstarted(env: Arc<EnvRun>, subject: Subject, status: Status, why: &str) -> JobRecord {
        let node = env.resource(subject);
        unstarted_record(&env.run.id, &env.plan.name, &node.name, node.level, env.run.mode.destroys(), status, why)
    }

    fn name(&self) -> &str {
        &self.record.node
    }

    fn log(&self, op: &'static str, text: String) {
        self.log.host(op, text);
    }

    /// The context of this job's plugin calls (its provisioner's, its
    /// resolver's, its policies'): what they log goes to the job's log.
    fn context(&self) -> CallContext {
        self.log.context()
    }

    fn op_index(&self, op: &str) -> usize {
        self.record.ops.iter().position(|o| o.name == op).unwrap_or(0)
    }

    fn begin(&mut self, op: &'static str) {
        let i = self.op_index(op);
        self.record.ops[i].status = Status::Running;
        self.record.ops[i].started_ms = Some(now_ms());
        self.log.begin(op);
        let env = &self.env;
        env.run.events.send_with(|| RunEvent::OpStarted { environment: env.plan.name.clone(), node: self.name().into(), op: op.into() });
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
        env.run.events.send_with(|| RunEvent::OpFinished {
            environment: env.plan.name.clone(),
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
        let result = match self.env.run.mode {
            Mode::Deploy | Mode::Plan | Mode::Preflight => self.deploy().await,
            Mode::Undeploy | Mode::PlanUndeploy | Mode::PreflightUndeploy => self.undeploy().await,
        };
        let ops = if self.env.run.mode.destroys() { UNDEPLOY_OPS } else { DEPLOY_OPS };
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
                (Status::Cancelled, NodeEnd::Stopped)
            }
            Err(Halt::Stopped(op)) => {
                let what = if self.env.run.stop.is_stopped() { "the run" } else { "it" };
                let why = format!("{what} was cancelled before {op}: what was in flight finished, the rest is skipped");
                self.end_remaining(ops, Status::Skipped, &why);
                self.record.error = Some(why);
                (Status::Cancelled, NodeEnd::Stopped)
            }
        };
        self.record.status = status;
        self.record.finished_ms = Some(now_ms());
        let env = &self.env;
        let finished = env.run.events.listening().then(|| RunEvent::NodeFinished {
            environment: env.plan.name.clone(),
            node: self.record.node.clone(),
            status: self.record.status,
            change: self.record.change.clone(),
            ms: self.started.elapsed().as_millis() as u64,
            error: self.record.error.clone(),
        });
        let changed = self.changed || self.apply_called;
        // The job is stored once, as it ended, before anyone hears it ended.
        if env.run.mode.records() {
            env.run.journal.record(Write::PutJob(self.record));
        }
        if let Some(e) = finished {
            env.run.events.send(e);
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

    /// Goes on to `next` unless the run was stopped meanwhile (seed 002:
    /// the operation in flight completes, the remaining ones are skipped).
    fn go_on(&self, next: &'static str) -> Result<(), Halt> {
        if self.env.stopped(&self.record.node) {
            return Err(Halt::Stopped(next));
        }
        Ok(())
    }

    /// Holds `op` (apply or destroy) at a gate until someone decides.
    async fn approval(&mut self, op: &'static str, kind: GateKind, reason: String, detail: String) -> Result<(), Halt> {
        let env = self.env.clone();
        let gate = env.gate(kind, Some(self.name()), reason, Some(detail));
        self.log("preview", format!("waiting for approval before {op}: {}", gate.reason));
        self.record.status = Status::Waiting;
        // The job is in flight: a failure elsewhere that stops everything
        // not started does not end this wait (a person still decides).
        let outcome = env.wait_at(gate, self.slot.as_ref(), false).await;
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
        let env = self.env.clone();
        let node = env.resource(self.subject);
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
        let cred = self.env.credential(&node.plugin, self.log.plugin_log()).await.map_err(fail)?;
        // Every policy judges this node's change: one that cannot load
        // would fail it at preview, after other nodes applied.
        for (name, spec) in &self.env.plan.plugins {
            if spec.kind == PluginKind::Policy {
                self.env.plugin(name).map_err(|e| fail(format!("policy `{name}`: {e}")))?;
            }
        }
        let flow = self.env.flow_of(self.subject);
        self.log(
            "preflight",
            format!(
                "provisioner {} ({}), credentials {}, flow refresh={} preview={} pause_before_apply={} on_failure={}",
                node.plugin,
                &plugin.digest()[..12],
                if cred.is_some() { "resolved" } else { "none" },
                flow.refresh,
                flow.preview,
                flow.pause_before_apply,
                self.env.on_failure().name()
            ),
        );
        self.end("preflight", Status::Succeeded, None);
        Ok((plugin, types, cred, flow))
    }

    async fn deploy(&mut self) -> Result<(), Halt> {
        let outcome = self.deploy_steps().await;
        if self.env.run.mode == Mode::Deploy && !self.apply_called {
            // The environment's plan of applies (see `run_environment`)
            // included this node; it never reached the plugin.
            self.env.run.journal.record(Write::Journal(self.journal_entry("apply", JournalPhase::Withdrawn)));
        }
        outcome
    }

    async fn deploy_steps(&mut self) -> Result<(), Halt> {
        self.go_on("preflight")?;
        let (plugin, types, cred, flow) = self.preflight().await?;
        let env = self.env.clone();
        let node = env.resource(self.subject);
        let call = Call { ctx: self.context(), kind: &node.kind, cred: cred.as_ref() };
        self.go_on("init")?;
        self.begin("init");
        let mut session = plugin.session(&env.run.host).await.map_err(|e| ("init", e.to_string()))?;
        let (desired, prior) = self.init(&mut session, &call, &plugin, &types, &flow).await?;
        if env.run.mode == Mode::Preflight {
            // Checked, not run: nothing is read, planned or applied.
            for op in ["refresh", "preview", "apply"] {
                self.skip(op, "preflight only");
            }
            return Ok(());
        }
        self.go_on("refresh")?;
        let (state, outputs) = self.refresh(&mut session, &call, prior, &desired, &flow).await?;
        self.go_on("preview")?;
        let planned = self.preview(&mut session, &call, state.as_ref(), &desired, &flow).await?;
        let change = planned.plan.change;
        self.record.change = Some(change_name(change).into());
        // Set by a preview that ran; without one, what changes is not known.
        self.record.diff.get_or_insert_with(|| JobDiff::NotComputed(job_diff::NO_PREVIEW.into()));
        if env.run.mode == Mode::Plan {
            let kept = types.kept.get(&node.kind).map(Vec::as_slice).unwrap_or_default();
            env.publish_outputs(&node.name, known_outputs(change, outputs, kept));
            self.skip("apply", "plan only");
            return Ok(());
        }
        if change == Change::NoOp {
            env.publish_outputs(&node.name, KnownOutputs::All(outputs.unwrap_or_else(|| json!({}))));
            self.skip("apply", "no changes");
            return Ok(());
        }
        self.go_on("apply")?;
        self.gate_before("apply", &flow, &planned).await?;
        self.apply(&mut session, &call, state.as_ref(), desired).await
    }

    /// init: one instance for the whole job; resolves the attributes,
    /// has the provisioner validate them, and snapshots the input. The
    /// attributes, and the resource's record as the run found it.
    async fn init(
        &mut self,
        session: &mut ProvisionerSession<'_>,
        call: &Call<'_>,
        plugin: &LoadedPlugin,
        types: &ProvisionerTypes,
        flow: &FlowPolicy,
    ) -> Result<(Value, Option<ResourceRecord>), Halt> {
        let env = self.env.clone();
        let node = env.resource(self.subject);
        let resolved = env.resolve_attributes(self.subject).map_err(|e| ("init", e))?;
        let desired = resolved.attributes;
        self.unknown = resolved.unknown;
        env.note_inputs(types.inputs.get(&node.kind), &desired);
        let mut problems = session.validate(&call.ctx, call.kind, &desired).await.map_err(|e| ("init", e.to_string()))?;
        // Before a run, what an upstream output will be is unknown: its
        // attribute is validated by the run's own init, once it is known.
        problems.retain(|d| !d.attribute.as_deref().is_some_and(|a| known_after_apply::is_unknown(&self.unknown, a)));
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
        self.prior_attributes = prior.as_ref().map(|p| (p.attributes.clone(), p.sensitive.clone()));
        self.sensitive_keys(node, types, prior.as_ref(), &desired);
        self.record.input = Some(self.job_input(mask_keys(&desired, &self.sensitive), plugin, flow));
        self.end("init", Status::Succeeded, None);
        Ok((desired, prior))
    }

    /// refresh: what is really there now; the resource's state and outputs
    /// (None: there is nothing). An apply of this node that was in flight
    /// when the run stopped, its result never in the state, is first asked
    /// of the provisioner.
    async fn refresh(
        &mut self,
        session: &mut ProvisionerSession<'_>,
        call: &Call<'_>,
        prior: Option<ResourceRecord>,
        desired: &Value,
        flow: &FlowPolicy,
    ) -> Result<(Option<Value>, Option<Value>), Halt> {
        let env = self.env.clone();
        let node = env.resource(self.subject);
        if env.was_in_flight(&node.name) && prior.is_none() {
            let adopted = self.adopt(session, call, desired).await?;
            return Ok((adopted.as_ref().map(|r| r.state.clone()), adopted.map(|r| r.outputs)));
        }
        let Some(prior) = prior else {
            let why = if flow.refresh { "not deployed yet" } else { "flow policy: refresh = false" };
            self.skip("refresh", why);
            return Ok((None, None));
        };
        if !flow.refresh {
            self.skip("refresh", "flow policy: refresh = false");
            return Ok((Some(prior.state), Some(prior.outputs)));
        }
        self.begin("refresh");
        let found = match session.read(&call.ctx, call.kind, Some(&prior.state), desired, call.cred).await {
            Ok(Some(now)) => (Some(now.state), Some(now.outputs)),
            Ok(None) => {
                self.log("refresh", "the resource is gone (deleted outside stackpipe); it will be created".into());
                (None, None)
            }
            Err(e) => return Err(Halt::Failed("refresh", e.to_string())),
        };
        self.end("refresh", Status::Succeeded, None);
        Ok(found)
    }

    /// An apply of this node was in flight when this run stopped, and its
    /// result never reached the state: asks the provisioner what it
    /// created, and adopts it (recorded at once). The record, if any.
    async fn adopt(
        &mut self,
        session: &mut ProvisionerSession<'_>,
        call: &Call<'_>,
        desired: &Value,
    ) -> Result<Option<ResourceRecord>, Halt> {
        let env = self.env.clone();
        let node = env.resource(self.subject);
        self.begin("refresh");
        let adopted = match session.read(&call.ctx, call.kind, None, desired, call.cred).await {
            Ok(Some(found)) => {
                self.log("refresh", "found what the interrupted apply created; adopting it".into());
                self.changed = true;
                let record = self.record_of(node, found.state, found.outputs, desired);
                env.run
                    .journal
                    .record_all_durably(vec![
                        Write::PutResource(env.key(&node.name), record.clone()),
                        Write::Journal(self.journal_entry("apply", JournalPhase::Done)),
                    ])
                    .await
                    .map_err(|e| ("refresh", e.to_string()))?;
                Some(record)
            }
            Ok(None) => {
                self.log("refresh", "the interrupted apply created nothing; applying".into());
                None
            }
            Err(e) => return Err(Halt::Failed("refresh", e.to_string())),
        };
        self.end("refresh", Status::Succeeded, None);
        Ok(adopted)
    }

    /// preview: what apply would do; policies judge it. Without a preview
    /// (flow policy), a change is assumed: an update of what exists, or a
    /// create; unless the environment has policies, which judge every change
    /// that is applied whatever the flow says: then the plan is computed for
    /// them all the same.
    async fn preview(
        &mut self,
        session: &mut ProvisionerSession<'_>,
        call: &Call<'_>,
        state: Option<&Value>,
        desired: &Value,
        flow: &FlowPolicy,
    ) -> Result<PlannedChange, Halt> {
        let env = self.env.clone();
        let node = env.resource(self.subject);
        let unknown = self.unknown.clone();
        let planned = |plan: ResourcePlan, policy: Option<String>| PlannedChange {
            unknown,
            ..PlannedChange::new(&env.plan.name, node, plan, policy)
        };
        let skipped = !flow.preview && env.run.mode != Mode::Plan;
        if skipped && !env.has_policies() {
            self.skip("preview", "flow policy: preview = false");
            let change = if state.is_some() { Change::Update } else { Change::Create };
            return Ok(planned(ResourcePlan { change, changes: Vec::new() }, None));
        }
        // With `preview = false` the policies still judge the change, and
        // judge the provisioner's real plan: the assumed change above (an
        // update, with no attribute changes) would hide a replacement, which
        // is just what a policy is there to catch.
        self.begin("preview");
        if skipped {
            let why = "flow policy: preview = false, but the environment's policies judge every change: planning for them";
            self.log("preview", why.into());
        }
        let mut plan = if self.unknown.is_empty() {
            session.plan(&call.ctx, call.kind, state, desired, call.cred).await.map_err(|e| ("preview", e.to_string()))?
        } else {
            let (prior, prior_sensitive) = match &self.prior_attributes {
                Some((a, s)) => (Some(a), s.as_slice()),
                None => (None, &[][..]),
            };
            let (ctx, kind, cred, unknown) = (&call.ctx, call.kind, call.cred, &self.unknown);
            let planned = known_after_apply::plan(session, ctx, kind, state, desired, unknown, prior, prior_sensitive, cred)
                .await
                .map_err(|e| ("preview", e.to_string()))?;
            if let Some(note) = planned.note {
                self.log("preview", note);
            }
            planned.plan
        };
        self.mark_sensitive(&mut plan, desired);
        self.record.diff = Some(job_diff::planned(&plan, &env.secrets));
        let policy = self.policies(node, &plan, desired).await?;
        self.log("preview", format!("{} ({} attribute change(s))", change_name(plan.change), plan.changes.len()));
        // Only a change of what was applied before has texts to diff: a
        // create's desired attributes are not masked and copied for nothing.
        let texts = match &self.prior_attributes {
            Some((prior, _)) => super::plan_text::text_changes(&plan, Some(prior), &mask_keys(desired, &self.sensitive)),
            None => Vec::new(),
        };
        let mut planned = planned(plan, policy);
        // What is known only after apply has no text to diff yet.
        planned.texts = texts.into_iter().filter(|t| !planned.after_unknown(&t.path)).collect();
        if env.run.mode == Mode::Plan {
            env.planned.lock().map_err(|_| ("preview", "lock poisoned".to_string()))?.push(planned.clone());
        }
        let message = skipped.then(|| "planned for the policies (flow policy: preview = false)".to_string());
        self.end("preview", Status::Succeeded, message);
        Ok(planned)
    }

    /// apply: this node's intent has been on disk since the environment
    /// started (`JournalPhase::Planned`); `Started` only narrows it down.
    async fn apply(
        &mut self,
        session: &mut ProvisionerSession<'_>,
        call: &Call<'_>,
        state: Option<&Value>,
        desired: Value,
    ) -> Result<(), Halt> {
        let env = self.env.clone();
        let node = env.resource(self.subject);
        self.begin("apply");
        self.apply_called = true;
        env.run.journal.record(Write::Journal(self.journal_entry("apply", JournalPhase::Started)));
        let applied = match session.apply(&call.ctx, call.kind, state, &desired, call.cred).await {
            Ok(a) => a,
            Err(e) => {
                env.run.journal.record(Write::Journal(self.journal_entry("apply", JournalPhase::Failed)));
                return Err(Halt::Failed("apply", e.to_string()));
            }
        };
        let record = self.record_of(node, applied.state, applied.outputs.clone(), &desired);
        // Not waited for: the journal puts it on disk within
        // `DURABLE_EVERY`. A crash before then leaves this node `Planned` or
        // `Started`, and `resume` asks the provisioner what it created
        // (`read` without a state) rather than applying again.
        env.run.journal.record_all(vec![
            Write::PutResource(env.key(&node.name), record),
            Write::Journal(self.journal_entry("apply", JournalPhase::Done)),
        ]);
        env.publish_outputs(&node.name, KnownOutputs::All(applied.outputs));
        self.end("apply", Status::Succeeded, None);
        Ok(())
    }

    /// The job's input snapshot, with `attributes` as they are to be kept.
    fn job_input(&self, attributes: Value, plugin: &LoadedPlugin, flow: &FlowPolicy) -> JobInput {
        let node = self.env.resource(self.subject);
        JobInput {
            attributes,
            plugin: node.plugin.clone(),
            plugin_digest: plugin.digest().to_string(),
            kind: node.kind.clone(),
            flow: json!({
                "refresh": flow.refresh,
                "preview": flow.preview,
                "pause_before_apply": flow.pause_before_apply,
                "on_failure": self.env.on_failure().name(),
            }),
            message: self.env.run.message.clone(),
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
        if !env.has_policies() {
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
            "environment": env.plan.name,
        });
        for (name, spec) in &env.plan.plugins {
            if spec.kind != PluginKind::Policy {
                continue;
            }
            let policy = env.plugin(name).map_err(|e| ("preview", format!("policy `{name}`: {e}")))?;
            match policy.evaluate(&env.run.host, &self.context(), &input).await.map_err(|e| ("preview", e.to_string()))? {
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
        let node = env.resource(self.subject);
        let key = env.key(&node.name);
        let Some(prior) = env.take_prior(&node.name).map_err(|e| ("preflight", e.to_string()))? else {
            for op in UNDEPLOY_OPS {
                self.skip(op, "not deployed");
            }
            self.record.change = Some("no-op".into());
            self.record.diff = Some(JobDiff::Changes(Vec::new()));
            return Ok(());
        };
        self.go_on("preflight")?;
        let (plugin, _, cred, flow) = self.preflight().await?;
        if env.run.mode == Mode::PreflightUndeploy {
            for op in ["init", "refresh", "preview", "destroy"] {
                self.skip(op, "preflight only");
            }
            return Ok(());
        }
        let ctx = self.context();
        self.go_on("init")?;
        self.begin("init");
        self.record.input = Some(self.job_input(prior.attributes.clone(), &plugin, &flow));
        self.end("init", Status::Succeeded, None);
        let mut session = plugin.session(&env.run.host).await.map_err(|e| ("init", e.to_string()))?;
        let mut state = prior.state.clone();
        self.go_on("refresh")?;
        if flow.refresh {
            self.begin("refresh");
            match session.read(&ctx, &node.kind, Some(&state), &prior.attributes, cred.as_ref()).await {
                Ok(Some(now)) => state = now.state,
                Ok(None) => {
                    self.end("refresh", Status::Succeeded, None);
                    self.log("refresh", "already gone; forgetting it".into());
                    self.skip("preview", "already gone");
                    self.skip("destroy", "already gone");
                    // A plan writes nothing: the undeploy will forget it.
                    if env.run.mode.records() {
                        env.run.journal.record_durably(Write::DeleteResource(key)).await.map_err(|e| ("refresh", e.to_string()))?;
                    }
                    self.record.change = Some("delete".into());
                    self.record.diff = Some(job_diff::destroyed(&prior, &env.secrets));
                    return Ok(());
                }
                Err(e) => return Err(Halt::Failed("refresh", e.to_string())),
            }
            self.end("refresh", Status::Succeeded, None);
        } else {
            self.skip("refresh", "flow policy: refresh = false");
        }
        self.go_on("preview")?;
        self.begin("preview");
        let plan = ResourcePlan { change: Change::Delete, changes: Vec::new() };
        let policy = self.policies(node, &plan, &prior.attributes).await?;
        self.end("preview", Status::Succeeded, None);
        self.record.change = Some("delete".into());
        self.record.diff = Some(job_diff::destroyed(&prior, &env.secrets));
        let planned = PlannedChange::new(&env.plan.name, node, plan, policy);
        if env.run.mode == Mode::PlanUndeploy {
            env.planned.lock().map_err(|_| ("preview", "lock poisoned".to_string()))?.push(planned);
            self.skip("destroy", "plan only");
            return Ok(());
        }
        self.go_on("destroy")?;
        self.gate_before("destroy", &flow, &planned).await?;

        self.begin("destroy");
        env.run.journal
            .record_durably(Write::Journal(self.journal_entry("destroy", JournalPhase::Started)))
            .await
            .map_err(|e| ("destroy", e.to_string()))?;
        if let Err(e) = session.destroy(&ctx, &node.kind, &state, cred.as_ref()).await {
            env.run.journal.record(Write::Journal(self.journal_entry("destroy", JournalPhase::Failed)));
            return Err(Halt::Failed("destroy", e.to_string()));
        }
        env.run.journal
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
            depends_on: env.depends_on(self.subject),
            serial: 0,
            run_id: env.run.id.clone(),
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
        // An unknown attribute's value is the placeholder, no secret.
        for k in keys.iter().filter(|k| !self.unknown.contains(k)) {
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
                if let Some(v) = desired.get(&top).filter(|_| !self.unknown.contains(&top)) {
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
            run_id: self.env.run.id.clone(),
            environment: self.env.plan.name.clone(),
            node: self.record.node.clone(),
            nodes: Vec::new(),
            op: op.into(),
            phase,
            ms: now_ms(),
        }
    }
}
