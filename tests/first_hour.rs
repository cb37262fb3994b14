//! What a newcomer reads in the first hour, as snapshots: `outputs`,
//! `preflight`, `show`, a second writer refused while a run holds the
//! state. Ids, digests, paths and pids are put in words before comparing.

mod common;

use common::{text, Project};

/// `alpha-0123456789abcdef` -> `alpha-<id>`, 64 hex digits -> `<sha256>`,
/// the project's directory -> `<dir>`.
fn redact(p: &Project, s: &str) -> String {
    let s = s.replace(&p.path().display().to_string(), "<dir>");
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(c) = rest.chars().next() {
        let hex = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex == 64 {
            out.push_str("<sha256>");
            rest = &rest[64..];
        } else if hex >= 12 && (out.ends_with('(') || out.ends_with("sha256:")) {
            out.push_str("<digest>");
            rest = &rest[hex..];
        } else if c == '-' && rest[1..].bytes().take_while(u8::is_ascii_hexdigit).count() == 16 {
            out.push_str("-<id>");
            rest = &rest[17..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

const PIPELINE: &str = "resource alpha \"t.step\" { outputs = { port = 8080, name = \"web\" } }\n\
                        resource b \"t.step\" { x = alpha.id }\n\
                        output url = \"http://${alpha.id}:${alpha.port}\"\n";

#[test]
fn outputs_preflight_and_show_read_as_text() {
    let p = Project::new(PIPELINE);
    let o = p.run(&["preflight", "demo.pipeline"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    insta::assert_snapshot!("preflight_ok", redact(&p, &text(&o.stdout)));

    assert_eq!(p.run(&["deploy", "demo.pipeline", "-m", "first"]).status.code(), Some(0));
    let o = p.run(&["outputs", "demo.pipeline"]);
    insta::assert_snapshot!("outputs", redact(&p, &text(&o.stdout)));
    let o = p.run(&["show", "r000001"]);
    insta::assert_snapshot!("show", redact(&p, &text(&o.stdout)));
}
