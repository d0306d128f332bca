//! `pg.migrate`: cutover-migrate's versioned migrations as a step, so a
//! directory of migrations reaches a fleet of databases with waves, gates and
//! limits like any other step. The state lives in each database
//! (`cutover.schema_migrations` and one `cutover.migration_history` row per
//! attempt), not in the run: a retried or resumed step reads where its
//! database is and applies only what is missing. Each migration is reported
//! as step progress (migrations done of those to run) and as a
//! `migration_applied` or `migration_rolled_back` event.

use super::{Outputs, StepCtx, StepError};
use crate::model::NewEvent;
use cutover_migrate::lint::{self, Finding, Severity};
use cutover_migrate::pending;
use cutover_migrate::run::{self, Command, Event, MigrateError, Options, Outcome};
use cutover_migrate::source::Source;
use cutover_plan::PgMigrateStep;
use serde_json::json;
use std::sync::Mutex;

/// The progress unit.
const UNIT: &str = "migrations";

pub async fn run(s: &PgMigrateStep, ctx: &StepCtx<'_>) -> Result<Outputs, StepError> {
    // The directory is read before the database is touched: a wrong path or
    // an unreachable git ref fails the step with nothing changed.
    let source = open(s, ctx).await?;
    let (_, client) = ctx.pg_connect(&s.dsn, "the dsn").await?;
    let fail = |e: MigrateError| ctx.fail(format!("pg.migrate: {e}"));
    if s.lint {
        lint_gate(s, ctx, &client, &source).await?;
    }

    let mut opts =
        Options::new(format!("cutover run {} target {} — {}", ctx.run_id, ctx.target, crate::this_process()));
    opts.lock_wait = s.lock_wait;
    opts.lock_timeout = s.lock_timeout;
    opts.statement_timeout = s.statement_timeout;
    opts.allow_out_of_order = s.allow_out_of_order;
    opts.allow_changed = s.allow_changed;
    if let Some(t) = &s.golang_migrate_table {
        opts.golang_migrate_table = t.clone();
    }
    let redactor = ctx.redactor.clone();
    opts.redact = Box::new(move |t| redactor.redact(t));
    // The phase's pause_when holds the next migration (not one in flight).
    opts.hold = ctx.throttle.as_ref().map(|t| t.rx.clone());
    let cmd = match s.to {
        Some(v) => Command::Goto(v),
        None => Command::Up(None),
    };

    // The migration that started and has not finished yet, so a failure can
    // name its version in a `migration_failed` event.
    let current: Mutex<Option<(u64, String, &'static str)>> = Mutex::new(None);
    let emit = |kind: &'static str, message: String, data: serde_json::Value| {
        let ev = NewEvent::step(ctx.target, ctx.step, kind, message).with_data(data);
        // Information only: the history is in the database, so a store too
        // busy to take an event does not fail a migration that committed.
        let _ = ctx.engine.emit(ctx.run_id, ev);
    };
    let on = |e: Event| match e {
        Event::Waiting { holder } => emit(
            "migration_waiting",
            format!(
                "waiting up to {} for the migration lock, held by {holder}",
                cutover_plan::duration::format(s.lock_wait)
            ),
            json!({ "holder": holder }),
        ),
        Event::Notice(n) => emit("migration_notice", n.clone(), json!({ "notice": n })),
        Event::Start { index, total, label, direction, transactional } => {
            let (version, title) = version_title(&source, &label);
            *current.lock().unwrap_or_else(|p| p.into_inner()) = Some((version, title, direction));
            let mode = if transactional { "" } else { " (outside a transaction)" };
            ctx.progress_note(
                index.saturating_sub(1) as f64,
                total as f64,
                UNIT,
                Some(&format!("{direction} {label}{mode}")),
                true,
            );
        }
        Event::Done { index, total, label, direction, duration } => {
            current.lock().unwrap_or_else(|p| p.into_inner()).take();
            let (version, title) = version_title(&source, &label);
            let ms = duration.as_millis() as u64;
            let (kind, verb) = if direction == "up" {
                ("migration_applied", "applied")
            } else {
                ("migration_rolled_back", "rolled back")
            };
            emit(
                kind,
                format!("{verb} {label} ({index} of {total}) in {ms} ms"),
                json!({ "version": version, "title": title, "direction": direction, "duration_ms": ms,
                        "index": index, "total": total }),
            );
            ctx.progress_note(index as f64, total as f64, UNIT, Some(&format!("{verb} {label}")), true);
        }
    };
    let outcome = match run::apply(&client, &source, cmd, &opts, &on).await {
        Ok(o) => o,
        Err(e) => {
            if let Some((version, title, direction)) = current.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let msg = ctx.redactor.redact(&e.to_string());
                emit(
                    "migration_failed",
                    msg.clone(),
                    json!({ "version": version, "title": title, "direction": direction, "error": msg }),
                );
            }
            return Err(fail(e));
        }
    };
    report(ctx, &source, &outcome)
}

/// Opens the step's migrations: a directory relative to the plan's, or a
/// `git:` source as it is. A git checkout runs `git`, so it runs off the
/// async workers.
async fn open(s: &PgMigrateStep, ctx: &StepCtx<'_>) -> Result<Source, StepError> {
    let spec = if s.dir.starts_with("git:") { s.dir.clone() } else { ctx.plan_dir.join(&s.dir).display().to_string() };
    tokio::task::spawn_blocking(move || Source::open(&spec))
        .await
        .map_err(|e| ctx.fail(format!("pg.migrate: reading the migrations stopped: {e}")))?
        .map_err(|e| ctx.fail(format!("pg.migrate: {e}")))
}

/// The version and title of a migration the library names by its label.
fn version_title(source: &Source, label: &str) -> (u64, String) {
    match source.migrations.iter().find(|m| m.label() == label) {
        Some(m) => (m.version, m.title.clone()),
        None => {
            let (v, t) = label.split_once('_').unwrap_or((label, ""));
            (v.parse().unwrap_or(0), t.to_string())
        }
    }
}

/// With `lint = true`: lints the up files that are pending in this database
/// (up to `to`) and refuses to apply any of them when one has an error. The
/// findings, warnings included, are recorded as a `migration_lint` event.
async fn lint_gate(
    s: &PgMigrateStep,
    ctx: &StepCtx<'_>,
    client: &cutover_pg::Client,
    source: &Source,
) -> Result<(), StepError> {
    let status = run::status(client, source, s.golang_migrate_table.as_deref().unwrap_or(run::GOLANG_MIGRATE_TABLE))
        .await
        .map_err(|e| ctx.fail(format!("pg.migrate: {e}")))?;
    let pending: Vec<u64> = status
        .files
        .iter()
        .filter(|f| matches!(f.state, "pending" | "out-of-order"))
        .filter(|f| s.to.is_none_or(|to| f.version <= to))
        .map(|f| f.version)
        .collect();
    // In the order they will run (a table an earlier pending file creates is
    // new in the later ones), knowing the database's column types.
    let pending::Linted { files, findings } =
        pending::lint_pending(client, source, &pending).await.map_err(|e| ctx.fail(format!("pg.migrate: {e}")))?;
    if findings.is_empty() {
        return Ok(());
    }
    let errors: Vec<&Finding> = findings.iter().filter(|f| f.severity == Severity::Error).collect();
    let line = |f: &Finding| format!("{}:{}: {} {} ({}): {}", f.file, f.line, f.code, f.rule, f.severity, f.message);
    let ev = NewEvent::step(
        ctx.target,
        ctx.step,
        "migration_lint",
        format!(
            "lint of {files} pending file(s): {} error(s), {} warning(s)",
            errors.len(),
            findings.len() - errors.len()
        ),
    )
    .with_data(json!({ "findings": findings }));
    ctx.engine.emit(ctx.run_id, ev).map_err(|e| ctx.fail(e.to_string()))?;
    if errors.is_empty() {
        return Ok(());
    }
    Err(ctx.fail(format!(
        "pg.migrate: lint found {} error(s) in the pending migrations, so none was applied: {}. Rewrite them as the \
         findings say (`cutover migrate lint` shows the safe alternative), or accept a risk with `-- {} CODE` in the file",
        errors.len(),
        errors.iter().map(|f| line(f)).collect::<Vec<_>>().join("; "),
        lint::IGNORE_DIRECTIVE
    )))
}

/// Records what changed (`migration_report`) and returns it as the outputs:
/// `before` and `after` (versions, null for none), `applied` and
/// `rolled_back` (versions), `migrations` (each with its direction and
/// duration) and `source`.
fn report(ctx: &StepCtx<'_>, source: &Source, o: &Outcome) -> Result<Outputs, StepError> {
    let versions = |dir: &str| o.applied.iter().filter(|m| m.direction == dir).map(|m| m.version).collect::<Vec<_>>();
    let (applied, rolled_back) = (versions("up"), versions("down"));
    let at = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "none".into());
    let message = if o.applied.is_empty() {
        format!("nothing to do: the database is at version {}", at(o.after))
    } else {
        let mut parts = Vec::new();
        if !applied.is_empty() {
            parts.push(format!("{} applied", applied.len()));
        }
        if !rolled_back.is_empty() {
            parts.push(format!("{} rolled back", rolled_back.len()));
        }
        format!("version {} → {}: {}", at(o.before), at(o.after), parts.join(", "))
    };
    let data = json!({
        "before": o.before,
        "after": o.after,
        "applied": applied,
        "rolled_back": rolled_back,
        "migrations": o.applied,
        "source": source.label,
    });
    let ev = NewEvent::step(ctx.target, ctx.step, "migration_report", message).with_data(data.clone());
    ctx.engine.emit(ctx.run_id, ev).map_err(|e| ctx.fail(e.to_string()))?;
    let mut out = Outputs::new();
    if let serde_json::Value::Object(m) = data {
        out.extend(m);
    }
    Ok(out)
}
