// Shared by every hostile provisioner, pulled in with `include!` right after
// `wit_bindgen::generate!`: everything but `apply` behaves like a well-mannered
// plugin, so the host can load the component, list its types and plan with it
// before the call that misbehaves. Each crate defines
// `fn apply(ctx, kind, prior, desired, cred) -> Result<Applied, String>`.

#[allow(unused_imports)]
use exports::stackpipe::plugin::provisioner::{
    Applied, Context, Credential, Diagnostic, Guest, Json, ResourcePlan, ResourceType,
};
use stackpipe::plugin::types::Change;

struct Hostile;

impl Guest for Hostile {
    fn resource_types() -> Vec<ResourceType> {
        vec![ResourceType {
            name: "step".to_string(),
            description: "A step whose apply misbehaves on purpose (sandbox test fixture).".to_string(),
            attributes_schema: r#"{"type":"object"}"#.to_string(),
            outputs_schema: r#"{"type":"object"}"#.to_string(),
        }]
    }

    fn validate(_ctx: Context, _kind: String, _desired: Json) -> Vec<Diagnostic> {
        Vec::new()
    }

    fn read(
        _ctx: Context,
        _kind: String,
        state: Option<Json>,
        _desired: Json,
        _cred: Option<Credential>,
    ) -> Result<Option<Applied>, String> {
        Ok(state.map(|state| Applied { state, outputs: "{}".into() }))
    }

    fn plan(
        _ctx: Context,
        _kind: String,
        _prior: Option<Json>,
        _desired: Json,
        _cred: Option<Credential>,
    ) -> Result<ResourcePlan, String> {
        Ok(ResourcePlan { change: Change::Create, changes: Vec::new() })
    }

    fn apply(
        ctx: Context,
        kind: String,
        prior: Option<Json>,
        desired: Json,
        cred: Option<Credential>,
    ) -> Result<Applied, String> {
        apply(ctx, kind, prior, desired, cred)
    }

    fn destroy(
        _ctx: Context,
        _kind: String,
        _state: Json,
        _cred: Option<Credential>,
    ) -> Result<(), String> {
        Ok(())
    }
}

export!(Hostile);

/// `s` as a JSON string literal (quotes and escapes included).
#[allow(dead_code)]
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
