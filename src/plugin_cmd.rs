//! `stackpipe plugin ...`: looking at plugin components (and, in
//! `plugin_new` and `plugin_build`, making them).

use std::path::Path;

use clap::{Args, Subcommand};
use stackpipe_dsl::PluginSource;
use stackpipe_runtime::plugin::{inspect, ArtifactCache, CacheOutcome, PluginHost};

use crate::{EXIT_FAILED, EXIT_INVALID};

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Show a component's world, exports, imports, resource types and their schemas.
    Inspect(InspectArgs),
    /// Create a plugin crate (guest SDK vendored) and an example pipeline that uses it.
    New(crate::plugin_new::NewArgs),
    /// Build a plugin crate into a component; print its path, size and world.
    Build(crate::plugin_build::BuildArgs),
}

#[derive(Args)]
pub struct InspectArgs {
    /// A `.wasm` component, or `builtin:<name>`.
    pub source: String,
    /// Print the description as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: PluginCommand) -> Result<(), u8> {
    match cmd {
        PluginCommand::Inspect(a) => inspect_cmd(a),
        PluginCommand::New(a) => crate::plugin_new::new(a),
        PluginCommand::Build(a) => crate::plugin_build::build(a),
    }
}

fn inspect_cmd(a: InspectArgs) -> Result<(), u8> {
    let source = match a.source.strip_prefix("builtin:") {
        Some(name) => PluginSource::Builtin(name.to_string()),
        None => PluginSource::Path(a.source.clone()),
    };
    let name = match &source {
        PluginSource::Builtin(n) => n.clone(),
        PluginSource::Path(p) => Path::new(p).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    let fail = |e: &dyn std::fmt::Display, code: u8| {
        eprintln!("error: {e}");
        code
    };
    let bytes = PluginHost::read_source(&name, &source, Path::new(".")).map_err(|e| fail(&e, EXIT_INVALID))?;
    let host = PluginHost::new(ArtifactCache::from_env()).map_err(|e| fail(&e, EXIT_FAILED))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| fail(&e, EXIT_FAILED))?;
    let info = rt.block_on(inspect(&host, &name, &a.source, &bytes)).map_err(|e| fail(&e, EXIT_INVALID))?;
    if a.json {
        let types: Vec<_> = info
            .resource_types
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "description": t.description,
                    "attributes": parse_or_text(&t.attributes_schema),
                    "outputs": parse_or_text(&t.outputs_schema),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "source": a.source,
            "kind": info.kind.name(),
            "world": info.world,
            "sha256": info.digest,
            "size": info.size,
            "cache": cache_name(info.cache),
            "load_ms": info.load_ms,
            "exports": info.exports.iter().map(|(e, fs)| serde_json::json!({ "name": e, "functions": fs })).collect::<Vec<_>>(),
            "imports": info.imports,
            "resource_types": types,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    println!("{}", a.source);
    println!("  kind     {}", info.kind.name());
    println!("  world    stackpipe:plugin/{}@0.1.0", info.world);
    println!("  size     {} bytes", info.size);
    println!("  sha256   {}", info.digest);
    println!("  compiled {} ({} ms)", if info.cache == CacheOutcome::Hit { "earlier, from the cache" } else { "now" }, info.load_ms);
    println!();
    println!("exports");
    for (e, fs) in &info.exports {
        println!("  {e}: {}", fs.join(", "));
    }
    println!();
    println!("imports");
    for i in &info.imports {
        println!("  {i}");
    }
    if !info.resource_types.is_empty() {
        println!();
        println!("resource types");
        for t in &info.resource_types {
            println!();
            println!("  {}.{} — {}", name, t.name, t.description);
            println!("    attributes {}", pretty_schema(&t.attributes_schema));
            println!("    outputs    {}", pretty_schema(&t.outputs_schema));
        }
    }
    Ok(())
}

fn cache_name(c: CacheOutcome) -> &'static str {
    match c {
        CacheOutcome::Hit => "hit",
        CacheOutcome::Compiled => "compiled",
    }
}

fn parse_or_text(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.to_string()))
}

/// A JSON Schema, one property per line: `name: type (required) — description`.
fn pretty_schema(schema: &str) -> String {
    let v = parse_or_text(schema);
    let Some(props) = v.get("properties").and_then(|p| p.as_object()) else {
        return schema.to_string();
    };
    let required: Vec<&str> =
        v.get("required").and_then(|r| r.as_array()).map(|r| r.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
    let mut out = String::new();
    for (name, p) in props {
        let ty = p.get("type").map(|t| match t {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let req = if required.contains(&name.as_str()) { ", required" } else { "" };
        let desc = p.get("description").and_then(|d| d.as_str()).map(|d| format!(" — {d}")).unwrap_or_default();
        out.push_str(&format!("\n      {name}: {}{req}{desc}", ty.unwrap_or_else(|| "any".into())));
    }
    out
}
