//! The environment chain: the order `after` gives the environments, and
//! what stops one (an unknown environment, environments waiting for each
//! other). A file without environments runs in one, [`DEFAULT_ENVIRONMENT`].

use std::collections::HashMap;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::ast::*;
use crate::diagnostic::{did_you_mean, Code, Diagnostic};

use super::dag::{cycle_path, cycle_steps, cycles, topological};
use super::{Compiler, DEFAULT_ENVIRONMENT};

impl<'a> Compiler<'a> {
    /// Environments in run order, or `None` after reporting a cycle or an
    /// unknown name in `after`.
    pub(super) fn environment_order(&mut self) -> Option<Vec<String>> {
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
            let path = cycle_path(&cycle, names);
            let mut d = Diagnostic::new(Code::EnvironmentCycle, format!("environments wait for each other: {path}"));
            for (from, to) in cycle_steps(&cycle) {
                if let Some(e) = g.find_edge(from, to) {
                    d = d.with_label(g[e], format!("`{}` runs after `{}`", names(to), names(from)));
                }
            }
            self.diags.push(d.help("`after` must form a chain (or a tree) from a first environment"));
        }
        if !ok {
            return None;
        }
        Some(topological(&g, |n| g[n]).into_iter().map(names).collect())
    }
}
