//! Explains a syntax error. pest says that an item does not parse and where
//! it gave up: the furthest point any alternative reached, with the named
//! rules it tried there. That point is often not where the mistake is (a
//! missing `=` lets `key "value"` run on as a block header until the next
//! `}`), and the literal tokens (`=`, `,`, `]`) are never among the rules.
//!
//! So on the error path, and only there, the failing item is walked again by
//! hand along the grammar of `pipeline.pest`, and the first token that cannot
//! be right is described in the user's terms: the `=` missing between a key
//! and its value, the `,` between list items, the `{` or heredoc never
//! closed (pointing at the opener, not past the end of the file), the item
//! keyword misspelled. A file that parses never gets here.
//!
//! Walking strictly, it accepts exactly what the grammar accepts (the tests
//! check this on random input); only once it has found a mistake does it
//! guess where an unclosed body was meant to end. If it finds nothing wrong,
//! the caller falls back to pest's own account ([`from_pest`](super::syntax_error::from_pest)).

use crate::ast::Span;
use crate::diagnostic::{closest, Code, Diagnostic};

use super::grammar::ITEM_KEYWORDS;
use super::syntax_error::{comment_never_closed_at, join_or, unterminated_string_at_line_end};

/// What went wrong in an item, and where parsing should go on, when the walk
/// knows better than "the next line that starts with an item keyword".
#[derive(Debug)]
pub(crate) struct Explained {
    pub diag: Diagnostic,
    pub resume: Option<usize>,
    /// The mistake is a block comment that no `*/` closes: the rest of the
    /// file is inside it, so nothing after it can parse.
    pub comment_never_closed: bool,
}

/// Walks the item starting at `start` (after trivia) and explains its first
/// mistake; `None` if the walk finds none.
pub(crate) fn explain_item(src: &str, start: usize) -> Option<Explained> {
    // First strictly by the grammar: an item it accepts is never blamed.
    // Then again with the guesses about what was meant (an item keyword at
    // the start of a line ends a body that was never closed), which may
    // place the mistake earlier and resume parsing at the next item.
    Walker::new(src, start, false).item().err()?;
    Walker::new(src, start, true).item().err().map(|e| *e)
}

/// Where a block comment opens that no `*/` closes, if the file has one
/// before any other mistake.
///
/// pest reads such a comment to the end of the file every time a rule tries
/// a comment at its start, a dozen times over on the error path: seconds for
/// a file of a few megabytes. Knowing the comment is there, the parser skips
/// what cannot succeed. The file is walked only if the cheap test finds a
/// `/*` after the last `*/`; the walk is linear and agrees with the grammar.
pub(crate) fn comment_never_closed(src: &str) -> Option<usize> {
    // A `/*` that opens a comment never closed starts after the last `*/`
    // (it may share its `*`: `*/*`), or at it (`/*/`).
    // Bytes: `*` and `/` are ASCII, and `q - 1` may be inside a character.
    let from = src.rfind("*/").map_or(0, |q| q.saturating_sub(1));
    if !src.as_bytes()[from..].windows(2).any(|w| w == b"/*") {
        return None;
    }
    // The strict walk's first mistake, without the guesses `explain_item`
    // adds, which may blame something before the comment instead.
    let mut w = Walker::new(src, 0, false);
    loop {
        let step = w.trivia().and_then(|()| {
            if w.pos >= src.len() {
                return Ok(false);
            }
            w.open.clear();
            w.item().map(|()| true)
        });
        match step {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return e.comment_never_closed.then(|| e.diag.position()),
        }
    }
}

/// Walks a whole file, item after item: its first mistake, if any. For the
/// tests, which check that the walk agrees with the grammar.
#[cfg(test)]
pub(crate) fn explain_file(src: &str) -> Option<Explained> {
    let mut w = Walker::new(src, 0, false);
    loop {
        if let Err(e) = w.trivia() {
            return Some(*e);
        }
        if w.pos >= src.len() {
            return None;
        }
        w.open.clear();
        let start = w.pos;
        if w.item().is_err() {
            return explain_item(src, start);
        }
    }
}

type Walk<T = ()> = Result<T, Box<Explained>>;

/// A delimiter that is open while the walk is inside it.
struct Open {
    span: Span,
    /// What it opens, for "unclosed `{` of ...": "resource `vpc`", "a map";
    /// empty for a list, an index or an interpolation ("unclosed `[`").
    what: String,
    /// The indentation of the line it is on (for `{` only).
    indent: Option<usize>,
}

struct Walker<'s> {
    src: &'s str,
    pos: usize,
    /// The last token consumed, to point at when the file ends too early.
    last: Span,
    open: Vec<Open>,
    /// A `{` whose `}` is not indented like its line: when a brace turns out
    /// unclosed at the end of the file, this is the likelier culprit.
    misindented: Option<(Span, usize)>,
    /// Whether to guess where a body that was never closed ends.
    guess: bool,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl<'s> Walker<'s> {
    fn new(src: &'s str, pos: usize, guess: bool) -> Self {
        Walker { src, pos, last: Span::new(pos, pos), open: Vec::new(), misindented: None, guess }
    }

    // ---- characters and trivia ------------------------------------------------

    fn rest(&self) -> &'s str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn at(&self, s: &str) -> bool {
        self.rest().starts_with(s)
    }

    /// Skips whitespace and comments, as the grammar's implicit WHITESPACE and COMMENT do.
    fn trivia(&mut self) -> Walk {
        loop {
            let rest = self.rest();
            let c = match rest.chars().next() {
                Some(c) => c,
                None => return Ok(()),
            };
            if matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{FEFF}') {
                self.pos += c.len_utf8();
            } else if rest.starts_with('#') || rest.starts_with("//") {
                self.pos += rest.find('\n').unwrap_or(rest.len());
            } else if let Some(comment) = rest.strip_prefix("/*") {
                match comment.find("*/") {
                    Some(i) => self.pos += i + 4,
                    None => {
                        let mut failed = self.fail(comment_never_closed_at(self.pos));
                        failed.comment_never_closed = true;
                        return Err(failed);
                    }
                }
            } else {
                return Ok(());
            }
        }
    }

    /// Spaces and tabs only.
    fn hspace(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }

    fn take(&mut self, s: &str) -> bool {
        if self.at(s) {
            self.last = Span::new(self.pos, self.pos + s.len());
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// The identifier at `pos`, if any: its end.
    fn ident_end(&self, pos: usize) -> Option<usize> {
        let rest = &self.src[pos..];
        let mut chars = rest.char_indices();
        match chars.next() {
            Some((_, c)) if is_ident_start(c) => {}
            _ => return None,
        }
        let len = chars.find(|(_, c)| !is_ident_char(*c)).map(|(i, _)| i).unwrap_or(rest.len());
        Some(pos + len)
    }

    fn word_at(&self, pos: usize) -> Option<&'s str> {
        self.ident_end(pos).map(|end| &self.src[pos..end])
    }

    fn ident(&mut self) -> Option<Span> {
        let end = self.ident_end(self.pos)?;
        let span = Span::new(self.pos, end);
        self.pos = end;
        self.last = span;
        Some(span)
    }

    fn column(&self, pos: usize) -> usize {
        pos - self.src[..pos].rfind('\n').map(|i| i + 1).unwrap_or(0)
    }

    /// The indentation of the line `pos` is on.
    fn indent_of(&self, pos: usize) -> usize {
        let start = pos - self.column(pos);
        self.src[start..].chars().take_while(|c| *c == ' ' || *c == '\t').count()
    }

    fn first_on_line(&self, pos: usize) -> bool {
        self.src[pos - self.column(pos)..pos].chars().all(|c| c == ' ' || c == '\t')
    }

    fn line_of(&self, pos: usize) -> usize {
        self.src[..pos].matches('\n').count() + 1
    }

    // ---- describing what was found --------------------------------------------

    /// The span of the token at `pos`: a word, a number, a string on one
    /// line, a heredoc opener, or one character. Empty at the end of the file.
    fn token_at(&self, pos: usize) -> Span {
        let rest = &self.src[pos..];
        let Some(c) = rest.chars().next() else { return Span::new(pos, pos) };
        let len = if c == '"' {
            let mut escaped = false;
            let mut end = rest.find('\n').unwrap_or(rest.len());
            for (i, ch) in rest.char_indices().skip(1) {
                if ch == '\n' {
                    break;
                }
                if !escaped && ch == '"' {
                    end = i + 1;
                    break;
                }
                escaped = !escaped && ch == '\\';
            }
            end
        } else if let Some(after) = rest.strip_prefix("<<") {
            let marker = after.trim_start_matches('-');
            let word = marker.chars().take_while(|c| is_ident_char(*c)).map(char::len_utf8).sum::<usize>();
            rest.len() - marker.len() + word
        } else if c.is_alphanumeric() || c == '_' || (c == '-' && rest[1..].starts_with(|d: char| d.is_ascii_digit())) {
            let body = if c == '-' { &rest[1..] } else { rest };
            let n: usize = body
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-' || *c == '.')
                .map(char::len_utf8)
                .sum();
            // `1.5` and `a.b` read as one token; a trailing `.` does not.
            let n = body[..n].trim_end_matches('.').len();
            n + (rest.len() - body.len())
        } else {
            c.len_utf8()
        };
        Span::new(pos, pos + len.max(c.len_utf8()))
    }

    fn describe(&self, span: Span) -> String {
        if span.is_empty() {
            return "end of file".into();
        }
        let text = &self.src[span.start..span.end];
        if text.starts_with(['\n', '\r']) {
            "end of line".into()
        } else if text.chars().count() <= 32 {
            format!("`{text}`")
        } else if text.starts_with('"') {
            "a string".into()
        } else {
            format!("`{}...`", text.chars().take(24).collect::<String>())
        }
    }

    fn fail(&self, diag: Diagnostic) -> Box<Explained> {
        Box::new(Explained { diag, resume: None, comment_never_closed: false })
    }

    /// "expected X, found Y" at the current token. At the end of the file the
    /// innermost open delimiter is reported as unclosed instead.
    fn expected(&self, what: &[&str], label: Option<String>, help: Option<String>) -> Box<Explained> {
        let found = self.token_at(self.pos);
        // The next item, at the start of a line: whatever is open was never
        // closed, and parsing goes on from that item.
        let next_item = self.next_item_at(self.pos);
        if let (Some(next), Some(open)) = (next_item, self.open.last()) {
            return self.unclosed(open, Some(next));
        }
        if found.is_empty() {
            if let Some(open) = self.open.last() {
                return self.unclosed(open, None);
            }
            // Nothing is open: point after the last token, not past the end.
            let span = self.last;
            let want = join_or(what);
            return self.fail(
                Diagnostic::at(Code::Syntax, span, format!("expected {want}, found end of file"))
                    .with_label(span, format!("expected {want} after this"))
                    .maybe_help(help),
            );
        }
        let want = join_or(what);
        let mut d = Diagnostic::at(Code::Syntax, found, format!("expected {want}, found {}", self.describe(found)))
            .with_label(found, label.unwrap_or_else(|| format!("expected {want}")))
            .maybe_help(help);
        // A closing delimiter of another kind, when something is open: say which.
        if let (Some(c), Some(open)) = (self.peek(), self.open.last()) {
            if matches!(c, '}' | ']' | ')') && !self.src[open.span.start..].starts_with(c_opener(c)) {
                d = d.with_label(open.span, format!("this `{}` is not closed", &self.src[open.span.start..open.span.end]));
            }
        }
        Box::new(Explained { diag: d, resume: next_item.map(|s| s.start), comment_never_closed: false })
    }

    /// Whether the line at `pos` reads as the start of item `word`: the
    /// keyword followed by what comes next in that item.
    fn item_header(&self, pos: usize, word: &str) -> bool {
        let after = &self.src[pos + word.len()..];
        let rest = after.trim_start_matches([' ', '\t']);
        if rest.len() == after.len() && word != "flow" {
            return false;
        }
        match word {
            "pipeline" | "service" => rest.starts_with('"'),
            "flow" => rest.starts_with('{'),
            _ => rest.starts_with(is_ident_start),
        }
    }

    /// The keyword of an item that starts at `pos`: an item keyword at the
    /// start of a line, not used as a key (`resource = 1`).
    fn next_item_at(&self, pos: usize) -> Option<Span> {
        let word = self.word_at(pos)?;
        if self.column(pos) != 0 || !ITEM_KEYWORDS.contains(&word) {
            return None;
        }
        let after = self.src[pos + word.len()..].trim_start_matches([' ', '\t']);
        (!after.starts_with('=')).then(|| Span::new(pos, pos + word.len()))
    }

    fn unclosed(&self, open: &Open, next_item: Option<Span>) -> Box<Explained> {
        let text = &self.src[open.span.start..open.span.end];
        let message = if open.what.is_empty() { format!("unclosed `{text}`") } else { format!("unclosed `{text}` of {}", open.what) };
        let mut d = Diagnostic::at(Code::Syntax, open.span, message).with_label(open.span, format!("this `{text}` is never closed"));
        let closer = closer_of(text);
        let mut help = if open.what.is_empty() { format!("close it with `{closer}`") } else { format!("add a `{closer}` to end {}", open.what) };
        if let Some(next) = next_item {
            d = d.with_label(next, "the next item starts here");
            help = format!("add the `{closer}` before the next item");
        }
        if let Some((inner, line)) = self.misindented.filter(|(s, _)| s.start > open.span.start) {
            d = d.with_label(inner, format!("perhaps this `{{` is the one not closed: the `}}` on line {line} is indented differently"));
        }
        Box::new(Explained { diag: d.help(help), resume: next_item.map(|s| s.start), comment_never_closed: false })
    }

    fn push(&mut self, span: Span, what: String, indent: bool) {
        let indent = indent.then(|| self.indent_of(span.start));
        self.open.push(Open { span, what, indent });
    }

    /// Consumes the closer at `pos` and pops its opener.
    fn close(&mut self) {
        let closer = self.pos;
        self.pos += 1;
        self.last = Span::new(closer, closer + 1);
        if let Some(open) = self.open.pop() {
            if let Some(indent) = open.indent {
                let same_line = !self.src[open.span.start..closer].contains('\n');
                if !same_line && self.first_on_line(closer) && self.column(closer) != indent && self.misindented.is_none() {
                    self.misindented = Some((open.span, self.line_of(closer)));
                }
            }
        }
    }

    // ---- items ----------------------------------------------------------------

    fn item(&mut self) -> Walk {
        self.trivia()?;
        let start = self.pos;
        let Some(word) = self.word_at(start) else {
            return Err(self.not_an_item());
        };
        if !ITEM_KEYWORDS.contains(&word) {
            return Err(self.not_an_item());
        }
        self.ident();
        match word {
            "pipeline" => {
                self.trivia()?;
                self.required_string("the pipeline's name", "write the name in quotes: `pipeline \"network\"`")?;
            }
            "var" => self.var()?,
            "plugin" | "credentials" | "environment" => {
                let name = self.name(word)?;
                let owner = match word {
                    "credentials" => format!("`credentials {name}`"),
                    _ => format!("{word} `{name}`"),
                };
                self.body(owner)?;
            }
            "flow" => self.body("the pipeline's `flow`".into())?,
            "resource" => {
                let name = self.name("resource")?;
                self.trivia()?;
                self.required_string(
                    "the resource's type, like \"aws.vpc\"",
                    &format!("a resource is declared as `resource {name} \"<plugin>.<type>\" {{ ... }}`"),
                )?;
                self.body(format!("resource `{name}`"))?;
            }
            "service" => {
                self.trivia()?;
                let name_at = self.pos;
                self.required_string(
                    "the service's name, in quotes",
                    "a service is declared as `service \"<name>\" { ... }`",
                )?;
                let name = self.src[name_at..self.pos].trim_matches('"').to_string();
                self.body(format!("service `{name}`"))?;
            }
            "output" => {
                let name = self.name("output")?;
                self.trivia()?;
                if self.word_at(self.pos) == Some("sensitive") {
                    return Err(self.sensitive_before_value(&name));
                }
                if !self.take("=") {
                    return Err(self.missing_equals(&name, "output "));
                }
                self.trivia()?;
                self.expr(&format!("a value for output `{name}`"))?;
                self.output_end()?;
            }
            _ => {}
        }
        Ok(())
    }

    fn not_an_item(&self) -> Box<Explained> {
        let found = self.token_at(self.pos);
        if found.is_empty() {
            // Only trivia left: nothing to explain.
            return self.fail(Diagnostic::at(Code::Syntax, self.last, "unexpected end of file"));
        }
        let text = &self.src[found.start..found.end];
        if text == "}" {
            return self.fail(
                Diagnostic::at(Code::Syntax, found, "unexpected `}`")
                    .with_label(found, "no `{` is open here")
                    .help("remove it, or look for a `}` too many in the item above"),
            );
        }
        if text == "sensitive" {
            return self.fail(
                Diagnostic::at(Code::Syntax, found, "expected an item, found `sensitive`")
                    .with_label(found, "not an item keyword")
                    .help("`sensitive` ends a var or an output, as in `var password: string sensitive`"),
            );
        }
        let help = match self.word_at(self.pos).and_then(|w| closest(w, ITEM_KEYWORDS)) {
            Some(k) => format!("did you mean `{k}`?"),
            None => {
                let keywords = ITEM_KEYWORDS.map(|k| format!("`{k}`"));
                format!("an item starts with {}", join_or(&keywords.each_ref().map(String::as_str)))
            }
        };
        self.fail(
            Diagnostic::at(Code::Syntax, found, format!("expected an item, found {}", self.describe(found)))
                .with_label(found, "not an item keyword")
                .help(help),
        )
    }

    /// The name after an item keyword.
    fn name(&mut self, what: &str) -> Walk<String> {
        self.trivia()?;
        match self.ident() {
            Some(s) => Ok(self.src[s.start..s.end].to_string()),
            None => Err(self.expected(&["a name"], Some(format!("expected the {what}'s name")), None)),
        }
    }

    fn required_string(&mut self, label: &str, help: &str) -> Walk {
        if self.peek() == Some('"') {
            return self.string();
        }
        Err(self.expected(&["a string"], Some(format!("expected {label}")), Some(help.to_string())))
    }

    /// `var name (: type)? (= expr)? sensitive?`, then nothing else on the line.
    fn var(&mut self) -> Walk {
        let name = self.name("var")?;
        let name_end = self.last.end;
        self.trivia()?;
        let mut typed = false;
        if self.take(":") {
            self.trivia()?;
            if self.ident().is_none() {
                return Err(self.expected(
                    &["a type"],
                    None,
                    Some("the types are: string, number, bool, list, map, any".into()),
                ));
            }
            typed = true;
            self.trivia()?;
        }
        let mut valued = false;
        if self.take("=") {
            self.trivia()?;
            self.expr(&format!("a value for var `{name}`"))?;
            valued = true;
        }
        let sensitive = self.sensitive_keyword()?;
        // Anything else on the same line is a mistake in this var, not the
        // start of the next item (`var region string = "x"`).
        let end = self.last.end;
        self.pos = end;
        self.trivia()?;
        let next = self.pos;
        if let Some(first) = sensitive {
            self.sensitive_once(first)?;
        }
        let same_line = !self.src[end..next].contains('\n');
        let starts_item = self.word_at(next).is_some_and(|w| ITEM_KEYWORDS.contains(&w));
        if next >= self.src.len() || !same_line || starts_item {
            return Ok(());
        }
        if let Some(first) = sensitive {
            let head = format!("var {name}{}", self.src[name_end..first.start].trim_end());
            return Err(self.after_sensitive("a var", Some(head)));
        }
        let word = self.word_at(next);
        let is_type = word.is_some_and(|w| ["string", "number", "bool", "list", "map", "any"].contains(&w));
        if !is_type && word.is_some_and(near_sensitive) {
            return Err(self.misspelled_sensitive());
        }
        Err(match (typed, valued) {
            (false, false) => self.expected(
                &["`:`", "`=`"],
                Some(if is_type { "expected `:` before the type".into() } else { "expected `:` or `=`".into() }),
                Some(match word {
                    Some(t) if is_type => format!("a var's type follows a `:`: `var {name}: {t}`"),
                    _ => format!("write `var {name}: <type> = <default>`"),
                }),
            ),
            (true, false) => self.expected(&["`=`"], None, Some(format!("a var's default follows a `=`: `var {name}: <type> = <default>`"))),
            _ => self.expected(&["a new line"], Some("nothing may follow the var's value on its line".into()), None),
        })
    }

    // ---- `sensitive` ---------------------------------------------------------------

    /// The `sensitive` that may end a var or an output, on its line or a
    /// later one: its span, if it is there. Nothing moves if it is not.
    fn sensitive_keyword(&mut self) -> Walk<Option<Span>> {
        let before = self.pos;
        self.trivia()?;
        if self.word_at(self.pos) == Some("sensitive") {
            return Ok(self.ident());
        }
        self.pos = before;
        Ok(None)
    }

    /// After a `sensitive` at `first`, with the trivia after it skipped:
    /// another one is a mistake (`sensitive` never starts an item).
    fn sensitive_once(&self, first: Span) -> Walk {
        if self.word_at(self.pos) != Some("sensitive") {
            return Ok(());
        }
        let again = Span::new(self.pos, self.pos + "sensitive".len());
        Err(self.fail(
            Diagnostic::at(Code::Syntax, again, "`sensitive` is given twice")
                .with_label(again, "given again here")
                .with_label(first, "first given here")
                .help("write `sensitive` once, at the end of the declaration"),
        ))
    }

    /// Something left on the line, at `pos`, after the `sensitive` that ends
    /// a var or an output (`what`). `rewrite` is how the var starts up to
    /// the keyword (`var t: string`), to show where the keyword goes when
    /// it was put before the default.
    fn after_sensitive(&self, what: &str, rewrite: Option<String>) -> Box<Explained> {
        let rest = self.rest().lines().next().unwrap_or("").trim_end();
        let help = match rewrite {
            // `var t sensitive = 1`: the keyword was put before the type or the default.
            Some(head) if (rest.starts_with('=') || rest.starts_with(':')) && rest.len() <= 40 => {
                let gap = if rest.starts_with(':') { "" } else { " " };
                format!("`sensitive` comes last: `{head}{gap}{rest} sensitive`")
            }
            _ => format!("`sensitive` is the last word of {what}"),
        };
        self.expected(&["a new line"], Some("nothing may follow `sensitive` on its line".into()), Some(help))
    }

    /// `output name sensitive ...`: the keyword where the `=` belongs.
    fn sensitive_before_value(&self, name: &str) -> Box<Explained> {
        let at = Span::new(self.pos, self.pos + "sensitive".len());
        let after = self.src[at.end..].lines().next().unwrap_or("").trim();
        let value = after.strip_prefix('=').map(str::trim).filter(|v| !v.is_empty() && v.len() <= 32);
        self.fail(
            Diagnostic::at(Code::Syntax, at, "expected `=`, found `sensitive`")
                .with_label(at, "`sensitive` comes after the value")
                .help(format!("write `output {name} = {} sensitive`", value.unwrap_or("<value>"))),
        )
    }

    /// After an output's value: the optional `sensitive`, said once, and a
    /// misspelled one on the same line.
    fn output_end(&mut self) -> Walk {
        let sensitive = self.sensitive_keyword()?;
        let end = self.last.end;
        self.pos = end;
        self.trivia()?;
        let next = self.pos;
        if let Some(first) = sensitive {
            self.sensitive_once(first)?;
        }
        let same_line = !self.src[end..next].contains('\n');
        let word = self.word_at(next);
        let starts_item = word.is_some_and(|w| ITEM_KEYWORDS.contains(&w));
        // Anything else is left to the next item, as after any item: on
        // another line, or after an output without `sensitive`, it may be a
        // misspelled item keyword.
        if next >= self.src.len() || !same_line || starts_item {
            self.pos = end;
            return Ok(());
        }
        if sensitive.is_some() {
            return Err(self.after_sensitive("an output", None));
        }
        if word.is_some_and(near_sensitive) {
            return Err(self.misspelled_sensitive());
        }
        self.pos = end;
        Ok(())
    }

    /// The word at `pos` looks like a misspelled `sensitive`.
    fn misspelled_sensitive(&self) -> Box<Explained> {
        self.expected(&["`sensitive`"], None, Some("did you mean `sensitive`?".into()))
    }

    // ---- bodies -----------------------------------------------------------------

    /// `{ (attribute | block)* }` of `owner`.
    fn body(&mut self, owner: String) -> Walk {
        self.trivia()?;
        if self.peek() != Some('{') {
            return Err(self.expected(&["`{`"], Some(format!("expected the body of {owner}")), None));
        }
        let open = self.pos;
        self.take("{");
        self.push(Span::new(open, open + 1), owner.clone(), true);
        // Whether this body's entries are indented (or on the `{` line): only
        // then does an item keyword at the start of a line end it.
        let mut indented: Option<bool> = None;
        loop {
            self.trivia()?;
            let here = self.pos;
            match self.peek() {
                Some('}') => {
                    self.close();
                    return Ok(());
                }
                None => {
                    let open = self.open.last().expect("the body is open");
                    return Err(self.unclosed(open, None));
                }
                Some(c @ (';' | ',')) => {
                    let span = Span::new(here, here + 1);
                    return Err(self.fail(
                        Diagnostic::at(Code::Syntax, span, format!("unexpected `{c}`"))
                            .with_label(span, "not expected here")
                            .help("remove it: the attributes of a block need no separator, only a new line or a space"),
                    ));
                }
                Some('"') => {
                    let found = self.token_at(here);
                    return Err(self.fail(
                        Diagnostic::at(Code::Syntax, found, format!("expected a key, found {}", self.describe(found)))
                            .with_label(found, "a key is a name, not a string")
                            .help("write the key without quotes"),
                    ));
                }
                _ => {}
            }
            let Some(word) = self.word_at(here) else {
                return Err(self.expected(
                    &["an attribute", "`}`"],
                    Some("expected an attribute (`key = value`), a block or `}`".into()),
                    None,
                ));
            };
            // An item keyword at the start of a line, not used as a key: the
            // next item, so this body was never closed.
            // (`flow { }` is also a block of resources and environments: only
            // in a body whose entries are indented does it end the body.)
            let header = self.next_item_at(here).filter(|_| self.guess && self.item_header(here, word));
            if let Some(next) = header.filter(|_| indented == Some(true) || (indented.is_none() && word != "flow")) {
                let open = self.open.last().expect("the body is open");
                return Err(self.unclosed(open, Some(next)));
            }
            if indented.is_none() {
                indented = Some(self.column(here) > self.indent_of(open) || !self.src[open..here].contains('\n'));
            }
            self.ident();
            self.entry(word, &owner)?;
        }
    }

    /// What follows the key `key` of an entry in a body.
    fn entry(&mut self, key: &str, owner: &str) -> Walk {
        self.trivia()?;
        if self.take("=") {
            self.trivia()?;
            return self.expr(&format!("a value for `{key}`"));
        }
        // A block: labels (names or strings), then its body.
        let labels_start = self.pos;
        loop {
            match self.peek() {
                Some('{') => return self.body(format!("the `{key}` block of {owner}")),
                Some('"') => {
                    self.string()?;
                    self.trivia()?;
                }
                _ if self.word_at(self.pos).is_some() => {
                    self.ident();
                    self.trivia()?;
                }
                _ => break,
            }
        }
        // Not a block: the `=` is missing. Point at what follows the key.
        self.pos = labels_start;
        if self.at(":") {
            let span = Span::new(self.pos, self.pos + 1);
            return Err(self.fail(
                Diagnostic::at(Code::Syntax, span, format!("expected `=` after `{key}`, found `:`"))
                    .with_label(span, "expected `=`")
                    .help(format!("attributes are written `{key} = value`")),
            ));
        }
        if self.starts_expr() {
            return Err(self.missing_equals(key, ""));
        }
        self.pos = labels_start;
        Err(self.expected(
            &["`=`", "`{`"],
            Some(format!("expected `=` and a value for `{key}`, or a block `{key} {{ ... }}`")),
            None,
        ))
    }

    /// `key value` without the `=`: points at the value. `prefix` is written
    /// before the key in the help (`output `).
    fn missing_equals(&mut self, key: &str, prefix: &str) -> Box<Explained> {
        let start = self.pos;
        if !self.starts_expr() {
            return self.expected(&["`=`"], None, None);
        }
        // Underline the whole value when it reads as one.
        let mut probe = Walker::new(self.src, start, false);
        let span = match probe.expr("a value") {
            Ok(()) if probe.last.end > start && !self.src[start..probe.last.end].contains('\n') => Span::new(start, probe.last.end),
            _ => self.token_at(start),
        };
        self.fail(
            Diagnostic::at(Code::Syntax, span, format!("expected `=` between `{key}` and its value"))
                .with_label(span, "expected `=` before this")
                .help(format!("write `{prefix}{key} = {}`", if span.len() <= 32 { &self.src[span.start..span.end] } else { "..." })),
        )
    }

    fn starts_expr(&self) -> bool {
        match self.peek() {
            Some('"' | '[' | '{') => true,
            Some('<') => self.at("<<"),
            Some('-') => self.rest()[1..].starts_with(|c: char| c.is_ascii_digit()),
            Some(c) => c.is_ascii_digit() || is_ident_start(c),
            None => false,
        }
    }

    // ---- expressions ------------------------------------------------------------

    /// `primary (.name | [expr])*`; `what` names the value for messages.
    fn expr(&mut self, what: &str) -> Walk {
        self.primary(what)?;
        loop {
            let before = self.pos;
            self.trivia()?;
            if self.take(".") {
                self.trivia()?;
                if self.ident().is_none() {
                    return Err(self.expected(&["a name"], Some("expected a name after `.`".into()), None));
                }
            } else if self.peek() == Some('[') {
                let open = self.pos;
                self.take("[");
                self.push(Span::new(open, open + 1), String::new(), false);
                self.trivia()?;
                self.expr("an index")?;
                self.trivia()?;
                if self.peek() != Some(']') {
                    return Err(self.expected(&["`]`"], None, None));
                }
                self.close();
            } else {
                self.pos = before;
                return Ok(());
            }
        }
    }

    fn primary(&mut self, what: &str) -> Walk {
        let start = self.pos;
        for lit in ["null", "true", "false"] {
            if self.word_at(start) == Some(lit) {
                self.ident();
                return Ok(());
            }
        }
        match self.peek() {
            Some(c) if c.is_ascii_digit() || (c == '-' && self.rest()[1..].starts_with(|d: char| d.is_ascii_digit())) => {
                self.number();
                Ok(())
            }
            Some('"') => self.string(),
            Some('<') if self.at("<<") => self.heredoc(),
            Some('[') => self.sequence(']', "", "list items"),
            Some('{') => self.map(),
            Some(c) if is_ident_start(c) => {
                let name = self.ident().expect("an identifier starts here");
                let after_name = self.pos;
                self.trivia()?;
                if self.peek() == Some('(') {
                    let f = self.src[name.start..name.end].to_string();
                    return self.sequence(')', &format!("the call to `{f}`"), "arguments");
                }
                self.pos = after_name;
                Ok(())
            }
            _ => Err(self.expected(&["an expression"], Some(format!("expected {what}")), None)),
        }
    }

    fn number(&mut self) {
        let bytes = self.src.as_bytes();
        let digits = |mut i: usize| {
            let s = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            (i > s).then_some(i)
        };
        let start = self.pos;
        let mut i = if bytes[start] == b'-' { start + 1 } else { start };
        i = digits(i).unwrap_or(i);
        if i < bytes.len() && bytes[i] == b'.' {
            if let Some(j) = digits(i + 1) {
                i = j;
            }
        }
        if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
            let mut j = i + 1;
            if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
                j += 1;
            }
            if let Some(k) = digits(j) {
                i = k;
            }
        }
        self.pos = i;
        self.last = Span::new(start, i);
    }

    /// A list `[a, b]` or call arguments `f(a, b)`: expressions separated by
    /// `,`, with an optional trailing `,`, up to `closer`.
    fn sequence(&mut self, closer: char, what: &str, items: &str) -> Walk {
        let open = self.pos;
        let opener = self.peek().expect("at the opener");
        self.take(&opener.to_string());
        self.push(Span::new(open, open + 1), what.to_string(), false);
        let closer_s = format!("`{closer}`");
        self.trivia()?;
        if self.peek() == Some(closer) {
            self.close();
            return Ok(());
        }
        loop {
            if !self.starts_expr() {
                return Err(self.expected(&["an expression", &closer_s], None, None));
            }
            self.expr(&format!("one of the {items}"))?;
            self.trivia()?;
            if self.peek() == Some(closer) {
                self.close();
                return Ok(());
            }
            if !self.take(",") {
                let help = if self.starts_expr() { Some(format!("separate the {items} with `,`")) } else { None };
                return Err(self.expected(&["`,`", &closer_s], None, help));
            }
            self.trivia()?;
            if self.peek() == Some(closer) {
                self.close();
                return Ok(());
            }
        }
    }

    /// `{ key = value, ... }` (`:` also separates, `,` is optional).
    fn map(&mut self) -> Walk {
        let open = self.pos;
        self.take("{");
        self.push(Span::new(open, open + 1), "a map".into(), true);
        let mut after_value = false;
        loop {
            self.trivia()?;
            match self.peek() {
                Some('}') => {
                    self.close();
                    return Ok(());
                }
                Some('"') => self.string()?,
                _ if self.ident().is_some() => {}
                _ => {
                    return Err(if after_value {
                        self.expected(&["`,`", "`}`"], None, None)
                    } else {
                        self.expected(&["a key", "`}`"], None, None)
                    })
                }
            }
            let key = self.src[self.last.start..self.last.end].to_string();
            self.trivia()?;
            if !(self.take("=") || self.take(":")) {
                if self.starts_expr() {
                    return Err(self.missing_equals(&key, ""));
                }
                return Err(self.expected(&["`=`"], None, None));
            }
            self.trivia()?;
            self.expr(&format!("a value for `{key}`"))?;
            self.trivia()?;
            after_value = !self.take(",");
        }
    }

    // ---- strings ----------------------------------------------------------------

    fn string(&mut self) -> Walk {
        let open = self.pos;
        self.pos += 1;
        loop {
            let rest = self.rest();
            let Some(c) = rest.chars().next() else {
                let span = Span::new(open, open + 1);
                return Err(self.fail(
                    Diagnostic::at(Code::Syntax, span, "unterminated string")
                        .with_label(span, "this string is never closed")
                        .help("close the string with `\"`"),
                ));
            };
            match c {
                '"' => {
                    self.pos += 1;
                    self.last = Span::new(open, self.pos);
                    return Ok(());
                }
                '\n' => {
                    let at = self.pos;
                    return Err(self.fail(unterminated_string_at_line_end(at)));
                }
                '\\' => {
                    self.pos += 1;
                    match self.peek() {
                        Some('\n') | None => {}
                        Some(c) => self.pos += c.len_utf8(),
                    }
                }
                '$' if rest.starts_with("$${") => self.pos += 3,
                '$' if rest.starts_with("${") => self.interpolation()?,
                c => self.pos += c.len_utf8(),
            }
        }
    }

    fn interpolation(&mut self) -> Walk {
        let open = self.pos;
        self.pos += 2;
        self.last = Span::new(open, open + 2);
        self.push(Span::new(open, open + 2), String::new(), false);
        self.trivia()?;
        let expr_start = self.pos;
        self.expr("an expression to interpolate")?;
        self.trivia()?;
        if self.peek() != Some('}') {
            let inner = self.src[expr_start..self.last.end].trim();
            let help = (inner.len() <= 32 && !inner.contains('\n')).then(|| format!("write `${{{inner}}}`"));
            let mut e = self.expected(&["`}` to close the interpolation"], Some("expected `}`".into()), help);
            if !self.token_at(self.pos).is_empty() {
                e.diag = e.diag.with_label(Span::new(open, open + 2), "the interpolation starts here");
            }
            return Err(e);
        }
        self.close();
        Ok(())
    }

    fn heredoc(&mut self) -> Walk {
        let open = self.pos;
        self.pos += 2;
        self.take("-");
        let Some(marker) = self.ident() else {
            return Err(self.expected(&["a marker"], Some("expected the heredoc's marker, like `<<EOT`".into()), None));
        };
        let marker = &self.src[marker.start..marker.end];
        let opener = Span::new(open, self.pos);
        self.hspace();
        if !(self.take("\n") || self.take("\r\n") || self.take("\r")) {
            if self.pos >= self.src.len() {
                return Err(self.heredoc_unclosed(opener, marker));
            }
            return Err(self.expected(
                &["a new line"],
                Some(format!("the text of the heredoc starts on the line after `<<{marker}`")),
                None,
            ));
        }
        loop {
            // The closing line: the marker alone, with blanks around it.
            let line = self.rest();
            let trimmed = line.trim_start_matches([' ', '\t']);
            if let Some(after) = trimmed.strip_prefix(marker) {
                let after = after.trim_start_matches([' ', '\t']);
                if after.is_empty() || after.starts_with('\n') || after.starts_with('\r') {
                    self.pos += line.len() - trimmed.len() + marker.len();
                    self.last = Span::new(self.pos - marker.len(), self.pos);
                    return Ok(());
                }
            }
            if line.is_empty() {
                return Err(self.heredoc_unclosed(opener, marker));
            }
            // A line of text, with interpolations.
            loop {
                let rest = self.rest();
                if rest.starts_with('\n') || rest.starts_with('\r') {
                    self.pos += if rest.starts_with("\r\n") { 2 } else { 1 };
                    break;
                }
                if rest.starts_with("$${") {
                    self.pos += 3;
                } else if rest.starts_with("${") {
                    self.interpolation()?;
                } else if let Some(c) = rest.chars().next() {
                    self.pos += c.len_utf8();
                } else {
                    return Err(self.heredoc_unclosed(opener, marker));
                }
            }
        }
    }

    fn heredoc_unclosed(&self, opener: Span, marker: &str) -> Box<Explained> {
        let text = &self.src[opener.start..opener.end];
        // A line that looks like a closing marker, but another one.
        let body = &self.src[opener.end..];
        let near = body
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && *l != marker && l.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        // `EOT sensitive`: the keyword after the marker, on its line.
        let closed_with_more = body.lines().map(str::trim).any(|l| {
            l.strip_prefix(marker).is_some_and(|after| after.starts_with([' ', '\t']) && after.trim() == "sensitive")
        });
        let help = match near {
            _ if closed_with_more => {
                format!("`{marker}` must be alone on its line: put `sensitive` on the line after it")
            }
            Some(other) => format!("this heredoc ends at a line `{marker}`, not `{other}`"),
            None => format!("end the heredoc with `{marker}` alone on a line"),
        };
        self.fail(
            Diagnostic::at(Code::Syntax, opener, format!("unclosed heredoc `{text}`: no line `{marker}` ends it"))
                .with_label(opener, "this heredoc is never closed")
                .help(help),
        )
    }
}

/// Whether `word` reads as a misspelled `sensitive` (`sensitve`, `Sensitive`, `sensitivex`).
fn near_sensitive(word: &str) -> bool {
    word != "sensitive" && (word.eq_ignore_ascii_case("sensitive") || closest(word, ["sensitive"]).is_some())
}

fn c_opener(closer: char) -> &'static str {
    match closer {
        '}' => "{",
        ']' => "[",
        _ => "(",
    }
}

fn closer_of(opener: &str) -> &'static str {
    match opener {
        "[" => "]",
        "(" => ")",
        _ => "}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of the language, so random input reaches past the first token.
    const TOKENS: &[&str] = &[
        "resource", "var", "plugin", "credentials", "flow", "environment", "output", "pipeline", "vpc", "\"aws.vpc\"",
        "service", "\"api\"", "kind", "config", "null", "true", "=", ":", "{", "}", "[", "]", "(", ")", ",", ".", "0", "-3", "0.5", "1e4", "1.",
        "\"s\"", "\"${", "${", "}\"", "$${", "\\", "\"\\\"", "<<EOT\n", "<<-EOT\n", "\nEOT\n", "  EOT", "EOT", "#", "//",
        "/*", "*/", "\n", " ", "\t", "\r\n", "\r", "var.x", "a.b[0]", "join", "f (", "é", "-", "x-y", "\u{FEFF}",
        "sensitive", "sensitivex",
    ];

    const EXAMPLES: [&str; 2] =
        [include_str!("../../../examples/aws-env.pipeline"), include_str!("../../../examples/local-files.pipeline")];

    fn soup() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|t| t.join(" "))
    }

    fn soup_tight() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|t| t.concat())
    }

    fn edited_example() -> impl Strategy<Value = String> {
        (0..EXAMPLES.len(), any::<usize>(), 0usize..6, prop::sample::select(TOKENS)).prop_map(|(i, at, del, tok)| {
            let src = EXAMPLES[i];
            let mut a = at % (src.len() + 1);
            while !src.is_char_boundary(a) {
                a -= 1;
            }
            let mut b = (a + del).min(src.len());
            while !src.is_char_boundary(b) {
                b += 1;
            }
            format!("{}{}{}", &src[..a], tok, &src[b..])
        })
    }

    /// The walk and the grammar agree on whether a file parses.
    fn agrees(src: &str) {
        if crate::parser::too_deep(src) {
            return;
        }
        let pest_ok = crate::parser::grammar::file_parses(src);
        let walked = explain_file(src);
        assert_eq!(pest_ok, walked.is_none(), "{src:?}: pest {pest_ok}, walk {:?}", walked.map(|e| e.diag));
    }

    proptest! {
        #[test]
        fn walk_agrees_with_the_grammar_on_soup(src in soup()) { agrees(&src) }
        #[test]
        fn walk_agrees_with_the_grammar_on_tight_soup(src in soup_tight()) { agrees(&src) }
        #[test]
        fn walk_agrees_with_the_grammar_on_edited_examples(src in edited_example()) { agrees(&src) }
    }

    #[test]
    fn the_examples_walk_clean() {
        for src in EXAMPLES {
            agrees(src);
        }
    }

    fn explain(src: &str) -> Diagnostic {
        explain_item(src, 0).unwrap_or_else(|| panic!("no error found in {src:?}")).diag
    }

    fn at<'a>(src: &'a str, d: &Diagnostic) -> &'a str {
        let s = d.labels[0].span;
        &src[s.start..s.end]
    }

    #[test]
    fn a_service_name_is_a_string() {
        let src = "service api {\n  repo = \"r\"\n}\n";
        let d = explain(src);
        assert_eq!(d.message, "expected a string, found `api`");
        assert_eq!(at(src, &d), "api");
        assert!(d.help.as_deref().is_some_and(|h| h.contains("service \"<name>\"")), "{d:?}");
        let src = "service \"api\" {\n  repo = \"r\"\n";
        assert_eq!(explain(src).message, "unclosed `{` of service `api`");
    }

    #[test]
    fn valid_items_walk_clean() {
        for src in [
            "pipeline \"p\"",
            "var x",
            "var x: string",
            "var x = 1\nvar y = 2",
            "var x: list = [1, 2, ]\n",
            "var m = { a = 1, \"b\": [2] c = {} }",
            "var h = <<-EOT\n  a ${var.x}\n  $${b}\n  EOT\n",
            "var s = \"a\\\"b ${join(\",\", [for_x])} $${c}\"",
            "plugin aws { kind = \"provisioner\" config { a = b.c[0].d } allow { http = [] } }",
            "credentials aws { resolver = keys }",
            "flow { refresh = true }",
            "environment prod { after = dev vars { x = 1 } credentials aws { resolver = k } }",
            "resource a \"x.y\" {\n  b = f (1, -2.5e3)\n  c = null\n  d = [a.b, \"x\"]\n  ingress { port = 80 }\n}",
            "output o = vpc.id # trailing\n",
            "/* c */ var x = 1",
            "service \"api\" { repo = \"r\" build { command = [\"make\"] } webhook { config { a = 1 } } }",
        ] {
            assert!(explain_item(src, 0).is_none(), "{src:?}: {:?}", explain_item(src, 0));
        }
    }

    #[test]
    fn missing_equals_points_at_the_value() {
        let src = "resource v \"a.b\" {\n  cidr \"10.0.0.0/16\"\n}";
        let d = explain(src);
        assert_eq!(d.message, "expected `=` between `cidr` and its value");
        assert_eq!(at(src, &d), "\"10.0.0.0/16\"");
        let src = "output id vpc.id";
        assert_eq!(at(src, &explain(src)), "vpc.id");
    }

    #[test]
    fn list_separators() {
        let src = "var x = [80 443]";
        let d = explain(src);
        assert_eq!(d.message, "expected `,` or `]`, found `443`");
        let src = "resource a \"x.y\" {\n  p = [80, 443\n}";
        let d = explain(src);
        assert_eq!(d.message, "expected `,` or `]`, found `}`");
        assert_eq!(at(src, &d), "}");
        assert_eq!(&src[d.labels[1].span.start..d.labels[1].span.end], "[");
    }

    #[test]
    fn unclosed_openers_are_pointed_at() {
        let src = "resource vpc \"a.b\" {\n  x = 1\n";
        let d = explain(src);
        assert_eq!(d.message, "unclosed `{` of resource `vpc`");
        assert_eq!(at(src, &d), "{");
        let src = "var h = <<EOT\nabc\n";
        let d = explain(src);
        assert_eq!(at(src, &d), "<<EOT");
        let src = "resource a \"x.y\" {\n  x = 1\n\nresource b \"x.y\" {}\n";
        let e = explain_item(src, 0).unwrap();
        assert_eq!(e.resume, src.find("resource b"));
    }

    #[test]
    fn misspelled_keyword() {
        let d = explain("resouce vpc \"a.b\" {}");
        assert_eq!(d.help.as_deref(), Some("did you mean `resource`?"));
    }

    #[test]
    fn sensitive_ends_vars_and_outputs() {
        for src in [
            "var p: string sensitive",
            "var p = \"dev\" sensitive",
            "var p: string = \"x\" sensitive\nvar q = 1",
            "var p = 1\n  sensitive\noutput o = a.b sensitive",
            "output o = a.b sensitive output p = c.d",
            "var p = <<EOT\nx\nEOT\nsensitive\n",
            "resource sensitive \"a.b\" { sensitive = sensitive.id }",
        ] {
            assert!(explain_item(src, 0).is_none(), "{src:?}: {:?}", explain_item(src, 0));
            agrees(src);
        }
    }

    #[test]
    fn sensitive_given_twice() {
        let cases = ["var p: string sensitive sensitive", "var p sensitive\nsensitive", "output o = a.b sensitive sensitive"];
        for src in cases {
            let d = explain(src);
            assert_eq!(d.message, "`sensitive` is given twice", "{src:?}");
            assert_eq!(d.labels[0].span.start, src.rfind("sensitive").unwrap());
            assert_eq!(d.labels[1].span.start, src.find("sensitive").unwrap());
            assert_eq!(d.labels[1].text.as_deref(), Some("first given here"));
            agrees(src);
        }
    }

    #[test]
    fn sensitive_in_the_wrong_place() {
        let src = "var t: string sensitive = \"x\"";
        let d = explain(src);
        assert_eq!(d.message, "expected a new line, found `=`");
        assert_eq!(d.help.as_deref(), Some("`sensitive` comes last: `var t: string = \"x\" sensitive`"));
        let d = explain("var t sensitive: string");
        assert_eq!(d.help.as_deref(), Some("`sensitive` comes last: `var t: string sensitive`"));
        let src = "output x = a.b sensitive = 1";
        let d = explain(src);
        assert_eq!(d.message, "expected a new line, found `=`");
        assert_eq!(at(src, &d), "=");
        let src = "output x sensitive = a.b";
        let d = explain(src);
        assert_eq!(d.message, "expected `=`, found `sensitive`");
        assert_eq!(d.help.as_deref(), Some("write `output x = a.b sensitive`"));
        let d = explain("sensitive var t = 1");
        assert_eq!(d.message, "expected an item, found `sensitive`");
        let d = explain("var t = <<EOT\nx\nEOT sensitive\n");
        assert_eq!(d.help.as_deref(), Some("`EOT` must be alone on its line: put `sensitive` on the line after it"));
        for src in ["var t: string sensitive = \"x\"", "output x = a.b sensitive = 1", "output x sensitive = a.b"] {
            agrees(src);
        }
    }

    #[test]
    fn misspelled_sensitive() {
        for (src, word) in [
            ("var t sensitivex", "sensitivex"),
            ("var t = 1 sensitve", "sensitve"),
            ("output x = a.b Sensitive", "Sensitive"),
            ("output x = a.b sensitive-x", "sensitive-x"),
        ] {
            let d = explain(src);
            assert_eq!(d.message, format!("expected `sensitive`, found `{word}`"), "{src:?}");
            assert_eq!(d.help.as_deref(), Some("did you mean `sensitive`?"));
            agrees(src);
        }
        // A type without its `:` is still read as one.
        assert_eq!(explain("var t string").message, "expected `:` or `=`, found `string`");
        // Another word after an output is left to the next item, as before.
        assert!(explain_item("output x = a.b\nsecret", 0).is_none());
    }

    #[test]
    fn var_type_without_colon() {
        let src = "var region string = \"x\"";
        let d = explain(src);
        assert_eq!(d.message, "expected `:` or `=`, found `string`");
        assert_eq!(at(src, &d), "string");
    }
}
