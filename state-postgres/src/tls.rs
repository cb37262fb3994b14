//! How stackpipe reaches PostgreSQL: the address parsed, and TLS (rustls)
//! as the address's `sslmode` says: `prefer` (the default) uses it when
//! the server offers it, `require` refuses a server without it, `disable`
//! never uses it. A server's certificate is always verified: against the
//! public roots, and against the certificates of `sslrootcert=FILE` (a
//! private CA's, PEM) when the address names one. libpq's `sslrootcert`
//! is read here, since the driver does not know it.

use std::sync::Arc;

use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

/// A database's address, ready to connect.
pub struct Address {
    pub config: Config,
    pub tls: MakeRustlsConnect,
}

/// Reads `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB[?sslmode=…&sslrootcert=FILE]`).
pub fn address(url: &str) -> Result<Address, String> {
    let (url, root_file) = take_root_cert(url);
    let config: Config = url.parse().map_err(|e| format!("not a PostgreSQL address: {e}"))?;
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(file) = root_file {
        let pem = std::fs::read(&file).map_err(|e| format!("sslrootcert {file}: {e}"))?;
        let mut found = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("sslrootcert {file}: {e}"))?;
            roots.add(cert).map_err(|e| format!("sslrootcert {file}: {e}"))?;
            found += 1;
        }
        if found == 0 {
            return Err(format!("sslrootcert {file}: no certificate in it (PEM expected)"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Address { config, tls: MakeRustlsConnect::new(tls) })
}

/// The address without its `sslrootcert` parameter, and that parameter's
/// file (percent-decoded).
fn take_root_cert(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_string(), None) };
    let mut file = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("sslrootcert=") {
            Some(value) => {
                file = Some(percent_decoded(value));
                false
            }
            None => true,
        })
        .collect();
    let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    (url, file)
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_certificate_parameter_is_taken_out_of_the_address() {
        assert_eq!(take_root_cert("postgres://a@h/db"), ("postgres://a@h/db".into(), None));
        assert_eq!(
            take_root_cert("postgres://a@h/db?sslmode=require&sslrootcert=%2Fetc%2Fca.pem"),
            ("postgres://a@h/db?sslmode=require".into(), Some("/etc/ca.pem".into()))
        );
        assert_eq!(take_root_cert("postgres://a@h/db?sslrootcert=ca.pem"), ("postgres://a@h/db".into(), Some("ca.pem".into())));
    }

    #[test]
    fn a_root_file_without_a_certificate_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("empty.pem");
        std::fs::write(&file, "nothing here").unwrap();
        let e = address(&format!("postgres://a@h/db?sslrootcert={}", file.display())).err().unwrap();
        assert!(e.contains("no certificate"), "{e}");
        assert!(address("postgres://a@h/db?sslrootcert=/nonexistent.pem").err().unwrap().contains("/nonexistent.pem"));
    }
}
