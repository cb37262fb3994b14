//! What one environment resolves to ([`EnvironmentPlan`]): its vars, the
//! flow policy of each node, its approval gate and who may decide its
//! gates, its plugins and the credentials of each provisioner. Its
//! resources' attributes and the outputs are evaluated there too, so that
//! their mistakes surface at check time rather than during a deploy.

use std::collections::BTreeMap;

use petgraph::graph::DiGraph;
use serde_json::{Map, Value};

use crate::approvers::ApprovalRule;
use crate::ast::*;
use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::eval::{self, Scope};
use crate::graph::{CredentialsBinding, Dependency, EnvironmentPlan, FlowPolicy, OnFailure, ResourceNode};
use crate::par;

use super::references::varies_by_environment;
use super::{Compiler, RESOURCES_PER_THREAD};

impl<'a> Compiler<'a> {
    /// Environment `env` resolved. A var required and given no value there
    /// is added to `missing`, to be reported once for every environment.
    pub(super) fn environment_plan(
        &mut self,
        pipeline: &str,
        env: &str,
        graph: &DiGraph<ResourceNode, Dependency>,
        cli_vars: &Map<String, Value>,
        bad_cli_vars: &[String],
        missing: &mut BTreeMap<String, Vec<String>>,
    ) -> EnvironmentPlan {
        let m = self.m;
        let decl = m.environments.iter().find(|e| e.name.name == env);
        let (vars, unavailable) = self.var_values(pipeline, env, decl, cli_vars, bad_cli_vars, missing);
        // Everything below evaluates against the vars. An expression that
        // uses a var without a value is skipped (`skip`), or it would repeat
        // that one mistake as many others; everything else is still checked.
        self.unavailable = unavailable;
        let scope = Scope { pipeline, environment: env, vars: &vars, outputs: &eval::no_outputs, artifacts: &self.opts.artifacts };
        let environment_flow = self.environment_flow(decl, &scope);
        let flow = self.flow_policies(environment_flow, graph.node_count(), &scope);
        let on_failure = self.on_failure(decl, &scope);
        let approval = match decl.and_then(|d| d.approval.as_ref()) {
            Some(e) => self.eval_bool(e, &scope, "`approval`").unwrap_or(false),
            None => false,
        };
        let approval_rule = match decl {
            Some(d) => ApprovalRule {
                approvers: d.approvers.iter().map(|(a, _)| a.clone()).collect(),
                self_approval: d.self_approval.is_none_or(|(allowed, _)| allowed),
            },
            None => ApprovalRule::default(),
        };
        let mut plugins = BTreeMap::new();
        for p in &m.plugins {
            if let Some(spec) = self.plugin_spec(p, &scope) {
                plugins.insert(p.name.name.to_string(), spec);
            }
        }
        self.check_values(&scope);
        let credentials = self.credential_bindings(decl, &scope);
        self.unavailable.clear();
        EnvironmentPlan {
            name: env.to_string(),
            after: decl.map(|d| d.after.iter().map(|a| a.name.to_string()).collect()).unwrap_or_default(),
            approval,
            approval_rule,
            vars,
            flow,
            environment_flow,
            on_failure,
            plugins,
            credentials,
            previews: decl.and_then(|d| d.previews).is_some_and(|(p, _)| p),
        }
    }

    /// The environment's own flow policy (`decl`'s `flow` > the
    /// pipeline's > the defaults): what its resources inherit.
    fn environment_flow(&mut self, decl: Option<&EnvironmentDecl>, scope: &Scope) -> FlowPolicy {
        let m = self.m;
        let base = FlowPolicy::default();
        let pipeline_flow = match m.flows.first() {
            Some(f) => self.flow(f, base, scope),
            None => base,
        };
        match decl.and_then(|d| d.flow.as_ref()) {
            Some(f) => self.flow(f, pipeline_flow, scope),
            None => pipeline_flow,
        }
    }

    /// The flow policy of each of `nodes` nodes: the resource's `flow` >
    /// its environment's (`env_flow`).
    fn flow_policies(&mut self, env_flow: FlowPolicy, nodes: usize, scope: &Scope) -> Vec<FlowPolicy> {
        let m = self.m;
        let mut flow = vec![env_flow; nodes];
        for (i, policy) in flow.iter_mut().enumerate() {
            let Some(f) = &m.resources[self.nodes[i]].flow else { continue };
            *policy = self.flow(f, env_flow, scope);
        }
        flow
    }

    /// `inherited` with what `f` sets.
    fn flow(&mut self, f: &FlowBlock, inherited: FlowPolicy, scope: &Scope) -> FlowPolicy {
        let mut p = inherited;
        if let Some(a) = &f.refresh {
            p.refresh = self.eval_bool(&a.value, scope, "`refresh`").unwrap_or(p.refresh);
        }
        if let Some(a) = &f.preview {
            p.preview = self.eval_bool(&a.value, scope, "`preview`").unwrap_or(p.preview);
        }
        if let Some(a) = &f.pause_before_apply {
            p.pause_before_apply = self.eval_bool(&a.value, scope, "`pause_before_apply`").unwrap_or(p.pause_before_apply);
        }
        p
    }

    /// What a failed node stops in the environment `decl`: its `flow`'s
    /// `on_failure` > the pipeline's > stop only the dependents. (A
    /// resource's `flow` cannot say: the parser reports it there.)
    fn on_failure(&mut self, decl: Option<&EnvironmentDecl>, scope: &Scope) -> OnFailure {
        let m = self.m;
        let mut policy = OnFailure::default();
        let pipeline = m.flows.first().and_then(|f| f.on_failure.as_ref());
        let env = decl.and_then(|d| d.flow.as_ref()).and_then(|f| f.on_failure.as_ref());
        for a in [pipeline, env].into_iter().flatten() {
            policy = self.failure_policy(&a.value, scope).unwrap_or(policy);
        }
        policy
    }

    /// The failure policy `e` names; `None` if it names none (reported).
    fn failure_policy(&mut self, e: &Expr, scope: &Scope) -> Option<OnFailure> {
        let names = || OnFailure::ALL.iter().map(|(n, _)| *n);
        let value = self.eval(e, scope)?;
        let Some(text) = value.as_str() else {
            self.diags.push(
                Diagnostic::at(Code::TypeMismatch, e.span, "`on_failure` must be a string")
                    .with_label(e.span, format!("a {}", eval::type_name(&value)))
                    .help("write `on_failure = \"stop-dependents\"` or `on_failure = \"stop-all\"`"),
            );
            return None;
        };
        if let Some(policy) = OnFailure::named(text) {
            return Some(policy);
        }
        self.diags.push(
            Diagnostic::at(Code::InvalidValue, e.span, format!("`{text}` is not a failure policy"))
                .with_label(e.span, "not a failure policy")
                .help(did_you_mean(text, names()).unwrap_or_else(|| {
                    "`on_failure` is \"stop-dependents\" (a failure stops what depends on it; the default) or \
                     \"stop-all\" (it stops everything not started yet)"
                        .into()
                })),
        );
        None
    }

    /// Evaluates the attributes and outputs, for their mistakes.
    ///
    /// Attributes that do not wait on an upstream output are evaluated
    /// now, so their mistakes surface at check time. One that uses no var
    /// and not `env` evaluates the same in every environment, and a
    /// mistake is reported once however often it is made: such an
    /// expression is evaluated in the first environment only. One that
    /// cannot fail is not evaluated.
    fn check_values(&mut self, scope: &Scope) {
        let m = self.m;
        let again = self.evaluated_once;
        let threads = par::threads_for(m.resources.len(), RESOURCES_PER_THREAD);
        let (pipeline, env, vars) = (scope.pipeline, scope.environment, scope.vars);
        let this = &*self;
        let found = par::map(&m.resources, threads, |i, r| {
            // A scope of its own: a scope's output lookup need not be shared between threads.
            let scope = Scope { pipeline, environment: env, vars, outputs: &eval::no_outputs, artifacts: &self.opts.artifacts };
            // Decided from the facts, so that what is not evaluated is not even read.
            let facts = &this.facts[this.first_fact[i]..];
            let values = r.attributes.iter().zip(facts).filter(|(_, f)| {
                !f.waits_first_on_output && !f.cannot_fail && (!again || f.varies_by_environment)
            });
            values.filter_map(|(a, _)| this.try_eval(&a.value, &scope).err()).collect::<Vec<_>>()
        });
        self.diags.extend(found.into_iter().flatten());
        for o in &m.outputs {
            if !again || varies_by_environment(&o.value) {
                self.eval(&o.value, scope);
            }
        }
        self.evaluated_once = true;
    }

    /// Which resolver supplies each provisioner's credentials, and with what
    /// config: the pipeline's bindings, and over them the environment's.
    fn credential_bindings(
        &mut self,
        decl: Option<&EnvironmentDecl>,
        scope: &Scope,
    ) -> BTreeMap<String, CredentialsBinding> {
        let m = self.m;
        let mut credentials = BTreeMap::new();
        let env_bindings = decl.map(|d| d.credentials.as_slice()).unwrap_or(&[]);
        for c in m.credentials.iter().chain(env_bindings) {
            let Some(resolver) = &c.resolver else { continue };
            let config = match &c.config {
                Some(cfg) => self.eval(cfg, scope).unwrap_or_else(|| Value::Object(Map::new())),
                None => Value::Object(Map::new()),
            };
            credentials.insert(
                c.provisioner.name.to_string(),
                CredentialsBinding { provisioner: c.provisioner.name.to_string(), resolver: resolver.name.to_string(), config },
            );
        }
        credentials
    }
}
