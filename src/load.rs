//! The pipeline arguments every command takes, and turning a file into a
//! graph, or into diagnostics on stderr and exit code 2.

use std::path::PathBuf;

use clap::Args;
use stackpipe_dsl::CompileOptions;
use stackpipe_runtime::pipeline::{self, LoadError, LoadedPipeline};

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
}

impl PipelineArgs {
    /// Reads and compiles the file, and checks that no plugin is granted
    /// the state directory (`state_dir`, or the default beside the file).
    /// `require_values`: report vars without a value.
    pub fn load(&self, require_values: bool) -> Result<LoadedPipeline, u8> {
        self.load_with_state(require_values, None)
    }

    /// [`PipelineArgs::load`] for runs whose state is in `state_dir`.
    pub fn load_with_state(&self, require_values: bool, state_dir: Option<&std::path::Path>) -> Result<LoadedPipeline, u8> {
        let opts = CompileOptions { vars: self.vars.clone(), env: self.env.clone(), require_values, ..Default::default() };
        let loaded = pipeline::load(&self.file, opts).and_then(|p| {
            let state = state_dir.map(std::path::Path::to_path_buf).unwrap_or_else(|| p.default_state_dir());
            p.check_grants(&state).map(|()| p)
        });
        match loaded {
            Ok(p) => Ok(p),
            Err(LoadError::Invalid(diags)) => {
                let color = crate::stderr_color();
                let theme =
                    if color { miette::GraphicalTheme::unicode() } else { miette::GraphicalTheme::unicode_nocolor() };
                let width = if color { terminal_width().unwrap_or(100) } else { 100 };
                let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(width).with_links(false);
                eprint!("{}", diags.render_with(&handler));
                Err(EXIT_INVALID)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Err(EXIT_INVALID)
            }
        }
    }
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
