//! An `aws.s3_object`'s body: `content` (a string) or `source` (a file in a
//! directory the pipeline grants the plugin, read through the sandbox's
//! preopens). Plans compare its sha256, which this module works out.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use stackpipe_plugin_sdk::grants;

use crate::attrs::{UNKNOWN, hex, input_file};
use crate::kinds::MAX_OBJECT_BYTES;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Content(String),
    File(PathBuf),
}

/// One body, read: its bytes and their sha256 (hex).
pub struct Bytes {
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl Body {
    /// The body the attributes (as given, or normalized) name; none while
    /// `source` or `content` is not known yet, or when neither is set (which
    /// `validate` refuses).
    pub fn of(attrs: &Map<String, Value>) -> Result<Option<Body>, String> {
        match (attrs.get("source"), attrs.get("content")) {
            (Some(Value::String(s)), _) if s == UNKNOWN => Ok(None),
            (_, Some(Value::String(c))) if c == UNKNOWN => Ok(None),
            (Some(Value::String(s)), _) => {
                Ok(Some(Body::File(PathBuf::from(input_file(s).map_err(|e| format!("`source`: {e}"))?))))
            }
            (_, Some(Value::String(c))) => Ok(Some(Body::Content(c.clone()))),
            _ => Ok(None),
        }
    }

    /// The sha256 (hex) of the body; a file is read in pieces (a plan needs only this).
    pub fn sha256(&self) -> Result<String, String> {
        match self {
            Body::Content(c) => Ok(checked_len(c.len() as u64, "`content`").map(|()| hex(&Sha256::digest(c)))?),
            Body::File(path) => {
                let mut file = open(path)?;
                let mut hasher = Sha256::new();
                let mut buf = vec![0; 64 * 1024];
                loop {
                    let n = file.read(&mut buf).map_err(|e| read_error(path, &e))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                Ok(hex(&hasher.finalize()))
            }
        }
    }

    /// The body's bytes and their sha256.
    pub fn read(self) -> Result<Bytes, String> {
        let bytes = match self {
            Body::Content(c) => {
                checked_len(c.len() as u64, "`content`")?;
                c.into_bytes()
            }
            Body::File(path) => {
                let mut file = open(&path)?;
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map_err(|e| read_error(&path, &e))?;
                // It may have grown since it was opened.
                checked_len(bytes.len() as u64, &format!("`source` `{}`", path.display()))?;
                bytes
            }
        };
        let sha256 = hex(&Sha256::digest(&bytes));
        Ok(Bytes { bytes, sha256 })
    }
}

fn checked_len(len: u64, what: &str) -> Result<(), String> {
    if len > MAX_OBJECT_BYTES {
        return Err(format!(
            "{what} is {:.1} MiB: aws.s3_object uploads at most {} MiB, in one PutObject (multipart uploads are not \
             supported)",
            len as f64 / (1024.0 * 1024.0),
            MAX_OBJECT_BYTES / (1024 * 1024)
        ));
    }
    Ok(())
}

fn read_error(path: &Path, e: &std::io::Error) -> String {
    format!("cannot read `source` `{}`: {e}", path.display())
}

/// Opens a `source` file: inside the grants (else an error naming them,
/// not a "not found"), a file, not too big.
fn open(path: &Path) -> Result<std::fs::File, String> {
    grants::check(path, grants::granted().as_deref()).map_err(|e| format!("`source`: {e}"))?;
    let meta = std::fs::metadata(path).map_err(|e| read_error(path, &e))?;
    if meta.is_dir() {
        return Err(format!("cannot read `source` `{}`: it is a directory, not a file", path.display()));
    }
    checked_len(meta.len(), &format!("`source` `{}`", path.display()))?;
    std::fs::File::open(path).map_err(|e| read_error(path, &e))
}

/// Puts the body's sha256 in `normalized` in place of `content`: what a plan
/// compares (a state keeps no body). Not known yet while the body is not.
pub fn digest_into(normalized: &mut Map<String, Value>) -> Result<(), String> {
    let sha256 = match Body::of(normalized)? {
        Some(body) => body.sha256()?,
        None => UNKNOWN.to_string(),
    };
    normalized.remove("content");
    normalized.insert("sha256".into(), json!(sha256));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn content_and_files_hash_alike() {
        let dir = std::env::temp_dir().join(format!("stackpipe-aws-body-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("app.txt");
        std::fs::write(&file, "hello").unwrap();
        let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let from_file = Body::of(&attrs(json!({ "source": file.to_str().unwrap() })));
        // Absolute paths are refused (the guest sees only relative grants).
        assert!(from_file.unwrap_err().contains("absolute"));
        let body = Body::File(file.clone());
        assert_eq!(body.sha256().unwrap(), hello);
        let read = body.read().unwrap();
        assert_eq!((read.bytes.as_slice(), read.sha256.as_str()), (b"hello".as_slice(), hello));
        let mut m = attrs(json!({ "bucket": "b", "content": "hello" }));
        digest_into(&mut m).unwrap();
        assert_eq!(Value::Object(m), json!({ "bucket": "b", "sha256": hello }));
        assert!(Body::File(dir.clone()).sha256().unwrap_err().contains("is a directory"));
        assert!(Body::File(dir.join("nope")).sha256().unwrap_err().starts_with("cannot read `source`"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_bodies_and_paths() {
        let mut m = attrs(json!({ "source": UNKNOWN }));
        digest_into(&mut m).unwrap();
        assert_eq!(m["sha256"], UNKNOWN);
        assert_eq!(
            Body::of(&attrs(json!({ "source": "./dist/app.tgz" }))).unwrap(),
            Some(Body::File(PathBuf::from("dist/app.tgz")))
        );
        assert!(Body::of(&attrs(json!({ "source": "../x" }))).unwrap_err().contains(".."));
    }

    #[test]
    fn bodies_over_the_limit_are_refused() {
        let e = checked_len(MAX_OBJECT_BYTES + 1, "`source` `big.bin`").unwrap_err();
        assert!(e.starts_with("`source` `big.bin` is 100.0 MiB: aws.s3_object uploads at most 100 MiB"), "{e}");
        assert!(e.contains("multipart uploads are not supported"));
        assert!(checked_len(MAX_OBJECT_BYTES, "x").is_ok());
    }
}
