//! The pipelines of the deploy benchmarks: `n` `test.step` nodes in
//! `layers` layers, each after the first referring to ~3 nodes of earlier
//! layers (drawn from a fixed seed, so every run deploys the same graph).

#[path = "rng.rs"]
mod rng;
use rng::Rng;

/// A layered DAG; returns the pipeline text and each node's (delay, deps).
pub fn generate(n: usize, layers: usize, delays: bool) -> (String, Vec<(u64, Vec<usize>)>) {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let per_layer = n.div_ceil(layers);
    let mut text = String::from(
        "pipeline \"bench\"\nplugin t {\n  kind = \"provisioner\"\n  source = \"builtin:test\"\n}\nenvironment dev {}\n",
    );
    let mut nodes = Vec::new();
    for i in 0..n {
        let layer = i / per_layer;
        let delay = if delays { 10 + rng.below(91) as u64 } else { 0 };
        let mut deps = Vec::new();
        text.push_str(&format!("resource r{i} \"t.step\" {{\n  delay_ms = {delay}\n"));
        if layer > 0 {
            let earlier = layer * per_layer;
            for k in 0..3 {
                let d = rng.below(earlier);
                if !deps.contains(&d) {
                    deps.push(d);
                }
                text.push_str(&format!("  in{k} = r{d}.id\n"));
            }
        }
        text.push_str("}\n");
        nodes.push((delay, deps));
    }
    (text, nodes)
}

