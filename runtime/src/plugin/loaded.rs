//! A loaded plugin: a compiled, linked component (`InstancePre`) with its
//! grants and limits, and the calls the run makes on it. Each instance gets
//! a fresh store: a provisioner's serves a [`ProvisionerSession`], a
//! resolver's or a policy's the one call it is made for.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wasmtime::{Engine, Store};

use stackpipe_dsl::ast::PluginKind;
use stackpipe_dsl::Limits;

use super::artifact_cache::CacheOutcome;
use super::bindings::types::{ResourceType, Verdict};
use super::bindings::{self, credentials::CredentialsPluginPre, policy::PolicyPluginPre, provisioner::ProvisionerPluginPre};
use super::epoch::{self, TIMEOUT_SLACK};
use super::session::ProvisionerSession;
use super::{CallContext, Credential, PluginError, PluginHost, PluginState, PolicyVerdict, Sandbox};

/// The linked component, typed by the world it implements.
pub(super) enum Typed {
    Provisioner(ProvisionerPluginPre<PluginState>),
    Credentials(CredentialsPluginPre<PluginState>),
    Policy(PolicyPluginPre<PluginState>),
}

/// A compiled, linked plugin, ready to be called.
pub struct LoadedPlugin {
    pub(super) name: Arc<str>,
    pub(super) kind: PluginKind,
    pub(super) digest: String,
    pub(super) cache: CacheOutcome,
    pub(super) exports: Vec<String>,
    pub(super) typed: Typed,
    pub(super) sandbox: Sandbox,
    pub(super) limits: Limits,
    /// The plugin's `config { }`, as JSON, handed to every call in its context.
    pub(super) config: String,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn kind(&self) -> PluginKind {
        self.kind
    }
    /// SHA-256 of the component.
    pub fn digest(&self) -> &str {
        &self.digest
    }
    /// Whether loading it used the compiled-artifact cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }
    pub fn exports(&self) -> &[String] {
        &self.exports
    }
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Instantiates a provisioner for one or more calls.
    pub async fn session(&self, host: &PluginHost) -> Result<ProvisionerSession<'_>, PluginError> {
        let Typed::Provisioner(pre) = &self.typed else {
            return Err(self.not_this_kind("instantiate", PluginKind::Provisioner));
        };
        let slot = host.slot().await;
        let mut store = self.store(host.engine())?;
        let raw = tokio::time::timeout(self.timeout(), pre.instantiate_async(&mut store)).await;
        let instance = self.finish(&store, "instantiate", raw)?;
        Ok(ProvisionerSession::new(self, slot, store, instance))
    }

    /// The resource types a provisioner declares.
    pub async fn resource_types(&self, host: &PluginHost) -> Result<Vec<ResourceType>, PluginError> {
        self.session(host).await?.resource_types().await
    }

    /// Resolves a credential (credentials plugins).
    pub async fn resolve(&self, host: &PluginHost, ctx: &CallContext, provider: &str, config: &Value) -> Result<Credential, PluginError> {
        let Typed::Credentials(pre) = &self.typed else {
            return Err(self.not_this_kind("resolve", PluginKind::Credentials));
        };
        let (c, config) = (self.context(ctx), config.to_string());
        let cred = self
            .call_once(host, "resolve", ctx, async |store| {
                let i = pre.instantiate_async(&mut *store).await?;
                i.stackpipe_plugin_credentials().call_resolve(store, &c, provider, &config).await
            })
            .await?;
        Ok(Credential { fields: cred.fields, expires_at: cred.expires_at })
    }

    /// Judges one planned change (policy plugins).
    pub async fn evaluate(&self, host: &PluginHost, ctx: &CallContext, input: &Value) -> Result<PolicyVerdict, PluginError> {
        let Typed::Policy(pre) = &self.typed else {
            return Err(self.not_this_kind("evaluate", PluginKind::Policy));
        };
        let (c, input) = (self.context(ctx), input.to_string());
        let verdict = self
            .call_once(host, "evaluate", ctx, async |store| {
                let i = pre.instantiate_async(&mut *store).await?;
                i.stackpipe_plugin_policy().call_evaluate(store, &c, &input).await.map(Ok)
            })
            .await?;
        Ok(match verdict {
            Verdict::Allow => PolicyVerdict::Allow,
            Verdict::Deny(r) => PolicyVerdict::Deny(r),
            Verdict::RequireApproval(r) => PolicyVerdict::RequireApproval(r),
        })
    }

    /// Runs `call` (instantiation and one function) in a fresh store, under
    /// one wall-time limit; an `Err` it returns is the plugin's own failure.
    /// What the plugin logs goes where `ctx` says.
    async fn call_once<T>(
        &self,
        host: &PluginHost,
        op: &'static str,
        ctx: &CallContext,
        call: impl AsyncFnOnce(&mut Store<PluginState>) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<T, PluginError> {
        let _slot = host.slot().await;
        let mut store = self.store(host.engine())?;
        store.data_mut().log = ctx.log.clone();
        let raw = tokio::time::timeout(self.timeout() + TIMEOUT_SLACK, call(&mut store)).await;
        self.finish(&store, op, raw)?.map_err(|m| self.failed(&store, op, m))
    }

    /// A fresh store: the plugin's sandbox, its memory limit, and the
    /// first call's deadline.
    fn store(&self, engine: &Engine) -> Result<Store<PluginState>, PluginError> {
        let memory = usize::try_from(self.limits.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        let state = PluginState::new(self.name.clone(), &self.sandbox, memory)
            .map_err(|e| PluginError::Sandbox { plugin: self.name.to_string(), reason: format!("{e:#}") })?;
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        epoch::start_call(&mut store, self.timeout());
        epoch::watch_deadline(&mut store);
        Ok(store)
    }

    /// The wall-time limit of one call.
    pub(super) fn timeout(&self) -> Duration {
        Duration::from_secs(self.limits.timeout_s.max(1))
    }

    /// The context every call is handed: who is calling, and the plugin's config.
    pub(super) fn context(&self, ctx: &CallContext) -> bindings::types::Context {
        bindings::types::Context {
            pipeline: ctx.pipeline.clone(),
            environment: ctx.environment.clone(),
            resource: ctx.resource.clone(),
            run_id: ctx.run_id.clone(),
            config: self.config.clone(),
        }
    }
}
