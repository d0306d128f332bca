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
    let asking = format!("waiting for approval: {message} (`cutover approve {} {}`)", ctx.run_id, ctx.step);
    let a = wait(ctx, &message, &asking, &|| {}).await?;
    let mut out = Outputs::new();
    out.insert("approved_by".into(), Value::String(a.actor));
    out.insert("note".into(), a.note.map(Value::String).unwrap_or(Value::Null));
    out.insert("at".into(), Value::String(a.at));
    Ok(out)
}

/// Waits for the approval of this step for this target: asks once (an
/// `approval_needed` event saying `asking`, then `on_ask`), then reads the
/// store until it is there. Used by approve steps and by pg.bigint's
/// `approve_cutover`.
pub async fn wait(
    ctx: &StepCtx<'_>,
    message: &str,
    asking: &str,
    on_ask: &(dyn Fn() + Sync),
) -> Result<crate::model::Approval, StepError> {
    let mut asked = false;
    loop {
        let found = ctx
            .engine
            .store()
            .approval(ctx.run_id, ctx.target, ctx.step)
            .map_err(|e| ctx.fail(format!("cannot read approvals: {e}")))?;
        if let Some(a) = found {
            return Ok(a);
        }
        if !asked {
            asked = true;
            let ev = NewEvent::step(ctx.target, ctx.step, "approval_needed", asking.to_string())
                .with_data(json!({ "message": message }));
            ctx.engine.emit(ctx.run_id, ev).map_err(|e| ctx.fail(e.to_string()))?;
            on_ask();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
