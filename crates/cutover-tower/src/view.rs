//! The run as the tower shows it: wire types built from the store's records.
//! Only this crate knows them; the engine's types stay internal.

use cutover_engine::Engine;
use cutover_engine::checks::runner::CheckView;
use cutover_engine::checks::status::Status;
use cutover_engine::model::{Event, RunState, TargetState, now_ms};
use cutover_engine::progress::{self, Progress};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub plan: String,
    pub state: RunState,
    pub created_at: String,
    pub updated_at: String,
    pub targets: usize,
    pub done: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunDetail {
    pub id: String,
    pub plan: String,
    pub state: RunState,
    pub created_at: String,
    pub updated_at: String,
    pub driven_by: Option<String>,
    pub counts: BTreeMap<String, usize>,
    pub progress: Progress,
    pub phases: Vec<PhaseTile>,
    pub checks: Vec<CheckTile>,
    pub targets: Vec<TargetCell>,
    /// Label name → the values seen, for the grid's filters.
    pub labels: BTreeMap<String, BTreeSet<String>>,
    pub events: Vec<Event>,
    pub generated_at: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct PhaseTile {
    /// The phase's gates, as written ("pause when …").
    pub gates: Vec<String>,
    /// Targets held at one of its gates now, and why.
    pub held: Vec<String>,
    pub name: String,
    /// green, amber, red or grey.
    pub colour: &'static str,
    pub state: String,
    pub done: usize,
    pub total: usize,
    pub checks: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckTile {
    pub check: String,
    pub kind: String,
    pub target: Option<String>,
    pub status: Status,
    pub colour: &'static str,
    pub value: String,
    pub message: Option<String>,
    pub age: String,
    pub href: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetCell {
    /// The running step's reported progress, with rate and ETA.
    pub progress: Option<Progress>,
    pub name: String,
    pub state: TargetState,
    pub phase: Option<String>,
    pub step: Option<String>,
    pub message: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Running at an approve step: waiting for a person's go.
    pub awaiting_approval: bool,
}

pub fn colour(s: Status) -> &'static str {
    match s {
        Status::Ok => "green",
        Status::Warn | Status::Pending => "amber",
        Status::NoData => "grey",
        Status::Alarm | Status::Error | Status::Stale => "red",
    }
}

fn age(ms: Option<i64>, now: i64) -> String {
    match ms {
        None => "never".into(),
        Some(t) => {
            let s = (now - t).max(0) / 1000;
            match s {
                0..120 => format!("{s}s ago"),
                120..7200 => format!("{}m ago", s / 60),
                _ => format!("{}h ago", s / 3600),
            }
        }
    }
}

pub fn runs(engine: &Engine) -> Result<Vec<RunSummary>, cutover_engine::EngineError> {
    let store = engine.store();
    let mut out = vec![];
    for r in store.runs()?.into_iter().rev() {
        let targets = store.targets(&r.id)?;
        out.push(RunSummary {
            done: targets.iter().filter(|t| t.state.is_terminal()).count(),
            targets: targets.len(),
            id: r.id,
            plan: r.plan_name,
            state: r.state,
            created_at: r.created_at,
            updated_at: r.updated_at,
        });
    }
    Ok(out)
}

fn ms(ts: &str) -> Option<i64> {
    ts.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

/// The post-mortem snapshot: everything the page shows, every event, and
/// the raw check results.
pub fn snapshot(engine: &Engine, run: &str) -> Result<serde_json::Value, cutover_engine::EngineError> {
    let mut d = serde_json::json!(detail(engine, run, usize::MAX)?);
    d["checks_raw"] = serde_json::json!(engine.store().check_results(run)?);
    Ok(d)
}

/// Everything the run page shows, at this moment.
/// The event kinds the run page is drawn from, besides its timeline.
const VIEW_KINDS: &[&str] = &[
    "phase_completed",
    "phase_started",
    "step_progress",
    "gate_waiting",
    "gate_measured",
    "gate_passed",
    "gate_failed",
    "gate_inconclusive",
    "target_throttled",
    "throttle_cleared",
];

pub fn detail(engine: &Engine, run: &str, events_limit: usize) -> Result<RunDetail, cutover_engine::EngineError> {
    let store = engine.store();
    let rec = store.run(run)?;
    let plan = engine.plan_of(&rec).ok();
    let targets = store.targets(run)?;
    let now = now_ms();
    // Only the events the page reads: the timeline's last ones and the kinds
    // that phases, gates and progress are drawn from (not all of a 10,000-target run's).
    let all_events = store.events_of_kinds(run, VIEW_KINDS)?;
    let timeline = store.last_events(run, events_limit)?;

    let mut counts = BTreeMap::new();
    for s in TargetState::ALL {
        counts.insert(s.to_string(), targets.iter().filter(|t| t.state == *s).count());
    }
    // Progress: targets finished, with the rate of the recent window.
    let mut finished: Vec<i64> = targets
        .iter()
        .filter(|t| t.state.is_terminal())
        .filter_map(|t| t.finished_at.as_deref().and_then(ms))
        .collect();
    finished.sort();
    let start = ms(&rec.created_at).unwrap_or(now);
    let mut samples = vec![(start, 0.0)];
    samples.extend(finished.iter().enumerate().map(|(i, t)| (*t, (i + 1) as f64)));
    let progress = progress::compute(finished.len() as f64, targets.len() as f64, "targets", &samples, now);

    let results: Vec<CheckView> =
        store.check_results(run)?.into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect();
    let checks: Vec<CheckTile> = results
        .iter()
        .map(|c| {
            // Readings that change no status reach the store within a second.
            let stale = c.reading_ms.is_some_and(|t| now - t > c.stale_after_ms + 1500)
                && !matches!(rec.state, RunState::Succeeded | RunState::Aborted);
            let status = if stale { Status::Stale } else { c.status };
            CheckTile {
                check: c.check.clone(),
                kind: c.kind.clone(),
                target: c.target.clone(),
                status,
                colour: colour(status),
                value: match &c.value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "—".into(),
                    other => other.to_string(),
                },
                message: c.message.clone(),
                age: age(c.reading_ms, now),
                href: c.href.clone(),
            }
        })
        .collect();

    let phases = match &plan {
        Some(p) => phase_tiles(p, &targets, &all_events, &checks),
        None => vec![],
    };
    // Progress reports by (target, step), grouped once: a fleet has many.
    let mut progress_events: BTreeMap<(&str, &str), Vec<&Event>> = BTreeMap::new();
    for e in all_events.iter().filter(|e| e.kind == "step_progress") {
        if let (Some(t), Some(st)) = (e.target.as_deref(), e.step.as_deref()) {
            progress_events.entry((t, st)).or_default().push(e);
        }
    }
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let label_of: BTreeMap<String, BTreeMap<String, String>> = plan
        .as_ref()
        .map(|p| p.targets.iter().map(|t| (t.name.clone(), t.labels.clone())).collect())
        .unwrap_or_default();
    let cells = targets
        .iter()
        .map(|t| {
            let l = label_of.get(&t.name).cloned().unwrap_or_default();
            for (k, v) in &l {
                labels.entry(k.clone()).or_default().insert(v.clone());
            }
            let progress = (t.state == TargetState::Running)
                .then(|| step_progress(&progress_events, &t.name, t.step.as_deref(), now))
                .flatten();
            // An approve step, or a step whose progress says it waits for one.
            let awaiting_approval = t.state == TargetState::Running
                && t.step.as_deref().and_then(|s| plan.as_ref()?.step(s)).is_some_and(|s| match s.kind {
                    cutover_plan::StepKind::Approve(_) => true,
                    _ => {
                        s.kind.awaits_approval()
                            && progress.as_ref().and_then(|p| p.note.as_deref())
                                == Some(cutover_engine::steps::AWAITING_APPROVAL)
                    }
                });
            TargetCell {
                awaiting_approval,
                progress,
                name: t.name.clone(),
                state: t.state,
                phase: t.phase.clone(),
                step: t.step.clone(),
                message: t.message.clone(),
                labels: l,
            }
        })
        .collect();
    let driven_by = engine.live_holder(run)?.map(|l| format!("process {} on {}", l.pid, l.host));
    Ok(RunDetail {
        id: rec.id,
        plan: rec.plan_name,
        state: rec.state,
        created_at: rec.created_at,
        updated_at: rec.updated_at,
        driven_by,
        counts,
        progress,
        phases,
        checks,
        targets: cells,
        labels,
        events: timeline.into_iter().rev().collect(),
        generated_at: cutover_engine::model::now(),
    })
}

/// The latest progress a step reported, with the rate of its recent reports.
fn step_progress(
    by_step: &BTreeMap<(&str, &str), Vec<&Event>>,
    target: &str,
    step: Option<&str>,
    now: i64,
) -> Option<Progress> {
    let reports = by_step.get(&(target, step?))?;
    let last = reports.last()?;
    let samples: Vec<(i64, f64)> =
        reports.iter().filter_map(|e| Some((ms(&e.ts)?, e.data["done"].as_f64()?))).collect();
    let mut p = progress::compute(
        last.data["done"].as_f64().unwrap_or(0.0),
        last.data["total"].as_f64().unwrap_or(0.0),
        last.data["unit"].as_str().unwrap_or("units"),
        &samples,
        now,
    );
    p.note = last.data["note"].as_str().map(str::to_string);
    Some(p)
}

/// Targets whose latest gate event in `phase` says they wait or are throttled.
fn held_at(events: &[Event], phase: &str) -> Vec<String> {
    let mut last: BTreeMap<&str, &Event> = BTreeMap::new();
    for e in events.iter().filter(|e| {
        matches!(
            e.kind.as_str(),
            "gate_waiting"
                | "gate_measured"
                | "gate_passed"
                | "gate_failed"
                | "gate_inconclusive"
                | "target_throttled"
                | "throttle_cleared"
        ) && e.data["phase"] == phase
    }) {
        if let Some(t) = e.target.as_deref() {
            last.insert(t, e);
        }
    }
    last.into_iter()
        .filter(|(_, e)| {
            matches!(e.kind.as_str(), "gate_waiting" | "gate_measured" | "target_throttled") && e.data["phase"] == phase
        })
        .map(|(t, e)| format!("{t}: {}", e.message))
        .collect()
}

/// Phases in order, red until green. A watched run says from its events
/// which phases completed; a driven run from where its targets are.
fn phase_tiles(
    plan: &cutover_plan::Plan,
    targets: &[cutover_engine::model::TargetRecord],
    events: &[Event],
    checks: &[CheckTile],
) -> Vec<PhaseTile> {
    let completed: BTreeSet<&str> =
        events.iter().filter(|e| e.kind == "phase_completed").filter_map(|e| e.data["phase"].as_str()).collect();
    let started: BTreeSet<&str> =
        events.iter().filter(|e| e.kind == "phase_started").filter_map(|e| e.data["phase"].as_str()).collect();
    let watched = !started.is_empty();
    let index = |name: &str| plan.phases.iter().position(|p| p.name == name);
    plan.phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let checks_ok =
                p.checks.iter().all(|c| checks.iter().filter(|t| &t.check == c).all(|t| t.status == Status::Ok));
            let checks_red = p.checks.iter().any(|c| checks.iter().any(|t| &t.check == c && t.colour == "red"));
            let total = targets.len();
            let (colour, state, done) = if watched {
                if completed.contains(p.name.as_str()) {
                    ("green", "complete".to_string(), total)
                } else if started.contains(p.name.as_str()) {
                    (if checks_red { "red" } else { "amber" }, "current".to_string(), 0)
                } else {
                    ("grey", "waiting".to_string(), 0)
                }
            } else {
                let at = |t: &cutover_engine::model::TargetRecord| t.phase.as_deref().and_then(index);
                let done = targets
                    .iter()
                    .filter(|t| {
                        t.state == TargetState::Succeeded
                            || t.state == TargetState::Skipped
                            || at(t).is_some_and(|x| x > i)
                    })
                    .count();
                let failed = targets.iter().any(|t| {
                    matches!(t.state, TargetState::Failed | TargetState::RolledBack | TargetState::NeedsAttention)
                        && at(t) == Some(i)
                });
                let inside = targets.iter().filter(|t| at(t) == Some(i) && !t.state.is_terminal()).count();
                let colour = if failed || (inside > 0 && checks_red) {
                    "red"
                } else if total > 0 && done == total && checks_ok {
                    "green"
                } else if inside > 0 || done > 0 {
                    "amber"
                } else {
                    "grey"
                };
                (colour, format!("{done}/{total} done, {inside} in progress"), done)
            };
            let g = &p.gates;
            let gates = [
                ("proceed when", &g.proceed_when),
                ("pause when", &g.pause_when),
                ("roll back when", &g.rollback_when),
                ("abort when", &g.abort_when),
            ]
            .into_iter()
            .filter_map(|(what, e)| e.as_ref().map(|e| format!("{what} {}", e.source)))
            .collect();
            let held = held_at(events, &p.name);
            let colour = if !held.is_empty() && colour == "grey" { "amber" } else { colour };
            PhaseTile { gates, held, name: p.name.clone(), colour, state, done, total, checks: p.checks.clone() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: i64, kind: &str, target: &str, phase: &str, message: &str) -> Event {
        Event {
            id,
            run_id: "r".into(),
            ts: "2026-01-01T00:00:00Z".into(),
            target: Some(target.into()),
            step: None,
            kind: kind.into(),
            message: message.into(),
            data: json!({ "phase": phase }),
        }
    }

    #[test]
    fn a_target_is_held_until_its_gate_clears() {
        let events = vec![
            ev(1, "target_throttled", "a", "copy", "throttled: checks.lag.value > 10"),
            ev(2, "target_throttled", "b", "copy", "throttled: checks.lag.value > 10"),
            ev(3, "throttle_cleared", "b", "copy", "going on"),
            ev(4, "gate_waiting", "c", "verify", "waiting"),
        ];
        assert_eq!(held_at(&events, "copy"), ["a: throttled: checks.lag.value > 10"]);
        assert_eq!(held_at(&events, "verify"), ["c: waiting"]);
    }

    #[test]
    fn statuses_have_colours_and_stale_is_never_green() {
        assert_eq!(colour(Status::Ok), "green");
        assert_eq!(colour(Status::Stale), "red");
        assert_eq!(colour(Status::Error), "red");
        assert_eq!(colour(Status::Pending), "amber");
    }
}
