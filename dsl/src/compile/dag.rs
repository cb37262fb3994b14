//! The graph algorithms both graphs of a pipeline use, resources and the
//! environment chain: a stable topological order, and the cycles that stop
//! one, with how a cycle is written in a message.

use std::collections::{HashMap, HashSet};

use petgraph::graph::{DiGraph, NodeIndex};

/// One cycle (as a node path, without repeating the first node) per strongly
/// connected component that has one, starting from its earliest node.
pub(super) fn cycles<N, E>(g: &DiGraph<N, E>) -> Vec<Vec<NodeIndex>> {
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
pub(super) fn topological<N, E>(g: &DiGraph<N, E>, key: impl Fn(NodeIndex) -> usize) -> Vec<NodeIndex> {
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

/// A cycle as a message writes it, back to where it starts: `a -> b -> c -> a`.
pub(super) fn cycle_path(cycle: &[NodeIndex], name: impl Fn(NodeIndex) -> String) -> String {
    cycle.iter().chain(cycle.first()).map(|n| name(*n)).collect::<Vec<_>>().join(" -> ")
}

/// Each step `(from, to)` along a cycle, the last one back to the start.
pub(super) fn cycle_steps(cycle: &[NodeIndex]) -> impl Iterator<Item = (NodeIndex, NodeIndex)> + '_ {
    (0..cycle.len()).map(|i| (cycle[i], cycle[(i + 1) % cycle.len()]))
}
