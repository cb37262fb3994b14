//! A pipeline checked against its provisioners' own schemas before anything
//! runs: each provisioner its resources use is loaded (its compiled code
//! comes from the artifact cache after the first time) and asked for its
//! resource types, once per component, and the graph is checked against
//! them by [`stackpipe_dsl::check_types`]. `check`, `preflight`, `plan`,
//! `deploy` and `undeploy` all start with it, so a misspelled output or
//! attribute stops them at its line rather than halfway through a deploy.
//!
//! The schemas are asked for every time rather than kept on disk: with the
//! compiled code in the artifact cache, `stackpipe check` of
//! `examples/local-files.pipeline` takes some 15 ms more than `graph` in a
//! debug build, and of `examples/aws-env.pipeline` (`builtin:aws`, the
//! largest builtin) some 40 ms, starting the plugin host included; a run
//! shares its host with the check, and its own loads of the same components
//! find them compiled. Only the first load after a component changes
//! compiles it (0.5 to 1.2 s for the builtins, in a debug build), and that
//! the run would have done anyway.

use std::collections::HashSet;

use serde_json::{Map, Value};

use stackpipe_dsl::ast::PluginKind;
use stackpipe_dsl::{Diagnostics, Limits, PluginSpec, ProvisionerTypes, TypeSchema, TypeSchemas, Unchecked};

use crate::pipeline::{LoadError, LoadedPipeline};
use crate::plugin::{PluginError, PluginHost, PluginLoad, ResourceType, Sandbox};

/// How long a provisioner may take to answer `resource-types` at check
/// time, at most: its `timeout_s` is meant for the operations of a run.
pub const SCHEMA_TIMEOUT_S: u64 = 10;

/// The resource types of every provisioner that `pipeline`'s resources use,
/// in every environment it was compiled for, each component asked once. One
/// that cannot be loaded or does not answer is
/// [`ProvisionerTypes::Unavailable`], with why: preflight reports that as an
/// error; a check only notes it.
pub async fn type_schemas(host: &PluginHost, pipeline: &LoadedPipeline) -> TypeSchemas {
    let graph = &pipeline.graph;
    let used: HashSet<&str> = graph.graph.node_weights().map(|n| n.plugin.as_str()).collect();
    let mut schemas = TypeSchemas::default();
    let mut asked = HashSet::new();
    for env in &graph.environments {
        for (name, spec) in &env.plugins {
            if spec.kind != PluginKind::Provisioner || !used.contains(name.as_str()) || !asked.insert(&spec.source) {
                continue;
            }
            let types = match provisioner_types(host, &pipeline.base_dir, spec).await {
                Ok(types) => ProvisionerTypes::Known(
                    types
                        .into_iter()
                        .map(|t| {
                            let schema = TypeSchema::from_json(&t.attributes_schema, &t.outputs_schema);
                            (t.name, schema)
                        })
                        .collect(),
                ),
                Err(e) => ProvisionerTypes::Unavailable(e.to_string()),
            };
            schemas.insert(spec.source.clone(), types);
        }
    }
    schemas
}

/// What the provisioner `spec` says its resource types are (a relative
/// source is read from `base_dir`). It is loaded with no grants and an
/// empty config: `resource-types` takes neither.
pub async fn provisioner_types(
    host: &PluginHost,
    base_dir: &std::path::Path,
    spec: &PluginSpec,
) -> Result<Vec<ResourceType>, PluginError> {
    let bytes = PluginHost::read_source(&spec.name, &spec.source, base_dir)?;
    let source_desc = spec.source.to_string();
    let limits = Limits { memory_mb: spec.limits.memory_mb, timeout_s: spec.limits.timeout_s.min(SCHEMA_TIMEOUT_S) };
    let loaded = host.load(PluginLoad {
        name: &spec.name,
        kind: PluginKind::Provisioner,
        source_desc: &source_desc,
        bytes: &bytes,
        sandbox: Sandbox::none(),
        limits,
        config: &Value::Object(Map::new()),
    })?;
    loaded.resource_types(host).await
}

/// `pipeline` checked against the schemas of its provisioners: every
/// mistake as [`LoadError::Invalid`], or the provisioners that could not be
/// asked (their resources were not checked). `overridden` are the
/// attributes `--set` gives, as (resource, attribute).
pub async fn check_types(
    host: &PluginHost,
    pipeline: &LoadedPipeline,
    overridden: &[(String, String)],
) -> Result<Vec<Unchecked>, LoadError> {
    let schemas = type_schemas(host, pipeline).await;
    let found = stackpipe_dsl::check_types(&pipeline.graph, &schemas, overridden);
    if found.errors.is_empty() {
        return Ok(found.unchecked);
    }
    Err(LoadError::Invalid(Diagnostics::new(&pipeline.path.display().to_string(), &pipeline.source, found.errors)))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use stackpipe_dsl::{CompileOptions, PluginSource};

    use super::*;
    use crate::plugin::ArtifactCache;

    const PIPELINE: &str = r#"
plugin local {
  kind   = "provisioner"
  source = "builtin:local"
  allow  { fs = ["out"] }
}
plugin t {
  kind   = "provisioner"
  source = "builtin:test"
}
plugin gone {
  kind   = "provisioner"
  source = "gone.wasm"
}
plugin policy {
  kind   = "policy"
  source = "builtin:protect-stateful"
}
resource dir "local.directory" { path = "out/d" }
resource index "local.file" { path = "${dir.path}/index.html" }
resource step "t.step" { x = index.sha256 }
resource lost "gone.thing" { y = step.anything }
"#;

    /// `text` compiled as a file in a directory that does not exist: `gone.wasm` is not there.
    fn pipeline(text: &str) -> LoadedPipeline {
        crate::pipeline::compile(Path::new("/nonexistent/p.pipeline"), text.to_string(), CompileOptions::default()).unwrap()
    }

    #[tokio::test]
    async fn each_provisioner_used_is_asked_once_and_one_that_cannot_load_is_unavailable() {
        let host = PluginHost::new(ArtifactCache::disabled()).unwrap();
        let p = pipeline(PIPELINE);
        let schemas = type_schemas(&host, &p).await;
        let Some(ProvisionerTypes::Known(local)) = schemas.get(&PluginSource::Builtin("local".into())) else {
            panic!("local's types are known")
        };
        assert_eq!(local.keys().collect::<Vec<_>>(), ["directory", "file"]);
        let file = &local["file"];
        assert!(file.attributes.closed && file.outputs.closed);
        assert!(file.outputs.accepts("sha256") && !file.outputs.accepts("sha265"));
        assert_eq!(file.attributes.required, ["path"]);
        let Some(ProvisionerTypes::Known(test)) = schemas.get(&PluginSource::Builtin("test".into())) else {
            panic!("test's types are known")
        };
        assert!(!test["step"].outputs.closed && !test["step"].attributes.closed, "test.step takes and gives anything");
        let Some(ProvisionerTypes::Unavailable(why)) = schemas.get(&PluginSource::Path("gone.wasm".into())) else {
            panic!("gone is unavailable")
        };
        assert!(why.starts_with("plugin `gone`: cannot read"), "{why}");
        // Only the provisioners that resources use are loaded.
        assert!(schemas.get(&PluginSource::Builtin("protect-stateful".into())).is_none());

        let unchecked = check_types(&host, &p, &[]).await.unwrap();
        assert_eq!(unchecked.len(), 1);
        assert_eq!(unchecked[0].resources, ["lost"]);
    }

    #[tokio::test]
    async fn a_mistake_is_a_diagnostic_of_the_file() {
        let host = PluginHost::new(ArtifactCache::disabled()).unwrap();
        let p = pipeline(&PIPELINE.replace("x = index.sha256", "x = index.sha265"));
        let Err(LoadError::Invalid(diags)) = check_types(&host, &p, &[]).await else { panic!("a typo is an error") };
        assert_eq!(diags.items.len(), 1);
        assert_eq!(diags.items[0].message, "`index` has no output `sha265`");
        assert_eq!(diags.source.name(), "/nonexistent/p.pipeline");
    }
}
