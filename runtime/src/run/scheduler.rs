//! The graph walker: runs one task per node of a DAG, each as soon as all of
//! its dependencies have succeeded, at most `parallelism` at once.
//!
//! A node that fails takes its transitive dependents with it (they end
//! `Cancelled` without starting); independent branches run on. A stop
//! signal (Ctrl-C) lets the nodes in flight finish and cancels every node
//! not started. The walker knows nothing of resources or plugins: it gets
//! the dependency lists and a function that runs one node.

use std::future::Future;

use tokio::sync::watch;
use tokio::task::JoinSet;

/// How one node of a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeEnd {
    Succeeded,
    Failed,
    /// Never started: a dependency failed or the walk was stopped.
    Cancelled,
}

/// Walks `deps` (for each node, the nodes it waits for). `run(i)` runs node `i`
/// and says whether it succeeded. `parallelism` 0 means no limit. Returns how
/// every node ended, by index.
pub async fn walk<F, Fut>(deps: &[Vec<usize>], parallelism: usize, mut stop: watch::Receiver<bool>, run: F) -> Vec<NodeEnd>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let n = deps.len();
    let limit = if parallelism == 0 { usize::MAX } else { parallelism };
    let mut dependents = vec![Vec::new(); n];
    let mut waiting_on = vec![0usize; n];
    for (node, ds) in deps.iter().enumerate() {
        waiting_on[node] = ds.len();
        for &d in ds {
            dependents[d].push(node);
        }
    }
    let mut end: Vec<Option<NodeEnd>> = vec![None; n];
    // Ready nodes, lowest index first: the caller's order (declaration order) breaks ties.
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| waiting_on[i] == 0).collect();
    let mut running: JoinSet<(usize, bool)> = JoinSet::new();
    let mut stopped = *stop.borrow();
    let mut task_node = std::collections::HashMap::new();

    loop {
        while !stopped && running.len() < limit {
            let Some(node) = ready.pop_first() else { break };
            let task = run(node);
            let handle = running.spawn(async move { (node, task.await) });
            task_node.insert(handle.id(), node);
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next() => {
                let Some(joined) = joined else { break };
                // A panicking node task counts as a failure of that node.
                let (node, ok) = match joined {
                    Ok(r) => r,
                    Err(e) => match task_node.get(&e.id()) {
                        Some(&node) => (node, false),
                        None => continue,
                    },
                };
                if ok {
                    end[node] = Some(NodeEnd::Succeeded);
                    for &d in &dependents[node] {
                        waiting_on[d] -= 1;
                        if waiting_on[d] == 0 && end[d].is_none() {
                            ready.insert(d);
                        }
                    }
                } else {
                    end[node] = Some(NodeEnd::Failed);
                    cancel_dependents(node, &dependents, &mut end, &mut ready);
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
    end.into_iter().map(|e| e.unwrap_or(NodeEnd::Cancelled)).collect()
}

fn cancel_dependents(node: usize, dependents: &[Vec<usize>], end: &mut [Option<NodeEnd>], ready: &mut std::collections::BTreeSet<usize>) {
    let mut stack = dependents[node].clone();
    while let Some(d) = stack.pop() {
        if end[d].is_none() {
            end[d] = Some(NodeEnd::Cancelled);
            ready.remove(&d);
            stack.extend(dependents[d].iter().copied());
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
        let ends = walk(&chain_and_branch(), 2, rx, move |i| {
            let l = l.clone();
            async move {
                l.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(5)).await;
                true
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
        let ends = walk(&chain_and_branch(), 0, rx, |i| async move { i != 1 }).await;
        assert_eq!(ends, [NodeEnd::Succeeded, NodeEnd::Failed, NodeEnd::Cancelled, NodeEnd::Succeeded, NodeEnd::Succeeded]);
    }

    #[tokio::test]
    async fn parallelism_bounds_the_nodes_in_flight() {
        let (_tx, rx) = watch::channel(false);
        let live = Arc::new(Mutex::new((0usize, 0usize)));
        let l = live.clone();
        let deps = vec![Vec::new(); 20];
        walk(&deps, 3, rx, move |_| {
            let l = l.clone();
            async move {
                {
                    let mut g = l.lock().unwrap();
                    g.0 += 1;
                    g.1 = g.1.max(g.0);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                l.lock().unwrap().0 -= 1;
                true
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
        let ends = walk(&chain_and_branch(), 1, rx, move |i| {
            let t = t.clone();
            async move {
                if i == 0 {
                    t.send_replace(true);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                true
            }
        })
        .await;
        assert_eq!(ends[0], NodeEnd::Succeeded);
        assert!(ends[1..].iter().all(|e| *e == NodeEnd::Cancelled), "{ends:?}");
    }
}
