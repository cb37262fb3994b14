//! A provisioner session: one instance for the calls of one stack job
//! (`resource-types`, `validate`, `read`, `plan`, `apply`, `destroy`), each
//! under the plugin's wall-time limit, and its result checked before it is
//! handed on.

use serde_json::Value;
use wasmtime::Store;

use super::bindings;
use super::bindings::types::{Diagnostic as PluginDiagnostic, ResourcePlan, ResourceType};
use super::epoch::{self, EPOCH_TICK};
use super::{Applied, CallContext, Credential, LoadedPlugin, PluginError, PluginState};

/// A provisioner instance for several calls: the operations of one stack
/// job share it rather than instantiating once per call. Each call has the
/// plugin's full wall-time limit; the memory limit covers the instance.
pub struct ProvisionerSession<'p> {
    plugin: &'p LoadedPlugin,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    store: Store<PluginState>,
    instance: bindings::provisioner::ProvisionerPlugin,
}

impl<'p> ProvisionerSession<'p> {
    pub(super) fn new(
        plugin: &'p LoadedPlugin,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
        store: Store<PluginState>,
        instance: bindings::provisioner::ProvisionerPlugin,
    ) -> Self {
        ProvisionerSession { plugin, _slot: slot, store, instance }
    }
}

/// Runs one call on a session under the plugin's wall-time limit.
macro_rules! call {
    ($session:ident, $op:literal, |$guest:ident, $store:ident| $body:expr) => {{
        let plugin = $session.plugin;
        epoch::start_call(&mut $session.store, plugin.timeout());
        let raw = {
            let $store = &mut $session.store;
            let $guest = $session.instance.stackpipe_plugin_provisioner();
            tokio::time::timeout(plugin.timeout() + EPOCH_TICK * 10, $body).await
        };
        plugin.finish(&$session.store, $op, raw)?
    }};
}

impl ProvisionerSession<'_> {
    pub fn plugin(&self) -> &LoadedPlugin {
        self.plugin
    }

    pub async fn resource_types(&mut self) -> Result<Vec<ResourceType>, PluginError> {
        let s = self;
        Ok(call!(s, "resource-types", |g, store| g.call_resource_types(store)))
    }

    pub async fn validate(&mut self, ctx: &CallContext, kind: &str, desired: &Value) -> Result<Vec<PluginDiagnostic>, PluginError> {
        let (c, desired) = (self.plugin.context(ctx), desired.to_string());
        let s = self;
        Ok(call!(s, "validate", |g, store| g.call_validate(store, &c, kind, &desired)))
    }

    /// Refreshes a resource: its state and outputs now, or none when it is
    /// gone. With no `state`, asks the provisioner to find what an
    /// interrupted apply of `desired` for this context created.
    pub async fn read(
        &mut self,
        ctx: &CallContext,
        kind: &str,
        state: Option<&Value>,
        desired: &Value,
        cred: Option<&Credential>,
    ) -> Result<Option<Applied>, PluginError> {
        let c = self.plugin.context(ctx);
        let (state, desired, cred) = (state.map(Value::to_string), desired.to_string(), cred.map(Credential::to_wit));
        let s = self;
        let out = call!(s, "read", |g, store| g.call_read(store, &c, kind, state.as_ref(), &desired, cred.as_ref()));
        match out {
            Ok(None) => Ok(None),
            Ok(Some(applied)) => s.decode("read", applied).map(Some),
            Err(m) => Err(s.plugin.failed(&s.store, "read", m)),
        }
    }

    pub async fn plan(
        &mut self,
        ctx: &CallContext,
        kind: &str,
        prior: Option<&Value>,
        desired: &Value,
        cred: Option<&Credential>,
    ) -> Result<ResourcePlan, PluginError> {
        let c = self.plugin.context(ctx);
        let (prior, desired, cred) = (prior.map(Value::to_string), desired.to_string(), cred.map(Credential::to_wit));
        let s = self;
        let out = call!(s, "plan", |g, store| g.call_plan(store, &c, kind, prior.as_ref(), &desired, cred.as_ref()));
        let plan = out.map_err(|m| s.plugin.failed(&s.store, "plan", m))?;
        let size: usize = plan
            .changes
            .iter()
            .map(|ch| ch.path.len() + ch.before.as_ref().map_or(0, String::len) + ch.after.as_ref().map_or(0, String::len))
            .sum();
        s.plugin.check_size("plan", size)?;
        Ok(plan)
    }

    pub async fn apply(
        &mut self,
        ctx: &CallContext,
        kind: &str,
        prior: Option<&Value>,
        desired: &Value,
        cred: Option<&Credential>,
    ) -> Result<Applied, PluginError> {
        let c = self.plugin.context(ctx);
        let (prior, desired, cred) = (prior.map(Value::to_string), desired.to_string(), cred.map(Credential::to_wit));
        let s = self;
        let out = call!(s, "apply", |g, store| g.call_apply(store, &c, kind, prior.as_ref(), &desired, cred.as_ref()));
        let applied = out.map_err(|m| s.plugin.failed(&s.store, "apply", m))?;
        s.decode("apply", applied)
    }

    /// A returned state and outputs: bounded in size, and JSON.
    fn decode(&self, op: &'static str, applied: bindings::types::Applied) -> Result<Applied, PluginError> {
        self.plugin.check_size(op, applied.state.len() + applied.outputs.len())?;
        Ok(Applied {
            state: self.plugin.json(&self.store, op, &applied.state)?,
            outputs: self.plugin.json(&self.store, op, &applied.outputs)?,
        })
    }

    pub async fn destroy(&mut self, ctx: &CallContext, kind: &str, state: &Value, cred: Option<&Credential>) -> Result<(), PluginError> {
        let (c, state, cred) = (self.plugin.context(ctx), state.to_string(), cred.map(Credential::to_wit));
        let s = self;
        let out = call!(s, "destroy", |g, store| g.call_destroy(store, &c, kind, &state, cred.as_ref()));
        out.map_err(|m| s.plugin.failed(&s.store, "destroy", m))
    }
}
