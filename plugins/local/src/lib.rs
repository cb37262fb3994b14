//! The builtin `local` provisioner: `local.file` and `local.directory`,
//! inside the directories the pipeline grants it (`allow { fs = ["out"] }`).
//!
//! Paths are relative: the host preopens each granted directory under the
//! name the grant is written with, so `out/a.txt` lands in the granted `out`.
//! With `config { root = "out" }`, paths are relative to `out` instead.
//! A `local.file`'s `source` (a file to read the content from) is always
//! relative to the grants as written: `root` places only `path`.

#[path = "../../common/diagnostics.rs"]
mod diagnostics;
#[path = "../../common/grants.rs"]
mod grants;
#[path = "../../common/json.rs"]
mod json;
mod ops;
mod spec;

wit_bindgen::generate!({ path: "../../wit", world: "provisioner-plugin" });

use std::borrow::Cow;

use exports::stackpipe::plugin::provisioner::Guest;
use spec::{Config, DirState, FileContent, FileState, Kind};
use stackpipe::plugin::host::log;
use stackpipe::plugin::types::{Applied, Context, Credential, Diagnostic, Level, ResourcePlan, ResourceType};

struct Local;

fn config(ctx: &Context) -> Result<Config, String> {
    Config::parse(&ctx.config)
}

/// The call's view of the granted directories, to place paths with.
struct Place {
    cfg: Config,
    granted: Option<Vec<String>>,
}

impl Place {
    fn new(ctx: &Context) -> Result<Place, String> {
        Ok(Place { cfg: config(ctx)?, granted: grants::granted() })
    }

    /// Where `path` is, refused when it is outside every granted directory.
    fn resolve(&self, path: &str) -> Result<std::path::PathBuf, String> {
        let at = self.cfg.resolve(path);
        grants::check(&at, self.granted.as_deref())?;
        Ok(at)
    }

    /// Where a `source` is: as written, not under `root`; refused when it is
    /// outside every granted directory.
    fn resolve_source(&self, source: &str) -> Result<std::path::PathBuf, String> {
        let at = spec::source_path(source);
        grants::check(&at, self.granted.as_deref()).map_err(|e| format!("source: {e}"))?;
        Ok(at)
    }

    /// The sha256 (hex) of a file's desired content; a `source` is read for it.
    fn content_sha256(&self, want: &spec::FileSpec) -> Result<String, String> {
        match &want.content {
            FileContent::Inline(text) => Ok(spec::sha256_hex(text.as_bytes())),
            FileContent::Source(source) => ops::hash_source(&self.resolve_source(source)?),
        }
    }

    /// A file's desired content; a `source` is read for it.
    fn content<'a>(&self, want: &'a spec::FileSpec) -> Result<Cow<'a, [u8]>, String> {
        match &want.content {
            FileContent::Inline(text) => Ok(Cow::Borrowed(text.as_bytes())),
            FileContent::Source(source) => Ok(Cow::Owned(ops::read_source(&self.resolve_source(source)?)?)),
        }
    }
}

fn file_spec(desired: &str) -> Result<spec::FileSpec, String> {
    spec::parse_file(desired).map_err(|d| spec::diagnostics_error(&d))
}

fn dir_spec(desired: &str) -> Result<spec::DirSpec, String> {
    spec::parse_dir(desired).map_err(|d| spec::diagnostics_error(&d))
}

impl Guest for Local {
    fn resource_types() -> Vec<ResourceType> {
        spec::resource_types()
    }

    fn validate(ctx: Context, kind: String, desired: String) -> Vec<Diagnostic> {
        let kind = match Kind::parse(&kind) {
            Ok(k) => k,
            Err(e) => return vec![Diagnostic { attribute: None, message: e }],
        };
        let mut diags = spec::validate(kind, &desired);
        if let Err(e) = config(&ctx) {
            diags.push(Diagnostic { attribute: None, message: e });
        }
        diags
    }

    fn read(
        ctx: Context,
        kind: String,
        state: Option<String>,
        desired: String,
        _cred: Option<Credential>,
    ) -> Result<Option<Applied>, String> {
        let place = Place::new(&ctx)?;
        match Kind::parse(&kind)? {
            Kind::File => {
                // No state: an apply was interrupted; what it wrote is at the desired path.
                let mut st = match state {
                    Some(state) => FileState::from_json(&state)?,
                    None => {
                        let want = file_spec(&desired)?;
                        FileState {
                            source: want.source().map(str::to_string),
                            path: want.path,
                            content_sha256: String::new(),
                            size: 0,
                            mode: want.mode,
                            mode_applied: false,
                        }
                    }
                };
                let at = place.resolve(&st.path)?;
                match ops::hash_file(&at)? {
                    None => {
                        log(&ctx, Level::Info, &format!("file `{}` is gone", at.display()));
                        Ok(None)
                    }
                    Some((sha, size)) => {
                        if !st.content_sha256.is_empty() && sha != st.content_sha256 {
                            log(
                                &ctx,
                                Level::Info,
                                &format!("file `{}` was changed outside stackpipe (sha256 {sha})", at.display()),
                            );
                        }
                        st.content_sha256 = sha;
                        st.size = size;
                        Ok(Some(Applied { state: st.to_json(), outputs: st.outputs() }))
                    }
                }
            }
            Kind::Directory => {
                let st = match state {
                    Some(state) => DirState::from_json(&state)?,
                    None => DirState { path: dir_spec(&desired)?.path },
                };
                let at = place.resolve(&st.path)?;
                if ops::dir_exists(&at)? {
                    Ok(Some(Applied { state: st.to_json(), outputs: st.outputs() }))
                } else {
                    log(&ctx, Level::Info, &format!("directory `{}` is gone", at.display()));
                    Ok(None)
                }
            }
        }
    }

    fn plan(
        ctx: Context,
        kind: String,
        prior: Option<String>,
        desired: String,
        _cred: Option<Credential>,
    ) -> Result<ResourcePlan, String> {
        let place = Place::new(&ctx)?;
        let plan = match Kind::parse(&kind)? {
            Kind::File => {
                let prior = prior.as_deref().map(FileState::from_json).transpose()?;
                let want = file_spec(&desired)?;
                spec::plan_file(prior.as_ref(), &want, &place.content_sha256(&want)?)
            }
            Kind::Directory => {
                let prior = prior.as_deref().map(DirState::from_json).transpose()?;
                spec::plan_dir(prior.as_ref(), &dir_spec(&desired)?)
            }
        };
        log(&ctx, Level::Debug, &format!("plan: {:?} with {} attribute change(s)", plan.change, plan.changes.len()));
        Ok(plan)
    }

    fn apply(
        ctx: Context,
        kind: String,
        prior: Option<String>,
        desired: String,
        _cred: Option<Credential>,
    ) -> Result<Applied, String> {
        let place = Place::new(&ctx)?;
        match Kind::parse(&kind)? {
            Kind::File => {
                let want = file_spec(&desired)?;
                let prior = prior.as_deref().map(FileState::from_json).transpose()?;
                let at = place.resolve(&want.path)?;
                let content = place.content(&want)?;
                ops::write_file(&at, &content)?;
                let sha = spec::sha256_hex(&content);
                let from = want.source().map(|s| format!(" from `{s}`")).unwrap_or_default();
                log(
                    &ctx,
                    Level::Info,
                    &format!("wrote `{}`{from} ({} bytes, sha256 {sha})", at.display(), content.len()),
                );
                if let Some(mode) = &want.mode {
                    log(
                        &ctx,
                        Level::Warn,
                        &format!(
                            "mode {mode} of `{}` is recorded but not applied: WASI has no file permissions",
                            at.display()
                        ),
                    );
                }
                if let Some(old) = prior.filter(|p| p.path != want.path) {
                    let old_at = place.resolve(&old.path)?;
                    ops::remove_file(&old_at).map_err(|e| {
                        format!("wrote `{}` but could not delete the file it replaces: {e}", at.display())
                    })?;
                    log(&ctx, Level::Info, &format!("deleted `{}` (replaced by `{}`)", old_at.display(), at.display()));
                }
                let size = content.len() as u64;
                let state = FileState {
                    source: want.source().map(str::to_string),
                    path: want.path,
                    content_sha256: sha,
                    size,
                    mode: want.mode,
                    mode_applied: false,
                };
                Ok(Applied { state: state.to_json(), outputs: state.outputs() })
            }
            Kind::Directory => {
                let want = dir_spec(&desired)?;
                let prior = prior.as_deref().map(DirState::from_json).transpose()?;
                let at = place.resolve(&want.path)?;
                let replaced = prior.filter(|p| p.path != want.path).map(|p| place.resolve(&p.path)).transpose()?;
                // Refuse a replace that could not remove the old directory before making the new one.
                if let Some(old) = &replaced
                    && ops::dir_exists(old)?
                    && !ops::dir_is_empty(old)?
                {
                    return Err(format!(
                        "cannot move directory `{}` to `{}`: {}",
                        old.display(),
                        at.display(),
                        ops::not_empty_error(old)
                    ));
                }
                ops::create_dir(&at)?;
                log(&ctx, Level::Info, &format!("created directory `{}`", at.display()));
                if let Some(old) = &replaced {
                    ops::remove_dir(old)?;
                    log(
                        &ctx,
                        Level::Info,
                        &format!("removed directory `{}` (replaced by `{}`)", old.display(), at.display()),
                    );
                }
                let state = DirState { path: want.path };
                Ok(Applied { state: state.to_json(), outputs: state.outputs() })
            }
        }
    }

    fn destroy(ctx: Context, kind: String, state: String, _cred: Option<Credential>) -> Result<(), String> {
        let place = Place::new(&ctx)?;
        match Kind::parse(&kind)? {
            Kind::File => {
                let at = place.resolve(&FileState::from_json(&state)?.path)?;
                ops::remove_file(&at)?;
                log(&ctx, Level::Info, &format!("deleted `{}`", at.display()));
            }
            Kind::Directory => {
                let at = place.resolve(&DirState::from_json(&state)?.path)?;
                ops::remove_dir(&at)?;
                log(&ctx, Level::Info, &format!("removed directory `{}`", at.display()));
            }
        }
        Ok(())
    }
}

export!(Local);
