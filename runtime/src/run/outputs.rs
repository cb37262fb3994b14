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
