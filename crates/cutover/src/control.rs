//! Operator commands: pause, abort, retry, skip — presented over
//! `cutover_engine::control::operate`, which the tower uses too.

use crate::cli::Output;
use crate::output::{actor, json, usage};
use crate::run::open_engine;
use crate::show;
use cutover_engine::EngineError;
use cutover_engine::control::{Outcome, operate};
use cutover_engine::model::Action;
use serde_json::json;

fn report(out: Output, run: &str, action: Action, done: bool, message: &str) -> anyhow::Result<()> {
    if out == Output::Json {
        json(&json!({ "run": run, "action": action, "applied": done, "message": message }))
    } else {
        println!("{message}");
        Ok(())
    }
}

/// Runs an action; exit codes: 0 done, 2 refused, 3 for an abort.
pub async fn act(
    state: &str,
    run: &str,
    action: Action,
    target: Option<&str>,
    note: Option<String>,
    out: Output,
) -> anyhow::Result<i32> {
    let engine = open_engine(state)?;
    let outcome = match operate(&engine, run, action, target, &actor(), note.as_deref()).await {
        Ok(o) => o,
        Err(e @ EngineError::Store(_)) => return Err(usage(e)),
        Err(e) => return Err(e.into()),
    };
    let ok_code = if action == Action::Abort { 3 } else { 0 };
    match outcome {
        Outcome::Handed { pid, host, handled } => {
            let what = match action {
                Action::Pause => "it stops starting steps and pauses once steps in flight finish",
                Action::Abort => "it stops steps in flight and runs finally steps",
                _ => "it applies it",
            };
            let msg = if handled {
                format!("run {run}: {action} handed to process {pid} on {host}; {what}")
            } else {
                format!("run {run}: {action} recorded; process {pid} on {host} has not picked it up yet")
            };
            report(out, run, action, handled, &msg)?;
            Ok(ok_code)
        }
        Outcome::Applied(msg) => {
            report(out, run, action, true, &msg)?;
            Ok(ok_code)
        }
        Outcome::Refused(msg) => {
            report(out, run, action, false, &msg)?;
            Ok(2)
        }
        Outcome::Drive(Action::Abort) => match engine.abort_undriven(run).await {
            Ok(s) => {
                show::summary(&engine, run, out)?;
                Ok(s.exit_code())
            }
            Err(e @ EngineError::Held { .. }) => Err(usage(e)),
            Err(e) => Err(e.into()),
        },
        Outcome::Drive(_) => crate::run::resume(state, run, out).await,
    }
}
