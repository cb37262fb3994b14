//! ACM: certificate requests (JSON 1.1, `X-Amz-Target: CertificateManager.*`).

use serde_json::{Map, Value, json};

use crate::api::{ApiError, Service};
use crate::attrs::Attrs;
use crate::kinds::{Kind, canonical_domain};
use crate::resources::Call;
use crate::state::{State, obj};

fn call(c: &Call, action: &str, body: Value) -> Result<Value, ApiError> {
    c.aws.json(Service::Acm, &format!("CertificateManager.{action}"), &body)
}

/// The state from DescribeCertificate's `Certificate`; the validation method
/// comes from `fallback` when the answer does not say.
fn cert_state(cert: &Value, fallback: &Map<String, Value>) -> Result<State, String> {
    let arn = cert.get("CertificateArn").and_then(Value::as_str).ok_or("a certificate in AWS's answer has no ARN")?;
    let domain = canonical_domain(cert.get("DomainName").and_then(Value::as_str).unwrap_or_default());
    let method = cert
        .pointer("/DomainValidationOptions/0/ValidationMethod")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| fallback.get("validation_method").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "DNS".into());
    let status = cert.get("Status").and_then(Value::as_str).unwrap_or("PENDING_VALIDATION");
    Ok(State::new(
        Kind::Certificate,
        arn,
        obj([("domain_name", json!(domain)), ("validation_method", json!(method))]),
        obj([("id", json!(arn)), ("arn", json!(arn)), ("status", json!(status)), ("domain_name", json!(domain))]),
    ))
}

pub fn read(c: &Call, arn: &str, prior: &Map<String, Value>) -> Result<Option<State>, String> {
    match call(c, "DescribeCertificate", json!({ "CertificateArn": arn })) {
        Ok(v) => {
            let cert = v.get("Certificate").ok_or("acm DescribeCertificate answered without a `Certificate`")?;
            cert_state(cert, prior).map(Some)
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

pub fn create(c: &Call, desired: &Map<String, Value>) -> Result<State, String> {
    let a = Attrs(desired);
    let (domain, method) = (a.str("domain_name")?, a.str("validation_method")?);
    // No IdempotencyToken: a token made from the run would repeat in a new
    // state directory (run ids start again), and ACM then answers with the
    // certificate of the earlier request even when it has been deleted.
    let body = json!({ "DomainName": domain, "ValidationMethod": method });
    let v = call(c, "RequestCertificate", body)?;
    let arn = v
        .get("CertificateArn")
        .and_then(Value::as_str)
        .ok_or("acm RequestCertificate answered without a `CertificateArn`")?;
    // Right after the request ACM may not describe it yet: the status is then the first one.
    match read(c, arn, desired) {
        Ok(Some(state)) => Ok(state),
        _ => Ok(State::new(
            Kind::Certificate,
            arn,
            desired.clone(),
            obj([
                ("id", json!(arn)),
                ("arn", json!(arn)),
                ("status", json!("PENDING_VALIDATION")),
                ("domain_name", json!(domain)),
            ]),
        )),
    }
}

pub fn delete(c: &Call, arn: &str) -> Result<(), String> {
    // In use by a listener that is going away.
    c.delete_with_retry(&["ResourceInUseException"], || {
        call(c, "DeleteCertificate", json!({ "CertificateArn": arn })).map(drop)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::{map, with_call};

    const ARN: &str = "arn:aws:acm:us-east-1:123456789012:certificate/d95d";

    #[test]
    fn requests_then_describes() {
        let desired = map(json!({ "domain_name": "app.dev.example.internal", "validation_method": "DNS" }));
        let described = format!(
            r#"{{"Certificate": {{"CertificateArn": "{ARN}", "DomainName": "app.dev.example.internal", "Status": "PENDING_VALIDATION",
                "DomainValidationOptions": [{{"DomainName": "app.dev.example.internal", "ValidationMethod": "DNS"}}]}}}}"#
        );
        let s = with_call(
            &[
                (
                    r#"{"DomainName":"app.dev.example.internal","ValidationMethod":"DNS"} target=CertificateManager.RequestCertificate"#,
                    200,
                    &format!(r#"{{"CertificateArn": "{ARN}"}}"#),
                ),
                (r#"{"CertificateArn":"arn:aws:acm:us-east-1:123456789012:certificate/d95d"}"#, 200, &described),
            ],
            |c| create(c, &desired),
        )
        .unwrap();
        assert_eq!(s.attributes, desired);
        assert_eq!((s.output("status"), s.output("id")), ("PENDING_VALIDATION".to_string(), ARN.to_string()));
    }

    #[test]
    fn a_deleted_certificate_reads_as_gone() {
        let missing = r#"{"__type": "ResourceNotFoundException", "message": "Certificate with arn x not found"}"#;
        assert_eq!(with_call(&[("CertificateArn", 400, missing)], |c| read(c, ARN, &Map::new())).unwrap(), None);
        with_call(&[("CertificateArn", 400, missing)], |c| delete(c, ARN)).unwrap();
    }
}
