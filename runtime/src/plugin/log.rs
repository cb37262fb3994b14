//! The `host` interface stackpipe gives every plugin: `log`, into stackpipe's
//! own tracing, with secrets redacted and each message bounded.

use super::bindings::{self, types::Level};
use super::outcome::truncate;
use super::PluginState;

/// The longest log message kept from a plugin; the rest is cut off.
const MAX_LOG_MESSAGE_BYTES: usize = 4096;

impl bindings::host::Host for PluginState {
    fn log(&mut self, ctx: bindings::types::Context, level: Level, message: String) {
        // A plugin may log what it was given: secrets never reach the log.
        let message = crate::secrets::redact_all(&message);
        let plugin = &*self.plugin;
        let (p, e, r, run) = (&ctx.pipeline, &ctx.environment, &ctx.resource, &ctx.run_id);
        let message = truncate(&message, MAX_LOG_MESSAGE_BYTES);
        match level {
            Level::Trace => tracing::trace!(plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
            Level::Debug => tracing::debug!(plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
            Level::Info => tracing::info!(plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
            Level::Warn => tracing::warn!(plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
            Level::Error => tracing::error!(plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
        }
    }
}

/// The `types` interface has no functions; its `Host` is empty.
impl bindings::types::Host for PluginState {}
