//! What the plugin stores for a resource: its id, its attributes as last
//! applied or read (normalized, secrets as digests), and its outputs.

use serde_json::{Map, Value, json};

use crate::kinds::Kind;

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub kind: Kind,
    pub id: String,
    pub attributes: Map<String, Value>,
    pub outputs: Map<String, Value>,
}

impl State {
    pub fn new(kind: Kind, id: &str, attributes: Map<String, Value>, outputs: Map<String, Value>) -> State {
        State { kind, id: id.to_string(), attributes, outputs }
    }

    pub fn to_json(&self) -> String {
        json!({
            "type": self.kind.name(),
            "id": self.id,
            "attributes": self.attributes,
            "outputs": self.outputs,
        })
        .to_string()
    }

    pub fn outputs_json(&self) -> String {
        Value::Object(self.outputs.clone()).to_string()
    }

    pub fn from_json(kind: Kind, text: &str) -> Result<State, String> {
        let bad = |what: &str| format!("the stored state is not an aws.{} state ({what})", kind.name());
        let v: Value = serde_json::from_str(text).map_err(|e| bad(&format!("not JSON: {e}")))?;
        match v.get("type").and_then(Value::as_str) {
            Some(t) if t == kind.name() => {}
            Some(t) => return Err(bad(&format!("it is an aws.{t} state"))),
            None => return Err(bad("no `type`")),
        }
        let id = v.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| bad("no `id`"))?;
        let object = |key: &str| match v.get(key) {
            Some(Value::Object(m)) => Ok(m.clone()),
            _ => Err(bad(&format!("no `{key}`"))),
        };
        Ok(State { kind, id: id.to_string(), attributes: object("attributes")?, outputs: object("outputs")? })
    }

    /// A string output (empty when absent).
    pub fn output(&self, key: &str) -> String {
        self.outputs.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
    }

    /// A string attribute (empty when absent).
    pub fn attr(&self, key: &str) -> String {
        self.attributes.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
    }
}

/// Builds a JSON object from pairs.
pub fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_states() {
        let s =
            State::new(Kind::Vpc, "vpc-1", obj([("cidr_block", json!("10.0.0.0/16"))]), obj([("id", json!("vpc-1"))]));
        assert_eq!(State::from_json(Kind::Vpc, &s.to_json()).unwrap(), s);
        assert_eq!(s.output("id"), "vpc-1");
        assert_eq!(s.attr("cidr_block"), "10.0.0.0/16");
        assert!(State::from_json(Kind::Subnet, &s.to_json()).unwrap_err().contains("it is an aws.vpc state"));
        assert!(State::from_json(Kind::Vpc, "{}").unwrap_err().contains("no `type`"));
        assert!(State::from_json(Kind::Vpc, r#"{"type":"vpc","id":"v"}"#).unwrap_err().contains("no `attributes`"));
        assert!(State::from_json(Kind::Vpc, "nope").is_err());
    }
}
