//! AWS Signature Version 4, with the maintained `aws-sigv4` crate: it computes
//! the `Authorization`, `X-Amz-Date` (and `X-Amz-Security-Token`) headers
//! that we add to the request.

use std::time::SystemTime;

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;

use crate::http::HttpRequest;

/// An AWS access key. Its `Debug` never shows the secret or the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// How a request's body is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// Hashed by the signer (the query, REST-XML and JSON services).
    Hashed,
    /// S3: the body's sha256 (hex), computed once by the caller, also sent as
    /// `x-amz-content-sha256`; the path is signed as sent (already encoded,
    /// not normalized: S3 keys may hold `//` or `.`).
    S3 { sha256: &'a str },
}

/// Signs `req` for `service` in `region` at `time`, adding the signature headers.
pub fn sign_request(
    req: &mut HttpRequest,
    creds: &Credentials,
    region: &str,
    service: &str,
    payload: Payload,
    time: SystemTime,
) -> Result<(), String> {
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        None,
        "stackpipe",
    )
    .into();
    let mut settings = SigningSettings::default();
    let body = match payload {
        Payload::Hashed => SignableBody::Bytes(&req.body),
        Payload::S3 { sha256 } => {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            SignableBody::Precomputed(sha256.to_string())
        }
    };
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into();
    let headers = req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let signable = SignableRequest::new(&req.method, &req.url, headers, body)
        .map_err(|e| format!("cannot sign the request to {}: {e}", req.url))?;
    let (instructions, _signature) =
        sign(signable, &params).map_err(|e| format!("cannot sign the request: {e}"))?.into_parts();
    let (signed, _query) = instructions.into_parts();
    for h in signed {
        req.headers.push((h.name().to_string(), h.value().to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
        req.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `get-vanilla` case of the AWS SigV4 test suite.
    #[test]
    fn matches_the_aws_test_suite() {
        let mut req = HttpRequest::new("GET", "https://example.amazonaws.com/", Vec::new());
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        // 2015-08-30T12:36:00Z
        let at = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        sign_request(&mut req, &creds, "us-east-1", "service", Payload::Hashed, at).unwrap();
        assert_eq!(header(&req, "x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(
            header(&req, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn signs_the_content_headers_and_carries_the_session_token() {
        let mut req = HttpRequest::new("POST", "http://127.0.0.1:5055/", b"Action=DescribeVpcs".to_vec());
        req.header("content-type", "application/x-www-form-urlencoded; charset=utf-8");
        let creds = Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            session_token: Some("tok".into()),
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        sign_request(&mut req, &creds, "eu-west-1", "ec2", Payload::Hashed, at).unwrap();
        let auth = header(&req, "authorization").unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/20231114/eu-west-1/ec2/aws4_request, "), "{auth}");
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"), "{auth}");
        assert_eq!(header(&req, "x-amz-security-token"), Some("tok"));
        assert!(!format!("{creds:?}").contains("secret"));
    }

    /// The GET example of the S3 SigV4 documentation ("Example: GET Object",
    /// a range request), whose expected signature the documentation gives.
    #[test]
    fn matches_the_s3_documentation() {
        let mut req = HttpRequest::new("GET", "https://examplebucket.s3.amazonaws.com/test.txt", Vec::new());
        req.header("range", "bytes=0-9");
        let creds = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        // 2013-05-24T00:00:00Z
        let at = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        sign_request(&mut req, &creds, "us-east-1", "s3", Payload::S3 { sha256: empty }, at).unwrap();
        assert_eq!(header(&req, "x-amz-content-sha256"), Some(empty));
        assert_eq!(
            header(&req, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
                 Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            )
        );
    }
}
