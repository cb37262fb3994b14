//! Decoding string literals and heredocs into template parts: literal
//! text with its escapes decoded, adjacent pieces of text merged, the
//! interpolations lowered as expressions, and a `<<-` heredoc's common
//! indentation stripped. A bad escape is reported here.

use crate::ast::{Expr, ExprKind, TemplatePart};
use crate::diagnostic::{Code, Diagnostic};

use super::grammar::Rule;
use super::lower::{Lower, Node};

impl Lower {
    /// A `"..."` string: its text, its escapes decoded, and its interpolations.
    pub(super) fn string(&mut self, p: Node) -> Expr {
        let span = self.span(p);
        let mut parts = Parts { parts: Vec::with_capacity(p.children().count()) };
        for part in p.children() {
            match part.rule() {
                Rule::string_text => parts.text(part.as_str()),
                Rule::escaped_dollar => parts.text("${"),
                Rule::escape => {
                    let s = self.span(part);
                    match decode_escape(part.as_str()) {
                        Ok(c) => parts.push_char(c),
                        Err(msg) => {
                            self.diags.push(
                                Diagnostic::at(Code::InvalidString, s, msg)
                                    .with_label(s, "here")
                                    .help("the escapes are \\\" \\\\ \\n \\t \\r \\$ and \\u{...}"),
                            );
                            if self.invalid.last() != Some(&span) {
                                self.invalid.push(span);
                            }
                        }
                    }
                }
                Rule::interpolation => self.interpolation(part, &mut parts),
                _ => {}
            }
        }
        Expr { kind: ExprKind::Template(parts.finish()), span }
    }

    fn interpolation(&mut self, p: Node, parts: &mut Parts) {
        if let Some(e) = p.children().find(|e| e.rule() == Rule::expr) {
            let e = self.expr(e);
            parts.interp(e);
        }
    }

    /// A `<<EOT` heredoc: its lines, each ending in a newline; with `<<-`,
    /// less the indentation all its lines with content share.
    pub(super) fn heredoc(&mut self, p: Node) -> Expr {
        let span = self.span(p);
        let mut strip = false;
        let mut lines: Vec<Parts> = Vec::new();
        for part in p.children() {
            match part.rule() {
                Rule::heredoc_strip => strip = true,
                Rule::heredoc_line => {
                    let mut line = Parts::default();
                    for piece in part.children() {
                        match piece.rule() {
                            Rule::heredoc_text => line.text(piece.as_str()),
                            Rule::escaped_dollar => line.text("${"),
                            Rule::interpolation => self.interpolation(piece, &mut line),
                            _ => {}
                        }
                    }
                    lines.push(line);
                }
                _ => {}
            }
        }
        if strip {
            let indent = lines.iter().filter_map(Parts::indent).min().unwrap_or(0);
            for l in &mut lines {
                l.strip_indent(indent);
            }
        }
        let mut all = Parts::default();
        for l in lines {
            for part in l.finish() {
                match part {
                    TemplatePart::Literal(s) => all.text(&s),
                    TemplatePart::Interpolation(e) => all.interp(e),
                }
            }
            all.text("\n");
        }
        Expr { kind: ExprKind::Template(all.finish()), span }
    }
}

/// Builds template parts, merging adjacent literal text.
#[derive(Default)]
struct Parts {
    parts: Vec<TemplatePart>,
}

impl Parts {
    fn text(&mut self, s: &str) {
        if let Some(TemplatePart::Literal(last)) = self.parts.last_mut() {
            last.push_str(s);
        } else {
            self.parts.push(TemplatePart::Literal(s.into()));
        }
    }
    fn push_char(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.text(c.encode_utf8(&mut buf));
    }
    fn interp(&mut self, e: Expr) {
        self.parts.push(TemplatePart::Interpolation(e));
    }
    /// Leading blanks of a line that has content; blank lines do not count.
    fn indent(&self) -> Option<usize> {
        match self.parts.first() {
            Some(TemplatePart::Literal(s)) => {
                let n = s.chars().take_while(|c| *c == ' ' || *c == '\t').count();
                if n == s.chars().count() && self.parts.len() == 1 {
                    None
                } else {
                    Some(n)
                }
            }
            Some(TemplatePart::Interpolation(_)) => Some(0),
            None => None,
        }
    }
    fn strip_indent(&mut self, n: usize) {
        if let Some(TemplatePart::Literal(s)) = self.parts.first_mut() {
            let cut: usize = s.chars().take(n).take_while(|c| *c == ' ' || *c == '\t').map(char::len_utf8).sum();
            s.replace_range(..cut, "");
        }
    }
    fn finish(self) -> Vec<TemplatePart> {
        self.parts
    }
}

/// The character an escape (`\n`, `\u{1F600}`) stands for, or why it is none.
fn decode_escape(s: &str) -> Result<char, String> {
    let body = &s[1..];
    Ok(match body {
        "\"" => '"',
        "\\" => '\\',
        "n" => '\n',
        "t" => '\t',
        "r" => '\r',
        "$" => '$',
        "" => return Err("a backslash must be followed by an escape character".into()),
        _ if body.starts_with("u{") && body.ends_with('}') => {
            let hex = &body[2..body.len() - 1];
            if hex.is_empty() || hex.len() > 6 {
                return Err(format!("invalid unicode escape `{s}`"));
            }
            u32::from_str_radix(hex, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("`{s}` is not a unicode character"))?
        }
        _ => return Err(format!("unknown escape `{s}`")),
    })
}
