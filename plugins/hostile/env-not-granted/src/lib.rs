//! env-not-granted: apply reads the HOME and STACKPIPE_SECRET_TEST environment variables.
//! With no env grant neither is visible: apply returns Err("not visible");
//! an Ok (whose outputs carry the values seen) means the sandbox leaked the environment.
#![allow(unused_variables)]

wit_bindgen::generate!({ path: "../../../wit", world: "provisioner-plugin" });
include!("../../common/provisioner.rs");

const NAMES: [&str; 2] = ["HOME", "STACKPIPE_SECRET_TEST"];

fn apply(
    ctx: Context,
    kind: String,
    prior: Option<Json>,
    desired: Json,
    cred: Option<Credential>,
) -> Result<Applied, String> {
    let seen: Vec<String> = NAMES
        .iter()
        .filter_map(|name| {
            std::env::var(name).ok().map(|value| format!("{}:{}", json_string(name), json_string(&value)))
        })
        .collect();
    if seen.is_empty() {
        return Err("not visible".to_string());
    }
    Ok(Applied { state: "{}".to_string(), outputs: format!("{{{}}}", seen.join(",")) })
}
