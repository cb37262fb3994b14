//! Spreading work over the cores. Results come back in order, so the output
//! is the same whatever the number of threads.

use std::sync::OnceLock;

/// How many threads to give `work` items when each thread should get at
/// least `min_per_thread` of them (fewer are not worth starting one for).
pub(crate) fn threads_for(work: usize, min_per_thread: usize) -> usize {
    if work < 2 * min_per_thread {
        return 1;
    }
    // Asking the system reads cgroup files: once per process is enough.
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    cores.min(work / min_per_thread.max(1)).max(1)
}

/// `f` of every item and its index, in order, computed on up to `threads` threads.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    // `f` of the items of `chunk`, which starts at `start` in `items`.
    let run = |start: usize, chunk: &[T]| chunk.iter().enumerate().map(|(i, x)| f(start + i, x)).collect::<Vec<R>>();
    if threads < 2 || items.len() < 2 {
        return run(0, items);
    }
    let chunk = items.len().div_ceil(threads);
    let run = &run;
    std::thread::scope(|scope| {
        let rest: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .skip(1)
            .map(|(k, c)| scope.spawn(move || run(k * chunk, c)))
            .collect();
        let mut out = run(0, &items[..chunk]);
        out.reserve(items.len() - out.len());
        for part in rest {
            out.extend(part.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_in_order_for_any_thread_count() {
        let items: Vec<usize> = (0..1001).collect();
        let want: Vec<usize> = items.iter().map(|i| i * 2).collect();
        for threads in [1, 2, 3, 7, 64] {
            assert_eq!(map(&items, threads, |_, i| i * 2), want);
            assert_eq!(map(&items, threads, |at, _| at * 2), want);
        }
        assert!(map(&[] as &[usize], 4, |_, i| *i).is_empty());
    }

    #[test]
    fn small_work_stays_on_one_thread() {
        assert_eq!(threads_for(10, 1000), 1);
        assert!(threads_for(1_000_000, 1000) >= 1);
    }
}
