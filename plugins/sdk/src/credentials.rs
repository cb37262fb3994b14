//! Credentials resolvers: implement [`Credentials`], export it with
//! [`export_credentials!`](crate::export_credentials).
//!
//! ```
//! use stackpipe_plugin_sdk::credentials::{Credentials, merged_config};
//! use stackpipe_plugin_sdk::{Context, Credential};
//!
//! struct Fixed;
//! impl Credentials for Fixed {
//!     fn resolve(ctx: &Context, provider: &str, config: &str) -> Result<Credential, String> {
//!         let config = merged_config(&ctx.config, config)?;
//!         let token = config.get("token").and_then(|v| v.as_str()).ok_or("config `token` is required")?;
//!         Ok(Credential { fields: vec![("token".into(), token.into())], expires_at: None })
//!     }
//! }
//! // In the plugin crate: stackpipe_plugin_sdk::export_credentials!(Fixed);
//! ```

use serde_json::{Map, Value};

use crate::json::parse_object;
use crate::types::{Context, Credential};

/// A credentials resolver. Never log a credential value nor put one in an error.
pub trait Credentials {
    /// Resolves the credential for `provider` (the provisioner plugin's name).
    /// `config` is the binding's (`credentials aws { resolver = keys config { .. } }`);
    /// `ctx.config` is this plugin's own: [`merged_config`] puts the first over the second.
    fn resolve(ctx: &Context, provider: &str, config: &str) -> Result<Credential, String>;
}

/// The plugin's own config with the credentials binding's config over it
/// (where both set a key, the binding's wins).
pub fn merged_config(plugin_config: &str, binding_config: &str) -> Result<Map<String, Value>, String> {
    let mut config = parse_object(plugin_config, "the plugin config")?;
    config.extend(parse_object(binding_config, "the credentials config")?);
    Ok(config)
}

/// Exports a [`Credentials`] as the component's `stackpipe:plugin/credentials`.
#[macro_export]
macro_rules! export_credentials {
    ($resolver:ty) => {
        const _: () = {
            struct __StackpipeCredentials;
            impl $crate::bindings::credentials::exports::stackpipe::plugin::credentials::Guest
                for __StackpipeCredentials
            {
                fn resolve(
                    ctx: $crate::types::Context,
                    provider: String,
                    config: String,
                ) -> Result<$crate::types::Credential, String> {
                    <$resolver as $crate::credentials::Credentials>::resolve(&ctx, &provider, &config)
                }
            }
            $crate::bindings::credentials::__export_credentials_world!(
                __StackpipeCredentials with_types_in $crate::bindings::credentials
            );
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_config_wins() {
        let m = merged_config(r#"{"a":1,"b":1}"#, r#"{"b":2}"#).unwrap();
        assert_eq!((m["a"].as_i64(), m["b"].as_i64()), (Some(1), Some(2)));
        assert_eq!(merged_config("", "[]").unwrap_err(), "the credentials config must be a JSON object");
    }
}
