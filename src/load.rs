//! Reading a pipeline file and turning it into a graph, or into diagnostics
//! on stderr and exit code 2.

use std::path::{Path, PathBuf};

use clap::Args;
use stackpipe_dsl::{CompileOptions, PipelineGraph};

use crate::EXIT_INVALID;

/// The arguments every command that reads a pipeline takes.
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

pub struct Loaded {
    pub graph: PipelineGraph,
    #[allow(dead_code)]
    pub path: PathBuf,
}

impl PipelineArgs {
    /// Reads and compiles the file. `require_values`: report vars without a value.
    pub fn load(&self, require_values: bool) -> Result<Loaded, u8> {
        let text = match std::fs::read_to_string(&self.file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", self.file.display());
                return Err(EXIT_INVALID);
            }
        };
        let opts = CompileOptions {
            default_name: file_stem(&self.file),
            vars: self.vars.clone(),
            env: self.env.clone(),
            require_values,
        };
        let name = self.file.display().to_string();
        match stackpipe_dsl::load(&name, &text, &opts) {
            Ok(graph) => Ok(Loaded { graph, path: self.file.clone() }),
            Err(diags) => {
                let theme = if crate::stderr_color() {
                    miette::GraphicalTheme::unicode()
                } else {
                    miette::GraphicalTheme::unicode_nocolor()
                };
                let width = terminal_width().unwrap_or(100);
                let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(width).with_links(false);
                eprint!("{}", diags.render_with(&handler));
                Err(EXIT_INVALID)
            }
        }
    }
}

fn file_stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "pipeline".into())
}

fn terminal_width() -> Option<usize> {
    if !crate::stderr_color() {
        return None;
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok())
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}
