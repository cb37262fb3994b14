//! The builtin `aws` provisioner: VPCs, subnets, security groups, RDS subnet
//! groups and instances, ELBv2 load balancers, ACM certificates, Route53
//! zones and records, S3 buckets and objects, over the AWS APIs (or an
//! emulator at `config { endpoint }`), through `wasi:http` to the hosts the
//! pipeline grants.
//!
//! This file is the glue to the host; the logic is in the modules:
//! `kinds`/`attrs` (attributes), `diff` (plans), `resources` (read, apply,
//! destroy per type) over `ec2`, `rds`, `elb`, `acm`, `route53`, `s3` (with
//! `body`, an object's bytes from a granted file or a string), which call
//! `api` (protocols, errors) over `sign` (SigV4) and the SDK's `http`
//! (wasi:http). Each type is an SDK [`Handler`] written by hand: the
//! attributes are normalized by the type's definition, not by serde.

mod acm;
mod api;
mod attrs;
mod body;
mod cidr;
mod config;
mod diff;
mod ec2;
mod elb;
mod form;
mod kinds;
mod rds;
mod resources;
mod route53;
mod s3;
mod sign;
mod state;
mod xml;

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Map, Value};

use stackpipe_plugin_sdk::provisioner::{Ctx, Handler, Provisioner};
use stackpipe_plugin_sdk::{Applied, Context, Credential, Diagnostic, ResourcePlan, ResourceType};
use stackpipe_plugin_sdk::{diagnostics, http, json, log};

use config::Config;
use kinds::Kind;
use resources::{Call, Origin};
use state::State;

struct AwsPlugin;

fn origin(ctx: &Context) -> Origin {
    Origin {
        pipeline: ctx.pipeline.clone(),
        environment: ctx.environment.clone(),
        resource: ctx.resource.clone(),
        run_id: ctx.run_id.clone(),
    }
}

/// A resource's desired attributes.
struct Desired {
    /// As given: apply takes secrets from here.
    raw: Map<String, Value>,
    /// Defaults filled in, sets sorted, secrets digested: what plans compare.
    normalized: Map<String, Value>,
}

/// Parses and normalizes the desired attributes (one line on problems).
fn desired(kind: Kind, text: &str) -> Result<Desired, String> {
    let raw = json::parse_object(text, "the resource's attributes")?;
    let normalized = attrs::normalize(kind.def(), &raw).map_err(|d| diagnostics::diagnostics_error(&d))?;
    Ok(Desired { raw, normalized })
}

fn parse_state(kind: Kind, text: Option<&str>) -> Result<Option<State>, String> {
    text.map(|t| State::from_json(kind, t)).transpose()
}

/// Runs `f` with a call context: the config, the credential, and an API
/// client that logs each request at debug level.
fn with_call<T>(
    ctx: &Context,
    cred: Option<&Credential>,
    f: impl FnOnce(&Call) -> Result<T, String>,
) -> Result<T, String> {
    let cfg = Config::parse(&ctx.config)?;
    let creds = config::credentials(cred.map(|c| c.fields.as_slice()))?;
    let logger = |m: &str| log::debug(ctx, m);
    let aws = api::Aws::new(&cfg.region, cfg.endpoint.as_deref(), creds, &http::WasiHttp, &logger);
    let origin = origin(ctx);
    f(&Call { aws: &aws, cfg: &cfg, origin: &origin, poll: Duration::from_secs(5) })
}

fn applied(state: &State) -> Applied {
    Applied { state: state.to_json(), outputs: state.outputs_json() }
}

impl Provisioner for AwsPlugin {
    const NAME: &'static str = "aws";
    fn resources() -> Vec<&'static dyn Handler> {
        static TYPES: OnceLock<Vec<AwsType>> = OnceLock::new();
        TYPES.get_or_init(|| Kind::ALL.into_iter().map(AwsType).collect()).iter().map(|t| t as &dyn Handler).collect()
    }
}

/// One resource type of the plugin.
struct AwsType(Kind);

impl Handler for AwsType {
    fn name(&self) -> &'static str {
        self.0.def().name
    }

    fn resource_type(&self) -> ResourceType {
        let def = self.0.def();
        ResourceType {
            name: def.name.into(),
            description: def.description.into(),
            attributes_schema: attrs::attributes_schema(def).to_string(),
            outputs_schema: attrs::outputs_schema(def).to_string(),
        }
    }

    fn validate(&self, ctx: &Ctx, desired: &str) -> Vec<Diagnostic> {
        let kind = self.0;
        let mut diags = match json::parse_object(desired, "the resource's attributes") {
            Ok(raw) => attrs::normalize(kind.def(), &raw).err().unwrap_or_default(),
            Err(e) => vec![Diagnostic { attribute: None, message: e }],
        };
        if let Err(e) = Config::parse(&ctx.config) {
            diags.push(Diagnostic { attribute: None, message: e });
        }
        diags
    }

    fn read(&self, ctx: &Ctx, state: Option<String>, desired_attrs: &str) -> Result<Option<Applied>, String> {
        let kind = self.0;
        let state = parse_state(kind, state.as_deref())?;
        // With a state, read refreshes it and needs nothing else; without
        // one, it looks for what the desired attributes would have created.
        let want = match &state {
            Some(_) => Map::new(),
            None => desired(kind, desired_attrs)?.normalized,
        };
        let now = with_call(ctx, ctx.credential.as_ref(), |call| resources::read(call, kind, state.as_ref(), &want))?;
        match (&state, &now) {
            (Some(s), None) => log::info(ctx, &format!("aws.{} {} is gone", kind.name(), s.id)),
            (None, Some(s)) => log::info(ctx, &format!("found aws.{} {} from an interrupted apply", kind.name(), s.id)),
            _ => {}
        }
        Ok(now.as_ref().map(applied))
    }

    fn plan(&self, ctx: &Ctx, prior: Option<&str>, desired_attrs: &str) -> Result<ResourcePlan, String> {
        let kind = self.0;
        let prior = parse_state(kind, prior)?;
        let mut want = desired(kind, desired_attrs)?;
        if kind == Kind::S3Object {
            // The object's body is compared by its sha256: read the source file for it.
            body::digest_into(&mut want.normalized)?;
        }
        let plan = diff::plan(kind.def(), prior.as_ref().map(|p| &p.attributes), &want.normalized);
        log::debug(ctx, &format!("plan: {:?} with {} attribute change(s)", plan.change, plan.changes.len()));
        Ok(plan)
    }

    fn apply(&self, ctx: &Ctx, prior: Option<&str>, desired_attrs: &str) -> Result<Applied, String> {
        let kind = self.0;
        let prior = parse_state(kind, prior)?;
        let want = desired(kind, desired_attrs)?;
        let state = with_call(ctx, ctx.credential.as_ref(), |call| {
            resources::apply(call, kind, prior.as_ref(), &want.normalized, &want.raw)
        })?;
        log::info(ctx, &format!("applied aws.{} {}", kind.name(), state.id));
        Ok(applied(&state))
    }

    fn destroy(&self, ctx: &Ctx, state: &str) -> Result<(), String> {
        let kind = self.0;
        let state = State::from_json(kind, state)?;
        with_call(ctx, ctx.credential.as_ref(), |call| resources::destroy(call, kind, &state))?;
        log::info(ctx, &format!("destroyed aws.{} {}", kind.name(), state.id));
        Ok(())
    }
}

stackpipe_plugin_sdk::export_provisioner!(AwsPlugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_schemas() {
        let types = stackpipe_plugin_sdk::provisioner::dispatch::resource_types::<AwsPlugin>();
        let names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "vpc",
                "subnet",
                "security_group",
                "db_subnet_group",
                "db_instance",
                "load_balancer",
                "certificate",
                "dns_zone",
                "dns_record",
                "s3_bucket",
                "s3_object"
            ]
        );
        for t in &types {
            let attrs: Value = serde_json::from_str(&t.attributes_schema).unwrap();
            let outputs: Value = serde_json::from_str(&t.outputs_schema).unwrap();
            assert_eq!(attrs["type"], "object", "{}", t.name);
            assert!(attrs["properties"].as_object().is_some_and(|p| !p.is_empty()));
            assert!(
                outputs["required"].as_array().is_some_and(|r| r.iter().any(|o| o == "id")),
                "{} outputs an id",
                t.name
            );
            assert_eq!(outputs["additionalProperties"], false, "{}: the outputs are closed", t.name);
            assert_eq!(outputs["properties"]["id"]["keptOnUpdate"], true, "an update keeps {}'s id", t.name);
        }
        let object: Value = serde_json::from_str(&types[10].attributes_schema).unwrap();
        assert_eq!(object["properties"]["source"]["format"], "stackpipe:input-file", "stackpipe watch watches it");
        assert!(object["properties"].get("sha256").is_none(), "worked out, not written");
                let sg: Value = serde_json::from_str(&types[2].attributes_schema).unwrap();
        assert_eq!(sg["required"], serde_json::json!(["vpc_id", "name"]));
        assert_eq!(sg["properties"]["description"]["default"], "managed by stackpipe");
        assert!(sg["properties"]["name"]["description"].as_str().unwrap().contains("replaces"));
    }

    #[test]
    fn states_of_another_type_are_refused() {
        let s = State::new(Kind::Vpc, "vpc-1", Map::new(), Map::new()).to_json();
        assert!(parse_state(Kind::Subnet, Some(&s)).unwrap_err().contains("aws.vpc state"));
        assert!(
            desired(Kind::Vpc, "{}").err().unwrap_or_default().starts_with("invalid resource: attribute `cidr_block`")
        );
    }
}
