//! The plugins shipped inside the binary. They are built from `plugins/` by
//! `plugins/build.sh`; CI rebuilds them and fails if the committed
//! components differ from what the sources produce.

/// `builtin:<name>` -> the component's bytes.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Every builtin's name.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(n, _)| *n)
}

const BUILTINS: &[(&str, &[u8])] = &[
    ("local", include_bytes!("../../../plugins/dist/local.wasm")),
    ("test", include_bytes!("../../../plugins/dist/test.wasm")),
    ("env", include_bytes!("../../../plugins/dist/env.wasm")),
    ("file", include_bytes!("../../../plugins/dist/file.wasm")),
    ("protect-stateful", include_bytes!("../../../plugins/dist/protect-stateful.wasm")),
    ("aws", include_bytes!("../../../plugins/dist/aws.wasm")),
];
