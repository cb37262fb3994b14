//! A service's repository, through the git CLI: a bare mirror kept under
//! the server's state (fetched on every trigger and poll), from which each
//! build gets a clean checkout of one commit (sparse when the service
//! names `paths`). Git runs with a cleared environment: no user or system
//! config, no hooks, no prompts, and only the transports a repository URL
//! may use (never `ext::`, which runs commands).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Transports a service's repository may be reached by.
const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    #[error("git {what} failed: {stderr}")]
    Failed { what: String, stderr: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("commit {sha} is not in the repository (it may have been force-pushed away)")]
    NoCommit { sha: String },
    #[error("`{0}` is not a repository a service may name: use a URL (https://, http://, git://, ssh://, file://) or a local path")]
    BadRepo(String),
}

/// The heads and tags of a repository: `refs/heads/main` -> SHA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refs {
    pub refs: BTreeMap<String, String>,
    /// The repository's default branch (its `HEAD`), if it says.
    pub default_branch: Option<String>,
}

impl Refs {
    /// The branches, by name.
    pub fn branches(&self) -> impl Iterator<Item = (&str, &str)> {
        self.refs.iter().filter_map(|(r, sha)| r.strip_prefix("refs/heads/").map(|b| (b, sha.as_str())))
    }
    /// The tags, by name (annotated tags peeled to their commit).
    pub fn tags(&self) -> impl Iterator<Item = (&str, &str)> {
        self.refs.iter().filter_map(|(r, sha)| r.strip_prefix("refs/tags/").map(|t| (t, sha.as_str())))
    }
}

/// A commit's subject line and author.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitMeta {
    pub message: String,
    pub author: String,
}

/// The bare mirror of one service's repository.
pub struct Mirror {
    dir: PathBuf,
    url: String,
}

impl Mirror {
    /// The mirror of `url` kept in `dir` (made on the first fetch). A
    /// relative local path is taken from `base_dir`.
    pub fn new(dir: PathBuf, url: &str, base_dir: &Path) -> Result<Mirror, GitError> {
        let url = repository_url(url, base_dir)?;
        Ok(Mirror { dir, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetches every branch, tag and pull request head (`refs/pull/N/head`,
    /// as GitHub and Gitea publish them), pruning what is gone; returns the
    /// refs as they are now.
    pub fn fetch(&self) -> Result<Refs, GitError> {
        if !self.dir.join("HEAD").exists() {
            std::fs::create_dir_all(&self.dir)?;
            git(Some(&self.dir), &["init", "--quiet", "--bare"], "init")?;
        }
        let dir = self.dir.as_path();
        git(
            Some(dir),
            &[
                "fetch",
                "--quiet",
                "--prune",
                "--prune-tags",
                "--force",
                "--no-write-fetch-head",
                &self.url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
                "+refs/pull/*/head:refs/pull/*/head",
            ],
            "fetch",
        )?;
        let mut refs = self.refs()?;
        refs.default_branch = self.default_branch();
        Ok(refs)
    }

    /// The refs the mirror holds (without asking the repository).
    pub fn refs(&self) -> Result<Refs, GitError> {
        let out = git(
            Some(&self.dir),
            &["for-each-ref", "--format=%(refname) %(objectname) %(*objectname)", "refs/heads", "refs/tags"],
            "for-each-ref",
        )?;
        let mut refs = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut parts = line.split(' ');
            let (Some(name), Some(object)) = (parts.next(), parts.next()) else { continue };
            // An annotated tag: the commit it points at.
            let peeled = parts.next().filter(|p| !p.is_empty()).unwrap_or(object);
            refs.insert(name.to_string(), peeled.to_string());
        }
        Ok(Refs { refs, default_branch: None })
    }

    /// The branch the repository's `HEAD` names, asked of the repository.
    fn default_branch(&self) -> Option<String> {
        let out = git(Some(&self.dir), &["ls-remote", "--symref", &self.url, "HEAD"], "ls-remote").ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("ref: refs/heads/").and_then(|rest| rest.split('\t').next()).map(str::to_string))
    }

    /// The full SHA of `rev` (a SHA or its prefix, a branch, a tag).
    pub fn resolve(&self, rev: &str) -> Result<String, GitError> {
        if rev.starts_with('-') {
            return Err(GitError::NoCommit { sha: rev.to_string() });
        }
        let spec = format!("{rev}^{{commit}}");
        let out = git(Some(&self.dir), &["rev-parse", "--verify", "--quiet", &spec], "rev-parse")
            .map_err(|_| GitError::NoCommit { sha: rev.to_string() })?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Whether `sha` is on `branch` (reachable from its head).
    pub fn is_on_branch(&self, sha: &str, branch: &str) -> bool {
        let head = format!("refs/heads/{branch}");
        git(Some(&self.dir), &["merge-base", "--is-ancestor", sha, &head], "merge-base").is_ok()
    }

    /// The subject line and author of commit `sha`.
    pub fn commit_meta(&self, sha: &str) -> Result<CommitMeta, GitError> {
        let out = git(Some(&self.dir), &["log", "-1", "--format=%s%x00%an", sha, "--"], "log")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (message, author) = text.trim_end().split_once('\0').unwrap_or((text.trim_end(), ""));
        Ok(CommitMeta { message: message.to_string(), author: author.to_string() })
    }

    /// The best common ancestor of `a` and `b`, if they have one.
    pub fn merge_base(&self, a: &str, b: &str) -> Option<String> {
        let out = git(Some(&self.dir), &["merge-base", a, b], "merge-base").ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
    }

    /// The files that differ between `before` and `after`; None when that
    /// cannot be told (`before` unknown, a new branch): then everything
    /// counts as changed.
    pub fn changed_files(&self, before: &str, after: &str) -> Option<Vec<String>> {
        if before.chars().all(|c| c == '0') || self.resolve(before).is_err() {
            return None;
        }
        let out = git(Some(&self.dir), &["diff", "--name-only", "-z", before, after, "--"], "diff").ok()?;
        Some(out.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()).map(|p| String::from_utf8_lossy(p).into_owned()).collect())
    }

    /// A clean checkout of `sha` in `dest` (which must not exist), sparse
    /// to `paths` when there are any. Its objects are borrowed from the
    /// mirror (`--shared`), not copied.
    pub fn checkout(&self, sha: &str, dest: &Path, paths: &[String]) -> Result<(), GitError> {
        let mirror = self.dir.display().to_string();
        let target = dest.display().to_string();
        git(None, &["clone", "--quiet", "--shared", "--no-checkout", &mirror, &target], "clone")?;
        if !paths.is_empty() {
            let mut args = vec!["sparse-checkout", "set", "--no-cone"];
            let patterns: Vec<String> = paths.iter().map(|p| sparse_pattern(p)).collect();
            args.push("--");
            args.extend(patterns.iter().map(String::as_str));
            git(Some(dest), &args, "sparse-checkout")?;
        }
        git(Some(dest), &["checkout", "--quiet", "--detach", sha], "checkout").map_err(|e| match e {
            GitError::Failed { .. } if self.resolve(sha).is_err() => GitError::NoCommit { sha: sha.to_string() },
            e => e,
        })?;
        Ok(())
    }
}

/// A `paths` entry as a sparse-checkout pattern anchored at the root.
fn sparse_pattern(path: &str) -> String {
    let trimmed = path.trim_start_matches("./").trim_start_matches('/');
    format!("/{trimmed}")
}

/// Whether any of `files` is under one of `paths` (a directory, with or
/// without its trailing `/`, or a file).
pub fn touches(files: &[String], paths: &[String]) -> bool {
    paths.iter().any(|p| {
        let p = p.trim_start_matches("./").trim_start_matches('/');
        let dir = p.trim_end_matches('/');
        files.iter().any(|f| f == dir || f.starts_with(&format!("{dir}/")) || dir.is_empty())
    })
}

/// The URL git is given for a service's `repo`: URLs of the allowed
/// transports as they are, a local path made absolute.
pub fn repository_url(repo: &str, base_dir: &Path) -> Result<String, GitError> {
    let lower = repo.to_ascii_lowercase();
    if ["https://", "http://", "git://", "ssh://", "file://"].iter().any(|p| lower.starts_with(p)) {
        return Ok(repo.to_string());
    }
    // `ext::cmd`, `fd::` and other remote helpers; `user@host:path` is ssh.
    if repo.is_empty() || repo.starts_with('-') || repo.contains("::") {
        return Err(GitError::BadRepo(repo.to_string()));
    }
    if !repo.starts_with('/') && !repo.starts_with('.') && repo.contains(':') {
        return Ok(repo.to_string());
    }
    let path = Path::new(repo);
    let absolute = if path.is_absolute() { path.to_path_buf() } else { base_dir.join(path) };
    Ok(absolute.display().to_string())
}

/// The environment git runs with: nothing of the caller's, no config but
/// what the command gives, no hooks, no prompts.
pub(crate) fn git_command(dir: Option<&Path>) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .env("PATH", super::build::SAFE_PATH)
        .env("HOME", "/nonexistent")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("SSH_ASKPASS", "/bin/false")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS)
        .env("LC_ALL", "C")
        .args(["-c", "core.hooksPath=/dev/null", "-c", "protocol.file.allow=always", "-c", "advice.detachedHead=false"])
        .stdin(Stdio::null());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd
}

/// Runs `git args` in `dir`; a non-zero exit is [`GitError::Failed`] with
/// what git said.
fn git(dir: Option<&Path>, args: &[&str], what: &str) -> Result<Output, GitError> {
    let out = git_command(dir).args(args).output().map_err(GitError::Spawn)?;
    if out.status.success() {
        return Ok(out);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().chars().take(2000).collect::<String>();
    Err(GitError::Failed { what: what.to_string(), stderr })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with one commit on `main` holding `files`.
    pub(crate) fn repo_with(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
        let repo = dir.join("origin");
        std::fs::create_dir_all(&repo).unwrap();
        let run = |args: &[&str]| {
            let out = git_command(Some(&repo))
                .args(["-c", "user.name=Ada", "-c", "user.email=ada@example.com"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&["init", "--quiet", "--initial-branch=main"]);
        for (path, text) in files {
            let p = repo.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        run(&["add", "-A"]);
        run(&["commit", "--quiet", "-m", "first commit"]);
        run(&["tag", "-a", "v1.0.0", "-m", "one"]);
        repo
    }

    #[test]
    fn a_mirror_fetches_heads_and_peeled_tags_and_checks_out_sparsely() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo_with(dir.path(), &[("services/api/main.sh", "echo api\n"), ("web/index.html", "<p>\n")]);
        let mirror = Mirror::new(dir.path().join("mirror"), &repo.display().to_string(), dir.path()).unwrap();
        let refs = mirror.fetch().unwrap();
        assert_eq!(refs.default_branch.as_deref(), Some("main"));
        let main = refs.refs["refs/heads/main"].clone();
        assert_eq!(refs.refs["refs/tags/v1.0.0"], main, "an annotated tag is peeled to its commit");
        assert_eq!(mirror.commit_meta(&main).unwrap(), CommitMeta { message: "first commit".into(), author: "Ada".into() });
        let dest = dir.path().join("checkout");
        mirror.checkout(&main, &dest, &["services/api/".into()]).unwrap();
        assert!(dest.join("services/api/main.sh").exists());
        assert!(!dest.join("web/index.html").exists(), "a sparse checkout holds only the service's paths");
        assert!(matches!(mirror.checkout("0123456789abcdef0123456789abcdef01234567", &dir.path().join("x"), &[]), Err(GitError::NoCommit { .. })));
    }

    #[test]
    fn repositories_that_would_run_commands_are_refused() {
        let base = Path::new("/srv/pipelines");
        assert!(matches!(repository_url("ext::sh -c touch% /tmp/pwned", base), Err(GitError::BadRepo(_))));
        assert!(matches!(repository_url("--upload-pack=touch /tmp/x", base), Err(GitError::BadRepo(_))));
        assert_eq!(repository_url("repos/api", base).unwrap(), "/srv/pipelines/repos/api");
        assert_eq!(repository_url("git@github.com:acme/api.git", base).unwrap(), "git@github.com:acme/api.git");
        assert_eq!(repository_url("https://git.example.com/a.git", base).unwrap(), "https://git.example.com/a.git");
    }

    #[test]
    fn a_change_touches_a_path_under_it_only() {
        let files = vec!["services/api/main.go".to_string(), "README.md".to_string()];
        assert!(touches(&files, &["services/api/".into()]));
        assert!(touches(&files, &["services/api".into()]));
        assert!(!touches(&files, &["services/web/".into()]));
        assert!(!touches(&["services/apiary/x".to_string()], &["services/api".into()]));
        assert!(touches(&files, &["README.md".into()]));
    }
}
