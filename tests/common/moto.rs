//! moto server, the AWS API emulator: installed once (by
//! `scripts/moto.sh install`, into target/moto-venv unless MOTO_VENV says
//! otherwise), one server per test on a free loopback port, and the
//! emulator's own API for asking what exists.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::text;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary run in `dir` with the emulator's example credentials (the
/// `env` resolver reads them) and the tests' component cache.
pub fn stackpipe_in(dir: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_stackpipe"));
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
        .env("STACKPIPE_CACHE_DIR", repo().join("target/test-component-cache"));
    c
}

fn moto_venv() -> PathBuf {
    std::env::var_os("MOTO_VENV").map(PathBuf::from).unwrap_or_else(|| repo().join("target/moto-venv"))
}

/// Installs moto once per test binary (the script is a no-op when it is there).
fn install_moto() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let o = Command::new("bash").arg(repo().join("scripts/moto.sh")).arg("install").output().expect("bash runs");
        assert!(o.status.success(), "cannot install moto: {}{}", text(&o.stdout), text(&o.stderr));
    });
}

/// A moto server of our own, stopped on drop.
pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        install_moto();
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new(moto_venv().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ACM_VALIDATION_WAIT", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{}/moto-api/", moto.url())).call().is_err() {
            assert!(Instant::now() < deadline, "moto did not answer on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Forgets everything (`POST /moto-api/reset`).
    pub fn reset(&self) {
        ureq::post(&format!("{}/moto-api/reset", self.url())).send_empty().expect("moto resets");
    }

    /// moto routes by the credential scope of the Authorization header and
    /// does not check signatures: the tests' own questions need no signing.
    fn auth(service: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0")
    }

    /// A query-protocol call (EC2, RDS, ELBv2): the response body.
    pub fn query(&self, service: &str, version: &str, params: &[(&str, &str)]) -> String {
        let mut form: Vec<(&str, &str)> = vec![("Version", version)];
        form.extend_from_slice(params);
        let mut r = ureq::post(&format!("{}/", self.url()))
            .header("Authorization", &Moto::auth(service))
            .send_form(form)
            .unwrap_or_else(|e| panic!("{service} {params:?}: {e}"));
        r.body_mut().read_to_string().expect("a body")
    }

    pub fn ec2(&self, params: &[(&str, &str)]) -> String {
        self.query("ec2", "2016-11-15", params)
    }

    pub fn rds(&self, params: &[(&str, &str)]) -> String {
        self.query("rds", "2014-10-31", params)
    }

    pub fn elb(&self, params: &[(&str, &str)]) -> String {
        self.query("elasticloadbalancing", "2015-12-01", params)
    }

    pub fn route53_get(&self, path: &str) -> String {
        let mut r = ureq::get(&format!("{}/2013-04-01/{path}", self.url()))
            .header("Authorization", &Moto::auth("route53"))
            .call()
            .unwrap_or_else(|e| panic!("route53 {path}: {e}"));
        r.body_mut().read_to_string().expect("a body")
    }

    pub fn route53_post(&self, path: &str, xml: &str) -> String {
        let mut r = ureq::post(&format!("{}/2013-04-01/{path}", self.url()))
            .header("Authorization", &Moto::auth("route53"))
            .header("Content-Type", "application/xml")
            .send(xml)
            .unwrap_or_else(|e| panic!("route53 {path}: {e}"));
        r.body_mut().read_to_string().expect("a body")
    }

    pub fn acm(&self, target: &str, body: &str) -> Value {
        let mut r = ureq::post(&format!("{}/", self.url()))
            .header("Authorization", &Moto::auth("acm"))
            .header("Content-Type", "application/x-amz-json-1.1")
            .header("X-Amz-Target", &format!("CertificateManager.{target}"))
            .send(body)
            .unwrap_or_else(|e| panic!("acm {target}: {e}"));
        serde_json::from_str(&r.body_mut().read_to_string().expect("a body")).expect("ACM answers JSON")
    }

    /// Every `<tag>value</tag>` in an XML body, in order.
    pub fn all(xml: &str, tag: &str) -> Vec<String> {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        xml.split(&open).skip(1).filter_map(|s| s.split(&close).next()).map(str::to_string).collect()
    }

    /// The non-default VPCs and subnets (their ids) and security groups
    /// (their names: every VPC has a group named `default`).
    pub fn custom_network(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let vpcs = self.ec2(&[("Action", "DescribeVpcs"), ("Filter.1.Name", "is-default"), ("Filter.1.Value.1", "false")]);
        let subnets = self.ec2(&[("Action", "DescribeSubnets"), ("Filter.1.Name", "default-for-az"), ("Filter.1.Value.1", "false")]);
        let groups = self.ec2(&[("Action", "DescribeSecurityGroups")]);
        let custom_groups = Moto::all(&groups, "groupName").into_iter().filter(|n| n != "default").collect();
        (Moto::all(&vpcs, "vpcId"), Moto::all(&subnets, "subnetId"), custom_groups)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

