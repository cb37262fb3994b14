//! The web console's files (`assets/`), embedded in the binary: one
//! binary serves the API and the pages that use it, with no web server
//! beside it and no build step. The pages are plain ES modules and CSS
//! that the browser loads as they are.
//!
//! | file                | what it is                                          |
//! |---------------------|-----------------------------------------------------|
//! | `index.html`        | the one page: its header, navigation and main       |
//! | `console.css`       | the look: colours meeting WCAG AA, status shapes    |
//! | `app.js`            | the router (hash routes) and the session            |
//! | `api.js`            | requests to `/api/v1` (the CSRF token on changes)   |
//! | `dom.js`            | building elements: text is always text, never HTML  |
//! | `status.js`         | the nine node statuses: names, shapes, colours      |
//! | `dag.js`            | the run's graph on a canvas: pan, zoom, find, collapse |
//! | `poll.js`           | asking again while a service's pipeline is in progress |
//! | `pages/*.js`        | one module per page                                 |

use std::sync::OnceLock;

/// One file of the console.
pub struct Asset {
    /// Its name under `/assets/` (`index.html` is served at `/`).
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! assets {
    ($(($name:literal, $type:expr)),* $(,)?) => {
        &[$(Asset { name: $name, content_type: $type, body: include_bytes!(concat!("../assets/", $name)) }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console.
pub const ASSETS: &[Asset] = assets![
    ("index.html", "text/html; charset=utf-8"),
    ("console.css", "text/css; charset=utf-8"),
    ("favicon.svg", "image/svg+xml"),
    ("app.js", JS),
    ("api.js", JS),
    ("dom.js", JS),
    ("status.js", JS),
    ("dag.js", JS),
    ("poll.js", JS),
    ("pages/login.js", JS),
    ("pages/pipelines.js", JS),
    ("pages/runs.js", JS),
    ("pages/run.js", JS),
    ("pages/node.js", JS),
    ("pages/state.js", JS),
    ("pages/gate.js", JS),
    ("pages/services.js", JS),
    ("pages/execution.js", JS),
];

/// The file `name` (as under `/assets/`), if the console has it.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The file's entity tag: the SHA-256 of its bytes, so that a browser
/// revalidates cheaply and never keeps a file of another version.
pub fn etag(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        use sha2::{Digest, Sha256};
        ASSETS.iter().map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.body))[..32])).collect()
    });
    ASSETS.iter().position(|a| a.name == asset.name).map(|i| tags[i].as_str()).unwrap_or("\"\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_a_page_imports_is_embedded() {
        // A module the browser cannot load breaks the whole console: every
        // relative import of every script must name an embedded file.
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).expect("scripts are UTF-8");
            let dir = a.name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let spec = line.split(['"', '\'']).nth(1).unwrap_or_else(|| panic!("{}: {line}", a.name));
                let mut parts: Vec<&str> = if dir.is_empty() { Vec::new() } else { dir.split('/').collect() };
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let target = parts.join("/");
                assert!(asset(&target).is_some(), "{} imports {spec} ({target}), which is not embedded", a.name);
            }
        }
    }

    #[test]
    fn no_script_writes_html_from_strings() {
        // Every string a user controls must render as text: the console
        // builds elements with `dom.js` and never parses strings as HTML.
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).expect("scripts are UTF-8");
            for bad in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
                assert!(!text.contains(bad), "{} uses {bad}", a.name);
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        // The server's Content-Security-Policy allows scripts and styles
        // from the console's own files only.
        let page = std::str::from_utf8(asset("index.html").unwrap().body).unwrap();
        assert!(!page.contains("<script>") && !page.contains(" style=") && !page.contains("<style"), "{page}");
        assert!(!page.contains("onclick") && !page.contains("onload"));
    }
}
