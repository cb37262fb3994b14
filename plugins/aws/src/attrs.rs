//! Resource attributes, described by a table per type ([`TypeDef`]): the
//! table drives validation, normalization (defaults, sorted sets, canonical
//! spellings), the plan rules (what forces replacement, what is secret) and
//! the JSON Schemas that `resource-types` returns.
//!
//! Everything compares in normalized form: `read` builds the same shape from
//! the API's answers, so a plan is a plain comparison of two normalized maps.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
pub use stackpipe_plugin_sdk::json::type_name;

use crate::cidr;
use stackpipe_plugin_sdk::types::Diagnostic;

/// What the host puts in place of a value that depends on an output not
/// known yet (in a plan): the attribute will be known at apply time.
pub const UNKNOWN: &str = "(known after apply)";

/// The kind of value an attribute takes.
#[derive(Clone, Copy)]
pub enum Ty {
    /// A non-empty string.
    Str,
    /// Any string, empty included.
    Text,
    /// A string that must pass a check, which returns its canonical spelling
    /// (`Err` is the diagnostic).
    Checked(fn(&str) -> Result<String, String>),
    /// One of these strings (matched without regard to case, stored as written here).
    Enum(&'static [&'static str]),
    /// An IPv4 CIDR block with a prefix length within `min..=max`.
    Cidr {
        min: u8,
        max: u8,
    },
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    /// A list of non-empty strings. A `set` is sorted and deduplicated: its order means nothing.
    List {
        set: bool,
        min: usize,
    },
    /// String keys to string values (tags); numbers and booleans are written as strings.
    Map,
    /// Security group ingress rules: `{ protocol, from_port, to_port, cidr }` objects.
    Ingress,
    /// A secret string that must pass a check. It is stored and compared only as a salted digest.
    Secret(fn(&str) -> Result<(), String>),
    /// A file the plugin reads, relative to a directory the pipeline grants
    /// it (`allow { fs = [...] }`): no `..`, not absolute. Its schema format
    /// makes `stackpipe watch` watch it.
    InputFile,
}

/// The value an absent optional attribute takes. `None`: AWS picks one, and a
/// plan does not compare it while the pipeline does not set it.
#[derive(Clone, Copy)]
pub enum Dflt {
    None,
    Str(&'static str),
    Int(i64),
    Bool(bool),
    EmptyMap,
    EmptyList,
}

impl Dflt {
    fn value(self) -> Option<Value> {
        match self {
            Dflt::None => None,
            Dflt::Str(s) => Some(json!(s)),
            Dflt::Int(i) => Some(json!(i)),
            Dflt::Bool(b) => Some(json!(b)),
            Dflt::EmptyMap => Some(json!({})),
            Dflt::EmptyList => Some(json!([])),
        }
    }
}

pub struct AttrDef {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub default: Dflt,
    /// A change cannot be made in place: the resource is replaced.
    pub replace: bool,
    /// Not written by the pipeline: the plugin works it out from other
    /// attributes (an object's `sha256`, from its body) and a plan compares
    /// it like the others. Not in the attributes schema.
    pub computed: bool,
    pub doc: &'static str,
}

impl AttrDef {
    pub fn sensitive(&self) -> bool {
        matches!(self.ty, Ty::Secret(_))
    }
}

/// A check on normalized attributes that involves more than one of them.
pub type CrossCheck = fn(&Map<String, Value>) -> Vec<Diagnostic>;

/// A resource type: its attributes, outputs and any checks across attributes.
pub struct TypeDef {
    pub name: &'static str,
    pub description: &'static str,
    pub attrs: &'static [AttrDef],
    /// (name, JSON Schema type, description)
    pub outputs: &'static [(&'static str, &'static str, &'static str)],
    /// The outputs an update in place never changes (marked `keptOnUpdate`
    /// in the outputs schema): ids, ARNs, and what only a replacement
    /// changes. A plan shows what uses them as it is.
    pub kept_on_update: &'static [&'static str],
    pub check: Option<CrossCheck>,
}

pub fn diag(attribute: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic { attribute: Some(attribute.to_string()), message: message.into() }
}

/// Whether a value is, or holds, the host's "known after apply" marker.
pub fn is_unknown(v: &Value) -> bool {
    match v {
        Value::String(s) => s == UNKNOWN,
        Value::Array(items) => items.iter().any(is_unknown),
        Value::Object(m) => m.values().any(is_unknown),
        _ => false,
    }
}

/// The digest a secret is kept as: salted with what it belongs to (the
/// resource type and attribute), so equal secrets elsewhere do not match.
pub fn secret_digest(salt: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"stackpipe-aws-secret\0");
    h.update(salt.as_bytes());
    h.update(b"\0");
    h.update(secret.as_bytes());
    format!("sha256:{}", hex(&h.finalize()))
}

/// The sha256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64))
        }
        _ => None,
    }
}

/// Normalizes one attribute's value; `Err` is the diagnostic's message.
fn normalize_value(def: &TypeDef, a: &AttrDef, v: &Value) -> Result<Value, String> {
    let name = a.name;
    let want_string = || format!("`{name}` must be a string, not {}", type_name(v));
    match a.ty {
        Ty::Str => match v {
            Value::String(s) if !s.is_empty() => Ok(json!(s)),
            Value::String(_) => Err(format!("`{name}` must not be empty")),
            _ => Err(want_string()),
        },
        Ty::Text => match v {
            Value::String(s) => Ok(json!(s)),
            _ => Err(want_string()),
        },
        Ty::Checked(check) => match v {
            Value::String(s) => check(s).map(|s| json!(s)).map_err(|e| format!("`{name}`: {e}")),
            _ => Err(want_string()),
        },
        Ty::Enum(options) => match v {
            Value::String(s) => options
                .iter()
                .find(|o| o.eq_ignore_ascii_case(s))
                .map(|o| json!(o))
                .ok_or_else(|| format!("`{name}` must be one of {}, not `{s}`", options.join(", "))),
            _ => Err(want_string()),
        },
        Ty::Cidr { min, max } => match v {
            Value::String(s) => cidr::check(s, min, max).map(|()| json!(s)).map_err(|e| format!("`{name}`: {e}")),
            _ => Err(want_string()),
        },
        Ty::Int { min, max } => match as_int(v) {
            Some(i) if (min..=max).contains(&i) => Ok(json!(i)),
            Some(i) => Err(format!("`{name}` must be between {min} and {max}, not {i}")),
            None => Err(format!("`{name}` must be a whole number, not {}", type_name(v))),
        },
        Ty::Bool => match v {
            Value::Bool(b) => Ok(json!(b)),
            _ => Err(format!("`{name}` must be true or false, not {}", type_name(v))),
        },
        Ty::List { set, min } => {
            let Value::Array(items) = v else {
                return Err(format!("`{name}` must be a list of strings, not {}", type_name(v)));
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if !s.is_empty() => out.push(s.clone()),
                    _ => return Err(format!("`{name}`: item {} must be a non-empty string", i + 1)),
                }
            }
            if set {
                out.sort();
                out.dedup();
            }
            if out.len() < min {
                return Err(format!("`{name}` needs at least {min} item(s)"));
            }
            Ok(json!(out))
        }
        Ty::Map => {
            let Value::Object(m) = v else {
                return Err(format!("`{name}` must be a map of strings, not {}", type_name(v)));
            };
            let mut out = Map::new();
            for (k, val) in m {
                let s = match val {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => return Err(format!("`{name}.{k}` must be a string, not {}", type_name(other))),
                };
                if k.is_empty() {
                    return Err(format!("`{name}` has an empty key"));
                }
                out.insert(k.clone(), json!(s));
            }
            Ok(Value::Object(out))
        }
        Ty::Ingress => normalize_ingress(name, v),
        Ty::InputFile => match v {
            Value::String(s) => input_file(s).map(|p| json!(p)).map_err(|e| format!("`{name}`: {e}")),
            _ => Err(want_string()),
        },
        Ty::Secret(check) => match v {
            Value::String(s) => check(s)
                .map(|()| json!(secret_digest(&format!("{}.{name}", def.name), s)))
                .map_err(|e| format!("`{name}`: {e}")),
            _ => Err(want_string()),
        },
    }
}

/// The JSON Schema `format` of an attribute naming a file the plugin reads:
/// the host watches such files (`stackpipe watch`).
pub const INPUT_FILE_FORMAT: &str = "stackpipe:input-file";

/// A relative path inside the granted directories, without `./` parts
/// (wasi-libc matches `out/a`, not `./out/a`, to the grant `out`).
pub fn input_file(path: &str) -> Result<String, String> {
    let p = std::path::Path::new(path);
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    if p.has_root() {
        return Err(format!("`{path}` is absolute: write a path relative to a directory in allow {{ fs = [...] }}"));
    }
    if p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(format!("`{path}` goes up with `..`: write a path inside a directory in allow {{ fs = [...] }}"));
    }
    let normal = stackpipe_plugin_sdk::grants::normalize(p);
    if normal.as_os_str().is_empty() {
        return Err(format!("`{path}` is a directory, not a file"));
    }
    Ok(normal.to_string_lossy().into_owned())
}

/// The canonical protocol name: `tcp`, `udp`, `icmp`, or `-1` for all.
pub fn canonical_protocol(p: &str) -> Option<&'static str> {
    match p.to_ascii_lowercase().as_str() {
        "tcp" | "6" => Some("tcp"),
        "udp" | "17" => Some("udp"),
        "icmp" | "1" => Some("icmp"),
        "-1" | "all" => Some("-1"),
        _ => None,
    }
}

/// One normalized ingress rule.
pub fn rule(protocol: &str, from: i64, to: i64, cidr: &str) -> Value {
    json!({ "protocol": protocol, "from_port": from, "to_port": to, "cidr": cidr })
}

/// Sorts and deduplicates rules, so that two sets of rules compare equal
/// whatever the order they were written or listed in.
pub fn sort_rules(rules: &mut Vec<Value>) {
    let key = |r: &Value| {
        (
            r["protocol"].as_str().unwrap_or_default().to_string(),
            r["from_port"].as_i64().unwrap_or(-1),
            r["to_port"].as_i64().unwrap_or(-1),
            r["cidr"].as_str().unwrap_or_default().to_string(),
        )
    };
    rules.sort_by_key(key);
    rules.dedup();
}

fn normalize_ingress(name: &str, v: &Value) -> Result<Value, String> {
    let items: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        // One `ingress { }` block may arrive as a lone object.
        Value::Object(_) => vec![v],
        _ => return Err(format!("`{name}` must be a list of rules, not {}", type_name(v))),
    };
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        let Value::Object(r) = item else {
            return Err(format!("`{name}` rule {n} must be an object with protocol, from_port, to_port and cidr"));
        };
        if let Some(k) = r.keys().find(|k| !["protocol", "from_port", "to_port", "cidr"].contains(&k.as_str())) {
            return Err(format!("`{name}` rule {n}: unknown key `{k}` (known: protocol, from_port, to_port, cidr)"));
        }
        let protocol = match r.get("protocol") {
            Some(Value::String(p)) => canonical_protocol(p)
                .ok_or_else(|| format!("`{name}` rule {n}: protocol must be tcp, udp, icmp or all (-1), not `{p}`"))?,
            Some(Value::Number(p)) => canonical_protocol(&p.to_string())
                .ok_or_else(|| format!("`{name}` rule {n}: protocol must be tcp, udp, icmp or all (-1), not {p}"))?,
            None | Some(Value::Null) => return Err(format!("`{name}` rule {n}: `protocol` is required")),
            Some(other) => {
                return Err(format!("`{name}` rule {n}: protocol must be a string, not {}", type_name(other)));
            }
        };
        let cidr = match r.get("cidr") {
            Some(Value::String(c)) => {
                cidr::Cidr::parse(c).map_err(|e| format!("`{name}` rule {n}: {e}"))?;
                c.clone()
            }
            None | Some(Value::Null) => return Err(format!("`{name}` rule {n}: `cidr` is required")),
            Some(other) => return Err(format!("`{name}` rule {n}: cidr must be a string, not {}", type_name(other))),
        };
        let port = |key: &str| -> Result<Option<i64>, String> {
            match r.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(p) => {
                    as_int(p).map(Some).ok_or_else(|| format!("`{name}` rule {n}: {key} must be a whole number"))
                }
            }
        };
        let (from, to) = (port("from_port")?, port("to_port")?);
        let (from, to) = match protocol {
            // All traffic: AWS ignores the ports.
            "-1" => match (from, to) {
                (None | Some(-1), None | Some(-1)) => (-1, -1),
                _ => return Err(format!("`{name}` rule {n}: protocol all (-1) takes no ports (or -1)")),
            },
            // ICMP: the ports are the type and the code, -1 for any.
            "icmp" => {
                let (t, c) = (from.unwrap_or(-1), to.unwrap_or(-1));
                if !(-1..=255).contains(&t) || !(-1..=255).contains(&c) {
                    return Err(format!(
                        "`{name}` rule {n}: for icmp, from_port (type) and to_port (code) are -1 to 255"
                    ));
                }
                (t, c)
            }
            _ => {
                let (Some(f), Some(t)) = (from, to) else {
                    return Err(format!("`{name}` rule {n}: from_port and to_port are required for {protocol}"));
                };
                if !(0..=65535).contains(&f) || !(0..=65535).contains(&t) || f > t {
                    return Err(format!(
                        "`{name}` rule {n}: ports must be 0 to 65535 with from_port <= to_port (got {f}..{t})"
                    ));
                }
                (f, t)
            }
        };
        rules.push(rule(protocol, from, to, &cidr));
    }
    sort_rules(&mut rules);
    Ok(Value::Array(rules))
}

/// Validates and normalizes a resource's attributes: defaults filled in,
/// sets sorted, secrets digested. A value that is not known yet stays the
/// marker [`UNKNOWN`]. `Err` holds one diagnostic per problem.
pub fn normalize(def: &TypeDef, raw: &Map<String, Value>) -> Result<Map<String, Value>, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut out = Map::new();
    for a in def.attrs {
        if a.computed {
            if raw.contains_key(a.name) {
                diags.push(diag(a.name, format!("`{}` is worked out by the plugin: it cannot be set", a.name)));
            }
            continue;
        }
        match raw.get(a.name) {
            None | Some(Value::Null) => {
                if a.required {
                    diags.push(diag(a.name, format!("`{}` is required", a.name)));
                } else if let Some(v) = a.default.value() {
                    // Defaults go through the same normalization (a secret's is digested).
                    match normalize_value(def, a, &v) {
                        Ok(v) => {
                            out.insert(a.name.into(), v);
                        }
                        Err(e) => diags.push(diag(a.name, e)),
                    }
                }
            }
            Some(v) if is_unknown(v) => {
                out.insert(a.name.into(), json!(UNKNOWN));
            }
            Some(v) => match normalize_value(def, a, v) {
                Ok(v) => {
                    out.insert(a.name.into(), v);
                }
                Err(e) => diags.push(diag(a.name, e)),
            },
        }
    }
    let known: Vec<&str> = def.attrs.iter().filter(|a| !a.computed).map(|a| a.name).collect();
    for key in raw.keys().filter(|k| !known.contains(&k.as_str()) && def.attrs.iter().all(|a| a.name != k.as_str())) {
        diags.push(diag(key, format!("unknown attribute `{key}` of {} (known: {})", def.name, known.join(", "))));
    }
    if diags.is_empty()
        && let Some(check) = def.check
    {
        diags.extend(check(&out));
    }
    if diags.is_empty() { Ok(out) } else { Err(diags) }
}

/// The JSON Schema of a type's attributes.
pub fn attributes_schema(def: &TypeDef) -> Value {
    let mut props = Map::new();
    for a in def.attrs.iter().filter(|a| !a.computed) {
        let mut p = match a.ty {
            Ty::Str | Ty::Checked(_) => json!({ "type": "string", "minLength": 1 }),
            Ty::Text => json!({ "type": "string" }),
            Ty::InputFile => json!({ "type": "string", "minLength": 1, "format": INPUT_FILE_FORMAT }),
            Ty::Secret(_) => json!({ "type": "string", "writeOnly": true }),
            Ty::Enum(options) => json!({ "enum": options }),
            Ty::Cidr { min, max } => json!({
                "type": "string",
                "pattern": r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$",
                "description": format!("IPv4 CIDR block, /{min} to /{max}."),
            }),
            Ty::Int { min, max } => json!({ "type": "integer", "minimum": min, "maximum": max }),
            Ty::Bool => json!({ "type": "boolean" }),
            Ty::List { set, min } => {
                json!({ "type": "array", "items": { "type": "string", "minLength": 1 }, "minItems": min, "uniqueItems": set })
            }
            Ty::Map => json!({ "type": "object", "additionalProperties": { "type": "string" } }),
            Ty::Ingress => json!({
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "protocol": { "type": "string", "description": "tcp, udp, icmp, or all (-1)." },
                        "from_port": { "type": "integer", "minimum": -1, "maximum": 65535 },
                        "to_port": { "type": "integer", "minimum": -1, "maximum": 65535 },
                        "cidr": { "type": "string", "description": "IPv4 CIDR block the traffic comes from." }
                    },
                    "required": ["protocol", "cidr"],
                    "additionalProperties": false
                }
            }),
        };
        let mut doc = a.doc.to_string();
        if a.replace {
            doc.push_str(" Changing it replaces the resource.");
        }
        if let Some(extra) = p.get("description").and_then(Value::as_str) {
            doc = format!("{extra} {doc}");
        }
        if let Value::Object(m) = &mut p {
            m.insert("description".into(), json!(doc));
            if let Some(d) = a.default.value() {
                m.insert("default".into(), d);
            }
        }
        props.insert(a.name.into(), p);
    }
    let required: Vec<&str> = def.attrs.iter().filter(|a| a.required).map(|a| a.name).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": format!("aws.{}", def.name),
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false
    })
}

/// The JSON Schema of a type's outputs.
pub fn outputs_schema(def: &TypeDef) -> Value {
    let mut props = Map::new();
    for (name, ty, doc) in def.outputs {
        let mut p = if *ty == "array" {
            json!({ "type": "array", "items": { "type": "string" }, "description": doc })
        } else {
            json!({ "type": ty, "description": doc })
        };
        if def.kept_on_update.contains(name) {
            p["keptOnUpdate"] = Value::Bool(true);
        }
        props.insert((*name).into(), p);
    }
    let required: Vec<&str> = def.outputs.iter().map(|(n, _, _)| *n).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": props,
        "required": required,
        // Closed: `stackpipe check` reports a reference to any other output.
        "additionalProperties": false
    })
}

/// Typed reads of a normalized attribute map, for apply (which runs only
/// with every value known).
pub struct Attrs<'a>(pub &'a Map<String, Value>);

impl Attrs<'_> {
    fn get(&self, name: &str) -> Result<Option<&Value>, String> {
        match self.0.get(name) {
            Some(Value::String(s)) if s == UNKNOWN => Err(format!("`{name}` is not known yet")),
            other => Ok(other),
        }
    }

    pub fn str(&self, name: &str) -> Result<String, String> {
        self.opt_str(name)?.ok_or_else(|| format!("`{name}` is required"))
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<String>, String> {
        match self.get(name)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("`{name}` must be a string, not {}", type_name(other))),
        }
    }

    pub fn int(&self, name: &str) -> Result<i64, String> {
        self.get(name)?.and_then(as_int).ok_or_else(|| format!("`{name}` must be a whole number"))
    }

    pub fn bool(&self, name: &str) -> Result<bool, String> {
        Ok(self.get(name)?.and_then(Value::as_bool).unwrap_or(false))
    }

    pub fn opt_list(&self, name: &str) -> Result<Option<Vec<String>>, String> {
        match self.get(name)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items.iter().filter_map(Value::as_str).map(str::to_string).collect())),
            Some(other) => Err(format!("`{name}` must be a list, not {}", type_name(other))),
        }
    }

    pub fn list(&self, name: &str) -> Result<Vec<String>, String> {
        Ok(self.opt_list(name)?.unwrap_or_default())
    }

    pub fn map(&self, name: &str) -> Result<Map<String, Value>, String> {
        match self.get(name)? {
            Some(Value::Object(m)) => Ok(m.clone()),
            _ => Ok(Map::new()),
        }
    }

    pub fn values(&self, name: &str) -> Result<Vec<Value>, String> {
        match self.get(name)? {
            Some(Value::Array(items)) => Ok(items.clone()),
            _ => Ok(Vec::new()),
        }
    }
}
