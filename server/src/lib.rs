//! `stackpipe serve`, the team server (`../shared/spec/team-platform.md`):
//! its users, their tokens and roles (seed 004: view, execute, delete), the
//! HTTP API over the same run library and control protocol as the CLI,
//! the runs it runs and queues, and its audit log.
//!
//! | file      | what it holds                                           |
//! |-----------|---------------------------------------------------------|
//! | `users`   | [`Users`]: users, roles, tokens (hashed)                 |
//! | `serve`   | [`Server`]: binding, TLS, connections, shutdown          |
//! | `api`     | the `/api/v1` routes and their OpenAPI document          |
//! | `runs`    | [`Runs`]: runs in progress, the queue, the event stream  |
//! | `catalog` | [`Catalog`]: the `--pipelines` directory                 |
//! | `audit`   | [`AuditLog`]: every mutating request                     |
//! | `console` | the web console's page and files (`stackpipe-console`)   |
//! | `layout`  | [`layout::DagLayout`]: where the console draws each node |

pub mod api;
pub mod audit;
pub mod catalog;
pub mod commit_status;
pub mod console;
pub mod layout;
pub mod runs;
pub mod serve;
pub mod services;
pub mod users;
pub mod webhook;

pub use audit::{AuditEntry, AuditLog};
pub use catalog::Catalog;
pub use runs::Runs;
pub use serve::{ServeError, ServeOptions, Server};
pub use users::{Role, Token, User, Users, UsersError, USERS_FILE};

/// A pipeline's load error as text: its diagnostics rendered without
/// colour (what an API answer carries).
pub fn render_load_error(e: &stackpipe_runtime::pipeline::LoadError) -> String {
    match e {
        stackpipe_runtime::pipeline::LoadError::Invalid(diags) => {
            let theme = miette::GraphicalTheme::unicode_nocolor();
            let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false);
            diags.render_with(&handler)
        }
        e => e.to_string(),
    }
}
