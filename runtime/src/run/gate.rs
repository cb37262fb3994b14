//! Gates: the places a run waits for a person. A waiting gate holds back
//! only what it guards (a node's apply, a node's dependents, or an
//! environment); everything else runs on. Decisions come from the running
//! terminal or from another one through the control socket, and each is
//! journaled durably (who, when, which gate, the comment) before the run
//! acts on it.

use std::sync::Mutex;

use tokio::sync::{oneshot, watch};

use super::events::{Events, RunEvent};
use super::journal::{JournalError, RunJournal};
use crate::state::{now_ms, Decision, GateDecision, GateInfo, GateKind, Write};

/// Which gates open by themselves: `--yes` (pauses and node gates) and
/// `--approve-env E` (environment E's `approval = true`). An approval a
/// policy requires never opens by itself: it is a person's decision, taken
/// with `approve` (or at the running terminal).
#[derive(Debug, Clone, Default)]
pub struct AutoApprove {
    pub yes: bool,
    pub environments: Vec<String>,
}

/// How a wait at a gate ended.
#[derive(Debug, Clone, PartialEq)]
pub enum GateOutcome {
    Approved,
    Rejected(GateDecision),
    /// The run was stopped while waiting.
    Cancelled,
}

/// Which waiting gates a decision is for. With neither field set: the only
/// gate waiting.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct GateSelector {
    pub environment: Option<String>,
    pub node: Option<String>,
    /// Decide every gate that matches, not just one.
    #[serde(default)]
    pub all: bool,
}

impl GateSelector {
    fn matches(&self, g: &GateInfo) -> bool {
        self.environment.as_ref().is_none_or(|e| *e == g.environment)
            && self.node.as_ref().is_none_or(|n| g.node.as_ref() == Some(n))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("nothing in run {run} is waiting for approval{which}")]
    NoneWaiting { run: String, which: String },
    #[error("{} gates are waiting in run {run}:\n{}\nname one with --env and --node, or pass --all", .gates.len(), describe_all(.gates))]
    Ambiguous { run: String, gates: Vec<GateInfo> },
    #[error("cannot record the decision: {0}")]
    Journal(#[from] JournalError),
}

/// `  staging (environment gate): approval = true`
pub fn describe(g: &GateInfo) -> String {
    let place = match &g.node {
        Some(n) => format!("{}/{n}", g.environment),
        None => g.environment.clone(),
    };
    format!("{place} ({} gate): {}", g.kind.name(), g.reason)
}

fn describe_all(gates: &[GateInfo]) -> String {
    gates.iter().map(|g| format!("  {}", describe(g))).collect::<Vec<_>>().join("\n")
}

struct Waiter {
    id: u64,
    info: GateInfo,
    decided: oneshot::Sender<GateDecision>,
}

/// The gates of one run.
pub struct Gates {
    run_id: String,
    auto: AutoApprove,
    journal: RunJournal,
    events: Events,
    waiting: Mutex<(u64, Vec<Waiter>)>,
}

impl Gates {
    pub fn new(run_id: String, auto: AutoApprove, journal: RunJournal, events: Events) -> Gates {
        Gates { run_id, auto, journal, events, waiting: Mutex::new((0, Vec::new())) }
    }

    /// The gates waiting now, oldest first.
    pub fn waiting(&self) -> Vec<GateInfo> {
        self.waiting.lock().map(|w| w.1.iter().map(|w| w.info.clone()).collect()).unwrap_or_default()
    }

    /// Who opens this gate without asking, if anyone.
    fn auto_approver(&self, gate: &GateInfo) -> Option<String> {
        let why = match gate.kind {
            GateKind::Environment if self.auto.environments.contains(&gate.environment) => {
                format!("--approve-env {}", gate.environment)
            }
            GateKind::Environment | GateKind::Policy => return None,
            GateKind::After | GateKind::PauseBeforeApply if self.auto.yes => "--yes".to_string(),
            GateKind::After | GateKind::PauseBeforeApply => return None,
        };
        Some(format!("{} ({why})", crate::os_user::current_user()))
    }

    /// Waits at `gate` until it is decided or the run is stopped.
    pub async fn wait(&self, gate: GateInfo, mut stop: watch::Receiver<bool>) -> GateOutcome {
        let stopped = async move {
            // A stop signal whose sender is gone can never fire.
            if stop.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        self.wait_until(gate, stopped).await
    }

    /// Waits at `gate` until it is decided or `stopped` resolves (the run,
    /// or what the gate guards, was cancelled).
    pub async fn wait_until(&self, gate: GateInfo, stopped: impl std::future::Future<Output = ()>) -> GateOutcome {
        if let Some(by) = self.auto_approver(&gate) {
            let d = self.decision(gate, Decision::Approved, by, None);
            return match self.record(&d).await {
                Ok(()) => GateOutcome::Approved,
                Err(e) => {
                    tracing::error!("{e}");
                    GateOutcome::Cancelled
                }
            };
        }
        // Whoever is asked to decide looks at the run first: what it has
        // done so far is in the store before the gate shows as waiting (the
        // journal holds back writes nobody waits for, for a few ms).
        if let Err(e) = self.journal.flush().await {
            tracing::error!("{e}");
        }
        let (tx, rx) = oneshot::channel();
        let id = {
            let Ok(mut w) = self.waiting.lock() else { return GateOutcome::Cancelled };
            w.0 += 1;
            let id = w.0;
            w.1.push(Waiter { id, info: gate.clone(), decided: tx });
            id
        };
        self.events.send(RunEvent::Waiting {
            environment: gate.environment.clone(),
            node: gate.node.clone(),
            gate: gate.kind,
            reason: gate.reason.clone(),
            detail: gate.detail.clone(),
        });
        tokio::select! {
            decided = rx => match decided {
                Ok(d) if d.decision == Decision::Approved => GateOutcome::Approved,
                Ok(d) => GateOutcome::Rejected(d),
                Err(_) => GateOutcome::Cancelled,
            },
            () = stopped => {
                if let Ok(mut w) = self.waiting.lock() {
                    w.1.retain(|x| x.id != id);
                }
                GateOutcome::Cancelled
            }
        }
    }

    /// Approves or rejects the waiting gates `selector` picks: exactly one
    /// unless it says `all`. Each decision is on disk before the run acts on it.
    pub async fn decide(
        &self,
        selector: &GateSelector,
        decision: Decision,
        by: &str,
        comment: Option<String>,
    ) -> Result<Vec<GateDecision>, GateError> {
        let picked: Vec<Waiter> = {
            let Ok(mut w) = self.waiting.lock() else { return Ok(Vec::new()) };
            let matching: Vec<GateInfo> = w.1.iter().filter(|x| selector.matches(&x.info)).map(|x| x.info.clone()).collect();
            if matching.is_empty() {
                let mut which = String::new();
                if let Some(e) = &selector.environment {
                    which.push_str(&format!(" in environment `{e}`"));
                }
                if let Some(n) = &selector.node {
                    which.push_str(&format!(" at node `{n}`"));
                }
                return Err(GateError::NoneWaiting { run: self.run_id.clone(), which });
            }
            if matching.len() > 1 && !selector.all {
                return Err(GateError::Ambiguous { run: self.run_id.clone(), gates: matching });
            }
            let (picked, rest) = std::mem::take(&mut w.1).into_iter().partition(|x| selector.matches(&x.info));
            w.1 = rest;
            picked
        };
        let mut out = Vec::new();
        for waiter in picked {
            let d = self.decision(waiter.info, decision, by.to_string(), comment.clone());
            if let Err(e) = self.record(&d).await {
                // Not recorded, so not taken: the gate keeps waiting.
                if let Ok(mut w) = self.waiting.lock() {
                    w.1.push(Waiter { id: waiter.id, info: d.gate, decided: waiter.decided });
                }
                return Err(e.into());
            }
            let _ = waiter.decided.send(d.clone());
            out.push(d);
        }
        Ok(out)
    }

    fn decision(&self, gate: GateInfo, decision: Decision, by: String, comment: Option<String>) -> GateDecision {
        GateDecision { run_id: self.run_id.clone(), gate, decision, by, at_ms: now_ms(), comment }
    }

    async fn record(&self, d: &GateDecision) -> Result<(), JournalError> {
        self.journal.record_durably(Write::Decision(d.clone())).await?;
        self.events.send(RunEvent::GateDecided {
            environment: d.gate.environment.clone(),
            node: d.gate.node.clone(),
            gate: d.gate.kind,
            decision: d.decision,
            by: d.by.clone(),
            comment: d.comment.clone(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateStore;
    use std::sync::Arc;

    fn gate(kind: GateKind, env: &str, node: Option<&str>) -> GateInfo {
        GateInfo { kind, environment: env.into(), node: node.map(str::to_string), reason: "r".into(), detail: None, since_ms: 1 }
    }

    fn gates(dir: &std::path::Path, auto: AutoApprove) -> (Arc<StateStore>, Arc<Gates>) {
        let store = Arc::new(StateStore::open(dir).unwrap());
        let journal = RunJournal::start(store.clone());
        (store, Arc::new(Gates::new("r1".into(), auto, journal, Events::none())))
    }

    async fn until_waiting(g: &Gates, n: usize) {
        while g.waiting().len() < n {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_decision_opens_the_gate_it_names_and_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (store, g) = gates(dir.path(), AutoApprove::default());
        let (_tx, stop) = watch::channel(false);
        let a = tokio::spawn({
            let (g, stop) = (g.clone(), stop.clone());
            async move { g.wait(gate(GateKind::After, "dev", Some("db")), stop).await }
        });
        let b = tokio::spawn({
            let g = g.clone();
            async move { g.wait(gate(GateKind::Environment, "prod", None), stop).await }
        });
        until_waiting(&g, 2).await;
        let err = g.decide(&GateSelector::default(), Decision::Approved, "alice", None).await.unwrap_err();
        assert!(matches!(err, GateError::Ambiguous { .. }), "{err}");
        let sel = GateSelector { environment: Some("dev".into()), node: Some("db".into()), all: false };
        g.decide(&sel, Decision::Approved, "alice", Some("ok".into())).await.unwrap();
        assert_eq!(a.await.unwrap(), GateOutcome::Approved);
        let sel = GateSelector { environment: Some("prod".into()), ..Default::default() };
        g.decide(&sel, Decision::Rejected, "bob", None).await.unwrap();
        let GateOutcome::Rejected(d) = b.await.unwrap() else { panic!("rejected") };
        assert_eq!(d.by, "bob");
        let recorded = store.decisions("r1").unwrap();
        assert_eq!(recorded.len(), 2);
        assert_eq!((recorded[0].by.as_str(), recorded[0].comment.as_deref()), ("alice", Some("ok")));
        assert_eq!(recorded[1].decision, Decision::Rejected);
        let err = g.decide(&GateSelector::default(), Decision::Approved, "alice", None).await.unwrap_err();
        assert!(matches!(err, GateError::NoneWaiting { .. }));
    }

    #[tokio::test]
    async fn yes_opens_pauses_and_node_gates_but_neither_an_environment_approval_nor_a_policys() {
        let dir = tempfile::tempdir().unwrap();
        let auto = AutoApprove { yes: true, environments: vec!["staging".into()] };
        let (store, g) = gates(dir.path(), auto);
        let (tx, stop) = watch::channel(false);
        assert_eq!(g.wait(gate(GateKind::PauseBeforeApply, "dev", Some("a")), stop.clone()).await, GateOutcome::Approved);
        assert_eq!(g.wait(gate(GateKind::After, "dev", Some("a")), stop.clone()).await, GateOutcome::Approved);
        assert_eq!(g.wait(gate(GateKind::Environment, "staging", None), stop.clone()).await, GateOutcome::Approved);
        let prod = tokio::spawn({
            let (g, stop) = (g.clone(), stop.clone());
            async move { g.wait(gate(GateKind::Environment, "prod", None), stop).await }
        });
        let policy = tokio::spawn({
            let g = g.clone();
            async move { g.wait(gate(GateKind::Policy, "dev", Some("db")), stop).await }
        });
        until_waiting(&g, 2).await;
        // A person approves what the policy asked for; the environment gate still waits.
        let sel = GateSelector { node: Some("db".into()), ..Default::default() };
        g.decide(&sel, Decision::Approved, "alice", None).await.unwrap();
        assert_eq!(policy.await.unwrap(), GateOutcome::Approved);
        tx.send_replace(true);
        assert_eq!(prod.await.unwrap(), GateOutcome::Cancelled);
        assert!(g.waiting().is_empty());
        let by: Vec<String> = store.decisions("r1").unwrap().into_iter().map(|d| d.by).collect();
        assert_eq!(by.len(), 4, "{by:?}");
        assert!(by[0].ends_with("(--yes)") && by[1].ends_with("(--yes)"), "{by:?}");
        assert!(by[2].ends_with("(--approve-env staging)") && by[3] == "alice", "{by:?}");
    }
}
