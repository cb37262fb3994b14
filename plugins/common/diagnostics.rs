//! Diagnostics as one line, shared by the provisioner builtins:
//! `#[path = "../../common/diagnostics.rs"] mod diagnostics;`.

use crate::stackpipe::plugin::types::Diagnostic;

/// One line out of diagnostics, for calls that fail instead of listing them.
pub fn diagnostics_error(diags: &[Diagnostic]) -> String {
    let parts: Vec<String> = diags
        .iter()
        .map(|d| match &d.attribute {
            Some(a) => format!("attribute `{a}`: {}", d.message),
            None => d.message.clone(),
        })
        .collect();
    format!("invalid resource: {}", parts.join("; "))
}
