//! The builtin `local` provisioner: `local.file` and `local.directory`,
//! inside the directories the pipeline grants it (`allow { fs = ["out"] }`).
//!
//! Paths are relative: the host preopens each granted directory under the
//! name the grant is written with, so `out/a.txt` lands in the granted `out`.
//! With `config { root = "out" }`, paths are relative to `out` instead.
//! A `local.file`'s `source` (a file to read the content from) is always
//! relative to the grants as written: `root` places only `path`.

mod ops;
mod spec;

use std::borrow::Cow;

use serde_json::{Map, Value};
use spec::{Config, DirState, FileContent, FileState};
use stackpipe_plugin_sdk::provisioner::{Ctx, Error, Handler, Provisioner, Refresh, Resource, handler};
use stackpipe_plugin_sdk::{Context, Diagnostic, ResourcePlan, diagnostics, files, grants, log};

struct Local;

impl Provisioner for Local {
    const NAME: &'static str = "local";
    fn resources() -> Vec<&'static dyn Handler> {
        vec![handler::<File>(), handler::<Directory>()]
    }
}

/// `local.file`. Config and attributes are read by hand (`spec.rs`), for
/// its own messages; the plugin config is parsed by `Place`.
struct File;

/// `local.directory`.
struct Directory;

type Attributes = Map<String, Value>;

/// A resource type's schema, from `spec::resource_types`.
fn schema(name: &str, outputs: bool) -> Value {
    let t = spec::resource_types().into_iter().find(|t| t.name == name).expect("a local resource type");
    serde_json::from_str(if outputs { &t.outputs_schema } else { &t.attributes_schema }).unwrap_or(Value::Null)
}

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

    /// A path the plugin opened, as the resources' paths are written: under
    /// `root` when it is set (`dev` for `out/dev` with `root = "out"`).
    fn shown(&self, at: &std::path::Path) -> String {
        let root = self.cfg.root.as_deref().map(|r| grants::normalize(std::path::Path::new(r)));
        match root.as_deref().and_then(|r| at.strip_prefix(r).ok()).filter(|rest| !rest.as_os_str().is_empty()) {
            Some(rest) => rest.display().to_string(),
            None => at.display().to_string(),
        }
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

/// Directories this plugin created (as stored: the paths it opened), each
/// checked to be inside the grants.
fn created_paths(place: &Place, dirs: &[String]) -> Result<Vec<std::path::PathBuf>, String> {
    let paths: Vec<std::path::PathBuf> = dirs.iter().map(|d| grants::normalize(std::path::Path::new(d))).collect();
    for p in &paths {
        grants::check(p, place.granted.as_deref())?;
    }
    Ok(paths)
}

/// What a state keeps of the directories created: `before`'s that are still
/// there, and `made`, outermost first.
fn still_created(before: &[std::path::PathBuf], made: Vec<std::path::PathBuf>) -> Result<Vec<String>, String> {
    let mut all = Vec::new();
    for d in before {
        if ops::dir_exists(d)? {
            all.push(d.clone());
        }
    }
    all.extend(made);
    all.sort_by_key(|d| (d.components().count(), d.clone()));
    all.dedup();
    Ok(all.iter().map(|d| d.display().to_string()).collect())
}

/// Removes the empty directories of `dirs` (created by this plugin), logging each.
fn remove_created(ctx: &Ctx, place: &Place, dirs: &[std::path::PathBuf]) -> Result<(), String> {
    for d in ops::remove_empty_dirs(dirs)? {
        log::info(ctx, &format!("removed directory `{}` (created by apply, now empty)", place.shown(&d)));
    }
    Ok(())
}

fn file_spec(desired: &Attributes) -> Result<spec::FileSpec, String> {
    spec::parse_file_attributes(desired).map_err(|d| spec::diagnostics_error(&d))
}

fn dir_spec(desired: &Attributes) -> Result<spec::DirSpec, String> {
    spec::parse_dir_attributes(desired).map_err(|d| spec::diagnostics_error(&d))
}

/// The validate of both types: the attributes' diagnostics, then the config's.
fn validate(ctx: &Ctx, diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut diags = diags;
    if let Err(e) = config(ctx) {
        diags.push(diagnostics::whole(e));
    }
    diags
}

impl Resource for File {
    const NAME: &'static str = "file";
    const DESCRIPTION: &'static str = spec::FILE_DESCRIPTION;
    /// `root`, read by [`Place`].
    type Config = Value;
    type Desired = Attributes;
    type State = FileState;
    type Outputs = Value;

    fn attributes_schema() -> Value {
        schema("file", false)
    }

    fn outputs_schema() -> Value {
        schema("file", true)
    }

    fn validate(ctx: &Ctx, _cfg: &Value, desired: &Attributes) -> Vec<Diagnostic> {
        validate(ctx, spec::parse_file_attributes(desired).err().unwrap_or_default())
    }

    fn read(
        ctx: &Ctx,
        _cfg: &Value,
        from: Refresh<FileState, Attributes>,
    ) -> Result<Option<(FileState, Value)>, Error> {
        let place = Place::new(ctx)?;
        // No state: an apply was interrupted; what it wrote is at the desired path.
        let mut st = match from {
            Refresh::Stored(state) => state,
            Refresh::Interrupted(desired) => {
                let want = file_spec(&desired)?;
                FileState {
                    source: want.source().map(str::to_string),
                    path: want.path,
                    content_sha256: String::new(),
                    size: 0,
                    mode: want.mode,
                    mode_applied: false,
                    created_dirs: Vec::new(),
                }
            }
        };
        let at = place.resolve(&st.path)?;
        match ops::hash_file(&at)? {
            None => {
                log::info(ctx, &format!("file `{}` is gone", st.path));
                Ok(None)
            }
            Some((sha, size)) => {
                if !st.content_sha256.is_empty() && sha != st.content_sha256 {
                    log::info(ctx, &format!("file `{}` was changed outside stackpipe (sha256 {sha})", st.path));
                }
                st.content_sha256 = sha;
                st.size = size;
                // Its mode, when it has one to keep: a change on disk plans as an update back.
                if let (Some(recorded), Some(bits)) = (st.mode.clone(), files::mode(&at)?) {
                    let now = spec::mode_text(bits);
                    if now != recorded {
                        let how = if st.mode_applied { "was changed outside stackpipe" } else { "was never set by stackpipe" };
                        log::info(ctx, &format!("mode of `{}` is {now}: it {how} (desired {recorded})", st.path));
                        st.mode = Some(now);
                    }
                }
                let outputs = st.outputs_value();
                Ok(Some((st, outputs)))
            }
        }
    }

    fn plan(ctx: &Ctx, _cfg: &Value, prior: Option<&FileState>, desired: &Attributes) -> Result<ResourcePlan, Error> {
        let place = Place::new(ctx)?;
        let want = file_spec(desired)?;
        let plan = spec::plan_file(prior, &want, &place.content_sha256(&want)?);
        log::debug(ctx, &format!("plan: {:?} with {} attribute change(s)", plan.change, plan.changes.len()));
        Ok(plan)
    }

    fn apply(
        ctx: &Ctx,
        _cfg: &Value,
        prior: Option<FileState>,
        desired: &Attributes,
    ) -> Result<(FileState, Value), Error> {
        let place = Place::new(ctx)?;
        let want = file_spec(desired)?;
        let at = place.resolve(&want.path)?;
        let content = place.content(&want)?;
        let made = ops::write_file(&at, &content)?;
        if let Some(mode) = &want.mode {
            files::set_mode(&at, spec::mode_bits(mode)?)?;
        }
        let sha = spec::sha256_hex(&content);
        let from = want.source().map(|s| format!(" from `{s}`")).unwrap_or_default();
        let mode = want.mode.as_ref().map(|m| format!(", mode {m}")).unwrap_or_default();
        log::info(ctx, &format!("wrote `{}`{from} ({} bytes{mode}, sha256 {sha})", want.path, content.len()));
        let created = created_paths(&place, &prior.as_ref().map(|p| p.created_dirs.clone()).unwrap_or_default())?;
        if let Some(old) = prior.filter(|p| p.path != want.path) {
            let old_at = place.resolve(&old.path)?;
            ops::remove_file(&old_at)
                .map_err(|e| format!("wrote `{}` but could not delete the file it replaces: {e}", want.path))?;
            log::info(ctx, &format!("deleted `{}` (replaced by `{}`)", old.path, want.path));
            remove_created(ctx, &place, &created)?;
        }
        let size = content.len() as u64;
        let state = FileState {
            source: want.source().map(str::to_string),
            path: want.path,
            content_sha256: sha,
            size,
            mode_applied: want.mode.is_some(),
            mode: want.mode,
            created_dirs: still_created(&created, made)?,
        };
        let outputs = state.outputs_value();
        Ok((state, outputs))
    }

    fn destroy(ctx: &Ctx, _cfg: &Value, state: FileState) -> Result<(), Error> {
        let place = Place::new(ctx)?;
        let at = place.resolve(&state.path)?;
        ops::remove_file(&at)?;
        log::info(ctx, &format!("deleted `{}`", state.path));
        remove_created(ctx, &place, &created_paths(&place, &state.created_dirs)?)?;
        Ok(())
    }
}

impl Resource for Directory {
    const NAME: &'static str = "directory";
    const DESCRIPTION: &'static str = spec::DIR_DESCRIPTION;
    type Config = Value;
    type Desired = Attributes;
    type State = DirState;
    type Outputs = Value;

    fn attributes_schema() -> Value {
        schema("directory", false)
    }

    fn outputs_schema() -> Value {
        schema("directory", true)
    }

    fn validate(ctx: &Ctx, _cfg: &Value, desired: &Attributes) -> Vec<Diagnostic> {
        validate(ctx, spec::parse_dir_attributes(desired).err().unwrap_or_default())
    }

    fn read(ctx: &Ctx, _cfg: &Value, from: Refresh<DirState, Attributes>) -> Result<Option<(DirState, Value)>, Error> {
        let place = Place::new(ctx)?;
        let st = match from {
            Refresh::Stored(state) => state,
            // What it created is not known: the directory itself, as before that was kept.
            Refresh::Interrupted(desired) => DirState { path: dir_spec(&desired)?.path, created: None },
        };
        let at = place.resolve(&st.path)?;
        if ops::dir_exists(&at)? {
            let outputs = st.outputs_value();
            Ok(Some((st, outputs)))
        } else {
            log::info(ctx, &format!("directory `{}` is gone", st.path));
            Ok(None)
        }
    }

    fn plan(ctx: &Ctx, _cfg: &Value, prior: Option<&DirState>, desired: &Attributes) -> Result<ResourcePlan, Error> {
        Place::new(ctx)?;
        let plan = spec::plan_dir(prior, &dir_spec(desired)?);
        log::debug(ctx, &format!("plan: {:?} with {} attribute change(s)", plan.change, plan.changes.len()));
        Ok(plan)
    }

    fn apply(
        ctx: &Ctx,
        _cfg: &Value,
        prior: Option<DirState>,
        desired: &Attributes,
    ) -> Result<(DirState, Value), Error> {
        let place = Place::new(ctx)?;
        let want = dir_spec(desired)?;
        let at = place.resolve(&want.path)?;
        let replaced = prior.as_ref().filter(|p| p.path != want.path).map(|p| Owned::of(&place, p)).transpose()?;
        // Refuse a replace that could not remove the old directory before making the new one.
        if let Some(old) = replaced.as_ref().filter(|o| o.itself)
            && ops::dir_exists(&old.at)?
            && !ops::dir_is_empty(&old.at)?
        {
            return Err(Error(format!(
                "cannot move directory `{}` to `{}`: {}",
                old.at.display(),
                at.display(),
                ops::not_empty_error(&old.at)
            )));
        }
        let made = ops::create_dirs(&at)?;
        let what = if made.is_empty() { "directory was there already" } else { "created directory" };
        log::info(ctx, &format!("{what} `{}`", want.path));
        let mut created = match (&prior, &replaced) {
            (Some(DirState { created: Some(c), .. }), None) => created_paths(&place, c)?,
            // A state from before what apply created was kept: the directory is its own.
            (Some(DirState { created: None, .. }), None) => vec![at.clone()],
            _ => Vec::new(),
        };
        if let Some(old) = replaced {
            created.extend(old.parents.iter().cloned());
            old.remove(ctx, &place, &format!(" (replaced by `{}`)", want.path))?;
        }
        let state = DirState { path: want.path, created: Some(still_created(&created, made)?) };
        let outputs = state.outputs_value();
        Ok((state, outputs))
    }

    fn destroy(ctx: &Ctx, _cfg: &Value, state: DirState) -> Result<(), Error> {
        let place = Place::new(ctx)?;
        Ok(Owned::of(&place, &state)?.remove(ctx, &place, "")?)
    }
}

/// What a `local.directory` owns on disk: the directory itself (unless it was
/// there before apply) and the parents apply made for it.
struct Owned {
    path: String,
    at: std::path::PathBuf,
    itself: bool,
    parents: Vec<std::path::PathBuf>,
}

impl Owned {
    fn of(place: &Place, state: &DirState) -> Result<Owned, String> {
        let at = place.resolve(&state.path)?;
        let Some(created) = &state.created else {
            // A state from before what apply created was kept: the directory itself.
            return Ok(Owned { path: state.path.clone(), at, itself: true, parents: Vec::new() });
        };
        let created = created_paths(place, created)?;
        let itself = created.contains(&at);
        let parents = created.into_iter().filter(|d| *d != at).collect();
        Ok(Owned { path: state.path.clone(), at, itself, parents })
    }

    /// Removes the directory (when it is its own: only empty, else an
    /// error) and then its empty parents.
    fn remove(self, ctx: &Ctx, place: &Place, why: &str) -> Result<(), String> {
        if self.itself {
            ops::remove_dir(&self.at)?;
            log::info(ctx, &format!("removed directory `{}`{why}", self.path));
        } else {
            log::info(ctx, &format!("left directory `{}` in place: it was there before apply", self.path));
        }
        remove_created(ctx, place, &self.parents)
    }
}

stackpipe_plugin_sdk::export_provisioner!(Local);
