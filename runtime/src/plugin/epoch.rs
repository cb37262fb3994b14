//! Wall time, by epochs: the thread that advances the engine's epoch, and
//! the per-store callback that makes a running plugin yield at every tick
//! and trap with [`WallTimeLimit`] once its call is past its deadline.
//!
//! There is no fuel: a plugin that spins on the CPU and one that waits in
//! the host (a sleep, a socket) are both stopped by time. The epoch callback
//! stops the first. The second runs no wasm that could see an epoch, so a
//! tokio timeout around every call stops it, [`TIMEOUT_SLACK`] after the
//! limit (around a session's instantiation, at the limit itself).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{EngineWeak, Store, UpdateDeadline};

use super::sandbox::PluginState;

/// How often the engine's epoch advances: the granularity of wall-time limits,
/// and how long a busy plugin runs before it lets other tasks on its thread go.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How much longer than its limit a call may take before the tokio timeout
/// around it gives up: the epoch callback should have stopped it first.
pub(super) const TIMEOUT_SLACK: Duration = EPOCH_TICK.saturating_mul(10);

/// What a store's epoch callback traps with when the current call is past
/// its deadline. The call's error is told a timeout by this type
/// (`wasmtime::Error::is`, which looks through the context wasmtime adds),
/// not by its text.
#[derive(Debug, thiserror::Error)]
#[error("wall-time limit reached")]
pub(super) struct WallTimeLimit;

/// The thread that advances an engine's epoch every [`EPOCH_TICK`]. It
/// stops when this is dropped, or when the engine is gone.
pub(super) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(super) fn spawn(engine: EngineWeak) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new().name("stackpipe-epoch".into()).spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => break,
                }
            }
        })?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Every tick, a running plugin yields to the other tasks on its thread;
/// past the current call's deadline (see [`start_call`]), it traps with
/// [`WallTimeLimit`].
pub(super) fn watch_deadline(store: &mut Store<PluginState>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |ctx| {
        if Instant::now() >= ctx.data().deadline {
            Err(wasmtime::Error::new(WallTimeLimit))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
}

/// Gives the store's next call its full wall-time limit, from now.
pub(super) fn start_call(store: &mut Store<PluginState>, limit: Duration) {
    store.data_mut().deadline = Instant::now() + limit;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_time_limit_is_found_under_the_context_wasmtime_adds() {
        let e = wasmtime::Error::new(WallTimeLimit).context("error while executing at wasm backtrace:");
        assert!(e.is::<WallTimeLimit>());
        assert!(e.downcast_ref::<WallTimeLimit>().is_some());
        assert!(!wasmtime::Error::msg("wall-time limit reached").is::<WallTimeLimit>(), "found by type, not by text");
    }
}
