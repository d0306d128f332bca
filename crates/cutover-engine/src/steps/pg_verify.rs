//! `pg.verify`: compares the target's database with its copy (cutover-pg's
//! verify); any difference fails the step and names the object. The
//! comparison is recorded as an event either way.

use super::{Outputs, StepCtx, StepError};
use crate::model::NewEvent;
use cutover_plan::PgVerifyStep;
use serde_json::json;

pub async fn run(s: &PgVerifyStep, ctx: &StepCtx<'_>) -> Result<Outputs, StepError> {
    let (_, source) = ctx.pg_connect(&s.dsn, "the dsn").await?;
    let (_, target) = ctx.pg_connect(&s.target_dsn, "the target_dsn").await?;
    let r = cutover_pg::verify::run(&source, &target).await.map_err(|e| ctx.fail(format!("verify: {e}")))?;
    let diffs = serde_json::to_value(&r.differences).unwrap_or_default();
    let summary = format!(
        "{} table(s), {} row(s), {} sequence(s) compared: {} difference(s)",
        r.tables,
        r.rows,
        r.sequences,
        r.differences.len()
    );
    let ev = NewEvent::step(ctx.target, ctx.step, "verify_report", summary.clone())
        .with_data(json!({ "tables": r.tables, "rows": r.rows, "sequences": r.sequences, "differences": diffs }));
    ctx.engine.emit(ctx.run_id, ev).map_err(|e| ctx.fail(e.to_string()))?;
    if let Some(first) = r.differences.first() {
        let more =
            if r.differences.len() > 1 { format!(" and {} more", r.differences.len() - 1) } else { String::new() };
        return Err(ctx.fail(format!(
            "verify found {} difference(s): {} {} has {} on the source, {} on the copy{more}",
            r.differences.len(),
            first.kind,
            first.object,
            first.source,
            first.target
        )));
    }
    let mut out = Outputs::new();
    out.insert("tables".into(), json!(r.tables));
    out.insert("rows".into(), json!(r.rows));
    out.insert("sequences".into(), json!(r.sequences));
    Ok(out)
}
