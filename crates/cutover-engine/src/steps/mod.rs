//! The step kinds. Each kind lives in its own file and is listed in
//! [`execute`]'s match, so adding one is a visible change. A block is not here:
//! it is structure (steps and `finally`), which the runner walks.

mod approve;
mod exec;
mod http;
mod pg_backup;
mod pg_bigint;
mod pg_copy;
mod pg_migrate;
mod pg_preflight;
mod pg_verify;
mod sql;
mod wait;

use crate::redact::Redactor;
use cutover_plan::{StepKind, Template};
use serde_json::{Map, Value};
use std::path::Path;
use std::time::Duration;

pub type Outputs = Map<String, Value>;

/// The progress note of a step waiting for its approval before going on
/// (pg.bigint's `approve_cutover`); the tower offers the approve button.
pub const AWAITING_APPROVAL: &str = "waiting for approval before the cut-over";

/// How long a step waits for a PostgreSQL connection.
pub const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a step attempt sees.
pub struct StepCtx<'a> {
    pub run_id: &'a str,
    pub target: &'a str,
    pub step: &'a str,
    /// The template and CEL context: name, target, labels, vars, outputs, secrets.
    pub vars: &'a Value,
    pub plan_dir: &'a Path,
    pub redactor: &'a Redactor,
    pub http: &'a reqwest::Client,
    /// The step's own timeout, which a `wait` uses as its deadline.
    pub timeout: Option<Duration>,
    /// For steps that talk to the store (an approval).
    pub engine: &'a crate::Engine,
    /// When progress was last recorded (progress events are throttled).
    pub last_progress: std::sync::Mutex<Option<std::time::Instant>>,
    /// Set when the step's phase has a pause_when: whether it holds now.
    pub throttle: Option<Throttle>,
}

/// The pause_when of a running step's phase, as a signal: long work holds
/// at its next safe point while it is set. `file` exists while it is set,
/// for commands (`CUTOVER_THROTTLE_FILE`).
pub struct Throttle {
    pub rx: tokio::sync::watch::Receiver<bool>,
    pub file: std::path::PathBuf,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StepError {
    /// The step ran and failed; the message says why (already redacted).
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Template(String),
}

impl StepCtx<'_> {
    pub fn render(&self, t: &Template, what: &str) -> Result<String, StepError> {
        cutover_plan::template::render(&t.source, self.vars).map_err(|e| {
            StepError::Template(self.redactor.redact(&format!("cannot render {what} ({}): {}", t.pos, e.message)))
        })
    }

    /// Records the step's progress (done/total units) as an event, at most
    /// once a second, and always when it reaches its total.
    pub fn progress(&self, done: f64, total: f64, unit: &str) {
        self.progress_note(done, total, unit, None, false);
    }

    /// Progress with a note the tower shows beside it (a stage, a throttle
    /// reason); `force` records it even within the second (a note changed).
    pub fn progress_note(&self, done: f64, total: f64, unit: &str, note: Option<&str>, force: bool) {
        let mut last = self.last_progress.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let finished = total > 0.0 && done >= total;
        if !finished && !force && last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return;
        }
        *last = Some(now);
        let pct = if total > 0.0 { format!(" ({:.1} %)", (done / total * 100.0).min(100.0)) } else { String::new() };
        let ev = crate::model::NewEvent::step(
            self.target,
            self.step,
            "step_progress",
            match note {
                Some(n) => format!("{done}/{total} {unit}{pct}; {n}"),
                None => format!("{done}/{total} {unit}{pct}"),
            },
        )
        .with_data(serde_json::json!({ "done": done, "total": total, "unit": unit, "note": note }));
        // Progress is information: a store too busy to take it now is not a failure.
        let _ = self.engine.emit(self.run_id, ev);
    }

    /// Whether the phase's pause_when holds now.
    pub fn throttled(&self) -> bool {
        self.throttle.as_ref().is_some_and(|t| *t.rx.borrow())
    }

    /// Returns once the phase's pause_when does not hold (at once without one).
    /// Long built-in work calls it between batches: its safe points.
    pub async fn unthrottled(&self) {
        if let Some(t) = &self.throttle {
            let mut rx = t.rx.clone();
            // A closed channel means the step is ending: nothing to wait for.
            let _ = rx.wait_for(|held| !*held).await;
        }
    }

    /// Renders a DSN (or URL) and registers its password with the redactor
    /// before anything can print it.
    pub fn render_dsn(&self, t: &Template, what: &str) -> Result<String, StepError> {
        let dsn = self.render(t, what)?;
        self.redactor.add_url_password(&dsn);
        Ok(dsn)
    }

    /// Renders a DSN, registers its password with the redactor, connects.
    pub async fn pg_connect(&self, t: &Template, what: &str) -> Result<(String, cutover_pg::Client), StepError> {
        let dsn = self.render_dsn(t, what)?;
        let client = cutover_pg::connect(&dsn, PG_CONNECT_TIMEOUT).await.map_err(|e| self.fail(e.to_string()))?;
        Ok((dsn, client))
    }

    /// pg_dump/pg_restore from a step's `pg_bin` (relative to the plan's
    /// directory), else found the usual way.
    pub fn pg_tools(&self, pg_bin: &Option<String>) -> cutover_pg::tools::Tools {
        cutover_pg::tools::Tools::new(pg_bin.as_ref().map(|p| self.plan_dir.join(p)))
    }

    pub fn fail(&self, msg: impl AsRef<str>) -> StepError {
        StepError::Failed(self.redactor.redact(msg.as_ref()))
    }
}

/// Runs one attempt of a step of kind exec, sql, http or wait.
/// (Boxed because a wait's probe is itself a step.)
pub fn execute<'a>(
    kind: &'a StepKind,
    ctx: &'a StepCtx<'a>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outputs, StepError>> + Send + 'a>> {
    Box::pin(async move {
        match kind {
            StepKind::Exec(s) => exec::run(s, ctx).await,
            StepKind::Sql(s) => sql::run(s, ctx).await,
            StepKind::Http(s) => http::run(s, ctx).await,
            StepKind::Wait(s) => wait::run(s, ctx).await,
            StepKind::Approve(s) => approve::run(s, ctx).await,
            StepKind::PgPreflight(s) => pg_preflight::run(s, ctx).await,
            StepKind::PgVerify(s) => pg_verify::run(s, ctx).await,
            StepKind::PgCopy(s) => pg_copy::run(s, ctx).await,
            StepKind::PgBackup(s) => pg_backup::run_backup(s, ctx).await,
            StepKind::PgRestore(s) => pg_backup::run_restore(s, ctx).await,
            StepKind::PgBigint(s) => pg_bigint::run(s, ctx).await,
            StepKind::PgMigrate(s) => pg_migrate::run(s, ctx).await,
            StepKind::Block(_) => Err(StepError::Failed("a block is run by the runner, not as one step".into())),
        }
    })
}

/// Parses a JSON object from a command's or a server's output; anything else
/// is kept as text under `key`.
pub fn outputs_from_text(text: &str, key: &str) -> Outputs {
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Object(o)) => o,
        _ => {
            let mut m = Map::new();
            let mut t = text.trim().to_string();
            if t.len() > 64 * 1024 {
                let mut end = 64 * 1024;
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                t.truncate(end);
            }
            m.insert(key.into(), Value::String(t));
            m
        }
    }
}
