//! Parse + check + compile of a generated pipeline: 10,000 resources in a
//! random layered DAG, ~3 references each. Target: <= 50 ms median (release).
//!
//!   cargo bench -p stackpipe-dsl --bench compile

use stackpipe_dsl::{load, CompileOptions};

fn main() {
    divan::main();
}

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

/// `resources` resources in `layers` layers; each resource past the first
/// layer takes three references to resources of earlier layers.
pub fn generate(resources: usize, layers: usize) -> String {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let per_layer = resources.div_ceil(layers);
    let mut out = String::with_capacity(resources * 140);
    out.push_str("pipeline \"generated\"\n");
    out.push_str("var region: string = \"us-east-1\"\nvar size: number = 3\n");
    out.push_str("plugin t { kind = \"provisioner\" source = \"builtin:test\" }\n");
    out.push_str("environment dev {}\nenvironment prod { after = dev vars { size = 5 } }\n");
    for i in 0..resources {
        let layer = i / per_layer;
        out.push_str(&format!("resource r{i} \"t.step\" {{\n"));
        out.push_str(&format!("  name = \"r{i}-${{env.name}}\"\n  size = var.size\n"));
        if layer > 0 {
            let earlier = layer * per_layer;
            let (a, b, c) = (rng.below(earlier), rng.below(earlier), rng.below(earlier));
            out.push_str(&format!("  input_a = r{a}.id\n  input_b = \"${{r{b}.id}}-x\"\n  inputs = [r{c}.id]\n"));
        }
        out.push_str("}\n");
    }
    out
}

#[divan::bench(sample_count = 40, sample_size = 1)]
fn parse_check_compile_10k(bencher: divan::Bencher) {
    let src = generate(10_000, 40);
    let opts = CompileOptions { default_name: "generated".into(), require_values: true, ..Default::default() };
    bencher.bench(|| {
        let g = load("generated.pipeline", divan::black_box(&src), &opts).expect("the generated pipeline compiles");
        assert_eq!(g.len(), 10_000);
        g
    });
}

#[divan::bench(sample_count = 40, sample_size = 1)]
fn parse_only_10k(bencher: divan::Bencher) {
    let src = generate(10_000, 40);
    bencher.bench(|| stackpipe_dsl::parser::parse(divan::black_box(&src)));
}

#[divan::bench(sample_count = 40, sample_size = 1)]
fn check_compile_only_10k(bencher: divan::Bencher) {
    let src = generate(10_000, 40);
    let opts = CompileOptions { default_name: "generated".into(), require_values: true, ..Default::default() };
    let (module, _) = stackpipe_dsl::parser::parse(&src);
    bencher.bench(|| stackpipe_dsl::compile(divan::black_box(&module), &opts).expect("compiles"));
}
