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
