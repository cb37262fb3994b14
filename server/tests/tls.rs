//! The server over TLS: served with the certificate it is given, to a
//! client that trusts it; a client speaking plain HTTP gets no answer; and
//! an address off loopback is refused without TLS.

use std::sync::Arc;

use stackpipe_runtime::plugin::{ArtifactCache, PluginHost};
use stackpipe_server::{ServeError, ServeOptions, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn options(dir: &std::path::Path, listen: &str, tls: Option<(std::path::PathBuf, std::path::PathBuf)>) -> ServeOptions {
    ServeOptions {
        state: stackpipe_runtime::state_location::StateLocation::Dir(dir.join("state")),
        state_dir: dir.join("state"),
        listen: listen.parse().unwrap(),
        pipelines: None,
        tls,
        insecure_listen: false,
        auto_resume: false,
        uploads: false,
        local_runner: None,
    }
}

fn host() -> Arc<PluginHost> {
    Arc::new(PluginHost::new(ArtifactCache::disabled()).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn https_is_served_with_the_given_certificate_and_plain_http_gets_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let server = Server::bind(options(dir.path(), "127.0.0.1:0", Some((cert, key))), host()).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run());

    let mut roots = rustls::RootCertStore::empty();
    roots.add(made.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\":\"ok\""), "{answer}");

    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_off_loopback_is_refused_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    match Server::bind(options(dir.path(), "0.0.0.0:0", None), host()).await {
        Err(ServeError::NeedsTls(addr)) => assert_eq!(addr.to_string(), "0.0.0.0:0"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("bound 0.0.0.0 without TLS"),
    }
    // Nothing was made for it: the check comes first.
    assert!(!dir.path().join("state").exists());
}
