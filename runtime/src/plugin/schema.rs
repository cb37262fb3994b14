//! What stackpipe reads in the JSON Schemas a provisioner gives its
//! resource types: which attributes name input files, and which outputs
//! keep their value when the resource is updated in place.

use serde_json::Value;

/// The JSON Schema `format` a provisioner gives an attribute whose value is
/// a file it reads (a template, a content source): `stackpipe watch` watches
/// those files, as it watches the pipeline and the plugins.
pub const INPUT_FILE_FORMAT: &str = "stackpipe:input-file";

/// The attributes of a resource type whose values name input files: a
/// string property with format [`INPUT_FILE_FORMAT`], or an array of them.
pub fn input_file_attributes(attributes_schema: &str) -> Vec<String> {
    let Ok(schema) = serde_json::from_str::<Value>(attributes_schema) else {
        return Vec::new();
    };
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let is_input = |v: &Value| v.get("format").and_then(Value::as_str) == Some(INPUT_FILE_FORMAT);
    props
        .iter()
        .filter(|(_, p)| is_input(p) || p.get("items").is_some_and(is_input))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The keyword a provisioner puts on an output in its outputs schema
/// (`"id": { "type": "string", "keptOnUpdate": true }`) when an update in
/// place never changes that output: an id, an ARN. A plan then shows a
/// dependent of it as it is, where it would otherwise be `(known after
/// apply)` (Terraform's plugin framework calls this `UseStateForUnknown`).
pub const KEPT_ON_UPDATE: &str = "keptOnUpdate";

/// The outputs a resource type's outputs schema marks [`KEPT_ON_UPDATE`].
pub fn kept_on_update_outputs(outputs_schema: &str) -> Vec<String> {
    let Ok(schema) = serde_json::from_str::<Value>(outputs_schema) else {
        return Vec::new();
    };
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .filter(|(_, p)| p.get(KEPT_ON_UPDATE).and_then(Value::as_bool) == Some(true))
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_file_attributes_are_the_ones_with_the_input_file_format() {
        let schema = r#"{"type":"object","properties":{
            "path":{"type":"string"},
            "source":{"type":"string","format":"stackpipe:input-file"},
            "includes":{"type":"array","items":{"type":"string","format":"stackpipe:input-file"}},
            "when":{"type":"string","format":"date-time"}}}"#;
        assert_eq!(input_file_attributes(schema), ["source", "includes"]);
        assert!(input_file_attributes("{}").is_empty());
        assert!(input_file_attributes("not json").is_empty());
    }

    #[test]
    fn kept_outputs_are_the_ones_marked_kept_on_update() {
        let schema = r#"{"type":"object","properties":{
            "id":{"type":"string","keptOnUpdate":true},
            "arn":{"type":"string","keptOnUpdate":false},
            "inputs":{"type":"object"}}}"#;
        assert_eq!(kept_on_update_outputs(schema), ["id"]);
        assert!(kept_on_update_outputs("{}").is_empty());
        assert!(kept_on_update_outputs("not json").is_empty());
    }
}
