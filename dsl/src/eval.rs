//! Expression evaluation. Values are JSON values (they travel to plugins as
//! JSON). A reference to a resource output that is not known yet (the
//! resource has not been applied) evaluates to [`EvalError::Unknown`], which
//! is not a mistake in the file: callers decide whether to wait or to show
//! "(known after apply)".

use serde_json::{Map, Number, Value};

use crate::ast::{Expr, ExprKind, Ident, Span, Step, TemplatePart};
use crate::diagnostic::{did_you_mean, Code, Diagnostic};

#[derive(Debug, Clone, PartialEq)]
pub enum EvalError {
    /// Depends on an output of this resource, which is not known yet.
    Unknown { resource: String },
    Invalid(Diagnostic),
}

impl From<Diagnostic> for EvalError {
    fn from(d: Diagnostic) -> Self {
        EvalError::Invalid(d)
    }
}

type Result<T> = std::result::Result<T, EvalError>;

/// What names mean while evaluating.
pub struct Scope<'a> {
    pub pipeline: &'a str,
    pub environment: &'a str,
    pub vars: &'a Map<String, Value>,
    /// The outputs (a JSON object) of an applied resource; `None` = not known
    /// yet. Borrowed: a reference takes one output, not a copy of them all.
    pub outputs: &'a dyn Fn(&str) -> Option<&'a Value>,
    /// What builds made, by service: `service.NAME.artifact.*`.
    pub artifacts: &'a std::collections::BTreeMap<String, crate::service::ArtifactRef>,
}

/// The artifacts of a scope outside a service pipeline: none.
pub static NO_ARTIFACTS: std::collections::BTreeMap<String, crate::service::ArtifactRef> = std::collections::BTreeMap::new();

/// The output lookup of a scope in which no resource has been applied.
pub fn no_outputs<'v>(_: &str) -> Option<&'v Value> {
    None
}

/// A function of the language: its name and how many arguments it takes.
pub struct Function {
    pub name: &'static str,
    pub min_args: usize,
    /// `None`: any number from `min_args` up.
    pub max_args: Option<usize>,
    pub signature: &'static str,
}

pub const FUNCTIONS: &[Function] = &[
    Function { name: "cidrsubnet", min_args: 3, max_args: Some(3), signature: "cidrsubnet(prefix, newbits, netnum)" },
    Function { name: "coalesce", min_args: 1, max_args: None, signature: "coalesce(value, ...)" },
    Function { name: "concat", min_args: 1, max_args: None, signature: "concat(list, ...)" },
    Function { name: "contains", min_args: 2, max_args: Some(2), signature: "contains(list, value)" },
    Function { name: "element", min_args: 2, max_args: Some(2), signature: "element(list, index)" },
    Function { name: "format", min_args: 1, max_args: None, signature: "format(spec, value, ...)" },
    Function { name: "join", min_args: 2, max_args: Some(2), signature: "join(separator, list)" },
    Function { name: "jsonencode", min_args: 1, max_args: Some(1), signature: "jsonencode(value)" },
    Function { name: "keys", min_args: 1, max_args: Some(1), signature: "keys(map)" },
    Function { name: "length", min_args: 1, max_args: Some(1), signature: "length(list | map | string)" },
    Function { name: "lookup", min_args: 2, max_args: Some(3), signature: "lookup(map, key, default?)" },
    Function { name: "lower", min_args: 1, max_args: Some(1), signature: "lower(string)" },
    Function { name: "merge", min_args: 1, max_args: None, signature: "merge(map, ...)" },
    Function { name: "replace", min_args: 3, max_args: Some(3), signature: "replace(string, search, replacement)" },
    Function { name: "split", min_args: 2, max_args: Some(2), signature: "split(separator, string)" },
    Function { name: "tonumber", min_args: 1, max_args: Some(1), signature: "tonumber(value)" },
    Function { name: "tostring", min_args: 1, max_args: Some(1), signature: "tostring(value)" },
    Function { name: "trimspace", min_args: 1, max_args: Some(1), signature: "trimspace(string)" },
    Function { name: "upper", min_args: 1, max_args: Some(1), signature: "upper(string)" },
    Function { name: "values", min_args: 1, max_args: Some(1), signature: "values(map)" },
];

pub fn function(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// The kind of a value, as the language names it.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// An evaluation error at `span`, with a label saying what is there.
fn invalid(span: Span, message: impl Into<String>, label: impl Into<String>) -> EvalError {
    EvalError::Invalid(Diagnostic::at(Code::Evaluation, span, message).with_label(span, label))
}

/// [`invalid`] with a help line.
fn invalid_help(span: Span, message: impl Into<String>, label: impl Into<String>, help: impl Into<String>) -> EvalError {
    EvalError::Invalid(Diagnostic::at(Code::Evaluation, span, message).with_label(span, label).help(help))
}

/// The value of `expr` in `scope`.
pub fn eval(expr: &Expr, scope: &Scope) -> Result<Value> {
    match &expr.kind {
        ExprKind::Null => Ok(Value::Null),
        ExprKind::Bool(b) => Ok(Value::Bool(*b)),
        ExprKind::Number(n) => Ok(Value::Number(n.clone())),
        ExprKind::Template(parts) => template(parts, scope),
        ExprKind::List(items) => Ok(Value::Array(items.iter().map(|e| eval(e, scope)).collect::<Result<_>>()?)),
        ExprKind::Map(entries) => {
            let mut m = Map::new();
            for (k, e) in entries {
                m.insert(k.name.to_string(), eval(e, scope)?);
            }
            Ok(Value::Object(m))
        }
        ExprKind::Traversal { root, steps } => traversal(root, steps, scope),
        ExprKind::Access { base, steps } => apply_steps(eval(base, scope)?, steps, scope),
        ExprKind::Call { function, args } => {
            let values = args.iter().map(|a| eval(a, scope)).collect::<Result<Vec<_>>>()?;
            call(&function.name, expr.span, args, values)
        }
    }
}

/// A string's value: its text with each interpolation's value in it.
fn template(parts: &[TemplatePart], scope: &Scope) -> Result<Value> {
    // A string that is exactly one interpolation keeps its value's type,
    // as in Terraform: "${var.size}" is a number.
    if let [TemplatePart::Interpolation(e)] = parts {
        return eval(e, scope);
    }
    let mut out = String::new();
    for p in parts {
        match p {
            TemplatePart::Literal(s) => out.push_str(s),
            TemplatePart::Interpolation(e) => out.push_str(&interpolate(e, &eval(e, scope)?)?),
        }
    }
    Ok(Value::String(out))
}

/// The value `root.steps...` refers to: a var, `env.name`, `pipeline.name`,
/// a build's artifact (`service.NAME.artifact`) or an output of a resource,
/// then indexed by the rest of `steps`.
fn traversal(root: &Ident, steps: &[Step], scope: &Scope) -> Result<Value> {
    let (value, rest) = match root.name.as_str() {
        "var" => {
            let Some(Step::Attr(name)) = steps.first() else {
                return Err(invalid_help(root.span, "`var` needs a name", "which var?", "write `var.<name>`, like `var.region`"));
            };
            let v = scope
                .vars
                .get(name.name.as_str())
                .cloned()
                .ok_or_else(|| invalid(name.span, format!("var `{}` has no value", name.name), "no value here"))?;
            (v, &steps[1..])
        }
        "env" | "pipeline" => {
            if !matches!(steps.first(), Some(Step::Attr(i)) if i.name == "name") {
                return Err(invalid_help(
                    root.span,
                    format!("`{}` has one attribute, `name`", root.name),
                    "not followed by `.name`",
                    format!("write `{}.name`", root.name),
                ));
            }
            let text = if root.name == "env" { scope.environment } else { scope.pipeline };
            (Value::String(text.to_string()), &steps[1..])
        }
        "service" => artifact(root, steps, scope)?,
        _ => resource_output(root, steps, scope)?,
    };
    apply_steps(value, rest, scope)
}

/// What a build of the service `steps` starts with made (`service.NAME.artifact`),
/// and the steps after it. Unknown when the scope has no artifact for it:
/// outside a service pipeline's deploy, it is known after the build.
fn artifact<'s>(root: &Ident, steps: &'s [Step], scope: &Scope) -> Result<(Value, &'s [Step])> {
    let (Some(Step::Attr(name)), Some(Step::Attr(artifact))) = (steps.first(), steps.get(1)) else {
        return Err(invalid_help(
            root.span,
            "`service` needs a service's name and `.artifact`",
            "not followed by `.NAME.artifact`",
            "write `service.<name>.artifact.<attribute>`, like `service.api.artifact.path`",
        ));
    };
    if artifact.name != "artifact" {
        return Err(invalid_help(
            artifact.span,
            format!("`service.{}` has one attribute, `artifact`", name.name),
            "not `artifact`",
            format!("write `service.{}.artifact.path`", name.name),
        ));
    }
    let built = scope
        .artifacts
        .get(name.name.as_str())
        .ok_or_else(|| EvalError::Unknown { resource: format!("service.{}", name.name) })?;
    Ok((built.to_value(), &steps[2..]))
}

/// The output of the resource `root` that `steps` starts with, and the
/// steps after it.
fn resource_output<'s>(root: &Ident, steps: &'s [Step], scope: &Scope) -> Result<(Value, &'s [Step])> {
    let resource = root.name.as_str();
    let Some(Step::Attr(output)) = steps.first() else {
        return Err(invalid_help(
            root.span,
            format!("`{resource}` is a resource, not a value"),
            "refer to one of its outputs",
            format!("write `{resource}.<output>`, like `{resource}.id`"),
        ));
    };
    let outputs = (scope.outputs)(resource)
        .ok_or_else(|| EvalError::Unknown { resource: resource.to_string() })?;
    let v = outputs.get(output.name.as_str()).cloned().ok_or_else(|| {
        let known: Vec<&str> = outputs.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
        let d = Diagnostic::at(
            Code::Evaluation,
            output.span,
            format!("resource `{resource}` has no output `{}`", output.name),
        )
        .with_label(output.span, "not one of its outputs")
        .maybe_help(did_you_mean(&output.name, known.iter().copied()));
        EvalError::Invalid(d)
    })?;
    Ok((v, &steps[1..]))
}

/// Whether the first thing [`eval`] would look up in `expr` is a resource
/// output: then, in a scope where no resource has been applied, `eval` is
/// [`EvalError::Unknown`] whatever else `expr` holds. Follows the order in
/// which `eval` goes through an expression, and stops at its first error.
pub(crate) fn waits_first_on_output(expr: &Expr) -> bool {
    match &expr.kind {
        ExprKind::Null | ExprKind::Bool(_) | ExprKind::Number(_) => false,
        // Literal text cannot fail: the first interpolation is looked at first.
        ExprKind::Template(parts) => parts.iter().find_map(|p| match p {
            TemplatePart::Literal(_) => None,
            TemplatePart::Interpolation(e) => Some(waits_first_on_output(e)),
        }) == Some(true),
        ExprKind::List(items) => items.first().is_some_and(waits_first_on_output),
        ExprKind::Map(entries) => entries.first().is_some_and(|(_, e)| waits_first_on_output(e)),
        // A build's artifact is no resource's output: known or not, it waits on nothing.
        ExprKind::Traversal { root, steps } => {
            !matches!(root.name.as_str(), "var" | "env" | "pipeline" | "service")
                && matches!(steps.first(), Some(Step::Attr(_)))
        }
        ExprKind::Access { base, .. } => waits_first_on_output(base),
        ExprKind::Call { args, .. } => args.first().is_some_and(waits_first_on_output),
    }
}

/// Whether evaluating `expr` before anything is applied cannot report a
/// mistake: literals, `env.name`, `pipeline.name`, a bare `var.x`, an
/// artifact's attribute (`service.api.artifact.path`: a string, or not known yet), and
/// strings, lists and maps made of those. (A var without a value is not
/// evaluated at all: see the compiler's `skip`.) A string may hold only
/// what always makes text: a var could be a list, and `null` is refused.
/// References are assumed checked: a wrong one is not evaluated either.
pub(crate) fn cannot_fail(expr: &Expr) -> bool {
    match &expr.kind {
        ExprKind::Null | ExprKind::Bool(_) | ExprKind::Number(_) => true,
        ExprKind::Template(parts) => parts.iter().all(|p| match p {
            TemplatePart::Literal(_) => true,
            TemplatePart::Interpolation(e) => match &e.kind {
                ExprKind::Bool(_) | ExprKind::Number(_) | ExprKind::Template(_) => cannot_fail(e),
                ExprKind::Traversal { root, steps } => {
                    matches!(root.name.as_str(), "env" | "pipeline") && steps.len() == 1 || is_artifact_attribute(root, steps)
                }
                _ => false,
            },
        }),
        ExprKind::List(items) => items.iter().all(cannot_fail),
        ExprKind::Map(entries) => entries.iter().all(|(_, e)| cannot_fail(e)),
        ExprKind::Traversal { root, steps } => {
            matches!(root.name.as_str(), "var" | "env" | "pipeline") && steps.len() == 1 || is_artifact_attribute(root, steps)
        }
        ExprKind::Access { .. } | ExprKind::Call { .. } => false,
    }
}

/// Whether `root.steps` is `service.NAME.artifact.ATTRIBUTE`, a string.
fn is_artifact_attribute(root: &Ident, steps: &[Step]) -> bool {
    root.name == "service"
        && matches!(steps, [Step::Attr(_), Step::Attr(a), Step::Attr(attr)]
            if a.name == "artifact" && crate::service::ArtifactRef::ATTRIBUTES.contains(&attr.name.as_str()))
}

fn apply_steps(mut value: Value, steps: &[Step], scope: &Scope) -> Result<Value> {
    for step in steps {
        value = match step {
            Step::Attr(name) => match value {
                Value::Object(mut m) => match m.remove(name.name.as_str()) {
                    Some(v) => v,
                    None => return Err(no_key(name.span, &name.name, &m)),
                },
                other => {
                    return Err(invalid_help(
                        name.span,
                        format!("cannot take `.{}` of a {}", name.name, type_name(&other)),
                        format!("the value here is a {}", type_name(&other)),
                        if other.is_array() { "take an item of a list with `[index]`" } else { "only maps have keys" },
                    ))
                }
            },
            Step::Index(e) => {
                let key = eval(e, scope)?;
                match (value, key) {
                    (Value::Array(mut items), Value::Number(n)) => {
                        let len = items.len();
                        let i = n
                            .as_u64()
                            .filter(|i| (*i as usize) < len)
                            .ok_or_else(|| {
                                invalid_help(
                                    e.span,
                                    format!("index {n} is out of range for a list of {len}"),
                                    "out of range",
                                    match len {
                                        0 => "the list is empty".to_string(),
                                        1 => "the list has 1 item: its index is 0".to_string(),
                                        _ => format!("the list has {len} items: indexes run from 0 to {}", len - 1),
                                    },
                                )
                            })?;
                        items.swap_remove(i as usize)
                    }
                    (Value::Object(mut m), Value::String(k)) => {
                        match m.remove(&k) {
                            Some(v) => v,
                            None => return Err(no_key(e.span, &k, &m)),
                        }
                    }
                    (v, k) => {
                        return Err(invalid_help(
                            e.span,
                            format!("cannot index a {} with a {}", type_name(&v), type_name(&k)),
                            format!("a {}", type_name(&k)),
                            "index a list with a number, and a map with a string",
                        ))
                    }
                }
            }
        };
    }
    Ok(value)
}

/// No key `key` in map `m`: with "did you mean", or the keys there are.
fn no_key(span: Span, key: &str, m: &Map<String, Value>) -> EvalError {
    let help = did_you_mean(key, m.keys().map(String::as_str)).unwrap_or_else(|| match m.len() {
        0 => "the map is empty".to_string(),
        n if n <= 8 => format!("the keys are: {}", m.keys().map(String::as_str).collect::<Vec<_>>().join(", ")),
        _ => "use lookup(map, key, default) for a key that may be missing".to_string(),
    });
    invalid_help(span, format!("no key `{key}` in this map"), "not a key of this map", help)
}

/// The text of a value inside `"${...}"`.
fn interpolate(e: &Expr, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err(invalid_help(
            e.span,
            "cannot put null into a string",
            "null",
            "give a fallback with coalesce(value, \"default\")",
        )),
        Value::Array(_) | Value::Object(_) => Err(invalid_help(
            e.span,
            format!("cannot put a {} into a string", type_name(v)),
            format!("a {}", type_name(v)),
            "use join(\", \", list) or jsonencode(value)",
        )),
    }
}

fn want_string<'v>(v: &'v Value, e: &Expr, f: &str) -> Result<&'v str> {
    v.as_str().ok_or_else(|| {
        let help = if v.is_number() || v.is_boolean() {
            "convert it with tostring(...)"
        } else {
            "use join(\", \", list) or jsonencode(value) to make text of it"
        };
        invalid_help(e.span, format!("{f}() wants a string here, not a {}", type_name(v)), format!("a {}", type_name(v)), help)
    })
}
fn want_list<'v>(v: &'v Value, e: &Expr, f: &str) -> Result<&'v Vec<Value>> {
    v.as_array().ok_or_else(|| {
        let help = if v.is_string() { "split a string into a list with split(separator, string)" } else { "write a list as [a, b]" };
        invalid_help(e.span, format!("{f}() wants a list here, not a {}", type_name(v)), format!("a {}", type_name(v)), help)
    })
}
fn want_map<'v>(v: &'v Value, e: &Expr, f: &str) -> Result<&'v Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        invalid_help(
            e.span,
            format!("{f}() wants a map here, not a {}", type_name(v)),
            format!("a {}", type_name(v)),
            "write a map as { key = value }",
        )
    })
}
fn want_int(v: &Value, e: &Expr, f: &str) -> Result<i64> {
    v.as_i64().ok_or_else(|| {
        let label = if v.is_number() { "not a whole number".to_string() } else { format!("a {}", type_name(v)) };
        let help = if v.is_string() { "convert it with tonumber(...)" } else { "a whole number, like 3" };
        invalid_help(e.span, format!("{f}() wants a whole number here, not {v}"), label, help)
    })
}

/// `name(args)`, whose arguments' values are `v`.
fn call(name: &str, span: Span, args: &[Expr], v: Vec<Value>) -> Result<Value> {
    let f = function(name).ok_or_else(|| invalid(span, format!("unknown function `{name}`"), "no function of this name"))?;
    if v.len() < f.min_args || f.max_args.is_some_and(|m| v.len() > m) {
        return Err(invalid_help(
            span,
            format!("wrong number of arguments to `{}`", f.name),
            format!("{} given", v.len()),
            format!("call it as {}", f.signature),
        ));
    }
    if let Some(value) = text_function(name, span, args, &v)? {
        return Ok(value);
    }
    if let Some(value) = collection_function(name, span, args, &v)? {
        return Ok(value);
    }
    if let Some(value) = conversion_function(name, args, &v)? {
        return Ok(value);
    }
    Err(invalid(span, format!("unknown function `{name}`"), "no function of this name"))
}

/// The functions of text (and `cidrsubnet`, of a CIDR block written as
/// text): `None` if `name` is none of them.
fn text_function(name: &str, span: Span, args: &[Expr], v: &[Value]) -> Result<Option<Value>> {
    Ok(Some(match name {
        "join" => {
            let sep = want_string(&v[0], &args[0], name)?;
            let mut parts = Vec::new();
            for item in want_list(&v[1], &args[1], name)? {
                parts.push(interpolate(&args[1], item)?);
            }
            Value::String(parts.join(sep))
        }
        "split" => {
            let sep = want_string(&v[0], &args[0], name)?;
            let s = want_string(&v[1], &args[1], name)?;
            if s.is_empty() {
                Value::Array(Vec::new())
            } else {
                Value::Array(s.split(sep).map(|p| Value::String(p.to_string())).collect())
            }
        }
        "lower" => Value::String(want_string(&v[0], &args[0], name)?.to_lowercase()),
        "upper" => Value::String(want_string(&v[0], &args[0], name)?.to_uppercase()),
        "trimspace" => Value::String(want_string(&v[0], &args[0], name)?.trim().to_string()),
        "replace" => Value::String(want_string(&v[0], &args[0], name)?.replace(
            want_string(&v[1], &args[1], name)?,
            want_string(&v[2], &args[2], name)?,
        )),
        "format" => Value::String(format_spec(want_string(&v[0], &args[0], name)?, &v[1..], &args[1..], span)?),
        "cidrsubnet" => {
            let prefix = want_string(&v[0], &args[0], name)?;
            let newbits = want_int(&v[1], &args[1], name)?;
            let netnum = want_int(&v[2], &args[2], name)?;
            Value::String(cidrsubnet(prefix, newbits, netnum).map_err(|m| {
                invalid_help(span, format!("cidrsubnet(): {m}"), "cannot compute this subnet", "call it as cidrsubnet(prefix, newbits, netnum)")
            })?)
        }
        _ => return Ok(None),
    }))
}

/// The functions of lists and maps: `None` if `name` is none of them.
fn collection_function(name: &str, span: Span, args: &[Expr], v: &[Value]) -> Result<Option<Value>> {
    Ok(Some(match name {
        "concat" => {
            let mut out = Vec::new();
            for (a, e) in v.iter().zip(args) {
                out.extend(want_list(a, e, name)?.iter().cloned());
            }
            Value::Array(out)
        }
        "length" => Value::from(match &v[0] {
            Value::Array(a) => a.len(),
            Value::Object(m) => m.len(),
            Value::String(s) => s.chars().count(),
            other => {
                return Err(invalid_help(
                    args[0].span,
                    format!("length() of a {}", type_name(other)),
                    format!("a {}", type_name(other)),
                    "length() takes a list, a map or a string",
                ))
            }
        }),
        "lookup" => {
            let m = want_map(&v[0], &args[0], name)?;
            let k = want_string(&v[1], &args[1], name)?;
            match (m.get(k), v.get(2)) {
                (Some(found), _) => found.clone(),
                (None, Some(default)) => default.clone(),
                (None, None) => {
                    return Err(invalid_help(
                        args[1].span,
                        format!("no key `{k}` in the map, and no default"),
                        "not in the map",
                        "give a default: lookup(map, key, default)",
                    ))
                }
            }
        }
        "merge" => {
            let mut out = Map::new();
            for (a, e) in v.iter().zip(args) {
                for (k, val) in want_map(a, e, name)? {
                    out.insert(k.clone(), val.clone());
                }
            }
            Value::Object(out)
        }
        "keys" => Value::Array(want_map(&v[0], &args[0], name)?.keys().map(|k| Value::String(k.clone())).collect()),
        "values" => Value::Array(want_map(&v[0], &args[0], name)?.values().cloned().collect()),
        "contains" => Value::Bool(want_list(&v[0], &args[0], name)?.contains(&v[1])),
        "element" => {
            let list = want_list(&v[0], &args[0], name)?;
            if list.is_empty() {
                return Err(invalid(args[0].span, "element() of an empty list", "an empty list"));
            }
            let i = want_int(&v[1], &args[1], name)?;
            list[i.rem_euclid(list.len() as i64) as usize].clone()
        }
        "coalesce" => v
            .iter()
            .find(|x| !x.is_null() && x.as_str() != Some(""))
            .cloned()
            .ok_or_else(|| invalid(span, "coalesce(): every argument is null or empty", "nothing to choose from"))?,
        _ => return Ok(None),
    }))
}

/// The functions that convert a value: `None` if `name` is none of them.
fn conversion_function(name: &str, args: &[Expr], v: &[Value]) -> Result<Option<Value>> {
    Ok(Some(match name {
        "tostring" => match &v[0] {
            Value::String(_) => v[0].clone(),
            Value::Number(_) | Value::Bool(_) => Value::String(interpolate(&args[0], &v[0])?),
            other => {
                return Err(invalid_help(
                    args[0].span,
                    format!("tostring() of a {}", type_name(other)),
                    format!("a {}", type_name(other)),
                    "use jsonencode(value) to make text of a list or a map",
                ))
            }
        },
        "tonumber" => match &v[0] {
            Value::Number(_) => v[0].clone(),
            Value::String(s) => parse_number_text(s)
                .map(Value::Number)
                .ok_or_else(|| invalid(args[0].span, format!("tonumber(): `{s}` is not a number"), "not a number"))?,
            other => {
                return Err(invalid(args[0].span, format!("tonumber() of a {}", type_name(other)), format!("a {}", type_name(other))))
            }
        },
        "jsonencode" => Value::String(v[0].to_string()),
        _ => return Ok(None),
    }))
}

/// `format("%s-%d", a, b)`: %s any scalar, %d a whole number, %v any value, %% a percent.
fn format_spec(spec: &str, values: &[Value], args: &[Expr], span: Span) -> Result<String> {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars
            .next()
            .ok_or_else(|| invalid_help(span, "format(): the spec ends with a lone `%`", "a lone `%`", "write `%%` for a percent sign"))?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let (v, e) = match (values.get(next), args.get(next)) {
            (Some(v), Some(e)) => (v, e),
            _ => {
                return Err(invalid_help(
                    span,
                    format!("format(): not enough values for the spec `{spec}`"),
                    format!("{} value(s) given", values.len()),
                    "give one value for each %s, %d and %v",
                ))
            }
        };
        next += 1;
        match verb {
            's' => out.push_str(&interpolate(e, v)?),
            'd' => out.push_str(&want_int(v, e, "format")?.to_string()),
            'v' => match v {
                Value::String(s) => out.push_str(s),
                other => out.push_str(&other.to_string()),
            },
            other => {
                return Err(invalid_help(
                    span,
                    format!("format(): unknown verb `%{other}`"),
                    "in this spec",
                    "the verbs are %s, %d, %v and %% (a percent sign)",
                ))
            }
        }
    }
    if next < values.len() {
        return Err(invalid_help(
            span,
            format!("format(): {} value(s) given but the spec uses {next}", values.len()),
            "too many values",
            "give one value for each %s, %d and %v",
        ));
    }
    Ok(out)
}

pub(crate) fn parse_number_text(s: &str) -> Option<Number> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(i.into());
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite()).and_then(Number::from_f64)
}

/// Terraform's cidrsubnet for IPv4: the `netnum`th subnet of `prefix`
/// extended by `newbits` bits.
fn cidrsubnet(prefix: &str, newbits: i64, netnum: i64) -> std::result::Result<String, String> {
    let (addr, len) = prefix.split_once('/').ok_or_else(|| format!("`{prefix}` is not a CIDR block"))?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 32).ok_or_else(|| format!("`{prefix}` has a bad prefix length"))?;
    let ip: std::net::Ipv4Addr = addr.parse().map_err(|_| format!("`{addr}` is not an IPv4 address"))?;
    if !(0..=32).contains(&newbits) || len + newbits as u32 > 32 {
        return Err(format!("cannot extend /{len} by {newbits} bits"));
    }
    let newlen = len + newbits as u32;
    if netnum < 0 || (newbits < 63 && netnum >= (1i64 << newbits)) {
        return Err(format!("netnum {netnum} does not fit in {newbits} bits"));
    }
    let base = u32::from(ip) & if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let shifted = if newlen == 32 { netnum as u32 } else { (netnum as u32) << (32 - newlen) };
    Ok(format!("{}/{newlen}", std::net::Ipv4Addr::from(base | shifted)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse_expr;

    #[test]
    fn only_what_cannot_fail_is_said_to() {
        let mut vars = Map::new();
        vars.insert("list".into(), serde_json::json!([1, 2]));
        vars.insert("size".into(), serde_json::json!(3));
        let scope = Scope { pipeline: "p", environment: "dev", vars: &vars, outputs: &no_outputs, artifacts: &NO_ARTIFACTS };
        for (src, safe) in [
            ("3", true),
            ("null", true),
            ("\"r1-${env.name}-${pipeline.name}\"", true),
            ("[var.size, var.list, {a = env.name}]", true),
            ("\"${\"nested ${env.name}\"}\"", true),
            ("\"${var.size}\"", false),
            ("\"${null}\"", false),
            ("var.list[5]", false),
            ("env.name.x", false),
            ("length(var.list)", false),
            ("vpc.id", false),
        ] {
            let e = parse_expr(src).expect(src);
            assert_eq!(cannot_fail(&e), safe, "{src}");
            if safe {
                assert!(eval(&e, &scope).is_ok(), "{src} said not to fail, but it does");
            }
        }
        // Why a var may not go into a string unevaluated: its value may not be text.
        let e = parse_expr("\"a-${var.list}\"").expect("parses");
        assert!(!cannot_fail(&e) && eval(&e, &scope).is_err());
    }

    #[test]
    fn what_waits_first_on_an_output_is_unknown_before_applying() {
        let vars = Map::new();
        let scope = Scope { pipeline: "p", environment: "dev", vars: &vars, outputs: &no_outputs, artifacts: &NO_ARTIFACTS };
        for (src, waits) in [
            ("vpc.id", true),
            ("vpc.id[0]", true),
            ("\"a-${vpc.id}-${var.x}\"", true),
            ("\"${vpc.id}\"", true),
            ("[vpc.id, var.x]", true),
            ("{ a = vpc.id, b = 1 }", true),
            ("join(vpc.id, [])", true),
            ("split(\",\", vpc.id)", false),
            ("[var.x, vpc.id]", false),
            ("\"${var.x}${vpc.id}\"", false),
            ("vpc", false),
            ("vpc[0]", false),
            ("env.name", false),
            ("\"text\"", false),
            ("[]", false),
            ("1", false),
        ] {
            let e = parse_expr(src).expect("parses");
            assert_eq!(waits_first_on_output(&e), waits, "{src}");
            if waits {
                assert!(matches!(eval(&e, &scope), Err(EvalError::Unknown { .. })), "{src}");
            }
        }
    }

    fn ev(src: &str) -> Result<Value> {
        let mut vars = Map::new();
        vars.insert("zones".into(), serde_json::json!(["a", "b"]));
        vars.insert("size".into(), serde_json::json!(20));
        let vpc = serde_json::json!({"id": "vpc-1", "tags": {"k": "v"}});
        let outputs = |r: &str| (r == "vpc").then_some(&vpc);
        let scope = Scope { pipeline: "p", environment: "dev", vars: &vars, outputs: &outputs, artifacts: &NO_ARTIFACTS };
        eval(&parse_expr(src).expect("parses"), &scope)
    }

    #[test]
    fn references_and_interpolation() {
        assert_eq!(ev(r#""app-${env.name}-${pipeline.name}""#).unwrap(), "app-dev-p");
        assert_eq!(ev("var.zones[1]").unwrap(), "b");
        assert_eq!(ev(r#""${var.size}""#).unwrap(), 20);
        assert_eq!(ev("vpc.tags[\"k\"]").unwrap(), "v");
        assert_eq!(ev("vpc.tags.k").unwrap(), "v");
        assert_eq!(ev("db.endpoint"), Err(EvalError::Unknown { resource: "db".into() }));
    }

    #[test]
    fn functions() {
        assert_eq!(ev(r#"join(",", concat(var.zones, ["c"]))"#).unwrap(), "a,b,c");
        assert_eq!(ev(r#"upper(lower("MiX"))"#).unwrap(), "MIX");
        assert_eq!(ev("length(var.zones)").unwrap(), 2);
        assert_eq!(ev(r#"lookup({a = 1}, "b", 7)"#).unwrap(), 7);
        assert_eq!(ev(r#"format("%s-%d-%%", "x", 3)"#).unwrap(), "x-3-%");
        assert_eq!(ev(r#"cidrsubnet("10.0.0.0/16", 8, 2)"#).unwrap(), "10.0.2.0/24");
        assert_eq!(ev(r#"split(",", "a,b")[1]"#).unwrap(), "b");
        assert_eq!(ev(r#"merge({a = 1}, {b = 2})"#).unwrap(), serde_json::json!({"a": 1, "b": 2}));
        assert_eq!(ev(r#"element(var.zones, 3)"#).unwrap(), "b");
        assert_eq!(ev(r#"coalesce(null, "", "x")"#).unwrap(), "x");
        assert_eq!(ev(r#"tonumber("5")"#).unwrap(), 5);
    }

    #[test]
    fn errors_point_at_the_problem() {
        let Err(EvalError::Invalid(d)) = ev("var.zones[5]") else { panic!() };
        assert!(d.message.contains("out of range"), "{}", d.message);
        let Err(EvalError::Invalid(d)) = ev(r#""x${var.zones}""#) else { panic!() };
        assert!(d.message.contains("list into a string"), "{}", d.message);
        assert!(matches!(ev("length(3)"), Err(EvalError::Invalid(_))));
    }
}
