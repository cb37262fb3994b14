//! The preflight of a whole run, before any of it starts (seeds 002, 003:
//! "if preflight fails, the job is never created"): every node of every
//! environment the run takes is checked (its provisioner loads and knows
//! its type, the attributes pass `validate`, its credentials resolve and
//! have not expired, every policy loads) and nothing it touches may be
//! locked by another run. [`preflight`] finds every problem, not the
//! first; `deploy` and `undeploy` start only when there is none. Each node
//! is preflighted again by its own stack job as the run reaches it: a
//! credential can expire in between.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::env_run::Mode;
use super::events::{Events, RunEvent};
use super::execution::{Run, Steering};
use super::selection::RunSelection;
use super::{RunError, RunOptions, StopSignal};
use crate::pipeline::LoadedPipeline;
use crate::plugin::PluginHost;
use crate::state::{pid_alive, StateStore, Status};

/// One problem a preflight found, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PreflightProblem {
    pub environment: String,
    /// The nodes it stops, in graph order (empty: the environment as a whole).
    pub nodes: Vec<String>,
    pub message: String,
}

/// What a preflight of a run found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PreflightReport {
    /// `deploy` or `undeploy`: what was preflighted.
    pub operation: &'static str,
    /// The environments checked, in the order the run takes them.
    pub environments: Vec<String>,
    /// Resources per environment.
    pub nodes: usize,
    pub problems: Vec<PreflightProblem>,
    /// Every node that passed, as its preflight found it (provisioner and
    /// digest, credentials, flow policy), in run order.
    pub passed: Vec<NodeCheck>,
    /// Every resource the run would lock: what a run queued on a server
    /// must not share with the runs ahead of it.
    #[serde(skip)]
    pub keys: Vec<crate::state::ResourceKey>,
}

/// A node that passed preflight, and what it found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeCheck {
    pub environment: String,
    pub node: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub found: String,
}

impl PreflightReport {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// Per environment, each node that passed and what its preflight found.
    pub fn render_nodes(&self) -> String {
        let mut out = String::new();
        let width = self.passed.iter().map(|c| c.node.len()).max().unwrap_or(0);
        let type_width = self.passed.iter().map(|c| c.type_name.len()).max().unwrap_or(0);
        for env in &self.environments {
            let mut of_env = self.passed.iter().filter(|c| &c.environment == env).peekable();
            if of_env.peek().is_none() {
                continue;
            }
            out.push_str(&format!("{env}:\n"));
            for c in of_env {
                out.push_str(&format!("  {:width$}  {:type_width$}  {}\n", c.node, c.type_name, c.found));
            }
        }
        out
    }
}

/// How many nodes a problem names before it says "and N more".
const NAMED: usize = 8;

impl std::fmt::Display for PreflightReport {
    /// The problems, per environment in the run's order; or one line that
    /// all is well.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let envs = self.environments.len();
        if self.passed() {
            return writeln!(
                f,
                "ok: {} resource{} passed preflight in {envs} environment{}",
                self.nodes,
                plural(self.nodes),
                plural(envs)
            );
        }
        let n = self.problems.len();
        writeln!(f, "preflight of the {} found {n} problem{}; nothing was started:", self.operation, plural(n))?;
        for env in &self.environments {
            let mut of_env = self.problems.iter().filter(|p| &p.environment == env).peekable();
            if of_env.peek().is_none() {
                continue;
            }
            writeln!(f, "  {env}:")?;
            for p in of_env {
                let place = match p.nodes.len() {
                    0 => "the environment".to_string(),
                    n if n == self.nodes && n > 1 => "every resource".to_string(),
                    n if n > NAMED => format!("{} and {} more", p.nodes[..NAMED].join(", "), n - NAMED),
                    _ => p.nodes.join(", "),
                };
                writeln!(f, "    {place}: {}", p.message)?;
            }
        }
        Ok(())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Preflights `operation` (a deploy or an undeploy) of `pipeline` as
/// `opts` would run it: nothing is read from the cloud, applied or
/// written. A resume (`opts.resume`) may hold its own locks.
pub async fn preflight(
    pipeline: &LoadedPipeline,
    operation: Mode,
    host: Arc<PluginHost>,
    store: Arc<StateStore>,
    opts: &RunOptions,
) -> Result<PreflightReport, RunError> {
    let mode = if operation.destroys() { Mode::PreflightUndeploy } else { Mode::Preflight };
    let graph = pipeline.graph.clone();
    let mut environments = graph.environments.clone();
    if mode.destroys() {
        environments.reverse();
    }
    // (environment, message) -> nodes, in the order found.
    let mut found: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    // Of an aimed run (`--target`, `--orphans`), only what it takes.
    let selection = RunSelection::new(&store, &graph, mode, &opts.selection, &environments)?;
    let keys = selection.keys(&graph, &environments);
    let wanted: std::collections::HashSet<_> = keys.iter().collect();
    for (key, holder) in store.locks()? {
        let ours = opts.resume.as_deref() == Some(holder.run_id.as_str()) || opts.queued_behind.contains(&holder.run_id);
        if !wanted.contains(&key) || ours {
            continue;
        }
        let how = if pid_alive(holder.pid) {
            format!("pid {}, still running", holder.pid)
        } else {
            format!("its process {} is gone: `stackpipe state unlock` releases it", holder.pid)
        };
        let message = format!("locked by run {} ({how})", holder.run_id);
        found.entry((key.environment, message)).or_default().push(key.resource);
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let steering = Steering { events: Events::new(tx), stop: StopSignal::new() };
    let summary = Run::start(pipeline, mode, host, store, opts, steering, None).await?.run_to_end().await;
    let mut environments_failed = Vec::new();
    let mut found_by_node: std::collections::HashMap<(String, String), String> = Default::default();
    let mut succeeded = Vec::new();
    while let Ok(event) = rx.try_recv() {
        match event {
            // stackpipe's own line about the node, not a plugin's.
            RunEvent::Log { environment, node, op, text, plugin: None, .. } if op == "preflight" => {
                found_by_node.insert((environment, node), text);
            }
            RunEvent::NodeFinished { environment, node, status: Status::Succeeded, .. } => succeeded.push((environment, node)),
            RunEvent::NodeFinished { environment, node, status: Status::Failed, error, .. } => {
                found.entry((environment, error.unwrap_or_default())).or_default().push(node);
            }
            RunEvent::EnvironmentFinished { environment, status: Status::Failed, reason, .. } => {
                environments_failed.push((environment, reason.unwrap_or_default()));
            }
            _ => {}
        }
    }
    summary?;
    // An environment that failed with no node of it failing could not
    // start (its state could not be read): a problem of its own.
    for (environment, reason) in environments_failed {
        if !found.keys().any(|(e, _)| *e == environment) {
            found.entry((environment, reason)).or_default();
        }
    }
    let order = |name: &str| graph.find(name).map(|i| i.index()).unwrap_or(usize::MAX);
    let mut problems: Vec<PreflightProblem> = found
        .into_iter()
        .map(|((environment, message), mut nodes)| {
            nodes.sort_by_key(|n| order(n));
            nodes.dedup();
            PreflightProblem { environment, nodes, message }
        })
        .collect();
    // Environments in the run's order; in each, by the first node each
    // problem names, in graph order (the environment's own problems first).
    let env_order = |name: &str| environments.iter().position(|e| e.name == name).unwrap_or(usize::MAX);
    problems.sort_by_key(|p| (env_order(&p.environment), p.nodes.first().map(|n| order(n).saturating_add(1)).unwrap_or(0)));
    let passed = succeeded
        .into_iter()
        .map(|(environment, node)| {
            let found = found_by_node.remove(&(environment.clone(), node.clone())).unwrap_or_else(|| "not deployed".into());
            let type_name = graph.find(&node).map(|i| graph.node(i).type_name()).unwrap_or_else(|| "(orphan)".into());
            NodeCheck { environment, node, type_name, found }
        })
        .collect::<Vec<_>>();
    let mut passed = passed;
    passed.sort_by_key(|c| (env_order(&c.environment), order(&c.node)));
    Ok(PreflightReport {
        operation: if mode == Mode::PreflightUndeploy { "undeploy" } else { "deploy" },
        environments: environments.iter().map(|e| e.name.clone()).collect(),
        nodes: selection.most_nodes(&graph),
        problems,
        passed,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_groups_problems_by_environment_in_run_order() {
        let problem = |e: &str, nodes: &[&str], m: &str| PreflightProblem {
            environment: e.into(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            message: m.into(),
        };
        let mut report = PreflightReport {
            operation: "deploy",
            environments: vec!["dev".into(), "prod".into()],
            nodes: 3,
            passed: vec![],
            problems: vec![
                problem("prod", &["a", "b", "c"], "credentials for `t`: expired"),
                problem("dev", &["b"], "provisioner `t` has no resource type `y` (it has: x)"),
                problem("dev", &[], "cannot read the state"),
            ],
            keys: Vec::new(),
        };
        assert_eq!(
            report.to_string(),
            "preflight of the deploy found 3 problems; nothing was started:\n  dev:\n    b: provisioner `t` has no resource \
             type `y` (it has: x)\n    the environment: cannot read the state\n  prod:\n    every resource: credentials for \
             `t`: expired\n"
        );
        report.problems.clear();
        assert_eq!(report.to_string(), "ok: 3 resources passed preflight in 2 environments\n");
    }
}
