//! The builtin `aws` provisioner: VPCs, subnets, security groups, RDS subnet
//! groups and instances, ELBv2 load balancers, ACM certificates, Route53
//! zones and records, over the AWS APIs (or an emulator at `config {
//! endpoint }`), through `wasi:http` to the hosts the pipeline grants.
//!
//! This file is the glue to the host; the logic is in the modules:
//! `kinds`/`attrs` (attributes), `diff` (plans), `resources` (read, apply,
//! destroy per type) over `ec2`, `rds`, `elb`, `acm`, `route53`, which call
//! `api` (protocols, errors) over `sign` (SigV4) and `http` (wasi:http).

#[path = "../../common/diagnostics.rs"]
mod diagnostics;
#[path = "../../common/json.rs"]
mod json;

mod acm;
mod api;
mod attrs;
mod cidr;
mod config;
mod diff;
mod ec2;
mod elb;
mod form;
mod http;
mod kinds;
mod rds;
mod resources;
mod route53;
mod sign;
mod state;
mod xml;

wit_bindgen::generate!({ path: "../../wit", world: "provisioner-plugin" });

use std::time::Duration;

use serde_json::{Map, Value};

use exports::stackpipe::plugin::provisioner::Guest;
use stackpipe::plugin::host::log;
use stackpipe::plugin::types::{Applied, Context, Credential, Diagnostic, Level, ResourcePlan, ResourceType};

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
    let logger = |m: &str| log(ctx, Level::Debug, m);
    let aws = api::Aws::new(&cfg.region, cfg.endpoint.as_deref(), creds, &http::WasiHttp, &logger);
    let origin = origin(ctx);
    f(&Call { aws: &aws, cfg: &cfg, origin: &origin, poll: Duration::from_secs(5) })
}

fn applied(state: &State) -> Applied {
    Applied { state: state.to_json(), outputs: state.outputs_json() }
}

impl Guest for AwsPlugin {
    fn resource_types() -> Vec<ResourceType> {
        Kind::ALL
            .iter()
            .map(|k| {
                let def = k.def();
                ResourceType {
                    name: def.name.into(),
                    description: def.description.into(),
                    attributes_schema: attrs::attributes_schema(def).to_string(),
                    outputs_schema: attrs::outputs_schema(def).to_string(),
                }
            })
            .collect()
    }

    fn validate(ctx: Context, kind: String, desired: String) -> Vec<Diagnostic> {
        let kind = match Kind::parse(&kind) {
            Ok(k) => k,
            Err(e) => return vec![Diagnostic { attribute: None, message: e }],
        };
        let mut diags = match json::parse_object(&desired, "the resource's attributes") {
            Ok(raw) => attrs::normalize(kind.def(), &raw).err().unwrap_or_default(),
            Err(e) => vec![Diagnostic { attribute: None, message: e }],
        };
        if let Err(e) = Config::parse(&ctx.config) {
            diags.push(Diagnostic { attribute: None, message: e });
        }
        diags
    }

    fn read(
        ctx: Context,
        kind: String,
        state: Option<String>,
        desired_attrs: String,
        cred: Option<Credential>,
    ) -> Result<Option<Applied>, String> {
        let kind = Kind::parse(&kind)?;
        let state = parse_state(kind, state.as_deref())?;
        // With a state, read refreshes it and needs nothing else; without
        // one, it looks for what the desired attributes would have created.
        let want = match &state {
            Some(_) => Map::new(),
            None => desired(kind, &desired_attrs)?.normalized,
        };
        let now = with_call(&ctx, cred.as_ref(), |call| resources::read(call, kind, state.as_ref(), &want))?;
        match (&state, &now) {
            (Some(s), None) => log(&ctx, Level::Info, &format!("aws.{} {} is gone", kind.name(), s.id)),
            (None, Some(s)) => {
                log(&ctx, Level::Info, &format!("found aws.{} {} from an interrupted apply", kind.name(), s.id))
            }
            _ => {}
        }
        Ok(now.as_ref().map(applied))
    }

    fn plan(
        ctx: Context,
        kind: String,
        prior: Option<String>,
        desired_attrs: String,
        _cred: Option<Credential>,
    ) -> Result<ResourcePlan, String> {
        let kind = Kind::parse(&kind)?;
        let prior = parse_state(kind, prior.as_deref())?;
        let want = desired(kind, &desired_attrs)?;
        let plan = diff::plan(kind.def(), prior.as_ref().map(|p| &p.attributes), &want.normalized);
        log(&ctx, Level::Debug, &format!("plan: {:?} with {} attribute change(s)", plan.change, plan.changes.len()));
        Ok(plan)
    }

    fn apply(
        ctx: Context,
        kind: String,
        prior: Option<String>,
        desired_attrs: String,
        cred: Option<Credential>,
    ) -> Result<Applied, String> {
        let kind = Kind::parse(&kind)?;
        let prior = parse_state(kind, prior.as_deref())?;
        let want = desired(kind, &desired_attrs)?;
        let state = with_call(&ctx, cred.as_ref(), |call| {
            resources::apply(call, kind, prior.as_ref(), &want.normalized, &want.raw)
        })?;
        log(&ctx, Level::Info, &format!("applied aws.{} {}", kind.name(), state.id));
        Ok(applied(&state))
    }

    fn destroy(ctx: Context, kind: String, state: String, cred: Option<Credential>) -> Result<(), String> {
        let kind = Kind::parse(&kind)?;
        let state = State::from_json(kind, &state)?;
        with_call(&ctx, cred.as_ref(), |call| resources::destroy(call, kind, &state))?;
        log(&ctx, Level::Info, &format!("destroyed aws.{} {}", kind.name(), state.id));
        Ok(())
    }
}

export!(AwsPlugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_schemas() {
        let types = <AwsPlugin as Guest>::resource_types();
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
                "dns_record"
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
        }
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
