//! The parse driver: source text -> [`Module`] and the syntax errors.
//!
//! A file without syntax errors is read by the hand-written recognizer
//! (`recognizer.rs`; pest only if it gives up), a large one in parts, on
//! several threads, and each item's tree is lowered into the typed AST
//! (`lower.rs`, with `body.rs` and `strings.rs`). A file with a syntax error
//! is parsed one item at a time by pest (`grammar.rs`), so that a mistake in
//! one item does not hide those in the items after it; each mistake is
//! explained by the walk in `explain.rs` or, failing that, from pest's own
//! error (`syntax_error.rs`), and parsing goes on at the next item.

mod body;
mod explain;
mod grammar;
mod lower;
mod recognizer;
mod strings;
mod syntax_error;
mod tree;

use pest::Parser as _;

use crate::ast::*;
use crate::diagnostic::{Code, Diagnostic};
use crate::par;
use grammar::{is_identifier, Grammar, ITEM_KEYWORDS};
use lower::Lower;
use recognizer::Recognizer;
use tree::Tree;

/// The grammar's rules; public as they always were.
pub use grammar::Rule;

/// Brackets, braces and parentheses nested deeper than this are refused
/// before parsing, so no input can exhaust the stack of the recursive parser.
pub const MAX_NESTING: usize = 64;

/// Parses a whole file. Returns what could be parsed and every error found;
/// a syntax error in one item does not hide errors in the items after it.
pub fn parse(src: &str) -> (Module, Vec<Diagnostic>) {
    if let Some(d) = nesting_error(src) {
        return (Module::default(), vec![d]);
    }
    // The fast path: the file has no syntax error. pest indexes the lines of
    // its input on every call, so driving it item by item over the rest of
    // the file, as `parse_item_by_item` does, would be quadratic in the
    // file's size; a large file is parsed in parts, each in one call.
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
    parse_item_by_item(src, never_closed)
}

/// The file has a syntax error: one item at a time, so that an error in
/// one does not hide the errors of the items after it. `never_closed` is
/// where a block comment opens that no `*/` closes, if one does.
fn parse_item_by_item(src: &str, never_closed: Option<usize>) -> (Module, Vec<Diagnostic>) {
    let mut lower = Lower::new(0);
    let mut module = Module::default();
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
        let (diag, resume) = match next_item(src, pos, for_pest, &mut lower, &mut module) {
            NextItem::Lowered(0) | NextItem::Nothing => break,
            NextItem::Lowered(consumed) => {
                pos += consumed;
                continue;
            }
            NextItem::Mistake(diag, resume) => (diag, resume),
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
    lower.finish(module)
}

/// What [`next_item`] made of the item at a position.
enum NextItem {
    /// Lowered into the module: it and the trivia before it were this many bytes.
    Lowered(usize),
    /// It has a mistake: what, and where parsing goes on (`None`: nowhere).
    Mistake(Diagnostic, Option<usize>),
    /// pest matched, but gave nothing to lower (it never does).
    Nothing,
}

/// The item at `pos` in `src` (`for_pest` is the text from there that pest
/// may read) parsed by pest and lowered into `module`, or its mistake explained.
fn next_item(src: &str, pos: usize, for_pest: &str, lower: &mut Lower, module: &mut Module) -> NextItem {
    match Grammar::parse(Rule::single_item, for_pest) {
        Ok(mut pairs) => {
            let Some(single) = pairs.next() else { return NextItem::Nothing };
            let consumed = single.as_span().end();
            let Some(item) = single.into_inner().next() else { return NextItem::Nothing };
            // `var region string = ...` parses as `var region`, leaving
            // `string` to fail as the next item; it is this var's mistake.
            // So is a second `sensitive`, after a var or an output.
            let junk = match item.as_rule() {
                Rule::var_decl | Rule::output_decl => explain::explain_item(src, pos),
                _ => None,
            };
            match junk {
                Some(x) if x.comment_never_closed => NextItem::Mistake(x.diag, None),
                None => {
                    lower.base = pos;
                    lower.item(Tree::new(for_pest).fill(item), module);
                    NextItem::Lowered(consumed)
                }
                Some(x) => {
                    let at = x.diag.position();
                    let resume = x.resume.or_else(|| resync(src, at));
                    NextItem::Mistake(x.diag, resume)
                }
            }
        }
        Err(e) => {
            let pest_at = pos + syntax_error::pest_offset(&e);
            match explain::explain_item(src, pos) {
                // The rest of the file is inside the comment.
                Some(x) if x.comment_never_closed => NextItem::Mistake(x.diag, None),
                Some(x) => {
                    let at = x.diag.position().max(pest_at);
                    let resume = x.resume.or_else(|| resync(src, at));
                    NextItem::Mistake(x.diag, resume)
                }
                None => NextItem::Mistake(syntax_error::from_pest(src, pest_at, &e), resync(src, pest_at)),
            }
        }
    }
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
    let mut lower = Lower::new(base);
    let mut module = Module::default();
    while let Some(item) = recognizer.next_item()? {
        lower.item(item, &mut module);
    }
    Some(lower.finish(module))
}

/// [`parse_whole`] by pest: what the recognizer does not accept, pest
/// should reject too, but the language is pest's grammar.
fn pest_whole(src: &str, base: usize) -> Option<(Module, Vec<Diagnostic>)> {
    let file = Grammar::parse(Rule::file, src).ok()?.next()?;
    let mut lower = Lower::new(base);
    let mut module = Module::default();
    let mut tree = Tree::new(src);
    for item in file.into_inner() {
        if item.as_rule() != Rule::EOI {
            lower.item(tree.fill(item), &mut module);
        }
    }
    Some(lower.finish(module))
}

/// Below this size a file is parsed on one thread: starting threads would
/// cost more than they save.
const PARALLEL_MIN_BYTES: usize = 128 * 1024;

/// A large file is parsed in parts of about this size, even on one thread.
/// The recognizer does not mind the size; but if it gives up on a part, pest
/// parses that part alone, and pest's token list for a part stays small,
/// where for a whole large file it is copied as it grows and falls out of
/// the cache (about a fifth of the time of a pest parse).
const PART_BYTES: usize = 32 * 1024;

/// The file cut into about `parts` parts at item boundaries, parsed on
/// `threads` threads; `None` if it could not be cut or a part does not parse.
///
/// A cut is made only at the start of a line that starts with an item
/// keyword. If the cut is really between two items, each part parses exactly
/// as it does within the whole file: an item can only go on past the end of
/// its line with punctuation (`=`, `.`, `[`, `(`, `:`) or with the word
/// `sensitive`, which is not an item keyword, and no rule looks back. If the
/// cut falls inside something, a bracket, string, heredoc or comment, the
/// part before it is left open and does not parse; then the caller parses
/// the file whole, so the result is the same either way.
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
    let Module {
        pipeline,
        vars,
        plugins,
        credentials,
        flows,
        environments,
        resources,
        outputs,
        services,
        unparsed,
        invalid,
    } = more;
    module.pipeline.extend(pipeline);
    module.vars.extend(vars);
    module.plugins.extend(plugins);
    module.credentials.extend(credentials);
    module.flows.extend(flows);
    module.environments.extend(environments);
    module.resources.extend(resources);
    module.outputs.extend(outputs);
    module.services.extend(services);
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
            let mut lower = Lower::new(0);
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

/// Whether `src` nests too deep to parse, for the tests of the walk.
#[cfg(test)]
pub(crate) fn too_deep(src: &str) -> bool {
    nesting_error(src).is_some()
}

/// The first bracket, brace or parenthesis that opens past [`MAX_NESTING`].
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
