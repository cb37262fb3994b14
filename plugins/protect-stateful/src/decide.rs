//! The policy's decision, independent of the host. Pure, so `cargo test` runs
//! it natively.

use serde_json::{Map, Value};
use stackpipe_plugin_sdk::json::parse_object;

use stackpipe_plugin_sdk::types::Verdict;

/// Types whose deletion loses data, when the config names none.
pub const DEFAULT_TYPES: [&str; 5] =
    ["aws.db_instance", "aws.s3_bucket", "aws.dns_zone", "aws.dynamodb_table", "aws.efs_file_system"];
/// Environments protected when the config names none.
pub const DEFAULT_ENVIRONMENTS: [&str; 2] = ["prod", "production"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub environments: Vec<String>,
    /// Exact types, or prefixes ending in `*` (`aws.rds_*`).
    pub types: Vec<String>,
}

impl Config {
    pub fn is_stateful(&self, ty: &str) -> bool {
        self.types.iter().any(|t| match t.strip_suffix('*') {
            Some(prefix) => ty.starts_with(prefix),
            None => t == ty,
        })
    }

    pub fn protects(&self, environment: &str) -> bool {
        self.environments.iter().any(|e| e == environment)
    }
}

fn string_list(cfg: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, String> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(|| format!("config `{key}` must be a list of strings")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(_) => Err(format!("config `{key}` must be a list of strings")),
    }
}

/// `{ environments = [..], types = [..] }`; `stateful` is read as `types`.
pub fn config(text: &str) -> Result<Config, String> {
    let cfg = parse_object(text, "the plugin config")?;
    let environments =
        string_list(&cfg, "environments")?.unwrap_or_else(|| DEFAULT_ENVIRONMENTS.map(String::from).to_vec());
    let types = match (string_list(&cfg, "types")?, string_list(&cfg, "stateful")?) {
        (None, None) => DEFAULT_TYPES.map(String::from).to_vec(),
        (a, b) => a.into_iter().chain(b).flatten().collect(),
    };
    Ok(Config { environments, types })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub resource: String,
    pub ty: String,
    pub change: String,
    pub environment: String,
    /// Attributes whose change forces the replacement.
    pub forcing: Vec<String>,
}

/// The policy input; `environment` falls back to the call's context.
pub fn input(text: &str, ctx_environment: &str) -> Result<Input, String> {
    let v = parse_object(text, "the policy input")?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (resource, ty, change) = (field("resource"), field("type"), field("change"));
    if change.is_empty() {
        return Err("the policy input has no `change`".into());
    }
    let environment =
        Some(field("environment")).filter(|e| !e.is_empty()).unwrap_or_else(|| ctx_environment.to_string());
    let forcing = v
        .get("changes")
        .and_then(Value::as_array)
        .map(|changes| {
            changes
                .iter()
                .filter(|c| {
                    ["forces_replacement", "forces-replacement", "forcesReplacement"]
                        .iter()
                        .any(|k| c.get(k) == Some(&Value::Bool(true)))
                })
                .filter_map(|c| c.get("path").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Input { resource, ty, change, environment, forcing })
}

fn what(input: &Input) -> String {
    format!("`{}` ({}) in environment `{}`", input.resource, input.ty, input.environment)
}

pub fn decide(cfg: &Config, input: &Input) -> Verdict {
    let change = input.change.to_ascii_lowercase().replace('_', "-");
    let destructive = match change.as_str() {
        "delete" | "replace" => true,
        "create" | "update" | "no-op" | "noop" => false,
        other => return Verdict::Deny(format!("protect-stateful: unknown change `{other}` for {}", what(input))),
    };
    if destructive && cfg.is_stateful(&input.ty) && cfg.protects(&input.environment) {
        let why = if change == "delete" {
            "deleting it loses the data it holds".to_string()
        } else if input.forcing.is_empty() {
            "replacing it deletes the old one and the data it holds".to_string()
        } else {
            let attrs: Vec<String> = input.forcing.iter().map(|a| format!("`{a}`")).collect();
            format!("replacing it (forced by {}) deletes the old one and the data it holds", attrs.join(", "))
        };
        let fix = if change == "delete" {
            "to proceed, keep the resource in the pipeline, or back up its data and remove"
        } else {
            "to proceed, change the pipeline so the resource can be updated in place, or back up its data and remove"
        };
        return Verdict::Deny(format!(
            "refusing to {change} stateful {}: {why}; {fix} `{}` from the protect-stateful policy's `types` (or `{}` from its `environments`) for this deploy",
            what(input),
            input.ty,
            input.environment
        ));
    }
    if change == "delete" {
        return Verdict::RequireApproval(format!("will delete {}", what(input)));
    }
    Verdict::Allow
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(cfg: &str, input_json: &str, ctx_env: &str) -> Verdict {
        decide(&config(cfg).unwrap(), &super::input(input_json, ctx_env).unwrap())
    }

    fn ask(ty: &str, change: &str, env: &str) -> Verdict {
        verdict(
            r#"{"environments":["prod"]}"#,
            &format!(r#"{{"resource":"db","type":"{ty}","change":"{change}","changes":[],"environment":"{env}"}}"#),
            "",
        )
    }

    #[test]
    fn denies_deleting_or_replacing_stateful_types_in_protected_environments() {
        for change in ["delete", "replace"] {
            let Verdict::Deny(reason) = ask("aws.db_instance", change, "prod") else { panic!("{change} allowed") };
            for part in ["`db`", "aws.db_instance", change, "`prod`", "to proceed"] {
                assert!(reason.contains(part), "{reason} lacks {part}");
            }
            assert!(!reason.contains('\n'));
        }
    }

    #[test]
    fn deletes_elsewhere_need_approval() {
        let Verdict::RequireApproval(reason) = ask("aws.db_instance", "delete", "dev") else { panic!() };
        assert_eq!(reason, "will delete `db` (aws.db_instance) in environment `dev`");
        assert!(matches!(ask("aws.subnet", "delete", "prod"), Verdict::RequireApproval(_)));
    }

    #[test]
    fn allows_everything_else() {
        for (ty, change, env) in [
            ("aws.db_instance", "create", "prod"),
            ("aws.db_instance", "update", "prod"),
            ("aws.db_instance", "no-op", "prod"),
            ("aws.db_instance", "replace", "dev"),
            ("aws.subnet", "replace", "prod"),
        ] {
            assert!(matches!(ask(ty, change, env), Verdict::Allow), "{ty} {change} {env}");
        }
    }

    #[test]
    fn environment_comes_from_the_context_when_missing() {
        let input = r#"{"resource":"b","type":"aws.s3_bucket","change":"delete"}"#;
        assert!(matches!(verdict("{}", input, "prod"), Verdict::Deny(_)));
        assert!(matches!(verdict("{}", input, "production"), Verdict::Deny(_)));
        assert!(matches!(verdict("{}", input, "dev"), Verdict::RequireApproval(_)));
    }

    #[test]
    fn replacement_reason_names_the_forcing_attributes() {
        let input = r#"{"resource":"db","type":"aws.db_instance","change":"replace","environment":"prod",
            "changes":[{"path":"engine","forces_replacement":true},{"path":"tags.x","forces_replacement":false}]}"#;
        let Verdict::Deny(reason) = verdict("{}", input, "") else { panic!() };
        assert!(reason.contains("forced by `engine`") && !reason.contains("tags.x"), "{reason}");
    }

    #[test]
    fn config_defaults_aliases_and_patterns() {
        let c = config("").unwrap();
        assert_eq!(c.environments, ["prod", "production"]);
        assert!(c.is_stateful("aws.dynamodb_table") && !c.is_stateful("local.file"));
        // The example pipelines write `stateful = [..]`.
        let c = config(r#"{"stateful":["aws.dns_zone"]}"#).unwrap();
        assert_eq!(c.types, ["aws.dns_zone"]);
        assert!(!c.is_stateful("aws.db_instance"));
        let c = config(r#"{"types":["aws.rds_*"],"environments":"live"}"#).unwrap();
        assert!(c.is_stateful("aws.rds_cluster") && c.protects("live"));
        assert!(config(r#"{"types":[1]}"#).is_err());
        assert!(config("[]").is_err());
    }

    #[test]
    fn bad_input_is_reported() {
        assert!(input("{}", "prod").unwrap_err().contains("change"));
        assert!(input("nope", "prod").is_err());
        assert!(matches!(ask("aws.db_instance", "explode", "prod"), Verdict::Deny(_)));
    }
}
