//! What `local` resources look like, independent of the filesystem: parsing
//! and validating attributes and config, the states it stores, plan diffing and
//! the JSON Schemas. Everything here is pure, so `cargo test` runs it natively.

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub use crate::diagnostics::diagnostics_error;
use crate::json::parse_object;
use crate::stackpipe::plugin::types::{AttributeChange, Change, Diagnostic, ResourcePlan, ResourceType};

/// Why paths must be relative: said in every path diagnostic.
pub const RELATIVE_PATHS: &str = "paths are relative to a granted directory";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
}

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
        crate::grants::normalize(&full)
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

/// Checks an octal mode like `"0644"` or `"755"` and writes it with four digits.
pub fn normalize_mode(mode: &str) -> Result<String, String> {
    let ok = (3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if ok {
        Ok(format!("{mode:0>4}"))
    } else {
        Err(format!("`{mode}` is not an octal mode: write three or four digits 0-7, like \"0644\""))
    }
}

fn diag(attribute: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic { attribute: Some(attribute.to_string()), message: message.into() }
}

fn whole(message: impl Into<String>) -> Diagnostic {
    Diagnostic { attribute: None, message: message.into() }
}

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

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A `local.file`'s desired attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub path: String,
    pub content: String,
    /// Four octal digits, when given.
    pub mode: Option<String>,
}

pub fn parse_file(desired: &str) -> Result<FileSpec, Vec<Diagnostic>> {
    let attrs = desired_object(desired)?;
    let mut diags = Vec::new();
    let path = path_attribute(&attrs, &mut diags);
    let content = match attrs.get("content") {
        None | Some(Value::Null) => Some(String::new()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            diags.push(diag("content", format!("`content` must be a string, not {}", type_name(other))));
            None
        }
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
    unknown_attributes(&attrs, &["path", "content", "mode"], &mut diags);
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

pub fn parse_dir(desired: &str) -> Result<DirSpec, Vec<Diagnostic>> {
    let attrs = desired_object(desired)?;
    let mut diags = Vec::new();
    let path = path_attribute(&attrs, &mut diags);
    unknown_attributes(&attrs, &["path"], &mut diags);
    match path {
        Some(path) if diags.is_empty() => Ok(DirSpec { path }),
        _ => Err(diags),
    }
}

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
    /// Whether `mode` took effect on disk (never, under WASI).
    pub mode_applied: bool,
}

impl FileState {
    pub fn to_json(&self) -> String {
        json!({
            "path": self.path,
            "content_sha256": self.content_sha256,
            "size": self.size,
            "mode": self.mode,
            "mode_applied": self.mode_applied,
        })
        .to_string()
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
        })
    }

    pub fn outputs(&self) -> String {
        json!({ "path": self.path, "sha256": self.content_sha256 }).to_string()
    }
}

/// What the plugin stores for a `local.directory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirState {
    pub path: String,
}

impl DirState {
    pub fn to_json(&self) -> String {
        json!({ "path": self.path }).to_string()
    }

    pub fn from_json(text: &str) -> Result<DirState, String> {
        let v = parse_object(text, "the stored state")
            .map_err(|e| format!("the stored state is not a local.directory state ({e})"))?;
        match v.get("path").and_then(Value::as_str) {
            Some(path) => Ok(DirState { path: path.to_string() }),
            None => Err("the stored state is not a local.directory state (no `path`)".into()),
        }
    }

    pub fn outputs(&self) -> String {
        self.to_json()
    }
}

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

pub fn plan_file(prior: Option<&FileState>, desired: &FileSpec) -> ResourcePlan {
    let after_sha = content_label(&sha256_hex(desired.content.as_bytes()));
    let Some(prior) = prior else {
        let mut changes = vec![
            attr_change("path", None, Some(&desired.path), false),
            attr_change("content", None, Some(&after_sha), false),
        ];
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

pub fn resource_types() -> Vec<ResourceType> {
    let file_attrs = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "local.file",
        "type": "object",
        "properties": {
            "path": { "type": "string", "minLength": 1, "description": PATH_DOC },
            "content": { "type": "string", "default": "", "description": "The file's content, as UTF-8 text." },
            "mode": {
                "type": "string",
                "pattern": "^[0-7]{3,4}$",
                "description": "Octal permissions like \"0644\". Recorded in the state but not applied: WASI has no file permissions."
            }
        },
        "required": ["path"],
        "additionalProperties": false
    });
    let file_outputs = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "path": { "type": "string", "description": "The file's path, as given." },
            "sha256": { "type": "string", "pattern": "^[0-9a-f]{64}$", "description": "The sha256 of the content, in hex." }
        },
        "required": ["path", "sha256"]
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
            "path": { "type": "string", "description": "The directory's path, as given." }
        },
        "required": ["path"]
    });
    vec![
        ResourceType {
            name: "file".into(),
            description: "A file with the given text content, inside a directory granted to the plugin. Missing parent \
                directories are created. A change of `path` replaces the file; a change of `content` or `mode` updates it \
                in place, and `read` notices a file edited outside stackpipe by its sha256. `mode` is recorded but not \
                applied, as WASI has no file permissions. Destroy deletes the file."
                .into(),
            attributes_schema: file_attrs.to_string(),
            outputs_schema: file_outputs.to_string(),
        },
        ResourceType {
            name: "directory".into(),
            description: "A directory (with any missing parents), inside a directory granted to the plugin. A change of \
                `path` replaces it. Destroy removes it only when it is empty."
                .into(),
            attributes_schema: dir_attrs.to_string(),
            outputs_schema: dir_outputs.to_string(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str, mode: Option<&str>) -> FileSpec {
        FileSpec { path: path.into(), content: content.into(), mode: mode.map(str::to_string) }
    }

    fn state_of(spec: &FileSpec) -> FileState {
        FileState {
            path: spec.path.clone(),
            content_sha256: sha256_hex(spec.content.as_bytes()),
            size: spec.content.len() as u64,
            mode: spec.mode.clone(),
            mode_applied: false,
        }
    }

    fn attrs_of(diags: &[Diagnostic]) -> Vec<Option<&str>> {
        diags.iter().map(|d| d.attribute.as_deref()).collect()
    }

    #[test]
    fn parses_a_file_with_defaults() {
        let spec = parse_file(r#"{"path":"out/a.txt"}"#).unwrap();
        assert_eq!(spec, file("out/a.txt", "", None));
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

        let d = parse_file(r#"{"path":"a","mode":"rw-r--r--"}"#).unwrap_err();
        assert_eq!(attrs_of(&d), vec![Some("mode")]);

        let d = parse_file(r#"{"path":"a","conent":"x"}"#).unwrap_err();
        assert_eq!(attrs_of(&d), vec![Some("conent")]);

        let d = parse_file("[1]").unwrap_err();
        assert_eq!(attrs_of(&d), vec![None]);
        assert_eq!(validate(Kind::Directory, r#"{"path": ["x"]}"#)[0].attribute.as_deref(), Some("path"));
    }

    #[test]
    fn paths_must_be_relative_and_stay_inside() {
        for bad in ["/etc/passwd", "../x", "out/../../x", "out/..", "\\x"] {
            let d = validate(Kind::File, &json!({ "path": bad }).to_string());
            assert_eq!(d.len(), 1, "{bad}");
            assert_eq!(d[0].attribute.as_deref(), Some("path"));
            assert!(d[0].message.contains(RELATIVE_PATHS), "{bad}: {}", d[0].message);
        }
        assert!(validate(Kind::Directory, r#"{"path":""}"#)[0].message.contains("empty"));
        for good in ["out/a.txt", "./out/a.txt", "out/..a/b", "a..b"] {
            assert!(validate(Kind::File, &json!({ "path": good }).to_string()).is_empty(), "{good}");
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
        let p = plan_file(None, &file("a.txt", "hi", Some("0600")));
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
        assert_eq!(plan_file(Some(&prior), &spec).change, Change::NoOp);
        assert!(plan_file(Some(&prior), &spec).changes.is_empty());

        let p = plan_file(Some(&prior), &file("a.txt", "hello", None));
        assert_eq!(p.change, Change::Update);
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].path, "content");
        assert!(!p.changes[0].forces_replacement);
        // The content itself is never in the plan, only its hash.
        assert!(!p.changes[0].after.as_deref().unwrap().contains("hello"));

        let p = plan_file(Some(&prior), &file("a.txt", "hi", Some("0644")));
        assert_eq!(p.change, Change::Update);
        assert_eq!((p.changes[0].path.as_str(), p.changes[0].before.as_deref()), ("mode", None));

        let p = plan_file(Some(&prior), &file("b.txt", "other", None));
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
        let p = plan_file(Some(&refreshed), &spec);
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
        };
        assert_eq!(FileState::from_json(&s.to_json()).unwrap(), s);
        assert!(FileState::from_json(r#"{"path":"a"}"#).unwrap_err().contains("content_sha256"));
        let out: Value = serde_json::from_str(&s.outputs()).unwrap();
        assert_eq!(
            out,
            json!({ "path": "a", "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" })
        );
    }

    #[test]
    fn plans_directories() {
        let d = DirSpec { path: "out/x".into() };
        assert_eq!(plan_dir(None, &d).change, Change::Create);
        assert_eq!(plan_dir(Some(&DirState { path: "out/x".into() }), &d).change, Change::NoOp);
        let p = plan_dir(Some(&DirState { path: "out/y".into() }), &d);
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
        }
    }

    #[test]
    fn diagnostics_become_one_line() {
        let d = parse_file(r#"{"path": "/x", "content": 1}"#).unwrap_err();
        let line = diagnostics_error(&d);
        assert!(!line.contains('\n'));
        assert!(line.contains("attribute `path`") && line.contains("attribute `content`"));
    }
}
