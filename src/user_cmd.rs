//! `stackpipe user`: the users of a team server, managed on its host (the
//! users file in the state directory; see `stackpipe_server::users`).

use clap::{Args, Subcommand};
use stackpipe_server::users::UsersHome;
use stackpipe_server::{Role, Users, UsersError};

use crate::run_cmd::StateArgs;
use crate::{EXIT_FAILED, EXIT_INVALID};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user; their token is printed once, alone, on the last line of stdout.
    Add(UserAddArgs),
    /// List the users: name, role, pipelines (never a token).
    List(UserListArgs),
    /// Remove a user: their token stops working.
    Remove(UserNameArgs),
    /// Give a user a new token (the old one stops working), printed on the last line.
    Token(UserNameArgs),
}

#[derive(Args)]
pub struct UserAddArgs {
    /// Lower-case letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// viewer: reads; operator: also runs and decides gates; admin: also unlocks, deletes, manages users.
    #[arg(long, value_parser = parse_role)]
    pub role: Role,
    /// Limit the role to this pipeline (repeatable; default: every pipeline).
    #[arg(long = "pipeline", value_name = "PIPELINE")]
    pub pipelines: Vec<String>,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Args)]
pub struct UserListArgs {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Args)]
pub struct UserNameArgs {
    pub name: String,
    #[command(flatten)]
    pub state: StateArgs,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::named(s).ok_or_else(|| format!("`{s}` is not a role: viewer, operator or admin"))
}

fn users_error(e: UsersError) -> u8 {
    eprintln!("error: {e}");
    match e {
        UsersError::Io { .. } | UsersError::Random(_) => EXIT_FAILED,
        _ => EXIT_INVALID,
    }
}

fn pipelines_of(pipelines: &[String]) -> String {
    if pipelines.is_empty() {
        "every pipeline".into()
    } else {
        format!("pipeline{} {}", if pipelines.len() == 1 { "" } else { "s" }, pipelines.join(", "))
    }
}

/// Where the users of the state `--state` names are kept.
fn home(state: &crate::run_cmd::StateArgs) -> Result<UsersHome, u8> {
    use stackpipe_runtime::state_location::StateLocation;
    match state.location_for(None) {
        StateLocation::Dir(dir) => Ok(UsersHome::Dir(dir)),
        StateLocation::Postgres(url) => stackpipe_state_postgres::PostgresStore::connect(&url)
            .map(|store| UsersHome::Shared(std::sync::Arc::new(store)))
            .map_err(crate::run_cmd::state_error),
    }
}

pub fn run(cmd: UserCommand) -> Result<(), u8> {
    match cmd {
        UserCommand::Add(a) => {
            let (user, token) = Users::add(&home(&a.state)?, &a.name, a.role, &a.pipelines).map_err(users_error)?;
            println!("added user `{}`: {} of {}; their token, shown only now:", user.name, user.role, pipelines_of(&user.pipelines));
            println!("{token}");
            Ok(())
        }
        UserCommand::List(a) => {
            let users = Users::load(&home(&a.state)?).map_err(users_error)?;
            if a.json {
                let doc: Vec<_> = users
                    .list()
                    .iter()
                    .map(|u| serde_json::json!({ "name": u.name, "role": u.role, "pipelines": u.pipelines, "created_ms": u.created_ms, "token_ms": u.token_ms }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                return Ok(());
            }
            if users.list().is_empty() {
                println!("no users (add one with `stackpipe user add NAME --role viewer|operator|admin`)");
            }
            let width = users.list().iter().map(|u| u.name.len()).max().unwrap_or(0);
            for u in users.list() {
                println!("{:width$}  {:8}  {}", u.name, u.role.name(), pipelines_of(&u.pipelines));
            }
            Ok(())
        }
        UserCommand::Remove(a) => {
            let user = Users::remove(&home(&a.state)?, &a.name).map_err(users_error)?;
            println!("removed user `{}`: their token no longer works", user.name);
            Ok(())
        }
        UserCommand::Token(a) => {
            let token = Users::rotate(&home(&a.state)?, &a.name).map_err(users_error)?;
            println!("a new token for `{}` (the old one no longer works), shown only now:", a.name);
            println!("{token}");
            Ok(())
        }
    }
}
