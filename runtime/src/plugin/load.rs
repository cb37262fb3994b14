//! Loading: a plugin's bytes (a builtin or a file), compiled or taken from
//! the artifact cache, checked to export the world its `kind` says, and
//! linked into a [`LoadedPlugin`].

use std::sync::Arc;

use serde_json::Value;
use wasmtime::component::Component;

use stackpipe_dsl::ast::PluginKind;
use stackpipe_dsl::{Limits, PluginSource};

use super::artifact_cache::{digest, CacheOutcome};
use super::bindings::{credentials::CredentialsPluginPre, policy::PolicyPluginPre, provisioner::ProvisionerPluginPre};
use super::builtin::{builtin, names as builtin_names};
use super::loaded::{LoadedPlugin, Typed};
use super::{PluginError, PluginHost, Sandbox};

/// The largest plugin component file read. The builtin components are 1 to
/// 15 MB; one built with its debug info can be ten times that. Above this,
/// a path is a mistake (an image, a log) that would otherwise be read whole
/// into memory and handed to the compiler.
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// What [`PluginHost::load`] needs to know about one plugin.
pub struct PluginLoad<'a> {
    pub name: &'a str,
    pub kind: PluginKind,
    /// `builtin:local` or the path, for messages.
    pub source_desc: &'a str,
    pub bytes: &'a [u8],
    pub sandbox: Sandbox,
    pub limits: Limits,
    pub config: &'a Value,
}

/// The world a kind of plugin implements and the interface it must export.
#[derive(Debug, Clone, Copy)]
pub struct World {
    pub name: &'static str,
    pub export: &'static str,
}

impl World {
    pub fn of(kind: PluginKind) -> World {
        match kind {
            PluginKind::Provisioner => {
                World { name: "provisioner-plugin", export: "stackpipe:plugin/provisioner@0.1.0" }
            }
            PluginKind::Credentials => {
                World { name: "credentials-plugin", export: "stackpipe:plugin/credentials@0.1.0" }
            }
            PluginKind::Policy => World { name: "policy-plugin", export: "stackpipe:plugin/policy@0.1.0" },
        }
    }
}

impl PluginHost {
    /// The bytes of a plugin source: a builtin, or a file relative to `base_dir`.
    pub fn read_source(plugin: &str, source: &PluginSource, base_dir: &std::path::Path) -> Result<Vec<u8>, PluginError> {
        match source {
            PluginSource::Builtin(name) => builtin(name).map(<[u8]>::to_vec).ok_or_else(|| PluginError::UnknownBuiltin {
                plugin: plugin.into(),
                name: name.clone(),
                known: builtin_names().collect::<Vec<_>>().join(", "),
            }),
            PluginSource::Path(p) => {
                let path = base_dir.join(p);
                crate::input::read_regular_file(&path, "plugin component", MAX_COMPONENT_BYTES)
                    .map_err(|source| PluginError::Read { plugin: plugin.into(), source })
            }
        }
    }

    /// Compiles (or loads from the cache) and links a component, after
    /// checking it exports the world its kind says.
    pub fn load(&self, spec: PluginLoad<'_>) -> Result<LoadedPlugin, PluginError> {
        let compiled = self.compile(spec.name, spec.source_desc, spec.bytes)?;
        self.link(spec, compiled)
    }

    /// The compiled component of `bytes`, from the artifact cache when it is there.
    pub(crate) fn compile(
        &self,
        name: &str,
        source_desc: &str,
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome), PluginError> {
        self.cache.load(&self.engine, bytes).map_err(|e| PluginError::NotAComponent {
            plugin: name.into(),
            source_desc: source_desc.into(),
            reason: not_a_component_reason(bytes, &e),
        })
    }

    /// Links a compiled component of `spec.bytes` for the world of `spec.kind`.
    pub(crate) fn link(
        &self,
        spec: PluginLoad<'_>,
        (component, cache): (Component, CacheOutcome),
    ) -> Result<LoadedPlugin, PluginError> {
        let PluginLoad { name, kind, source_desc, bytes, sandbox, limits, config } = spec;
        let exports = self.exports_of_world(&component, name, kind, source_desc)?;
        let link_err = |e: wasmtime::Error| PluginError::Link {
            plugin: name.to_string(),
            source_desc: source_desc.into(),
            reason: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(link_err)?;
        let typed = match kind {
            PluginKind::Provisioner => Typed::Provisioner(ProvisionerPluginPre::new(pre).map_err(link_err)?),
            PluginKind::Credentials => Typed::Credentials(CredentialsPluginPre::new(pre).map_err(link_err)?),
            PluginKind::Policy => Typed::Policy(PolicyPluginPre::new(pre).map_err(link_err)?),
        };
        Ok(LoadedPlugin {
            name: Arc::from(name),
            kind,
            digest: digest(bytes),
            cache,
            exports,
            typed,
            sandbox,
            limits,
            config: config.to_string(),
        })
    }

    /// What `component` exports, when that includes the interface of
    /// `kind`'s world; else which world it was meant to be and what it has.
    fn exports_of_world(
        &self,
        component: &Component,
        name: &str,
        kind: PluginKind,
        source_desc: &str,
    ) -> Result<Vec<String>, PluginError> {
        let world = World::of(kind);
        let exports: Vec<String> =
            component.component_type().exports(&self.engine).map(|(n, _)| n.to_string()).collect();
        if exports.iter().any(|e| e == world.export) {
            return Ok(exports);
        }
        let found = if exports.is_empty() {
            "it exports nothing".to_string()
        } else {
            format!("it exports {}", exports.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", "))
        };
        Err(PluginError::WrongWorld {
            plugin: name.to_string(),
            source_desc: source_desc.into(),
            kind: kind.name(),
            expected_world: world.name,
            expected_export: world.export,
            found,
        })
    }
}

fn not_a_component_reason(bytes: &[u8], e: &wasmtime::Error) -> String {
    if !bytes.starts_with(b"\0asm") {
        return "the file does not start with the WebAssembly magic bytes `\\0asm`".into();
    }
    // Bytes 4..6 are the version (1 for a core module, 0x0d for a component
    // today), bytes 6..8 the layer: 0 for a core module, 1 for a component.
    if bytes.len() >= 8 && bytes[6..8] == [0, 0] {
        return "it is a core WebAssembly module, not a component (build for wasm32-wasip2, or wrap it with `wasm-tools component new`)".into();
    }
    format!("{e:#}")
}
