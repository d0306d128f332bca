//! Watch mode: a plan whose steps someone else runs (Pix's case). Only its
//! checks are probed; the phases are passed in order, each complete once
//! all its checks are ok, and the expectations of the current phase apply.
//! The run records every check change and phase transition like any run.

use crate::checks::runner::{CheckRunner, CheckView};
use crate::model::*;
use crate::runner::LeaseGuard;
use crate::{Engine, EngineError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Where a watched migration stands.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WatchView {
    pub run: String,
    pub state: RunState,
    /// Index of the current phase (equal to the number of phases once all are complete).
    pub current: usize,
    pub phases: Vec<PhaseView>,
    pub checks: Vec<CheckView>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PhaseView {
    pub name: String,
    /// "complete", "current" or "waiting".
    pub state: &'static str,
    pub checks: Vec<String>,
}

/// Watches a recorded run until all its phases are complete, or it is paused
/// or aborted. `on_tick` sees the view about once a second (the CLI draws it).
pub async fn watch(
    engine: &Engine,
    run_id: &str,
    secrets: BTreeMap<String, String>,
    mut on_tick: impl FnMut(&WatchView),
) -> Result<WatchView, EngineError> {
    let rec = engine.store().run(run_id)?;
    let lease = LeaseGuard::acquire(engine, run_id).await?;
    let plan = Arc::new(engine.load_plan(&rec)?);
    engine.store().set_run_state(run_id, RunState::Running)?;
    engine.emit(
        run_id,
        NewEvent::run(
            "watch_started",
            format!("watching {} check(s) over {} phase(s)", plan.checks.len(), plan.phases.len()),
        ),
    )?;
    let secrets = Arc::new(secrets);
    let notifier = crate::notify::start(engine, run_id, plan.clone(), secrets.clone());
    let checks = CheckRunner::start(engine, run_id, plan.clone(), secrets);
    let mut current = 0usize;
    let mut last_tick = 0i64;
    let mut last_draw = 0i64;
    if let Some(p) = plan.phases.first() {
        checks.set_phase(Some(&p.name));
        engine.emit(
            run_id,
            NewEvent::run("phase_started", format!("phase `{}` is current", p.name))
                .with_data(serde_json::json!({ "phase": p.name })),
        )?;
    }
    let state = loop {
        if lease.lost.load(Ordering::SeqCst) {
            return Err(EngineError::LeaseLost(run_id.to_string()));
        }
        for t in engine.store().ticks(run_id, last_tick)? {
            last_tick = t.id;
            checks.apply_tick(&t)?;
        }
        let mut stop = None;
        for req in engine.store().pending_requests(run_id)? {
            engine.store().mark_request_handled(req.id)?;
            match req.action {
                Action::Abort => stop = Some(RunState::Aborted),
                Action::Pause => stop = Some(RunState::Paused),
                _ => {
                    engine.emit(
                        run_id,
                        NewEvent::run("request_refused", format!("{} has no meaning while watching", req.action)),
                    )?;
                }
            }
        }
        if let Some(s) = stop {
            engine.emit(
                run_id,
                NewEvent::run(
                    if s == RunState::Aborted { "operator_abort" } else { "operator_pause" },
                    "the watch was stopped by an operator",
                ),
            )?;
            break s;
        }
        let now = now_ms();
        // Phases complete in order; a complete phase stays complete even when
        // its checks flip later (reopening turns maintenance checks red).
        while let Some(p) = plan.phases.get(current) {
            if !checks.all_ok(&p.checks, now) {
                break;
            }
            engine.emit(
                run_id,
                NewEvent::run("phase_completed", format!("phase `{}` is complete: all its checks are ok", p.name))
                    .with_data(serde_json::json!({ "phase": p.name })),
            )?;
            current += 1;
            let next = plan.phases.get(current).map(|p| p.name.as_str());
            checks.set_phase(next);
            if let Some(n) = next {
                engine.emit(
                    run_id,
                    NewEvent::run("phase_started", format!("phase `{n}` is current"))
                        .with_data(serde_json::json!({ "phase": n })),
                )?;
            }
        }
        if current >= plan.phases.len() {
            break RunState::Succeeded;
        }
        if now - last_draw >= 1000 {
            last_draw = now;
            on_tick(&view(run_id, RunState::Running, &plan, current, &checks, now));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    engine.store().set_run_state(run_id, state)?;
    let how = match state {
        RunState::Succeeded => "every phase is complete".to_string(),
        other => format!("the watch ended: {other}"),
    };
    engine.emit(run_id, NewEvent::run("watch_finished", how).with_data(serde_json::json!({ "state": state })))?;
    let v = view(run_id, state, &plan, current, &checks, now_ms());
    on_tick(&v);
    if let Some(n) = notifier {
        let _ = tokio::time::timeout(Duration::from_secs(30), n).await;
    }
    drop(lease);
    Ok(v)
}

fn view(
    run: &str,
    state: RunState,
    plan: &cutover_plan::Plan,
    current: usize,
    checks: &CheckRunner,
    now: i64,
) -> WatchView {
    WatchView {
        run: run.to_string(),
        state,
        current,
        phases: plan
            .phases
            .iter()
            .enumerate()
            .map(|(i, p)| PhaseView {
                name: p.name.clone(),
                state: if i < current {
                    "complete"
                } else if i == current {
                    "current"
                } else {
                    "waiting"
                },
                checks: p.checks.clone(),
            })
            .collect(),
        checks: checks.snapshot(now),
    }
}
