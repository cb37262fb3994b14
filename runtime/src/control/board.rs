//! The live view of a run in progress, folded from its events: every
//! environment and every node with its operations, as they stand now.

use std::collections::HashMap;

use crate::run::stack_job::{DEPLOY_OPS, UNDEPLOY_OPS};
use crate::run::{NodeBrief, RunEvent};
use crate::state::{now_ms, EnvOutcome, JobRecord, OpRecord, RunStatus, Status};

#[derive(Default)]
pub struct RunBoard {
    run_id: String,
    ops: &'static [&'static str],
    status: Option<RunStatus>,
    envs: Vec<EnvOutcome>,
    /// Jobs in the order their environments announced them.
    jobs: Vec<JobRecord>,
    index: HashMap<(String, String), usize>,
}

impl RunBoard {
    pub fn apply(&mut self, e: &RunEvent) {
        let now = now_ms();
        match e {
            RunEvent::RunStarted { run, operation, environments, .. } => {
                self.run_id = run.clone();
                self.ops = if operation == "undeploy" { &UNDEPLOY_OPS } else { &DEPLOY_OPS };
                self.envs = environments
                    .iter()
                    .map(|name| EnvOutcome { name: name.clone(), status: Status::Queued, reason: None })
                    .collect();
            }
            RunEvent::EnvironmentStarted { environment, nodes, .. } => {
                self.set_env(environment, Status::Running, None);
                for n in nodes {
                    self.add_job(environment, n);
                }
            }
            RunEvent::OpStarted { environment, node, op } => {
                if let Some(job) = self.job(environment, node) {
                    job.status = Status::Running;
                    job.started_ms.get_or_insert(now);
                    if let Some(o) = job.ops.iter_mut().find(|o| o.name == *op) {
                        o.status = Status::Running;
                        o.started_ms = Some(now);
                    }
                }
            }
            RunEvent::OpFinished { environment, node, op, status, message, .. } => {
                if let Some(job) = self.job(environment, node) {
                    if let Some(o) = job.ops.iter_mut().find(|o| o.name == *op) {
                        if o.started_ms.is_none() && *status != Status::Skipped {
                            o.started_ms = Some(now);
                        }
                        o.status = *status;
                        o.finished_ms = Some(now);
                        o.message = message.clone();
                    }
                }
            }
            RunEvent::NodeFinished { environment, node, status, change, error, .. } => {
                if let Some(job) = self.job(environment, node) {
                    job.status = *status;
                    job.change = change.clone();
                    job.error = error.clone();
                    job.finished_ms = Some(now);
                    for o in job.ops.iter_mut().filter(|o| !o.status.is_final()) {
                        o.status = *status;
                    }
                }
            }
            RunEvent::EnvironmentFinished { environment, status, reason } => {
                self.set_env(environment, *status, reason.clone());
            }
            RunEvent::RunFinished { status, .. } => self.status = Some(*status),
            RunEvent::Log { .. } | RunEvent::Waiting { .. } | RunEvent::GateDecided { .. } => {}
        }
    }

    /// A node of an environment just announced, queued (once).
    fn add_job(&mut self, environment: &str, n: &NodeBrief) {
        let key = (environment.to_string(), n.name.clone());
        if self.index.contains_key(&key) {
            return;
        }
        self.index.insert(key, self.jobs.len());
        let ops = self
            .ops
            .iter()
            .map(|o| OpRecord { name: (*o).into(), status: Status::Queued, started_ms: None, finished_ms: None, message: None })
            .collect();
        self.jobs.push(JobRecord {
            run_id: self.run_id.clone(),
            environment: environment.to_string(),
            node: n.name.clone(),
            level: n.level,
            status: Status::Queued,
            started_ms: None,
            finished_ms: None,
            ops,
            input: None,
            change: None,
            error: None,
            diff: None,
        });
    }

    fn set_env(&mut self, name: &str, status: Status, reason: Option<String>) {
        match self.envs.iter_mut().find(|e| e.name == name) {
            Some(e) => {
                e.status = status;
                e.reason = reason;
            }
            None => self.envs.push(EnvOutcome { name: name.into(), status, reason }),
        }
    }

    fn job(&mut self, environment: &str, node: &str) -> Option<&mut JobRecord> {
        let i = *self.index.get(&(environment.to_string(), node.to_string()))?;
        self.jobs.get_mut(i)
    }

    pub fn status(&self) -> Option<RunStatus> {
        self.status
    }
    pub fn environments(&self) -> &[EnvOutcome] {
        &self.envs
    }
    pub fn jobs(&self) -> &[JobRecord] {
        &self.jobs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::NodeBrief;

    #[test]
    fn folds_a_run_into_environments_nodes_and_operations() {
        let mut b = RunBoard::default();
        let ev = |env: &str, node: &str| (env.to_string(), node.to_string());
        b.apply(&RunEvent::RunStarted {
            run: "r1".into(),
            pipeline: "p".into(),
            operation: "deploy".into(),
            environments: vec!["dev".into(), "prod".into()],
            nodes: 2,
            targets: Vec::new(),
            orphans: false,
        });
        b.apply(&RunEvent::EnvironmentStarted {
            run: "r1".into(),
            environment: "dev".into(),
            nodes: vec![NodeBrief { name: "a".into(), level: 0 }, NodeBrief { name: "b".into(), level: 1 }],
        });
        let (env, node) = ev("dev", "a");
        b.apply(&RunEvent::OpStarted { environment: env.clone(), node: node.clone(), op: "preflight".into() });
        b.apply(&RunEvent::OpFinished {
            environment: env.clone(),
            node: node.clone(),
            op: "preflight".into(),
            status: Status::Succeeded,
            ms: 1,
            message: None,
        });
        assert_eq!(b.jobs()[0].status, Status::Running);
        assert_eq!(b.jobs()[0].ops[0].status, Status::Succeeded);
        assert_eq!(b.jobs()[1].status, Status::Queued);
        b.apply(&RunEvent::NodeFinished { environment: env, node, status: Status::Failed, change: None, ms: 2, error: Some("x".into()) });
        b.apply(&RunEvent::NodeFinished {
            environment: "dev".into(),
            node: "b".into(),
            status: Status::Cancelled,
            change: None,
            ms: 0,
            error: None,
        });
        assert!(b.jobs()[1].ops.iter().all(|o| o.status == Status::Cancelled));
        b.apply(&RunEvent::EnvironmentFinished { environment: "dev".into(), status: Status::Failed, reason: Some("failed: a".into()) });
        assert_eq!(b.environments()[0].status, Status::Failed);
        assert_eq!(b.environments()[1].status, Status::Queued);
        b.apply(&RunEvent::RunFinished { run: "r1".into(), status: RunStatus::Failed, ms: 3 });
        assert_eq!(b.status(), Some(RunStatus::Failed));
    }
}
