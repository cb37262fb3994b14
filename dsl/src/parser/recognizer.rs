//! A hand-written recognizer for the grammar in `pipeline.pest`, for files
//! without syntax errors: most files, and every large one.
//!
//! pest reads a 10,000-resource file at about 5 MB/s, most of it spent on
//! bookkeeping for error messages that a well-formed file never needs. This
//! recognizer reads the same language an order of magnitude faster and fills
//! the same [`Tree`] pest's parse would, node for node and span for span, so
//! lowering cannot tell them apart. It stops at the first byte it cannot
//! accept; the parser then parses the file with pest, whose errors
//! `explain.rs` and `syntax_error.rs` turn into diagnostics. Getting a file wrong
//! here can therefore only cost time, as long as this accepts nothing pest
//! rejects and builds the trees pest builds: the tests in `tests/fuzz.rs`
//! check both against pest on generated, mutated and hand-written input.
//!
//! Each function below is one rule of the grammar, written the way pest runs
//! it. Between the parts of a sequence in a non-atomic rule pest skips
//! whitespace and comments, also before an optional or repeated part that
//! then matches nothing (which is why some spans end after trailing
//! whitespace); before each further repetition it skips and, if the
//! repetition fails, goes back to before the skip. A failed rule restores the
//! position and drops the nodes it opened. Ordered choices whose alternatives
//! cannot start with the same byte are dispatched on that byte, which changes
//! nothing but speed.
//!
//! Recursion is bounded: the parser refuses input nested deeper than
//! [`MAX_NESTING`](crate::parser::MAX_NESTING) before either parser runs.

use super::grammar::Rule;
use super::tree::{Node, Tree};

pub(crate) struct Recognizer<'i> {
    src: &'i str,
    bytes: &'i [u8],
    pos: usize,
    tree: Tree<'i, Rule>,
}

impl<'i> Recognizer<'i> {
    pub(crate) fn new(src: &'i str) -> Self {
        Recognizer { src, bytes: src.as_bytes(), pos: 0, tree: Tree::new(src) }
    }

    /// The next item of the file (`file = SOI ~ item* ~ EOI`): `Some(None)`
    /// at the end of the file, `None` if the text from here is not an item.
    pub(crate) fn next_item(&mut self) -> Option<Option<Node<'_, Rule>>> {
        self.skip();
        if self.pos == self.bytes.len() {
            return Some(None);
        }
        self.tree.clear();
        if !self.item() {
            return None;
        }
        self.tree.root().map(Some)
    }

    /// The nodes of the last item, for comparing with pest's.
    pub(crate) fn tree_slots(&self) -> Vec<(Rule, usize, usize, usize)> {
        self.tree.slots()
    }

    // ---- building blocks ------------------------------------------------------

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn byte(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.pos += usize::from(hit);
        hit
    }

    fn literal(&mut self, s: &[u8]) -> bool {
        let hit = self.bytes[self.pos..].starts_with(s);
        if hit {
            self.pos += s.len();
        }
        hit
    }

    /// A node of `rule` around what `body` matches; on failure nothing moves.
    fn rule(&mut self, rule: Rule, body: impl FnOnce(&mut Self) -> bool) -> bool {
        let (start, mark) = (self.pos, self.tree.len());
        let node = self.tree.open(rule, start);
        if body(self) {
            self.tree.close(node, self.pos);
            true
        } else {
            self.pos = start;
            self.tree.truncate(mark);
            false
        }
    }

    /// `body` without a node of its own (a silent rule, a group, an
    /// optional part); on failure nothing moves.
    fn attempt(&mut self, body: impl FnOnce(&mut Self) -> bool) -> bool {
        let (start, mark) = (self.pos, self.tree.len());
        if body(self) {
            true
        } else {
            self.pos = start;
            self.tree.truncate(mark);
            false
        }
    }

    /// `x*` in a non-atomic rule: whitespace and comments are skipped before
    /// each repetition after the first, and given back if it fails.
    fn repeat(&mut self, mut x: impl FnMut(&mut Self) -> bool) {
        if !self.attempt(&mut x) {
            return;
        }
        while self.attempt(|s| {
            s.skip();
            x(s)
        }) {}
    }

    /// `x*` in an atomic rule: nothing is skipped.
    fn repeat_atomic(&mut self, mut x: impl FnMut(&mut Self) -> bool) {
        while self.attempt(&mut x) {}
    }

    /// Whitespace and comments (the implicit `WHITESPACE` and `COMMENT`).
    fn skip(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.pos += 1,
                // U+FEFF, the byte-order mark.
                Some(0xEF) if self.bytes[self.pos..].starts_with(&[0xEF, 0xBB, 0xBF]) => self.pos += 3,
                Some(b'#') => self.to_line_end(),
                Some(b'/') => match self.peek_at(1) {
                    Some(b'/') => self.to_line_end(),
                    Some(b'*') => {
                        let body = self.pos + 2;
                        match self.bytes[body..].windows(2).position(|w| w == b"*/") {
                            Some(at) => self.pos = body + at + 2,
                            // An unclosed block comment is not a comment.
                            None => return,
                        }
                    }
                    _ => return,
                },
                _ => return,
            }
        }
    }

    /// Up to (not over) the end of the line.
    fn to_line_end(&mut self) {
        self.pos = match self.bytes[self.pos..].iter().position(|&b| b == b'\n') {
            Some(at) => self.pos + at,
            None => self.bytes.len(),
        };
    }

    /// `"\n" | "\r\n" | "\r"`
    fn newline(&mut self) -> bool {
        self.byte(b'\n') || self.literal(b"\r\n") || self.byte(b'\r')
    }

    fn hspace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// The length of the character starting at `pos` (which is on a character boundary).
    fn char_len(&self) -> usize {
        match self.peek() {
            None => 0,
            Some(b) if b < 0x80 => 1,
            Some(b) if b >= 0xF0 => 4,
            Some(b) if b >= 0xE0 => 3,
            Some(_) => 2,
        }
    }

    // ---- items ----------------------------------------------------------------

    /// Each item starts with its own keyword, so the first byte picks the
    /// only alternative that can match (`p` is two: `plugin`, `pipeline`).
    fn item(&mut self) -> bool {
        match self.peek() {
            Some(b'r') => self.rule(Rule::resource_decl, |s| {
                s.keyword(Rule::kw_resource, b"resource")
                    && s.then(Self::identifier)
                    && s.then(Self::string)
                    && s.then(Self::body)
            }),
            Some(b'v') => self.rule(Rule::var_decl, |s| {
                s.keyword(Rule::kw_var, b"var") && s.then(Self::identifier) && {
                    s.skip();
                    s.attempt(|s| s.byte(b':') && s.then(|s| s.rule(Rule::type_name, Self::identifier)));
                    s.skip();
                    s.attempt(|s| s.byte(b'=') && s.then(Self::expr));
                    s.sensitive();
                    true
                }
            }),
            Some(b'o') => self.rule(Rule::output_decl, |s| {
                s.keyword(Rule::kw_output, b"output")
                    && s.then(Self::identifier)
                    && s.then(|s| s.byte(b'='))
                    && s.then(Self::expr)
                    && s.sensitive()
            }),
            Some(b'p') => {
                self.rule(Rule::plugin_decl, |s| {
                    s.keyword(Rule::kw_plugin, b"plugin") && s.then(Self::identifier) && s.then(Self::body)
                }) || self
                    .rule(Rule::pipeline_decl, |s| s.keyword(Rule::kw_pipeline, b"pipeline") && s.then(Self::string))
            }
            Some(b'e') => self.rule(Rule::environment_decl, |s| {
                s.keyword(Rule::kw_environment, b"environment") && s.then(Self::identifier) && s.then(Self::body)
            }),
            Some(b'c') => self.rule(Rule::credentials_decl, |s| {
                s.keyword(Rule::kw_credentials, b"credentials") && s.then(Self::identifier) && s.then(Self::body)
            }),
            Some(b'f') => self.rule(Rule::flow_decl, |s| s.keyword(Rule::kw_flow, b"flow") && s.then(Self::body)),
            Some(b's') => self.rule(Rule::service_decl, |s| {
                s.keyword(Rule::kw_service, b"service") && s.then(Self::string) && s.then(Self::body)
            }),
            _ => false,
        }
    }

    /// The next part of a sequence: skip, then `x`.
    fn then(&mut self, x: impl FnOnce(&mut Self) -> bool) -> bool {
        self.skip();
        x(self)
    }

    /// `~ kw_sensitive?` at the end of an item: skipped trivia stay skipped
    /// when the keyword is not there, as in pest. Always a match.
    fn sensitive(&mut self) -> bool {
        self.skip();
        self.keyword(Rule::kw_sensitive, b"sensitive");
        true
    }

    /// `@{ "word" ~ !ident_char }`
    fn keyword(&mut self, rule: Rule, word: &[u8]) -> bool {
        let rest = &self.bytes[self.pos..];
        if !rest.starts_with(word) || rest.get(word.len()).is_some_and(|&b| is_ident_char(b)) {
            return false;
        }
        self.leaf(rule, self.pos + word.len())
    }

    /// A node of `rule` with nothing inside, from `pos` to `end`, which
    /// becomes the position. Always a match.
    fn leaf(&mut self, rule: Rule, end: usize) -> bool {
        let node = self.tree.open(rule, self.pos);
        self.pos = end;
        self.tree.close(node, end);
        true
    }

    /// `{ "{" ~ (attribute | block)* ~ body_end }`
    fn body(&mut self) -> bool {
        self.rule(Rule::body, |s| {
            s.byte(b'{') && {
                s.skip();
                s.repeat(|s| s.attribute() || s.block());
                s.then(|s| s.rule(Rule::body_end, |s| s.byte(b'}')))
            }
        })
    }

    /// `{ identifier ~ "=" ~ expr }`
    fn attribute(&mut self) -> bool {
        self.rule(Rule::attribute, |s| s.identifier() && s.then(|s| s.byte(b'=')) && s.then(Self::expr))
    }

    /// `{ identifier ~ (identifier | string)* ~ body }`
    fn block(&mut self) -> bool {
        self.rule(Rule::block, |s| {
            s.identifier() && {
                s.skip();
                s.repeat(|s| s.identifier() || s.string());
                s.then(Self::body)
            }
        })
    }

    // ---- expressions ----------------------------------------------------------

    /// `{ primary ~ (get_attr | index)* }`
    fn expr(&mut self) -> bool {
        self.rule(Rule::expr, |s| {
            s.primary() && {
                s.skip();
                s.repeat(|s| s.get_attr() || s.index());
                true
            }
        })
    }

    /// `string | null_lit | bool_lit | call | identifier | number | list | map | heredoc`
    fn primary(&mut self) -> bool {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
                self.word_literal(Rule::null_lit, &[b"null"])
                    || self.word_literal(Rule::bool_lit, &[b"true", b"false"])
                    || self.call()
                    || self.identifier()
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => self.list(),
            Some(b'{') => self.map(),
            Some(b'<') => self.heredoc(),
            _ => false,
        }
    }

    /// `@{ ("w1" | "w2") ~ !ident_char }`
    fn word_literal(&mut self, rule: Rule, words: &[&[u8]]) -> bool {
        words.iter().any(|w| self.keyword(rule, w))
    }

    /// `{ "." ~ identifier }`
    fn get_attr(&mut self) -> bool {
        self.rule(Rule::get_attr, |s| s.byte(b'.') && s.then(Self::identifier))
    }

    /// `{ "[" ~ expr ~ "]" }`
    fn index(&mut self) -> bool {
        self.rule(Rule::index, |s| s.byte(b'[') && s.then(Self::expr) && s.then(|s| s.byte(b']')))
    }

    /// `{ identifier ~ "(" ~ (expr ~ ("," ~ expr)* ~ ","?)? ~ ")" }`
    fn call(&mut self) -> bool {
        self.rule(Rule::call, |s| {
            s.identifier() && s.then(|s| s.byte(b'(')) && {
                s.skip();
                s.attempt(Self::expr_list);
                s.then(|s| s.byte(b')'))
            }
        })
    }

    /// `{ "[" ~ (expr ~ ("," ~ expr)* ~ ","?)? ~ list_end }`
    fn list(&mut self) -> bool {
        self.rule(Rule::list, |s| {
            s.byte(b'[') && {
                s.skip();
                s.attempt(Self::expr_list);
                s.then(|s| s.rule(Rule::list_end, |s| s.byte(b']')))
            }
        })
    }

    /// `expr ~ ("," ~ expr)* ~ ","?`
    fn expr_list(&mut self) -> bool {
        self.expr() && {
            self.skip();
            self.repeat(|s| s.byte(b',') && s.then(Self::expr));
            self.skip();
            self.byte(b',');
            true
        }
    }

    /// `{ "{" ~ (map_entry ~ ","?)* ~ map_end }`
    fn map(&mut self) -> bool {
        self.rule(Rule::map, |s| {
            s.byte(b'{') && {
                s.skip();
                s.repeat(|s| {
                    s.map_entry() && {
                        s.skip();
                        s.byte(b',');
                        true
                    }
                });
                s.then(|s| s.rule(Rule::map_end, |s| s.byte(b'}')))
            }
        })
    }

    /// `{ (identifier | string) ~ ("=" | ":") ~ expr }`
    fn map_entry(&mut self) -> bool {
        self.rule(Rule::map_entry, |s| {
            (s.identifier() || s.string()) && s.then(|s| s.byte(b'=') || s.byte(b':')) && s.then(Self::expr)
        })
    }

    /// `@{ ('a'..'z' | 'A'..'Z' | "_") ~ ident_char* }`
    fn identifier(&mut self) -> bool {
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
            _ => return false,
        }
        let rest = &self.bytes[self.pos + 1..];
        let len = rest.iter().position(|&b| !is_ident_char(b)).unwrap_or(rest.len());
        self.leaf(Rule::identifier, self.pos + 1 + len)
    }

    /// `@{ "-"? ~ digit+ ~ ("." ~ digit+)? ~ (^"e" ~ ("+" | "-")? ~ digit+)? }`
    fn number(&mut self) -> bool {
        self.rule(Rule::number, |s| {
            s.byte(b'-');
            if !s.digits() {
                return false;
            }
            s.attempt(|s| s.byte(b'.') && s.digits());
            s.attempt(|s| {
                (s.byte(b'e') || s.byte(b'E')) && {
                    let _ = s.byte(b'+') || s.byte(b'-');
                    s.digits()
                }
            });
            true
        })
    }

    /// One or more ASCII digits.
    fn digits(&mut self) -> bool {
        let n = self.bytes[self.pos..].iter().take_while(|b| b.is_ascii_digit()).count();
        self.pos += n;
        n > 0
    }

    // ---- strings --------------------------------------------------------------

    /// `${ "\"" ~ (interpolation | escaped_dollar | escape | string_text)* ~ string_end }`
    fn string(&mut self) -> bool {
        self.rule(Rule::string, |s| {
            s.byte(b'"') && {
                s.repeat_atomic(|s| match s.peek() {
                    Some(b'$') => s.interpolation() || s.escaped_dollar() || s.string_text(),
                    Some(b'\\') => s.escape(),
                    _ => s.string_text(),
                });
                s.rule(Rule::string_end, |s| s.byte(b'"'))
            }
        })
    }

    /// `!{ "${" ~ expr ~ interpolation_end }`
    fn interpolation(&mut self) -> bool {
        self.rule(Rule::interpolation, |s| {
            s.literal(b"${") && s.then(Self::expr) && s.then(|s| s.rule(Rule::interpolation_end, |s| s.byte(b'}')))
        })
    }

    /// `@{ "$${" }`
    fn escaped_dollar(&mut self) -> bool {
        self.rule(Rule::escaped_dollar, |s| s.literal(b"$${"))
    }

    /// `@{ "\\" ~ ("u{" ~ ASCII_HEX_DIGIT* ~ "}" | (!"\n" ~ ANY))? }`
    fn escape(&mut self) -> bool {
        self.rule(Rule::escape, |s| {
            s.byte(b'\\') && {
                let unicode = s.attempt(|s| {
                    s.literal(b"u{") && {
                        s.pos += s.bytes[s.pos..].iter().take_while(|b| b.is_ascii_hexdigit()).count();
                        s.byte(b'}')
                    }
                });
                if !unicode && !matches!(s.peek(), None | Some(b'\n')) {
                    s.pos += s.char_len();
                }
                true
            }
        })
    }

    /// Text up to a `"`, `\`, `${`, `$${` or the end of the line; at least one character.
    fn string_text(&mut self) -> bool {
        self.text(Rule::string_text, b"\"\\\n")
    }

    /// A `rule` node of text up to one of the bytes `stops`, a `${` or a
    /// `$${`; at least one byte. Every other byte, of a multi-byte
    /// character too, is text.
    fn text(&mut self, rule: Rule, stops: &[u8]) -> bool {
        let mut at = self.pos;
        while let Some(&b) = self.bytes.get(at) {
            let interpolates =
                b == b'$' && (self.bytes.get(at + 1) == Some(&b'{') || self.bytes[at + 1..].starts_with(b"${"));
            if stops.contains(&b) || interpolates {
                break;
            }
            at += 1;
        }
        at > self.pos && self.leaf(rule, at)
    }

    // ---- heredocs -------------------------------------------------------------

    /// `${ "<<" ~ heredoc_strip? ~ PUSH(identifier) ~ hspace* ~ NEWLINE ~ heredoc_line* ~ heredoc_end }`
    fn heredoc(&mut self) -> bool {
        let src = self.src;
        self.rule(Rule::heredoc, |s| {
            if !s.literal(b"<<") {
                return false;
            }
            s.rule(Rule::heredoc_strip, |s| s.byte(b'-'));
            let tag_start = s.pos;
            if !s.identifier() {
                return false;
            }
            let tag = &src.as_bytes()[tag_start..s.pos];
            s.hspace();
            s.newline() && {
                s.repeat_atomic(|s| s.heredoc_line(tag));
                s.rule(Rule::heredoc_end, |s| {
                    s.hspace();
                    s.literal(tag)
                })
            }
        })
    }

    /// `${ !(hspace* ~ PEEK ~ hspace* ~ (NEWLINE | EOI)) ~ (interpolation | escaped_dollar | heredoc_text)* ~ NEWLINE }`
    fn heredoc_line(&mut self, tag: &[u8]) -> bool {
        if self.ends_heredoc(tag) {
            return false;
        }
        self.rule(Rule::heredoc_line, |s| {
            s.repeat_atomic(|s| match s.peek() {
                Some(b'$') => s.interpolation() || s.escaped_dollar() || s.heredoc_text(),
                _ => s.heredoc_text(),
            });
            s.newline()
        })
    }

    /// Whether the line from `pos` is the closing tag, with nothing but spaces or tabs around it.
    fn ends_heredoc(&mut self, tag: &[u8]) -> bool {
        let start = self.pos;
        self.hspace();
        let ends = self.literal(tag) && {
            self.hspace();
            matches!(self.peek(), None | Some(b'\n' | b'\r'))
        };
        self.pos = start;
        ends
    }

    /// `@{ (!(NEWLINE | "${" | "$${") ~ ANY)+ }`
    fn heredoc_text(&mut self) -> bool {
        self.text(Rule::heredoc_text, b"\n\r")
    }
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}
