//! The graph walker: runs one task per node of a DAG, each as soon as all of
//! its dependencies have succeeded, at most `parallelism` at once.
//!
//! A node that fails takes its transitive dependents with it (they end
//! `Cancelled` without starting); a node whose gate was rejected takes them
//! too (they end `Skipped`); independent branches run on, unless the walk
//! stops everything on a failure (`OnFailure::StopAll`): then the nodes in
//! flight finish and none starts any more (they end `Halted`). A stop
//! signal (Ctrl-C) lets the nodes in flight finish and cancels every node
//! not started. The walker knows nothing of resources or plugins: it gets
//! the dependency lists and a function that runs one node.
//!
//! Parallelism is a semaphore whose permits the walker hands to the tasks it
//! starts, in a [`Slot`]. A task waiting for a person (at a gate) parks its
//! slot, so a waiting node never holds back an independent one.

use std::future::Future;
use std::sync::{Arc, Mutex};

use stackpipe_dsl::OnFailure;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// How one node of a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeEnd {
    Succeeded,
    Failed,
    /// A gate of the node was rejected: its dependents are skipped.
    Rejected,
    /// Never started: a dependency failed or the walk was stopped.
    Cancelled,
    /// Started, and stopped short of its last operation when the walk was
    /// stopped (waiting at a gate, or between two operations): its
    /// dependents are cancelled.
    Stopped,
    /// Never started: a dependency's gate was rejected.
    Skipped,
    /// Never started: another node failed, and a failure stops the whole
    /// walk (`OnFailure::StopAll`).
    Halted,
}

/// A node's share of the walk's parallelism. Clones share it; the walker
/// keeps one until it has taken in how the node's task ended, so the share
/// cannot be dropped early, nor go to another node before the walker knows
/// whether that one may still start (not after a failure under `stop-all`).
#[derive(Clone)]
pub struct Slot {
    semaphore: Arc<Semaphore>,
    permit: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

impl Slot {
    /// A slot of its own, for a job run outside a walk (a runner's: the
    /// job queue bounds how many run at once).
    pub fn alone() -> Slot {
        let semaphore = Arc::new(Semaphore::new(1));
        let permit = semaphore.clone().try_acquire_owned().ok();
        Slot { semaphore, permit: Arc::new(Mutex::new(permit)) }
    }

    /// Runs `wait` (a wait for a person) without holding the slot, and takes
    /// a slot again before going on.
    pub async fn parked<T>(&self, wait: impl Future<Output = T>) -> T {
        if let Ok(mut p) = self.permit.lock() {
            *p = None;
        }
        let out = wait.await;
        let permit = self.semaphore.clone().acquire_owned().await.ok();
        if let Ok(mut p) = self.permit.lock() {
            *p = permit;
        }
        out
    }
}

/// Walks `deps` (for each node, the nodes it waits for). `run(i, slot)` runs
/// node `i` and says how it ended. `parallelism` 0 means no limit;
/// `on_failure` says what a failed node stops. Returns how every node
/// ended, by index.
pub async fn walk<F, Fut>(
    deps: &[Vec<usize>],
    parallelism: usize,
    mut stop: watch::Receiver<bool>,
    on_failure: OnFailure,
    run: F,
) -> Vec<NodeEnd>
where
    F: Fn(usize, Slot) -> Fut,
    Fut: Future<Output = NodeEnd> + Send + 'static,
{
    let limit = if parallelism == 0 { Semaphore::MAX_PERMITS } else { parallelism };
    let semaphore = Arc::new(Semaphore::new(limit));
    let mut frontier = Frontier::new(deps);
    let mut running: JoinSet<(usize, NodeEnd, Slot)> = JoinSet::new();
    let mut stopped = *stop.borrow();
    // A node failed and a failure stops everything: nothing new starts.
    let mut halted = false;
    let mut task_node = std::collections::HashMap::new();
    let start = |node: usize,
                 permit: OwnedSemaphorePermit,
                 running: &mut JoinSet<(usize, NodeEnd, Slot)>,
                 task_node: &mut std::collections::HashMap<tokio::task::Id, usize>| {
        let slot = Slot { semaphore: semaphore.clone(), permit: Arc::new(Mutex::new(Some(permit))) };
        let task = run(node, slot.clone());
        let handle = running.spawn(async move {
            let end = task.await;
            (node, end, slot)
        });
        task_node.insert(handle.id(), node);
    };

    loop {
        while !stopped && !halted && !frontier.ready.is_empty() {
            let Ok(permit) = semaphore.clone().try_acquire_owned() else { break };
            if let Some(node) = frontier.ready.pop_first() {
                start(node, permit, &mut running, &mut task_node);
            }
        }
        if running.is_empty() {
            break;
        }
        let more = !stopped && !halted && !frontier.ready.is_empty();
        tokio::select! {
            joined = running.join_next() => {
                let Some(joined) = joined else { break };
                // A panicking node task counts as a failure of that node.
                let (node, how, slot) = match joined {
                    Ok((node, how, slot)) => (node, how, Some(slot)),
                    Err(e) => match task_node.get(&e.id()) {
                        Some(&node) => (node, NodeEnd::Failed, None),
                        None => continue,
                    },
                };
                frontier.ended(node, how);
                // After a stop, what was not started is cancelled by it, not halted.
                halted |= how == NodeEnd::Failed && on_failure == OnFailure::StopAll && !stopped;
                // Only now may its share of the parallelism go to another node.
                drop(slot);
            }
            // A parked slot frees a permit while no task ends.
            permit = semaphore.clone().acquire_owned(), if more => {
                if let (Ok(permit), Some(node)) = (permit, frontier.ready.pop_first()) {
                    start(node, permit, &mut running, &mut task_node);
                }
            }
            changed = stop.changed(), if !stopped => {
                stopped = changed.is_err() || *stop.borrow();
                if changed.is_err() {
                    // The sender is gone: nobody can stop us any more; carry on.
                    stopped = false;
                    stop = watch::channel(false).1;
                }
            }
        }
    }
    let unstarted = if halted { NodeEnd::Halted } else { NodeEnd::Cancelled };
    frontier.end.into_iter().map(|e| e.unwrap_or(unstarted)).collect()
}

/// Where a walk stands in its graph: how each node ended, how many of its
/// dependencies each node still waits for, and the nodes ready to start.
struct Frontier {
    dependents: Vec<Vec<usize>>,
    waiting_on: Vec<usize>,
    end: Vec<Option<NodeEnd>>,
    /// Lowest index first: the caller's order (declaration order) breaks ties.
    ready: std::collections::BTreeSet<usize>,
}

impl Frontier {
    fn new(deps: &[Vec<usize>]) -> Frontier {
        let n = deps.len();
        let mut dependents = vec![Vec::new(); n];
        let mut waiting_on = vec![0usize; n];
        for (node, ds) in deps.iter().enumerate() {
            waiting_on[node] = ds.len();
            for &d in ds {
                dependents[d].push(node);
            }
        }
        let ready = (0..n).filter(|&i| waiting_on[i] == 0).collect();
        Frontier { dependents, waiting_on, end: vec![None; n], ready }
    }

    /// `node` ended `how`: its dependents may be ready, or end with it.
    fn ended(&mut self, node: usize, how: NodeEnd) {
        self.end[node] = Some(how);
        match how {
            NodeEnd::Succeeded => {
                for &d in &self.dependents[node] {
                    self.waiting_on[d] -= 1;
                    if self.waiting_on[d] == 0 && self.end[d].is_none() {
                        self.ready.insert(d);
                    }
                }
            }
            NodeEnd::Rejected => self.end_dependents(node, NodeEnd::Skipped),
            _ => self.end_dependents(node, NodeEnd::Cancelled),
        }
    }

    /// Ends every transitive dependent of `node` not ended yet, `how`.
    fn end_dependents(&mut self, node: usize, how: NodeEnd) {
        let mut stack = self.dependents[node].clone();
        while let Some(d) = stack.pop() {
            if self.end[d].is_none() {
                self.end[d] = Some(how);
                self.ready.remove(&d);
                stack.extend(self.dependents[d].iter().copied());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn chain_and_branch() -> Vec<Vec<usize>> {
        // 0 -> 1 -> 2 ; 0 -> 3 ; 4 (independent)
        vec![vec![], vec![0], vec![1], vec![0], vec![]]
    }

    #[tokio::test]
    async fn runs_every_node_after_its_dependencies() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (_tx, rx) = watch::channel(false);
        let l = log.clone();
        let ends = walk(&chain_and_branch(), 2, rx, OnFailure::StopDependents, move |i, _slot| {
            let l = l.clone();
            async move {
                l.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(5)).await;
                NodeEnd::Succeeded
            }
        })
        .await;
        assert!(ends.iter().all(|e| *e == NodeEnd::Succeeded));
        let order = log.lock().unwrap().clone();
        let pos = |n| order.iter().position(|&x| x == n).unwrap();
        assert!(pos(0) < pos(1) && pos(1) < pos(2) && pos(0) < pos(3));
    }

    #[tokio::test]
    async fn a_failure_cancels_only_its_dependents() {
        let (_tx, rx) = watch::channel(false);
        let fail_1 = |i, _slot| async move { if i == 1 { NodeEnd::Failed } else { NodeEnd::Succeeded } };
        let ends = walk(&chain_and_branch(), 0, rx, OnFailure::StopDependents, fail_1).await;
        assert_eq!(ends, [NodeEnd::Succeeded, NodeEnd::Failed, NodeEnd::Cancelled, NodeEnd::Succeeded, NodeEnd::Succeeded]);
    }

    #[tokio::test]
    async fn stop_all_lets_the_nodes_in_flight_finish_and_starts_no_other() {
        // One slot at a time, in index order: 0 succeeds, 1 fails; 2 is its
        // dependent; 3 and 4 were not started yet.
        let (_tx, rx) = watch::channel(false);
        let started = Arc::new(Mutex::new(Vec::new()));
        let s = started.clone();
        let ends = walk(&chain_and_branch(), 1, rx, OnFailure::StopAll, move |i, _slot| {
            s.lock().unwrap().push(i);
            async move { if i == 1 { NodeEnd::Failed } else { NodeEnd::Succeeded } }
        })
        .await;
        assert_eq!(ends, [NodeEnd::Succeeded, NodeEnd::Failed, NodeEnd::Cancelled, NodeEnd::Halted, NodeEnd::Halted]);
        assert_eq!(*started.lock().unwrap(), [0, 1]);

        // No limit: 0, 1, 2 and 4 start at once; 3 waits for 0, which ends
        // well after 1 failed. 4, in flight when 1 fails, finishes.
        let (_tx, rx) = watch::channel(false);
        let (failed_tx, failed_rx) = watch::channel(false);
        let failed_tx = Arc::new(failed_tx);
        let deps = [vec![], vec![], vec![], vec![0], vec![]];
        let ends = walk(&deps, 0, rx, OnFailure::StopAll, move |i, _slot| {
            let (failed_tx, mut failed_rx) = (failed_tx.clone(), failed_rx.clone());
            async move {
                match i {
                    1 => {
                        failed_tx.send_replace(true);
                        return NodeEnd::Failed;
                    }
                    0 | 4 => {
                        let _ = failed_rx.wait_for(|f| *f).await;
                        tokio::time::sleep(Duration::from_millis(if i == 0 { 100 } else { 5 })).await;
                    }
                    _ => {}
                }
                NodeEnd::Succeeded
            }
        })
        .await;
        assert_eq!(ends, [NodeEnd::Succeeded, NodeEnd::Failed, NodeEnd::Succeeded, NodeEnd::Halted, NodeEnd::Succeeded]);
    }

    #[tokio::test]
    async fn parallelism_bounds_the_nodes_in_flight() {
        let (_tx, rx) = watch::channel(false);
        let live = Arc::new(Mutex::new((0usize, 0usize)));
        let l = live.clone();
        let deps = vec![Vec::new(); 20];
        walk(&deps, 3, rx, OnFailure::StopDependents, move |_, _slot| {
            let l = l.clone();
            async move {
                {
                    let mut g = l.lock().unwrap();
                    g.0 += 1;
                    g.1 = g.1.max(g.0);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                l.lock().unwrap().0 -= 1;
                NodeEnd::Succeeded
            }
        })
        .await;
        assert_eq!(live.lock().unwrap().1, 3);
    }

    #[tokio::test]
    async fn stop_lets_running_nodes_finish_and_cancels_the_rest() {
        let (tx, rx) = watch::channel(false);
        let tx = Arc::new(tx);
        let t = tx.clone();
        let ends = walk(&chain_and_branch(), 1, rx, OnFailure::StopDependents, move |i, _slot| {
            let t = t.clone();
            async move {
                if i == 0 {
                    t.send_replace(true);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                NodeEnd::Succeeded
            }
        })
        .await;
        assert_eq!(ends[0], NodeEnd::Succeeded);
        assert!(ends[1..].iter().all(|e| *e == NodeEnd::Cancelled), "{ends:?}");
    }

    #[tokio::test]
    async fn a_rejected_gate_skips_only_its_dependents() {
        let (_tx, rx) = watch::channel(false);
        let ends = walk(&chain_and_branch(), 0, rx, OnFailure::StopDependents, |i, _slot| async move {
            if i == 0 {
                NodeEnd::Rejected
            } else {
                NodeEnd::Succeeded
            }
        })
        .await;
        assert_eq!(ends, [NodeEnd::Rejected, NodeEnd::Skipped, NodeEnd::Skipped, NodeEnd::Skipped, NodeEnd::Succeeded]);
    }

    #[tokio::test]
    async fn a_parked_node_does_not_hold_back_the_others() {
        // One slot; node 0 waits for node 4 (independent) to finish while parked.
        let (_tx, rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let done_rx = Arc::new(done_rx);
        let done_tx = Arc::new(done_tx);
        let ends = walk(&chain_and_branch(), 1, rx, OnFailure::StopDependents, move |i, slot| {
            let (done_rx, done_tx) = (done_rx.clone(), done_tx.clone());
            async move {
                if i == 0 {
                    let mut r = (*done_rx).clone();
                    slot.parked(async move { r.wait_for(|d| *d).await.map(|_| ()) }).await.unwrap();
                }
                if i == 4 {
                    done_tx.send_replace(true);
                }
                NodeEnd::Succeeded
            }
        })
        .await;
        assert!(ends.iter().all(|e| *e == NodeEnd::Succeeded), "{ends:?}");
    }
}
