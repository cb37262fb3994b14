//! Sensitive values: what an expression refers to, along which sensitivity
//! spreads, and keeping the values of sensitive vars out of messages.
//!
//! A var marked `sensitive` makes sensitive every resource attribute and
//! every output whose expression uses it, directly or anywhere inside (a
//! string's interpolation, a list or map element, an index, a function's
//! argument, a nested block). The compiler works that out for the graph
//! ([`PipelineGraph::sensitive_vars`](crate::PipelineGraph::sensitive_vars),
//! [`ResourceNode::sensitive_attributes`](crate::ResourceNode::sensitive_attributes),
//! [`PipelineGraph::output_is_sensitive`](crate::PipelineGraph::output_is_sensitive)).
//! Which resource outputs are sensitive only a provisioner knows, at run
//! time; [`resource_references`] lists what an expression takes from
//! resources, so the runtime can spread that sensitivity the same way.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::ast::{Expr, ExprKind, Step};
use crate::diagnostic::Diagnostic;

/// What a sensitive value is shown as.
pub const MASK: &str = "(sensitive)";

/// Every `<resource>.<output>` that `expr` refers to, as (resource, output):
/// in the order written, each once, wherever it stands in the expression.
/// `var.*`, `env.name`, `pipeline.name` and `service.*` are not resources, and a bare
/// resource name (`vpc`, which the checks reject) takes no output.
pub fn resource_references(expr: &Expr) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    expr.walk(&mut |x| {
        let ExprKind::Traversal { root, steps } = &x.kind else { return };
        if matches!(root.name.as_str(), "var" | "env" | "pipeline" | "service") {
            return;
        }
        if let Some(Step::Attr(output)) = steps.first() {
            // Expressions are small: a scan finds a repeat sooner than a set would.
            if !out.iter().any(|(r, o)| *r == root.name && *o == output.name) {
                out.push((root.name.to_string(), output.name.to_string()));
            }
        }
    });
    out
}

/// Every var that `expr` uses (`var.<name>`), in the order written, each once.
pub fn var_references(expr: &Expr) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    expr.walk(&mut |x| {
        if let Some(name) = var_name(x) {
            if !out.iter().any(|v| v == name) {
                out.push(name.to_string());
            }
        }
    });
    out
}

/// Whether `expr` uses any of `vars`.
pub fn uses_any_var(expr: &Expr, vars: &BTreeSet<String>) -> bool {
    if vars.is_empty() {
        return false;
    }
    let mut found = false;
    expr.walk(&mut |x| found = found || var_name(x).is_some_and(|name| vars.contains(name)));
    found
}

/// The var that `x` is a reference to, if it is one: `var.<name>...`.
fn var_name(x: &Expr) -> Option<&str> {
    match &x.kind {
        ExprKind::Traversal { root, steps } if root.name == "var" => match steps.first() {
            Some(Step::Attr(name)) => Some(name.name.as_str()),
            _ => None,
        },
        _ => None,
    }
}

/// The values of sensitive vars, to keep out of what is shown: every string
/// and number inside them, and the text they were typed as.
///
/// [`redact`](Self::redact) replaces them with [`MASK`] where messages echo
/// a value: between backticks (``tonumber(): `hunter2` is not a number``),
/// as JSON (`not "hunter2"`) or, for a number, as a word of its own (`index
/// 7 is out of range`). A text between backticks is masked whole when it
/// holds a sensitive string, or is a piece of one at least four characters
/// long (what `split` or `replace` might have cut out of it), whatever the
/// case of its letters (`upper` and `lower` change it). Booleans and `null`
/// are not kept: they would mask every `true` in a message.
#[derive(Debug, Clone, Default)]
pub struct SensitiveValues {
    strings: Vec<String>,
    numbers: Vec<String>,
}

impl SensitiveValues {
    pub fn new() -> Self {
        SensitiveValues::default()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty() && self.numbers.is_empty()
    }

    /// Keeps every string and number inside `value`.
    pub fn add(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.add_text(s),
            Value::Number(n) => {
                let n = n.to_string();
                if !self.numbers.contains(&n) {
                    self.numbers.push(n);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| self.add(v)),
            Value::Object(m) => m.values().for_each(|v| self.add(v)),
            Value::Null | Value::Bool(_) => {}
        }
    }

    /// Keeps a value as text, as it was typed (`--var name=<text>`).
    pub fn add_text(&mut self, text: &str) {
        if !text.is_empty() && !self.strings.iter().any(|s| s == text) {
            self.strings.push(text.to_string());
        }
    }

    /// `text` with the sensitive values in it masked.
    pub fn redact(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_string();
        }
        let mut text = text.to_string();
        for s in &self.strings {
            // As `{v}` of a JSON value renders it.
            let quoted = Value::String(s.clone()).to_string();
            if text.contains(&quoted) {
                text = text.replace(&quoted, MASK);
            }
        }
        // Between backticks (the odd pieces) values are quoted; outside them
        // numbers are written bare. A last backtick without its pair opens
        // nothing.
        let pieces: Vec<&str> = text.split('`').collect();
        let closed = if pieces.len().is_multiple_of(2) { pieces.len() - 1 } else { pieces.len() };
        let mut out = String::with_capacity(text.len());
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                out.push('`');
            }
            if i % 2 == 1 && i < closed {
                if self.quoted_is_sensitive(piece) {
                    out.push_str(MASK);
                } else {
                    out.push_str(piece);
                }
            } else {
                out.push_str(&self.mask_words(piece));
            }
        }
        out
    }

    /// Masks the message, label texts and help of `d`.
    pub fn redact_diagnostic(&self, d: &mut Diagnostic) {
        if self.is_empty() {
            return;
        }
        d.message = self.redact(&d.message);
        for l in &mut d.labels {
            if let Some(t) = &mut l.text {
                *t = self.redact(t);
            }
        }
        if let Some(h) = &mut d.help {
            *h = self.redact(h);
        }
    }

    fn quoted_is_sensitive(&self, quoted: &str) -> bool {
        let quoted_lower = quoted.to_lowercase();
        let piece = quoted.chars().count() >= 4;
        self.strings.iter().any(|s| {
            let s = s.to_lowercase();
            quoted_lower.contains(&s) || (piece && s.contains(&quoted_lower))
        }) || self.numbers.iter().any(|n| find_word(quoted, n, 0).is_some())
    }

    /// `text` with every number of these values, and every string of at
    /// least four characters, that stands as a word of its own masked. (A
    /// shorter string would mask every `a` and `to` of a message.)
    fn mask_words(&self, text: &str) -> String {
        let mut text = text.to_string();
        let strings = self.strings.iter().filter(|s| s.chars().count() >= 4);
        for word in self.numbers.iter().chain(strings) {
            // On from each mask, which may hold the word (`sensitive`).
            let mut from = 0;
            while let Some(at) = find_word(&text, word, from) {
                text.replace_range(at..at + word.len(), MASK);
                from = at + MASK.len();
            }
        }
        text
    }
}

/// Where `word` next stands in `text` from byte `from` on, as a word of its
/// own, not as a piece of a longer name or number.
fn find_word(text: &str, word: &str, mut from: usize) -> Option<usize> {
    let part_of_word = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '-');
    while let Some(i) = text[from..].find(word) {
        let at = from + i;
        let end = at + word.len();
        let before = text[..at].chars().next_back();
        let after = text[end..].chars().next();
        // A `.` ends a sentence as well as it goes on a number: only a digit after it continues one.
        let continues = after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            || (after == Some('.') && text[end + 1..].starts_with(|c: char| c.is_ascii_digit()));
        if !before.is_some_and(part_of_word) && !continues {
            return Some(at);
        }
        from = at + word.len().max(1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse_expr;

    fn expr(src: &str) -> Expr {
        parse_expr(src).unwrap_or_else(|d| panic!("{src}: {d:?}"))
    }

    #[test]
    fn resource_references_are_listed_once_in_order() {
        let e = expr(r#"{ a = "${db.url}-${var.p}", b = [vpc.id, db.url], c = f(x.m, y.k[0])[z.i], d = env.name }"#);
        let want = [("db", "url"), ("vpc", "id"), ("x", "m"), ("y", "k"), ("z", "i")];
        let want: Vec<(String, String)> = want.iter().map(|(r, o)| (r.to_string(), o.to_string())).collect();
        assert_eq!(resource_references(&e), want);
        assert!(resource_references(&expr("[var.a, env.name, pipeline.name, vpc, \"text\"]")).is_empty());
        let heredoc = expr("<<EOT\nurl: ${db.url}\nEOT\n");
        assert_eq!(resource_references(&heredoc), vec![("db".to_string(), "url".to_string())]);
    }

    #[test]
    fn var_references_are_listed_once_in_order() {
        let e = expr(r#"join(",", [var.b, "${var.a}", var.b[var.c]])"#);
        assert_eq!(var_references(&e), ["b", "a", "c"]);
        let vars: BTreeSet<String> = ["c".to_string()].into();
        assert!(uses_any_var(&e, &vars));
        assert!(!uses_any_var(&expr("var.cc"), &vars));
        assert!(!uses_any_var(&e, &BTreeSet::new()));
    }

    fn secrets() -> SensitiveValues {
        let mut s = SensitiveValues::new();
        s.add(&serde_json::json!({ "password": "hunter2-abc", "port": 5432, "on": true, "list": ["tok-xyz"] }));
        s.add_text("raw text");
        s
    }

    #[test]
    fn values_are_masked_where_messages_echo_them() {
        let s = secrets();
        for (text, want) in [
            ("tonumber(): `hunter2-abc` is not a number", "tonumber(): `(sensitive)` is not a number"),
            ("no key `prefix-tok-xyz-suffix` in this map", "no key `(sensitive)` in this map"),
            // A piece of a value, as `split` could cut out of it, or `upper` change it.
            ("`hunter2` is not a CIDR block", "`(sensitive)` is not a CIDR block"),
            ("`HUNTER2-ABC` is not a number", "`(sensitive)` is not a number"),
            ("format() wants a whole number, not \"hunter2-abc\"", "format() wants a whole number, not (sensitive)"),
            ("index 5432 is out of range for a list of 2", "index (sensitive) is out of range for a list of 2"),
            ("netnum 5432.", "netnum (sensitive)."),
            ("`raw text` and raw text, not raw texts", "`(sensitive)` and (sensitive), not raw texts"),
            // What is not a value of theirs is left alone.
            ("index 54321, r5432, 5432.5, -5432 and `true`", "index 54321, r5432, 5432.5, -5432 and `true`"),
            ("cannot take `.abc` of a string", "cannot take `.abc` of a string"),
            ("an unpaired ` backtick hunter2", "an unpaired ` backtick hunter2"),
        ] {
            assert_eq!(s.redact(text), want, "{text}");
        }
        assert_eq!(SensitiveValues::new().redact("`x` 1"), "`x` 1");
        // A value that reads like the mask does not mask the mask again.
        let mut s = SensitiveValues::new();
        s.add_text("sensitive");
        assert_eq!(s.redact("a sensitive value"), "a (sensitive) value");
    }

    #[test]
    fn a_diagnostic_is_masked_everywhere() {
        let mut d = Diagnostic::new(crate::Code::Evaluation, "`hunter2-abc`")
            .with_label(crate::ast::Span::new(0, 1), "5432 given")
            .help("not `tok-xyz`");
        secrets().redact_diagnostic(&mut d);
        assert_eq!(d.message, "`(sensitive)`");
        assert_eq!(d.labels[0].text.as_deref(), Some("(sensitive) given"));
        assert_eq!(d.help.as_deref(), Some("not `(sensitive)`"));
    }
}
