//! The plugin host: loads WebAssembly components, checks they export the
//! world their `kind` says, and calls them inside a sandbox with limits.
//!
//! One [`PluginHost`] per process holds the engine (with a ticker thread that
//! drives epoch-based interruption) and a linker with WASI, `wasi:http`
//! (behind a grant check) and stackpipe's `host` interface. A
//! [`LoadedPlugin`] is a compiled, linked component (`InstancePre`); every
//! call instantiates it in a fresh store, so a crash or a limit hit in one
//! call cannot leak into the next.

mod artifact_cache;
pub mod bindings;
mod builtin;
mod fine_clock;
mod inspect;
mod sandbox;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};

use stackpipe_dsl::ast::PluginKind;
use stackpipe_dsl::{Limits, PluginSource};

pub use artifact_cache::{digest, ArtifactCache, CacheOutcome};
pub use bindings::types::{AttributeChange, Change, Diagnostic as PluginDiagnostic, ResourcePlan, ResourceType, Verdict};
pub use builtin::{builtin, names as builtin_names};
pub use inspect::{inspect, Inspection};
pub use sandbox::{grant_overlap, resolve_path, PluginState, Sandbox};

use bindings::{credentials::CredentialsPluginPre, policy::PolicyPluginPre, provisioner::ProvisionerPluginPre};

/// How often the engine's epoch advances: the granularity of wall-time limits,
/// and how long a busy plugin runs before it lets other tasks on its thread go.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A change's name as plans, events and the state show it.
pub fn change_name(c: Change) -> &'static str {
    match c {
        Change::Create => "create",
        Change::Update => "update",
        Change::Replace => "replace",
        Change::Delete => "delete",
        Change::NoOp => "no-op",
    }
}

/// The JSON Schema `format` a provisioner gives an attribute whose value is
/// a file it reads (a template, a content source): `stackpipe watch` watches
/// those files, as it watches the pipeline and the plugins.
pub const INPUT_FILE_FORMAT: &str = "stackpipe:input-file";

/// The attributes of a resource type whose values name input files: a
/// string property with format [`INPUT_FILE_FORMAT`], or an array of them.
pub fn input_file_attributes(attributes_schema: &str) -> Vec<String> {
    let Ok(schema) = serde_json::from_str::<Value>(attributes_schema) else {
        return Vec::new();
    };
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let is_input = |v: &Value| v.get("format").and_then(Value::as_str) == Some(INPUT_FILE_FORMAT);
    props
        .iter()
        .filter(|(_, p)| is_input(p) || p.get("items").is_some_and(is_input))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Live plugin instances at once; calls beyond this wait for a free slot.
pub const MAX_INSTANCES: u32 = 256;

/// The most linear memory one instance can have, whatever its `memory_mb`.
const MAX_MEMORY_BYTES: usize = 4 << 30;

/// The largest plugin component file read. The builtin components are 1 to
/// 15 MB; one built with its debug info can be ten times that. Above this,
/// a path is a mistake (an image, a log) that would otherwise be read whole
/// into memory and handed to the compiler.
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// Outputs, states and plans larger than this are refused: one plugin must not
/// be able to fill the state store or the host's memory.
pub const MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;

/// Why a plugin could not be loaded or a call failed. Every message names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin `{plugin}`: unknown builtin `builtin:{name}` (the builtins are: {known})")]
    UnknownBuiltin { plugin: String, name: String, known: String },
    /// Its component file: not there, not a regular file, too large, unreadable.
    #[error("plugin `{plugin}`: {source}")]
    Read { plugin: String, source: crate::input::InputError },
    #[error("plugin `{plugin}` ({source_desc}) is not a valid WebAssembly component: {reason}")]
    NotAComponent { plugin: String, source_desc: String, reason: String },
    #[error(
        "plugin `{plugin}` ({source_desc}) has `kind = \"{kind}\"` but does not export `{expected_export}` (the `{expected_world}` world); {found}"
    )]
    WrongWorld {
        plugin: String,
        source_desc: String,
        kind: &'static str,
        expected_world: &'static str,
        expected_export: &'static str,
        found: String,
    },
    #[error("plugin `{plugin}` ({source_desc}) cannot be linked: {reason}")]
    Link { plugin: String, source_desc: String, reason: String },
    #[error("plugin `{plugin}`: cannot set up its sandbox: {reason}")]
    Sandbox { plugin: String, reason: String },
    #[error("plugin `{plugin}` {op}: {message}")]
    Failed { plugin: String, op: &'static str, message: String },
    #[error("plugin `{plugin}` {op}: timed out after {secs} s (its limit, `limits {{ timeout_s = {secs} }}`)")]
    Timeout { plugin: String, op: &'static str, secs: u64 },
    #[error("plugin `{plugin}` {op}: went over its memory limit of {mb} MB (`limits {{ memory_mb = {mb} }}`)")]
    OutOfMemory { plugin: String, op: &'static str, mb: u64 },
    #[error("plugin `{plugin}` {op}: crashed: {reason}")]
    Crashed { plugin: String, op: &'static str, reason: String },
    #[error("plugin `{plugin}` {op}: returned {size} bytes, more than the {max} allowed")]
    TooLarge { plugin: String, op: &'static str, size: usize, max: usize },
}

/// Who is calling, handed to every plugin call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    pub pipeline: String,
    pub environment: String,
    pub resource: String,
    pub run_id: String,
}

/// A credential from a resolver. Its fields are secret: `Debug` prints only
/// their names, and nothing in stackpipe logs or stores them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub fields: Vec<(String, String)>,
    pub expires_at: Option<u64>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("fields", &self.fields.iter().map(|(k, _)| format!("{k}=<redacted>")).collect::<Vec<_>>())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Credential {
    fn to_wit(&self) -> bindings::types::Credential {
        bindings::types::Credential { fields: self.fields.clone(), expires_at: self.expires_at }
    }
}

/// What `apply` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub state: Value,
    pub outputs: Value,
}

/// A policy's judgement of one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyVerdict {
    Allow,
    Deny(String),
    RequireApproval(String),
}

/// The engine, the linker and the cache, shared by every plugin of a process.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<PluginState>,
    cache: ArtifactCache,
    ticker_stop: Arc<AtomicBool>,
    /// One permit per instance slot of the pool.
    slots: Arc<tokio::sync::Semaphore>,
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl PluginHost {
    pub fn new(cache: ArtifactCache) -> wasmtime::Result<Self> {
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
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
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
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (stop, ticking) = (ticker_stop.clone(), engine.weak());
        std::thread::Builder::new().name("stackpipe-epoch".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match ticking.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => break,
                }
            }
        })?;
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_INSTANCES as usize));
        Ok(PluginHost { engine, linker, cache, ticker_stop, slots })
    }

    /// Waits for a free instance slot.
    async fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The bytes of a plugin source: a builtin, or a file relative to `base_dir`.
    pub fn read_source(plugin: &str, source: &PluginSource, base_dir: &std::path::Path) -> Result<Vec<u8>, PluginError> {
        match source {
            PluginSource::Builtin(name) => builtin(name).map(<[u8]>::to_vec).ok_or_else(|| PluginError::UnknownBuiltin {
                plugin: plugin.into(),
                name: name.clone(),
                known: builtin_names().collect::<Vec<_>>().join(", "),
            }),
            PluginSource::Path(p) => {
                let path = base_dir.join(p);
                crate::input::read_regular_file(&path, "plugin component", MAX_COMPONENT_BYTES)
                    .map_err(|source| PluginError::Read { plugin: plugin.into(), source })
            }
        }
    }

    /// Compiles (or loads from the cache) and links a component, after
    /// checking it exports the world its kind says.
    pub fn load(&self, spec: PluginLoad<'_>) -> Result<LoadedPlugin, PluginError> {
        let compiled = self.compile(spec.name, spec.source_desc, spec.bytes)?;
        self.link(spec, compiled)
    }

    /// The compiled component of `bytes`, from the artifact cache when it is there.
    pub(crate) fn compile(
        &self,
        name: &str,
        source_desc: &str,
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome), PluginError> {
        self.cache.load(&self.engine, bytes).map_err(|e| PluginError::NotAComponent {
            plugin: name.into(),
            source_desc: source_desc.into(),
            reason: not_a_component_reason(bytes, &e),
        })
    }

    /// Links a compiled component of `spec.bytes` for the world of `spec.kind`.
    pub(crate) fn link(
        &self,
        spec: PluginLoad<'_>,
        (component, cache): (Component, CacheOutcome),
    ) -> Result<LoadedPlugin, PluginError> {
        let PluginLoad { name, kind, source_desc, bytes, sandbox, limits, config } = spec;
        let err_plugin = || name.to_string();
        let world = World::of(kind);
        let exports: Vec<String> =
            component.component_type().exports(&self.engine).map(|(n, _)| n.to_string()).collect();
        if !exports.iter().any(|e| e == world.export) {
            let found = if exports.is_empty() {
                "it exports nothing".to_string()
            } else {
                format!("it exports {}", exports.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", "))
            };
            return Err(PluginError::WrongWorld {
                plugin: err_plugin(),
                source_desc: source_desc.into(),
                kind: kind.name(),
                expected_world: world.name,
                expected_export: world.export,
                found,
            });
        }
        let link_err = |e: wasmtime::Error| PluginError::Link {
            plugin: err_plugin(),
            source_desc: source_desc.into(),
            reason: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(link_err)?;
        let typed = match kind {
            PluginKind::Provisioner => Typed::Provisioner(ProvisionerPluginPre::new(pre).map_err(link_err)?),
            PluginKind::Credentials => Typed::Credentials(CredentialsPluginPre::new(pre).map_err(link_err)?),
            PluginKind::Policy => Typed::Policy(PolicyPluginPre::new(pre).map_err(link_err)?),
        };
        Ok(LoadedPlugin {
            name: Arc::from(name),
            kind,
            digest: digest(bytes),
            cache,
            exports,
            typed,
            sandbox,
            limits,
            config: config.to_string(),
        })
    }
}

/// What [`PluginHost::load`] needs to know about one plugin.
pub struct PluginLoad<'a> {
    pub name: &'a str,
    pub kind: PluginKind,
    /// `builtin:local` or the path, for messages.
    pub source_desc: &'a str,
    pub bytes: &'a [u8],
    pub sandbox: Sandbox,
    pub limits: Limits,
    pub config: &'a Value,
}

/// The world a kind of plugin implements and the interface it must export.
#[derive(Debug, Clone, Copy)]
pub struct World {
    pub name: &'static str,
    pub export: &'static str,
}

impl World {
    pub fn of(kind: PluginKind) -> World {
        match kind {
            PluginKind::Provisioner => {
                World { name: "provisioner-plugin", export: "stackpipe:plugin/provisioner@0.1.0" }
            }
            PluginKind::Credentials => {
                World { name: "credentials-plugin", export: "stackpipe:plugin/credentials@0.1.0" }
            }
            PluginKind::Policy => World { name: "policy-plugin", export: "stackpipe:plugin/policy@0.1.0" },
        }
    }
}

fn not_a_component_reason(bytes: &[u8], e: &wasmtime::Error) -> String {
    if !bytes.starts_with(b"\0asm") {
        return "the file does not start with the WebAssembly magic bytes `\\0asm`".into();
    }
    // Byte 4..8: version (1) and layer (0 = core module, 1 = component).
    if bytes.len() >= 8 && bytes[6..8] == [0, 0] {
        return "it is a core WebAssembly module, not a component (build for wasm32-wasip2, or wrap it with `wasm-tools component new`)".into();
    }
    format!("{e:#}")
}

enum Typed {
    Provisioner(ProvisionerPluginPre<PluginState>),
    Credentials(CredentialsPluginPre<PluginState>),
    Policy(PolicyPluginPre<PluginState>),
}

/// A compiled, linked plugin, ready to be called.
pub struct LoadedPlugin {
    name: Arc<str>,
    kind: PluginKind,
    digest: String,
    cache: CacheOutcome,
    exports: Vec<String>,
    typed: Typed,
    sandbox: Sandbox,
    limits: Limits,
    /// The plugin's `config { }`, as JSON, handed to every call in its context.
    config: String,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// Outcome of running one call in its store, before it is mapped to an error.
type Raw<T> = Result<wasmtime::Result<T>, tokio::time::error::Elapsed>;

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn kind(&self) -> PluginKind {
        self.kind
    }
    /// SHA-256 of the component.
    pub fn digest(&self) -> &str {
        &self.digest
    }
    /// Whether loading it used the compiled-artifact cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }
    pub fn exports(&self) -> &[String] {
        &self.exports
    }
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn store(&self, engine: &Engine) -> Result<Store<PluginState>, PluginError> {
        let memory = usize::try_from(self.limits.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        let state = PluginState::new(self.name.clone(), &self.sandbox, memory)
            .map_err(|e| PluginError::Sandbox { plugin: self.name.to_string(), reason: format!("{e:#}") })?;
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        // Every tick, a running plugin yields to the other tasks on its
        // thread; past the current call's deadline, it traps.
        store.data_mut().deadline = Instant::now() + self.timeout();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::msg("wall-time limit reached"))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.limits.timeout_s.max(1))
    }

    fn context(&self, ctx: &CallContext) -> bindings::types::Context {
        bindings::types::Context {
            pipeline: ctx.pipeline.clone(),
            environment: ctx.environment.clone(),
            resource: ctx.resource.clone(),
            run_id: ctx.run_id.clone(),
            config: self.config.clone(),
        }
    }

    /// Turns what happened to a call into its result or a clear error.
    fn finish<T>(&self, store: &Store<PluginState>, op: &'static str, raw: Raw<T>) -> Result<T, PluginError> {
        let plugin = self.name.to_string();
        let data = store.data();
        match raw {
            Err(_) => Err(PluginError::Timeout { plugin, op, secs: self.limits.timeout_s.max(1) }),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if data.limiter.hit {
                    return Err(PluginError::OutOfMemory { plugin, op, mb: self.limits.memory_mb });
                }
                let text = format!("{e:#}");
                if text.contains("wall-time limit reached") {
                    return Err(PluginError::Timeout { plugin, op, secs: self.limits.timeout_s.max(1) });
                }
                let mut reason = match e.downcast_ref::<wasmtime::Trap>() {
                    Some(wasmtime::Trap::StackOverflow) => "stack overflow (unbounded recursion?)".to_string(),
                    Some(wasmtime::Trap::UnreachableCodeReached) => "wasm trap: unreachable code reached".to_string(),
                    Some(t) => format!("wasm trap: {t}"),
                    None => first_line(&text),
                };
                let stderr = data.stderr();
                if let Some(panic) = panic_message(&stderr) {
                    reason = format!("panicked: {panic}");
                    // What the guest wrote before it panicked (a Python
                    // traceback, a log line) is often the real story.
                    let before: Vec<&str> = stderr.lines().take_while(|l| !l.contains("panicked at")).collect();
                    if !before.is_empty() {
                        reason = format!("{reason}; its stderr before that: {}", last_lines(&before.join("\n"), 5));
                    }
                } else if !stderr.is_empty() {
                    reason = format!("{reason}; its stderr: {}", last_lines(&stderr, 5));
                }
                Err(PluginError::Crashed { plugin, op, reason })
            }
        }
    }

    /// A plugin-returned error, with a note when the host refused it something.
    fn failed(&self, store: &Store<PluginState>, op: &'static str, message: String) -> PluginError {
        let denied = store.data().denied_http();
        let message = if denied.is_empty() {
            message
        } else {
            format!(
                "{message} (stackpipe refused HTTP to {}: not in the plugin's `allow {{ http = [...] }}`)",
                denied.join(", ")
            )
        };
        PluginError::Failed { plugin: self.name.to_string(), op, message }
    }

    fn check_size(&self, op: &'static str, size: usize) -> Result<(), PluginError> {
        if size > MAX_RESULT_BYTES {
            return Err(PluginError::TooLarge { plugin: self.name.to_string(), op, size, max: MAX_RESULT_BYTES });
        }
        Ok(())
    }

    fn provisioner_pre(&self, op: &'static str) -> Result<&ProvisionerPluginPre<PluginState>, PluginError> {
        match &self.typed {
            Typed::Provisioner(p) => Ok(p),
            _ => Err(self.not_this_kind(op, PluginKind::Provisioner)),
        }
    }

    fn not_this_kind(&self, op: &'static str, wanted: PluginKind) -> PluginError {
        PluginError::Failed {
            plugin: self.name.to_string(),
            op,
            message: format!("is a {} plugin, not a {} plugin", self.kind.name(), wanted.name()),
        }
    }
}

/// A provisioner instance for several calls: the operations of one stack
/// job share it rather than instantiating once per call. Each call has the
/// plugin's full wall-time limit; the memory limit covers the instance.
pub struct ProvisionerSession<'p> {
    plugin: &'p LoadedPlugin,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    store: Store<PluginState>,
    instance: bindings::provisioner::ProvisionerPlugin,
}

/// Runs one call on a session under the plugin's wall-time limit.
macro_rules! call {
    ($session:ident, $op:literal, |$guest:ident, $store:ident| $body:expr) => {{
        let plugin = $session.plugin;
        $session.store.data_mut().deadline = Instant::now() + plugin.timeout();
        let raw = {
            let $store = &mut $session.store;
            let $guest = $session.instance.stackpipe_plugin_provisioner();
            tokio::time::timeout(plugin.timeout() + EPOCH_TICK * 10, $body).await
        };
        plugin.finish(&$session.store, $op, raw)?
    }};
}

impl LoadedPlugin {
    /// Instantiates a provisioner for one or more calls.
    pub async fn session(&self, host: &PluginHost) -> Result<ProvisionerSession<'_>, PluginError> {
        let pre = self.provisioner_pre("instantiate")?;
        let slot = host.slot().await;
        let mut store = self.store(&host.engine)?;
        let raw = tokio::time::timeout(self.timeout(), pre.instantiate_async(&mut store)).await;
        let instance = self.finish(&store, "instantiate", raw)?;
        Ok(ProvisionerSession { plugin: self, _slot: slot, store, instance })
    }

    /// The resource types a provisioner declares.
    pub async fn resource_types(&self, host: &PluginHost) -> Result<Vec<ResourceType>, PluginError> {
        self.session(host).await?.resource_types().await
    }

    /// Resolves a credential (credentials plugins).
    pub async fn resolve(&self, host: &PluginHost, ctx: &CallContext, provider: &str, config: &Value) -> Result<Credential, PluginError> {
        let Typed::Credentials(pre) = &self.typed else {
            return Err(self.not_this_kind("resolve", PluginKind::Credentials));
        };
        let (c, config) = (self.context(ctx), config.to_string());
        let _slot = host.slot().await;
        let mut store = self.store(&host.engine)?;
        let raw = tokio::time::timeout(self.timeout() + EPOCH_TICK * 10, async {
            let i = pre.instantiate_async(&mut store).await?;
            i.stackpipe_plugin_credentials().call_resolve(&mut store, &c, provider, &config).await
        })
        .await;
        let out = self.finish(&store, "resolve", raw)?;
        let cred = out.map_err(|m| self.failed(&store, "resolve", m))?;
        Ok(Credential { fields: cred.fields, expires_at: cred.expires_at })
    }

    /// Judges one planned change (policy plugins).
    pub async fn evaluate(&self, host: &PluginHost, ctx: &CallContext, input: &Value) -> Result<PolicyVerdict, PluginError> {
        let Typed::Policy(pre) = &self.typed else {
            return Err(self.not_this_kind("evaluate", PluginKind::Policy));
        };
        let (c, input) = (self.context(ctx), input.to_string());
        let _slot = host.slot().await;
        let mut store = self.store(&host.engine)?;
        let raw = tokio::time::timeout(self.timeout() + EPOCH_TICK * 10, async {
            let i = pre.instantiate_async(&mut store).await?;
            i.stackpipe_plugin_policy().call_evaluate(&mut store, &c, &input).await
        })
        .await;
        Ok(match self.finish(&store, "evaluate", raw)? {
            Verdict::Allow => PolicyVerdict::Allow,
            Verdict::Deny(r) => PolicyVerdict::Deny(r),
            Verdict::RequireApproval(r) => PolicyVerdict::RequireApproval(r),
        })
    }

    fn json(&self, store: &Store<PluginState>, op: &'static str, text: &str) -> Result<Value, PluginError> {
        serde_json::from_str(text)
            .map_err(|e| self.failed(store, op, format!("returned invalid JSON ({e}): {}", truncate(text, 120))))
    }
}

impl ProvisionerSession<'_> {
    pub fn plugin(&self) -> &LoadedPlugin {
        self.plugin
    }

    pub async fn resource_types(&mut self) -> Result<Vec<ResourceType>, PluginError> {
        let s = self;
        Ok(call!(s, "resource-types", |g, store| g.call_resource_types(store)))
    }

    pub async fn validate(&mut self, ctx: &CallContext, kind: &str, desired: &Value) -> Result<Vec<PluginDiagnostic>, PluginError> {
        let (c, desired) = (self.plugin.context(ctx), desired.to_string());
        let s = self;
        Ok(call!(s, "validate", |g, store| g.call_validate(store, &c, kind, &desired)))
    }

    /// Refreshes a resource: its state and outputs now, or none when it is
    /// gone. With no `state`, asks the provisioner to find what an
    /// interrupted apply of `desired` for this context created.
    pub async fn read(
        &mut self,
        ctx: &CallContext,
        kind: &str,
        state: Option<&Value>,
        desired: &Value,
        cred: Option<&Credential>,
    ) -> Result<Option<Applied>, PluginError> {
        let c = self.plugin.context(ctx);
        let (state, desired, cred) = (state.map(Value::to_string), desired.to_string(), cred.map(Credential::to_wit));
        let s = self;
        let out = call!(s, "read", |g, store| g.call_read(store, &c, kind, state.as_ref(), &desired, cred.as_ref()));
        match out {
            Ok(None) => Ok(None),
            Ok(Some(applied)) => s.decode("read", applied).map(Some),
            Err(m) => Err(s.plugin.failed(&s.store, "read", m)),
        }
    }

    pub async fn plan(
        &mut self,
        ctx: &CallContext,
        kind: &str,
        prior: Option<&Value>,
        desired: &Value,
        cred: Option<&Credential>,
    ) -> Result<ResourcePlan, PluginError> {
        let c = self.plugin.context(ctx);
        let (prior, desired, cred) = (prior.map(Value::to_string), desired.to_string(), cred.map(Credential::to_wit));
        let s = self;
        let out = call!(s, "plan", |g, store| g.call_plan(store, &c, kind, prior.as_ref(), &desired, cred.as_ref()));
        let plan = out.map_err(|m| s.plugin.failed(&s.store, "plan", m))?;
        let size: usize = plan
            .changes
            .iter()
            .map(|ch| ch.path.len() + ch.before.as_ref().map_or(0, String::len) + ch.after.as_ref().map_or(0, String::len))
            .sum();
        s.plugin.check_size("plan", size)?;
        Ok(plan)
    }

    pub async fn apply(
        &mut self,
        ctx: &CallContext,
        kind: &str,
        prior: Option<&Value>,
        desired: &Value,
        cred: Option<&Credential>,
    ) -> Result<Applied, PluginError> {
        let c = self.plugin.context(ctx);
        let (prior, desired, cred) = (prior.map(Value::to_string), desired.to_string(), cred.map(Credential::to_wit));
        let s = self;
        let out = call!(s, "apply", |g, store| g.call_apply(store, &c, kind, prior.as_ref(), &desired, cred.as_ref()));
        let applied = out.map_err(|m| s.plugin.failed(&s.store, "apply", m))?;
        s.decode("apply", applied)
    }

    /// A returned state and outputs: bounded in size, and JSON.
    fn decode(&self, op: &'static str, applied: bindings::types::Applied) -> Result<Applied, PluginError> {
        self.plugin.check_size(op, applied.state.len() + applied.outputs.len())?;
        Ok(Applied {
            state: self.plugin.json(&self.store, op, &applied.state)?,
            outputs: self.plugin.json(&self.store, op, &applied.outputs)?,
        })
    }

    pub async fn destroy(&mut self, ctx: &CallContext, kind: &str, state: &Value, cred: Option<&Credential>) -> Result<(), PluginError> {
        let (c, state, cred) = (self.plugin.context(ctx), state.to_string(), cred.map(Credential::to_wit));
        let s = self;
        let out = call!(s, "destroy", |g, store| g.call_destroy(store, &c, kind, &state, cred.as_ref()));
        out.map_err(|m| s.plugin.failed(&s.store, "destroy", m))
    }
}

impl bindings::host::Host for PluginState {
    fn log(&mut self, ctx: bindings::types::Context, level: bindings::types::Level, message: String) {
        // A plugin may log what it was given: secrets never reach the log.
        let message = crate::secrets::redact_all(&message);
        use bindings::types::Level;
        let plugin = &*self.plugin;
        let (p, e, r, run) = (&ctx.pipeline, &ctx.environment, &ctx.resource, &ctx.run_id);
        let message = truncate(&message, 4096);
        match level {
            Level::Trace => tracing::trace!(plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
            Level::Debug => tracing::debug!(plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
            Level::Info => tracing::info!(plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
            Level::Warn => tracing::warn!(plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
            Level::Error => tracing::error!(plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
        }
    }
}

impl bindings::types::Host for PluginState {}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// The message of a Rust panic, from what the guest printed to stderr.
fn panic_message(stderr: &str) -> Option<String> {
    let line = stderr.lines().find(|l| l.contains("panicked at"))?;
    let idx = stderr.lines().position(|l| l == line)?;
    // Rust prints `thread '<name>' panicked at src/lib.rs:3:5:` then the message.
    let message = stderr.lines().nth(idx + 1).unwrap_or(line);
    Some(message.trim().to_string())
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_file_attributes_are_the_ones_with_the_input_file_format() {
        let schema = r#"{"type":"object","properties":{
            "path":{"type":"string"},
            "source":{"type":"string","format":"stackpipe:input-file"},
            "includes":{"type":"array","items":{"type":"string","format":"stackpipe:input-file"}},
            "when":{"type":"string","format":"date-time"}}}"#;
        assert_eq!(input_file_attributes(schema), ["source", "includes"]);
        assert!(input_file_attributes("{}").is_empty());
        assert!(input_file_attributes("not json").is_empty());
    }
}
