//! What provisioners say their resource types take and give, read from the
//! JSON Schemas they declare ([`TypeSchema`]), and the checks of a compiled
//! pipeline against them ([`check_types`]): a type the provisioner does not
//! have, an attribute its schema does not accept, a required one missing, a
//! literal of the wrong JSON type, a reference to an output the type does
//! not give.
//!
//! The caller hands the schemas in (the runtime asks each provisioner for
//! them, as `stackpipe plugin inspect` does): this module does no I/O. Only
//! what a schema states plainly at its top level is checked: the property
//! names when `"additionalProperties": false` closes them, `required`, and a
//! property's `type`. Anything subtler (`pattern`, `enum`, `not`, nested
//! objects) is the provisioner's own `validate`, which preflight calls.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use petgraph::graph::NodeIndex;
use serde_json::Value;

use crate::ast::{Expr, ExprKind, Ident, Span, Step, TemplatePart};
use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::graph::{PipelineGraph, PluginSource, ResourceNode};

/// A JSON type, as a schema's `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    /// The type a schema's `type` names, if it is one.
    pub fn named(name: &str) -> Option<JsonType> {
        Some(match name {
            "null" => JsonType::Null,
            "boolean" => JsonType::Boolean,
            "integer" => JsonType::Integer,
            "number" => JsonType::Number,
            "string" => JsonType::String,
            "array" => JsonType::Array,
            "object" => JsonType::Object,
            _ => return None,
        })
    }

    /// What the language calls a value of this type, with its article.
    fn described(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "a bool",
            JsonType::Integer => "a whole number",
            JsonType::Number => "a number",
            JsonType::String => "a string",
            JsonType::Array => "a list",
            JsonType::Object => "a map",
        }
    }

    /// Whether a value of this type is one of type `allowed`: a whole number is a number.
    fn fits(self, allowed: JsonType) -> bool {
        self == allowed || (self == JsonType::Integer && allowed == JsonType::Number)
    }
}

/// One side of a resource type, its attributes or its outputs, as the top
/// level of its JSON Schema declares them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    /// Each declared property, with the JSON types its `type` allows (none: any).
    pub declared: BTreeMap<String, Vec<JsonType>>,
    /// `"additionalProperties": false`: no name but the declared ones is accepted.
    pub closed: bool,
    /// The top-level `required`.
    pub required: Vec<String>,
}

impl Properties {
    /// What the JSON Schema `schema` declares. A schema that is not JSON,
    /// or not an object, declares nothing and accepts anything.
    pub fn from_schema(schema: &str) -> Properties {
        let Ok(Value::Object(schema)) = serde_json::from_str::<Value>(schema) else {
            return Properties::default();
        };
        let declared = match schema.get("properties") {
            Some(Value::Object(props)) => props.iter().map(|(name, p)| (name.clone(), types_of(p))).collect(),
            _ => BTreeMap::new(),
        };
        // `patternProperties` accepts names this check cannot match: then the names are not closed to it.
        let patterns = schema.get("patternProperties").and_then(Value::as_object).is_some_and(|p| !p.is_empty());
        let closed = schema.get("additionalProperties") == Some(&Value::Bool(false)) && !patterns;
        let required = match schema.get("required") {
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ => Vec::new(),
        };
        Properties { declared, closed, required }
    }

    /// Whether `name` may be given (an attribute) or asked for (an output).
    pub fn accepts(&self, name: &str) -> bool {
        !self.closed || self.declared.contains_key(name)
    }

    /// The declared names, for messages.
    fn listed(&self) -> String {
        self.declared.keys().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    }
}

/// The JSON types a property's schema allows by its `type`: none when it
/// does not say (or says something this check does not read).
fn types_of(property: &Value) -> Vec<JsonType> {
    match property.get("type") {
        Some(Value::String(t)) => JsonType::named(t).into_iter().collect(),
        Some(Value::Array(ts)) => {
            let named: Option<Vec<JsonType>> = ts.iter().map(|t| t.as_str().and_then(JsonType::named)).collect();
            named.unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// A resource type: what it takes and what it gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeSchema {
    pub attributes: Properties,
    pub outputs: Properties,
}

impl TypeSchema {
    /// From the two JSON Schemas a provisioner gives a type.
    pub fn from_json(attributes_schema: &str, outputs_schema: &str) -> TypeSchema {
        TypeSchema { attributes: Properties::from_schema(attributes_schema), outputs: Properties::from_schema(outputs_schema) }
    }
}

/// What one provisioner component says about its resource types, or why
/// it could not be asked.
#[derive(Debug, Clone)]
pub enum ProvisionerTypes {
    /// Each of its types by name (`file` for `local.file`).
    Known(BTreeMap<String, TypeSchema>),
    /// It could not be loaded or did not answer: why.
    Unavailable(String),
}

/// The resource types of the provisioners a pipeline uses, by where their
/// components come from (a plugin's source may differ by environment).
#[derive(Debug, Clone, Default)]
pub struct TypeSchemas {
    by_source: HashMap<PluginSource, ProvisionerTypes>,
}

impl TypeSchemas {
    pub fn insert(&mut self, source: PluginSource, types: ProvisionerTypes) {
        self.by_source.insert(source, types);
    }

    pub fn get(&self, source: &PluginSource) -> Option<&ProvisionerTypes> {
        self.by_source.get(source)
    }
}

/// A provisioner whose resources could not be checked against its schemas.
#[derive(Debug, Clone, PartialEq)]
pub struct Unchecked {
    pub plugin: String,
    pub source: PluginSource,
    /// Why its component could not be asked (the message names the plugin).
    pub reason: String,
    /// Its resources, in declaration order.
    pub resources: Vec<String>,
}

impl fmt::Display for Unchecked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.resources.iter().map(|r| format!("`{r}`")).collect();
        write!(f, "the attributes and outputs of {} were not checked: {}", names.join(", "), self.reason)
    }
}

/// What checking a pipeline against its provisioners' schemas found.
#[derive(Debug, Default)]
pub struct TypeCheck {
    /// The mistakes, in the order they are written.
    pub errors: Vec<Diagnostic>,
    /// The provisioners that could not be asked, each once.
    pub unchecked: Vec<Unchecked>,
}

/// Checks `graph` against the schemas of its provisioners. A provisioner
/// `schemas` has nothing for is not checked; one it has as unavailable is
/// reported in [`TypeCheck::unchecked`]. `overridden` are the attributes
/// given from outside the file (`--set resource.attribute=...`), as
/// (resource, attribute): they are not missing, and the value the file
/// writes for one is not what the provisioner gets.
pub fn check_types(graph: &PipelineGraph, schemas: &TypeSchemas, overridden: &[(String, String)]) -> TypeCheck {
    let mut checker = Checker { graph, overridden, errors: Vec::new(), seen: HashSet::new(), unchecked: Vec::new() };
    // Environments mostly take each plugin from one source: each distinct
    // choice of sources is checked once.
    let mut choices: Vec<BTreeMap<&str, &PluginSource>> = Vec::new();
    for env in &graph.environments {
        let choice = env.plugins.iter().map(|(name, spec)| (name.as_str(), &spec.source)).collect();
        if !choices.contains(&choice) {
            choices.push(choice);
        }
    }
    for choice in &choices {
        checker.check(choice, schemas);
    }
    let mut errors = checker.errors;
    errors.sort_by_key(|d| d.position());
    TypeCheck { errors, unchecked: checker.unchecked }
}

/// One check of a pipeline, and what it found so far.
struct Checker<'a> {
    graph: &'a PipelineGraph,
    overridden: &'a [(String, String)],
    errors: Vec<Diagnostic>,
    /// What was reported: a mistake found in several environments is reported once.
    seen: HashSet<(Code, String, Span)>,
    unchecked: Vec<Unchecked>,
}

impl<'a> Checker<'a> {
    /// Every resource and output, with each plugin taken from the source `choice` gives it.
    fn check(&mut self, choice: &BTreeMap<&str, &PluginSource>, schemas: &'a TypeSchemas) {
        let graph = self.graph;
        // The type of each node, where its provisioner's types are known and include it.
        let mut types: Vec<Option<&TypeSchema>> = Vec::with_capacity(graph.len());
        for i in graph.graph.node_indices() {
            let node = &graph.graph[i];
            let source = choice.get(node.plugin.as_str()).copied();
            let known = match source.and_then(|s| schemas.get(s).map(|t| (s, t))) {
                None => None,
                Some((source, ProvisionerTypes::Unavailable(reason))) => {
                    self.not_checked(node, source, reason);
                    None
                }
                Some((_, ProvisionerTypes::Known(kinds))) => match kinds.get(&node.kind) {
                    Some(t) => Some(t),
                    None => {
                        self.unknown_type(node, kinds, source);
                        None
                    }
                },
            };
            types.push(known);
        }
        for i in graph.graph.node_indices() {
            let node = &graph.graph[i];
            if let Some(t) = types[i.index()] {
                self.attributes(node, t, choice.get(node.plugin.as_str()).copied());
            }
            for a in &node.attributes {
                self.output_references(&a.value, &types, choice);
            }
        }
        for o in &graph.outputs {
            self.output_references(&o.value, &types, choice);
        }
    }

    fn report(&mut self, d: Diagnostic) {
        let span = d.labels.first().map(|l| l.span).unwrap_or_default();
        if self.seen.insert((d.code, d.message.clone(), span)) {
            self.errors.push(d);
        }
    }

    fn is_overridden(&self, resource: &str, attribute: &str) -> bool {
        self.overridden.iter().any(|(r, a)| r == resource && a == attribute)
    }

    /// `node`'s provisioner could not be asked: noted once per plugin and source.
    fn not_checked(&mut self, node: &ResourceNode, source: &PluginSource, reason: &str) {
        match self.unchecked.iter_mut().find(|u| u.plugin == node.plugin && &u.source == source) {
            Some(u) => {
                if !u.resources.contains(&node.name) {
                    u.resources.push(node.name.clone());
                }
            }
            None => self.unchecked.push(Unchecked {
                plugin: node.plugin.clone(),
                source: source.clone(),
                reason: reason.to_string(),
                resources: vec![node.name.clone()],
            }),
        }
    }

    /// `node`'s type is not one of its provisioner's `kinds`.
    fn unknown_type(&mut self, node: &ResourceNode, kinds: &BTreeMap<String, TypeSchema>, source: Option<&PluginSource>) {
        let span = node.kind_span();
        let help = did_you_mean(&node.kind, kinds.keys().map(String::as_str)).unwrap_or_else(|| {
            let all: Vec<String> = kinds.keys().map(|k| format!("`{}.{k}`", node.plugin)).collect();
            if all.is_empty() {
                format!("plugin `{}` has no resource types", node.plugin)
            } else {
                format!("the types of plugin `{}` are: {}", node.plugin, all.join(", "))
            }
        });
        self.report(
            Diagnostic::at(
                Code::UnknownType,
                span,
                format!("plugin `{}` has no resource type `{}`", node.plugin, node.kind),
            )
            .with_label(span, format!("not a type of {}", source_named(&node.plugin, source)))
            .help(help),
        );
    }

    /// `node`'s attributes against its type `t`: names, types of literals, and the required ones.
    fn attributes(&mut self, node: &ResourceNode, t: &TypeSchema, source: Option<&PluginSource>) {
        let type_name = node.type_name();
        for a in &node.attributes {
            let name = a.key.name.as_str();
            if !t.attributes.accepts(name) {
                let help = did_you_mean(name, t.attributes.declared.keys().map(String::as_str)).unwrap_or_else(|| {
                    format!("the attributes of `{type_name}` are: {}{}", t.attributes.listed(), inspect_hint(source))
                });
                self.report(
                    Diagnostic::at(Code::UnknownAttribute, a.key.span, format!("`{type_name}` has no attribute `{name}`"))
                        .with_label(a.key.span, format!("not an attribute of `{type_name}`"))
                        .help(help),
                );
                continue;
            }
            let allowed = t.attributes.declared.get(name).map(Vec::as_slice).unwrap_or_default();
            let Some(written) = literal_type(&a.value) else { continue };
            if allowed.is_empty() || allowed.iter().any(|&ok| written.fits(ok)) || self.is_overridden(&node.name, name) {
                continue;
            }
            let takes = allowed.iter().map(|t| t.described()).collect::<Vec<_>>().join(" or ");
            let help = match (&a.value.kind, allowed.contains(&JsonType::String)) {
                (ExprKind::Number(n), true) => format!("write it as a string: `{name} = \"{n}\"`"),
                (ExprKind::Bool(b), true) => format!("write it as a string: `{name} = \"{b}\"`"),
                _ => match source {
                    Some(s) => format!("`stackpipe plugin inspect {s}` describes the attributes of `{type_name}`"),
                    None => format!("see the attributes of `{type_name}` with `stackpipe plugin inspect`"),
                },
            };
            self.report(
                Diagnostic::at(Code::TypeMismatch, a.value.span, format!("`{name}` of `{type_name}` takes {takes}"))
                    .with_label(a.value.span, written.described())
                    .help(help),
            );
        }
        let missing: Vec<&str> = t
            .attributes
            .required
            .iter()
            .map(String::as_str)
            .filter(|r| !node.attributes.iter().any(|a| a.key.name == *r) && !self.is_overridden(&node.name, r))
            .collect();
        if missing.is_empty() || node.type_span.is_empty() {
            return;
        }
        let list = missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ");
        let example = missing.iter().map(|m| format!("`{m} = ...`")).collect::<Vec<_>>().join(", ");
        let noun = if missing.len() == 1 { "attribute" } else { "attributes" };
        self.report(
            Diagnostic::at(
                Code::MissingAttribute,
                node.type_span,
                format!("resource `{}` lacks the {noun} {list}, which `{type_name}` requires", node.name),
            )
            .with_label(node.type_span, format!("requires {list}"))
            .help(format!("add {example} to resource `{}`", node.name)),
        );
    }

    /// Each `<resource>.<output>` in `e` whose resource's type does not give that output.
    fn output_references(&mut self, e: &Expr, types: &[Option<&TypeSchema>], choice: &BTreeMap<&str, &PluginSource>) {
        let graph = self.graph;
        let mut wrong: Vec<(Ident, Ident, NodeIndex)> = Vec::new();
        e.walk(&mut |x| {
            let ExprKind::Traversal { root, steps } = &x.kind else { return };
            let Some(Step::Attr(output)) = steps.first() else { return };
            // `var`, `env` and `pipeline` cannot name a resource.
            let Some(i) = graph.find(&root.name) else { return };
            if types[i.index()].is_some_and(|t| !t.outputs.accepts(&output.name)) {
                wrong.push((root.clone(), output.clone(), i));
            }
        });
        for (root, output, i) in wrong {
            let (node, Some(t)) = (&graph.graph[i], types[i.index()]) else { continue };
            let type_name = node.type_name();
            let source = choice.get(node.plugin.as_str()).copied();
            let help = did_you_mean(&output.name, t.outputs.declared.keys().map(String::as_str)).unwrap_or_else(|| {
                format!("the outputs of `{type_name}` are: {}{}", t.outputs.listed(), inspect_hint(source))
            });
            self.report(
                Diagnostic::at(Code::UnknownOutput, output.span, format!("`{root}` has no output `{output}`"))
                    .with_label(output.span, format!("not an output of `{type_name}`"))
                    .help(help),
            );
        }
    }
}

/// `plugin `local``, with its source when known: `plugin `local` (builtin:local)`.
fn source_named(plugin: &str, source: Option<&PluginSource>) -> String {
    match source {
        Some(s) => format!("plugin `{plugin}` ({s})"),
        None => format!("plugin `{plugin}`"),
    }
}

/// ` (\`stackpipe plugin inspect builtin:local\` describes each)`, for a help line.
fn inspect_hint(source: Option<&PluginSource>) -> String {
    source.map(|s| format!(" (`stackpipe plugin inspect {s}` describes each)")).unwrap_or_default()
}

/// The JSON type `e` has whatever it evaluates to, when that is plain from
/// how it is written: a literal, a list, a map, or a string with text in it.
/// `null` is left out: provisioners commonly take it as "not set".
fn literal_type(e: &Expr) -> Option<JsonType> {
    match &e.kind {
        ExprKind::Bool(_) => Some(JsonType::Boolean),
        ExprKind::Number(n) => {
            let whole = n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0);
            Some(if whole { JsonType::Integer } else { JsonType::Number })
        }
        ExprKind::List(_) => Some(JsonType::Array),
        ExprKind::Map(_) => Some(JsonType::Object),
        ExprKind::Template(parts) => {
            // A string that is exactly one interpolation keeps the value's type.
            let text = parts.iter().any(|p| matches!(p, TemplatePart::Literal(s) if !s.is_empty()));
            let interpolations = parts.iter().filter(|p| matches!(p, TemplatePart::Interpolation(_))).count();
            (text || interpolations != 1).then_some(JsonType::String)
        }
        ExprKind::Null | ExprKind::Traversal { .. } | ExprKind::Access { .. } | ExprKind::Call { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{load, CompileOptions};

    const FILE_ATTRIBUTES: &str = r#"{"type":"object","properties":{
        "path":{"type":"string"},"content":{"type":"string"},"mode":{"type":"string"},"size":{"type":"integer"},
        "ratio":{"type":["number","null"]}},
        "required":["path"],"additionalProperties":false}"#;
    const FILE_OUTPUTS: &str = r#"{"type":"object","properties":{"path":{"type":"string"},"sha256":{"type":"string"}},
        "additionalProperties":false}"#;
    /// Like `test.step`: any attributes, any outputs.
    const OPEN: &str = r#"{"type":"object","properties":{"delay_ms":{"type":"number"}},"additionalProperties":true}"#;

    fn schemas() -> TypeSchemas {
        let mut s = TypeSchemas::default();
        s.insert(
            PluginSource::Builtin("local".into()),
            ProvisionerTypes::Known(BTreeMap::from([("file".into(), TypeSchema::from_json(FILE_ATTRIBUTES, FILE_OUTPUTS))])),
        );
        s.insert(
            PluginSource::Builtin("test".into()),
            ProvisionerTypes::Known(BTreeMap::from([("step".into(), TypeSchema::from_json(OPEN, OPEN))])),
        );
        s.insert(PluginSource::Path("gone.wasm".into()), ProvisionerTypes::Unavailable("plugin `gone`: no such file".into()));
        s
    }

    const PLUGINS: &str = "plugin local { kind = \"provisioner\" source = \"builtin:local\" }\n\
                           plugin t { kind = \"provisioner\" source = \"builtin:test\" }\n\
                           plugin gone { kind = \"provisioner\" source = \"gone.wasm\" }\n";

    fn check(resources: &str, overridden: &[(&str, &str)]) -> TypeCheck {
        let src = format!("{PLUGINS}{resources}");
        let graph = load("f", &src, &CompileOptions::default()).expect("compiles");
        let overridden: Vec<(String, String)> = overridden.iter().map(|(r, a)| (r.to_string(), a.to_string())).collect();
        check_types(&graph, &schemas(), &overridden)
    }

    /// Each error as `code: message (help)`.
    fn errors(c: &TypeCheck) -> Vec<String> {
        c.errors.iter().map(|d| format!("{}: {} ({})", d.code.as_str(), d.message, d.help.clone().unwrap_or_default())).collect()
    }

    #[test]
    fn a_misspelled_output_is_reported_with_a_suggestion_where_the_outputs_are_closed() {
        let c = check(
            "resource index \"local.file\" { path = \"a\" }\n\
             resource copy \"local.file\" { path = \"b\"  content = index.sha265 }\n\
             resource step \"t.step\" { x = index.path  y = copy.sha256 }\n\
             resource other \"t.step\" { z = step.anything }\n\
             output o = index.nope\n",
            &[],
        );
        assert_eq!(
            errors(&c),
            [
                "unknown_output: `index` has no output `sha265` (did you mean `sha256`?)",
                "unknown_output: `index` has no output `nope` (the outputs of `local.file` are: `path`, `sha256` \
                 (`stackpipe plugin inspect builtin:local` describes each))",
            ]
        );
        // The caret is under the output's name.
        let src = format!("{PLUGINS}resource index \"local.file\" {{ path = \"a\" }}\n");
        let at = c.errors[0].labels[0].span;
        assert_eq!(at.len(), "sha265".len());
        assert!(at.start > src.len());
    }

    #[test]
    fn attribute_names_are_checked_where_the_schema_closes_them() {
        let c = check("resource a \"local.file\" { path = \"a\"  contnet = \"x\" }\nresource b \"t.step\" { colour = 1 }\n", &[]);
        assert_eq!(errors(&c), ["unknown_attribute: `local.file` has no attribute `contnet` (did you mean `content`?)"]);
    }

    #[test]
    fn a_required_attribute_missing_is_reported_unless_set_from_outside() {
        let c = check("resource a \"local.file\" { content = \"x\" }\n", &[]);
        assert_eq!(
            errors(&c),
            ["missing_attribute: resource `a` lacks the attribute `path`, which `local.file` requires (add `path = ...` to resource `a`)"]
        );
        assert!(check("resource a \"local.file\" { content = \"x\" }\n", &[("a", "path")]).errors.is_empty());
    }

    #[test]
    fn a_literal_of_the_wrong_type_is_reported_and_what_is_not_plain_is_left_alone() {
        let c = check(
            "var n: number = 1\n\
             resource a \"local.file\" {\n  path = 1\n  content = \"${var.n}\"\n  mode = \"x${var.n}\"\n  size = 2.5\n  ratio = 3\n}\n\
             resource b \"local.file\" { path = \"b\"  size = 4  mode = null  content = [1] }\n\
             resource c \"t.step\" { delay_ms = \"soon\" }\n",
            &[],
        );
        let found = errors(&c);
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(found[0].starts_with("type_mismatch: `path` of `local.file` takes a string"), "{}", found[0]);
        assert!(found[1].starts_with("type_mismatch: `size` of `local.file` takes a whole number"), "{}", found[1]);
        assert!(found[2].starts_with("type_mismatch: `content` of `local.file` takes a string"), "{}", found[2]);
        assert!(found[3].starts_with("type_mismatch: `delay_ms` of `t.step` takes a number"), "{}", found[3]);
        assert_eq!(c.errors[0].labels[0].text.as_deref(), Some("a whole number"));
        // What `--set` overrides is not what the provisioner gets.
        let c = check("resource c \"t.step\" { delay_ms = \"soon\" }\n", &[("c", "delay_ms")]);
        assert!(c.errors.is_empty());
    }

    #[test]
    fn a_type_the_provisioner_does_not_have_is_reported() {
        let c = check("resource a \"local.fiel\" { path = \"a\" }\nresource b \"t.other\" {}\n", &[]);
        assert_eq!(
            errors(&c),
            [
                "unknown_type: plugin `local` has no resource type `fiel` (did you mean `file`?)",
                "unknown_type: plugin `t` has no resource type `other` (the types of plugin `t` are: `t.step`)",
            ]
        );
        let src = format!("{PLUGINS}resource a \"local.fiel\" {{ path = \"a\" }}\n");
        let at = c.errors[0].labels[0].span;
        assert_eq!(&src[at.start..at.end], "fiel");
    }

    #[test]
    fn a_provisioner_that_could_not_be_asked_is_noted_not_reported() {
        let c = check(
            "resource a \"gone.x\" { anything = 1 }\nresource b \"gone.y\" { z = a.whatever }\nresource c \"local.file\" { path = b.q }\n",
            &[],
        );
        assert!(c.errors.is_empty(), "{:?}", errors(&c));
        assert_eq!(c.unchecked.len(), 1);
        assert_eq!(c.unchecked[0].resources, ["a", "b"]);
        assert_eq!(
            c.unchecked[0].to_string(),
            "the attributes and outputs of `a`, `b` were not checked: plugin `gone`: no such file"
        );
    }

    #[test]
    fn each_environment_is_checked_with_its_own_source_and_a_mistake_is_reported_once() {
        let src = "var src: string = \"builtin:local\"\n\
                   plugin p { kind = \"provisioner\" source = var.src }\n\
                   environment dev {}\nenvironment prod { vars { src = \"builtin:test\" } }\n\
                   environment qa {}\n\
                   resource a \"p.file\" { path = \"a\"  contnet = 1 }\n";
        let graph = load("f", src, &CompileOptions::default()).expect("compiles");
        let c = check_types(&graph, &schemas(), &[]);
        // dev and qa take `local` (reported once), prod `test`, which has no `file`.
        assert_eq!(
            errors(&c),
            [
                "unknown_type: plugin `p` has no resource type `file` (the types of plugin `p` are: `p.step`)",
                "unknown_attribute: `p.file` has no attribute `contnet` (did you mean `content`?)",
            ]
        );
    }

    #[test]
    fn schemas_that_say_little_accept_anything() {
        for schema in ["", "not json", "[]", "{}", r#"{"additionalProperties":false,"patternProperties":{"^x":{}}}"#] {
            let p = Properties::from_schema(schema);
            assert!(p.accepts("anything") && p.required.is_empty(), "{schema}");
        }
        let p = Properties::from_schema(r#"{"properties":{"a":{"type":["string","wat"]},"b":{}},"additionalProperties":false}"#);
        assert!(p.accepts("a") && p.accepts("b") && !p.accepts("c"));
        assert!(p.declared["a"].is_empty() && p.declared["b"].is_empty());
    }
}
