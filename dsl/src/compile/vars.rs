//! Vars: their values (from `--var`, an environment's `vars { }`, a
//! default) and whether each fits the var's declared type.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::ast::*;
use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::eval::{self, Scope};
use crate::sensitive;

use super::references::Place;
use super::Compiler;

impl<'a> Compiler<'a> {
    /// `--var` values, parsed by their var's type, and the names of those
    /// that could not be (reported here; they count as having no value).
    pub(super) fn cli_vars(&mut self) -> (Map<String, Value>, Vec<String>) {
        let mut out = Map::new();
        let mut bad = Vec::new();
        for (name, text) in &self.opts.vars {
            if self.sensitive_vars.contains(name) {
                self.secrets.add_text(text);
            }
            let Some(decl) = self.var(name) else {
                let help = did_you_mean(name, self.m.vars.iter().map(|v| v.name.name.as_str()))
                    .unwrap_or_else(|| "declare it with `var <name>: <type>` in the pipeline".to_string());
                self.diags.push(Diagnostic::new(Code::UnknownReference, format!("--var {name}: no such var")).help(help));
                bad.push(name.clone());
                continue;
            };
            match parse_var_value(decl.ty, text) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(why) => {
                    // The value of a sensitive var is not shown, even when it is wrong.
                    let shown = if decl.sensitive.is_some() { sensitive::MASK } else { text.as_str() };
                    self.diags.push(
                        Diagnostic::new(Code::TypeMismatch, format!("--var {name}={shown}: {why}"))
                            .help(format!("var `{name}` is declared as {}", decl.ty.name())),
                    );
                    bad.push(name.clone());
                }
            }
        }
        (out, bad)
    }

    /// Every var's default: a constant, of the var's type.
    pub(super) fn check_vars(&mut self) {
        let empty = Map::new();
        for v in &self.m.vars {
            let Some(default) = &v.default else { continue };
            if !self.refs(default, Place::Constant, format_args!("the default of var `{}`", v.name)) {
                continue;
            }
            let scope = Scope { pipeline: "", environment: "", vars: &empty, outputs: &eval::no_outputs, artifacts: &self.opts.artifacts };
            if let Some(value) = self.eval(default, &scope) {
                self.type_check(v, &value, default.span, "its default is");
            }
        }
    }

    /// Reports a value of the wrong type for `var`; `given` says where the
    /// value comes from ("its default is", "environment `prod` sets it to").
    fn type_check(&mut self, var: &VarDecl, value: &Value, span: Span, given: &str) -> bool {
        if type_matches(var.ty, value) {
            return true;
        }
        let mut d = Diagnostic::at(
            Code::TypeMismatch,
            span,
            format!("var `{}` is a {}, but {given} a {}", var.name, var.ty.name(), eval::type_name(value)),
        )
        .with_label(span, format!("a {}", eval::type_name(value)));
        if let Some(ts) = var.ty_span {
            d = d.with_label(ts, "declared type");
        }
        self.diags.push(d);
        false
    }

    /// Every var's value in environment `env` (`decl`, if the file declares
    /// it): `--var` > the environment's `vars { }` > the default. Also the
    /// vars that have none there; one that must have one is added to `missing`.
    pub(super) fn var_values(
        &mut self,
        pipeline: &str,
        env: &str,
        decl: Option<&EnvironmentDecl>,
        cli_vars: &Map<String, Value>,
        bad_cli_vars: &[String],
        missing: &mut BTreeMap<String, Vec<String>>,
    ) -> (Map<String, Value>, Vec<String>) {
        let m = self.m;
        let mut vars = Map::new();
        let mut unavailable = Vec::new();
        let empty = Map::new();
        let scope = Scope { pipeline, environment: env, vars: &empty, outputs: &eval::no_outputs, artifacts: &self.opts.artifacts };
        for v in &m.vars {
            let from_env = decl.and_then(|d| d.vars.iter().find(|a| a.key.name == v.name.name));
            let value = if let Some(val) = cli_vars.get(v.name.name.as_str()) {
                Some(val.clone())
            } else if bad_cli_vars.iter().any(|b| *b == v.name.name) {
                None // reported with the command line
            } else if let Some(attr) = from_env {
                // An environment's var values may use env.name and pipeline.name, not other vars.
                let given = format!("environment `{env}` sets it to");
                self.eval_env_var(&attr.value, &scope).filter(|val| self.type_check(v, val, attr.value.span, &given))
            } else {
                // A default of the wrong type was reported by `check_vars`.
                v.default
                    .as_ref()
                    .filter(|d| !self.skip(d))
                    .and_then(|d| eval::eval(d, &scope).ok())
                    .filter(|val| type_matches(v.ty, val))
            };
            match value {
                Some(val) => {
                    vars.insert(v.name.name.to_string(), val);
                }
                None => {
                    unavailable.push(v.name.name.to_string());
                    let reported = bad_cli_vars.iter().any(|b| *b == v.name.name);
                    if v.default.is_none() && from_env.is_none() && self.opts.require_values && !reported {
                        missing.entry(v.name.name.to_string()).or_default().push(env.to_string());
                    }
                }
            }
        }
        // Nor has a var whose declaration did not parse: the syntax error is the news.
        unavailable.extend(m.unparsed.iter().filter(|n| self.var(n).is_none()).cloned());
        (vars, unavailable)
    }

    /// The value an environment's `vars { }` gives a var; it may not refer to
    /// other vars.
    fn eval_env_var(&mut self, e: &Expr, scope: &Scope) -> Option<Value> {
        let mut refers_to_var = None;
        e.walk(&mut |x| {
            if let ExprKind::Traversal { root, .. } = &x.kind {
                if root.name == "var" && refers_to_var.is_none() {
                    refers_to_var = Some(root.span);
                }
            }
        });
        if let Some(span) = refers_to_var {
            self.diags.push(
                Diagnostic::at(Code::InvalidReference, span, "an environment's var values cannot refer to other vars")
                    .with_label(span, "a var reference")
                    .help("write the value itself; `env.name` and `pipeline.name` may be used"),
            );
            return None;
        }
        self.eval(e, scope)
    }

    /// The vars that must have a value and have none, each with the
    /// environments it has none in.
    pub(super) fn report_missing_vars(&mut self, missing: BTreeMap<String, Vec<String>>) {
        let m = self.m;
        for (var, envs) in missing {
            let Some(decl) = self.var(&var) else { continue };
            let envs: Vec<&str> = envs.iter().map(String::as_str).collect();
            let where_ = if m.environments.is_empty() {
                String::new()
            } else {
                format!(" in environment{} {}", if envs.len() == 1 { "" } else { "s" }, envs.join(", "))
            };
            self.diags.push(
                Diagnostic::at(Code::MissingVar, decl.name.span, format!("var `{var}` has no value{where_}"))
                    .with_label(decl.name.span, "declared without a default")
                    .help(format!(
                        "give it a default, set it in the environment's `vars {{ {var} = ... }}`, or pass `--var {var}=...`"
                    )),
            );
        }
    }
}

/// Whether `v` is a value of type `ty`.
pub fn type_matches(ty: VarType, v: &Value) -> bool {
    match ty {
        VarType::Any => true,
        VarType::String => v.is_string(),
        VarType::Number => v.is_number(),
        VarType::Bool => v.is_boolean(),
        VarType::List => v.is_array(),
        VarType::Map => v.is_object(),
    }
}

/// A `--var` value as typed on the command line. Strings are taken as they
/// are; numbers and bools are parsed; lists and maps are written in the
/// language (`'["a", "b"]'`).
pub fn parse_var_value(ty: VarType, text: &str) -> Result<Value, String> {
    match ty {
        VarType::String => Ok(Value::String(text.to_string())),
        VarType::Number => eval::parse_number_text(text).map(Value::Number).ok_or_else(|| "not a number".to_string()),
        VarType::Bool => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("not true or false".into()),
        },
        VarType::List | VarType::Map | VarType::Any => {
            let value = crate::parser::parse_expr(text).ok().and_then(|e| {
                let empty = Map::new();
                let scope = Scope { pipeline: "", environment: "", vars: &empty, outputs: &eval::no_outputs, artifacts: &eval::NO_ARTIFACTS };
                eval::eval(&e, &scope).ok()
            });
            match value {
                Some(v) if type_matches(ty, &v) => Ok(v),
                _ if ty == VarType::Any => Ok(Value::String(text.to_string())),
                Some(v) => Err(format!("a {}, not a {}", eval::type_name(&v), ty.name())),
                None => Err(format!("not a {} (write it like {})", ty.name(), if ty == VarType::List { "'[\"a\", \"b\"]'" } else { "'{ k = \"v\" }'" })),
            }
        }
    }
}
