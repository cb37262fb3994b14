//! The plugin host: loads WebAssembly components, checks they export the
//! world their `kind` says, and calls them inside a sandbox with limits.
//!
//! One [`PluginHost`] per process holds the engine, the linker and the
//! instance pool (`host.rs`), with a thread that advances the engine's epoch
//! so that a call's wall-time limit holds (`epoch.rs`). [`PluginHost::load`]
//! compiles a component, or takes it from the [`ArtifactCache`], and links it
//! into a [`LoadedPlugin`], an `InstancePre` (`load.rs`, `loaded.rs`).
//!
//! Every instance gets a fresh store whose WASI context holds only the
//! plugin's grants (`sandbox.rs`), so nothing one instance did (a crash, a
//! limit hit, what it wrote in memory) reaches the next. A provisioner's
//! instance can serve several calls, through a [`ProvisionerSession`]
//! (`session.rs`): a stack job's operations share one. A resolver's or a
//! policy's serves one call. How a call ended becomes its result or a
//! [`PluginError`] (`outcome.rs`, `error.rs`).
//!
//! Besides WASI, a plugin can import stackpipe's `host` interface (`log.rs`:
//! its lines go where the call's caller says), and a provisioner the `files`
//! interface (`files.rs`: a granted file's permission bits); its
//! monotonic-clock sleeps end on time (`fine_clock.rs`). The rest: the
//! generated bindings, the builtin components, `stackpipe plugin inspect`,
//! the types calls trade in (`values.rs`) and what schemas say (`schema.rs`).

mod artifact_cache;
pub mod bindings;
mod builtin;
mod epoch;
mod error;
mod files;
mod fine_clock;
mod host;
mod inspect;
mod load;
mod loaded;
mod log;
mod outcome;
mod sandbox;
mod schema;
mod session;
mod values;

pub use artifact_cache::{digest, ArtifactCache, CacheOutcome};
pub use bindings::types::{AttributeChange, Change, Diagnostic as PluginDiagnostic, ResourcePlan, ResourceType, Verdict};
pub use builtin::{builtin, names as builtin_names};
pub use error::PluginError;
pub use host::{PluginHost, MAX_INSTANCES};
pub use inspect::{inspect, Inspection};
pub use load::{PluginLoad, World, MAX_COMPONENT_BYTES};
pub use loaded::LoadedPlugin;
pub use log::{PluginLine, PluginLog, PluginLogSink, PLUGIN_LOG_TARGET};
pub use outcome::MAX_RESULT_BYTES;
pub use sandbox::{grant_overlap, resolve_path, PluginState, Sandbox, WORKSPACES_DIR};
pub use schema::{input_file_attributes, kept_on_update_outputs, INPUT_FILE_FORMAT, KEPT_ON_UPDATE};
pub use session::ProvisionerSession;
pub use values::{change_name, Applied, CallContext, Credential, PolicyVerdict};
