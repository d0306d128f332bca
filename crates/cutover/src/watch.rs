//! `watch` and `check`: follow a migration someone else runs, and tick manual checks.

use crate::cli::Output;
use crate::output::{actor, json, usage};
use crate::run::{open_engine, present};
use cutover_engine::checks::runner::CheckView;
use cutover_engine::model::Action;
use cutover_engine::watch::WatchView;
use std::io::IsTerminal;
use std::path::Path;

pub async fn watch(state: &str, plan_path: &Path, listen: Option<&str>, out: Output) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(plan_path)
        .map_err(|e| usage(format!("cannot read the plan {}: {e}", plan_path.display())))?;
    let plan = match cutover_plan::load_file(plan_path) {
        Ok(p) => p,
        Err(d) => {
            eprint!("{d}");
            eprintln!("error: the plan has {} problem(s); nothing was watched", d.len());
            return Ok(2);
        }
    };
    for w in &plan.warnings {
        eprintln!("{w}");
    }
    if plan.checks.is_empty() {
        return Err(usage(format!("plan `{}` has no [[checks]]: there is nothing to watch", plan.name)));
    }
    let engine = open_engine(state)?;
    let secrets = cutover_engine::secrets::resolve(&plan.secrets, &plan.dir, engine.redactor()).map_err(usage)?;
    if let Some(l) = listen {
        crate::serve::start(&engine, l, false).await?;
    }
    let run_id = engine.create_run(&plan, &text)?;
    eprintln!("watching plan `{}` as run {run_id} (Ctrl-C stops)", plan.name);
    let tty = std::io::stderr().is_terminal();
    let presenter = (!tty).then(|| tokio::spawn(present(engine.subscribe(), 0)));
    let (e2, id2) = (engine.clone(), run_id.clone());
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = e2.store().add_request(&id2, Action::Pause, None, &format!("{} (Ctrl-C)", actor()), None);
        }
    });
    let result = cutover_engine::watch::watch(&engine, &run_id, secrets, |v| {
        if tty {
            eprint!("\x1b[2J\x1b[H{}", render(v));
        }
    })
    .await;
    ctrl_c.abort();
    if let Some(p) = presenter {
        p.abort();
    }
    let view = result?;
    if out == Output::Json {
        json(&view)?;
    } else {
        print!("{}", render(&view));
    }
    Ok(view.state.exit_code())
}

fn age(v: &CheckView, now_ms: i64) -> String {
    match v.reading_ms {
        Some(t) => {
            let s = (now_ms - t).max(0) / 1000;
            if s < 120 { format!("{s}s ago") } else { format!("{}m ago", s / 60) }
        }
        None => "never".into(),
    }
}

fn mark(status: &str) -> &'static str {
    match status {
        "ok" => "✓",
        "warn" | "pending" => "~",
        _ => "✗",
    }
}

/// The phases in order with their checks, red until green.
pub fn render(v: &WatchView) -> String {
    let now = cutover_engine::model::now_ms();
    let mut s =
        format!("run {}  {}  phase {}/{}\n", v.run, v.state, (v.current + 1).min(v.phases.len()), v.phases.len());
    let line = |c: &CheckView| {
        let value = match &c.value {
            serde_json::Value::String(x) => x.clone(),
            other => other.to_string(),
        };
        let value: String = value.chars().take(40).collect();
        let who = c.target.as_deref().map(|t| format!(" [{t}]")).unwrap_or_default();
        let why = c.message.as_deref().map(|m| format!("  {m}")).unwrap_or_default();
        format!(
            "      {} {:<28} {:<8} {:<20} {:>8}{why}\n",
            mark(c.status.as_str()),
            format!("{}{who}", c.check),
            c.status.as_str(),
            value,
            age(c, now)
        )
    };
    let mut listed = vec![];
    for p in &v.phases {
        let m = match p.state {
            "complete" => "✓",
            "current" => "▶",
            _ => "·",
        };
        s.push_str(&format!("  {m} {} ({})\n", p.name, p.state));
        for c in v.checks.iter().filter(|c| p.checks.contains(&c.check)) {
            s.push_str(&line(c));
            listed.push(c.check.clone());
        }
    }
    let others: Vec<&CheckView> = v.checks.iter().filter(|c| !listed.contains(&c.check)).collect();
    if !others.is_empty() {
        s.push_str("  other checks\n");
        for c in others {
            s.push_str(&line(c));
        }
    }
    s
}

/// Ticks a manual check for a run (a live watch or run applies it at once).
pub fn tick(
    state: &str,
    run: &str,
    check: &str,
    ok: bool,
    target: Option<String>,
    note: Option<String>,
    out: Output,
) -> anyhow::Result<i32> {
    let engine = open_engine(state)?;
    match cutover_engine::control::tick(&engine, run, check, target.as_deref(), ok, &actor(), note.as_deref()) {
        Ok(Ok(e)) => {
            if out == Output::Json {
                json(&e)?;
            } else {
                println!("`{check}` ticked {} for run {run}", if ok { "ok" } else { "not ok" });
            }
            Ok(0)
        }
        Ok(Err(why)) => Err(usage(why)),
        Err(e @ cutover_engine::EngineError::Store(_)) => Err(usage(e)),
        Err(e) => Err(e.into()),
    }
}

/// Records an approval of an approve step (the waiting step sees it at once).
pub fn approve(
    state: &str,
    run: &str,
    step: &str,
    target: Option<String>,
    note: Option<String>,
    out: Output,
) -> anyhow::Result<i32> {
    let engine = open_engine(state)?;
    match cutover_engine::control::approve(&engine, run, step, target.as_deref(), &actor(), note.as_deref()) {
        Ok(Ok(targets)) => {
            if out == Output::Json {
                json(&serde_json::json!({ "run": run, "step": step, "approved": targets }))?;
            } else {
                println!(
                    "approved step `{step}` for {}",
                    targets.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
                );
            }
            Ok(0)
        }
        Ok(Err(why)) => Err(usage(why)),
        Err(e @ cutover_engine::EngineError::Store(_)) => Err(usage(e)),
        Err(e) => Err(e.into()),
    }
}
