//! The host's log (`host.log`): tagged by stackpipe with the plugin and the
//! call's context. `log::info(&ctx, "created")`; `&Ctx` works too.
//!
//! Never log a credential or a sensitive attribute value.

use crate::bindings::provisioner::stackpipe::plugin::host;
use crate::types::{Context, Level};

/// Writes `message` at `level`. Natively (unit tests) it prints to stderr
/// instead: there is no host to call.
pub fn log(ctx: &Context, level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    host::log(ctx, level, message);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (ctx, host::log as fn(&Context, Level, &str));
        eprintln!("[{level:?}] {message}");
    }
}

pub fn trace(ctx: &Context, message: &str) {
    log(ctx, Level::Trace, message)
}

pub fn debug(ctx: &Context, message: &str) {
    log(ctx, Level::Debug, message)
}

pub fn info(ctx: &Context, message: &str) {
    log(ctx, Level::Info, message)
}

pub fn warn(ctx: &Context, message: &str) {
    log(ctx, Level::Warn, message)
}

pub fn error(ctx: &Context, message: &str) {
    log(ctx, Level::Error, message)
}
