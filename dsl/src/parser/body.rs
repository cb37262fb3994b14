//! Generic `{ }` bodies, as the grammar reads them: attributes and nested
//! blocks, as in HCL. The [`BodyReader`] takes out of a body the keys an
//! item knows, reporting a key set twice, an attribute written as a block
//! and the reverse, a block with the wrong number of labels, and whatever is
//! left as an unknown key.

use std::fmt;

use crate::ast::{Attribute, Expr, Ident, Span};
use crate::diagnostic::{closest, Code, Diagnostic};

/// One entry of a generic `{ }` body.
pub(super) enum Entry {
    Attr(Attribute),
    Block(Block),
}

/// A nested block `name label... { entries }`.
pub(super) struct Block {
    pub(super) name: Ident,
    pub(super) labels: Vec<Ident>,
    pub(super) entries: Vec<Entry>,
    pub(super) span: Span,
}

impl Entry {
    fn key(&self) -> &Ident {
        match self {
            Entry::Attr(a) => &a.key,
            Entry::Block(b) => &b.name,
        }
    }
}

/// Takes the keys an item understands out of its body, one at a time, and
/// reports whatever is left as unknown.
pub(super) struct BodyReader<'o> {
    entries: Vec<Entry>,
    asked: Vec<&'static str>,
    /// Keys whose mistakes are already reported: written in the wrong shape
    /// (`source { }`), or the likely meaning of an unknown key (`soruce`).
    /// A check that the key is missing stays quiet about these.
    explained: Vec<&'static str>,
    /// What owns this body, for messages: "plugin `aws`".
    owner: &'o dyn fmt::Display,
}

impl<'o> BodyReader<'o> {
    pub(super) fn new(entries: Vec<Entry>, owner: &'o dyn fmt::Display) -> Self {
        BodyReader { entries, asked: Vec::new(), explained: Vec::new(), owner }
    }

    fn take_all(&mut self, key: &'static str) -> Vec<Entry> {
        self.asked.push(key);
        // Most keys are not there: then there is nothing to move.
        if !self.entries.iter().any(|e| e.key().name == key) {
            return Vec::new();
        }
        let (taken, kept): (Vec<Entry>, Vec<Entry>) =
            std::mem::take(&mut self.entries).into_iter().partition(|e| e.key().name == key);
        self.entries = kept;
        taken
    }

    /// The value of the attribute `key = value`, at most once.
    pub(super) fn attr(&mut self, key: &'static str, diags: &mut Vec<Diagnostic>) -> Option<Expr> {
        self.attribute(key, diags).map(|a| a.value)
    }

    /// The attribute `key = value` as written, key and all, at most once.
    pub(super) fn attribute(&mut self, key: &'static str, diags: &mut Vec<Diagnostic>) -> Option<Attribute> {
        let mut found: Option<Attribute> = None;
        for e in self.take_all(key) {
            match e {
                Entry::Attr(a) => match &found {
                    Some(first) => diags.push(duplicate_key(&first.key, &a.key, self.owner)),
                    None => found = Some(a),
                },
                Entry::Block(b) => {
                    self.explained.push(key);
                    diags.push(
                        Diagnostic::at(Code::InvalidValue, b.name.span, format!("`{key}` is an attribute, not a block"))
                            .with_label(b.name.span, "written as a block")
                            .help(format!("write `{key} = ...`")),
                    )
                }
            }
        }
        found
    }

    /// Every block `key { }` (with labels, if `labels` allows them).
    pub(super) fn blocks(&mut self, key: &'static str, labels: usize, diags: &mut Vec<Diagnostic>) -> Vec<Block> {
        let mut out = Vec::new();
        for e in self.take_all(key) {
            match e {
                Entry::Block(b) => {
                    if b.labels.len() != labels {
                        diags.push(label_count(key, &b, labels));
                        continue;
                    }
                    out.push(b)
                }
                Entry::Attr(a) => diags.push(
                    Diagnostic::at(Code::InvalidValue, a.key.span, format!("`{key}` is a block, not an attribute"))
                        .with_label(a.key.span, "written as an attribute")
                        .help(if labels == 0 { format!("write `{key} {{ ... }}`") } else { format!("write `{key} <name> {{ ... }}`") }),
                ),
            }
        }
        out
    }

    /// The block `key { }`, at most once.
    pub(super) fn block(&mut self, key: &'static str, diags: &mut Vec<Diagnostic>) -> Option<Block> {
        let mut blocks = self.blocks(key, 0, diags).into_iter();
        let first = blocks.next()?;
        for dup in blocks {
            diags.push(duplicate_key(&first.name, &dup.name, self.owner));
        }
        Some(first)
    }

    /// Reports every entry no one asked for. Returns the keys that are
    /// missing for a reason already reported: checks of required keys skip them.
    pub(super) fn finish(mut self, diags: &mut Vec<Diagnostic>) -> Vec<&'static str> {
        for e in &self.entries {
            let key = e.key();
            let closest = closest(&key.name, self.asked.iter().copied());
            if let Some(c) = closest {
                self.explained.push(c);
            }
            diags.push(
                Diagnostic::at(Code::UnknownKey, key.span, format!("unknown key `{}` in {}", key.name, self.owner))
                    .with_label(key.span, "not a key of this block")
                    .help(match closest {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!("the keys here are: {}", self.asked.join(", ")),
                    }),
            );
        }
        self.explained
    }

    /// The entries no one asked for, to be read as something else.
    pub(super) fn into_entries(self) -> Vec<Entry> {
        self.entries
    }
}

/// What owns a body, as messages name it: resource `vpc`.
pub(super) struct Named<'a>(pub(super) &'static str, pub(super) &'a str);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`", self.0, self.1)
    }
}

/// A block with the wrong number of labels: `credentials { }`, `flow "x" { }`.
fn label_count(key: &str, b: &Block, want: usize) -> Diagnostic {
    if b.labels.len() < want {
        let message = if key == "credentials" {
            "expected the provisioner's name after `credentials`".to_string()
        } else {
            format!("expected a name after `{key}`")
        };
        return Diagnostic::at(Code::Syntax, b.name.span, message)
            .with_label(b.name.span, "no name after this")
            .help(if key == "credentials" {
                "name the provisioner the credentials are for: `credentials aws { resolver = ... }`".to_string()
            } else {
                format!("write `{key} <name> {{ ... }}`")
            });
    }
    let extra = &b.labels[want..];
    let span = extra[0].span.to(extra[extra.len() - 1].span);
    let text = if want == 0 { format!("block `{key}` takes no label") } else { format!("block `{key}` takes {want} label") };
    Diagnostic::at(Code::Syntax, span, text)
        .with_label(span, if extra.len() == 1 { "unexpected label" } else { "unexpected labels" })
        .help(if want == 0 { format!("write `{key} {{ ... }}`") } else { format!("write `{key} <name> {{ ... }}`") })
}

/// `dup` sets a key `first` set already, in `owner`.
pub(super) fn duplicate_key(first: &Ident, dup: &Ident, owner: &dyn fmt::Display) -> Diagnostic {
    Diagnostic::at(Code::DuplicateKey, dup.span, format!("`{}` is set twice in {owner}", dup.name))
        .with_label(dup.span, "set again here")
        .with_label(first.span, "first set here")
}
