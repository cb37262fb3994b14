//! The command line as a team server's client: `--server URL` (or
//! `STACKPIPE_SERVER`), the token it sends (`STACKPIPE_TOKEN`, or the one
//! `stackpipe login URL` saved for that server), `login` and `logout`, and
//! how the server's answers become exit codes: a refusal (4xx: no or a bad
//! token, a role that is not enough, a run not in progress, a name that is
//! not there) is an invalid use, 2, with the server's message, as local
//! mode's; a server that fails or cannot be reached is 1.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{json, Value};
use stackpipe_runtime::control::{normalize_url, Reach, ServerClient, ServerError};
use stackpipe_runtime::state::StateStore;

use crate::run_cmd::{state_error, StateArgs};
use crate::{EXIT_FAILED, EXIT_INVALID};

/// Names the team server the commands ask when `--server` is not given.
pub const SERVER_ENV: &str = "STACKPIPE_SERVER";
/// The token sent to the server, before any `stackpipe login` saved.
pub const TOKEN_ENV: &str = "STACKPIPE_TOKEN";

#[derive(Args, Clone, Default)]
pub struct ServerArgs {
    /// Ask a team server (`stackpipe serve`) instead of a local state: `http(s)://HOST:PORT` [or
    /// $STACKPIPE_SERVER]. Its token is $STACKPIPE_TOKEN, or the one `stackpipe login URL` saved.
    #[arg(long = "server", value_name = "URL", conflicts_with = "location")]
    pub server: Option<String>,
}

impl ServerArgs {
    /// The server to ask: `--server`, else `STACKPIPE_SERVER` unless a
    /// local `--state` is given.
    pub fn url(&self, state: &StateArgs) -> Option<String> {
        if let Some(s) = &self.server {
            return Some(s.clone());
        }
        if state.location.is_some() {
            return None;
        }
        std::env::var(SERVER_ENV).ok().filter(|s| !s.trim().is_empty())
    }

    /// The server's client with its token, when a server is to be asked;
    /// why not, printed, as an exit code.
    pub fn client(&self, state: &StateArgs) -> Result<Option<ServerClient>, u8> {
        let Some(url) = self.url(state) else { return Ok(None) };
        let url = normalize_url(&url).map_err(|e| {
            eprintln!("error: {e}");
            EXIT_INVALID
        })?;
        let token = token_for(&url)?;
        ServerClient::new(&url, &token).map(Some).map_err(|e| server_error(e, &url))
    }

    /// The state directory, or the server, to ask (see `Reach`).
    pub fn reach(&self, state: &StateArgs) -> Result<Reach, u8> {
        match self.client(state)? {
            Some(client) => Ok(Reach::Server(client)),
            None => state.reach(None),
        }
    }

    /// The resources and locks to read: the local state's (see
    /// `StateArgs::open_resources`), or the server's, as a copy in memory.
    pub fn open_resources(&self, state: &StateArgs, pipeline: Option<&Path>, or_empty: bool) -> Result<StateStore, u8> {
        let Some(client) = self.client(state)? else { return state.open_resources(pipeline, or_empty) };
        let doc = client.resources().map_err(|e| server_error(e, client.url()))?;
        let dir = state.given_dir().unwrap_or_else(|| PathBuf::from(".stackpipe"));
        StateStore::replica(&dir, &doc.resources, &doc.locks).map_err(state_error)
    }
}

/// Prints why the server did not give what was asked; its exit code.
pub fn server_error(e: ServerError, url: &str) -> u8 {
    eprintln!("error: {e}");
    match e {
        ServerError::Refused { status: 401, .. } => {
            eprintln!("  the server {url} did not take the token: `stackpipe login {url}` saves a new one (or set {TOKEN_ENV})");
            EXIT_INVALID
        }
        ServerError::Refused { .. } => EXIT_INVALID,
        ServerError::Failed(_) => EXIT_FAILED,
    }
}

/// The token for the server at `url` (normalized): `STACKPIPE_TOKEN`, else
/// the one saved by `stackpipe login`.
fn token_for(url: &str) -> Result<String, u8> {
    if let Ok(t) = std::env::var(TOKEN_ENV) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let saved = Credentials::path().and_then(|p| Credentials::read(&p).ok()).and_then(|c| c.servers.get(url).cloned());
    saved.ok_or_else(|| {
        eprintln!("error: no token for the server {url}: run `stackpipe login {url}` (it asks for the token `stackpipe user add` printed), or set {TOKEN_ENV}");
        EXIT_INVALID
    })
}

/// The tokens `stackpipe login` saved, by server URL: `credentials.json` in
/// `$XDG_CONFIG_HOME/stackpipe` (else `~/.config/stackpipe`), readable by
/// its owner only: `{"servers": {URL: {"token": TOKEN}}}`.
#[derive(Debug, Default)]
struct Credentials {
    servers: BTreeMap<String, String>,
}

impl Credentials {
    fn path() -> Option<PathBuf> {
        let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(std::env::var_os("HOME").filter(|d| !d.is_empty())?).join(".config"),
        };
        Some(config.join("stackpipe").join("credentials.json"))
    }

    /// What the file holds; nothing when there is no file.
    fn read(path: &Path) -> Result<Credentials, String> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let doc: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let servers = doc.get("servers").and_then(Value::as_object).into_iter().flatten();
        let servers = servers.filter_map(|(url, s)| Some((url.clone(), s.get("token")?.as_str()?.to_string()))).collect();
        Ok(Credentials { servers })
    }

    /// Writes the file whole (0600, its directory 0700), replacing it only once written.
    fn write(&self, path: &Path) -> Result<(), String> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = path.parent().ok_or_else(|| format!("{}: no directory", path.display()))?;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let servers: serde_json::Map<String, Value> =
            self.servers.iter().map(|(url, token)| (url.clone(), json!({ "token": token }))).collect();
        let text = serde_json::to_vec_pretty(&json!({ "servers": servers })).map_err(|e| e.to_string())?;
        let aside = dir.join(format!(".credentials.json.{}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&aside)
            .and_then(|mut f| f.write_all(&text).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&aside, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&aside);
            return Err(format!("{}: {e}", path.display()));
        }
        Ok(())
    }
}

#[derive(Args)]
pub struct LoginArgs {
    /// The server: `http(s)://HOST:PORT`.
    pub url: String,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// The server: `http(s)://HOST:PORT`.
    pub url: String,
}

/// `login URL`: reads a token (from stdin, or asked for on the terminal
/// without echo), checks that the server takes it, and saves it for URL.
pub fn login(a: LoginArgs) -> Result<(), u8> {
    let url = normalize_url(&a.url).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_INVALID
    })?;
    if url.starts_with("http://") && !is_loopback(&url) {
        eprintln!("warning: {url} is not https: the token crosses the network in clear text");
    }
    let token = read_token(&url).map_err(|e| {
        eprintln!("error: cannot read the token: {e}");
        EXIT_INVALID
    })?;
    if token.is_empty() {
        eprintln!("error: no token given (`stackpipe user add NAME --role ROLE --state DIR`, on the server's host, prints one)");
        return Err(EXIT_INVALID);
    }
    let client = ServerClient::new(&url, &token).map_err(|e| server_error(e, &url))?;
    client.check_token().map_err(|e| server_error(e, &url))?;
    let path = Credentials::path().ok_or_else(|| {
        eprintln!("error: neither XDG_CONFIG_HOME nor HOME is set: nowhere to save the token (set {TOKEN_ENV} instead)");
        EXIT_FAILED
    })?;
    let mut saved = Credentials::read(&path).map_err(crate::state_cmd::fail)?;
    saved.servers.insert(url.clone(), token);
    saved.write(&path).map_err(crate::state_cmd::fail)?;
    println!("logged in to {url}: the token is saved in {}", path.display());
    Ok(())
}

/// `logout URL`: forgets the token saved for URL.
pub fn logout(a: LogoutArgs) -> Result<(), u8> {
    let url = normalize_url(&a.url).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_INVALID
    })?;
    let Some(path) = Credentials::path() else {
        println!("no token was saved for {url}");
        return Ok(());
    };
    let mut saved = Credentials::read(&path).map_err(crate::state_cmd::fail)?;
    if saved.servers.remove(&url).is_none() {
        println!("no token was saved for {url}");
        return Ok(());
    }
    saved.write(&path).map_err(crate::state_cmd::fail)?;
    println!("logged out of {url}: its token is removed from {}", path.display());
    Ok(())
}

/// The token typed (without echo) on a terminal, or the first line of stdin.
fn read_token(url: &str) -> std::io::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        return Ok(line.trim().to_string());
    }
    eprint!("token for {url}: ");
    std::io::stderr().flush()?;
    let fd = libc::STDIN_FILENO;
    // SAFETY: tcgetattr and tcsetattr write only into the termios we pass.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let echo_off = unsafe { libc::tcgetattr(fd, &mut saved) } == 0 && {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) == 0 }
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if echo_off {
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
        eprintln!();
    }
    read?;
    Ok(line.trim().to_string())
}

/// Whether `url`'s host is this machine's loopback.
fn is_loopback(url: &str) -> bool {
    let host = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    let host = host.split('/').next().unwrap_or(host);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("http://127.0.0.1:7480"));
        assert!(is_loopback("http://localhost:7480/x"));
        assert!(is_loopback("http://[::1]:7480"));
        assert!(!is_loopback("http://ci.example:7480"));
        assert!(!is_loopback("http://10.0.0.1"));
    }
}
