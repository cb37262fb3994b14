//! What a targeted run takes of the graph (`--target`): the named
//! resources, and for a deploy what they need that is not deployed yet, for
//! an undeploy what depends on them. Pure closures over the graph: whether a
//! resource is deployed is the caller's to say (it is in the state).

use petgraph::graph::NodeIndex;

use crate::diagnostic::did_you_mean;
use crate::graph::PipelineGraph;

/// A `--target` that names no resource of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--target {name}: the pipeline has no resource `{name}`")]
pub struct UnknownTarget {
    pub name: String,
    /// "did you mean `b`?", or the resources there are.
    pub help: String,
}

impl PipelineGraph {
    /// The nodes `names` name, in the order given (each once), or the first
    /// name that is no resource here, with a suggestion.
    pub fn targets(&self, names: &[String]) -> Result<Vec<NodeIndex>, UnknownTarget> {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let Some(i) = self.find(name) else {
                let all = || self.graph.node_weights().map(|n| n.name.as_str());
                let help = did_you_mean(name, all()).unwrap_or_else(|| {
                    const SHOWN: usize = 10;
                    let some: Vec<&str> = all().take(SHOWN).collect();
                    let more = if self.len() > SHOWN { ", ..." } else { "" };
                    format!("the resources are: {}{more}", some.join(", "))
                });
                return Err(UnknownTarget { name: name.clone(), help });
            };
            if !out.contains(&i) {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// What `deploy --target` takes: every target, and every dependency of
    /// a node taken that is not `deployed`, transitively. A deployed
    /// dependency is left as it is (its stored outputs feed its
    /// dependents), and so is what it depends on. By index: declaration
    /// order.
    pub fn deploy_closure(&self, targets: &[NodeIndex], deployed: impl Fn(NodeIndex) -> bool) -> Vec<NodeIndex> {
        self.closure(targets, |i| self.dependencies(i).into_iter().filter(|&d| !deployed(d)).collect())
    }

    /// What `undeploy --target` takes: every target and everything that
    /// depends on it, transitively. By index: declaration order.
    pub fn undeploy_closure(&self, targets: &[NodeIndex]) -> Vec<NodeIndex> {
        self.closure(targets, |i| self.dependents(i))
    }

    /// `from`, and every node `next` leads to from a node taken, sorted.
    fn closure(&self, from: &[NodeIndex], next: impl Fn(NodeIndex) -> Vec<NodeIndex>) -> Vec<NodeIndex> {
        let mut taken = vec![false; self.len()];
        let mut stack: Vec<NodeIndex> = Vec::new();
        for &i in from {
            if !std::mem::replace(&mut taken[i.index()], true) {
                stack.push(i);
            }
        }
        while let Some(i) = stack.pop() {
            for n in next(i) {
                if !std::mem::replace(&mut taken[n.index()], true) {
                    stack.push(n);
                }
            }
        }
        taken.iter().enumerate().filter(|(_, t)| **t).map(|(i, _)| NodeIndex::new(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use petgraph::graph::NodeIndex;

    use crate::{load, CompileOptions, PipelineGraph};

    /// a -> b -> c, a -> e, d alone, f -> c (c needs b and f).
    fn graph() -> PipelineGraph {
        let src = "plugin t { kind = \"provisioner\" source = \"builtin:t\" }\n\
                   resource a \"t.x\" {}\n\
                   resource b \"t.x\" { i = a.id }\n\
                   resource c \"t.x\" { i = b.id  j = f.id }\n\
                   resource d \"t.x\" {}\n\
                   resource e \"t.x\" { depends_on = [a] }\n\
                   resource f \"t.x\" {}\n";
        load("f", src, &CompileOptions::default()).expect("compiles")
    }

    fn names(g: &PipelineGraph, nodes: &[NodeIndex]) -> Vec<String> {
        nodes.iter().map(|&i| g.node(i).name.clone()).collect()
    }

    fn nodes(g: &PipelineGraph, names: &[&str]) -> Vec<NodeIndex> {
        g.targets(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("known")
    }

    #[test]
    fn a_deploy_takes_the_targets_and_what_they_need_that_is_not_deployed() {
        let g = graph();
        // Nothing deployed: c needs b, which needs a; and f.
        assert_eq!(names(&g, &g.deploy_closure(&nodes(&g, &["c"]), |_| false)), ["a", "b", "c", "f"]);
        assert_eq!(names(&g, &g.deploy_closure(&nodes(&g, &["b"]), |_| false)), ["a", "b"]);
        // b deployed: neither b nor what it needs is taken, even a that is not.
        let b = g.find("b").unwrap();
        assert_eq!(names(&g, &g.deploy_closure(&nodes(&g, &["c"]), |i| i == b)), ["c", "f"]);
        // Everything deployed: the targets alone, deployed or not.
        assert_eq!(names(&g, &g.deploy_closure(&nodes(&g, &["c", "d"]), |_| true)), ["c", "d"]);
        // Never a dependent.
        assert_eq!(names(&g, &g.deploy_closure(&nodes(&g, &["a"]), |_| false)), ["a"]);
    }

    #[test]
    fn an_undeploy_takes_the_targets_and_everything_that_depends_on_them() {
        let g = graph();
        assert_eq!(names(&g, &g.undeploy_closure(&nodes(&g, &["b"]))), ["b", "c"]);
        assert_eq!(names(&g, &g.undeploy_closure(&nodes(&g, &["a"]))), ["a", "b", "c", "e"]);
        assert_eq!(names(&g, &g.undeploy_closure(&nodes(&g, &["f", "d"]))), ["c", "d", "f"]);
        assert_eq!(names(&g, &g.undeploy_closure(&[])), Vec::<String>::new());
    }

    #[test]
    fn targets_are_resources_or_an_error_with_a_suggestion() {
        let g = graph();
        let given = |n: &[&str]| g.targets(&n.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(names(&g, &given(&["c", "a", "c"]).unwrap()), ["c", "a"]);
        let e = given(&["a", "bb"]).unwrap_err();
        assert_eq!(e.name, "bb");
        assert_eq!(e.help, "did you mean `b`?");
        assert_eq!(e.to_string(), "--target bb: the pipeline has no resource `bb`");
        let e = given(&["zzzzzzzz"]).unwrap_err();
        assert_eq!(e.help, "the resources are: a, b, c, d, e, f");
    }
}
