//! stackpipe's engine. For now: reading a pipeline from disk. Runs, the
//! scheduler, stack jobs, the plugin host and the state store land here.

pub mod pipeline;
