//! `stackpipe serve` (the team server, `stackpipe_server`) and `stackpipe
//! audit` (its audit log, read on its host).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use stackpipe_server::{AuditLog, ServeOptions, Server};

use crate::run_cmd::StateArgs;
use crate::{EXIT_FAILED, EXIT_INVALID};

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// The address to listen on: loopback unless told otherwise; any other
    /// address needs --tls-cert and --tls-key (or --insecure-listen).
    #[arg(long, default_value = "127.0.0.1:7480")]
    pub listen: SocketAddr,
    /// The directory of the `*.pipeline` files the server runs (re-read when they change).
    #[arg(long, value_name = "DIR")]
    pub pipelines: Option<PathBuf>,
    /// The server's certificate chain (PEM): serve HTTPS.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address that is not loopback (something in front terminates TLS).
    #[arg(long)]
    pub insecure_listen: bool,
    /// With the state in a PostgreSQL database: this server's own files
    /// (service mirrors, builds and artifacts, its queue).
    #[arg(long, value_name = "DIR", default_value = ".stackpipe-server")]
    pub data_dir: PathBuf,
    /// Leave the runs a killed server was running interrupted (default: resume them).
    #[arg(long)]
    pub no_auto_resume: bool,
    /// Run only the pipelines of --pipelines: refuse runs that bring their own
    /// source and plugins (`deploy FILE --server`), which run as code of the
    /// operator who sends them, with the server's grants and credentials.
    #[arg(long)]
    pub no_uploads: bool,
    /// With the state in PostgreSQL: leave the runs' jobs to `stackpipe
    /// runner` processes; this server is a front end only. By default it
    /// also works as a runner (up to 10 jobs at once).
    #[arg(long)]
    pub no_local_runner: bool,
}

/// `stackpipe serve`: serves until SIGTERM or Ctrl-C.
pub fn serve(a: ServeArgs) -> Result<(), u8> {
    let state = a.state.location_for(None);
    let state_dir = state.dir().map(std::path::Path::to_path_buf).unwrap_or_else(|| a.data_dir.clone());
    let rt = crate::run_cmd::runtime()?;
    let host = crate::run_cmd::host()?;
    let shown = state.shown();
    let opts = ServeOptions {
        state,
        state_dir: state_dir.clone(),
        listen: a.listen,
        pipelines: a.pipelines,
        tls: a.tls_cert.zip(a.tls_key),
        insecure_listen: a.insecure_listen,
        auto_resume: !a.no_auto_resume,
        uploads: !a.no_uploads,
        local_runner: (!a.no_local_runner).then(|| {
            let mut runner = stackpipe_runtime::run::RunnerOptions::new(crate::runner_cmd::default_name());
            runner.vars = crate::runner_cmd::vars_from_env();
            runner
        }),
    };
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    rt.block_on(async move {
        let server = Server::bind(opts, host).await.map_err(|e| {
            eprintln!("error: {e}");
            match e {
                stackpipe_server::ServeError::NeedsTls(_) | stackpipe_server::ServeError::Tls(_) => EXIT_INVALID,
                _ => EXIT_FAILED,
            }
        })?;
        let addr = server.local_addr().map_err(|e| {
            eprintln!("error: {e}");
            EXIT_FAILED
        })?;
        // The first line on stdout, for whoever started the server (tests,
        // service managers): where it listens.
        println!("stackpipe server listening on {scheme}://{addr} (state {shown})");
        server.run().await.map_err(|e| {
            eprintln!("error: {e}");
            EXIT_FAILED
        })
    })
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Only the last N entries.
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
    /// Only this user's requests.
    #[arg(long)]
    pub user: Option<String>,
}

/// `stackpipe audit`: the server's audit log, oldest first.
pub fn audit(a: AuditArgs) -> Result<(), u8> {
    use stackpipe_runtime::state_location::StateLocation;
    let read = match a.state.location_for(None) {
        StateLocation::Dir(dir) => AuditLog::read(&dir),
        StateLocation::Postgres(url) => {
            let store = stackpipe_state_postgres::PostgresStore::connect(&url).map_err(crate::run_cmd::state_error)?;
            AuditLog::read_shared(&store)
        }
    };
    let mut entries = read.map_err(|e| {
        eprintln!("error: {e}");
        EXIT_FAILED
    })?;
    if let Some(u) = &a.user {
        entries.retain(|e| e.user.as_deref() == Some(u.as_str()));
    }
    if let Some(n) = a.last {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    for e in &entries {
        if a.json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            let when = crate::state_cmd::local_time(e.ms);
            let who = e.user.as_deref().unwrap_or("(no valid token)");
            let detail = e.detail.as_ref().map(|d| format!("  {d}")).unwrap_or_default();
            println!("{when}  {who:16}  {:15}  {} {}  {}{detail}", e.address, e.method, e.path, e.status);
        }
    }
    Ok(())
}
