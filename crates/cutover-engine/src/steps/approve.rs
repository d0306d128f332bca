//! `approve`: wait for a named human's go (`cutover approve`, the API or the
//! tower), like gh-ost's postponed cut-over. The approval is recorded in the
//! store, so it survives a restart and names who gave it.

use super::{Outputs, StepCtx, StepError};
use crate::model::NewEvent;
use cutover_plan::ApproveStep;
use serde_json::{Value, json};
use std::time::Duration;

pub async fn run(s: &ApproveStep, ctx: &StepCtx<'_>) -> Result<Outputs, StepError> {
    let message = match &s.message {
        Some(m) => ctx.render(m, "the message")?,
        None => format!("approve step `{}` for `{}`", ctx.step, ctx.target),
    };
    let mut asked = false;
    loop {
        let found = ctx
            .engine
            .store()
            .approval(ctx.run_id, ctx.target, ctx.step)
            .map_err(|e| ctx.fail(format!("cannot read approvals: {e}")))?;
        if let Some(a) = found {
            let mut out = Outputs::new();
            out.insert("approved_by".into(), Value::String(a.actor));
            out.insert("note".into(), a.note.map(Value::String).unwrap_or(Value::Null));
            out.insert("at".into(), Value::String(a.at));
            return Ok(out);
        }
        if !asked {
            asked = true;
            let ev = NewEvent::step(
                ctx.target,
                ctx.step,
                "approval_needed",
                format!("waiting for approval: {message} (`cutover approve {} {}`)", ctx.run_id, ctx.step),
            )
            .with_data(json!({ "message": message }));
            ctx.engine.emit(ctx.run_id, ev).map_err(|e| ctx.fail(e.to_string()))?;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
