//! The builtin `test` provisioner: `test.step`, a resource that touches
//! nothing, for exercising pipelines: delays, injected failures, outputs and an
//! optional ledger file of what was applied and destroyed.

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

    fn read(ctx: Context, kind: String, state: String, _cred: Option<Credential>) -> Result<Option<String>, String> {
        step::check_kind(&kind)?;
        let st = State::from_json(&state)?;
        let s = step::parse_step(st.attributes.clone()).map_err(|d| step::diagnostics_error(&d))?;
        fail_if(&ctx, Op::Read, &s)?;
        Ok(Some(state))
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
        record(&ctx, Op::Apply)?;
        let state = State { id, attributes: s.attributes.clone() };
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
        log(&ctx, Level::Info, &format!("destroyed step {}", st.id));
        Ok(())
    }
}

export!(Test);
