//! stackpipe's engine: loading pipelines, the plugin host, and (soon) runs,
//! the scheduler, stack jobs and the state store.

pub mod pipeline;
pub mod plugin;
pub mod state;
pub mod run;
