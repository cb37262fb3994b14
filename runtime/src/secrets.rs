//! Secret values, kept out of everything a run shows or stores: the values
//! of sensitive vars and of credentials, and the attributes a sensitive var
//! flows into or a provisioner marks sensitive. Structured values are
//! masked by key ([`mask`], [`mask_keys`]); free text (log lines, error
//! messages) by value ([`Secrets::redact`]). Every secret a run learns is
//! also kept for the whole process ([`redact_all`]), for text that reaches
//! no run: a plugin's own log lines, which go to stackpipe's log.

use std::sync::RwLock;

use serde_json::{json, Value};

/// What a masked value reads as.
pub const MASKED: &str = "(sensitive)";

/// Shorter secrets are not looked for in text: they would mask ordinary
/// words and numbers (and say what the secret is by what they mask).
const SHORTEST: usize = 4;

/// Every secret any run of this process has seen.
static ALL: Secrets = Secrets { values: RwLock::new(Vec::new()) };

/// `text` with every secret this process has seen masked.
pub fn redact_all(text: &str) -> String {
    ALL.redact(text)
}

/// The secret values a run has seen so far, to mask out of text.
#[derive(Debug, Default)]
pub struct Secrets {
    values: RwLock<Vec<String>>,
}

impl Secrets {
    pub fn new() -> Self {
        Secrets::default()
    }

    /// Keeps `text` as a secret (here, and for the whole process).
    pub fn add(&self, text: &str) {
        if text.len() < SHORTEST {
            return;
        }
        if !std::ptr::eq(self, &ALL) {
            ALL.add(text);
        }
        if let Ok(mut values) = self.values.write() {
            if !values.iter().any(|v| v == text) {
                values.push(text.to_string());
                // Longest first: a secret that holds another is masked whole.
                values.sort_by_key(|v| std::cmp::Reverse(v.len()));
            }
        }
    }

    /// Keeps every string and number inside `value` as a secret.
    pub fn add_value(&self, value: &Value) {
        match value {
            Value::String(s) => self.add(s),
            Value::Number(n) => self.add(&n.to_string()),
            Value::Array(items) => items.iter().for_each(|v| self.add_value(v)),
            Value::Object(m) => m.values().for_each(|v| self.add_value(v)),
            Value::Null | Value::Bool(_) => {}
        }
    }

    /// Whether a string inside `value` holds a secret.
    pub fn holds(&self, value: &Value) -> bool {
        let text_holds = |t: &str| self.values.read().is_ok_and(|vs| vs.iter().any(|v| t.contains(v.as_str())));
        match value {
            Value::String(s) => text_holds(s),
            Value::Number(n) => text_holds(&n.to_string()),
            Value::Array(items) => items.iter().any(|v| self.holds(v)),
            Value::Object(m) => m.values().any(|v| self.holds(v)),
            Value::Null | Value::Bool(_) => false,
        }
    }

    /// `text` with every secret in it masked.
    pub fn redact(&self, text: &str) -> String {
        let Ok(values) = self.values.read() else { return text.to_string() };
        let mut out = None::<String>;
        for v in values.iter() {
            let current = out.as_deref().unwrap_or(text);
            if current.contains(v.as_str()) {
                out = Some(current.replace(v.as_str(), MASKED));
            }
        }
        out.unwrap_or_else(|| text.to_string())
    }
}

/// Keys whose values are secret by their name, whatever marks them.
pub(crate) fn is_secret_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "private_key", "credential"].iter().any(|s| k.contains(s))
}

/// `v` with the values of secret-named keys masked, at any depth.
pub fn mask(v: &Value) -> Value {
    mask_keys(v, &[])
}

/// [`mask`], and the top-level keys in `sensitive` masked too.
/// A resource's record as it may be shown: its sensitive outputs and the
/// state of its secret attributes masked (its attributes are stored
/// masked already).
pub fn masked_record(r: &crate::state::ResourceRecord) -> crate::state::ResourceRecord {
    let mut r = r.clone();
    r.outputs = mask_keys(&r.outputs, &r.sensitive_outputs);
    r.state = mask_keys_deep(&r.state, &r.sensitive);
    r
}

pub fn mask_keys(v: &Value, sensitive: &[String]) -> Value {
    walk(v, true, false, sensitive)
}

/// [`mask`], and the keys in `sensitive` masked at any depth: for a
/// provisioner's state, whose shape stackpipe does not know.
pub fn mask_keys_deep(v: &Value, sensitive: &[String]) -> Value {
    walk(v, true, true, sensitive)
}

fn walk(v: &Value, top: bool, deep: bool, sensitive: &[String]) -> Value {
    {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        let secret = is_secret_name(k) || ((top || deep) && sensitive.iter().any(|s| s == k));
                        (k.clone(), if secret { json!(MASKED) } else { walk(v, false, deep, sensitive) })
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, false, deep, sensitive)).collect()),
            other => other.clone(),
        }
    }
}

/// The properties a JSON Schema of a resource type's attributes or outputs
/// marks secret: `writeOnly: true` (JSON Schema's word for a value that is
/// given and never read back) or `sensitive: true`.
pub fn schema_sensitive(schema: &str) -> Vec<String> {
    let Ok(schema) = serde_json::from_str::<Value>(schema) else { return Vec::new() };
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return Vec::new() };
    let marked = |p: &Value| {
        p.get("writeOnly").and_then(Value::as_bool) == Some(true) || p.get("sensitive").and_then(Value::as_bool) == Some(true)
    };
    props.iter().filter(|(_, p)| marked(p)).map(|(name, _)| name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_at_any_depth() {
        let v = json!({ "name": "db", "master_password": "hunter2", "auth": { "api_token": "t", "user": "u" }, "list": [{ "secret": 1 }] });
        let m = mask(&v);
        assert_eq!(m["name"], "db");
        assert_eq!(m["master_password"], MASKED);
        assert_eq!(m["auth"]["api_token"], MASKED);
        assert_eq!(m["auth"]["user"], "u");
        assert_eq!(m["list"][0]["secret"], MASKED);
    }

    #[test]
    fn marked_keys_are_masked_whatever_their_name() {
        let v = json!({ "api_key": "k-123", "conn": { "url": "x" }, "name": "db" });
        let m = mask_keys(&v, &["api_key".into(), "conn".into()]);
        assert_eq!(m, json!({ "api_key": MASKED, "conn": MASKED, "name": "db" }));
    }

    #[test]
    fn text_is_redacted_by_value_longest_first() {
        let s = Secrets::new();
        assert_eq!(s.redact("nothing to hide"), "nothing to hide");
        s.add("hunter2");
        s.add("hunter2-extended");
        s.add("abc"); // too short to look for
        s.add_value(&json!({ "pin": 918273 }));
        assert_eq!(
            s.redact("login u:hunter2@h, then hunter2-extended, abc, pin 918273"),
            "login u:(sensitive)@h, then (sensitive), abc, pin (sensitive)"
        );
    }

    #[test]
    fn schemas_mark_sensitive_properties() {
        let schema = r#"{"properties":{"password":{"type":"string","writeOnly":true},"api_key":{"sensitive":true},"name":{}}}"#;
        assert_eq!(schema_sensitive(schema), ["password", "api_key"]);
        assert!(schema_sensitive("nope").is_empty());
    }
}
