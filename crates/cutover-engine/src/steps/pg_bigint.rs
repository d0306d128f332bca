//! `pg.bigint`: cutover-pg's online int → bigint conversion as a step. The
//! conversion keeps its own state in the database (stage, backfill position,
//! committed with each batch), so an attempt after a crash, a kill or
//! `cutover retry` goes on where the last one stopped. Progress (rows, stage,
//! throttle reason) goes to the tower as step progress; with
//! `approve_cutover`, the step stops before the cut-over until someone runs
//! `cutover approve RUN STEP` (gh-ost's postponed cut-over).

use super::{Outputs, StepCtx, StepError};
use crate::model::NewEvent;
use cutover_pg::bigint::{self, Action, Event, Observer, Options};
use cutover_plan::PgBigintStep;
use serde_json::json;
use std::sync::Mutex;

pub async fn run(s: &PgBigintStep, ctx: &StepCtx<'_>) -> Result<Outputs, StepError> {
    let dsn = ctx.render_dsn(&s.dsn, "the dsn")?;
    let mut opts = Options::new(ctx.render(&s.table, "the table")?);
    opts.column = match &s.column {
        Some(c) => Some(ctx.render(c, "the column")?),
        None => None,
    };
    opts.until = s.until.clone();
    opts.from = s.from.clone();
    opts.lock_timeout = s.lock_timeout;
    opts.statement_timeout = s.statement_timeout;
    opts.attempts = s.attempts;
    opts.batch_time = s.batch_time;
    opts.batch_rows = s.batch_rows;
    opts.max_replication_lag = s.max_replication_lag;
    opts.max_transaction_age = s.max_transaction_age;
    opts.max_active = s.max_active;
    let action = Action::parse(&s.action).unwrap_or(Action::Convert);

    // The latest progress, so a stage or throttle change is reported with it.
    let last = Mutex::new((0i64, 0i64, String::from("starting")));
    let note = |n: String| {
        let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
        l.2 = n;
        ctx.progress_note(l.0 as f64, l.1 as f64, "rows", Some(&l.2), true);
    };
    let emit = |e: Event| match e {
        Event::Stage { stage, message } => {
            let ev = NewEvent::step(ctx.target, ctx.step, "bigint_stage", format!("{stage}: {message}"))
                .with_data(json!({ "stage": stage }));
            // Information only: a busy store is not a failed conversion.
            let _ = ctx.engine.emit(ctx.run_id, ev);
            note(format!("stage: {stage}"));
        }
        Event::Progress { done, total, table, .. } => {
            let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
            *l = (done, total, format!("stage: backfill ({table})"));
            ctx.progress_note(done as f64, total as f64, "rows", Some(&l.2), false);
        }
        Event::Throttle(reason) => {
            let (kind, msg) = match &reason {
                Some(r) => ("bigint_throttled", format!("throttled: {r}")),
                None => ("bigint_unthrottled", "backfill going on".to_string()),
            };
            let ev = NewEvent::step(ctx.target, ctx.step, kind, msg.clone()).with_data(json!({ "reason": reason }));
            let _ = ctx.engine.emit(ctx.run_id, ev);
            note(if reason.is_some() { msg } else { "stage: backfill".into() });
        }
        Event::Retry { what, attempt, message } => {
            let ev = NewEvent::step(
                ctx.target,
                ctx.step,
                "bigint_retry",
                format!("{what}: attempt {attempt} could not get its lock ({message})"),
            )
            .with_data(json!({ "attempt": attempt }));
            let _ = ctx.engine.emit(ctx.run_id, ev);
        }
        Event::Statement { .. } => {}
    };
    let hold = ctx.throttle.as_ref().map(|t| t.rx.clone());
    let obs = Observer { emit: &emit, hold };
    let fail = |e: cutover_pg::PgError| ctx.fail(format!("pg.bigint: {e}"));

    let sum = if action == Action::Convert && s.approve_cutover {
        // Everything up to the cut-over, then a human's go, then the cut-over.
        let cut = cutover_pg::bigint::STAGES.len() - 1;
        let until_idx = s.until.as_deref().and_then(|u| bigint::STAGES.iter().position(|x| *x == u)).unwrap_or(cut);
        let mut before = opts.clone();
        before.until = Some(bigint::STAGES[until_idx.min(cut - 1)].to_string());
        let first = bigint::run(&dsn, Action::Convert, &before, &obs).await.map_err(fail)?;
        if until_idx < cut || first.stage == "cutover" || first.stage == "contract" {
            first
        } else {
            let asking = format!(
                "{} (`cutover approve {} {} --target {}`)",
                super::AWAITING_APPROVAL,
                ctx.run_id,
                ctx.step,
                ctx.target
            );
            super::approve::wait(ctx, "cut-over", &asking, &|| note(super::AWAITING_APPROVAL.to_string())).await?;
            let mut after = opts.clone();
            after.from = Some("cutover".into());
            let mut second = bigint::run(&dsn, Action::Convert, &after, &obs).await.map_err(fail)?;
            second.rows += first.rows;
            second.batches += first.batches;
            second.throttled_seconds += first.throttled_seconds;
            let mut stages = first.stages;
            stages.extend(second.stages);
            second.stages = stages;
            second
        }
    } else {
        bigint::run(&dsn, action, &opts, &obs).await.map_err(fail)?
    };
    let data = serde_json::to_value(&sum).unwrap_or_default();
    let ev = NewEvent::step(ctx.target, ctx.step, "bigint_report", sum.message.clone()).with_data(data.clone());
    ctx.engine.emit(ctx.run_id, ev).map_err(|e| ctx.fail(e.to_string()))?;
    let mut out = Outputs::new();
    if let serde_json::Value::Object(o) = data {
        out.extend(o);
    }
    Ok(out)
}
