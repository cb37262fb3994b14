//! `stackpipe serve`: binds the address (loopback unless told otherwise,
//! TLS required off loopback), serves the API on every connection with
//! limits on slow clients, resumes the runs a killed server left, and on
//! SIGTERM or Ctrl-C stops its runs (to be resumed at the next start).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use stackpipe_runtime::plugin::PluginHost;
use stackpipe_runtime::state::StateStore;
use stackpipe_runtime::state_location::StateLocation;
use stackpipe_state_postgres::JobQueue;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::api::{self, AppState};
use crate::audit::AuditLog;
use crate::catalog::Catalog;
use crate::runs::Runs;
use crate::users::{UsersCache, UsersHome};

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long runs in progress get to stop when the server is asked to.
const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(30);

pub struct ServeOptions {
    /// Where the state is: a directory, or a PostgreSQL database.
    pub state: stackpipe_runtime::state_location::StateLocation,
    /// The server's own files: the state directory itself, or (with a
    /// database) a directory of this server's (`--data-dir`): service
    /// mirrors, builds and artifacts, its queue.
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    pub pipelines: Option<PathBuf>,
    /// `--tls-cert`, `--tls-key` (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `--insecure-listen`: plain HTTP off loopback.
    pub insecure_listen: bool,
    /// Resume the runs a killed server left interrupted (`--no-auto-resume`: leave them).
    pub auto_resume: bool,
    /// Runs may bring their own pipeline source and plugin components
    /// (`--no-uploads`: only the `--pipelines` directory's run).
    pub uploads: bool,
    /// With a database: this server also works as a runner of its job
    /// queue (`--no-local-runner`: it leaves the jobs to `stackpipe runner`
    /// processes, and is a front end only).
    pub local_runner: Option<stackpipe_runtime::run::RunnerOptions>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {0} without TLS: tokens would cross the network in the clear. Give --tls-cert and \
         --tls-key, or --insecure-listen if something in front of the server terminates TLS"
    )]
    NeedsTls(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    State(#[from] stackpipe_runtime::state::StateError),
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    Users(#[from] crate::users::UsersError),
    #[error("the job queue: {0}")]
    Queue(String),
}

/// A server bound and ready: [`Server::run`] serves it.
pub struct Server {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<AppState>,
    auto_resume: bool,
}

/// Creates `dir` (0700) if it is missing.
fn private_dir(dir: &std::path::Path) -> Result<(), ServeError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ServeError::State(stackpipe_runtime::state::StateError::Io(e)))
}

impl Server {
    /// Checks the options, opens the state (the server holds it while it
    /// runs) and binds the address.
    pub async fn bind(opts: ServeOptions, host: Arc<PluginHost>) -> Result<Server, ServeError> {
        if !opts.listen.ip().is_loopback() && opts.tls.is_none() && !opts.insecure_listen {
            return Err(ServeError::NeedsTls(opts.listen));
        }
        let tls = match &opts.tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None => None,
        };
        private_dir(&opts.state_dir)?;
        let (store, users, audit) = match &opts.state {
            StateLocation::Dir(dir) => {
                let store = Arc::new(StateStore::open(dir)?);
                (store, UsersHome::Dir(dir.clone()), AuditLog::open(dir)?)
            }
            StateLocation::Postgres(url) => {
                let shared = Arc::new(stackpipe_state_postgres::PostgresStore::connect(url)?);
                let store = Arc::new(StateStore::shared(shared.clone()));
                (store, UsersHome::Shared(shared.clone()), AuditLog::shared(shared))
            }
        };
        // On a database, runs are worked by the runners of its job queue.
        let queue = match &opts.state {
            StateLocation::Postgres(url) => Some(JobQueue::connect(url).map_err(|e| ServeError::Queue(e.to_string()))?),
            StateLocation::Dir(_) => None,
        };
        // A users file others could write is refused now, not at the first request.
        crate::users::Users::load(&users)?;
        let listener = TcpListener::bind(opts.listen).await.map_err(|source| ServeError::Bind { addr: opts.listen, source })?;
        let bound = listener.local_addr().unwrap_or(opts.listen);
        let public_url = format!("{}://{bound}", if opts.tls.is_some() { "https" } else { "http" });
        let state = Arc::new(AppState {
            services: crate::services::Services::new(opts.state_dir.clone()),
            public_url,
            users: UsersCache::new(users),
            catalog: Catalog::new(opts.pipelines.clone()),
            audit,
            runs: Runs::new(store.clone(), host.clone(), opts.state_dir.clone(), queue.clone()),
            state_dir: opts.state_dir.clone(),
            uploads: opts.uploads,
            sessions: Default::default(),
            tls: opts.tls.is_some(),
            layouts: Default::default(),
        });
        if let (Some(queue), Some(runner)) = (queue, opts.local_runner.clone()) {
            let runner = stackpipe_runtime::run::Runner::new(store, queue, host, runner);
            let stop = state.runs.stopping();
            tokio::spawn(runner.work(stop));
        }
        Ok(Server { listener, tls, state, auto_resume: opts.auto_resume })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGTERM or Ctrl-C; then stops the runs in progress.
    pub async fn run(self) -> Result<(), ServeError> {
        let Server { listener, tls, state, auto_resume } = self;
        if auto_resume {
            api::runs::resume_interrupted(&state).await;
        }
        // After the resumed runs, which hold their resources again: what
        // was queued behind them queues behind them again.
        api::runs::requeue(&state).await;
        crate::services::recover(&state);
        tokio::spawn(crate::services::poll_forever(state.clone()));
        let app = api::router(state.clone());
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors, most likely: let some close.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = TowerToHyperService::new(app.map_request(|r: hyper::Request<hyper::body::Incoming>| r.map(axum::body::Body::new)));
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
                let served = match tls {
                    None => http.serve_connection(TokioIo::new(stream), service).await,
                    Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => http.serve_connection(TokioIo::new(tls), service).await,
                        Ok(Err(e)) => return tracing::debug!("TLS handshake with {peer}: {e}"),
                        Err(_) => return tracing::debug!("TLS handshake with {peer}: timed out"),
                    },
                };
                if let Err(e) = served {
                    tracing::debug!("connection from {peer}: {e}");
                }
            });
        }
        eprintln!("stopping: the runs in progress stop when their operations in flight finish; they resume at the next start");
        let stopped = state.runs.shut_down(SHUTDOWN_PATIENCE).await;
        crate::api::runs::note_stopped(&state.state_dir, &stopped);
        Ok(())
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use std::io::BufReader;
    let open = |p: &std::path::Path| std::fs::File::open(p).map_err(|e| ServeError::Tls(format!("{}: {e}", p.display())));
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(open(cert)?))
        .collect::<Result<_, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!("{}: no certificate in it", cert.display())));
    }
    let key = rustls_pemfile::private_key(&mut BufReader::new(open(key)?))
        .map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?
        .ok_or_else(|| ServeError::Tls(format!("{}: no private key in it", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
