//! JSON helpers: the texts the host passes (attributes, configs, states) are
//! JSON objects.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::types::Diagnostic;

/// Parses a JSON object; an empty text or `null` counts as `{}` (a plugin
/// without `config { }`, a resource without attributes). `what` names the
/// text in errors: `the plugin config must be a JSON object`.
pub fn parse_object(text: &str, what: &str) -> Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(format!("{what} must be a JSON object")),
        Err(e) => Err(format!("{what} is not valid JSON: {e}")),
    }
}

/// A value as JSON text (`"a"` for the string `a`).
pub fn json_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// What kind of JSON value this is, for messages: `a string`, `a list`.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Deserializes an object of attributes into `T`; a failure is a diagnostic
/// that names the attribute at fault when it can be found (a missing, unknown
/// or ill-typed attribute).
pub fn from_object<T: DeserializeOwned>(object: Map<String, Value>) -> Result<T, Diagnostic> {
    match serde_json::from_value::<T>(Value::Object(object.clone())) {
        Ok(t) => Ok(t),
        Err(e) => {
            Err(Diagnostic { attribute: attribute_at_fault::<T>(&object, &e.to_string()), message: e.to_string() })
        }
    }
}

/// Which attribute an error of deserializing `object` is about: the one the
/// message quotes (`missing field `x``, `unknown field `x``), or the one whose
/// removal makes that error go away (an ill-typed value).
fn attribute_at_fault<T: DeserializeOwned>(object: &Map<String, Value>, message: &str) -> Option<String> {
    for prefix in ["missing field `", "unknown field `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return rest.split('`').next().map(str::to_string);
        }
    }
    object.keys().find_map(|key| {
        let mut without = object.clone();
        without.remove(key);
        match serde_json::from_value::<T>(Value::Object(without)) {
            Ok(_) => Some(key.clone()),
            Err(e) if e.to_string() == format!("missing field `{key}`") => Some(key.clone()),
            Err(_) => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[test]
    fn objects_and_empties() {
        assert!(parse_object("", "x").unwrap().is_empty());
        assert!(parse_object(" null ", "x").unwrap().is_empty());
        assert_eq!(parse_object(r#"{"a":1}"#, "x").unwrap()["a"], 1);
        assert_eq!(parse_object("[1]", "the config").unwrap_err(), "the config must be a JSON object");
        assert!(parse_object("{", "the config").unwrap_err().starts_with("the config is not valid JSON"));
    }

    #[allow(dead_code)]
    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Note {
        text: String,
        #[serde(default)]
        count: u32,
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn names_the_attribute_at_fault() {
        assert_eq!(from_object::<Note>(obj(json!({ "text": "a", "count": 2 }))).unwrap().count, 2);
        let d = from_object::<Note>(obj(json!({}))).unwrap_err();
        assert_eq!((d.attribute.as_deref(), d.message.as_str()), (Some("text"), "missing field `text`"));
        let d = from_object::<Note>(obj(json!({ "text": "a", "colour": 1 }))).unwrap_err();
        assert_eq!(d.attribute.as_deref(), Some("colour"));
        let d = from_object::<Note>(obj(json!({ "text": "a", "count": "many" }))).unwrap_err();
        assert_eq!(d.attribute.as_deref(), Some("count"));
        assert!(d.message.starts_with("invalid type: string \"many\""), "{}", d.message);
        let d = from_object::<Note>(obj(json!({ "text": 5 }))).unwrap_err();
        assert_eq!(d.attribute.as_deref(), Some("text"));
    }
}
