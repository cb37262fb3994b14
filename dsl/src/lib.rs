//! The `.pipeline` language: the grammar (pest, `pipeline.pest`) with a
//! hand-written recognizer that reads well-formed files faster and builds
//! the same parse trees, a typed AST with spans, the checks, evaluation, and
//! compilation into a [`PipelineGraph`].
//!
//! A file goes through [`parser`] (source text -> [`ast::Module`], and the
//! syntax errors), then [`compile`](mod@compile) (every other check, the
//! graph, each environment resolved), and comes out a [`PipelineGraph`],
//! which [`render`] draws. [`eval`] evaluates expressions, for the compiler
//! and at deploy time; [`sensitive`] keeps sensitive values out of what is
//! shown; [`selection`] is what a targeted run takes of the graph;
//! [`type_schemas`] checks a compiled graph against the schemas its
//! provisioners give (which the caller hands in); every mistake is a
//! [`Diagnostic`]. [`format`] lays a file out canonically (`stackpipe fmt`).
//!
//! Pure: no I/O, no async, no wasm, no database. Callers hand in source text
//! and get back a graph or [`Diagnostics`].

pub mod approvers;
pub mod ast;
pub mod compile;
pub mod diagnostic;
pub mod eval;
mod excerpt;
pub mod format;
pub mod graph;
pub mod line_map;
mod par;
pub mod parser;
pub mod render;
pub mod selection;
pub mod sensitive;
pub mod service;
pub mod type_schemas;

pub use approvers::{ApprovalRule, Approver, Role};
pub use compile::{compile, CompileOptions, DEFAULT_ENVIRONMENT};
pub use diagnostic::{Code, Diagnostic, Diagnostics};
pub use graph::{
    CredentialsBinding, Dependency, EnvironmentPlan, FlowPolicy, Grants, Limits, OnFailure, PipelineGraph, PluginSource,
    PluginSpec, ResourceNode, Wiring,
};
pub use selection::UnknownTarget;
pub use service::{ArtifactRef, BuildSpec, CommitStatusSpec, PullRequests, SecretBinding, ServiceSpec};
pub use sensitive::{resource_references, SensitiveValues};
pub use type_schemas::{check_types, ProvisionerTypes, TypeCheck, TypeSchema, TypeSchemas, Unchecked};

/// Parses, checks and compiles one file. `name` is how diagnostics name the
/// file (its path, usually).
pub fn load(name: &str, source: &str, opts: &CompileOptions) -> Result<PipelineGraph, Diagnostics> {
    let (module, mut diags) = parser::parse(source);
    // Keep checking what did parse, so one run reports as much as it can;
    // but a file that did not fully parse cannot be compiled into a graph.
    match compile::compile_owned(module, opts) {
        Ok(graph) if diags.is_empty() => Ok(graph),
        Ok(_) => Err(Diagnostics::new(name, source, diags)),
        Err(more) => {
            diags.extend(more);
            Err(Diagnostics::new(name, source, diags))
        }
    }
}
