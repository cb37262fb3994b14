//! A pipeline's `output`s, evaluated over an environment's resource outputs
//! when the environment ends; secret ones masked.

use serde_json::Value;
use stackpipe_dsl::PipelineGraph;

use super::env_run::EnvRun;
use crate::secrets::MASKED;

/// The pipeline's `output`s, from the environment's resource outputs; a
/// sensitive one (see [`output_is_secret`]) reads as [`MASKED`].
pub(super) fn pipeline_outputs(env: &EnvRun) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    let Ok(outputs) = env.outputs.read() else {
        return out;
    };
    let graph = &env.run.graph;
    let lookup = |r: &str| outputs.get(r);
    let scope = stackpipe_dsl::eval::Scope {
        pipeline: &graph.name,
        environment: &env.plan.name,
        vars: &env.plan.vars,
        outputs: &lookup,
        artifacts: &graph.artifacts,
    };
    for o in &graph.outputs {
        if let Ok(v) = stackpipe_dsl::eval::eval(&o.value, &scope) {
            let holds_a_secret = || {
                let text = v.to_string();
                env.secrets.redact(&text) != text
            };
            let secret = output_is_secret(graph, o, |r| {
                env.run.store.resource(&env.key(r)).ok().flatten().map(|r| r.sensitive_outputs).unwrap_or_default()
            }) || holds_a_secret();
            out.insert(o.name.name.to_string(), if secret { Value::String(MASKED.into()) } else { v });
        }
    }
    out
}

/// Whether a pipeline `output` is secret: marked `sensitive`, derived from
/// a sensitive var, or made of a resource output the provisioner marks
/// sensitive (`sensitive_outputs` of the resource named).
pub fn output_is_secret(
    graph: &PipelineGraph,
    output: &stackpipe_dsl::ast::OutputDecl,
    sensitive_outputs: impl Fn(&str) -> Vec<String>,
) -> bool {
    graph.output_is_sensitive(output)
        || stackpipe_dsl::resource_references(&output.value)
            .iter()
            .any(|(r, o)| sensitive_outputs(r).iter().any(|s| s == o))
}

/// One environment's deployed outputs as `stackpipe outputs` shows them:
/// every resource's outputs and the pipeline's `output`s, the secret ones
/// masked unless `show_sensitive`.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentOutputs {
    pub environment: String,
    pub resources: serde_json::Map<String, Value>,
    pub outputs: serde_json::Map<String, Value>,
}

/// What `pipeline` has deployed, environment by environment in promotion
/// order, as the state holds it (see [`EnvironmentOutputs`]).
pub fn deployed_outputs(
    graph: &PipelineGraph,
    store: &crate::state::StateStore,
    show_sensitive: bool,
) -> Result<Vec<EnvironmentOutputs>, crate::state::StateError> {
    let mut per_env = Vec::new();
    for env in &graph.environments {
        let records = store.resources(&graph.name, Some(&env.name))?;
        let mut raw = serde_json::Map::new();
        for (k, r) in &records {
            raw.insert(k.resource.clone(), r.outputs.clone());
        }
        let lookup = |r: &str| raw.get(r);
        let scope = stackpipe_dsl::eval::Scope { pipeline: &graph.name, environment: &env.name, vars: &env.vars, outputs: &lookup, artifacts: &graph.artifacts };
        let sensitive_outputs = |name: &str| {
            records.iter().find(|(k, _)| k.resource == name).map(|(_, r)| r.sensitive_outputs.clone()).unwrap_or_default()
        };
        let mut outputs = serde_json::Map::new();
        for o in &graph.outputs {
            if let Ok(v) = stackpipe_dsl::eval::eval(&o.value, &scope) {
                let secret = output_is_secret(graph, o, sensitive_outputs);
                outputs.insert(o.name.name.to_string(), if secret && !show_sensitive { Value::String(MASKED.into()) } else { v });
            }
        }
        let mut resources = serde_json::Map::new();
        for (k, r) in &records {
            let shown = if show_sensitive { r.outputs.clone() } else { crate::secrets::mask_keys(&r.outputs, &r.sensitive_outputs) };
            resources.insert(k.resource.clone(), shown);
        }
        per_env.push(EnvironmentOutputs { environment: env.name.clone(), resources, outputs });
    }
    Ok(per_env)
}

/// `stackpipe outputs --json`: keyed by environment, in promotion order,
/// `{"dev": {"resources", "outputs"}, ...}`.
pub fn outputs_json(per_env: &[EnvironmentOutputs]) -> Value {
    Value::Object(
        per_env
            .iter()
            .map(|e| (e.environment.clone(), serde_json::json!({ "resources": e.resources, "outputs": e.outputs })))
            .collect(),
    )
}
