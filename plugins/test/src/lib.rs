//! The builtin `test` provisioner: `test.step`, a resource that touches
//! nothing, for exercising pipelines: delays, injected failures, outputs and an
//! optional ledger file of what was applied and destroyed.

#[path = "../../common/diagnostics.rs"]
mod diagnostics;
#[path = "../../common/grants.rs"]
mod grants;
#[path = "../../common/json.rs"]
mod json;
mod step;

wit_bindgen::generate!({ path: "../../wit", world: "provisioner-plugin" });

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use exports::stackpipe::plugin::provisioner::Guest;
use stackpipe::plugin::host::log;
use stackpipe::plugin::types::{Applied, Context, Credential, Diagnostic, Level, ResourcePlan, ResourceType};
use step::{Op, State, Step};

struct Test;

fn sleep(ctx: &Context, op: Op, step: &Step) {
    if step.delay_ms > 0 {
        log(ctx, Level::Debug, &format!("{}: sleeping {} ms", op.name(), step.delay_ms));
        // In wasip2 this waits on a clock pollable: the host thread is not blocked.
        std::thread::sleep(Duration::from_millis(step.delay_ms));
    }
}

fn fail_if(ctx: &Context, op: Op, step: &Step) -> Result<(), String> {
    step.check(op).inspect_err(|_| log(ctx, Level::Info, &format!("{}: failing on purpose", op.name())))
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
    grants::check(std::path::Path::new(&path), grants::granted().as_deref()).map_err(|e| format!("the step record {e}"))?;
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

impl Guest for Test {
    fn resource_types() -> Vec<ResourceType> {
        step::resource_types()
    }

    fn validate(ctx: Context, kind: String, desired: String) -> Vec<Diagnostic> {
        if let Err(e) = step::check_kind(&kind) {
            return vec![Diagnostic { attribute: None, message: e }];
        }
        let mut diags = step::validate(&desired);
        if let Err(e) = step::ledger_path(&ctx.config) {
            diags.push(Diagnostic { attribute: None, message: e });
        }
        diags
    }

    fn read(
        ctx: Context,
        kind: String,
        state: Option<String>,
        _desired: String,
        _cred: Option<Credential>,
    ) -> Result<Option<Applied>, String> {
        step::check_kind(&kind)?;
        let st = match state {
            Some(state) => State::from_json(&state)?,
            // An interrupted apply: what it created is in its record, if it got that far.
            None => {
                let Some(path) = record_file(&ctx)? else { return Ok(None) };
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        log(&ctx, Level::Info, "found the step an interrupted apply created");
                        State::from_json(&text)?
                    }
                    Err(_) => return Ok(None),
                }
            }
        };
        let s = step::parse_step(st.attributes.clone()).map_err(|d| step::diagnostics_error(&d))?;
        fail_if(&ctx, Op::Read, &s)?;
        Ok(Some(Applied { state: st.to_json(), outputs: st.outputs(&s) }))
    }

    fn plan(
        ctx: Context,
        kind: String,
        prior: Option<String>,
        desired: String,
        _cred: Option<Credential>,
    ) -> Result<ResourcePlan, String> {
        step::check_kind(&kind)?;
        let s = step::step_from(&desired, "the resource's attributes")?;
        fail_if(&ctx, Op::Plan, &s)?;
        let prior = prior.as_deref().map(State::from_json).transpose()?;
        let plan = step::plan(prior.as_ref(), &s);
        log(&ctx, Level::Debug, &format!("plan: {:?} with {} attribute change(s)", plan.change, plan.changes.len()));
        Ok(plan)
    }

    fn apply(
        ctx: Context,
        kind: String,
        prior: Option<String>,
        desired: String,
        _cred: Option<Credential>,
    ) -> Result<Applied, String> {
        step::check_kind(&kind)?;
        let s = step::step_from(&desired, "the resource's attributes")?;
        let prior = prior.as_deref().map(State::from_json).transpose()?;
        sleep(&ctx, Op::Apply, &s);
        fail_if(&ctx, Op::Apply, &s)?;
        let id = match prior {
            Some(p) => p.id,
            None => step::new_id(&ctx.resource, random_u64()?),
        };
        let state = State { id, attributes: s.attributes.clone() };
        keep_record(&ctx, &state)?;
        record(&ctx, Op::Apply)?;
        log(&ctx, Level::Info, &format!("applied step {}", state.id));
        Ok(Applied { state: state.to_json(), outputs: state.outputs(&s) })
    }

    fn destroy(ctx: Context, kind: String, state: String, _cred: Option<Credential>) -> Result<(), String> {
        step::check_kind(&kind)?;
        let st = State::from_json(&state)?;
        let s = step::parse_step(st.attributes.clone()).map_err(|d| step::diagnostics_error(&d))?;
        sleep(&ctx, Op::Destroy, &s);
        fail_if(&ctx, Op::Destroy, &s)?;
        record(&ctx, Op::Destroy)?;
        forget_record(&ctx)?;
        log(&ctx, Level::Info, &format!("destroyed step {}", st.id));
        Ok(())
    }
}

export!(Test);
