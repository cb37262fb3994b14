//! What a plugin instance may touch. Each call gets a fresh store whose WASI
//! context holds exactly the plugin's grants: preopened directories, the
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

/// How much of a plugin's stderr is kept to explain a crash.
const STDERR_CAPACITY: usize = 64 * 1024;

/// A plugin's grants, resolved against the pipeline's directory.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    /// (host directory, the name the plugin sees it under).
    pub dirs: Vec<(PathBuf, String)>,
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
        let mut dirs = Vec::new();
        for d in &grants.fs {
            let host = base_dir.join(d);
            std::fs::create_dir_all(&host)?;
            dirs.push((host, guest_name(d)));
        }
        let env = grants.env.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v))).collect();
        let http = grants.http.iter().map(|h| h.to_ascii_lowercase()).collect();
        Ok(Sandbox { dirs, env, http: Arc::new(http) })
    }

    fn wasi(&self, stderr: MemoryOutputPipe) -> wasmtime::Result<WasiCtx> {
        let mut b = WasiCtxBuilder::new();
        b.stderr(stderr).allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        for (k, v) in &self.env {
            b.env(k, v);
        }
        for (host, guest) in &self.dirs {
            b.preopened_dir(host, guest, FsPerms::ReadWrite)?;
        }
        Ok(b.build())
    }
}

/// The name a granted directory has inside the sandbox: as written in the
/// pipeline, without a leading `./` or a trailing `/`.
fn guest_name(grant: &str) -> String {
    let g = grant.trim_start_matches("./").trim_end_matches('/');
    if g.is_empty() { ".".into() } else { g.into() }
}

/// The store data of one plugin call.
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
    fn guest_names_are_the_grant_as_written() {
        assert_eq!(guest_name("out"), "out");
        assert_eq!(guest_name("./out/"), "out");
        assert_eq!(guest_name("."), ".");
        assert_eq!(guest_name("./"), ".");
    }
}
