//! Policies: implement [`Policy`], export it with [`export_policy!`](crate::export_policy).
//!
//! ```
//! use stackpipe_plugin_sdk::policy::{Input, Policy};
//! use stackpipe_plugin_sdk::{Context, Verdict};
//!
//! /// Asks before any delete.
//! struct AskBeforeDelete;
//! impl Policy for AskBeforeDelete {
//!     fn evaluate(ctx: &Context, input: &str) -> Verdict {
//!         match Input::parse(input, &ctx.environment) {
//!             Err(e) => Verdict::Deny(e), // fail closed
//!             Ok(i) if i.change == "delete" => Verdict::RequireApproval(format!("deletes `{}`", i.resource)),
//!             Ok(_) => Verdict::Allow,
//!         }
//!     }
//! }
//! // In the plugin crate: stackpipe_plugin_sdk::export_policy!(AskBeforeDelete);
//! ```

use serde::Deserialize;

use crate::json::parse_object;
use crate::types::{Context, Verdict};

/// A policy: judges one planned change. A policy that cannot make sense of
/// its input should deny (fail closed).
pub trait Policy {
    /// `input` is the JSON object described in `wit/plugin.wit` ([`Input`] parses it).
    fn evaluate(ctx: &Context, input: &str) -> Verdict;
}

/// One attribute change in a policy input.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InputChange {
    pub path: String,
    /// JSON text, or none.
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default)]
    pub forces_replacement: bool,
}

/// The policy input: the planned change of one resource.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Input {
    #[serde(default)]
    pub resource: String,
    /// `aws.db_instance`.
    #[serde(rename = "type", default)]
    pub ty: String,
    #[serde(default)]
    pub environment: String,
    /// `create`, `update`, `replace`, `delete` or `no-op`.
    pub change: String,
    #[serde(default)]
    pub changes: Vec<InputChange>,
}

impl Input {
    /// Parses the input; an empty `environment` is the call's.
    pub fn parse(text: &str, ctx_environment: &str) -> Result<Input, String> {
        let object = parse_object(text, "the policy input")?;
        let mut input: Input =
            serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| format!("the policy input: {e}"))?;
        if input.environment.is_empty() {
            input.environment = ctx_environment.to_string();
        }
        Ok(input)
    }
}

/// Exports a [`Policy`] as the component's `stackpipe:plugin/policy`.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        const _: () = {
            struct __StackpipePolicy;
            impl $crate::bindings::policy::exports::stackpipe::plugin::policy::Guest for __StackpipePolicy {
                fn evaluate(ctx: $crate::types::Context, input: String) -> $crate::types::Verdict {
                    <$policy as $crate::policy::Policy>::evaluate(&ctx, &input)
                }
            }
    $crate::bindings::policy::__export_policy_world!(__StackpipePolicy with_types_in $crate::bindings::policy);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inputs() {
        let i = Input::parse(
            r#"{"resource":"db","type":"aws.db_instance","change":"replace",
               "changes":[{"path":"engine","before":"\"a\"","after":null,"sensitive":false,"forces_replacement":true}]}"#,
            "prod",
        )
        .unwrap();
        assert_eq!(
            (i.ty.as_str(), i.environment.as_str(), i.changes[0].forces_replacement),
            ("aws.db_instance", "prod", true)
        );
        assert!(Input::parse("{}", "x").unwrap_err().contains("missing field `change`"));
    }
}
