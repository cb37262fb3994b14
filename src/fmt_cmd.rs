//! `stackpipe fmt`: rewrites `.pipeline` files in the canonical layout
//! (`stackpipe_dsl::format`), checks that they are in it (`--check`), or
//! shows what would change (`--diff`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use stackpipe_dsl::format::{format, FormatError};
use stackpipe_dsl::Diagnostics;
use stackpipe_runtime::input::read_regular_file;
use stackpipe_runtime::pipeline::DEFAULT_MAX_PIPELINE_BYTES;

use crate::EXIT_INVALID;

#[derive(Args)]
pub struct FmtArgs {
    /// Files and directories to format (a directory: the `.pipeline` files in
    /// it; `-`: standard input to standard output) [default: .]
    #[arg(value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,
    /// Change nothing: exit 1 and name each file that is not formatted.
    #[arg(long)]
    check: bool,
    /// Show what would change, as a unified diff (with --check, change nothing).
    #[arg(long)]
    diff: bool,
    /// Also the `.pipeline` files in subdirectories (hidden ones left out).
    #[arg(long, short = 'r')]
    recursive: bool,
}

/// Exit code of `--check` when a file is not formatted.
const EXIT_UNFORMATTED: u8 = 1;

pub fn fmt(a: FmtArgs) -> Result<(), u8> {
    let paths = if a.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        a.paths.clone()
    };
    if paths.iter().any(|p| p.as_os_str() == "-") {
        if paths.len() > 1 {
            eprintln!("error: `-` (standard input) cannot be formatted with other files");
            return Err(EXIT_INVALID);
        }
        return stdin(&a);
    }
    let mut files = Vec::new();
    for path in &paths {
        collect(path, a.recursive, true, &mut files).map_err(|e| {
            eprintln!("error: {e}");
            EXIT_INVALID
        })?;
    }
    let (mut unformatted, mut failed) = (false, false);
    for file in &files {
        match one(file, &a) {
            Ok(changed) => unformatted |= changed,
            Err(_) => failed = true,
        }
    }
    if failed {
        Err(EXIT_INVALID)
    } else if unformatted && a.check {
        Err(EXIT_UNFORMATTED)
    } else {
        Ok(())
    }
}

/// Formats one file; whether it was (or, with --check, would be) changed.
fn one(file: &Path, a: &FmtArgs) -> Result<bool, u8> {
    let name = file.display().to_string();
    let bytes =
        read_regular_file(file, "pipeline file", DEFAULT_MAX_PIPELINE_BYTES).map_err(|e| {
            eprintln!("error: {e}");
            EXIT_INVALID
        })?;
    let Ok(src) = String::from_utf8(bytes) else {
        eprintln!("error: {name} is not UTF-8 text");
        return Err(EXIT_INVALID);
    };
    let formatted = formatted(&name, &src)?;
    if formatted == src {
        return Ok(false);
    }
    if a.diff {
        print!("{}", unified_diff(&name, &src, &formatted));
    }
    if a.check {
        if !a.diff {
            println!("{name}");
        }
        return Ok(true);
    }
    write_in_place(file, &formatted).map_err(|e| {
        eprintln!("error: cannot write {name}: {e}");
        EXIT_INVALID
    })?;
    if !a.diff {
        println!("{name}");
    }
    Ok(true)
}

fn stdin(a: &FmtArgs) -> Result<(), u8> {
    let mut src = String::new();
    std::io::stdin()
        .take(DEFAULT_MAX_PIPELINE_BYTES + 1)
        .read_to_string(&mut src)
        .map_err(|e| {
            eprintln!("error: cannot read standard input: {e}");
            EXIT_INVALID
        })?;
    if src.len() as u64 > DEFAULT_MAX_PIPELINE_BYTES {
        eprintln!("error: standard input is larger than a pipeline file may be");
        return Err(EXIT_INVALID);
    }
    let formatted = formatted("<stdin>", &src)?;
    if a.check || a.diff {
        if a.diff && formatted != src {
            print!("{}", unified_diff("<stdin>", &src, &formatted));
        }
        return if a.check && formatted != src {
            Err(EXIT_UNFORMATTED)
        } else {
            Ok(())
        };
    }
    std::io::stdout()
        .write_all(formatted.as_bytes())
        .map_err(|e| {
            eprintln!("error: cannot write standard output: {e}");
            EXIT_INVALID
        })
}

/// The file in the canonical layout, or its syntax errors printed.
fn formatted(name: &str, src: &str) -> Result<String, u8> {
    match format(src) {
        Ok(out) => Ok(out),
        Err(FormatError::Syntax(diags)) => {
            crate::load::print_diagnostics(&Diagnostics::new(name, src, diags));
            Err(EXIT_INVALID)
        }
        Err(e @ FormatError::Internal(_)) => {
            eprintln!("error: {name}: {e} (the file is left as it is; please report this)");
            Err(EXIT_INVALID)
        }
    }
}

/// The `.pipeline` files at `path`: the file itself when named, those in a
/// directory (and its subdirectories, `recursive`), in name order.
fn collect(
    path: &Path,
    recursive: bool,
    named: bool,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if !meta.is_dir() {
        if named || is_pipeline(path) {
            out.push(path.to_path_buf());
        }
        return Ok(());
    }
    if !named && !recursive {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        let hidden = entry
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        let is_dir = std::fs::symlink_metadata(&entry)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if (is_dir && !hidden) || (!is_dir && is_pipeline(&entry)) {
            collect(&entry, recursive, false, out)?;
        }
    }
    Ok(())
}

fn is_pipeline(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "pipeline")
}

/// Replaces the file's contents at once: a new file beside it, with its
/// permissions, renamed over it. A reader never sees half a file, and a
/// failed write leaves the original.
fn write_in_place(path: &Path, text: &str) -> std::io::Result<()> {
    // Through a symlink to the file it names: the link stays a link.
    let path = &std::fs::canonicalize(path)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let permissions = std::fs::metadata(path)?.permissions();
    let mut tmp = tempfile::Builder::new()
        .prefix(".stackpipe-fmt-")
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.as_file().set_permissions(permissions)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn unified_diff(name: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(name, &format!("{name} (formatted)"))
        .to_string()
}
