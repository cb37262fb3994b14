//! A keystroke in a 1,000-resource file: the whole file checked again, as
//! the server does on every change: parse, compile, index, and the checks
//! against the provisioner's schema (asked of the `test` plugin once,
//! before the measurement, as the server asks it once). The target is
//! under 50 ms.
//!
//!   cargo bench -p stackpipe-lsp --bench keystroke

use std::path::Path;

use stackpipe_lsp::analysis::Analysis;
use stackpipe_lsp::schemas::Schemas;

fn main() {
    divan::main();
}

/// A pipeline of `n` resources, each wired to the one before it.
fn pipeline(n: usize) -> String {
    let mut s = String::from(
        "pipeline \"big\"\n\nvar size: number = 2\n\nplugin t {\n  kind   = \"provisioner\"\n  source = \"builtin:test\"\n}\n\nenvironment dev {}\n\nenvironment prod {\n  after = dev\n  vars { size = 3 }\n}\n",
    );
    for i in 0..n {
        let input = if i == 0 {
            "var.size".to_string()
        } else {
            format!("r{}.id", i - 1)
        };
        s.push_str(&format!(
            "\n# Resource number {i}.\nresource r{i} \"t.step\" {{\n  input = {input}\n  name  = \"r{i}-${{env.name}}\"\n  tags  = {{ index = {i}, size = var.size }}\n}}\n"
        ));
    }
    s
}

#[divan::bench(args = [1000])]
fn keystroke(bencher: divan::Bencher, n: usize) {
    let text = pipeline(n);
    let mut schemas = Schemas::start(true);
    // The first check asks the plugin for its schemas; its answer is in
    // before anything is measured.
    Analysis::new(text.clone(), Path::new("."), &mut schemas);
    let (key, known) = schemas.answers.recv_timeout(std::time::Duration::from_secs(120)).expect("the test plugin's schemas");
    assert!(matches!(known, stackpipe_lsp::schemas::Known::Types(_)), "{known:?}");
    schemas.answered(key, known);
    // The edit: one character typed into the middle of the file.
    let at = text.len() / 2;
    let at = text[at..].find("input").map_or(at, |i| at + i);
    bencher.bench_local(|| {
        let mut edited = text.clone();
        edited.insert(at, 'x');
        let analysis = Analysis::new(edited, Path::new("."), &mut schemas);
        divan::black_box(analysis.diagnostics.len())
    });
}
