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

#[allow(clippy::too_many_arguments)]
pub async fn copy(
    source: &str,
    target: &str,
    method: &str,
    jobs: u32,
    split_mb: u32,
    no_owner: bool,
    pg_bin: Option<std::path::PathBuf>,
    out: Output,
) -> anyhow::Result<i32> {
    use cutover_pg::copy::{self, CopyEvent, Method, Observer, Options};
    // The schema archive's directory; removed at the end.
    let work = std::env::temp_dir().join(format!("cutover-copy-{}", std::process::id()));
    let mut opts = Options::new(work.clone());
    opts.method = Method::parse(method).unwrap_or(Method::Fast);
    opts.jobs = jobs as usize;
    opts.split_bytes = u64::from(split_mb) << 20;
    opts.no_owner = no_owner;
    opts.tools = cutover_pg::tools::Tools::new(pg_bin);
    let last = std::sync::Mutex::new(std::time::Instant::now());
    // Progress goes to stderr, so stdout holds only the result.
    let emit = |e: CopyEvent| match e {
        CopyEvent::Phase { name, message } => eprintln!("== {name}: {message}"),
        CopyEvent::Done { message, .. } => eprintln!("   {message}"),
        CopyEvent::Progress { bytes, rows, total_bytes } => {
            let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
            if l.elapsed() >= Duration::from_secs(2) {
                *l = std::time::Instant::now();
                let pct = if total_bytes > 0 { bytes as f64 / total_bytes as f64 * 100.0 } else { 0.0 };
                eprintln!(
                    "   … {} of about {} ({pct:.0} %), {rows} rows",
                    copy::human_bytes(bytes),
                    copy::human_bytes(total_bytes)
                );
            }
        }
    };
    let obs = Observer { done: Default::default(), emit: &emit, hold: None };
    let sum = copy::run(source, target, &opts, &obs).await;
    let _ = std::fs::remove_dir_all(&work);
    let sum = sum.map_err(|e| usage(format!("copy failed: {e}")))?;
    match out {
        Output::Json => output::json(&sum)?,
        Output::Text => {
            println!(
                "copied {} into {} ({} method) in {:.1} s: {} table(s) in {} part(s), {} row(s), {}; {} index(es), {} constraint(s), {} foreign key(s), {} sequence(s), {} materialized view(s) refreshed",
                cutover_pg::describe(source),
                cutover_pg::describe(target),
                sum.method,
                sum.seconds,
                sum.tables,
                sum.parts,
                sum.rows,
                copy::human_bytes(sum.bytes),
                sum.indexes,
                sum.constraints,
                sum.foreign_keys,
                sum.sequences,
                sum.materialized_views
            );
            for (phase, secs) in &sum.phases {
                println!("  {phase:<34} {secs:>8.1} s");
            }
        }
    }
    Ok(0)
}

pub async fn backup(
    source: &str,
    dir: &std::path::Path,
    pg_bin: Option<std::path::PathBuf>,
    out: Output,
) -> anyhow::Result<i32> {
    let tools = cutover_pg::tools::Tools::new(pg_bin);
    let b = cutover_pg::backup::backup(source, dir, &tools, "cutover pg backup")
        .await
        .map_err(|e| usage(format!("backup failed: {e}")))?;
    match out {
        Output::Json => output::json(&b)?,
        Output::Text => println!(
            "{} ({} on PostgreSQL {}, {}, sha256 {}) in {}",
            b.id,
            b.database,
            b.server_version,
            cutover_pg::copy::human_bytes(b.size),
            b.sha256,
            dir.join(&b.file).display()
        ),
    }
    Ok(0)
}

pub fn backups(dir: &std::path::Path, out: Output) -> anyhow::Result<i32> {
    let list = cutover_pg::backup::list(dir).map_err(usage)?;
    match out {
        Output::Json => output::json(&list)?,
        Output::Text => {
            if list.is_empty() {
                println!("no backups in {}", dir.display());
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|b| {
                        vec![
                            b.id.clone(),
                            b.database.clone(),
                            b.server_version.clone(),
                            cutover_pg::copy::human_bytes(b.size),
                            b.created_at.clone(),
                            b.sha256[..12.min(b.sha256.len())].to_string(),
                            b.label.clone(),
                        ]
                    })
                    .collect();
                output::table(&["ID", "DATABASE", "VERSION", "SIZE", "TAKEN", "SHA256", "LABEL"], &rows);
            }
        }
    }
    Ok(0)
}

#[allow(clippy::too_many_arguments)]
pub async fn restore(
    from: &str,
    target: &str,
    dir: &std::path::Path,
    jobs: u32,
    clean: bool,
    no_owner: bool,
    pg_bin: Option<std::path::PathBuf>,
    out: Output,
) -> anyhow::Result<i32> {
    let tools = cutover_pg::tools::Tools::new(pg_bin);
    let r = cutover_pg::backup::restore(dir, from, target, jobs as usize, clean, no_owner, &tools)
        .await
        .map_err(|e| usage(format!("restore failed: {e}")))?;
    match out {
        Output::Json => output::json(&r)?,
        Output::Text => println!(
            "backup {} restored into {}{} in {:.1} s",
            r.id,
            cutover_pg::describe(target),
            if r.created_database { " (database created)" } else { "" },
            r.seconds
        ),
    }
    Ok(0)
}
