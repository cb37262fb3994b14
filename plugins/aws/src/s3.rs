//! S3: buckets and objects (REST-XML, path-style: `{endpoint}/{bucket}/{key}`,
//! which AWS, moto and S3-compatible stores all take). Every request carries
//! `x-amz-content-sha256`; uploads also carry `x-amz-checksum-sha256`, so S3
//! checks the body and keeps its sha256, which `read` asks back.

use serde_json::{Map, Value, json};

use crate::api::{ApiError, S3Request, parse_xml};
use crate::attrs::{Attrs, hex};
use crate::body::Body;
use crate::diff::differs;
use crate::http::HttpResponse;
use crate::kinds::Kind;
use crate::resources::Call;
use crate::state::{State, obj};
use crate::xml::escape;

const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// A URI path segment as S3 signs it: RFC 3986 unreserved characters kept,
/// every other byte `%XX`; `/` kept when `keep_slash` (a key's path).
fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn bucket_path(bucket: &str) -> String {
    format!("/{}", encode(bucket, false))
}

pub fn object_path(bucket: &str, key: &str) -> String {
    format!("/{}/{}", encode(bucket, false), encode(key, true))
}

/// Whether an S3 error means the bucket or the object is not there.
fn gone(e: &ApiError) -> bool {
    matches!(e.code.as_str(), "NotFound" | "NoSuchBucket" | "NoSuchKey")
}

/// The XML body of a request, and the checksum headers S3 wants on the
/// calls that change a bucket's configuration (AWS refuses PutBucketTagging
/// without an integrity checksum).
fn xml_request<'a>(op: &'a str, method: &'a str, path: &'a str, query: &'a str, xml: String) -> S3Request<'a> {
    let body = xml.into_bytes();
    let digest = sha2_digest(&body);
    let mut r = S3Request::new(op, method, path);
    r.query = query;
    r.headers = vec![
        ("content-type", "application/xml".to_string()),
        ("x-amz-sdk-checksum-algorithm", "SHA256".into()),
        ("x-amz-checksum-sha256", aws_smithy_types::base64::encode(digest)),
    ];
    r.body = body;
    r
}

fn sha2_digest(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

// ---- Bucket ---------------------------------------------------------------

fn arn(c: &Call, bucket: &str) -> String {
    format!("arn:{}:s3:::{bucket}", c.partition())
}

fn bucket_state(c: &Call, bucket: &str, tags: Map<String, Value>, force_destroy: bool, region: &str) -> State {
    State::new(
        Kind::S3Bucket,
        bucket,
        obj([("bucket", json!(bucket)), ("tags", Value::Object(tags)), ("force_destroy", json!(force_destroy))]),
        obj([
            ("id", json!(bucket)),
            ("bucket", json!(bucket)),
            ("arn", json!(arn(c, bucket))),
            ("region", json!(region)),
        ]),
    )
}

/// The bucket's tags; none when it has no tag set.
fn bucket_tags(c: &Call, bucket: &str) -> Result<Map<String, Value>, String> {
    let path = bucket_path(bucket);
    let mut r = S3Request::new("GetBucketTagging", "GET", &path);
    r.query = "tagging";
    match c.aws.s3(r) {
        Ok(resp) => {
            let root = parse_xml("s3 GetBucketTagging", &resp)?;
            Ok(root
                .list(&["TagSet"], "Tag")
                .iter()
                .map(|t| (t.string_at(&["Key"]), json!(t.at(&["Value"]).map(|v| v.text.as_str()).unwrap_or_default())))
                .collect())
        }
        Err(e) if e.is("NoSuchTagSet") => Ok(Map::new()),
        Err(e) => Err(e.to_string()),
    }
}

/// The bucket now; `force_destroy` is not in S3: it is the one given.
fn get_bucket(c: &Call, bucket: &str, force_destroy: bool) -> Result<Option<State>, String> {
    let path = bucket_path(bucket);
    let head = match c.aws.s3(S3Request::new("HeadBucket", "HEAD", &path)) {
        Ok(resp) => resp,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) if e.status == 403 => {
            return Err(format!(
                "s3 HeadBucket failed: HTTP 403: bucket `{bucket}` exists but this credential may not use it \
                 (bucket names are global: another account may own it)"
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    let region = head.header("x-amz-bucket-region").unwrap_or(&c.aws.region).to_string();
    let tags = bucket_tags(c, bucket)?;
    Ok(Some(bucket_state(c, bucket, tags, force_destroy, &region)))
}

pub fn read_bucket(c: &Call, state: &State) -> Result<Option<State>, String> {
    get_bucket(c, &state.id, state.attributes.get("force_destroy").and_then(Value::as_bool).unwrap_or(false))
}

/// Bucket names are global: the bucket an interrupted apply made is the one
/// of that name, when this credential can use it.
pub fn find_bucket(c: &Call, desired: &Map<String, Value>) -> Result<Option<State>, String> {
    let a = Attrs(desired);
    get_bucket(c, &a.str("bucket")?, a.bool("force_destroy")?)
}

/// `<CreateBucketConfiguration>` with the region, outside us-east-1 (where S3 wants no body).
pub fn create_bucket_body(region: &str) -> Option<String> {
    (region != "us-east-1").then(|| {
        format!(
            r#"<CreateBucketConfiguration xmlns="{NS}"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>"#,
            escape(region)
        )
    })
}

fn put_tags(c: &Call, bucket: &str, tags: &Map<String, Value>) -> Result<(), String> {
    let path = bucket_path(bucket);
    if tags.is_empty() {
        c.aws.s3(S3Request { query: "tagging", ..S3Request::new("DeleteBucketTagging", "DELETE", &path) })?;
        return Ok(());
    }
    let set: String = tags
        .iter()
        .map(|(k, v)| format!("<Tag><Key>{}</Key><Value>{}</Value></Tag>", escape(k), escape(v.as_str().unwrap_or(""))))
        .collect();
    let xml = format!(r#"<Tagging xmlns="{NS}"><TagSet>{set}</TagSet></Tagging>"#);
    c.aws.s3(xml_request("PutBucketTagging", "PUT", &path, "tagging", xml))?;
    Ok(())
}

pub fn create_bucket(c: &Call, desired: &Map<String, Value>) -> Result<State, String> {
    let a = Attrs(desired);
    let bucket = a.str("bucket")?;
    let path = bucket_path(&bucket);
    let region = c.aws.region.clone();
    let request = match create_bucket_body(&region) {
        Some(xml) => xml_request("CreateBucket", "PUT", &path, "", xml),
        None => S3Request::new("CreateBucket", "PUT", &path),
    };
    c.aws.s3(request)?;
    let tags = a.map("tags")?;
    if !tags.is_empty() {
        put_tags(c, &bucket, &tags)?;
    }
    Ok(bucket_state(c, &bucket, tags, a.bool("force_destroy")?, &region))
}

/// Tags change in place; `force_destroy` only in the state.
pub fn update_bucket(c: &Call, prior: &State, desired: &Map<String, Value>) -> Result<State, String> {
    let a = Attrs(desired);
    let tags = a.map("tags")?;
    if differs(&prior.attributes, desired, "tags") {
        put_tags(c, &prior.id, &tags)?;
    }
    let region = prior.output("region");
    let region = if region.is_empty() { c.aws.region.clone() } else { region };
    Ok(bucket_state(c, &prior.id, tags, a.bool("force_destroy")?, &region))
}

/// One page of a bucket's object versions and delete markers: (key, version id).
fn list_versions(c: &Call, bucket: &str) -> Result<Vec<(String, String)>, String> {
    let path = bucket_path(bucket);
    let r = S3Request { query: "versions&max-keys=1000", ..S3Request::new("ListObjectVersions", "GET", &path) };
    let root = parse_xml("s3 ListObjectVersions", &c.aws.s3(r)?)?;
    Ok(root
        .children
        .iter()
        .filter(|e| e.name == "Version" || e.name == "DeleteMarker")
        .map(|e| (e.string_at(&["Key"]), e.string_at(&["VersionId"])))
        .collect())
}

fn delete_version(c: &Call, bucket: &str, key: &str, version: &str) -> Result<(), String> {
    let path = object_path(bucket, key);
    // `null` is the version of an object put while versioning was off: the plain DELETE removes it.
    let query = if version.is_empty() || version == "null" { String::new() } else { format!("versionId={}", encode(version, false)) };
    match c.aws.s3(S3Request { query: &query, ..S3Request::new("DeleteObject", "DELETE", &path) }) {
        Ok(_) => Ok(()),
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Deletes every object version and delete marker in the bucket.
fn empty_bucket(c: &Call, bucket: &str) -> Result<(), String> {
    let mut deleted = 0usize;
    let mut previous = Vec::new();
    loop {
        let page = list_versions(c, bucket)?;
        if page.is_empty() {
            break;
        }
        // Deleted, yet listed again (an object lock, a store that ignores
        // the delete): stop rather than go round for ever.
        if page == previous {
            let (key, version) = &page[0];
            return Err(format!(
                "force_destroy: `{key}` (version {version}) is still in bucket `{bucket}` after it was deleted"
            ));
        }
        for (key, version) in &page {
            delete_version(c, bucket, key, version)?;
        }
        deleted += page.len();
        previous = page;
    }
    if deleted > 0 {
        c.log(&format!("force_destroy: deleted {deleted} object version(s) from bucket `{bucket}`"));
    }
    Ok(())
}

/// A few keys still in the bucket, for the message of a refused delete.
fn some_keys(c: &Call, bucket: &str) -> Result<Vec<String>, String> {
    let path = bucket_path(bucket);
    let r = S3Request { query: "list-type=2&max-keys=3", ..S3Request::new("ListObjectsV2", "GET", &path) };
    let root = parse_xml("s3 ListObjectsV2", &c.aws.s3(r)?)?;
    Ok(root.children_named("Contents").map(|o| o.string_at(&["Key"])).collect())
}

pub fn delete_bucket(c: &Call, state: &State) -> Result<(), String> {
    let bucket = &state.id;
    if state.attributes.get("force_destroy").and_then(Value::as_bool) == Some(true) {
        match empty_bucket(c, bucket) {
            Err(e) if e.contains("NoSuchBucket") => return Ok(()),
            other => other?,
        }
    }
    let path = bucket_path(bucket);
    match c.aws.s3(S3Request::new("DeleteBucket", "DELETE", &path)) {
        Ok(_) => Ok(()),
        Err(e) if gone(&e) => Ok(()),
        Err(e) if e.is("BucketNotEmpty") => {
            let keys = some_keys(c, bucket).unwrap_or_default();
            let some = if keys.is_empty() {
                String::new()
            } else {
                format!(" (such as {})", keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
            };
            Err(format!(
                "bucket `{bucket}` is not empty: it holds objects{some} that no resource of this pipeline deletes; \
                 delete them, or set `force_destroy = true` on the bucket and deploy before destroying it"
            ))
        }
        Err(e) => Err(e.to_string()),
    }
}

// ---- Object ---------------------------------------------------------------

fn object_id(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

/// The hex sha256 in an `x-amz-checksum-sha256` header (base64 of the 32
/// bytes); none for a composite checksum (a multipart upload's) or none at all.
pub fn checksum_hex(header: Option<&str>) -> Option<String> {
    let bytes = aws_smithy_types::base64::decode(header?.trim()).ok()?;
    (bytes.len() == 32).then(|| hex(&bytes))
}

fn unquote(etag: &str) -> String {
    etag.trim().trim_matches('"').to_string()
}

fn object_outputs(bucket: &str, key: &str, etag: &str, version: &str, sha256: &str) -> Map<String, Value> {
    obj([
        ("id", json!(object_id(bucket, key))),
        ("bucket", json!(bucket)),
        ("key", json!(key)),
        ("etag", json!(etag)),
        ("version_id", json!(version)),
        ("sha256", json!(sha256)),
        ("url", json!(format!("s3://{bucket}/{key}"))),
    ])
}

/// What a HEAD says of an object: its attributes as a plan compares them,
/// and its outputs. `known` is the state's view (its `source`, and the
/// sha256 it applied with the ETag it got), for stores that do not give
/// checksums back.
pub fn object_state(bucket: &str, key: &str, head: &HttpResponse, known: Option<&State>) -> State {
    let etag = unquote(head.header("etag").unwrap_or_default());
    let version = head.header("x-amz-version-id").unwrap_or_default();
    let sha256 = match checksum_hex(head.header("x-amz-checksum-sha256")) {
        Some(sha) => sha,
        None => match known {
            Some(s) if !etag.is_empty() && s.output("etag") == etag => s.attr("sha256"),
            // Changed by someone else, in a store that keeps no sha256: the
            // plan shows it as different, and apply uploads it again.
            _ => format!("unknown (ETag {etag})"),
        },
    };
    let metadata: Map<String, Value> = head
        .headers
        .iter()
        .filter_map(|(k, v)| k.to_ascii_lowercase().strip_prefix("x-amz-meta-").map(|m| (m.to_string(), json!(v))))
        .collect();
    let mut attributes = obj([("bucket", json!(bucket)), ("key", json!(key))]);
    if let Some(source) = known.and_then(|s| s.attributes.get("source")) {
        attributes.insert("source".into(), source.clone());
    }
    if let Some(t) = head.header("content-type") {
        attributes.insert("content_type".into(), json!(t));
    }
    attributes.insert("metadata".into(), Value::Object(metadata));
    attributes.insert("sha256".into(), json!(sha256));
    let outputs = object_outputs(bucket, key, &etag, version, &sha256);
    State::new(Kind::S3Object, &object_id(bucket, key), attributes, outputs)
}

fn head_object(c: &Call, bucket: &str, key: &str, known: Option<&State>) -> Result<Option<State>, String> {
    let path = object_path(bucket, key);
    let mut r = S3Request::new("HeadObject", "HEAD", &path);
    r.headers.push(("x-amz-checksum-mode", "ENABLED".into()));
    match c.aws.s3(r) {
        Ok(head) => Ok(Some(object_state(bucket, key, &head, known))),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

pub fn read_object(c: &Call, state: &State) -> Result<Option<State>, String> {
    head_object(c, &state.attr("bucket"), &state.attr("key"), Some(state))
}

/// An object is unique by bucket and key.
pub fn find_object(c: &Call, desired: &Map<String, Value>) -> Result<Option<State>, String> {
    let a = Attrs(desired);
    head_object(c, &a.str("bucket")?, &a.str("key")?, None)
}

/// Uploads the object (create and every update): one PutObject of the whole
/// body, read from `raw`'s `source` or `content`.
pub fn put_object(c: &Call, desired: &Map<String, Value>, raw: &Map<String, Value>) -> Result<State, String> {
    let a = Attrs(desired);
    let (bucket, key) = (a.str("bucket")?, a.str("key")?);
    let body = Body::of(raw)?.ok_or("set `source` (a file to upload) or `content` (a string)")?.read()?;
    let checksum = aws_smithy_types::base64::encode(hex_bytes(&body.sha256));
    let size = body.bytes.len();
    let path = object_path(&bucket, &key);
    let mut r = S3Request::new("PutObject", "PUT", &path);
    if let Some(t) = a.opt_str("content_type")? {
        r.headers.push(("content-type", t));
    }
    let metadata = a.map("metadata")?;
    let meta_headers: Vec<(String, String)> = metadata
        .iter()
        .map(|(k, v)| (format!("x-amz-meta-{k}"), v.as_str().unwrap_or_default().to_string()))
        .collect();
    for (k, v) in &meta_headers {
        r.headers.push((k.as_str(), v.clone()));
    }
    r.headers.push(("x-amz-sdk-checksum-algorithm", "SHA256".into()));
    r.headers.push(("x-amz-checksum-sha256", checksum));
    r.sha256 = Some(&body.sha256);
    r.body = body.bytes;
    let resp = c.aws.s3(r)?;
    let etag = unquote(resp.header("etag").unwrap_or_default());
    let version = resp.header("x-amz-version-id").unwrap_or_default();
    c.log(&format!("uploaded s3://{bucket}/{key}: {size} bytes, sha256 {}", body.sha256));
    let mut attributes = desired.clone();
    attributes.remove("content");
    attributes.insert("sha256".into(), json!(body.sha256));
    let outputs = object_outputs(&bucket, &key, &etag, version, &body.sha256);
    Ok(State::new(Kind::S3Object, &object_id(&bucket, &key), attributes, outputs))
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

/// Deletes the object (in a versioned bucket: adds a delete marker). Its
/// bucket gone counts as deleted.
pub fn delete_object(c: &Call, state: &State) -> Result<(), String> {
    let path = object_path(&state.attr("bucket"), &state.attr("key"));
    match c.aws.s3(S3Request::new("DeleteObject", "DELETE", &path)) {
        Ok(_) => Ok(()),
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::{map, with_call};

    #[test]
    fn paths_are_encoded_as_s3_signs_them() {
        assert_eq!(object_path("my-bucket", "releases/app 1.2+b.tar.gz"), "/my-bucket/releases/app%201.2%2Bb.tar.gz");
        assert_eq!(object_path("b", "ü/~a"), "/b/%C3%BC/~a");
        assert_eq!(encode("a/b", false), "a%2Fb");
        assert_eq!(bucket_path("b.c"), "/b.c");
    }

    #[test]
    fn buckets_outside_us_east_1_name_their_region() {
        assert_eq!(create_bucket_body("us-east-1"), None);
        assert!(create_bucket_body("eu-west-1").unwrap().contains("<LocationConstraint>eu-west-1</LocationConstraint>"));
    }

    #[test]
    fn checksums_come_back_as_hex() {
        let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let b64 = aws_smithy_types::base64::encode(hex_bytes(hello));
        assert_eq!(checksum_hex(Some(&b64)).as_deref(), Some(hello));
        assert_eq!(checksum_hex(Some("abc=-3")), None);
        assert_eq!(checksum_hex(None), None);
    }

    #[test]
    fn a_head_without_checksum_keeps_the_applied_sha256_while_the_etag_holds() {
        let known = State::new(
            Kind::S3Object,
            "b/k",
            obj([("source", json!("dist/a.txt")), ("sha256", json!("abc"))]),
            obj([("etag", json!("e1"))]),
        );
        let head = |etag: &str| HttpResponse {
            status: 200,
            headers: vec![
                ("etag".into(), format!("\"{etag}\"")),
                ("content-type".into(), "text/plain".into()),
                ("x-amz-meta-build".into(), "42".into()),
            ],
            body: Vec::new(),
        };
        let s = object_state("b", "k", &head("e1"), Some(&known));
        assert_eq!(
            Value::Object(s.attributes.clone()),
            json!({ "bucket": "b", "key": "k", "source": "dist/a.txt", "content_type": "text/plain",
                    "metadata": { "build": "42" }, "sha256": "abc" })
        );
        assert_eq!((s.output("etag"), s.output("url"), s.output("version_id")), ("e1".into(), "s3://b/k".into(), "".into()));
        let changed = object_state("b", "k", &head("e2"), Some(&known));
        assert_eq!(changed.attr("sha256"), "unknown (ETag e2)");
    }

    #[test]
    fn a_bucket_that_is_not_empty_is_not_deleted_without_force_destroy() {
        let state = State::new(Kind::S3Bucket, "b", obj([("force_destroy", json!(false))]), Map::new());
        let not_empty = "<Error><Code>BucketNotEmpty</Code><Message>The bucket you tried to delete is not empty</Message></Error>";
        let listing = "<ListBucketResult><Contents><Key>left.txt</Key></Contents></ListBucketResult>";
        let e = with_call(&[("DELETE /b ", 409, not_empty), ("GET /b?list-type=2", 200, listing)], |c| {
            delete_bucket(c, &state)
        })
        .unwrap_err();
        assert!(e.starts_with("bucket `b` is not empty: it holds objects (such as `left.txt`)"), "{e}");
        assert!(e.contains("force_destroy = true"));
    }

    #[test]
    fn force_destroy_deletes_every_version_first() {
        let state = State::new(Kind::S3Bucket, "b", obj([("force_destroy", json!(true))]), Map::new());
        let versions = "<ListVersionsResult><Version><Key>a</Key><VersionId>null</VersionId></Version>\
            <DeleteMarker><Key>b/c</Key><VersionId>v2</VersionId></DeleteMarker></ListVersionsResult>";
        with_call(
            &[
                ("GET /b?versions", 200, versions),
                ("DELETE /b/a ", 204, ""),
                ("DELETE /b/b/c?versionId=v2", 204, ""),
                ("GET /b?versions", 200, "<ListVersionsResult/>"),
                ("DELETE /b ", 204, ""),
            ],
            |c| delete_bucket(c, &state),
        )
        .unwrap();
        let locked = "<ListVersionsResult><Version><Key>a</Key><VersionId>v1</VersionId></Version></ListVersionsResult>";
        let e = with_call(
            &[
                ("GET /b?versions", 200, locked),
                ("DELETE /b/a?versionId=v1", 204, ""),
                ("GET /b?versions", 200, locked),
            ],
            |c| delete_bucket(c, &state),
        )
        .unwrap_err();
        assert_eq!(e, "force_destroy: `a` (version v1) is still in bucket `b` after it was deleted");
    }

    #[test]
    fn tags_change_in_place_and_a_bucket_gone_reads_as_none() {
        let prior = State::new(Kind::S3Bucket, "b", obj([("tags", json!({ "a": "1" }))]), obj([("region", json!("us-east-1"))]));
        let want = map(json!({ "bucket": "b", "tags": {}, "force_destroy": true }));
        let s = with_call(&[("DELETE /b?tagging", 204, "")], |c| update_bucket(c, &prior, &want)).unwrap();
        assert_eq!(s.attributes["force_destroy"], true);
        assert_eq!(s.output("arn"), "arn:aws:s3:::b");
        let none = with_call(&[("HEAD /b ", 404, "")], |c| read_bucket(c, &prior)).unwrap();
        assert_eq!(none, None);
    }
}
