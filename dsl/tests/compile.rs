//! Compilation: graph shape, levels, walk orders, value and flow resolution.

use stackpipe_dsl::{load, ApprovalRule, Approver, Code, CompileOptions, FlowPolicy, OnFailure, PipelineGraph, PluginSource, Role};

const PLUGINS: &str = r#"
plugin t { kind = "provisioner" source = "builtin:test" }
"#;

fn compile_with(src: &str, opts: CompileOptions) -> PipelineGraph {
    let src = format!("{PLUGINS}{src}");
    match load("test.pipeline", &src, &opts) {
        Ok(g) => g,
        Err(d) => panic!("did not compile:\n{}", d.render_plain(100)),
    }
}

fn compile(src: &str) -> PipelineGraph {
    compile_with(src, CompileOptions { default_name: "test".into(), require_values: true, ..Default::default() })
}

fn errors(src: &str, opts: CompileOptions) -> Vec<stackpipe_dsl::Diagnostic> {
    let src = format!("{PLUGINS}{src}");
    match load("test.pipeline", &src, &opts) {
        Ok(_) => panic!("compiled, but should not have"),
        Err(d) => d.items,
    }
}

fn names(g: &PipelineGraph, nodes: &[petgraph::graph::NodeIndex]) -> Vec<String> {
    nodes.iter().map(|n| g.node(*n).name.clone()).collect()
}

/// a -> b -> d, a -> c -> d, e alone, f depends on d and e.
const DIAMOND: &str = r#"
resource d "t.step" { x = b.id  y = c.id }
resource b "t.step" { x = a.id }
resource c "t.step" { depends_on = [a] }
resource a "t.step" {}
resource e "t.step" {}
resource f "t.step" { x = "${d.id}-${e.id}" }
"#;

#[test]
fn levels_are_the_longest_distance_from_a_root() {
    let g = compile(DIAMOND);
    let level = |n: &str| g.node(g.find(n).unwrap()).level;
    assert_eq!(level("a"), 0);
    assert_eq!(level("e"), 0);
    assert_eq!(level("b"), 1);
    assert_eq!(level("c"), 1);
    assert_eq!(level("d"), 2);
    // f is one step from e but three from a: the longest path wins.
    assert_eq!(level("f"), 3);
    assert_eq!(g.level_count(), 4);
    let levels: Vec<Vec<String>> = g.levels().iter().map(|l| names(&g, l)).collect();
    assert_eq!(levels, vec![vec!["a", "e"], vec!["b", "c"], vec!["d"], vec!["f"]]);
}

#[test]
fn nodes_of_one_level_never_depend_on_each_other() {
    let g = compile(DIAMOND);
    for level in g.levels() {
        for &x in &level {
            for &y in &level {
                assert!(g.graph.find_edge(x, y).is_none());
            }
        }
    }
}

#[test]
fn deploy_order_puts_dependencies_first_and_undeploy_reverses_it() {
    let g = compile(DIAMOND);
    let order = g.deploy_order().to_vec();
    let pos = |n| order.iter().position(|x| *x == n).unwrap();
    for e in g.graph.edge_indices() {
        let (from, to) = g.graph.edge_endpoints(e).unwrap();
        assert!(pos(from) < pos(to), "{} must deploy before {}", g.node(from).name, g.node(to).name);
    }
    let undeploy = g.undeploy_order();
    let upos = |n| undeploy.iter().position(|x| *x == n).unwrap();
    for e in g.graph.edge_indices() {
        let (from, to) = g.graph.edge_endpoints(e).unwrap();
        assert!(upos(to) < upos(from), "{} must be destroyed before {}", g.node(to).name, g.node(from).name);
    }
    // Stable: ready nodes are taken in declaration order.
    assert_eq!(names(&g, &order), vec!["a", "b", "c", "d", "e", "f"]);
}

#[test]
fn edges_carry_their_wiring() {
    let g = compile(DIAMOND);
    let d = g.find("d").unwrap();
    let wiring: Vec<(String, String, String)> =
        g.wiring_into(d).iter().map(|w| (w.from.to_string(), w.output.to_string(), w.attribute.to_string())).collect();
    assert_eq!(wiring, vec![("b".into(), "id".into(), "x".into()), ("c".into(), "id".into(), "y".into())]);
    let c = g.find("c").unwrap();
    let a = g.find("a").unwrap();
    let edge = g.graph.find_edge(a, c).unwrap();
    assert!(g.graph[edge].explicit.is_some());
    assert!(g.graph[edge].wiring.is_empty());
    assert_eq!(names(&g, &g.dependents(a)), vec!["b", "c"]);
    let mut all = names(&g, &g.transitive_dependents(a));
    all.sort();
    assert_eq!(all, vec!["b", "c", "d", "f"]);
}

#[test]
fn a_failure_cancels_exactly_the_transitive_dependents() {
    let g = compile(DIAMOND);
    let mut got = names(&g, &g.transitive_dependents(g.find("b").unwrap()));
    got.sort();
    assert_eq!(got, vec!["d", "f"]);
    assert!(g.transitive_dependents(g.find("e").unwrap()).len() == 1);
}

#[test]
fn cycles_are_reported_with_their_path() {
    let d = errors(
        r#"
resource a "t.step" { x = c.id }
resource b "t.step" { x = a.id }
resource c "t.step" { x = b.id }
resource ok "t.step" {}
"#,
        CompileOptions::default(),
    );
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].code, Code::Cycle);
    assert_eq!(d[0].message, "dependency cycle: a -> b -> c -> a");
    assert_eq!(d[0].labels.len(), 3);
}

#[test]
fn self_and_depends_on_cycles() {
    let d = errors(r#"resource a "t.step" { depends_on = [a] }"#, CompileOptions::default());
    assert_eq!(d[0].message, "dependency cycle: a -> a");
    let d = errors(
        r#"resource a "t.step" { depends_on = [b] }
           resource b "t.step" { x = a.id }"#,
        CompileOptions::default(),
    );
    assert_eq!(d[0].message, "dependency cycle: a -> b -> a");
}

#[test]
fn two_separate_cycles_are_both_reported() {
    let d = errors(
        r#"resource a "t.step" { x = b.id }
           resource b "t.step" { x = a.id }
           resource c "t.step" { x = d.id }
           resource d "t.step" { x = c.id }"#,
        CompileOptions::default(),
    );
    let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(msgs, vec!["dependency cycle: a -> b -> a", "dependency cycle: c -> d -> c"]);
}

const ENVS: &str = r#"
var size: number = 10
var owner: string
var tags: map = { team = "core" }
environment prod { after = staging  vars { size = 100  owner = "ops" } approval = true }
environment dev { vars { owner = "me" } }
environment staging { after = dev  vars { owner = "qa" } }
resource r "t.step" { size = var.size }
"#;

#[test]
fn environments_run_in_after_order() {
    let g = compile(ENVS);
    let order: Vec<&str> = g.environments.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(order, vec!["dev", "staging", "prod"]);
    assert!(g.environment("prod").unwrap().approval);
    assert!(!g.environment("dev").unwrap().approval);
}

#[test]
fn vars_resolve_cli_over_environment_over_default() {
    let g = compile(ENVS);
    assert_eq!(g.environment("dev").unwrap().vars["size"], 10);
    assert_eq!(g.environment("prod").unwrap().vars["size"], 100);
    assert_eq!(g.environment("staging").unwrap().vars["owner"], "qa");
    assert_eq!(g.environment("dev").unwrap().vars["tags"]["team"], "core");
    let g = compile_with(
        ENVS,
        CompileOptions {
            vars: vec![("size".into(), "7".into()), ("tags".into(), "{ team = \"x\" }".into())],
            require_values: true,
            ..Default::default()
        },
    );
    for e in &g.environments {
        assert_eq!(e.vars["size"], 7, "--var wins in {}", e.name);
        assert_eq!(e.vars["tags"]["team"], "x");
    }
}

#[test]
fn env_option_selects_one_environment() {
    let g = compile_with(ENVS, CompileOptions { env: Some("staging".into()), require_values: true, ..Default::default() });
    assert_eq!(g.environments.len(), 1);
    assert_eq!(g.environments[0].name, "staging");
    assert_eq!(g.all_environments, vec!["dev", "staging", "prod"]);
    let d = errors(ENVS, CompileOptions { env: Some("stagin".into()), ..Default::default() });
    assert_eq!(d[0].code, Code::UnknownEnvironment);
    assert_eq!(d[0].help.as_deref(), Some("did you mean `staging`?"));
}

#[test]
fn a_var_without_a_value_is_reported_once_naming_the_environments() {
    let src = r#"
var owner: string
environment dev {}
environment prod { after = dev  vars { owner = "ops" } }
resource r "t.step" { o = var.owner }
"#;
    let d = errors(src, CompileOptions { require_values: true, ..Default::default() });
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].code, Code::MissingVar);
    assert_eq!(d[0].message, "var `owner` has no value in environment dev");
    // `graph` does not need values.
    compile_with(src, CompileOptions::default());
    // --var supplies it everywhere.
    compile_with(src, CompileOptions { vars: vec![("owner".into(), "x".into())], require_values: true, ..Default::default() });
}

#[test]
fn cli_var_values_are_parsed_by_type() {
    let src = r#"var n: number = 1
var b: bool = false
var l: list = []
resource r "t.step" {}"#;
    for (name, value, ok) in [
        ("n", "12.5", true),
        ("n", "abc", false),
        ("b", "true", true),
        ("b", "yes", false),
        ("l", r#"["a", "b"]"#, true),
        ("l", "a,b", false),
        ("nope", "1", false),
    ] {
        let opts = CompileOptions { vars: vec![(name.into(), value.into())], ..Default::default() };
        let result = load("t.pipeline", &format!("{PLUGINS}{src}"), &opts);
        assert_eq!(result.is_ok(), ok, "--var {name}={value}");
    }
}

#[test]
fn flow_resolves_resource_over_environment_over_pipeline_over_defaults() {
    let g = compile(
        r#"
var careful: bool = false
flow { refresh = false }
environment dev {}
environment prod { after = dev  flow { pause_before_apply = true }  vars { careful = true } }
resource plain "t.step" {}
resource fast "t.step" { flow { refresh = true  preview = false } }
resource risky "t.step" { flow { pause_before_apply = var.careful } }
"#,
    );
    let flow = |env: &str, node: &str| g.environment(env).unwrap().flow_of(g.find(node).unwrap());
    let p = |refresh, preview, pause| FlowPolicy { refresh, preview, pause_before_apply: pause };
    assert_eq!(flow("dev", "plain"), p(false, true, false));
    assert_eq!(flow("prod", "plain"), p(false, true, true));
    assert_eq!(flow("dev", "fast"), p(true, false, false));
    assert_eq!(flow("prod", "fast"), p(true, false, true));
    assert_eq!(flow("dev", "risky"), p(false, true, false));
    assert_eq!(flow("prod", "risky"), p(false, true, true));
    // What no resource declares (an orphan being destroyed) gets the environment's own.
    assert_eq!(g.environment("dev").unwrap().environment_flow, p(false, true, false));
    assert_eq!(g.environment("prod").unwrap().environment_flow, p(false, true, true));
}

#[test]
fn on_failure_resolves_environment_over_pipeline_over_stopping_the_dependents() {
    let g = compile(
        r#"
flow { on_failure = "stop-all" }
environment dev { flow { on_failure = "stop-dependents" } }
environment staging { after = dev }
environment prod { after = staging }
resource r "t.step" {}
"#,
    );
    let policy = |env: &str| g.environment(env).unwrap().on_failure;
    assert_eq!(policy("dev"), OnFailure::StopDependents);
    assert_eq!(policy("staging"), OnFailure::StopAll);
    assert_eq!(policy("prod"), OnFailure::StopAll);
    assert_eq!(compile(r#"resource r "t.step" {}"#).environments[0].on_failure, OnFailure::StopDependents);
    // Computed per environment, like any flow key.
    let g = compile(
        r#"
flow { on_failure = lookup({ dev = "stop-dependents", prod = "stop-all" }, env.name) }
environment dev {}
environment prod { after = dev }
resource r "t.step" {}
"#,
    );
    assert_eq!(g.environment("dev").unwrap().on_failure, OnFailure::StopDependents);
    assert_eq!(g.environment("prod").unwrap().on_failure, OnFailure::StopAll);
}

#[test]
fn a_bad_failure_policy_is_reported_with_the_ones_there_are() {
    let e = errors(
        r#"
environment dev { flow { on_failure = "stop_all" } }
environment prod { after = dev  flow { on_failure = true } }
resource r "t.step" { flow { on_failure = "stop-all" } }
"#,
        CompileOptions::default(),
    );
    let found: Vec<(Code, &str, Option<&str>)> = e.iter().map(|d| (d.code, d.message.as_str(), d.help.as_deref())).collect();
    assert_eq!(found.len(), 3, "{found:#?}");
    assert_eq!(found[0].0, Code::InvalidValue);
    assert_eq!(found[0].1, "`stop_all` is not a failure policy");
    assert_eq!(found[0].2, Some("did you mean `stop-all`?"));
    assert_eq!((found[1].0, found[1].1), (Code::TypeMismatch, "`on_failure` must be a string"));
    assert_eq!((found[2].0, found[2].1), (Code::UnknownKey, "`on_failure` cannot be set in the `flow` of resource `r`"));
}

#[test]
fn a_key_locked_above_cannot_be_set_below_and_the_error_points_at_both() {
    let src = r#"
flow {
  preview = true
  locked  = ["preview", on_failure]
}
environment dev { flow { preview = false  refresh = false } }
environment prod {
  after = dev
  flow {
    on_failure = "stop-all"
    locked     = ["refresh"]
  }
}
resource a "t.step" { flow { preview = false } }
resource b "t.step" { flow { refresh = false  pause_before_apply = true } }
resource c "t.step" { flow { pause_before_apply = true } }
"#;
    let full = format!("{PLUGINS}{src}");
    let at = |needle: &str, nth: usize| full.match_indices(needle).nth(nth).map(|(i, _)| i).expect(needle);
    let e = errors(src, CompileOptions::default());
    assert!(e.iter().all(|d| d.code == Code::LockedFlowKey), "{e:#?}");
    // Each points at the key set below (first) and at where it is locked.
    let found: Vec<(&str, Vec<usize>)> =
        e.iter().map(|d| (d.message.as_str(), d.labels.iter().map(|l| l.span.start).collect())).collect();
    assert_eq!(
        found,
        [
            ("environment `dev` sets `preview`, which the pipeline's `flow` locks", vec![at("preview", 2), at("\"preview\"", 0)]),
            ("environment `prod` sets `on_failure`, which the pipeline's `flow` locks", vec![at("on_failure", 1), at("on_failure", 0)]),
            ("resource `a` sets `preview`, which the pipeline's `flow` locks", vec![at("preview", 3), at("\"preview\"", 0)]),
            (
                "resource `b` sets `refresh`, which the `flow` of environment `prod` locks",
                vec![at("refresh", 2), at("\"refresh\"", 0)]
            ),
        ],
        "{e:#?}"
    );
    assert!(e[3].help.as_deref().unwrap().contains("a resource's `flow` applies in every environment"), "{:?}", e[3].help);
    // The value a lock fixes is the one every scope below gets.
    let g = compile(
        r#"
flow { preview = true  locked = ["preview"] }
environment dev { flow { refresh = false } }
resource a "t.step" { flow { pause_before_apply = true } }
"#,
    );
    let flow = g.environments[0].flow_of(g.find("a").unwrap());
    assert_eq!(flow, FlowPolicy { refresh: false, preview: true, pause_before_apply: true });
}

#[test]
fn locked_names_flow_keys_only() {
    let e = errors(
        r#"
flow { locked = ["preveiw", "locked", 3] }
environment dev { flow { locked = "refersh" } }
resource a "t.step" { flow { locked = ["preview"] } }
"#,
        CompileOptions::default(),
    );
    let found: Vec<(Code, &str, Option<&str>)> = e.iter().map(|d| (d.code, d.message.as_str(), d.help.as_deref())).collect();
    assert_eq!(
        found,
        [
            (Code::UnknownKey, "`locked` names `preveiw`, which is not a flow key", Some("did you mean `preview`?")),
            (
                Code::UnknownKey,
                "`locked` names `locked`, which is not a flow key",
                Some("the keys that can be locked are: refresh, preview, pause_before_apply, on_failure")
            ),
            (
                Code::InvalidValue,
                "`locked` takes the names of flow keys",
                Some("list the keys to lock, like `locked = [\"preview\", \"on_failure\"]`")
            ),
            (Code::UnknownKey, "`locked` names `refersh`, which is not a flow key", Some("did you mean `refresh`?")),
            (
                Code::UnknownKey,
                "`locked` cannot be set in the `flow` of resource `a`",
                Some(
                    "nothing is below a resource to lock keys for: lock them in the pipeline's `flow` (for every \
                     environment and resource) or an environment's (for its resources)"
                )
            ),
        ]
    );
}

#[test]
fn an_environment_names_who_may_approve_it_and_whether_a_run_s_starter_may() {
    let g = compile(
        r#"
environment dev {}
environment prod {
  after         = dev
  approvers     = ["role:admin", "user:bob"]
  self_approval = false
}
environment qa { after = dev  self_approval = true  approvers = [] }
resource a "t.step" {}
"#,
    );
    let rule = |e: &str| g.environment(e).unwrap().approval_rule.clone();
    // No gate in prod: the rule still governs its node gates, pauses and policies' approvals.
    assert_eq!(
        rule("prod"),
        ApprovalRule { approvers: vec![Approver::Role(Role::Admin), Approver::User("bob".into())], self_approval: false }
    );
    assert_eq!(rule("dev"), ApprovalRule::default());
    assert!(rule("dev").self_approval);
    assert_eq!(rule("qa"), ApprovalRule::default());
}

#[test]
fn approvers_are_checked_and_written_out() {
    let src = r#"
var who: list = ["user:bob"]
var own: bool = true
environment a { approvers = "role:admin" }
environment b { approvers = var.who  self_approval = var.own }
environment c {
  approvers     = ["role:admin", "role:admn", "group:ops", "admin", "bob", "user:",
                   "user:ann", "role:operator", "user:ann", 3, "user:${var.own}"]
  self_approval = "no"
}
resource r "t.step" {}
"#;
    let full = format!("{PLUGINS}{src}");
    let e = errors(src, CompileOptions::default());
    let found: Vec<(Code, &str, Option<&str>)> = e.iter().map(|d| (d.code, d.message.as_str(), d.help.as_deref())).collect();
    let forms = "an approver is \"role:viewer\", \"role:operator\", \"role:admin\" (that role or a higher one) or \"user:<name>\"";
    assert_eq!(
        found,
        [
            (
                Code::InvalidValue,
                "`approvers` of environment `a` must be a list of strings",
                Some("write a list, even of one: `approvers = [\"role:admin\"]`")
            ),
            (
                Code::InvalidValue,
                "`approvers` of environment `b` must be a list of strings",
                Some(
                    "write the approvers out, like `approvers = [\"role:admin\", \"user:bob\"]`: who may approve \
                     cannot be computed"
                )
            ),
            (
                Code::InvalidValue,
                "`self_approval` must be written out",
                Some("write `self_approval = false` (the person who started a run may not approve it) or `true` (the default)")
            ),
            (Code::InvalidValue, "`admn` is not a role", Some("did you mean `admin`?")),
            (Code::InvalidValue, "`group:` is not a kind of approver", Some(forms)),
            (Code::InvalidValue, "`admin` names no approver", Some(&*format!("did you mean `role:admin`? {forms}"))),
            (Code::InvalidValue, "`bob` names no approver", Some(&*format!("did you mean `user:bob`? {forms}"))),
            (
                Code::InvalidValue,
                "`user:` names no user",
                Some("write the user's name after `user:`, with no blanks: `user:bob`")
            ),
            (Code::DuplicateName, "`user:ann` is named twice in the `approvers` of environment `c`", Some("name each approver once")),
            (Code::InvalidValue, "`approvers` takes strings, written out", Some(&*format!("{forms}; who may approve cannot be computed"))),
            (Code::InvalidValue, "`approvers` takes strings, written out", Some(&*format!("{forms}; who may approve cannot be computed"))),
            (
                Code::TypeMismatch,
                "`self_approval` must be true or false",
                Some("write `self_approval = false` (the person who started a run may not approve it) or `true` (the default)")
            ),
        ],
        "{e:#?}"
    );
    // The duplicate points at itself, then at the first.
    let at = |needle: &str, nth: usize| full.match_indices(needle).nth(nth).map(|(i, _)| i).expect(needle);
    let spans: Vec<usize> = e[8].labels.iter().map(|l| l.span.start).collect();
    assert_eq!(spans, [at("\"user:ann\"", 1), at("\"user:ann\"", 0)]);
    assert_eq!(e[9].labels[0].text.as_deref(), Some("a number"));
    assert_eq!(e[10].labels[0].text.as_deref(), Some("an interpolated string"));
}

#[test]
fn no_environment_means_one_called_default() {
    let g = compile(r#"resource r "t.step" {}"#);
    assert_eq!(g.environments.len(), 1);
    assert_eq!(g.environments[0].name, "default");
    assert_eq!(g.environments[0].flow_of(g.find("r").unwrap()), FlowPolicy::default());
}

#[test]
fn plugins_resolve_per_environment() {
    let g = compile(
        r#"
var endpoint: string = "http://127.0.0.1:5055"
plugin keys { kind = "credentials" source = "builtin:env" allow { env = ["AWS_ACCESS_KEY_ID"] } }
plugin keys_prod { kind = "credentials" source = "./keys.wasm" }
plugin aws {
  kind = "provisioner"
  source = "builtin:aws"
  config { endpoint = var.endpoint region = "eu-${env.name}" }
  allow { http = [var.endpoint, "example.com:443"] fs = ["out"] }
  limits { memory_mb = 64 }
}
credentials aws { resolver = keys }
environment dev {}
environment prod { after = dev vars { endpoint = "https://aws.example" } credentials aws { resolver = keys_prod } }
resource r "aws.vpc" {}
"#,
    );
    let dev = g.environment("dev").unwrap();
    let aws = &dev.plugins["aws"];
    assert_eq!(aws.source, PluginSource::Builtin("aws".into()));
    assert_eq!(aws.config["region"], "eu-dev");
    assert_eq!(aws.grants.http, vec!["127.0.0.1:5055", "example.com:443"]);
    assert_eq!(aws.grants.fs, vec!["out"]);
    assert_eq!(aws.limits.memory_mb, 64);
    assert_eq!(aws.limits.timeout_s, 600);
    assert_eq!(dev.credentials["aws"].resolver, "keys");
    let prod = g.environment("prod").unwrap();
    assert_eq!(prod.plugins["aws"].grants.http[0], "aws.example:443");
    assert_eq!(prod.credentials["aws"].resolver, "keys_prod");
    assert_eq!(prod.plugins["keys_prod"].source, PluginSource::Path("./keys.wasm".into()));
}

#[test]
fn gates_and_outputs() {
    let g = compile(
        r#"
resource a "t.step" { gate = "after" }
resource b "t.step" { x = a.id }
output b_id = b.id
"#,
    );
    assert!(g.node(g.find("a").unwrap()).gate_after);
    assert!(!g.node(g.find("b").unwrap()).gate_after);
    assert_eq!(g.outputs[0].name.name, "b_id");
}

#[test]
fn the_examples_compile() {
    for (file, resources, envs, levels) in
        [("aws-env.pipeline", 12, 3, 5), ("local-files.pipeline", 3, 2, 3)]
    {
        let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
        let src = std::fs::read_to_string(&path).expect("example exists");
        let g = load(file, &src, &CompileOptions { require_values: true, ..Default::default() })
            .unwrap_or_else(|d| panic!("{}", d.render_plain(100)));
        assert_eq!((g.len(), g.environments.len(), g.level_count()), (resources, envs, levels), "{file}");
    }
}

#[test]
fn a_broken_environment_chain_does_not_hide_the_environments_own_mistakes() {
    let src = r#"
var n: number = 1
environment dev  { after = prod  approval = "no" }
environment prod { after = dev   vars { n = "big" } }
resource a "t.step" { x = b.id }
resource b "t.step" { x = a.id }
"#;
    let d = errors(src, CompileOptions { require_values: true, ..Default::default() });
    let codes: Vec<Code> = d.iter().map(|d| d.code).collect();
    assert!(codes.contains(&Code::EnvironmentCycle), "{d:#?}");
    assert!(codes.contains(&Code::Cycle), "{d:#?}");
    assert!(d.iter().any(|d| d.message == "`approval` must be true or false"), "{d:#?}");
    assert!(d.iter().any(|d| d.message.contains("environment `prod` sets it to a string")), "{d:#?}");
    assert_eq!(d.len(), 4, "{d:#?}");
}

#[test]
fn a_reference_mistake_is_not_reported_again_by_evaluation() {
    for value in ["var.nope", "jion(\",\", [])", "join([])", "var", "env.region", "b", "n"] {
        let src = format!("var n: number = 1\nresource b \"t.step\" {{}}\nresource a \"t.step\" {{ x = {value} }}\n");
        let d = errors(&src, CompileOptions { require_values: true, ..Default::default() });
        assert_eq!(d.len(), 1, "{value}: {d:#?}");
    }
}

#[test]
fn a_var_that_did_not_parse_is_not_reported_again_where_it_is_used() {
    // After a comment, too: the name is read from the item, not from the comment.
    for head in ["", "# c\n"] {
        let src = format!("{head}var key sensitive = \"x\"\nresource a \"t.step\" {{ k = var.key }}\noutput o = var.key\n");
        let d = errors(&src, CompileOptions { require_values: true, ..Default::default() });
        let messages: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(messages, ["expected a new line, found `=`"], "{src}");
    }
}

#[test]
fn a_missing_key_explained_by_another_mistake_is_not_reported() {
    for body in [r#"kind = "provisioner" soruce = "builtin:x""#, r#"kind = "provisioner" source { path = "x" }"#] {
        let d = errors(&format!("plugin p {{ {body} }}"), CompileOptions::default());
        assert_eq!(d.len(), 1, "{body}: {d:#?}");
        assert_ne!(d[0].code, Code::MissingKey, "{body}: {d:#?}");
    }
}

#[test]
fn every_bad_grant_is_reported() {
    let src = r#"plugin p { kind = "provisioner" source = "builtin:x" allow { http = ["ftp://a:1"] fs = [""] env = ["A B"] } limits { memory_mb = 0 } }"#;
    let d = errors(src, CompileOptions::default());
    assert_eq!(d.len(), 4, "{d:#?}");
}

/// A sensitive var, a plain one, and resources using them in every way an
/// expression can.
const SENSITIVE: &str = r#"
var db_password: string = "hunter2-abc" sensitive
var api_key = "dev-key" sensitive
var region: string = "us-east-1"

resource db "t.step" {
  direct      = var.db_password
  url         = "postgres://u:${var.db_password}@h"
  in_list     = ["a", var.api_key]
  in_map      = { k = { deeper = var.api_key } }
  by_index    = { "dev-key" = "x" }[var.api_key]
  as_argument = upper(var.db_password)
  heredoc     = <<EOT
password: ${var.db_password}
EOT
  nested { secret = var.api_key }
  plain       = var.region
  literal     = "text"
  from_output = other.id
}

resource other "t.step" {
  region = "${var.region}-${env.name}"
}

output conn           = db.url sensitive
output derived        = "key=${var.api_key}"
output derived_nested = [{ k = lookup({ a = var.db_password }, "a") }]
output plain          = other.region
output plain_var      = var.region
"#;

#[test]
fn sensitive_vars_are_listed() {
    let g = compile(SENSITIVE);
    let want: std::collections::BTreeSet<String> = ["api_key".to_string(), "db_password".to_string()].into();
    assert_eq!(g.sensitive_vars, want);
    // Their values are resolved as any other's: the runtime needs them.
    assert_eq!(g.environments[0].vars["db_password"], "hunter2-abc");
}

#[test]
fn attributes_that_use_a_sensitive_var_are_sensitive() {
    let g = compile(SENSITIVE);
    let db = g.node(g.find("db").unwrap());
    let want = ["as_argument", "by_index", "direct", "heredoc", "in_list", "in_map", "nested", "url"];
    assert_eq!(db.sensitive_attributes, want, "sorted, and only those");
    assert!(g.node(g.find("other").unwrap()).sensitive_attributes.is_empty());
}

#[test]
fn outputs_marked_or_derived_are_sensitive() {
    let g = compile(SENSITIVE);
    let sensitive: Vec<(&str, bool)> =
        g.outputs.iter().map(|o| (o.name.name.as_str(), g.output_is_sensitive(o))).collect();
    assert_eq!(
        sensitive,
        [("conn", true), ("derived", true), ("derived_nested", true), ("plain", false), ("plain_var", false)]
    );
    // Marked, or derived: only the mark is in the declaration.
    assert!(g.outputs[0].sensitive.is_some() && g.outputs[1].sensitive.is_none());
    // What an output takes from resources, for the runtime to follow.
    assert_eq!(stackpipe_dsl::resource_references(&g.outputs[0].value), [("db".to_string(), "url".to_string())]);
}

#[test]
fn without_sensitive_vars_nothing_is_sensitive() {
    let g = compile(&SENSITIVE.replace(" sensitive\n", "\n"));
    assert!(g.sensitive_vars.is_empty());
    assert!(g.graph.node_weights().all(|n| n.sensitive_attributes.is_empty()));
    let marked: Vec<bool> = g.outputs.iter().map(|o| g.output_is_sensitive(o)).collect();
    assert_eq!(marked, [false; 5]);
}

#[test]
fn a_sensitive_value_given_on_the_command_line_is_never_shown() {
    let src = "var pin: number sensitive\nvar plain: number\n";
    let opts = |pin: &str, plain: &str| CompileOptions {
        vars: vec![("pin".into(), pin.into()), ("plain".into(), plain.into())],
        ..Default::default()
    };
    let d = errors(src, opts("hunter2", "oops"));
    let messages: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(messages, ["--var pin=(sensitive): not a number", "--var plain=oops: not a number"]);
}

#[test]
fn a_sensitive_value_is_masked_in_evaluation_errors() {
    let src = r#"
var secret: string sensitive
var plain: string
resource r "t.step" {
  a = tonumber(var.secret)
  b = tonumber(var.plain)
  c = cidrsubnet(split(":", var.secret)[1], 8, 1)
}
output o = { k = 1 }[var.secret]
"#;
    let opts = CompileOptions {
        vars: vec![("secret".into(), "hunter2:tok-xyz".into()), ("plain".into(), "visible".into())],
        ..Default::default()
    };
    let d = errors(src, opts);
    let all: String = d
        .iter()
        .flat_map(|d| {
            let labels = d.labels.iter().filter_map(|l| l.text.clone());
            std::iter::once(d.message.clone()).chain(labels).chain(d.help.clone())
        })
        .collect::<Vec<_>>()
        .join("\n");
    for leak in ["hunter2", "tok-xyz"] {
        assert!(!all.contains(leak), "`{leak}` shown in:\n{all}");
    }
    assert!(all.contains("tonumber(): `(sensitive)` is not a number"), "{all}");
    assert!(all.contains("tonumber(): `visible` is not a number"), "{all}");
    assert!(all.contains("no key `(sensitive)` in this map"), "{all}");
    assert_eq!(d.len(), 4, "{all}");
}
