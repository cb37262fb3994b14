//! The plugin host against real components: the builtins from `plugins/dist`
//! and the deliberately hostile ones from `plugins/hostile/dist`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stackpipe_dsl::ast::PluginKind;
use stackpipe_dsl::{Grants, Limits, PluginSource};
use stackpipe_runtime::plugin::{
    Applied, ArtifactCache, CacheOutcome, CallContext, Change, Credential, LoadedPlugin, PluginDiagnostic, PluginError,
    PluginHost, PluginLoad, PolicyVerdict, ResourcePlan, Sandbox,
};

/// One provisioner call in a session of its own, as these tests make them
/// (a run opens one session for all the calls of a stack job).
trait OneShot {
    async fn validate(&self, host: &PluginHost, ctx: &CallContext, kind: &str, desired: &Value) -> Result<Vec<PluginDiagnostic>, PluginError>;
    async fn read(
        &self,
        host: &PluginHost,
        ctx: &CallContext,
        kind: &str,
        state: Option<&Value>,
        desired: &Value,
        cred: Option<&Credential>,
    ) -> Result<Option<Applied>, PluginError>;
    async fn plan(
        &self,
        host: &PluginHost,
        ctx: &CallContext,
        kind: &str,
        prior: Option<&Value>,
        desired: &Value,
        cred: Option<&Credential>,
    ) -> Result<ResourcePlan, PluginError>;
    async fn apply(
        &self,
        host: &PluginHost,
        ctx: &CallContext,
        kind: &str,
        prior: Option<&Value>,
        desired: &Value,
        cred: Option<&Credential>,
    ) -> Result<Applied, PluginError>;
    async fn destroy(&self, host: &PluginHost, ctx: &CallContext, kind: &str, state: &Value, cred: Option<&Credential>) -> Result<(), PluginError>;
}

impl OneShot for LoadedPlugin {
    async fn validate(&self, host: &PluginHost, ctx: &CallContext, kind: &str, desired: &Value) -> Result<Vec<PluginDiagnostic>, PluginError> {
        self.session(host).await?.validate(ctx, kind, desired).await
    }

    async fn read(
        &self,
        host: &PluginHost,
        ctx: &CallContext,
        kind: &str,
        state: Option<&Value>,
        desired: &Value,
        cred: Option<&Credential>,
    ) -> Result<Option<Applied>, PluginError> {
        self.session(host).await?.read(ctx, kind, state, desired, cred).await
    }

    async fn plan(
        &self,
        host: &PluginHost,
        ctx: &CallContext,
        kind: &str,
        prior: Option<&Value>,
        desired: &Value,
        cred: Option<&Credential>,
    ) -> Result<ResourcePlan, PluginError> {
        self.session(host).await?.plan(ctx, kind, prior, desired, cred).await
    }

    async fn apply(
        &self,
        host: &PluginHost,
        ctx: &CallContext,
        kind: &str,
        prior: Option<&Value>,
        desired: &Value,
        cred: Option<&Credential>,
    ) -> Result<Applied, PluginError> {
        self.session(host).await?.apply(ctx, kind, prior, desired, cred).await
    }

    async fn destroy(&self, host: &PluginHost, ctx: &CallContext, kind: &str, state: &Value, cred: Option<&Credential>) -> Result<(), PluginError> {
        self.session(host).await?.destroy(ctx, kind, state, cred).await
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn host() -> PluginHost {
    PluginHost::new(ArtifactCache::in_dir(repo().join("target/test-component-cache"))).expect("a plugin host")
}

fn ctx(resource: &str) -> CallContext {
    CallContext { pipeline: "p".into(), environment: "dev".into(), resource: resource.into(), run_id: "run-1".into(), ..Default::default() }
}

fn load(host: &PluginHost, name: &str, kind: PluginKind, bytes: &[u8], sandbox: Sandbox, limits: Limits) -> Result<LoadedPlugin, PluginError> {
    load_with(host, name, kind, bytes, sandbox, limits, &json!({}))
}

fn load_with(
    host: &PluginHost,
    name: &str,
    kind: PluginKind,
    bytes: &[u8],
    sandbox: Sandbox,
    limits: Limits,
    config: &Value,
) -> Result<LoadedPlugin, PluginError> {
    host.load(PluginLoad { name, kind, source_desc: name, bytes, sandbox, limits, config })
}

fn builtin(host: &PluginHost, name: &str, kind: PluginKind) -> LoadedPlugin {
    let bytes = PluginHost::read_source(name, &PluginSource::Builtin(name.into()), Path::new(".")).expect("a builtin");
    load(host, name, kind, &bytes, Sandbox::none(), Limits { memory_mb: 64, timeout_s: 5 }).expect("the builtin loads")
}

fn hostile(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("plugins/hostile/dist").join(format!("{name}.wasm"))).expect("a hostile fixture")
}

fn load_hostile(host: &PluginHost, name: &str, limits: Limits, sandbox: Sandbox) -> LoadedPlugin {
    load(host, name, PluginKind::Provisioner, &hostile(name), sandbox, limits).expect("the hostile component loads")
}

const TIGHT: Limits = Limits { memory_mb: 32, timeout_s: 1 };

/// Calls the hostile plugin's apply and checks that it failed fast and the host still works.
async fn hostile_apply(host: &PluginHost, p: &LoadedPlugin) -> PluginError {
    let started = Instant::now();
    let err = p.apply(host, &ctx("bad"), "step", None, &json!({}), None).await.expect_err("the hostile call fails");
    let limit = Duration::from_secs(p.limits().timeout_s + 1);
    assert!(started.elapsed() <= limit, "{} took {:?}, more than timeout_s + 1 s", p.name(), started.elapsed());
    // The host carries on.
    let good = builtin(host, "test", PluginKind::Provisioner);
    good.apply(host, &ctx("after"), "step", None, &json!({}), None).await.expect("a good call after a bad one");
    err
}

#[tokio::test]
async fn test_provisioner_apply_outputs_id_outputs_and_inputs() {
    let host = host();
    let p = builtin(&host, "test", PluginKind::Provisioner);
    let types = p.resource_types(&host).await.unwrap();
    assert!(types.iter().any(|t| t.name == "step"), "{types:?}");
    let desired = json!({ "outputs": { "url": "http://x" }, "size": 3 });
    let a = p.apply(&host, &ctx("web"), "step", None, &desired, None).await.unwrap();
    assert_eq!(a.outputs["url"], "http://x");
    assert_eq!(a.outputs["inputs"]["size"], 3);
    let id = a.outputs["id"].as_str().expect("an id").to_string();
    let b = p.apply(&host, &ctx("web"), "step", None, &desired, None).await.unwrap();
    assert_ne!(b.outputs["id"].as_str(), Some(id.as_str()), "ids are unique per instance");
    let plan = p.plan(&host, &ctx("web"), "step", Some(&a.state), &desired, None).await.unwrap();
    assert_eq!(plan.change, Change::NoOp);
    let plan = p.plan(&host, &ctx("web"), "step", None, &desired, None).await.unwrap();
    assert_eq!(plan.change, Change::Create);
}

#[tokio::test]
async fn test_provisioner_injected_failure_names_the_plugin_and_op() {
    let host = host();
    let p = builtin(&host, "test", PluginKind::Provisioner);
    let err = p.apply(&host, &ctx("web"), "step", None, &json!({ "fail": true }), None).await.unwrap_err();
    assert_eq!(err.to_string(), "plugin `test` apply: injected failure");
    let err = p.plan(&host, &ctx("web"), "step", None, &json!({ "fail": true, "fail_on": "plan" }), None).await.unwrap_err();
    assert_eq!(err.to_string(), "plugin `test` plan: injected failure");
}

#[test]
fn test_provisioner_delay_does_not_block_a_thread() {
    // One worker thread: if a 300 ms delay blocked it, eight would take 2.4 s.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let host = std::sync::Arc::new(host());
        let p = std::sync::Arc::new(builtin(&host, "test", PluginKind::Provisioner));
        let started = Instant::now();
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let (host, p) = (host.clone(), p.clone());
                tokio::spawn(async move {
                    p.apply(&host, &ctx(&format!("r{i}")), "step", None, &json!({ "delay_ms": 300 }), None).await
                })
            })
            .collect();
        for c in calls {
            c.await.unwrap().unwrap();
        }
        assert!(started.elapsed() < Duration::from_millis(1500), "took {:?}", started.elapsed());
    });
}

#[tokio::test]
async fn test_provisioner_ledger_records_apply_and_destroy() {
    let host = host();
    let dir = tempfile::tempdir().unwrap();
    let grants = Grants { fs: vec!["out".into()], ..Default::default() };
    let sandbox = Sandbox::from_grants(&grants, dir.path()).unwrap();
    let bytes = PluginHost::read_source("test", &PluginSource::Builtin("test".into()), dir.path()).unwrap();
    let config = json!({ "ledger": "out/ledger.txt" });
    let p = load_with(&host, "test", PluginKind::Provisioner, &bytes, sandbox, Limits::default(), &config).unwrap();
    let a = p.apply(&host, &ctx("web"), "step", None, &json!({}), None).await.unwrap();
    // What apply created can be found without its state (an interrupted run).
    let found = p.read(&host, &ctx("web"), "step", None, &json!({}), None).await.unwrap().expect("found");
    assert_eq!(found.state, a.state);
    assert_eq!(found.outputs, a.outputs);
    p.destroy(&host, &ctx("web"), "step", &a.state, None).await.unwrap();
    assert_eq!(p.read(&host, &ctx("web"), "step", None, &json!({}), None).await.unwrap(), None);
    let ledger = std::fs::read_to_string(dir.path().join("out/ledger.txt")).unwrap();
    assert_eq!(ledger, "apply p/dev/web\ndestroy p/dev/web\n");
}

#[tokio::test]
async fn local_provisioner_writes_only_inside_its_grant_and_sees_drift() {
    let host = host();
    let dir = tempfile::tempdir().unwrap();
    let grants = Grants { fs: vec!["out".into()], ..Default::default() };
    let sandbox = Sandbox::from_grants(&grants, dir.path()).unwrap();
    let bytes = PluginHost::read_source("local", &PluginSource::Builtin("local".into()), dir.path()).unwrap();
    let p = load(&host, "local", PluginKind::Provisioner, &bytes, sandbox, Limits::default()).unwrap();
    let desired = json!({ "path": "out/site/index.html", "content": "<h1>hi</h1>\n" });
    let a = p.apply(&host, &ctx("index"), "file", None, &desired, None).await.unwrap();
    let on_disk = dir.path().join("out/site/index.html");
    assert_eq!(std::fs::read_to_string(&on_disk).unwrap(), "<h1>hi</h1>\n");
    assert_eq!(a.outputs["path"], "out/site/index.html");
    assert_eq!(a.outputs["sha256"].as_str().unwrap().len(), 64);

    // Unchanged: read gives back what plan compares as a no-op.
    let refreshed = p.read(&host, &ctx("index"), "file", Some(&a.state), &desired, None).await.unwrap().expect("still there");
    assert_eq!(refreshed.outputs, a.outputs);
    let plan = p.plan(&host, &ctx("index"), "file", Some(&refreshed.state), &desired, None).await.unwrap();
    assert_eq!(plan.change, Change::NoOp);
    // No state: what an interrupted apply wrote is found at the desired path.
    let found = p.read(&host, &ctx("index"), "file", None, &desired, None).await.unwrap().expect("found");
    assert_eq!(found.outputs, a.outputs);

    // Edited outside stackpipe: drift.
    std::fs::write(&on_disk, "tampered").unwrap();
    let refreshed = p.read(&host, &ctx("index"), "file", Some(&a.state), &desired, None).await.unwrap().expect("still there");
    assert_ne!(refreshed.outputs["sha256"], a.outputs["sha256"], "the outputs are refreshed too");
    let plan = p.plan(&host, &ctx("index"), "file", Some(&refreshed.state), &desired, None).await.unwrap();
    assert_eq!(plan.change, Change::Update);

    // Deleted outside stackpipe: gone.
    std::fs::remove_file(&on_disk).unwrap();
    assert_eq!(p.read(&host, &ctx("index"), "file", Some(&a.state), &desired, None).await.unwrap(), None);
    assert_eq!(p.read(&host, &ctx("index"), "file", None, &desired, None).await.unwrap(), None);

    // Outside the grant: refused.
    let outside = json!({ "path": "elsewhere/x.txt", "content": "x" });
    let err = p.apply(&host, &ctx("x"), "file", None, &outside, None).await.unwrap_err();
    assert!(matches!(err, PluginError::Failed { .. }), "{err}");
    assert!(!dir.path().join("elsewhere/x.txt").exists());
    let diags = p.validate(&host, &ctx("x"), "file", &json!({ "path": "../x", "content": "" })).await.unwrap();
    assert!(!diags.is_empty());
}

#[tokio::test]
async fn env_resolver_reads_only_granted_variables() {
    let host = host();
    // SAFETY: this test binary sets these variables and nothing else reads them.
    unsafe {
        std::env::set_var("STACKPIPE_TEST_KEY_ID", "AKIAEXAMPLE");
        std::env::set_var("STACKPIPE_TEST_SECRET", "s3cr3t");
    }
    let bytes = PluginHost::read_source("env", &PluginSource::Builtin("env".into()), Path::new(".")).unwrap();
    let config = json!({ "fields": { "access_key_id": "STACKPIPE_TEST_KEY_ID", "secret_access_key": "STACKPIPE_TEST_SECRET" } });
    let grants = Grants { env: vec!["STACKPIPE_TEST_KEY_ID".into(), "STACKPIPE_TEST_SECRET".into()], ..Default::default() };
    let p = load(&host, "keys", PluginKind::Credentials, &bytes, Sandbox::from_grants(&grants, Path::new(".")).unwrap(), Limits::default()).unwrap();
    let cred = p.resolve(&host, &ctx(""), "aws", &config).await.unwrap();
    assert!(cred.fields.contains(&("access_key_id".into(), "AKIAEXAMPLE".into())));
    assert!(!format!("{cred:?}").contains("s3cr3t"), "Debug never shows a secret");

    let only_one = Grants { env: vec!["STACKPIPE_TEST_KEY_ID".into()], ..Default::default() };
    let p = load(&host, "keys", PluginKind::Credentials, &bytes, Sandbox::from_grants(&only_one, Path::new(".")).unwrap(), Limits::default()).unwrap();
    let err = p.resolve(&host, &ctx(""), "aws", &config).await.unwrap_err().to_string();
    assert!(err.contains("STACKPIPE_TEST_SECRET"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
}

#[tokio::test]
async fn file_resolver_refuses_an_expired_credential() {
    let host = host();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("creds")).unwrap();
    std::fs::write(
        dir.path().join("creds/aws.json"),
        r#"{ "profiles": { "default": { "fields": { "access_key_id": "A", "secret_access_key": "B" } },
                            "old": { "fields": { "access_key_id": "A" }, "expires_at": 1000 } } }"#,
    )
    .unwrap();
    let grants = Grants { fs: vec!["creds".into()], ..Default::default() };
    let bytes = PluginHost::read_source("file", &PluginSource::Builtin("file".into()), dir.path()).unwrap();
    let p = load(&host, "files", PluginKind::Credentials, &bytes, Sandbox::from_grants(&grants, dir.path()).unwrap(), Limits::default()).unwrap();
    let cred = p.resolve(&host, &ctx(""), "aws", &json!({ "path": "creds/aws.json" })).await.unwrap();
    assert_eq!(cred.fields.len(), 2);
    let err = p.resolve(&host, &ctx(""), "aws", &json!({ "path": "creds/aws.json", "profile": "old" })).await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let err = p.resolve(&host, &ctx(""), "aws", &json!({ "path": "creds/aws.json", "profile": "nope" })).await.unwrap_err();
    assert!(err.to_string().contains("default"), "lists the profiles: {err}");
}

#[tokio::test]
async fn protect_stateful_denies_deleting_a_database_in_prod() {
    let host = host();
    let bytes = PluginHost::read_source("protect", &PluginSource::Builtin("protect-stateful".into()), Path::new(".")).unwrap();
    let config = json!({ "environments": ["prod"] });
    let p = load_with(&host, "protect", PluginKind::Policy, &bytes, Sandbox::none(), Limits::default(), &config).unwrap();
    let mut prod = ctx("db");
    prod.environment = "prod".into();
    let input = |change: &str, env: &str| json!({ "resource": "db", "type": "aws.db_instance", "change": change, "changes": [], "environment": env });
    assert!(matches!(p.evaluate(&host, &prod, &input("delete", "prod")).await.unwrap(), PolicyVerdict::Deny(r) if r.contains("db")));
    assert!(matches!(p.evaluate(&host, &prod, &input("replace", "prod")).await.unwrap(), PolicyVerdict::Deny(_)));
    assert!(matches!(p.evaluate(&host, &ctx("db"), &input("delete", "dev")).await.unwrap(), PolicyVerdict::RequireApproval(_)));
    assert_eq!(p.evaluate(&host, &prod, &input("update", "prod")).await.unwrap(), PolicyVerdict::Allow);
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let host = PluginHost::new(ArtifactCache::in_dir(dir.path())).unwrap();
    let bytes = PluginHost::read_source("test", &PluginSource::Builtin("test".into()), Path::new(".")).unwrap();
    let first = load(&host, "test", PluginKind::Provisioner, &bytes, Sandbox::none(), Limits::default()).unwrap();
    assert_eq!(first.cache_outcome(), CacheOutcome::Compiled);
    let second = load(&host, "test", PluginKind::Provisioner, &bytes, Sandbox::none(), Limits::default()).unwrap();
    assert_eq!(second.cache_outcome(), CacheOutcome::Hit);
    // A corrupt artifact is ignored and replaced.
    for f in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(f.unwrap().path(), b"garbage").unwrap();
    }
    let third = load(&host, "test", PluginKind::Provisioner, &bytes, Sandbox::none(), Limits::default()).unwrap();
    assert_eq!(third.cache_outcome(), CacheOutcome::Compiled);
    third.apply(&host, &ctx("r"), "step", None, &json!({}), None).await.unwrap();
}

// ---- hostile components ---------------------------------------------------------

#[tokio::test]
async fn hostile_busy_loop_times_out() {
    let host = host();
    let p = load_hostile(&host, "busy-loop", TIGHT, Sandbox::none());
    let err = hostile_apply(&host, &p).await;
    assert!(matches!(err, PluginError::Timeout { secs: 1, .. }), "{err}");
    assert_eq!(err.to_string(), "plugin `busy-loop` apply: timed out after 1 s (its limit, `limits { timeout_s = 1 }`)");
}

#[tokio::test]
async fn hostile_sleep_forever_times_out() {
    let host = host();
    let p = load_hostile(&host, "sleep-forever", TIGHT, Sandbox::none());
    let err = hostile_apply(&host, &p).await;
    assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn hostile_memory_bomb_hits_the_memory_limit() {
    let host = host();
    let p = load_hostile(&host, "memory-bomb", TIGHT, Sandbox::none());
    let err = hostile_apply(&host, &p).await;
    assert_eq!(err.to_string(), "plugin `memory-bomb` apply: went over its memory limit of 32 MB (`limits { memory_mb = 32 }`)");
}

#[tokio::test]
async fn hostile_read_outside_grant_finds_nothing() {
    let host = host();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), "top secret").unwrap();
    let grants = Grants { fs: vec!["out".into()], ..Default::default() };
    let p = load_hostile(&host, "read-outside-grant", TIGHT, Sandbox::from_grants(&grants, dir.path()).unwrap());
    let err = hostile_apply(&host, &p).await.to_string();
    assert!(err.starts_with("plugin `read-outside-grant` apply:"), "{err}");
    assert!(!err.contains("root:") && !err.contains("top secret"), "{err}");
}

#[tokio::test]
async fn hostile_http_to_an_ungranted_host_is_refused() {
    let host = host();
    let grants = Grants { http: vec!["127.0.0.1:5055".into()], ..Default::default() };
    let p = load_hostile(&host, "http-not-granted", TIGHT, Sandbox::from_grants(&grants, Path::new(".")).unwrap());
    let err = hostile_apply(&host, &p).await.to_string();
    assert!(err.contains("stackpipe refused HTTP to 127.0.0.1:9, localhost:9"), "{err}");
}

#[tokio::test]
async fn hostile_env_read_sees_nothing_ungranted() {
    let host = host();
    // SAFETY: only this test reads it.
    unsafe { std::env::set_var("STACKPIPE_SECRET_TEST", "leaked") };
    let p = load_hostile(&host, "env-not-granted", TIGHT, Sandbox::none());
    let err = hostile_apply(&host, &p).await.to_string();
    assert_eq!(err, "plugin `env-not-granted` apply: not visible");
}

#[tokio::test]
async fn hostile_huge_output_is_refused() {
    let host = host();
    let p = load_hostile(&host, "huge-output", Limits { memory_mb: 256, timeout_s: 5 }, Sandbox::none());
    let err = hostile_apply(&host, &p).await;
    assert!(matches!(err, PluginError::TooLarge { .. }), "{err}");
    // With less memory, the same plugin hits the memory limit instead.
    let p = load_hostile(&host, "huge-output", TIGHT, Sandbox::none());
    assert!(matches!(hostile_apply(&host, &p).await, PluginError::OutOfMemory { .. }));
}

#[tokio::test]
async fn hostile_trap_fails_the_call() {
    let host = host();
    let p = load_hostile(&host, "trap", TIGHT, Sandbox::none());
    let err = hostile_apply(&host, &p).await.to_string();
    assert_eq!(err, "plugin `trap` apply: crashed: wasm trap: unreachable code reached");
}

#[tokio::test]
async fn hostile_panic_reports_the_panic_message() {
    let host = host();
    let p = load_hostile(&host, "panic", TIGHT, Sandbox::none());
    let err = hostile_apply(&host, &p).await.to_string();
    assert_eq!(err, "plugin `panic` apply: crashed: panicked: the plugin panicked on purpose");
}

#[tokio::test]
async fn hostile_stack_overflow_fails_the_call() {
    let host = host();
    let p = load_hostile(&host, "stack-overflow", TIGHT, Sandbox::none());
    let err = hostile_apply(&host, &p).await.to_string();
    assert!(err.contains("stack overflow"), "{err}");
}

#[tokio::test]
async fn hostile_wrong_world_names_what_is_missing() {
    let host = host();
    let err = load(&host, "wrong", PluginKind::Provisioner, &hostile("wrong-world"), Sandbox::none(), TIGHT).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `wrong` (wrong) has `kind = \"provisioner\"` but does not export `stackpipe:plugin/provisioner@0.1.0` \
         (the `provisioner-plugin` world); it exports `stackpipe:plugin/policy@0.1.0`"
    );
}

#[tokio::test]
async fn hostile_non_components_fail_to_load() {
    let host = host();
    for (name, expect) in [
        ("not-wasm", "does not start with the WebAssembly magic bytes"),
        ("core-module", "a core WebAssembly module, not a component"),
        ("truncated", "not a valid WebAssembly component"),
    ] {
        let err = load(&host, name, PluginKind::Provisioner, &hostile(name), Sandbox::none(), TIGHT).unwrap_err().to_string();
        assert!(err.contains(expect), "{name}: {err}");
        assert!(err.starts_with(&format!("plugin `{name}`")), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_calls_do_not_stop_good_ones() {
    let host = std::sync::Arc::new(host());
    let bad = std::sync::Arc::new(load_hostile(&host, "busy-loop", TIGHT, Sandbox::none()));
    let good = std::sync::Arc::new(builtin(&host, "test", PluginKind::Provisioner));
    let spinning: Vec<_> = (0..4)
        .map(|_| {
            let (host, bad) = (host.clone(), bad.clone());
            tokio::spawn(async move { bad.apply(&host, &ctx("bad"), "step", None, &json!({}), None).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    good.apply(&host, &ctx("good"), "step", None, &json!({}), None).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500), "a good call waited {:?} behind busy plugins", started.elapsed());
    for s in spinning {
        assert!(matches!(s.await.unwrap(), Err(PluginError::Timeout { .. })));
    }
}
