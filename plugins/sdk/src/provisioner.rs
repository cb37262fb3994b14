//! Provisioners: one [`Resource`] implementation per resource type, and a
//! [`Provisioner`] that lists them; [`export_provisioner!`](crate::export_provisioner)
//! turns that into the component's `provisioner` export.
//!
//! The SDK does the WIT plumbing: it finds the resource type by name (`note`
//! or `notes.note`), parses the plugin config, the desired attributes and the
//! stored state into your types (a bad attribute becomes a diagnostic naming
//! it), and serializes states and outputs back.
//!
//! ```
//! use stackpipe_plugin_sdk::provisioner::{Ctx, Error, Handler, Provisioner, Refresh, Resource, handler};
//! use stackpipe_plugin_sdk::serde_json::{Value, json};
//! use stackpipe_plugin_sdk::{Diagnostic, diagnostics, log};
//!
//! /// `notes.note`: remembers a text. Its state is its attributes.
//! struct Note;
//!
//! impl Resource for Note {
//!     const NAME: &'static str = "note";
//!     const DESCRIPTION: &'static str = "A remembered text.";
//!     const IMMUTABLE: &'static [&'static str] = &["slug"];
//!     type Config = Value; // not read
//!     type Desired = Value;
//!     type State = Value;
//!     type Outputs = Value;
//!
//!     fn attributes_schema() -> Value { json!({ "type": "object" }) }
//!     fn outputs_schema() -> Value { json!({ "type": "object" }) }
//!
//!     fn validate(_: &Ctx, _: &Value, desired: &Value) -> Vec<Diagnostic> {
//!         match desired.get("slug") {
//!             Some(Value::String(_)) => vec![],
//!             _ => vec![diagnostics::attribute("slug", "`slug` must be a string")],
//!         }
//!     }
//!     fn read(_: &Ctx, _: &Value, from: Refresh<Value, Value>) -> Result<Option<(Value, Value)>, Error> {
//!         // Nothing outside: what was applied is still there; an interrupted apply made nothing.
//!         Ok(match from { Refresh::Stored(s) => Some((s.clone(), s)), Refresh::Interrupted(_) => None })
//!     }
//!     fn apply(ctx: &Ctx, _: &Value, _: Option<Value>, desired: &Value) -> Result<(Value, Value), Error> {
//!         log::info(ctx, "noted");
//!         Ok((desired.clone(), desired.clone()))
//!     }
//!     fn destroy(_: &Ctx, _: &Value, _: Value) -> Result<(), Error> { Ok(()) }
//! }
//!
//! struct Notes;
//! impl Provisioner for Notes {
//!     const NAME: &'static str = "notes";
//!     fn resources() -> Vec<&'static dyn Handler> { vec![handler::<Note>()] }
//! }
//! // In the plugin crate (a cdylib): stackpipe_plugin_sdk::export_provisioner!(Notes);
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::json::{from_object, parse_object};
use crate::types::{Applied, Context, Credential, Diagnostic, ResourcePlan, ResourceType};
use crate::{diagnostics, diff};

/// A call's context: who is calling (the WIT [`Context`], also reachable
/// through `Deref`: `ctx.environment`) and the credential the call carries, if
/// a credentials binding resolved one for this plugin.
pub struct Ctx {
    pub context: Context,
    /// Use its fields for the call and drop them: never log or store them.
    pub credential: Option<Credential>,
}

impl Deref for Ctx {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.context
    }
}

/// A failed call: one line, shown to the pipeline's author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Error {
    fn from(s: String) -> Error {
        Error(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Error {
        Error(s.to_string())
    }
}

impl From<Vec<Diagnostic>> for Error {
    fn from(d: Vec<Diagnostic>) -> Error {
        Error(diagnostics::diagnostics_error(&d))
    }
}

/// What `read` refreshes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Refresh<S, D> {
    /// The state the last apply returned.
    Stored(S),
    /// No state: stackpipe lost the result of an apply that was in flight for
    /// this same pipeline, environment and resource. Look for what that apply
    /// created from these desired attributes; `None` from `read` means it
    /// created nothing, and it is applied again.
    Interrupted(D),
}

/// One resource type. All functions are associated (no `self`): a plugin
/// keeps nothing between calls, everything it needs is in the arguments.
///
/// Every call gets the plugin's config (`config = { }` in the pipeline)
/// parsed as [`Config`](Resource::Config); desired attributes, states and
/// outputs are (de)serialized with serde. Use `serde_json::Value` (or `Map`)
/// for any of them to handle the JSON by hand.
pub trait Resource: 'static {
    /// The bare type name: `note` for `notes.note`.
    const NAME: &'static str;
    const DESCRIPTION: &'static str;
    /// Attributes that cannot change in place: the default [`plan`](Resource::plan) replaces.
    const IMMUTABLE: &'static [&'static str] = &[];
    /// Attributes whose values plans must never show.
    const SENSITIVE: &'static [&'static str] = &[];

    /// The plugin's config; an absent `config { }` is `{}`.
    type Config: DeserializeOwned;
    /// The resource's attributes, as the pipeline sets them (upstream outputs filled in).
    type Desired: DeserializeOwned + Serialize;
    /// What apply leaves behind and stackpipe stores, handed back to read,
    /// plan, apply and destroy.
    type State: Serialize + DeserializeOwned;
    /// What dependents can wire (`${res.id}`).
    type Outputs: Serialize;

    /// The JSON Schema of the attributes (shown by `stackpipe plugin inspect`).
    fn attributes_schema() -> Value;
    /// The JSON Schema of the outputs.
    fn outputs_schema() -> Value;

    /// Checks desired attributes (they already parsed as `Desired`) without
    /// touching anything. Default: nothing more to check.
    fn validate(ctx: &Ctx, cfg: &Self::Config, desired: &Self::Desired) -> Vec<Diagnostic> {
        let _ = (ctx, cfg, desired);
        Vec::new()
    }

    /// Refreshes the resource from the real world: its state and outputs now,
    /// or `None` when it is gone.
    #[allow(clippy::type_complexity)] // spelled out: this is the signature authors copy
    fn read(
        ctx: &Ctx,
        cfg: &Self::Config,
        from: Refresh<Self::State, Self::Desired>,
    ) -> Result<Option<(Self::State, Self::Outputs)>, Error>;

    /// What apply would do to go from `prior` (none: not created yet) to
    /// `desired`. Default: [`diff::plan`] of
    /// [`prior_attributes`](Resource::prior_attributes) against the desired
    /// attributes as JSON, with [`IMMUTABLE`](Resource::IMMUTABLE) and
    /// [`SENSITIVE`](Resource::SENSITIVE).
    fn plan(
        ctx: &Ctx,
        cfg: &Self::Config,
        prior: Option<&Self::State>,
        desired: &Self::Desired,
    ) -> Result<ResourcePlan, Error> {
        let _ = (ctx, cfg);
        let before = prior.map(Self::prior_attributes);
        let after = to_json_value(desired, "the desired attributes")?;
        Ok(diff::plan(before.as_ref(), &after, &diff::Rules { immutable: Self::IMMUTABLE, sensitive: Self::SENSITIVE }))
    }

    /// The attributes a state was applied from, for the default plan.
    /// Default: the whole state as JSON (right when the state is the attributes).
    fn prior_attributes(state: &Self::State) -> Value {
        serde_json::to_value(state).unwrap_or(Value::Null)
    }

    /// Creates (`prior` none), updates or replaces the resource.
    fn apply(
        ctx: &Ctx,
        cfg: &Self::Config,
        prior: Option<Self::State>,
        desired: &Self::Desired,
    ) -> Result<(Self::State, Self::Outputs), Error>;

    /// Deletes the resource. Deleting one that is already gone succeeds.
    fn destroy(ctx: &Ctx, cfg: &Self::Config, state: Self::State) -> Result<(), Error>;
}

/// A provisioner plugin: its name and its resource types.
pub trait Provisioner {
    /// The plugin's name, for messages (`the notes plugin handles `note``).
    const NAME: &'static str;
    /// The resource types: `vec![handler::<Note>(), handler::<Tag>()]`.
    fn resources() -> Vec<&'static dyn Handler>;
}

/// A resource type behind a uniform, JSON-text interface: what
/// [`handler`] makes of a [`Resource`]. Implement it by hand only to bypass
/// the typed layer.
pub trait Handler {
    fn name(&self) -> &'static str;
    fn resource_type(&self) -> ResourceType;
    fn validate(&self, ctx: &Ctx, desired: &str) -> Vec<Diagnostic>;
    fn read(&self, ctx: &Ctx, state: Option<String>, desired: &str) -> Result<Option<Applied>, String>;
    fn plan(&self, ctx: &Ctx, prior: Option<&str>, desired: &str) -> Result<ResourcePlan, String>;
    fn apply(&self, ctx: &Ctx, prior: Option<&str>, desired: &str) -> Result<Applied, String>;
    fn destroy(&self, ctx: &Ctx, state: &str) -> Result<(), String>;
}

struct Typed<R>(PhantomData<fn() -> R>);

/// The [`Handler`] of a resource type, to list in [`Provisioner::resources`].
pub fn handler<R: Resource>() -> &'static dyn Handler {
    &Typed::<R>(PhantomData)
}

const ATTRIBUTES: &str = "the resource's attributes";

fn to_json_value(value: &impl Serialize, what: &str) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|e| Error(format!("cannot serialize {what}: {e}")))
}

fn to_json_text(value: &impl Serialize, what: &str) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| format!("cannot serialize {what}: {e}"))
}

/// The plugin config, parsed. An error names the config.
pub fn parse_config<C: DeserializeOwned>(text: &str) -> Result<C, String> {
    let object = parse_object(text, "the plugin config")?;
    serde_json::from_value(Value::Object(object)).map_err(|e| format!("the plugin config: {e}"))
}

/// Desired attributes, parsed; the diagnostics name the attribute at fault.
pub fn parse_desired<D: DeserializeOwned>(text: &str) -> Result<D, Vec<Diagnostic>> {
    let object: Map<String, Value> = parse_object(text, ATTRIBUTES).map_err(|e| vec![diagnostics::whole(e)])?;
    from_object(object).map_err(|d| vec![d])
}

impl<R: Resource> Typed<R> {
    fn config(ctx: &Ctx) -> Result<R::Config, String> {
        parse_config(&ctx.config)
    }

    fn desired(desired: &str) -> Result<R::Desired, String> {
        parse_desired(desired).map_err(|d| diagnostics::diagnostics_error(&d))
    }

    fn state(&self, state: &str) -> Result<R::State, String> {
        let object = parse_object(state, "the stored state")?;
        serde_json::from_value(Value::Object(object))
            .map_err(|e| format!("cannot read the stored `{}` state: {e}", R::NAME))
    }

    fn applied((state, outputs): (R::State, R::Outputs)) -> Result<Applied, String> {
        Ok(Applied { state: to_json_text(&state, "the state")?, outputs: to_json_text(&outputs, "the outputs")? })
    }
}

impl<R: Resource> Handler for Typed<R> {
    fn name(&self) -> &'static str {
        R::NAME
    }

    fn resource_type(&self) -> ResourceType {
        ResourceType {
            name: R::NAME.to_string(),
            description: R::DESCRIPTION.to_string(),
            attributes_schema: R::attributes_schema().to_string(),
            outputs_schema: R::outputs_schema().to_string(),
        }
    }

    fn validate(&self, ctx: &Ctx, desired: &str) -> Vec<Diagnostic> {
        let cfg = Self::config(ctx);
        let mut diags = match (parse_desired::<R::Desired>(desired), &cfg) {
            (Err(d), _) => d,
            (Ok(desired), Ok(cfg)) => R::validate(ctx, cfg, &desired),
            (Ok(_), Err(_)) => Vec::new(),
        };
        if let Err(e) = cfg {
            diags.push(diagnostics::whole(e));
        }
        diags
    }

    fn read(&self, ctx: &Ctx, state: Option<String>, desired: &str) -> Result<Option<Applied>, String> {
        let cfg = Self::config(ctx)?;
        let from = match state {
            Some(state) => Refresh::Stored(self.state(&state)?),
            None => Refresh::Interrupted(Self::desired(desired)?),
        };
        R::read(ctx, &cfg, from).map_err(|e| e.0)?.map(Self::applied).transpose()
    }

    fn plan(&self, ctx: &Ctx, prior: Option<&str>, desired: &str) -> Result<ResourcePlan, String> {
        let cfg = Self::config(ctx)?;
        let desired = Self::desired(desired)?;
        let prior = prior.map(|p| self.state(p)).transpose()?;
        R::plan(ctx, &cfg, prior.as_ref(), &desired).map_err(|e| e.0)
    }

    fn apply(&self, ctx: &Ctx, prior: Option<&str>, desired: &str) -> Result<Applied, String> {
        let cfg = Self::config(ctx)?;
        let desired = Self::desired(desired)?;
        let prior = prior.map(|p| self.state(p)).transpose()?;
        Self::applied(R::apply(ctx, &cfg, prior, &desired).map_err(|e| e.0)?)
    }

    fn destroy(&self, ctx: &Ctx, state: &str) -> Result<(), String> {
        let cfg = Self::config(ctx)?;
        let state = self.state(state)?;
        R::destroy(ctx, &cfg, state).map_err(|e| e.0)
    }
}

/// `a`, `a` and `b`, `a`, `b` and `c`: names in backquotes.
fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        None => "nothing".to_string(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The resource type called `kind` (`note`, or `notes.note` with the plugin's name).
pub fn find<P: Provisioner>(kind: &str) -> Result<&'static dyn Handler, String> {
    let resources = P::resources();
    let bare = kind.strip_prefix(P::NAME).and_then(|k| k.strip_prefix('.')).unwrap_or(kind);
    match resources.iter().find(|h| h.name() == bare) {
        Some(h) => Ok(*h),
        None => {
            let names: Vec<&str> = resources.iter().map(|h| h.name()).collect();
            Err(format!("unknown resource type `{kind}`: the {} plugin handles {}", P::NAME, list(&names)))
        }
    }
}

/// The dispatch behind [`export_provisioner!`](crate::export_provisioner),
/// one function per WIT function.
#[doc(hidden)]
pub mod dispatch {
    use super::*;

    fn ctx(context: Context, credential: Option<Credential>) -> Ctx {
        Ctx { context, credential }
    }

    pub fn resource_types<P: Provisioner>() -> Vec<ResourceType> {
        P::resources().iter().map(|h| h.resource_type()).collect()
    }

    pub fn validate<P: Provisioner>(context: Context, kind: String, desired: String) -> Vec<Diagnostic> {
        match find::<P>(&kind) {
            Ok(h) => h.validate(&ctx(context, None), &desired),
            Err(e) => vec![diagnostics::whole(e)],
        }
    }

    pub fn read<P: Provisioner>(
        context: Context,
        kind: String,
        state: Option<String>,
        desired: String,
        cred: Option<Credential>,
    ) -> Result<Option<Applied>, String> {
        find::<P>(&kind)?.read(&ctx(context, cred), state, &desired)
    }

    pub fn plan<P: Provisioner>(
        context: Context,
        kind: String,
        prior: Option<String>,
        desired: String,
        cred: Option<Credential>,
    ) -> Result<ResourcePlan, String> {
        find::<P>(&kind)?.plan(&ctx(context, cred), prior.as_deref(), &desired)
    }

    pub fn apply<P: Provisioner>(
        context: Context,
        kind: String,
        prior: Option<String>,
        desired: String,
        cred: Option<Credential>,
    ) -> Result<Applied, String> {
        find::<P>(&kind)?.apply(&ctx(context, cred), prior.as_deref(), &desired)
    }

    pub fn destroy<P: Provisioner>(
        context: Context,
        kind: String,
        state: String,
        cred: Option<Credential>,
    ) -> Result<(), String> {
        find::<P>(&kind)?.destroy(&ctx(context, cred), &state)
    }
}

/// Exports a [`Provisioner`] as the component's `stackpipe:plugin/provisioner`:
/// `stackpipe_plugin_sdk::export_provisioner!(Notes);`, once, in the plugin crate.
#[macro_export]
macro_rules! export_provisioner {
    ($provisioner:ty) => {
        const _: () = {
            use $crate::provisioner::dispatch;
            use $crate::types::{Applied, Context, Credential, Diagnostic, ResourcePlan, ResourceType};
            struct __StackpipeProvisioner;
            impl $crate::bindings::provisioner::exports::stackpipe::plugin::provisioner::Guest
                for __StackpipeProvisioner
            {
                fn resource_types() -> Vec<ResourceType> {
                    dispatch::resource_types::<$provisioner>()
                }
                fn validate(ctx: Context, kind: String, desired: String) -> Vec<Diagnostic> {
                    dispatch::validate::<$provisioner>(ctx, kind, desired)
                }
                fn read(
                    ctx: Context,
                    kind: String,
                    state: Option<String>,
                    desired: String,
                    cred: Option<Credential>,
                ) -> Result<Option<Applied>, String> {
                    dispatch::read::<$provisioner>(ctx, kind, state, desired, cred)
                }
                fn plan(
                    ctx: Context,
                    kind: String,
                    prior: Option<String>,
                    desired: String,
                    cred: Option<Credential>,
                ) -> Result<ResourcePlan, String> {
                    dispatch::plan::<$provisioner>(ctx, kind, prior, desired, cred)
                }
                fn apply(
                    ctx: Context,
                    kind: String,
                    prior: Option<String>,
                    desired: String,
                    cred: Option<Credential>,
                ) -> Result<Applied, String> {
                    dispatch::apply::<$provisioner>(ctx, kind, prior, desired, cred)
                }
                fn destroy(ctx: Context, kind: String, state: String, cred: Option<Credential>) -> Result<(), String> {
                    dispatch::destroy::<$provisioner>(ctx, kind, state, cred)
                }
            }
            $crate::bindings::provisioner::__export_provisioner_world!(
                __StackpipeProvisioner with_types_in $crate::bindings::provisioner
            );
        };
    };
}
