//! A real editor nobody here wrote: headless Neovim (Debian's `neovim`,
//! whose built-in LSP client starts `stackpipe lsp`) opens a broken file
//! and writes down the diagnostics it received. The configuration is the
//! one `docs/editors.md` gives, in the form Neovim 0.7 (Debian 12's) takes.

use std::process::Command;
use std::time::Duration;

const BROKEN: &str = r#"pipeline "broken"

plugin t {
  kind   = "provisioner"
  source = "builtin:test"
}

resource a "t.step" {
  x = b.id
}

resource b "t.step" {
  y = a.id
  z = var.nope
}
"#;

#[test]
fn neovim_shows_the_diagnostics_of_a_broken_file() {
    let nvim = which("nvim")
        .expect("Neovim (`nvim`) on PATH: Debian's `neovim` package (.ci/run installs it)");
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("broken.pipeline");
    std::fs::write(&file, BROKEN).expect("write the file");
    let out = dir.path().join("diagnostics.txt");
    let init = dir.path().join("init.lua");
    std::fs::write(&init, init_lua(env!("CARGO_BIN_EXE_stackpipe"), &out)).expect("write init.lua");

    let mut child = Command::new(nvim)
        .args(["--headless", "--clean", "-n", "-u"])
        .arg(&init)
        .arg(&file)
        .env("HOME", dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start nvim");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for nvim") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("nvim did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "nvim: {status}");
    let got = std::fs::read_to_string(&out).expect("nvim wrote the diagnostics it received");
    assert_eq!(
        got,
        "13:7 stackpipe::cycle dependency cycle: a -> b -> a\n\
         14:11 stackpipe::unknown_reference unknown var `nope`\n",
        "what Neovim received"
    );
}

/// The documented client configuration, and a hook that writes the first
/// diagnostics Neovim gets (line:column code message, 1-based) and quits.
fn init_lua(stackpipe: &str, out: &std::path::Path) -> String {
    format!(
        r#"
vim.g.do_filetype_lua = 1
vim.filetype.add({{ extension = {{ pipeline = 'pipeline' }} }})
vim.api.nvim_create_autocmd('FileType', {{
  pattern = 'pipeline',
  callback = function(args)
    local client = vim.lsp.start_client({{
      name = 'stackpipe',
      cmd = {{ '{stackpipe}', 'lsp' }},
      root_dir = vim.fn.fnamemodify(args.file, ':p:h'),
    }})
    vim.lsp.buf_attach_client(args.buf, client)
  end,
}})
vim.api.nvim_create_autocmd('DiagnosticChanged', {{
  callback = function(args)
    local diagnostics = vim.diagnostic.get(args.buf)
    if #diagnostics == 0 then return end
    table.sort(diagnostics, function(a, b) return a.lnum < b.lnum end)
    local lines = {{}}
    for _, d in ipairs(diagnostics) do
      local first = vim.split(d.message, '\n')[1]
      table.insert(lines, string.format('%d:%d %s %s', d.lnum + 1, d.col + 1, d.code or '?', first))
    end
    vim.fn.writefile(lines, '{out}')
    vim.cmd('qall!')
  end,
}})
vim.defer_fn(function()
  vim.fn.writefile({{ 'no diagnostics within 50 s' }}, '{out}')
  vim.cmd('qall!')
end, 50000)
"#,
        out = out.display()
    )
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}
