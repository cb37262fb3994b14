//! JSON helpers shared by the builtins: `#[path = "../../common/json.rs"] mod json;`.

use serde_json::{Map, Value};

/// Parses a JSON object; an empty text or `null` counts as `{}` (a plugin
/// without `config { }`, a resource without attributes).
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

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn objects_and_empties() {
        assert!(parse_object("", "x").unwrap().is_empty());
        assert!(parse_object(" null ", "x").unwrap().is_empty());
        assert_eq!(parse_object(r#"{"a":1}"#, "x").unwrap()["a"], 1);
        assert_eq!(parse_object("[1]", "the config").unwrap_err(), "the config must be a JSON object");
        assert!(parse_object("{", "the config").unwrap_err().starts_with("the config is not valid JSON"));
    }
}
