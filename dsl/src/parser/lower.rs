//! Lowering: the parse tree of one item (nodes of the grammar's rules, from
//! the recognizer or from pest) -> the typed items of a [`Module`]. Each
//! item's body is read for the keys it knows (see [`body`](super::body));
//! strings and heredocs are decoded in [`strings`](super::strings). What the
//! grammar cannot say is reported here: an unknown type or plugin kind, a
//! resource type that is not `"<plugin>.<type>"`, names written as strings,
//! a number out of range, a map key given twice, an approver that is none.

use std::fmt;

use crate::approvers::{Approver, NotAnApprover, Role};
use crate::ast::*;
use crate::diagnostic::{did_you_mean, Code, Diagnostic};

use super::body::{duplicate_key, BodyReader, Block, Entry, Named};
use super::grammar::{is_identifier, Rule};
use super::tree;

/// A node of an item's parse tree.
pub(super) type Node<'t> = tree::Node<'t, Rule>;

/// Lowering state: the offset of the slice being lowered and the errors so far.
pub(super) struct Lower {
    /// Where the text the nodes' offsets count from starts in the file.
    pub(super) base: usize,
    pub(super) diags: Vec<Diagnostic>,
    /// Spans of expressions reported here (see [`Module::invalid`]).
    pub(super) invalid: Vec<Span>,
}

impl Lower {
    pub(super) fn new(base: usize) -> Self {
        Lower { base, diags: Vec::new(), invalid: Vec::new() }
    }

    /// `module`, with the expressions reported while lowering it, and the errors.
    pub(super) fn finish(self, mut module: Module) -> (Module, Vec<Diagnostic>) {
        module.invalid = self.invalid;
        (module, self.diags)
    }

    pub(super) fn span(&self, p: Node) -> Span {
        Span::new(self.base + p.start(), self.base + p.end())
    }

    /// The span of a rule that ends in an optional or repeated part, which pest
    /// extends over the whitespace and comments it skipped looking for more:
    /// from the first child to the end of the last.
    fn children_span(&self, p: Node) -> Span {
        let whole = self.span(p);
        match p.children().last() {
            Some(last) => Span::new(whole.start, self.span(last).end),
            None => whole,
        }
    }

    fn ident(&self, p: Node) -> Ident {
        Ident { name: p.as_str().into(), span: self.span(p) }
    }

    /// Lowers one item into `m`. An item whose parts are missing (which a
    /// parse never leaves) adds nothing.
    pub(super) fn item(&mut self, p: Node, m: &mut Module) {
        let span = self.children_span(p);
        // The first child of every item is its keyword.
        let mut inner = p.children().skip(1);
        match p.rule() {
            Rule::pipeline_decl => {
                let Some(s) = inner.next() else { return };
                if let Some(decl) = self.pipeline(s, span) {
                    m.pipeline.push(decl);
                }
            }
            Rule::var_decl => {
                let Some(name) = inner.next().map(|i| self.ident(i)) else { return };
                m.vars.push(self.var(name, inner, span));
            }
            Rule::plugin_decl => {
                let (Some(name), Some(body)) = (inner.next(), inner.next()) else { return };
                let name = self.ident(name);
                let entries = self.body(body);
                m.plugins.push(self.plugin(name, entries, span));
            }
            Rule::credentials_decl => {
                let (Some(name), Some(body)) = (inner.next(), inner.next()) else { return };
                let provisioner = self.ident(name);
                let entries = self.body(body);
                m.credentials.push(self.credentials(provisioner, entries, span));
            }
            Rule::flow_decl => {
                let Some(body) = inner.next() else { return };
                let entries = self.body(body);
                m.flows.push(self.flow(entries, span, "the pipeline's `flow`".into(), false));
            }
            Rule::environment_decl => {
                let (Some(name), Some(body)) = (inner.next(), inner.next()) else { return };
                let name = self.ident(name);
                let entries = self.body(body);
                m.environments.push(self.environment(name, entries, span));
            }
            Rule::resource_decl => {
                let (Some(name), Some(ty), Some(body)) = (inner.next(), inner.next(), inner.next()) else { return };
                let name = self.ident(name);
                let ty_span = self.span(ty);
                let ty_expr = self.string(ty);
                let entries = self.body(body);
                if let Some(r) = self.resource(name, ty_expr, ty_span, entries, span) {
                    m.resources.push(r);
                }
            }
            Rule::output_decl => {
                let (Some(name), Some(value)) = (inner.next(), inner.next()) else { return };
                let name = self.ident(name);
                let value = self.expr(value);
                // The only part after the value is the optional keyword.
                let sensitive = inner.next().map(|k| self.span(k));
                m.outputs.push(OutputDecl { name, value, sensitive, span });
            }
            Rule::service_decl => {
                let (Some(name), Some(body)) = (inner.next(), inner.next()) else { return };
                let name_span = self.span(name);
                let name_expr = self.string(name);
                let entries = self.body(body);
                if let Some(s) = self.service(name_expr, name_span, entries, span) {
                    m.services.push(s);
                }
            }
            _ => {}
        }
    }

    /// `pipeline "name"`: `None` if the name is not plain text (reported).
    fn pipeline(&mut self, s: Node, span: Span) -> Option<PipelineDecl> {
        let name_span = self.span(s);
        let expr = self.string(s);
        match expr.as_plain_string() {
            Some(name) => Some(PipelineDecl { name, name_span, span }),
            None => {
                self.diags.push(
                    Diagnostic::at(Code::InvalidValue, name_span, "the pipeline name must be a plain string, without `${}`")
                        .with_label(name_span, "has an interpolation")
                        .help("the name is the same in every environment: write it as plain text, like `pipeline \"aws\"`"),
                );
                None
            }
        }
    }

    /// `var name: type = default sensitive`; `parts` are what follows the name.
    fn var<'t>(&mut self, name: Ident, parts: impl Iterator<Item = Node<'t>>, span: Span) -> VarDecl {
        let mut ty = VarType::Any;
        let mut ty_span = None;
        let mut default = None;
        let mut sensitive = None;
        for part in parts {
            match part.rule() {
                Rule::kw_sensitive => sensitive = Some(self.span(part)),
                Rule::type_name => {
                    ty_span = Some(self.span(part));
                    ty = self.var_type(part, &name).unwrap_or(VarType::Any);
                }
                _ => default = Some(self.expr(part)),
            }
        }
        VarDecl { name, ty, ty_span, default, sensitive, span }
    }

    /// The type named after `var name:`; `None` if it is none (reported).
    fn var_type(&mut self, part: Node, var: &Ident) -> Option<VarType> {
        let s = self.span(part);
        let word = part.as_str();
        if let Some((_, t)) = VarType::ALL.iter().find(|(n, _)| *n == word) {
            return Some(*t);
        }
        let d = if word == "sensitive" {
            // `var x: sensitive`: the keyword read as the type.
            Diagnostic::at(Code::InvalidValue, s, "`sensitive` is not a type")
                .with_label(s, "not a type")
                .help(format!("`sensitive` comes last, after the type: `var {}: string sensitive`", var.name))
        } else {
            Diagnostic::at(Code::InvalidValue, s, format!("unknown type `{word}`")).with_label(s, "not a type").help(
                did_you_mean(word, VarType::ALL.iter().map(|(n, _)| *n))
                    .unwrap_or_else(|| "the types are: string, number, bool, list, map, any".into()),
            )
        };
        self.diags.push(d);
        None
    }

    /// `plugin name { ... }`: its kind and source must be there.
    fn plugin(&mut self, name: Ident, entries: Vec<Entry>, span: Span) -> PluginDecl {
        let owner = format!("plugin `{}`", name.name);
        let mut r = BodyReader::new(entries, &owner);
        let kind_expr = r.attr("kind", &mut self.diags);
        let source = r.attr("source", &mut self.diags);
        let config = r.block("config", &mut self.diags).map(|b| self.block_to_map(b));
        let allow = match r.block("allow", &mut self.diags) {
            Some(b) => self.allow(b, &owner),
            None => AllowBlock::default(),
        };
        let limits = match r.block("limits", &mut self.diags) {
            Some(b) => self.limits(b, &owner),
            None => LimitsBlock::default(),
        };
        let explained = r.finish(&mut self.diags);

        let kind = match &kind_expr {
            None if explained.contains(&"kind") => None,
            None => {
                self.diags.push(
                    Diagnostic::at(Code::MissingKey, name.span, format!("{owner} has no `kind`"))
                        .with_label(name.span, "declared here")
                        .help("add `kind = \"provisioner\"` (or \"credentials\", or \"policy\")"),
                );
                None
            }
            Some(e) => self.plugin_kind(e, &owner),
        };
        if source.is_none() && !explained.contains(&"source") {
            self.diags.push(
                Diagnostic::at(Code::MissingKey, name.span, format!("{owner} has no `source`"))
                    .with_label(name.span, "declared here")
                    .help("add `source = \"builtin:<name>\"` or a path to a .wasm component"),
            );
        }
        PluginDecl { name, kind, source, config, allow, limits, span }
    }

    /// The `allow { }` block of `owner`, a plugin.
    fn allow(&mut self, b: Block, owner: &str) -> AllowBlock {
        let allow_owner = format!("the `allow` block of {owner}");
        let mut a = BodyReader::new(b.entries, &allow_owner);
        let allow = AllowBlock {
            http: a.attr("http", &mut self.diags),
            fs: a.attr("fs", &mut self.diags),
            env: a.attr("env", &mut self.diags),
        };
        a.finish(&mut self.diags);
        allow
    }

    /// The `limits { }` block of `owner`, a plugin.
    fn limits(&mut self, b: Block, owner: &str) -> LimitsBlock {
        let limits_owner = format!("the `limits` block of {owner}");
        let mut l = BodyReader::new(b.entries, &limits_owner);
        let limits = LimitsBlock {
            memory_mb: l.attr("memory_mb", &mut self.diags),
            timeout_s: l.attr("timeout_s", &mut self.diags),
        };
        l.finish(&mut self.diags);
        limits
    }

    /// The kind `kind = e` names, a string or a bare word; `None` if it names
    /// none (reported).
    fn plugin_kind(&mut self, e: &Expr, owner: &str) -> Option<(PluginKind, Span)> {
        let word = e.as_plain_string().or_else(|| e.as_bare_ident().map(|i| i.name.to_string()));
        if let Some((_, k)) = word.as_deref().and_then(|w| PluginKind::ALL.iter().find(|(n, _)| *n == w)) {
            return Some((*k, e.span));
        }
        let help = word
            .as_deref()
            .and_then(|w| did_you_mean(w, PluginKind::ALL.iter().map(|(n, _)| *n)))
            .unwrap_or_else(|| "a plugin's kind is \"provisioner\", \"credentials\" or \"policy\"".into());
        self.diags.push(
            Diagnostic::at(Code::InvalidValue, e.span, format!("invalid kind for {owner}"))
                .with_label(e.span, "not a plugin kind")
                .help(help),
        );
        None
    }

    /// `credentials provisioner { resolver = ... config { } }`, at the top
    /// level or in an environment.
    fn credentials(&mut self, provisioner: Ident, entries: Vec<Entry>, span: Span) -> CredentialsDecl {
        let owner = format!("`credentials {}`", provisioner.name);
        let mut r = BodyReader::new(entries, &owner);
        let resolver_expr = r.attr("resolver", &mut self.diags);
        let config = r.block("config", &mut self.diags).map(|b| self.block_to_map(b));
        let explained = r.finish(&mut self.diags);
        let missing = Diagnostic::at(Code::MissingKey, provisioner.span, format!("{owner} has no `resolver`"))
            .with_label(provisioner.span, "declared here")
            .help("name the credentials plugin: `resolver = <plugin>`");
        let resolver = self.resolver(resolver_expr, &explained, missing, "aws_keys");
        CredentialsDecl { provisioner, resolver, config, span }
    }

    /// A `flow { }` block of `owner`. A resource's (`of_resource`) takes
    /// neither `on_failure` (what a failure stops is decided for a whole
    /// environment) nor `locked` (nothing is below a resource to lock keys
    /// for): either is reported there, and left out.
    fn flow(&mut self, entries: Vec<Entry>, span: Span, owner: String, of_resource: bool) -> FlowBlock {
        let mut r = BodyReader::new(entries, &owner);
        let mut flow = FlowBlock {
            refresh: r.attribute("refresh", &mut self.diags),
            preview: r.attribute("preview", &mut self.diags),
            pause_before_apply: r.attribute("pause_before_apply", &mut self.diags),
            on_failure: r.attribute("on_failure", &mut self.diags),
            locked: Vec::new(),
            span,
        };
        let locked = r.attribute("locked", &mut self.diags);
        r.finish(&mut self.diags);
        if !of_resource {
            if let Some(l) = locked {
                flow.locked = self.locked_keys(&l.value);
            }
            return flow;
        }
        if let Some(a) = flow.on_failure.take() {
            self.diags.push(
                Diagnostic::at(Code::UnknownKey, a.key.span, format!("`on_failure` cannot be set in {owner}"))
                    .with_label(a.key.span, "not a key of a resource's `flow`")
                    .help(
                        "what a failure stops is decided for a whole environment: set `on_failure` in the \
                         environment's `flow` or the pipeline's",
                    ),
            );
        }
        if let Some(a) = locked {
            self.diags.push(
                Diagnostic::at(Code::UnknownKey, a.key.span, format!("`locked` cannot be set in {owner}"))
                    .with_label(a.key.span, "not a key of a resource's `flow`")
                    .help(
                        "nothing is below a resource to lock keys for: lock them in the pipeline's `flow` (for \
                         every environment and resource) or an environment's (for its resources)",
                    ),
            );
        }
        flow
    }

    /// The keys `locked = [..]` names: flow key names, quoted or not. An
    /// unknown name, or something that is not a name, is reported.
    fn locked_keys(&mut self, e: &Expr) -> Vec<(FlowKey, Span)> {
        let items: Vec<&Expr> = match &e.kind {
            ExprKind::List(items) => items.iter().collect(),
            _ => vec![e],
        };
        let mut keys: Vec<(FlowKey, Span)> = Vec::with_capacity(items.len());
        for item in items {
            let word = item.as_plain_string().or_else(|| item.as_bare_ident().map(|i| i.name.to_string()));
            let Some(word) = word else {
                self.diags.push(
                    Diagnostic::at(Code::InvalidValue, item.span, "`locked` takes the names of flow keys")
                        .with_label(item.span, "not a key's name")
                        .help("list the keys to lock, like `locked = [\"preview\", \"on_failure\"]`"),
                );
                continue;
            };
            match FlowKey::named(&word) {
                // A key named twice is locked once.
                Some(key) if keys.iter().any(|(k, _)| *k == key) => {}
                Some(key) => keys.push((key, item.span)),
                None => self.diags.push(
                    Diagnostic::at(Code::UnknownKey, item.span, format!("`locked` names `{word}`, which is not a flow key"))
                        .with_label(item.span, "not a flow key")
                        .help(did_you_mean(&word, FlowKey::ALL.iter().map(|(n, _)| *n)).unwrap_or_else(|| {
                            "the keys that can be locked are: refresh, preview, pause_before_apply, on_failure".into()
                        })),
                ),
            }
        }
        keys
    }

    /// `environment name { ... }`.
    fn environment(&mut self, name: Ident, entries: Vec<Entry>, span: Span) -> EnvironmentDecl {
        let owner = format!("environment `{}`", name.name);
        let mut r = BodyReader::new(entries, &owner);
        let after_expr = r.attr("after", &mut self.diags);
        let approval = r.attr("approval", &mut self.diags);
        let approvers = r.attr("approvers", &mut self.diags);
        let self_approval = r.attr("self_approval", &mut self.diags);
        let previews = r.attr("previews", &mut self.diags);
        let vars = match r.block("vars", &mut self.diags) {
            Some(b) => self.attributes_of(b.entries, &format!("the `vars` of {owner}")),
            None => Vec::new(),
        };
        let flow =
            r.block("flow", &mut self.diags).map(|b| self.flow(b.entries, b.span, format!("the `flow` of {owner}"), false));
        let mut credentials = Vec::new();
        for b in r.blocks("credentials", 1, &mut self.diags) {
            let Some(provisioner) = b.labels.into_iter().next() else { continue };
            credentials.push(self.credentials(provisioner, b.entries, b.span));
        }
        r.finish(&mut self.diags);
        let after = match after_expr {
            None => Vec::new(),
            Some(e) => self.name_list(&e, "after", "environment", "after = staging"),
        };
        let approvers = approvers.map(|e| self.approvers(&e, &owner)).unwrap_or_default();
        let self_approval = self_approval.and_then(|e| {
            self.written_bool(
                &e,
                "self_approval",
                "write `self_approval = false` (the person who started a run may not approve it) or `true` (the \
                 default)",
            )
        });
        let previews = previews.and_then(|e| {
            self.written_bool(
                &e,
                "previews",
                "write `previews = true` (a pull request's pipeline, with `pull_requests = \"deploy\"`, deploys here) \
                 or `false` (the default)",
            )
        });
        EnvironmentDecl { name, after, approval, approvers, self_approval, previews, vars, flow, credentials, span }
    }

    /// Whom `approvers = ["role:admin", "user:bob"]` names. Like `locked`,
    /// it is written out: who may approve cannot come from a var (a `--var`
    /// would change it). A mistake, or an approver named twice, is reported.
    fn approvers(&mut self, e: &Expr, owner: &str) -> Vec<(Approver, Span)> {
        const FORMS: &str = "an approver is \"role:viewer\", \"role:operator\", \"role:admin\" (that role or a higher one) \
                             or \"user:<name>\"";
        let ExprKind::List(items) = &e.kind else {
            let help = match e.as_plain_string() {
                Some(text) => format!("write a list, even of one: `approvers = [\"{text}\"]`"),
                None => "write the approvers out, like `approvers = [\"role:admin\", \"user:bob\"]`: who may approve \
                         cannot be computed"
                    .into(),
            };
            self.diags.push(
                Diagnostic::at(Code::InvalidValue, e.span, format!("`approvers` of {owner} must be a list of strings"))
                    .with_label(e.span, written_as(e))
                    .help(help),
            );
            return Vec::new();
        };
        let mut approvers: Vec<(Approver, Span)> = Vec::with_capacity(items.len());
        for item in items {
            let Some(text) = item.as_plain_string() else {
                self.diags.push(
                    Diagnostic::at(Code::InvalidValue, item.span, "`approvers` takes strings, written out")
                        .with_label(item.span, written_as(item))
                        .help(format!("{FORMS}; who may approve cannot be computed")),
                );
                continue;
            };
            let approver = match Approver::parse(&text) {
                Ok(a) => a,
                Err(why) => {
                    self.diags.push(not_an_approver(&text, why, item.span, FORMS));
                    continue;
                }
            };
            if let Some((_, first)) = approvers.iter().find(|(a, _)| *a == approver) {
                self.diags.push(
                    Diagnostic::at(
                        Code::DuplicateName,
                        item.span,
                        format!("`{approver}` is named twice in the `approvers` of {owner}"),
                    )
                    .with_label(item.span, "named again here")
                    .with_label(*first, "first named here")
                    .help("name each approver once"),
                );
                continue;
            }
            approvers.push((approver, item.span));
        }
        approvers
    }

    /// `key = true | false`, written out (as `approvers` is): who may
    /// approve, or where a pull request deploys, cannot be computed (a
    /// `--var` would change it).
    fn written_bool(&mut self, e: &Expr, key: &str, help: &str) -> Option<(bool, Span)> {
        if let ExprKind::Bool(b) = e.kind {
            return Some((b, e.span));
        }
        let computed = matches!(e.kind, ExprKind::Traversal { .. } | ExprKind::Access { .. } | ExprKind::Call { .. })
            || (matches!(e.kind, ExprKind::Template(_)) && e.as_plain_string().is_none());
        let (code, message) = if computed {
            (Code::InvalidValue, format!("`{key}` must be written out"))
        } else {
            (Code::TypeMismatch, format!("`{key}` must be true or false"))
        };
        self.diags.push(Diagnostic::at(code, e.span, message).with_label(e.span, written_as(e)).help(help));
        None
    }

    /// `resource name "plugin.type" { ... }`: `None` if the type is not
    /// `"<plugin>.<type>"` (reported). The keys the language does not fix
    /// are the attributes handed to the provisioner.
    fn resource(
        &mut self,
        name: Ident,
        ty: Expr,
        ty_span: Span,
        entries: Vec<Entry>,
        span: Span,
    ) -> Option<ResourceDecl> {
        // Formatted only for a message: most resources have none.
        let owner = Named("resource", &name.name);
        let mut r = BodyReader::new(entries, &owner);
        let depends_on = r.attr("depends_on", &mut self.diags);
        let gate = r.attr("gate", &mut self.diags);
        let flow =
            r.block("flow", &mut self.diags).map(|b| self.flow(b.entries, b.span, format!("the `flow` of {owner}"), true));
        // Everything else is an attribute for the provisioner.
        let attributes = self.attributes_of(r.into_entries(), &owner);
        let depends_on = match depends_on {
            None => Vec::new(),
            Some(e) => self.name_list(&e, "depends_on", "resource", "depends_on = [vpc, sg]"),
        };

        let type_text = ty.as_plain_string();
        let (plugin, kind) = match type_text.as_deref().and_then(|t| t.split_once('.')) {
            Some((p, k)) if is_identifier(p) && !k.is_empty() => {
                // Inside the quotes: `"` + plugin + `.` + type + `"`.
                let p_start = ty_span.start + 1;
                let k_start = p_start + p.len() + 1;
                (
                    Ident { name: p.into(), span: Span::new(p_start, p_start + p.len()) },
                    Ident { name: k.into(), span: Span::new(k_start, k_start + k.len()) },
                )
            }
            _ => {
                self.diags.push(
                    Diagnostic::at(Code::InvalidValue, ty_span, format!("invalid type for {owner}"))
                        .with_label(ty_span, "expected \"<plugin>.<type>\"")
                        .help("a resource type names its provisioner plugin and the plugin's type, like \"aws.vpc\""),
                );
                return None;
            }
        };
        let (gate, flow) = (gate.map(Box::new), flow.map(Box::new));
        Some(ResourceDecl { name, plugin, kind, type_span: ty_span, attributes, depends_on, gate, flow, span })
    }

    /// `service "name" { ... }`: `None` if the name is not plain text
    /// (reported). Its values are kept as written, for the checks; what must
    /// be there (`repo`, `build`, and the required keys of each block) is
    /// reported here when it is not.
    fn service(&mut self, name: Expr, name_span: Span, entries: Vec<Entry>, span: Span) -> Option<ServiceDecl> {
        let Some(text) = name.as_plain_string() else {
            self.diags.push(
                Diagnostic::at(Code::InvalidValue, name_span, "a service name must be a plain string, without `${}`")
                    .with_label(name_span, "has an interpolation")
                    .help("write the name as plain text, like `service \"api\" { ... }`"),
            );
            return None;
        };
        let name = Ident { name: text.into(), span: name_span };
        let owner = format!("service `{}`", name.name);
        let mut r = BodyReader::new(entries, &owner);
        let repo = r.attr("repo", &mut self.diags);
        let branches = r.attr("branches", &mut self.diags);
        let tags = r.attr("tags", &mut self.diags);
        let pull_requests = r.attr("pull_requests", &mut self.diags);
        let paths = r.attr("paths", &mut self.diags);
        let poll = r.attr("poll", &mut self.diags);
        let enabled = r.attr("enabled", &mut self.diags);
        let deploys = r.attr("deploys", &mut self.diags);
        let build = r.block("build", &mut self.diags).map(|b| self.build(b, &owner));
        let webhook = r.block("webhook", &mut self.diags).map(|b| self.secret(b, &owner, "secret"));
        let commit_status = r.block("commit_status", &mut self.diags).map(|b| self.commit_status(b, &owner));
        let explained = r.finish(&mut self.diags);
        if repo.is_none() && !explained.contains(&"repo") {
            self.diags.push(
                Diagnostic::at(Code::MissingKey, name.span, format!("{owner} has no `repo`"))
                    .with_label(name.span, "declared here")
                    .help("add the repository: `repo = \"https://git.example.com/acme/api.git\"` (or a local path)"),
            );
        }
        if build.is_none() && !explained.contains(&"build") {
            self.diags.push(
                Diagnostic::at(Code::MissingKey, name.span, format!("{owner} has no `build` block"))
                    .with_label(name.span, "declared here")
                    .help(
                        "add how its artifact is made: `build { command = [\"sh\", \"build.sh\"] artifact = \
                         \"out/app.tar.gz\" }`",
                    ),
            );
        }
        Some(ServiceDecl {
            name,
            repo,
            branches,
            tags,
            pull_requests,
            paths,
            poll,
            enabled,
            deploys,
            build,
            webhook,
            commit_status,
            span,
        })
    }

    /// The `build { }` block of `owner`, a service.
    fn build(&mut self, b: Block, owner: &str) -> BuildBlock {
        let build_owner = format!("the `build` block of {owner}");
        let mut r = BodyReader::new(b.entries, &build_owner);
        let build = BuildBlock {
            command: r.attr("command", &mut self.diags),
            artifact: r.attr("artifact", &mut self.diags),
            timeout: r.attr("timeout", &mut self.diags),
            env: r.attr("env", &mut self.diags),
            span: b.span,
        };
        let explained = r.finish(&mut self.diags);
        let required = [
            (build.command.is_none(), "command", "the program to run and its arguments: `command = [\"sh\", \"build.sh\"]`"),
            (build.artifact.is_none(), "artifact", "the file or directory the build leaves: `artifact = \"out/app.tar.gz\"`"),
        ];
        for (missing, key, help) in required {
            if missing && !explained.contains(&key) {
                self.diags.push(
                    Diagnostic::at(Code::MissingKey, b.name.span, format!("{build_owner} has no `{key}`"))
                        .with_label(b.name.span, "in this block")
                        .help(format!("add {help}")),
                );
            }
        }
        build
    }

    /// The credentials plugin `resolver = NAME` names (`example` shows how
    /// it is written); `missing` is said when it is not there and nothing
    /// else already explained why.
    fn resolver(&mut self, expr: Option<Expr>, explained: &[&str], missing: Diagnostic, example: &str) -> Option<Ident> {
        let Some(e) = expr else {
            if !explained.contains(&"resolver") {
                self.diags.push(missing);
            }
            return None;
        };
        if let Some(i) = e.as_bare_ident() {
            return Some(i.clone());
        }
        self.diags.push(
            Diagnostic::at(Code::InvalidValue, e.span, "`resolver` must name a credentials plugin")
                .with_label(e.span, "not a plugin name")
                .help(format!("write the plugin's name without quotes: `resolver = {example}`")),
        );
        None
    }

    /// A secret block (`webhook { }` of a service, `token { }` of its
    /// `commit_status`) of `owner`; `field` is the default of its `field`.
    fn secret(&mut self, b: Block, owner: &str, field: &str) -> SecretBlock {
        let block_owner = format!("the `{}` block of {owner}", b.name.name);
        let mut r = BodyReader::new(b.entries, &block_owner);
        let resolver_expr = r.attr("resolver", &mut self.diags);
        let field_expr = r.attr("field", &mut self.diags);
        let config = r.block("config", &mut self.diags).map(|c| self.block_to_map(c));
        let explained = r.finish(&mut self.diags);
        let missing = Diagnostic::at(Code::MissingKey, b.name.span, format!("{block_owner} has no `resolver`"))
            .with_label(b.name.span, "in this block")
            .help(format!(
                "name the credentials plugin that resolves the secret: `resolver = <plugin>` (its field `{field}` \
                 unless `field` says another)"
            ));
        let resolver = self.resolver(resolver_expr, &explained, missing, "gh_secret");
        SecretBlock { block: b.name, resolver, field: field_expr, config, span: b.span }
    }

    /// The `commit_status { }` block of `owner`, a service.
    fn commit_status(&mut self, b: Block, owner: &str) -> CommitStatusBlock {
        let block_owner = format!("the `commit_status` block of {owner}");
        let mut r = BodyReader::new(b.entries, &block_owner);
        let api = r.attr("api", &mut self.diags);
        let context = r.attr("context", &mut self.diags);
        let token = r.block("token", &mut self.diags).map(|t| self.secret(t, &block_owner, "token"));
        let explained = r.finish(&mut self.diags);
        if api.is_none() && !explained.contains(&"api") {
            self.diags.push(
                Diagnostic::at(Code::MissingKey, b.name.span, format!("{block_owner} has no `api`"))
                    .with_label(b.name.span, "in this block")
                    .help("add the repository's API base: `api = \"https://api.github.com/repos/acme/api\"`"),
            );
        }
        if token.is_none() && !explained.contains(&"token") {
            self.diags.push(
                Diagnostic::at(Code::MissingKey, b.name.span, format!("{block_owner} has no `token` block"))
                    .with_label(b.name.span, "in this block")
                    .help("add the token statuses are posted with: `token { resolver = <credentials plugin> }`"),
            );
        }
        CommitStatusBlock { api, context, token, span: b.span }
    }

    /// `[a, b]` or a single `a`: bare names.
    fn name_list(&mut self, e: &Expr, key: &str, what: &str, example: &str) -> Vec<Ident> {
        let in_list = matches!(e.kind, ExprKind::List(_));
        let as_written = |name: &str| if in_list { format!("[{name}]") } else { name.to_string() };
        let items: Vec<&Expr> = match &e.kind {
            ExprKind::List(items) => items.iter().collect(),
            _ => vec![e],
        };
        let mut out = Vec::new();
        for item in items {
            if let Some(i) = item.as_bare_ident() {
                out.push(i.clone());
                continue;
            }
            let (message, label, help) = match (&item.kind, item.as_plain_string()) {
                (_, Some(text)) if is_identifier(&text) => (
                    format!("`{key}` takes {what} names, not strings"),
                    "a string".to_string(),
                    format!("write the name without quotes: `{key} = {}`", as_written(&text)),
                ),
                (ExprKind::Traversal { root, .. }, _) if !["var", "env", "pipeline", "service"].contains(&root.name.as_str()) => (
                    format!("`{key}` takes {what} names, not their outputs"),
                    format!("an output of `{root}`"),
                    format!("write the name alone: `{key} = {}`", as_written(&root.name)),
                ),
                _ => (
                    format!("`{key}` takes {what} names"),
                    "not a name".to_string(),
                    format!("write names without quotes, like `{example}`"),
                ),
            };
            self.diags.push(Diagnostic::at(Code::InvalidValue, item.span, message).with_label(item.span, label).help(help));
        }
        out
    }

    /// A body read as attributes: `key = value` entries, and nested blocks,
    /// each of which adds one map to the list named by the block.
    fn attributes_of(&mut self, entries: Vec<Entry>, owner: &dyn fmt::Display) -> Vec<Attribute> {
        let mut out: Vec<Attribute> = Vec::with_capacity(entries.len());
        // Block name -> index in `out` of the list it appends to.
        let mut block_lists: Vec<(Name, usize)> = Vec::new();
        for e in entries {
            match e {
                Entry::Attr(a) => {
                    if let Some(first) = out.iter().find(|o| o.key.name == a.key.name) {
                        self.diags.push(duplicate_key(&first.key, &a.key, owner));
                        continue;
                    }
                    out.push(a);
                }
                Entry::Block(b) => {
                    if let Some(l) = b.labels.first() {
                        self.diags.push(
                            Diagnostic::at(Code::Syntax, l.span, format!("nested block `{}` takes no label", b.name))
                                .with_label(l.span, "unexpected label"),
                        );
                    }
                    let key = b.name.clone();
                    let map = self.block_to_map(b);
                    match block_lists.iter().find(|(n, _)| *n == key.name) {
                        Some((_, i)) => {
                            let value = &mut out[*i].value;
                            value.span = value.span.to(map.span);
                            if let ExprKind::List(items) = &mut value.kind {
                                items.push(map);
                            }
                        }
                        None => {
                            if let Some(first) = out.iter().find(|o| o.key.name == key.name) {
                                self.diags.push(duplicate_key(&first.key, &key, owner));
                                continue;
                            }
                            block_lists.push((key.name.clone(), out.len()));
                            let span = map.span;
                            out.push(Attribute { key, value: Expr { kind: ExprKind::List(vec![map]), span } });
                        }
                    }
                }
            }
        }
        out
    }

    /// A block read as a map of its attributes (`config { }`).
    fn block_to_map(&mut self, b: Block) -> Expr {
        let owner = format!("block `{}`", b.name);
        let span = b.span;
        let attrs = self.attributes_of(b.entries, &owner);
        let entries = attrs.into_iter().map(|a| (MapKey { name: a.key.name, span: a.key.span }, a.value)).collect();
        Expr { kind: ExprKind::Map(entries), span }
    }

    /// The entries of a `{ }` body node.
    fn body(&mut self, p: Node) -> Vec<Entry> {
        let mut out = Vec::with_capacity(p.children().count());
        for e in p.children() {
            match e.rule() {
                Rule::attribute => {
                    let mut i = e.children();
                    let (Some(k), Some(v)) = (i.next(), i.next()) else { continue };
                    let key = self.ident(k);
                    let value = self.expr(v);
                    out.push(Entry::Attr(Attribute { key, value }));
                }
                Rule::block => {
                    let span = self.span(e);
                    let mut name = None;
                    let mut labels = Vec::new();
                    let mut entries = Vec::new();
                    for part in e.children() {
                        match part.rule() {
                            Rule::identifier if name.is_none() => name = Some(self.ident(part)),
                            Rule::identifier => labels.push(self.ident(part)),
                            Rule::string => {
                                let s = self.span(part);
                                let text = self.string(part).as_plain_string().unwrap_or_default();
                                labels.push(Ident { name: text.into(), span: s });
                            }
                            Rule::body => entries = self.body(part),
                            _ => {}
                        }
                    }
                    if let Some(name) = name {
                        out.push(Entry::Block(Block { name, labels, entries, span }));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// An expression: a primary value and its `.name` and `[index]` steps.
    pub(super) fn expr(&mut self, p: Node) -> Expr {
        let span = self.children_span(p);
        if p.rule() != Rule::expr {
            return self.primary(p);
        }
        let mut inner = p.children();
        let Some(first) = inner.next() else { return Expr { kind: ExprKind::Null, span } };
        let is_name = first.rule() == Rule::identifier;
        let base = if is_name { None } else { Some(self.primary(first)) };
        // Sized exactly, here and below: a vector grown by pushing starts
        // with room for four, and a large file has a hundred thousand of them.
        let mut steps: Vec<Step> = Vec::with_capacity(inner.clone().count());
        steps.extend(inner.filter_map(|s| {
            let rule = s.rule();
            let child = s.children().next()?;
            Some(match rule {
                Rule::get_attr => Step::Attr(self.ident(child)),
                _ => Step::Index(self.expr(child)),
            })
        }));
        let kind = match base {
            None => ExprKind::Traversal { root: self.ident(first), steps },
            Some(b) if steps.is_empty() => return Expr { kind: b.kind, span },
            Some(b) => ExprKind::Access { base: Box::new(b), steps },
        };
        Expr { kind, span }
    }

    /// A value without steps: a literal, a list, a map, a call or a name.
    fn primary(&mut self, p: Node) -> Expr {
        let span = self.span(p);
        let kind = match p.rule() {
            Rule::null_lit => ExprKind::Null,
            Rule::bool_lit => ExprKind::Bool(p.as_str() == "true"),
            Rule::number => match parse_number(p.as_str()) {
                Some(n) => ExprKind::Number(n),
                None => {
                    self.diags.push(
                        Diagnostic::at(Code::InvalidValue, span, "number out of range")
                            .with_label(span, "too large to represent")
                            .help("a number is at most about 1.8e308"),
                    );
                    self.invalid.push(span);
                    ExprKind::Null
                }
            },
            Rule::string => return self.string(p),
            Rule::heredoc => return self.heredoc(p),
            Rule::list => {
                let items = p.children().filter(|e| e.rule() == Rule::expr);
                let mut list = Vec::with_capacity(items.clone().count());
                list.extend(items.map(|e| self.expr(e)));
                ExprKind::List(list)
            }
            Rule::map => self.map(p, span),
            Rule::call => {
                let mut i = p.children();
                let Some(f) = i.next() else { return Expr { kind: ExprKind::Null, span } };
                let function = self.ident(f);
                let mut args = Vec::with_capacity(i.clone().count());
                args.extend(i.map(|a| self.expr(a)));
                ExprKind::Call { function, args }
            }
            Rule::identifier => ExprKind::Traversal { root: self.ident(p), steps: Vec::new() },
            _ => ExprKind::Null,
        };
        Expr { kind, span }
    }

    /// `{ key = value, ... }` at `span`.
    fn map(&mut self, p: Node, span: Span) -> ExprKind {
        let mut entries: Vec<(MapKey, Expr)> = Vec::new();
        for entry in p.children().filter(|e| e.rule() == Rule::map_entry) {
            let mut i = entry.children();
            let (Some(k), Some(v)) = (i.next(), i.next()) else { continue };
            let key_span = self.span(k);
            let name = match k.rule() {
                Rule::identifier => Some(k.as_str().to_string()),
                _ => self.string(k).as_plain_string(),
            };
            let value = self.expr(v);
            let Some(name) = name else {
                self.diags.push(
                    Diagnostic::at(Code::InvalidValue, key_span, "a map key must be a plain string")
                        .with_label(key_span, "has an interpolation"),
                );
                self.invalid.push(span);
                continue;
            };
            if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                self.diags.push(
                    Diagnostic::at(Code::DuplicateKey, key_span, format!("map key `{name}` is given twice"))
                        .with_label(key_span, "given again here")
                        .with_label(first.span, "first given here"),
                );
                continue;
            }
            entries.push((MapKey { name: name.into(), span: key_span }, value));
        }
        ExprKind::Map(entries)
    }

}

/// A number as written: an integer when it is one, else a float; `None` if
/// out of range.
/// What `e` is, for a label where a value must be written out.
fn written_as(e: &Expr) -> &'static str {
    match &e.kind {
        ExprKind::Null => "null",
        ExprKind::Bool(_) => "a bool",
        ExprKind::Number(_) => "a number",
        ExprKind::Template(_) if e.as_plain_string().is_some() => "a string",
        ExprKind::Template(_) => "an interpolated string",
        ExprKind::List(_) => "a list",
        ExprKind::Map(_) => "a map",
        ExprKind::Traversal { .. } | ExprKind::Access { .. } => "a reference",
        ExprKind::Call { .. } => "a function call",
    }
}

/// `text`, at `span`, is not an approver (`why`); `forms` says what one is.
fn not_an_approver(text: &str, why: NotAnApprover, span: Span, forms: &str) -> Diagnostic {
    let roles = || Role::ALL.iter().map(|(n, _)| *n);
    let (message, label, help) = match why {
        NotAnApprover::UnknownPrefix(None) => {
            // A bare role or name: say which prefix it lacks.
            let meant = match Role::named(text) {
                Some(_) => format!("role:{text}"),
                None => format!("user:{text}"),
            };
            (format!("`{text}` names no approver"), "no `role:` or `user:`", format!("did you mean `{meant}`? {forms}"))
        }
        NotAnApprover::UnknownPrefix(Some(prefix)) => (
            format!("`{prefix}:` is not a kind of approver"),
            "neither `role:` nor `user:`",
            match did_you_mean(&prefix, ["role", "user"]) {
                Some(d) => format!("{d} {forms}"),
                None => forms.to_string(),
            },
        ),
        NotAnApprover::UnknownRole(role) => (
            format!("`{role}` is not a role"),
            "not a role",
            did_you_mean(&role, roles()).unwrap_or_else(|| "the roles are viewer, operator and admin".into()),
        ),
        NotAnApprover::BadUserName => (
            format!("`{text}` names no user"),
            "no user's name",
            "write the user's name after `user:`, with no blanks: `user:bob`".into(),
        ),
    };
    Diagnostic::at(Code::InvalidValue, span, message).with_label(span, label).help(help)
}

fn parse_number(s: &str) -> Option<serde_json::Number> {
    if !s.contains(['.', 'e', 'E']) {
        if let Ok(i) = s.parse::<i64>() {
            return Some(i.into());
        }
    }
    s.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
}
