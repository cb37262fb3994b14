//! Source text -> [`Module`]. pest recognises the text; this file lowers the
//! generic bodies into typed items, decodes strings, and reports what pest
//! cannot: unknown keys, duplicate keys, bad escapes, attributes written as
//! blocks and the reverse.

mod explain;
mod grammar;
mod recognizer;
mod syntax_error;
mod tree;

use std::fmt;

use pest::Parser as _;

use crate::ast::*;
use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::par;
use grammar::{is_identifier, Grammar, ITEM_KEYWORDS};
use recognizer::Recognizer;
use tree::Tree;

/// The grammar's rules; public as they always were.
pub use grammar::Rule;

/// A node of an item's parse tree.
type Node<'t> = tree::Node<'t, Rule>;

/// Brackets, braces and parentheses nested deeper than this are refused
/// before parsing, so no input can exhaust the stack of the recursive parser.
pub const MAX_NESTING: usize = 64;

/// Parses a whole file. Returns what could be parsed and every error found;
/// a syntax error in one item does not hide errors in the items after it.
pub fn parse(src: &str) -> (Module, Vec<Diagnostic>) {
    if let Some(d) = nesting_error(src) {
        return (Module::default(), vec![d]);
    }
    // The fast path: the whole file parses. pest indexes the lines of its
    // input on every call, so driving it item by item over the rest of the
    // file would be quadratic in the file's size; a large file is parsed in
    // parts, each in one call.
    let threads = par::threads_for(src.len(), PARALLEL_MIN_BYTES);
    let parts = (src.len() / PART_BYTES).max(threads);
    if let Some(parsed) = parse_in_parts(src, parts, threads).or_else(|| recognize_whole(src, 0)) {
        return parsed;
    }
    // A block comment that is never closed: no parse can get past it, and
    // pest would read it to the end of the file each time it tried it (a
    // dozen times for one item), so pest is not run over it.
    let never_closed = explain::comment_never_closed(src);
    if never_closed.is_none() {
        if let Some(parsed) = pest_whole(src, 0) {
            return parsed;
        }
    }
    let mut lower = Lower { base: 0, diags: Vec::new(), invalid: Vec::new() };
    let mut module = Module::default();
    // The file has a syntax error: one item at a time, so that an error in
    // one does not hide the errors of the items after it. Each error is
    // explained by `explain::explain_item`, which walks the item by hand.
    let mut pos = 0;
    while pos < src.len() {
        let rest = &src[pos..];
        // pest is given the text up to a comment that is never closed: what
        // comes before it parses as it does in the whole file, and nothing
        // can parse past it.
        let comment = never_closed.filter(|&at| at >= pos);
        let for_pest = comment.map_or(rest, |at| &src[pos..at]);
        if Grammar::parse(Rule::trivia_only, for_pest).is_ok() {
            if let Some(at) = comment {
                // Only the comment is left.
                lower.diags.push(syntax_error::comment_never_closed_at(at));
            }
            break;
        }
        let (diag, resume) = match Grammar::parse(Rule::single_item, for_pest) {
            Ok(mut pairs) => {
                let Some(single) = pairs.next() else { break };
                let consumed = single.as_span().end();
                let Some(item) = single.into_inner().next() else { break };
                // `var region string = ...` parses as `var region`, leaving
                // `string` to fail as the next item; it is this var's mistake.
                // So is a second `sensitive`, after a var or an output.
                let junk = match item.as_rule() {
                    Rule::var_decl | Rule::output_decl => explain::explain_item(src, pos),
                    _ => None,
                };
                match junk {
                    Some(x) if x.comment_never_closed => (x.diag, None),
                    None => {
                        lower.base = pos;
                        lower.item(Tree::new(for_pest).fill(item), &mut module);
                        if consumed == 0 {
                            break;
                        }
                        pos += consumed;
                        continue;
                    }
                    Some(x) => {
                        let at = x.diag.position();
                        (x.diag, x.resume.or_else(|| resync(src, at)))
                    }
                }
            }
            Err(e) => {
                let pest_at = pos + syntax_error::pest_offset(&e);
                match explain::explain_item(src, pos) {
                    // The rest of the file is inside the comment.
                    Some(x) if x.comment_never_closed => (x.diag, None),
                    Some(x) => {
                        let at = x.diag.position().max(pest_at);
                        (x.diag, x.resume.or_else(|| resync(src, at)))
                    }
                    None => (syntax_error::from_pest(src, pest_at, &e), resync(src, pest_at)),
                }
            }
        };
        lower.diags.push(diag);
        if let Some(name) = declared_name(rest) {
            module.unparsed.push(name);
        }
        match resume {
            Some(next) if next > pos => pos = next,
            _ => break,
        }
    }
    module.invalid = lower.invalid;
    (module, lower.diags)
}

/// Parses `src`, which starts at `base` in the file, as a sequence of whole
/// items; `None` if it has a syntax error.
fn parse_whole(src: &str, base: usize) -> Option<(Module, Vec<Diagnostic>)> {
    recognize_whole(src, base).or_else(|| pest_whole(src, base))
}

/// [`parse_whole`] by the hand-written [`Recognizer`], which is much faster
/// than pest and recognizes the same language.
fn recognize_whole(src: &str, base: usize) -> Option<(Module, Vec<Diagnostic>)> {
    let mut recognizer = Recognizer::new(src);
    let mut lower = Lower { base, diags: Vec::new(), invalid: Vec::new() };
    let mut module = Module::default();
    while let Some(item) = recognizer.next_item()? {
        lower.item(item, &mut module);
    }
    module.invalid = lower.invalid;
    Some((module, lower.diags))
}

/// [`parse_whole`] by pest: what the recognizer does not accept, pest
/// should reject too, but the language is pest's grammar.
fn pest_whole(src: &str, base: usize) -> Option<(Module, Vec<Diagnostic>)> {
    let file = Grammar::parse(Rule::file, src).ok()?.next()?;
    let mut lower = Lower { base, diags: Vec::new(), invalid: Vec::new() };
    let mut module = Module::default();
    let mut tree = Tree::new(src);
    for item in file.into_inner() {
        if item.as_rule() != Rule::EOI {
            lower.item(tree.fill(item), &mut module);
        }
    }
    module.invalid = lower.invalid;
    Some((module, lower.diags))
}

/// Below this size a file is parsed on one thread: starting threads would
/// cost more than they save.
const PARALLEL_MIN_BYTES: usize = 128 * 1024;

/// A large file is parsed in parts of about this size, even on one thread:
/// pest's token list for a part stays small, where for a whole large file
/// it is copied as it grows and falls out of the cache (about a fifth of
/// the time of a parse).
const PART_BYTES: usize = 32 * 1024;

/// The file cut into about `parts` parts at item boundaries, parsed on
/// `threads` threads; `None` if it could not be cut or a part does not parse.
///
/// A cut is made only at the start of a line that starts with an item
/// keyword. If the cut is really between two items, each part parses exactly
/// as it does within the whole file: an item can only go on past the end of
/// its line with punctuation (`=`, `.`, `[`, `(`, `:`) or with the word
/// `sensitive`, which is not an item keyword, and no rule looks back. If the
/// cut falls inside something, a bracket, string,
/// heredoc or comment, the part before it is left open and does not parse;
/// then the caller parses the file whole, so the result is the same either
/// way.
fn parse_in_parts(src: &str, parts: usize, threads: usize) -> Option<(Module, Vec<Diagnostic>)> {
    if parts < 2 {
        return None;
    }
    let mut cuts = vec![0];
    for k in 1..parts {
        // Each search starts past the last cut, so the file is read once.
        let from = (src.len() / parts * k).max(cuts[cuts.len() - 1]);
        let Some(cut) = item_line_after(src, from) else { break };
        if cut > cuts[cuts.len() - 1] {
            cuts.push(cut);
        }
    }
    cuts.push(src.len());
    if cuts.len() < 3 {
        return None;
    }
    parse_cut(src, &cuts, threads)
}

/// Parses the parts of `src` between `cuts` (`0`, the cuts, `src.len()`) on
/// `threads` threads, and puts the results together; `None` if a part does
/// not parse.
fn parse_cut(src: &str, cuts: &[usize], threads: usize) -> Option<(Module, Vec<Diagnostic>)> {
    let parts: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
    let parsed = par::map(&parts, threads, |_, &(start, end)| parse_whole(&src[start..end], start));
    let mut parts = parsed.into_iter();
    let (mut module, mut diags) = parts.next()??;
    for part in parts {
        let (m, d) = part?;
        append(&mut module, m);
        diags.extend(d);
    }
    Some((module, diags))
}

/// The start of the first line that starts with an item keyword, after the
/// line that holds `from`.
fn item_line_after(src: &str, from: usize) -> Option<usize> {
    let at = src.as_bytes()[from..].iter().position(|&b| b == b'\n')? + from;
    resync(src, at)
}

/// Adds the items of `more`, which come after those of `module` in the file.
fn append(module: &mut Module, more: Module) {
    // Destructured, so that a new field cannot be forgotten here.
    let Module { pipeline, vars, plugins, credentials, flows, environments, resources, outputs, unparsed, invalid } =
        more;
    module.pipeline.extend(pipeline);
    module.vars.extend(vars);
    module.plugins.extend(plugins);
    module.credentials.extend(credentials);
    module.flows.extend(flows);
    module.environments.extend(environments);
    module.resources.extend(resources);
    module.outputs.extend(outputs);
    module.unparsed.extend(unparsed);
    module.invalid.extend(invalid);
}

/// Parses one expression on its own, as given to `--var name=<expr>`.
pub fn parse_expr(src: &str) -> Result<Expr, Vec<Diagnostic>> {
    if let Some(d) = nesting_error(src) {
        return Err(vec![d]);
    }
    match Grammar::parse(Rule::standalone_expr, src) {
        Ok(mut pairs) => {
            let mut lower = Lower { base: 0, diags: Vec::new(), invalid: Vec::new() };
            let mut tree = Tree::new(src);
            let expr = pairs
                .next()
                .and_then(|p| tree.fill(p).first_child())
                .map(|p| lower.expr(p))
                .ok_or_else(|| vec![Diagnostic::new(Code::Syntax, "expected an expression")])?;
            if lower.diags.is_empty() {
                Ok(expr)
            } else {
                Err(lower.diags)
            }
        }
        Err(e) => Err(vec![syntax_error::from_pest(src, syntax_error::pest_offset(&e), &e)]),
    }
}

/// Whether the hand-written [`Recognizer`] and pest agree on `src`: both
/// reject it (`Ok(false)`), or both accept it with the same parse trees
/// (`Ok(true)`). For the differential tests; input nested too deep for
/// either counts as rejected.
#[doc(hidden)]
pub fn recognizer_agrees_with_pest(src: &str) -> Result<bool, String> {
    if nesting_error(src).is_some() {
        return Ok(false);
    }
    let by_pest = Grammar::parse(Rule::file, src).ok().map(|mut pairs| {
        let mut tree = Tree::new(src);
        let items = pairs.next().into_iter().flat_map(|file| file.into_inner());
        items
            .filter(|item| item.as_rule() != Rule::EOI)
            .map(|item| {
                tree.fill(item);
                tree.slots()
            })
            .collect::<Vec<_>>()
    });
    let mut recognizer = Recognizer::new(src);
    let mut by_hand = Some(Vec::new());
    loop {
        match recognizer.next_item() {
            Some(Some(_)) => by_hand.as_mut().into_iter().for_each(|items| items.push(recognizer.tree_slots())),
            Some(None) => break,
            None => {
                by_hand = None;
                break;
            }
        }
    }
    match (by_pest, by_hand) {
        (None, None) => Ok(false),
        (Some(_), None) => Err("pest accepts it, the recognizer does not".into()),
        (None, Some(_)) => Err("the recognizer accepts it, pest does not".into()),
        (Some(p), Some(h)) => match p.iter().zip(&h).position(|(p, h)| p != h) {
            None if p.len() == h.len() => Ok(true),
            None => Err(format!("pest finds {} items, the recognizer {}", p.len(), h.len())),
            Some(i) => Err(format!("item {i}: pest {:?}\n         recognizer {:?}", p[i], h[i])),
        },
    }
}

#[cfg(test)]
pub(crate) fn too_deep(src: &str) -> bool {
    nesting_error(src).is_some()
}

fn nesting_error(src: &str) -> Option<Diagnostic> {
    let mut depth = 0usize;
    // Bytes, not chars: the brackets are ASCII, and no byte of a multi-byte
    // character is.
    for (i, c) in src.bytes().enumerate() {
        match c {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(
                        Diagnostic::at(Code::TooDeep, Span::new(i, i + 1), "nesting is too deep")
                            .help(format!("brackets, braces and parentheses nest at most {MAX_NESTING} levels deep")),
                    );
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// The name an item declares (`resource vpc ...` -> `vpc`), read from its
/// first two words, for an item that did not parse.
fn declared_name(item: &str) -> Option<String> {
    // The text from where the last item ended: the comments before this one too.
    let item = after_trivia(item);
    let mut words = item.split(|c: char| c.is_whitespace() || c == '{' || c == '"' || c == ':' || c == '=')
        .filter(|w| !w.is_empty());
    let kw = words.next()?;
    if !ITEM_KEYWORDS.contains(&kw) {
        return None;
    }
    words.next().filter(|w| is_identifier(w)).map(str::to_string)
}

/// `s` from after the whitespace and comments it starts with.
fn after_trivia(mut s: &str) -> &str {
    loop {
        let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\u{FEFF}']);
        s = if t.starts_with('#') || t.starts_with("//") {
            t.find('\n').map_or("", |i| &t[i..])
        } else if let Some(comment) = t.strip_prefix("/*") {
            match comment.find("*/") {
                Some(i) => &comment[i + 2..],
                None => return t,
            }
        } else {
            return t;
        };
    }
}

/// The start of the next line, after `at`, that begins with an item keyword.
fn resync(src: &str, at: usize) -> Option<usize> {
    let mut line_start = src[at..].find('\n').map(|i| at + i + 1)?;
    loop {
        let line = &src[line_start..];
        let starts_item = ITEM_KEYWORDS.iter().any(|kw| {
            line.starts_with(kw)
                && line[kw.len()..].chars().next().is_some_and(|c| c.is_whitespace() || c == '{' || c == '"')
        });
        if starts_item {
            return Some(line_start);
        }
        line_start = line.find('\n').map(|i| line_start + i + 1)?;
    }
}

/// One entry of a generic `{ }` body.
enum Entry {
    Attr(Attribute),
    Block(Block),
}

struct Block {
    name: Ident,
    labels: Vec<Ident>,
    entries: Vec<Entry>,
    span: Span,
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
struct BodyReader<'o> {
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
    fn new(entries: Vec<Entry>, owner: &'o dyn fmt::Display) -> Self {
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

    /// The attribute `key = value`, at most once.
    fn attr(&mut self, key: &'static str, diags: &mut Vec<Diagnostic>) -> Option<Expr> {
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
        found.map(|a| a.value)
    }

    /// Every block `key { }` (with labels, if `labels` allows them).
    fn blocks(&mut self, key: &'static str, labels: usize, diags: &mut Vec<Diagnostic>) -> Vec<Block> {
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
    fn block(&mut self, key: &'static str, diags: &mut Vec<Diagnostic>) -> Option<Block> {
        let mut blocks = self.blocks(key, 0, diags).into_iter();
        let first = blocks.next()?;
        for dup in blocks {
            diags.push(duplicate_key(&first.name, &dup.name, self.owner));
        }
        Some(first)
    }

    /// Reports every entry no one asked for. Returns the keys that are
    /// missing for a reason already reported: checks of required keys skip them.
    fn finish(mut self, diags: &mut Vec<Diagnostic>) -> Vec<&'static str> {
        for e in &self.entries {
            let key = e.key();
            let closest = crate::diagnostic::closest(&key.name, self.asked.iter().copied());
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

    fn into_entries(self) -> Vec<Entry> {
        self.entries
    }
}

/// What owns a body, as messages name it: resource `vpc`.
struct Named<'a>(&'static str, &'a str);

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

fn duplicate_key(first: &Ident, dup: &Ident, owner: &dyn fmt::Display) -> Diagnostic {
    Diagnostic::at(Code::DuplicateKey, dup.span, format!("`{}` is set twice in {owner}", dup.name))
        .with_label(dup.span, "set again here")
        .with_label(first.span, "first set here")
}

/// Lowering state: the offset of the slice being lowered and the errors so far.
struct Lower {
    base: usize,
    diags: Vec<Diagnostic>,
    /// Spans of expressions reported here (see [`Module::invalid`]).
    invalid: Vec<Span>,
}

impl Lower {
    fn span(&self, p: Node) -> Span {
        Span::new(self.base + p.start(), self.base + p.end())
    }

    /// The span of a rule that ends in an optional or repeated part, which pest
    /// extends over the whitespace and comments it skipped looking for more:
    /// from the first child to the end of the last.
    fn children_span(&self, p: Node) -> Span {
        let whole = self.span(p);
        match p.children().last() {
            Some(last) => Span::new(whole.start, self.span(last).end),
            None => whole,
        }
    }

    fn ident(&self, p: Node) -> Ident {
        Ident { name: p.as_str().into(), span: self.span(p) }
    }

    fn item(&mut self, p: Node, m: &mut Module) {
        let span = self.children_span(p);
        let rule = p.rule();
        // The first child of every item is its keyword.
        let mut inner = p.children().skip(1);
        match rule {
            Rule::pipeline_decl => {
                let Some(s) = inner.next() else { return };
                let name_span = self.span(s);
                let expr = self.string(s);
                match expr.as_plain_string() {
                    Some(name) => m.pipeline.push(PipelineDecl { name, name_span, span }),
                    None => self.diags.push(
                        Diagnostic::at(Code::InvalidValue, name_span, "the pipeline name must be a plain string, without `${}`")
                            .with_label(name_span, "has an interpolation")
                            .help("the name is the same in every environment: write it as plain text, like `pipeline \"aws\"`"),
                    ),
                }
            }
            Rule::var_decl => {
                let Some(name) = inner.next().map(|i| self.ident(i)) else { return };
                let mut ty = VarType::Any;
                let mut ty_span = None;
                let mut default = None;
                let mut sensitive = None;
                for part in inner {
                    match part.rule() {
                        Rule::kw_sensitive => sensitive = Some(self.span(part)),
                        Rule::type_name => {
                            let s = self.span(part);
                            ty_span = Some(s);
                            let word = part.as_str();
                            match VarType::ALL.iter().find(|(n, _)| *n == word) {
                                Some((_, t)) => ty = *t,
                                // `var x: sensitive`: the keyword read as the type.
                                None if word == "sensitive" => self.diags.push(
                                    Diagnostic::at(Code::InvalidValue, s, "`sensitive` is not a type")
                                        .with_label(s, "not a type")
                                        .help(format!(
                                            "`sensitive` comes last, after the type: `var {}: string sensitive`",
                                            name.name
                                        )),
                                ),
                                None => self.diags.push(
                                    Diagnostic::at(Code::InvalidValue, s, format!("unknown type `{word}`"))
                                        .with_label(s, "not a type")
                                        .help(
                                            did_you_mean(word, VarType::ALL.iter().map(|(n, _)| *n)).unwrap_or_else(
                                                || "the types are: string, number, bool, list, map, any".into(),
                                            ),
                                        ),
                                ),
                            }
                        }
                        _ => default = Some(self.expr(part)),
                    }
                }
                m.vars.push(VarDecl { name, ty, ty_span, default, sensitive, span });
            }
            Rule::plugin_decl => {
                let (Some(name), Some(body)) = (inner.next(), inner.next()) else { return };
                let name = self.ident(name);
                let entries = self.body(body);
                m.plugins.push(self.plugin(name, entries, span));
            }
            Rule::credentials_decl => {
                let (Some(name), Some(body)) = (inner.next(), inner.next()) else { return };
                let provisioner = self.ident(name);
                let entries = self.body(body);
                m.credentials.push(self.credentials(provisioner, entries, span));
            }
            Rule::flow_decl => {
                let Some(body) = inner.next() else { return };
                let entries = self.body(body);
                m.flows.push(self.flow(entries, span, "the pipeline's `flow`".into()));
            }
            Rule::environment_decl => {
                let (Some(name), Some(body)) = (inner.next(), inner.next()) else { return };
                let name = self.ident(name);
                let entries = self.body(body);
                m.environments.push(self.environment(name, entries, span));
            }
            Rule::resource_decl => {
                let (Some(name), Some(ty), Some(body)) = (inner.next(), inner.next(), inner.next()) else { return };
                let name = self.ident(name);
                let ty_span = self.span(ty);
                let ty_expr = self.string(ty);
                let entries = self.body(body);
                if let Some(r) = self.resource(name, ty_expr, ty_span, entries, span) {
                    m.resources.push(r);
                }
            }
            Rule::output_decl => {
                let (Some(name), Some(value)) = (inner.next(), inner.next()) else { return };
                let name = self.ident(name);
                let value = self.expr(value);
                // The only part after the value is the optional keyword.
                let sensitive = inner.next().map(|k| self.span(k));
                m.outputs.push(OutputDecl { name, value, sensitive, span });
            }
            _ => {}
        }
    }

    fn plugin(&mut self, name: Ident, entries: Vec<Entry>, span: Span) -> PluginDecl {
        let owner = format!("plugin `{}`", name.name);
        let mut r = BodyReader::new(entries, &owner);
        let kind_expr = r.attr("kind", &mut self.diags);
        let source = r.attr("source", &mut self.diags);
        let config = r.block("config", &mut self.diags).map(|b| self.block_to_map(b));
        let allow = match r.block("allow", &mut self.diags) {
            Some(b) => {
                let allow_owner = format!("the `allow` block of {owner}");
                let mut a = BodyReader::new(b.entries, &allow_owner);
                let allow = AllowBlock {
                    http: a.attr("http", &mut self.diags),
                    fs: a.attr("fs", &mut self.diags),
                    env: a.attr("env", &mut self.diags),
                };
                a.finish(&mut self.diags);
                allow
            }
            None => AllowBlock::default(),
        };
        let limits = match r.block("limits", &mut self.diags) {
            Some(b) => {
                let limits_owner = format!("the `limits` block of {owner}");
                let mut l = BodyReader::new(b.entries, &limits_owner);
                let limits = LimitsBlock {
                    memory_mb: l.attr("memory_mb", &mut self.diags),
                    timeout_s: l.attr("timeout_s", &mut self.diags),
                };
                l.finish(&mut self.diags);
                limits
            }
            None => LimitsBlock::default(),
        };
        let explained = r.finish(&mut self.diags);

        let kind = match &kind_expr {
            None if explained.contains(&"kind") => None,
            None => {
                self.diags.push(
                    Diagnostic::at(Code::MissingKey, name.span, format!("{owner} has no `kind`"))
                        .with_label(name.span, "declared here")
                        .help("add `kind = \"provisioner\"` (or \"credentials\", or \"policy\")"),
                );
                None
            }
            Some(e) => {
                let word = e.as_plain_string().or_else(|| e.as_bare_ident().map(|i| i.name.to_string()));
                match word.as_deref().and_then(|w| PluginKind::ALL.iter().find(|(n, _)| *n == w)) {
                    Some((_, k)) => Some((*k, e.span)),
                    None => {
                        let help = word
                            .as_deref()
                            .and_then(|w| did_you_mean(w, PluginKind::ALL.iter().map(|(n, _)| *n)))
                            .unwrap_or_else(|| "a plugin's kind is \"provisioner\", \"credentials\" or \"policy\"".into());
                        self.diags.push(
                            Diagnostic::at(Code::InvalidValue, e.span, format!("invalid kind for {owner}"))
                                .with_label(e.span, "not a plugin kind")
                                .help(help),
                        );
                        None
                    }
                }
            }
        };
        if source.is_none() && !explained.contains(&"source") {
            self.diags.push(
                Diagnostic::at(Code::MissingKey, name.span, format!("{owner} has no `source`"))
                    .with_label(name.span, "declared here")
                    .help("add `source = \"builtin:<name>\"` or a path to a .wasm component"),
            );
        }
        PluginDecl { name, kind, source, config, allow, limits, span }
    }

    fn credentials(&mut self, provisioner: Ident, entries: Vec<Entry>, span: Span) -> CredentialsDecl {
        let owner = format!("`credentials {}`", provisioner.name);
        let mut r = BodyReader::new(entries, &owner);
        let resolver_expr = r.attr("resolver", &mut self.diags);
        let config = r.block("config", &mut self.diags).map(|b| self.block_to_map(b));
        let explained = r.finish(&mut self.diags);
        let resolver = match resolver_expr {
            None if explained.contains(&"resolver") => None,
            None => {
                self.diags.push(
                    Diagnostic::at(Code::MissingKey, provisioner.span, format!("{owner} has no `resolver`"))
                        .with_label(provisioner.span, "declared here")
                        .help("name the credentials plugin: `resolver = <plugin>`"),
                );
                None
            }
            Some(e) => match e.as_bare_ident() {
                Some(i) => Some(i.clone()),
                None => {
                    self.diags.push(
                        Diagnostic::at(Code::InvalidValue, e.span, "`resolver` must name a credentials plugin")
                            .with_label(e.span, "not a plugin name")
                            .help("write the plugin's name without quotes: `resolver = aws_keys`"),
                    );
                    None
                }
            },
        };
        CredentialsDecl { provisioner, resolver, config, span }
    }

    fn flow(&mut self, entries: Vec<Entry>, span: Span, owner: String) -> FlowBlock {
        let mut r = BodyReader::new(entries, &owner);
        let flow = FlowBlock {
            refresh: r.attr("refresh", &mut self.diags),
            preview: r.attr("preview", &mut self.diags),
            pause_before_apply: r.attr("pause_before_apply", &mut self.diags),
            span,
        };
        r.finish(&mut self.diags);
        flow
    }

    fn environment(&mut self, name: Ident, entries: Vec<Entry>, span: Span) -> EnvironmentDecl {
        let owner = format!("environment `{}`", name.name);
        let mut r = BodyReader::new(entries, &owner);
        let after_expr = r.attr("after", &mut self.diags);
        let approval = r.attr("approval", &mut self.diags);
        let vars = match r.block("vars", &mut self.diags) {
            Some(b) => self.attributes_of(b.entries, &format!("the `vars` of {owner}")),
            None => Vec::new(),
        };
        let flow = r.block("flow", &mut self.diags).map(|b| self.flow(b.entries, b.span, format!("the `flow` of {owner}")));
        let mut credentials = Vec::new();
        for b in r.blocks("credentials", 1, &mut self.diags) {
            let Some(provisioner) = b.labels.into_iter().next() else { continue };
            credentials.push(self.credentials(provisioner, b.entries, b.span));
        }
        r.finish(&mut self.diags);
        let after = match after_expr {
            None => Vec::new(),
            Some(e) => self.name_list(&e, "after", "environment", "after = staging"),
        };
        EnvironmentDecl { name, after, approval, vars, flow, credentials, span }
    }

    fn resource(
        &mut self,
        name: Ident,
        ty: Expr,
        ty_span: Span,
        entries: Vec<Entry>,
        span: Span,
    ) -> Option<ResourceDecl> {
        // Formatted only for a message: most resources have none.
        let owner = Named("resource", &name.name);
        let mut r = BodyReader::new(entries, &owner);
        let depends_on = r.attr("depends_on", &mut self.diags);
        let gate = r.attr("gate", &mut self.diags);
        let flow = r.block("flow", &mut self.diags).map(|b| self.flow(b.entries, b.span, format!("the `flow` of {owner}")));
        // Everything else is an attribute for the provisioner.
        let attributes = self.attributes_of(r.into_entries(), &owner);
        let depends_on = match depends_on {
            None => Vec::new(),
            Some(e) => self.name_list(&e, "depends_on", "resource", "depends_on = [vpc, sg]"),
        };

        let type_text = ty.as_plain_string();
        let (plugin, kind) = match type_text.as_deref().and_then(|t| t.split_once('.')) {
            Some((p, k)) if is_identifier(p) && !k.is_empty() => {
                // Inside the quotes: `"` + plugin + `.` + type + `"`.
                let p_start = ty_span.start + 1;
                let k_start = p_start + p.len() + 1;
                (
                    Ident { name: p.into(), span: Span::new(p_start, p_start + p.len()) },
                    Ident { name: k.into(), span: Span::new(k_start, k_start + k.len()) },
                )
            }
            _ => {
                self.diags.push(
                    Diagnostic::at(Code::InvalidValue, ty_span, format!("invalid type for {owner}"))
                        .with_label(ty_span, "expected \"<plugin>.<type>\"")
                        .help("a resource type names its provisioner plugin and the plugin's type, like \"aws.vpc\""),
                );
                return None;
            }
        };
        let (gate, flow) = (gate.map(Box::new), flow.map(Box::new));
        Some(ResourceDecl { name, plugin, kind, type_span: ty_span, attributes, depends_on, gate, flow, span })
    }

    /// `[a, b]` or a single `a`: bare names.
    fn name_list(&mut self, e: &Expr, key: &str, what: &str, example: &str) -> Vec<Ident> {
        let in_list = matches!(e.kind, ExprKind::List(_));
        let as_written = |name: &str| if in_list { format!("[{name}]") } else { name.to_string() };
        let items: Vec<&Expr> = match &e.kind {
            ExprKind::List(items) => items.iter().collect(),
            _ => vec![e],
        };
        let mut out = Vec::new();
        for item in items {
            if let Some(i) = item.as_bare_ident() {
                out.push(i.clone());
                continue;
            }
            let (message, label, help) = match (&item.kind, item.as_plain_string()) {
                (_, Some(text)) if is_identifier(&text) => (
                    format!("`{key}` takes {what} names, not strings"),
                    "a string".to_string(),
                    format!("write the name without quotes: `{key} = {}`", as_written(&text)),
                ),
                (ExprKind::Traversal { root, .. }, _) if !["var", "env", "pipeline"].contains(&root.name.as_str()) => (
                    format!("`{key}` takes {what} names, not their outputs"),
                    format!("an output of `{root}`"),
                    format!("write the name alone: `{key} = {}`", as_written(&root.name)),
                ),
                _ => (
                    format!("`{key}` takes {what} names"),
                    "not a name".to_string(),
                    format!("write names without quotes, like `{example}`"),
                ),
            };
            self.diags.push(Diagnostic::at(Code::InvalidValue, item.span, message).with_label(item.span, label).help(help));
        }
        out
    }

    /// A body read as attributes: `key = value` entries, and nested blocks,
    /// each of which adds one map to the list named by the block.
    fn attributes_of(&mut self, entries: Vec<Entry>, owner: &dyn fmt::Display) -> Vec<Attribute> {
        let mut out: Vec<Attribute> = Vec::with_capacity(entries.len());
        // Block name -> index in `out` of the list it appends to.
        let mut block_lists: Vec<(Name, usize)> = Vec::new();
        for e in entries {
            match e {
                Entry::Attr(a) => {
                    if let Some(first) = out.iter().find(|o| o.key.name == a.key.name) {
                        self.diags.push(duplicate_key(&first.key, &a.key, owner));
                        continue;
                    }
                    out.push(a);
                }
                Entry::Block(b) => {
                    if let Some(l) = b.labels.first() {
                        self.diags.push(
                            Diagnostic::at(Code::Syntax, l.span, format!("nested block `{}` takes no label", b.name))
                                .with_label(l.span, "unexpected label"),
                        );
                    }
                    let key = b.name.clone();
                    let map = self.block_to_map(b);
                    match block_lists.iter().find(|(n, _)| *n == key.name) {
                        Some((_, i)) => {
                            let value = &mut out[*i].value;
                            value.span = value.span.to(map.span);
                            if let ExprKind::List(items) = &mut value.kind {
                                items.push(map);
                            }
                        }
                        None => {
                            if let Some(first) = out.iter().find(|o| o.key.name == key.name) {
                                self.diags.push(duplicate_key(&first.key, &key, owner));
                                continue;
                            }
                            block_lists.push((key.name.clone(), out.len()));
                            let span = map.span;
                            out.push(Attribute { key, value: Expr { kind: ExprKind::List(vec![map]), span } });
                        }
                    }
                }
            }
        }
        out
    }

    fn block_to_map(&mut self, b: Block) -> Expr {
        let owner = format!("block `{}`", b.name);
        let span = b.span;
        let attrs = self.attributes_of(b.entries, &owner);
        let entries = attrs.into_iter().map(|a| (MapKey { name: a.key.name, span: a.key.span }, a.value)).collect();
        Expr { kind: ExprKind::Map(entries), span }
    }

    fn body(&mut self, p: Node) -> Vec<Entry> {
        let mut out = Vec::with_capacity(p.children().count());
        for e in p.children() {
            match e.rule() {
                Rule::attribute => {
                    let mut i = e.children();
                    let (Some(k), Some(v)) = (i.next(), i.next()) else { continue };
                    let key = self.ident(k);
                    let value = self.expr(v);
                    out.push(Entry::Attr(Attribute { key, value }));
                }
                Rule::block => {
                    let span = self.span(e);
                    let mut name = None;
                    let mut labels = Vec::new();
                    let mut entries = Vec::new();
                    for part in e.children() {
                        match part.rule() {
                            Rule::identifier if name.is_none() => name = Some(self.ident(part)),
                            Rule::identifier => labels.push(self.ident(part)),
                            Rule::string => {
                                let s = self.span(part);
                                let text = self.string(part).as_plain_string().unwrap_or_default();
                                labels.push(Ident { name: text.into(), span: s });
                            }
                            Rule::body => entries = self.body(part),
                            _ => {}
                        }
                    }
                    if let Some(name) = name {
                        out.push(Entry::Block(Block { name, labels, entries, span }));
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn expr(&mut self, p: Node) -> Expr {
        let span = self.children_span(p);
        if p.rule() != Rule::expr {
            return self.primary(p);
        }
        let mut inner = p.children();
        let Some(first) = inner.next() else { return Expr { kind: ExprKind::Null, span } };
        let is_name = first.rule() == Rule::identifier;
        let base = if is_name { None } else { Some(self.primary(first)) };
        // Sized exactly, here and below: a vector grown by pushing starts
        // with room for four, and a large file has a hundred thousand of them.
        let mut steps: Vec<Step> = Vec::with_capacity(inner.clone().count());
        steps.extend(inner.filter_map(|s| {
            let rule = s.rule();
            let child = s.children().next()?;
            Some(match rule {
                Rule::get_attr => Step::Attr(self.ident(child)),
                _ => Step::Index(self.expr(child)),
            })
        }));
        let kind = match base {
            None => ExprKind::Traversal { root: self.ident(first), steps },
            Some(b) if steps.is_empty() => return Expr { kind: b.kind, span },
            Some(b) => ExprKind::Access { base: Box::new(b), steps },
        };
        Expr { kind, span }
    }

    fn primary(&mut self, p: Node) -> Expr {
        let span = self.span(p);
        let kind = match p.rule() {
            Rule::null_lit => ExprKind::Null,
            Rule::bool_lit => ExprKind::Bool(p.as_str() == "true"),
            Rule::number => match parse_number(p.as_str()) {
                Some(n) => ExprKind::Number(n),
                None => {
                    self.diags.push(
                        Diagnostic::at(Code::InvalidValue, span, "number out of range")
                            .with_label(span, "too large to represent")
                            .help("a number is at most about 1.8e308"),
                    );
                    self.invalid.push(span);
                    ExprKind::Null
                }
            },
            Rule::string => return self.string(p),
            Rule::heredoc => return self.heredoc(p),
            Rule::list => {
                let items = p.children().filter(|e| e.rule() == Rule::expr);
                let mut list = Vec::with_capacity(items.clone().count());
                list.extend(items.map(|e| self.expr(e)));
                ExprKind::List(list)
            }
            Rule::map => {
                let mut entries: Vec<(MapKey, Expr)> = Vec::new();
                for entry in p.children().filter(|e| e.rule() == Rule::map_entry) {
                    let mut i = entry.children();
                    let (Some(k), Some(v)) = (i.next(), i.next()) else { continue };
                    let key_span = self.span(k);
                    let name = match k.rule() {
                        Rule::identifier => Some(k.as_str().to_string()),
                        _ => self.string(k).as_plain_string(),
                    };
                    let value = self.expr(v);
                    let Some(name) = name else {
                        self.diags.push(
                            Diagnostic::at(Code::InvalidValue, key_span, "a map key must be a plain string")
                                .with_label(key_span, "has an interpolation"),
                        );
                        self.invalid.push(span);
                        continue;
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                        self.diags.push(
                            Diagnostic::at(Code::DuplicateKey, key_span, format!("map key `{name}` is given twice"))
                                .with_label(key_span, "given again here")
                                .with_label(first.span, "first given here"),
                        );
                        continue;
                    }
                    entries.push((MapKey { name: name.into(), span: key_span }, value));
                }
                ExprKind::Map(entries)
            }
            Rule::call => {
                let mut i = p.children();
                let Some(f) = i.next() else { return Expr { kind: ExprKind::Null, span } };
                let function = self.ident(f);
                let mut args = Vec::with_capacity(i.clone().count());
                args.extend(i.map(|a| self.expr(a)));
                ExprKind::Call { function, args }
            }
            Rule::identifier => ExprKind::Traversal { root: self.ident(p), steps: Vec::new() },
            _ => ExprKind::Null,
        };
        Expr { kind, span }
    }

    fn string(&mut self, p: Node) -> Expr {
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

    fn heredoc(&mut self, p: Node) -> Expr {
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

fn parse_number(s: &str) -> Option<serde_json::Number> {
    if !s.contains(['.', 'e', 'E']) {
        if let Ok(i) = s.parse::<i64>() {
            return Some(i.into());
        }
    }
    s.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Module {
        let (m, d) = parse(src);
        assert!(d.is_empty(), "unexpected diagnostics: {d:#?}");
        m
    }

    #[test]
    fn parses_every_item_kind() {
        let m = ok(r#"
            pipeline "p"
            var region: string = "us-east-1"
            var n = 3
            plugin aws { kind = "provisioner" source = "builtin:aws" config { region = var.region } allow { http = ["127.0.0.1:5055"] } limits { memory_mb = 64 timeout_s = 120 } }
            plugin keys { kind = "credentials" source = "builtin:env" }
            credentials aws { resolver = keys }
            flow { refresh = true }
            environment dev {}
            environment prod { after = dev approval = true vars { n = 4 } flow { pause_before_apply = true } credentials aws { resolver = keys } }
            resource vpc "aws.vpc" { cidr_block = "10.0.0.0/16" }
            resource sub "aws.subnet" { vpc_id = vpc.id depends_on = [vpc] gate = "after" flow { refresh = false } }
            output id = sub.id
        "#);
        assert_eq!(m.pipeline[0].name, "p");
        assert_eq!(m.vars.len(), 2);
        assert_eq!(m.vars[0].ty, VarType::String);
        assert_eq!(m.plugins.len(), 2);
        assert_eq!(m.plugins[0].kind.map(|k| k.0), Some(PluginKind::Provisioner));
        assert_eq!(m.environments[1].after[0].name, "dev");
        assert_eq!(m.environments[1].credentials[0].provisioner.name, "aws");
        assert_eq!(m.resources[1].depends_on[0].name, "vpc");
        assert_eq!(m.resources[1].plugin.name, "aws");
        assert_eq!(m.resources[1].kind.name, "subnet");
        assert_eq!(m.outputs[0].name.name, "id");
    }

    #[test]
    fn spans_point_at_the_source() {
        let src = "resource vpc \"aws.vpc\" { cidr = \"x\" }";
        let m = ok(src);
        let r = &m.resources[0];
        assert_eq!(&src[r.name.span.start..r.name.span.end], "vpc");
        assert_eq!(&src[r.plugin.span.start..r.plugin.span.end], "aws");
        assert_eq!(&src[r.kind.span.start..r.kind.span.end], "vpc");
        let v = &r.attributes[0].value;
        assert_eq!(&src[v.span.start..v.span.end], "\"x\"");
    }

    #[test]
    fn comments_of_every_style() {
        let m = ok("# a\n// b\n/* c\n d */ var x = 1 # trailing\n/* x */ var y = \"# not a comment\"");
        assert_eq!(m.vars.len(), 2);
        assert_eq!(m.vars[1].default.as_ref().and_then(|e| e.as_plain_string()).as_deref(), Some("# not a comment"));
    }

    #[test]
    fn strings_escapes_and_interpolation() {
        let m = ok(r#"var s = "a\"b\\c\n\t\u{1F600} ${var.x}-$${lit}""#);
        let ExprKind::Template(parts) = &m.vars[0].default.as_ref().unwrap().kind else { panic!() };
        assert_eq!(parts[0], TemplatePart::Literal("a\"b\\c\n\t\u{1F600} ".into()));
        assert!(matches!(&parts[1], TemplatePart::Interpolation(_)));
        assert_eq!(parts[2], TemplatePart::Literal("-${lit}".into()));
    }

    #[test]
    fn heredocs_plain_and_indented() {
        let m = ok("var a = <<EOT\n  one\n two ${var.x}\nEOT\nvar b = <<-EOT\n    x\n      y\n    EOT\n");
        let a = &m.vars[0].default.as_ref().unwrap().kind;
        let ExprKind::Template(parts) = a else { panic!() };
        assert_eq!(parts[0], TemplatePart::Literal("  one\n two ".into()));
        assert_eq!(parts[2], TemplatePart::Literal("\n".into()));
        assert_eq!(m.vars[1].default.as_ref().unwrap().as_plain_string().as_deref(), Some("x\n  y\n"));
    }

    #[test]
    fn nested_blocks_in_resources_become_lists_of_maps() {
        let m = ok("resource sg \"aws.security_group\" { ingress { port = 80 } ingress { port = 443 } }");
        let ExprKind::List(items) = &m.resources[0].attributes[0].value.kind else { panic!() };
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn reports_errors_in_several_items() {
        let (_, d) = parse("resource a \"x.y\" { b = }\nvar ok = 1\nresource c \"x.y\" { d = [1, }\n");
        assert_eq!(d.len(), 2, "{d:#?}");
        assert!(d.iter().all(|d| d.code == Code::Syntax));
    }

    #[test]
    fn an_unclosed_body_does_not_swallow_the_next_item() {
        let (m, d) = parse("resource a \"x.y\" {\n  k = 1\n\nresource b \"x.y\" { k = [1 2] }\nvar ok = 1\n");
        assert_eq!(d.len(), 2, "{d:#?}");
        assert_eq!(d[0].message, "unclosed `{` of resource `a`");
        assert_eq!(d[1].message, "expected `,` or `]`, found `2`");
        assert_eq!(m.vars.len(), 1);
    }

    #[test]
    fn a_var_with_more_on_its_line_is_one_error_and_not_declared() {
        let (m, d) = parse("var region string = \"x\"\nvar ok = 1\n");
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].message, "expected `:` or `=`, found `string`");
        assert_eq!(m.vars.len(), 1);
        assert_eq!(m.unparsed, vec!["region".to_string()]);
    }

    #[test]
    fn sensitive_marks_vars_and_outputs() {
        let src = "var a: string sensitive\nvar b = \"dev\" sensitive\nvar c: string = \"x\"  sensitive # c\nvar d = 1\n\
                   output o = r.id sensitive\noutput p = r.id  # c\n\
                   resource sensitive \"t.step\" { sensitive = sensitive.id }\n";
        let m = ok(src);
        let text = |s: Span| &src[s.start..s.end];
        let marked: Vec<Option<&str>> = m.vars.iter().map(|v| v.sensitive.map(text)).collect();
        assert_eq!(marked, [Some("sensitive"), Some("sensitive"), Some("sensitive"), None]);
        assert_eq!(m.vars[1].default.as_ref().and_then(Expr::as_plain_string).as_deref(), Some("dev"));
        assert_eq!(m.vars[2].ty, VarType::String);
        assert_eq!(text(m.vars[2].span), "var c: string = \"x\"  sensitive");
        assert_eq!(m.outputs[0].sensitive.map(text), Some("sensitive"));
        assert_eq!(m.outputs[1].sensitive, None);
        // An item's span ends with its last token, not with the trivia after it.
        assert_eq!(text(m.outputs[0].span), "output o = r.id sensitive");
        assert_eq!(text(m.outputs[1].span), "output p = r.id");
        // Anywhere else, `sensitive` is a name.
        assert_eq!(m.resources[0].name.name, "sensitive");
        assert_eq!(m.resources[0].attributes[0].key.name, "sensitive");
    }

    #[test]
    fn a_second_sensitive_is_one_error_and_the_item_not_declared() {
        let (m, d) = parse("output o = r.id sensitive sensitive\nvar ok = 1 sensitive\nvar no sensitive sensitive\n");
        assert_eq!(d.len(), 2, "{d:#?}");
        assert!(d.iter().all(|d| d.message == "`sensitive` is given twice"));
        assert_eq!(m.vars.len(), 1);
        assert!(m.outputs.is_empty());
        assert_eq!(m.unparsed, vec!["o".to_string(), "no".to_string()]);
    }

    #[test]
    fn an_item_that_does_not_parse_after_a_comment_is_still_declared() {
        let (m, d) = parse("# c\n/* d */ // e\nvar region string = \"x\"\n# f\noutput o = a.b sensitive sensitive\n");
        assert_eq!(d.len(), 2, "{d:#?}");
        assert_eq!(m.unparsed, vec!["region".to_string(), "o".to_string()]);
    }

    #[test]
    fn invalid_literals_are_recorded() {
        let (m, d) = parse("var n = 1e999\nvar s = \"\\q\"\n");
        assert_eq!(d.len(), 2, "{d:#?}");
        assert_eq!(m.invalid.len(), 2);
    }

    /// A file of `n` resources, and the offset of each `resource` line.
    fn resources(n: usize) -> (String, Vec<usize>) {
        let mut src = String::new();
        let mut lines = Vec::new();
        for i in 0..n {
            lines.push(src.len());
            src.push_str(&format!("resource r{i} \"t.step\" {{\n  a = \"${{env.name}}-{i}\"\n  b = r0.id # c\n}}\n"));
        }
        (src, lines)
    }

    #[test]
    fn a_file_cut_between_items_parses_as_the_whole() {
        let (src, lines) = resources(50);
        // With a diagnostic of lowering, which must come back too.
        // And an item that goes on to the next line with `sensitive`.
        let head = "var n = \"\\q\"\nvar s = 1\n  sensitive\n";
        let src = format!("{head}{src}output o = r1.id\n");
        let whole = parse_whole(&src, 0);
        assert!(whole.as_ref().is_some_and(|(_, d)| d.len() == 1), "{whole:#?}");
        let cuts = [0, head.len() + lines[10], head.len() + lines[30], src.len()];
        assert_eq!(parse_cut(&src, &cuts, 2), whole);
    }

    #[test]
    fn a_cut_inside_something_does_not_parse() {
        // A heredoc, a block comment, a body and a list, each holding a line that starts like an item.
        for inside in [
            "var h = <<EOT\nresource x \"t.step\" {}\nEOT\n",
            "/*\nresource x \"t.step\" {}\n*/\n",
            "resource y \"t.step\" {\nresource x \"t.step\" {}\n}\n",
            "output l = [\nvar.x]\n",
        ] {
            let src = format!("resource a \"t.step\" {{}}\n{inside}resource b \"t.step\" {{}}\n");
            assert!(parse_whole(&src, 0).is_some(), "{src}");
            let cut = src.find("\nresource x").or_else(|| src.find("\nvar.x")).unwrap() + 1;
            assert_eq!(parse_cut(&src, &[0, cut, src.len()], 2), None, "{src}");
        }
    }

    #[test]
    fn a_file_is_cut_at_items() {
        let (src, _) = resources(40);
        let src = format!("var h = <<EOT\nresource x \"t.step\" {{}}\nEOT\n{src}");
        let whole = parse_whole(&src, 0);
        assert!(whole.is_some());
        for threads in [2, 3, 7] {
            assert_eq!(parse_in_parts(&src, threads, 2), whole);
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let src = format!("var x = {}{}", "[".repeat(10_000), "]".repeat(10_000));
        let (_, d) = parse(&src);
        assert_eq!(d[0].code, Code::TooDeep);
        // The deepest nesting allowed parses fine, even on a test thread's small stack.
        let depth = MAX_NESTING - 1;
        let src = format!("var x = {}1{}", "[".repeat(depth), "]".repeat(depth));
        ok(&src);
    }

    #[test]
    fn a_comment_never_closed_is_one_error_and_what_is_before_it_parses() {
        let body = "resource inside \"x.y\" {}\n".repeat(200_000);
        let src = format!("var ok = 1\nresource r \"x.y\" {{ k = 1 }}\n/* never closed\n{body}");
        let started = std::time::Instant::now();
        let (m, d) = parse(&src);
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].message, "unterminated block comment");
        let at = src.find("/*").unwrap();
        assert_eq!(d[0].labels[0].span, Span::new(at, at + 2));
        assert_eq!((m.vars.len(), m.resources.len()), (1, 1), "nothing inside the comment is parsed");
    }

    #[test]
    fn a_comment_never_closed_inside_an_item_is_that_items_error() {
        let src = format!("var ok = 1\nresource r \"x.y\" {{\n  k = 1 /* open {}\n}}\n", "x".repeat(1 << 20));
        let (m, d) = parse(&src);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].message, "unterminated block comment");
        assert_eq!(d[0].position(), src.find("/*").unwrap());
        assert_eq!(m.vars.len(), 1);
        assert_eq!(m.unparsed, vec!["r".to_string()]);
    }

    #[test]
    fn a_comment_opener_in_a_string_is_not_a_comment() {
        // The `/*` after the last `*/` is in a string: the mistake is the stray `}`.
        let src = "/* a */ var ok = 1\n}\nresource r \"x.y\" { k = \"s3://bucket/*\" }\n";
        let (m, d) = parse(src);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_ne!(d[0].message, "unterminated block comment");
        assert_eq!(m.resources.len(), 1, "the item after the mistake parses");
        assert_eq!(explain::comment_never_closed(src), None);
    }
}
