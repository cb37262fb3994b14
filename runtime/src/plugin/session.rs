//! A provisioner session: one instance for the calls of one stack job
//! (`resource-types`, `validate`, `read`, `plan`, `apply`, `destroy`), each
//! made through [`ProvisionerSession::call`] under the plugin's wall-time
//! limit, and its result checked before it is handed on.

use serde_json::Value;
use wasmtime::Store;

use super::bindings;
use super::bindings::provisioner::exports::stackpipe::plugin::provisioner::Guest;
use super::bindings::types::{Diagnostic as PluginDiagnostic, ResourcePlan, ResourceType};
use super::epoch::{self, TIMEOUT_SLACK};
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

impl ProvisionerSession<'_> {
    pub fn plugin(&self) -> &LoadedPlugin {
        self.plugin
    }

    pub async fn resource_types(&mut self) -> Result<Vec<ResourceType>, PluginError> {
        self.call("resource-types", async |g, store| g.call_resource_types(store).await.map(Ok)).await
    }

    pub async fn validate(&mut self, ctx: &CallContext, kind: &str, desired: &Value) -> Result<Vec<PluginDiagnostic>, PluginError> {
        let (c, desired) = (self.context(ctx), desired.to_string());
        self.call("validate", async |g, store| g.call_validate(store, &c, kind, &desired).await.map(Ok)).await
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
        let c = self.context(ctx);
        let (state, desired, cred) = wire(state, desired, cred);
        let found = self
            .call("read", async |g, store| g.call_read(store, &c, kind, state.as_ref(), &desired, cred.as_ref()).await)
            .await?;
        found.map(|applied| self.decode("read", applied)).transpose()
    }

    pub async fn plan(
        &mut self,
        ctx: &CallContext,
        kind: &str,
        prior: Option<&Value>,
        desired: &Value,
        cred: Option<&Credential>,
    ) -> Result<ResourcePlan, PluginError> {
        let c = self.context(ctx);
        let (prior, desired, cred) = wire(prior, desired, cred);
        let plan = self
            .call("plan", async |g, store| g.call_plan(store, &c, kind, prior.as_ref(), &desired, cred.as_ref()).await)
            .await?;
        let size: usize = plan
            .changes
            .iter()
            .map(|ch| ch.path.len() + ch.before.as_ref().map_or(0, String::len) + ch.after.as_ref().map_or(0, String::len))
            .sum();
        self.plugin.check_size("plan", size)?;
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
        let c = self.context(ctx);
        let (prior, desired, cred) = wire(prior, desired, cred);
        let applied = self
            .call("apply", async |g, store| g.call_apply(store, &c, kind, prior.as_ref(), &desired, cred.as_ref()).await)
            .await?;
        self.decode("apply", applied)
    }

    pub async fn destroy(&mut self, ctx: &CallContext, kind: &str, state: &Value, cred: Option<&Credential>) -> Result<(), PluginError> {
        let (c, state, cred) = (self.context(ctx), state.to_string(), cred.map(Credential::to_wit));
        self.call("destroy", async |g, store| g.call_destroy(store, &c, kind, &state, cred.as_ref()).await).await
    }

    /// The context of a call about to be made: its lines go where `ctx` says.
    fn context(&mut self, ctx: &CallContext) -> bindings::types::Context {
        self.store.data_mut().log = ctx.log.clone();
        self.plugin.context(ctx)
    }

    /// Runs one call on the session's instance under the plugin's wall-time
    /// limit. What the call can end in (a trap, a limit hit, the time up) is
    /// mapped to a [`PluginError`], and so is an `Err` the plugin returns:
    /// the functions that cannot fail have their result wrapped in `Ok`.
    async fn call<T>(
        &mut self,
        op: &'static str,
        call: impl AsyncFnOnce(&Guest, &mut Store<PluginState>) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<T, PluginError> {
        let plugin = self.plugin;
        epoch::start_call(&mut self.store, plugin.timeout());
        let guest = self.instance.stackpipe_plugin_provisioner();
        let raw = tokio::time::timeout(plugin.timeout() + TIMEOUT_SLACK, call(guest, &mut self.store)).await;
        plugin.finish(&self.store, op, raw)?.map_err(|m| plugin.failed(&self.store, op, m))
    }

    /// A returned state and outputs: bounded in size, and JSON.
    fn decode(&self, op: &'static str, applied: bindings::types::Applied) -> Result<Applied, PluginError> {
        self.plugin.check_size(op, applied.state.len() + applied.outputs.len())?;
        Ok(Applied {
            state: self.plugin.json(&self.store, op, &applied.state)?,
            outputs: self.plugin.json(&self.store, op, &applied.outputs)?,
        })
    }
}

/// A provisioner call's state, desired attributes and credential as the
/// WIT passes them: JSON text, and the credential's record.
fn wire(
    state: Option<&Value>,
    desired: &Value,
    cred: Option<&Credential>,
) -> (Option<String>, String, Option<super::bindings::types::Credential>) {
    (state.map(Value::to_string), desired.to_string(), cred.map(Credential::to_wit))
}
