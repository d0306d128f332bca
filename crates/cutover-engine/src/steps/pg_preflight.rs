//! `pg.preflight`: runs cutover-pg's preflight rules against the target's
//! database (and the new server when `target_dsn` is given). The report is
//! recorded as an event whatever it finds; a finding at or above `fail_on`
//! fails the step, so the target does not reach its maintenance window.

use super::{Outputs, StepCtx, StepError};
use crate::model::NewEvent;
use cutover_pg::preflight::{self, Severity};
use cutover_plan::PgPreflightStep;
use serde_json::{Value, json};

pub async fn run(s: &PgPreflightStep, ctx: &StepCtx<'_>) -> Result<Outputs, StepError> {
    let (dsn, source) = ctx.pg_connect(&s.dsn, "the dsn").await?;
    let target = match &s.target_dsn {
        Some(t) => Some(ctx.pg_connect(t, "the target_dsn").await?.1),
        None => None,
    };
    let major = match (s.target_version, &target) {
        (Some(v), _) => v,
        (None, Some(t)) => cutover_pg::server_major(t).await.map_err(|e| ctx.fail(e.to_string()))?,
        (None, None) => return Err(ctx.fail("pg.preflight needs target_version or target_dsn")),
    };
    let report = preflight::run(&source, target.as_ref(), major, &s.ignore)
        .await
        .map_err(|e| ctx.fail(format!("preflight on {}: {e}", cutover_pg::describe(&dsn))))?;
    let level = Severity::parse(&s.fail_on).unwrap_or(Severity::Blocker);
    let failing: Vec<&preflight::Finding> = report.at_least(level).collect();
    let counts = format!(
        "{} blocker(s), {} warning(s), {} info",
        report.count(Severity::Blocker),
        report.count(Severity::Warning),
        report.count(Severity::Info)
    );
    let findings = serde_json::to_value(&report.findings).unwrap_or(Value::Null);
    let ev = NewEvent::step(
        ctx.target,
        ctx.step,
        "preflight_report",
        format!(
            "preflight of `{}` (PostgreSQL {} → {}): {counts}",
            report.database, report.source_version, report.target_major
        ),
    )
    .with_data(json!({ "database": report.database, "source_version": report.source_version,
                       "target_major": report.target_major, "findings": findings }));
    ctx.engine.emit(ctx.run_id, ev).map_err(|e| ctx.fail(e.to_string()))?;
    if !failing.is_empty() {
        let what: Vec<String> = failing
            .iter()
            .map(|f| {
                let first = f.objects.first().map(|o| format!(": {o}")).unwrap_or_default();
                let more =
                    if f.objects.len() > 1 { format!(" and {} more", f.objects.len() - 1) } else { String::new() };
                format!("{} {}{first}{more}", f.severity, f.rule)
            })
            .collect();
        return Err(ctx.fail(format!("preflight found {counts}: {}", what.join("; "))));
    }
    let mut out = Outputs::new();
    out.insert("source_version".into(), json!(report.source_version));
    out.insert("blockers".into(), json!(report.count(Severity::Blocker)));
    out.insert("warnings".into(), json!(report.count(Severity::Warning)));
    out.insert("infos".into(), json!(report.count(Severity::Info)));
    out.insert("findings".into(), findings);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_plan_knows_the_same_rules_as_the_preflight() {
        let ran: Vec<&str> = cutover_pg::preflight::RULES.iter().map(|(r, _)| *r).collect();
        assert_eq!(ran, cutover_plan::shape::PREFLIGHT_RULES);
    }
}
