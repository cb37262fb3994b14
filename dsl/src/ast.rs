//! The typed syntax tree of one `.pipeline` file. Every node carries the
//! [`Span`] of the source it came from, so any later stage can point at it.

use std::fmt;

use crate::approvers::Approver;

/// A byte range in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(s: Span) -> Self {
        (s.start, s.len()).into()
    }
}

/// A name or a piece of literal text. Most are a few bytes long and kept
/// inline, without an allocation: a large file has hundreds of thousands.
pub type Name = compact_str::CompactString;

/// A name as written, with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: Name,
    pub span: Span,
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A parsed file: its items in source order, grouped by kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Module {
    pub pipeline: Vec<PipelineDecl>,
    pub vars: Vec<VarDecl>,
    pub plugins: Vec<PluginDecl>,
    pub credentials: Vec<CredentialsDecl>,
    pub flows: Vec<FlowBlock>,
    pub environments: Vec<EnvironmentDecl>,
    pub resources: Vec<ResourceDecl>,
    pub outputs: Vec<OutputDecl>,
    pub services: Vec<ServiceDecl>,
    /// Names declared by items that did not parse. They exist, so references
    /// to them are not reported as unknown: the syntax error is the news.
    pub unparsed: Vec<String>,
    /// Spans of expressions that were reported while parsing (a number out of
    /// range, a bad escape, an interpolated map key). An expression containing
    /// one is not evaluated, so that mistake is not reported again as another.
    pub invalid: Vec<Span>,
}

/// `pipeline "name"`
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineDecl {
    pub name: String,
    pub name_span: Span,
    pub span: Span,
}

/// The declared type of a `var`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarType {
    String,
    Number,
    Bool,
    List,
    Map,
    Any,
}

impl VarType {
    pub const ALL: [(&'static str, VarType); 6] = [
        ("string", VarType::String),
        ("number", VarType::Number),
        ("bool", VarType::Bool),
        ("list", VarType::List),
        ("map", VarType::Map),
        ("any", VarType::Any),
    ];
    pub fn name(self) -> &'static str {
        VarType::ALL.iter().find(|(_, t)| *t == self).map(|(n, _)| *n).unwrap_or("any")
    }
}

/// `var name: type = default sensitive`
#[derive(Debug, Clone, PartialEq)]
pub struct VarDecl {
    pub name: Ident,
    pub ty: VarType,
    pub ty_span: Option<Span>,
    pub default: Option<Expr>,
    /// Where the trailing `sensitive` keyword is, if the var is marked so: its
    /// value, and every value derived from it, is never shown or stored.
    pub sensitive: Option<Span>,
    pub span: Span,
}

/// What a plugin is for; decides which WIT world its component must export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Provisioner,
    Credentials,
    Policy,
}

impl PluginKind {
    pub const ALL: [(&'static str, PluginKind); 3] = [
        ("provisioner", PluginKind::Provisioner),
        ("credentials", PluginKind::Credentials),
        ("policy", PluginKind::Policy),
    ];
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Provisioner => "provisioner",
            PluginKind::Credentials => "credentials",
            PluginKind::Policy => "policy",
        }
    }
}

/// `key = expr` inside a block.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub key: Ident,
    pub value: Expr,
}

/// `plugin name { kind = .. source = .. config {..} allow {..} limits {..} }`
#[derive(Debug, Clone, PartialEq)]
pub struct PluginDecl {
    pub name: Ident,
    pub kind: Option<(PluginKind, Span)>,
    pub source: Option<Expr>,
    /// The `config { }` block, as a map expression.
    pub config: Option<Expr>,
    pub allow: AllowBlock,
    pub limits: LimitsBlock,
    pub span: Span,
}

/// `allow { http = [..] fs = [..] env = [..] }`: what the sandbox may touch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowBlock {
    pub http: Option<Expr>,
    pub fs: Option<Expr>,
    pub env: Option<Expr>,
}

/// `limits { memory_mb = .. timeout_s = .. }`
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsBlock {
    pub memory_mb: Option<Expr>,
    pub timeout_s: Option<Expr>,
}

/// `credentials <provisioner> { resolver = <plugin> config { .. } }`
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialsDecl {
    pub provisioner: Ident,
    pub resolver: Option<Ident>,
    pub config: Option<Expr>,
    pub span: Span,
}

/// A key of a `flow` block that sets how runs go (and that `locked` can name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowKey {
    Refresh,
    Preview,
    PauseBeforeApply,
    /// What a failed node stops: set for a pipeline or an environment only.
    OnFailure,
}

impl FlowKey {
    pub const ALL: [(&'static str, FlowKey); 4] = [
        ("refresh", FlowKey::Refresh),
        ("preview", FlowKey::Preview),
        ("pause_before_apply", FlowKey::PauseBeforeApply),
        ("on_failure", FlowKey::OnFailure),
    ];
    pub fn name(self) -> &'static str {
        FlowKey::ALL.iter().find(|(_, k)| *k == self).map(|(n, _)| *n).unwrap_or("?")
    }
    pub fn named(name: &str) -> Option<FlowKey> {
        FlowKey::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }
}

/// `flow { refresh = .. preview = .. pause_before_apply = .. on_failure = .. locked = [..] }`.
/// Each key keeps how it was written (its name's span too): a lock points at
/// the key that overrides it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowBlock {
    pub refresh: Option<Attribute>,
    pub preview: Option<Attribute>,
    pub pause_before_apply: Option<Attribute>,
    /// `"stop-dependents"` or `"stop-all"`; never set on a resource (reported
    /// when written there, and left out).
    pub on_failure: Option<Attribute>,
    /// `locked = ["preview", ..]`: the keys no lower scope may set (the
    /// pipeline's lock environments and resources, an environment's its
    /// resources), each with where it is named. Empty on a resource.
    pub locked: Vec<(FlowKey, Span)>,
    pub span: Span,
}

impl FlowBlock {
    /// The attribute that sets `key` here, if any.
    pub fn get(&self, key: FlowKey) -> Option<&Attribute> {
        match key {
            FlowKey::Refresh => self.refresh.as_ref(),
            FlowKey::Preview => self.preview.as_ref(),
            FlowKey::PauseBeforeApply => self.pause_before_apply.as_ref(),
            FlowKey::OnFailure => self.on_failure.as_ref(),
        }
    }

    /// Where this block locks `key`, if it does.
    pub fn lock_of(&self, key: FlowKey) -> Option<Span> {
        self.locked.iter().find(|(k, _)| *k == key).map(|(_, s)| *s)
    }

    /// The values this block sets, for the checks of their references.
    pub fn values(&self) -> impl Iterator<Item = &Expr> {
        FlowKey::ALL.into_iter().filter_map(|(_, k)| self.get(k)).map(|a| &a.value)
    }
}

/// `environment name { after = .. approval = .. approvers = [..] self_approval = .. vars {..} flow {..} credentials p {..} }`
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentDecl {
    pub name: Ident,
    pub after: Vec<Ident>,
    pub approval: Option<Expr>,
    /// `approvers = ["role:admin", "user:bob"]`, each with where it is
    /// written; written out, as nothing may change who approves.
    pub approvers: Vec<(Approver, Span)>,
    /// `self_approval = false`, written out, with where.
    pub self_approval: Option<(bool, Span)>,
    /// `previews = true`, written out, with where: a pull request's deploy
    /// goes to the environments marked so, and only to them.
    pub previews: Option<(bool, Span)>,
    pub vars: Vec<Attribute>,
    pub flow: Option<FlowBlock>,
    pub credentials: Vec<CredentialsDecl>,
    pub span: Span,
}

/// `resource name "plugin.type" { attributes.. depends_on gate flow }`
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDecl {
    pub name: Ident,
    /// The plugin half of `"plugin.type"`.
    pub plugin: Ident,
    /// The type half of `"plugin.type"`.
    pub kind: Ident,
    pub type_span: Span,
    pub attributes: Vec<Attribute>,
    pub depends_on: Vec<Ident>,
    // Boxed, as most resources have neither: a large file holds many resources.
    pub gate: Option<Box<Expr>>,
    pub flow: Option<Box<FlowBlock>>,
    pub span: Span,
}

/// `service "name" { repo = .. branches = [..] .. build { .. } webhook { .. } commit_status { .. } }`:
/// each key as written; the checks evaluate them into a
/// [`ServiceSpec`](crate::service::ServiceSpec).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDecl {
    /// The name, from its string (`service "api"`), with the span of the string.
    pub name: Ident,
    pub repo: Option<Expr>,
    pub branches: Option<Expr>,
    pub tags: Option<Expr>,
    pub pull_requests: Option<Expr>,
    pub paths: Option<Expr>,
    pub poll: Option<Expr>,
    pub enabled: Option<Expr>,
    pub deploys: Option<Expr>,
    /// `None` when the block is missing (reported while parsing).
    pub build: Option<BuildBlock>,
    pub webhook: Option<SecretBlock>,
    pub commit_status: Option<CommitStatusBlock>,
    pub span: Span,
}

impl ServiceDecl {
    /// Every expression the block holds, for the checks of their references.
    pub fn values(&self) -> impl Iterator<Item = &Expr> {
        let top = [&self.repo, &self.branches, &self.tags, &self.pull_requests, &self.paths, &self.poll];
        let top = top.into_iter().chain([&self.enabled, &self.deploys]);
        let build = self.build.iter().flat_map(|b| [&b.command, &b.artifact, &b.timeout, &b.env]);
        let secrets = self.webhook.iter().chain(self.commit_status.iter().filter_map(|c| c.token.as_ref()));
        let secrets = secrets.flat_map(|s| [&s.field, &s.config]);
        let status = self.commit_status.iter().flat_map(|c| [&c.api, &c.context]);
        top.chain(build).chain(secrets).chain(status).flatten()
    }
}

/// `build { command = [..] artifact = ".." timeout = ".." env = { .. } }` of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildBlock {
    pub command: Option<Expr>,
    pub artifact: Option<Expr>,
    pub timeout: Option<Expr>,
    pub env: Option<Expr>,
    pub span: Span,
}

/// `{ resolver = PLUGIN field = ".." config { .. } }`: a secret a credentials
/// plugin resolves (a service's `webhook`, its `commit_status`'s `token`).
#[derive(Debug, Clone, PartialEq)]
pub struct SecretBlock {
    /// The block's name as written (`webhook`, `token`), for messages.
    pub block: Ident,
    pub resolver: Option<Ident>,
    pub field: Option<Expr>,
    /// The `config { }` block, as a map expression.
    pub config: Option<Expr>,
    pub span: Span,
}

/// `commit_status { api = ".." context = ".." token { .. } }` of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitStatusBlock {
    pub api: Option<Expr>,
    pub context: Option<Expr>,
    pub token: Option<SecretBlock>,
    pub span: Span,
}

/// `output name = expr sensitive`
#[derive(Debug, Clone, PartialEq)]
pub struct OutputDecl {
    pub name: Ident,
    pub value: Expr,
    /// Where the trailing `sensitive` keyword is, if the output is marked so.
    /// An output is also sensitive, marked or not, when its value derives from
    /// a sensitive var: see [`PipelineGraph::output_is_sensitive`](crate::PipelineGraph::output_is_sensitive).
    pub sensitive: Option<Span>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    /// A string; literal text and `${}` interpolations.
    Template(Vec<TemplatePart>),
    List(Vec<Expr>),
    Map(Vec<(MapKey, Expr)>),
    /// A name followed by accessors: `vpc.id`, `var.zones[0]`, `env.name`.
    Traversal { root: Ident, steps: Vec<Step> },
    /// Accessors applied to something that is not a name: `split(",", x)[0]`.
    Access { base: Box<Expr>, steps: Vec<Step> },
    Call { function: Ident, args: Vec<Expr> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapKey {
    pub name: Name,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    Literal(Name),
    Interpolation(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Attr(Ident),
    Index(Expr),
}

impl Step {
    pub fn span(&self) -> Span {
        match self {
            Step::Attr(i) => i.span,
            Step::Index(e) => e.span,
        }
    }
}

impl Expr {
    /// The literal text of a string with no interpolation.
    pub fn as_plain_string(&self) -> Option<String> {
        match &self.kind {
            ExprKind::Template(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        TemplatePart::Literal(s) => out.push_str(s),
                        TemplatePart::Interpolation(_) => return None,
                    }
                }
                Some(out)
            }
            _ => None,
        }
    }

    /// A bare name (`dev`, `aws_keys`), as used by `after`, `resolver`, `depends_on`.
    pub fn as_bare_ident(&self) -> Option<&Ident> {
        match &self.kind {
            ExprKind::Traversal { root, steps } if steps.is_empty() => Some(root),
            _ => None,
        }
    }

    /// Calls `f` on this expression and every expression inside it.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match &self.kind {
            ExprKind::Null | ExprKind::Bool(_) | ExprKind::Number(_) => {}
            ExprKind::Template(parts) => {
                for p in parts {
                    if let TemplatePart::Interpolation(e) = p {
                        e.walk(f);
                    }
                }
            }
            ExprKind::List(items) => items.iter().for_each(|e| e.walk(f)),
            ExprKind::Map(entries) => entries.iter().for_each(|(_, e)| e.walk(f)),
            ExprKind::Traversal { steps, .. } => walk_steps(steps, f),
            ExprKind::Access { base, steps } => {
                base.walk(f);
                walk_steps(steps, f);
            }
            ExprKind::Call { args, .. } => args.iter().for_each(|e| e.walk(f)),
        }
    }
}

fn walk_steps(steps: &[Step], f: &mut dyn FnMut(&Expr)) {
    for s in steps {
        if let Step::Index(e) = s {
            e.walk(f);
        }
    }
}
