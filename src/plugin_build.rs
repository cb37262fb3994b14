//! `stackpipe plugin build [DIR]`: builds a plugin crate into a component
//! (`cargo build --release --target wasm32-wasip2`, adding the target with
//! rustup when it is missing) and puts it at `DIR/dist/<crate>.wasm`, where
//! pipelines find it whatever cargo's target directory is. The copy is
//! replaced in one rename, so `stackpipe watch` never loads half a file.
//! Then it loads the component the way a run would and says what it is:
//! its path, size and world. Loading also compiles it into the artifact
//! cache, so the first deploy does not pay for that.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;
use serde_json::Value;
use stackpipe_runtime::plugin::{inspect, ArtifactCache, PluginHost};

use crate::{EXIT_FAILED, EXIT_INVALID};

const TARGET: &str = "wasm32-wasip2";

#[derive(Args)]
pub struct BuildArgs {
    /// The plugin crate (default: the current directory).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Print what was built as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn build(a: BuildArgs) -> Result<(), u8> {
    let manifest = a.dir.join("Cargo.toml");
    if !manifest.is_file() {
        eprintln!("error: {} is not a plugin crate: it has no Cargo.toml", a.dir.display());
        return Err(EXIT_INVALID);
    }
    let (lib, target_dir) = component_target(&manifest)?;
    ensure_target();
    let status = Command::new(cargo())
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(&manifest)
        .status()
        .map_err(|e| {
            eprintln!("error: cannot run cargo: {e}");
            EXIT_FAILED
        })?;
    if !status.success() {
        eprintln!("error: the build failed (cargo's messages are above)");
        return Err(EXIT_FAILED);
    }
    let file = format!("{}.wasm", lib.replace('-', "_"));
    let built = target_dir.join(TARGET).join("release").join(&file);
    let bytes = std::fs::read(&built).map_err(|e| {
        eprintln!("error: cargo built no component at {}: {e}", built.display());
        EXIT_FAILED
    })?;
    let path = a.dir.join("dist").join(&file);
    place(&path, &bytes).map_err(|e| {
        eprintln!("error: cannot write {}: {e}", path.display());
        EXIT_FAILED
    })?;
    let host = PluginHost::new(ArtifactCache::from_env()).map_err(|e| {
        eprintln!("error: cannot start the plugin host: {e:#}");
        EXIT_FAILED
    })?;
    let rt = crate::run_cmd::runtime()?;
    let shown = path.display().to_string();
    let info = rt.block_on(inspect(&host, &lib, &shown, &bytes)).map_err(|e| {
        eprintln!("error: the build is not a stackpipe plugin: {e}");
        EXIT_FAILED
    })?;
    let world = format!("stackpipe:plugin/{}@0.1.0", info.world);
    let types: Vec<String> = info.resource_types.iter().map(|t| t.name.clone()).collect();
    if a.json {
        let doc = serde_json::json!({
            "path": path, "size": info.size, "kind": info.kind.name(), "world": world,
            "sha256": info.digest, "resource_types": types,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        println!("built {}", path.display());
        println!("  size   {} bytes ({:.1} KB)", info.size, info.size as f64 / 1024.0);
        println!("  world  {world}");
        if !types.is_empty() {
            println!("  types  {}", types.join(", "));
        }
    }
    Ok(())
}

/// Writes `bytes` as `path` in one rename.
fn place(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The crate's component library name and cargo's target directory.
fn component_target(manifest: &Path) -> Result<(String, PathBuf), u8> {
    let out = Command::new(cargo())
        .args(["metadata", "--no-deps", "--format-version", "1", "--manifest-path"])
        .arg(manifest)
        .output()
        .map_err(|e| {
            eprintln!("error: cannot run cargo: {e}");
            EXIT_FAILED
        })?;
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        eprintln!("error: cargo cannot read {}", manifest.display());
        return Err(EXIT_INVALID);
    }
    let meta: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        eprintln!("error: cargo metadata said something unexpected: {e}");
        EXIT_FAILED
    })?;
    let wanted = std::fs::canonicalize(manifest).unwrap_or_else(|_| manifest.to_path_buf());
    let package = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(wanted.as_path()));
    let lib = package
        .and_then(|p| p["targets"].as_array())
        .into_iter()
        .flatten()
        .find(|t| t["crate_types"].as_array().is_some_and(|c| c.iter().any(|c| c == "cdylib")))
        .and_then(|t| t["name"].as_str());
    let Some(lib) = lib else {
        eprintln!(
            "error: {} builds no component: a plugin crate has `[lib] crate-type = [\"cdylib\"]` (`stackpipe plugin new` makes one)",
            manifest.display()
        );
        return Err(EXIT_INVALID);
    };
    let target_dir = meta["target_directory"].as_str().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    Ok((lib.to_string(), target_dir))
}

/// Adds the wasm target with rustup when rustup is there and the target is
/// not; without rustup, cargo's own error says what is missing.
fn ensure_target() {
    let Ok(out) = Command::new("rustup").args(["target", "list", "--installed"]).output() else { return };
    if !out.status.success() || String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == TARGET) {
        return;
    }
    eprintln!("adding the {TARGET} target (rustup target add {TARGET})");
    let added = Command::new("rustup").args(["target", "add", TARGET]).status();
    if !added.is_ok_and(|s| s.success()) {
        eprintln!("warning: `rustup target add {TARGET}` failed; the build will say what is missing");
    }
}
