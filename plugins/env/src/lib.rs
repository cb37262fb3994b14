//! The builtin `env` credentials resolver: a credential whose fields are read
//! from environment variables. The host shows the plugin only the variables
//! granted in `allow { env = [...] }`; any other one looks unset.
//!
//! Config (the plugin's `config { }`, with the credentials binding's config
//! over it): `fields = { access_key_id = "AWS_ACCESS_KEY_ID", ... }`. Without
//! `fields`: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, when set,
//! `AWS_SESSION_TOKEN`. Values are never logged nor put in errors.

mod fields;

use fields::Lookup;
use stackpipe_plugin_sdk::credentials::Credentials;
use stackpipe_plugin_sdk::{Context, Credential, log};

struct Env;

fn lookup(var: &str) -> Lookup {
    match std::env::var(var) {
        Ok(v) => Lookup::Set(v),
        Err(std::env::VarError::NotPresent) => Lookup::Unset,
        Err(std::env::VarError::NotUnicode(_)) => Lookup::NotUnicode,
    }
}

impl Credentials for Env {
    fn resolve(ctx: &Context, provider: &str, config: &str) -> Result<Credential, String> {
        let config = fields::merged_config(&ctx.config, config)?;
        let wanted = fields::fields(&config)?;
        let names: Vec<&str> = wanted.iter().map(|f| f.var.as_str()).collect();
        log::debug(ctx, &format!("resolving credentials for `{provider}` from {}", names.join(", ")));
        let values = fields::resolve(&wanted, lookup)?;
        let got: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
        log::info(ctx, &format!("resolved credentials for `{provider}`: fields {}", got.join(", ")));
        Ok(Credential { fields: values, expires_at: None })
    }
}

stackpipe_plugin_sdk::export_credentials!(Env);
