//! The builtin `test` provisioner: `test.step`, a resource that touches
//! nothing, for exercising pipelines: delays, injected failures, outputs and an
//! optional ledger file of what was applied and destroyed.

mod step;

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use serde_json::{Map, Value};
use stackpipe_plugin_sdk::provisioner::{Ctx, Error, Handler, Provisioner, Refresh, Resource, handler};
use stackpipe_plugin_sdk::{Context, Diagnostic, ResourcePlan, diagnostics, grants, log};
use step::{Op, State, Step};

struct Test;

impl Provisioner for Test {
    const NAME: &'static str = "test";
    fn resources() -> Vec<&'static dyn Handler> {
        vec![handler::<StepResource>()]
    }
}

/// `test.step`. Its config and attributes are read by hand (`step.rs`): any
/// attribute is allowed, and the messages are the step's own.
struct StepResource;

fn sleep(ctx: &Context, op: Op, step: &Step) {
    let ms = if op == Op::Read { step.refresh_delay_ms } else { step.delay_ms };
    if ms > 0 {
        log::debug(ctx, &format!("{}: sleeping {ms} ms", op.name()));
        // In wasip2 this waits on a clock pollable: the host thread is not blocked.
        std::thread::sleep(Duration::from_millis(ms));
    }
}

fn fail_if(ctx: &Context, op: Op, step: &Step) -> Result<(), String> {
    if let (true, Some(path)) = (step.fails(op), &step.fail_while) {
        let path = std::path::Path::new(path);
        grants::check(path, grants::granted().as_deref()).map_err(|e| format!("`fail_while_exists` {e}"))?;
        if !grants::normalize(path).exists() {
            return Ok(());
        }
    }
    step.check(op).inspect_err(|_| log::info(ctx, &format!("{}: failing on purpose", op.name())))
}

fn record(ctx: &Context, op: Op) -> Result<(), String> {
    let Some(path) = step::ledger_path(&ctx.config)? else { return Ok(()) };
    grants::check(std::path::Path::new(&path), grants::granted().as_deref()).map_err(|e| format!("the ledger {e}"))?;
    let path = grants::normalize(std::path::Path::new(&path));
    let line = step::ledger_line(op, &ctx.pipeline, &ctx.environment, &ctx.resource);
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| format!("cannot append to the ledger `{}`: {e}", path.display()))
}

/// The granted path of this step's record beside the ledger, if there is a ledger.
fn record_file(ctx: &Context) -> Result<Option<std::path::PathBuf>, String> {
    let Some(ledger) = step::ledger_path(&ctx.config)? else { return Ok(None) };
    let path = step::record_path(&ledger, &ctx.pipeline, &ctx.environment, &ctx.resource);
    grants::check(std::path::Path::new(&path), grants::granted().as_deref())
        .map_err(|e| format!("the step record {e}"))?;
    Ok(Some(grants::normalize(std::path::Path::new(&path))))
}

/// Keeps the state of an applied step beside the ledger (written whole, then
/// renamed into place), before the ledger line: a step in the ledger always
/// has its record.
fn keep_record(ctx: &Context, state: &State) -> Result<(), String> {
    let Some(path) = record_file(ctx)? else { return Ok(()) };
    let fail = |e: std::io::Error| format!("cannot write the step record `{}`: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, state.to_json()).map_err(fail)?;
    std::fs::rename(&tmp, &path).map_err(fail)
}

fn forget_record(ctx: &Context) -> Result<(), String> {
    let Some(path) = record_file(ctx)? else { return Ok(()) };
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot remove the step record `{}`: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

fn random_u64() -> Result<u64, String> {
    getrandom::u64().map_err(|e| format!("no random numbers for the step's id: {e}"))
}

fn parse(attributes: Map<String, Value>) -> Result<Step, Error> {
    step::parse_step(attributes).map_err(Error::from)
}

impl Resource for StepResource {
    const NAME: &'static str = "step";
    const DESCRIPTION: &'static str = step::DESCRIPTION;
    /// Only `ledger`, read with `step::ledger_path` where it is used.
    type Config = Value;
    type Desired = Map<String, Value>;
    type State = State;
    type Outputs = Value;

    fn attributes_schema() -> Value {
        step::attributes_schema()
    }

    fn outputs_schema() -> Value {
        step::outputs_schema()
    }

    fn validate(ctx: &Ctx, _cfg: &Value, desired: &Map<String, Value>) -> Vec<Diagnostic> {
        let mut diags = step::validate_attributes(desired.clone());
        if let Err(e) = step::ledger_path(&ctx.config) {
            diags.push(diagnostics::whole(e));
        }
        diags
    }

    fn read(
        ctx: &Ctx,
        _cfg: &Value,
        from: Refresh<State, Map<String, Value>>,
    ) -> Result<Option<(State, Value)>, Error> {
        let st = match from {
            Refresh::Stored(state) => state,
            // An interrupted apply: what it created is in its record, if it got that far.
            Refresh::Interrupted(_) => {
                let Some(path) = record_file(ctx)? else { return Ok(None) };
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        log::info(ctx, "found the step an interrupted apply created");
                        State::from_json(&text)?
                    }
                    Err(_) => return Ok(None),
                }
            }
        };
        let s = parse(st.attributes.clone())?;
        sleep(ctx, Op::Read, &s);
        fail_if(ctx, Op::Read, &s)?;
        let outputs = st.outputs_value(&s);
        Ok(Some((st, outputs)))
    }

    fn plan(
        ctx: &Ctx,
        _cfg: &Value,
        prior: Option<&State>,
        desired: &Map<String, Value>,
    ) -> Result<ResourcePlan, Error> {
        let s = parse(desired.clone())?;
        fail_if(ctx, Op::Plan, &s)?;
        let plan = step::plan(prior, &s);
        log::debug(ctx, &format!("plan: {:?} with {} attribute change(s)", plan.change, plan.changes.len()));
        Ok(plan)
    }

    fn apply(
        ctx: &Ctx,
        _cfg: &Value,
        prior: Option<State>,
        desired: &Map<String, Value>,
    ) -> Result<(State, Value), Error> {
        let s = parse(desired.clone())?;
        if let Some(warning) = desired.get("warn").and_then(Value::as_str) {
            log::warn(ctx, warning);
        }
        sleep(ctx, Op::Apply, &s);
        fail_if(ctx, Op::Apply, &s)?;
        let id = match prior {
            Some(p) => p.id,
            None => step::new_id(&ctx.resource, random_u64()?),
        };
        let state = State { id, attributes: s.attributes.clone() };
        keep_record(ctx, &state)?;
        record(ctx, Op::Apply)?;
        log::info(ctx, &format!("applied step {}", state.id));
        let outputs = state.outputs_value(&s);
        Ok((state, outputs))
    }

    fn destroy(ctx: &Ctx, _cfg: &Value, st: State) -> Result<(), Error> {
        let s = parse(st.attributes.clone())?;
        sleep(ctx, Op::Destroy, &s);
        fail_if(ctx, Op::Destroy, &s)?;
        record(ctx, Op::Destroy)?;
        forget_record(ctx)?;
        log::info(ctx, &format!("destroyed step {}", st.id));
        Ok(())
    }
}

stackpipe_plugin_sdk::export_provisioner!(Test);
