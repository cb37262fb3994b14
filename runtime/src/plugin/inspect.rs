//! `stackpipe plugin inspect`: what a component is and what it offers.

use serde_json::Value;
use wasmtime::component::types::ComponentItem;

use stackpipe_dsl::ast::PluginKind;
use stackpipe_dsl::Limits;

use super::{CacheOutcome, PluginError, PluginHost, PluginLoad, ResourceType, Sandbox, World};

/// A component, described.
#[derive(Debug)]
pub struct Inspection {
    pub kind: PluginKind,
    pub world: &'static str,
    pub digest: String,
    pub size: usize,
    /// Exported interfaces with their functions.
    pub exports: Vec<(String, Vec<String>)>,
    pub imports: Vec<String>,
    /// For a provisioner: its resource types and their schemas.
    pub resource_types: Vec<ResourceType>,
    /// Whether the compiled component came from the artifact cache, and
    /// how long getting it took.
    pub cache: CacheOutcome,
    pub load_ms: u64,
}

/// Finds which stackpipe world `bytes` implements and describes it.
pub async fn inspect(host: &PluginHost, name: &str, source_desc: &str, bytes: &[u8]) -> Result<Inspection, PluginError> {
    let engine = host.engine();
    let started = std::time::Instant::now();
    let (component, cache) = host.compile(name, source_desc, bytes)?;
    let load_ms = started.elapsed().as_millis() as u64;
    let ty = component.component_type();
    let mut exports = Vec::new();
    for (export, item) in ty.exports(engine) {
        let functions = match &item.ty {
            ComponentItem::ComponentInstance(i) => i
                .exports(engine)
                .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
                .map(|(f, _)| f.to_string())
                .collect(),
            _ => Vec::new(),
        };
        exports.push((export.to_string(), functions));
    }
    let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let kind = [PluginKind::Provisioner, PluginKind::Credentials, PluginKind::Policy]
        .into_iter()
        .find(|k| exports.iter().any(|(e, _)| e == World::of(*k).export))
        .ok_or_else(|| PluginError::WrongWorld {
            plugin: name.into(),
            source_desc: source_desc.into(),
            kind: "provisioner | credentials | policy",
            expected_world: "provisioner-plugin, credentials-plugin or policy-plugin",
            expected_export: "stackpipe:plugin/<provisioner|credentials|policy>@0.1.0",
            found: format!("it exports {}", exports.iter().map(|(e, _)| format!("`{e}`")).collect::<Vec<_>>().join(", ")),
        })?;
    let loaded = host.link(
        PluginLoad {
            name,
            kind,
            source_desc,
            bytes,
            sandbox: Sandbox::none(),
            limits: Limits { memory_mb: 256, timeout_s: 10 },
            config: &Value::Object(Default::default()),
        },
        (component, cache),
    )?;
    let resource_types = match kind {
        PluginKind::Provisioner => loaded.resource_types(host).await?,
        _ => Vec::new(),
    };
    Ok(Inspection {
        kind,
        world: World::of(kind).name,
        digest: loaded.digest().to_string(),
        size: bytes.len(),
        exports,
        imports,
        resource_types,
        cache,
        load_ms,
    })
}
