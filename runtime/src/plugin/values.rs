//! What crosses a call besides the bindings' own types: who is calling, a
//! resolved credential, what `apply` returns, a policy's verdict, and the
//! names plans give changes.

use std::fmt;

use serde_json::Value;

use super::bindings;
use super::log::PluginLog;
use super::bindings::types::Change;

/// A change's name as plans, events and the state show it.
pub fn change_name(c: Change) -> &'static str {
    match c {
        Change::Create => "create",
        Change::Update => "update",
        Change::Replace => "replace",
        Change::Delete => "delete",
        Change::NoOp => "no-op",
    }
}

/// Who is calling, handed to every plugin call, and where the lines the
/// plugin logs during the call go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    pub pipeline: String,
    pub environment: String,
    pub resource: String,
    pub run_id: String,
    pub log: PluginLog,
}

/// A credential from a resolver. Its fields are secret: `Debug` prints only
/// their names, and nothing in stackpipe logs or stores them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub fields: Vec<(String, String)>,
    pub expires_at: Option<u64>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("fields", &self.fields.iter().map(|(k, _)| format!("{k}=<redacted>")).collect::<Vec<_>>())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Credential {
    pub(super) fn to_wit(&self) -> bindings::types::Credential {
        bindings::types::Credential { fields: self.fields.clone(), expires_at: self.expires_at }
    }
}

/// What `apply` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub state: Value,
    pub outputs: Value,
}

/// A policy's judgement of one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyVerdict {
    Allow,
    Deny(String),
    RequireApproval(String),
}
