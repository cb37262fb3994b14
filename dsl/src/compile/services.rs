//! The `service` blocks: their names, the plugins that resolve their
//! secrets, their references (checked like a plugin's config: vars,
//! `env.name`, `pipeline.name`), and each evaluated into a [`ServiceSpec`].
//!
//! A service belongs to no environment: its values are evaluated once, in
//! the pipeline's scope, where vars have their `--var` value or their
//! default (an environment's `vars { }` does not reach it) and `env.name`
//! is empty.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::ast::*;
use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::eval::{self, Scope};
use crate::service::{
    build_env_name_problem, is_service_name, parse_duration, BuildSpec, CommitStatusSpec, PullRequests, SecretBinding,
    ServiceSpec, DEFAULT_BUILD_TIMEOUT_S, MAX_BUILD_TIMEOUT_S, MIN_POLL_S,
};

use super::references::Place;
use super::Compiler;

/// The schemes a `repo` URL may have.
const REPO_SCHEMES: [&str; 5] = ["https", "http", "git", "ssh", "file"];

impl<'a> Compiler<'a> {
    /// Service names (well formed, given once), the resolvers of their
    /// secrets, the references in their values, and the artifacts the
    /// command line gives for services the file does not declare.
    pub(super) fn check_services(&mut self) {
        let m = self.m;
        for s in &m.services {
            if !is_service_name(&s.name.name) {
                self.diags.push(
                    Diagnostic::at(Code::InvalidValue, s.name.span, format!("`{}` cannot name a service", s.name.name))
                        .with_label(s.name.span, "not a name")
                        .help(
                            "a service's name is a letter or `_`, then letters, digits, `_` and `-`, like \"api\" or \
                             \"web-2\": `service.NAME.artifact` refers to it",
                        ),
                );
            }
            let owner = format!("service `{}`", s.name);
            for e in s.values() {
                self.refs(e, Place::Static, &owner);
            }
            let secrets = s.webhook.iter().chain(s.commit_status.iter().filter_map(|c| c.token.as_ref()));
            for secret in secrets {
                if let Some(r) = &secret.resolver {
                    self.check_resolver(r);
                }
            }
        }
        for name in self.opts.artifacts.keys() {
            if m.services.iter().any(|s| s.name.name == name.as_str()) {
                continue;
            }
            let help = did_you_mean(name, m.services.iter().map(|s| s.name.name.as_str())).unwrap_or_else(|| {
                if m.services.is_empty() {
                    "the file declares no service".to_string()
                } else {
                    let names: Vec<&str> = m.services.iter().map(|s| s.name.name.as_str()).collect();
                    format!("the services are: {}", names.join(", "))
                }
            });
            self.diags.push(
                Diagnostic::new(
                    Code::UnknownReference,
                    format!("an artifact is given for service `{name}`, which the file does not declare"),
                )
                .help(help),
            );
        }
    }

    /// Every service evaluated, in declaration order, in the pipeline's
    /// scope (see the module's comment). A service whose values have a
    /// mistake (reported) is left out.
    pub(super) fn service_specs(
        &mut self,
        pipeline: &str,
        cli_vars: &Map<String, Value>,
        bad_cli_vars: &[String],
    ) -> Vec<ServiceSpec> {
        let m = self.m;
        if m.services.is_empty() {
            return Vec::new();
        }
        // Reported below, where a service uses them, not for every environment.
        let mut missing = BTreeMap::new();
        let (vars, unavailable) = self.var_values(pipeline, "", None, cli_vars, bad_cli_vars, &mut missing);
        self.unavailable = unavailable;
        let opts = self.opts;
        let scope =
            Scope { pipeline, environment: "", vars: &vars, outputs: &eval::no_outputs, artifacts: &opts.artifacts };
        let mut specs = Vec::with_capacity(m.services.len());
        for s in &m.services {
            self.vars_without_value(s, cli_vars, bad_cli_vars);
            if let Some(spec) = self.service_spec(s, &scope) {
                specs.push(spec);
            }
        }
        self.unavailable.clear();
        specs
    }

    /// Reports each var that service `s` uses and that has no value in the
    /// pipeline's scope, neither a default nor a `--var` (when values are
    /// required: `graph` does without).
    fn vars_without_value(&mut self, s: &ServiceDecl, cli_vars: &Map<String, Value>, bad_cli_vars: &[String]) {
        if !self.opts.require_values {
            return;
        }
        let mut found: Vec<(String, Span)> = Vec::new();
        for e in s.values() {
            e.walk(&mut |x| {
                let ExprKind::Traversal { root, steps } = &x.kind else { return };
                let (true, Some(Step::Attr(name))) = (root.name == "var", steps.first()) else { return };
                let Some(decl) = self.var(&name.name) else { return };
                let has_value = decl.default.is_some()
                    || cli_vars.contains_key(name.name.as_str())
                    || bad_cli_vars.iter().any(|b| *b == name.name);
                if !has_value {
                    found.push((name.name.to_string(), root.span.to(name.span)));
                }
            });
        }
        for (var, span) in found {
            self.diags.push(
                Diagnostic::at(Code::MissingVar, span, format!("var `{var}` has no value for service `{}`", s.name))
                    .with_label(span, "no value outside an environment")
                    .help(format!(
                        "a service belongs to no environment, and an environment's `vars {{ }}` does not reach it: \
                         give `{var}` a default or pass `--var {var}=...`"
                    )),
            );
        }
    }

    /// One service evaluated; `None` if a value has a mistake (reported).
    /// Every value is checked, so one mistake does not hide the next.
    fn service_spec(&mut self, s: &ServiceDecl, scope: &Scope) -> Option<ServiceSpec> {
        let owner = format!("service `{}`", s.name);
        let repo = s.repo.as_ref().and_then(|e| self.repo(e, scope));
        let branches = self.patterns(s.branches.as_ref(), scope, "branches", "branch");
        let tags = self.patterns(s.tags.as_ref(), scope, "tags", "tag");
        let pull_requests = match &s.pull_requests {
            Some(e) => self.pull_requests(e, scope),
            None => Some(PullRequests::default()),
        };
        let paths = match &s.paths {
            Some(e) => self
                .strings(e, scope, "paths")
                .and_then(|items| self.all_ok(items, |p| relative_path(p).map_err(|why| (why, PATHS_HELP)))),
            None => Some(Vec::new()),
        };
        let poll_s = match &s.poll {
            Some(e) => self.duration(e, scope, "poll", MIN_POLL_S, u64::MAX).map(Some),
            None => Some(None),
        };
        let enabled = self.bool_or(s.enabled.as_ref(), scope, "`enabled`", true);
        let deploys = self.bool_or(s.deploys.as_ref(), scope, "`deploys`", true);
        let build = s.build.as_ref().and_then(|b| self.build_spec(b, scope));
        let webhook = match &s.webhook {
            Some(w) => self.secret_binding(w, scope, "secret").map(Some),
            None => Some(None),
        };
        let commit_status = match &s.commit_status {
            Some(c) => self.commit_status_spec(c, &s.name.name, scope, &owner).map(Some),
            None => Some(None),
        };
        Some(ServiceSpec {
            name: s.name.name.to_string(),
            repo: repo?,
            branches: branches?,
            tags: tags?,
            pull_requests: pull_requests?,
            paths: paths?,
            poll_s: poll_s?,
            enabled: enabled?,
            deploys: deploys?,
            build: build?,
            webhook: webhook?,
            commit_status: commit_status?,
            span: s.span,
        })
    }

    /// `repo`: a URL of a scheme git reads, or a local path.
    fn repo(&mut self, e: &Expr, scope: &Scope) -> Option<String> {
        let repo = self.string(e, scope, "`repo`")?;
        let problem = if repo.trim().is_empty() {
            Some(("empty".to_string(), "write the repository's URL, or a path to it".to_string()))
        } else {
            match repo.split_once("://") {
                Some((scheme, _)) if !REPO_SCHEMES.contains(&scheme) => Some((
                    format!("`{scheme}` is not a scheme git reads here"),
                    format!("a repository is a URL ({}://) or a local path", REPO_SCHEMES.join("://, ")),
                )),
                Some((_, rest)) if rest.is_empty() => {
                    Some(("nothing after the scheme".to_string(), "write the whole URL".to_string()))
                }
                _ => None,
            }
        };
        match problem {
            None => Some(repo),
            Some((label, help)) => {
                self.diags.push(
                    Diagnostic::at(Code::InvalidValue, e.span, "invalid `repo`").with_label(e.span, label).help(help),
                );
                None
            }
        }
    }

    /// `branches` or `tags`: glob patterns, none empty; empty when absent.
    fn patterns(&mut self, e: Option<&Expr>, scope: &Scope, key: &str, what: &str) -> Option<Vec<String>> {
        let Some(e) = e else { return Some(Vec::new()) };
        let items = self.strings(e, scope, key)?;
        self.all_ok(items, |p| {
            if p.trim().is_empty() {
                let help = "a pattern names refs or matches them with `*`, like \"release-*\"";
                Err(("an empty pattern".to_string(), help))
            } else if p.starts_with("refs/") {
                let help = "write the name as it is pushed, like \"main\" or \"v*\"";
                Err((format!("a {what} name, without `refs/`"), help))
            } else {
                Ok(p.to_string())
            }
        })
    }

    /// `pull_requests = "off" | "build" | "deploy"`.
    fn pull_requests(&mut self, e: &Expr, scope: &Scope) -> Option<PullRequests> {
        let text = self.string(e, scope, "`pull_requests`")?;
        if let Some((_, p)) = PullRequests::ALL.iter().find(|(n, _)| *n == text) {
            return Some(*p);
        }
        let help = did_you_mean(&text, PullRequests::ALL.iter().map(|(n, _)| *n)).unwrap_or_else(|| {
            "`pull_requests` is \"off\" (the default), \"build\" (build, deploy nothing) or \"deploy\" (build, then \
             deploy to the environments marked `previews = true`)"
                .into()
        });
        self.diags.push(
            Diagnostic::at(Code::InvalidValue, e.span, format!("`{text}` is not a value of `pull_requests`"))
                .with_label(e.span, "not \"off\", \"build\" or \"deploy\"")
                .help(help),
        );
        None
    }

    /// The `build { }` block.
    fn build_spec(&mut self, b: &BuildBlock, scope: &Scope) -> Option<BuildSpec> {
        let command = b.command.as_ref().and_then(|e| self.command(e, scope));
        let artifact = b.artifact.as_ref().and_then(|e| {
            let text = self.string(e, scope, "`artifact`")?;
            match relative_path(&text) {
                Ok(p) => Some(p),
                Err(why) => {
                    self.diags.push(
                        Diagnostic::at(Code::InvalidValue, e.span, "invalid `artifact`")
                            .with_label(e.span, why)
                            .help("the artifact is a file or directory inside the checkout, like \"out/api.tar.gz\""),
                    );
                    None
                }
            }
        });
        let timeout_s = match &b.timeout {
            Some(e) => self.duration(e, scope, "timeout", 1, MAX_BUILD_TIMEOUT_S),
            None => Some(DEFAULT_BUILD_TIMEOUT_S),
        };
        let env = match &b.env {
            Some(e) => self.build_env(e, scope),
            None => Some(BTreeMap::new()),
        };
        Some(BuildSpec { command: command?, artifact: artifact?, timeout_s: timeout_s?, env: env? })
    }

    /// `command = ["program", "arg", ..]`: at least the program.
    fn command(&mut self, e: &Expr, scope: &Scope) -> Option<Vec<String>> {
        let items = self.strings(e, scope, "command")?;
        match items.first() {
            None => {
                self.diags.push(
                    Diagnostic::at(Code::InvalidValue, e.span, "`command` is empty")
                        .with_label(e.span, "no program")
                        .help(
                            "name the program and its arguments, like `command = [\"sh\", \"build.sh\"]` (no shell \
                             runs it)",
                        ),
                );
                None
            }
            Some((program, span)) if program.trim().is_empty() => {
                self.diags.push(
                    Diagnostic::at(Code::InvalidValue, *span, "the program of `command` is empty")
                        .with_label(*span, "empty")
                        .help("the first item is the program to run, like \"sh\" or \"./build.sh\""),
                );
                None
            }
            Some(_) => Some(items.into_iter().map(|(s, _)| s).collect()),
        }
    }

    /// `env = { NAME = "value", .. }` of a build.
    fn build_env(&mut self, e: &Expr, scope: &Scope) -> Option<BTreeMap<String, String>> {
        let value = self.eval(e, scope)?;
        let Value::Object(map) = value else {
            self.diags.push(
                Diagnostic::at(Code::TypeMismatch, e.span, "`env` must be a map of strings")
                    .with_label(e.span, format!("a {}", eval::type_name(&value)))
                    .help("write `env = { NAME = \"value\" }`"),
            );
            return None;
        };
        // Point at the key or the value when the map was written out.
        let written: &[(MapKey, Expr)] = match &e.kind {
            ExprKind::Map(entries) => entries,
            _ => &[],
        };
        let at = |key: &str| written.iter().find(|(k, _)| k.name == key);
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (name, v) in map {
            let (key_span, value_span) = at(&name).map_or((e.span, e.span), |(k, x)| (k.span, x.span));
            if let Some(why) = build_env_name_problem(&name) {
                ok = false;
                self.diags.push(
                    Diagnostic::at(Code::InvalidValue, key_span, format!("`{name}` cannot be given to a build"))
                        .with_label(key_span, why)
                        .help(
                            "a build's variables are letters, digits and `_`; every build gets `PATH`, `HOME` and \
                             the `STACKPIPE_*` variables from stackpipe",
                        ),
                );
                continue;
            }
            match v {
                Value::String(s) => {
                    out.insert(name, s);
                }
                other => {
                    ok = false;
                    self.diags.push(
                        Diagnostic::at(Code::TypeMismatch, value_span, format!("the build's `{name}` must be a string"))
                            .with_label(value_span, format!("a {}", eval::type_name(&other)))
                            .help("an environment variable's value is text: write it in quotes"),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    /// `commit_status { }`.
    fn commit_status_spec(
        &mut self,
        c: &CommitStatusBlock,
        service: &str,
        scope: &Scope,
        owner: &str,
    ) -> Option<CommitStatusSpec> {
        let api = c.api.as_ref().and_then(|e| {
            let url = self.string(e, scope, "`api`")?;
            let host = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
            if host.is_some_and(|h| !h.is_empty() && !h.starts_with('/')) {
                return Some(url.trim_end_matches('/').to_string());
            }
            self.diags.push(
                Diagnostic::at(Code::InvalidValue, e.span, format!("invalid `api` in the `commit_status` of {owner}"))
                    .with_label(e.span, "not an http(s) URL")
                    .help("the repository's API base, like \"https://api.github.com/repos/acme/api\""),
            );
            None
        });
        let context = match &c.context {
            Some(e) => self.string(e, scope, "`context`").and_then(|text| {
                if !text.trim().is_empty() {
                    return Some(text);
                }
                self.diags.push(
                    Diagnostic::at(Code::InvalidValue, e.span, "`context` is empty")
                        .with_label(e.span, "empty")
                        .help(format!("leave it out for \"stackpipe/{service}\", or name the status")),
                );
                None
            }),
            None => Some(format!("stackpipe/{service}")),
        };
        let token = c.token.as_ref().and_then(|t| self.secret_binding(t, scope, "token"));
        Some(CommitStatusSpec { api: api?, context: context?, token: token? })
    }

    /// A `webhook { }` or `token { }` block: its credentials plugin as the
    /// pipeline's scope resolves it; `field` is the default of its `field`.
    fn secret_binding(&mut self, b: &SecretBlock, scope: &Scope, field: &str) -> Option<SecretBinding> {
        let field = match &b.field {
            Some(e) => self.string(e, scope, "`field`").and_then(|text| {
                if !text.is_empty() {
                    return Some(text);
                }
                self.diags.push(
                    Diagnostic::at(Code::InvalidValue, e.span, "`field` is empty")
                        .with_label(e.span, "empty")
                        .help(format!(
                            "name the credential's field that holds the secret, or leave it out for \"{field}\""
                        )),
                );
                None
            }),
            None => Some(field.to_string()),
        };
        let config = match &b.config {
            Some(c) => self.eval(c, scope),
            None => Some(Value::Object(Map::new())),
        };
        // An unknown resolver, or a plugin of another kind, was reported by `check_resolver`.
        let plugin = self.plugin(&b.resolver.as_ref()?.name)?;
        if plugin.kind.is_some_and(|k| k.0 != PluginKind::Credentials) {
            return None;
        }
        let resolver = self.plugin_spec(plugin, scope)?;
        Some(SecretBinding { resolver, config: config?, field: field? })
    }

    /// A duration written as text (`"90s"`, `"5m"`, `"1h30m"`), between
    /// `min` and `max` seconds.
    fn duration(&mut self, e: &Expr, scope: &Scope, key: &str, min: u64, max: u64) -> Option<u64> {
        let help = "a duration is a whole number and a unit, `s`, `m` or `h`, largest first: \"90s\", \"5m\", \"1h30m\"";
        let value = self.eval(e, scope)?;
        let Some(text) = value.as_str() else {
            let mut d = Diagnostic::at(Code::TypeMismatch, e.span, format!("`{key}` must be a duration"))
                .with_label(e.span, format!("a {}", eval::type_name(&value)));
            d = match value.as_u64() {
                Some(n) => d.help(format!("write it with its unit, in quotes: `{key} = \"{n}s\"`")),
                None => d.help(help),
            };
            self.diags.push(d);
            return None;
        };
        let (min_text, max_text) = (seconds(min), seconds(max));
        let (label, help) = match parse_duration(text) {
            Err(why) => (why, help.to_string()),
            Ok(s) if s < min => (format!("shorter than {min_text}"), format!("`{key}` is at least {min_text}")),
            Ok(s) if s > max => (format!("longer than {max_text}"), format!("`{key}` is at most {max_text}")),
            Ok(s) => return Some(s),
        };
        let d = Diagnostic::at(Code::InvalidValue, e.span, format!("invalid `{key}`")).with_label(e.span, label);
        self.diags.push(d.help(help));
        None
    }

    /// The value of `e`, which must be a string; `what` names it in messages.
    fn string(&mut self, e: &Expr, scope: &Scope, what: &str) -> Option<String> {
        match self.eval(e, scope)? {
            Value::String(s) => Some(s),
            other => {
                self.diags.push(
                    Diagnostic::at(Code::TypeMismatch, e.span, format!("{what} must be a string"))
                        .with_label(e.span, format!("a {}", eval::type_name(&other))),
                );
                None
            }
        }
    }

    /// The value of `e`, which must be a list of strings, each with where it
    /// is written (the element's span when the list is written out).
    fn strings(&mut self, e: &Expr, scope: &Scope, key: &str) -> Option<Vec<(String, Span)>> {
        let value = self.eval(e, scope)?;
        let Value::Array(items) = value else {
            let help = match value.as_str() {
                Some(text) => format!("write a list, even of one: `{key} = [\"{text}\"]`"),
                None => format!("write `{key} = [\"...\", ...]`"),
            };
            self.diags.push(
                Diagnostic::at(Code::TypeMismatch, e.span, format!("`{key}` must be a list of strings"))
                    .with_label(e.span, format!("a {}", eval::type_name(&value)))
                    .help(help),
            );
            return None;
        };
        let spans: Vec<Span> = match &e.kind {
            ExprKind::List(xs) if xs.len() == items.len() => xs.iter().map(|x| x.span).collect(),
            _ => vec![e.span; items.len()],
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (item, span) in items.into_iter().zip(spans) {
            match item {
                Value::String(s) => out.push((s, span)),
                other => {
                    ok = false;
                    self.diags.push(
                        Diagnostic::at(Code::TypeMismatch, span, format!("`{key}` must be a list of strings"))
                            .with_label(span, format!("a {}", eval::type_name(&other))),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    /// Each of `items` through `check`: the values, or `None` if one fails
    /// (each failure reported at its item, with its label and help).
    fn all_ok(
        &mut self,
        items: Vec<(String, Span)>,
        check: impl Fn(&str) -> Result<String, (String, &'static str)>,
    ) -> Option<Vec<String>> {
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (item, span) in items {
            match check(&item) {
                Ok(v) => out.push(v),
                Err((label, help)) => {
                    ok = false;
                    self.diags.push(
                        Diagnostic::at(Code::InvalidValue, span, format!("invalid item `{item}`"))
                            .with_label(span, label)
                            .help(help),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    /// `e`'s value, true or false, or `default` when it is not written.
    fn bool_or(&mut self, e: Option<&Expr>, scope: &Scope, what: &str, default: bool) -> Option<bool> {
        match e {
            Some(e) => self.eval_bool(e, scope, what),
            None => Some(default),
        }
    }

    /// Reports `r`, a resolver that names no plugin, or one that is not a
    /// credentials plugin.
    pub(super) fn check_resolver(&mut self, r: &Ident) {
        match self.plugin(&r.name) {
            None => self.unknown_plugin(r, "credentials"),
            Some(p) if p.kind.is_some_and(|k| k.0 != PluginKind::Credentials) => self.diags.push(
                Diagnostic::at(
                    Code::InvalidReference,
                    r.span,
                    format!(
                        "`{}` is a {} plugin, not a credentials resolver",
                        r,
                        p.kind.map(|k| k.0.name()).unwrap_or("unknown")
                    ),
                )
                .with_label(r.span, "not a credentials plugin")
                .with_label(p.name.span, "declared here")
                .help("a resolver is a plugin with `kind = \"credentials\"`"),
            ),
            Some(_) => {}
        }
    }
}

const PATHS_HELP: &str = "a path is a directory or file inside the repository, like \"services/api/\"";

/// A path inside a checkout, as written; why it is not one otherwise.
fn relative_path(p: &str) -> Result<String, String> {
    if p.trim().is_empty() {
        Err("an empty path".into())
    } else if p.starts_with('/') || p.starts_with('\\') || p.get(1..2) == Some(":") {
        Err("an absolute path".into())
    } else if p.split(['/', '\\']).any(|part| part == "..") {
        Err("goes up with `..`".into())
    } else {
        Ok(p.to_string())
    }
}

/// `n` seconds, as a duration is written.
fn seconds(n: u64) -> String {
    match n {
        n if n % 3600 == 0 => format!("{}h", n / 3600),
        n if n % 60 == 0 => format!("{}m", n / 60),
        n => format!("{n}s"),
    }
}
