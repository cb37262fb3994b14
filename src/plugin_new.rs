//! `stackpipe plugin new NAME --kind K`: a plugin crate to start from. The
//! crate is its own cargo workspace with the guest SDK vendored beside it
//! (`sdk/`, WIT included), so it builds anywhere without a checkout of
//! stackpipe. The templates live with the SDK
//! (`plugins/sdk/templates/<kind>/`), and both are built into the binary.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use include_dir::{include_dir, Dir, DirEntry};

use crate::{EXIT_FAILED, EXIT_INVALID};

/// The guest SDK crate and its templates, as they are in this checkout.
static SDK: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/plugins/sdk");

#[derive(Args)]
pub struct NewArgs {
    /// The plugin's name: lower-case letters, digits and dashes (`my-dns`).
    /// It names the crate, the directory and the plugin in the example pipeline.
    pub name: String,
    /// What the plugin is.
    #[arg(long, value_enum, default_value_t = Kind::Provisioner)]
    pub kind: Kind,
    /// Where to create it (default: `./NAME`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Provisioner,
    Credentials,
    Policy,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Provisioner => "provisioner",
            Kind::Credentials => "credentials",
            Kind::Policy => "policy",
        }
    }
}

pub fn new(a: NewArgs) -> Result<(), u8> {
    if let Err(why) = check_name(&a.name) {
        eprintln!("error: `{}` cannot name a plugin: {why}", a.name);
        return Err(EXIT_INVALID);
    }
    let dir = a.dir.clone().unwrap_or_else(|| PathBuf::from(&a.name));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        eprintln!("error: {} already exists and is not empty", dir.display());
        return Err(EXIT_INVALID);
    }
    let Some(templates) = SDK.get_dir(format!("templates/{}", a.kind.name())) else {
        eprintln!("error: this stackpipe has no {} template", a.kind.name());
        return Err(EXIT_FAILED);
    };
    let vars = Vars { name: a.name.clone(), krate: a.name.replace('-', "_"), sdk_version: sdk_version() };
    let written = scaffold(templates, &dir, &vars).map_err(|e| {
        eprintln!("error: cannot write the plugin into {}: {e}", dir.display());
        EXIT_FAILED
    })?;
    println!("created {} plugin `{}` in {}", a.kind.name(), a.name, dir.display());
    for f in &written {
        println!("  {}", f.display());
    }
    println!("  sdk/  (the guest SDK and the WIT, vendored)");
    // Its dependencies resolved and fetched now, once, into Cargo.lock and
    // cargo's cache: `plugin build` then needs nothing it has not fetched.
    match fetch(&dir) {
        Ok(()) => println!("  Cargo.lock  (its dependencies, resolved and fetched)"),
        Err(why) => eprintln!("warning: cannot fetch the plugin's dependencies now ({why}); `stackpipe plugin build` will"),
    }
    println!();
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  stackpipe plugin build        # cargo build --release --target wasm32-wasip2 -> dist/{}.wasm", vars.krate);
    println!("  stackpipe deploy example.pipeline");
    Ok(())
}

/// `cargo fetch` in the new crate: writes its Cargo.lock and downloads
/// what it names, for the plugin's own target.
fn fetch(dir: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["fetch", "--quiet", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(err.lines().find(|l| l.starts_with("error")).unwrap_or("cargo fetch failed").trim().to_string())
}

/// The values the templates' `{{...}}` placeholders stand for.
struct Vars {
    /// `{{name}}`: the plugin's name, kebab-case.
    name: String,
    /// `{{crate}}`: the crate's name as Rust code spells it.
    krate: String,
    /// `{{sdk_version}}`.
    sdk_version: String,
}

impl Vars {
    fn render(&self, text: &str) -> String {
        text.replace("{{name}}", &self.name).replace("{{crate}}", &self.krate).replace("{{sdk_version}}", &self.sdk_version)
    }
}

/// Writes the kind's templates (without `.tmpl`) and the SDK (without its
/// templates) under `dir`; the template files written, relative to `dir`.
fn scaffold(templates: &Dir<'_>, dir: &Path, vars: &Vars) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let base = templates.path();
    for file in files(templates) {
        let rel = file.path().strip_prefix(base).unwrap_or(file.path());
        let rel = match rel.to_str().and_then(|s| s.strip_suffix(".tmpl")) {
            Some(stripped) => PathBuf::from(stripped),
            None => rel.to_path_buf(),
        };
        let text = String::from_utf8_lossy(file.contents());
        write(&dir.join(&rel), vars.render(&text).as_bytes())?;
        written.push(rel);
    }
    write(&dir.join(".gitignore"), b"/target\n/dist\n")?;
    for file in files(&SDK) {
        let rel = file.path();
        if rel.starts_with("templates") || rel.starts_with("target") {
            continue;
        }
        write(&dir.join("sdk").join(rel), file.contents())?;
    }
    written.sort();
    Ok(written)
}

fn files<'a>(dir: &'a Dir<'a>) -> Vec<&'a include_dir::File<'a>> {
    let mut out = Vec::new();
    for entry in dir.entries() {
        match entry {
            DirEntry::Dir(d) => out.extend(files(d)),
            DirEntry::File(f) => out.push(f),
        }
    }
    out
}

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes)
}

/// The SDK's version, from its Cargo.toml.
fn sdk_version() -> String {
    SDK.get_file("Cargo.toml")
        .and_then(|f| f.contents_utf8())
        .and_then(|t| t.lines().find_map(|l| l.trim().strip_prefix("version = ").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "0.1.0".into())
}

/// A plugin name: it becomes a crate, a directory and a pipeline identifier.
fn check_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
        return Err("start it with a lower-case letter");
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err("use lower-case letters, digits and dashes");
    }
    if name.ends_with('-') || name.contains("--") {
        return Err("dashes go between letters or digits");
    }
    if name.len() > 40 {
        return Err("keep it to 40 characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_kebab_case() {
        for good in ["dns", "my-dns", "s3-bucket2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "My", "1dns", "my_dns", "dns-", "a--b", "dns.x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn placeholders_are_filled() {
        let v = Vars { name: "my-dns".into(), krate: "my_dns".into(), sdk_version: "0.1.0".into() };
        assert_eq!(v.render("{{name}} {{crate}} {{sdk_version}}"), "my-dns my_dns 0.1.0");
    }

    #[test]
    fn every_kind_has_a_template_and_the_sdk_has_its_wit() {
        for kind in [Kind::Provisioner, Kind::Credentials, Kind::Policy] {
            let t = SDK.get_dir(format!("templates/{}", kind.name()));
            assert!(t.is_some_and(|t| t.get_file(format!("templates/{}/Cargo.toml.tmpl", kind.name())).is_some()), "{}", kind.name());
        }
        assert!(SDK.get_file("wit/plugin.wit").and_then(|f| f.contents_utf8()).is_some_and(|w| w.contains("package stackpipe:plugin")));
    }
}
