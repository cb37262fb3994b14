//! The `host` interface stackpipe gives every plugin: `log`. Every line has
//! the secrets this process has seen redacted and is bounded in size. Its
//! caller decides where it goes ([`PluginLog`], in the call's
//! [`CallContext`](super::CallContext)): a run's stack job keeps the lines of
//! its calls in its log, tagged with the operation in flight. Lines of calls
//! made outside a run (`check`, `plugin inspect`) go to stackpipe's tracing.
//!
//! What a job keeps: `info`, `warn` and `error` lines always; `debug` and
//! `trace` lines only when `STACKPIPE_LOG` asks for them (`STACKPIPE_LOG=debug`,
//! or `STACKPIPE_LOG=stackpipe::plugin=trace` for plugin lines alone). Every
//! line, kept or not, is also a `debug` event of the tracing target
//! `stackpipe::plugin`, so that `STACKPIPE_LOG=debug` shows them all on
//! stderr without a plugin's warning ever being printed there by default.

use std::fmt;
use std::sync::Arc;

use super::bindings::{self, types::Level};
use super::outcome::truncate;
use super::PluginState;
use crate::state::LogLevel;

/// The longest log message kept from a plugin; the rest is cut off.
const MAX_LOG_MESSAGE_BYTES: usize = 4096;

/// The tracing target of plugin log lines (for `STACKPIPE_LOG`).
pub const PLUGIN_LOG_TARGET: &str = "stackpipe::plugin";

/// One line a plugin logged: redacted and bounded already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLine {
    pub plugin: Arc<str>,
    pub level: LogLevel,
    pub message: String,
}

/// Where the lines a plugin logs during a call go.
pub trait PluginLogSink: Send + Sync {
    fn line(&self, line: PluginLine);
}

/// The sink of a call's log lines: none (stackpipe's tracing) or a caller's.
/// Two are equal when they are the same sink.
#[derive(Clone, Default)]
pub struct PluginLog(Option<Arc<dyn PluginLogSink>>);

impl PluginLog {
    pub fn to(sink: Arc<dyn PluginLogSink>) -> PluginLog {
        PluginLog(Some(sink))
    }
}

impl fmt::Debug for PluginLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "PluginLog(to a sink)" } else { "PluginLog(tracing)" })
    }
}

impl PartialEq for PluginLog {
    fn eq(&self, other: &PluginLog) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for PluginLog {}

fn level_of(level: Level) -> LogLevel {
    match level {
        Level::Trace => LogLevel::Trace,
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    }
}

/// Whether a job keeps a line of `level`: `debug` and `trace` only when
/// `STACKPIPE_LOG` enables them for plugin lines.
pub fn kept(level: LogLevel) -> bool {
    match level {
        LogLevel::Info | LogLevel::Warn | LogLevel::Error => true,
        LogLevel::Debug => tracing::enabled!(target: PLUGIN_LOG_TARGET, tracing::Level::DEBUG),
        LogLevel::Trace => tracing::enabled!(target: PLUGIN_LOG_TARGET, tracing::Level::TRACE),
    }
}

impl bindings::host::Host for PluginState {
    fn log(&mut self, ctx: bindings::types::Context, level: Level, message: String) {
        // A plugin may log what it was given: secrets never reach the log.
        let message = crate::secrets::redact_all(&message);
        let message = truncate(&message, MAX_LOG_MESSAGE_BYTES).to_string();
        let plugin = &*self.plugin;
        let (p, e, r, run) = (&ctx.pipeline, &ctx.environment, &ctx.resource, &ctx.run_id);
        let level = level_of(level);
        let Some(sink) = &self.log.0 else {
            match level {
                LogLevel::Trace => tracing::trace!(target: PLUGIN_LOG_TARGET, plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
                LogLevel::Debug => tracing::debug!(target: PLUGIN_LOG_TARGET, plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
                LogLevel::Info => tracing::info!(target: PLUGIN_LOG_TARGET, plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
                LogLevel::Warn => tracing::warn!(target: PLUGIN_LOG_TARGET, plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
                LogLevel::Error => tracing::error!(target: PLUGIN_LOG_TARGET, plugin, pipeline = p, environment = e, resource = r, run = run, "{message}"),
            }
            return;
        };
        tracing::debug!(target: PLUGIN_LOG_TARGET, plugin, level = level.name(), pipeline = p, environment = e, resource = r, run = run, "{message}");
        if kept(level) {
            sink.line(PluginLine { plugin: self.plugin.clone(), level, message });
        }
    }
}

/// The `types` interface has no functions; its `Host` is empty.
impl bindings::types::Host for PluginState {}
