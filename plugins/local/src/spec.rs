//! What `local` resources look like, independent of the filesystem: parsing
//! and validating attributes and config, the states it stores, plan diffing and
//! the JSON Schemas. Everything here is pure, so `cargo test` runs it natively.

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
pub use stackpipe_plugin_sdk::json::type_name;
use stackpipe_plugin_sdk::serde::{self, Deserialize, Deserializer, Serialize, Serializer};

pub use stackpipe_plugin_sdk::diagnostics::diagnostics_error;
use stackpipe_plugin_sdk::json::parse_object;
use stackpipe_plugin_sdk::types::{AttributeChange, Change, Diagnostic, ResourcePlan, ResourceType};

/// Why paths must be relative: said in every path diagnostic.
pub const RELATIVE_PATHS: &str = "paths are relative to a granted directory";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg(test)]
pub enum Kind {
    File,
    Directory,
}

#[cfg(test)]
impl Kind {
    pub fn parse(kind: &str) -> Result<Kind, String> {
        match kind {
            "file" | "local.file" => Ok(Kind::File),
            "directory" | "local.directory" => Ok(Kind::Directory),
            other => Err(format!("unknown resource type `{other}`: the local plugin handles `file` and `directory`")),
        }
    }
}

/// The plugin's `config { }`: an optional `root` that resource paths are under.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Config {
    pub root: Option<String>,
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        let value = parse_object(text, "the plugin config")?;
        match value.get("root") {
            None | Some(Value::Null) => Ok(Config { root: None }),
            Some(Value::String(root)) => {
                check_path(root).map_err(|e| format!("plugin config `root`: {e}"))?;
                Ok(Config { root: Some(root.clone()) })
            }
            Some(_) => Err("plugin config `root` must be a string (a directory relative to a granted one)".into()),
        }
    }

    /// Where a resource's `path` is on disk, as the guest sees it.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let full = match &self.root {
            Some(root) => Path::new(root).join(path),
            None => PathBuf::from(path),
        };
        stackpipe_plugin_sdk::grants::normalize(&full)
    }
}

/// Checks that a path is relative and stays inside where it starts.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.trim().is_empty() {
        return Err("must not be empty".into());
    }
    let p = Path::new(path);
    if path.starts_with('/') || path.starts_with('\\') || p.is_absolute() || p.has_root() {
        return Err(format!("{RELATIVE_PATHS}: `{path}` is absolute"));
    }
    if p.components().any(|c| c == Component::ParentDir) || path.split(['/', '\\']).any(|c| c == "..") {
        return Err(format!("{RELATIVE_PATHS}: `{path}` must not contain `..`"));
    }
    Ok(())
}

/// Checks an octal mode like `"0644"` or `"755"` and writes it with four
/// digits. Only the permission bits: a setuid, setgid or sticky bit is refused
/// (a file stackpipe wrote must not run as the user stackpipe runs as).
pub fn normalize_mode(mode: &str) -> Result<String, String> {
    let ok = (3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if !ok {
        return Err(format!("`{mode}` is not an octal mode: write three or four digits 0-7, like \"0644\""));
    }
    if mode.len() == 4 && !mode.starts_with('0') {
        return Err(format!(
            "`{mode}` sets a setuid, setgid or sticky bit, which local.file does not: write the permission bits only, like \"0{}\"",
            &mode[1..]
        ));
    }
    Ok(format!("{mode:0>4}"))
}

/// The bits of a mode [`normalize_mode`] accepted.
pub fn mode_bits(mode: &str) -> Result<u32, String> {
    u32::from_str_radix(mode, 8).map_err(|_| format!("`{mode}` is not an octal mode"))
}

/// Bits as a mode is written: `0640`.
pub fn mode_text(bits: u32) -> String {
    format!("{bits:04o}")
}

fn diag(attribute: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic { attribute: Some(attribute.to_string()), message: message.into() }
}

fn whole(message: impl Into<String>) -> Diagnostic {
    Diagnostic { attribute: None, message: message.into() }
}

#[cfg(test)]
fn desired_object(desired: &str) -> Result<Map<String, Value>, Vec<Diagnostic>> {
    parse_object(desired, "the resource's attributes").map_err(|e| vec![whole(e)])
}

fn unknown_attributes(attrs: &Map<String, Value>, known: &[&str], diags: &mut Vec<Diagnostic>) {
    for key in attrs.keys().filter(|k| !known.contains(&k.as_str())) {
        diags.push(diag(key, format!("unknown attribute `{key}` (known: {})", known.join(", "))));
    }
}

fn path_attribute(attrs: &Map<String, Value>, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match attrs.get("path") {
        None | Some(Value::Null) => {
            diags.push(diag("path", "`path` is required"));
            None
        }
        Some(Value::String(path)) => match check_path(path) {
            Ok(()) => Some(path.clone()),
            Err(e) => {
                diags.push(diag("path", e));
                None
            }
        },
        Some(other) => {
            diags.push(diag("path", format!("`path` must be a string, not {}", type_name(other))));
            None
        }
    }
}

/// Where a `local.file`'s content comes from: `content` (empty when unset) or `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// `content`: the text itself.
    Inline(String),
    /// `source`: a file whose bytes are the content, as the guest sees it (see [`source_path`]).
    Source(String),
}

/// A `local.file`'s desired attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub path: String,
    pub content: FileContent,
    /// Four octal digits, when given.
    pub mode: Option<String>,
}

impl FileSpec {
    /// The `source` path, when the content comes from a file.
    pub fn source(&self) -> Option<&str> {
        match &self.content {
            FileContent::Source(source) => Some(source),
            FileContent::Inline(_) => None,
        }
    }
}

/// Where a `source` is on disk, as the guest sees it: relative to the granted
/// directories as written (`templates/x.html` under the grant `templates`),
/// never under the config's `root`, which places only `path`.
pub fn source_path(source: &str) -> PathBuf {
    stackpipe_plugin_sdk::grants::normalize(Path::new(source))
}

/// The `source` attribute: a string path, checked like `path` (syntax only,
/// the filesystem is read by plan and apply).
fn source_attribute(attrs: &Map<String, Value>, diags: &mut Vec<Diagnostic>) -> Option<Option<String>> {
    match attrs.get("source") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(source)) => match check_path(source) {
            Ok(()) => Some(Some(source.clone())),
            Err(e) => {
                diags.push(diag("source", e));
                None
            }
        },
        Some(other) => {
            diags.push(diag("source", format!("`source` must be a string (a file to read), not {}", type_name(other))));
            None
        }
    }
}

#[cfg(test)]
pub fn parse_file(desired: &str) -> Result<FileSpec, Vec<Diagnostic>> {
    parse_file_attributes(&desired_object(desired)?)
}

pub fn parse_file_attributes(attrs: &Map<String, Value>) -> Result<FileSpec, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let path = path_attribute(attrs, &mut diags);
    let inline = match attrs.get("content") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(other) => {
            diags.push(diag("content", format!("`content` must be a string, not {}", type_name(other))));
            None
        }
    };
    let source = source_attribute(attrs, &mut diags);
    let content = match (inline, source) {
        (Some(Some(text)), Some(None)) => Some(FileContent::Inline(text)),
        (Some(None), Some(Some(source))) => Some(FileContent::Source(source)),
        (Some(Some(_)), Some(Some(_))) => {
            diags.push(whole(
                "`content` and `source` are both set: set exactly one (`content` for the text itself, `source` for a file to read it from)",
            ));
            None
        }
        // Neither: an empty file, as before `source` existed.
        (Some(None), Some(None)) => Some(FileContent::Inline(String::new())),
        // One of them is ill-typed or ill-formed: already reported.
        _ => None,
    };
    let mode = match attrs.get("mode") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(m)) => match normalize_mode(m) {
            Ok(m) => Some(Some(m)),
            Err(e) => {
                diags.push(diag("mode", e));
                None
            }
        },
        Some(Value::Number(_)) => {
            diags.push(diag("mode", "`mode` must be a string like \"0644\" (as a number it would be read in decimal)"));
            None
        }
        Some(other) => {
            diags.push(diag("mode", format!("`mode` must be a string like \"0644\", not {}", type_name(other))));
            None
        }
    };
    unknown_attributes(attrs, &["path", "content", "source", "mode"], &mut diags);
    match (path, content, mode) {
        (Some(path), Some(content), Some(mode)) if diags.is_empty() => Ok(FileSpec { path, content, mode }),
        _ => Err(diags),
    }
}

/// A `local.directory`'s desired attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec {
    pub path: String,
}

#[cfg(test)]
pub fn parse_dir(desired: &str) -> Result<DirSpec, Vec<Diagnostic>> {
    parse_dir_attributes(&desired_object(desired)?)
}

pub fn parse_dir_attributes(attrs: &Map<String, Value>) -> Result<DirSpec, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let path = path_attribute(attrs, &mut diags);
    unknown_attributes(attrs, &["path"], &mut diags);
    match path {
        Some(path) if diags.is_empty() => Ok(DirSpec { path }),
        _ => Err(diags),
    }
}

#[cfg(test)]
pub fn validate(kind: Kind, desired: &str) -> Vec<Diagnostic> {
    match kind {
        Kind::File => parse_file(desired).err().unwrap_or_default(),
        Kind::Directory => parse_dir(desired).err().unwrap_or_default(),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// What the plugin stores for a `local.file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub path: String,
    /// The sha256 of the content: of what was written, or after `read`, of
    /// what is on disk now.
    pub content_sha256: String,
    pub size: u64,
    pub mode: Option<String>,
    /// Whether apply set `mode` on disk (states written before stackpipe
    /// could set a mode say false).
    pub mode_applied: bool,
    /// The `source` the content was read from, when it came from a file (so a
    /// plan can show a change of `source`). Stored only when set: the state of
    /// a file with `content` is what it was before `source` existed.
    pub source: Option<String>,
    /// The directories apply created to hold the file, outermost first, as
    /// the plugin opened them (under `root`): destroy removes those that are
    /// empty. Stored only when there are some.
    pub created_dirs: Vec<String>,
}

impl FileState {
    #[cfg(test)]
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    pub fn to_value(&self) -> Value {
        let mut state = json!({
            "path": self.path,
            "content_sha256": self.content_sha256,
            "size": self.size,
            "mode": self.mode,
            "mode_applied": self.mode_applied,
        });
        if let Some(source) = &self.source {
            state["source"] = json!(source);
        }
        if !self.created_dirs.is_empty() {
            state["created_dirs"] = json!(self.created_dirs);
        }
        state
    }

    pub fn from_json(text: &str) -> Result<FileState, String> {
        let bad = |what: &str| format!("the stored state is not a local.file state ({what})");
        let v = parse_object(text, "the stored state").map_err(|e| bad(&e))?;
        let path = v.get("path").and_then(Value::as_str).ok_or_else(|| bad("no `path`"))?;
        let sha = v.get("content_sha256").and_then(Value::as_str).ok_or_else(|| bad("no `content_sha256`"))?;
        Ok(FileState {
            path: path.to_string(),
            content_sha256: sha.to_string(),
            size: v.get("size").and_then(Value::as_u64).unwrap_or(0),
            mode: v.get("mode").and_then(Value::as_str).map(str::to_string),
            mode_applied: v.get("mode_applied").and_then(Value::as_bool).unwrap_or(false),
            source: v.get("source").and_then(Value::as_str).map(str::to_string),
            created_dirs: strings(v.get("created_dirs")),
        })
    }

    #[cfg(test)]
    pub fn outputs(&self) -> String {
        self.outputs_value().to_string()
    }

    pub fn outputs_value(&self) -> Value {
        json!({ "path": self.path, "sha256": self.content_sha256 })
    }
}

/// The strings of a JSON array (none when it is not one).
fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
}

/// What the plugin stores for a `local.directory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirState {
    pub path: String,
    /// The directories apply created, outermost first, as the plugin opened
    /// them (under `root`): the directory itself unless it was there
    /// before, and the parents it made. Destroy removes these (the directory
    /// itself only when empty, else it fails; a parent when empty, else it
    /// stays) and nothing else. None in a state written before this was
    /// kept: destroy then removes the directory itself, when empty.
    pub created: Option<Vec<String>>,
}

impl DirState {
    pub fn to_value(&self) -> Value {
        match &self.created {
            Some(created) => json!({ "path": self.path, "created": created }),
            None => json!({ "path": self.path }),
        }
    }

    pub fn from_json(text: &str) -> Result<DirState, String> {
        let v = parse_object(text, "the stored state")
            .map_err(|e| format!("the stored state is not a local.directory state ({e})"))?;
        match v.get("path").and_then(Value::as_str) {
            Some(path) => {
                Ok(DirState { path: path.to_string(), created: v.get("created").is_some().then(|| strings(v.get("created"))) })
            }
            None => Err("the stored state is not a local.directory state (no `path`)".into()),
        }
    }

    pub fn outputs_value(&self) -> Value {
        json!({ "path": self.path })
    }
}

/// The states are stored as the JSON of their `to_json`, and read back by
/// their `from_json` (whose messages say what is wrong).
macro_rules! state_serde {
    ($ty:ident) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.to_value().serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$ty, D::Error> {
                let v = Value::deserialize(deserializer)?;
                $ty::from_json(&v.to_string()).map_err(serde::de::Error::custom)
            }
        }
    };
}

state_serde!(FileState);
state_serde!(DirState);

fn json_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn attr_change(path: &str, before: Option<&str>, after: Option<&str>, forces_replacement: bool) -> AttributeChange {
    AttributeChange {
        path: path.to_string(),
        before: before.map(json_string),
        after: after.map(json_string),
        sensitive: false,
        forces_replacement,
    }
}

/// Content is shown by its hash: it can be large.
fn content_label(sha: &str) -> String {
    format!("sha256:{sha}")
}

/// Plans a `local.file`. `content_sha256` is the sha256 (hex) of the desired
/// content: of `content`'s text, or of the bytes of the `source` file as plan
/// read them. Either way the content is shown by its hash under `content`,
/// compared with the state's hash of what was written (or, after `read`, of
/// what is on disk): an edited `source` file plans as an update of `content`.
pub fn plan_file(prior: Option<&FileState>, desired: &FileSpec, content_sha256: &str) -> ResourcePlan {
    let after_sha = content_label(content_sha256);
    let Some(prior) = prior else {
        let mut changes = vec![attr_change("path", None, Some(&desired.path), false)];
        if let Some(source) = desired.source() {
            changes.push(attr_change("source", None, Some(source), false));
        }
        changes.push(attr_change("content", None, Some(&after_sha), false));
        if let Some(mode) = &desired.mode {
            changes.push(attr_change("mode", None, Some(mode), false));
        }
        return ResourcePlan { change: Change::Create, changes };
    };
    let mut changes = Vec::new();
    let replace = prior.path != desired.path;
    if replace {
        changes.push(attr_change("path", Some(&prior.path), Some(&desired.path), true));
    }
    if prior.source.as_deref() != desired.source() {
        changes.push(attr_change("source", prior.source.as_deref(), desired.source(), false));
    }
    let before_sha = content_label(&prior.content_sha256);
    if before_sha != after_sha {
        changes.push(attr_change("content", Some(&before_sha), Some(&after_sha), false));
    }
    if prior.mode != desired.mode {
        changes.push(attr_change("mode", prior.mode.as_deref(), desired.mode.as_deref(), false));
    }
    let change = if replace {
        Change::Replace
    } else if changes.is_empty() {
        Change::NoOp
    } else {
        Change::Update
    };
    ResourcePlan { change, changes }
}

pub fn plan_dir(prior: Option<&DirState>, desired: &DirSpec) -> ResourcePlan {
    match prior {
        None => ResourcePlan {
            change: Change::Create,
            changes: vec![attr_change("path", None, Some(&desired.path), false)],
        },
        Some(prior) if prior.path != desired.path => ResourcePlan {
            change: Change::Replace,
            changes: vec![attr_change("path", Some(&prior.path), Some(&desired.path), true)],
        },
        Some(_) => ResourcePlan { change: Change::NoOp, changes: Vec::new() },
    }
}

const PATH_DOC: &str = "Where it is, relative to a directory granted to the plugin with allow { fs = [...] } \
    (`out/site/index.html` when \"out\" is granted), or to the plugin's config `root` when set. \
    Absolute paths and `..` are refused.";

/// The JSON Schema `format` of an attribute whose value is a file the plugin
/// reads (`local.file`'s `source`). The host looks for exactly this string in
/// the attribute schemas to know which attribute values are files to watch.
pub const INPUT_FILE_FORMAT: &str = "stackpipe:input-file";

const SOURCE_DOC: &str = "A file whose bytes become the file's content, instead of `content`: relative to a \
    directory granted to the plugin, as written (`templates/index.html` when \"templates\" is granted), not under \
    the config `root`. Read by plan and apply; a change to it plans as an update of `content`. Absolute paths and \
    `..` are refused. Set at most one of `content` and `source`.";

pub const FILE_DESCRIPTION: &str = "A file with the given text content, or the content of a `source` file, inside a directory \
                granted to the plugin. Missing parent directories are created. A change of `path` replaces the file; a \
                change of `content`, of the `source` file or of `mode` updates it in place, and `read` notices a file edited outside stackpipe by its sha256 \
                (and its mode, when `mode` is set). Destroy deletes the file, and the directories apply created for it when they are empty.";

pub const DIR_DESCRIPTION: &str = "A directory (with any missing parents), inside a directory granted to the plugin. A change of \
                `path` replaces it. Destroy removes what apply created: the directory (only when it is empty: it never deletes what \
                is in it), then the parents it made, those that are empty. A directory that was there before apply is left in place.";

pub fn resource_types() -> Vec<ResourceType> {
    let file_attrs = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "local.file",
        "type": "object",
        "properties": {
            "path": { "type": "string", "minLength": 1, "description": PATH_DOC },
            "content": {
                "type": "string",
                "default": "",
                "description": "The file's content, as UTF-8 text. Set at most one of `content` and `source`."
            },
            // The host looks for exactly the format `stackpipe:input-file` to
            // know which attribute values name files to watch (watch mode
            // re-plans when one changes): keep the string as it is.
            "source": {
                "type": "string",
                "format": INPUT_FILE_FORMAT,
                "description": SOURCE_DOC
            },
            "mode": {
                "type": "string",
                "pattern": "^0?[0-7]{3}$",
                "description": "Octal permission bits like \"0600\", set on the file by apply; a change made outside stackpipe shows in the next plan. No setuid, setgid or sticky bit."
            }
        },
        "required": ["path"],
        "not": { "required": ["content", "source"] },
        "additionalProperties": false
    });
    let file_outputs = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            // A new path replaces the file: an update in place keeps it.
            "path": { "type": "string", "keptOnUpdate": true, "description": "The file's path, as given." },
            "sha256": { "type": "string", "pattern": "^[0-9a-f]{64}$", "description": "The sha256 of the content, in hex." }
        },
        "required": ["path", "sha256"],
        // Closed: `stackpipe check` reports a reference to any other output.
        "additionalProperties": false
    });
    let dir_attrs = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "local.directory",
        "type": "object",
        "properties": {
            "path": { "type": "string", "minLength": 1, "description": PATH_DOC }
        },
        "required": ["path"],
        "additionalProperties": false
    });
    let dir_outputs = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            // A new path replaces the directory: an update in place keeps it.
            "path": { "type": "string", "keptOnUpdate": true, "description": "The directory's path, as given." }
        },
        "required": ["path"],
        "additionalProperties": false
    });
    vec![
        ResourceType {
            name: "file".into(),
            description: FILE_DESCRIPTION.into(),
            attributes_schema: file_attrs.to_string(),
            outputs_schema: file_outputs.to_string(),
        },
        ResourceType {
            name: "directory".into(),
            description: DIR_DESCRIPTION.into(),
            attributes_schema: dir_attrs.to_string(),
            outputs_schema: dir_outputs.to_string(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str, mode: Option<&str>) -> FileSpec {
        FileSpec { path: path.into(), content: FileContent::Inline(content.into()), mode: mode.map(str::to_string) }
    }

    fn sourced(path: &str, source: &str) -> FileSpec {
        FileSpec { path: path.into(), content: FileContent::Source(source.into()), mode: None }
    }

    fn text(spec: &FileSpec) -> &str {
        match &spec.content {
            FileContent::Inline(text) => text,
            FileContent::Source(_) => panic!("not inline"),
        }
    }

    /// What apply stores for a file written with `content` (the bytes of a source).
    fn stored(spec: &FileSpec, content: &[u8]) -> FileState {
        FileState {
            path: spec.path.clone(),
            content_sha256: sha256_hex(content),
            size: content.len() as u64,
            mode: spec.mode.clone(),
            mode_applied: false,
            source: spec.source().map(str::to_string),
            created_dirs: Vec::new(),
        }
    }

    fn state_of(spec: &FileSpec) -> FileState {
        stored(spec, text(spec).as_bytes())
    }

    /// Plans an inline file, the way the plugin does: by its content's hash.
    fn plan_inline(prior: Option<&FileState>, spec: &FileSpec) -> ResourcePlan {
        plan_file(prior, spec, &sha256_hex(text(spec).as_bytes()))
    }

    fn label(bytes: &[u8]) -> String {
        format!("\"sha256:{}\"", sha256_hex(bytes))
    }

    fn attrs_of(diags: &[Diagnostic]) -> Vec<Option<&str>> {
        diags.iter().map(|d| d.attribute.as_deref()).collect()
    }

    #[test]
    fn parses_a_file_with_defaults() {
        let spec = parse_file(r#"{"path":"out/a.txt","content":""}"#).unwrap();
        assert_eq!(spec, file("out/a.txt", "", None));
        assert_eq!(spec.source(), None);
        let spec = parse_file(r#"{"path":"out/a.txt","content":"hi","mode":"644"}"#).unwrap();
        assert_eq!(spec, file("out/a.txt", "hi", Some("0644")));
    }

    #[test]
    fn missing_and_ill_typed_attributes_are_named() {
        let d = parse_file("{}").unwrap_err();
        assert_eq!(attrs_of(&d), vec![Some("path")]);
        assert!(d[0].message.contains("required"));

        let d = parse_file(r#"{"path": 3, "content": true, "mode": 644}"#).unwrap_err();
        assert_eq!(attrs_of(&d), vec![Some("path"), Some("content"), Some("mode")]);

        let d = parse_file(r#"{"path":"a","content":"","mode":"rw-r--r--"}"#).unwrap_err();
        assert_eq!(attrs_of(&d), vec![Some("mode")]);

        let d = parse_file(r#"{"path":"a","content":"","conent":"x"}"#).unwrap_err();
        assert_eq!(attrs_of(&d), vec![Some("conent")]);
        assert!(d[0].message.contains("source"), "the known attributes include source: {}", d[0].message);

        let d = parse_file("[1]").unwrap_err();
        assert_eq!(attrs_of(&d), vec![None]);
        assert_eq!(validate(Kind::Directory, r#"{"path": ["x"]}"#)[0].attribute.as_deref(), Some("path"));
    }

    #[test]
    fn paths_must_be_relative_and_stay_inside() {
        for bad in ["/etc/passwd", "../x", "out/../../x", "out/..", "\\x"] {
            let d = validate(Kind::File, &json!({ "path": bad, "content": "" }).to_string());
            assert_eq!(d.len(), 1, "{bad}");
            assert_eq!(d[0].attribute.as_deref(), Some("path"));
            assert!(d[0].message.contains(RELATIVE_PATHS), "{bad}: {}", d[0].message);
        }
        assert!(validate(Kind::Directory, r#"{"path":""}"#)[0].message.contains("empty"));
        for good in ["out/a.txt", "./out/a.txt", "out/..a/b", "a..b"] {
            assert!(validate(Kind::File, &json!({ "path": good, "content": "" }).to_string()).is_empty(), "{good}");
        }
    }

    #[test]
    fn config_root_prefixes_paths() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::parse("{}").unwrap().resolve("a/b"), PathBuf::from("a/b"));
        let c = Config::parse(r#"{"root":"out"}"#).unwrap();
        assert_eq!(c.resolve("dev/site"), PathBuf::from("out/dev/site"));
        assert_eq!(Config::parse(r#"{"root":"./out"}"#).unwrap().resolve("./a"), PathBuf::from("out/a"));
        assert!(Config::parse(r#"{"root":"/abs"}"#).unwrap_err().contains(RELATIVE_PATHS));
        assert!(Config::parse(r#"{"root":1}"#).is_err());
    }

    #[test]
    fn plans_a_new_file_as_create() {
        let p = plan_inline(None, &file("a.txt", "hi", Some("0600")));
        assert_eq!(p.change, Change::Create);
        let paths: Vec<_> = p.changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["path", "content", "mode"]);
        assert_eq!(p.changes[1].after.as_deref(), Some(format!("\"sha256:{}\"", sha256_hex(b"hi")).as_str()));
        assert!(p.changes.iter().all(|c| c.before.is_none() && !c.sensitive));
    }

    #[test]
    fn plans_no_op_update_and_replace() {
        let spec = file("a.txt", "hi", None);
        let prior = state_of(&spec);
        assert_eq!(plan_inline(Some(&prior), &spec).change, Change::NoOp);
        assert!(plan_inline(Some(&prior), &spec).changes.is_empty());

        let p = plan_inline(Some(&prior), &file("a.txt", "hello", None));
        assert_eq!(p.change, Change::Update);
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].path, "content");
        assert!(!p.changes[0].forces_replacement);
        // The content itself is never in the plan, only its hash.
        assert!(!p.changes[0].after.as_deref().unwrap().contains("hello"));

        let p = plan_inline(Some(&prior), &file("a.txt", "hi", Some("0644")));
        assert_eq!(p.change, Change::Update);
        assert_eq!((p.changes[0].path.as_str(), p.changes[0].before.as_deref()), ("mode", None));

        let p = plan_inline(Some(&prior), &file("b.txt", "other", None));
        assert_eq!(p.change, Change::Replace);
        assert_eq!(p.changes[0].path, "path");
        assert!(p.changes[0].forces_replacement);
        assert_eq!(p.changes.len(), 2);
    }

    #[test]
    fn drift_read_back_shows_as_update() {
        let spec = file("a.txt", "desired", None);
        let mut refreshed = state_of(&spec);
        refreshed.content_sha256 = sha256_hex(b"edited by hand");
        let p = plan_inline(Some(&refreshed), &spec);
        assert_eq!(p.change, Change::Update);
        assert_eq!(
            p.changes[0].before.as_deref(),
            Some(format!("\"sha256:{}\"", sha256_hex(b"edited by hand")).as_str())
        );
    }

    #[test]
    fn file_state_round_trips() {
        let s = FileState {
            path: "a".into(),
            content_sha256: sha256_hex(b""),
            size: 0,
            mode: Some("0644".into()),
            mode_applied: false,
            source: None,
            created_dirs: Vec::new(),
        };
        assert_eq!(FileState::from_json(&s.to_json()).unwrap(), s);
        // A file with `content` stores what it stored before `source` existed.
        assert!(!s.to_json().contains("source"));
        let with_source = FileState { source: Some("templates/a".into()), ..s.clone() };
        assert_eq!(FileState::from_json(&with_source.to_json()).unwrap(), with_source);
        assert_eq!(with_source.outputs(), s.outputs(), "the outputs do not change");
        assert!(FileState::from_json(r#"{"path":"a"}"#).unwrap_err().contains("content_sha256"));
        let out: Value = serde_json::from_str(&s.outputs()).unwrap();
        assert_eq!(
            out,
            json!({ "path": "a", "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" })
        );
    }

    #[test]
    fn modes_are_permission_bits_only() {
        assert_eq!(normalize_mode("644").unwrap(), "0644");
        assert_eq!(normalize_mode("0600").unwrap(), "0600");
        for special in ["4755", "2755", "1777", "7777"] {
            let e = normalize_mode(special).unwrap_err();
            assert!(e.contains("setuid") && e.contains(&format!("\"0{}\"", &special[1..])), "{e}");
        }
        let d = parse_file(r#"{"path":"a","content":"","mode":"4755"}"#).unwrap_err();
        assert_eq!(attrs_of(&d), vec![Some("mode")]);
        assert_eq!((mode_bits("0640").unwrap(), mode_text(0o640)), (0o640, "0640".to_string()));
    }

    #[test]
    fn states_keep_what_apply_created() {
        let file = FileState {
            path: "a/b/c.txt".into(),
            content_sha256: sha256_hex(b""),
            size: 0,
            mode: None,
            mode_applied: false,
            source: None,
            created_dirs: vec!["out/a".into(), "out/a/b".into()],
        };
        assert_eq!(FileState::from_json(&file.to_value().to_string()).unwrap(), file);
        assert_eq!(file.outputs_value(), json!({ "path": "a/b/c.txt", "sha256": sha256_hex(b"") }));

        let dir = DirState { path: "dev/site".into(), created: Some(vec!["out/dev".into(), "out/dev/site".into()]) };
        assert_eq!(DirState::from_json(&dir.to_value().to_string()).unwrap(), dir);
        assert_eq!(dir.outputs_value(), json!({ "path": "dev/site" }), "the outputs do not change");
        // A state from before: nothing known of what apply created.
        assert_eq!(DirState::from_json(r#"{"path":"dev/site"}"#).unwrap().created, None);
        let none = DirState { path: "x".into(), created: Some(Vec::new()) };
        assert_eq!(DirState::from_json(&none.to_value().to_string()).unwrap(), none, "created nothing: it was there");
    }

    #[test]
    fn plans_directories() {
        let d = DirSpec { path: "out/x".into() };
        assert_eq!(plan_dir(None, &d).change, Change::Create);
        assert_eq!(plan_dir(Some(&DirState { path: "out/x".into(), created: None }), &d).change, Change::NoOp);
        let p = plan_dir(Some(&DirState { path: "out/y".into(), created: Some(vec!["out/y".into()]) }), &d);
        assert_eq!(p.change, Change::Replace);
        assert!(p.changes[0].forces_replacement);
    }

    #[test]
    fn kinds_and_schemas() {
        assert_eq!(Kind::parse("file").unwrap(), Kind::File);
        assert_eq!(Kind::parse("local.directory").unwrap(), Kind::Directory);
        assert!(Kind::parse("bucket").unwrap_err().contains("`bucket`"));
        for t in resource_types() {
            let a: Value = serde_json::from_str(&t.attributes_schema).unwrap();
            let o: Value = serde_json::from_str(&t.outputs_schema).unwrap();
            assert_eq!(a["required"], json!(["path"]));
            assert!(o["properties"]["path"].is_object());
            assert_eq!(o["additionalProperties"], false, "{}: the outputs are closed", t.name);
        }
        // What the outputs schemas promise is what is output: no more.
        let closed = |name: &str| -> Vec<String> {
            let t = resource_types().into_iter().find(|t| t.name == name).unwrap();
            let o: Value = serde_json::from_str(&t.outputs_schema).unwrap();
            o["properties"].as_object().unwrap().keys().cloned().collect()
        };
        let spec = file("a", "x", None);
        let keys = |v: Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
        assert_eq!(keys(state_of(&spec).outputs_value()), closed("file"));
        assert_eq!(keys(DirState { path: "a".into(), created: Some(vec!["a".into()]) }.outputs_value()), closed("directory"));
        let file = resource_types().into_iter().find(|t| t.name == "file").unwrap();
        let a: Value = serde_json::from_str(&file.attributes_schema).unwrap();
        let source = &a["properties"]["source"];
        assert_eq!(source["type"], "string");
        assert_eq!(source["format"], "stackpipe:input-file", "the host watches attributes with exactly this format");
        assert!(source["description"].as_str().is_some_and(|d| d.contains("root")));
        assert_eq!(a["properties"]["content"]["default"], "");
        assert_eq!(a["not"], json!({ "required": ["content", "source"] }));
    }

    #[test]
    fn parses_a_file_with_a_source() {
        let spec = parse_file(r#"{"path":"site/index.html","source":"templates/index.html","mode":"644"}"#).unwrap();
        assert_eq!(spec.source(), Some("templates/index.html"));
        assert_eq!(spec.content, FileContent::Source("templates/index.html".into()));
        assert_eq!(spec.mode.as_deref(), Some("0644"));
        // `null` is as good as absent.
        let spec = parse_file(r#"{"path":"a","content":null,"source":"t/a"}"#).unwrap();
        assert_eq!(spec, sourced("a", "t/a"));
        let spec = parse_file(r#"{"path":"a","content":"x","source":null}"#).unwrap();
        assert_eq!(spec, file("a", "x", None));
    }

    #[test]
    fn at_most_one_of_content_and_source() {
        let d = parse_file(r#"{"path":"a","content":"x","source":"t/a"}"#).unwrap_err();
        assert_eq!(attrs_of(&d), vec![None]);
        assert!(d[0].message.contains("`content`") && d[0].message.contains("`source`"), "{}", d[0].message);
        assert!(d[0].message.contains("both"), "{}", d[0].message);
        // Neither: an empty file.
        assert_eq!(parse_file(r#"{"path":"a"}"#).unwrap().content, FileContent::Inline(String::new()));
        // An ill-typed one is reported once, as itself.
        let d = parse_file(r#"{"path":"a","source":7}"#).unwrap_err();
        assert_eq!(attrs_of(&d), vec![Some("source")]);
        assert!(d[0].message.contains("must be a string"), "{}", d[0].message);
        let d = parse_file(r#"{"path":"a","content":"x","source":["t/a"]}"#).unwrap_err();
        assert_eq!(attrs_of(&d), vec![Some("source")]);
    }

    #[test]
    fn sources_must_be_relative_and_stay_inside() {
        for bad in ["/etc/passwd", "../x", "templates/../../x", "templates/..", "\\x", ""] {
            let d = validate(Kind::File, &json!({ "path": "out/a", "source": bad }).to_string());
            assert_eq!(attrs_of(&d), vec![Some("source")], "{bad}");
        }
        let d = validate(Kind::File, &json!({ "path": "out/a", "source": "/etc/passwd" }).to_string());
        assert!(d[0].message.contains(RELATIVE_PATHS) && d[0].message.contains("absolute"), "{}", d[0].message);
        // Syntax only: validate does not look for the file.
        for good in ["templates/index.html", "./templates/x", "does/not/exist.txt"] {
            assert!(validate(Kind::File, &json!({ "path": "out/a", "source": good }).to_string()).is_empty(), "{good}");
        }
    }

    #[test]
    fn sources_are_as_written_not_under_root() {
        assert_eq!(source_path("templates/index.html"), PathBuf::from("templates/index.html"));
        assert_eq!(source_path("./templates/./x"), PathBuf::from("templates/x"));
        let cfg = Config::parse(r#"{"root":"out"}"#).unwrap();
        assert_eq!(cfg.resolve("site/index.html"), PathBuf::from("out/site/index.html"));
        let granted = vec!["out".to_string(), "templates".to_string()];
        assert!(stackpipe_plugin_sdk::grants::check(&source_path("templates/x.html"), Some(&granted)).is_ok());
        assert!(stackpipe_plugin_sdk::grants::check(&source_path("secrets/x"), Some(&granted)).is_err());
    }

    #[test]
    fn plans_a_file_from_a_source() {
        let spec = sourced("out/index.html", "templates/index.html");
        let v1: &[u8] = b"<h1>v1</h1>\n";
        let v2: &[u8] = &[0xff, 0x00, b'v', b'2'];

        // Created: the source's path and its content's hash, never the content.
        let p = plan_file(None, &spec, &sha256_hex(v1));
        assert_eq!(p.change, Change::Create);
        let paths: Vec<_> = p.changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["path", "source", "content"]);
        assert_eq!(p.changes[1].after.as_deref(), Some("\"templates/index.html\""));
        assert_eq!(p.changes[2].after, Some(label(v1)));

        // The source file unchanged since the apply: nothing to do.
        let prior = stored(&spec, v1);
        let p = plan_file(Some(&prior), &spec, &sha256_hex(v1));
        assert_eq!((p.change, p.changes.len()), (Change::NoOp, 0));

        // The source file edited: an update of `content`, hash before and after.
        let p = plan_file(Some(&prior), &spec, &sha256_hex(v2));
        assert_eq!(p.change, Change::Update);
        assert_eq!(p.changes.len(), 1);
        let c = &p.changes[0];
        assert_eq!((c.path.as_str(), c.forces_replacement, c.sensitive), ("content", false, false));
        assert_eq!((c.before.clone(), c.after.clone()), (Some(label(v1)), Some(label(v2))));

        // Another source with the same bytes: only `source` changes.
        let moved = sourced("out/index.html", "templates/other.html");
        let p = plan_file(Some(&prior), &moved, &sha256_hex(v1));
        assert_eq!(p.change, Change::Update);
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].path, "source");
        assert_eq!(p.changes[0].before.as_deref(), Some("\"templates/index.html\""));
        assert_eq!(p.changes[0].after.as_deref(), Some("\"templates/other.html\""));

        // From `content` to a `source` with the same text, and back.
        let inline = file("out/index.html", "<h1>v1</h1>\n", None);
        let p = plan_file(Some(&state_of(&inline)), &spec, &sha256_hex(v1));
        assert_eq!(p.change, Change::Update);
        assert_eq!((p.changes[0].path.as_str(), p.changes[0].before.as_deref()), ("source", None));
        let p = plan_inline(Some(&prior), &inline);
        assert_eq!((p.changes[0].path.as_str(), p.changes[0].after.as_deref()), ("source", None));

        // Edited on disk (read refreshed the state): an update back to the source's content.
        let mut refreshed = prior.clone();
        refreshed.content_sha256 = sha256_hex(b"edited by hand");
        let p = plan_file(Some(&refreshed), &spec, &sha256_hex(v1));
        assert_eq!(p.change, Change::Update);
        assert_eq!(p.changes[0].before, Some(label(b"edited by hand")));
    }

    #[test]
    fn diagnostics_become_one_line() {
        let d = parse_file(r#"{"path": "/x", "content": 1}"#).unwrap_err();
        let line = diagnostics_error(&d);
        assert!(!line.contains('\n'));
        assert!(line.contains("attribute `path`") && line.contains("attribute `content`"));
    }
}
