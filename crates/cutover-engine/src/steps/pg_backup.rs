//! `pg.backup` and `pg.restore`: cutover-pg's backups directory, from a plan.
//! A relative `dir` is read from the plan's directory.

use super::{Outputs, StepCtx, StepError};
use crate::model::NewEvent;
use cutover_pg::backup;
use cutover_plan::{PgBackupStep, PgRestoreStep};
use serde_json::json;

pub async fn run_backup(s: &PgBackupStep, ctx: &StepCtx<'_>) -> Result<Outputs, StepError> {
    let dsn = ctx.render_dsn(&s.dsn, "the dsn")?;
    let dir = ctx.plan_dir.join(ctx.render(&s.dir, "the dir")?);
    let tools = ctx.pg_tools(&s.pg_bin);
    let label = format!("run {} target {}", ctx.run_id, ctx.target);
    let b = backup::backup(&dsn, &dir, &tools, &label).await.map_err(|e| ctx.fail(format!("pg.backup: {e}")))?;
    let data = serde_json::to_value(&b).unwrap_or_default();
    let ev = NewEvent::step(
        ctx.target,
        ctx.step,
        "backup_taken",
        format!(
            "backup {} of {} (PostgreSQL {}): {} in {:.1} s, sha256 {}",
            b.id,
            b.database,
            b.server_version,
            cutover_pg::copy::human_bytes(b.size),
            b.seconds,
            &b.sha256[..12.min(b.sha256.len())]
        ),
    )
    .with_data(json!({ "backup": data, "dir": dir.display().to_string() }));
    ctx.engine.emit(ctx.run_id, ev).map_err(|e| ctx.fail(e.to_string()))?;
    let mut out = Outputs::new();
    if let serde_json::Value::Object(o) = data {
        out.extend(o);
    }
    out.insert("path".into(), json!(dir.join(&b.file).display().to_string()));
    Ok(out)
}

pub async fn run_restore(s: &PgRestoreStep, ctx: &StepCtx<'_>) -> Result<Outputs, StepError> {
    let from = ctx.render(&s.from, "from")?;
    let target = ctx.render_dsn(&s.target_dsn, "the target_dsn")?;
    let dir = ctx.plan_dir.join(ctx.render(&s.dir, "the dir")?);
    let tools = ctx.pg_tools(&s.pg_bin);
    let r = backup::restore(&dir, &from, &target, s.jobs as usize, s.clean, s.no_owner, &tools)
        .await
        .map_err(|e| ctx.fail(format!("pg.restore: {e}")))?;
    let ev = NewEvent::step(
        ctx.target,
        ctx.step,
        "backup_restored",
        format!("backup {} restored into {} in {:.1} s", r.id, cutover_pg::describe(&target), r.seconds),
    )
    .with_data(json!({ "id": r.id, "created_database": r.created_database, "seconds": r.seconds }));
    ctx.engine.emit(ctx.run_id, ev).map_err(|e| ctx.fail(e.to_string()))?;
    let mut out = Outputs::new();
    out.insert("id".into(), json!(r.id));
    out.insert("seconds".into(), json!(r.seconds));
    Ok(out)
}
