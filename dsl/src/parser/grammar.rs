//! The grammar, `pipeline.pest`, as pest derives it: the [`Grammar`] parser
//! and its [`Rule`]s, which the recognizer, the tree and lowering all name;
//! and the two facts about the grammar that are needed without a parse, the
//! item keywords and what an identifier is.

#[derive(pest_derive::Parser)]
#[grammar = "pipeline.pest"]
pub(crate) struct Grammar;

/// Item keywords, as in the grammar.
pub(crate) const ITEM_KEYWORDS: [&str; 9] =
    ["resource", "var", "plugin", "credentials", "flow", "environment", "output", "pipeline", "service"];

/// Whether `s` is one identifier, as the grammar's `identifier` rule reads it.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Whether the whole file parses, for the tests of the walk in `explain`.
#[cfg(test)]
pub(crate) fn file_parses(src: &str) -> bool {
    use pest::Parser as _;
    Grammar::parse(Rule::file, src).is_ok()
}
