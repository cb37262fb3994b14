//! read-outside-grant: apply tries to read /etc/passwd and ../secret.txt.
//! With no file grant both reads must fail: apply returns Err with each io error;
//! an Ok (whose outputs carry what was read) means the sandbox leaked a file.
#![allow(unused_variables)]

wit_bindgen::generate!({ path: "../../../wit", world: "provisioner-plugin" });
include!("../../common/provisioner.rs");

const PATHS: [&str; 2] = ["/etc/passwd", "../secret.txt"];

fn apply(
    ctx: Context,
    kind: String,
    prior: Option<Json>,
    desired: Json,
    cred: Option<Credential>,
) -> Result<Applied, String> {
    let mut read = Vec::new();
    let mut failed = Vec::new();
    for path in PATHS {
        match std::fs::read_to_string(path) {
            Ok(content) => read.push(format!("{}:{}", json_string(path), json_string(&content))),
            Err(err) => failed.push(format!("{path}: {err}")),
        }
    }
    if read.is_empty() {
        return Err(format!("could not read outside the grant: {}", failed.join("; ")));
    }
    Ok(Applied { state: "{}".to_string(), outputs: format!("{{{}}}", read.join(",")) })
}
