//! What read, apply and destroy do for each type, over the API client. The
//! services' modules ([`crate::ec2`], [`crate::rds`], ...) make the calls;
//! this one dispatches, and holds what they share: the call's context,
//! waiting, and the replace rule.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::api::{ApiError, Aws};
use crate::attrs::{TypeDef, UNKNOWN, is_unknown};
use crate::config::Config;
use crate::diff;
use crate::kinds::Kind;
use crate::state::State;
use crate::{acm, ec2, elb, rds, route53, s3};

/// The account in ARNs when a response does not say (moto's account).
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// Who is calling, for names AWS wants unique per request (Route53's
/// CallerReference).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub pipeline: String,
    pub environment: String,
    pub resource: String,
    pub run_id: String,
}

/// Everything one provisioner call works with.
pub struct Call<'a> {
    pub aws: &'a Aws<'a>,
    pub cfg: &'a Config,
    pub origin: &'a Origin,
    /// How often to look again while waiting.
    pub poll: Duration,
}

impl Call<'_> {
    pub fn log(&self, message: &str) {
        self.aws.log(message)
    }

    /// The ARN partition of the region: `aws`, `aws-cn` or `aws-us-gov`.
    pub fn partition(&self) -> &'static str {
        if self.aws.region.starts_with("cn-") {
            "aws-cn"
        } else if self.aws.region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }

    /// Polls `check` until it says done (`Some`), or `timeout` passes.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Result<Option<T>, String>,
    ) -> Result<T, String> {
        let started = Instant::now();
        loop {
            if let Some(done) = check()? {
                return Ok(done);
            }
            if started.elapsed() >= timeout {
                return Err(format!(
                    "gave up waiting for {what} after {} s (plugin config `wait_timeout_s`)",
                    timeout.as_secs()
                ));
            }
            self.log(&format!("waiting for {what}"));
            std::thread::sleep(self.poll);
        }
    }

    /// Runs a delete, trying it again while AWS answers with `busy` (such
    /// as DependencyViolation) for up to the config's `dependency_wait_s`.
    /// A resource already gone counts as deleted.
    pub fn delete_with_retry(
        &self,
        busy: &[&str],
        mut delete: impl FnMut() -> Result<(), ApiError>,
    ) -> Result<(), String> {
        let started = Instant::now();
        loop {
            match delete() {
                Ok(()) => return Ok(()),
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) if busy.contains(&e.code.as_str()) && started.elapsed() < self.cfg.dependency_wait => {
                    self.log(&format!("{e}; trying again"));
                    std::thread::sleep(self.poll.max(Duration::from_secs(1)).min(Duration::from_secs(10)));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// The resource now, or none when it is gone. Without a state (an apply
/// whose result was lost), looks for what that apply created by the
/// type's unique name, where it has one.
pub fn read(
    call: &Call,
    kind: Kind,
    state: Option<&State>,
    desired: &Map<String, Value>,
) -> Result<Option<State>, String> {
    let Some(state) = state else {
        if desired.values().any(is_unknown) {
            return Ok(None);
        }
        return find(call, kind, desired);
    };
    match kind {
        Kind::Vpc => ec2::read_vpc(call, &state.id),
        Kind::Subnet => ec2::read_subnet(call, &state.id),
        Kind::SecurityGroup => ec2::read_security_group(call, &state.id),
        Kind::DbSubnetGroup => rds::read_subnet_group(call, &state.id),
        Kind::DbInstance => rds::read_instance(call, &state.id, &state.attributes),
        Kind::LoadBalancer => elb::read(call, &state.id),
        Kind::Certificate => acm::read(call, &state.id, &state.attributes),
        Kind::DnsZone => route53::read_zone(call, &state.id),
        Kind::DnsRecord => route53::read_record(call, state),
        Kind::S3Bucket => s3::read_bucket(call, state),
        Kind::S3Object => s3::read_object(call, state),
    }
}

/// Finds what an interrupted apply created from `desired`, by the name that
/// is unique for the type. A VPC and a certificate have none: they are not
/// found (and the apply that follows makes another).
fn find(call: &Call, kind: Kind, desired: &Map<String, Value>) -> Result<Option<State>, String> {
    match kind {
        Kind::Vpc | Kind::Certificate => Ok(None),
        Kind::Subnet => ec2::find_subnet(call, desired),
        Kind::SecurityGroup => ec2::find_security_group(call, desired),
        Kind::DbSubnetGroup => rds::find_subnet_group(call, desired),
        Kind::DbInstance => rds::find_instance(call, desired),
        Kind::LoadBalancer => elb::find(call, desired),
        Kind::DnsZone => route53::find_zone(call, desired),
        Kind::DnsRecord => route53::find_record(call, desired),
        Kind::S3Bucket => s3::find_bucket(call, desired),
        Kind::S3Object => s3::find_object(call, desired),
    }
}

/// Creates, updates in place, or replaces: a replacement deletes the old
/// resource first (most keep their name, which AWS would refuse twice, and
/// a failed delete then leaves nothing half-made), then creates the new one.
/// `raw` is the desired attributes as given, for the secrets.
pub fn apply(
    call: &Call,
    kind: Kind,
    prior: Option<&State>,
    desired: &Map<String, Value>,
    raw: &Map<String, Value>,
) -> Result<State, String> {
    if let Some((k, _)) = desired.iter().find(|(_, v)| v.as_str() == Some(UNKNOWN)) {
        return Err(format!("`{k}` is not known yet: it depends on an output that has not been applied"));
    }
    let def: &TypeDef = kind.def();
    match prior {
        None => create(call, kind, desired, raw),
        Some(p) if diff::needs_replacement(def, &p.attributes, desired) => {
            call.log(&format!("replacing aws.{} {}: deleting it first", kind.name(), p.id));
            destroy(call, kind, p)?;
            create(call, kind, desired, raw)
        }
        Some(p) => update(call, kind, p, desired, raw),
    }
}

fn create(call: &Call, kind: Kind, desired: &Map<String, Value>, raw: &Map<String, Value>) -> Result<State, String> {
    let state = match kind {
        Kind::Vpc => ec2::create_vpc(call, desired),
        Kind::Subnet => ec2::create_subnet(call, desired),
        Kind::SecurityGroup => ec2::create_security_group(call, desired),
        Kind::DbSubnetGroup => rds::create_subnet_group(call, desired),
        Kind::DbInstance => rds::create_instance(call, desired, raw),
        Kind::LoadBalancer => elb::create(call, desired),
        Kind::Certificate => acm::create(call, desired),
        Kind::DnsZone => route53::create_zone(call, desired),
        Kind::DnsRecord => route53::create_record(call, desired),
        Kind::S3Bucket => s3::create_bucket(call, desired),
        Kind::S3Object => s3::put_object(call, desired, raw),
    }?;
    call.log(&format!("created aws.{} {}", kind.name(), state.id));
    Ok(state)
}

fn update(
    call: &Call,
    kind: Kind,
    prior: &State,
    desired: &Map<String, Value>,
    raw: &Map<String, Value>,
) -> Result<State, String> {
    let state = match kind {
        Kind::Vpc => ec2::update_vpc(call, prior, desired),
        Kind::Subnet => ec2::update_subnet(call, prior, desired),
        Kind::SecurityGroup => ec2::update_security_group(call, prior, desired),
        Kind::DbSubnetGroup => rds::update_subnet_group(call, prior, desired),
        Kind::DbInstance => rds::update_instance(call, prior, desired, raw),
        Kind::LoadBalancer => elb::update(call, prior, desired),
        // Both of its attributes replace it: nothing changes in place.
        Kind::Certificate => {
            acm::read(call, &prior.id, &prior.attributes)?.ok_or_else(|| format!("certificate {} is gone", prior.id))
        }
        Kind::DnsZone => route53::update_zone(call, prior, desired),
        Kind::DnsRecord => route53::update_record(call, prior, desired),
        Kind::S3Bucket => s3::update_bucket(call, prior, desired),
        // Anything else (new bytes, content type, metadata) uploads it again.
        Kind::S3Object => s3::put_object(call, desired, raw),
    }?;
    call.log(&format!("updated aws.{} {}", kind.name(), state.id));
    Ok(state)
}

/// Deletes; one already gone is fine.
pub fn destroy(call: &Call, kind: Kind, state: &State) -> Result<(), String> {
    match kind {
        Kind::Vpc => ec2::delete_vpc(call, &state.id),
        Kind::Subnet => ec2::delete_subnet(call, &state.id),
        Kind::SecurityGroup => ec2::delete_security_group(call, &state.id),
        Kind::DbSubnetGroup => rds::delete_subnet_group(call, &state.id),
        Kind::DbInstance => rds::delete_instance(call, &state.id),
        Kind::LoadBalancer => elb::delete(call, &state.id),
        Kind::Certificate => acm::delete(call, &state.id),
        Kind::DnsZone => route53::delete_zone(call, &state.id),
        Kind::DnsRecord => route53::delete_record(call, state),
        Kind::S3Bucket => s3::delete_bucket(call, state),
        Kind::S3Object => s3::delete_object(call, state),
    }?;
    call.log(&format!("deleted aws.{} {}", kind.name(), state.id));
    Ok(())
}

#[cfg(test)]
pub mod testing {
    //! A [`Call`] over a scripted transport.

    use super::*;
    use crate::api::fake::{Script, aws};

    pub fn origin() -> Origin {
        Origin { pipeline: "aws-env".into(), environment: "dev".into(), resource: "res".into(), run_id: "run-1".into() }
    }

    pub fn config() -> Config {
        Config::parse(r#"{"endpoint":"http://127.0.0.1:5055"}"#).unwrap()
    }

    /// Runs `f` with a call whose requests must follow `steps`; checks they all happened.
    pub fn with_call<T>(steps: &[(&str, u16, &str)], f: impl FnOnce(&Call) -> T) -> T {
        let script = Script::new(steps);
        let aws = aws(&script);
        let cfg = config();
        let origin = origin();
        let call = Call { aws: &aws, cfg: &cfg, origin: &origin, poll: Duration::from_millis(1) };
        let out = f(&call);
        assert!(script.done(), "requests not made: {:?}; made: {:?}", script.steps.borrow(), script.seen.borrow());
        out
    }

    pub fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }
}
