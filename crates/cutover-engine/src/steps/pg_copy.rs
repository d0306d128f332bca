//! `pg.copy`: cutover-pg's copy of one database to another server, with its
//! pieces recorded as `copy_done` events so that a later attempt (after a
//! crash, a kill or `cutover retry`) skips what is already committed.
//! Progress (bytes of the data phase) goes to the tower as step progress.

use super::{Outputs, StepCtx, StepError};
use crate::model::NewEvent;
use cutover_pg::copy::{self, CopyEvent, Method, Observer, Options};
use cutover_plan::PgCopyStep;
use serde_json::json;
use std::collections::HashSet;

pub async fn run(s: &PgCopyStep, ctx: &StepCtx<'_>) -> Result<Outputs, StepError> {
    let source = ctx.render_dsn(&s.dsn, "the dsn")?;
    let target = ctx.render_dsn(&s.target_dsn, "the target_dsn")?;
    let mut opts = Options::new(std::env::temp_dir().join(format!(
        "cutover-copy-{}-{}-{}",
        ctx.run_id,
        cutover_pg::file_safe(ctx.target),
        cutover_pg::file_safe(ctx.step)
    )));
    opts.method = Method::parse(&s.method).unwrap_or(Method::Fast);
    opts.jobs = s.jobs.max(1) as usize;
    opts.split_bytes = u64::from(s.split_mb.max(1)) << 20;
    opts.no_owner = s.no_owner;
    opts.maintenance_work_mem = s.maintenance_work_mem.clone();
    opts.tools = ctx.pg_tools(&s.pg_bin);

    let done: HashSet<String> = ctx
        .engine
        .store()
        .events_of_kinds(ctx.run_id, &["copy_done"])
        .map_err(|e| ctx.fail(e.to_string()))?
        .into_iter()
        .filter(|e| e.target.as_deref() == Some(ctx.target) && e.step.as_deref() == Some(ctx.step))
        .filter_map(|e| e.data.get("key").and_then(|k| k.as_str()).map(str::to_string))
        .collect();
    let resumed = done.len();
    let emit = |ev: CopyEvent| match ev {
        CopyEvent::Progress { bytes, rows, total_bytes } => {
            let _ = rows;
            ctx.progress(bytes as f64, total_bytes as f64, "bytes");
        }
        CopyEvent::Phase { name, message } => {
            let ev = NewEvent::step(ctx.target, ctx.step, "copy_phase", format!("{name}: {message}"))
                .with_data(json!({ "phase": name }));
            // Information only: a busy store is not a failed copy.
            let _ = ctx.engine.emit(ctx.run_id, ev);
        }
        CopyEvent::Done { key, message, mut data } => {
            if let Some(o) = data.as_object_mut() {
                o.insert("key".into(), json!(key));
            }
            let ev = NewEvent::step(ctx.target, ctx.step, "copy_done", message).with_data(data);
            let _ = ctx.engine.emit(ctx.run_id, ev);
        }
    };
    let hold = ctx.throttle.as_ref().map(|t| t.rx.clone());
    let obs = Observer { done, emit: &emit, hold };
    let sum = copy::run(&source, &target, &opts, &obs).await.map_err(|e| ctx.fail(format!("pg.copy: {e}")))?;
    let summary = format!(
        "copied {} table(s) ({} part(s)), {} row(s), {} in {:.1} s; {} index(es), {} constraint(s), {} foreign key(s), {} sequence(s){}",
        sum.tables,
        sum.parts,
        sum.rows,
        copy::human_bytes(sum.bytes),
        sum.seconds,
        sum.indexes,
        sum.constraints,
        sum.foreign_keys,
        sum.sequences,
        if resumed > 0 { format!("; {} piece(s) kept from an earlier attempt", sum.skipped) } else { String::new() }
    );
    let data = serde_json::to_value(&sum).unwrap_or_default();
    let ev = NewEvent::step(ctx.target, ctx.step, "copy_report", summary).with_data(data.clone());
    ctx.engine.emit(ctx.run_id, ev).map_err(|e| ctx.fail(e.to_string()))?;
    let mut out = Outputs::new();
    if let serde_json::Value::Object(o) = data {
        out.extend(o);
    }
    Ok(out)
}
