//! What the server answers: hover, definition, references, rename,
//! completion, the outline and formatting, each from a file's [`Analysis`].

use lsp_types::{
    CodeAction, CodeActionKind, CodeActionOrCommand, DocumentHighlight, DocumentHighlightKind,
    CompletionItem, CompletionItemKind, CompletionResponse, DocumentSymbol, DocumentSymbolResponse,
    GotoDefinitionResponse, Hover, HoverContents, Location, MarkupContent, MarkupKind,
    PrepareRenameResponse, SymbolKind as LspSymbolKind, TextEdit, Url, WorkspaceEdit,
};
use stackpipe_dsl::ast::Span;

use crate::analysis::Analysis;
use crate::index::SymbolKind;
use crate::schemas::{Known, Schemas, TypeInfo};
use crate::server::{range, whole_text_edit, workspace_edit};

// ---- hover -------------------------------------------------------------------

pub fn hover(a: &Analysis, at: usize, schemas: &Schemas) -> Option<Hover> {
    let (text, span) = hover_text(a, at, schemas)?;
    Some(Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value: text,
        }),
        range: Some(range(a, span)),
    })
}

fn hover_text(a: &Analysis, at: usize, schemas: &Schemas) -> Option<(String, Span)> {
    if let Some(u) = a.index.output_use_at(at) {
        let r = a
            .module
            .resources
            .iter()
            .find(|r| r.name.name == u.resource.as_str())?;
        let info = type_info(a, schemas, &r.plugin.name, &r.kind.name)?;
        let p = TypeInfo::properties(&info.outputs)
            .into_iter()
            .find(|p| p.name == u.output)?;
        let text = format!(
            "**output** `{}.{}`{}\n\n{}",
            u.resource,
            p.name,
            typed(&p.json_type),
            p.description
        );
        return Some((text, u.span));
    }
    // The type of a resource, or one of its attributes.
    for r in &a.module.resources {
        if !(r.span.start <= at && at <= r.span.end) {
            continue;
        }
        if r.type_span.start <= at && at <= r.type_span.end {
            let info = type_info(a, schemas, &r.plugin.name, &r.kind.name)?;
            return Some((
                type_markdown(&format!("{}.{}", r.plugin.name, r.kind.name), info),
                r.type_span,
            ));
        }
        if let Some(attr) = r
            .attributes
            .iter()
            .find(|x| x.key.span.start <= at && at <= x.key.span.end)
        {
            let info = type_info(a, schemas, &r.plugin.name, &r.kind.name)?;
            let p = TypeInfo::properties(&info.attributes)
                .into_iter()
                .find(|p| p.name == attr.key.name.as_str())?;
            let required = if p.required { " (required)" } else { "" };
            let text = format!(
                "**attribute** `{}`{}{required}\n\n{}",
                p.name,
                typed(&p.json_type),
                p.description
            );
            return Some((text, attr.key.span));
        }
    }
    let (kind, name) = a.index.at(at)?;
    let def = a.index.definition(kind, name)?;
    let span = a
        .index
        .references
        .iter()
        .find(|r| r.span.start <= at && at <= r.span.end)
        .map_or(def.name_span, |r| r.span);
    let doc = doc_comment(&a.text, def.span.start);
    let mut text = match kind {
        SymbolKind::Resource => {
            let r = a.module.resources.iter().find(|r| r.name.name == name)?;
            let ty = format!("{}.{}", r.plugin.name, r.kind.name);
            let mut t = format!("**resource** `{name}`: `{ty}`");
            if let Some(info) = type_info(a, schemas, &r.plugin.name, &r.kind.name) {
                t.push_str("\n\n");
                t.push_str(&type_markdown(&ty, info));
            }
            t
        }
        SymbolKind::Var => var_markdown(a, name)?,
        SymbolKind::Output => {
            let o = a.module.outputs.iter().find(|o| o.name.name == name)?;
            let value = &a.text[o.value.span.start..o.value.span.end];
            let sensitive = if o.sensitive.is_some() {
                " (sensitive)"
            } else {
                ""
            };
            format!("**output** `{name}`{sensitive}\n\n```pipeline\noutput {name} = {value}\n```")
        }
        SymbolKind::Plugin => {
            let p = a.module.plugins.iter().find(|p| p.name.name == name)?;
            let kind = p.kind.map_or("?", |(k, _)| k.name());
            let source = p
                .source
                .as_ref()
                .and_then(|s| s.as_plain_string())
                .unwrap_or_default();
            let mut t = format!("**plugin** `{name}`: {kind}, from `{source}`");
            if let Some(Known::Types(types)) = plugin_known(a, schemas, name) {
                t.push_str("\n\nResource types: ");
                t.push_str(
                    &types
                        .iter()
                        .map(|t| format!("`{name}.{}`", t.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                );
            }
            t
        }
        SymbolKind::Environment => {
            let e = a.module.environments.iter().find(|e| e.name.name == name)?;
            let mut t = format!("**environment** `{name}`");
            if !e.after.is_empty() {
                t.push_str(&format!(
                    ", after {}",
                    e.after
                        .iter()
                        .map(|x| format!("`{}`", x.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if e.approval.is_some() {
                t.push_str(", waits for approval");
            }
            t
        }
    };
    if let Some(doc) = doc {
        text.push_str("\n\n---\n\n");
        text.push_str(&doc);
    }
    Some((text, span))
}

/// `: type` when the schema says one.
fn typed(json_type: &str) -> String {
    if json_type.is_empty() {
        String::new()
    } else {
        format!(": {json_type}")
    }
}

/// A var: its type and default, and its value in each environment
/// (sensitive ones are not shown).
fn var_markdown(a: &Analysis, name: &str) -> Option<String> {
    let v = a.module.vars.iter().find(|v| v.name.name == name)?;
    let default = v
        .default
        .as_ref()
        .map(|d| &a.text[d.span.start..d.span.end]);
    let mut t = format!("**var** `{name}`: {}", v.ty.name());
    if v.sensitive.is_some() {
        t.push_str(" (sensitive)");
    }
    if let Some(d) = default.filter(|_| v.sensitive.is_none()) {
        t.push_str(&format!("\n\ndefault: `{d}`"));
    }
    if let Some(graph) = &a.graph {
        if v.sensitive.is_none() && !graph.environments.is_empty() {
            t.push_str("\n\n| environment | value |\n|---|---|");
            for env in &graph.environments {
                let value = env
                    .vars
                    .get(name)
                    .map_or("(none)".to_string(), |x| x.to_string());
                t.push_str(&format!(
                    "\n| {} | `{}` |",
                    env.name,
                    value.replace('|', "\\|")
                ));
            }
        }
    }
    Some(t)
}

/// A resource type: its description, attributes and outputs.
fn type_markdown(ty: &str, info: &TypeInfo) -> String {
    let mut t = format!("**type** `{ty}`");
    if !info.description.is_empty() {
        t.push_str(&format!("\n\n{}", info.description));
    }
    for (title, schema) in [("Attributes", &info.attributes), ("Outputs", &info.outputs)] {
        let props = TypeInfo::properties(schema);
        if props.is_empty() {
            continue;
        }
        t.push_str(&format!("\n\n{title}:"));
        for p in props {
            let required = if p.required { " (required)" } else { "" };
            let description = if p.description.is_empty() {
                String::new()
            } else {
                format!(": {}", p.description)
            };
            t.push_str(&format!(
                "\n- `{}`{}{required}{description}",
                p.name,
                typed(&p.json_type)
            ));
        }
    }
    t
}

fn plugin_known<'s>(a: &Analysis, schemas: &'s Schemas, plugin: &str) -> Option<&'s Known> {
    schemas.peek(&a.base_dir, a.provisioner(plugin)?)
}

fn type_info<'s>(
    a: &Analysis,
    schemas: &'s Schemas,
    plugin: &str,
    kind: &str,
) -> Option<&'s TypeInfo> {
    plugin_known(a, schemas, plugin)?.type_named(kind)
}

/// The comment lines just above a declaration, as its documentation.
fn doc_comment(text: &str, start: usize) -> Option<String> {
    let before = &text[..start];
    let mut lines: Vec<&str> = Vec::new();
    for line in before
        .lines()
        .rev()
        .skip(usize::from(!before.ends_with('\n')))
    {
        let t = line.trim();
        let Some(body) = t.strip_prefix('#').or_else(|| t.strip_prefix("//")) else {
            break;
        };
        lines.push(body.strip_prefix(' ').unwrap_or(body));
    }
    lines.reverse();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

// ---- navigation ----------------------------------------------------------------

pub fn definition(a: &Analysis, at: usize, uri: &Url) -> Option<GotoDefinitionResponse> {
    let (kind, name) = a.index.at(at)?;
    let def = a.index.definition(kind, name)?;
    Some(GotoDefinitionResponse::Scalar(Location {
        uri: uri.clone(),
        range: range(a, def.name_span),
    }))
}

/// Every use of the name at `at`, and its declaration.
pub fn references(a: &Analysis, at: usize, uri: &Url) -> Option<Vec<Location>> {
    let (kind, name) = a.index.at(at)?;
    let mut spans: Vec<Span> = a
        .index
        .definition(kind, name)
        .map(|d| d.name_span)
        .into_iter()
        .collect();
    spans.extend(a.index.references_to(kind, name).map(|r| r.span));
    Some(
        spans
            .into_iter()
            .map(|s| Location {
                uri: uri.clone(),
                range: range(a, s),
            })
            .collect(),
    )
}

pub fn prepare_rename(a: &Analysis, at: usize) -> Option<PrepareRenameResponse> {
    let (kind, name) = a.index.at(at)?;
    a.index.definition(kind, name)?;
    let span = a
        .index
        .definitions
        .iter()
        .map(|d| d.name_span)
        .chain(a.index.references.iter().map(|r| r.span))
        .find(|s| s.start <= at && at <= s.end)?;
    Some(PrepareRenameResponse::Range(range(a, span)))
}

/// Whether `name` may be a name in the language.
pub fn check_new_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a name: a letter or `_`, then letters, digits, `_` or `-`"
        ))
    }
}

/// The declaration of the name at `at` and every use of it, renamed.
pub fn rename(a: &Analysis, at: usize, uri: &Url, new_name: &str) -> Option<WorkspaceEdit> {
    let (kind, name) = a.index.at(at)?;
    let def = a.index.definition(kind, name)?;
    let mut edits = vec![TextEdit {
        range: range(a, def.name_span),
        new_text: new_name.to_string(),
    }];
    edits.extend(a.index.references_to(kind, name).map(|r| TextEdit {
        range: range(a, r.span),
        new_text: new_name.to_string(),
    }));
    Some(workspace_edit(uri, edits))
}

/// The declaration (written) and the uses (read) of the name at `at`.
pub fn highlights(a: &Analysis, at: usize) -> Option<Vec<DocumentHighlight>> {
    let (kind, name) = a.index.at(at)?;
    let mut out: Vec<DocumentHighlight> = a
        .index
        .definition(kind, name)
        .map(|d| DocumentHighlight { range: range(a, d.name_span), kind: Some(DocumentHighlightKind::WRITE) })
        .into_iter()
        .collect();
    out.extend(
        a.index
            .references_to(kind, name)
            .map(|r| DocumentHighlight { range: range(a, r.span), kind: Some(DocumentHighlightKind::READ) }),
    );
    Some(out)
}

/// Quick fixes: each diagnostic in `span` whose help is "did you mean
/// `x`?" offers to write `x` where the mistake is.
pub fn code_actions(a: &Analysis, span: Span, uri: &Url) -> Vec<CodeActionOrCommand> {
    let mut actions = Vec::new();
    for d in &a.diagnostics {
        let Some(label) = d.labels.first() else { continue };
        if label.span.end < span.start || label.span.start > span.end {
            continue;
        }
        let Some(suggestion) = d.help.as_deref().and_then(suggested) else { continue };
        let written = &a.text[label.span.start..label.span.end];
        let replacement = if check_new_name(written).is_ok() {
            suggestion.to_string()
        } else if written.len() >= 2 && written.starts_with('"') && written.ends_with('"') {
            format!("\"{suggestion}\"")
        } else {
            continue;
        };
        let edit = TextEdit { range: range(a, label.span), new_text: replacement.clone() };
        actions.push(CodeActionOrCommand::CodeAction(CodeAction {
            title: format!("Change to `{suggestion}`"),
            kind: Some(CodeActionKind::QUICKFIX),
            edit: Some(workspace_edit(uri, vec![edit])),
            is_preferred: Some(true),
            ..Default::default()
        }));
    }
    actions
}

/// `x` out of a help that says "did you mean `x`?".
fn suggested(help: &str) -> Option<&str> {
    let rest = &help[help.find("did you mean `")? + "did you mean `".len()..];
    Some(&rest[..rest.find('`')?])
}

// ---- outline and formatting ---------------------------------------------------

#[allow(deprecated)] // `DocumentSymbol::deprecated` must be given, as None.
pub fn symbols(a: &Analysis) -> DocumentSymbolResponse {
    let symbols = a
        .index
        .definitions
        .iter()
        .map(|d| {
            let detail = match d.kind {
                SymbolKind::Resource => a
                    .module
                    .resources
                    .iter()
                    .find(|r| r.name.name == d.name.as_str())
                    .map(|r| format!("{}.{}", r.plugin.name, r.kind.name)),
                _ => Some(d.kind.keyword().to_string()),
            };
            DocumentSymbol {
                name: d.name.clone(),
                detail,
                kind: match d.kind {
                    SymbolKind::Resource => LspSymbolKind::STRUCT,
                    SymbolKind::Var => LspSymbolKind::VARIABLE,
                    SymbolKind::Plugin => LspSymbolKind::MODULE,
                    SymbolKind::Environment => LspSymbolKind::NAMESPACE,
                    SymbolKind::Output => LspSymbolKind::PROPERTY,
                },
                tags: None,
                deprecated: None,
                range: range(a, d.span),
                selection_range: range(a, d.name_span),
                children: None,
            }
        })
        .collect();
    DocumentSymbolResponse::Nested(symbols)
}

/// The file in `stackpipe fmt`'s layout; no edit for a file with syntax errors.
pub fn formatting(a: &Analysis) -> Option<Vec<TextEdit>> {
    let formatted = stackpipe_dsl::format::format(&a.text).ok()?;
    if formatted == a.text {
        return Some(Vec::new());
    }
    Some(whole_text_edit(a, formatted))
}

// ---- completion ------------------------------------------------------------------

const ITEM_KEYWORDS: [&str; 9] = [
    "resource",
    "var",
    "output",
    "plugin",
    "environment",
    "credentials",
    "flow",
    "pipeline",
    "service",
];

pub fn completion(a: &Analysis, at: usize, schemas: &mut Schemas) -> Option<CompletionResponse> {
    let line_start = a.text[..at].rfind('\n').map_or(0, |i| i + 1);
    let before = &a.text[line_start..at];
    let items = if in_type_string(before).is_some() {
        resource_types(a, schemas)
    } else if let Some(root) = before_dot(before) {
        match root {
            "var" => names(a, SymbolKind::Var, CompletionItemKind::VARIABLE),
            "env" => vec![item(
                "name",
                CompletionItemKind::FIELD,
                Some("the environment's name".into()),
            )],
            "pipeline" => vec![item(
                "name",
                CompletionItemKind::FIELD,
                Some("the pipeline's name".into()),
            )],
            resource => outputs_of(a, resource, schemas),
        }
    } else {
        let word_start =
            before.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if word_start.trim().is_empty() {
            // A key or an item, at the start of a line.
            match enclosing_header(&a.text[..line_start + word_start.len()]) {
                None => ITEM_KEYWORDS.iter().map(|k| item(k, CompletionItemKind::KEYWORD, None)).collect(),
                Some(header) => attributes_for(a, &header, schemas),
            }
        } else if before.split_once('=').is_some_and(|(key, _)| key.trim() == "after") {
            names(a, SymbolKind::Environment, CompletionItemKind::ENUM_MEMBER)
        } else {
            let mut items = names(a, SymbolKind::Resource, CompletionItemKind::STRUCT);
            for root in ["var", "env", "pipeline"] {
                items.push(item(root, CompletionItemKind::KEYWORD, None));
            }
            items
        }
    };
    Some(CompletionResponse::Array(items))
}

fn item(label: &str, kind: CompletionItemKind, detail: Option<String>) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        detail,
        ..Default::default()
    }
}

fn names(a: &Analysis, kind: SymbolKind, item_kind: CompletionItemKind) -> Vec<CompletionItem> {
    a.index
        .definitions
        .iter()
        .filter(|d| d.kind == kind)
        .map(|d| item(&d.name, item_kind, Some(kind.keyword().into())))
        .collect()
}

/// The text typed so far inside `resource NAME "`, if the cursor is there.
fn in_type_string(before: &str) -> Option<&str> {
    let rest = before.trim_start().strip_prefix("resource")?;
    let mut parts = rest.trim_start().splitn(2, char::is_whitespace);
    let _name = parts.next()?;
    let typed = parts.next()?.trim_start().strip_prefix('"')?;
    (!typed.contains('"')).then_some(typed)
}

/// `name` when the cursor follows `name.` (and perhaps part of a word).
fn before_dot(before: &str) -> Option<&str> {
    let trimmed =
        before.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let head = trimmed.strip_suffix('.')?;
    let start = head
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map_or(0, |i| i + 1);
    let root = &head[start..];
    (!root.is_empty() && root.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
        .then_some(root)
}

/// The header of the block the text ends inside of (`resource web "aws.vpc"`),
/// found by counting braces back; `None` at the top level.
fn enclosing_header(text: &str) -> Option<String> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices().rev() {
        match c {
            '}' => depth += 1,
            '{' if depth > 0 => depth -= 1,
            '{' => {
                let line_start = text[..i].rfind('\n').map_or(0, |n| n + 1);
                return Some(text[line_start..i].trim().to_string());
            }
            _ => {}
        }
    }
    None
}

/// `"plugin.type"` for every type of every provisioner the file declares.
fn resource_types(a: &Analysis, schemas: &mut Schemas) -> Vec<CompletionItem> {
    let mut items = Vec::new();
    for spec in &a.provisioners {
        if let Known::Types(types) = schemas.get(&a.base_dir, spec) {
            for t in types {
                let mut it = item(
                    &format!("{}.{}", spec.name, t.name),
                    CompletionItemKind::CLASS,
                    Some(t.description.clone()),
                );
                it.insert_text = Some(format!("{}.{}", spec.name, t.name));
                items.push(it);
            }
        }
    }
    items
}

fn type_of_resource<'a>(a: &'a Analysis, resource: &str) -> Option<(&'a str, &'a str)> {
    let r = a
        .module
        .resources
        .iter()
        .find(|r| r.name.name == resource)?;
    Some((r.plugin.name.as_str(), r.kind.name.as_str()))
}

fn schema_of<'s>(
    a: &Analysis,
    plugin: &str,
    kind: &str,
    schemas: &'s mut Schemas,
) -> Option<&'s TypeInfo> {
    schemas.get(&a.base_dir, a.provisioner(plugin)?).type_named(kind)
}

fn outputs_of(a: &Analysis, resource: &str, schemas: &mut Schemas) -> Vec<CompletionItem> {
    let Some((plugin, kind)) = type_of_resource(a, resource) else {
        return Vec::new();
    };
    let Some(info) = schema_of(a, plugin, kind, schemas) else {
        return Vec::new();
    };
    TypeInfo::properties(&info.outputs)
        .into_iter()
        .map(|p| {
            item(
                &p.name,
                CompletionItemKind::FIELD,
                Some(format!(
                    "{}{}",
                    p.json_type,
                    if p.description.is_empty() {
                        String::new()
                    } else {
                        format!(" — {}", p.description)
                    }
                )),
            )
        })
        .collect()
}

/// The attribute names a block takes: a resource's from its type's
/// schema (those not set yet first), and the language's own keys.
fn attributes_for(a: &Analysis, header: &str, schemas: &mut Schemas) -> Vec<CompletionItem> {
    let mut words = header.split_whitespace();
    match words.next() {
        Some("resource") => {
            let ty = words.nth(1).map(|t| t.trim_matches('"')).unwrap_or("");
            let mut items = Vec::new();
            if let Some((plugin, kind)) = ty.split_once('.') {
                if let Some(info) = schema_of(a, plugin, kind, schemas) {
                    for p in TypeInfo::properties(&info.attributes) {
                        let detail = format!(
                            "{}{}",
                            if p.required { "required " } else { "" },
                            p.json_type
                        );
                        let mut it = item(&p.name, CompletionItemKind::PROPERTY, Some(detail));
                        it.documentation = (!p.description.is_empty())
                            .then(|| lsp_types::Documentation::String(p.description.clone()));
                        it.insert_text = Some(format!("{} = ", p.name));
                        items.push(it);
                    }
                }
            }
            for key in ["depends_on", "gate", "flow"] {
                items.push(item(key, CompletionItemKind::KEYWORD, None));
            }
            items
        }
        Some("environment") => [
            "after",
            "approval",
            "approvers",
            "self_approval",
            "previews",
            "vars",
            "flow",
            "credentials",
        ]
        .iter()
        .map(|k| item(k, CompletionItemKind::KEYWORD, None))
        .collect(),
        Some("plugin") => ["kind", "source", "config", "allow", "limits"]
            .iter()
            .map(|k| item(k, CompletionItemKind::KEYWORD, None))
            .collect(),
        Some("flow") => [
            "refresh",
            "preview",
            "pause_before_apply",
            "on_failure",
            "locked",
        ]
        .iter()
        .map(|k| item(k, CompletionItemKind::KEYWORD, None))
        .collect(),
        Some("vars") => names(a, SymbolKind::Var, CompletionItemKind::VARIABLE),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_contexts() {
        assert_eq!(in_type_string("resource web \"aw"), Some("aw"));
        assert_eq!(in_type_string("resource web \"aws.vpc\" {"), None);
        assert_eq!(before_dot("  x = vpc.i"), Some("vpc"));
        assert_eq!(before_dot("  x = \"${var."), Some("var"));
        assert_eq!(before_dot("  x = 1.5"), None);
        assert_eq!(
            enclosing_header("resource a \"t.x\" {\n  x = { a = 1 }\n  "),
            Some("resource a \"t.x\"".into())
        );
        assert_eq!(enclosing_header("resource a \"t.x\" {}\n"), None);
    }

    #[test]
    fn a_doc_comment_is_the_comment_lines_just_above() {
        let text = "# not this\n\n# The web tier.\n# Two lines.\nresource a \"t.x\" {}\n";
        assert_eq!(
            doc_comment(text, text.find("resource").unwrap()),
            Some("The web tier.\nTwo lines.".into())
        );
    }
}
