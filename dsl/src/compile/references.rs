//! The checks of references and calls: what each expression refers to
//! (a var, `env.name`, `pipeline.name`, an output of a resource, a build's
//! artifact `service.NAME.artifact.*`) must exist
//! and be known where the expression stands ([`Place`]), and each function
//! called must exist and be given the right number of arguments. Checking a
//! resource's attributes also finds its wiring, and what each environment
//! will need to know about them ([`Facts`]).

use std::fmt;

use petgraph::graph::NodeIndex;

use crate::ast::*;
use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::eval;
use crate::graph::Wiring;

use super::Compiler;

/// Where an expression stands decides what it may refer to.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Place {
    /// A resource attribute or an output: anything, including resource outputs.
    Wired,
    /// Known before anything is applied (plugin config, flow, vars, gates):
    /// vars, `env.name`, `pipeline.name`.
    Static,
    /// A var's default: constants only.
    Constant,
}

/// What an environment needs to know about an attribute before evaluating
/// it, learnt while its references are checked: the expression is walked
/// once, rather than again in every environment.
#[derive(Clone, Copy)]
pub(super) struct Facts {
    /// See [`eval::waits_first_on_output`]: no environment can evaluate it.
    pub(super) waits_first_on_output: bool,
    /// See [`varies_by_environment`].
    pub(super) varies_by_environment: bool,
    /// See [`eval::cannot_fail`]: evaluating it would report nothing.
    pub(super) cannot_fail: bool,
}

/// What [`Compiler::check_attributes`] finds in one resource.
pub(super) struct CheckedAttributes {
    /// Each sound reference to an output, with the node it comes from, in
    /// the order written.
    pub(super) wiring: Vec<(NodeIndex, Wiring)>,
    /// The facts of each attribute.
    pub(super) facts: Vec<Facts>,
    /// The mistakes in the references of an attribute (by index), if any.
    pub(super) mistakes: Vec<(usize, Vec<Diagnostic>)>,
}

impl Facts {
    /// The facts of `e`.
    fn of(e: &Expr) -> Facts {
        Facts {
            waits_first_on_output: eval::waits_first_on_output(e),
            varies_by_environment: varies_by_environment(e),
            cannot_fail: eval::cannot_fail(e),
        }
    }
}

impl<'a> Compiler<'a> {
    /// Checks every reference and call in `e`; false if any is wrong.
    pub(super) fn refs(&mut self, e: &Expr, place: Place, owner: impl fmt::Display) -> bool {
        let found = self.check_refs(e, place, owner, |_, _, _| {});
        let ok = found.is_empty();
        if !ok {
            self.bad.insert(e.span);
        }
        self.diags.extend(found);
        ok
    }

    /// The references of every attribute of `r` checked: what they take
    /// from other resources, and the mistakes (see [`Self::refs`]).
    pub(super) fn check_attributes(&self, r: &ResourceDecl) -> CheckedAttributes {
        let mut checked =
            CheckedAttributes { wiring: Vec::new(), facts: Vec::with_capacity(r.attributes.len()), mistakes: Vec::new() };
        for (i, attr) in r.attributes.iter().enumerate() {
            checked.facts.push(Facts::of(&attr.value));
            let before = checked.wiring.len();
            let owner = format_args!("resource `{}`", r.name);
            let found = self.check_refs(&attr.value, Place::Wired, owner, |root, output, from| {
                let w = Wiring {
                    from: root.name.clone(),
                    output: output.name.clone(),
                    to: r.name.name.clone(),
                    attribute: attr.key.name.clone(),
                    span: root.span.to(output.span),
                };
                checked.wiring.push((from, w));
            });
            if !found.is_empty() {
                // An attribute with a mistake wires nothing.
                checked.wiring.truncate(before);
                checked.mistakes.push((i, found));
            }
        }
        checked
    }

    /// The mistakes in the references and calls of `e`. `owner` names what
    /// `e` belongs to, for messages; it is only formatted when there is a
    /// mistake to report. `output` is called with each sound reference to a
    /// resource's output: the resource, the output and the resource's node.
    fn check_refs(
        &self,
        e: &Expr,
        place: Place,
        owner: impl fmt::Display,
        mut output: impl FnMut(&Ident, &Ident, NodeIndex),
    ) -> Vec<Diagnostic> {
        let mut found: Vec<Diagnostic> = Vec::new();
        e.walk(&mut |x| match &x.kind {
            ExprKind::Traversal { root, steps } => match self.reference(root, steps, place, &owner) {
                Ok(Some(node)) => {
                    if let Some(Step::Attr(name)) = steps.first() {
                        output(root, name, node);
                    }
                }
                Ok(None) => {}
                Err(d) => found.push(d),
            },
            ExprKind::Call { function, args } => match eval::function(&function.name) {
                None => found.push(
                    Diagnostic::at(Code::UnknownFunction, function.span, format!("unknown function `{function}`"))
                        .with_label(function.span, "no function of this name")
                        .help(
                            did_you_mean(&function.name, eval::FUNCTIONS.iter().map(|f| f.name)).unwrap_or_else(|| {
                                format!(
                                    "the functions are: {}",
                                    eval::FUNCTIONS.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
                                )
                            }),
                        ),
                ),
                Some(f) if args.len() < f.min_args || f.max_args.is_some_and(|m| args.len() > m) => found.push(
                    Diagnostic::at(Code::Evaluation, x.span, format!("wrong number of arguments to `{}`", f.name))
                        .with_label(x.span, format!("{} given", args.len()))
                        .help(format!("call it as {}", f.signature)),
                ),
                Some(_) => {}
            },
            _ => {}
        });
        found
    }

    /// Checks the reference `root.steps...`; a reference to an output of a
    /// resource is `Some` of the resource's node.
    fn reference(
        &self,
        root: &Ident,
        steps: &[Step],
        place: Place,
        owner: &dyn fmt::Display,
    ) -> Result<Option<NodeIndex>, Diagnostic> {
        let first_attr = match steps.first() {
            Some(Step::Attr(i)) => Some(i),
            _ => None,
        };
        if place == Place::Constant {
            return Err(
                Diagnostic::at(Code::InvalidReference, root.span, format!("{owner} must be a constant"))
                    .with_label(root.span, "a reference")
                    .help("a var's default cannot refer to other values; set per-environment values in `vars { }`"),
            );
        }
        match root.name.as_str() {
            "var" => {
                let Some(name) = first_attr else {
                    return Err(
                        Diagnostic::at(Code::InvalidReference, root.span, "`var` needs a name")
                            .with_label(root.span, "which var?")
                            .help("write `var.<name>`, like `var.region`"),
                    );
                };
                if self.var(&name.name).is_none() && !self.unparsed(&name.name) {
                    return Err(self.unknown_name(name, "var", &[]));
                }
                Ok(None)
            }
            "env" | "pipeline" => match first_attr {
                Some(a) if a.name == "name" => Ok(None),
                _ => {
                    let span = first_attr.map(|a| a.span).unwrap_or(root.span);
                    Err(
                        Diagnostic::at(Code::InvalidReference, span, format!("`{}` has one attribute, `name`", root))
                            .with_label(span, "not an attribute of this")
                            .help(format!("write `{}.name`", root)),
                    )
                }
            },
            "service" => self.artifact_reference(root, steps, place, owner).map(|()| None),
            _ => self.resource_reference(root, first_attr, place, owner),
        }
    }

    /// Checks `service.NAME.artifact[.ATTRIBUTE]...`: what a build of a
    /// declared service made, known in a service pipeline's deploy, so only
    /// where resource outputs may stand. It waits on nothing: no edge.
    fn artifact_reference(
        &self,
        root: &Ident,
        steps: &[Step],
        place: Place,
        owner: &dyn fmt::Display,
    ) -> Result<(), Diagnostic> {
        let known = crate::service::ArtifactRef::ATTRIBUTES;
        const FORM: &str = "write `service.<name>.artifact.<attribute>`, like `service.api.artifact.path`";
        let attr = |i: usize| match steps.get(i) {
            Some(Step::Attr(a)) => Some(a),
            _ => None,
        };
        let Some(name) = attr(0) else {
            return Err(Diagnostic::at(Code::InvalidReference, root.span, "`service` needs a service's name")
                .with_label(root.span, "which service?")
                .help(FORM));
        };
        let services = || self.m.services.iter().map(|s| s.name.name.as_str());
        let Some(service) = self.m.services.iter().find(|s| s.name.name == name.name) else {
            let help = did_you_mean(&name.name, services()).unwrap_or_else(|| match self.m.services.len() {
                0 => format!("declare it: `service \"{name}\" {{ repo = \"...\" build {{ ... }} }}`"),
                _ => format!("the services are: {}", services().collect::<Vec<_>>().join(", ")),
            });
            return Err(Diagnostic::at(Code::UnknownReference, name.span, format!("unknown service `{name}`"))
                .with_label(name.span, "no service of this name")
                .help(help));
        };
        match attr(1) {
            Some(a) if a.name == "artifact" => {}
            other => {
                let span = other.map_or(name.span, |a| a.span);
                return Err(Diagnostic::at(
                    Code::InvalidReference,
                    span,
                    format!("`service.{name}` has one attribute, `artifact`"),
                )
                .with_label(span, "not `artifact`")
                .help(format!("write `service.{name}.artifact.<attribute>`; the attributes are: {}", known.join(", "))));
            }
        }
        if let Some(a) = attr(2) {
            if !known.contains(&a.name.as_str()) {
                return Err(Diagnostic::at(
                    Code::InvalidReference,
                    a.span,
                    format!("a build's artifact has no attribute `{}`", a.name),
                )
                .with_label(a.span, "not an attribute of `artifact`")
                .help(
                    did_you_mean(&a.name, known).unwrap_or_else(|| format!("the attributes are: {}", known.join(", "))),
                ));
            }
        }
        if place != Place::Wired {
            let span = root.span.to(name.span);
            return Err(Diagnostic::at(Code::InvalidReference, span, format!("{owner} cannot refer to a build's artifact"))
                .with_label(span, format!("known only when service `{}` deploys what it built", service.name.name))
                .help(
                    "`service.<name>.artifact.*` can feed resource attributes and outputs, not plugins, vars, flow, \
                     gates or services",
                ));
        }
        Ok(())
    }

    /// Checks the reference `root.first_attr...` to an output of the resource
    /// `root`: `Some` of the resource's node.
    fn resource_reference(
        &self,
        root: &Ident,
        first_attr: Option<&Ident>,
        place: Place,
        owner: &dyn fmt::Display,
    ) -> Result<Option<NodeIndex>, Diagnostic> {
        let name = root.name.as_str();
        let Some(&(r, node)) = self.resources.get(name) else {
            if self.unparsed(name) {
                return Ok(None);
            }
            let mut d = self.unknown_name(root, "resource", &["var", "env", "pipeline", "service"]);
            if self.var(name).is_some() {
                d = d.help(format!("`{name}` is a var: write `var.{name}`"));
            } else if self.plugin(name).is_some() {
                d = d.help(format!("`{name}` is a plugin; only resources have outputs"));
            }
            return Err(d);
        };
        if place != Place::Wired {
            return Err(Diagnostic::at(
                Code::InvalidReference,
                root.span,
                format!("{owner} cannot refer to resource outputs"),
            )
            .with_label(root.span, format!("`{name}` is known only after it is applied"))
            .help("resource outputs can feed resource attributes and outputs, not plugins, vars, flow or gates"));
        }
        if first_attr.is_none() {
            return Err(
                Diagnostic::at(Code::InvalidReference, root.span, format!("`{name}` is a resource, not a value"))
                    .with_label(root.span, "refer to one of its outputs")
                    .with_label(r.name.span, "declared here")
                    .help(format!("write `{name}.<output>`, like `{name}.id`, or list it in `depends_on`")),
            );
        }
        Ok(Some(node))
    }

    /// "unknown var" or "unknown resource", with the closest of the declared
    /// names (and of `extra`) as a suggestion.
    pub(super) fn unknown_name(&self, name: &Ident, what: &str, extra: &[&str]) -> Diagnostic {
        let candidates: Vec<&str> = match what {
            "var" => self.m.vars.iter().map(|v| v.name.name.as_str()).collect(),
            _ => self.m.resources.iter().map(|r| r.name.name.as_str()).chain(extra.iter().copied()).collect(),
        };
        Diagnostic::at(Code::UnknownReference, name.span, format!("unknown {what} `{name}`"))
            .with_label(name.span, format!("no {what} of this name"))
            .maybe_help(did_you_mean(&name.name, candidates.iter().copied()))
    }
}

/// Whether `e` uses a var or `env`, the only names whose value differs from
/// one environment to another.
pub(super) fn varies_by_environment(e: &Expr) -> bool {
    let mut varies = false;
    e.walk(&mut |x| {
        if let ExprKind::Traversal { root, .. } = &x.kind {
            varies |= root.name == "var" || root.name == "env";
        }
    });
    varies
}
