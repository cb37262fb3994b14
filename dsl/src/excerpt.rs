//! The part of a file one diagnostic quotes, and no more.
//!
//! miette quotes whole lines: every line a label's span touches, and
//! `context_lines` around them. On hostile input that is the whole file: a
//! 50 MB file on one line, a span over thousands of lines, labels far apart
//! that miette joins into one snippet with everything between them. And it
//! finds line numbers by reading the file from its start for every label.
//!
//! So a diagnostic does not hand miette the file. It hands it an [`Excerpt`]:
//! the few lines around each label, each at most [`MAX_LINE_CHARS`]
//! characters (a longer line is cut around the label, with `…` where text is
//! left out), a label over more than [`MAX_SPAN_LINES`] lines cut to its
//! first line. The excerpt tells miette the real line numbers and columns,
//! so what it prints reads as a quote of the file. For a file of short lines
//! and labels that are not far apart, what miette prints is exactly what it
//! printed from the whole file.

use std::collections::BTreeMap;

use miette::{MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

use crate::ast::Span;
use crate::diagnostic::Label;

/// Lines kept before and after each label's lines. miette shows one by
/// default; a handler asking for more gets at most this many.
pub const CONTEXT_LINES: usize = 2;
/// A label spanning more lines than this is cut to the end of its first line.
/// A list or a block of a few lines is still shown whole.
pub const MAX_SPAN_LINES: usize = 6;
/// The longest line quoted, in characters; a longer one is cut, with `…`.
pub const MAX_LINE_CHARS: usize = 240;
/// How many characters before a label a cut line keeps.
const LEAD_CHARS: usize = 60;
/// Two labels' lines at most this many lines apart are quoted with the
/// lines between them (miette shows them in one snippet).
pub const MAX_GAP_LINES: usize = 6;
/// Labels quoted per diagnostic; the first (primary) ones are kept.
pub const MAX_LABELS: usize = 8;

const ELLIPSIS: &str = "…";

/// The line number and line start of some positions of a file, found in one
/// pass over it: miette would read the file from its start for each label,
/// which is quadratic for a large file with many diagnostics.
pub(crate) struct LineIndex {
    /// (position, 0-based line, start of that line), sorted by position.
    at: Vec<(usize, usize, usize)>,
}

impl LineIndex {
    pub(crate) fn new(text: &str, positions: impl IntoIterator<Item = usize>) -> Self {
        let mut positions: Vec<usize> = positions.into_iter().map(|p| floor_boundary(text, p)).collect();
        positions.sort_unstable();
        positions.dedup();
        let bytes = text.as_bytes();
        let (mut line, mut line_start, mut scanned) = (0, 0, 0);
        let mut at = Vec::with_capacity(positions.len());
        for p in positions {
            for (i, &b) in bytes[scanned..p].iter().enumerate() {
                if b == b'\n' {
                    line += 1;
                    line_start = scanned + i + 1;
                }
            }
            scanned = p;
            at.push((p, line, line_start));
        }
        LineIndex { at }
    }

    /// The line of `pos` and where it starts. `pos` must have been given to
    /// [`LineIndex::new`]; otherwise the lines are counted from the file's
    /// start (correct, only slower).
    fn line_of(&self, text: &str, pos: usize) -> (usize, usize) {
        let pos = floor_boundary(text, pos);
        match self.at.binary_search_by_key(&pos, |&(p, _, _)| p) {
            Ok(i) => (self.at[i].1, self.at[i].2),
            Err(_) => {
                let before = &text.as_bytes()[..pos];
                let line = before.iter().filter(|&&b| b == b'\n').count();
                let start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                (line, start)
            }
        }
    }
}

/// `pos`, within `text` and moved back to the start of its character.
fn floor_boundary(text: &str, pos: usize) -> usize {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    pos
}

/// `pos`, within `text` and moved on to the end of its character.
fn ceil_boundary(text: &str, pos: usize) -> usize {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos += 1;
    }
    pos
}

/// From `from`, at most `max_chars` characters on along its line: where that
/// stops, and whether it is the line's end (its `\n`, or the end of the text).
fn forward(text: &str, from: usize, max_chars: usize) -> (usize, bool) {
    for (n, (i, c)) in text[from..].char_indices().enumerate() {
        if c == '\n' {
            return (from + i, true);
        }
        if n == max_chars {
            return (from + i, false);
        }
    }
    (text.len(), true)
}

/// From `end` (exclusive), at most `max_chars` characters back along its
/// line: where that stops, and whether it is the line's start.
fn backward(text: &str, end: usize, max_chars: usize) -> (usize, bool) {
    let mut at = end;
    for (n, (i, c)) in text[..end].char_indices().rev().enumerate() {
        if c == '\n' {
            return (at, true);
        }
        if n == max_chars {
            return (at, false);
        }
        at = i;
    }
    (0, true)
}

/// How much of one line of the file is quoted.
#[derive(Debug, Clone, Copy)]
struct Quoted {
    /// Where the quote starts and ends in the file.
    from: usize,
    to: usize,
    /// Text left out before and after (shown as `…`).
    cut_front: bool,
    cut_back: bool,
    /// Where the line starts in the file, when known (for columns).
    line_start: Option<usize>,
    /// Whether the line ends with `\n` (every line but the file's last).
    newline: bool,
}

impl Quoted {
    /// The line at `line_start`, cut to a window around `at` if it is long.
    fn around(text: &str, line_start: usize, at: usize) -> Quoted {
        let whole = if at - line_start <= MAX_LINE_CHARS * 4 {
            match forward(text, line_start, MAX_LINE_CHARS) {
                (end, true) => Some(end),
                _ => None,
            }
        } else {
            None
        };
        let (from, cut_front) = match whole {
            Some(_) => (line_start, false),
            None => {
                // A label in the first half of the window keeps the line's start.
                let (back, at_start) = backward(text, at, LEAD_CHARS);
                if at_start {
                    (back, false)
                } else if at - line_start <= MAX_LINE_CHARS * 4
                    && text[line_start..at].chars().count() <= MAX_LINE_CHARS / 2
                {
                    (line_start, false)
                } else {
                    (back, true)
                }
            }
        };
        let (to, at_end) = match whole {
            Some(end) => (end, true),
            None => forward(text, from, MAX_LINE_CHARS),
        };
        Quoted {
            from,
            to,
            cut_front,
            cut_back: !at_end,
            line_start: Some(line_start),
            newline: at_end && to < text.len(),
        }
    }

    /// The line starting at `start`, from its start.
    fn head(text: &str, start: usize) -> Quoted {
        let (to, at_end) = forward(text, start, MAX_LINE_CHARS);
        Quoted {
            from: start,
            to,
            cut_front: false,
            cut_back: !at_end,
            line_start: Some(start),
            newline: at_end && to < text.len(),
        }
    }

    /// The line ending at `end` (its `\n`), from its end.
    fn tail(text: &str, end: usize) -> Quoted {
        let (from, at_start) = backward(text, end, MAX_LINE_CHARS);
        Quoted {
            from,
            to: end,
            cut_front: !at_start,
            cut_back: false,
            line_start: at_start.then_some(from),
            newline: true,
        }
    }

    /// `pos` of the file moved into this quote.
    fn clamp(&self, pos: usize) -> usize {
        pos.clamp(self.from, self.to)
    }
}

/// A run of consecutive lines of the file in the excerpt's text.
#[derive(Debug)]
struct Region {
    /// Where its text is in the excerpt's.
    start: usize,
    end: usize,
    /// Its first and last lines' numbers in the file (0-based).
    first_line: usize,
    last_line: usize,
    /// Per line: where it starts in the excerpt's text, and what to add to a
    /// column of the excerpt to get the file's (bytes, as miette counts).
    lines: Vec<(usize, isize)>,
}

/// The quoted lines of one diagnostic, which miette reads as its source.
#[derive(Debug)]
pub(crate) struct Excerpt {
    name: String,
    language: Option<String>,
    text: String,
    regions: Vec<Region>,
    /// The labels miette is given, with their spans in `text`.
    pub(crate) labels: Vec<(SourceSpan, Option<String>)>,
}

impl Excerpt {
    /// The lines `labels` (spans into `text`) point at, with context.
    pub(crate) fn new(name: &str, language: Option<&str>, text: &str, labels: &[Label], index: &LineIndex) -> Excerpt {
        let mut lines: BTreeMap<usize, Quoted> = BTreeMap::new();
        // In the file's order, so that where two labels want different
        // windows of one long line, the earlier one decides.
        let mut order: Vec<usize> = (0..labels.len().min(MAX_LABELS)).collect();
        order.sort_by_key(|&i| labels[i].span.start);
        // Each label's span in the file once clamped: start, end, and their lines.
        let mut spans = vec![(0, 0, 0, 0); order.len()];
        for &i in &order {
            spans[i] = quote_label(text, labels[i].span, index, &mut lines);
        }
        // Lines between two labels' a few lines apart: miette shows those
        // labels in one snippet, the lines between them too.
        quote_gaps(text, &mut lines);
        let (out, regions, starts) = join_lines(text, &lines);
        let to_excerpt = |pos: usize, line: usize| -> usize {
            let (at, from) = starts.get(&line).copied().unwrap_or((0, 0));
            at + pos.saturating_sub(from)
        };
        let labels = order_labels(labels, &spans, &to_excerpt);
        Excerpt { name: name.to_string(), language: language.map(str::to_string), text: out, regions, labels }
    }

    /// The region holding excerpt offset `at`: the first that contains it,
    /// or ends at it.
    fn region(&self, at: usize) -> Option<&Region> {
        self.regions.iter().find(|r| r.start <= at && at < r.end).or_else(|| self.regions.iter().find(|r| r.end == at))
    }
}

/// Quotes the lines of a label at `span` in `text`, and a few lines of
/// context around them, into `lines`: the span once clamped to what is
/// quoted (start, end) and its first and last lines.
fn quote_label(
    text: &str,
    span: Span,
    index: &LineIndex,
    lines: &mut BTreeMap<usize, Quoted>,
) -> (usize, usize, usize, usize) {
    let Span { start, end } = span;
    let start = floor_boundary(text, start);
    let end = ceil_boundary(text, end.max(start));
    let (line, line_start) = index.line_of(text, start);
    let first = *lines.entry(line).or_insert_with(|| Quoted::around(text, line_start, start));
    let start = first.clamp(start);
    // Follow the span over its lines, at most MAX_SPAN_LINES of them.
    let mut last = (line, first);
    let mut span_end = None;
    for n in 0..MAX_SPAN_LINES {
        let (l, q) = last;
        if end <= q.to || q.cut_back || !q.newline {
            span_end = Some((l, q.clamp(end)));
            break;
        }
        if n + 1 == MAX_SPAN_LINES {
            break;
        }
        let next = *lines.entry(l + 1).or_insert_with(|| Quoted::head(text, q.to + 1));
        last = (l + 1, next);
    }
    // Longer than that: the first line's part of it.
    let (end_line, end) = span_end.unwrap_or((line, first.to));
    // Context: lines before, while where they start is known.
    let mut q = first;
    for l in (line.saturating_sub(CONTEXT_LINES)..line).rev() {
        let Some(start) = q.line_start.filter(|&s| s > 0) else { break };
        q = *lines.entry(l).or_insert_with(|| Quoted::tail(text, start - 1));
    }
    // And after, while the line before is known to end.
    let mut q = lines[&end_line];
    for l in end_line + 1..=end_line + CONTEXT_LINES {
        if q.cut_back || !q.newline {
            break;
        }
        q = *lines.entry(l).or_insert_with(|| Quoted::head(text, q.to + 1));
    }
    (start, end, line, end_line)
}

/// Quotes the lines between two quoted lines at most [`MAX_GAP_LINES`] apart.
fn quote_gaps(text: &str, lines: &mut BTreeMap<usize, Quoted>) {
    let keys: Vec<usize> = lines.keys().copied().collect();
    for pair in keys.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b - a - 1 > MAX_GAP_LINES {
            continue;
        }
        let mut q = lines[&a];
        for l in a + 1..b {
            if q.cut_back || !q.newline {
                break;
            }
            q = *lines.entry(l).or_insert_with(|| Quoted::head(text, q.to + 1));
        }
    }
}

/// The excerpt's text: the quoted lines, in runs of consecutive lines
/// (regions); and for each line, where its quoted text starts in the
/// excerpt and in the file.
fn join_lines(text: &str, lines: &BTreeMap<usize, Quoted>) -> (String, Vec<Region>, BTreeMap<usize, (usize, usize)>) {
    let mut out = String::new();
    let mut regions: Vec<Region> = Vec::new();
    // Line -> where its quoted text starts in the excerpt (after any `…`), and in the file.
    let mut starts: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    let mut prev: Option<usize> = None;
    for (&l, q) in lines {
        if prev.is_none_or(|p| p + 1 != l) {
            if let Some(r) = regions.last_mut() {
                r.end = out.len();
            }
            regions.push(Region {
                start: out.len(),
                end: out.len(),
                first_line: l,
                last_line: l,
                lines: Vec::new(),
            });
        }
        prev = Some(l);
        let line_start = out.len();
        let prefix = if q.cut_front { ELLIPSIS.len() } else { 0 };
        if q.cut_front {
            out.push_str(ELLIPSIS);
        }
        out.push_str(&text[q.from..q.to]);
        if q.cut_back {
            out.push_str(ELLIPSIS);
        }
        if q.newline {
            out.push('\n');
        }
        let dropped = q.line_start.map_or(0, |s| q.from - s);
        let shift = dropped as isize - prefix as isize;
        // Unwrap-free: a region was pushed above.
        if let Some(r) = regions.last_mut() {
            r.last_line = l;
            r.lines.push((line_start, shift));
        }
        starts.insert(l, (line_start + prefix, q.from));
    }
    if let Some(r) = regions.last_mut() {
        r.end = out.len();
    }
    (out, regions, starts)
}

/// The labels in their given order (the primary first), spans in the excerpt.
fn order_labels(
    labels: &[Label],
    spans: &[(usize, usize, usize, usize)],
    to_excerpt: &dyn Fn(usize, usize) -> usize,
) -> Vec<(SourceSpan, Option<String>)> {
    labels
        .iter()
        .zip(spans)
        .map(|(l, &(start, end, line, end_line))| {
            let s = to_excerpt(start, line);
            let e = to_excerpt(end, end_line).max(s);
            (SourceSpan::new(s.into(), e - s), l.text.clone())
        })
        .collect()
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let region = self.region(span.offset()).ok_or(MietteError::OutOfBounds)?;
        let local = &self.text[region.start..region.end];
        let offset = span.offset() - region.start;
        // A span running past its region (only a merged one could) is cut there.
        let len = span.len().min(local.len() - offset);
        let before = context_lines_before.min(CONTEXT_LINES);
        let after = context_lines_after.min(CONTEXT_LINES);
        let read = local.read_span(&SourceSpan::new(offset.into(), len), before, after)?;
        let line = region.first_line + read.line();
        let column = if before == 0 {
            let shift = region.lines.get(read.line()).map_or(0, |&(_, s)| s);
            read.column().saturating_add_signed(shift)
        } else {
            read.column()
        };
        // miette joins two labels' snippets when the first's `line` plus
        // `line_count` reaches the second's line (`line_count` counts lines
        // from the file's start, so on a large file it joins labels far
        // apart). As from the whole file, except never across regions.
        let reach = (line + region.first_line + read.line_count()).min(region.last_line);
        let span = SourceSpan::new((region.start + read.span().offset()).into(), read.span().len());
        let mut contents = MietteSpanContents::new_named(
            self.name.clone(),
            read.data(),
            span,
            line,
            column,
            reach.saturating_sub(line),
        );
        if let Some(language) = &self.language {
            contents = contents.with_language(language.clone());
        }
        Ok(Box::new(contents))
    }
}

/// `s` for a message, a label or a help line: a word (a name, a value) of
/// more than [`MAX_WORD_CHARS`] characters is cut in its middle, and the
/// whole is at most [`MAX_TEXT_CHARS`]. Names in messages are the user's,
/// and can be a megabyte long.
pub(crate) fn clamp_text(s: &str) -> std::borrow::Cow<'_, str> {
    let long_word = s.split(char::is_whitespace).any(|w| w.len() > MAX_WORD_CHARS);
    if !long_word && s.len() <= MAX_TEXT_CHARS {
        return s.into();
    }
    let mut out = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_end);
        let n = word.chars().count();
        if n > MAX_WORD_CHARS {
            out.extend(word.chars().take(WORD_HEAD_CHARS));
            out.push_str(ELLIPSIS);
            out.extend(word.chars().skip(n - WORD_TAIL_CHARS));
            out.push_str(&format!(" ({n} characters)"));
        } else {
            out.push_str(word);
        }
        let space_end = after.find(|c: char| !c.is_whitespace()).unwrap_or(after.len());
        out.push_str(&after[..space_end]);
        rest = &after[space_end..];
        if out.len() > MAX_TEXT_CHARS * 4 {
            break;
        }
    }
    if out.chars().count() > MAX_TEXT_CHARS {
        out = out.chars().take(MAX_TEXT_CHARS).collect();
        out.push_str(ELLIPSIS);
    }
    out.into()
}

/// A word longer than this is shortened in messages.
pub const MAX_WORD_CHARS: usize = 120;
const WORD_HEAD_CHARS: usize = 60;
const WORD_TAIL_CHARS: usize = 20;
/// The longest message, label or help line, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;
    use crate::diagnostic::{Code, Diagnostic, Diagnostics};

    fn handler() -> miette::GraphicalReportHandler {
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .with_links(false)
    }

    /// A diagnostic rendered by miette from the whole file, as before excerpts.
    #[derive(Debug)]
    struct Whole<'a> {
        diag: &'a Diagnostic,
        source: &'a miette::NamedSource<String>,
    }

    impl fmt::Display for Whole<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.diag.message)
        }
    }

    impl std::error::Error for Whole<'_> {}

    impl miette::Diagnostic for Whole<'_> {
        fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
            Some(Box::new(format!("stackpipe::{}", self.diag.code.as_str())))
        }
        fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
            self.diag.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
        }
        fn source_code(&self) -> Option<&dyn miette::SourceCode> {
            (!self.diag.labels.is_empty()).then_some(self.source as &dyn miette::SourceCode)
        }
        fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
            if self.diag.labels.is_empty() {
                return None;
            }
            Some(Box::new(self.diag.labels.iter().enumerate().map(|(i, l)| {
                let span: SourceSpan = l.span.into();
                if i == 0 {
                    miette::LabeledSpan::new_primary_with_span(l.text.clone(), span)
                } else {
                    miette::LabeledSpan::new_with_span(l.text.clone(), span)
                }
            })))
        }
    }

    /// Each diagnostic of `src` rendered from its excerpt and from the whole file.
    fn both_ways(src: &str) -> Vec<(String, String)> {
        let diags = crate::load("f.pipeline", src, &Default::default()).expect_err("the source has mistakes");
        let h = handler();
        diags
            .reports()
            .zip(&diags.items)
            .map(|(report, d)| {
                let (mut ours, mut whole) = (String::new(), String::new());
                h.render_report(&mut ours, &report).unwrap();
                h.render_report(&mut whole, &Whole { diag: d, source: &diags.source }).unwrap();
                (ours, whole)
            })
            .collect()
    }

    const PLUGIN: &str = "plugin aws {\n  kind   = \"provisioner\"\n  source = \"builtin:aws\"\n}\n";

    #[test]
    fn a_small_file_renders_exactly_as_from_the_whole_file() {
        let cases = [
            format!("{PLUGIN}resource vpc \"aws.vpc\" {{ cidr_block = 1 }}\nresource vpc \"aws.vpc\" {{}}\n"),
            format!("{PLUGIN}\n\nresource a \"aws.vpc\" {{\n  x = b.id\n}}\n\n\nresource c \"aws.vpc\" {{ y = a.nope }}"),
            format!("{PLUGIN}resource a \"aws.vpc\" {{\n  tags {{\n    Name = \"main\"\n\n  enable = true\n}}\n\nresource b \"aws.vpc\" {{}}\n"),
            format!("{PLUGIN}var n: number = [\n  1,\n  2,\n]\n"),
            format!("{PLUGIN}resource a \"aws.vpc\" {{ x = \"caf\u{e9} \u{1F600}\" y = zz.id }}\n/* open"),
            format!("{PLUGIN}resource a \"aws.vpc\" {{\r\n  x = q.id\r\n}}\r\n"),
            "resourc a \"t.x\" {}".to_string(),
            format!("{PLUGIN}environment a {{ after = b }}\nenvironment b {{ after = a }}\n"),
        ];
        for src in &cases {
            for (ours, whole) in both_ways(src) {
                assert_eq!(ours, whole, "for:\n{src}");
            }
        }
    }

    fn render(text: &str, diags: Vec<Diagnostic>) -> String {
        Diagnostics::new("f", text, diags).render_plain(100)
    }

    #[test]
    fn a_huge_line_is_cut_around_the_label() {
        let text = format!("{}/* open {}", "x".repeat(3_000_000), "y".repeat(3_000_000));
        let at = 3_000_000;
        let out = render(
            &text,
            vec![Diagnostic::at(Code::Syntax, Span::new(at, at + 2), "unterminated")
                .with_label(Span::new(at, at + 2), "here")],
        );
        assert!(out.len() < 2_000, "{out}");
        assert!(out.contains("[f:1:3000001]"), "the column is the file's: {out}");
        assert!(out.contains(&format!("1 │ …{}/* open y", "x".repeat(LEAD_CHARS))), "{out}");
        assert!(out.contains("y…\n"), "{out}");
    }

    #[test]
    fn a_label_near_the_start_of_a_huge_line_keeps_the_start() {
        let text = format!("abc def {}", "z".repeat(1_000_000));
        let out = render(&text, vec![Diagnostic::at(Code::Syntax, Span::new(4, 7), "m")]);
        assert!(out.contains("1 │ abc def zzz"), "{out}");
        assert!(out.contains("[f:1:5]"), "{out}");
        assert!(out.len() < 2_000, "{out}");
    }

    #[test]
    fn a_span_over_thousands_of_lines_is_cut_to_its_first() {
        let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        let start = text.find("line 5\n").unwrap();
        let out = render(
            &text,
            vec![Diagnostic::at(Code::Syntax, Span::new(start, text.len()), "m")
                .with_label(Span::new(start, text.len()), "all of it")],
        );
        assert!(out.lines().count() < 15, "{out}");
        assert!(out.contains(" 6 │ line 5\n"), "{out}");
        assert!(out.contains("all of it"), "{out}");
        assert!(!out.contains("line 9999"), "{out}");
    }

    #[test]
    fn a_span_over_a_few_lines_is_kept_whole() {
        let text = "a\nb {\n  c\n}\nd\n";
        let out = render(text, vec![Diagnostic::at(Code::Syntax, Span::new(2, 11), "m")]);
        assert!(out.contains("2 │ ╭─▶ b {\n 3 │ │     c\n 4 │ ╰─▶ }\n"), "{out}");
    }

    #[test]
    fn labels_far_apart_get_a_short_snippet_each() {
        let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        let a = text.find("line 2999\n").unwrap();
        let b = text.find("line 8999\n").unwrap();
        let d = Diagnostic::at(Code::DuplicateName, Span::new(a, a + 4), "twice")
            .with_label(Span::new(a, a + 4), "first")
            .with_label(Span::new(b, b + 4), "again");
        let out = render(&text, vec![d]);
        assert!(out.contains("[f:3000:1]") && out.contains("[f:9000:1]"), "{out}");
        assert!(out.contains("3000 │ line 2999") && out.contains("9000 │ line 8999"), "{out}");
        assert!(out.lines().count() < 20, "{out}");
    }

    #[test]
    fn many_diagnostics_in_a_large_file_render_in_one_pass() {
        // 20,000 diagnostics after a line of 2 MB: each quotes its few lines.
        let mut text = "q".repeat(2_000_000);
        text.push('\n');
        let mut diags = Vec::new();
        for i in 0..20_000 {
            let at = text.len();
            text.push_str(&format!("item {i}\n"));
            diags.push(Diagnostic::at(Code::Syntax, Span::new(at, at + 4), "m"));
        }
        let started = std::time::Instant::now();
        let out = render(&text, diags);
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
        assert!(out.len() < 20_000 * 400, "{} bytes", out.len());
        assert!(out.contains("2 │ item 0") && out.contains("20001 │ item 19999"));
    }

    #[test]
    fn spans_out_of_bounds_or_inside_a_character_do_not_panic() {
        let text = "é\u{1F600}ab\ncd";
        for (s, e) in [(0, 100), (1, 2), (3, 1), (50, 60), (2, 5), (9, 9), (text.len(), text.len())] {
            let out = render(
                text,
                vec![Diagnostic::at(Code::Syntax, Span::new(s, e), "m").with_label(Span::new(e, s.max(e)), "x")],
            );
            assert!(out.contains("× m"), "{s}..{e}: {out}");
        }
        assert!(render("", vec![Diagnostic::at(Code::Syntax, Span::new(0, 0), "m")]).contains("× m"));
    }

    #[test]
    fn at_most_max_labels_are_quoted() {
        let text: String = (0..100).map(|i| format!("l{i}\n")).collect();
        let mut d = Diagnostic::new(Code::Cycle, "cycle");
        for i in 0..100 {
            let at = text.find(&format!("l{i}\n")).unwrap();
            d = d.with_label(Span::new(at, at + 2), format!("n{i}"));
        }
        let out = render(&text, vec![d]);
        assert!(out.contains(&format!("n{}", MAX_LABELS - 1)) && !out.contains(&format!("n{}", MAX_LABELS)), "{out}");
    }

    #[test]
    fn long_words_in_messages_are_shortened() {
        assert_eq!(clamp_text("unknown resource `vpc`"), "unknown resource `vpc`");
        let name = "n".repeat(1_000_000);
        let message = format!("unknown resource `{name}` here");
        let out = clamp_text(&message);
        assert!(out.len() < 200, "{out}");
        assert!(out.starts_with("unknown resource `nnn"), "{out}");
        assert!(out.ends_with("nnn` (1000002 characters) here"), "{out}");
        let many = "word ".repeat(10_000);
        let out = clamp_text(&many);
        assert!(out.chars().count() <= MAX_TEXT_CHARS + 1 && out.ends_with('…'), "{}", out.len());
    }
}
