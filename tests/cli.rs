//! The `stackpipe` binary, run as a user would: exit codes, summaries,
//! the three graph formats, and help on every command.

use std::process::{Command, Output};

fn stackpipe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stackpipe"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .env("STACKPIPE_CACHE_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-component-cache"))
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_prints_a_one_line_summary() {
    let o = stackpipe(&["check", "examples/aws-env.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "ok: 12 resources, 3 environments, 5 levels\n");
    let o = stackpipe(&["check", "examples/local-files.pipeline"]);
    assert_eq!(stdout(&o), "ok: 3 resources, 2 environments, 3 levels\n");
}

#[test]
fn check_one_environment_with_vars() {
    let o = stackpipe(&["check", "examples/aws-env.pipeline", "--env", "prod", "--var", "db_size=200"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "ok: 12 resources, 1 environment, 5 levels\n");
}

#[test]
fn invalid_input_exits_2_with_diagnostics_on_stderr() {
    let o = stackpipe(&["check", "examples/aws-env.pipeline", "--var", "db_size=lots"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("--var db_size=lots: not a number"), "{}", stderr(&o));

    let o = stackpipe(&["check", "examples/aws-env.pipeline", "--env", "stage"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--env stage: no such environment"), "{}", stderr(&o));
    assert!(stderr(&o).contains("did you mean `staging`?"), "{}", stderr(&o));

    let o = stackpipe(&["check", "no/such/file.pipeline"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("error: cannot read no/such/file.pipeline"), "{}", stderr(&o));

    let o = stackpipe(&["check", "examples/aws-env.pipeline", "--var", "novalue"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("expected NAME=VALUE"), "{}", stderr(&o));
}

#[test]
fn graph_text() {
    let o = stackpipe(&["graph", "examples/aws-env.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    insta::assert_snapshot!("graph_text_aws_env", stdout(&o));
}

#[test]
fn graph_dot_is_graphviz_with_one_edge_per_line() {
    let o = stackpipe(&["graph", "examples/aws-env.pipeline", "--format", "dot"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("digraph \"aws-env\" {\n") && text.ends_with("}\n"));
    let edges: Vec<&str> = text.lines().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(edges.len(), 16);
    for e in &edges {
        let (a, b) = e.trim().trim_end_matches(';').split_once(" -> ").expect("an edge");
        assert!(a.starts_with('"') && a.ends_with('"') && b.starts_with('"') && b.ends_with('"'), "{e}");
        assert!(e.ends_with(';'));
    }
    assert!(edges.contains(&"  \"vpc\" -> \"public_a\";"));
    insta::assert_snapshot!("graph_dot_aws_env", text);
}

#[test]
fn graph_mermaid() {
    let o = stackpipe(&["graph", "examples/aws-env.pipeline", "--format", "mermaid"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("graph TD\n"));
    assert_eq!(text.lines().filter(|l| l.contains(" --> ")).count(), 16);
    insta::assert_snapshot!("graph_mermaid_aws_env", text);
}

#[test]
fn graph_does_not_need_var_values() {
    let dir = tempdir();
    let file = dir.join("needs-owner.pipeline");
    std::fs::write(
        &file,
        "var owner: string\nplugin t { kind = \"provisioner\" source = \"builtin:test\" }\nresource a \"t.step\" { o = var.owner }\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    assert_eq!(stackpipe(&["graph", path]).status.code(), Some(0));
    let o = stackpipe(&["check", path]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("var `owner` has no value"), "{}", stderr(&o));
    assert_eq!(stackpipe(&["check", path, "--var", "owner=me"]).status.code(), Some(0));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn every_command_has_help() {
    let o = stackpipe(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let top = stdout(&o);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   ")) // a wrapped description, not a command
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.contains(&"check".to_string()) && commands.contains(&"graph".to_string()), "{top}");
    for c in commands {
        let o = stackpipe(&[&c, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{c} --help");
        assert!(stdout(&o).contains("Usage: stackpipe"), "{c} --help");
    }
    // No arguments: help, and the invalid-input exit code.
    assert_eq!(stackpipe(&[]).status.code(), Some(2));
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stackpipe-cli-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn plugin_inspect_shows_world_exports_and_schemas() {
    let o = stackpipe(&["plugin", "inspect", "builtin:test"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("kind     provisioner"), "{text}");
    assert!(text.contains("world    stackpipe:plugin/provisioner-plugin@0.1.0"), "{text}");
    assert!(text.contains("stackpipe:plugin/provisioner@0.1.0: resource-types, validate, read, plan, apply, destroy"), "{text}");
    assert!(text.contains("test.step"), "{text}");
    assert!(text.contains("delay_ms"), "{text}");

    let o = stackpipe(&["plugin", "inspect", "builtin:protect-stateful", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(doc["kind"], "policy");
    assert_eq!(doc["exports"][0]["functions"], serde_json::json!(["evaluate"]));
}

#[test]
fn plugin_inspect_refuses_what_is_not_a_plugin() {
    let o = stackpipe(&["plugin", "inspect", "plugins/hostile/dist/not-wasm.wasm"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: plugin `not-wasm` (plugins/hostile/dist/not-wasm.wasm) is not a valid WebAssembly component: \
         the file does not start with the WebAssembly magic bytes `\\0asm`\n"
    );
    let o = stackpipe(&["plugin", "inspect", "builtin:nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown builtin `builtin:nope` (the builtins are: local, test, env, file, protect-stateful, aws)"));
}

/// The bash completions `stackpipe completions bash` prints, loaded into a
/// real bash and asked as a terminal asks them: commands, options, values.
#[test]
fn bash_completes_commands_options_and_values_from_the_script_stackpipe_prints() {
    let o = stackpipe(&["completions", "bash"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("stackpipe.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    let ask = |words: &[&str]| -> Vec<String> {
        let (cur, prev) = (words[words.len() - 1], words[words.len() - 2]);
        let words: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let line = format!(
            "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; _stackpipe stackpipe '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            words.join(" "),
            words.len() - 1
        );
        let out = Command::new("bash").args(["--norc", "--noprofile", "-c", &line]).output().expect("bash runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    };
    assert_eq!(ask(&["stackpipe", "dep"]), ["deploy"]);
    assert_eq!(ask(&["stackpipe", "deploy", "--no-l"]), ["--no-local-runner"]);
    let shells = ask(&["stackpipe", "completions", ""]);
    for shell in ["bash", "fish", "zsh"] {
        assert!(shells.iter().any(|s| s == shell), "{shells:?}");
    }
    for shell in ["zsh", "fish"] {
        let o = stackpipe(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&o.stdout).contains("runner"), "{shell}: every command is completed");
    }
}

/// `fmt` rewrites in place and names what it changed; `--check` changes
/// nothing and exits 1 naming the files; `--diff` shows a unified diff; a
/// file with syntax errors is reported (exit 2) and left as it is; `-`
/// formats stdin to stdout.
#[test]
fn fmt_rewrites_checks_and_diffs() {
    let dir = tempdir().join("fmt");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let messy = "resource a \"t.step\" {\nx=1\n    long_name = \"v\"\n}\n";
    let tidy = "resource a \"t.step\" {\n  x         = 1\n  long_name = \"v\"\n}\n";
    let broken = "resource a \"t.step\" {\n";
    std::fs::write(dir.join("a.pipeline"), messy).unwrap();
    std::fs::write(dir.join("ok.pipeline"), tidy).unwrap();
    std::fs::write(dir.join("sub/b.pipeline"), messy).unwrap();
    let d = dir.to_str().unwrap();

    let check = stackpipe(&["fmt", "--check", d]);
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    assert_eq!(stdout(&check), format!("{d}/a.pipeline\n"), "not recursive unless asked");
    let recursive = stackpipe(&["fmt", "--check", "-r", d]);
    assert_eq!(stdout(&recursive), format!("{d}/a.pipeline\n{d}/sub/b.pipeline\n"));
    let diff = stackpipe(&["fmt", "--check", "--diff", &format!("{d}/a.pipeline")]);
    insta::assert_snapshot!(stdout(&diff).replace(d, "DIR"), @r#"
    --- DIR/a.pipeline
    +++ DIR/a.pipeline (formatted)
    @@ -1,4 +1,4 @@
     resource a "t.step" {
    -x=1
    -    long_name = "v"
    +  x         = 1
    +  long_name = "v"
     }
    "#);
    assert_eq!(std::fs::read_to_string(dir.join("a.pipeline")).unwrap(), messy, "--check changes nothing");

    let rewrite = stackpipe(&["fmt", "-r", d]);
    assert_eq!(rewrite.status.code(), Some(0), "{}", stderr(&rewrite));
    assert_eq!(std::fs::read_to_string(dir.join("a.pipeline")).unwrap(), tidy);
    assert_eq!(std::fs::read_to_string(dir.join("sub/b.pipeline")).unwrap(), tidy);
    assert_eq!(stackpipe(&["fmt", "--check", "-r", d]).status.code(), Some(0));

    std::fs::write(dir.join("broken.pipeline"), broken).unwrap();
    let refused = stackpipe(&["fmt", d]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("stackpipe::syntax"), "{}", stderr(&refused));
    assert_eq!(std::fs::read_to_string(dir.join("broken.pipeline")).unwrap(), broken);

    let mut piped = Command::new(env!("CARGO_BIN_EXE_stackpipe"))
        .args(["fmt", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    piped.stdin.take().unwrap().write_all(messy.as_bytes()).unwrap();
    let out = piped.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), tidy);
    std::fs::remove_dir_all(dir).unwrap();
}

/// `check --format json`: one JSON object on stdout, every diagnostic with
/// its file, range, severity, code, message and help; `ok` when clean.
#[test]
fn check_reports_json() {
    let dir = tempdir().join("json");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.pipeline");
    std::fs::write(&file, "var size = 2\nresource a \"t.step\" {\n  x = var.sise\n}\n").unwrap();
    let f = file.to_str().unwrap();
    let o = stackpipe(&["check", f, "--format", "json"]);
    assert_eq!(o.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    let text = serde_json::to_string_pretty(&report).unwrap().replace(f, "FILE");
    insta::assert_snapshot!(text);

    let o = stackpipe(&["check", "examples/local-files.pipeline", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(report["ok"], true);
    assert_eq!(report["resources"], 3);
    assert_eq!(report["diagnostics"], serde_json::json!([]));
    std::fs::remove_dir_all(dir).unwrap();
}
