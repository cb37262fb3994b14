//! The host: one engine (pooling allocator, epoch interruption), one linker
//! (WASI, `wasi:http`, stackpipe's `host` interface) and one instance pool
//! per process, shared by every plugin it loads.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::artifact_cache::ArtifactCache;
use super::epoch::EpochTicker;
use super::sandbox::PluginState;
use super::{bindings, fine_clock};

/// Live plugin instances at once; calls beyond this wait for a free slot.
pub const MAX_INSTANCES: u32 = 256;

/// The most linear memory one instance can have, whatever its `memory_mb`.
const MAX_MEMORY_BYTES: usize = 4 << 30;

/// The engine, the linker and the cache, shared by every plugin of a process.
pub struct PluginHost {
    pub(super) engine: Engine,
    pub(super) linker: Linker<PluginState>,
    pub(super) cache: ArtifactCache,
    /// Advances the engine's epoch until the host is dropped.
    _ticker: EpochTicker,
    /// One permit per instance slot of the pool.
    slots: Arc<tokio::sync::Semaphore>,
}

impl PluginHost {
    pub fn new(cache: ArtifactCache) -> wasmtime::Result<Self> {
        let engine = Engine::new(&engine_config())?;
        let linker = linker(&engine)?;
        let ticker = EpochTicker::spawn(engine.weak())?;
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_INSTANCES as usize));
        Ok(PluginHost { engine, linker, cache, _ticker: ticker, slots })
    }

    /// Waits for a free instance slot.
    pub(super) async fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Epoch interruption, the component model, and instances from a pool.
fn engine_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true).wasm_component_model(true);
    // Instances come from a pool of pre-reserved slots: instantiation
    // then costs tens of microseconds, not an mmap per memory and table.
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_INSTANCES)
        .total_core_instances(MAX_INSTANCES * 8)
        .total_memories(MAX_INSTANCES * 2)
        .total_tables(MAX_INSTANCES * 8)
        .max_memory_size(MAX_MEMORY_BYTES)
        // Reset a freed slot's first pages (and the host stack a call
        // runs on) with memset rather than madvise, and give back the
        // rest in batches: every madvise is a TLB shootdown on every core.
        // The builtins are linked with a 128 KiB stack (plugins/build.sh),
        // so their stack, data and first heap pages fit in this.
        .linear_memory_keep_resident(384 << 10)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(128 << 10)
        .decommit_batch_size(32);
    // Data segments are copied in at instantiation rather than mapped
    // copy-on-write: a plugin's first writes to them then take no page
    // fault and TLB flush each (the segments of a plugin are small).
    config.memory_init_cow(false);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// What a plugin can import: WASI (with fine-grained sleeps), `wasi:http`
/// (whose requests the sandbox's gate checks against the grants) and
/// stackpipe's `host` and `files` interfaces. A component that imports less
/// (one built before `files` existed) links all the same.
fn linker(engine: &Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // Guest sleeps end on time rather than on tokio's next millisecond.
    linker.allow_shadowing(true);
    wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<PluginState, fine_clock::FineClock>(
        &mut linker,
        |s| fine_clock::FineClockView(wasmtime_wasi::clocks::WasiClocksView::clocks(s)),
    )?;
    linker.allow_shadowing(false);
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    bindings::host::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)?;
    bindings::files::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)?;
    Ok(linker)
}
