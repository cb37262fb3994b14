//! Credential profiles files, JSON or INI-like, and picking one profile. Pure,
//! so `cargo test` runs it natively. No value read from a file ever goes into
//! a message: errors name profiles, keys and line numbers only.
//!
//! JSON:
//! ```json
//! { "profiles": { "default": { "fields": { "token": "..." }, "expires_at": 1767225600 } } }
//! ```
//! INI-like (`[profile name]` is read as `[name]`; `#` and `;` start comments):
//! ```ini
//! [default]
//! token = ...
//! expires_at = 1767225600
//! ```

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub fields: BTreeMap<String, String>,
    /// Seconds since the Unix epoch.
    pub expires_at: Option<u64>,
}

pub type Profiles = BTreeMap<String, Profile>;

/// The resolver's config: the plugin's `config { }` with the credentials
/// binding's config over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub path: String,
    pub profile: String,
}

pub fn config(plugin_config: &str, binding_config: &str) -> Result<Config, String> {
    let cfg = stackpipe_plugin_sdk::credentials::merged_config(plugin_config, binding_config)?;
    let path = match cfg.get("path") {
        Some(Value::String(p)) if !p.trim().is_empty() => p.clone(),
        None | Some(Value::Null) => {
            return Err(
                "config `path` is required: the credentials file, inside a directory granted with allow { fs = [...] }"
                    .into(),
            );
        }
        Some(_) => return Err("config `path` must be a file path (a non-empty string)".into()),
    };
    let profile = match cfg.get("profile") {
        None | Some(Value::Null) => "default".to_string(),
        Some(Value::String(p)) if !p.is_empty() => p.clone(),
        Some(_) => return Err("config `profile` must be a profile name (a non-empty string)".into()),
    };
    Ok(Config { path, profile })
}

/// Parses either format: JSON when the first non-blank character is `{`.
pub fn parse(text: &str) -> Result<Profiles, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') { parse_json(text) } else { parse_ini(text) }
}

fn field_value(profile: &str, key: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("field `{key}` of profile `{profile}` must be a string")),
    }
}

pub fn parse_json(text: &str) -> Result<Profiles, String> {
    // serde_json's syntax errors give a position, not the text around it.
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Some(profiles) = doc.get("profiles").and_then(Value::as_object) else {
        return Err(
            "the JSON has no `profiles` object: write { \"profiles\": { \"default\": { \"fields\": { ... } } } }"
                .into(),
        );
    };
    let mut out = Profiles::new();
    for (name, p) in profiles {
        let Some(p) = p.as_object() else { return Err(format!("profile `{name}` must be an object")) };
        let mut profile = Profile::default();
        match p.get("fields") {
            Some(Value::Object(fields)) => {
                for (k, v) in fields {
                    profile.fields.insert(k.clone(), field_value(name, k, v)?);
                }
            }
            None => {}
            Some(_) => return Err(format!("`fields` of profile `{name}` must be an object")),
        }
        profile.expires_at = match p.get("expires_at") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                format!("`expires_at` of profile `{name}` must be whole seconds since the Unix epoch")
            })?),
        };
        out.insert(name.clone(), profile);
    }
    Ok(out)
}

fn unquote(v: &str) -> &str {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] { &v[1..v.len() - 1] } else { v }
}

pub fn parse_ini(text: &str) -> Result<Profiles, String> {
    let mut out = Profiles::new();
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(format!("line {n}: a section header must end with `]`"));
            };
            let name = name.trim();
            let name = name.strip_prefix("profile ").map(str::trim).unwrap_or(name);
            if name.is_empty() {
                return Err(format!("line {n}: the section has no name"));
            }
            out.entry(name.to_string()).or_default();
            current = Some(name.to_string());
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {n}: expected `key = value` or a `[profile]` header"));
        };
        let (key, value) = (key.trim(), unquote(value.trim()));
        if key.is_empty() {
            return Err(format!("line {n}: the key is missing before `=`"));
        }
        let Some(profile) = current.as_ref().and_then(|c| out.get_mut(c)) else {
            return Err(format!("line {n}: `{key}` comes before any `[profile]` header"));
        };
        if key == "expires_at" {
            let secs = value
                .parse::<u64>()
                .map_err(|_| format!("line {n}: `expires_at` must be whole seconds since the Unix epoch"))?;
            profile.expires_at = Some(secs);
        } else {
            profile.fields.insert(key.to_string(), value.to_string());
        }
    }
    Ok(out)
}

/// Picks the profile, refusing an unknown, empty or expired one.
pub fn select<'a>(profiles: &'a Profiles, name: &str, path: &str, now: u64) -> Result<&'a Profile, String> {
    let Some(p) = profiles.get(name) else {
        let present: Vec<String> = profiles.keys().map(|k| format!("`{k}`")).collect();
        return Err(if present.is_empty() {
            format!("credential profile `{name}` not found: `{path}` has no profiles")
        } else {
            format!("credential profile `{name}` not found in `{path}`; profiles present: {}", present.join(", "))
        });
    };
    if let Some(at) = p.expires_at.filter(|at| *at <= now) {
        return Err(format!("credential profile `{name}` expired at {} ({at})", iso8601(at)));
    }
    if p.fields.is_empty() {
        return Err(format!("credential profile `{name}` in `{path}` has no fields"));
    }
    Ok(p)
}

/// `2026-11-28T07:00:00Z` from seconds since the Unix epoch.
pub fn iso8601(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 0000-03-01 in the proleptic Gregorian calendar, by 400-year eras.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"
      { "profiles": {
          "default": { "fields": { "access_key_id": "AKIA1", "secret_access_key": "s1" } },
          "prod": { "fields": { "token": "t" }, "expires_at": 2000000000 },
          "old": { "fields": { "token": "t" }, "expires_at": 1700000000 } } }"#;

    const INI: &str = "
# shared credentials
[default]
access_key_id = AKIA1
secret_access_key = \"s1 with = sign\"

[profile prod]
token=t
expires_at = 2000000000
; a comment
";

    #[test]
    fn reads_json_profiles() {
        let p = parse(JSON).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["default", "old", "prod"]);
        assert_eq!(p["default"].fields["access_key_id"], "AKIA1");
        assert_eq!(p["prod"].expires_at, Some(2_000_000_000));
    }

    #[test]
    fn reads_ini_profiles() {
        let p = parse(INI).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["default", "prod"]);
        assert_eq!(p["default"].fields["secret_access_key"], "s1 with = sign");
        assert_eq!(p["prod"].fields.len(), 1);
        assert_eq!(p["prod"].expires_at, Some(2_000_000_000));
        assert_eq!(p["default"].expires_at, None);
    }

    #[test]
    fn ini_errors_give_line_numbers_not_values() {
        let e = parse("[a]\nsecretvalue\n").unwrap_err();
        assert_eq!(e, "line 2: expected `key = value` or a `[profile]` header");
        let e = parse("token = hunter2\n").unwrap_err();
        assert!(e.contains("line 1") && !e.contains("hunter2"), "{e}");
        assert!(parse("[a\n").unwrap_err().contains("line 1"));
        assert!(parse("[a]\nexpires_at = soon\n").unwrap_err().contains("expires_at"));
        assert!(parse("[]\n").is_err());
    }

    #[test]
    fn json_errors_do_not_echo_values() {
        let e = parse(r#"{"profiles":{"p":{"fields":{"k":["hunter2"]}}}}"#).unwrap_err();
        assert!(e.contains("field `k` of profile `p`") && !e.contains("hunter2"), "{e}");
        assert!(parse(r#"{"other":1}"#).unwrap_err().contains("profiles"));
        assert!(parse(r#"{"profiles":{"p":{"expires_at":"x"}}}"#).unwrap_err().contains("expires_at"));
        assert!(parse(r#"{"profiles":"#).unwrap_err().starts_with("not valid JSON"));
        assert_eq!(parse(r#"{"profiles":{"p":{"fields":{"n":12}}}}"#).unwrap()["p"].fields["n"], "12");
    }

    #[test]
    fn selects_profiles() {
        let p = parse(JSON).unwrap();
        let now = 1_800_000_000;
        assert_eq!(select(&p, "default", "c.json", now).unwrap().fields.len(), 2);
        assert_eq!(select(&p, "prod", "c.json", now).unwrap().expires_at, Some(2_000_000_000));
        let e = select(&p, "staging", "c.json", now).unwrap_err();
        assert_eq!(e, "credential profile `staging` not found in `c.json`; profiles present: `default`, `old`, `prod`");
        let e = select(&p, "old", "c.json", now).unwrap_err();
        assert_eq!(e, "credential profile `old` expired at 2023-11-14T22:13:20Z (1700000000)");
        // Expiring exactly now counts as expired.
        assert!(select(&p, "prod", "c.json", 2_000_000_000).is_err());
        assert!(select(&Profiles::new(), "x", "c", now).unwrap_err().contains("has no profiles"));
        let empty = parse("[e]\n").unwrap();
        assert!(select(&empty, "e", "c", now).unwrap_err().contains("no fields"));
    }

    #[test]
    fn formats_times() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(iso8601(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(iso8601(1_709_164_800), "2024-02-29T00:00:00Z");
    }

    #[test]
    fn config_merges_and_defaults() {
        assert_eq!(
            config(r#"{"path":"creds/c.ini"}"#, "").unwrap(),
            Config { path: "creds/c.ini".into(), profile: "default".into() }
        );
        assert_eq!(config(r#"{"path":"a","profile":"x"}"#, r#"{"profile":"prod"}"#).unwrap().profile, "prod");
        assert!(config("{}", "{}").unwrap_err().contains("`path` is required"));
        assert!(config(r#"{"path":3}"#, "").is_err());
    }
}
