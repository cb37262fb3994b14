//! Text renderings of a compiled graph: a plain listing by level, Graphviz
//! dot, and a mermaid flowchart.

use std::fmt::Write;

use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::graph::PipelineGraph;
use crate::service::{PullRequests, ServiceSpec};

/// Nodes grouped by level, each with what it depends on and why.
pub fn text(g: &PipelineGraph) -> String {
    let mut out = String::new();
    let n = g.len();
    let _ = writeln!(
        out,
        "pipeline {}: {} resource{}, {} level{}",
        g.name,
        n,
        plural(n),
        g.level_count(),
        plural(g.level_count())
    );
    let width = g.graph.node_weights().map(|r| r.name.len()).max().unwrap_or(0);
    let type_width = g.graph.node_weights().map(|r| r.type_name().len()).max().unwrap_or(0);
    for (level, nodes) in g.levels().iter().enumerate() {
        let _ = writeln!(out, "\nlevel {level}");
        for &i in nodes {
            let r = g.node(i);
            let mut inputs: Vec<String> = Vec::new();
            // The edges into `i`, in the order of the nodes they come from
            // (the compiler makes one edge from a node to another, at most).
            let mut edges: Vec<_> = g.graph.edges_directed(i, Direction::Incoming).collect();
            edges.sort_by_key(|e| e.source());
            for e in edges {
                let dep = e.weight();
                let from = &g.node(e.source()).name;
                let mut wires: Vec<String> =
                    dep.wiring.iter().map(|w| format!("{}.{} -> {}", from, w.output, w.attribute)).collect();
                wires.dedup();
                if dep.explicit.is_some() && wires.is_empty() {
                    wires.push(format!("{from} (depends_on)"));
                }
                inputs.extend(wires);
            }
            let gate = if r.gate_after { "  [gate after]" } else { "" };
            let line = format!("  {:width$}  {:type_width$}", r.name, r.type_name());
            if inputs.is_empty() {
                let _ = writeln!(out, "{}{gate}", line.trim_end());
            } else {
                let _ = writeln!(out, "{line}  <- {}{gate}", inputs.join(", "));
            }
        }
    }
    if !g.all_environments.is_empty() {
        let _ = writeln!(out, "\nenvironments: {}", g.all_environments.join(" -> "));
    }
    if !g.services.is_empty() {
        let _ = writeln!(out, "\nservices");
        let width = g.services.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in &g.services {
            let _ = writeln!(out, "  {:width$}  {}  {}", s.name, s.repo, service_triggers(s));
        }
    }
    out
}

/// What starts a service's pipeline, and what it does, in a few words:
/// `on main; tags v*; pull requests (deploy); poll 30s; builds only`.
fn service_triggers(s: &ServiceSpec) -> String {
    if !s.enabled {
        return "disabled".into();
    }
    let mut parts = vec![match s.branches.as_slice() {
        [] => "on the default branch".to_string(),
        b => format!("on {}", b.join(", ")),
    }];
    if !s.tags.is_empty() {
        parts.push(format!("tags {}", s.tags.join(", ")));
    }
    if s.pull_requests != PullRequests::Off {
        parts.push(format!("pull requests ({})", s.pull_requests.name()));
    }
    if !s.paths.is_empty() {
        parts.push(format!("paths {}", s.paths.join(", ")));
    }
    if let Some(poll) = s.poll_s {
        parts.push(format!("poll {}", duration(poll)));
    }
    if !s.deploys {
        parts.push("builds only".into());
    }
    parts.join("; ")
}

/// Seconds as a service writes a duration: `1h30m`, `90s` as `1m30s`.
fn duration(mut secs: u64) -> String {
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size || (secs == 0 && unit == "s" && out.is_empty()) {
            let _ = write!(out, "{}{unit}", secs / size);
            secs %= size;
        }
    }
    out
}

/// Graphviz: one `"a" -> "b";` line per dependency edge, nodes ranked by level.
pub fn dot(g: &PipelineGraph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(&g.name));
    let _ = writeln!(out, "  rankdir=TB;");
    let _ = writeln!(out, "  node [shape=box, fontname=\"Helvetica\"];");
    for (level, nodes) in g.levels().iter().enumerate() {
        let _ = writeln!(out, "  subgraph level_{level} {{");
        let _ = writeln!(out, "    rank=same;");
        for &i in nodes {
            let r = g.node(i);
            let label = format!("{}\\n{}", escape(&r.name), escape(&r.type_name()));
            let style = if r.gate_after { ", peripheries=2" } else { "" };
            let _ = writeln!(out, "    {} [label=\"{label}\"{style}];", quote(&r.name));
        }
        let _ = writeln!(out, "  }}");
    }
    for &i in g.deploy_order() {
        for d in g.dependents(i) {
            let _ = writeln!(out, "  {} -> {};", quote(&g.node(i).name), quote(&g.node(d).name));
        }
    }
    out.push_str("}\n");
    out
}

/// A mermaid `graph TD` flowchart. Node ids are prefixed so that names
/// mermaid reserves (`end`, say) cannot break it.
pub fn mermaid(g: &PipelineGraph) -> String {
    let id = |name: &str| {
        let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        format!("r_{safe}")
    };
    let mut out = String::from("graph TD\n");
    for &i in g.deploy_order() {
        let r = g.node(i);
        // A node gate as text and dot mark it: in words, and by shape (a
        // double-bordered subroutine box).
        let gate = if r.gate_after { "<br/>gate after" } else { "" };
        let label = format!("{}<br/>{}{gate}", r.name, r.type_name()).replace('"', "#quot;");
        let (open, close) = if r.gate_after { ("[[", "]]") } else { ("[", "]") };
        let _ = writeln!(out, "  {}{open}\"{label}\"{close}", id(&r.name));
    }
    for &i in g.deploy_order() {
        for d in g.dependents(i) {
            let _ = writeln!(out, "  {} --> {}", id(&g.node(i).name), id(&g.node(d).name));
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn quote(s: &str) -> String {
    format!("\"{}\"", escape(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_listed_with_their_triggers() {
        let src = r#"
plugin t { kind = "provisioner" source = "builtin:test" }
resource r "t.step" {}
service "api" {
  repo = "https://x/api.git"
  branches = ["main"]
  tags = ["v*"]
  pull_requests = "build"
  poll = "90s"
  deploys = false
  build {
    command = ["make"]
    artifact = "dist"
  }
}
service "web-frontend" {
  repo = "../web"
  build {
    command = ["make"]
    artifact = "dist"
  }
}
service "off" {
  repo = "../off"
  enabled = false
  build {
    command = ["make"]
    artifact = "dist"
  }
}
"#;
        let g = crate::load("t.pipeline", src, &Default::default()).expect("compiles");
        let text = text(&g);
        let listed = text.split("\nservices\n").nth(1).expect("a services section");
        assert_eq!(
            listed,
            "  api           https://x/api.git  on main; tags v*; pull requests (build); poll 1m30s; builds only\n\
             \x20 web-frontend  ../web  on the default branch\n\
             \x20 off           ../off  disabled\n"
        );
        assert_eq!((duration(0), duration(3600), duration(5400), duration(5)), ("0s".into(), "1h".into(), "1h30m".into(), "5s".into()));
    }
}
