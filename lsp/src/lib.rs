//! `stackpipe lsp`: a language server for `.pipeline` files, over stdio,
//! on lsp-server (rust-analyzer's transport).
//!
//! Every change re-checks the whole file as `stackpipe check` does (parse,
//! compile, and the checks against the provisioners' own schemas), and
//! publishes each diagnostic with its other labels and its help as related
//! information. Hover shows a resource type's description and schema
//! (asked of the plugin, as `plugin inspect` does), a var's default and
//! per-environment values, and the comments above a declaration; go to
//! definition, references and rename work on resources, vars, plugins,
//! environments and outputs; completion offers resource types, attribute
//! names from the schema, a resource's outputs after `name.`, vars and
//! environments; the outline lists the declarations; formatting is
//! `stackpipe fmt`'s.
//!
//! - `index.rs`: what each name is (definitions and references).
//! - `analysis.rs`: one file, checked.
//! - `schemas.rs`: plugins' resource types, loaded on a thread of their own.
//! - `features.rs`: the answers. `server.rs`: the protocol loop.

pub mod analysis;
pub mod features;
pub mod index;
pub mod schemas;
pub mod server;

use lsp_server::Connection;

#[derive(Debug, thiserror::Error)]
pub enum LspError {
    #[error("the client went away")]
    Disconnected,
    #[error("protocol error: {0}")]
    Protocol(#[from] lsp_server::ProtocolError),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Serves one client on stdin and stdout until it shuts the server down.
/// `load_plugins`: ask the plugins for their schemas (off only where a test
/// must not load them).
pub fn serve_stdio(load_plugins: bool) -> Result<(), LspError> {
    let (connection, io_threads) = Connection::stdio();
    serve(connection, load_plugins)?;
    io_threads.join()?;
    Ok(())
}

/// Serves one client on `connection`: the initialize handshake, then
/// every message until shutdown.
pub fn serve(connection: Connection, load_plugins: bool) -> Result<(), LspError> {
    let capabilities = serde_json::to_value(server::capabilities())?;
    let info = serde_json::json!({
        "capabilities": capabilities,
        "serverInfo": { "name": "stackpipe", "version": env!("CARGO_PKG_VERSION") },
    });
    let (id, _params) = connection.initialize_start()?;
    connection.initialize_finish(id, info)?;
    server::Server::new(connection, schemas::Schemas::start(load_plugins)).run()
}
