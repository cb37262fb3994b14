//! A lossless lexer for the formatter: every byte of the file is a token or
//! whitespace the formatter may change (spaces, tabs, carriage returns, byte
//! order marks). Comments and line ends are tokens, which the parser's
//! grammar skips and the formatter must keep. Strings and heredocs are one
//! token each, interpolations and all, so their text is never touched.
//!
//! The file has already parsed (see [`super::format`]); an error here means
//! this lexer and the grammar disagree, and the file is left alone.

use crate::ast::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Ident,
    Number,
    /// A whole `"…"` string, its escapes and interpolations included.
    Str,
    /// `<<EOT` (or `<<-EOT`) to its end marker, body included.
    Heredoc,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Equals,
    Colon,
    Comma,
    Dot,
    /// `# …` or `// …`, without the line end.
    LineComment,
    /// `/* … */`, which may span lines.
    BlockComment,
    Newline,
}

impl TokenKind {
    pub fn is_comment(self) -> bool {
        matches!(self, TokenKind::LineComment | TokenKind::BlockComment)
    }
    pub fn is_trivia(self) -> bool {
        self.is_comment() || self == TokenKind::Newline
    }
    pub fn is_open(self) -> bool {
        matches!(
            self,
            TokenKind::LBrace | TokenKind::LBracket | TokenKind::LParen
        )
    }
    pub fn is_close(self) -> bool {
        matches!(
            self,
            TokenKind::RBrace | TokenKind::RBracket | TokenKind::RParen
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

/// Where the lexer met something the grammar would not have accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub at: usize,
    pub message: &'static str,
}

/// The tokens of `src`, in order.
pub fn tokenize(src: &str) -> Result<Vec<Token>, LexError> {
    let mut lexer = Lexer {
        src: src.as_bytes(),
        text: src,
        pos: 0,
        out: Vec::new(),
    };
    while lexer.pos < lexer.src.len() {
        lexer.token()?;
    }
    Ok(lexer.out)
}

struct Lexer<'s> {
    src: &'s [u8],
    text: &'s str,
    pos: usize,
    out: Vec<Token>,
}

impl Lexer<'_> {
    fn peek(&self, at: usize) -> Option<u8> {
        self.src.get(self.pos + at).copied()
    }

    fn push(&mut self, kind: TokenKind, start: usize) {
        self.out.push(Token {
            kind,
            span: Span::new(start, self.pos),
        });
    }

    fn error(&self, message: &'static str) -> LexError {
        LexError {
            at: self.pos,
            message,
        }
    }

    /// One token, or whitespace skipped.
    fn token(&mut self) -> Result<(), LexError> {
        let start = self.pos;
        let Some(b) = self.peek(0) else { return Ok(()) };
        let single = |kind| (kind, 1usize);
        let (kind, len) = match b {
            b' ' | b'\t' | b'\r' => {
                self.pos += 1;
                return Ok(());
            }
            b'\n' => single(TokenKind::Newline),
            b'{' => single(TokenKind::LBrace),
            b'}' => single(TokenKind::RBrace),
            b'[' => single(TokenKind::LBracket),
            b']' => single(TokenKind::RBracket),
            b'(' => single(TokenKind::LParen),
            b')' => single(TokenKind::RParen),
            b'=' => single(TokenKind::Equals),
            b':' => single(TokenKind::Colon),
            b',' => single(TokenKind::Comma),
            b'.' => single(TokenKind::Dot),
            b'#' => return Ok(self.line_comment(start)),
            b'/' if self.peek(1) == Some(b'/') => return Ok(self.line_comment(start)),
            b'/' if self.peek(1) == Some(b'*') => {
                let Some(end) = self.text[start + 2..].find("*/") else {
                    return Err(self.error("unterminated block comment"));
                };
                self.pos = start + 2 + end + 2;
                self.push(TokenKind::BlockComment, start);
                return Ok(());
            }
            b'"' => {
                self.string()?;
                self.push(TokenKind::Str, start);
                return Ok(());
            }
            b'<' if self.peek(1) == Some(b'<') => {
                self.heredoc()?;
                self.push(TokenKind::Heredoc, start);
                return Ok(());
            }
            b'-' | b'0'..=b'9' => {
                self.number()?;
                self.push(TokenKind::Number, start);
                return Ok(());
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                self.pos += 1;
                while matches!(
                    self.peek(0),
                    Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-')
                ) {
                    self.pos += 1;
                }
                self.push(TokenKind::Ident, start);
                return Ok(());
            }
            _ if self.text[start..].starts_with('\u{FEFF}') => {
                self.pos += '\u{FEFF}'.len_utf8();
                return Ok(());
            }
            _ => return Err(self.error("unexpected character")),
        };
        self.pos += len;
        self.push(kind, start);
        Ok(())
    }

    fn line_comment(&mut self, start: usize) {
        self.pos = self.text[start..]
            .find('\n')
            .map_or(self.src.len(), |n| start + n);
        self.push(TokenKind::LineComment, start);
    }

    fn number(&mut self) -> Result<(), LexError> {
        let digits = |l: &mut Self| {
            let from = l.pos;
            while matches!(l.peek(0), Some(b'0'..=b'9')) {
                l.pos += 1;
            }
            l.pos > from
        };
        if self.peek(0) == Some(b'-') {
            self.pos += 1;
        }
        if !digits(self) {
            return Err(self.error("expected a digit"));
        }
        if self.peek(0) == Some(b'.') && matches!(self.peek(1), Some(b'0'..=b'9')) {
            self.pos += 1;
            digits(self);
        }
        if matches!(self.peek(0), Some(b'e' | b'E')) {
            let back = self.pos;
            self.pos += 1;
            if matches!(self.peek(0), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                self.pos = back;
            }
        }
        Ok(())
    }

    /// A string from its opening quote to its closing one.
    fn string(&mut self) -> Result<(), LexError> {
        self.pos += 1;
        loop {
            match self.peek(0) {
                None | Some(b'\n') => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek(0) {
                        None | Some(b'\n') => {}
                        Some(_) => self.pos += self.char_len(),
                    }
                }
                Some(b'$') if self.text[self.pos..].starts_with("$${") => self.pos += 3,
                Some(b'$') if self.peek(1) == Some(b'{') => self.interpolation()?,
                Some(_) => self.pos += self.char_len(),
            }
        }
    }

    fn char_len(&self) -> usize {
        self.text[self.pos..]
            .chars()
            .next()
            .map_or(1, char::len_utf8)
    }

    /// `${ … }`: tokens up to the brace that closes it. They belong to the
    /// string (or heredoc) around them, so they are lexed and dropped.
    fn interpolation(&mut self) -> Result<(), LexError> {
        self.pos += 2;
        let mark = self.out.len();
        let mut depth = 0usize;
        loop {
            if self.pos >= self.src.len() {
                return Err(self.error("unterminated interpolation"));
            }
            let before = self.out.len();
            self.token()?;
            match self.out[before..].first().map(|t| t.kind) {
                Some(TokenKind::LBrace) => depth += 1,
                Some(TokenKind::RBrace) if depth == 0 => break,
                Some(TokenKind::RBrace) => depth -= 1,
                _ => {}
            }
        }
        self.out.truncate(mark);
        Ok(())
    }

    /// A line end as the grammar's `NEWLINE`: `\n`, `\r\n` or `\r`.
    fn newline_len(&self) -> Option<usize> {
        match (self.peek(0), self.peek(1)) {
            (Some(b'\r'), Some(b'\n')) => Some(2),
            (Some(b'\n' | b'\r'), _) => Some(1),
            _ => None,
        }
    }

    /// From `<<` to the end of the marker that closes the heredoc.
    fn heredoc(&mut self) -> Result<(), LexError> {
        self.pos += 2;
        if self.peek(0) == Some(b'-') {
            self.pos += 1;
        }
        let marker_start = self.pos;
        while matches!(
            self.peek(0),
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-')
        ) {
            self.pos += 1;
        }
        let marker = &self.text[marker_start..self.pos];
        if marker.is_empty() {
            return Err(self.error("expected a heredoc marker"));
        }
        self.skip_hspace();
        let Some(n) = self.newline_len() else {
            return Err(self.error("expected a line end after the heredoc marker"));
        };
        self.pos += n;
        loop {
            // Is this line the end marker, alone but for spaces and tabs?
            let line_start = self.pos;
            self.skip_hspace();
            if self.text[self.pos..].starts_with(marker) {
                let after = self.pos + marker.len();
                let rest = self.text[after..].trim_start_matches([' ', '\t']);
                if rest.is_empty() || rest.starts_with(['\n', '\r']) {
                    self.pos = after;
                    return Ok(());
                }
            }
            self.pos = line_start;
            loop {
                if self.pos >= self.src.len() {
                    return Err(self.error("unterminated heredoc"));
                }
                if let Some(n) = self.newline_len() {
                    self.pos += n;
                    break;
                }
                if self.text[self.pos..].starts_with("$${") {
                    self.pos += 3;
                } else if self.text[self.pos..].starts_with("${") {
                    self.interpolation()?;
                } else {
                    self.pos += self.char_len();
                }
            }
        }
    }

    fn skip_hspace(&mut self) {
        while matches!(self.peek(0), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(TokenKind, &str)> {
        tokenize(src)
            .unwrap()
            .into_iter()
            .map(|t| (t.kind, &src[t.span.start..t.span.end]))
            .collect()
    }

    #[test]
    fn strings_and_heredocs_are_one_token_each() {
        use TokenKind::*;
        let src = "a = \"x${f(\"}\")}$${y\\\"\" # c\nb = <<-EOT\n  ${ {k = 1}.k }\n  EOT\n";
        assert_eq!(
            kinds(src),
            vec![
                (Ident, "a"),
                (Equals, "="),
                (Str, "\"x${f(\"}\")}$${y\\\"\""),
                (LineComment, "# c"),
                (Newline, "\n"),
                (Ident, "b"),
                (Equals, "="),
                (Heredoc, "<<-EOT\n  ${ {k = 1}.k }\n  EOT"),
                (Newline, "\n"),
            ]
        );
    }

    #[test]
    fn a_heredoc_ends_only_at_its_marker_alone_on_a_line() {
        let src = "x = <<EOT\nEOTX\n EOT \n";
        assert_eq!(kinds(src)[2], (TokenKind::Heredoc, "<<EOT\nEOTX\n EOT"));
    }

    #[test]
    fn numbers_idents_and_comments() {
        use TokenKind::*;
        let src = "x-y = -1.5e+3 /* a\nb */ // d";
        assert_eq!(
            kinds(src),
            vec![
                (Ident, "x-y"),
                (Equals, "="),
                (Number, "-1.5e+3"),
                (BlockComment, "/* a\nb */"),
                (LineComment, "// d")
            ]
        );
    }

    #[test]
    fn what_the_grammar_refuses_is_an_error() {
        assert!(tokenize("a = \"open\n").is_err());
        assert!(tokenize("a = <<EOT\nno end\n").is_err());
        assert!(tokenize("a = @").is_err());
    }
}
