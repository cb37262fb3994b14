//! The wording of syntax errors that more than one part of the parser
//! reports: pest's account of a failed parse ([`from_pest`]), put in the
//! user's terms, and the mistakes both it and the walk in `explain` name
//! (a string or a block comment never closed). [`join_or`] is how every
//! syntax error lists what it expected.

use crate::ast::Span;
use crate::diagnostic::{Code, Diagnostic};

use super::grammar::Rule;

/// Where pest gave up.
pub(super) fn pest_offset(e: &pest::error::Error<Rule>) -> usize {
    match e.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    }
}

/// What a grammar rule is called in an "expected ..." message.
fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::item
        | Rule::pipeline_decl
        | Rule::var_decl
        | Rule::plugin_decl
        | Rule::credentials_decl
        | Rule::flow_decl
        | Rule::environment_decl
        | Rule::resource_decl
        | Rule::output_decl
        | Rule::kw_pipeline
        | Rule::kw_var
        | Rule::kw_plugin
        | Rule::kw_credentials
        | Rule::kw_flow
        | Rule::kw_environment
        | Rule::kw_resource
        | Rule::kw_output => "an item (`resource`, `var`, `plugin`, `credentials`, `flow`, `environment`, `output`, `pipeline`)",
        Rule::kw_sensitive => "`sensitive`",
        Rule::identifier | Rule::type_name => "a name",
        Rule::string => "a string",
        Rule::string_end => "`\"`",
        Rule::expr
        | Rule::null_lit
        | Rule::bool_lit
        | Rule::number
        | Rule::heredoc
        | Rule::list
        | Rule::map
        | Rule::call => "an expression",
        Rule::body => "`{`",
        Rule::body_end => "`}`",
        Rule::attribute | Rule::block => "an attribute (`key = value`) or a block (`name { ... }`)",
        Rule::get_attr => "`.`",
        Rule::index => "`[`",
        Rule::list_end => "`]`",
        Rule::map_end => "`}`",
        Rule::map_entry => "a map entry (`key = value`)",
        Rule::interpolation_end => "`}` closing the interpolation",
        Rule::heredoc_line | Rule::heredoc_end => "the heredoc's closing marker",
        Rule::EOI => "end of file",
        _ => return None,
    })
}

/// pest's own account of why the text at `at` does not parse: what it
/// expected there, in the user's terms, and what it found.
pub(super) fn from_pest(src: &str, at: usize, e: &pest::error::Error<Rule>) -> Diagnostic {
    let rest = &src[at.min(src.len())..];
    let found_len = token_len(rest);
    let span = Span::new(at, at + found_len);
    if rest.starts_with("/*") && !rest.contains("*/") {
        return Diagnostic::at(Code::Syntax, Span::new(at, at + 2), "unterminated block comment")
            .help("close the comment with `*/`");
    }
    let mut expected: Vec<&str> = Vec::new();
    let mut unterminated_string = false;
    let mut unterminated_heredoc = false;
    if let pest::error::ErrorVariant::ParsingError { positives, .. } = &e.variant {
        for r in positives {
            unterminated_string |= *r == Rule::string_end;
            unterminated_heredoc |= matches!(r, Rule::heredoc_end | Rule::heredoc_line);
            if let Some(d) = describe(*r) {
                if !expected.contains(&d) {
                    expected.push(d);
                }
            }
        }
    }
    if unterminated_heredoc {
        return Diagnostic::at(Code::Syntax, span, "unterminated heredoc")
            .with_label(span, "the text ends here without the closing marker")
            .help("end the heredoc with its marker alone on a line, like `EOT`");
    }
    if unterminated_string && (rest.is_empty() || rest.starts_with('\n') || rest.starts_with('\r')) {
        return unterminated_string_at_line_end(at);
    }
    let found = found_description(rest, found_len);
    let message = match expected.len() {
        0 => format!("unexpected {found}"),
        _ => format!("expected {}, found {found}", join_or(&expected)),
    };
    let label = if expected.is_empty() { "not expected here".to_string() } else { format!("expected {}", join_or(&expected)) };
    Diagnostic::at(Code::Syntax, span, message).with_label(span, label)
}

/// `a`, `a or b`, `a, b or c`: the one way a message lists alternatives.
pub(super) fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Length of the token at the start of `rest`: a word, or one character.
fn token_len(rest: &str) -> usize {
    let word: usize = rest
        .char_indices()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '-')
        .map(|(_, c)| c.len_utf8())
        .sum();
    if word > 0 {
        word
    } else {
        rest.chars().next().map(|c| c.len_utf8()).unwrap_or(0)
    }
}

fn found_description(rest: &str, len: usize) -> String {
    match rest.chars().next() {
        None => "end of file".to_string(),
        Some('\n') | Some('\r') => "end of line".to_string(),
        Some(_) => format!("`{}`", &rest[..len]),
    }
}

/// A string whose line ends, at `at`, before its closing `"`.
pub(super) fn unterminated_string_at_line_end(at: usize) -> Diagnostic {
    Diagnostic::at(Code::Syntax, Span::new(at, at), "unterminated string")
        .with_label(Span::new(at, at), "the line ends before the closing `\"`")
        .help("close the string with `\"`, or use a heredoc (`<<EOT`) for text over several lines")
}

/// A block comment opened at `at` that no `*/` closes.
pub(super) fn comment_never_closed_at(at: usize) -> Diagnostic {
    let span = Span::new(at, at + 2);
    Diagnostic::at(Code::Syntax, span, "unterminated block comment")
        .with_label(span, "this comment is never closed")
        .help("close the comment with `*/`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternatives_are_listed_with_commas_and_a_last_or() {
        assert_eq!(join_or(&[]), "");
        assert_eq!(join_or(&["`=`"]), "`=`");
        assert_eq!(join_or(&["`,`", "`]`"]), "`,` or `]`");
        assert_eq!(join_or(&["a", "b", "c"]), "a, b or c");
    }
}
