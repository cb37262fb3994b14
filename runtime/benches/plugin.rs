//! Plugin host costs, measured against the real `test` builtin:
//! a warm call of a provisioner method (target <= 5 us), instantiation from
//! `InstancePre` (<= 20 us), and loading a component whose compiled artifact
//! is cached on disk, as a fresh process does (<= 10 ms); and the whole of a
//! stack job's plugin work for a new resource (instance, three calls, teardown).
//!
//!   cargo bench -p stackpipe-runtime --bench plugin

use std::path::Path;

use serde_json::json;
use stackpipe_dsl::ast::PluginKind;
use stackpipe_dsl::{Limits, PluginSource};
use stackpipe_runtime::plugin::{ArtifactCache, CallContext, LoadedPlugin, PluginError, PluginHost, PluginLoad, Sandbox};

fn main() {
    divan::main();
}

/// A runtime, a host without an artifact cache, and the test builtin loaded in it.
fn test_plugin() -> (tokio::runtime::Runtime, PluginHost, LoadedPlugin) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let host = PluginHost::new(ArtifactCache::disabled()).unwrap();
    let plugin = load(&host, &test_bytes(), &json!({}));
    (rt, host, plugin)
}

fn test_bytes() -> Vec<u8> {
    PluginHost::read_source("test", &PluginSource::Builtin("test".into()), Path::new(".")).expect("the test builtin")
}

fn load(host: &PluginHost, bytes: &[u8], config: &serde_json::Value) -> LoadedPlugin {
    host.load(PluginLoad {
        name: "test",
        kind: PluginKind::Provisioner,
        source_desc: "builtin:test",
        bytes,
        sandbox: Sandbox::none(),
        limits: Limits::default(),
        config,
    })
    .expect("the test builtin loads")
}

#[divan::bench]
fn warm_call_validate(bencher: divan::Bencher) {
    let (rt, host, plugin) = test_plugin();
    let mut warm = rt.block_on(plugin.session(&host)).unwrap();
    let ctx = CallContext::default();
    let desired = json!({});
    bencher.bench_local(|| rt.block_on(warm.validate(&ctx, "step", &desired)).unwrap());
}

#[divan::bench]
fn instantiate_from_instance_pre(bencher: divan::Bencher) {
    let (rt, host, plugin) = test_plugin();
    bencher.bench_local(|| rt.block_on(instantiate_only(&plugin, &host)).unwrap());
}

/// Instantiates and drops an instance: what every session pays first.
async fn instantiate_only(plugin: &LoadedPlugin, host: &PluginHost) -> Result<(), PluginError> {
    plugin.session(host).await.map(drop)
}

#[divan::bench(sample_count = 30, sample_size = 1)]
fn load_cached_component(bencher: divan::Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, config) = (test_bytes(), json!({}));
    // Fill the cache once, then every sample is a new host, as in a new process.
    load(&PluginHost::new(ArtifactCache::in_dir(dir.path())).unwrap(), &bytes, &config);
    bencher.bench_local(|| {
        let host = PluginHost::new(ArtifactCache::in_dir(dir.path())).unwrap();
        load(&host, &bytes, &config)
    });
}

/// A stack job's plugin work for a new no-op resource, as a deploy does it:
/// a fresh instance, `validate`, `plan` and `apply`, then the instance freed.
#[divan::bench]
fn job_validate_plan_apply(bencher: divan::Bencher) {
    let (rt, host, plugin) = test_plugin();
    let ctx = CallContext::default();
    let desired = json!({"delay_ms": 0, "in0": "r1-0123456789abcdef", "in1": "r2-0123456789abcdef"});
    bencher.bench_local(|| {
        rt.block_on(async {
            let mut job = plugin.session(&host).await.unwrap();
            job.validate(&ctx, "step", &desired).await.unwrap();
            job.plan(&ctx, "step", None, &desired, None).await.unwrap();
            job.apply(&ctx, "step", None, &desired, None).await.unwrap()
        })
    });
}
