//! The AWS API client: builds each protocol's requests (query/form for EC2,
//! RDS and ELBv2, REST-XML for Route53 and S3, JSON 1.1 for ACM), signs them,
//! sends them, and turns error responses into [`ApiError`]s that carry the
//! AWS error code and message verbatim.

use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::form::{self, Params};
use crate::http::{HttpRequest, HttpResponse, Transport};
use crate::sign::{Credentials, Payload, sign_request};
use crate::xml::{self, Element};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ec2,
    Rds,
    Elb,
    Route53,
    Acm,
    S3,
}

impl Service {
    /// The name in the SigV4 credential scope (moto routes on it too).
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::Ec2 => "ec2",
            Service::Rds => "rds",
            Service::Elb => "elasticloadbalancing",
            Service::Route53 => "route53",
            Service::Acm => "acm",
            Service::S3 => "s3",
        }
    }

    /// The API version of the query-protocol services.
    fn version(self) -> &'static str {
        match self {
            Service::Ec2 => "2016-11-15",
            Service::Rds => "2014-10-31",
            Service::Elb => "2015-12-01",
            Service::Route53 => "2013-04-01",
            Service::Acm | Service::S3 => "",
        }
    }

    /// The region requests are signed for: Route53 is global and signs for us-east-1.
    fn signing_region(self, region: &str) -> &str {
        if self == Service::Route53 { "us-east-1" } else { region }
    }

    /// The public AWS endpoint, when no `endpoint` is configured.
    fn aws_endpoint(self, region: &str) -> String {
        match self {
            Service::Route53 => "https://route53.amazonaws.com".into(),
            other => format!("https://{}.{region}.amazonaws.com", other.signing_name()),
        }
    }
}

/// A failed API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// What was called: `ec2 CreateSubnet`, `route53 GET /2013-04-01/hostedzone/Z1`.
    pub call: String,
    /// The HTTP status, or 0 when no response came back.
    pub status: u16,
    /// The AWS error code (`InvalidSubnet.Conflict`); empty when the body had none.
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }

    /// Whether the error means the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code.ends_with(".NotFound")
            || self.code.ends_with("NotFound")
            || self.code.ends_with("NotFoundFault")
            || matches!(self.code.as_str(), "ResourceNotFoundException" | "NoSuchHostedZone")
    }

    /// Throttling and the like: the request was not carried out and may be retried.
    fn is_retryable(&self) -> bool {
        matches!(
            self.code.as_str(),
            "Throttling"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "TooManyRequestsException"
                | "PriorRequestNotComplete"
                | "RequestThrottled"
                | "ServiceUnavailable"
        ) || (self.code.is_empty() && matches!(self.status, 502..=504))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.status, self.code.is_empty()) {
            (0, _) => write!(f, "{} failed: {}", self.call, self.message),
            (_, false) => write!(f, "{} failed: {}: {}", self.call, self.code, self.message),
            (status, true) => write!(f, "{} failed: HTTP {status}: {}", self.call, self.message),
        }
    }
}

impl From<ApiError> for String {
    fn from(e: ApiError) -> String {
        e.to_string()
    }
}

/// Collapses whitespace and cuts long texts: error messages are one line.
pub fn one_line(text: &str, max: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= max {
        return joined;
    }
    let cut: String = joined.chars().take(max).collect();
    format!("{cut}...")
}

/// The code and message of an XML error body: EC2's
/// `<Response><Errors><Error>`, RDS/ELB/Route53's `<ErrorResponse><Error>`,
/// Route53's `<InvalidChangeBatch><Messages>`.
pub fn xml_error(body: &str) -> Option<(String, String)> {
    let root = xml::parse(body).ok()?;
    if root.name == "InvalidChangeBatch" {
        let messages: Vec<&str> = root.list(&["Messages"], "Message").iter().map(|m| m.text.trim()).collect();
        let message = if messages.is_empty() { root.string_at(&["Message"]) } else { messages.join("; ") };
        return Some(("InvalidChangeBatch".into(), message));
    }
    let err = root.find("Error")?;
    let code = err.text_at(&["Code"])?.to_string();
    let message = err.text_at(&["Message"]).or_else(|| err.text_at(&["message"])).unwrap_or_default().to_string();
    Some((code, message))
}

/// The code and message of a JSON 1.1 error body: `{"__type", "message"}`,
/// where `__type` may be prefixed (`com.amazon.coral.service#Throttling`).
pub fn json_error(body: &str) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(body).ok()?;
    let kind = v.get("__type").and_then(Value::as_str)?;
    let code = kind.rsplit('#').next().unwrap_or(kind).to_string();
    let message = v.get("message").or_else(|| v.get("Message")).and_then(Value::as_str).unwrap_or_default();
    Some((code, message.to_string()))
}

/// The error for a non-2xx response: the AWS code and message when the body has them, else the body.
fn error_of(call: &str, resp: &HttpResponse, json: bool) -> ApiError {
    let text = resp.text();
    let parsed = if json { json_error(&text) } else { xml_error(&text) };
    let (code, message) = match parsed {
        Some((code, message)) => (code, one_line(&message, 1000)),
        None if text.trim().is_empty() => (String::new(), "(empty body)".to_string()),
        None => (String::new(), one_line(&text, 1000)),
    };
    ApiError { call: call.into(), status: resp.status, code, message }
}

/// One account's view of AWS: where to send requests, how to sign them.
pub struct Aws<'a> {
    pub region: String,
    /// One endpoint for every service (an emulator), or none for the public AWS endpoints.
    pub endpoint: Option<String>,
    creds: Credentials,
    transport: &'a dyn Transport,
    log: &'a dyn Fn(&str),
    /// How many times a throttled call is tried again, and the first pause.
    retries: u32,
    retry_pause: Duration,
}

impl<'a> Aws<'a> {
    pub fn new(
        region: &str,
        endpoint: Option<&str>,
        creds: Credentials,
        transport: &'a dyn Transport,
        log: &'a dyn Fn(&str),
    ) -> Aws<'a> {
        Aws {
            region: region.into(),
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
            creds,
            transport,
            log,
            retries: 4,
            retry_pause: Duration::from_secs(1),
        }
    }

    /// No retries (unit tests).
    #[cfg(test)]
    pub fn without_retries(mut self) -> Aws<'a> {
        self.retries = 0;
        self
    }

    pub fn log(&self, message: &str) {
        (self.log)(message)
    }

    fn url(&self, svc: Service, path: &str) -> String {
        let base = self.endpoint.clone().unwrap_or_else(|| svc.aws_endpoint(&self.region));
        format!("{base}{path}")
    }

    /// Signs and sends a request, trying a throttled one again after a pause.
    /// The body is never copied (an S3 object's can be large): each attempt
    /// takes off the previous one's signature headers and signs again.
    fn send(
        &self,
        svc: Service,
        call: &str,
        mut req: HttpRequest,
        payload: Payload,
        json: bool,
    ) -> Result<HttpResponse, ApiError> {
        let unsigned_headers = req.headers.len();
        let mut pause = self.retry_pause;
        let mut attempt = 0;
        loop {
            req.headers.truncate(unsigned_headers);
            sign_request(
                &mut req,
                &self.creds,
                svc.signing_region(&self.region),
                svc.signing_name(),
                payload,
                SystemTime::now(),
            )
            .map_err(|m| ApiError { call: call.into(), status: 0, code: String::new(), message: m })?;
            let started = Instant::now();
            let resp = self.transport.send(&req).map_err(|m| ApiError {
                call: call.into(),
                status: 0,
                code: String::new(),
                message: m,
            })?;
            self.log(&format!("{call}: HTTP {} in {} ms", resp.status, started.elapsed().as_millis()));
            if (200..300).contains(&resp.status) {
                return Ok(resp);
            }
            let err = error_of(call, &resp, json);
            if attempt >= self.retries || !err.is_retryable() {
                return Err(err);
            }
            attempt += 1;
            self.log(&format!("{err}; trying again in {} ms", pause.as_millis()));
            std::thread::sleep(pause);
            pause *= 2;
        }
    }

    /// A query-protocol call (EC2, RDS, ELBv2): its XML response.
    pub fn query(&self, svc: Service, action: &str, params: &Params) -> Result<Element, ApiError> {
        let call = format!("{} {action}", svc.signing_name());
        let body = form::encode(action, svc.version(), params);
        let mut req = HttpRequest::new("POST", &self.url(svc, "/"), body.into_bytes());
        req.header("content-type", "application/x-www-form-urlencoded; charset=utf-8");
        let resp = self.send(svc, &call, req, Payload::Hashed, false)?;
        parse_xml(&call, &resp)
    }

    /// A Route53 REST-XML call; `path` starts with `/2013-04-01/`.
    pub fn route53(&self, method: &str, path: &str, body: Option<String>) -> Result<Element, ApiError> {
        let svc = Service::Route53;
        let call = format!("route53 {method} {}", path.split('?').next().unwrap_or(path));
        let mut req = HttpRequest::new(method, &self.url(svc, path), body.clone().unwrap_or_default().into_bytes());
        if body.is_some() {
            req.header("content-type", "application/xml");
        }
        let resp = self.send(svc, &call, req, Payload::Hashed, false)?;
        parse_xml(&call, &resp)
    }

    /// A JSON 1.1 call (ACM): `target` is `CertificateManager.RequestCertificate`.
    pub fn json(&self, svc: Service, target: &str, body: &Value) -> Result<Value, ApiError> {
        let action = target.rsplit('.').next().unwrap_or(target);
        let call = format!("{} {action}", svc.signing_name());
        let mut req = HttpRequest::new("POST", &self.url(svc, "/"), body.to_string().into_bytes());
        req.header("content-type", "application/x-amz-json-1.1").header("x-amz-target", target);
        let resp = self.send(svc, &call, req, Payload::Hashed, true)?;
        let text = resp.text();
        if text.trim().is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_str(&text).map_err(|e| ApiError {
            call,
            status: resp.status,
            code: String::new(),
            message: format!("the response is not JSON ({e}): {}", one_line(&text, 300)),
        })
    }
}

/// One S3 request, path-style (`{endpoint}/{bucket}/{key}`), which moto and
/// S3-compatible stores take as well as AWS.
pub struct S3Request<'a> {
    /// The operation, for messages: `PutObject`.
    pub op: &'a str,
    pub method: &'a str,
    /// `/bucket` or `/bucket/key`, already encoded ([`crate::s3::object_path`]).
    pub path: &'a str,
    /// `tagging`, `versions&prefix=a%2Fb`...; empty for none.
    pub query: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Vec<u8>,
    /// The body's sha256 (hex), when the caller has it already.
    pub sha256: Option<&'a str>,
}

impl<'a> S3Request<'a> {
    pub fn new(op: &'a str, method: &'a str, path: &'a str) -> S3Request<'a> {
        S3Request { op, method, path, query: "", headers: Vec::new(), body: Vec::new(), sha256: None }
    }
}

impl Aws<'_> {
    /// An S3 call: the whole response (S3 answers in headers as much as in
    /// XML), or the error. A HEAD's 404 has no body: its code is `NotFound`.
    pub fn s3(&self, r: S3Request) -> Result<HttpResponse, ApiError> {
        let call = format!("s3 {}", r.op);
        let query = if r.query.is_empty() { String::new() } else { format!("?{}", r.query) };
        let hashed;
        let sha256 = match r.sha256 {
            Some(s) => s,
            None => {
                hashed = crate::attrs::sha256_hex(&r.body);
                &hashed
            }
        };
        let mut req = HttpRequest::new(r.method, &self.url(Service::S3, &format!("{}{query}", r.path)), r.body);
        for (k, v) in &r.headers {
            req.header(k, v);
        }
        match self.send(Service::S3, &call, req, Payload::S3 { sha256 }, false) {
            Err(mut e) if e.code.is_empty() && e.status == 404 && r.method == "HEAD" => {
                e.code = "NotFound".into();
                e.message = "not found".into();
                Err(e)
            }
            other => other,
        }
    }
}

/// The XML body of a response.
pub fn parse_xml(call: &str, resp: &HttpResponse) -> Result<Element, ApiError> {
    let text = resp.text();
    xml::parse(&text).map_err(|e| ApiError {
        call: call.into(),
        status: resp.status,
        code: String::new(),
        message: format!("the response is not XML ({e}): {}", one_line(&text, 300)),
    })
}

#[cfg(test)]
pub mod fake {
    //! A transport that answers from a script, for tests of the resource logic.

    use std::cell::RefCell;

    use super::*;

    /// Each expected call: a text the request must contain (`Action=CreateVpc`,
    /// `GET /2013-04-01/hostedzone/Z1`), and the status and body to answer.
    pub struct Script {
        pub steps: RefCell<Vec<(String, u16, String)>>,
        pub seen: RefCell<Vec<String>>,
    }

    impl Script {
        pub fn new(steps: &[(&str, u16, &str)]) -> Script {
            Script {
                steps: RefCell::new(steps.iter().rev().map(|(m, s, b)| (m.to_string(), *s, b.to_string())).collect()),
                seen: RefCell::new(Vec::new()),
            }
        }

        pub fn done(&self) -> bool {
            self.steps.borrow().is_empty()
        }
    }

    impl Transport for Script {
        fn send(&self, req: &HttpRequest) -> Result<HttpResponse, String> {
            let path = crate::http::split_url(&req.url)?.path_and_query;
            let mut text = format!("{} {path} {}", req.method, String::from_utf8_lossy(&req.body));
            if let Some((_, target)) = req.headers.iter().find(|(k, _)| k == "x-amz-target") {
                text.push_str(&format!(" target={target}"));
            }
            self.seen.borrow_mut().push(text.clone());
            let (want, status, body) =
                self.steps.borrow_mut().pop().ok_or_else(|| format!("unexpected request: {text}"))?;
            if !text.contains(&want) {
                return Err(format!("expected a request with `{want}`, got: {text}"));
            }
            // `headers:etag="abc";x-amz-version-id=v1\n` before the body: response headers.
            let (headers, body) = match body.strip_prefix("headers:") {
                Some(rest) => {
                    let (line, body) = rest.split_once('\n').unwrap_or((rest, ""));
                    let headers = line
                        .split(';')
                        .filter_map(|h| h.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    (headers, body.to_string())
                }
                None => (Vec::new(), body),
            };
            Ok(HttpResponse { status, headers, body: body.into_bytes() })
        }
    }

    pub fn creds() -> Credentials {
        Credentials { access_key_id: "AKID".into(), secret_access_key: "s".into(), session_token: None }
    }

    pub fn aws(script: &Script) -> Aws<'_> {
        Aws::new("us-east-1", Some("http://127.0.0.1:5055"), creds(), script, &|_| {}).without_retries()
    }
}

#[cfg(test)]
mod tests {
    use super::fake::*;
    use super::*;

    #[test]
    fn ec2_errors() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InvalidSubnet.Conflict</Code><Message>The CIDR '10.0.1.0/24' conflicts with another subnet</Message></Error></Errors><RequestID>r</RequestID></Response>"#;
        let s = Script::new(&[("Action=CreateSubnet", 400, body)]);
        let err = aws(&s).query(Service::Ec2, "CreateSubnet", &Params::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ec2 CreateSubnet failed: InvalidSubnet.Conflict: The CIDR '10.0.1.0/24' conflicts with another subnet"
        );
        assert!(!err.is_not_found());
    }

    #[test]
    fn rds_and_route53_errors() {
        let rds = r#"<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>DBInstanceNotFound</Code><Message>DBInstance nope not found.</Message></Error><RequestId>x</RequestId></ErrorResponse>"#;
        assert_eq!(xml_error(rds), Some(("DBInstanceNotFound".into(), "DBInstance nope not found.".into())));
        let r53 = r#"<?xml version="1.0"?>
<InvalidChangeBatch xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
  <Messages><Message>Tried to delete resource record set [name='a.example.com.', type='CNAME'] but it was not found</Message></Messages>
</InvalidChangeBatch>"#;
        let (code, message) = xml_error(r53).unwrap();
        assert_eq!(code, "InvalidChangeBatch");
        assert!(message.starts_with("Tried to delete"));
        let lower = r#"<ErrorResponse><Error><Code>NoSuchHostedZone</Code><message>No hosted zone found with ID: Z</message></Error></ErrorResponse>"#;
        assert_eq!(xml_error(lower).unwrap().1, "No hosted zone found with ID: Z");
    }

    #[test]
    fn json_errors() {
        assert_eq!(
            json_error(r#"{"__type":"ResourceNotFoundException","message":"Certificate with arn x not found"}"#),
            Some(("ResourceNotFoundException".into(), "Certificate with arn x not found".into()))
        );
        assert_eq!(
            json_error(r#"{"__type":"com.amazon.coral.service#ThrottlingException","Message":"slow"}"#).unwrap().0,
            "ThrottlingException"
        );
        assert_eq!(json_error("not json"), None);
        let s =
            Script::new(&[("DescribeCertificate", 400, r#"{"__type":"ResourceNotFoundException","message":"gone"}"#)]);
        let err =
            aws(&s).json(Service::Acm, "CertificateManager.DescribeCertificate", &serde_json::json!({})).unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(err.to_string(), "acm DescribeCertificate failed: ResourceNotFoundException: gone");
    }

    #[test]
    fn unparseable_errors_carry_status_and_body() {
        let s = Script::new(&[("Action=CreateVpc", 500, "<html>\n<body>Internal   Server Error</body>")]);
        let err = aws(&s).query(Service::Ec2, "CreateVpc", &Params::new()).unwrap_err();
        assert_eq!(err.to_string(), "ec2 CreateVpc failed: HTTP 500: <html> <body>Internal Server Error</body>");
        let s = Script::new(&[("Action=CreateVpc", 403, "")]);
        let err = aws(&s).query(Service::Ec2, "CreateVpc", &Params::new()).unwrap_err();
        assert_eq!(err.to_string(), "ec2 CreateVpc failed: HTTP 403: (empty body)");
    }

    #[test]
    fn transport_failures_and_bad_bodies() {
        let s = Script::new(&[]);
        let err = aws(&s).query(Service::Ec2, "DescribeVpcs", &Params::new()).unwrap_err();
        assert_eq!(err.status, 0);
        assert!(err.to_string().starts_with("ec2 DescribeVpcs failed: unexpected request"));
        let s = Script::new(&[("DescribeVpcs", 200, "<oops")]);
        assert!(aws(&s).query(Service::Ec2, "DescribeVpcs", &Params::new()).unwrap_err().message.contains("not XML"));
    }

    #[test]
    fn throttled_calls_are_retried() {
        let throttled = "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>slow down</Message></Error></Errors></Response>";
        let s = Script::new(&[("DescribeVpcs", 503, throttled), ("DescribeVpcs", 200, "<DescribeVpcsResponse/>")]);
        let mut a = aws(&s);
        a.retries = 2;
        a.retry_pause = Duration::from_millis(1);
        assert_eq!(a.query(Service::Ec2, "DescribeVpcs", &Params::new()).unwrap().name, "DescribeVpcsResponse");
        assert!(s.done());
    }

    #[test]
    fn urls_per_service() {
        let s = Script::new(&[]);
        let custom = aws(&s);
        assert_eq!(custom.url(Service::Rds, "/"), "http://127.0.0.1:5055/");
        let public = Aws::new("eu-west-1", None, creds(), &s, &|_| {});
        assert_eq!(public.url(Service::Elb, "/"), "https://elasticloadbalancing.eu-west-1.amazonaws.com/");
        assert_eq!(
            public.url(Service::Route53, "/2013-04-01/hostedzone"),
            "https://route53.amazonaws.com/2013-04-01/hostedzone"
        );
        assert_eq!(Service::Route53.signing_region("eu-west-1"), "us-east-1");
        assert_eq!(one_line("a\n  b", 100), "a b");
        assert_eq!(one_line("abcdef", 3), "abc...");
    }
}
