//! `cutover migrate …`: versioned migrations for a person at a terminal or a
//! CI job (the same library as the plan's pg.migrate step).

use crate::cli::{MigrateArgs, MigrateCommand, Output};
use crate::output::{self, Exit, usage};
use cutover_engine::redact::Redactor;
use cutover_migrate::lint::{self, Severity};
use cutover_migrate::pending;
use cutover_migrate::run::{self, Command, Event, Options};
use cutover_migrate::source::{self, Numbering, Source};
use serde_json::json;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The command ended with a finding or a refusal (exit code 1).
fn failed(message: String) -> anyhow::Error {
    anyhow::Error::new(Exit { code: 1, message })
}

pub async fn migrate(a: MigrateArgs, out: Output) -> anyhow::Result<i32> {
    let redactor = Redactor::default();
    let r = migrate_inner(&a, out, &redactor).await;
    // Whatever went wrong, its message passes the redactor: a DSN read from a
    // secret may have found its way into it.
    r.map_err(|e| match e.downcast::<Exit>() {
        Ok(x) => anyhow::Error::new(Exit { code: x.code, message: redactor.redact(&x.message) }),
        Err(e) => usage(redactor.redact(&format!("{e:#}"))),
    })
}

async fn migrate_inner(a: &MigrateArgs, out: Output, redactor: &Redactor) -> anyhow::Result<i32> {
    if let MigrateCommand::Create { title, seq, timestamp } = &a.command {
        return create(&a.dir, &title.join(" "), *seq, *timestamp, out);
    }
    if let MigrateCommand::Lint { rules: true, .. } = &a.command {
        return rules(out);
    }
    let source = Source::open(&a.dir).map_err(usage)?;
    let client = match &a.dsn {
        Some(d) => Some(connect(d, redactor).await?),
        None => None,
    };
    let need = |what: &str| -> anyhow::Result<&cutover_pg::Client> {
        client.as_ref().ok_or_else(|| {
            usage(format!("`cutover migrate {what}` needs the database: pass --dsn (or set CUTOVER_DSN)"))
        })
    };
    let mut opts = Options::new(format!("{} (pid {})", output::actor(), std::process::id()));
    opts.lock_wait = a.lock_wait;
    opts.lock_timeout = a.lock_timeout;
    opts.statement_timeout = a.statement_timeout;
    opts.allow_out_of_order = a.allow_out_of_order;
    opts.allow_changed = a.allow_changed;
    opts.golang_migrate_table = a.golang_migrate_table.clone();
    let r = redactor.clone();
    opts.redact = Box::new(move |s| r.redact(s));
    let cmd = match &a.command {
        MigrateCommand::Up { n } => Command::Up(*n),
        MigrateCommand::Down { n, all } => Command::Down(if *all { None } else { *n }),
        MigrateCommand::Goto { version } => Command::Goto(*version),
        MigrateCommand::Force { version } => Command::Force(*version),
        MigrateCommand::Baseline { version } => Command::Baseline(*version),
        MigrateCommand::Version => return version(need("version")?, &source, &opts, out).await,
        MigrateCommand::Status => return status(need("status")?, &source, &opts, out).await,
        MigrateCommand::History { limit } => return history(need("history")?, *limit, out).await,
        MigrateCommand::Validate => return validate(client.as_ref(), &source, &opts, out).await,
        MigrateCommand::Lint { all, strict, .. } => {
            return lint(client.as_ref(), &source, &opts, *all, *strict, out).await;
        }
        MigrateCommand::Create { .. } => return Ok(0),
    };
    let client = need(match cmd {
        Command::Up(_) => "up",
        Command::Down(_) => "down",
        Command::Goto(_) => "goto",
        Command::Force(_) => "force",
        Command::Baseline(_) => "baseline",
    })?;
    let text = out == Output::Text;
    let on = move |e: Event| match e {
        Event::Waiting { holder } => eprintln!("waiting for the migration lock, held by {holder}"),
        Event::Notice(n) => eprintln!("note: {n}"),
        Event::Start { index, total, label, direction, transactional } if text => eprintln!(
            "[{index}/{total}] {direction} {label}{}",
            if transactional { "" } else { " (outside a transaction)" }
        ),
        Event::Done { label, direction, duration, .. } if text => {
            println!(
                "{} {label} ({} ms)",
                if direction == "up" { "applied" } else { "rolled back" },
                duration.as_millis()
            )
        }
        _ => {}
    };
    match run::apply(client, &source, cmd, &opts, &on).await {
        Ok(o) => {
            match out {
                Output::Json => output::json(&o)?,
                Output::Text => {
                    let at = o.after.map(|v| v.to_string()).unwrap_or_else(|| "none".into());
                    match cmd {
                        Command::Force(_) => println!("forced: the current version is {at}; nothing was run"),
                        Command::Baseline(_) => println!("baselined at version {at}; nothing was run"),
                        _ if o.applied.is_empty() => println!("nothing to do: the current version is {at}"),
                        _ => println!("the current version is {at} ({} migration(s) run)", o.applied.len()),
                    }
                }
            }
            Ok(0)
        }
        Err(e) => Err(failed(e.to_string())),
    }
}

/// A literal connection string, or a secret reference read now; either way
/// its password is registered with the redactor before anything is printed.
async fn connect(dsn: &str, redactor: &Redactor) -> anyhow::Result<cutover_pg::Client> {
    let value = if ["env:", "file:", "command:"].iter().any(|p| dsn.starts_with(p)) {
        let def = cutover_plan::SecretDef { name: "dsn".into(), reference: dsn.to_string(), pos: Default::default() };
        let cwd = std::env::current_dir().map_err(usage)?;
        let mut got = cutover_engine::secrets::resolve(&[def], &cwd, redactor).map_err(usage)?;
        got.remove("dsn").unwrap_or_default()
    } else {
        dsn.to_string()
    };
    redactor.add_url_password(&value);
    // A key=value DSN's password, too.
    if let Some(pw) = value.split_whitespace().find_map(|kv| kv.strip_prefix("password=")) {
        redactor.add(pw.trim_matches('\''));
    }
    cutover_pg::connect(&value, CONNECT_TIMEOUT).await.map_err(|e| usage(redactor.redact(&e.to_string())))
}

fn create(dir: &str, title: &str, seq: bool, timestamp: bool, out: Output) -> anyhow::Result<i32> {
    if dir.starts_with("git:") {
        return Err(usage("create writes files: give --dir a local directory, not a git: source"));
    }
    let numbering = match (seq, timestamp) {
        (true, _) => Numbering::Sequential,
        (_, true) => Numbering::Timestamp,
        _ => Numbering::Auto,
    };
    let paths = source::create(std::path::Path::new(dir), title, numbering, jiff::Timestamp::now()).map_err(usage)?;
    match out {
        Output::Json => output::json(&json!({"up": paths[0], "down": paths[1]}))?,
        Output::Text => {
            for p in &paths {
                println!("created {}", p.display());
            }
        }
    }
    Ok(0)
}

async fn version(client: &cutover_pg::Client, source: &Source, opts: &Options, out: Output) -> anyhow::Result<i32> {
    let s = run::status(client, source, &opts.golang_migrate_table).await.map_err(|e| failed(e.to_string()))?;
    match out {
        Output::Json => output::json(&json!({"version": s.current, "partial": s.partial}))?,
        Output::Text => match (s.current, s.partial) {
            (None, _) => println!("none"),
            (Some(v), false) => println!("{v}"),
            (Some(v), true) => println!("{v} (partial)"),
        },
    }
    Ok(0)
}

async fn status(client: &cutover_pg::Client, source: &Source, opts: &Options, out: Output) -> anyhow::Result<i32> {
    let s = run::status(client, source, &opts.golang_migrate_table).await.map_err(|e| failed(e.to_string()))?;
    if out == Output::Json {
        output::json(&s)?;
        return Ok(0);
    }
    println!("source: {}", s.source);
    let at = s.current.map(|v| v.to_string()).unwrap_or_else(|| "none".into());
    println!("current version: {at}{}", if s.partial { " (partial: run `cutover migrate history`)" } else { "" });
    if let Some(g) = &s.golang_migrate {
        println!(
            "golang-migrate's schema_migrations says {}{}: adopted on the next change",
            g.version,
            if g.dirty { " (dirty)" } else { "" }
        );
    }
    let rows: Vec<Vec<String>> = s
        .files
        .iter()
        .map(|f| {
            vec![
                f.version.to_string(),
                f.title.clone(),
                f.state.to_string(),
                match &f.how {
                    Some(h) if h != "applied" => h.clone(),
                    _ => String::new(),
                },
                f.applied_at.clone().unwrap_or_default(),
                if f.transactional { String::new() } else { "no-transaction".into() },
                if f.has_down { "yes".into() } else { "no".into() },
            ]
        })
        .collect();
    output::table(&["VERSION", "TITLE", "STATE", "HOW", "APPLIED", "MODE", "DOWN"], &rows);
    Ok(0)
}

async fn history(client: &cutover_pg::Client, limit: i64, out: Output) -> anyhow::Result<i32> {
    let h = run::history(client, limit).await.map_err(|e| failed(e.to_string()))?;
    if out == Output::Json {
        output::json(&h)?;
        return Ok(0);
    }
    if h.is_empty() {
        println!("no migration attempt recorded in this database");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = h
        .iter()
        .map(|a| {
            vec![
                a.started_at.clone(),
                format!("{}_{}", a.version, a.title),
                a.direction.clone(),
                match a.success {
                    Some(true) => "ok".into(),
                    Some(false) => "FAILED".into(),
                    None => "unfinished".into(),
                },
                a.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
                match (a.statements_run, a.statements_total) {
                    (Some(r), Some(t)) => format!("{r}/{t}"),
                    _ => String::new(),
                },
                format!("{} as {}", a.ran_by, a.db_user),
                a.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["STARTED", "MIGRATION", "DIRECTION", "RESULT", "TOOK", "STATEMENTS", "BY", "ERROR"], &rows);
    Ok(0)
}

async fn validate(
    client: Option<&cutover_pg::Client>,
    source: &Source,
    opts: &Options,
    out: Output,
) -> anyhow::Result<i32> {
    let mut problems: Vec<(Severity, String)> = Vec::new();
    for m in &source.migrations {
        if m.up.is_none() {
            problems.push((Severity::Error, format!("{} has a down file but no up file", m.label())));
        }
        for f in m.up.iter().chain(m.down.iter()) {
            if let Err(e) = source::runnable(f) {
                problems.push((Severity::Error, format!("{}: {e}", f.name)));
            }
        }
        if m.down.is_none() {
            problems.push((Severity::Warning, format!("{} has no down file: it cannot be rolled back", m.label())));
        }
    }
    for name in &source.skipped {
        problems.push((
            Severity::Warning,
            format!("{name} is not named like a migration ({{version}}_{{title}}.up.sql); skipped"),
        ));
    }
    if let Some(client) = client {
        let s = run::status(client, source, &opts.golang_migrate_table).await.map_err(|e| failed(e.to_string()))?;
        if let Some(g) = s.golang_migrate.as_ref().filter(|g| g.dirty) {
            problems
                .push((Severity::Error, format!("golang-migrate left the database dirty at version {}", g.version)));
        }
        for f in &s.files {
            let label = format!("{}_{}", f.version, f.title);
            match f.state {
                "changed" if !opts.allow_changed => problems
                    .push((Severity::Error, format!("{label} was edited after it was applied (checksum differs)"))),
                "out-of-order" if !opts.allow_out_of_order => problems.push((
                    Severity::Error,
                    format!("{label} is older than the current version but not applied (out of order)"),
                )),
                "missing" => problems.push((Severity::Warning, format!("{label} is applied but has no file"))),
                "partial" => {
                    problems.push((Severity::Error, format!("{label} stopped part-way outside a transaction")))
                }
                _ => {}
            }
        }
    }
    let errors = problems.iter().filter(|p| p.0 == Severity::Error).count();
    match out {
        Output::Json => output::json(&json!({
            "source": source.label,
            "migrations": source.migrations.len(),
            "problems": problems.iter().map(|(s, m)| json!({"severity": s, "message": m})).collect::<Vec<_>>(),
            "errors": errors,
        }))?,
        Output::Text => {
            for (s, m) in &problems {
                println!("{}: {m}", if *s == Severity::Error { "error" } else { "warning" });
            }
            println!(
                "{}: {} migration(s), {errors} error(s), {} warning(s)",
                source.label,
                source.migrations.len(),
                problems.len() - errors
            );
        }
    }
    Ok(if errors > 0 { 1 } else { 0 })
}

async fn lint(
    client: Option<&cutover_pg::Client>,
    source: &Source,
    opts: &Options,
    all: bool,
    strict: bool,
    out: Output,
) -> anyhow::Result<i32> {
    let pending: Option<Vec<u64>> = match client {
        Some(c) if !all => {
            let s = run::status(c, source, &opts.golang_migrate_table).await.map_err(|e| failed(e.to_string()))?;
            Some(s.files.iter().filter(|f| matches!(f.state, "pending" | "out-of-order")).map(|f| f.version).collect())
        }
        _ => None,
    };
    // Pending files are linted as the sequence they will run in, knowing the
    // database's column types; without a database each file stands alone.
    let (files, findings) = match (client, pending) {
        (Some(c), Some(versions)) => {
            let l = pending::lint_pending(c, source, &versions).await.map_err(|e| failed(e.to_string()))?;
            (l.files, l.findings)
        }
        _ => {
            let ups: Vec<_> = source.migrations.iter().filter_map(|m| m.up.as_ref()).collect();
            (ups.len(), ups.iter().flat_map(|f| lint::lint_sql(&f.name, &f.sql, f.transactional)).collect())
        }
    };
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = findings.len() - errors;
    match out {
        Output::Json => output::json(&json!({
            "source": source.label,
            "files": files,
            "errors": errors,
            "warnings": warnings,
            "findings": findings,
        }))?,
        Output::Text => {
            for f in &findings {
                let sev = if f.severity == Severity::Error { "error" } else { "warning" };
                println!("{}:{}:{}: {sev} {} {}: {}", f.file, f.line, f.column, f.code, f.rule, f.message);
                println!("    {}", f.statement);
                println!("    instead: {}", f.alternative);
            }
            println!("{files} file(s) linted: {errors} error(s), {warnings} warning(s)");
        }
    }
    Ok(if errors > 0 || (strict && warnings > 0) { 1 } else { 0 })
}

fn rules(out: Output) -> anyhow::Result<i32> {
    match out {
        Output::Json => output::json(
            &lint::RULES
                .iter()
                .map(|r| {
                    json!({"code": r.code, "name": r.name, "severity": r.severity,
                           "explanation": r.explanation, "alternative": r.alternative})
                })
                .collect::<Vec<_>>(),
        )?,
        Output::Text => {
            let rows: Vec<Vec<String>> = lint::RULES
                .iter()
                .map(|r| {
                    vec![
                        r.code.to_string(),
                        r.name.to_string(),
                        if r.severity == Severity::Error { "error".into() } else { "warning".into() },
                        r.explanation.to_string(),
                    ]
                })
                .collect();
            output::table(&["CODE", "RULE", "SEVERITY", "WHY"], &rows);
        }
    }
    Ok(0)
}
