//! A loaded plugin's error mapping: what happened to a call (it ran out of
//! time or memory, trapped, panicked, failed by its own account, returned
//! too much or not JSON) turned into its result or a [`PluginError`] that
//! names the plugin and the operation.

use serde_json::Value;
use wasmtime::Store;

use stackpipe_dsl::ast::PluginKind;

use super::epoch::WallTimeLimit;
use super::{LoadedPlugin, PluginError, PluginState};

/// Outputs, states and plans larger than this are refused: one plugin must not
/// be able to fill the state store or the host's memory.
pub const MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;

/// Outcome of running one call in its store, before it is mapped to an error.
pub(super) type Raw<T> = Result<wasmtime::Result<T>, tokio::time::error::Elapsed>;

impl LoadedPlugin {
    /// Turns what happened to a call into its result or a clear error.
    pub(super) fn finish<T>(&self, store: &Store<PluginState>, op: &'static str, raw: Raw<T>) -> Result<T, PluginError> {
        let plugin = self.name.to_string();
        match raw {
            Err(_) => Err(PluginError::Timeout { plugin, op, secs: self.limits.timeout_s.max(1) }),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) if store.data().limiter.hit => {
                Err(PluginError::OutOfMemory { plugin, op, mb: self.limits.memory_mb })
            }
            Ok(Err(e)) if e.is::<WallTimeLimit>() => {
                Err(PluginError::Timeout { plugin, op, secs: self.limits.timeout_s.max(1) })
            }
            Ok(Err(e)) => Err(PluginError::Crashed { plugin, op, reason: crash_reason(&e, &store.data().stderr()) }),
        }
    }

    /// A plugin-returned error, with a note when the host refused it something.
    pub(super) fn failed(&self, store: &Store<PluginState>, op: &'static str, message: String) -> PluginError {
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

    /// A call of a function this plugin's world does not have.
    pub(super) fn not_this_kind(&self, op: &'static str, wanted: PluginKind) -> PluginError {
        PluginError::Failed {
            plugin: self.name.to_string(),
            op,
            message: format!("is a {} plugin, not a {} plugin", self.kind.name(), wanted.name()),
        }
    }

    pub(super) fn check_size(&self, op: &'static str, size: usize) -> Result<(), PluginError> {
        if size > MAX_RESULT_BYTES {
            return Err(PluginError::TooLarge { plugin: self.name.to_string(), op, size, max: MAX_RESULT_BYTES });
        }
        Ok(())
    }

    /// A returned JSON text, parsed.
    pub(super) fn json(&self, store: &Store<PluginState>, op: &'static str, text: &str) -> Result<Value, PluginError> {
        serde_json::from_str(text)
            .map_err(|e| self.failed(store, op, format!("returned invalid JSON ({e}): {}", truncate(text, 120))))
    }
}

/// Why a call crashed: the trap, or the panic the guest printed, with what
/// else it wrote to stderr.
fn crash_reason(e: &wasmtime::Error, stderr: &str) -> String {
    let reason = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => "stack overflow (unbounded recursion?)".to_string(),
        Some(wasmtime::Trap::UnreachableCodeReached) => "wasm trap: unreachable code reached".to_string(),
        Some(t) => format!("wasm trap: {t}"),
        None => first_line(&format!("{e:#}")),
    };
    if let Some(panic) = panic_message(stderr) {
        let reason = format!("panicked: {panic}");
        // What the guest wrote before it panicked (a Python
        // traceback, a log line) is often the real story.
        let before: Vec<&str> = stderr.lines().take_while(|l| !l.contains("panicked at")).collect();
        if before.is_empty() {
            return reason;
        }
        return format!("{reason}; its stderr before that: {}", last_lines(&before.join("\n"), 5));
    }
    if stderr.is_empty() {
        return reason;
    }
    format!("{reason}; its stderr: {}", last_lines(stderr, 5))
}

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

/// At most `max` bytes of `s`, cut at a character boundary.
pub(super) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
