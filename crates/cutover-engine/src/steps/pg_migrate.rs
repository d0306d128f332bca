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
use std::sync::{Arc, Mutex};

/// The progress unit.
const UNIT: &str = "migrations";

pub async fn run(s: &PgMigrateStep, ctx: &StepCtx<'_>) -> Result<Outputs, StepError> {
    // The directory is read before the database is touched: a wrong path or
    // an unreachable git ref fails the step with nothing changed.
    let source = open(s, ctx).await?;
    let (_, client) = ctx.pg_connect(&s.dsn, "the dsn").await?;
    let fail = |e: MigrateError| ctx.fail(format!("pg.migrate: {e}"));

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
    if s.lint {
        lint_gate(s, ctx, &client, &source, &opts.golang_migrate_table).await?;
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

/// Opens the step's migrations: a directory relative to the plan's, read
/// for each target (so a file fixed before a retry is read again), or a
/// `git:` source, checked out once per run ([`git_source`]).
async fn open(s: &PgMigrateStep, ctx: &StepCtx<'_>) -> Result<Arc<Source>, StepError> {
    let fail = |e: String| ctx.fail(format!("pg.migrate: {e}"));
    if s.dir.starts_with("git:") {
        return git_source(ctx.run_id, &s.dir).await.map_err(fail);
    }
    read(ctx.plan_dir.join(&s.dir).display().to_string()).await.map(Arc::new).map_err(fail)
}

/// Reads a source off the async workers (a git checkout runs `git`).
async fn read(spec: String) -> Result<Source, String> {
    tokio::task::spawn_blocking(move || Source::open(&spec))
        .await
        .map_err(|e| format!("reading the migrations stopped: {e}"))?
        .map_err(|e| e.to_string())
}

/// `git:` checkouts of this process, by run and spec, the last used last.
type GitSources = Vec<((String, String), Arc<tokio::sync::OnceCell<Arc<Source>>>)>;
static GIT_SOURCES: Mutex<GitSources> = Mutex::new(Vec::new());
/// How many checkouts are kept (a process that drives many runs).
const GIT_SOURCES_KEPT: usize = 16;

/// A `git:` source, cloned once per run: every target of the run gets the
/// files of the commit the ref named when the first target needed it, and a
/// fleet of thousands of databases costs one clone, not one each. Targets
/// that start together wait for the one clone. A failed checkout is not
/// kept, so the next target tries again.
async fn git_source(run_id: &str, spec: &str) -> Result<Arc<Source>, String> {
    let key = (run_id.to_string(), spec.to_string());
    let cell = {
        let mut cache = GIT_SOURCES.lock().unwrap_or_else(|e| e.into_inner());
        match cache.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                // Used again: a run that is going on is the last to be let go.
                let entry = cache.remove(i);
                let cell = entry.1.clone();
                cache.push(entry);
                cell
            }
            None => {
                if cache.len() >= GIT_SOURCES_KEPT {
                    cache.remove(0);
                }
                let cell = Arc::new(tokio::sync::OnceCell::new());
                cache.push((key, cell.clone()));
                cell
            }
        }
    };
    cell.get_or_try_init(|| async { read(spec.to_string()).await.map(Arc::new) }).await.cloned()
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
    golang_migrate_table: &str,
) -> Result<(), StepError> {
    let status =
        run::status(client, source, golang_migrate_table).await.map_err(|e| ctx.fail(format!("pg.migrate: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn git(repo: &Path, args: &[&str]) {
        let o = Command::new("git")
            .args(args)
            .current_dir(repo)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git");
        assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }

    fn commit(repo: &Path, name: &str) {
        std::fs::create_dir_all(repo.join("db")).expect("mkdir");
        std::fs::write(repo.join("db").join(name), "SELECT 1;\n").expect("write");
        git(repo, &["add", "."]);
        git(repo, &["commit", "--quiet", "-m", name]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_git_source_is_checked_out_once_per_run() {
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(&repo).expect("mkdir");
        git(&repo, &["init", "--quiet", "--initial-branch", "main"]);
        commit(&repo, "1_a.up.sql");
        let spec = format!("git:{}#main:db", repo.display());

        // Targets that start together share one checkout.
        let (a, b) = tokio::join!(git_source("run-1", &spec), git_source("run-1", &spec));
        let (a, b) = (a.expect("checkout"), b.expect("checkout"));
        assert!(Arc::ptr_eq(&a, &b));
        // The branch moves on: the run keeps the commit it started with, a new run sees the new one.
        commit(&repo, "2_b.up.sql");
        let later = git_source("run-1", &spec).await.expect("same run");
        assert!(Arc::ptr_eq(&a, &later) && later.migrations.len() == 1, "{}", later.label);
        let next = git_source("run-2", &spec).await.expect("next run");
        assert_eq!(next.migrations.len(), 2, "{}", next.label);
        // With the repository gone, a run that has its checkout goes on; a new one fails in one sentence.
        std::fs::remove_dir_all(&repo).expect("rm");
        assert!(git_source("run-2", &spec).await.is_ok_and(|s| Arc::ptr_eq(&s, &next)));
        let err = git_source("run-3", &spec).await.expect_err("no repository");
        assert!(!err.is_empty() && !err.contains('\n'), "{err}");
    }
}
