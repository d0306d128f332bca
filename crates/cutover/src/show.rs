//! Commands that print: validate, schema, plan, status, runs, events.

use crate::cli::Output;
use crate::output::{json, table, usage};
use crate::run::{event_line, open_engine};
use cutover_engine::Engine;
use cutover_engine::model::{RunState, TargetState};
use cutover_engine::redact::Redactor;
use cutover_plan::{Command, Plan, Step, StepKind, Template};
use serde_json::json;
use std::path::Path;

pub fn validate(path: &Path, out: Output) -> anyhow::Result<i32> {
    match cutover_plan::load_file(path) {
        Ok(plan) => {
            let steps = plan.all_steps().len();
            for w in &plan.warnings {
                eprintln!("{w}");
            }
            if out == Output::Json {
                let warnings: Vec<_> = plan.warnings.iter().map(diag_json).collect();
                json(&json!({
                    "valid": true,
                    "plan": plan.name,
                    "targets": plan.all_targets.len(),
                    "selected": plan.targets.len(),
                    "phases": plan.phases.len(),
                    "steps": steps,
                    "diagnostics": [],
                    "warnings": warnings,
                }))?;
            } else {
                println!(
                    "{}: plan `{}` is valid: {} target(s) ({} selected), {} phase(s), {} step(s)",
                    path.display(),
                    plan.name,
                    plan.all_targets.len(),
                    plan.targets.len(),
                    plan.phases.len(),
                    steps
                );
            }
            Ok(0)
        }
        Err(d) => {
            if out == Output::Json {
                let diags: Vec<_> = d.iter().map(diag_json).collect();
                json(&json!({ "valid": false, "diagnostics": diags }))?;
            } else {
                eprint!("{d}");
                eprintln!("error: {} problem(s) found in {}", d.len(), path.display());
            }
            Ok(2)
        }
    }
}

fn diag_json(x: &cutover_plan::Diagnostic) -> serde_json::Value {
    json!({ "file": &*x.pos.file, "line": x.pos.line, "column": x.pos.column, "code": x.code, "message": x.message, "help": x.help })
}

pub fn schema() -> anyhow::Result<i32> {
    json(&cutover_plan::shape::json_schema())?;
    Ok(0)
}

/// The dry run: each target's steps with templates rendered where they can be
/// (secrets show as `<secret:NAME>`; outputs are only known at run time).
pub fn plan(path: &Path, out: Output) -> anyhow::Result<i32> {
    let plan = match cutover_plan::load_file(path) {
        Ok(p) => p,
        Err(d) => {
            eprint!("{d}");
            return Ok(2);
        }
    };
    for w in &plan.warnings {
        eprintln!("{w}");
    }
    let redactor = Redactor::default();
    for t in &plan.all_targets {
        for v in t.vars.values().chain(plan.vars.values()) {
            if let Some(s) = v.as_str() {
                redactor.add_url_password(s);
            }
        }
    }
    let mut all = vec![];
    for t in &plan.targets {
        let mut ctx = cutover_plan::context(t, &plan.vars, &Default::default());
        if let Some(o) = ctx.as_object_mut() {
            let secrets: serde_json::Map<_, _> =
                plan.secrets.iter().map(|s| (s.name.clone(), json!(format!("<secret:{}>", s.name)))).collect();
            o.insert("secrets".into(), serde_json::Value::Object(secrets));
            o.insert("plan".into(), json!({ "name": plan.name }));
            o.insert("run".into(), json!({ "id": "<run id>" }));
        }
        let mut steps = vec![];
        for p in &plan.phases {
            if let Some(o) = ctx.as_object_mut() {
                o.insert("phase".into(), json!({ "name": p.name }));
            }
            for s in &p.steps {
                describe(s, &p.name, "", &ctx, &redactor, &mut steps);
            }
            for s in &p.rollback {
                describe(s, &p.name, "rollback ", &ctx, &redactor, &mut steps);
            }
        }
        all.push(json!({ "target": t.name, "labels": t.labels, "after": t.after, "steps": steps }));
    }
    if out == Output::Json {
        json(&json!({ "plan": plan.name, "concurrency": plan.concurrency, "targets": all }))?;
        return Ok(0);
    }
    print_plan_header(&plan);
    for t in &all {
        println!("\ntarget {}{}", t["target"].as_str().unwrap_or(""), after_note(t));
        for s in t["steps"].as_array().into_iter().flatten() {
            println!(
                "  {:<12} {:<24} {}",
                s["phase"].as_str().unwrap_or(""),
                s["step"].as_str().unwrap_or(""),
                s["action"].as_str().unwrap_or("")
            );
        }
    }
    Ok(0)
}

fn print_plan_header(plan: &Plan) {
    println!(
        "plan `{}`: {} of {} target(s) selected; at most {} at once",
        plan.name,
        plan.targets.len(),
        plan.all_targets.len(),
        plan.concurrency.limit
    );
    for (l, n) in &plan.concurrency.per_label {
        println!("  at most {n} at once per `{l}`");
    }
    println!("nothing is executed by `cutover plan`");
}

fn after_note(t: &serde_json::Value) -> String {
    match t["after"].as_array() {
        Some(a) if !a.is_empty() => {
            format!(" (after {})", a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
        }
        _ => String::new(),
    }
}

/// Renders for the dry run: outputs of steps are only known at run time, so
/// each `outputs.…` path shows as `<outputs.…>`; passwords written in vars
/// are hidden.
fn render(t: &Template, ctx: &serde_json::Value, redactor: &Redactor) -> String {
    let mut ctx = ctx.clone();
    for path in cutover_plan::template::paths(&t.source).unwrap_or_default() {
        let mut parts = path.split('.');
        if parts.next() != Some("outputs") {
            continue;
        }
        let mut node = &mut ctx["outputs"];
        let rest: Vec<&str> = parts.collect();
        for (i, p) in rest.iter().enumerate() {
            if !node.is_object() {
                *node = json!({});
            }
            node = &mut node[*p];
            if i + 1 == rest.len() && node.is_null() {
                *node = json!(format!("<{path}>"));
            }
        }
    }
    let text = cutover_plan::template::render(&t.source, &ctx).unwrap_or_else(|_| t.source.clone());
    redactor.redact(&text)
}

fn describe(
    s: &Step,
    phase: &str,
    prefix: &str,
    ctx: &serde_json::Value,
    r: &Redactor,
    out: &mut Vec<serde_json::Value>,
) {
    let action = match &s.kind {
        StepKind::Exec(x) => match &x.command {
            Command::Shell(t) => format!("exec: sh -c {:?}", render(t, ctx, r)),
            Command::Argv(v) => format!("exec: {:?}", v.iter().map(|t| render(t, ctx, r)).collect::<Vec<_>>()),
        },
        StepKind::Sql(x) => format!(
            "sql on {}: {}",
            cutover_pg_describe(&render(&x.dsn, ctx, r)),
            x.statements.iter().map(|s| s.sql.trim().to_string()).collect::<Vec<_>>().join("; ")
        ),
        StepKind::Http(x) => format!("http: {} {}", x.method, render(&x.url, ctx, r)),
        StepKind::Wait(x) => {
            format!("wait until {} (every {})", x.until.source, cutover_plan::duration::format(x.interval))
        }
        StepKind::Approve(x) => format!(
            "approve: {}",
            x.message.as_ref().map(|m| render(m, ctx, r)).unwrap_or_else(|| "a human's go".into())
        ),
        StepKind::Block(_) => "block".to_string(),
        StepKind::PgVerify(x) => format!(
            "pg.verify: {} against {}",
            cutover_pg_describe(&render(&x.dsn, ctx, r)),
            cutover_pg_describe(&render(&x.target_dsn, ctx, r))
        ),
        StepKind::PgCopy(x) => format!(
            "pg.copy ({}, {} job(s)): {} into {}",
            x.method,
            x.jobs,
            cutover_pg_describe(&render(&x.dsn, ctx, r)),
            cutover_pg_describe(&render(&x.target_dsn, ctx, r))
        ),
        StepKind::PgBackup(x) => {
            format!("pg.backup: {} into {}", cutover_pg_describe(&render(&x.dsn, ctx, r)), render(&x.dir, ctx, r))
        }
        StepKind::PgRestore(x) => format!(
            "pg.restore: backup {} into {}",
            render(&x.from, ctx, r),
            cutover_pg_describe(&render(&x.target_dsn, ctx, r))
        ),
        StepKind::PgBigint(x) => {
            let key = match &x.column {
                Some(c) => format!("{}.{}", render(&x.table, ctx, r), render(c, ctx, r)),
                None => format!("{} (primary key)", render(&x.table, ctx, r)),
            };
            let all = cutover_plan::shape::PG_BIGINT_STAGES;
            let stages = match (&x.from, &x.until) {
                (None, None) => String::new(),
                (f, u) => format!(
                    ", stages {} to {}",
                    f.as_deref().or(all.first().copied()).unwrap_or_default(),
                    u.as_deref().or(all.last().copied()).unwrap_or_default()
                ),
            };
            let approval = if x.approve_cutover { ", approval before the cut-over" } else { "" };
            format!(
                "pg.bigint {}: {key} on {} (lock ≤ {}{stages}{approval})",
                x.action,
                cutover_pg_describe(&render(&x.dsn, ctx, r)),
                cutover_plan::duration::format(x.lock_timeout)
            )
        }
        StepKind::PgMigrate(x) => {
            let to = match x.to {
                Some(v) => format!("to version {v}"),
                None => "up to the newest".into(),
            };
            let lint = if x.lint { ", lint errors refuse" } else { "" };
            // A token in a git URL is not shown (git's credential helper is the better place for it).
            let dir = cutover_migrate::source::hide_userinfo(&x.dir);
            format!("pg.migrate: apply {dir} to {} ({to}{lint})", cutover_pg_describe(&render(&x.dsn, ctx, r)))
        }
        StepKind::PgPreflight(x) => format!(
            "pg.preflight: {} for PostgreSQL {}",
            cutover_pg_describe(&render(&x.dsn, ctx, r)),
            x.target_version.map(|v| v.to_string()).unwrap_or_else(|| "(the target server's)".into())
        ),
    };
    let mut flags = vec![];
    if let Some(w) = &s.when {
        flags.push(format!("when {}", w.source));
    }
    if s.retries > 0 {
        flags.push(format!("retries {}", s.retries));
    }
    if let Some(t) = s.timeout {
        flags.push(format!("timeout {}", cutover_plan::duration::format(t)));
    }
    if !s.idempotent {
        flags.push("not idempotent".into());
    }
    let action = if flags.is_empty() { action } else { format!("{action}  [{}]", flags.join(", ")) };
    out.push(json!({ "phase": phase, "step": format!("{prefix}{}", s.name), "kind": s.kind.name(), "description": s.description, "action": action }));
    if let StepKind::Block(b) = &s.kind {
        for i in &b.steps {
            describe(i, phase, &format!("{prefix}  "), ctx, r, out);
        }
        for f in &b.finally {
            describe(f, phase, &format!("{prefix}  finally "), ctx, r, out);
        }
    }
}

/// Where a DSN points, without its password.
fn cutover_pg_describe(dsn: &str) -> String {
    match dsn.split_once("://") {
        Some((_, rest)) => rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest).to_string(),
        None => "the database".into(),
    }
}

fn latest_run(engine: &Engine) -> anyhow::Result<String> {
    let runs = engine.store().runs()?;
    runs.last()
        .map(|r| r.id.clone())
        .ok_or_else(|| usage("no run recorded in this state file yet; start one with `cutover run PLAN`"))
}

pub fn status(state: &str, run: Option<&str>, out: Output) -> anyhow::Result<i32> {
    let engine = open_engine(state)?;
    let run = match run {
        Some(r) => r.to_string(),
        None => latest_run(&engine)?,
    };
    summary(&engine, &run, out)?;
    let rec = engine.store().run(&run)?;
    Ok(rec.state.exit_code())
}

/// The state of a run and its targets.
pub fn summary(engine: &Engine, run: &str, out: Output) -> anyhow::Result<()> {
    let store = engine.store();
    let rec = store.run(run).map_err(usage)?;
    let targets = store.targets(run)?;
    let live = engine.live_holder(run)?;
    // The estimates of a scheduled run, once targets finished: how wrong they were.
    let measured = cutover_engine::schedule::samples(store.as_ref(), run)?;
    let error = cutover_plan::estimate::mape(&measured);
    if out == Output::Json {
        json(&json!({
            "run": rec,
            "driven_by": live.map(|l| json!({ "pid": l.pid, "host": l.host })),
            "counts": counts(&targets),
            "estimates": error.map(|e| json!({ "mape": e, "targets": measured.len() })),
            "targets": targets,
        }))?;
        return Ok(());
    }
    println!("run {}  plan `{}`  {}", rec.id, rec.plan_name, rec.state);
    if let Some(l) = live {
        println!("driven by process {} on {}", l.pid, l.host);
    }
    if let Some(e) = error {
        println!(
            "estimates: {e:.0}% off on average (mean absolute percentage error over {} finished target(s))",
            measured.len()
        );
    }
    let c = counts(&targets);
    println!(
        "{}",
        c.as_object()
            .map(|o| o
                .iter()
                .filter(|(_, v)| v.as_u64() != Some(0))
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.state.to_string(),
                t.phase.clone().unwrap_or_default(),
                t.step.clone().unwrap_or_default(),
                t.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["TARGET", "STATE", "PHASE", "STEP", "MESSAGE"], &rows);
    match rec.state {
        RunState::NeedsAttention | RunState::Failed
            if targets.iter().any(|t| matches!(t.state, TargetState::NeedsAttention | TargetState::Failed)) =>
        {
            println!(
                "\nnext: `cutover retry {run} TARGET` or `cutover skip {run} TARGET`, then `cutover resume {run}`"
            );
        }
        RunState::Paused => println!("\nnext: `cutover resume {run}`"),
        _ => {}
    }
    Ok(())
}

fn counts(targets: &[cutover_engine::model::TargetRecord]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for s in TargetState::ALL {
        m.insert(s.to_string(), json!(targets.iter().filter(|t| t.state == *s).count()));
    }
    serde_json::Value::Object(m)
}

pub fn runs(state: &str, out: Output) -> anyhow::Result<i32> {
    let engine = open_engine(state)?;
    let runs = engine.store().runs()?;
    if out == Output::Json {
        json(&runs)?;
        return Ok(0);
    }
    if runs.is_empty() {
        println!("no runs yet; start one with `cutover run PLAN`");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![r.id.clone(), r.plan_name.clone(), r.state.to_string(), r.created_at.clone(), r.updated_at.clone()]
        })
        .collect();
    table(&["RUN", "PLAN", "STATE", "CREATED", "UPDATED"], &rows);
    Ok(0)
}

pub async fn events(state: &str, run: &str, follow: bool, out: Output) -> anyhow::Result<i32> {
    let engine = open_engine(state)?;
    engine.store().run(run).map_err(usage)?;
    let mut last = 0;
    loop {
        for ev in engine.store().events(run, last)? {
            last = ev.id;
            if out == Output::Json {
                println!("{}", serde_json::to_string(&ev)?);
            } else if let Some(line) = event_line(&ev) {
                println!("{} {:<24} {line}", ev.ts.get(..10).unwrap_or(""), ev.kind);
            }
        }
        if !follow || engine.live_holder(run)?.is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    Ok(0)
}

/// `cutover docs`: the three documents of seed 004, from the plan.
pub fn docs(path: &Path, dir: &Path, out: Output) -> anyhow::Result<i32> {
    let plan = match cutover_plan::load_file(path) {
        Ok(p) => p,
        Err(d) => {
            eprint!("{d}");
            return Ok(2);
        }
    };
    std::fs::create_dir_all(dir).map_err(|e| usage(format!("cannot create {}: {e}", dir.display())))?;
    let slug: String =
        plan.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    let files = [
        (dir.join(format!("{slug}.md")), cutover_plan::runbook::runbook(&plan)),
        (dir.join(format!("{slug}-dashboard.md")), cutover_plan::runbook::dashboard(&plan)),
        (dir.join(format!("{slug}-alerts.md")), cutover_plan::runbook::alerts(&plan)),
    ];
    for (f, text) in &files {
        std::fs::write(f, text).map_err(|e| usage(format!("cannot write {}: {e}", f.display())))?;
    }
    if out == Output::Json {
        json(&json!({ "files": files.iter().map(|(f, _)| f.display().to_string()).collect::<Vec<_>>() }))?;
    } else {
        for (f, _) in &files {
            println!("wrote {}", f.display());
        }
    }
    Ok(0)
}
