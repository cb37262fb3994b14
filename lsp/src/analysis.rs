//! One open file, checked: parsed, compiled and (as far as its provisioners
//! have answered) checked against their schemas, every diagnostic `check`
//! gives, and the index of its names. Made again from the whole text on
//! every change: a 1,000-resource file takes a few milliseconds (see
//! `benches/keystroke.rs`).

use std::path::{Path, PathBuf};

use stackpipe_dsl::ast::{Module, PluginKind};
use stackpipe_dsl::line_map::LineMap;
use stackpipe_dsl::{CompileOptions, Diagnostic, Limits, PipelineGraph, PluginSource, PluginSpec};

use crate::index::Index;
use crate::schemas::Schemas;

pub struct Analysis {
    pub text: String,
    /// The file's directory, where its plugins' paths start.
    pub base_dir: PathBuf,
    pub lines: LineMap,
    pub module: Module,
    pub index: Index,
    /// The compiled pipeline, when the file compiles.
    pub graph: Option<PipelineGraph>,
    /// What `stackpipe check` would say of the file, as far as known.
    pub diagnostics: Vec<Diagnostic>,
    /// The provisioner plugins the file declares: from the compiled
    /// pipeline, or, while the file does not compile (as it mostly does not
    /// halfway through a word), from the declarations that parsed, so that
    /// hover and completion keep their schemas.
    pub provisioners: Vec<PluginSpec>,
}

impl Analysis {
    /// `text` checked; `base_dir` is the file's directory, where its plugin
    /// paths start.
    pub fn new(text: String, base_dir: &Path, schemas: &mut Schemas) -> Analysis {
        let lines = LineMap::new(&text);
        let (module, mut diagnostics) = stackpipe_dsl::parser::parse(&text);
        let index = Index::new(&module);
        // Values are not required: vars without a default get theirs at
        // run time (`--var`, STACKPIPE_VAR_*), which an editor does not know.
        let opts = CompileOptions::default();
        let graph = match stackpipe_dsl::compile(&module, &opts) {
            Ok(graph) if diagnostics.is_empty() => Some(graph),
            Ok(_) => None,
            Err(more) => {
                diagnostics.extend(more);
                None
            }
        };
        if let Some(graph) = &graph {
            let specs = graph.environments.iter().flat_map(|e| e.plugins.values());
            let provisioners = specs.filter(|s| s.kind == PluginKind::Provisioner);
            let types = schemas.type_schemas(base_dir, provisioners);
            diagnostics.extend(stackpipe_dsl::check_types(graph, &types, &[]).errors);
        }
        diagnostics.sort_by_key(Diagnostic::position);
        let provisioners = provisioners(&module, graph.as_ref());
        Analysis {
            text,
            base_dir: base_dir.to_path_buf(),
            lines,
            module,
            index,
            graph,
            diagnostics,
            provisioners,
        }
    }

    /// The provisioner plugin called `name`.
    pub fn provisioner(&self, name: &str) -> Option<&PluginSpec> {
        self.provisioners.iter().find(|p| p.name == name)
    }
}

fn provisioners(module: &Module, graph: Option<&PipelineGraph>) -> Vec<PluginSpec> {
    let mut out: Vec<PluginSpec> = Vec::new();
    if let Some(graph) = graph {
        for spec in graph.environments.iter().flat_map(|e| e.plugins.values()) {
            if spec.kind == PluginKind::Provisioner && !out.iter().any(|p| p.name == spec.name) {
                out.push(spec.clone());
            }
        }
        return out;
    }
    for p in &module.plugins {
        let source = p.source.as_ref().and_then(|s| s.as_plain_string());
        let source = match source.as_deref().map(|s| (s, s.strip_prefix("builtin:"))) {
            Some((_, Some(name))) if !name.is_empty() => PluginSource::Builtin(name.to_string()),
            Some((path, None)) if !path.trim().is_empty() => PluginSource::Path(path.to_string()),
            _ => continue,
        };
        if p.kind.is_some_and(|(k, _)| k == PluginKind::Provisioner) {
            out.push(PluginSpec {
                name: p.name.name.to_string(),
                kind: PluginKind::Provisioner,
                source,
                config: serde_json::Value::Null,
                grants: Default::default(),
                limits: Limits::default(),
            });
        }
    }
    out
}
