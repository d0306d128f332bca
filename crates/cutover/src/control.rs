//! Operator commands: pause, abort, retry, skip. Each is recorded as a request
//! first; a live driver applies it, otherwise the command applies it itself.

use crate::cli::Output;
use crate::output::{actor, json, usage};
use crate::run::open_engine;
use crate::show;
use cutover_engine::control::{Applied, apply};
use cutover_engine::model::{Action, NewEvent, Request, RunState};
use cutover_engine::{Engine, EngineError};
use serde_json::json;
use std::time::{Duration, Instant};

/// Waits for a live driver to handle a request; false if it did not in time.
async fn handled(engine: &Engine, id: i64) -> anyhow::Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if engine.store().request_handled(id)? {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

fn check_run(engine: &Engine, run: &str) -> anyhow::Result<cutover_engine::model::RunRecord> {
    engine.store().run(run).map_err(usage)
}

fn report(out: Output, run: &str, action: Action, done: bool, message: &str) -> anyhow::Result<()> {
    if out == Output::Json {
        json(&json!({ "run": run, "action": action, "applied": done, "message": message }))
    } else {
        println!("{message}");
        Ok(())
    }
}

pub async fn pause(state: &str, run: &str, out: Output) -> anyhow::Result<i32> {
    let engine = open_engine(state)?;
    let rec = check_run(&engine, run)?;
    let who = actor();
    let id = engine.store().add_request(run, Action::Pause, None, &who, None)?;
    if let Some(l) = engine.live_holder(run)? {
        let ok = handled(&engine, id).await?;
        let msg = if ok {
            format!(
                "run {run}: pause requested; process {} stops starting steps and pauses once steps in flight finish",
                l.pid
            )
        } else {
            format!("run {run}: pause recorded; process {} has not picked it up yet", l.pid)
        };
        report(out, run, Action::Pause, ok, &msg)?;
        return Ok(0);
    }
    engine.store().mark_request_handled(id)?;
    if matches!(rec.state, RunState::Succeeded | RunState::Aborted) {
        report(out, run, Action::Pause, false, &format!("run {run} has already ended ({})", rec.state))?;
        return Ok(2);
    }
    engine.store().set_run_state(run, RunState::Paused)?;
    engine.emit(run, NewEvent::run("operator_pause", format!("{who} paused the run (no process was driving it)")))?;
    report(out, run, Action::Pause, true, &format!("run {run} is paused; continue with `cutover resume {run}`"))?;
    Ok(0)
}

pub async fn abort(state: &str, run: &str, out: Output) -> anyhow::Result<i32> {
    let engine = open_engine(state)?;
    let rec = check_run(&engine, run)?;
    if matches!(rec.state, RunState::Succeeded | RunState::Aborted) {
        report(out, run, Action::Abort, false, &format!("run {run} has already ended ({})", rec.state))?;
        return Ok(2);
    }
    let who = actor();
    let id = engine.store().add_request(run, Action::Abort, None, &who, None)?;
    if let Some(l) = engine.live_holder(run)? {
        let ok = handled(&engine, id).await?;
        report(
            out,
            run,
            Action::Abort,
            ok,
            &format!("run {run}: abort requested; process {} stops steps in flight and runs finally steps", l.pid),
        )?;
        return Ok(3);
    }
    // Nobody drives the run: this process does the abort itself, so open
    // blocks' finally steps run now.
    engine.store().mark_request_handled(id)?;
    engine.emit(run, NewEvent::run("operator_abort", format!("{who} aborted the run")))?;
    match engine.abort_undriven(run).await {
        Ok(s) => {
            show::summary(&engine, run, out)?;
            Ok(s.exit_code())
        }
        Err(e @ EngineError::Held { .. }) => Err(usage(e)),
        Err(e) => Err(e.into()),
    }
}

pub async fn target_action(
    state: &str,
    run: &str,
    target: &str,
    note: Option<String>,
    retry: bool,
    out: Output,
) -> anyhow::Result<i32> {
    let engine = open_engine(state)?;
    let rec = check_run(&engine, run)?;
    engine.store().target(run, target).map_err(usage)?;
    let action = if retry { Action::Retry } else { Action::Skip };
    let who = actor();
    let id = engine.store().add_request(run, action, Some(target), &who, note.as_deref())?;
    if let Some(l) = engine.live_holder(run)? {
        let ok = handled(&engine, id).await?;
        report(out, run, action, ok, &format!("run {run}: {action} of `{target}` handed to process {}", l.pid))?;
        return Ok(0);
    }
    let plan = engine.load_plan(&rec)?;
    let req = Request { id, action, target: Some(target.to_string()), actor: who, note };
    let applied = apply(engine.store().as_ref(), &plan, run, &req)?;
    engine.store().mark_request_handled(id)?;
    match applied {
        Applied::Done(msg) => {
            report(out, run, action, true, &format!("{msg}; continue with `cutover resume {run}`"))?;
            Ok(0)
        }
        Applied::Refused(msg) => {
            report(out, run, action, false, &msg)?;
            Ok(2)
        }
    }
}
