//! A run's source as it travels to a team server with the request that
//! starts it (`deploy FILE --server`): the pipeline's main file, and each
//! path plugin's component as bytes. The server compiles the one and runs
//! the others ([`crate::run::RunSource::uploaded`]); it never reads the
//! sender's paths, and builtins are its own.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::plugin::digest;
use crate::run::snapshot::Component;

/// `source` of `POST /api/v1/runs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceUpload {
    pub file: UploadedFile,
    /// Each path plugin's component, by its source as the pipeline gives
    /// it (`plugins/x.wasm`). Builtins are not sent.
    #[serde(default)]
    pub components: BTreeMap<String, UploadedComponent>,
}

/// The pipeline file as its sender has it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadedFile {
    /// Its path on the sender's machine: for people (and for its file
    /// name); nothing is read from it.
    pub path: String,
    pub text: String,
}

/// One plugin component.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadedComponent {
    /// The SHA-256 of the bytes, hex, as the sender computed it: checked on arrival.
    pub sha256: String,
    /// The bytes, base64 (standard alphabet, padded).
    pub base64: String,
}

impl UploadedComponent {
    pub fn new(bytes: &[u8]) -> UploadedComponent {
        UploadedComponent { sha256: digest(bytes), base64: base64::engine::general_purpose::STANDARD.encode(bytes) }
    }

    /// The bytes, with the digest the sender claims for them (which
    /// [`crate::run::RunSource::uploaded`] checks).
    pub fn component(&self) -> Result<Component, String> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(self.base64.as_bytes()).map_err(|e| format!("not base64: {e}"))?;
        Ok(Component { bytes: bytes.into(), digest: self.sha256.to_ascii_lowercase() })
    }
}

impl SourceUpload {
    /// Every component decoded, by source; the first that is not base64, named.
    pub fn components(&self) -> Result<BTreeMap<String, Component>, String> {
        self.components.iter().map(|(source, c)| c.component().map(|c| (source.clone(), c)).map_err(|e| format!("{source}: {e}"))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_round_trips_with_its_digest() {
        let c = UploadedComponent::new(b"\0asm component bytes");
        let back = c.component().unwrap();
        assert_eq!(&*back.bytes, b"\0asm component bytes");
        assert_eq!(back.digest, digest(b"\0asm component bytes"));
        let bad = UploadedComponent { base64: "not base64!".into(), ..c };
        assert!(bad.component().err().unwrap().contains("not base64"));
    }
}
