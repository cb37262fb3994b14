//! The parts of `stackpipe serve` (the team server) that the command line
//! uses on the server's host: the users, their tokens and their roles
//! (seed 004: view, execute, delete; `../shared/spec/team-platform.md`).
//! The HTTP API builds on [`Users::authenticate`] and [`Role`].

pub mod users;

pub use users::{Role, Token, User, Users, UsersError, USERS_FILE};
