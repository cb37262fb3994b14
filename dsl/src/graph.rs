//! The compiled pipeline: a petgraph DAG of resources (edges point from a
//! dependency to its dependent) and, per environment, everything resolved
//! that does not wait on an apply: vars, flow policies, plugins, credentials.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::approvers::ApprovalRule;
use crate::ast::{Attribute, Expr, Name, OutputDecl, PluginKind, Span};
use crate::service::{ArtifactRef, ServiceSpec};

/// One resource: what provisions it and how its attributes are written.
#[derive(Debug, Clone)]
pub struct ResourceNode {
    pub name: String,
    /// The provisioner plugin, `aws` in `"aws.vpc"`.
    pub plugin: String,
    /// The plugin's resource type, `vpc` in `"aws.vpc"`.
    pub kind: String,
    /// As written; references to upstream outputs are filled in at deploy time.
    pub attributes: Vec<Attribute>,
    /// `gate = "after"`: wait for approval after this node, before its dependents.
    pub gate_after: bool,
    /// The attributes (top-level keys of `attributes`) whose value uses a
    /// sensitive var anywhere in its expression, sorted: their values are
    /// sensitive too, to be masked wherever they are shown.
    pub sensitive_attributes: Vec<String>,
    /// Longest distance from a root; roots are level 0.
    pub level: usize,
    pub span: Span,
    /// Where `"plugin.type"` is written, quotes included (empty for a
    /// resource the file no longer declares).
    pub type_span: Span,
}

impl ResourceNode {
    /// `aws.vpc`
    pub fn type_name(&self) -> String {
        format!("{}.{}", self.plugin, self.kind)
    }

    /// Where the type half of `"plugin.type"` is written (`vpc` in `"aws.vpc"`).
    pub fn kind_span(&self) -> Span {
        // Inside the quotes: `"` + plugin + `.` + type + `"`, as the parser split it.
        let start = (self.type_span.start + self.plugin.len() + 2).min(self.type_span.end);
        Span::new(start, self.type_span.end.saturating_sub(1).max(start))
    }
}

/// One output of one resource feeding one attribute of another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wiring {
    pub from: Name,
    pub output: Name,
    pub to: Name,
    pub attribute: Name,
    #[serde(skip)]
    pub span: Span,
}

/// Why `to` depends on `from`: the outputs it takes, or an explicit `depends_on`.
#[derive(Debug, Clone, Default)]
pub struct Dependency {
    pub wiring: Vec<Wiring>,
    /// Listed in `depends_on`, at this span.
    pub explicit: Option<Span>,
}

/// How a stack job runs, resolved resource > environment > pipeline > defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FlowPolicy {
    /// Read the real state before planning.
    pub refresh: bool,
    /// Compute and show the plan before apply.
    pub preview: bool,
    /// After preview, wait for approval.
    pub pause_before_apply: bool,
}

impl Default for FlowPolicy {
    fn default() -> Self {
        FlowPolicy { refresh: true, preview: true, pause_before_apply: false }
    }
}

/// What a failed node stops in its environment (`on_failure`), resolved
/// environment > pipeline > the default. The environments after a failed
/// one never start, whichever it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Only the failed node's dependents, transitively (seed 000): independent
    /// branches run on.
    #[default]
    StopDependents,
    /// Everything not started yet (seed 004): what is in flight finishes,
    /// nothing new starts.
    StopAll,
}

impl OnFailure {
    pub const ALL: [(&'static str, OnFailure); 2] =
        [("stop-dependents", OnFailure::StopDependents), ("stop-all", OnFailure::StopAll)];
    /// As written in a `flow` block.
    pub fn name(self) -> &'static str {
        match self {
            OnFailure::StopDependents => "stop-dependents",
            OnFailure::StopAll => "stop-all",
        }
    }
    pub fn named(name: &str) -> Option<OnFailure> {
        OnFailure::ALL.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginSource {
    /// Shipped inside stackpipe: `builtin:<name>`.
    Builtin(String),
    /// A `.wasm` component, relative to the pipeline file.
    Path(String),
}

impl std::fmt::Display for PluginSource {
    /// As written in the file: `builtin:local`, or the path.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::Builtin(name) => write!(f, "builtin:{name}"),
            PluginSource::Path(path) => f.write_str(path),
        }
    }
}

/// What the sandbox may touch. Nothing unless granted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Grants {
    /// `host:port` pairs a plugin may send HTTP requests to.
    pub http: Vec<String>,
    /// Directories (relative to the pipeline file) preopened for the plugin.
    pub fs: Vec<String>,
    /// Where each of `fs` is written in the file.
    #[serde(skip)]
    pub fs_spans: Vec<Span>,
    /// Environment variable names the plugin may read.
    pub env: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub memory_mb: u64,
    pub timeout_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_mb: 256, timeout_s: 600 }
    }
}

/// A plugin as one environment sees it: source, config and grants evaluated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginSpec {
    pub name: String,
    pub kind: PluginKind,
    pub source: PluginSource,
    pub config: Value,
    pub grants: Grants,
    pub limits: Limits,
}

/// Which resolver supplies credentials to a provisioner, and with what config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CredentialsBinding {
    pub provisioner: String,
    pub resolver: String,
    pub config: Value,
}

/// One environment, resolved.
#[derive(Debug, Clone)]
pub struct EnvironmentPlan {
    pub name: String,
    pub after: Vec<String>,
    /// Wait for approval before the first node starts.
    pub approval: bool,
    /// Who may decide this environment's gates (`approvers`, `self_approval`).
    pub approval_rule: ApprovalRule,
    /// Every var with its value here (`--var` > `vars {}` > default).
    pub vars: Map<String, Value>,
    /// The flow policy of each node, indexed by `NodeIndex::index()`.
    pub flow: Vec<FlowPolicy>,
    /// The environment's own flow policy, which its resources inherit: what
    /// governs a resource the file no longer declares (an orphan being
    /// destroyed).
    pub environment_flow: FlowPolicy,
    /// What a failed node stops here.
    pub on_failure: OnFailure,
    pub plugins: BTreeMap<String, PluginSpec>,
    /// Keyed by provisioner name.
    pub credentials: BTreeMap<String, CredentialsBinding>,
    /// `previews = true`: a pull request's pipeline (`pull_requests =
    /// "deploy"`) deploys here, and only to such environments.
    pub previews: bool,
}

impl EnvironmentPlan {
    pub fn flow_of(&self, node: NodeIndex) -> FlowPolicy {
        self.flow.get(node.index()).copied().unwrap_or_default()
    }
}

/// A compiled pipeline: its resources' graph, its environments resolved,
/// and its outputs.
#[derive(Debug, Clone)]
pub struct PipelineGraph {
    pub name: String,
    pub graph: DiGraph<ResourceNode, Dependency>,
    /// Environments in the order they run (each after the ones it names in `after`).
    pub environments: Vec<EnvironmentPlan>,
    /// Every environment of the file in run order, also those `--env` left out.
    pub all_environments: Vec<String>,
    pub outputs: Vec<OutputDecl>,
    /// The vars declared `sensitive`. Their values (in
    /// [`EnvironmentPlan::vars`]) are never to be shown or stored; what
    /// derives from them is sensitive too (see
    /// [`ResourceNode::sensitive_attributes`], [`Self::output_is_sensitive`]).
    pub sensitive_vars: BTreeSet<String>,
    /// The `service` blocks, in declaration order.
    pub services: Vec<ServiceSpec>,
    /// What builds made, by service (`service.NAME.artifact.*`), as the
    /// compile was given them: empty outside a service pipeline.
    pub artifacts: BTreeMap<String, ArtifactRef>,
    /// Nodes in deploy order: declaration order, each after its dependencies.
    order: Vec<NodeIndex>,
    /// Each node by its resource's name, made with the graph: [`Self::find`]
    /// looks a name up rather than going through the nodes.
    by_name: FxHashMap<Name, NodeIndex>,
}

impl PipelineGraph {
    /// The pipeline of `graph`, whose nodes have their names: the index by
    /// name is made here, once.
    pub(crate) fn new(
        name: String,
        graph: DiGraph<ResourceNode, Dependency>,
        order: Vec<NodeIndex>,
        environments: Vec<EnvironmentPlan>,
        all_environments: Vec<String>,
        outputs: Vec<OutputDecl>,
        sensitive_vars: BTreeSet<String>,
    ) -> Self {
        let mut by_name = FxHashMap::with_capacity_and_hasher(graph.node_count(), Default::default());
        for i in graph.node_indices() {
            // Names are unique (the compiler refuses a duplicate); were one
            // not, its first node would be found, as a scan in order finds it.
            by_name.entry(Name::from(graph[i].name.as_str())).or_insert(i);
        }
        PipelineGraph {
            name,
            graph,
            environments,
            all_environments,
            outputs,
            sensitive_vars,
            services: Vec::new(),
            artifacts: BTreeMap::new(),
            order,
            by_name,
        }
    }

    pub fn node(&self, i: NodeIndex) -> &ResourceNode {
        &self.graph[i]
    }

    /// The node of the resource `name`.
    pub fn find(&self, name: &str) -> Option<NodeIndex> {
        // `graph` is public: should a node be renamed after the index was
        // made, the index does not give it out under its old name.
        self.by_name.get(name).copied().filter(|&i| self.graph.node_weight(i).is_some_and(|n| n.name == name))
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// How many levels there are (0 for an empty pipeline).
    pub fn level_count(&self) -> usize {
        self.graph.node_weights().map(|n| n.level + 1).max().unwrap_or(0)
    }

    /// Nodes grouped by level, each level in declaration order.
    pub fn levels(&self) -> Vec<Vec<NodeIndex>> {
        let mut out = vec![Vec::new(); self.level_count()];
        for i in self.graph.node_indices() {
            out[self.graph[i].level].push(i);
        }
        out
    }

    /// Deploy order: every node after all of its dependencies.
    pub fn deploy_order(&self) -> &[NodeIndex] {
        &self.order
    }

    /// Undeploy order: every node after all of its dependents.
    pub fn undeploy_order(&self) -> Vec<NodeIndex> {
        self.order.iter().rev().copied().collect()
    }

    /// The nodes this one depends on (its inputs come from them).
    pub fn dependencies(&self, i: NodeIndex) -> Vec<NodeIndex> {
        self.sorted_neighbors(i, Direction::Incoming)
    }

    /// The nodes that depend on this one.
    pub fn dependents(&self, i: NodeIndex) -> Vec<NodeIndex> {
        self.sorted_neighbors(i, Direction::Outgoing)
    }

    fn sorted_neighbors(&self, i: NodeIndex, dir: Direction) -> Vec<NodeIndex> {
        let mut v: Vec<NodeIndex> = self.graph.neighbors_directed(i, dir).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every node reachable from `i` along dependency edges (what a failure of `i` cancels).
    pub fn transitive_dependents(&self, i: NodeIndex) -> Vec<NodeIndex> {
        let mut seen = vec![false; self.graph.node_count()];
        let mut stack = vec![i];
        let mut out = Vec::new();
        while let Some(n) = stack.pop() {
            for d in self.graph.neighbors_directed(n, Direction::Outgoing) {
                if !seen[d.index()] {
                    seen[d.index()] = true;
                    out.push(d);
                    stack.push(d);
                }
            }
        }
        out.sort();
        out
    }

    /// The wiring into `i`, in the order the attributes were written.
    pub fn wiring_into(&self, i: NodeIndex) -> Vec<&Wiring> {
        let mut v: Vec<&Wiring> = self
            .graph
            .edges_directed(i, Direction::Incoming)
            .flat_map(|e| e.weight().wiring.iter())
            .collect();
        v.sort_by_key(|w| w.span);
        v
    }

    pub fn environment(&self, name: &str) -> Option<&EnvironmentPlan> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// Whether an output's value is sensitive: it is marked `sensitive`, or
    /// its expression uses a sensitive var (an unmarked output derived from
    /// one is sensitive too; that is not a mistake). Outputs of resources
    /// that a provisioner marks sensitive make it so as well, but only the
    /// runtime knows those: see [`crate::resource_references`].
    pub fn output_is_sensitive(&self, output: &OutputDecl) -> bool {
        output.sensitive.is_some() || crate::sensitive::uses_any_var(&output.value, &self.sensitive_vars)
    }

    /// An attribute of a node, as written.
    pub fn attribute<'a>(&'a self, i: NodeIndex, key: &str) -> Option<&'a Expr> {
        self.graph[i].attributes.iter().find(|a| a.key.name == key).map(|a| &a.value)
    }
}

#[cfg(test)]
mod tests {
    use crate::{load, CompileOptions};

    #[test]
    fn find_gives_each_node_by_its_name() {
        let src = "plugin t { kind = \"provisioner\" source = \"builtin:t\" }\n\
                   resource a \"t.x\" {}\nresource b \"t.x\" { i = a.id }\nresource c \"t.x\" { depends_on = [b] }\n";
        let g = load("f", src, &CompileOptions::default()).expect("compiles");
        for i in g.graph.node_indices() {
            assert_eq!(g.find(&g.node(i).name), Some(i));
        }
        assert_eq!(g.find("d"), None);
        assert_eq!(g.find(""), None);
        // A clone keeps its index.
        let copy = g.clone();
        assert_eq!(copy.find("c"), g.find("c"));
    }
}
