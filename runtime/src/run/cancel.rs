//! Cancelling part of a run from outside (`stackpipe cancel --node N`,
//! `--env E`): one job, and so its dependents, or one environment. As with
//! a whole run's cancel, the operation in flight completes and the rest of
//! the job is skipped; a gate of what is cancelled stops waiting.

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// What is cancelled: an environment, or one node of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelTarget {
    pub environment: String,
    /// None: the whole environment.
    pub node: Option<String>,
}

impl CancelTarget {
    /// Whether this covers `node` of `environment` (None: the environment
    /// itself, as its gate asks).
    fn covers(&self, environment: &str, node: Option<&str>) -> bool {
        self.environment == environment && (self.node.is_none() || self.node.as_deref() == node)
    }
}

impl std::fmt::Display for CancelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node {
            Some(n) => write!(f, "{}/{n}", self.environment),
            None => write!(f, "environment {}", self.environment),
        }
    }
}

/// The parts of one run cancelled so far.
pub struct Cancels(watch::Sender<Vec<CancelTarget>>);

impl Default for Cancels {
    fn default() -> Self {
        Cancels(watch::channel(Vec::new()).0)
    }
}

impl Cancels {
    pub fn new() -> Cancels {
        Cancels::default()
    }

    /// Cancels `target`; whether it was cancelled before.
    pub fn cancel(&self, target: CancelTarget) -> bool {
        let mut before = false;
        self.0.send_modify(|all| {
            before = all.contains(&target);
            if !before {
                all.push(target);
            }
        });
        before
    }

    /// Whether `node` of `environment` (None: the environment) is cancelled.
    pub fn covers(&self, environment: &str, node: Option<&str>) -> bool {
        self.0.borrow().iter().any(|t| t.covers(environment, node))
    }

    /// Resolves once `node` of `environment` is cancelled.
    pub async fn until_covers(&self, environment: &str, node: Option<&str>) {
        let mut rx = self.0.subscribe();
        if rx.wait_for(|all| all.iter().any(|t| t.covers(environment, node))).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_covers_only_itself() {
        let c = Cancels::new();
        assert!(!c.covers("dev", Some("a")));
        assert!(!c.cancel(CancelTarget { environment: "dev".into(), node: Some("a".into()) }));
        assert!(c.covers("dev", Some("a")) && !c.covers("dev", Some("b")) && !c.covers("dev", None));
        assert!(!c.covers("prod", Some("a")));
    }

    #[tokio::test]
    async fn an_environment_covers_its_nodes_and_its_gate() {
        let c = std::sync::Arc::new(Cancels::new());
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.until_covers("prod", Some("b")).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert!(!c.cancel(CancelTarget { environment: "prod".into(), node: None }));
        assert!(c.cancel(CancelTarget { environment: "prod".into(), node: None }), "cancelled before");
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.expect("woken").expect("ends");
        assert!(c.covers("prod", Some("b")) && c.covers("prod", None) && !c.covers("dev", None));
    }
}
