//! Building diagnostics, and folding them into one-line errors.

use crate::types::Diagnostic;

/// A diagnostic about one attribute.
pub fn attribute(attribute: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic { attribute: Some(attribute.to_string()), message: message.into() }
}

/// A diagnostic about the whole resource.
pub fn whole(message: impl Into<String>) -> Diagnostic {
    Diagnostic { attribute: None, message: message.into() }
}

/// One line out of diagnostics, for calls that fail instead of listing them:
/// `invalid resource: attribute `path`: `path` is required; ...`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line() {
        let e = diagnostics_error(&[attribute("path", "`path` is required"), whole("bad")]);
        assert_eq!(e, "invalid resource: attribute `path`: `path` is required; bad");
    }
}
