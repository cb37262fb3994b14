//! The plugin's `config { }` and the credential handed to each call.

use std::time::Duration;

use serde_json::Value;

use crate::json::parse_object;
use crate::sign::Credentials;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// One endpoint for every service (`http://127.0.0.1:5055`, an emulator);
    /// none for the public AWS endpoints of `region`.
    pub endpoint: Option<String>,
    pub region: String,
    /// How long apply and destroy wait for a database to become available or go away.
    pub wait_timeout: Duration,
    /// How long destroy keeps trying a delete refused with DependencyViolation
    /// (AWS releases a deleted load balancer's network interfaces a while later).
    pub dependency_wait: Duration,
}

fn seconds(cfg: &serde_json::Map<String, Value>, key: &str, default: u64) -> Result<Duration, String> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(Duration::from_secs(default)),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0 && f.is_finite()).map(|f| f.round() as u64))
            .map(Duration::from_secs)
            .ok_or_else(|| format!("plugin config `{key}` must be a number of seconds, 0 or more")),
    }
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg = parse_object(text, "the plugin config")?;
        let known = ["endpoint", "region", "wait_timeout_s", "dependency_wait_s"];
        if let Some(k) = cfg.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!("unknown plugin config `{k}` (known: {})", known.join(", ")));
        }
        let endpoint = match cfg.get("endpoint") {
            None | Some(Value::Null) => None,
            Some(Value::String(e)) if e.starts_with("http://") || e.starts_with("https://") => {
                let e = e.trim_end_matches('/');
                if e.split("://").nth(1).is_none_or(|rest| rest.is_empty() || rest.contains('/')) {
                    return Err(format!(
                        "plugin config `endpoint` must be a base URL like \"http://127.0.0.1:5055\", not `{e}`"
                    ));
                }
                Some(e.to_string())
            }
            Some(other) => {
                return Err(format!(
                    "plugin config `endpoint` must be an http:// or https:// URL like \"http://127.0.0.1:5055\", not {other}"
                ));
            }
        };
        let region = match cfg.get("region") {
            None | Some(Value::Null) => "us-east-1".to_string(),
            Some(Value::String(r))
                if !r.is_empty() && r.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') =>
            {
                r.clone()
            }
            Some(other) => {
                return Err(format!("plugin config `region` must be a region like \"us-east-1\", not {other}"));
            }
        };
        // Against an emulator nothing lingers: a dependency error is final at once.
        let dependency_default = if endpoint.is_some() { 0 } else { 300 };
        Ok(Config {
            wait_timeout: seconds(&cfg, "wait_timeout_s", 1800)?,
            dependency_wait: seconds(&cfg, "dependency_wait_s", dependency_default)?,
            endpoint,
            region,
        })
    }
}

/// The access key from a credential's fields: `access_key_id`,
/// `secret_access_key` and an optional `session_token` (the `aws_` prefix
/// and any case accepted). Errors name fields, never values.
pub fn credentials(fields: Option<&[(String, String)]>) -> Result<Credentials, String> {
    let Some(fields) = fields else {
        return Err("no AWS credentials: bind a credentials resolver to this plugin in the pipeline \
            (credentials aws { resolver = ... })"
            .into());
    };
    let get = |names: &[&str]| {
        fields.iter().find_map(|(k, v)| {
            let k = k.to_ascii_lowercase();
            let k = k.strip_prefix("aws_").unwrap_or(&k);
            (names.contains(&k) && !v.is_empty()).then(|| v.clone())
        })
    };
    let access_key_id = get(&["access_key_id", "access_key"]);
    let secret_access_key = get(&["secret_access_key", "secret_key", "secret"]);
    match (access_key_id, secret_access_key) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
            access_key_id,
            secret_access_key,
            session_token: get(&["session_token", "security_token"]),
        }),
        _ => {
            let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            Err(format!(
                "the AWS credential needs `access_key_id` and `secret_access_key` fields (it has: {})",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_checks() {
        let c = Config::parse("").unwrap();
        assert_eq!((c.endpoint, c.region.as_str()), (None, "us-east-1"));
        assert_eq!(c.dependency_wait, Duration::from_secs(300));
        let c =
            Config::parse(r#"{"endpoint":"http://127.0.0.1:5055/","region":"eu-west-1","wait_timeout_s":60}"#).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5055"));
        assert_eq!((c.region.as_str(), c.wait_timeout.as_secs(), c.dependency_wait.as_secs()), ("eu-west-1", 60, 0));
        assert!(Config::parse(r#"{"endpoint":"127.0.0.1:5055"}"#).unwrap_err().contains("http://"));
        assert!(Config::parse(r#"{"endpoint":"http://h/x"}"#).unwrap_err().contains("base URL"));
        assert!(Config::parse(r#"{"region":"US East"}"#).is_err());
        assert!(Config::parse(r#"{"regoin":"x"}"#).unwrap_err().contains("unknown plugin config `regoin`"));
        assert!(Config::parse(r#"{"wait_timeout_s":-1}"#).is_err());
    }

    #[test]
    fn credentials_from_fields() {
        let f = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let c = credentials(Some(&f(&[("access_key_id", "AKID"), ("secret_access_key", "s3cr3t")]))).unwrap();
        assert_eq!((c.access_key_id.as_str(), c.session_token), ("AKID", None));
        let c = credentials(Some(&f(&[
            ("AWS_ACCESS_KEY_ID", "A"),
            ("AWS_SECRET_ACCESS_KEY", "S"),
            ("aws_session_token", "T"),
        ])))
        .unwrap();
        assert_eq!(c.session_token.as_deref(), Some("T"));
        let e = credentials(Some(&f(&[("access_key_id", "AKID"), ("password", "hunter2")]))).unwrap_err();
        assert!(e.contains("(it has: access_key_id, password)") && !e.contains("hunter2") && !e.contains("AKID"));
        assert!(credentials(None).unwrap_err().starts_with("no AWS credentials"));
    }
}
