//! `plugin new` -> `plugin build` -> `deploy`, end to end: the scaffolded
//! crates are built by cargo into real components and their example
//! pipelines deployed by the real binary.
//!
//! Cargo's target directory for the scaffolds is shared (target/scaffolds),
//! so only the first build compiles the SDK's dependencies.

use std::path::Path;
use std::process::{Command, Output};

fn stackpipe(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stackpipe"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("STACKPIPE_CACHE_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-component-cache"))
        .env("CARGO_TARGET_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/target/scaffolds"))
        .output()
        .expect("the binary runs")
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn every_kind_of_scaffold_builds_and_its_example_deploys() {
    let root = tempfile::tempdir().expect("a temp dir");
    for (kind, world) in [
        ("provisioner", "stackpipe:plugin/provisioner-plugin@0.1.0"),
        ("policy", "stackpipe:plugin/policy-plugin@0.1.0"),
        ("credentials", "stackpipe:plugin/credentials-plugin@0.1.0"),
    ] {
        let name = format!("my-{kind}");
        let created = ok(&stackpipe(root.path(), &["plugin", "new", &name, "--kind", kind]));
        assert!(created.contains(&format!("created {kind} plugin `{name}`")), "{created}");
        let dir = root.path().join(&name);
        for f in ["Cargo.toml", "Cargo.lock", "src/lib.rs", "example.pipeline", "README.md", "sdk/Cargo.toml", "sdk/wit/plugin.wit"] {
            assert!(dir.join(f).is_file(), "{kind}: {f} is missing");
        }
        // The example is in `stackpipe fmt`'s layout, as every pipeline we write.
        ok(&stackpipe(&dir, &["fmt", "--check", "example.pipeline"]));

        let built = ok(&stackpipe(&dir, &["plugin", "build", "--json"]));
        let doc: serde_json::Value = serde_json::from_str(&built).expect("JSON");
        assert_eq!(doc["world"], world, "{doc}");
        assert_eq!(doc["kind"], kind, "{doc}");
        let file = format!("dist/{}.wasm", name.replace('-', "_"));
        assert!(dir.join(&file).is_file(), "{kind}: no {file}");
        if kind == "provisioner" {
            assert!(doc["size"].as_u64().is_some_and(|s| s <= 300 * 1024), "a Rust provisioner stays small: {doc}");
        }

        let deployed = ok(&stackpipe(&dir, &["deploy", "example.pipeline", "--yes"]));
        assert!(deployed.contains("succeeded"), "{kind}: {deployed}");
        // Deployed: a second deploy has nothing to do.
        let plan = ok(&stackpipe(&dir, &["plan", "example.pipeline"]));
        assert!(plan.contains("No changes."), "{kind}: {plan}");
    }
    // A name that cannot be a crate, a directory and an identifier at once.
    let o = stackpipe(root.path(), &["plugin", "new", "My_Plugin"]);
    assert_eq!(o.status.code(), Some(2));
    // An existing directory is not overwritten.
    let o = stackpipe(root.path(), &["plugin", "new", "my-policy", "--kind", "policy"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
}
