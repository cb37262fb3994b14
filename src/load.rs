//! The pipeline arguments every command takes, and turning a file into a
//! graph (checked against its provisioners' schemas for the commands that
//! run it), or into diagnostics on stderr and exit code 2.

use std::path::PathBuf;

use clap::Args;
use stackpipe_dsl::{CompileOptions, Unchecked};
use stackpipe_runtime::input::InputError;
use stackpipe_runtime::pipeline::{self, LoadError, LoadedPipeline};
use stackpipe_runtime::plugin::PluginHost;
use stackpipe_runtime::type_check;

use crate::EXIT_INVALID;

#[derive(Args, Clone)]
pub struct PipelineArgs {
    /// The .pipeline file.
    pub file: PathBuf,
    /// Only this environment (default: every environment, in `after` order).
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,
    /// Set a var: `--var name=value` (wins over environment values and defaults).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    pub vars: Vec<(String, String)>,
    /// The largest pipeline file read, in bytes (`KiB`, `MiB`, `GiB` suffixes
    /// allowed) [default: 16MiB, or $STACKPIPE_MAX_FILE_SIZE].
    #[arg(long = "max-file-size", value_name = "BYTES", value_parser = parse_size)]
    pub max_file_size: Option<u64>,
}

/// Sets the cap on a pipeline file's size when `--max-file-size` is not given.
pub const MAX_FILE_SIZE_ENV: &str = "STACKPIPE_MAX_FILE_SIZE";

/// A var from the environment: `STACKPIPE_VAR_<name>=value`, below `--var`.
pub const VAR_ENV_PREFIX: &str = "STACKPIPE_VAR_";

/// The value of var `name` in the environment, if set.
pub fn var_from_env(name: &str) -> Option<String> {
    std::env::var(format!("{VAR_ENV_PREFIX}{name}")).ok()
}

impl PipelineArgs {
    /// The vars given: `--var` values, and `STACKPIPE_VAR_<name>` variables
    /// for the names `--var` does not give (a secret need not be typed on a
    /// command line, where other users' `ps` can see it).
    pub fn all_vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = std::env::vars()
            .filter_map(|(k, v)| k.strip_prefix(VAR_ENV_PREFIX).map(|n| (n.to_string(), v)))
            .filter(|(n, _)| !n.is_empty() && !self.vars.iter().any(|(k, _)| k == n))
            .collect();
        vars.sort();
        vars.extend(self.vars.iter().cloned());
        vars
    }

    /// Reads and compiles the file, and checks that no plugin is granted
    /// the state directory (`state_dir`, or the default beside the file).
    /// `require_values`: report vars without a value.
    pub fn load(&self, require_values: bool) -> Result<LoadedPipeline, u8> {
        self.load_with_state(require_values, None)
    }

    /// [`PipelineArgs::load`] for runs whose state is in `state_dir`.
    pub fn load_with_state(&self, require_values: bool, state_dir: Option<&std::path::Path>) -> Result<LoadedPipeline, u8> {
        let opts = CompileOptions { vars: self.all_vars(), env: self.env.clone(), require_values, ..Default::default() };
        let max_bytes = self.max_file_size()?;
        let loaded = pipeline::load(&self.file, opts, max_bytes).and_then(|p| {
            let state = state_dir.map(std::path::Path::to_path_buf).unwrap_or_else(|| p.default_state_dir());
            p.check_grants(&state).map(|()| p)
        });
        loaded.map_err(report_load_error)
    }

    /// Reads and compiles the file, every value required, for a run a team
    /// server makes (`deploy FILE --server`): its grants are the server's
    /// to check, against its own state.
    pub fn load_for_server(&self) -> Result<LoadedPipeline, u8> {
        let opts = CompileOptions { vars: self.all_vars(), env: self.env.clone(), require_values: true, ..Default::default() };
        pipeline::load(&self.file, opts, self.max_file_size()?).map_err(report_load_error)
    }

    /// [`PipelineArgs::load_with_state`] (values required), then the pipeline
    /// checked against its provisioners' schemas, loaded through `host`:
    /// what every command that runs the pipeline loads. `sets` are the
    /// `--set` overrides, as typed.
    pub async fn load_checked(
        &self,
        state_dir: Option<&std::path::Path>,
        host: &PluginHost,
        sets: &[(String, String)],
    ) -> Result<LoadedPipeline, u8> {
        let pipeline = self.load_with_state(true, state_dir)?;
        check_types(&pipeline, host, sets).await?;
        Ok(pipeline)
    }

    /// The cap on the file's size: the flag, else the environment, else the default.
    fn max_file_size(&self) -> Result<u64, u8> {
        if let Some(n) = self.max_file_size {
            return Ok(n);
        }
        match std::env::var(MAX_FILE_SIZE_ENV) {
            Ok(v) => parse_size(&v).map_err(|e| {
                eprintln!("error: {MAX_FILE_SIZE_ENV}: {e}");
                EXIT_INVALID
            }),
            Err(std::env::VarError::NotPresent) => Ok(pipeline::DEFAULT_MAX_PIPELINE_BYTES),
            Err(std::env::VarError::NotUnicode(_)) => {
                eprintln!("error: {MAX_FILE_SIZE_ENV} is not valid text");
                Err(EXIT_INVALID)
            }
        }
    }
}

/// `pipeline` checked against its provisioners' schemas (see
/// `stackpipe_runtime::type_check`): its mistakes printed (exit 2), or the
/// provisioners whose resources could not be checked. `sets` are the
/// `--set` overrides, as typed.
pub async fn check_types(pipeline: &LoadedPipeline, host: &PluginHost, sets: &[(String, String)]) -> Result<Vec<Unchecked>, u8> {
    let overridden: Vec<(String, String)> =
        sets.iter().filter_map(|(target, _)| target.split_once('.')).map(|(r, a)| (r.to_string(), a.to_string())).collect();
    type_check::check_types(host, pipeline, &overridden).await.map_err(report_load_error)
}

/// How this process reports a pipeline's mistakes: rendered for a person
/// on stderr (the default), or as JSON on stdout (`check --format json`).
static DIAGNOSTICS_AS_JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, report mistakes as JSON on stdout (see [`report_load_error`]).
pub fn report_as_json() {
    DIAGNOSTICS_AS_JSON.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Prints why a pipeline could not be loaded (its diagnostics, rendered for
/// the terminal, or as JSON: see [`report_as_json`]); exit code 2.
pub fn report_load_error(e: LoadError) -> u8 {
    if DIAGNOSTICS_AS_JSON.load(std::sync::atomic::Ordering::Relaxed) {
        let report = match &e {
            LoadError::Invalid(diags) => {
                serde_json::json!({ "file": diags.source.name(), "ok": false, "diagnostics": diags.to_json() })
            }
            e => serde_json::json!({ "ok": false, "error": e.to_string(), "diagnostics": [] }),
        };
        println!("{report}");
        return EXIT_INVALID;
    }
    match e {
        LoadError::Invalid(diags) => print_diagnostics(&diags),
        e @ LoadError::Read(InputError::TooLarge { .. }) => {
            eprintln!("error: {e}");
            eprintln!("help: if the file really is the pipeline, raise the limit with `--max-file-size BYTES` or {MAX_FILE_SIZE_ENV}");
        }
        e => eprintln!("error: {e}"),
    }
    EXIT_INVALID
}

/// A file's diagnostics on stderr, rustc-style (in colour on a terminal).
pub fn print_diagnostics(diags: &stackpipe_dsl::Diagnostics) {
    let color = crate::stderr_color();
    let theme = if color { miette::GraphicalTheme::unicode() } else { miette::GraphicalTheme::unicode_nocolor() };
    let width = if color { terminal_width().unwrap_or(100) } else { 100 };
    let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(width).with_links(false);
    eprint!("{}", diags.render_with(&handler));
}

/// `1048576`, `512KiB`, `16MiB`, `1GiB` (also `K`, `M`, `G`, `KB`..., all
/// powers of 1024): a number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 =
        number.parse().map_err(|_| format!("expected a size in bytes such as 33554432 or 32MiB, got `{s}`"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("unknown unit in `{s}`: use bytes, KiB, MiB or GiB")),
    };
    number.checked_mul(1 << shift).ok_or_else(|| format!("`{s}` is too large"))
}

fn terminal_width() -> Option<usize> {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok())
}

pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_in_bytes_or_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
        assert!(parse_size("18446744073709551615GiB").is_err());
    }
}
