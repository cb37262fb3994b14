"""py-policy: a stackpipe policy plugin written in Python.

Built with componentize-py against the `policy-plugin` world of
`wit/plugin.wit` (see README.md and scripts/py-policy.sh). stackpipe calls
`evaluate` once per planned change, with the change as a JSON object:

    {"resource": "db", "type": "aws.db_instance", "environment": "prod",
     "change": "create" | "update" | "replace" | "delete" | "no-op",
     "changes": [{"path", "before", "after", "sensitive", "forces_replacement"}]}

The verdict:

- deny deleting a resource whose type starts with one of the `deny_delete`
  prefixes of the plugin's config (default: ["aws.db_"]);
- require approval for a replacement (unless `approve_replace = false`),
  naming the attributes that force it;
- allow everything else.

The policy fails closed: a config or input it cannot read, or any error of
its own, is a deny that says why. An exception escaping `evaluate` would trap
the component, so none does.
"""

import json

from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Context,
    Level,
    Verdict,
    Verdict_Allow,
    Verdict_Deny,
    Verdict_RequireApproval,
)

NAME = "py-policy"
DEFAULT_DENY_DELETE = ["aws.db_"]


class ConfigError(Exception):
    """The plugin's `config { }` is not what this policy understands."""


def read_config(text: str) -> dict:
    """The plugin's config (JSON text) as {"deny_delete": [...], "approve_replace": bool}."""
    try:
        cfg = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise ConfigError(f"the config is not JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ConfigError("the config is not an object")
    prefixes = cfg.get("deny_delete", DEFAULT_DENY_DELETE)
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
        raise ConfigError("`deny_delete` must be a string or a list of strings (type prefixes)")
    approve_replace = cfg.get("approve_replace", True)
    if not isinstance(approve_replace, bool):
        raise ConfigError("`approve_replace` must be true or false")
    return {"deny_delete": prefixes, "approve_replace": approve_replace}


def decide(cfg: dict, change: dict, ctx: Context) -> Verdict:
    """The verdict on one planned change (the `input` object, parsed)."""
    kind = str(change.get("change", "")).lower().replace("_", "-")
    ty = str(change.get("type", ""))
    name = str(change.get("resource") or ctx.resource)
    env = str(change.get("environment") or ctx.environment)
    what = f"`{name}` ({ty}) in `{env}`"

    if kind == "delete":
        prefix = next((p for p in cfg["deny_delete"] if ty.startswith(p)), None)
        if prefix is not None:
            return Verdict_Deny(f"{NAME}: refusing to delete {what}: its type matches deny_delete `{prefix}`")
    if kind == "replace" and cfg["approve_replace"]:
        forced = [str(c.get("path")) for c in change.get("changes") or [] if isinstance(c, dict) and c.get("forces_replacement")]
        why = f" (forced by {', '.join(forced)})" if forced else ""
        return Verdict_RequireApproval(f"{NAME}: replacing {what}{why}")
    return Verdict_Allow()


def describe(v: Verdict) -> str:
    if isinstance(v, Verdict_Deny):
        return f"deny: {v.value}"
    if isinstance(v, Verdict_RequireApproval):
        return f"require approval: {v.value}"
    return "allow"


class Policy(exports.Policy):
    def evaluate(self, ctx: Context, input: str) -> Verdict:
        try:
            cfg = read_config(ctx.config)
            change = json.loads(input)
            if not isinstance(change, dict):
                raise ValueError("the input is not a JSON object")
            verdict = decide(cfg, change, ctx)
        except ConfigError as e:
            verdict = Verdict_Deny(f"{NAME}: {e}")
        except Exception as e:  # fail closed, never trap
            verdict = Verdict_Deny(f"{NAME}: cannot judge the change: {type(e).__name__}: {e}")
        try:
            host.log(ctx, Level.DEBUG, f"{NAME}: {describe(verdict)}")
        except Exception:
            pass  # logging is best effort: the verdict stands
        return verdict
