//! A blocking HTTP client over `wasi:http/outgoing-handler`, behind a small
//! trait ([`Transport`]) so API logic can be tested natively with canned
//! responses.
//!
//! The host lets a plugin reach only the `host:port`s the pipeline granted it
//! in `allow { http = [...] }`.
//!
//! ```no_run
//! use stackpipe_plugin_sdk::http::{HttpRequest, Transport, WasiHttp};
//! let mut req = HttpRequest::new("GET", "http://127.0.0.1:8080/items", Vec::new());
//! req.header("accept", "application/json");
//! let resp = WasiHttp.send(&req)?;
//! if resp.status != 200 { return Err(format!("GET /items: {} {}", resp.status, resp.text())); }
//! # Ok::<(), String>(())
//! ```

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    /// `scheme://authority/path?query`
    pub url: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn new(method: &str, url: &str, body: Vec<u8>) -> HttpRequest {
        HttpRequest { method: method.into(), url: url.into(), headers: Vec::new(), body }
    }

    pub fn header(&mut self, name: &str, value: &str) -> &mut HttpRequest {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-case names, in the order received (S3 answers a HEAD in headers only).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// `get`, `post`, ... on any [`Transport`].
impl HttpRequest {
    pub fn get(url: &str) -> HttpRequest {
        HttpRequest::new("GET", url, Vec::new())
    }

    /// A request with a JSON body (and `content-type: application/json`).
    pub fn json(method: &str, url: &str, body: &serde_json::Value) -> HttpRequest {
        let mut req = HttpRequest::new(method, url, body.to_string().into_bytes());
        req.header("content-type", "application/json");
        req
    }
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends one request and waits for the whole response. `Err` is a transport
/// failure (no response at all); any HTTP status is an `Ok`.
pub trait Transport {
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, String>;
}

/// The parts of a URL that wasi:http wants separately.
#[cfg_attr(not(all(target_arch = "wasm32", target_env = "p2")), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts {
    pub https: bool,
    pub authority: String,
    pub path_and_query: String,
}

#[cfg_attr(not(all(target_arch = "wasm32", target_env = "p2")), allow(dead_code))]
pub fn split_url(url: &str) -> Result<UrlParts, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("`{url}` is not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let path_and_query = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    Ok(UrlParts { https, authority: authority.to_string(), path_and_query })
}

/// How long to wait to connect and for the first byte of a response.
#[cfg_attr(not(all(target_arch = "wasm32", target_env = "p2")), allow(dead_code))]
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Requests through the host's `wasi:http/outgoing-handler` (only to the
/// `host:port`s the pipeline granted in `allow { http = [...] }`).
pub struct WasiHttp;

#[cfg(all(target_arch = "wasm32", target_env = "p2"))]
impl Transport for WasiHttp {
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, String> {
        wasi::send(req)
    }
}

#[cfg(not(all(target_arch = "wasm32", target_env = "p2")))]
impl Transport for WasiHttp {
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, String> {
        Err(format!("no wasi:http outside a component: cannot {} {}", req.method, req.url))
    }
}

#[cfg(all(target_arch = "wasm32", target_env = "p2"))]
mod wasi {
    use std::io::Read;

    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
    use wasip2::io::streams::{OutputStream, StreamError};

    use super::{HttpRequest, HttpResponse, TIMEOUT, split_url};

    fn method(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_string()),
        }
    }

    /// Writes a request's whole body. The host may close the stream as soon
    /// as it has the whole body (the content-length is reached), before a
    /// flush that follows the last byte: that `Closed` means the body is
    /// complete, not that it failed. (Whether the host is that quick depends
    /// on how its tasks are scheduled: a failure that came and went.)
    fn write_body(stream: &OutputStream, mut bytes: &[u8]) -> Result<(), StreamError> {
        while !bytes.is_empty() {
            let room = stream.check_write()?;
            if room == 0 {
                stream.subscribe().block();
                continue;
            }
            let (now, rest) = bytes.split_at(bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX)));
            stream.write(now)?;
            bytes = rest;
        }
        match stream.flush() {
            Ok(()) | Err(StreamError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn stream_error(e: StreamError) -> String {
        match e {
            StreamError::Closed => "the host closed the stream before the whole body was sent".into(),
            StreamError::LastOperationFailed(err) => err.to_debug_string(),
        }
    }

    pub fn send(req: &HttpRequest) -> Result<HttpResponse, String> {
        let url = split_url(&req.url)?;
        let fail = |what: &str| format!("{} {}: {what}", req.method, req.url);
        let mut entries: Vec<(String, Vec<u8>)> =
            req.headers.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect();
        entries.push(("content-length".into(), req.body.len().to_string().into_bytes()));
        let headers = Fields::from_list(&entries).map_err(|e| fail(&format!("bad header: {e:?}")))?;
        let out = OutgoingRequest::new(headers);
        out.set_method(&method(&req.method)).map_err(|()| fail("bad method"))?;
        let scheme = if url.https { Scheme::Https } else { Scheme::Http };
        out.set_scheme(Some(&scheme)).map_err(|()| fail("bad scheme"))?;
        out.set_authority(Some(&url.authority)).map_err(|()| fail("bad host"))?;
        out.set_path_with_query(Some(&url.path_and_query)).map_err(|()| fail("bad path"))?;
        let body = out.body().map_err(|()| fail("no request body"))?;

        let options = RequestOptions::new();
        let ns = TIMEOUT.as_nanos() as u64;
        // A host may not support a timeout: then it keeps its own.
        let _ = options.set_connect_timeout(Some(ns));
        let _ = options.set_first_byte_timeout(Some(ns));
        let _ = options.set_between_bytes_timeout(Some(ns));

        let pending = outgoing_handler::handle(out, Some(options)).map_err(|e| fail(&format!("{e:?}")))?;
        {
            let stream = body.write().map_err(|()| fail("no request body stream"))?;
            write_body(&stream, &req.body).map_err(|e| fail(&format!("sending the body: {}", stream_error(e))))?;
        }
        OutgoingBody::finish(body, None).map_err(|e| fail(&format!("{e:?}")))?;

        let response = loop {
            match pending.get() {
                Some(result) => break result,
                None => pending.subscribe().block(),
            }
        };
        let response =
            response.map_err(|()| fail("the response was already taken"))?.map_err(|e| fail(&format!("{e:?}")))?;
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response.consume().map_err(|()| fail("no response body"))?;
        let mut bytes = Vec::new();
        {
            let mut stream = incoming.stream().map_err(|()| fail("no response body stream"))?;
            stream.read_to_end(&mut bytes).map_err(|e| fail(&format!("reading the response: {e}")))?;
        }
        drop(IncomingBody::finish(incoming));
        Ok(HttpResponse { status, headers, body: bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:5055/").unwrap(),
            UrlParts { https: false, authority: "127.0.0.1:5055".into(), path_and_query: "/".into() }
        );
        assert_eq!(
            split_url("https://route53.amazonaws.com/2013-04-01/hostedzone?x=1").unwrap(),
            UrlParts {
                https: true,
                authority: "route53.amazonaws.com".into(),
                path_and_query: "/2013-04-01/hostedzone?x=1".into()
            }
        );
        assert_eq!(split_url("http://h?x").unwrap().path_and_query, "/?x");
        assert_eq!(split_url("http://h").unwrap().path_and_query, "/");
        assert!(split_url("ftp://h/").is_err());
        assert!(split_url("http:///x").is_err());
    }

    #[test]
    fn headers_are_found_in_any_case() {
        let resp = HttpResponse { status: 200, headers: vec![("etag".into(), "\"abc\"".into())], body: Vec::new() };
        assert_eq!(resp.header("ETag"), Some("\"abc\""));
        assert_eq!(resp.header("x-amz-version-id"), None);
    }
}
