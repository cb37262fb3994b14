//! What a plugin instance may touch. Each instance gets a fresh store whose
//! WASI context holds exactly the plugin's grants: preopened directories, the
//! granted environment variables, and an HTTP gate that lets requests through
//! only to granted `host:port`s. Nothing is inherited from the host process.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use stackpipe_dsl::Grants;

use super::log::PluginLog;

/// How much of a plugin's stderr is kept to explain a crash.
const STDERR_CAPACITY: usize = 64 * 1024;

/// A plugin's grants, resolved against the pipeline's directory.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    /// (host directory, the name the plugin sees it under).
    pub dirs: Arc<[(PathBuf, String)]>,
    /// Granted variables that are set in stackpipe's environment, with their values.
    pub env: Vec<(String, String)>,
    /// `host:port`, lower case.
    pub http: Arc<BTreeSet<String>>,
}

impl Sandbox {
    /// Nothing granted.
    pub fn none() -> Self {
        Sandbox::default()
    }

    /// The grants of a plugin block. `fs` directories are relative to
    /// `base_dir` (the pipeline's directory) and are created if missing, so a
    /// fresh checkout can deploy into `./out`.
    pub fn from_grants(grants: &Grants, base_dir: &Path) -> std::io::Result<Self> {
        Sandbox::guarding(grants, base_dir, None)
    }

    /// [`Sandbox::from_grants`], refusing any `fs` grant that is, holds or
    /// lies inside `state_dir`: a plugin must never reach stackpipe's own
    /// records. Grants are resolved (symbolic links followed) now, and the
    /// resolved directories are what the plugin gets, so a link changed
    /// later does not move them.
    pub fn guarding(grants: &Grants, base_dir: &Path, state_dir: Option<&Path>) -> std::io::Result<Self> {
        let state = state_dir.map(resolve_path);
        let mut dirs = Vec::new();
        for d in &grants.fs {
            let host = base_dir.join(d);
            let refuse = |real: &Path| -> std::io::Result<()> {
                match state.as_deref().and_then(|s| grant_overlap(real, s).map(|how| (s, how))) {
                    Some((s, how)) => Err(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        format!(
                            "the fs grant `{d}` ({}) {how} the state directory {}: a plugin could overwrite stackpipe's records",
                            real.display(),
                            s.display()
                        ),
                    )),
                    None => Ok(()),
                }
            };
            // Checked before anything is created, and again once resolved.
            refuse(&resolve_path(&host))?;
            std::fs::create_dir_all(&host)?;
            let real = std::fs::canonicalize(&host)?;
            refuse(&real)?;
            dirs.push((real, guest_name(d)));
        }
        let env = grants.env.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v))).collect();
        let http = grants.http.iter().map(|h| h.to_ascii_lowercase()).collect();
        Ok(Sandbox { dirs: dirs.into(), env, http: Arc::new(http) })
    }

    fn wasi(&self, stderr: MemoryOutputPipe) -> wasmtime::Result<WasiCtx> {
        let mut b = WasiCtxBuilder::new();
        b.stderr(stderr).allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        for (k, v) in &self.env {
            b.env(k, v);
        }
        for (host, guest) in self.dirs.iter() {
            b.preopened_dir(host, guest, FsPerms::ReadWrite)?;
        }
        Ok(b.build())
    }
}

/// `path` made absolute with its symbolic links resolved, as far as it
/// exists; the rest is appended with `.` and `..` applied as written.
pub fn resolve_path(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let mut out = real;
            for part in rest.iter().rev() {
                match part {
                    std::path::Component::ParentDir => {
                        out.pop();
                    }
                    std::path::Component::CurDir => {}
                    other => out.push(other.as_os_str()),
                }
            }
            return out;
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// The directory of a state directory that holds a team server's
/// workspaces: `workspaces/PIPELINE/`, where the pipelines sent to it with
/// their runs (`deploy FILE --server`) have their relative `fs` grants. A
/// workspace holds no records, so a grant inside one is no grant of the state.
pub const WORKSPACES_DIR: &str = "workspaces";

/// How a granted directory and the state directory overlap (both resolved):
/// "is", "holds" or "lies inside"; `None` when they do not, or when the
/// grant lies inside one pipeline's workspace (see [`WORKSPACES_DIR`]).
pub fn grant_overlap(grant: &Path, state: &Path) -> Option<&'static str> {
    if grant == state {
        Some("is")
    } else if state.starts_with(grant) {
        Some("holds")
    } else if grant.starts_with(state) && !in_a_workspace(grant, state) {
        Some("lies inside")
    } else {
        None
    }
}

/// Whether `grant` is or lies inside `state/workspaces/NAME` (not the
/// workspaces' directory itself, which holds every pipeline's).
fn in_a_workspace(grant: &Path, state: &Path) -> bool {
    let Ok(rest) = grant.strip_prefix(state) else { return false };
    let mut parts = rest.components();
    matches!(parts.next(), Some(std::path::Component::Normal(w)) if w == WORKSPACES_DIR)
        && matches!(parts.next(), Some(std::path::Component::Normal(_)))
}

/// The name a granted directory has inside the sandbox: as written in the
/// pipeline, without a leading `./` or a trailing `/`.
fn guest_name(grant: &str) -> String {
    let g = grant.trim_start_matches("./").trim_end_matches('/');
    if g.is_empty() { ".".into() } else { g.into() }
}

/// The store data of one plugin instance (one call, or the calls of a session).
pub struct PluginState {
    pub(crate) plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    gate: HttpGate,
    pub(crate) limiter: MemoryLimiter,
    stderr: MemoryOutputPipe,
    /// When the call in progress must end.
    pub(crate) deadline: std::time::Instant,
    /// The granted directories, for the `files` interface (`files.rs`).
    pub(crate) granted_dirs: Arc<[(PathBuf, String)]>,
    /// Where the call in progress logs (`log.rs`): its caller's, set as each call starts.
    pub(crate) log: PluginLog,
}

impl PluginState {
    pub fn new(plugin: Arc<str>, sandbox: &Sandbox, memory_bytes: usize) -> wasmtime::Result<Self> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        Ok(PluginState {
            plugin,
            wasi: sandbox.wasi(stderr.clone())?,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            gate: HttpGate { allowed: sandbox.http.clone(), denied: Arc::default() },
            limiter: MemoryLimiter { limit: memory_bytes, hit: false },
            stderr,
            deadline: std::time::Instant::now(),
            granted_dirs: sandbox.dirs.clone(),
            log: PluginLog::default(),
        })
    }

    /// What the plugin wrote to stderr (a Rust panic message lands here).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).trim().to_string()
    }

    /// Authorities the plugin tried to reach without a grant.
    pub fn denied_http(&self) -> Vec<String> {
        self.gate.denied.lock().map(|d| d.clone()).unwrap_or_default()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.gate }
    }
}

/// Caps a plugin's linear memory. Growing past the cap traps at once, with
/// the reason recorded, rather than handing the guest a failed allocation it
/// would report as something else.
pub struct MemoryLimiter {
    limit: usize,
    pub(crate) hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Err(wasmtime::Error::msg("memory limit reached"));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Outgoing HTTP: only to granted `host:port`s.
struct HttpGate {
    allowed: Arc<BTreeSet<String>>,
    denied: Arc<Mutex<Vec<String>>>,
}

type ResponseFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> ResponseFuture {
        drop(fut);
        let uri = request.uri();
        let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
        let authority = format!("{}:{port}", uri.host().unwrap_or_default().to_ascii_lowercase());
        if !self.allowed.contains(&authority) {
            if let Ok(mut d) = self.denied.lock() {
                d.push(authority);
            }
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_that_reach_the_state_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let state = base.join(".stackpipe");
        std::fs::create_dir_all(&state).unwrap();
        let grant = |fs: &str| Grants { fs: vec![fs.into()], ..Default::default() };
        for bad in [".", "./", ".stackpipe", ".stackpipe/x", "sub/..", "../"] {
            let e = Sandbox::guarding(&grant(bad), base, Some(&state)).unwrap_err();
            assert!(e.to_string().contains("state directory"), "{bad}: {e}");
        }
        assert!(!state.join("x").exists(), "a refused grant is not created");
        // A grant that is a symbolic link to the state directory.
        std::os::unix::fs::symlink(&state, base.join("link")).unwrap();
        assert!(Sandbox::guarding(&grant("link"), base, Some(&state)).is_err());
        assert!(Sandbox::guarding(&grant("link/inner"), base, Some(&state)).is_err());
        // A grant of its own is fine, and is preopened resolved.
        std::os::unix::fs::symlink(base.join("real-out"), base.join("out")).unwrap();
        std::fs::create_dir_all(base.join("real-out")).unwrap();
        let sandbox = Sandbox::guarding(&grant("out"), base, Some(&state)).unwrap();
        assert_eq!(sandbox.dirs[0].0, std::fs::canonicalize(base.join("real-out")).unwrap());
        assert_eq!(sandbox.dirs[0].1, "out");
        // A team server's workspace of a pipeline is not the state's records; the workspaces' directory is.
        let ws = state.join(WORKSPACES_DIR).join("demo");
        std::fs::create_dir_all(&ws).unwrap();
        assert!(Sandbox::guarding(&grant("out"), &ws, Some(&state)).is_ok());
        assert!(Sandbox::guarding(&grant("."), &ws, Some(&state)).is_ok());
        for bad in ["..", "../..", "../../state.redb"] {
            assert!(Sandbox::guarding(&grant(bad), &ws, Some(&state)).is_err(), "{bad}");
        }
    }

    #[test]
    fn guest_names_are_the_grant_as_written() {
        assert_eq!(guest_name("out"), "out");
        assert_eq!(guest_name("./out/"), "out");
        assert_eq!(guest_name("."), ".");
        assert_eq!(guest_name("./"), ".");
    }
}
