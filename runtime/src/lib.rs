//! stackpipe's engine: loading pipelines (and checking them against their
//! provisioners' schemas), the plugin host, runs (the scheduler, stack jobs,
//! gates), the state store, and the control socket through which other
//! terminals watch and steer a run.

pub mod control;
pub mod input;
pub mod os_user;
pub mod pipeline;
pub mod plugin;
pub mod run;
pub mod secrets;
pub mod service;
/// The state store, a crate of its own (no wasm, no tokio): see `stackpipe-state`.
pub use stackpipe_state as state;
pub mod state_location;
pub mod type_check;
pub mod watch;
