//! `aws.s3_bucket` and `aws.s3_object` deployed for real, against moto
//! server (one per test, see tests/common/moto.rs): an artifact in a
//! directory the pipeline grants the plugin is uploaded, updated when it
//! changes, and deleted with its bucket. What exists is asked of moto's S3
//! API directly, not of stackpipe's state.

mod common;

use std::path::Path;
use std::process::Output;

use common::moto::Moto;
use common::text;

const PIPELINE: &str = r#"pipeline "site"

var aws_endpoint: string = "http://127.0.0.1:5055"

plugin aws {
  kind   = "provisioner"
  source = "builtin:aws"
  config { endpoint = var.aws_endpoint }
  allow  { http = [var.aws_endpoint]  fs = ["artifacts"] }
}

plugin aws_keys {
  kind   = "credentials"
  source = "builtin:env"
  allow  { env = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] }
}

credentials aws { resolver = aws_keys }

environment dev {}

resource releases "aws.s3_bucket" {
  bucket = "releases-${env.name}"
  tags   = { team = "web" }
}

resource app "aws.s3_object" {
  bucket       = releases.bucket
  key          = "app/app.bin"
  source       = "artifacts/app.bin"
  content_type = "application/octet-stream"
  metadata     = { build = "1" }
}

output url = app.url
"#;

/// The pipeline in a temp directory, its artifact in `artifacts/`.
struct Site {
    dir: tempfile::TempDir,
    endpoint: String,
}

impl Site {
    fn new(endpoint: String, pipeline: &str) -> Site {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("site.pipeline"), pipeline).expect("write the pipeline");
        std::fs::create_dir(dir.path().join("artifacts")).expect("the artifacts directory");
        Site { dir, endpoint }
    }

    fn artifact(&self) -> std::path::PathBuf {
        self.dir.path().join("artifacts/app.bin")
    }

    /// `stackpipe CMD site.pipeline --env dev --var aws_endpoint=.. [--yes] ARGS`
    fn run(&self, cmd: &str, args: &[&str]) -> Output {
        let mut c = common::moto::stackpipe_in(self.dir.path());
        c.args([cmd, "site.pipeline", "--env", "dev", "--var", &format!("aws_endpoint={}", self.endpoint)]);
        if matches!(cmd, "deploy" | "undeploy") {
            c.arg("--yes");
        }
        c.args(args).output().expect("the binary runs")
    }
}

fn succeeded(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

/// moto's S3, unsigned: moto routes on the credential scope and checks no signature.
struct S3<'a>(&'a Moto);

impl S3<'_> {
    fn auth() -> &'static str {
        "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
    }

    /// The status, the headers asked for, and the body of `GET /path`.
    fn get(&self, path: &str, headers: &[&str]) -> (u16, Vec<Option<String>>, Vec<u8>) {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
        let mut r = agent.get(&format!("{}/{path}", self.0.url())).header("Authorization", S3::auth()).call().expect("moto answers");
        let found = headers.iter().map(|h| r.headers().get(*h).and_then(|v| v.to_str().ok()).map(str::to_string)).collect();
        let body = r.body_mut().with_config().limit(64 << 20).read_to_vec().expect("a body");
        (r.status().as_u16(), found, body)
    }

    fn put(&self, path: &str, body: &str) {
        ureq::put(&format!("{}/{path}", self.0.url())).header("Authorization", S3::auth()).send(body).expect("moto takes it");
    }

    fn buckets(&self) -> Vec<String> {
        Moto::all(&String::from_utf8_lossy(&self.get("", &[]).2), "Name")
    }
}

/// 20 MiB that are not all alike: an upload far bigger than any API call's body.
fn big_artifact(path: &Path) -> Vec<u8> {
    let bytes: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect();
    std::fs::write(path, &bytes).expect("write the artifact");
    bytes
}

#[test]
fn an_artifact_is_uploaded_updated_when_it_changes_and_removed_with_its_bucket() {
    let moto = Moto::start();
    let s3 = S3(&moto);
    let site = Site::new(moto.url(), PIPELINE);
    std::fs::write(site.artifact(), "v1").expect("write the artifact");

    let out = succeeded(&site.run("deploy", &[]));
    assert!(out.contains("run r000001 succeeded"), "{out}");
    assert_eq!(s3.buckets(), ["releases-dev"]);
    let (status, headers, body) = s3.get("releases-dev/app/app.bin", &["content-type", "x-amz-meta-build"]);
    assert_eq!((status, body.as_slice()), (200, b"v1".as_slice()));
    assert_eq!(headers, [Some("application/octet-stream".into()), Some("1".into())]);
    let tagging = String::from_utf8_lossy(&s3.get("releases-dev?tagging", &[]).2).into_owned();
    assert_eq!((Moto::all(&tagging, "Key"), Moto::all(&tagging, "Value")), (vec!["team".into()], vec!["web".into()]));
    let outputs = succeeded(&site.run("outputs", &["--json"]));
    assert!(outputs.contains("s3://releases-dev/app/app.bin"), "{outputs}");

    // Nothing changed: nothing to do (the body is compared by its sha256).
    let plan = succeeded(&site.run("plan", &[]));
    assert!(plan.contains("No changes."), "{plan}");

    // A new build of the artifact: the object is uploaded again, in place.
    let bytes = big_artifact(&site.artifact());
    let plan = succeeded(&site.run("plan", &[]));
    assert!(plan.contains("# app (aws.s3_object) will be updated in place"), "{plan}");
    assert!(plan.contains("sha256") && plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{plan}");
    // Another key (or bucket) is another object: a replacement.
    let plan = succeeded(&site.run("plan", &["--set", "app.key=app/other.bin"]));
    assert!(plan.contains("# app (aws.s3_object) must be replaced"), "{plan}");
    succeeded(&site.run("deploy", &[]));
    let (status, _, body) = s3.get("releases-dev/app/app.bin", &[]);
    assert_eq!((status, body.len()), (200, bytes.len()));
    assert!(body == bytes, "the uploaded object holds the new artifact");
    assert!(succeeded(&site.run("plan", &[])).contains("No changes."));

    // Something else put in the bucket: destroying it is refused...
    s3.put("releases-dev/left-behind.txt", "not ours");
    let o = site.run("undeploy", &[]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(all.contains("bucket `releases-dev` is not empty") && all.contains("`left-behind.txt`"), "{all}");
    assert_eq!(s3.get("releases-dev/app/app.bin", &[]).0, 404, "the object went first");
    assert_eq!(s3.buckets(), ["releases-dev"]);

    // ... until the bucket is deployed with force_destroy (an update in place).
    let plan = succeeded(&site.run("plan", &["--set", "releases.force_destroy=true"]));
    assert!(plan.contains("# releases (aws.s3_bucket) will be updated in place"), "{plan}");
    succeeded(&site.run("deploy", &["--set", "releases.force_destroy=true"]));
    // Destroy reads force_destroy from the state, as last deployed.
    succeeded(&site.run("undeploy", &[]));
    assert!(s3.buckets().is_empty(), "{:?}", s3.buckets());
}

#[test]
fn a_bad_bucket_name_is_refused_before_anything_runs() {
    // validate makes no call: no emulator needed.
    let site = Site::new("http://127.0.0.1:9".into(), &PIPELINE.replace("releases-${env.name}", "Releases-${env.name}"));
    std::fs::write(site.artifact(), "v1").expect("write the artifact");
    let o = site.run("preflight", &[]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o.stdout));
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(all.contains("AWS keeps bucket names in lower case: write `releases-dev`"), "{all}");
}
