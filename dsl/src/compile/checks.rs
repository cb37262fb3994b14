//! The checks of what a file declares: names given twice or reserved, the
//! pipeline's name, plugins and their use (a resource's type names a
//! provisioner, credentials bind a provisioner to a resolver), environments,
//! flow blocks (and the keys they lock) and gates. Each reports its mistakes
//! and goes on; the expressions they hold go through the checks of
//! `references`.

use std::collections::HashMap;

use crate::ast::*;
use crate::diagnostic::{did_you_mean, Code, Diagnostic};

use super::references::Place;
use super::Compiler;

impl<'a> Compiler<'a> {
    /// Names declared twice (and the pipeline's `flow` given twice), and
    /// resources named like the roots of references.
    pub(super) fn check_names(&mut self) {
        let m = self.m;
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
        self.duplicates("service", m.services.iter().map(|s| &s.name));
        for r in &m.resources {
            if ["var", "env", "pipeline", "service"].contains(&r.name.name.as_str()) {
                self.diags.push(
                    Diagnostic::at(Code::ReservedName, r.name.span, format!("`{}` cannot name a resource", r.name))
                        .with_label(r.name.span, "reserved for references")
                        .help("`var`, `env`, `pipeline` and `service` start references: choose another name"),
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
    }

    /// The pipeline's name: its `pipeline "..."`, given once and not empty,
    /// or the default the command line gives (the file stem).
    pub(super) fn pipeline_name(&mut self) -> String {
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

    /// Reports each of `names` declared again after its first declaration.
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

    /// The references in every plugin's source, config, grants and limits.
    pub(super) fn check_plugins(&mut self) {
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

    /// A `credentials` binding: it binds a provisioner to a credentials
    /// plugin, and its config refers to what it may.
    pub(super) fn check_credentials(&mut self, c: &CredentialsDecl) {
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
            self.check_resolver(r);
        }
        if let Some(cfg) = &c.config {
            self.refs(cfg, Place::Static, format_args!("`credentials {}`", c.provisioner));
        }
    }

    /// Reports each provisioner given credentials twice in `owner`.
    pub(super) fn duplicate_bindings(&mut self, bindings: &[CredentialsDecl], owner: &str) {
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

    /// Reports `name`, which names no plugin, suggesting a plugin of kind
    /// `want` (or of no valid kind) with a close name.
    pub(super) fn unknown_plugin(&mut self, name: &Ident, want: &str) {
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

    /// An environment's approval, vars, flow and credentials.
    pub(super) fn check_environment(&mut self, e: &EnvironmentDecl) {
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

    /// The references in a `flow` block of `owner`.
    pub(super) fn flow_refs(&mut self, f: &FlowBlock, owner: &str) {
        for e in f.values() {
            self.refs(e, Place::Static, owner);
        }
    }

    /// Flow keys set below a scope that locks them: in an environment's
    /// `flow` when the pipeline's locks them, in a resource's when the
    /// pipeline's or any environment's does (a resource's `flow` applies in
    /// every environment). Each override is reported once, pointing at the
    /// highest lock it breaks.
    pub(super) fn check_flow_locks(&mut self) {
        let m = self.m;
        let pipeline = m.flows.first().filter(|f| !f.locked.is_empty());
        let env_locks: Vec<(&EnvironmentDecl, &FlowBlock)> = m
            .environments
            .iter()
            .filter_map(|e| e.flow.as_ref().filter(|f| !f.locked.is_empty()).map(|f| (e, f)))
            .collect();
        if pipeline.is_none() && env_locks.is_empty() {
            return;
        }
        for e in &m.environments {
            let (Some(p), Some(f)) = (pipeline, &e.flow) else { continue };
            let owner = format!("environment `{}`", e.name);
            for &(key, at) in &p.locked {
                if let Some(set) = f.get(key) {
                    self.diags.push(locked_key((key, at), set, &owner, Lock::Pipeline));
                }
            }
        }
        for r in &m.resources {
            let Some(f) = &r.flow else { continue };
            let owner = format!("resource `{}`", r.name);
            for (_, key) in FlowKey::ALL {
                let Some(set) = f.get(key) else { continue };
                let lock = match pipeline.and_then(|p| p.lock_of(key)) {
                    Some(at) => Some((at, Lock::Pipeline)),
                    None => env_locks.iter().find_map(|(e, f)| f.lock_of(key).map(|at| (at, Lock::Environment(&e.name)))),
                };
                if let Some((at, by)) = lock {
                    self.diags.push(locked_key((key, at), set, &owner, by));
                }
            }
        }
    }

    /// A resource's type names a provisioner plugin.
    pub(super) fn check_type(&mut self, r: &ResourceDecl) {
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

    /// Whether a resource has `gate = "after"`; any other gate but `"none"` is reported.
    pub(super) fn gate(&mut self, r: &ResourceDecl) -> bool {
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
}

/// Which scope locks a flow key.
#[derive(Clone, Copy)]
enum Lock<'a> {
    Pipeline,
    Environment(&'a Ident),
}

/// `set` (in `owner`) sets a key that `lock` locks (where it names it).
fn locked_key((key, lock): (FlowKey, Span), set: &Attribute, owner: &str, by: Lock) -> Diagnostic {
    let name = key.name();
    let (locker, scope) = match by {
        Lock::Pipeline => ("the pipeline's `flow`".to_string(), "every environment and resource"),
        Lock::Environment(e) => (format!("the `flow` of environment `{e}`"), "its resources"),
    };
    let help = match by {
        Lock::Pipeline => format!(
            "{locker} fixes `{name}` for {scope}: remove it from {owner} (or, to let each choose, take it out of the \
             pipeline's `locked`)"
        ),
        // A resource's `flow` applies in every environment: also those that lock nothing.
        Lock::Environment(_) => format!(
            "{locker} fixes `{name}` for {scope}, and a resource's `flow` applies in every environment: remove it \
             from {owner}, or set it per environment instead"
        ),
    };
    Diagnostic::at(Code::LockedFlowKey, set.key.span, format!("{owner} sets `{name}`, which {locker} locks"))
        .with_label(set.key.span, "set here")
        .with_label(lock, "locked here")
        .help(help)
}

/// `name` declared again; `first` is where it was first declared.
fn duplicate_name(what: &str, name: &Ident, first: Span) -> Diagnostic {
    Diagnostic::at(Code::DuplicateName, name.span, format!("{what} `{}` is declared twice", name.name))
        .with_label(name.span, "declared again here")
        .with_label(first, "first declared here")
        .help(format!("{what} names must be unique in a pipeline"))
}

/// The kind a plugin is declared as, for messages.
fn kind_name(p: &PluginDecl) -> &'static str {
    p.kind.map(|k| k.0.name()).unwrap_or("unknown")
}
