//! The resource types of the provisioners a file uses, asked of the plugins
//! themselves (as `plugin inspect` and `check` ask them), on a thread of
//! their own: loading a component the first time compiles it, which takes
//! a second, and a keystroke must not wait for that. Until a provisioner
//! has answered, its resources are checked without its schemas; when it
//! answers, the server checks the open files again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;
use stackpipe_dsl::{PluginSource, PluginSpec, ProvisionerTypes, TypeSchema, TypeSchemas};

/// One resource type, as its provisioner describes it.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    pub name: String,
    pub description: String,
    pub attributes: Value,
    pub outputs: Value,
    /// What the type checks read of the two schemas, made once when the
    /// plugin answers rather than on every keystroke.
    pub checked: TypeSchema,
}

impl TypeInfo {
    /// The declared properties of one side (`attributes` or `outputs`) of
    /// the type: name, description, JSON type, and whether it is required.
    pub fn properties(schema: &Value) -> Vec<Property> {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return Vec::new();
        };
        props
            .iter()
            .map(|(name, p)| Property {
                name: name.clone(),
                description: p
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                json_type: match p.get("type") {
                    Some(Value::String(t)) => t.clone(),
                    Some(Value::Array(ts)) => ts
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" | "),
                    _ => String::new(),
                },
                required: required.contains(&name.as_str()),
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub name: String,
    pub description: String,
    pub json_type: String,
    pub required: bool,
}

/// What is known of one provisioner.
#[derive(Debug, Clone)]
pub enum Known {
    Asked,
    Types(Vec<TypeInfo>),
    Unavailable(String),
}

impl Known {
    /// The resource type `kind`, if the provisioner has answered with it.
    pub fn type_named(&self, kind: &str) -> Option<&TypeInfo> {
        match self {
            Known::Types(types) => types.iter().find(|t| t.name == kind),
            _ => None,
        }
    }
}

/// The provisioners asked so far, by where their component is.
pub struct Schemas {
    known: HashMap<Key, Known>,
    ask: Sender<(Key, PathBuf, PluginSpec)>,
    /// Answers, for the server's loop to wait on with its messages.
    pub answers: Receiver<(Key, Known)>,
}

/// A component: a builtin by name; a file by its path from the pipeline's
/// directory and by its size and modification time, so that a plugin
/// rebuilt while the editor is open is asked again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(String);

impl Key {
    fn of(base_dir: &Path, source: &PluginSource) -> Key {
        match source {
            PluginSource::Builtin(name) => Key(format!("builtin:{name}")),
            PluginSource::Path(path) => {
                let path = base_dir.join(path);
                let version = std::fs::metadata(&path)
                    .ok()
                    .map(|m| (m.len(), m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())));
                Key(format!("{} {version:?}", path.display()))
            }
        }
    }
}

impl Schemas {
    /// Starts the thread that loads plugins. With `enabled` false (tests
    /// that must not load plugins), nothing is ever asked.
    pub fn start(enabled: bool) -> Schemas {
        let (ask, asked) = crossbeam_channel::unbounded::<(Key, PathBuf, PluginSpec)>();
        let (tell, answers) = crossbeam_channel::unbounded();
        if enabled {
            let spawned = std::thread::Builder::new()
                .name("plugin-schemas".into())
                .spawn(move || worker(asked, tell));
            if let Err(e) = spawned {
                eprintln!("stackpipe lsp: cannot start the thread that reads plugin schemas: {e}");
            }
        }
        Schemas {
            known: HashMap::new(),
            ask,
            answers,
        }
    }

    /// What is known of the provisioner `spec` (of a file in `base_dir`);
    /// the first time, it is asked for.
    pub fn get(&mut self, base_dir: &Path, spec: &PluginSpec) -> &Known {
        let key = Key::of(base_dir, &spec.source);
        self.known.entry(key.clone()).or_insert_with(|| {
            // A closed channel (no thread) leaves it asked forever: the
            // file is checked without its schemas.
            let _ = self.ask.send((key, base_dir.to_path_buf(), spec.clone()));
            Known::Asked
        })
    }

    /// What is known of the provisioner `spec`, without asking.
    pub fn peek(&self, base_dir: &Path, spec: &PluginSpec) -> Option<&Known> {
        self.known.get(&Key::of(base_dir, &spec.source))
    }

    pub fn answered(&mut self, key: Key, known: Known) {
        self.known.insert(key, known);
    }

    /// The schemas known of the provisioners `specs`, for the type checks.
    pub fn type_schemas<'a>(
        &mut self,
        base_dir: &Path,
        specs: impl Iterator<Item = &'a PluginSpec>,
    ) -> TypeSchemas {
        let mut out = TypeSchemas::default();
        for spec in specs {
            let types = match self.get(base_dir, spec) {
                Known::Asked => continue,
                Known::Types(types) => {
                    ProvisionerTypes::Known(types.iter().map(|t| (t.name.clone(), t.checked.clone())).collect())
                }
                Known::Unavailable(why) => ProvisionerTypes::Unavailable(why.clone()),
            };
            out.insert(spec.source.clone(), types);
        }
        out
    }
}

fn worker(asked: Receiver<(Key, PathBuf, PluginSpec)>, tell: Sender<(Key, Known)>) {
    use stackpipe_runtime::plugin::{ArtifactCache, PluginHost};
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            PluginHost::new(ArtifactCache::from_env())
                .map(|h| (rt, h))
                .map_err(|e| format!("{e:#}"))
        });
    for (key, base_dir, spec) in asked {
        let known = match &started {
            Err(why) => Known::Unavailable(format!("cannot start the plugin host: {why}")),
            Ok((rt, host)) => match rt.block_on(stackpipe_runtime::type_check::provisioner_types(
                host, &base_dir, &spec,
            )) {
                Ok(types) => Known::Types(
                    types
                        .into_iter()
                        .map(|t| TypeInfo {
                            checked: TypeSchema::from_json(&t.attributes_schema, &t.outputs_schema),
                            name: t.name,
                            description: t.description,
                            attributes: serde_json::from_str(&t.attributes_schema)
                                .unwrap_or(Value::Null),
                            outputs: serde_json::from_str(&t.outputs_schema).unwrap_or(Value::Null),
                        })
                        .collect(),
                ),
                Err(e) => Known::Unavailable(e.to_string()),
            },
        };
        if tell.send((key, known)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_file_that_changes_is_another_key() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let source = PluginSource::Path("p.wasm".into());
        let missing = Key::of(dir.path(), &source);
        std::fs::write(dir.path().join("p.wasm"), b"one").unwrap();
        let first = Key::of(dir.path(), &source);
        assert_ne!(first, missing);
        assert_eq!(Key::of(dir.path(), &source), first, "the same file, the same key");
        std::fs::write(dir.path().join("p.wasm"), b"rebuilt").unwrap();
        assert_ne!(Key::of(dir.path(), &source), first);
        let builtin = PluginSource::Builtin("test".into());
        assert_eq!(Key::of(dir.path(), &builtin), Key::of(Path::new("/elsewhere"), &builtin));
    }
}
