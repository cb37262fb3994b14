//! `stackpipe user`: the users of a team server, on its host.

mod common;

use common::{text, Project};

#[test]
fn users_are_added_listed_given_new_tokens_and_removed() {
    let p = Project::new("resource a \"t.step\" {}\n");
    let o = p.run(&["user", "add", "alice", "--role", "operator", "--pipeline", "web"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let token = out.lines().last().unwrap_or_default().to_string();
    assert!(token.starts_with("spt_") && token.len() == 68, "the token, alone, on the last line: {out}");
    assert!(out.starts_with("added user `alice`: operator of pipeline web;"), "{out}");

    let file = std::fs::read_to_string(p.path().join(".stackpipe/users.json")).unwrap();
    assert!(!file.contains(&token), "only the token's hash is stored");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.path().join(".stackpipe/users.json")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    assert_eq!(p.run(&["user", "add", "bob", "--role", "admin"]).status.code(), Some(0));
    let list = text(&p.run(&["user", "list"]).stdout);
    assert_eq!(list, "alice  operator  pipeline web\nbob    admin     every pipeline\n");
    assert!(!text(&p.run(&["user", "list", "--json"]).stdout).contains("spt_"));

    let o = p.run(&["user", "token", "alice"]);
    let rotated = text(&o.stdout).lines().last().unwrap_or_default().to_string();
    assert!(rotated.starts_with("spt_") && rotated != token);

    let o = p.run(&["user", "remove", "alice"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&p.run(&["user", "list"]).stdout), "bob  admin     every pipeline\n");

    // Mistakes: exit 2, saying what there is.
    let o = p.run(&["user", "add", "carol", "--role", "root"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("`root` is not a role: viewer, operator or admin"), "{}", text(&o.stderr));
    let o = p.run(&["user", "remove", "alice"]);
    assert_eq!((o.status.code(), text(&o.stderr)), (Some(2), "error: there is no user `alice` (there are: bob)\n".into()));
    let o = p.run(&["user", "add", "bob", "--role", "viewer"]);
    assert_eq!((o.status.code(), text(&o.stderr)), (Some(2), "error: there is already a user `bob`\n".into()));
}
