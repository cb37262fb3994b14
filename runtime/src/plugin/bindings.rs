//! Host bindings generated from `wit/`. One module per world; the credentials
//! and policy worlds reuse the provisioner world's `types` and `host`, so a
//! `Context` or `Credential` is one Rust type whichever world it crosses.

pub mod provisioner {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "provisioner-plugin",
        exports: { default: async },
    });
}

pub mod credentials {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "credentials-plugin",
        exports: { default: async },
        with: {
            "stackpipe:plugin/types": super::provisioner::stackpipe::plugin::types,
            "stackpipe:plugin/host": super::provisioner::stackpipe::plugin::host,
        },
    });
}

pub mod policy {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy-plugin",
        exports: { default: async },
        with: {
            "stackpipe:plugin/types": super::provisioner::stackpipe::plugin::types,
            "stackpipe:plugin/host": super::provisioner::stackpipe::plugin::host,
        },
    });
}

pub use provisioner::stackpipe::plugin::files;
pub use provisioner::stackpipe::plugin::host;
pub use provisioner::stackpipe::plugin::types;
