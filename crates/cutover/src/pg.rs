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

/// `cutover pg bigint`: the online int → bigint conversion, its dry-run,
/// status, pause/resume, rollback, contract and abort.
pub async fn bigint(a: crate::cli::BigintArgs, out: Output) -> anyhow::Result<i32> {
    use cutover_pg::bigint::{self, Action, Event, Observer, Options};
    let client = || async { cutover_pg::connect(&a.dsn, CONNECT_TIMEOUT).await.map_err(usage) };
    if a.status {
        let list = bigint::status(&client().await?, a.table.as_deref()).await.map_err(usage)?;
        match out {
            Output::Json => output::json(&list)?,
            Output::Text if list.is_empty() => println!("no conversion recorded in this database"),
            Output::Text => {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|s| {
                        let pct = if s.rows_total > 0 { s.rows_done as f64 * 100.0 / s.rows_total as f64 } else { 0.0 };
                        vec![
                            s.table.clone(),
                            s.column.clone(),
                            if s.stage.is_empty() { "-".into() } else { s.stage.clone() },
                            format!("{}/{} ({:.0} %)", s.rows_done, s.rows_total, pct.min(100.0)),
                            match (&s.throttle, s.paused) {
                                (Some(t), _) => format!("throttled: {t}"),
                                (None, true) => "paused".into(),
                                _ => "".into(),
                            },
                            s.next.clone(),
                            s.updated_at.clone(),
                        ]
                    })
                    .collect();
                output::table(&["TABLE", "COLUMN", "DONE", "BACKFILL", "STATE", "NEXT", "UPDATED"], &rows);
            }
        }
        return Ok(0);
    }
    let table = a.table.clone().unwrap_or_default();
    if a.pause || a.resume {
        bigint::set_paused(&client().await?, &table, a.pause).await.map_err(usage)?;
        println!("{}", if a.pause { "paused: the backfill waits before its next batch" } else { "resumed" });
        return Ok(0);
    }
    let mut opts = Options::new(table);
    opts.column = a.column.clone();
    opts.until = a.until.clone();
    opts.from = a.from.clone();
    opts.lock_timeout = a.lock_timeout;
    opts.statement_timeout = a.statement_timeout;
    opts.attempts = a.attempts;
    opts.batch_time = a.batch_time;
    opts.batch_rows = a.batch_rows;
    opts.max_replication_lag = a.max_replication_lag;
    opts.max_transaction_age = a.max_transaction_age;
    opts.max_active = a.max_active;
    if a.dry_run {
        let plan = bigint::dry_run(&client().await?, &opts).await.map_err(|e| usage(format!("pg bigint: {e}")))?;
        match out {
            Output::Json => output::json(&plan)?,
            Output::Text => print_dry_run(&plan),
        }
        return Ok(0);
    }
    let action = if a.rollback {
        Action::Rollback
    } else if a.contract {
        Action::Contract
    } else if a.abort {
        Action::Abort
    } else {
        Action::Convert
    };
    // Progress on stderr: a bar on a terminal, a line every few seconds otherwise.
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>9} [{bar:30}] {human_pos}/{human_len} rows  {per_sec}  ETA {eta}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let tty = !bar.is_hidden();
    let last_line = std::sync::Mutex::new(std::time::Instant::now());
    let started = std::time::Instant::now();
    let say = |line: String| if tty { bar.println(line) } else { eprintln!("{line}") };
    let emit = |e: Event| match e {
        Event::Stage { stage, message } => {
            bar.set_prefix(stage.clone());
            say(format!("== {stage}: {message}"));
        }
        Event::Statement { sql, ms } => {
            let first = sql.lines().next().unwrap_or("");
            say(format!("   {ms:>8.1} ms  {first}{}", if sql.contains('\n') { " …" } else { "" }));
        }
        Event::Retry { what, attempt, message } => say(format!("   retry {attempt}: {what}: {message}")),
        Event::Throttle(Some(r)) => {
            bar.set_message(format!("throttled: {r}"));
            say(format!("   throttled: {r}"));
        }
        Event::Throttle(None) => {
            bar.set_message("");
            say("   going on".into());
        }
        Event::Progress { done, total, table, .. } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            let mut l = last_line.lock().unwrap_or_else(|p| p.into_inner());
            if !tty && (l.elapsed() >= Duration::from_secs(2) || done >= total) {
                *l = std::time::Instant::now();
                let secs = started.elapsed().as_secs_f64().max(0.001);
                eprintln!(
                    "   backfill {table}: {done}/{total} rows ({:.0} %), {:.0} rows/s",
                    (done as f64 * 100.0 / total.max(1) as f64).min(100.0),
                    done as f64 / secs
                );
            }
        }
    };
    let obs = Observer { emit: &emit, hold: None };
    let r = bigint::run(&a.dsn, action, &opts, &obs).await;
    bar.finish_and_clear();
    let sum = r.map_err(|e| usage(format!("pg bigint: {e}")))?;
    match out {
        Output::Json => output::json(&sum)?,
        Output::Text => {
            println!("{}", sum.message);
            for (stage, secs) in &sum.stages {
                println!("  {stage:<10} {secs:>8.2} s");
            }
            if sum.batches > 0 {
                println!(
                    "  backfill: {} rows in {} batches{}",
                    sum.rows,
                    sum.batches,
                    if sum.throttled_seconds > 0.0 {
                        format!(", throttled {:.1} s", sum.throttled_seconds)
                    } else {
                        String::new()
                    }
                );
            }
            if let Some(c) = &sum.cutover {
                println!(
                    "  swap: attempt {}, waited {:.1} ms for its locks, held them {:.1} ms",
                    c.attempts, c.lock_wait_ms, c.lock_held_ms
                );
            }
        }
    }
    Ok(0)
}

fn print_dry_run(plan: &cutover_pg::bigint::DryRun) {
    let s = &plan.spec;
    println!(
        "{}.{} ({}) on PostgreSQL {}{}",
        s.table,
        s.column,
        s.tables[0].columns.first().map(|c| c.int_type.as_str()).unwrap_or("?"),
        s.server_major,
        if plan.stage.is_empty() { String::new() } else { format!(" — under way, {} done", plan.stage) }
    );
    for t in &s.tables {
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| {
                let mut d = format!("{} {}", c.name, c.int_type);
                if let Some(seq) = &c.sequence {
                    d.push_str(&format!(
                        ", {} {}",
                        if c.identity.is_some() { "identity" } else { "sequence" },
                        seq.name
                    ));
                }
                d
            })
            .collect();
        println!(
            "  table {} (~{} rows): converts {}; walks its key ({})",
            t.name,
            t.rows,
            if cols.is_empty() { "no column (already bigint)".to_string() } else { cols.join("; ") },
            t.key.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ")
        );
        for ix in &t.indexes {
            println!(
                "    index {}{}",
                ix.name,
                ix.constraint.as_ref().map(|c| format!(" (backs {})", c.0)).unwrap_or_default()
            );
        }
    }
    for fk in &s.fks {
        println!("  foreign key {} on {}.{} ({})", fk.name, s.tables[fk.table].name, fk.column, fk.actions);
    }
    for v in &s.views {
        println!("  view {} (dropped and created again in the cut-over)", v.name);
    }
    for (stage, units) in &plan.stages {
        println!("\n== {stage}");
        for u in units {
            println!("  -- lock: {}", u.lock);
            for sql in &u.sql {
                for (i, line) in sql.lines().enumerate() {
                    println!("  {}{line}", if i == 0 { "" } else { "  " });
                }
            }
        }
    }
    if !plan.notes.is_empty() {
        println!();
        for n in &plan.notes {
            println!("note: {n}");
        }
    }
}
