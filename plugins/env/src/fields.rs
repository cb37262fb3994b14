//! Which credential field comes from which environment variable, and the
//! lookup itself with the environment passed in. Pure, so `cargo test` runs it
//! natively. No value read here ever goes into a message.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The credential field: `access_key_id`.
    pub name: String,
    /// The environment variable: `AWS_ACCESS_KEY_ID`.
    pub var: String,
    pub optional: bool,
}

impl Field {
    fn new(name: &str, var: &str, optional: bool) -> Field {
        Field { name: name.into(), var: var.into(), optional }
    }
}

/// Without `fields` in the config: the AWS variables.
pub fn default_fields() -> Vec<Field> {
    vec![
        Field::new("access_key_id", "AWS_ACCESS_KEY_ID", false),
        Field::new("secret_access_key", "AWS_SECRET_ACCESS_KEY", false),
        Field::new("session_token", "AWS_SESSION_TOKEN", true),
    ]
}

/// The plugin's own config, with the credentials binding's config over it.
pub use stackpipe_plugin_sdk::credentials::merged_config;

fn valid_var(var: &str) -> bool {
    !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `fields = { field = "VAR" }`, or `{ field = { env = "VAR", optional = true } }`.
pub fn fields(config: &Map<String, Value>) -> Result<Vec<Field>, String> {
    let map = match config.get("fields") {
        None | Some(Value::Null) => return Ok(default_fields()),
        Some(Value::Object(m)) if !m.is_empty() => m,
        Some(Value::Object(_)) => return Err("config `fields` is empty: name at least one field".into()),
        Some(_) => return Err("config `fields` must be an object of field = \"ENV_VAR_NAME\"".into()),
    };
    let mut out = Vec::new();
    for (name, spec) in map {
        let (var, optional) = match spec {
            Value::String(var) => (var.as_str(), false),
            Value::Object(o) => {
                let var = o.get("env").and_then(Value::as_str);
                let optional = o.get("optional").map(|v| v.as_bool().ok_or(()));
                match (var, optional) {
                    (Some(var), None) => (var, false),
                    (Some(var), Some(Ok(opt))) => (var, opt),
                    _ => {
                        return Err(format!(
                            "config `fields.{name}` must be \"ENV_VAR_NAME\" or {{ env = \"ENV_VAR_NAME\", optional = true }}"
                        ));
                    }
                }
            }
            _ => return Err(format!("config `fields.{name}` must be the name of an environment variable")),
        };
        if !valid_var(var) {
            return Err(format!("config `fields.{name}`: `{var}` is not an environment variable name"));
        }
        out.push(Field::new(name, var, optional));
    }
    Ok(out)
}

/// One variable, as the environment has it.
pub enum Lookup {
    Set(String),
    Unset,
    NotUnicode,
}

/// Reads every field; a missing required one is an error naming the
/// variables (never a value).
pub fn resolve(fields: &[Field], lookup: impl Fn(&str) -> Lookup) -> Result<Vec<(String, String)>, String> {
    let mut values = Vec::new();
    let mut missing = Vec::new();
    for f in fields {
        match lookup(&f.var) {
            Lookup::Set(v) if !v.is_empty() => values.push((f.name.clone(), v)),
            Lookup::Set(_) if !f.optional => return Err(format!("environment variable {} is set but empty", f.var)),
            Lookup::NotUnicode => return Err(format!("environment variable {} is not valid UTF-8", f.var)),
            Lookup::Set(_) | Lookup::Unset if f.optional => {}
            Lookup::Set(_) | Lookup::Unset => missing.push(f.var.as_str()),
        }
    }
    match missing.as_slice() {
        [] => Ok(values),
        [one] => Err(format!(
            "environment variable {one} is not set (or not granted to this plugin: add it to allow {{ env = [...] }})"
        )),
        many => Err(format!(
            "environment variables {} are not set (or not granted to this plugin: add them to allow {{ env = [...] }})",
            many.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Lookup {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| match vars.iter().find(|(k, _)| k == name) {
            Some((_, v)) => Lookup::Set(v.clone()),
            None => Lookup::Unset,
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_to_aws_variables() {
        let f = fields(&Map::new()).unwrap();
        assert_eq!(f, default_fields());
        let got = resolve(&f, env(&[("AWS_ACCESS_KEY_ID", "AKIA"), ("AWS_SECRET_ACCESS_KEY", "s3cr3t")])).unwrap();
        assert_eq!(
            got,
            [("access_key_id".to_string(), "AKIA".to_string()), ("secret_access_key".into(), "s3cr3t".into())]
        );
        let got =
            resolve(&f, env(&[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b"), ("AWS_SESSION_TOKEN", "t")]))
                .unwrap();
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn missing_variables_are_named_without_values() {
        let err = resolve(&default_fields(), env(&[("AWS_ACCESS_KEY_ID", "AKIAVALUE")])).unwrap_err();
        assert_eq!(
            err,
            "environment variable AWS_SECRET_ACCESS_KEY is not set (or not granted to this plugin: add it to allow { env = [...] })"
        );
        let err = resolve(&default_fields(), env(&[])).unwrap_err();
        assert!(err.starts_with("environment variables AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY are not set"), "{err}");
        let err = resolve(&default_fields(), env(&[("AWS_ACCESS_KEY_ID", "AKIAVALUE"), ("AWS_SECRET_ACCESS_KEY", "")]))
            .unwrap_err();
        assert!(err.contains("empty") && !err.contains("AKIAVALUE"));
    }

    #[test]
    fn custom_fields() {
        let cfg = obj(json!({ "fields": { "token": "GH_TOKEN", "org": { "env": "GH_ORG", "optional": true } } }));
        let f = fields(&cfg).unwrap();
        assert_eq!(f, [Field::new("org", "GH_ORG", true), Field::new("token", "GH_TOKEN", false)]);
        assert_eq!(resolve(&f, env(&[("GH_TOKEN", "x")])).unwrap(), [("token".to_string(), "x".to_string())]);
        assert!(fields(&obj(json!({ "fields": { "a": "NOT A NAME" } }))).unwrap_err().contains("fields.a"));
        assert!(fields(&obj(json!({ "fields": { "a": 1 } }))).is_err());
        assert!(fields(&obj(json!({ "fields": {} }))).is_err());
        assert!(fields(&obj(json!({ "fields": ["A"] }))).is_err());
        assert!(fields(&obj(json!({ "fields": { "a": { "env": "A", "optional": "yes" } } }))).is_err());
    }

    #[test]
    fn binding_config_overrides_plugin_config() {
        let m = merged_config(r#"{"fields":{"a":"A"}}"#, r#"{"fields":{"b":"B"}}"#).unwrap();
        assert_eq!(fields(&m).unwrap(), [Field::new("b", "B", false)]);
        let m = merged_config(r#"{"fields":{"a":"A"}}"#, "{}").unwrap();
        assert_eq!(fields(&m).unwrap(), [Field::new("a", "A", false)]);
        assert!(merged_config("", "").unwrap().is_empty());
        assert!(merged_config("[", "").is_err());
    }
}
