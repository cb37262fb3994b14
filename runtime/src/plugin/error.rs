//! [`PluginError`]: why a plugin could not be loaded or a call to it failed.

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
