//! `service` blocks: parsing (both parsers), their checks, what they compile
//! to, `service.NAME.artifact.*` references, and `previews`.

use std::collections::BTreeMap;

use stackpipe_dsl::eval::{self, EvalError, Scope};
use stackpipe_dsl::parser::recognizer_agrees_with_pest;
use stackpipe_dsl::{load, ArtifactRef, Code, CompileOptions, Diagnostic, PipelineGraph, PullRequests};

const PLUGINS: &str = r#"
plugin t { kind = "provisioner" source = "builtin:test" }
plugin gh_secret { kind = "credentials" source = "builtin:env" config { prefix = "GH_" } }
plugin gh_token { kind = "credentials" source = "builtin:env" }
"#;

/// Every key of a service, written out.
const FULL: &str = r#"
var api_repo: string = "https://git.example.com/acme/api.git"
service "api" {
  repo          = var.api_repo   # from a var
  branches      = ["main", "release/*"]
  tags          = ["v*", "release-*"]
  pull_requests = "deploy"
  paths         = ["services/api/"]
  poll          = "1h30m"
  enabled       = true
  deploys       = false
  build {
    command  = ["sh", "build.sh", "${pipeline.name}"]
    artifact = "out/api.tar.gz"
    timeout  = "5m"
    env      = { GOFLAGS = "-mod=vendor" }
  }
  webhook {
    resolver = gh_secret
    config { fields = { secret = "API_WEBHOOK_SECRET" } }
  }
  commit_status {
    api   = "https://api.github.com/repos/acme/api/"
    token {
      resolver = gh_token
      field    = "pat"
    }
  }
}
"#;

fn opts() -> CompileOptions {
    CompileOptions { default_name: "test".into(), require_values: true, ..Default::default() }
}

fn compile_with(src: &str, opts: CompileOptions) -> PipelineGraph {
    let src = format!("{PLUGINS}{src}");
    match load("test.pipeline", &src, &opts) {
        Ok(g) => g,
        Err(d) => panic!("did not compile:\n{}", d.render_plain(100)),
    }
}

fn errors_with(src: &str, opts: CompileOptions) -> Vec<Diagnostic> {
    let src = format!("{PLUGINS}{src}");
    match load("test.pipeline", &src, &opts) {
        Ok(_) => panic!("compiled, but should not have:\n{src}"),
        Err(d) => d.items,
    }
}

fn errors(src: &str) -> Vec<Diagnostic> {
    errors_with(src, opts())
}

/// The one diagnostic `src` has; its message and help must hold `message` and `help`.
fn one_error(src: &str, code: Code, message: &str, help: &str) {
    let d = errors(src);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].code, code, "{d:#?}");
    assert!(d[0].message.contains(message), "{d:#?}");
    assert!(d[0].help.as_deref().unwrap_or("").contains(help), "{d:#?}");
    assert!(!d[0].labels.is_empty(), "no span: {d:#?}");
}

fn artifact(tag: &str) -> ArtifactRef {
    ArtifactRef {
        path: "/var/lib/stackpipe/artifacts/api/abc.tar.gz".into(),
        digest: "sha256:00ff".into(),
        tag: tag.into(),
        commit: "abc123".into(),
        branch: "main".into(),
    }
}

#[test]
fn both_parsers_read_a_service_the_same() {
    let src = format!("{PLUGINS}{FULL}\nservice \"b\"{{repo=\"x\" build{{command=[\"a\"]artifact=\"o\"}}}}\nservice/*c*/\"c\" {{}}");
    assert_eq!(recognizer_agrees_with_pest(&src), Ok(true));
    for wrong in ["service api { }", "service \"api\"", "service { }", "services \"api\" { }", "service \"api\" = 1"] {
        assert_eq!(recognizer_agrees_with_pest(wrong), Ok(false), "{wrong}");
    }
}

#[test]
fn a_service_compiles_with_every_key() {
    let g = compile_with(FULL, opts());
    let [s] = g.services.as_slice() else { panic!("{:?}", g.services) };
    assert_eq!(s.name, "api");
    assert_eq!(s.repo, "https://git.example.com/acme/api.git");
    assert_eq!(s.branches, ["main", "release/*"]);
    assert_eq!(s.tags, ["v*", "release-*"]);
    assert_eq!(s.pull_requests, PullRequests::Deploy);
    assert_eq!(s.paths, ["services/api/"]);
    assert_eq!(s.poll_s, Some(5400));
    assert!(s.enabled);
    assert!(!s.deploys);
    assert_eq!(s.build.command, ["sh", "build.sh", "test"]);
    assert_eq!(s.build.artifact, "out/api.tar.gz");
    assert_eq!(s.build.timeout_s, 300);
    assert_eq!(s.build.env.get("GOFLAGS").map(String::as_str), Some("-mod=vendor"));
    let webhook = s.webhook.as_ref().expect("webhook");
    assert_eq!(webhook.resolver.name, "gh_secret");
    assert_eq!(webhook.resolver.config, serde_json::json!({"prefix": "GH_"}));
    assert_eq!(webhook.field, "secret");
    assert_eq!(webhook.config, serde_json::json!({"fields": {"secret": "API_WEBHOOK_SECRET"}}));
    let status = s.commit_status.as_ref().expect("commit_status");
    assert_eq!(status.api, "https://api.github.com/repos/acme/api");
    assert_eq!(status.context, "stackpipe/api");
    assert_eq!(status.token.resolver.name, "gh_token");
    assert_eq!(status.token.field, "pat");
    // A `--var` reaches the service.
    let mut o = opts();
    o.vars = vec![("api_repo".into(), "/srv/git/api".into())];
    assert_eq!(compile_with(FULL, o).services[0].repo, "/srv/git/api");
}

#[test]
fn a_service_without_resources_only_builds_and_defaults_hold() {
    let g = compile_with("service \"web\" {\n repo = \"file:///srv/web\"\n build {\n command = [\"make\"]\n artifact = \"dist\"\n }\n}\n", opts());
    assert_eq!(g.len(), 0);
    let s = &g.services[0];
    assert!(s.branches.is_empty() && s.tags.is_empty() && s.paths.is_empty());
    assert_eq!(s.pull_requests, PullRequests::Off);
    assert_eq!(s.poll_s, None);
    assert!(s.enabled && s.deploys);
    assert_eq!(s.build.timeout_s, stackpipe_dsl::service::DEFAULT_BUILD_TIMEOUT_S);
    assert!(s.build.env.is_empty());
    assert!(s.webhook.is_none() && s.commit_status.is_none());
    assert_eq!(g.all_environments, ["default"]);
}

const MINIMAL_BUILD: &str = "build {\n command = [\"make\"]\n artifact = \"dist\"\n }";

fn service(keys: &str) -> String {
    format!("service \"api\" {{\n repo = \"https://x/api.git\"\n {keys}\n {MINIMAL_BUILD}\n}}\n")
}

#[test]
fn bad_values_are_reported_with_help() {
    one_error(&service("poll = \"5 minutes\""), Code::InvalidValue, "invalid `poll`", "\"1h30m\"");
    one_error(&service("poll = \"2s\""), Code::InvalidValue, "invalid `poll`", "at least 5s");
    one_error(&service("poll = 30"), Code::TypeMismatch, "`poll` must be a duration", "`poll = \"30s\"`");
    one_error(&service("pull_requests = \"deplyo\""), Code::InvalidValue, "`deplyo` is not a value", "did you mean `deploy`?");
    one_error(&service("pull_requests = \"yes\""), Code::InvalidValue, "not a value of `pull_requests`", "\"off\"");
    one_error(&service("branches = \"main\""), Code::TypeMismatch, "`branches` must be a list", "[\"main\"]");
    one_error(&service("tags = [\"\"]"), Code::InvalidValue, "invalid item", "pattern");
    one_error(&service("paths = [\"../other\"]"), Code::InvalidValue, "invalid item `../other`", "inside the repository");
    one_error(&service("enabled = \"no\""), Code::TypeMismatch, "`enabled` must be true or false", "enabled = false");
    one_error(&service("deploy = false"), Code::UnknownKey, "unknown key `deploy`", "did you mean `deploys`?");
    let build = |keys: &str| format!("service \"api\" {{\n repo = \"r\"\n build {{\n {keys}\n }}\n}}\n");
    one_error(&build("command = []\n artifact = \"o\""), Code::InvalidValue, "`command` is empty", "build.sh");
    one_error(&build("command = [\"make\"]\n artifact = \"/tmp/o\""), Code::InvalidValue, "invalid `artifact`", "inside the checkout");
    one_error(&build("command = [\"make\"]\n artifact = \"a/../../o\""), Code::InvalidValue, "invalid `artifact`", "inside");
    one_error(&build("command = [\"make\"]\n artifact = \"o\"\n timeout = \"25h\""), Code::InvalidValue, "invalid `timeout`", "at most 24h");
    one_error(&build("command = [\"make\"]\n artifact = \"o\"\n env = { PATH = \"/x\" }"), Code::InvalidValue, "`PATH` cannot be given", "");
    one_error(&build("command = [\"make\"]\n artifact = \"o\"\n env = { STACKPIPE_X = \"1\" }"), Code::InvalidValue, "cannot be given", "");
    one_error(&build("command = [\"make\"]\n artifact = \"o\"\n env = { N = 1 }"), Code::TypeMismatch, "`N` must be a string", "quotes");
    one_error(&build("command = [\"make\"]"), Code::MissingKey, "has no `artifact`", "artifact =");
    one_error(&build("comand = [\"make\"]\n artifact = \"o\""), Code::UnknownKey, "unknown key `comand`", "did you mean `command`?");
    one_error("service \"api\" {\n repo = \"\"\n build {\n command = [\"make\"]\n artifact = \"o\"\n }\n}\n", Code::InvalidValue, "invalid `repo`", "");
    one_error("service \"api\" {\n repo = \"ftp://x/y\"\n build {\n command = [\"make\"]\n artifact = \"o\"\n }\n}\n", Code::InvalidValue, "invalid `repo`", "local path");
    one_error("service \"api\" {\n repo = \"r\"\n}\n", Code::MissingKey, "has no `build` block", "command");
    one_error(&format!("service \"api\" {{\n {MINIMAL_BUILD}\n}}\n"), Code::MissingKey, "has no `repo`", "repo =");
    one_error(&format!("service \"my api\" {{\n repo = \"r\"\n {MINIMAL_BUILD}\n}}\n"), Code::InvalidValue, "cannot name a service", "");
}

#[test]
fn names_resolvers_and_vars_are_checked() {
    let twice = format!("{}{}", service(""), service(""));
    one_error(&twice, Code::DuplicateName, "service `api` is declared twice", "unique");
    one_error(&service("webhook {\n resolver = gh_secert\n }"), Code::UnknownReference, "unknown plugin `gh_secert`", "did you mean `gh_secret`?");
    one_error(&service("webhook {\n resolver = t\n }"), Code::InvalidReference, "not a credentials resolver", "kind = \"credentials\"");
    one_error(&service("webhook {\n field = \"x\"\n }"), Code::MissingKey, "has no `resolver`", "");
    one_error(&service("commit_status {\n api = \"api.github.com\"\n token { resolver = gh_token }\n }"), Code::InvalidValue, "invalid `api`", "https://");
    one_error(&service("commit_status {\n api = \"https://a/b\"\n }"), Code::MissingKey, "has no `token` block", "");
    one_error("resource service \"t.step\" {}\n", Code::ReservedName, "`service` cannot name a resource", "`service`");
    // A var a service uses needs a value outside any environment.
    let src = format!("var repo: string\nenvironment dev {{ vars {{ repo = \"r\" }} }}\n{}", service("").replace("\"https://x/api.git\"", "var.repo"));
    one_error(&src, Code::MissingVar, "var `repo` has no value for service `api`", "--var repo=");
    // `graph` does without values.
    let g = load("t.pipeline", &format!("{PLUGINS}{src}"), &CompileOptions::default()).expect("compiles without values");
    assert!(g.services.is_empty());
}

const DEPLOYS_API: &str = r#"
service "api" {
  repo = "https://x/api.git"
  build {
    command  = ["make"]
    artifact = "dist"
  }
}
resource app "t.step" {
  image  = service.api.artifact.path
  label  = "api-${service.api.artifact.tag}"
  all    = service.api.artifact
}
output version = service.api.artifact.commit
"#;

#[test]
fn artifact_references_evaluate_to_what_the_build_made() {
    // Without artifacts (a plan outside a service pipeline): it compiles, known later.
    let g = compile_with(DEPLOYS_API, opts());
    assert!(g.artifacts.is_empty());
    let app = g.node(g.find("app").unwrap());
    assert_eq!(g.graph.edge_count(), 0, "an artifact is no dependency");
    let vars = serde_json::Map::new();
    let scope = |artifacts| Scope { pipeline: "test", environment: "default", vars: &vars, outputs: &eval::no_outputs, artifacts };
    let image = &app.attributes.iter().find(|a| a.key.name == "image").unwrap().value;
    assert_eq!(eval::eval(image, &scope(&g.artifacts)), Err(EvalError::Unknown { resource: "service.api".into() }));

    // With them: the graph carries them, and references evaluate.
    let mut o = opts();
    o.artifacts = BTreeMap::from([("api".to_string(), artifact("v1.2.0"))]);
    let g = compile_with(DEPLOYS_API, o);
    assert_eq!(g.artifacts.get("api"), Some(&artifact("v1.2.0")));
    let app = g.node(g.find("app").unwrap());
    let value = |key: &str| eval::eval(&app.attributes.iter().find(|a| a.key.name == key).unwrap().value, &scope(&g.artifacts));
    assert_eq!(value("image"), Ok(serde_json::json!("/var/lib/stackpipe/artifacts/api/abc.tar.gz")));
    assert_eq!(value("label"), Ok(serde_json::json!("api-v1.2.0")));
    assert_eq!(value("all"), Ok(artifact("v1.2.0").to_value()));
}

#[test]
fn artifact_references_are_checked() {
    let with = |attr: &str| format!("{}resource app \"t.step\" {{ x = {attr} }}\n", service(""));
    one_error(&with("service.apu.artifact.path"), Code::UnknownReference, "unknown service `apu`", "did you mean `api`?");
    one_error(&with("service.api.path"), Code::InvalidReference, "`service.api` has one attribute, `artifact`", "path, digest");
    one_error(&with("service.api"), Code::InvalidReference, "has one attribute, `artifact`", "");
    one_error(&with("service.api.artifact.digets"), Code::InvalidReference, "no attribute `digets`", "did you mean `digest`?");
    one_error(&with("service"), Code::InvalidReference, "`service` needs a service's name", "service.api.artifact.path");
    one_error("resource app \"t.step\" { x = service.api.artifact.path }\n", Code::UnknownReference, "unknown service `api`", "declare it");
    // Known only in a deploy: not where values are needed before one.
    let in_plugin = format!("{}plugin p {{ kind = \"provisioner\" source = \"builtin:test\" config {{ x = service.api.artifact.path }} }}\n", service(""));
    one_error(&in_plugin, Code::InvalidReference, "cannot refer to a build's artifact", "resource attributes and outputs");
    let in_service = service("paths = [service.api.artifact.path]");
    one_error(&in_service, Code::InvalidReference, "cannot refer to a build's artifact", "");
    // An artifact for a service the file does not declare.
    let mut o = opts();
    o.artifacts = BTreeMap::from([("apj".to_string(), artifact("t"))]);
    let d = errors_with(&service(""), o);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].message, "an artifact is given for service `apj`, which the file does not declare");
    assert_eq!(d[0].help.as_deref(), Some("did you mean `api`?"));
}

const PREVIEWS: &str = r#"
environment dev {}
environment pr_a { previews = true  after = dev }
environment staging { after = dev  previews = false }
environment pr_b { previews = true  after = staging }
resource r "t.step" {}
"#;

#[test]
fn previews_mark_environments_and_select_them() {
    let g = compile_with(PREVIEWS, opts());
    let marked: Vec<(&str, bool)> = g.environments.iter().map(|e| (e.name.as_str(), e.previews)).collect();
    assert_eq!(marked, [("dev", false), ("pr_a", true), ("staging", false), ("pr_b", true)]);
    let mut o = opts();
    o.previews_only = true;
    let g = compile_with(PREVIEWS, o.clone());
    let names: Vec<&str> = g.environments.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["pr_a", "pr_b"]);
    assert_eq!(g.all_environments, ["dev", "pr_a", "staging", "pr_b"]);
    // None marked.
    let d = errors_with("environment dev {}\n", o.clone());
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!((d[0].code, d[0].message.as_str()), (Code::UnknownEnvironment, "no environment has `previews = true`"));
    // `--env` with previews: it must be marked.
    o.env = Some("dev".into());
    let d = errors_with(PREVIEWS, o);
    assert_eq!(d[0].message, "environment `dev` does not take previews");
    // Written out, true or false.
    one_error("environment dev { previews = \"yes\" }\n", Code::TypeMismatch, "`previews` must be true or false", "previews = true");
    one_error("var p = true\nenvironment dev { previews = var.p }\n", Code::InvalidValue, "`previews` must be written out", "");
}

/// The example of the language reference's Services section (kept as a seed
/// of the parser's fuzz corpus) compiles, and both parsers agree on it.
#[test]
fn the_documented_example_compiles() {
    let src = include_str!("../../fuzz/corpus/parser/service-01.pipeline");
    assert_eq!(recognizer_agrees_with_pest(src), Ok(true));
    let g = match load("service.pipeline", src, &opts()) {
        Ok(g) => g,
        Err(d) => panic!("{}", d.render_plain(100)),
    };
    assert_eq!(g.services[0].commit_status.as_ref().map(|c| c.token.field.as_str()), Some("token"));
    assert!(g.environments[0].previews);
}

#[test]
fn the_resources_that_use_a_build_are_found_and_a_service_without_any_only_builds() {
    let src = r#"
service "api" {
  repo = "/srv/api"
  build {
    command  = ["make"]
    artifact = "out"
  }
}
service "docs" {
  repo = "/srv/docs"
  build {
    command  = ["make"]
    artifact = "site"
  }
}
resource plain "t.step" {}
resource app "t.step" { version = "${service.api.artifact.tag}-x" }
resource job "t.step" { image = { digest = service.api.artifact.digest } }
"#;
    let g = compile_with(src, opts());
    assert_eq!(stackpipe_dsl::service::resources_using(&g, "api"), vec!["app", "job"]);
    assert!(stackpipe_dsl::service::resources_using(&g, "docs").is_empty());
}
