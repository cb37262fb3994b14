//! The protocol: messages in, answers and diagnostics out, one at a time on
//! one thread (a file is re-checked in milliseconds, so nothing is gained
//! by answering in parallel); plugin schemas arrive from their own thread.

use std::collections::HashMap;
use std::path::PathBuf;

use lsp_server::{Connection, ErrorCode, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Notification as _,
    PublishDiagnostics,
};
use lsp_types::request::{
    CodeActionRequest, DocumentHighlightRequest, Completion, DocumentSymbolRequest, Formatting, GotoDefinition, HoverRequest,
    PrepareRenameRequest, References, Rename, Request as _,
};
use lsp_types::{
    CompletionOptions, DiagnosticRelatedInformation, DiagnosticSeverity, HoverProviderCapability,
    Location, NumberOrString, OneOf, Position, PublishDiagnosticsParams, Range, RenameOptions,
    ServerCapabilities, TextDocumentContentChangeEvent, TextDocumentSyncCapability,
    TextDocumentSyncKind, TextEdit, Url, WorkspaceEdit,
};
use serde_json::Value;
use stackpipe_dsl::ast::Span;
use stackpipe_dsl::line_map::{LineColumn, LineMap};

use crate::analysis::Analysis;
use crate::schemas::Schemas;
use crate::{features, LspError};

/// What the server can do, as it tells the client.
pub fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(
            TextDocumentSyncKind::INCREMENTAL,
        )),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Right(RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: Default::default(),
        })),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![".".into(), "\"".into()]),
            ..Default::default()
        }),
        document_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        document_highlight_provider: Some(OneOf::Left(true)),
        code_action_provider: Some(lsp_types::CodeActionProviderCapability::Simple(true)),
        ..Default::default()
    }
}

/// An open file.
pub struct Document {
    pub version: i32,
    pub analysis: Analysis,
}

pub struct Server {
    connection: Connection,
    documents: HashMap<Url, Document>,
    schemas: Schemas,
}

impl Server {
    pub fn new(connection: Connection, schemas: Schemas) -> Server {
        Server {
            connection,
            documents: HashMap::new(),
            schemas,
        }
    }

    /// Answers until the client shuts the server down (or goes away).
    pub fn run(mut self) -> Result<(), LspError> {
        loop {
            crossbeam_channel::select! {
                recv(self.connection.receiver) -> message => {
                    let Ok(message) = message else { return Ok(()) };
                    match message {
                        Message::Request(request) => {
                            if self.connection.handle_shutdown(&request)? {
                                return Ok(());
                            }
                            let response = self.request(request);
                            self.send(Message::Response(response))?;
                        }
                        Message::Notification(n) => self.notification(n)?,
                        Message::Response(_) => {}
                    }
                }
                recv(self.schemas.answers) -> answer => {
                    if let Ok((key, known)) = answer {
                        self.schemas.answered(key, known);
                        self.recheck_all()?;
                    }
                }
            }
        }
    }

    fn send(&self, message: Message) -> Result<(), LspError> {
        self.connection
            .sender
            .send(message)
            .map_err(|_| LspError::Disconnected)
    }

    fn notification(&mut self, n: Notification) -> Result<(), LspError> {
        match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let Ok(p) =
                    serde_json::from_value::<lsp_types::DidOpenTextDocumentParams>(n.params)
                else {
                    return Ok(());
                };
                let doc = p.text_document;
                self.open(doc.uri, doc.version, doc.text)
            }
            DidChangeTextDocument::METHOD => {
                let Ok(p) =
                    serde_json::from_value::<lsp_types::DidChangeTextDocumentParams>(n.params)
                else {
                    return Ok(());
                };
                let uri = p.text_document.uri;
                let Some(doc) = self.documents.get(&uri) else {
                    return Ok(());
                };
                let mut text = doc.analysis.text.clone();
                for change in p.content_changes {
                    apply_change(&mut text, change);
                }
                self.open(uri, p.text_document.version, text)
            }
            DidCloseTextDocument::METHOD => {
                let Ok(p) =
                    serde_json::from_value::<lsp_types::DidCloseTextDocumentParams>(n.params)
                else {
                    return Ok(());
                };
                self.documents.remove(&p.text_document.uri);
                // A closed file's diagnostics go with it.
                self.publish_raw(p.text_document.uri, Vec::new(), None)
            }
            _ => Ok(()),
        }
    }

    /// Checks `text` as the file at `uri` and publishes what was found.
    fn open(&mut self, uri: Url, version: i32, text: String) -> Result<(), LspError> {
        let base_dir = uri
            .to_file_path()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."));
        let analysis = Analysis::new(text, &base_dir, &mut self.schemas);
        self.documents.insert(uri.clone(), Document { version, analysis });
        self.publish(&uri)
    }

    fn recheck_all(&mut self) -> Result<(), LspError> {
        for doc in self.documents.values_mut() {
            let text = std::mem::take(&mut doc.analysis.text);
            doc.analysis = Analysis::new(text, &doc.analysis.base_dir, &mut self.schemas);
        }
        let uris: Vec<Url> = self.documents.keys().cloned().collect();
        uris.iter().try_for_each(|uri| self.publish(uri))
    }

    fn publish(&self, uri: &Url) -> Result<(), LspError> {
        let Some(doc) = self.documents.get(uri) else {
            return Ok(());
        };
        let diagnostics = diagnostics(uri, &doc.analysis);
        self.publish_raw(uri.clone(), diagnostics, Some(doc.version))
    }

    fn publish_raw(
        &self,
        uri: Url,
        diagnostics: Vec<lsp_types::Diagnostic>,
        version: Option<i32>,
    ) -> Result<(), LspError> {
        let params = PublishDiagnosticsParams {
            uri,
            diagnostics,
            version,
        };
        let n = Notification::new(PublishDiagnostics::METHOD.to_string(), params);
        self.send(Message::Notification(n))
    }

    fn request(&mut self, r: Request) -> Response {
        let id = r.id.clone();
        let result = match r.method.as_str() {
            HoverRequest::METHOD => with_position(&self.documents, r, |a, at, _| {
                serde_json::to_value(features::hover(a, at, &self.schemas))
            }),
            GotoDefinition::METHOD => with_position(&self.documents, r, |a, at, uri| {
                serde_json::to_value(features::definition(a, at, uri))
            }),
            References::METHOD => with_position(&self.documents, r, |a, at, uri| {
                serde_json::to_value(features::references(a, at, uri))
            }),
            PrepareRenameRequest::METHOD => with_position(&self.documents, r, |a, at, _| {
                serde_json::to_value(features::prepare_rename(a, at))
            }),
            Rename::METHOD => {
                let new_name = r
                    .params
                    .get("newName")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                match features::check_new_name(&new_name) {
                    Err(why) => return error(id, ErrorCode::InvalidParams, why),
                    Ok(()) => with_position(&self.documents, r, |a, at, uri| {
                        serde_json::to_value(features::rename(a, at, uri, &new_name))
                    }),
                }
            }
            Completion::METHOD => {
                let schemas = &mut self.schemas;
                with_position(&self.documents, r, |a, at, _| {
                    serde_json::to_value(features::completion(a, at, schemas))
                })
            }
            DocumentHighlightRequest::METHOD => {
                with_position(&self.documents, r, |a, at, _| serde_json::to_value(features::highlights(a, at)))
            }
            CodeActionRequest::METHOD => {
                let Ok(p) = serde_json::from_value::<lsp_types::CodeActionParams>(r.params) else {
                    return error(id, ErrorCode::InvalidParams, "expected CodeActionParams");
                };
                match self.documents.get(&p.text_document.uri) {
                    None => Ok(Value::Null),
                    Some(doc) => {
                        let a = &doc.analysis;
                        let span = Span::new(offset(&a.lines, &a.text, p.range.start), offset(&a.lines, &a.text, p.range.end));
                        serde_json::to_value(features::code_actions(a, span, &p.text_document.uri))
                    }
                }
            }
            DocumentSymbolRequest::METHOD => {
                self.with_document(r, |a, _| serde_json::to_value(features::symbols(a)))
            }
            Formatting::METHOD => {
                self.with_document(r, |a, _| serde_json::to_value(features::formatting(a)))
            }
            _ => {
                return error(
                    id,
                    ErrorCode::MethodNotFound,
                    format!("unknown method {}", r.method),
                )
            }
        };
        match result {
            Ok(value) => Response::new_ok(id, value),
            Err(e) => error(id, ErrorCode::InternalError, e.to_string()),
        }
    }

    fn with_document(
        &self,
        r: Request,
        f: impl FnOnce(&Analysis, &Url) -> serde_json::Result<Value>,
    ) -> serde_json::Result<Value> {
        let uri = r
            .params
            .pointer("/textDocument/uri")
            .and_then(Value::as_str)
            .and_then(|u| Url::parse(u).ok());
        match uri
            .as_ref()
            .and_then(|u| self.documents.get(u).map(|d| (u, d)))
        {
            Some((uri, doc)) => f(&doc.analysis, uri),
            None => Ok(Value::Null),
        }
    }
}

/// Runs `f` on the document and byte offset a request's
/// `textDocument`/`position` name; `null` for a file that is not open.
fn with_position(
    documents: &HashMap<Url, Document>,
    r: Request,
    f: impl FnOnce(&Analysis, usize, &Url) -> serde_json::Result<Value>,
) -> serde_json::Result<Value> {
    let Ok(p) = serde_json::from_value::<lsp_types::TextDocumentPositionParams>(r.params) else {
        return Ok(Value::Null);
    };
    let Some(doc) = documents.get(&p.text_document.uri) else {
        return Ok(Value::Null);
    };
    let a = &doc.analysis;
    f(a, offset(&a.lines, &a.text, p.position), &p.text_document.uri)
}

/// The byte offset of a protocol position (a line and a UTF-16 column) in `text`.
fn offset(lines: &LineMap, text: &str, p: Position) -> usize {
    lines.offset_of_utf16(text, LineColumn { line: p.line as usize, column: p.character as usize })
}

fn error(id: RequestId, code: ErrorCode, message: impl Into<String>) -> Response {
    Response::new_err(id, code as i32, message.into())
}

/// An edit from the client applied to the text.
fn apply_change(text: &mut String, change: TextDocumentContentChangeEvent) {
    let Some(range) = change.range else {
        *text = change.text;
        return;
    };
    let lines = LineMap::new(text);
    let (start, end) = (offset(&lines, text, range.start), offset(&lines, text, range.end));
    let (start, end) = (start.min(end), end.max(start));
    text.replace_range(start..end, &change.text);
}

/// The span as an LSP range.
pub fn range(a: &Analysis, span: Span) -> Range {
    let p = |offset| {
        let at = a.lines.utf16(&a.text, offset);
        Position {
            line: at.line as u32,
            character: at.column as u32,
        }
    };
    Range {
        start: p(span.start),
        end: p(span.end),
    }
}

/// Every diagnostic of the file for the protocol: its first label is where
/// it is; the others (a cycle's steps, say) and its help are related
/// information, at their own places.
fn diagnostics(uri: &Url, a: &Analysis) -> Vec<lsp_types::Diagnostic> {
    a.diagnostics
        .iter()
        .map(|d| {
            let primary = d.labels.first().map(|l| l.span).unwrap_or_default();
            let mut related: Vec<DiagnosticRelatedInformation> = d
                .labels
                .iter()
                .skip(1)
                .map(|l| DiagnosticRelatedInformation {
                    location: Location {
                        uri: uri.clone(),
                        range: range(a, l.span),
                    },
                    message: l.text.clone().unwrap_or_else(|| "here".into()),
                })
                .collect();
            if let Some(help) = &d.help {
                related.push(DiagnosticRelatedInformation {
                    location: Location {
                        uri: uri.clone(),
                        range: range(a, primary),
                    },
                    message: format!("help: {help}"),
                });
            }
            let label = d.labels.first().and_then(|l| l.text.as_deref());
            lsp_types::Diagnostic {
                range: range(a, primary),
                severity: Some(DiagnosticSeverity::ERROR),
                code: Some(NumberOrString::String(format!(
                    "stackpipe::{}",
                    d.code.as_str()
                ))),
                source: Some("stackpipe".into()),
                message: match label {
                    Some(label) if label != d.message => format!("{}\n{label}", d.message),
                    _ => d.message.clone(),
                },
                related_information: (!related.is_empty()).then_some(related),
                ..Default::default()
            }
        })
        .collect()
}

/// Edits replacing the whole text with `new`.
pub fn whole_text_edit(a: &Analysis, new: String) -> Vec<TextEdit> {
    vec![TextEdit {
        range: range(a, Span::new(0, a.text.len())),
        new_text: new,
    }]
}

pub fn workspace_edit(uri: &Url, edits: Vec<TextEdit>) -> WorkspaceEdit {
    WorkspaceEdit {
        changes: Some(HashMap::from([(uri.clone(), edits)])),
        ..Default::default()
    }
}
