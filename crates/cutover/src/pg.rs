//! `cutover pg …`: the PostgreSQL operations on their own, for a person at a
//! terminal (the same library code as the plan's pg.* steps).

use crate::cli::Output;
use crate::output::{self, usage};
use cutover_pg::preflight::{self, Severity};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn preflight(
    source: &str,
    target: Option<&str>,
    target_version: Option<u32>,
    ignore: &[String],
    fail_on: &str,
    out: Output,
) -> anyhow::Result<i32> {
    if let Some(bad) = ignore.iter().find(|i| !preflight::RULES.iter().any(|(r, _)| r == *i)) {
        let names: Vec<&str> = preflight::RULES.iter().map(|(r, _)| *r).collect();
        return Err(usage(format!("there is no preflight rule `{bad}` (rules: {})", names.join(", "))));
    }
    let level = Severity::parse(fail_on).unwrap_or(Severity::Blocker);
    let src = cutover_pg::connect(source, CONNECT_TIMEOUT).await.map_err(usage)?;
    let dst = match target {
        Some(t) => Some(cutover_pg::connect(t, CONNECT_TIMEOUT).await.map_err(usage)?),
        None => None,
    };
    let major = match (target_version, &dst) {
        (Some(v), _) => v,
        (None, Some(d)) => cutover_pg::server_major(d).await.map_err(usage)?,
        (None, None) => return Err(usage("give --target-version or --target")),
    };
    let report = preflight::run(&src, dst.as_ref(), major, ignore)
        .await
        .map_err(|e| usage(format!("preflight on {} failed: {e}", cutover_pg::describe(source))))?;
    let failing = report.at_least(level).count();
    match out {
        Output::Json => output::json(&report)?,
        Output::Text => {
            println!(
                "preflight of `{}` on {} (PostgreSQL {} → {}): {} blocker(s), {} warning(s), {} info",
                report.database,
                cutover_pg::describe(source),
                report.source_version,
                report.target_major,
                report.count(Severity::Blocker),
                report.count(Severity::Warning),
                report.count(Severity::Info)
            );
            if !report.target_checked {
                println!("(no target server given: extensions and settings of the new server were not compared)");
            }
            for f in &report.findings {
                println!("\n{:<8} {}: {}", f.severity.as_str().to_uppercase(), f.rule, f.summary);
                for o in f.objects.iter().take(20) {
                    println!("         - {o}");
                }
                if f.objects.len() > 20 {
                    println!("         … and {} more (--output json lists them all)", f.objects.len() - 20);
                }
                println!("         fix: {}", f.remediation);
            }
            if report.findings.is_empty() {
                println!("\nnothing found: {} rules ran", report.rules.len());
            }
        }
    }
    Ok(if failing > 0 { 1 } else { 0 })
}

pub async fn verify(source: &str, target: &str, out: Output) -> anyhow::Result<i32> {
    let src = cutover_pg::connect(source, CONNECT_TIMEOUT).await.map_err(usage)?;
    let dst = cutover_pg::connect(target, CONNECT_TIMEOUT).await.map_err(usage)?;
    let r = cutover_pg::verify::run(&src, &dst).await.map_err(|e| usage(format!("verify failed: {e}")))?;
    match out {
        Output::Json => output::json(&r)?,
        Output::Text => {
            println!(
                "{} against {}: {} table(s), {} row(s), {} sequence(s) compared: {} difference(s)",
                cutover_pg::describe(source),
                cutover_pg::describe(target),
                r.tables,
                r.rows,
                r.sequences,
                r.differences.len()
            );
            if !r.differences.is_empty() {
                let rows: Vec<Vec<String>> = r
                    .differences
                    .iter()
                    .map(|d| vec![d.kind.to_string(), d.object.clone(), d.source.clone(), d.target.clone()])
                    .collect();
                println!();
                output::table(&["KIND", "OBJECT", "SOURCE", "COPY"], &rows);
            }
        }
    }
    Ok(if r.differences.is_empty() { 0 } else { 1 })
}
