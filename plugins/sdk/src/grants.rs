//! Which directories the host granted this plugin (its preopens), so that a
//! path outside all of them is reported as not granted instead of looking
//! like a missing file (wasi-libc answers `ENOENT` for both).
//!
//! Check a path with `grants::check(path, grants::granted().as_deref())`, then
//! open `grants::normalize(path)`.

use std::path::{Component, Path, PathBuf};

/// The guest names of the granted directories; none when that cannot be known
/// (natively, in unit tests).
pub fn granted() -> Option<Vec<String>> {
    #[cfg(all(target_arch = "wasm32", target_env = "p2"))]
    {
        Some(wasip2::filesystem::preopens::get_directories().into_iter().map(|(_dir, name)| name).collect())
    }
    #[cfg(not(all(target_arch = "wasm32", target_env = "p2")))]
    {
        None
    }
}

/// The path without `.` components: wasi-libc does not match `./out/a` to the
/// preopen `out`.
pub fn normalize(path: &Path) -> PathBuf {
    path.components().filter(|c| *c != Component::CurDir).collect()
}

/// Whether `path` is `grant` or inside it, component by component.
pub fn is_under(path: &Path, grant: &str) -> bool {
    let grant = normalize(Path::new(grant));
    normalize(path).starts_with(grant)
}

/// An error naming the grants when `path` is outside all of them.
pub fn check(path: &Path, granted: Option<&[String]>) -> Result<(), String> {
    let Some(dirs) = granted else { return Ok(()) };
    if dirs.iter().any(|g| is_under(path, g)) {
        return Ok(());
    }
    let list = if dirs.is_empty() {
        "none".to_string()
    } else {
        dirs.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", ")
    };
    Err(format!(
        "`{}` is not inside a directory granted to this plugin (granted: {list}): add its directory to allow {{ fs = [...] }}",
        path.display()
    ))
}

#[cfg(test)]
mod grants_tests {
    use super::*;

    #[test]
    fn paths_under_grants() {
        assert!(is_under(Path::new("out/a.txt"), "out"));
        assert!(is_under(Path::new("./out/a.txt"), "out"));
        assert!(is_under(Path::new("out/a.txt"), "./out/"));
        assert!(is_under(Path::new("out"), "out"));
        assert!(is_under(Path::new("data/x/y"), "data/x"));
        assert!(is_under(Path::new("anything"), "."));
        assert!(!is_under(Path::new("output/a.txt"), "out"));
        assert!(!is_under(Path::new("data/y"), "data/x"));
        assert_eq!(normalize(Path::new("./out/./a")), PathBuf::from("out/a"));
    }

    #[test]
    fn check_names_the_grants() {
        let dirs = vec!["out".to_string(), "state".to_string()];
        assert!(check(Path::new("out/a"), Some(&dirs)).is_ok());
        let e = check(Path::new("secret/a"), Some(&dirs)).unwrap_err();
        assert_eq!(
            e,
            "`secret/a` is not inside a directory granted to this plugin (granted: `out`, `state`): add its directory to allow { fs = [...] }"
        );
        assert!(check(Path::new("a"), Some(&[])).unwrap_err().contains("granted: none"));
        assert!(check(Path::new("a"), None).is_ok());
    }
}
