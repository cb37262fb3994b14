//! What each name in a file is: every definition (resources, vars,
//! plugins, environments, outputs) and every place a name refers to one,
//! read off the syntax tree. Go to definition, find references, rename,
//! hover and the outline all start here.

use stackpipe_dsl::ast::{Expr, ExprKind, Module, Span, Step};

/// What kind of thing a name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SymbolKind {
    Resource,
    Var,
    Plugin,
    Environment,
    Output,
}

impl SymbolKind {
    pub fn keyword(self) -> &'static str {
        match self {
            SymbolKind::Resource => "resource",
            SymbolKind::Var => "var",
            SymbolKind::Plugin => "plugin",
            SymbolKind::Environment => "environment",
            SymbolKind::Output => "output",
        }
    }
}

/// Where a name is declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub kind: SymbolKind,
    pub name: String,
    /// The name as written in its declaration.
    pub name_span: Span,
    /// The whole declaration.
    pub span: Span,
}

/// A use of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub kind: SymbolKind,
    pub name: String,
    pub span: Span,
}

/// `resource.output` where it is used: hover shows the output's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputUse {
    pub resource: String,
    pub output: String,
    pub span: Span,
}

/// Every definition and reference of one file, in source order.
#[derive(Debug, Default)]
pub struct Index {
    pub definitions: Vec<Definition>,
    pub references: Vec<Reference>,
    pub output_uses: Vec<OutputUse>,
}

/// The names an expression may start with that are not resources.
const BUILTIN_ROOTS: [&str; 4] = ["var", "env", "pipeline", "service"];

impl Index {
    pub fn new(module: &Module) -> Index {
        let mut index = Index::default();
        index.read(module);
        index.definitions.sort_by_key(|d| d.span.start);
        index.references.sort_by_key(|r| r.span.start);
        index
    }

    fn define(&mut self, kind: SymbolKind, name: &str, name_span: Span, span: Span) {
        self.definitions.push(Definition {
            kind,
            name: name.to_string(),
            name_span,
            span,
        });
    }

    fn refer(&mut self, kind: SymbolKind, name: &str, span: Span) {
        self.references.push(Reference {
            kind,
            name: name.to_string(),
            span,
        });
    }

    fn read(&mut self, m: &Module) {
        for v in &m.vars {
            self.define(SymbolKind::Var, &v.name.name, v.name.span, v.span);
            v.default.iter().for_each(|e| self.expr(e));
        }
        for p in &m.plugins {
            self.define(SymbolKind::Plugin, &p.name.name, p.name.span, p.span);
            p.source.iter().chain(&p.config).for_each(|e| self.expr(e));
            let allow = [&p.allow.http, &p.allow.fs, &p.allow.env];
            allow.into_iter().flatten().for_each(|e| self.expr(e));
        }
        for c in &m.credentials {
            self.credentials(c);
        }
        for f in &m.flows {
            f.values().for_each(|e| self.expr(e));
        }
        for e in &m.environments {
            self.define(SymbolKind::Environment, &e.name.name, e.name.span, e.span);
            for after in &e.after {
                self.refer(SymbolKind::Environment, &after.name, after.span);
            }
            e.approval.iter().for_each(|x| self.expr(x));
            for v in &e.vars {
                self.refer(SymbolKind::Var, &v.key.name, v.key.span);
                self.expr(&v.value);
            }
            if let Some(f) = &e.flow {
                f.values().for_each(|x| self.expr(x));
            }
            for c in &e.credentials {
                self.credentials(c);
            }
        }
        for r in &m.resources {
            self.define(SymbolKind::Resource, &r.name.name, r.name.span, r.span);
            if !r.plugin.name.is_empty() {
                self.refer(SymbolKind::Plugin, &r.plugin.name, r.plugin.span);
            }
            for a in &r.attributes {
                self.expr(&a.value);
            }
            for d in &r.depends_on {
                self.refer(SymbolKind::Resource, &d.name, d.span);
            }
            r.gate.iter().for_each(|g| self.expr(g));
            if let Some(f) = &r.flow {
                f.values().for_each(|x| self.expr(x));
            }
        }
        for o in &m.outputs {
            self.define(SymbolKind::Output, &o.name.name, o.name.span, o.span);
            self.expr(&o.value);
        }
        for s in &m.services {
            s.values().for_each(|e| self.expr(e));
        }
    }

    fn credentials(&mut self, c: &stackpipe_dsl::ast::CredentialsDecl) {
        self.refer(SymbolKind::Plugin, &c.provisioner.name, c.provisioner.span);
        if let Some(r) = &c.resolver {
            self.refer(SymbolKind::Plugin, &r.name, r.span);
        }
        c.config.iter().for_each(|e| self.expr(e));
    }

    fn expr(&mut self, e: &Expr) {
        e.walk(&mut |x| {
            let ExprKind::Traversal { root, steps } = &x.kind else { return };
            let first = match steps.first() {
                Some(Step::Attr(a)) => Some(a),
                _ => None,
            };
            match root.name.as_str() {
                "var" => {
                    if let Some(a) = first {
                        self.refer(SymbolKind::Var, &a.name, a.span);
                    }
                }
                r if BUILTIN_ROOTS.contains(&r) => {}
                r => {
                    self.refer(SymbolKind::Resource, r, root.span);
                    if let Some(a) = first {
                        let output = a.name.to_string();
                        self.output_uses.push(OutputUse { resource: r.to_string(), output, span: a.span });
                    }
                }
            }
        });
    }

    /// The definition or reference at byte `offset`: what it names.
    pub fn at(&self, offset: usize) -> Option<(SymbolKind, &str)> {
        let within = |s: Span| s.start <= offset && offset <= s.end;
        self.definitions
            .iter()
            .find(|d| within(d.name_span))
            .map(|d| (d.kind, d.name.as_str()))
            .or_else(|| {
                self.references
                    .iter()
                    .find(|r| within(r.span))
                    .map(|r| (r.kind, r.name.as_str()))
            })
    }

    pub fn definition(&self, kind: SymbolKind, name: &str) -> Option<&Definition> {
        self.definitions
            .iter()
            .find(|d| d.kind == kind && d.name == name)
    }

    pub fn references_to<'a>(
        &'a self,
        kind: SymbolKind,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Reference> + 'a {
        self.references
            .iter()
            .filter(move |r| r.kind == kind && r.name == name)
    }

    pub fn output_use_at(&self, offset: usize) -> Option<&OutputUse> {
        self.output_uses
            .iter()
            .find(|u| u.span.start <= offset && offset <= u.span.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_and_references_of_every_kind() {
        let src = r#"
var size = 2
plugin t {
  kind = "provisioner"
  source = "builtin:test"
}
environment dev {}
environment prod {
  after = dev
  vars { size = 3 }
}
resource a "t.step" { x = var.size }
resource b "t.step" {
  y = "${a.id}-${env.name}"
  depends_on = [a]
}
output o = b.id
"#;
        let (module, diags) = stackpipe_dsl::parser::parse(src);
        assert!(diags.is_empty(), "{diags:?}");
        let index = Index::new(&module);
        let names = |kind| {
            index
                .definitions
                .iter()
                .filter(|d| d.kind == kind)
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(SymbolKind::Resource), ["a", "b"]);
        assert_eq!(names(SymbolKind::Environment), ["dev", "prod"]);
        let refs = |kind, name| {
            index
                .references_to(kind, name)
                .map(|r| &src[r.span.start..r.span.end])
                .collect::<Vec<_>>()
        };
        assert_eq!(refs(SymbolKind::Resource, "a"), ["a", "a"]);
        assert_eq!(refs(SymbolKind::Var, "size"), ["size", "size"]);
        assert_eq!(refs(SymbolKind::Environment, "dev"), ["dev"]);
        assert_eq!(refs(SymbolKind::Plugin, "t"), ["t", "t"]);
        let at = src.find("a.id").unwrap();
        assert_eq!(index.at(at), Some((SymbolKind::Resource, "a")));
        assert_eq!(
            index.output_use_at(at + 2).map(|u| u.output.as_str()),
            Some("id")
        );
    }
}
