//! `stackpipe fmt`: one canonical layout for a `.pipeline` file.
//!
//! - Two spaces of indentation per block; each attribute and block of a body
//!   on its own line. A body written on one line with a single attribute in
//!   it stays on one line (`vars { size = 2 }`), as HCL allows.
//! - One space between tokens, none inside brackets and parentheses, before
//!   a comma or a colon, or around a dot; `{ a = 1 }` keeps a space inside
//!   its braces.
//! - The `=` of consecutive attributes (and of consecutive `var`s and
//!   `output`s) aligned, as `terraform fmt` aligns them; a blank line, a
//!   comment line, a nested block or a value spanning lines ends the group.
//! - At most one blank line anywhere, and exactly one between a block item
//!   and the items around it. None at the start or the end of a body.
//! - Lists, maps and calls keep the line breaks they were written with; each
//!   line is indented by the brackets open before it, and the `=` of the
//!   entries of a map written over several lines are aligned as attributes are.
//! - Comments stay where they are; strings and heredocs are kept byte for
//!   byte (a heredoc's body is never re-indented).
//!
//! The file must parse first. The formatter then works on the lossless
//! tokens of [`tokens`], and checks its own output: the same tokens in the
//! same order, only whitespace changed. A file it cannot lay out that way is
//! an error, never a changed file.

pub mod tokens;

use std::ops::Range;

use crate::diagnostic::{Code, Diagnostic};
use tokens::{tokenize, Token, TokenKind};

/// Why a file was not formatted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FormatError {
    /// The file does not parse: these are its syntax errors.
    #[error("the file has syntax errors")]
    Syntax(Vec<Diagnostic>),
    /// The formatter could not lay the file out without changing it (a bug,
    /// reported rather than acted on).
    #[error("the formatter could not lay this file out without changing its meaning: {0}")]
    Internal(String),
}

/// `src` in the canonical layout.
pub fn format(src: &str) -> Result<String, FormatError> {
    let (_, diagnostics) = crate::parser::parse(src);
    let syntax: Vec<Diagnostic> = diagnostics
        .into_iter()
        .filter(|d| matches!(d.code, Code::Syntax | Code::TooDeep))
        .collect();
    if !syntax.is_empty() {
        return Err(FormatError::Syntax(syntax));
    }
    let toks = tokenize(src)
        .map_err(|e| FormatError::Internal(format!("{} at byte {}", e.message, e.at)))?;
    let entries = Layout {
        src,
        toks: &toks,
        pos: 0,
    }
    .entries(true)?;
    let mut printer = Printer {
        src,
        toks: &toks,
        out: String::with_capacity(src.len() + src.len() / 8),
    };
    printer.entries(&entries, 0, true);
    let out = printer.out;
    same_tokens(src, &toks, &out)?;
    Ok(out)
}

/// The output holds the input's tokens, in order, and nothing else: the
/// formatter changed whitespace only.
fn same_tokens(src: &str, before: &[Token], out: &str) -> Result<(), FormatError> {
    let after = tokenize(out)
        .map_err(|e| FormatError::Internal(format!("output does not lex: {}", e.message)))?;
    fn text<'s>(s: &'s str, t: &Token) -> &'s str {
        let text = &s[t.span.start..t.span.end];
        if t.kind == TokenKind::LineComment {
            text.trim_end()
        } else {
            text
        }
    }
    let significant = |s: &'_ str, ts: &'_ [Token]| -> Vec<(TokenKind, String)> {
        ts.iter()
            .filter(|t| t.kind != TokenKind::Newline)
            .map(|t| (t.kind, text(s, t).to_string()))
            .collect()
    };
    let (a, b) = (significant(src, before), significant(out, &after));
    if a != b {
        let at = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        return Err(FormatError::Internal(format!(
            "token {at} differs: {:?} became {:?}",
            a.get(at),
            b.get(at)
        )));
    }
    Ok(())
}

/// A body's contents (or the file's), as the formatter lays them out.
#[derive(Debug)]
enum Entry {
    /// A comment on a line of its own.
    Comment(usize),
    /// One or more blank lines, kept as one.
    Blank,
    /// `head = value tail`: an attribute, or a `var`/`output` with a value
    /// (its `sensitive` in `tail`). Ranges of token indices; together they
    /// cover every token of the entry, comments between them included.
    Assign {
        head: Range<usize>,
        value: Range<usize>,
        tail: Range<usize>,
        trailing: Vec<usize>,
    },
    /// `pipeline "name"`, or a `var` without a value.
    Plain {
        toks: Range<usize>,
        trailing: Vec<usize>,
    },
    /// `header { body }`.
    Block {
        header: Range<usize>,
        body: Body,
        trailing: Vec<usize>,
    },
}

impl Entry {
    fn trailing_mut(&mut self) -> Option<&mut Vec<usize>> {
        match self {
            Entry::Assign { trailing, .. }
            | Entry::Plain { trailing, .. }
            | Entry::Block { trailing, .. } => Some(trailing),
            Entry::Comment(_) | Entry::Blank => None,
        }
    }
    fn is_item(&self) -> bool {
        !matches!(self, Entry::Comment(_) | Entry::Blank)
    }
}

#[derive(Debug)]
struct Body {
    /// Comments on the line of the opening brace.
    open_comments: Vec<usize>,
    entries: Vec<Entry>,
    /// Written without a line break between its braces.
    one_line: bool,
}

/// Reads the tokens into entries: the structure of items and bodies,
/// nothing finer (expressions stay token ranges).
struct Layout<'a> {
    src: &'a str,
    toks: &'a [Token],
    pos: usize,
}

impl Layout<'_> {
    fn kind(&self, i: usize) -> Option<TokenKind> {
        self.toks.get(i).map(|t| t.kind)
    }
    fn text(&self, i: usize) -> &str {
        let s = self.toks[i].span;
        &self.src[s.start..s.end]
    }
    /// The index of the next token that is not a comment or a line end.
    fn next_significant(&self) -> Option<usize> {
        (self.pos..self.toks.len()).find(|&i| !self.toks[i].kind.is_trivia())
    }
    fn bug(&self, what: &str) -> FormatError {
        let at = self
            .toks
            .get(self.pos)
            .map_or(self.src.len(), |t| t.span.start);
        FormatError::Internal(format!("{what} at byte {at}"))
    }
    /// Moves past the next significant token, which must be of `kind`.
    fn expect(&mut self, kind: TokenKind) -> Result<usize, FormatError> {
        match self.next_significant() {
            Some(i) if self.toks[i].kind == kind => {
                self.pos = i + 1;
                Ok(i)
            }
            _ => Err(self.bug(&format!("expected {kind:?}"))),
        }
    }

    /// Entries up to the closing brace of a body (not consumed), or the end
    /// of the file.
    fn entries(&mut self, top: bool) -> Result<Vec<Entry>, FormatError> {
        let mut entries: Vec<Entry> = Vec::new();
        // Line ends since the last entry or comment: 0 means a comment is on
        // the same line as what came before it.
        let mut newlines = usize::MAX;
        loop {
            match self.kind(self.pos) {
                None => break,
                Some(TokenKind::RBrace) if !top => break,
                Some(TokenKind::Newline) => {
                    newlines = newlines.saturating_add(1);
                    self.pos += 1;
                    continue;
                }
                _ => {}
            }
            if newlines >= 2 && newlines != usize::MAX && !entries.is_empty() {
                entries.push(Entry::Blank);
            }
            let i = self.pos;
            if self.toks[i].kind.is_comment() {
                self.pos += 1;
                match entries.last_mut().and_then(Entry::trailing_mut) {
                    Some(trailing) if newlines == 0 => trailing.push(i),
                    _ => entries.push(Entry::Comment(i)),
                }
                newlines = 0;
                continue;
            }
            let entry = if top { self.item()? } else { self.statement()? };
            entries.push(entry);
            newlines = 0;
        }
        Ok(entries)
    }

    /// A top-level item.
    fn item(&mut self) -> Result<Entry, FormatError> {
        let start = self.pos;
        let kw = self.expect(TokenKind::Ident)?;
        match self.text(kw) {
            "pipeline" => {
                let end = self.expect(TokenKind::Str)?;
                Ok(Entry::Plain {
                    toks: start..end + 1,
                    trailing: Vec::new(),
                })
            }
            "var" => {
                self.expect(TokenKind::Ident)?;
                if self.peek_is(TokenKind::Colon) {
                    self.expect(TokenKind::Colon)?;
                    self.expect(TokenKind::Ident)?;
                }
                if self.peek_is(TokenKind::Equals) {
                    self.assign(start, true)
                } else {
                    let end = self.sensitive().unwrap_or(self.pos - 1);
                    Ok(Entry::Plain {
                        toks: start..end + 1,
                        trailing: Vec::new(),
                    })
                }
            }
            "output" => {
                self.expect(TokenKind::Ident)?;
                self.assign(start, true)
            }
            _ => self.block(start),
        }
    }

    fn peek_is(&self, kind: TokenKind) -> bool {
        self.next_significant()
            .is_some_and(|i| self.toks[i].kind == kind)
    }

    /// A trailing `sensitive`, if there is one: its index.
    fn sensitive(&mut self) -> Option<usize> {
        let i = self.next_significant()?;
        (self.toks[i].kind == TokenKind::Ident && self.text(i) == "sensitive").then(|| {
            self.pos = i + 1;
            i
        })
    }

    /// An attribute or a block, in a body.
    fn statement(&mut self) -> Result<Entry, FormatError> {
        let start = self.pos;
        self.expect(TokenKind::Ident)?;
        if self.peek_is(TokenKind::Equals) {
            self.assign(start, false)
        } else {
            self.block(start)
        }
    }

    /// From `=` on, the head already read.
    fn assign(&mut self, start: usize, may_be_sensitive: bool) -> Result<Entry, FormatError> {
        let eq = self.expect(TokenKind::Equals)?;
        self.expr()?;
        let value_end = self.pos;
        let end = if may_be_sensitive {
            self.sensitive().map_or(value_end, |i| i + 1)
        } else {
            value_end
        };
        Ok(Entry::Assign {
            head: start..eq,
            value: eq + 1..value_end,
            tail: value_end..end,
            trailing: Vec::new(),
        })
    }

    /// A header (keyword or name, then labels) and its body.
    fn block(&mut self, start: usize) -> Result<Entry, FormatError> {
        while let Some(i) = self.next_significant() {
            match self.toks[i].kind {
                TokenKind::LBrace => break,
                TokenKind::Ident | TokenKind::Str => self.pos = i + 1,
                _ => return Err(self.bug("expected a block's label or its opening brace")),
            }
        }
        let open = self.expect(TokenKind::LBrace)?;
        let mut open_comments = Vec::new();
        while let Some(TokenKind::LineComment | TokenKind::BlockComment) = self.kind(self.pos) {
            open_comments.push(self.pos);
            self.pos += 1;
        }
        let entries = self.entries(false)?;
        let close = self.expect(TokenKind::RBrace)?;
        let one_line = !self.toks[open..close]
            .iter()
            .any(|t| t.kind == TokenKind::Newline);
        Ok(Entry::Block {
            header: start..open,
            body: Body {
                open_comments,
                entries,
                one_line,
            },
            trailing: Vec::new(),
        })
    }

    /// One expression: a primary value, then any `.name` and `[index]`.
    fn expr(&mut self) -> Result<(), FormatError> {
        let Some(i) = self.next_significant() else {
            return Err(self.bug("expected a value"));
        };
        self.pos = i + 1;
        match self.toks[i].kind {
            TokenKind::Str | TokenKind::Heredoc | TokenKind::Number => {}
            TokenKind::Ident => {
                if self.peek_is(TokenKind::LParen) {
                    self.pos = self.next_significant().unwrap_or(self.pos);
                    self.balanced()?;
                }
            }
            TokenKind::LBracket | TokenKind::LBrace => {
                self.pos = i;
                self.balanced()?;
            }
            _ => return Err(self.bug("expected a value")),
        }
        loop {
            let Some(i) = self.next_significant() else {
                break;
            };
            match self.toks[i].kind {
                TokenKind::Dot => {
                    self.pos = i + 1;
                    self.expect(TokenKind::Ident)?;
                }
                TokenKind::LBracket => {
                    self.pos = i;
                    self.balanced()?;
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// From an opening bracket at `pos` past the one that closes it.
    fn balanced(&mut self) -> Result<(), FormatError> {
        let mut depth = 0usize;
        while let Some(k) = self.kind(self.pos) {
            self.pos += 1;
            if k.is_open() {
                depth += 1;
            } else if k.is_close() {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
        }
        Err(self.bug("unclosed bracket"))
    }
}

/// Writes entries out in the canonical layout.
struct Printer<'a> {
    src: &'a str,
    toks: &'a [Token],
    out: String,
}

const INDENT: &str = "  ";

impl<'a> Printer<'a> {
    fn text(&self, i: usize) -> &'a str {
        let t = &self.toks[i];
        let text = &self.src[t.span.start..t.span.end];
        if t.kind == TokenKind::LineComment {
            text.trim_end()
        } else {
            text
        }
    }

    fn indent(&mut self, level: usize) {
        for _ in 0..level {
            self.out.push_str(INDENT);
        }
    }

    fn entries(&mut self, entries: &[Entry], level: usize, top: bool) {
        // Blank lines at the start or the end of a body are dropped.
        let first = entries
            .iter()
            .position(|e| !matches!(e, Entry::Blank))
            .unwrap_or(entries.len());
        let last = entries
            .iter()
            .rposition(|e| !matches!(e, Entry::Blank))
            .map_or(first, |i| i + 1);
        let entries = &entries[first..last];
        // Whether the last line written was blank, and whether the last item
        // written (since) was a block.
        let mut blank_before = true;
        let mut last_item_block: Option<bool> = None;
        let mut i = 0;
        while i < entries.len() {
            let entry = &entries[i];
            if let Entry::Blank = entry {
                self.out.push('\n');
                blank_before = true;
                i += 1;
                continue;
            }
            if top && !blank_before {
                // A block item and its neighbours are one blank line apart;
                // the comments just before an item go with it.
                let next_item = entries[i..]
                    .iter()
                    .take_while(|e| !matches!(e, Entry::Blank))
                    .find(|e| e.is_item());
                let next_is_block = next_item.is_some_and(|e| matches!(e, Entry::Block { .. }));
                if last_item_block.is_some_and(|b| b || next_is_block) {
                    self.out.push('\n');
                }
            }
            blank_before = false;
            match entry {
                Entry::Comment(t) => {
                    self.indent(level);
                    self.out.push_str(self.text(*t));
                    self.out.push('\n');
                    // A comment line does not separate its item from the one before.
                    if last_item_block.is_some() && top {
                        blank_before = true;
                    }
                    i += 1;
                }
                Entry::Plain { toks, trailing } => {
                    self.indent(level);
                    let line = self.run(toks.clone(), level);
                    self.out.push_str(&line);
                    self.trailing(trailing);
                    last_item_block = Some(false);
                    i += 1;
                }
                Entry::Block {
                    header,
                    body,
                    trailing,
                } => {
                    self.block(header.clone(), body, trailing, level);
                    last_item_block = Some(true);
                    i += 1;
                }
                Entry::Assign { .. } => {
                    let group = assign_group(&entries[i..]);
                    self.assigns(&entries[i..i + group], level);
                    last_item_block = Some(false);
                    i += group;
                }
                Entry::Blank => unreachable!("handled above"),
            }
        }
    }

    /// Consecutive assignments, their `=` aligned in groups: a group ends
    /// after a value that spans lines.
    fn assigns(&mut self, run: &[Entry], level: usize) {
        let lines: Vec<(AssignText, &Vec<usize>)> = run
            .iter()
            .filter_map(|e| match e {
                Entry::Assign { head, value, tail, trailing } => {
                    Some((self.assign_text(head, value, tail, level), trailing))
                }
                _ => None,
            })
            .collect();
        for group in lines.split_inclusive(|(a, _)| a.value.contains('\n')) {
            let width = group.iter().filter_map(|(a, _)| a.head_width()).max().unwrap_or(0);
            for (assign, trailing) in group {
                self.indent(level);
                self.push_assign(assign, width, level);
                self.trailing(trailing);
            }
        }
    }

    /// An assignment's pieces, printed at `level`.
    fn assign_text(&self, head: &Range<usize>, value: &Range<usize>, tail: &Range<usize>, level: usize) -> AssignText {
        AssignText {
            head: self.run(head.clone(), level),
            value: self.run(value.clone(), level),
            tail: self.run(tail.clone(), level),
            ends_with_heredoc: self.ends_with_heredoc(value.clone()),
        }
    }

    /// `head = value tail`, the head padded to `width`.
    fn push_assign(&mut self, a: &AssignText, width: usize, level: usize) {
        self.out.push_str(&a.head);
        if let Some(w) = a.head_width() {
            for _ in w..width {
                self.out.push(' ');
            }
        }
        self.out.push_str(" = ");
        self.out.push_str(&a.value);
        if !a.tail.is_empty() {
            if a.ends_with_heredoc {
                self.out.push('\n');
                self.indent(level + 1);
            } else {
                self.out.push(' ');
            }
            self.out.push_str(&a.tail);
        }
    }

    fn block(&mut self, header: Range<usize>, body: &Body, trailing: &[usize], level: usize) {
        self.indent(level);
        let header = self.run(header, level);
        self.out.push_str(&header);
        self.out.push_str(" {");
        for &c in &body.open_comments {
            self.out.push(' ');
            self.out.push_str(self.text(c));
        }
        let items = body
            .entries
            .iter()
            .filter(|e| !matches!(e, Entry::Blank))
            .count();
        if items == 0 && body.open_comments.is_empty() {
            self.out.push('}');
        } else if let [Entry::Assign { head, value, tail, trailing: inner }] = &body.entries[..] {
            let assign = self.assign_text(head, value, tail, level + 1);
            if body.one_line && body.open_comments.is_empty() && inner.is_empty() && !assign.value.contains('\n') {
                self.out.push(' ');
                self.push_assign(&assign, 0, level + 1);
                self.out.push_str(" }");
            } else {
                self.expanded(body, level);
            }
        } else {
            self.expanded(body, level);
        }
        self.trailing(trailing);
    }

    /// Whether the last token of `range` that is not a line end is a
    /// heredoc, whose end marker must be alone on its line.
    fn ends_with_heredoc(&self, range: Range<usize>) -> bool {
        self.toks[range]
            .iter()
            .rev()
            .find(|t| t.kind != TokenKind::Newline)
            .is_some_and(|t| t.kind == TokenKind::Heredoc)
    }

    fn expanded(&mut self, body: &Body, level: usize) {
        self.out.push('\n');
        self.entries(&body.entries, level + 1, false);
        self.indent(level);
        self.out.push('}');
    }

    /// Comments after an entry on its line, and the line's end.
    fn trailing(&mut self, trailing: &[usize]) {
        for &c in trailing {
            self.out.push(' ');
            self.out.push_str(self.text(c));
        }
        self.out.push('\n');
    }

    /// Tokens as one piece of a line (a header, a value): spaced by
    /// [`space_between`]. Line ends are kept inside brackets (where they
    /// start lines indented one level past the line that opened the
    /// innermost bracket) and after a line comment; elsewhere the piece is
    /// joined onto one line. Text after the first line starts with its indent.
    fn run(&self, range: Range<usize>, level: usize) -> String {
        let mut out = String::new();
        // Each open bracket: the indent level of the line it was opened on,
        // the token, and its kind.
        let mut open: Vec<(usize, usize, TokenKind)> = Vec::new();
        let mut line_level = level;
        let mut newlines = 0usize;
        let mut prev: Option<TokenKind> = None;
        // Each line begun inside the piece: `Some` when it is `key = ...`
        // directly inside a map written over several lines.
        let mut lines: Vec<Option<MapEntryLine>> = Vec::new();
        let mut on_line = 0usize;
        let mut first_on_line: Option<(TokenKind, usize, usize)> = None;
        for i in range {
            let tok = self.toks[i];
            if tok.kind == TokenKind::Newline {
                if !open.is_empty() {
                    newlines += 1;
                }
                continue;
            }
            // Nothing may follow a line comment, or a heredoc's end marker, on its line.
            let ends_line = matches!(prev, Some(TokenKind::LineComment | TokenKind::Heredoc));
            if let Some(p) = prev {
                if newlines > 0 || ends_line {
                    out.push('\n');
                    if newlines >= 2 && !p.is_open() && !tok.kind.is_close() {
                        out.push('\n');
                        lines.push(None);
                    }
                    line_level = match (tok.kind.is_close(), open.last()) {
                        (true, Some(&(opened, _, _))) => opened,
                        (false, Some(&(opened, _, _))) => opened + 1,
                        (_, None) => level + 1,
                    };
                    for _ in 0..line_level {
                        out.push_str(INDENT);
                    }
                    lines.push(None);
                    on_line = 0;
                } else if space_between(p, tok.kind) {
                    out.push(' ');
                }
            }
            let text = self.text(i);
            out.push_str(text);
            match (on_line, first_on_line, open.last()) {
                (0, _, _) => first_on_line = Some((tok.kind, out.len(), text.chars().count())),
                (1, Some((TokenKind::Ident | TokenKind::Str, key_end, width)), Some(&(_, opener, TokenKind::LBrace)))
                    if tok.kind == TokenKind::Equals =>
                {
                    if let Some(line) = lines.last_mut() {
                        *line = Some(MapEntryLine { opener, key_end, width });
                    }
                }
                _ => {}
            }
            on_line += 1;
            if tok.kind.is_open() {
                open.push((line_level, i, tok.kind));
            } else if tok.kind.is_close() {
                open.pop();
            }
            prev = Some(tok.kind);
            newlines = 0;
        }
        if prev == Some(TokenKind::LineComment) {
            // What follows the piece on its line must not end up in the comment.
            out.push('\n');
            for _ in 0..level + 1 {
                out.push_str(INDENT);
            }
        }
        align_map_entries(&mut out, &lines);
        out
    }
}

/// An assignment as printed: `head = value tail`.
struct AssignText {
    head: String,
    value: String,
    tail: String,
    /// The value ends with a heredoc: the tail goes on the next line.
    ends_with_heredoc: bool,
}

impl AssignText {
    /// The head's width, if it is on one line (only those are aligned).
    fn head_width(&self) -> Option<usize> {
        (!self.head.contains('\n')).then(|| self.head.chars().count())
    }
}

/// A line `key = value` directly inside a map written over several lines.
#[derive(Debug, Clone, Copy)]
struct MapEntryLine {
    /// The map's opening brace (its token index).
    opener: usize,
    /// Where the key ends in the piece's text.
    key_end: usize,
    /// The key's width, in characters.
    width: usize,
}

/// Aligns the `=` of consecutive entry lines of the same map, as
/// attributes are aligned (a blank line, a comment line or a nested value
/// spanning lines ends a group).
fn align_map_entries(out: &mut String, lines: &[Option<MapEntryLine>]) {
    let mut pads: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    while start < lines.len() {
        let Some(first) = lines[start] else {
            start += 1;
            continue;
        };
        let len = lines[start..].iter().take_while(|l| l.is_some_and(|l| l.opener == first.opener)).count();
        let group: Vec<MapEntryLine> = lines[start..start + len].iter().flatten().copied().collect();
        let width = group.iter().map(|l| l.width).max().unwrap_or(0);
        pads.extend(group.iter().map(|l| (l.key_end, width - l.width)));
        start += len;
    }
    // From the end, so that each position is still where it was recorded.
    pads.sort_by(|a, b| b.0.cmp(&a.0));
    for (at, n) in pads {
        if n > 0 {
            out.insert_str(at, &" ".repeat(n));
        }
    }
}

/// How many assignments follow one another from the start of `entries`.
fn assign_group(entries: &[Entry]) -> usize {
    entries.iter().take_while(|e| matches!(e, Entry::Assign { .. })).count()
}

/// Whether one space separates two tokens on a line.
fn space_between(prev: TokenKind, next: TokenKind) -> bool {
    use TokenKind::*;
    !matches!(
        (prev, next),
        (_, Comma | Colon | RParen | RBracket | Dot)
            | (LParen | LBracket | Dot, _)
            | (LBrace, RBrace)
            | (Ident, LParen)
            | (
                Ident | Str | Number | Heredoc | RParen | RBracket | RBrace,
                LBracket
            )
    )
}

#[cfg(test)]
mod tests;
