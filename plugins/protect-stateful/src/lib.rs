//! The builtin `protect-stateful` policy: refuses to delete or replace a
//! stateful resource (a database, a bucket, a DNS zone, ...) in a protected
//! environment, asks for approval before any other delete, and allows the rest.
//!
//! Config: `environments = ["prod"]` (default `["prod", "production"]`) and
//! `types = [...]` (also read from `stateful = [...]`; default: the AWS types
//! that hold data). A type ending in `*` matches by prefix.

mod decide;

use stackpipe_plugin_sdk::policy::Policy;
use stackpipe_plugin_sdk::{Context, Verdict, log};

struct ProtectStateful;

impl Policy for ProtectStateful {
    fn evaluate(ctx: &Context, input: &str) -> Verdict {
        // A policy that cannot read its config or input refuses: it fails closed.
        let cfg = match decide::config(&ctx.config) {
            Ok(c) => c,
            Err(e) => return Verdict::Deny(format!("protect-stateful: {e}")),
        };
        let input = match decide::input(input, &ctx.environment) {
            Ok(i) => i,
            Err(e) => return Verdict::Deny(format!("protect-stateful: {e}")),
        };
        let verdict = decide::decide(&cfg, &input);
        let said = match &verdict {
            Verdict::Allow => "allow".to_string(),
            Verdict::Deny(why) => format!("deny: {why}"),
            Verdict::RequireApproval(why) => format!("require approval: {why}"),
        };
        log::debug(
            ctx,
            &format!("{} `{}` ({}) in `{}`: {said}", input.change, input.resource, input.ty, input.environment),
        );
        verdict
    }
}

stackpipe_plugin_sdk::export_policy!(ProtectStateful);
