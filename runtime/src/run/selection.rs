//! What a run takes of each environment: the whole pipeline, or what
//! `--target` and `--orphans` select. [`Selection`] is what was asked (kept
//! with the run, so `resume` and `rerun` ask the same); an
//! [`EnvironmentSelection`] is what that comes to in one environment, against
//! its state: the nodes its walk runs, and the order they keep. Nodes it does
//! not take are not run, get no job record and are in no event: the run
//! never claims to have touched them. A node it does not take that is
//! deployed feeds its stored outputs to the nodes it does take.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use petgraph::graph::NodeIndex;
use stackpipe_dsl::ast::{PluginKind, Span};
use stackpipe_dsl::{EnvironmentPlan, PipelineGraph, ResourceNode};

use super::env_run::Mode;
use super::events::NodeBrief;
use crate::state::{ResourceKey, ResourceRecord, StateError, StateStore};

/// What a run is asked to touch. Neither targets nor orphans: the whole pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `--target`: resources by name. A deploy takes them and what they need
    /// that is not deployed yet; an undeploy, them and what depends on them.
    pub targets: Vec<String>,
    /// `--orphans` (undeploy): the resources the state holds for the
    /// pipeline that it no longer declares.
    pub orphans: bool,
}

impl Selection {
    /// Whether the run takes the whole pipeline.
    pub fn is_whole(&self) -> bool {
        self.targets.is_empty() && !self.orphans
    }
}

/// A node of an environment's walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A resource of the pipeline.
    Resource(NodeIndex),
    /// An orphan, by its place in [`EnvironmentSelection::orphans`].
    Orphan(usize),
}

/// A resource the state holds that the pipeline no longer declares, as a
/// node to destroy: its name, provisioner and type are its record's.
#[derive(Debug, Clone)]
pub struct Orphan {
    /// No attributes: a destroy takes its record's.
    pub node: ResourceNode,
    /// The resources it depended on when it was last applied.
    pub depends_on: Vec<String>,
}

/// Why an aimed run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error(transparent)]
    UnknownTarget(#[from] stackpipe_dsl::UnknownTarget),
    /// An orphan's provisioner is no longer declared: nothing could destroy it.
    #[error(
        "{environment}/{resource} ({plugin}.{kind}) is to be destroyed, but the pipeline no longer declares its \
         provisioner `{plugin}`{why}: declare it again (as it was) to destroy it; nothing was destroyed"
    )]
    OrphanProvisioner { environment: String, resource: String, plugin: String, kind: String, why: String },
    /// `--orphans` asked of a run that does not destroy.
    #[error("--orphans destroys what the pipeline no longer declares: use it with `undeploy` (or `plan`, to see what it would destroy)")]
    OrphansNeedUndeploy,
    #[error(transparent)]
    State(#[from] StateError),
}

/// What a run takes of one environment: the nodes it walks, by position.
#[derive(Debug)]
pub struct EnvironmentSelection {
    /// The whole pipeline (nothing aimed): every node, at its own index.
    whole: bool,
    /// The walk's nodes: the pipeline's in declaration order (the walker
    /// breaks ties by position), then the orphans.
    subjects: Vec<Subject>,
    /// Per node index of the graph, its position in `subjects`, if taken.
    place: Vec<Option<usize>>,
    orphans: Vec<Orphan>,
    /// For a run that destroys: (a position, one it waits for) where an
    /// orphan is involved, from the records' `depends_on`.
    orphan_waits: Vec<(usize, usize)>,
}

impl EnvironmentSelection {
    /// Every resource of `graph`, and no orphan.
    pub fn whole(graph: &PipelineGraph) -> EnvironmentSelection {
        let n = graph.len();
        EnvironmentSelection {
            whole: true,
            subjects: (0..n).map(|i| Subject::Resource(NodeIndex::new(i))).collect(),
            place: (0..n).map(Some).collect(),
            orphans: Vec::new(),
            orphan_waits: Vec::new(),
        }
    }

    /// What `selection` (its `targets` resolved) takes of one environment
    /// for `mode`, given that environment's records by resource name.
    pub fn aimed(
        graph: &PipelineGraph,
        mode: Mode,
        selection: &Selection,
        targets: &[NodeIndex],
        records: &HashMap<String, ResourceRecord>,
    ) -> EnvironmentSelection {
        let nodes = if mode.destroys() {
            graph.undeploy_closure(targets)
        } else {
            graph.deploy_closure(targets, |i| records.contains_key(&graph.node(i).name))
        };
        let orphans = if selection.orphans && mode.destroys() { orphans_of(graph, records) } else { Vec::new() };
        let mut place = vec![None; graph.len()];
        let mut subjects: Vec<Subject> = Vec::with_capacity(nodes.len() + orphans.len());
        for i in nodes {
            place[i.index()] = Some(subjects.len());
            subjects.push(Subject::Resource(i));
        }
        subjects.extend((0..orphans.len()).map(Subject::Orphan));
        let mut out = EnvironmentSelection { whole: false, subjects, place, orphans, orphan_waits: Vec::new() };
        out.orphan_waits = out.orphan_waits(graph, records);
        out
    }

    /// Whether this is the whole pipeline.
    pub fn is_whole(&self) -> bool {
        self.whole
    }

    /// The walk's nodes, by position.
    pub fn subjects(&self) -> &[Subject] {
        &self.subjects
    }

    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    /// Whether the walk runs resource `i`.
    pub fn takes(&self, i: NodeIndex) -> bool {
        self.place.get(i.index()).is_some_and(Option::is_some)
    }

    /// The orphans to destroy.
    pub fn orphans(&self) -> &[Orphan] {
        &self.orphans
    }

    /// The resource a node of the walk stands for.
    pub fn resource<'a>(&'a self, graph: &'a PipelineGraph, s: Subject) -> &'a ResourceNode {
        match s {
            Subject::Resource(i) => graph.node(i),
            Subject::Orphan(k) => &self.orphans[k].node,
        }
    }

    /// The pipeline's resources taken, in deploy order (every one after
    /// what it depends on).
    pub fn in_deploy_order<'a>(&'a self, graph: &'a PipelineGraph) -> impl Iterator<Item = NodeIndex> + 'a {
        graph.deploy_order().iter().copied().filter(|&i| self.takes(i))
    }

    /// Every node of the walk as the environment announces it: the
    /// pipeline's in deploy order, then the orphans.
    pub fn briefs(&self, graph: &PipelineGraph) -> Vec<NodeBrief> {
        let resources = self.in_deploy_order(graph).map(|i| graph.node(i));
        resources
            .chain(self.orphans.iter().map(|o| &o.node))
            .map(|n| NodeBrief { name: n.name.clone(), level: n.level })
            .collect()
    }

    /// Per position, the positions that must end before it starts: for a
    /// deploy (or a plan of one) its dependencies, for a destroy its
    /// dependents; within what is taken.
    pub fn waits_for(&self, graph: &PipelineGraph, mode: Mode) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = self
            .subjects
            .iter()
            .map(|s| {
                let Subject::Resource(i) = *s else { return Vec::new() };
                let before = match mode {
                    // Preflight needs no outputs: every node is checked, independently.
                    Mode::Preflight | Mode::PreflightUndeploy => return Vec::new(),
                    _ if mode.destroys() => graph.dependents(i),
                    _ => graph.dependencies(i),
                };
                // The whole pipeline's positions are its indices.
                match self.whole {
                    true => before.into_iter().map(NodeIndex::index).collect(),
                    false => before.into_iter().filter_map(|d| self.place[d.index()]).collect(),
                }
            })
            .collect();
        for &(waiter, waited) in &self.orphan_waits {
            out[waiter].push(waited);
        }
        out
    }

    /// Where orphans meet in a destroy, from the records: a node is
    /// destroyed after whatever depended on it when last applied.
    fn orphan_waits(&self, graph: &PipelineGraph, records: &HashMap<String, ResourceRecord>) -> Vec<(usize, usize)> {
        if self.orphans.is_empty() {
            return Vec::new();
        }
        let position: HashMap<&str, usize> = self
            .subjects
            .iter()
            .enumerate()
            .map(|(p, &s)| (self.resource(graph, s).name.as_str(), p))
            .collect();
        let orphan_names: HashSet<&str> = self.orphans.iter().map(|o| o.node.name.as_str()).collect();
        let mut waits = Vec::new();
        for (p, &s) in self.subjects.iter().enumerate() {
            // What `s` depended on is destroyed after it, when it is destroyed
            // too. Edges between the pipeline's resources are the graph's.
            let depends_on: &[String] = match s {
                Subject::Orphan(k) => &self.orphans[k].depends_on,
                Subject::Resource(i) => records.get(&graph.node(i).name).map(|r| r.depends_on.as_slice()).unwrap_or(&[]),
            };
            for d in depends_on {
                let involves_orphan = matches!(s, Subject::Orphan(_)) || orphan_names.contains(d.as_str());
                match position.get(d.as_str()) {
                    Some(&q) if involves_orphan && q != p => waits.push((q, p)),
                    _ => {}
                }
            }
        }
        waits.sort_unstable();
        waits.dedup();
        waits
    }
}

/// The resources of `records` that `graph` no longer declares, by name, as
/// nodes to destroy; each one's level is its longest chain of stored
/// dependencies among them.
fn orphans_of(graph: &PipelineGraph, records: &HashMap<String, ResourceRecord>) -> Vec<Orphan> {
    let mut names: Vec<&String> = records.keys().filter(|n| graph.find(n).is_none()).collect();
    names.sort();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(k, n)| (n.as_str(), k)).collect();
    let deps: Vec<Vec<usize>> =
        names.iter().map(|n| records[*n].depends_on.iter().filter_map(|d| index.get(d.as_str()).copied()).collect()).collect();
    let levels = levels(&deps);
    names
        .iter()
        .zip(levels)
        .map(|(name, level)| {
            let r = &records[*name];
            Orphan {
                node: ResourceNode {
                    name: (*name).clone(),
                    plugin: r.plugin.clone(),
                    kind: r.kind.clone(),
                    attributes: Vec::new(),
                    gate_after: false,
                    sensitive_attributes: r.sensitive.clone(),
                    level,
                    span: Span::default(),
                    type_span: Span::default(),
                },
                depends_on: r.depends_on.clone(),
            }
        })
        .collect()
}

/// Each node's longest distance from a node without dependencies, over
/// `deps`. The state is not trusted to hold no cycle: a node met again on
/// its own path counts as a root there.
fn levels(deps: &[Vec<usize>]) -> Vec<usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done(usize),
    }
    let mut marks = vec![Mark::New; deps.len()];
    for start in 0..deps.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Depth first, without recursion: (node, next dependency to look at).
        let mut stack = vec![(start, 0usize)];
        while let Some(&mut (n, ref mut next)) = stack.last_mut() {
            if marks[n] == Mark::New {
                marks[n] = Mark::OnPath;
            }
            if let Some(&d) = deps[n].get(*next) {
                *next += 1;
                if marks[d] == Mark::New {
                    stack.push((d, 0));
                }
                continue;
            }
            let level = deps[n].iter().filter_map(|&d| if let Mark::Done(l) = marks[d] { Some(l + 1) } else { None }).max();
            marks[n] = Mark::Done(level.unwrap_or(0));
            stack.pop();
        }
    }
    marks.into_iter().map(|m| if let Mark::Done(l) = m { l } else { 0 }).collect()
}

/// What a run takes of each of its environments.
#[derive(Debug, Default)]
pub struct RunSelection {
    asked: Selection,
    /// Per environment, for an aimed run; a run of the whole pipeline
    /// makes each environment's when it gets there.
    aimed: HashMap<String, Arc<EnvironmentSelection>>,
}

impl RunSelection {
    /// What `asked` takes of each of `environments` of `graph` for `mode`,
    /// read from `store` (the records say what is deployed and what is
    /// orphaned). An unknown target, `--orphans` for a run that does not
    /// destroy, or an orphan whose provisioner is no longer declared stops
    /// the run here, before anything runs.
    pub fn new(
        store: &StateStore,
        graph: &PipelineGraph,
        mode: Mode,
        asked: &Selection,
        environments: &[EnvironmentPlan],
    ) -> Result<RunSelection, SelectionError> {
        let targets = graph.targets(&asked.targets)?;
        let mut aimed = HashMap::new();
        if asked.is_whole() {
            return Ok(RunSelection { asked: asked.clone(), aimed });
        }
        if asked.orphans && !mode.destroys() {
            return Err(SelectionError::OrphansNeedUndeploy);
        }
        for env in environments {
            let records: HashMap<String, ResourceRecord> =
                store.resources(&graph.name, Some(&env.name))?.into_iter().map(|(k, r)| (k.resource, r)).collect();
            let selection = EnvironmentSelection::aimed(graph, mode, asked, &targets, &records);
            check_provisioners(env, &selection)?;
            aimed.insert(env.name.clone(), Arc::new(selection));
        }
        Ok(RunSelection { asked: asked.clone(), aimed })
    }

    /// What the run takes of environment `env`.
    pub fn environment(&self, graph: &PipelineGraph, env: &str) -> Arc<EnvironmentSelection> {
        match self.aimed.get(env) {
            Some(s) => s.clone(),
            None => Arc::new(EnvironmentSelection::whole(graph)),
        }
    }

    /// The most nodes the run walks in one environment.
    pub fn most_nodes(&self, graph: &PipelineGraph) -> usize {
        match self.asked.is_whole() {
            true => graph.len(),
            false => self.aimed.values().map(|s| s.len()).max().unwrap_or(0),
        }
    }

    /// Every resource the run may touch, in each of `environments`: what it locks.
    pub fn keys(&self, graph: &PipelineGraph, environments: &[EnvironmentPlan]) -> Vec<ResourceKey> {
        let mut keys = Vec::new();
        for e in environments {
            let key = |name: &str| ResourceKey::new(&graph.name, &e.name, name);
            match self.aimed.get(&e.name) {
                None => keys.extend(graph.deploy_order().iter().map(|&i| key(&graph.node(i).name))),
                Some(s) => keys.extend(s.subjects.iter().map(|&x| key(&s.resource(graph, x).name))),
            }
        }
        keys
    }
}

/// Every orphan of `selection` has its provisioner declared in `env`.
fn check_provisioners(env: &EnvironmentPlan, selection: &EnvironmentSelection) -> Result<(), SelectionError> {
    for o in &selection.orphans {
        let why = match env.plugins.get(&o.node.plugin) {
            Some(spec) if spec.kind == PluginKind::Provisioner => continue,
            Some(spec) => format!(" (`{}` is now a {} plugin)", o.node.plugin, spec.kind.name()),
            None => String::new(),
        };
        return Err(SelectionError::OrphanProvisioner {
            environment: env.name.clone(),
            resource: o.node.name.clone(),
            plugin: o.node.plugin.clone(),
            kind: o.node.kind.clone(),
            why,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stackpipe_dsl::{load, CompileOptions};

    /// a -> b -> c, d alone.
    fn graph() -> PipelineGraph {
        let src = "plugin t { kind = \"provisioner\" source = \"builtin:t\" }\n\
                   resource a \"t.x\" {}\nresource b \"t.x\" { i = a.id }\nresource c \"t.x\" { i = b.id }\nresource d \"t.x\" {}\n";
        load("f", src, &CompileOptions::default()).expect("compiles")
    }

    fn record(depends_on: &[&str]) -> ResourceRecord {
        ResourceRecord {
            plugin: "t".into(),
            kind: "x".into(),
            state: json!({}),
            outputs: json!({}),
            attributes: json!({}),
            depends_on: depends_on.iter().map(|s| s.to_string()).collect(),
            sensitive: Vec::new(),
            sensitive_outputs: Vec::new(),
            serial: 1,
            run_id: "r1".into(),
            updated_ms: 1,
        }
    }

    fn records(of: &[(&str, &[&str])]) -> HashMap<String, ResourceRecord> {
        of.iter().map(|(n, d)| (n.to_string(), record(d))).collect()
    }

    fn names(g: &PipelineGraph, s: &EnvironmentSelection) -> Vec<String> {
        s.subjects().iter().map(|&x| s.resource(g, x).name.clone()).collect()
    }

    /// The walk's waits, by name: (node, what it waits for), sorted.
    fn waits(g: &PipelineGraph, s: &EnvironmentSelection, mode: Mode) -> Vec<(String, String)> {
        let all = names(g, s);
        let mut out: Vec<(String, String)> = s
            .waits_for(g, mode)
            .iter()
            .enumerate()
            .flat_map(|(p, ws)| ws.iter().map(|&w| (all[p].clone(), all[w].clone())).collect::<Vec<_>>())
            .collect();
        out.sort();
        out
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn aimed(g: &PipelineGraph, mode: Mode, targets: &[&str], orphans: bool, r: &HashMap<String, ResourceRecord>) -> EnvironmentSelection {
        let asked = Selection { targets: targets.iter().map(|s| s.to_string()).collect(), orphans };
        let t = g.targets(&asked.targets).expect("known");
        EnvironmentSelection::aimed(g, mode, &asked, &t, r)
    }

    #[test]
    fn a_targeted_deploy_walks_the_target_after_what_it_needs_and_nothing_else() {
        let g = graph();
        let s = aimed(&g, Mode::Deploy, &["b"], false, &records(&[]));
        assert_eq!(names(&g, &s), ["a", "b"]);
        assert_eq!(waits(&g, &s, Mode::Deploy), pairs(&[("b", "a")]));
        assert!(!s.takes(g.find("c").unwrap()) && !s.takes(g.find("d").unwrap()));
        // a deployed: b alone, waiting for nothing (a's stored outputs feed it).
        let s = aimed(&g, Mode::Deploy, &["b"], false, &records(&[("a", &[])]));
        assert_eq!(names(&g, &s), ["b"]);
        assert_eq!(waits(&g, &s, Mode::Deploy), pairs(&[]));
        // --orphans means nothing to a deploy.
        let s = aimed(&g, Mode::Deploy, &["d"], true, &records(&[("gone", &[])]));
        assert_eq!(names(&g, &s), ["d"]);
    }

    #[test]
    fn a_targeted_undeploy_walks_dependents_first() {
        let g = graph();
        let all = records(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]);
        let s = aimed(&g, Mode::Undeploy, &["b"], false, &all);
        assert_eq!(names(&g, &s), ["b", "c"]);
        assert_eq!(waits(&g, &s, Mode::Undeploy), pairs(&[("b", "c")]));
        assert_eq!(s.briefs(&g).iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn orphans_are_destroyed_in_reverse_order_of_their_stored_dependencies() {
        let g = graph();
        // x <- y <- z were removed from the file; z also used c, which stays.
        let r = records(&[("a", &[]), ("c", &["b"]), ("x", &[]), ("y", &["x"]), ("z", &["y", "c"])]);
        let s = aimed(&g, Mode::Undeploy, &[], true, &r);
        assert_eq!(names(&g, &s), ["x", "y", "z"]);
        assert_eq!(waits(&g, &s, Mode::Undeploy), pairs(&[("x", "y"), ("y", "z")]));
        let levels: Vec<usize> = s.orphans().iter().map(|o| o.node.level).collect();
        assert_eq!(levels, [0, 1, 2]);
        // With --target b: b and c; c waits for z, which used it.
        let s = aimed(&g, Mode::Undeploy, &["b"], true, &r);
        assert_eq!(names(&g, &s), ["b", "c", "x", "y", "z"]);
        assert_eq!(waits(&g, &s, Mode::Undeploy), pairs(&[("b", "c"), ("c", "z"), ("x", "y"), ("y", "z")]));
        // A plan of the undeploy takes the same.
        assert_eq!(names(&g, &aimed(&g, Mode::PlanUndeploy, &[], true, &r)), ["x", "y", "z"]);
    }

    #[test]
    fn the_whole_pipeline_is_every_node_at_its_own_index() {
        let g = graph();
        let s = EnvironmentSelection::whole(&g);
        assert!(s.is_whole());
        assert_eq!(names(&g, &s), ["a", "b", "c", "d"]);
        assert_eq!(waits(&g, &s, Mode::Undeploy), pairs(&[("a", "b"), ("b", "c")]));
        assert_eq!(waits(&g, &s, Mode::Preflight), pairs(&[]));
    }

    #[test]
    fn levels_survive_a_cycle_in_untrusted_records() {
        assert_eq!(levels(&[vec![], vec![0], vec![1, 0]]), [0, 1, 2]);
        let cyclic = levels(&[vec![1], vec![0], vec![]]);
        assert_eq!(cyclic.len(), 3);
        assert_eq!(levels(&[vec![0]]), [0]);
    }
}
