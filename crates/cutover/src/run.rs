//! `run` and `resume`: drive a run in the foreground with live progress.

use crate::cli::Output;
use crate::output::{actor, usage};
use crate::show;
use cutover_engine::Engine;
use cutover_engine::model::{Action, Event, RunState};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub fn open_engine(state: &str) -> anyhow::Result<Engine> {
    let store = cutover_engine::store::open(state).map_err(usage)?;
    Ok(Engine::new(Arc::from(store)))
}

pub async fn run(
    state: &str,
    plan_path: &Path,
    listen: Option<&str>,
    start_now: Option<&[String]>,
    out: Output,
) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(plan_path)
        .map_err(|e| usage(format!("cannot read the plan {}: {e}", plan_path.display())))?;
    let plan = match cutover_plan::load_file(plan_path) {
        Ok(p) => p,
        Err(d) => {
            eprint!("{d}");
            eprintln!("error: the plan has {} problem(s); nothing was run", d.len());
            return Ok(2);
        }
    };
    for w in &plan.warnings {
        eprintln!("{w}");
    }
    if let Some(t) = start_now.unwrap_or_default().iter().find(|t| plan.target(t).is_none()) {
        return Err(usage(format!("--start-now: plan `{}` has no (selected) target `{t}`", plan.name)));
    }
    // A schedule clock set wrongly stops the run before it is recorded.
    cutover_engine::schedule::Clock::from_env().map_err(usage)?;
    let engine = open_engine(state)?;
    // Secrets are read before the run is recorded: a missing one stops
    // everything before any target is touched.
    let secrets = cutover_engine::secrets::resolve(&plan.secrets, &plan.dir, engine.redactor()).map_err(usage)?;
    if let Some(l) = listen {
        crate::serve::start(&engine, l, false).await?;
    }
    let run_id = engine.create_run(&plan, &text)?;
    crate::schedule::request_start_now(&engine, &run_id, start_now)?;
    eprintln!("run {run_id}: plan `{}` over {} target(s)", plan.name, plan.targets.len());
    if let Some(l) = listen {
        eprintln!("run page: http://{l}/runs/{run_id}");
    }
    drive(&engine, &run_id, plan.targets.len() as u64, out, Some(secrets)).await
}

pub async fn resume(state: &str, run_id: &str, out: Output) -> anyhow::Result<i32> {
    resume_listening(state, run_id, None, None, out).await
}

pub async fn resume_listening(
    state: &str,
    run_id: &str,
    listen: Option<&str>,
    start_now: Option<&[String]>,
    out: Output,
) -> anyhow::Result<i32> {
    let engine = open_engine(state)?;
    // A run another process drives is refused by the drive below; the
    // start-now is not recorded for it then.
    if start_now.is_some() && engine.live_holder(run_id).map_err(usage)?.is_none() {
        for t in start_now.unwrap_or_default() {
            engine.store().target(run_id, t).map_err(usage)?;
        }
        crate::schedule::request_start_now(&engine, run_id, start_now)?;
    }
    if let Some(l) = listen {
        crate::serve::start(&engine, l, false).await?;
    }
    let total = engine.store().targets(run_id).map_err(usage)?.len() as u64;
    eprintln!("resuming run {run_id}");
    drive(&engine, run_id, total, out, None).await
}

async fn drive(
    engine: &Engine,
    run_id: &str,
    total: u64,
    out: Output,
    secrets: Option<std::collections::BTreeMap<String, String>>,
) -> anyhow::Result<i32> {
    let events = engine.subscribe();
    let presenter = tokio::spawn(present(events, total));
    let ctrl_c = tokio::spawn(ctrl_c(engine.clone(), run_id.to_string()));
    let result = match secrets {
        Some(s) => engine.drive_with_secrets(run_id, s).await,
        None => engine.drive(run_id).await,
    };
    ctrl_c.abort();
    presenter.abort();
    let _ = presenter.await;
    let state = match result {
        Ok(s) => s,
        Err(
            e @ (cutover_engine::EngineError::Held { .. }
            | cutover_engine::EngineError::Ended { .. }
            | cutover_engine::EngineError::Secret(_)),
        ) => {
            return Err(usage(e));
        }
        Err(cutover_engine::EngineError::Store(e)) => return Err(usage(e)),
        Err(e) => return Err(e.into()),
    };
    show::summary(engine, run_id, out)?;
    if state == RunState::Paused {
        eprintln!("paused: continue with `cutover resume {run_id}`");
    }
    Ok(state.exit_code())
}

/// First Ctrl-C: pause (steps in flight finish). Second: abort.
async fn ctrl_c(engine: Engine, run_id: String) {
    let mut presses = 0;
    while tokio::signal::ctrl_c().await.is_ok() {
        presses += 1;
        let (action, msg) = if presses == 1 {
            (Action::Pause, "pausing: steps in flight finish, nothing new starts (Ctrl-C again to abort)")
        } else {
            (Action::Abort, "aborting: steps in flight are stopped, finally steps run")
        };
        eprintln!("\n{msg}");
        let who = format!("{} (Ctrl-C)", actor());
        if let Err(e) = engine.store().add_request(&run_id, action, None, &who, None) {
            eprintln!("error: cannot record the request: {e}");
        }
    }
}

/// Shows events: progress bars on a terminal, one line per event otherwise.
pub async fn present(mut rx: tokio::sync::broadcast::Receiver<Event>, total: u64) {
    let tty = std::io::stderr().is_terminal();
    let multi =
        MultiProgress::with_draw_target(if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    let bar = multi.add(ProgressBar::new(total));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} targets  {msg}  ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix("run");
    let mut lines: HashMap<String, ProgressBar> = HashMap::new();
    let mut samples: HashMap<String, Vec<(i64, f64)>> = HashMap::new();
    let (mut ok, mut failed, mut attention) = (0u64, 0u64, 0u64);
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => break,
        };
        if !tty {
            if let Some(line) = event_line(&ev) {
                eprintln!("{line}");
            }
            continue;
        }
        let target = ev.target.clone().unwrap_or_default();
        match ev.kind.as_str() {
            "target_started" => {
                let l = multi.add(ProgressBar::new_spinner());
                l.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix}: {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                l.set_prefix(target.clone());
                l.enable_steady_tick(Duration::from_millis(120));
                lines.insert(target, l);
            }
            "step_started" => {
                if let Some(l) = lines.get(&target) {
                    let phase = ev.data["phase"].as_str().unwrap_or("");
                    let step = ev.step.as_deref().unwrap_or("");
                    let attempt = ev.data["attempt"].as_i64().unwrap_or(1);
                    let again = if attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                    l.set_message(format!("{phase} › {step}{again}"));
                }
            }
            "step_progress" => {
                if let Some(l) = lines.get(&target) {
                    let now = cutover_engine::model::now_ms();
                    let done = ev.data["done"].as_f64().unwrap_or(0.0);
                    let s = samples.entry(format!("{target}/{}", ev.step.as_deref().unwrap_or(""))).or_default();
                    s.push((now, done));
                    let p = cutover_engine::progress::compute(
                        done,
                        ev.data["total"].as_f64().unwrap_or(0.0),
                        ev.data["unit"].as_str().unwrap_or(""),
                        s,
                        now,
                    );
                    l.set_message(format!(
                        "{} {:.1}% ({}/{} {}, {:.0}/s, ETA {})",
                        ev.step.as_deref().unwrap_or(""),
                        p.percent,
                        p.done,
                        p.total,
                        p.unit,
                        p.rate,
                        p.eta
                    ));
                }
            }
            "step_retrying" | "target_rolling_back" => {
                if let Some(l) = lines.get(&target) {
                    l.set_message(ev.message.clone());
                }
            }
            k @ ("target_succeeded"
            | "target_failed"
            | "target_rolled_back"
            | "target_aborted"
            | "target_needs_attention"
            | "target_skipped"
            | "target_paused") => {
                match k {
                    "target_succeeded" => ok += 1,
                    "target_failed" | "target_rolled_back" | "target_aborted" => failed += 1,
                    "target_needs_attention" => attention += 1,
                    _ => {}
                }
                if k != "target_paused" {
                    bar.inc(1);
                }
                if let Some(l) = lines.remove(&target) {
                    l.finish_and_clear();
                    multi.remove(&l);
                }
                if k != "target_succeeded" {
                    let _ = multi.println(format!("  {target}: {}", ev.message));
                }
                bar.set_message(format!("✓ {ok}  ✗ {failed}  ⚠ {attention}"));
            }
            "operator_pause" | "operator_abort" | "run_error" | "lease_taken_over" | "start_now" => {
                let _ = multi.println(ev.message.clone());
            }
            "window_waiting" => {
                let _ = multi.println(format!("  {target}: {}", ev.message));
            }
            _ => {}
        }
    }
}

/// One line for the log-style presentation (not a terminal).
pub fn event_line(ev: &Event) -> Option<String> {
    let time = ev.ts.get(11..19).unwrap_or(&ev.ts);
    let who = match (&ev.target, &ev.step) {
        (Some(t), Some(s)) => format!("{t} {s}"),
        (Some(t), None) => t.clone(),
        _ => "run".into(),
    };
    Some(format!("{time} {who}: {}", ev.message))
}
