//! Diagnostics about what the user wrote: a message, where (with labels), and
//! a help line. Rendering is miette's, rustc-style, with the source line and
//! a caret under the span.

use std::fmt;

use crate::ast::Span;
use crate::excerpt::{self, clamp_text, Excerpt, LineIndex};

/// What kind of mistake a diagnostic reports; shown as `stackpipe::<code>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Syntax,
    InvalidString,
    DuplicateName,
    DuplicateKey,
    UnknownKey,
    MissingKey,
    InvalidValue,
    UnknownReference,
    InvalidReference,
    NotAProvisioner,
    Cycle,
    EnvironmentCycle,
    UnknownEnvironment,
    MissingVar,
    TypeMismatch,
    UnknownFunction,
    Evaluation,
    TooDeep,
    ReservedName,
    LockedFlowKey,
    UnknownType,
    UnknownAttribute,
    MissingAttribute,
    UnknownOutput,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "syntax",
            Code::InvalidString => "invalid_string",
            Code::DuplicateName => "duplicate_name",
            Code::DuplicateKey => "duplicate_key",
            Code::UnknownKey => "unknown_key",
            Code::MissingKey => "missing_key",
            Code::InvalidValue => "invalid_value",
            Code::UnknownReference => "unknown_reference",
            Code::InvalidReference => "invalid_reference",
            Code::NotAProvisioner => "not_a_provisioner",
            Code::Cycle => "cycle",
            Code::EnvironmentCycle => "environment_cycle",
            Code::UnknownEnvironment => "unknown_environment",
            Code::MissingVar => "missing_var",
            Code::TypeMismatch => "type_mismatch",
            Code::UnknownFunction => "unknown_function",
            Code::Evaluation => "evaluation",
            Code::TooDeep => "too_deep",
            Code::ReservedName => "reserved_name",
            Code::LockedFlowKey => "locked_flow_key",
            Code::UnknownType => "unknown_type",
            Code::UnknownAttribute => "unknown_attribute",
            Code::MissingAttribute => "missing_attribute",
            Code::UnknownOutput => "unknown_output",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub span: Span,
    pub text: Option<String>,
}

/// One error about the user's input.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    /// Where it is, first label primary. Empty for errors about the command
    /// line rather than the file (an unknown `--var`, say).
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Diagnostic { code, message: message.into(), labels: Vec::new(), help: None }
    }
    pub fn at(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic::new(code, message).label(span, None::<String>)
    }
    /// Adds a label; text for a span that already has a bare label names that one.
    pub fn label(mut self, span: Span, text: Option<impl Into<String>>) -> Self {
        let text = text.map(Into::into);
        match self.labels.iter_mut().find(|l| l.span == span && l.text.is_none()) {
            Some(bare) => bare.text = text,
            None => self.labels.push(Label { span, text }),
        }
        self
    }
    pub fn with_label(self, span: Span, text: impl Into<String>) -> Self {
        self.label(span, Some(text))
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }
    /// Where the diagnostic points first, for sorting.
    pub fn position(&self) -> usize {
        self.labels.first().map(|l| l.span.start).unwrap_or(0)
    }
}

/// All diagnostics of one file, with the file's name and text for rendering.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub source: miette::NamedSource<String>,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(name: &str, text: &str, mut items: Vec<Diagnostic>) -> Self {
        items.sort_by_key(|d| d.position());
        Diagnostics {
            source: miette::NamedSource::new(name, text.to_string()).with_language("pipeline"),
            items,
        }
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// Each diagnostic as something miette can render. Each quotes only a
    /// few lines of the file, however large the file or its spans (see
    /// the `excerpt` module).
    pub fn reports(&self) -> impl Iterator<Item = Report<'_>> {
        let text = self.source.inner().as_str();
        let quoted =
            |d: &Diagnostic| d.labels.iter().take(excerpt::MAX_LABELS).map(|l| l.span.start).collect::<Vec<_>>();
        let index = LineIndex::new(text, self.items.iter().flat_map(quoted));
        let reports: Vec<Report<'_>> = self
            .items
            .iter()
            .map(|d| Report {
                diag: d,
                excerpt: (!d.labels.is_empty())
                    .then(|| Excerpt::new(self.source.name(), Some("pipeline"), text, &d.labels, &index)),
            })
            .collect();
        reports.into_iter()
    }
    /// Every diagnostic as JSON, for tools (`check --format json`, CI
    /// annotations): file, severity, code, message, help, and where, as
    /// 1-based lines and columns (in characters) and byte offsets.
    pub fn to_json(&self) -> serde_json::Value {
        let text = self.source.inner().as_str();
        let map = crate::line_map::LineMap::new(text);
        let range = |span: Span| {
            let (start, end) = (map.chars(text, span.start), map.chars(text, span.end));
            serde_json::json!({
                "start": { "line": start.line + 1, "column": start.column + 1 },
                "end": { "line": end.line + 1, "column": end.column + 1 },
                "bytes": [span.start, span.end],
            })
        };
        let items: Vec<serde_json::Value> = self
            .items
            .iter()
            .map(|d| {
                serde_json::json!({
                    "file": self.source.name(),
                    "severity": "error",
                    "code": format!("stackpipe::{}", d.code.as_str()),
                    "message": d.message,
                    "help": d.help,
                    "range": d.labels.first().map(|l| range(l.span)),
                    "labels": d.labels.iter().map(|l| serde_json::json!({ "range": range(l.span), "message": l.text })).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::Value::Array(items)
    }
    /// Renders every diagnostic and a closing count line, without colour.
    pub fn render_plain(&self, width: usize) -> String {
        let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(width)
            .with_links(false);
        self.render_with(&handler)
    }
    pub fn render_with(&self, handler: &miette::GraphicalReportHandler) -> String {
        let mut out = String::new();
        for report in self.reports() {
            // Writing into a String cannot fail.
            let _ = handler.render_report(&mut out, &report);
        }
        let n = self.items.len();
        out.push_str(&format!("error: {} found {} error{}\n", self.source.name(), n, if n == 1 { "" } else { "s" }));
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_plain(100))
    }
}

impl std::error::Error for Diagnostics {}

/// One diagnostic with the part of the file it quotes, for miette.
#[derive(Debug)]
pub struct Report<'a> {
    diag: &'a Diagnostic,
    /// `None` for a diagnostic without labels.
    excerpt: Option<Excerpt>,
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&clamp_text(&self.diag.message))
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(format!("stackpipe::{}", self.diag.code.as_str())))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diag.help.as_deref().map(|h| Box::new(clamp_text(h)) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.excerpt.as_ref().map(|e| e as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let excerpt = self.excerpt.as_ref()?;
        Some(Box::new(excerpt.labels.iter().enumerate().map(|(i, (span, text))| {
            let text = text.as_deref().map(|t| clamp_text(t).into_owned());
            if i == 0 {
                miette::LabeledSpan::new_primary_with_span(text, *span)
            } else {
                miette::LabeledSpan::new_with_span(text, *span)
            }
        })))
    }
}

/// Names longer than this, and candidates longer than this, get no
/// suggestion: comparing two names costs the product of their lengths, and
/// no one misspells a name of hundreds of characters by hand.
pub const MAX_SUGGEST_CHARS: usize = 256;

/// How much comparing one suggestion may do, in pairs of characters (the
/// sum of the products of the name's and each candidate's lengths): some
/// 100 ms in a debug build. 10,000 candidates of 40 characters fit, so only
/// a hostile file ever reaches it; then the best candidate so far is taken.
pub const MAX_SUGGEST_WORK: usize = 16 << 20;

/// The closest of `candidates` to `name`, if any is close enough to be a
/// plausible typo ("did you mean `vpc`?").
///
/// Bounded, whatever the input: see [`MAX_SUGGEST_CHARS`] and
/// [`MAX_SUGGEST_WORK`]. Candidates whose length alone rules them out are
/// skipped without comparing them.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Bytes first: counting the characters of a megabyte name is work too.
    let chars = |s: &str| if s.len() > MAX_SUGGEST_CHARS * 4 { usize::MAX } else { s.chars().count() };
    let n = chars(name);
    if n > MAX_SUGGEST_CHARS {
        return None;
    }
    let mut best: Option<(&str, f64)> = None;
    let mut work = 0usize;
    for c in candidates {
        if c == name {
            continue;
        }
        let m = chars(c);
        if m > MAX_SUGGEST_CHARS {
            continue;
        }
        // Plausible is a Jaro-Winkler score of 0.8 or an edit distance of a
        // third of the longer name. The distance is at least the difference
        // in length; the score is at most (2 + shorter / longer) / 3 before
        // the prefix bonus, which strsim only gives above 0.7, so a name ten
        // times longer than the other can never score 0.8.
        let (short, long) = (n.min(m), n.max(m));
        let max_distance = (name.len().max(c.len()) / 3).max(1);
        if long - short > max_distance && short * 10 <= long {
            continue;
        }
        work = work.saturating_add((n.max(1)) * (m.max(1)));
        if work > MAX_SUGGEST_WORK {
            break;
        }
        let score = strsim::jaro_winkler(name, c);
        let plausible = score >= 0.8 || strsim::osa_distance(name, c) <= max_distance;
        if plausible && best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

/// `did you mean `x`?` for the closest candidate.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    closest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// `closest` as it was before it was bounded: every candidate compared.
    fn unbounded<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
        let mut best: Option<(&str, f64)> = None;
        for &c in candidates {
            if c == name {
                continue;
            }
            let score = strsim::jaro_winkler(name, c);
            let distance = strsim::osa_distance(name, c);
            let plausible = score >= 0.8 || distance <= (name.len().max(c.len()) / 3).max(1);
            if plausible && best.is_none_or(|(_, s)| score > s) {
                best = Some((c, score));
            }
        }
        best.map(|(c, _)| c)
    }

    #[test]
    fn typos_are_still_suggested() {
        assert_eq!(closest("vcp", ["vpc", "subnet"]), Some("vpc"));
        assert_eq!(closest("resorce", ["resource", "var", "plugin"]), Some("resource"));
        assert_eq!(closest("subnet_b", ["subnet_a", "vpc"]), Some("subnet_a"));
        assert_eq!(closest("x", ["a_very_long_name"]), None);
    }

    #[test]
    fn skipping_by_length_never_changes_the_suggestion() {
        // Names of every length from 1 to 60 over a small alphabet, so many
        // are close; a tiny xorshift keeps the test deterministic.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let names: Vec<String> = (0..600)
            .map(|_| {
                let len = 1 + (next() % 60) as usize;
                (0..len).map(|_| b"abcab_-"[(next() % 7) as usize] as char).collect()
            })
            .collect();
        let candidates: Vec<&str> = names.iter().map(String::as_str).collect();
        for (i, name) in names.iter().enumerate().step_by(7) {
            let some = &candidates[i % 50..(i % 50) + 100];
            assert_eq!(closest(name, some.iter().copied()), unbounded(name, some), "{name}");
        }
    }

    #[test]
    fn a_name_too_long_to_be_a_typo_gets_no_suggestion() {
        let long = "a".repeat(MAX_SUGGEST_CHARS + 1);
        let near = format!("{long}b");
        assert_eq!(closest(&long, [near.as_str()]), None);
        assert_eq!(closest("aaa", [long.as_str()]), None);
        let ok = "a".repeat(MAX_SUGGEST_CHARS - 1);
        let ok_near = format!("{ok}b");
        assert_eq!(closest(&ok, [ok_near.as_str()]), Some(ok_near.as_str()));
    }

    #[test]
    fn a_megabyte_name_is_not_compared() {
        let name = "n".repeat(1 << 20);
        let near = format!("{name}x");
        let started = Instant::now();
        assert_eq!(closest(&name, [near.as_str(), "vpc"]), None);
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    }

    #[test]
    fn the_work_of_one_suggestion_is_capped() {
        // 100,000 candidates as long as the name: far over the cap, which
        // stops the comparisons with the best found so far.
        let names: Vec<String> = (0..100_000).map(|i| format!("{}{i:06}", "r".repeat(200))).collect();
        let name = format!("{}00000x", "r".repeat(200));
        let started = Instant::now();
        let found = closest(&name, names.iter().map(String::as_str));
        assert!(found.is_some());
        // About 16M character pairs: well under a second in a release build.
        assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    }
}
