//! Service pipelines' build stage and trigger rules (seed 001): which
//! pushes, tags and pull requests start a pipeline execution ([`decide`]),
//! the repository's mirror and clean checkouts ([`git`]), the build in a
//! process group with a cleared environment ([`build`]), and the store of
//! what builds made, by digest ([`artifact`]). The server's triggers
//! (webhook, polling, manual) and its queue of executions are the server's;
//! the deploy stage is an ordinary run with the artifact in its snapshot.

pub mod artifact;
pub mod build;
pub mod git;

use std::path::Path;

use stackpipe_dsl::{PluginSource, PullRequests, SecretBinding, ServiceSpec};

use crate::plugin::{CallContext, PluginHost, PluginLoad, Sandbox};

/// Something that happened in a service's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoEvent {
    /// A branch moved from `before` (all zeros: it is new) to `after`.
    Branch { name: String, before: String, after: String },
    /// A tag was pushed, naming commit `sha`.
    Tag { name: String, sha: String },
    /// A pull request into `base` was opened or updated; its head is `sha`.
    PullRequest { number: u64, base: String, sha: String, head_ref: String },
}

impl RepoEvent {
    pub fn sha(&self) -> &str {
        match self {
            RepoEvent::Branch { after, .. } => after,
            RepoEvent::Tag { sha, .. } => sha,
            RepoEvent::PullRequest { sha, .. } => sha,
        }
    }
}

/// What an event starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A pipeline execution; `deploy`: with a deploy stage, `previews`: to
    /// the preview environments only.
    Run { preview: bool, deploy: bool },
    /// Nothing, and why (said in the webhook's answer and the server's log).
    Ignore(String),
}

/// Whether `name` matches one of the glob `patterns`.
pub fn matches_any(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| match globset::Glob::new(p) {
        Ok(g) => g.compile_matcher().is_match(name),
        Err(_) => p == name,
    })
}

/// The branches a service builds pushes to: its `branches`, or the
/// repository's default branch.
pub fn builds_branch(spec: &ServiceSpec, default_branch: Option<&str>, branch: &str) -> bool {
    if spec.branches.is_empty() {
        return default_branch.is_some_and(|d| d == branch);
    }
    matches_any(&spec.branches, branch)
}

/// What `event` starts for `spec` (before `paths`, which needs the
/// repository: see [`git::Mirror::changed_files`]). The settings switched at
/// run time are the caller's to apply (`enabled`, `deploys`).
pub fn decide(spec: &ServiceSpec, default_branch: Option<&str>, event: &RepoEvent) -> Decision {
    match event {
        RepoEvent::Branch { name, after, .. } => {
            if after.chars().all(|c| c == '0') {
                return Decision::Ignore(format!("branch {name} was deleted"));
            }
            if builds_branch(spec, default_branch, name) {
                Decision::Run { preview: false, deploy: true }
            } else {
                Decision::Ignore(format!("branch {name} is not one the service builds"))
            }
        }
        RepoEvent::Tag { name, .. } => {
            if spec.tags.is_empty() {
                Decision::Ignore("the service builds no tags".into())
            } else if matches_any(&spec.tags, name) {
                Decision::Run { preview: false, deploy: true }
            } else {
                Decision::Ignore(format!("tag {name} matches none of the service's tag patterns"))
            }
        }
        RepoEvent::PullRequest { number, base, .. } => match spec.pull_requests {
            PullRequests::Off => Decision::Ignore("the service builds no pull requests".into()),
            _ if !builds_branch(spec, default_branch, base) => {
                Decision::Ignore(format!("pull request #{number} targets {base}, not a branch the service builds"))
            }
            PullRequests::Build => Decision::Run { preview: true, deploy: false },
            PullRequests::Deploy => Decision::Run { preview: true, deploy: true },
        },
    }
}

/// The secret `binding` names (a webhook's, a forge token), from its
/// credentials plugin, loaded with its grants as the file gives them.
/// Errors say which plugin and why, never a value.
pub async fn resolve_secret(
    host: &PluginHost,
    binding: &SecretBinding,
    service: &str,
    pipeline: &str,
    base_dir: &Path,
    state_dir: &Path,
) -> Result<String, String> {
    let spec = &binding.resolver;
    let name = spec.name.as_str();
    let bytes = PluginHost::read_source(name, &spec.source, base_dir).map_err(|e| e.to_string())?;
    let sandbox = Sandbox::guarding(&spec.grants, base_dir, Some(state_dir))
        .map_err(|e| format!("plugin `{name}`: cannot prepare its granted directories: {e}"))?;
    let source_desc = match &spec.source {
        PluginSource::Builtin(b) => format!("builtin:{b}"),
        PluginSource::Path(p) => p.clone(),
    };
    let loaded = host
        .load(PluginLoad {
            name,
            kind: spec.kind,
            source_desc: &source_desc,
            bytes: &bytes,
            sandbox,
            limits: spec.limits,
            config: &spec.config,
        })
        .map_err(|e| e.to_string())?;
    let ctx = CallContext {
        pipeline: pipeline.to_string(),
        environment: String::new(),
        resource: format!("service.{service}"),
        run_id: String::new(),
        log: Default::default(),
    };
    let credential = loaded.resolve(host, &ctx, &format!("service.{service}"), &binding.config).await.map_err(|e| e.to_string())?;
    let value = credential.fields.into_iter().find(|(k, _)| *k == binding.field).map(|(_, v)| v);
    let value = value.ok_or_else(|| format!("plugin `{name}` resolved no field `{}`", binding.field))?;
    // Kept out of every log line this process writes from now on.
    crate::secrets::Secrets::new().add(&value);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stackpipe_dsl::BuildSpec;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            name: "api".into(),
            repo: "/srv/api".into(),
            branches: vec!["main".into(), "release/*".into()],
            tags: vec!["v*".into()],
            pull_requests: PullRequests::Build,
            paths: vec![],
            poll_s: None,
            enabled: true,
            deploys: true,
            build: BuildSpec { command: vec!["true".into()], artifact: "out".into(), timeout_s: 60, env: Default::default() },
            webhook: None,
            commit_status: None,
            span: Default::default(),
        }
    }

    fn branch(name: &str) -> RepoEvent {
        RepoEvent::Branch { name: name.into(), before: "1".repeat(40), after: "2".repeat(40) }
    }

    #[test]
    fn branches_tags_and_pull_requests_trigger_as_the_service_says() {
        let s = spec();
        assert_eq!(decide(&s, Some("main"), &branch("main")), Decision::Run { preview: false, deploy: true });
        assert_eq!(decide(&s, Some("main"), &branch("release/2.0")), Decision::Run { preview: false, deploy: true });
        assert!(matches!(decide(&s, Some("main"), &branch("feature")), Decision::Ignore(_)));
        let tag = |n: &str| RepoEvent::Tag { name: n.into(), sha: "2".repeat(40) };
        assert_eq!(decide(&s, None, &tag("v1.2.0")), Decision::Run { preview: false, deploy: true });
        assert!(matches!(decide(&s, None, &tag("nightly")), Decision::Ignore(_)));
        let pr = |base: &str| RepoEvent::PullRequest { number: 7, base: base.into(), sha: "3".repeat(40), head_ref: "f".into() };
        assert_eq!(decide(&s, Some("main"), &pr("main")), Decision::Run { preview: true, deploy: false });
        assert!(matches!(decide(&s, Some("main"), &pr("feature")), Decision::Ignore(_)));
        let deploying = ServiceSpec { pull_requests: PullRequests::Deploy, ..spec() };
        assert_eq!(decide(&deploying, Some("main"), &pr("main")), Decision::Run { preview: true, deploy: true });
        let no_tags = ServiceSpec { tags: vec![], ..spec() };
        assert!(matches!(decide(&no_tags, None, &tag("v1.2.0")), Decision::Ignore(_)));
    }

    #[test]
    fn without_branches_the_default_branch_builds() {
        let s = ServiceSpec { branches: vec![], ..spec() };
        assert!(matches!(decide(&s, Some("trunk"), &branch("trunk")), Decision::Run { .. }));
        assert!(matches!(decide(&s, Some("trunk"), &branch("main")), Decision::Ignore(_)));
        let deleted = RepoEvent::Branch { name: "trunk".into(), before: "1".repeat(40), after: "0".repeat(40) };
        assert!(matches!(decide(&s, Some("trunk"), &deleted), Decision::Ignore(_)));
    }
}
