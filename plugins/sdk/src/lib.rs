//! Write a [stackpipe](https://github.com/stackpipe) plugin as plain Rust.
//!
//! A plugin is a WebAssembly component (`cargo build --release --target
//! wasm32-wasip2`, crate type `cdylib`) that exports one of the three worlds of
//! `wit/plugin.wit`. This crate wraps the bindings: implement a trait, export
//! it with a macro.
//!
//! | kind | implement | export with |
//! | --- | --- | --- |
//! | provisioner | [`provisioner::Resource`] per resource type, and [`provisioner::Provisioner`] listing them | [`export_provisioner!`] |
//! | credentials resolver | [`credentials::Credentials`] | [`export_credentials!`] |
//! | policy | [`policy::Policy`] | [`export_policy!`] |
//!
//! Around them: [`diff`] (plans from two JSON objects), [`log`] (the host's
//! log), [`http`] (a blocking client over `wasi:http`), [`grants`] (which
//! directories the pipeline granted), [`files`] (a granted file's permission
//! bits), [`json`] and [`diagnostics`].
//!
//! ```ignore
//! use stackpipe_plugin_sdk::provisioner::{Ctx, Error, Provisioner, Refresh, Resource, handler, Handler};
//! use stackpipe_plugin_sdk::{export_provisioner, serde_json::{json, Value}};
//!
//! struct Notes;
//! impl Provisioner for Notes {
//!     const NAME: &'static str = "notes";
//!     fn resources() -> Vec<&'static dyn Handler> { vec![handler::<Note>()] }
//! }
//! // impl Resource for Note { ... } (see the provisioner module)
//! export_provisioner!(Notes);
//! ```
//!
//! The SDK is self-contained so that a plugin project can vendor it (`stackpipe
//! plugin new` copies it to `<project>/sdk`).

pub mod credentials;
pub mod diagnostics;
pub mod diff;
pub mod files;
pub mod grants;
pub mod http;
pub mod json;
pub mod log;
pub mod policy;
pub mod provisioner;

pub use serde;
pub use serde_json;

/// The generated bindings, one module per world; the three share
/// [`types`](bindings::provisioner::stackpipe::plugin::types) and `host`.
#[doc(hidden)]
pub mod bindings {
    pub mod provisioner {
        wit_bindgen::generate!({
            path: "wit",
            world: "provisioner-plugin",
            pub_export_macro: true,
            export_macro_name: "__export_provisioner_world",
            default_bindings_module: "stackpipe_plugin_sdk::bindings::provisioner",
        });
    }
    pub mod credentials {
        wit_bindgen::generate!({
            path: "wit",
            world: "credentials-plugin",
            pub_export_macro: true,
            export_macro_name: "__export_credentials_world",
            default_bindings_module: "stackpipe_plugin_sdk::bindings::credentials",
            with: {
                "stackpipe:plugin/types@0.1.0": crate::bindings::provisioner::stackpipe::plugin::types,
                "stackpipe:plugin/host@0.1.0": crate::bindings::provisioner::stackpipe::plugin::host,
            },
        });
    }
    pub mod policy {
        wit_bindgen::generate!({
            path: "wit",
            world: "policy-plugin",
            pub_export_macro: true,
            export_macro_name: "__export_policy_world",
            default_bindings_module: "stackpipe_plugin_sdk::bindings::policy",
            with: {
                "stackpipe:plugin/types@0.1.0": crate::bindings::provisioner::stackpipe::plugin::types,
                "stackpipe:plugin/host@0.1.0": crate::bindings::provisioner::stackpipe::plugin::host,
            },
        });
    }
}

/// The WIT types (`package stackpipe:plugin@0.1.0`, interface `types`).
pub mod types {
    pub use crate::bindings::provisioner::stackpipe::plugin::types::{
        Applied, AttributeChange, Change, Context, Credential, Diagnostic, Level, ResourcePlan, ResourceType, Verdict,
    };
}

pub use types::*;
