//! Checks (probes): measurements with a status. One file per check kind,
//! listed in [`Prober::probe`]'s match; [`status`] turns readings into a
//! status over time and [`eval`] applies the plan's conditions.

mod command;
pub mod eval;
mod http;
mod log;
mod prometheus;
pub mod runner;
mod sql;
pub mod status;
mod tcp;

use crate::redact::Redactor;
use cutover_plan::{Check, CheckKind, Template};
pub use eval::Reading;
use serde_json::Value;
use std::path::PathBuf;

/// What a probe sees: the template context and where relative paths start.
pub struct ProbeCtx<'a> {
    pub vars: &'a Value,
    pub dir: &'a std::path::Path,
    pub redactor: &'a Redactor,
    pub http: &'a reqwest::Client,
}

impl ProbeCtx<'_> {
    pub fn render(&self, t: &Template, what: &str) -> Result<String, String> {
        cutover_plan::template::render(&t.source, self.vars)
            .map_err(|e| self.redactor.redact(&format!("cannot render {what}: {}", e.message)))
    }
}

/// Probes one check (for one target); keeps what a kind needs between probes
/// (a log's position).
pub struct Prober {
    check: Check,
    log: Option<log::Follower>,
}

impl Prober {
    pub fn new(check: Check) -> Prober {
        Prober { check, log: None }
    }

    pub fn check(&self) -> &Check {
        &self.check
    }

    /// One probe, bounded by the check's timeout. `Err` is the probe's own
    /// failure (the status `error`), already redacted.
    pub async fn probe(&mut self, ctx: &ProbeCtx<'_>, now_ms: i64) -> Result<Reading, String> {
        let timeout = self.check.timeout;
        let fut = async {
            match &self.check.kind {
                CheckKind::Http { url, method, headers, json_path, body_regex } => {
                    http::probe(ctx, url, method, headers, json_path.as_deref(), body_regex.as_deref(), timeout).await
                }
                CheckKind::Sql { dsn, query, params, preset } => {
                    sql::probe(ctx, dsn, query.as_deref(), params, preset.as_deref(), timeout).await
                }
                CheckKind::Tcp { address } => tcp::probe(ctx, address, timeout).await,
                CheckKind::Command { command, env } => command::probe(ctx, command, env).await,
                CheckKind::Prometheus { url, query } => prometheus::probe(ctx, url, query).await,
                CheckKind::Log { file, command, steps, heartbeat, liveness } => {
                    if self.log.is_none() {
                        let source = match (file, command) {
                            (Some(f), _) => {
                                log::Source::File(ctx.dir.join(PathBuf::from(ctx.render(f, "the log file")?)))
                            }
                            (None, Some(c)) => log::Source::Command(c.clone(), ctx.dir.to_path_buf()),
                            (None, None) => return Err("a log check needs `file` or `command`".into()),
                        };
                        self.log = Some(log::Follower::new(source, steps, heartbeat.as_deref(), *liveness)?);
                    }
                    match self.log.as_mut() {
                        Some(f) => f.poll(now_ms).await,
                        None => Err("the log follower could not start".into()),
                    }
                }
                CheckKind::Manual => Err("a manual check is ticked by an operator, not probed".into()),
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r.map_err(|e| ctx.redactor.redact(&e)),
            Err(_) => Err(format!("the probe timed out after {}", cutover_plan::duration::format(timeout))),
        }
    }
}

/// Parses a command's or a body's text: JSON, else a number, else the text.
pub fn parse_value(text: &str) -> Value {
    let t = text.trim();
    serde_json::from_str::<Value>(t).unwrap_or_else(|_| Value::String(t.to_string()))
}
