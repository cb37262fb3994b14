//! A forge's webhook delivery, checked and read: the signature
//! (`X-Hub-Signature-256: sha256=HEX`, as GitHub, Gitea and Forgejo send
//! it, or Gitea's and Forgejo's own bare-hex headers), then the event
//! (`X-GitHub-Event`, `X-Gitea-Event`, `X-Forgejo-Event`) read into a
//! [`RepoEvent`] with who pushed and the commit's subject line.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use stackpipe_runtime::service::RepoEvent;

/// A delivery as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub event: RepoEvent,
    /// Who pushed or opened the pull request.
    pub by: String,
    /// The head commit's subject line and author, when the payload says.
    pub message: String,
    pub author: String,
    /// `X-GitHub-Delivery` (or the Gitea/Forgejo one).
    pub id: Option<String>,
}

/// What a delivery is, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    Delivery(Delivery),
    /// A forge's test delivery (`ping`): answered, nothing more.
    Ping,
    /// An event that starts nothing (a closed pull request, a `create`
    /// event, an issue): why.
    Ignored(String),
}

fn header<'h>(headers: &'h HeaderMap, names: &[&str]) -> Option<&'h str> {
    names.iter().find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
}

/// Whether `body` was signed with `secret`: HMAC-SHA256 over the raw body,
/// compared in constant time.
pub fn signature_ok(headers: &HeaderMap, body: &[u8], secret: &[u8]) -> bool {
    let given = match header(headers, &["x-hub-signature-256"]) {
        Some(v) => v.strip_prefix("sha256=").map(str::to_string),
        None => header(headers, &["x-gitea-signature", "x-forgejo-signature"]).map(str::to_string),
    };
    let Some(given) = given.and_then(|h| hex::decode(h.trim()).ok()) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn text(v: &Value, path: &[&str]) -> String {
    let mut at = v;
    for p in path {
        match at.get(p) {
            Some(next) => at = next,
            None => return String::new(),
        }
    }
    at.as_str().unwrap_or_default().to_string()
}

fn first_nonempty(values: impl IntoIterator<Item = String>) -> String {
    values.into_iter().find(|s| !s.is_empty()).unwrap_or_default()
}

/// The first line of a commit message.
fn subject(message: &str) -> String {
    message.lines().next().unwrap_or_default().chars().take(200).collect()
}

fn is_sha(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Reads a delivery whose signature was checked.
pub fn read(headers: &HeaderMap, body: &[u8]) -> Result<Reading, String> {
    let event = header(headers, &["x-github-event", "x-gitea-event", "x-forgejo-event", "x-gogs-event"])
        .ok_or("no X-GitHub-Event (or X-Gitea-Event) header: not a webhook delivery")?
        .to_ascii_lowercase();
    let id = header(headers, &["x-github-delivery", "x-gitea-delivery", "x-forgejo-delivery"])
        .map(|s| s.chars().take(100).collect());
    let payload: Value = serde_json::from_slice(body).map_err(|e| format!("the payload is not JSON: {e}"))?;
    match event.as_str() {
        "ping" => Ok(Reading::Ping),
        "push" => {
            let reference = text(&payload, &["ref"]);
            let after = text(&payload, &["after"]);
            // Anything but a SHA (a new branch's zeros are one) tells nothing
            // of what changed: every file counts as changed.
            let before = Some(text(&payload, &["before"])).filter(|b| is_sha(b)).unwrap_or_else(|| "0".repeat(40));
            if !is_sha(&after) {
                return Err("a push without a commit SHA in `after`".into());
            }
            let by = first_nonempty([
                text(&payload, &["pusher", "name"]),
                text(&payload, &["pusher", "login"]),
                text(&payload, &["pusher", "username"]),
                text(&payload, &["sender", "login"]),
            ]);
            let message = subject(&text(&payload, &["head_commit", "message"]));
            let author = first_nonempty([
                text(&payload, &["head_commit", "author", "name"]),
                text(&payload, &["head_commit", "author", "username"]),
            ]);
            let event = if let Some(branch) = reference.strip_prefix("refs/heads/") {
                RepoEvent::Branch { name: branch.to_string(), before, after }
            } else if let Some(tag) = reference.strip_prefix("refs/tags/") {
                if after.chars().all(|c| c == '0') {
                    return Ok(Reading::Ignored(format!("tag {tag} was deleted")));
                }
                RepoEvent::Tag { name: tag.to_string(), sha: after }
            } else {
                return Ok(Reading::Ignored(format!("a push to {reference}, neither a branch nor a tag")));
            };
            Ok(Reading::Delivery(Delivery { event, by, message, author, id }))
        }
        "pull_request" => {
            let action = text(&payload, &["action"]);
            // GitHub says `synchronize`, Gitea and Forgejo `synchronized`.
            if !matches!(action.as_str(), "opened" | "reopened" | "synchronize" | "synchronized") {
                return Ok(Reading::Ignored(format!("pull request action `{action}` starts nothing")));
            }
            let pr = payload.get("pull_request").ok_or("a pull_request event without `pull_request`")?;
            let number = payload.get("number").or_else(|| pr.get("number")).and_then(Value::as_u64).ok_or("a pull request without a number")?;
            let sha = text(pr, &["head", "sha"]);
            if !is_sha(&sha) {
                return Err("a pull request without its head's SHA".into());
            }
            let event = RepoEvent::PullRequest {
                number,
                base: text(pr, &["base", "ref"]),
                sha,
                head_ref: text(pr, &["head", "ref"]),
            };
            let by = first_nonempty([text(&payload, &["sender", "login"]), text(pr, &["user", "login"])]);
            let message = subject(&text(pr, &["title"]));
            Ok(Reading::Delivery(Delivery { event, author: by.clone(), by, message, id }))
        }
        other => Ok(Reading::Ignored(format!("the `{other}` event starts nothing"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn signed(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_right_secret_over_the_exact_body_passes() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = headers(&[("x-hub-signature-256", &signed(b"s3cret", body))]);
        assert!(signature_ok(&good, body, b"s3cret"));
        assert!(!signature_ok(&good, body, b"other"));
        assert!(!signature_ok(&good, br#"{"ref":"refs/heads/prod"}"#, b"s3cret"));
        assert!(!signature_ok(&HeaderMap::new(), body, b"s3cret"), "no signature at all");
        let gitea = headers(&[("x-gitea-signature", signed(b"s3cret", body).trim_start_matches("sha256="))]);
        assert!(signature_ok(&gitea, body, b"s3cret"));
    }

    #[test]
    fn github_and_gitea_pushes_tags_and_pull_requests_are_read() {
        let sha = "a".repeat(40);
        let push = format!(
            r#"{{"ref":"refs/heads/main","before":"{}","after":"{sha}","pusher":{{"name":"ada"}},"head_commit":{{"message":"Fix it\n\nbody","author":{{"name":"Ada L"}}}}}}"#,
            "0".repeat(40)
        );
        let got = read(&headers(&[("x-github-event", "push"), ("x-github-delivery", "d-1")]), push.as_bytes()).unwrap();
        let Reading::Delivery(d) = got else { panic!("{got:?}") };
        assert_eq!(d.event, RepoEvent::Branch { name: "main".into(), before: "0".repeat(40), after: sha.clone() });
        assert_eq!((d.by.as_str(), d.message.as_str(), d.author.as_str(), d.id.as_deref()), ("ada", "Fix it", "Ada L", Some("d-1")));
        let tag = format!(r#"{{"ref":"refs/tags/v1.2.0","after":"{sha}","pusher":{{"login":"bo"}}}}"#);
        let Reading::Delivery(d) = read(&headers(&[("x-gitea-event", "push")]), tag.as_bytes()).unwrap() else { panic!() };
        assert_eq!(d.event, RepoEvent::Tag { name: "v1.2.0".into(), sha: sha.clone() });
        let pr = format!(
            r#"{{"action":"synchronized","number":7,"pull_request":{{"title":"Add x","head":{{"sha":"{sha}","ref":"feat"}},"base":{{"ref":"main"}},"user":{{"login":"cy"}}}}}}"#
        );
        let Reading::Delivery(d) = read(&headers(&[("x-gitea-event", "pull_request")]), pr.as_bytes()).unwrap() else { panic!() };
        assert_eq!(d.event, RepoEvent::PullRequest { number: 7, base: "main".into(), sha, head_ref: "feat".into() });
        let closed = r#"{"action":"closed","number":7,"pull_request":{}}"#;
        assert!(matches!(read(&headers(&[("x-github-event", "pull_request")]), closed.as_bytes()).unwrap(), Reading::Ignored(_)));
        assert_eq!(read(&headers(&[("x-github-event", "ping")]), b"{}").unwrap(), Reading::Ping);
        assert!(read(&HeaderMap::new(), b"{}").is_err());
    }
}
