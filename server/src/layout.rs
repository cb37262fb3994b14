//! Where the console draws a pipeline's nodes: the graph's layers are its
//! levels (a node's column), and within a column the nodes are placed near
//! the nodes they depend on (each at the mean place of its dependencies,
//! then spread one apart), so that most edges run straight and few cross.
//! Made once per run snapshot on the server, where the levels already are;
//! the browser only maps columns and places to pixels.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use petgraph::visit::EdgeRef;
use serde::Serialize;
use stackpipe_dsl::{ApprovalRule, PipelineGraph};

/// The layout of one pipeline graph, column by column (arrays indexed by
/// node, in the graph's order: 10,000 nodes stay a small document).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DagLayout {
    /// Every node's resource name.
    pub names: Vec<String>,
    /// Each node's resource type, as an index into `types`.
    pub type_of: Vec<u32>,
    pub types: Vec<String>,
    /// Each node's level: its column.
    pub levels: Vec<u32>,
    /// Each node's place in its column (in node heights, from the top; at
    /// least one apart within a column).
    pub places: Vec<f32>,
    /// Dependencies as pairs of node indexes, flat: `[from, to, from, to, ...]`,
    /// each edge from the node depended on to the one that depends on it.
    pub edges: Vec<u32>,
    pub level_count: u32,
}

impl DagLayout {
    pub fn of(g: &PipelineGraph) -> DagLayout {
        let n = g.graph.node_count();
        let mut types: Vec<String> = Vec::new();
        let mut type_index: HashMap<String, u32> = HashMap::new();
        let mut type_of = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        let mut levels = Vec::with_capacity(n);
        for i in g.graph.node_indices() {
            let node = g.node(i);
            let t = node.type_name();
            let k = *type_index.entry(t.to_string()).or_insert_with(|| {
                types.push(t.to_string());
                (types.len() - 1) as u32
            });
            type_of.push(k);
            names.push(node.name.to_string());
            levels.push(node.level as u32);
        }
        let mut edges: Vec<(u32, u32)> =
            g.graph.edge_references().map(|e| (e.source().index() as u32, e.target().index() as u32)).collect();
        // Two references between the same resources are one line.
        edges.sort_unstable();
        edges.dedup();
        let mut needs: Vec<Vec<u32>> = vec![Vec::new(); n];
        for &(from, to) in &edges {
            needs[to as usize].push(from);
        }
        let mut places = vec![0f32; n];
        for column in g.levels() {
            // Where each node would like to be: beside what it depends on
            // (a first column keeps the order the file declares).
            let mut wanted: Vec<(f32, usize)> = column
                .iter()
                .enumerate()
                .map(|(k, i)| {
                    let deps = &needs[i.index()];
                    let at = if deps.is_empty() {
                        k as f32
                    } else {
                        deps.iter().map(|&d| places[d as usize]).sum::<f32>() / deps.len() as f32
                    };
                    (at, i.index())
                })
                .collect();
            wanted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            // One apart at least, then the column moved back by how far it
            // was pushed on average: it does not drift down level by level.
            let mut last = f32::NEG_INFINITY;
            let mut pushed = 0f32;
            let placed: Vec<(usize, f32)> = wanted
                .iter()
                .map(|&(at, i)| {
                    let y = at.max(last + 1.0);
                    pushed += y - at;
                    last = y;
                    (i, y)
                })
                .collect();
            let shift = if placed.is_empty() { 0.0 } else { pushed / placed.len() as f32 };
            for (i, y) in placed {
                places[i] = ((y - shift) * 10.0).round() / 10.0;
            }
        }
        // The top is 0.
        let top = places.iter().copied().fold(f32::INFINITY, f32::min);
        if top.is_finite() {
            for p in &mut places {
                *p -= top;
            }
        }
        DagLayout {
            names,
            type_of,
            types,
            levels,
            places,
            edges: edges.into_iter().flat_map(|(a, b)| [a, b]).collect(),
            level_count: g.level_count() as u32,
        }
    }
}

/// What the console draws of a run's pipeline: its layout (as JSON, made
/// once) and its environments' gates with who may decide them.
pub struct Drawing {
    pub layout_json: String,
    pub environments: Vec<EnvironmentGates>,
}

pub struct EnvironmentGates {
    pub name: String,
    pub after: Vec<String>,
    pub approval: bool,
    pub rule: ApprovalRule,
}

impl Drawing {
    pub fn of(g: &PipelineGraph) -> Drawing {
        let layout = DagLayout::of(g);
        Drawing {
            layout_json: serde_json::to_string(&layout).unwrap_or_else(|_| "null".into()),
            environments: g
                .environments
                .iter()
                .map(|e| EnvironmentGates {
                    name: e.name.clone(),
                    after: e.after.clone(),
                    approval: e.approval,
                    rule: e.approval_rule.clone(),
                })
                .collect(),
        }
    }
}

/// Drawings by the run snapshot they were made from (a snapshot's graph
/// never changes), the most recently used kept.
#[derive(Default)]
pub struct LayoutCache {
    by_snapshot: Mutex<Vec<(String, Arc<Drawing>)>>,
}

/// How many drawings are kept (a 10,000-node layout is about 400 KB).
const KEPT: usize = 16;

impl LayoutCache {
    /// The drawing of snapshot `digest`, made by `make` if it is not kept.
    pub fn get_or_make<E>(&self, digest: &str, make: impl FnOnce() -> Result<Drawing, E>) -> Result<Arc<Drawing>, E> {
        {
            let mut kept = self.lock();
            if let Some(hit) = kept.iter().position(|(d, _)| d == digest) {
                let entry = kept.remove(hit);
                let json = entry.1.clone();
                kept.push(entry);
                return Ok(json);
            }
        }
        // Made unlocked: other layouts are served meanwhile.
        let json = Arc::new(make()?);
        let mut kept = self.lock();
        kept.retain(|(d, _)| d != digest);
        if kept.len() >= KEPT {
            kept.remove(0);
        }
        kept.push((digest.to_string(), json.clone()));
        Ok(json)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Arc<Drawing>)>> {
        self.by_snapshot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(text: &str) -> std::sync::Arc<PipelineGraph> {
        let file = std::path::Path::new("layout.pipeline");
        let opts = stackpipe_dsl::CompileOptions::default();
        stackpipe_runtime::pipeline::compile(file, text.to_string(), opts).map(|p| p.graph).unwrap_or_else(|e| panic!("{e}"))
    }

    const PLUGIN: &str = "plugin t {\n  kind = \"provisioner\"\n  source = \"builtin:test\"\n}\nenvironment dev {}\n";

    #[test]
    fn columns_are_levels_and_a_node_sits_beside_what_it_needs() {
        let text = format!(
            "{PLUGIN}resource a \"t.step\" {{}}\nresource b \"t.step\" {{}}\nresource c \"t.step\" {{}}\n\
             resource x \"t.step\" {{ v = c.id }}\nresource y \"t.step\" {{ v = a.id\n w = a.name }}\nresource z \"t.step\" {{ v = x.id }}\n"
        );
        let l = DagLayout::of(&graph(&text));
        let at = |name: &str| l.names.iter().position(|n| n == name).unwrap();
        assert_eq!([l.levels[at("a")], l.levels[at("x")], l.levels[at("z")]], [0, 1, 2]);
        assert_eq!(l.level_count, 3);
        // x (needs c, at the bottom) is placed below y (needs a, at the top).
        assert!(l.places[at("x")] > l.places[at("y")], "{l:?}");
        // z follows x.
        assert_eq!(l.places[at("z")], l.places[at("x")]);
        // y's two references to a are one edge.
        let pairs: Vec<(u32, u32)> = l.edges.chunks(2).map(|p| (p[0], p[1])).collect();
        assert_eq!(pairs.len(), 3, "{pairs:?}");
        assert!(pairs.contains(&(at("a") as u32, at("y") as u32)));
        assert_eq!(l.types, ["t.step"]);
    }

    #[test]
    fn nodes_of_a_column_are_at_least_one_apart() {
        let mut text = PLUGIN.to_string();
        text.push_str("resource root \"t.step\" {}\n");
        for i in 0..20 {
            text.push_str(&format!("resource n{i} \"t.step\" {{ v = root.id }}\n"));
        }
        let l = DagLayout::of(&graph(&text));
        let mut col: Vec<f32> = (0..l.names.len()).filter(|&i| l.levels[i] == 1).map(|i| l.places[i]).collect();
        col.sort_by(f32::total_cmp);
        assert_eq!(col.len(), 20);
        assert!(col.windows(2).all(|w| w[1] - w[0] >= 0.99), "{col:?}");
        // Centred on the node they all need, not pushed below it.
        let mean = col.iter().sum::<f32>() / 20.0;
        let root = l.places[l.names.iter().position(|n| n == "root").unwrap()];
        assert!((mean - root).abs() < 0.6, "{mean} vs {root}");
    }
}
