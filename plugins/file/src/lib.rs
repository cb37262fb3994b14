//! The builtin `file` credentials resolver: a credential profile read from a
//! file inside a directory granted with `allow { fs = [...] }`.
//!
//! Config (the plugin's `config { }`, with the credentials binding's config
//! over it): `path` (the file), `profile` (default `default`). The file is
//! JSON (`{ "profiles": { "<name>": { "fields": {..}, "expires_at": <secs> } } }`)
//! or INI-like (`[name]` then `key = value` lines, `expires_at = <secs>`).
//! Values are never logged nor put in errors.

mod profiles;

use std::io::ErrorKind;
use std::time::{SystemTime, UNIX_EPOCH};

use stackpipe_plugin_sdk::credentials::Credentials;
use stackpipe_plugin_sdk::{Context, Credential, grants, log};

/// WASI's `ENOTCAPABLE`: the path is outside every preopened directory.
const WASI_ENOTCAPABLE: i32 = 76;

struct File;

fn read(path: &str) -> Result<String, String> {
    grants::check(std::path::Path::new(path), grants::granted().as_deref())
        .map_err(|e| format!("credentials file {e}"))?;
    std::fs::read_to_string(grants::normalize(std::path::Path::new(path))).map_err(|e| match e.kind() {
        ErrorKind::NotFound => format!(
            "credentials file `{path}` not found (or its directory is not granted to this plugin: add it to allow {{ fs = [...] }})"
        ),
        ErrorKind::InvalidData => format!("credentials file `{path}` is not UTF-8 text"),
        _ if e.kind() == ErrorKind::PermissionDenied || e.raw_os_error() == Some(WASI_ENOTCAPABLE) => format!(
            "cannot read credentials file `{path}`: {e} (is its directory granted to this plugin? add it to allow {{ fs = [...] }})"
        ),
        _ => format!("cannot read credentials file `{path}`: {e}"),
    })
}

impl Credentials for File {
    fn resolve(ctx: &Context, provider: &str, config: &str) -> Result<Credential, String> {
        let cfg = profiles::config(&ctx.config, config)?;
        log::debug(
            ctx,
            &format!("resolving credentials for `{provider}` from profile `{}` of `{}`", cfg.profile, cfg.path),
        );
        let text = read(&cfg.path)?;
        let all = profiles::parse(&text).map_err(|e| format!("credentials file `{}`: {e}", cfg.path))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let profile = profiles::select(&all, &cfg.profile, &cfg.path, now)?;
        let names: Vec<&str> = profile.fields.keys().map(String::as_str).collect();
        let expiry = profile.expires_at.map(|at| format!(", expires {}", profiles::iso8601(at))).unwrap_or_default();
        log::info(
            ctx,
            &format!(
                "resolved credentials for `{provider}` from profile `{}`: fields {}{expiry}",
                cfg.profile,
                names.join(", ")
            ),
        );
        Ok(Credential {
            fields: profile.fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            expires_at: profile.expires_at,
        })
    }
}

stackpipe_plugin_sdk::export_credentials!(File);
