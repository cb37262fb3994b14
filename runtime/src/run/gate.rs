//! Gates: the places a run waits for a person. A waiting gate holds back
//! only what it guards (a node's apply, a node's dependents, or an
//! environment); everything else runs on. Decisions come from the running
//! terminal or from another one through the control socket, and each is
//! journaled durably (who, when, which gate, the comment) before the run
//! acts on it. An environment may say who decides its gates (`approvers`)
//! and forbid approving a run one started oneself (`self_approval =
//! false`): a decision they refuse is not taken.

use std::collections::HashMap;
use std::sync::Mutex;

use stackpipe_dsl::ApprovalRule;
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

/// The role a decider holds on the team server: the language's `role:` names.
pub use stackpipe_dsl::Role as DeciderRole;

/// Who decides a gate: the user recorded with the decision, and the role
/// they hold. `role: None` is the local owner of the state (the OS user at
/// the control socket), who is treated as an admin; the user's name still
/// has to match a `user:` approver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    pub user: String,
    pub role: Option<DeciderRole>,
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
    #[error("{user} cannot decide this: only {approvers} may approve environment `{environment}`")]
    NotAnApprover { user: String, environment: String, approvers: String },
    #[error(
        "run {run} was started by {started_by}, and environment `{environment}` forbids approving your own run \
         (self_approval = false)"
    )]
    OwnRun { run: String, started_by: String, environment: String },
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
    /// Whom `self_approval = false` keeps from approving.
    started_by: String,
    /// Who may decide the gates of each environment; one not here: anyone.
    rules: HashMap<String, ApprovalRule>,
    auto: AutoApprove,
    journal: RunJournal,
    events: Events,
    waiting: Mutex<(u64, Vec<Waiter>)>,
    /// On a runner: where its gates are posted for the run's owner, which
    /// holds the run's gates (its rules, its `--yes`, its control socket),
    /// to ask; the answer comes back the same way.
    board: Option<stackpipe_state_postgres::JobQueue>,
}

/// The answer to a gate a runner posted ([`Gates::posting`]), as the
/// run's owner gives it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum PostedAnswer {
    Decided(GateDecision),
    /// The owner stopped asking: the run, or what the gate guards, was cancelled.
    Cancelled,
}

/// How often a runner looks for the answer to a gate it posted.
const ANSWER_POLL: std::time::Duration = std::time::Duration::from_millis(200);

impl Gates {
    pub fn new(run_id: String, auto: AutoApprove, journal: RunJournal, events: Events) -> Gates {
        let (started_by, rules) = (String::new(), HashMap::new());
        Gates { run_id, started_by, rules, auto, journal, events, waiting: Mutex::new((0, Vec::new())), board: None }
    }

    /// These gates, on a runner: each wait is posted to `queue` for the
    /// run's owner to ask, and ends with its answer (see [`PostedAnswer`]).
    pub fn posting(mut self, queue: stackpipe_state_postgres::JobQueue) -> Gates {
        self.board = Some(queue);
        self
    }

    /// These gates, held to each environment's rule of who may decide
    /// them (`rules`, by environment), for a run `started_by` started.
    pub fn governed(mut self, started_by: String, rules: impl IntoIterator<Item = (String, ApprovalRule)>) -> Gates {
        self.started_by = started_by;
        self.rules = rules.into_iter().collect();
        self
    }

    /// Why `decider` may not take `decision` at `gate`, if they may not:
    /// they are none of its environment's `approvers` (for either
    /// decision), or they started the run and it forbids approving it.
    fn refusal(&self, gate: &GateInfo, decision: Decision, decider: &Decider) -> Option<GateError> {
        let rule = self.rules.get(&gate.environment)?;
        let environment = gate.environment.clone();
        if !rule.admits(&decider.user, decider.role.unwrap_or(DeciderRole::Admin)) {
            return Some(GateError::NotAnApprover { user: decider.user.clone(), environment, approvers: rule.approvers_text() });
        }
        if decision == Decision::Approved && !rule.self_approval && decider.user == self.started_by {
            return Some(GateError::OwnRun { run: self.run_id.clone(), started_by: self.started_by.clone(), environment });
        }
        None
    }

    /// The gates waiting now, oldest first.
    pub fn waiting(&self) -> Vec<GateInfo> {
        self.waiting.lock().map(|w| w.1.iter().map(|w| w.info.clone()).collect()).unwrap_or_default()
    }

    /// Who opens this gate without asking, if anyone: whoever started the
    /// run, with the option that says so, if the environment lets them.
    fn auto_approver(&self, gate: &GateInfo) -> Option<String> {
        let why = match gate.kind {
            GateKind::Environment if self.auto.environments.contains(&gate.environment) => {
                format!("--approve-env {}", gate.environment)
            }
            GateKind::Environment | GateKind::Policy => return None,
            GateKind::After | GateKind::PauseBeforeApply if self.auto.yes => "--yes".to_string(),
            GateKind::After | GateKind::PauseBeforeApply => return None,
        };
        let user = crate::os_user::current_user();
        if let Some(refused) = self.refusal(gate, Decision::Approved, &Decider { user: user.clone(), role: None }) {
            tracing::warn!("{why} does not approve this gate: {refused}; it waits for someone who may");
            return None;
        }
        Some(format!("{user} ({why})"))
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
        if let Some(queue) = &self.board {
            return self.wait_posted(queue, gate, stopped).await;
        }
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

    /// A runner's wait: what the job did so far is in the state, then the
    /// gate is posted, and its answer awaited.
    async fn wait_posted(
        &self,
        queue: &stackpipe_state_postgres::JobQueue,
        gate: GateInfo,
        stopped: impl std::future::Future<Output = ()>,
    ) -> GateOutcome {
        if let Err(e) = self.journal.flush().await {
            tracing::error!("{e}");
            return GateOutcome::Cancelled;
        }
        let job = stackpipe_state_postgres::JobKey::new(&self.run_id, &gate.environment, gate.node.as_deref().unwrap_or(""));
        let posted = match serde_json::to_string(&gate) {
            Ok(text) => queue.post_gate(&job, &text).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = posted {
            tracing::error!("cannot post the gate of {job}: {e}");
            return GateOutcome::Cancelled;
        }
        let answered = async {
            loop {
                match queue.take_answer(&job).await {
                    Ok(Some(text)) => match serde_json::from_str::<PostedAnswer>(&text) {
                        Ok(PostedAnswer::Decided(d)) if d.decision == Decision::Approved => return GateOutcome::Approved,
                        Ok(PostedAnswer::Decided(d)) => return GateOutcome::Rejected(d),
                        Ok(PostedAnswer::Cancelled) => return GateOutcome::Cancelled,
                        Err(e) => {
                            tracing::error!("the answer to the gate of {job} is not one: {e}");
                            return GateOutcome::Cancelled;
                        }
                    },
                    Ok(None) => {}
                    // The database may be back at the next look.
                    Err(e) => tracing::warn!("cannot read the answer to the gate of {job}: {e}"),
                }
                tokio::time::sleep(ANSWER_POLL).await;
            }
        };
        tokio::select! {
            outcome = answered => outcome,
            () = stopped => GateOutcome::Cancelled,
        }
    }

    /// Approves or rejects the waiting gates `selector` picks: exactly one
    /// unless it says `all`. Each decision is on disk before the run acts on
    /// it. If the environment of any of them refuses `by`, none is taken.
    pub async fn decide(
        &self,
        selector: &GateSelector,
        decision: Decision,
        by: &Decider,
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
            if let Some(refused) = matching.iter().find_map(|g| self.refusal(g, decision, by)) {
                return Err(refused);
            }
            let (picked, rest) = std::mem::take(&mut w.1).into_iter().partition(|x| selector.matches(&x.info));
            w.1 = rest;
            picked
        };
        let mut out = Vec::new();
        for waiter in picked {
            let d = self.decision(waiter.info, decision, by.user.clone(), comment.clone());
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
    use stackpipe_dsl::Approver;
    use std::sync::Arc;

    fn gate(kind: GateKind, env: &str, node: Option<&str>) -> GateInfo {
        GateInfo { kind, environment: env.into(), node: node.map(str::to_string), reason: "r".into(), detail: None, since_ms: 1 }
    }

    fn gates(dir: &std::path::Path, auto: AutoApprove) -> (Arc<StateStore>, Arc<Gates>) {
        let store = Arc::new(StateStore::open(dir).unwrap());
        let journal = RunJournal::start(store.clone());
        (store, Arc::new(Gates::new("r1".into(), auto, journal, Events::none())))
    }

    /// A decider at the control socket: the state's local owner.
    fn local(user: &str) -> Decider {
        Decider { user: user.into(), role: None }
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
        let err = g.decide(&GateSelector::default(), Decision::Approved, &local("alice"), None).await.unwrap_err();
        assert!(matches!(err, GateError::Ambiguous { .. }), "{err}");
        let sel = GateSelector { environment: Some("dev".into()), node: Some("db".into()), all: false };
        g.decide(&sel, Decision::Approved, &local("alice"), Some("ok".into())).await.unwrap();
        assert_eq!(a.await.unwrap(), GateOutcome::Approved);
        let sel = GateSelector { environment: Some("prod".into()), ..Default::default() };
        g.decide(&sel, Decision::Rejected, &local("bob"), None).await.unwrap();
        let GateOutcome::Rejected(d) = b.await.unwrap() else { panic!("rejected") };
        assert_eq!(d.by, "bob");
        let recorded = store.decisions("r1").unwrap();
        assert_eq!(recorded.len(), 2);
        assert_eq!((recorded[0].by.as_str(), recorded[0].comment.as_deref()), ("alice", Some("ok")));
        assert_eq!(recorded[1].decision, Decision::Rejected);
        let err = g.decide(&GateSelector::default(), Decision::Approved, &local("alice"), None).await.unwrap_err();
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
        g.decide(&sel, Decision::Approved, &local("alice"), None).await.unwrap();
        assert_eq!(policy.await.unwrap(), GateOutcome::Approved);
        tx.send_replace(true);
        assert_eq!(prod.await.unwrap(), GateOutcome::Cancelled);
        assert!(g.waiting().is_empty());
        let by: Vec<String> = store.decisions("r1").unwrap().into_iter().map(|d| d.by).collect();
        assert_eq!(by.len(), 4, "{by:?}");
        assert!(by[0].ends_with("(--yes)") && by[1].ends_with("(--yes)"), "{by:?}");
        assert!(by[2].ends_with("(--approve-env staging)") && by[3] == "alice", "{by:?}");
    }

    /// Gates of a run bob started, where prod names its approvers and
    /// forbids approving one's own run, with prod's gate waiting.
    async fn prod_waiting(dir: &std::path::Path) -> (Arc<StateStore>, Arc<Gates>, tokio::task::JoinHandle<GateOutcome>) {
        let store = Arc::new(StateStore::open(dir).unwrap());
        let journal = RunJournal::start(store.clone());
        let rule = ApprovalRule {
            approvers: vec![Approver::Role(DeciderRole::Operator), Approver::User("bob".into()), Approver::User("vic".into())],
            self_approval: false,
        };
        let g = Gates::new("r1".into(), AutoApprove::default(), journal, Events::none())
            .governed("bob".into(), [("prod".to_string(), rule), ("dev".to_string(), ApprovalRule::default())]);
        let g = Arc::new(g);
        // Nothing sends on it: never stopped.
        let stop = watch::channel(false).1;
        let waiting = tokio::spawn({
            let g = g.clone();
            async move { g.wait(gate(GateKind::Environment, "prod", None), stop).await }
        });
        until_waiting(&g, 1).await;
        (store, g, waiting)
    }

    fn member(user: &str, role: DeciderRole) -> Decider {
        Decider { user: user.into(), role: Some(role) }
    }

    #[tokio::test]
    async fn only_the_approvers_an_environment_names_decide_its_gates_and_a_refusal_takes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, g, waiting) = prod_waiting(dir.path()).await;
        let prod = GateSelector { environment: Some("prod".into()), ..Default::default() };
        for decision in [Decision::Approved, Decision::Rejected] {
            let err = g.decide(&prod, decision, &member("ann", DeciderRole::Viewer), None).await.unwrap_err();
            assert!(matches!(err, GateError::NotAnApprover { .. }), "{err}");
            assert_eq!(
                err.to_string(),
                "ann cannot decide this: only role:operator, user:bob or user:vic may approve environment `prod`"
            );
        }
        assert_eq!(g.waiting().len(), 1, "a refused decision leaves the gate waiting");
        assert!(store.decisions("r1").unwrap().is_empty(), "and records nothing");
        // A user named, whatever their role, approves.
        g.decide(&prod, Decision::Approved, &member("vic", DeciderRole::Viewer), None).await.unwrap();
        assert_eq!(waiting.await.unwrap(), GateOutcome::Approved);
        assert_eq!(store.decisions("r1").unwrap()[0].by, "vic");
    }

    #[tokio::test]
    async fn a_role_named_admits_it_and_the_roles_above_it() {
        for role in [DeciderRole::Operator, DeciderRole::Admin] {
            let dir = tempfile::tempdir().unwrap();
            let (store, g, waiting) = prod_waiting(dir.path()).await;
            g.decide(&GateSelector::default(), Decision::Approved, &member("ann", role), None).await.unwrap();
            assert_eq!(waiting.await.unwrap(), GateOutcome::Approved);
            assert_eq!(store.decisions("r1").unwrap()[0].by, "ann");
        }
    }

    #[tokio::test]
    async fn whoever_started_the_run_may_reject_it_but_not_approve_it_where_self_approval_is_false() {
        let dir = tempfile::tempdir().unwrap();
        let (store, g, waiting) = prod_waiting(dir.path()).await;
        // bob is an approver, and an admin: still his own run.
        let err = g.decide(&GateSelector::default(), Decision::Approved, &member("bob", DeciderRole::Admin), None).await;
        let err = err.unwrap_err();
        assert!(matches!(err, GateError::OwnRun { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "run r1 was started by bob, and environment `prod` forbids approving your own run (self_approval = false)"
        );
        assert!(store.decisions("r1").unwrap().is_empty());
        g.decide(&GateSelector::default(), Decision::Rejected, &member("bob", DeciderRole::Admin), None).await.unwrap();
        assert!(matches!(waiting.await.unwrap(), GateOutcome::Rejected(_)));
    }

    #[tokio::test]
    async fn the_local_owner_is_an_admin_but_a_user_approver_must_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, g, waiting) = prod_waiting(dir.path()).await;
        // role:operator admits the local owner, an admin...
        g.decide(&GateSelector::default(), Decision::Approved, &local("root"), None).await.unwrap();
        assert_eq!(waiting.await.unwrap(), GateOutcome::Approved);
        // ...but where only users are named, the local owner is one of them or refused.
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::open(dir.path()).unwrap());
        let rule = ApprovalRule { approvers: vec![Approver::User("bob".into())], self_approval: true };
        let g = Gates::new("r1".into(), AutoApprove::default(), RunJournal::start(store.clone()), Events::none())
            .governed("root".into(), [("prod".to_string(), rule)]);
        let g = Arc::new(g);
        let (_tx, stop) = watch::channel(false);
        let waiting = tokio::spawn({
            let g = g.clone();
            async move { g.wait(gate(GateKind::After, "prod", Some("db")), stop).await }
        });
        until_waiting(&g, 1).await;
        let err = g.decide(&GateSelector::default(), Decision::Approved, &local("root"), None).await.unwrap_err();
        assert!(matches!(err, GateError::NotAnApprover { .. }), "{err}");
        g.decide(&GateSelector::default(), Decision::Approved, &local("bob"), None).await.unwrap();
        assert_eq!(waiting.await.unwrap(), GateOutcome::Approved);
    }

    #[tokio::test]
    async fn a_decision_for_all_is_refused_whole_if_one_environment_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, g, _prod) = prod_waiting(dir.path()).await;
        let (_tx, stop) = watch::channel(false);
        let _dev = tokio::spawn({
            let g = g.clone();
            async move { g.wait(gate(GateKind::After, "dev", Some("a")), stop).await }
        });
        until_waiting(&g, 2).await;
        let all = GateSelector { all: true, ..Default::default() };
        let err = g.decide(&all, Decision::Approved, &member("ann", DeciderRole::Viewer), None).await.unwrap_err();
        assert!(matches!(err, GateError::NotAnApprover { .. }), "{err}");
        assert_eq!(g.waiting().len(), 2);
        assert!(store.decisions("r1").unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_option_of_the_one_who_started_the_run_does_not_approve_what_they_may_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::open(dir.path()).unwrap());
        let me = crate::os_user::current_user();
        let own_run = ApprovalRule { approvers: Vec::new(), self_approval: false };
        let others = ApprovalRule { approvers: vec![Approver::User(format!("not-{me}"))], self_approval: true };
        let auto = AutoApprove { yes: true, environments: vec!["prod".into(), "qa".into()] };
        let g = Gates::new("r1".into(), auto, RunJournal::start(store.clone()), Events::none())
            .governed(me.clone(), [("prod".to_string(), own_run), ("qa".to_string(), others)]);
        let g = Arc::new(g);
        let (_tx, stop) = watch::channel(false);
        let mut waits = Vec::new();
        for g_info in [gate(GateKind::Environment, "prod", None), gate(GateKind::PauseBeforeApply, "qa", Some("a"))] {
            let (g, stop) = (g.clone(), stop.clone());
            waits.push(tokio::spawn(async move { g.wait(g_info, stop).await }));
        }
        until_waiting(&g, 2).await;
        assert!(store.decisions("r1").unwrap().is_empty(), "neither --approve-env nor --yes approved");
        // Where nothing is said, --yes approves as before.
        assert_eq!(g.wait(gate(GateKind::After, "dev", Some("b")), stop).await, GateOutcome::Approved);
    }
}
