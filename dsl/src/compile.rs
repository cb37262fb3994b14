//! [`Module`] -> [`PipelineGraph`]: every check of the language, then the
//! dependency graph, levels, the environment chain and what each environment
//! resolves to. All errors are collected; none stops the others.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

use crate::ast::*;
use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::eval::{self, EvalError, Scope};
use crate::graph::*;
use crate::par;
use crate::sensitive::{self, SensitiveValues};

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
}

/// Where an expression stands decides what it may refer to.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    /// A resource attribute or an output: anything, including resource outputs.
    Wired,
    /// Known before anything is applied (plugin config, flow, vars, gates):
    /// vars, `env.name`, `pipeline.name`.
    Static,
    /// A var's default: constants only.
    Constant,
}

pub fn compile(module: &Module, opts: &CompileOptions) -> Result<PipelineGraph, Vec<Diagnostic>> {
    let (mut graph, nodes) = check_and_build(module, opts)?;
    for (node, &r) in graph.graph.node_weights_mut().zip(&nodes) {
        let r = &module.resources[r];
        node.name = r.name.name.to_string();
        node.plugin = r.plugin.name.to_string();
        node.kind = r.kind.name.to_string();
        node.attributes = r.attributes.clone();
    }
    graph.outputs = module.outputs.clone();
    Ok(graph)
}

/// [`compile`], taking the module: what the graph keeps of it is moved
/// there instead of being copied.
pub(crate) fn compile_owned(mut module: Module, opts: &CompileOptions) -> Result<PipelineGraph, Vec<Diagnostic>> {
    let (mut graph, nodes) = check_and_build(&module, opts)?;
    for (node, &r) in graph.graph.node_weights_mut().zip(&nodes) {
        let r = &mut module.resources[r];
        node.name = std::mem::take(&mut r.name.name).into_string();
        node.plugin = std::mem::take(&mut r.plugin.name).into_string();
        node.kind = std::mem::take(&mut r.kind.name).into_string();
        node.attributes = std::mem::take(&mut r.attributes);
    }
    graph.outputs = std::mem::take(&mut module.outputs);
    Ok(graph)
}

/// Every check, and the graph without what its nodes take from the module
/// (names, attributes) and the outputs: the caller copies or moves them in.
/// Also the index in `module.resources` of each node's declaration.
fn check_and_build(module: &Module, opts: &CompileOptions) -> Result<(PipelineGraph, Vec<usize>), Vec<Diagnostic>> {
    // The resource names, side by side: a lookup compares with these rather
    // than with strings spread over the whole module, a cache miss each.
    let mut names = String::with_capacity(module.resources.iter().map(|r| r.name.name.len()).sum());
    for r in &module.resources {
        names.push_str(&r.name.name);
    }
    let mut resources = FxHashMap::with_capacity_and_hasher(module.resources.len(), Default::default());
    let mut nodes = Vec::with_capacity(module.resources.len());
    let mut node_of = Vec::with_capacity(module.resources.len());
    let mut end = 0;
    for (i, r) in module.resources.iter().enumerate() {
        let name = &names[end..end + r.name.name.len()];
        end += name.len();
        // Nodes are the first declaration of each name, in order.
        let &mut (_, node) = resources.entry(name).or_insert_with(|| {
            nodes.push(i);
            (r, NodeIndex::new(nodes.len() - 1))
        });
        node_of.push(node);
    }
    let mut c = Compiler {
        m: module,
        opts,
        diags: Vec::new(),
        resources,
        nodes,
        node_of,
        bad: HashSet::new(),
        unavailable: Vec::new(),
        evaluated_once: false,
        facts: Vec::new(),
        first_fact: Vec::with_capacity(module.resources.len()),
        sensitive_vars: BTreeSet::new(),
        secrets: SensitiveValues::new(),
    };
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
        Some(g) if diags.is_empty() => Ok((g, c.nodes)),
        _ => Err(diags),
    }
}

struct Compiler<'a> {
    m: &'a Module,
    opts: &'a CompileOptions,
    diags: Vec<Diagnostic>,
    /// Resource name -> its first declaration and its node in the graph.
    resources: FxHashMap<&'a str, (&'a ResourceDecl, NodeIndex)>,
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
    /// environment already (see `environment_plan`).
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

/// What an environment needs to know about an attribute before evaluating
/// it, learnt while its references are checked: the expression is walked
/// once, rather than again in every environment.
#[derive(Clone, Copy)]
struct Facts {
    /// See [`eval::waits_first_on_output`]: no environment can evaluate it.
    waits_first_on_output: bool,
    varies_by_environment: bool,
    /// See [`eval::cannot_fail`]: evaluating it would report nothing.
    cannot_fail: bool,
}

/// What [`Compiler::check_attributes`] finds in one resource.
struct CheckedAttributes {
    /// Each sound reference to an output, with the node it comes from, in
    /// the order written.
    wiring: Vec<(NodeIndex, Wiring)>,
    /// The facts of each attribute.
    facts: Vec<Facts>,
    /// The mistakes in the references of an attribute (by index), if any.
    mistakes: Vec<(usize, Vec<Diagnostic>)>,
}

impl Facts {
    fn of(e: &Expr) -> Facts {
        Facts {
            waits_first_on_output: eval::waits_first_on_output(e),
            varies_by_environment: varies_by_environment(e),
            cannot_fail: eval::cannot_fail(e),
        }
    }
}

impl<'a> Compiler<'a> {
    fn run(&mut self) -> Option<PipelineGraph> {
        let m = self.m;
        let name = self.pipeline_name();
        // The first declaration of each resource name is known already: its node's.
        for (i, r) in m.resources.iter().enumerate() {
            let first = self.nodes[self.node_of[i].index()];
            if first != i {
                self.diags.push(duplicate_name("resource", &r.name, m.resources[first].name.span));
            }
        }
        self.duplicates("var", m.vars.iter().map(|v| &v.name));
        self.duplicates("plugin", m.plugins.iter().map(|p| &p.name));
        self.duplicates("environment", m.environments.iter().map(|e| &e.name));
        self.duplicates("output", m.outputs.iter().map(|o| &o.name));
        for r in &m.resources {
            if ["var", "env", "pipeline"].contains(&r.name.name.as_str()) {
                self.diags.push(
                    Diagnostic::at(Code::ReservedName, r.name.span, format!("`{}` cannot name a resource", r.name))
                        .with_label(r.name.span, "reserved for references")
                        .help("`var`, `env` and `pipeline` start references: choose another name"),
                );
            }
        }
        if m.flows.len() > 1 {
            self.diags.push(
                Diagnostic::at(Code::DuplicateName, m.flows[1].span, "the pipeline has more than one `flow` block")
                    .with_label(m.flows[1].span, "second `flow`")
                    .with_label(m.flows[0].span, "first `flow`")
                    .help("put every key in one `flow { }`"),
            );
        }

        self.sensitive_vars =
            m.vars.iter().filter(|v| v.sensitive.is_some()).map(|v| v.name.name.to_string()).collect();
        let (cli_vars, bad_cli_vars) = self.cli_vars();
        self.check_vars();
        self.check_plugins();
        for cred in &m.credentials {
            self.check_credentials(cred);
        }
        self.duplicate_bindings(&m.credentials, "the pipeline");
        for f in &m.flows {
            self.flow_refs(f, "the pipeline's `flow`");
        }
        for e in &m.environments {
            self.check_environment(e);
        }
        let env_order = self.environment_order();

        let (graph, order) = self.resource_graph();
        for o in &m.outputs {
            self.refs(&o.value, Place::Wired, format_args!("output `{}`", o.name));
        }

        // The per-environment checks (vars, flow, approval, plugins) do not
        // need the resource order, nor the environment order: when `after`
        // is broken, every environment is still checked, in declaration order.
        let env_names: Vec<String> = match &env_order {
            Some(order) => order.clone(),
            None => m.environments.iter().map(|e| e.name.name.to_string()).collect(),
        };
        let selected: Vec<&str> = match &self.opts.env {
            Some(wanted) => {
                if !env_names.iter().any(|e| e == wanted) {
                    let help = did_you_mean(wanted, env_names.iter().map(String::as_str))
                        .unwrap_or_else(|| format!("the environments are: {}", env_names.join(", ")));
                    self.diags.push(
                        Diagnostic::new(Code::UnknownEnvironment, format!("--env {wanted}: no such environment")).help(help),
                    );
                    return None;
                }
                vec![wanted.as_str()]
            }
            None => env_names.iter().map(String::as_str).collect(),
        };
        let mut environments = Vec::new();
        let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for env in selected {
            let plan = self.environment_plan(&name, env, &graph, &cli_vars, &bad_cli_vars, &mut missing);
            for var in &self.sensitive_vars {
                if let Some(value) = plan.vars.get(var) {
                    self.secrets.add(value);
                }
            }
            environments.push(plan);
        }
        for (var, envs) in missing {
            let Some(decl) = m.vars.iter().find(|v| v.name.name == var) else { continue };
            let envs: Vec<&str> = envs.iter().map(String::as_str).collect();
            let where_ = if m.environments.is_empty() {
                String::new()
            } else {
                format!(" in environment{} {}", if envs.len() == 1 { "" } else { "s" }, envs.join(", "))
            };
            self.diags.push(
                Diagnostic::at(Code::MissingVar, decl.name.span, format!("var `{var}` has no value{where_}"))
                    .with_label(decl.name.span, "declared without a default")
                    .help(format!(
                        "give it a default, set it in the environment's `vars {{ {var} = ... }}`, or pass `--var {var}=...`"
                    )),
            );
        }
        // A graph is built only from a sound resource order and environment chain.
        let (order, env_order) = (order?, env_order?);
        if !bad_cli_vars.is_empty() {
            return None;
        }
        let mut pipeline = PipelineGraph::new(name, graph, order, environments, env_order, Vec::new());
        pipeline.sensitive_vars = std::mem::take(&mut self.sensitive_vars);
        Some(pipeline)
    }

    fn pipeline_name(&mut self) -> String {
        let decls = &self.m.pipeline;
        if let [first, second, ..] = decls.as_slice() {
            self.diags.push(
                Diagnostic::at(Code::DuplicateName, second.span, "the pipeline is named twice")
                    .with_label(second.span, "named again here")
                    .with_label(first.span, "first named here"),
            );
        }
        match decls.first() {
            Some(p) => {
                if p.name.trim().is_empty() {
                    self.diags.push(
                        Diagnostic::at(Code::InvalidValue, p.name_span, "the pipeline name is empty")
                            .with_label(p.name_span, "empty")
                            .help("name it, like `pipeline \"network\"`, or leave the line out to use the file's name"),
                    );
                }
                p.name.clone()
            }
            None => self.opts.default_name.clone(),
        }
    }

    fn duplicates<'i>(&mut self, what: &str, names: impl Iterator<Item = &'i Ident>) {
        let mut first: HashMap<&str, Span> = HashMap::new();
        for n in names {
            if let Some(&prev) = first.get(n.name.as_str()) {
                self.diags.push(duplicate_name(what, n, prev));
            } else {
                first.insert(&n.name, n.span);
            }
        }
    }

    fn var(&self, name: &str) -> Option<&'a VarDecl> {
        self.m.vars.iter().find(|v| v.name.name == name)
    }

    fn plugin(&self, name: &str) -> Option<&'a PluginDecl> {
        self.m.plugins.iter().find(|p| p.name.name == name)
    }

    /// The graph node of the resource `name`.
    fn node(&self, name: &str) -> Option<NodeIndex> {
        self.resources.get(name).map(|&(_, n)| n)
    }

    /// `--var` values, parsed by their var's type, and the names of those
    /// that could not be (reported here; they count as having no value).
    fn cli_vars(&mut self) -> (Map<String, Value>, Vec<String>) {
        let mut out = Map::new();
        let mut bad = Vec::new();
        for (name, text) in &self.opts.vars {
            if self.sensitive_vars.contains(name) {
                self.secrets.add_text(text);
            }
            let Some(decl) = self.var(name) else {
                let help = did_you_mean(name, self.m.vars.iter().map(|v| v.name.name.as_str()))
                    .unwrap_or_else(|| "declare it with `var <name>: <type>` in the pipeline".to_string());
                self.diags.push(Diagnostic::new(Code::UnknownReference, format!("--var {name}: no such var")).help(help));
                bad.push(name.clone());
                continue;
            };
            match parse_var_value(decl.ty, text) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(why) => {
                    // The value of a sensitive var is not shown, even when it is wrong.
                    let shown = if decl.sensitive.is_some() { sensitive::MASK } else { text.as_str() };
                    self.diags.push(
                        Diagnostic::new(Code::TypeMismatch, format!("--var {name}={shown}: {why}"))
                            .help(format!("var `{name}` is declared as {}", decl.ty.name())),
                    );
                    bad.push(name.clone());
                }
            }
        }
        (out, bad)
    }

    fn check_vars(&mut self) {
        let empty = Map::new();
        for v in &self.m.vars {
            let Some(default) = &v.default else { continue };
            if !self.refs(default, Place::Constant, format_args!("the default of var `{}`", v.name)) {
                continue;
            }
            let scope = Scope { pipeline: "", environment: "", vars: &empty, outputs: &eval::no_outputs };
            if let Some(value) = self.eval(default, &scope) {
                self.type_check(v, &value, default.span, "its default is");
            }
        }
    }

    /// Reports a value of the wrong type for `var`; `given` says where the
    /// value comes from ("its default is", "environment `prod` sets it to").
    fn type_check(&mut self, var: &VarDecl, value: &Value, span: Span, given: &str) -> bool {
        if type_matches(var.ty, value) {
            return true;
        }
        let mut d = Diagnostic::at(
            Code::TypeMismatch,
            span,
            format!("var `{}` is a {}, but {given} a {}", var.name, var.ty.name(), eval::type_name(value)),
        )
        .with_label(span, format!("a {}", eval::type_name(value)));
        if let Some(ts) = var.ty_span {
            d = d.with_label(ts, "declared type");
        }
        self.diags.push(d);
        false
    }

    fn check_plugins(&mut self) {
        for p in &self.m.plugins {
            let owner = format!("plugin `{}`", p.name);
            for e in [&p.source, &p.config, &p.allow.http, &p.allow.fs, &p.allow.env, &p.limits.memory_mb, &p.limits.timeout_s]
                .into_iter()
                .flatten()
            {
                self.refs(e, Place::Static, &owner);
            }
        }
    }

    fn check_credentials(&mut self, c: &CredentialsDecl) {
        match self.plugin(&c.provisioner.name) {
            None => self.unknown_plugin(&c.provisioner, "provisioner"),
            Some(p) if p.kind.is_some_and(|k| k.0 != PluginKind::Provisioner) => self.diags.push(
                Diagnostic::at(
                    Code::InvalidReference,
                    c.provisioner.span,
                    format!("credentials go to provisioners; `{}` is a {} plugin", c.provisioner, kind_name(p)),
                )
                .with_label(c.provisioner.span, "not a provisioner")
                .with_label(p.name.span, "declared here")
                .help("credentials are bound to a plugin with `kind = \"provisioner\"`"),
            ),
            Some(_) => {}
        }
        if let Some(r) = &c.resolver {
            match self.plugin(&r.name) {
                None => self.unknown_plugin(r, "credentials"),
                Some(p) if p.kind.is_some_and(|k| k.0 != PluginKind::Credentials) => self.diags.push(
                    Diagnostic::at(
                        Code::InvalidReference,
                        r.span,
                        format!("`{}` is a {} plugin, not a credentials resolver", r, kind_name(p)),
                    )
                    .with_label(r.span, "not a credentials plugin")
                    .with_label(p.name.span, "declared here")
                    .help("a resolver is a plugin with `kind = \"credentials\"`"),
                ),
                Some(_) => {}
            }
        }
        if let Some(cfg) = &c.config {
            self.refs(cfg, Place::Static, format_args!("`credentials {}`", c.provisioner));
        }
    }

    fn duplicate_bindings(&mut self, bindings: &[CredentialsDecl], owner: &str) {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for b in bindings {
            if let Some(prev) = seen.insert(&b.provisioner.name, b.provisioner.span) {
                self.diags.push(
                    Diagnostic::at(
                        Code::DuplicateName,
                        b.provisioner.span,
                        format!("credentials for `{}` are given twice in {owner}", b.provisioner),
                    )
                    .with_label(b.provisioner.span, "given again here")
                    .with_label(prev, "first given here"),
                );
            }
        }
    }

    fn unknown_plugin(&mut self, name: &Ident, want: &str) {
        if self.unparsed(&name.name) {
            return;
        }
        let candidates: Vec<&str> = self
            .m
            .plugins
            .iter()
            .filter(|p| p.kind.is_none_or(|k| k.0.name() == want))
            .map(|p| p.name.name.as_str())
            .collect();
        self.diags.push(
            Diagnostic::at(Code::UnknownReference, name.span, format!("unknown plugin `{name}`"))
                .with_label(name.span, "no plugin of this name")
                .help(did_you_mean(&name.name, candidates.iter().copied()).unwrap_or_else(|| {
                    format!("declare it: `plugin {name} {{ kind = \"{want}\" source = \"...\" }}`")
                })),
        );
    }

    fn check_environment(&mut self, e: &EnvironmentDecl) {
        let owner = format!("environment `{}`", e.name);
        if let Some(a) = &e.approval {
            self.refs(a, Place::Static, format_args!("the `approval` of {owner}"));
        }
        for v in &e.vars {
            if self.var(&v.key.name).is_none() && !self.unparsed(&v.key.name) {
                self.diags.push(
                    Diagnostic::at(Code::UnknownReference, v.key.span, format!("unknown var `{}` in {owner}", v.key))
                        .with_label(v.key.span, "no var of this name")
                        .help(
                            did_you_mean(&v.key.name, self.m.vars.iter().map(|v| v.name.name.as_str()))
                                .unwrap_or_else(|| format!("declare it first: `var {}: <type>`", v.key)),
                        ),
                );
            }
            self.refs(&v.value, Place::Static, format_args!("the `vars` of {owner}"));
        }
        if let Some(f) = &e.flow {
            self.flow_refs(f, &format!("the `flow` of {owner}"));
        }
        for c in &e.credentials {
            self.check_credentials(c);
        }
        self.duplicate_bindings(&e.credentials, &owner);
    }

    fn flow_refs(&mut self, f: &FlowBlock, owner: &str) {
        for e in [&f.refresh, &f.preview, &f.pause_before_apply].into_iter().flatten() {
            self.refs(e, Place::Static, owner);
        }
    }

    /// Environments in run order, or `None` after reporting a cycle or an
    /// unknown name in `after`.
    fn environment_order(&mut self) -> Option<Vec<String>> {
        let envs = &self.m.environments;
        if envs.is_empty() {
            return Some(vec![DEFAULT_ENVIRONMENT.to_string()]);
        }
        let index: HashMap<&str, usize> = envs.iter().enumerate().map(|(i, e)| (e.name.name.as_str(), i)).collect();
        let mut g: DiGraph<usize, Span> = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..envs.len()).map(|i| g.add_node(i)).collect();
        let mut ok = true;
        for (i, e) in envs.iter().enumerate() {
            for a in &e.after {
                match index.get(a.name.as_str()) {
                    Some(&j) => {
                        g.add_edge(nodes[j], nodes[i], a.span);
                    }
                    None if self.unparsed(&a.name) => ok = false,
                    None => {
                        ok = false;
                        self.diags.push(
                            Diagnostic::at(Code::UnknownEnvironment, a.span, format!("unknown environment `{a}`"))
                                .with_label(a.span, "no environment of this name")
                                .maybe_help(did_you_mean(&a.name, envs.iter().map(|e| e.name.name.as_str()))),
                        );
                    }
                }
            }
        }
        let names = |i: NodeIndex| envs[g[i]].name.name.to_string();
        for cycle in cycles(&g) {
            ok = false;
            let path = cycle.iter().chain(cycle.first()).map(|n| names(*n)).collect::<Vec<_>>().join(" -> ");
            let mut d = Diagnostic::new(Code::EnvironmentCycle, format!("environments wait for each other: {path}"));
            for w in cycle.windows(2).chain(std::iter::once(&[cycle[cycle.len() - 1], cycle[0]][..])) {
                if let Some(e) = g.find_edge(w[0], w[1]) {
                    d = d.with_label(g[e], format!("`{}` runs after `{}`", names(w[1]), names(w[0])));
                }
            }
            self.diags.push(d.help("`after` must form a chain (or a tree) from a first environment"));
        }
        if !ok {
            return None;
        }
        Some(topological(&g, |n| g[n]).into_iter().map(names).collect())
    }

    /// The resource graph and its deploy order (`None` if it has a cycle).
    fn resource_graph(&mut self) -> (DiGraph<ResourceNode, Dependency>, Option<Vec<NodeIndex>>) {
        let m = self.m;
        let mut g: DiGraph<ResourceNode, Dependency> =
            DiGraph::with_capacity(self.nodes.len(), 3 * self.nodes.len());
        for i in 0..self.nodes.len() {
            // Only the first declaration of a name is a node; the others are reported as duplicates.
            let r = &m.resources[self.nodes[i]];
            self.check_type(r);
            let gate_after = self.gate(r);
            if let Some(f) = &r.flow {
                self.flow_refs(f, &format!("the `flow` of resource `{}`", r.name));
            }
            // The names and attributes are filled in by the caller, once every check has passed.
            g.add_node(ResourceNode {
                name: String::new(),
                plugin: String::new(),
                kind: String::new(),
                attributes: Vec::new(),
                gate_after,
                sensitive_attributes: self.sensitive_attributes(r),
                level: 0,
                span: r.span,
            });
        }
        // The references of every attribute, checked on as many threads as
        // are worth it; what they found is then taken in declaration order.
        let threads = par::threads_for(m.resources.len(), RESOURCES_PER_THREAD);
        let checked = par::map(&m.resources, threads, |_, r| self.check_attributes(r));
        let mut ok = true;
        self.facts.reserve_exact(m.resources.iter().map(|r| r.attributes.len()).sum());
        for (i, (r, checked)) in m.resources.iter().zip(checked).enumerate() {
            // A duplicate's references are checked and wired too, into the first declaration's node.
            let to = self.node_of[i];
            self.first_fact.push(self.facts.len());
            self.facts.extend(checked.facts);
            for (from, w) in checked.wiring {
                // Exactly: most edges carry one wiring, and a pushed vector makes room for four.
                let dep = edge(&mut g, from, to);
                dep.wiring.reserve_exact(1);
                dep.wiring.push(w);
            }
            for (attr, found) in checked.mistakes {
                self.bad.insert(r.attributes[attr].value.span);
                self.diags.extend(found);
            }
            for d in &r.depends_on {
                match self.node(&d.name) {
                    Some(from) => {
                        edge(&mut g, from, to).explicit.get_or_insert(d.span);
                    }
                    None => {
                        ok = false;
                        if !self.unparsed(&d.name) {
                            let diag = self.unknown_name(d, "resource", &[]);
                            self.diags.push(diag);
                        }
                    }
                }
            }
        }
        let names = |n: NodeIndex| m.resources[self.nodes[n.index()]].name.name.to_string();
        let order = topological(&g, |n| n.index());
        // Kahn's order leaves out every node on or after a cycle: only then look for cycles.
        let cycles = if order.len() < g.node_count() { cycles(&g) } else { Vec::new() };
        for cycle in cycles {
            ok = false;
            let path = cycle.iter().chain(cycle.first()).map(|n| names(*n)).collect::<Vec<_>>().join(" -> ");
            let mut d = Diagnostic::new(Code::Cycle, format!("dependency cycle: {path}"));
            let closing = [cycle[cycle.len() - 1], cycle[0]];
            for w in cycle.windows(2).chain(std::iter::once(&closing[..])) {
                if let Some(e) = g.find_edge(w[0], w[1]) {
                    let dep = &g[e];
                    let span = dep.wiring.first().map(|w| w.span).or(dep.explicit).unwrap_or(g[w[1]].span);
                    d = d.with_label(span, format!("`{}` depends on `{}`", names(w[1]), names(w[0])));
                }
            }
            self.diags.push(d.help("a resource cannot depend, directly or through others, on itself"));
        }
        if !ok {
            return (g, None);
        }
        for &n in &order {
            let level = g
                .neighbors_directed(n, petgraph::Direction::Incoming)
                .map(|p| g[p].level + 1)
                .max()
                .unwrap_or(0);
            g[n].level = level;
        }
        (g, Some(order))
    }

    /// The attributes of `r` whose value uses a sensitive var, sorted.
    fn sensitive_attributes(&self, r: &ResourceDecl) -> Vec<String> {
        if self.sensitive_vars.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<String> = r
            .attributes
            .iter()
            .filter(|a| sensitive::uses_any_var(&a.value, &self.sensitive_vars))
            .map(|a| a.key.name.to_string())
            .collect();
        // Keys are unique (a repeat is reported); sorted, they are surely so.
        out.sort();
        out.dedup();
        out
    }

    fn check_type(&mut self, r: &ResourceDecl) {
        match self.plugin(&r.plugin.name) {
            None if self.unparsed(&r.plugin.name) => {}
            None => {
                let candidates: Vec<&str> = self
                    .m
                    .plugins
                    .iter()
                    .filter(|p| p.kind.is_none_or(|k| k.0 == PluginKind::Provisioner))
                    .map(|p| p.name.name.as_str())
                    .collect();
                self.diags.push(
                    Diagnostic::at(Code::UnknownReference, r.plugin.span, format!("unknown plugin `{}`", r.plugin))
                        .with_label(r.plugin.span, "no plugin of this name")
                        .help(did_you_mean(&r.plugin.name, candidates.iter().copied()).unwrap_or_else(|| {
                            format!(
                                "declare the provisioner: `plugin {} {{ kind = \"provisioner\" source = \"...\" }}`",
                                r.plugin
                            )
                        })),
                );
            }
            Some(p) if p.kind.is_some_and(|k| k.0 != PluginKind::Provisioner) => self.diags.push(
                Diagnostic::at(
                    Code::NotAProvisioner,
                    r.plugin.span,
                    format!("resource `{}` uses plugin `{}`, which is a {} plugin, not a provisioner", r.name, r.plugin, kind_name(p)),
                )
                .with_label(r.plugin.span, "not a provisioner")
                .with_label(p.kind.map(|k| k.1).unwrap_or(p.name.span), format!("declared as {}", kind_name(p)))
                .help("resource types come from plugins with `kind = \"provisioner\"`"),
            ),
            Some(_) => {}
        }
    }

    fn gate(&mut self, r: &ResourceDecl) -> bool {
        let Some(e) = &r.gate else { return false };
        let owner = format!("resource `{}`", r.name);
        if !self.refs(e, Place::Static, format_args!("the `gate` of {owner}")) {
            return false;
        }
        match e.as_plain_string().as_deref() {
            Some("after") => true,
            Some("none") => false,
            _ => {
                self.diags.push(
                    Diagnostic::at(Code::InvalidValue, e.span, format!("invalid `gate` for {owner}"))
                        .with_label(e.span, "expected \"after\"")
                        .help("`gate = \"after\"` waits for approval after this resource, before its dependents"),
                );
                false
            }
        }
    }

    /// Checks every reference and call in `e`; false if any is wrong.
    fn refs(&mut self, e: &Expr, place: Place, owner: impl fmt::Display) -> bool {
        let found = self.check_refs(e, place, owner, |_, _, _| {});
        let ok = found.is_empty();
        if !ok {
            self.bad.insert(e.span);
        }
        self.diags.extend(found);
        ok
    }

    /// The references of every attribute of `r` checked: what they take
    /// from other resources, and the mistakes (see [`Self::refs`]).
    fn check_attributes(&self, r: &ResourceDecl) -> CheckedAttributes {
        let mut checked =
            CheckedAttributes { wiring: Vec::new(), facts: Vec::with_capacity(r.attributes.len()), mistakes: Vec::new() };
        for (i, attr) in r.attributes.iter().enumerate() {
            checked.facts.push(Facts::of(&attr.value));
            let before = checked.wiring.len();
            let owner = format_args!("resource `{}`", r.name);
            let found = self.check_refs(&attr.value, Place::Wired, owner, |root, output, from| {
                let w = Wiring {
                    from: root.name.clone(),
                    output: output.name.clone(),
                    to: r.name.name.clone(),
                    attribute: attr.key.name.clone(),
                    span: root.span.to(output.span),
                };
                checked.wiring.push((from, w));
            });
            if !found.is_empty() {
                // An attribute with a mistake wires nothing.
                checked.wiring.truncate(before);
                checked.mistakes.push((i, found));
            }
        }
        checked
    }

    /// The mistakes in the references and calls of `e`. `owner` names what
    /// `e` belongs to, for messages; it is only formatted when there is a
    /// mistake to report. `output` is called with each sound reference to a
    /// resource's output: the resource, the output and the resource's node.
    fn check_refs(
        &self,
        e: &Expr,
        place: Place,
        owner: impl fmt::Display,
        mut output: impl FnMut(&Ident, &Ident, NodeIndex),
    ) -> Vec<Diagnostic> {
        let mut found: Vec<Diagnostic> = Vec::new();
        e.walk(&mut |x| match &x.kind {
            ExprKind::Traversal { root, steps } => match self.reference(root, steps, place, &owner) {
                Ok(Some(node)) => {
                    if let Some(Step::Attr(name)) = steps.first() {
                        output(root, name, node);
                    }
                }
                Ok(None) => {}
                Err(d) => found.push(d),
            },
            ExprKind::Call { function, args } => match eval::function(&function.name) {
                None => found.push(
                    Diagnostic::at(Code::UnknownFunction, function.span, format!("unknown function `{function}`"))
                        .with_label(function.span, "no function of this name")
                        .help(
                            did_you_mean(&function.name, eval::FUNCTIONS.iter().map(|f| f.name)).unwrap_or_else(|| {
                                format!(
                                    "the functions are: {}",
                                    eval::FUNCTIONS.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
                                )
                            }),
                        ),
                ),
                Some(f) if args.len() < f.min_args || f.max_args.is_some_and(|m| args.len() > m) => found.push(
                    Diagnostic::at(Code::Evaluation, x.span, format!("wrong number of arguments to `{}`", f.name))
                        .with_label(x.span, format!("{} given", args.len()))
                        .help(format!("call it as {}", f.signature)),
                ),
                Some(_) => {}
            },
            _ => {}
        });
        found
    }

    /// Checks the reference `root.steps...`; a reference to an output of a
    /// resource is `Some` of the resource's node.
    fn reference(
        &self,
        root: &Ident,
        steps: &[Step],
        place: Place,
        owner: &dyn fmt::Display,
    ) -> Result<Option<NodeIndex>, Diagnostic> {
        let first_attr = match steps.first() {
            Some(Step::Attr(i)) => Some(i),
            _ => None,
        };
        if place == Place::Constant {
            return Err(
                Diagnostic::at(Code::InvalidReference, root.span, format!("{owner} must be a constant"))
                    .with_label(root.span, "a reference")
                    .help("a var's default cannot refer to other values; set per-environment values in `vars { }`"),
            );
        }
        match root.name.as_str() {
            "var" => {
                let Some(name) = first_attr else {
                    return Err(
                        Diagnostic::at(Code::InvalidReference, root.span, "`var` needs a name")
                            .with_label(root.span, "which var?")
                            .help("write `var.<name>`, like `var.region`"),
                    );
                };
                if self.var(&name.name).is_none() && !self.unparsed(&name.name) {
                    return Err(self.unknown_name(name, "var", &[]));
                }
                Ok(None)
            }
            "env" | "pipeline" => match first_attr {
                Some(a) if a.name == "name" => Ok(None),
                _ => {
                    let span = first_attr.map(|a| a.span).unwrap_or(root.span);
                    Err(
                        Diagnostic::at(Code::InvalidReference, span, format!("`{}` has one attribute, `name`", root))
                            .with_label(span, "not an attribute of this")
                            .help(format!("write `{}.name`", root)),
                    )
                }
            },
            name => {
                let Some(&(r, node)) = self.resources.get(name) else {
                    if self.unparsed(name) {
                        return Ok(None);
                    }
                    let mut d = self.unknown_name(root, "resource", &["var", "env", "pipeline"]);
                    if self.var(name).is_some() {
                        d = d.help(format!("`{name}` is a var: write `var.{name}`"));
                    } else if self.plugin(name).is_some() {
                        d = d.help(format!("`{name}` is a plugin; only resources have outputs"));
                    }
                    return Err(d);
                };
                if place != Place::Wired {
                    return Err(
                        Diagnostic::at(
                            Code::InvalidReference,
                            root.span,
                            format!("{owner} cannot refer to resource outputs"),
                        )
                        .with_label(root.span, format!("`{name}` is known only after it is applied"))
                        .help("resource outputs can feed resource attributes and outputs, not plugins, vars, flow or gates"),
                    );
                }
                if first_attr.is_none() {
                    return Err(
                        Diagnostic::at(Code::InvalidReference, root.span, format!("`{name}` is a resource, not a value"))
                            .with_label(root.span, "refer to one of its outputs")
                            .with_label(r.name.span, "declared here")
                            .help(format!("write `{name}.<output>`, like `{name}.id`, or list it in `depends_on`")),
                    );
                }
                Ok(Some(node))
            }
        }
    }

    /// A name declared by an item that failed to parse: not unknown, just broken.
    fn unparsed(&self, name: &str) -> bool {
        self.m.unparsed.iter().any(|n| n == name)
    }

    fn unknown_name(&self, name: &Ident, what: &str, extra: &[&str]) -> Diagnostic {
        let candidates: Vec<&str> = match what {
            "var" => self.m.vars.iter().map(|v| v.name.name.as_str()).collect(),
            _ => self.m.resources.iter().map(|r| r.name.name.as_str()).chain(extra.iter().copied()).collect(),
        };
        Diagnostic::at(Code::UnknownReference, name.span, format!("unknown {what} `{name}`"))
            .with_label(name.span, format!("no {what} of this name"))
            .maybe_help(did_you_mean(&name.name, candidates.iter().copied()))
    }

    /// Evaluates `e` where no resource has been applied (every scope of the
    /// compiler is so), reporting its mistakes.
    fn eval(&mut self, e: &Expr, scope: &Scope) -> Option<Value> {
        self.try_eval(e, scope).unwrap_or_else(|d| {
            self.diags.push(d);
            None
        })
    }

    /// [`Self::eval`], returning its mistake instead of reporting it.
    fn try_eval(&self, e: &Expr, scope: &Scope) -> Result<Option<Value>, Diagnostic> {
        // What stops first at a resource output is unknown, and not a mistake.
        if self.skip(e) || eval::waits_first_on_output(e) {
            return Ok(None);
        }
        match eval::eval(e, scope) {
            Ok(v) => Ok(Some(v)),
            Err(EvalError::Unknown { .. }) => Ok(None),
            Err(EvalError::Invalid(d)) => Err(d),
        }
    }

    /// An expression not to evaluate, because the mistake that would stop it
    /// is reported elsewhere, once: it failed the reference checks, holds a
    /// literal that did not parse, or uses a var that has no (valid) value in
    /// this environment.
    fn skip(&self, e: &Expr) -> bool {
        if !self.bad.is_empty() && self.bad.contains(&e.span) {
            return true;
        }
        if self.m.invalid.is_empty() && self.unavailable.is_empty() {
            return false;
        }
        let mut skip = false;
        e.walk(&mut |x| {
            if skip {
                return;
            }
            if self.m.invalid.contains(&x.span) {
                skip = true;
            } else if let ExprKind::Traversal { root, steps } = &x.kind {
                if let (true, Some(Step::Attr(name))) = (root.name == "var", steps.first()) {
                    skip = self.unavailable.iter().any(|u| *u == name.name);
                }
            }
        });
        skip
    }

    fn environment_plan(
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
        // Vars: --var > the environment's vars {} > the default.
        let mut vars = Map::new();
        let mut unavailable = Vec::new();
        for v in &m.vars {
            let from_env = decl.and_then(|d| d.vars.iter().find(|a| a.key.name == v.name.name));
            let empty = Map::new();
            let scope = Scope { pipeline, environment: env, vars: &empty, outputs: &eval::no_outputs };
            let value = if let Some(val) = cli_vars.get(v.name.name.as_str()) {
                Some(val.clone())
            } else if bad_cli_vars.iter().any(|b| *b == v.name.name) {
                None // reported with the command line
            } else if let Some(attr) = from_env {
                // An environment's var values may use env.name and pipeline.name, not other vars.
                let given = format!("environment `{env}` sets it to");
                self.eval_env_var(&attr.value, &scope).filter(|val| self.type_check(v, val, attr.value.span, &given))
            } else {
                // A default of the wrong type was reported by `check_vars`.
                v.default
                    .as_ref()
                    .filter(|d| !self.skip(d))
                    .and_then(|d| eval::eval(d, &scope).ok())
                    .filter(|val| type_matches(v.ty, val))
            };
            match value {
                Some(val) => {
                    vars.insert(v.name.name.to_string(), val);
                }
                None => {
                    unavailable.push(v.name.name.to_string());
                    let reported = bad_cli_vars.iter().any(|b| *b == v.name.name);
                    if v.default.is_none() && from_env.is_none() && self.opts.require_values && !reported {
                        missing.entry(v.name.name.to_string()).or_default().push(env.to_string());
                    }
                }
            }
        }
        // Everything below evaluates against the vars. An expression that
        // uses a var without a value is skipped (`skip`), or it would repeat
        // that one mistake as many others; everything else is still checked.
        // Nor has a var whose declaration did not parse: the syntax error is the news.
        let declared = |n: &String| m.vars.iter().any(|v| v.name.name == *n);
        unavailable.extend(m.unparsed.iter().filter(|n| !declared(n)).cloned());
        self.unavailable = unavailable;
        let scope = Scope { pipeline, environment: env, vars: &vars, outputs: &eval::no_outputs };
        let base = FlowPolicy::default();
        let pipeline_flow = match m.flows.first() {
            Some(f) => self.flow(f, base, &scope),
            None => base,
        };
        let env_flow = match decl.and_then(|d| d.flow.as_ref()) {
            Some(f) => self.flow(f, pipeline_flow, &scope),
            None => pipeline_flow,
        };
        let mut flow = vec![env_flow; graph.node_count()];
        for (i, policy) in flow.iter_mut().enumerate() {
            let Some(f) = &m.resources[self.nodes[i]].flow else { continue };
            *policy = self.flow(f, env_flow, &scope);
        }
        let approval = match decl.and_then(|d| d.approval.as_ref()) {
            Some(e) => self.eval_bool(e, &scope, "`approval`").unwrap_or(false),
            None => false,
        };
        let mut plugins = BTreeMap::new();
        for p in &m.plugins {
            if let Some(spec) = self.plugin_spec(p, &scope) {
                plugins.insert(p.name.name.to_string(), spec);
            }
        }
        // Attributes that do not wait on an upstream output are evaluated
        // now, so their mistakes surface at check time. One that uses no var
        // and not `env` evaluates the same in every environment, and a
        // mistake is reported once however often it is made: such an
        // expression is evaluated in the first environment only. One that
        // cannot fail is not evaluated.
        let again = self.evaluated_once;
        let threads = par::threads_for(m.resources.len(), RESOURCES_PER_THREAD);
        let this = &*self;
        let found = par::map(&m.resources, threads, |i, r| {
            // A scope of its own: a scope's output lookup need not be shared between threads.
            let scope = Scope { pipeline, environment: env, vars: &vars, outputs: &eval::no_outputs };
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
                self.eval(&o.value, &scope);
            }
        }
        self.evaluated_once = true;
        let mut credentials = BTreeMap::new();
        let env_bindings = decl.map(|d| d.credentials.as_slice()).unwrap_or(&[]);
        for c in m.credentials.iter().chain(env_bindings) {
            let Some(resolver) = &c.resolver else { continue };
            let config = match &c.config {
                Some(cfg) => self.eval(cfg, &scope).unwrap_or_else(|| Value::Object(Map::new())),
                None => Value::Object(Map::new()),
            };
            credentials.insert(
                c.provisioner.name.to_string(),
                CredentialsBinding { provisioner: c.provisioner.name.to_string(), resolver: resolver.name.to_string(), config },
            );
        }
        self.unavailable.clear();
        EnvironmentPlan {
            name: env.to_string(),
            after: decl.map(|d| d.after.iter().map(|a| a.name.to_string()).collect()).unwrap_or_default(),
            approval,
            vars,
            flow,
            plugins,
            credentials,
        }
    }

    fn eval_env_var(&mut self, e: &Expr, scope: &Scope) -> Option<Value> {
        let mut refers_to_var = None;
        e.walk(&mut |x| {
            if let ExprKind::Traversal { root, .. } = &x.kind {
                if root.name == "var" && refers_to_var.is_none() {
                    refers_to_var = Some(root.span);
                }
            }
        });
        if let Some(span) = refers_to_var {
            self.diags.push(
                Diagnostic::at(Code::InvalidReference, span, "an environment's var values cannot refer to other vars")
                    .with_label(span, "a var reference")
                    .help("write the value itself; `env.name` and `pipeline.name` may be used"),
            );
            return None;
        }
        self.eval(e, scope)
    }

    fn eval_bool(&mut self, e: &Expr, scope: &Scope, what: &str) -> Option<bool> {
        match self.eval(e, scope)? {
            Value::Bool(b) => Some(b),
            other => {
                self.diags.push(
                    Diagnostic::at(Code::TypeMismatch, e.span, format!("{what} must be true or false"))
                        .with_label(e.span, format!("a {}", eval::type_name(&other)))
                        .help({
                            let key = what.trim_matches('`');
                            match other.as_str() {
                                Some("true" | "yes" | "on") => format!("write `{key} = true`, without quotes"),
                                Some("false" | "no" | "off") => format!("write `{key} = false`, without quotes"),
                                _ => format!("write `{key} = true` or `{key} = false`"),
                            }
                        }),
                );
                None
            }
        }
    }

    fn flow(&mut self, f: &FlowBlock, inherited: FlowPolicy, scope: &Scope) -> FlowPolicy {
        let mut p = inherited;
        if let Some(e) = &f.refresh {
            p.refresh = self.eval_bool(e, scope, "`refresh`").unwrap_or(p.refresh);
        }
        if let Some(e) = &f.preview {
            p.preview = self.eval_bool(e, scope, "`preview`").unwrap_or(p.preview);
        }
        if let Some(e) = &f.pause_before_apply {
            p.pause_before_apply = self.eval_bool(e, scope, "`pause_before_apply`").unwrap_or(p.pause_before_apply);
        }
        p
    }

    /// What a plugin resolves to in one environment. Every part is checked,
    /// so one bad grant does not hide the next.
    fn plugin_spec(&mut self, p: &PluginDecl, scope: &Scope) -> Option<PluginSpec> {
        let source = p.source.as_ref().and_then(|e| self.plugin_source(p, e, scope));
        let config = match &p.config {
            Some(c) => self.eval(c, scope),
            None => Some(Value::Object(Map::new())),
        };
        let http = self.grant_list(p.allow.http.as_ref(), scope, "http", normalize_http_grant);
        let fs = self.grant_list(p.allow.fs.as_ref(), scope, "fs", |s| {
            if s.trim().is_empty() {
                Err("an empty directory".into())
            } else {
                Ok(s.to_string())
            }
        });
        let env = self.grant_list(p.allow.env.as_ref(), scope, "env", |s| {
            if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Ok(s.to_string())
            } else {
                Err(format!("`{s}` is not an environment variable name"))
            }
        });
        let defaults = Limits::default();
        let memory_mb = self.limit(p.limits.memory_mb.as_ref(), scope, "memory_mb", defaults.memory_mb);
        let timeout_s = self.limit(p.limits.timeout_s.as_ref(), scope, "timeout_s", defaults.timeout_s);
        let (kind, _) = p.kind?;
        Some(PluginSpec {
            name: p.name.name.to_string(),
            kind,
            source: source?,
            config: config?,
            grants: {
                let fs = fs?;
                Grants {
                    http: http?.into_iter().map(|(g, _)| g).collect(),
                    fs_spans: fs.iter().map(|(_, s)| *s).collect(),
                    fs: fs.into_iter().map(|(g, _)| g).collect(),
                    env: env?.into_iter().map(|(g, _)| g).collect(),
                }
            },
            limits: Limits { memory_mb: memory_mb?, timeout_s: timeout_s? },
        })
    }

    fn plugin_source(&mut self, p: &PluginDecl, e: &Expr, scope: &Scope) -> Option<PluginSource> {
        match self.eval(e, scope)? {
            Value::String(s) => match s.strip_prefix("builtin:") {
                Some(name) if !name.is_empty() => Some(PluginSource::Builtin(name.to_string())),
                Some(_) => {
                    self.diags.push(
                        Diagnostic::at(Code::InvalidValue, e.span, "`builtin:` needs a plugin name")
                            .with_label(e.span, "no name after `builtin:`")
                            .help("name a builtin plugin, like \"builtin:aws\""),
                    );
                    None
                }
                None if s.trim().is_empty() => {
                    self.diags.push(
                        Diagnostic::at(Code::InvalidValue, e.span, format!("plugin `{}` has an empty `source`", p.name))
                            .with_label(e.span, "empty")
                            .help("use \"builtin:<name>\" or a path to a .wasm component"),
                    );
                    None
                }
                None => Some(PluginSource::Path(s)),
            },
            other => {
                self.diags.push(
                    Diagnostic::at(Code::TypeMismatch, e.span, "`source` must be a string")
                        .with_label(e.span, format!("a {}", eval::type_name(&other)))
                        .help("use \"builtin:<name>\" or a path to a .wasm component"),
                );
                None
            }
        }
    }

    fn grant_list(
        &mut self,
        e: Option<&Expr>,
        scope: &Scope,
        what: &str,
        normalize: impl Fn(&str) -> Result<String, String>,
    ) -> Option<Vec<(String, Span)>> {
        let Some(e) = e else { return Some(Vec::new()) };
        let value = self.eval(e, scope)?;
        let items = match &value {
            Value::Array(items) => items.clone(),
            Value::String(_) => vec![value.clone()],
            other => {
                self.diags.push(
                    Diagnostic::at(Code::TypeMismatch, e.span, format!("`{what}` grants are a list of strings"))
                        .with_label(e.span, format!("a {}", eval::type_name(other))),
                );
                return None;
            }
        };
        // Point at the element when the list was written out literally.
        let spans: Vec<Span> = match &e.kind {
            ExprKind::List(xs) if xs.len() == items.len() => xs.iter().map(|x| x.span).collect(),
            _ => vec![e.span; items.len()],
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (item, span) in items.iter().zip(spans) {
            match item.as_str().ok_or_else(|| format!("a {}, not a string", eval::type_name(item))).and_then(&normalize) {
                Ok(g) => out.push((g, span)),
                Err(why) => {
                    ok = false;
                    self.diags.push(
                        Diagnostic::at(Code::InvalidValue, span, format!("invalid `{what}` grant"))
                            .with_label(span, why)
                            .help(match what {
                                "http" => "an http grant is \"host:port\" or a URL like \"http://127.0.0.1:5055\"",
                                "fs" => "an fs grant is a directory, relative to the pipeline file",
                                _ => "an env grant is a variable name, like \"AWS_ACCESS_KEY_ID\"",
                            }),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    fn limit(&mut self, e: Option<&Expr>, scope: &Scope, what: &str, default: u64) -> Option<u64> {
        let Some(e) = e else { return Some(default) };
        let value = self.eval(e, scope)?;
        if let Some(v) = value.as_u64().filter(|v| *v > 0) {
            return Some(v);
        }
        let label = match &value {
            Value::Number(n) if n.as_u64() == Some(0) || n.as_i64().is_some_and(|v| v < 0) => "must be at least 1".to_string(),
            Value::Number(_) => "not a whole number".to_string(),
            other => format!("a {}, not a number", eval::type_name(other)),
        };
        let unit = if what == "memory_mb" { "megabytes" } else { "seconds" };
        self.diags.push(
            Diagnostic::at(Code::InvalidValue, e.span, format!("`{what}` must be a whole number above 0"))
                .with_label(e.span, label)
                .help(format!("`{what}` is in {unit}; leave it out for the default, {default}")),
        );
        None
    }
}

/// `name` declared again; `first` is where it was first declared.
fn duplicate_name(what: &str, name: &Ident, first: Span) -> Diagnostic {
    Diagnostic::at(Code::DuplicateName, name.span, format!("{what} `{}` is declared twice", name.name))
        .with_label(name.span, "declared again here")
        .with_label(first, "first declared here")
        .help(format!("{what} names must be unique in a pipeline"))
}

fn kind_name(p: &PluginDecl) -> &'static str {
    p.kind.map(|k| k.0.name()).unwrap_or("unknown")
}

/// The edge `from` -> `to`, added if there is none yet.
fn edge(g: &mut DiGraph<ResourceNode, Dependency>, from: NodeIndex, to: NodeIndex) -> &mut Dependency {
    // Looked for among the edges into `to`, the resource being wired: they
    // are few and were just added, where `from` may feed many resources.
    let found = g.edges_directed(to, petgraph::Direction::Incoming).find(|e| e.source() == from).map(|e| e.id());
    let e = found.unwrap_or_else(|| g.add_edge(from, to, Dependency::default()));
    &mut g[e]
}

/// Whether `e` uses a var or `env`, the only names whose value differs from
/// one environment to another.
fn varies_by_environment(e: &Expr) -> bool {
    let mut varies = false;
    e.walk(&mut |x| {
        if let ExprKind::Traversal { root, .. } = &x.kind {
            varies |= root.name == "var" || root.name == "env";
        }
    });
    varies
}

/// One cycle (as a node path, without repeating the first node) per strongly
/// connected component that has one, starting from its earliest node.
fn cycles<N, E>(g: &DiGraph<N, E>) -> Vec<Vec<NodeIndex>> {
    let mut out = Vec::new();
    for mut scc in petgraph::algo::tarjan_scc(g) {
        scc.sort();
        let start = scc[0];
        if scc.len() == 1 && g.find_edge(start, start).is_none() {
            continue;
        }
        let members: HashSet<NodeIndex> = scc.iter().copied().collect();
        // Breadth-first from start back to start, within the component: the shortest cycle.
        let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut last = None;
        'search: while let Some(n) = queue.pop_front() {
            let mut next: Vec<NodeIndex> = g.neighbors(n).filter(|x| members.contains(x)).collect();
            next.sort();
            for x in next {
                if x == start {
                    last = Some(n);
                    break 'search;
                }
                if let std::collections::hash_map::Entry::Vacant(v) = prev.entry(x) {
                    v.insert(n);
                    queue.push_back(x);
                }
            }
        }
        let Some(mut n) = last else { continue };
        let mut path = vec![n];
        while n != start {
            n = prev[&n];
            path.push(n);
        }
        path.reverse();
        out.push(path);
    }
    out.sort();
    out
}

/// Kahn's algorithm, taking ready nodes by `key` order so output is stable
/// (declaration order) rather than whatever the graph's internals prefer.
fn topological<N, E>(g: &DiGraph<N, E>, key: impl Fn(NodeIndex) -> usize) -> Vec<NodeIndex> {
    let mut indegree: Vec<usize> =
        g.node_indices().map(|n| g.neighbors_directed(n, petgraph::Direction::Incoming).count()).collect();
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<(usize, usize)>> = g
        .node_indices()
        .filter(|n| indegree[n.index()] == 0)
        .map(|n| std::cmp::Reverse((key(n), n.index())))
        .collect();
    let mut out = Vec::with_capacity(g.node_count());
    while let Some(std::cmp::Reverse((_, i))) = ready.pop() {
        let n = NodeIndex::new(i);
        out.push(n);
        for d in g.neighbors_directed(n, petgraph::Direction::Outgoing) {
            indegree[d.index()] -= 1;
            if indegree[d.index()] == 0 {
                ready.push(std::cmp::Reverse((key(d), d.index())));
            }
        }
    }
    out
}

pub fn type_matches(ty: VarType, v: &Value) -> bool {
    match ty {
        VarType::Any => true,
        VarType::String => v.is_string(),
        VarType::Number => v.is_number(),
        VarType::Bool => v.is_boolean(),
        VarType::List => v.is_array(),
        VarType::Map => v.is_object(),
    }
}

/// A `--var` value as typed on the command line. Strings are taken as they
/// are; numbers and bools are parsed; lists and maps are written in the
/// language (`'["a", "b"]'`).
pub fn parse_var_value(ty: VarType, text: &str) -> Result<Value, String> {
    match ty {
        VarType::String => Ok(Value::String(text.to_string())),
        VarType::Number => eval::parse_number_text(text).map(Value::Number).ok_or_else(|| "not a number".to_string()),
        VarType::Bool => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("not true or false".into()),
        },
        VarType::List | VarType::Map | VarType::Any => {
            let value = crate::parser::parse_expr(text).ok().and_then(|e| {
                let empty = Map::new();
                let scope = Scope { pipeline: "", environment: "", vars: &empty, outputs: &eval::no_outputs };
                eval::eval(&e, &scope).ok()
            });
            match value {
                Some(v) if type_matches(ty, &v) => Ok(v),
                _ if ty == VarType::Any => Ok(Value::String(text.to_string())),
                Some(v) => Err(format!("a {}, not a {}", eval::type_name(&v), ty.name())),
                None => Err(format!("not a {} (write it like {})", ty.name(), if ty == VarType::List { "'[\"a\", \"b\"]'" } else { "'{ k = \"v\" }'" })),
            }
        }
    }
}

/// `host:port` from a grant written as `host:port` or as a URL.
pub fn normalize_http_grant(s: &str) -> Result<String, String> {
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, s),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (authority, None),
    };
    if host.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    let port: u16 = match (port, scheme) {
        (Some(p), _) => p.parse().map_err(|_| format!("`{p}` is not a port"))?,
        (None, Some("http")) => 80,
        (None, Some("https")) => 443,
        (None, _) => return Err(format!("`{s}` has no port")),
    };
    if let Some(sc) = scheme {
        if sc != "http" && sc != "https" {
            return Err(format!("`{sc}` is not http or https"));
        }
    }
    Ok(format!("{host}:{port}"))
}
