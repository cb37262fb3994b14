//! A plugin as one environment sees it ([`PluginSpec`]): its source, config,
//! grants and limits evaluated and checked. Every part is checked, so one
//! bad grant does not hide the next.

use serde_json::{Map, Value};

use crate::ast::*;
use crate::diagnostic::{Code, Diagnostic};
use crate::eval::{self, Scope};
use crate::graph::{Grants, Limits, PluginSource, PluginSpec};

use super::Compiler;

impl<'a> Compiler<'a> {
    /// What a plugin resolves to in one environment. Every part is checked,
    /// so one bad grant does not hide the next.
    pub(super) fn plugin_spec(&mut self, p: &PluginDecl, scope: &Scope) -> Option<PluginSpec> {
        let source = p.source.as_ref().and_then(|e| self.plugin_source(p, e, scope));
        let config = match &p.config {
            Some(c) => self.eval(c, scope),
            None => Some(Value::Object(Map::new())),
        };
        let http = self.grant_list(p.allow.http.as_ref(), scope, "http", normalize_http_grant);
        let fs = self.grant_list(p.allow.fs.as_ref(), scope, "fs", normalize_fs_grant);
        let env = self.grant_list(p.allow.env.as_ref(), scope, "env", normalize_env_grant);
        let defaults = Limits::default();
        let memory_mb = self.limit(p.limits.memory_mb.as_ref(), scope, "memory_mb", defaults.memory_mb);
        let timeout_s = self.limit(p.limits.timeout_s.as_ref(), scope, "timeout_s", defaults.timeout_s);
        let (kind, _) = p.kind?;
        Some(PluginSpec {
            name: p.name.name.to_string(),
            kind,
            source: source?,
            config: config?,
            grants: {
                let fs = fs?;
                Grants {
                    http: http?.into_iter().map(|(g, _)| g).collect(),
                    fs_spans: fs.iter().map(|(_, s)| *s).collect(),
                    fs: fs.into_iter().map(|(g, _)| g).collect(),
                    env: env?.into_iter().map(|(g, _)| g).collect(),
                }
            },
            limits: Limits { memory_mb: memory_mb?, timeout_s: timeout_s? },
        })
    }

    /// Where the plugin's component comes from: `builtin:<name>` or a path.
    fn plugin_source(&mut self, p: &PluginDecl, e: &Expr, scope: &Scope) -> Option<PluginSource> {
        match self.eval(e, scope)? {
            Value::String(s) => match s.strip_prefix("builtin:") {
                Some(name) if !name.is_empty() => Some(PluginSource::Builtin(name.to_string())),
                Some(_) => {
                    self.diags.push(
                        Diagnostic::at(Code::InvalidValue, e.span, "`builtin:` needs a plugin name")
                            .with_label(e.span, "no name after `builtin:`")
                            .help("name a builtin plugin, like \"builtin:aws\""),
                    );
                    None
                }
                None if s.trim().is_empty() => {
                    self.diags.push(
                        Diagnostic::at(Code::InvalidValue, e.span, format!("plugin `{}` has an empty `source`", p.name))
                            .with_label(e.span, "empty")
                            .help("use \"builtin:<name>\" or a path to a .wasm component"),
                    );
                    None
                }
                None => Some(PluginSource::Path(s)),
            },
            other => {
                self.diags.push(
                    Diagnostic::at(Code::TypeMismatch, e.span, "`source` must be a string")
                        .with_label(e.span, format!("a {}", eval::type_name(&other)))
                        .help("use \"builtin:<name>\" or a path to a .wasm component"),
                );
                None
            }
        }
    }

    /// The grants of one kind, `what` (`http`, `fs`, `env`): a string or a
    /// list of strings, each made canonical by `normalize`, with where it is
    /// written; `None` if one is not a grant (reported).
    fn grant_list(
        &mut self,
        e: Option<&Expr>,
        scope: &Scope,
        what: &str,
        normalize: impl Fn(&str) -> Result<String, String>,
    ) -> Option<Vec<(String, Span)>> {
        let Some(e) = e else { return Some(Vec::new()) };
        let value = self.eval(e, scope)?;
        let items = match &value {
            Value::Array(items) => items.clone(),
            Value::String(_) => vec![value.clone()],
            other => {
                self.diags.push(
                    Diagnostic::at(Code::TypeMismatch, e.span, format!("`{what}` grants are a list of strings"))
                        .with_label(e.span, format!("a {}", eval::type_name(other))),
                );
                return None;
            }
        };
        // Point at the element when the list was written out literally.
        let spans: Vec<Span> = match &e.kind {
            ExprKind::List(xs) if xs.len() == items.len() => xs.iter().map(|x| x.span).collect(),
            _ => vec![e.span; items.len()],
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (item, span) in items.iter().zip(spans) {
            match item.as_str().ok_or_else(|| format!("a {}, not a string", eval::type_name(item))).and_then(&normalize) {
                Ok(g) => out.push((g, span)),
                Err(why) => {
                    ok = false;
                    self.diags.push(
                        Diagnostic::at(Code::InvalidValue, span, format!("invalid `{what}` grant"))
                            .with_label(span, why)
                            .help(match what {
                                "http" => "an http grant is \"host:port\" or a URL like \"http://127.0.0.1:5055\"",
                                "fs" => "an fs grant is a directory, relative to the pipeline file",
                                _ => "an env grant is a variable name, like \"AWS_ACCESS_KEY_ID\"",
                            }),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    /// A limit, a whole number above 0, or `default` when it is not given;
    /// `None` if it is not one (reported).
    fn limit(&mut self, e: Option<&Expr>, scope: &Scope, what: &str, default: u64) -> Option<u64> {
        let Some(e) = e else { return Some(default) };
        let value = self.eval(e, scope)?;
        if let Some(v) = value.as_u64().filter(|v| *v > 0) {
            return Some(v);
        }
        let label = match &value {
            Value::Number(n) if n.as_u64() == Some(0) || n.as_i64().is_some_and(|v| v < 0) => "must be at least 1".to_string(),
            Value::Number(_) => "not a whole number".to_string(),
            other => format!("a {}, not a number", eval::type_name(other)),
        };
        let unit = if what == "memory_mb" { "megabytes" } else { "seconds" };
        self.diags.push(
            Diagnostic::at(Code::InvalidValue, e.span, format!("`{what}` must be a whole number above 0"))
                .with_label(e.span, label)
                .help(format!("`{what}` is in {unit}; leave it out for the default, {default}")),
        );
        None
    }
}

/// `host:port` from a grant written as `host:port` or as a URL.
pub fn normalize_http_grant(s: &str) -> Result<String, String> {
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, s),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (authority, None),
    };
    if host.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    let port: u16 = match (port, scheme) {
        (Some(p), _) => p.parse().map_err(|_| format!("`{p}` is not a port"))?,
        (None, Some("http")) => 80,
        (None, Some("https")) => 443,
        (None, _) => return Err(format!("`{s}` has no port")),
    };
    if let Some(sc) = scheme {
        if sc != "http" && sc != "https" {
            return Err(format!("`{sc}` is not http or https"));
        }
    }
    Ok(format!("{host}:{port}"))
}

/// An `fs` grant: a directory, relative to the pipeline file.
fn normalize_fs_grant(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("an empty directory".into())
    } else {
        Ok(s.to_string())
    }
}

/// An `env` grant: the name of an environment variable.
fn normalize_env_grant(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(s.to_string())
    } else {
        Err(format!("`{s}` is not an environment variable name"))
    }
}
