//! [`Module`] -> [`PipelineGraph`]: every check of the language, then the
//! dependency graph, levels, the environment chain and what each environment
//! resolves to. All errors are collected; none stops the others.
//!
//! One `Compiler` goes through the stages, each in a file of its own:
//! - `checks`: what the file declares (names given twice, plugins and their
//!   use, environments, flow blocks, gates);
//! - `references`: what every expression refers to and calls;
//! - `vars`: var values (from `--var`, an environment, a default) and
//!   their types;
//! - `resource_graph` and `environment_chain`: the two graphs, built with
//!   the algorithms in `dag`;
//! - `environment_plan`: what each environment resolves to, its plugins in
//!   `plugin_spec`;
//! - `services`: the `service` blocks, checked and evaluated in the
//!   pipeline's scope;
//! - `evaluate`: evaluating an expression at compile time, each mistake
//!   reported once.

mod checks;
mod dag;
mod environment_chain;
mod environment_plan;
mod evaluate;
mod plugin_spec;
mod references;
mod resource_graph;
mod services;
mod vars;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use petgraph::graph::{DiGraph, NodeIndex};
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

use crate::ast::*;
use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::graph::{Dependency, EnvironmentPlan, PipelineGraph, ResourceNode};
use crate::sensitive::SensitiveValues;
use references::{Facts, Place};

pub use plugin_spec::normalize_http_grant;
pub use vars::{parse_var_value, type_matches};

/// Below this many resources, their checks run on one thread: starting
/// another would cost more than it saves.
const RESOURCES_PER_THREAD: usize = 1000;

/// The environment a file without `environment` items runs in.
pub const DEFAULT_ENVIRONMENT: &str = "default";

/// What the command line adds to a file.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// The pipeline name when the file has no `pipeline "..."` (the file stem).
    pub default_name: String,
    /// `--var name=value`, as typed; parsed by the var's declared type.
    pub vars: Vec<(String, String)>,
    /// `--env E`: resolve only this environment.
    pub env: Option<String>,
    /// Report vars that have no value. `graph` does not need values; `check`
    /// and every command that deploys do.
    pub require_values: bool,
    /// What builds made, by service name: `service.NAME.artifact.*` (a
    /// service pipeline's deploy runs are compiled with them).
    pub artifacts: BTreeMap<String, crate::service::ArtifactRef>,
    /// Resolve only the environments marked `previews = true` (a pull
    /// request's deploy), in run order.
    pub previews_only: bool,
}

/// Checks `module` and compiles it into a graph, or every mistake found.
pub fn compile(module: &Module, opts: &CompileOptions) -> Result<PipelineGraph, Vec<Diagnostic>> {
    let mut compiled = check_and_build(module, opts)?;
    for (node, &r) in compiled.graph.node_weights_mut().zip(&compiled.nodes) {
        let r = &module.resources[r];
        node.name = r.name.name.to_string();
        node.plugin = r.plugin.name.to_string();
        node.kind = r.kind.name.to_string();
        node.attributes = r.attributes.clone();
    }
    Ok(compiled.into_pipeline(module.outputs.clone()))
}

/// [`compile`], taking the module: what the graph keeps of it is moved
/// there instead of being copied.
pub(crate) fn compile_owned(mut module: Module, opts: &CompileOptions) -> Result<PipelineGraph, Vec<Diagnostic>> {
    let mut compiled = check_and_build(&module, opts)?;
    for (node, &r) in compiled.graph.node_weights_mut().zip(&compiled.nodes) {
        let r = &mut module.resources[r];
        node.name = std::mem::take(&mut r.name.name).into_string();
        node.plugin = std::mem::take(&mut r.plugin.name).into_string();
        node.kind = std::mem::take(&mut r.kind.name).into_string();
        node.attributes = std::mem::take(&mut r.attributes);
    }
    Ok(compiled.into_pipeline(std::mem::take(&mut module.outputs)))
}

/// Every check, and what the pipeline is made of if there was no mistake.
fn check_and_build(module: &Module, opts: &CompileOptions) -> Result<Compiled, Vec<Diagnostic>> {
    // The resource names, side by side: a lookup compares with these rather
    // than with strings spread over the whole module, a cache miss each.
    let mut names = String::with_capacity(module.resources.iter().map(|r| r.name.name.len()).sum());
    for r in &module.resources {
        names.push_str(&r.name.name);
    }
    let mut c = Compiler::new(module, opts, &names);
    let graph = c.run();
    let mut diags = c.diags;
    // A message may echo a value: never one of a sensitive var.
    for d in &mut diags {
        c.secrets.redact_diagnostic(d);
    }
    // One mistake evaluated in several environments is reported once.
    let mut seen = HashSet::new();
    diags.retain(|d| seen.insert((d.code, d.message.clone(), d.labels.first().map(|l| l.span))));
    diags.sort_by_key(|d| d.position());
    match graph {
        Some(compiled) if diags.is_empty() => Ok(compiled),
        _ => Err(diags),
    }
}

/// A module compiled, but for what the graph's nodes take from the module
/// (names, attributes) and the outputs: the caller copies or moves them in,
/// and then makes the [`PipelineGraph`].
struct Compiled {
    name: String,
    graph: DiGraph<ResourceNode, Dependency>,
    order: Vec<NodeIndex>,
    environments: Vec<EnvironmentPlan>,
    all_environments: Vec<String>,
    sensitive_vars: BTreeSet<String>,
    services: Vec<crate::service::ServiceSpec>,
    artifacts: BTreeMap<String, crate::service::ArtifactRef>,
    /// Node -> the index of its declaration in `module.resources`.
    nodes: Vec<usize>,
}

impl Compiled {
    /// The pipeline, once the nodes have their names and attributes.
    fn into_pipeline(self, outputs: Vec<OutputDecl>) -> PipelineGraph {
        let Compiled { name, graph, order, environments, all_environments, sensitive_vars, services, artifacts, nodes: _ } =
            self;
        let mut pipeline = PipelineGraph::new(name, graph, order, environments, all_environments, outputs, sensitive_vars);
        pipeline.services = services;
        pipeline.artifacts = artifacts;
        pipeline
    }
}

/// The state of one compilation: the module, what is known of it so far,
/// and the mistakes found.
struct Compiler<'a> {
    m: &'a Module,
    opts: &'a CompileOptions,
    diags: Vec<Diagnostic>,
    /// Resource name -> its first declaration and its node in the graph.
    resources: FxHashMap<&'a str, (&'a ResourceDecl, NodeIndex)>,
    /// Var name -> its first declaration.
    vars: FxHashMap<&'a str, &'a VarDecl>,
    /// Plugin name -> its first declaration.
    plugins: FxHashMap<&'a str, &'a PluginDecl>,
    /// Node -> the index of its declaration in `m.resources`.
    nodes: Vec<usize>,
    /// Resource (by index in `m.resources`) -> its node, the first
    /// declaration's for a duplicate.
    node_of: Vec<NodeIndex>,
    /// Spans of the expressions that failed the reference checks: they are
    /// not evaluated, so their mistake is not reported a second time.
    bad: HashSet<Span>,
    /// Vars without a (valid) value in the environment being evaluated.
    unavailable: Vec<String>,
    /// Whether the attributes and outputs have been evaluated in one
    /// environment already (see `check_values`).
    evaluated_once: bool,
    /// The facts of every resource attribute, in declaration order, and the
    /// index of each resource's first one (both filled by `resource_graph`).
    facts: Vec<Facts>,
    first_fact: Vec<usize>,
    /// The vars declared `sensitive`.
    sensitive_vars: BTreeSet<String>,
    /// Their values, in every environment and as given with `--var`: kept
    /// out of the diagnostics.
    secrets: SensitiveValues,
}

impl<'a> Compiler<'a> {
    /// A compiler of `m`, with its names indexed: each resource name has a
    /// node, the first declaration's, in declaration order. `names` is every
    /// resource's name, one after the other.
    fn new(m: &'a Module, opts: &'a CompileOptions, names: &'a str) -> Self {
        let mut resources = FxHashMap::with_capacity_and_hasher(m.resources.len(), Default::default());
        let mut nodes = Vec::with_capacity(m.resources.len());
        let mut node_of = Vec::with_capacity(m.resources.len());
        let mut end = 0;
        for (i, r) in m.resources.iter().enumerate() {
            let name = &names[end..end + r.name.name.len()];
            end += name.len();
            // Nodes are the first declaration of each name, in order.
            let &mut (_, node) = resources.entry(name).or_insert_with(|| {
                nodes.push(i);
                (r, NodeIndex::new(nodes.len() - 1))
            });
            node_of.push(node);
        }
        let mut vars = FxHashMap::default();
        for v in &m.vars {
            vars.entry(v.name.name.as_str()).or_insert(v);
        }
        let mut plugins = FxHashMap::default();
        for p in &m.plugins {
            plugins.entry(p.name.name.as_str()).or_insert(p);
        }
        Compiler {
            m,
            opts,
            diags: Vec::new(),
            resources,
            vars,
            plugins,
            nodes,
            node_of,
            bad: HashSet::new(),
            unavailable: Vec::new(),
            evaluated_once: false,
            facts: Vec::new(),
            first_fact: Vec::with_capacity(m.resources.len()),
            sensitive_vars: BTreeSet::new(),
            secrets: SensitiveValues::new(),
        }
    }

    /// Every stage, in order; the compiled pipeline, if nothing stops it.
    fn run(&mut self) -> Option<Compiled> {
        let m = self.m;
        let name = self.pipeline_name();
        self.check_names();
        self.sensitive_vars =
            m.vars.iter().filter(|v| v.sensitive.is_some()).map(|v| v.name.name.to_string()).collect();
        let (cli_vars, bad_cli_vars) = self.cli_vars();
        self.check_vars();
        self.check_plugins();
        for cred in &m.credentials {
            self.check_credentials(cred);
        }
        self.duplicate_bindings(&m.credentials, "the pipeline");
        self.check_services();
        for f in &m.flows {
            self.flow_refs(f, "the pipeline's `flow`");
        }
        for e in &m.environments {
            self.check_environment(e);
        }
        self.check_flow_locks();
        let env_order = self.environment_order();

        let (graph, order) = self.resource_graph();
        for o in &m.outputs {
            self.refs(&o.value, Place::Wired, format_args!("output `{}`", o.name));
        }

        let services = self.service_specs(&name, &cli_vars, &bad_cli_vars);
        let selected = self.selected_environments(env_order.as_deref())?;
        let environments = self.environment_plans(&name, &selected, &graph, &cli_vars, &bad_cli_vars);
        // A graph is built only from a sound resource order and environment chain.
        let (order, env_order) = (order?, env_order?);
        if !bad_cli_vars.is_empty() {
            return None;
        }
        Some(Compiled {
            name,
            graph,
            order,
            environments,
            all_environments: env_order,
            sensitive_vars: std::mem::take(&mut self.sensitive_vars),
            services,
            artifacts: self.opts.artifacts.clone(),
            nodes: std::mem::take(&mut self.nodes),
        })
    }

    /// The environments to resolve, in run order: `--env`'s, or all of
    /// them; with `previews_only`, only those marked `previews = true`.
    /// `None` if `--env` names none, or none is marked (reported).
    fn selected_environments(&mut self, env_order: Option<&[String]>) -> Option<Vec<String>> {
        // The per-environment checks (vars, flow, approval, plugins) do not
        // need the resource order, nor the environment order: when `after`
        // is broken, every environment is still checked, in declaration order.
        let env_names: Vec<String> = match env_order {
            Some(order) => order.to_vec(),
            None => self.m.environments.iter().map(|e| e.name.name.to_string()).collect(),
        };
        let selected = match &self.opts.env {
            None => env_names,
            Some(wanted) if env_names.iter().any(|e| e == wanted) => vec![wanted.clone()],
            Some(wanted) => {
                let help = did_you_mean(wanted, env_names.iter().map(String::as_str))
                    .unwrap_or_else(|| format!("the environments are: {}", env_names.join(", ")));
                self.diags.push(
                    Diagnostic::new(Code::UnknownEnvironment, format!("--env {wanted}: no such environment")).help(help),
                );
                return None;
            }
        };
        if !self.opts.previews_only {
            return Some(selected);
        }
        let previews = |name: &String| {
            self.m.environments.iter().any(|e| e.name.name == name.as_str() && e.previews.is_some_and(|(p, _)| p))
        };
        let selected: Vec<String> = selected.into_iter().filter(previews).collect();
        if selected.is_empty() {
            let message = match &self.opts.env {
                Some(env) => format!("environment `{env}` does not take previews"),
                None => "no environment has `previews = true`".to_string(),
            };
            self.diags.push(Diagnostic::new(Code::UnknownEnvironment, message).help(
                "a pull request's pipeline deploys only to the environments marked for it: add `previews = true` to \
                 an environment, like `environment preview { previews = true }`",
            ));
            return None;
        }
        Some(selected)
    }

    /// Each of the `selected` environments resolved; then the vars without
    /// a value reported, each once with every environment it has none in.
    fn environment_plans(
        &mut self,
        pipeline: &str,
        selected: &[String],
        graph: &DiGraph<ResourceNode, Dependency>,
        cli_vars: &Map<String, Value>,
        bad_cli_vars: &[String],
    ) -> Vec<EnvironmentPlan> {
        let mut environments = Vec::new();
        let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for env in selected {
            let plan = self.environment_plan(pipeline, env, graph, cli_vars, bad_cli_vars, &mut missing);
            for var in &self.sensitive_vars {
                if let Some(value) = plan.vars.get(var) {
                    self.secrets.add(value);
                }
            }
            environments.push(plan);
        }
        self.report_missing_vars(missing);
        environments
    }

    /// The first declaration of var `name`.
    fn var(&self, name: &str) -> Option<&'a VarDecl> {
        self.vars.get(name).copied()
    }

    /// The first declaration of plugin `name`.
    fn plugin(&self, name: &str) -> Option<&'a PluginDecl> {
        self.plugins.get(name).copied()
    }

    /// The graph node of the resource `name`.
    fn node(&self, name: &str) -> Option<NodeIndex> {
        self.resources.get(name).map(|&(_, n)| n)
    }

    /// A name declared by an item that failed to parse: not unknown, just broken.
    fn unparsed(&self, name: &str) -> bool {
        self.m.unparsed.iter().any(|n| n == name)
    }
}
