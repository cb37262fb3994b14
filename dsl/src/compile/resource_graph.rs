//! The resource graph: a node for each resource (the first declaration of
//! each name), an edge from each resource to those that take its outputs or
//! list it in `depends_on`, the cycles that stop a deploy, and each node's
//! level.

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::ast::*;
use crate::diagnostic::{Code, Diagnostic};
use crate::graph::{Dependency, ResourceNode};
use crate::par;
use crate::sensitive;

use super::dag::{cycle_path, cycle_steps, cycles, topological};
use super::{Compiler, RESOURCES_PER_THREAD};

/// The graph as the compiler builds it.
type Graph = DiGraph<ResourceNode, Dependency>;

impl<'a> Compiler<'a> {
    /// The resource graph and its deploy order (`None` if it has a cycle).
    pub(super) fn resource_graph(&mut self) -> (Graph, Option<Vec<NodeIndex>>) {
        let mut g = self.resource_nodes();
        let mut ok = self.wire(&mut g);
        let order = topological(&g, |n| n.index());
        // Kahn's order leaves out every node on or after a cycle: only then look for cycles.
        if order.len() < g.node_count() && self.report_cycles(&g) {
            ok = false;
        }
        if !ok {
            return (g, None);
        }
        set_levels(&mut g, &order);
        (g, Some(order))
    }

    /// A node for each resource name, its own checks (type, gate, flow) done.
    fn resource_nodes(&mut self) -> Graph {
        let m = self.m;
        let mut g: Graph = DiGraph::with_capacity(self.nodes.len(), 3 * self.nodes.len());
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
                type_span: r.type_span,
            });
        }
        g
    }

    /// The edges of `g`: the wiring found by checking the references of every
    /// attribute, and `depends_on`. Records the facts of every attribute.
    /// False if a `depends_on` names no resource.
    fn wire(&mut self, g: &mut Graph) -> bool {
        let m = self.m;
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
                let dep = edge(g, from, to);
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
                        edge(g, from, to).explicit.get_or_insert(d.span);
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
        ok
    }

    /// Reports each cycle of `g`, with the reference or `depends_on` that
    /// makes each of its edges; whether there was one.
    fn report_cycles(&mut self, g: &Graph) -> bool {
        let m = self.m;
        let names = |n: NodeIndex| m.resources[self.nodes[n.index()]].name.name.to_string();
        let cycles = cycles(g);
        for cycle in &cycles {
            let path = cycle_path(cycle, names);
            let mut d = Diagnostic::new(Code::Cycle, format!("dependency cycle: {path}"));
            for (from, to) in cycle_steps(cycle) {
                if let Some(e) = g.find_edge(from, to) {
                    let dep = &g[e];
                    let span = dep.wiring.first().map(|w| w.span).or(dep.explicit).unwrap_or(g[to].span);
                    d = d.with_label(span, format!("`{}` depends on `{}`", names(to), names(from)));
                }
            }
            self.diags.push(d.help("a resource cannot depend, directly or through others, on itself"));
        }
        !cycles.is_empty()
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
}

/// The edge `from` -> `to`, added if there is none yet.
fn edge(g: &mut Graph, from: NodeIndex, to: NodeIndex) -> &mut Dependency {
    // Looked for among the edges into `to`, the resource being wired: they
    // are few and were just added, where `from` may feed many resources.
    let found = g.edges_directed(to, Direction::Incoming).find(|e| e.source() == from).map(|e| e.id());
    let e = found.unwrap_or_else(|| g.add_edge(from, to, Dependency::default()));
    &mut g[e]
}

/// Each node's level, `order` being a topological order of `g`: its longest
/// distance from a root, which is level 0.
fn set_levels(g: &mut Graph, order: &[NodeIndex]) {
    for &n in order {
        let level = g.neighbors_directed(n, Direction::Incoming).map(|p| g[p].level + 1).max().unwrap_or(0);
        g[n].level = level;
    }
}
