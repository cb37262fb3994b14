//! A `service` block, checked: a repository, what of it triggers a
//! pipeline execution, and how its build makes an artifact (seed 001). The
//! server's triggers and the runtime's build stage read a [`ServiceSpec`];
//! resources reach what a build made through `service.NAME.artifact.*`,
//! whose values a run is given as [`ArtifactRef`]s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ast::Span;
use crate::graph::PluginSpec;

/// How long a build may run when its block says nothing (`timeout`).
pub const DEFAULT_BUILD_TIMEOUT_S: u64 = 20 * 60;

/// What a pull request does (`pull_requests = "off" | "build" | "deploy"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullRequests {
    /// Pull requests trigger nothing.
    #[default]
    Off,
    /// The artifact is built, nothing is deployed.
    Build,
    /// Built, then deployed to the environments marked `previews = true` only.
    Deploy,
}

impl PullRequests {
    pub const ALL: [(&'static str, PullRequests); 3] =
        [("off", PullRequests::Off), ("build", PullRequests::Build), ("deploy", PullRequests::Deploy)];
    pub fn name(self) -> &'static str {
        PullRequests::ALL.iter().find(|(_, p)| *p == self).map(|(n, _)| *n).unwrap_or("off")
    }
}

/// `build { command = [..] artifact = ".." timeout = "20m" env = { .. } }`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildSpec {
    /// The program and its arguments, run in the checkout's root (no shell).
    pub command: Vec<String>,
    /// The file or directory the build leaves, relative to the checkout.
    pub artifact: String,
    pub timeout_s: u64,
    /// Variables the build is given, on top of the few every build gets
    /// (`PATH`, `HOME`, `STACKPIPE_*`): nothing of the server's own
    /// environment reaches a build unless it is written here.
    pub env: BTreeMap<String, String>,
}

/// A secret a credentials plugin resolves: `{ resolver = PLUGIN config { .. } }`.
/// The plugin is resolved with the pipeline's scope (no environment).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretBinding {
    /// The credentials plugin's name and spec.
    pub resolver: PluginSpec,
    pub config: Value,
    /// Which field of the credential is the secret.
    pub field: String,
}

/// `commit_status { api = ".." context = ".." token { .. } }`: where the
/// statuses of a commit are posted (GitHub's commit-status API shape:
/// `POST {api}/statuses/{sha}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommitStatusSpec {
    /// The repository's API base, like `https://api.github.com/repos/acme/api`.
    pub api: String,
    /// The status's `context`; `stackpipe/SERVICE` unless written.
    pub context: String,
    pub token: SecretBinding,
}

/// One `service "NAME" { .. }`, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSpec {
    pub name: String,
    /// A URL (`https://`, `http://`, `git://`, `ssh://`, `file://`) or a
    /// local path, relative paths from the pipeline file's directory.
    pub repo: String,
    /// Branches whose pushes trigger (glob patterns); empty: the
    /// repository's default branch.
    pub branches: Vec<String>,
    /// Tags whose pushes trigger (glob patterns); empty: no tag builds.
    pub tags: Vec<String>,
    pub pull_requests: PullRequests,
    /// Directories (or files) a change must touch to trigger; empty: any.
    /// The checkout is sparse, to these, when set.
    pub paths: Vec<String>,
    /// How often the repository is polled for new commits and tags; None: not polled.
    pub poll_s: Option<u64>,
    /// `enabled = false`: no pipeline runs at all, pushed or manual.
    pub enabled: bool,
    /// `deploys = false`: pipelines build, and deploy nothing.
    pub deploys: bool,
    pub build: BuildSpec,
    /// `webhook { .. }`: the secret pushes are signed with. A service without
    /// one refuses every webhook.
    pub webhook: Option<SecretBinding>,
    pub commit_status: Option<CommitStatusSpec>,
    #[serde(skip)]
    pub span: Span,
}

/// What a build made, as resources see it: `service.NAME.artifact.{path,
/// digest, tag, commit, branch}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    /// Where the artifact is stored (absolute): a file or a directory.
    pub path: String,
    /// `sha256:HEX` of the file, or of the directory's listing and contents.
    pub digest: String,
    /// The git tag for a tag build, else the commit's SHA.
    pub tag: String,
    /// The commit's full SHA.
    pub commit: String,
    /// The branch built; empty for a tag build.
    #[serde(default)]
    pub branch: String,
}

impl ArtifactRef {
    /// The attributes `service.NAME.artifact` has.
    pub const ATTRIBUTES: [&'static str; 5] = ["path", "digest", "tag", "commit", "branch"];

    /// As an expression's value: an object of its attributes.
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "path": self.path,
            "digest": self.digest,
            "tag": self.tag,
            "commit": self.commit,
            "branch": self.branch,
        })
    }
}

/// How long a build may run at most (`timeout`).
pub const MAX_BUILD_TIMEOUT_S: u64 = 24 * 60 * 60;

/// How often a repository may be polled at most (`poll`): every 5 seconds.
pub const MIN_POLL_S: u64 = 5;

/// Seconds from a duration as written in a service: whole numbers, each
/// followed by its unit, `s`, `m` or `h`, largest first (`"90s"`, `"5m"`,
/// `"1h30m"`). The error says what is wrong, for a label.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    const UNITS: [(char, u64); 3] = [('h', 3600), ('m', 60), ('s', 1)];
    if text.is_empty() {
        return Err("an empty duration".into());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    // The index in UNITS the next part's unit must come at or after.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{text}` is not a duration"));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| format!("`{text}` is too long a duration"))?;
        let Some(unit) = rest[digits..].chars().next() else {
            return Err(format!("`{}` has no unit", &rest[..digits]));
        };
        let Some(at) = UNITS.iter().position(|(u, _)| *u == unit) else {
            let word: String = rest[digits..].chars().take_while(|c| c.is_alphabetic()).collect();
            return Err(match word.is_empty() {
                true => format!("`{text}` is not a duration"),
                false => format!("`{word}` is not a unit of time"),
            });
        };
        if at < next_unit {
            return Err(format!("`{text}`: units go from hours to seconds, each once"));
        }
        next_unit = at + 1;
        total = number
            .checked_mul(UNITS[at].1)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    Ok(total)
}

/// Whether `name` may be a service's name: it is one identifier, as the
/// language's names are, so that `service.NAME.artifact` can refer to it.
pub fn is_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Why `name` cannot be given to a build in `build { env = { .. } }`, if it
/// cannot: not a variable name, or one every build gets already.
pub fn build_env_name_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    let well_formed = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        Some("not an environment variable name")
    } else if name == "PATH" || name == "HOME" || name.starts_with("STACKPIPE_") {
        Some("set by stackpipe for every build")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_written() {
        for (text, secs) in [("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2h5m10s", 7510), ("0s", 0)] {
            assert_eq!(parse_duration(text), Ok(secs), "{text}");
        }
        for text in ["", "5", "m", "5x", "1m1h", "5m5m", "1.5h", " 5m", "5 m", "-5s", "99999999999999999999h"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert_eq!(parse_duration("20 minutes"), Err("`20 minutes` is not a duration".into()));
        assert_eq!(parse_duration("2d"), Err("`d` is not a unit of time".into()));
    }

    #[test]
    fn names_and_env_names() {
        assert!(is_service_name("api") && is_service_name("web-2") && is_service_name("_x"));
        assert!(!is_service_name("") && !is_service_name("2api") && !is_service_name("a b") && !is_service_name("a.b"));
        assert_eq!(build_env_name_problem("GOFLAGS"), None);
        assert!(build_env_name_problem("PATH").is_some());
        assert!(build_env_name_problem("STACKPIPE_RUN").is_some());
        assert!(build_env_name_problem("A-B").is_some());
        assert!(build_env_name_problem("1A").is_some());
    }
}

/// The resources whose attributes use what service `service` builds
/// (`service.NAME.artifact...`), in the graph's order. None: the service
/// only builds (seed 001's build-only pipelines).
pub fn resources_using(graph: &crate::PipelineGraph, service: &str) -> Vec<String> {
    use crate::ast::{ExprKind, Step};
    let mut out = Vec::new();
    for node in graph.graph.node_weights() {
        let mut uses = false;
        for a in &node.attributes {
            a.value.walk(&mut |e| {
                if let ExprKind::Traversal { root, steps } = &e.kind {
                    if root.name == "service" && matches!(steps.first(), Some(Step::Attr(n)) if n.name == service) {
                        uses = true;
                    }
                }
            });
        }
        if uses {
            out.push(node.name.clone());
        }
    }
    out
}
