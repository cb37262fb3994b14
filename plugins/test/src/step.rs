//! `test.step`, independent of the host: attributes, injected failures, states,
//! outputs and plan diffing. Pure, so `cargo test` runs it natively.

use serde_json::{Map, Value, json};
#[cfg(test)]
use stackpipe_plugin_sdk::diagnostics::diagnostics_error;
use stackpipe_plugin_sdk::diff;
use stackpipe_plugin_sdk::json::parse_object;
use stackpipe_plugin_sdk::serde::{self, Deserialize, Deserializer, Serialize, Serializer};

use stackpipe_plugin_sdk::types::{Diagnostic, ResourcePlan};

/// The message of every injected failure, exactly.
pub const INJECTED: &str = "injected failure";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Validate,
    Read,
    Plan,
    Apply,
    Destroy,
}

impl Op {
    const ALL: [(&'static str, Op); 5] = [
        ("validate", Op::Validate),
        ("read", Op::Read),
        ("plan", Op::Plan),
        ("apply", Op::Apply),
        ("destroy", Op::Destroy),
    ];

    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.iter().find(|(name, _)| *name == s).map(|(_, op)| *op)
    }

    pub fn name(self) -> &'static str {
        Op::ALL.iter().find(|(_, op)| *op == self).map(|(name, _)| *name).unwrap_or("?")
    }
}

/// A `test.step`'s attributes: the ones with a meaning, and all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub delay_ms: u64,
    /// How long a read (a refresh) of the step sleeps.
    pub refresh_delay_ms: u64,
    pub fail_on: Option<Op>,
    /// `fail_while_exists`: the failure is injected only while this file
    /// (in a granted directory) exists: an outside problem, fixed by
    /// removing it, with the pipeline unchanged.
    pub fail_while: Option<String>,
    pub outputs: Map<String, Value>,
    /// Attribute names whose changes the plan marks sensitive.
    pub sensitive: Vec<String>,
    pub attributes: Map<String, Value>,
}

impl Step {
    pub fn fails(&self, op: Op) -> bool {
        self.fail_on == Some(op)
    }

    /// `Err("injected failure")` when this step fails at `op`.
    pub fn check(&self, op: Op) -> Result<(), String> {
        if self.fails(op) { Err(INJECTED.to_string()) } else { Ok(()) }
    }
}

fn diag(attribute: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic { attribute: Some(attribute.into()), message: message.into() }
}

/// A number of milliseconds, 0 or more (0 when absent).
fn milliseconds(attributes: &Map<String, Value>, name: &str, diags: &mut Vec<Diagnostic>) -> u64 {
    match attributes.get(name) {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(ms), _) => ms,
            (None, Some(f)) if f >= 0.0 && f.is_finite() => f.round() as u64,
            _ => {
                diags.push(diag(name, format!("`{name}` must be a number of milliseconds, 0 or more")));
                0
            }
        },
        Some(_) => {
            diags.push(diag(name, format!("`{name}` must be a number of milliseconds")));
            0
        }
    }
}

/// Parses the attributes; the diagnostics do not include an injected
/// validate failure (see [`validate`]).
pub fn parse_step(attributes: Map<String, Value>) -> Result<Step, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let delay_ms = milliseconds(&attributes, "delay_ms", &mut diags);
    let refresh_delay_ms = milliseconds(&attributes, "refresh_delay_ms", &mut diags);
    let fail = match attributes.get("fail") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            diags.push(diag("fail", "`fail` must be true or false"));
            false
        }
    };
    let fail_while = match attributes.get("fail_while_exists") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => {
            diags.push(diag("fail_while_exists", "`fail_while_exists` must be a path (a non-empty string)"));
            None
        }
    };
    let fail_at = match attributes.get("fail_on") {
        None | Some(Value::Null) => Op::Apply,
        Some(Value::String(s)) => Op::parse(s).unwrap_or_else(|| {
            diags.push(diag(
                "fail_on",
                format!("`fail_on` must be one of validate, read, plan, apply, destroy, not `{s}`"),
            ));
            Op::Apply
        }),
        Some(_) => {
            diags.push(diag("fail_on", "`fail_on` must be a string: validate, read, plan, apply or destroy"));
            Op::Apply
        }
    };
    let outputs = match attributes.get("outputs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => {
            for reserved in ["id", "inputs"] {
                if o.contains_key(reserved) {
                    diags.push(diag("outputs", format!("`outputs.{reserved}` is reserved: the step sets it itself")));
                }
            }
            o.clone()
        }
        Some(_) => {
            diags.push(diag("outputs", "`outputs` must be an object"));
            Map::new()
        }
    };
    let sensitive = match attributes.get("sensitive") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_string).collect()
        }
        Some(_) => {
            diags.push(diag("sensitive", "`sensitive` must be a list of attribute names"));
            Vec::new()
        }
    };
    if diags.is_empty() {
        let fail_on = (fail || fail_while.is_some()).then_some(fail_at);
        Ok(Step { delay_ms, refresh_delay_ms, fail_on, fail_while, outputs, sensitive, attributes })
    } else {
        Err(diags)
    }
}

/// Parses desired attributes for read/plan/apply/destroy: errors are one line.
#[cfg(test)]
pub fn step_from(text: &str, what: &str) -> Result<Step, String> {
    let attrs = parse_object(text, what)?;
    parse_step(attrs).map_err(|d| diagnostics_error(&d))
}

#[cfg(test)]
pub fn validate(desired: &str) -> Vec<Diagnostic> {
    match parse_object(desired, "the resource's attributes") {
        Err(e) => vec![Diagnostic { attribute: None, message: e }],
        Ok(attrs) => validate_attributes(attrs),
    }
}

/// The diagnostics of parsed attributes, with an injected validate failure.
pub fn validate_attributes(attrs: Map<String, Value>) -> Vec<Diagnostic> {
    match parse_step(attrs) {
        Err(diags) => diags,
        Ok(step) if step.fails(Op::Validate) => vec![Diagnostic { attribute: None, message: INJECTED.into() }],
        Ok(_) => Vec::new(),
    }
}

/// The plugin's `config { ledger = "out/ledger.txt" }`.
pub fn ledger_path(config: &str) -> Result<Option<String>, String> {
    let cfg = parse_object(config, "the plugin config")?;
    match cfg.get("ledger") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err("plugin config `ledger` must be a path (a non-empty string)".into()),
    }
}

pub fn ledger_line(op: Op, pipeline: &str, environment: &str, resource: &str) -> String {
    format!("{} {pipeline}/{environment}/{resource}\n", op.name())
}

/// Where, beside the ledger, a step applied with a ledger keeps its state, so
/// that `read` without a state can find what an interrupted apply created:
/// `<ledger>.steps/<pipeline>/<environment>/<resource>.json`.
pub fn record_path(ledger: &str, pipeline: &str, environment: &str, resource: &str) -> String {
    format!("{ledger}.steps/{pipeline}/{environment}/{resource}.json")
}

pub fn new_id(resource: &str, random: u64) -> String {
    let name = if resource.is_empty() { "step" } else { resource };
    format!("{name}-{random:016x}")
}

/// What the plugin stores: the step's id and its desired attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub id: String,
    pub attributes: Map<String, Value>,
}

impl State {
    pub fn to_json(&self) -> String {
        json!({ "id": self.id, "attributes": self.attributes }).to_string()
    }

    pub fn from_json(text: &str) -> Result<State, String> {
        State::from_object(&parse_object(text, "the stored state")?)
    }

    pub fn from_object(v: &Map<String, Value>) -> Result<State, String> {
        let id = v.get("id").and_then(Value::as_str).ok_or("the stored state is not a test.step state (no `id`)")?;
        let attributes = match v.get("attributes") {
            Some(Value::Object(a)) => a.clone(),
            _ => return Err("the stored state is not a test.step state (no `attributes`)".into()),
        };
        Ok(State { id: id.to_string(), attributes })
    }

    /// `id`, every key of the `outputs` attribute, and `inputs`: all the attributes.
    #[cfg(test)]
    pub fn outputs(&self, step: &Step) -> String {
        self.outputs_value(step).to_string()
    }

    pub fn outputs_value(&self, step: &Step) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), Value::String(self.id.clone()));
        for (k, v) in &step.outputs {
            out.insert(k.clone(), v.clone());
        }
        out.insert("inputs".into(), Value::Object(self.attributes.clone()));
        Value::Object(out)
    }
}

/// Stored as `{ "id", "attributes" }`, the same JSON as [`State::to_json`].
impl Serialize for State {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        json!({ "id": self.id, "attributes": self.attributes }).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<State, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Object(m) => State::from_object(&m).map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom("the stored state must be a JSON object")),
        }
    }
}

/// Create when there is no prior, update when the attributes differ, no-op
/// otherwise; a step is never replaced.
pub fn plan(prior: Option<&State>, desired: &Step) -> ResourcePlan {
    let empty = Map::new();
    let before = prior.map_or(&empty, |p| &p.attributes);
    let changes = diff::changes(before, &desired.attributes, &[] as &[&str], &desired.sensitive);
    ResourcePlan { change: diff::change_kind(prior.is_some(), &changes), changes }
}

pub const DESCRIPTION: &str = "A resource that touches nothing, for testing pipelines: it takes any attributes, sleeps `delay_ms` \
    on apply and destroy (and `refresh_delay_ms` on a refresh), fails on purpose with `fail`/`fail_on` (or while the file `fail_while_exists` names exists), and outputs an id, its `outputs` attribute and \
    its inputs; apply logs `warn` at level warn. With the plugin config `ledger` (a file in a granted directory) each apply and destroy appends \
    a line `<op> <pipeline>/<environment>/<resource>`.";

pub fn attributes_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "test.step",
        "type": "object",
        "properties": {
            "delay_ms": { "type": "number", "minimum": 0, "default": 0, "description": "How long apply and destroy sleep, in milliseconds." },
            "refresh_delay_ms": { "type": "number", "minimum": 0, "default": 0, "description": "How long a refresh (read) of the deployed step sleeps, in milliseconds." },
            "fail": { "type": "boolean", "default": false, "description": "Make the operation named by `fail_on` fail with \"injected failure\"." },
            "fail_on": { "enum": ["validate", "read", "plan", "apply", "destroy"], "default": "apply", "description": "Which operation `fail` breaks." },
            "fail_while_exists": { "type": "string", "description": "Fail the operation named by `fail_on` only while this file (in a granted directory) exists." },
            "outputs": { "type": "object", "default": {}, "description": "Copied into the outputs (except the reserved `id` and `inputs`)." },
            "sensitive": { "type": "array", "items": { "type": "string" }, "description": "Attributes whose changes the plan marks sensitive." },
            "warn": { "type": "string", "description": "A line apply logs at level warn (to see how a plugin's warnings are shown)." }
        },
        "additionalProperties": true
    })
}

pub fn outputs_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "id": { "type": "string", "keptOnUpdate": true, "description": "Unique per resource instance: `<resource>-<16 hex digits>`, kept across updates." },
            "inputs": { "type": "object", "description": "All the desired attributes." }
        },
        "required": ["id", "inputs"],
        "additionalProperties": true
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stackpipe_plugin_sdk::Change;

    fn step(v: Value) -> Step {
        parse_step(v.as_object().unwrap().clone()).unwrap()
    }

    #[test]
    fn defaults_and_any_attribute() {
        let s = step(json!({ "color": "blue", "n": [1, 2] }));
        assert_eq!((s.delay_ms, s.fail_on), (0, None));
        assert!(s.outputs.is_empty());
        assert_eq!(s.attributes.len(), 2);
        assert!(validate(r#"{"color":"blue"}"#).is_empty());
        assert!(validate("").is_empty());
    }

    #[test]
    fn fail_defaults_to_apply() {
        assert_eq!(step(json!({ "fail": true })).fail_on, Some(Op::Apply));
        assert_eq!(step(json!({ "fail": true, "fail_on": "read" })).fail_on, Some(Op::Read));
        assert_eq!(step(json!({ "fail": false, "fail_on": "read" })).fail_on, None);
        let s = step(json!({ "fail": true, "fail_on": "destroy" }));
        assert_eq!(s.check(Op::Destroy).unwrap_err(), "injected failure");
        assert!(s.check(Op::Apply).is_ok());
    }

    #[test]
    fn validate_failure_is_injected_as_a_diagnostic() {
        let d = validate(r#"{"fail": true, "fail_on": "validate"}"#);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, INJECTED);
    }

    #[test]
    fn ill_typed_attributes_are_named() {
        let d =
            validate(r#"{"delay_ms": "soon", "fail": "yes", "fail_on": "deploy", "outputs": [1], "sensitive": "x"}"#);
        let names: Vec<_> = d.iter().map(|d| d.attribute.as_deref().unwrap()).collect();
        assert_eq!(names, ["delay_ms", "fail", "fail_on", "outputs", "sensitive"]);
        assert_eq!(validate(r#"{"delay_ms": -1}"#)[0].attribute.as_deref(), Some("delay_ms"));
        assert_eq!(validate(r#"{"outputs": {"id": 1}}"#)[0].attribute.as_deref(), Some("outputs"));
        assert_eq!(step(json!({ "delay_ms": 2.6 })).delay_ms, 3);
        assert!(step_from("[]", "the resource's attributes").unwrap_err().contains("object"));
    }

    #[test]
    fn outputs_have_id_copied_outputs_and_inputs() {
        let s = step(json!({ "outputs": { "arn": "a:b", "port": 80 }, "x": 1 }));
        let st = State { id: new_id("web", 0xab), attributes: s.attributes.clone() };
        assert_eq!(st.id, "web-00000000000000ab");
        let out: Value = serde_json::from_str(&st.outputs(&s)).unwrap();
        assert_eq!(out["id"], "web-00000000000000ab");
        assert_eq!(out["arn"], "a:b");
        assert_eq!(out["port"], 80);
        assert_eq!(out["inputs"], json!({ "outputs": { "arn": "a:b", "port": 80 }, "x": 1 }));
        assert_eq!(State::from_json(&st.to_json()).unwrap(), st);
        assert_eq!(new_id("", 1), "step-0000000000000001");
    }

    #[test]
    fn plans_create_update_and_no_op() {
        let s = step(json!({ "a": 1, "tags": { "env": "dev", "team": "x" } }));
        let p = plan(None, &s);
        assert_eq!(p.change, Change::Create);
        let paths: Vec<_> = p.changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["a", "tags"]);

        let prior = State { id: "s-1".into(), attributes: s.attributes.clone() };
        assert_eq!(plan(Some(&prior), &s).change, Change::NoOp);

        let s2 = step(json!({ "a": 1, "tags": { "env": "prod", "team": "x" }, "b": true }));
        let p = plan(Some(&prior), &s2);
        assert_eq!(p.change, Change::Update);
        let got: Vec<_> =
            p.changes.iter().map(|c| (c.path.as_str(), c.before.as_deref(), c.after.as_deref())).collect();
        assert_eq!(got, [("b", None, Some("true")), ("tags.env", Some("\"dev\""), Some("\"prod\""))]);
        assert!(p.changes.iter().all(|c| !c.forces_replacement));

        let s3 = step(json!({ "a": 2 }));
        let p = plan(Some(&prior), &s3);
        assert_eq!(p.changes.last().map(|c| (c.path.as_str(), c.after.is_none())), Some(("tags", true)));
    }

    #[test]
    fn sensitive_changes_are_marked() {
        let s = step(json!({ "password": "b", "user": "u", "sensitive": ["password"] }));
        let prior = State {
            id: "s".into(),
            attributes: json!({ "password": "a", "user": "v", "sensitive": ["password"] }).as_object().unwrap().clone(),
        };
        let p = plan(Some(&prior), &s);
        let marks: Vec<_> = p.changes.iter().map(|c| (c.path.as_str(), c.sensitive)).collect();
        assert_eq!(marks, [("password", true), ("user", false)]);
    }

    #[test]
    fn ledger_config_and_lines() {
        assert_eq!(ledger_path("").unwrap(), None);
        assert_eq!(ledger_path(r#"{"ledger":"out/l.txt"}"#).unwrap().as_deref(), Some("out/l.txt"));
        assert!(ledger_path(r#"{"ledger":5}"#).is_err());
        assert_eq!(ledger_line(Op::Apply, "p", "dev", "a"), "apply p/dev/a\n");
        assert_eq!(ledger_line(Op::Destroy, "p", "dev", "a"), "destroy p/dev/a\n");
    }

    #[test]
    fn kinds() {
        use stackpipe_plugin_sdk::provisioner::find;
        assert!(find::<crate::Test>("step").is_ok());
        assert!(find::<crate::Test>("test.step").is_ok());
        assert_eq!(
            find::<crate::Test>("file").err().unwrap(),
            "unknown resource type `file`: the test plugin handles `step`"
        );
        assert_eq!(Op::parse("plan").map(Op::name), Some("plan"));
    }
}
