//! Gates: the go/no-go decisions of phases and waves, in CEL over checks,
//! progress, the run and the target. A proceed gate is measured Argo-style
//! (count, failure limit, inconclusive, consecutive errors); a pause gate
//! throttles between steps and, through a throttle signal, inside a running
//! step; abort and wave gates act on the run.

use super::{Flow, Shared, TargetCtx, context};
use crate::EngineError;
use crate::model::*;
use cutover_plan::{Expr, Phase};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::watch;

pub(super) enum GateValue {
    Holds,
    Clear,
    Error(String),
}

pub(super) fn eval_gate(e: &Expr, ctx: &Value) -> GateValue {
    match cutover_plan::expr::compile(&e.source)
        .map_err(|x| x.message)
        .and_then(|p| cutover_plan::expr::eval_bool(&p, ctx))
    {
        Ok(true) => GateValue::Holds,
        Ok(false) => GateValue::Clear,
        Err(x) => GateValue::Error(x),
    }
}

/// What a gate reads: the target's context, `checks.<name>` (this target's
/// result for a target-scoped check), `progress` and `run`.
pub(super) fn gate_ctx(shared: &Shared, tc: &TargetCtx<'_>) -> Value {
    with_run(shared, context(shared, tc), &tc.target.name)
}

/// Adds `progress`, `run` and `checks` (as `target` sees them) to a target's context.
fn with_run(shared: &Shared, mut v: Value, target: &str) -> Value {
    let run = run_ctx(shared);
    if let (Some(o), Some(r)) = (v.as_object_mut(), run.as_object()) {
        for (k, x) in r {
            o.insert(k.clone(), x.clone());
        }
        o.insert("checks".into(), checks_ctx(shared, Some(target)));
    }
    v
}

fn checks_ctx(shared: &Shared, target: Option<&str>) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(c) = &shared.checks {
        for view in c.snapshot(now_ms()) {
            if view.target.is_some() && view.target.as_deref() != target {
                continue;
            }
            m.insert(
                view.check.clone(),
                json!({ "status": view.status.as_str(), "ok": view.status == crate::checks::status::Status::Ok, "value": view.value, "message": view.message }),
            );
        }
    }
    Value::Object(m)
}

/// `progress` and `run` for gates: targets done, failed and so on.
fn run_ctx(shared: &Shared) -> Value {
    let targets = shared.store().targets(&shared.run_id).unwrap_or_default();
    let total = targets.len();
    let count = |f: &dyn Fn(TargetState) -> bool| targets.iter().filter(|t| f(t.state)).count();
    let done = count(&|s| s.is_terminal());
    let failed = count(&|s| matches!(s, TargetState::Failed | TargetState::RolledBack));
    let pct = |n: usize| if total == 0 { 0.0 } else { n as f64 * 100.0 / total as f64 };
    json!({
        "progress": { "done": done, "total": total, "percent": pct(done) },
        "run": { "id": shared.run_id, "targets": total, "failed": failed, "failed_percent": pct(failed),
                 "running": count(&|s| s == TargetState::Running), "succeeded": count(&|s| s == TargetState::Succeeded) },
    })
}

/// One measurement of a proceed gate.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Measurement {
    Success,
    Failure,
    /// Neither proceed_when nor fail_when held (only when a count is set).
    Inconclusive,
    /// Not yet: proceed_when does not hold (a gate without a count waits).
    Waiting,
    Error(String),
}

/// What an analysis decided.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Verdict {
    Pass,
    Fail,
    Inconclusive,
    Error(String),
}

/// Argo Rollouts' analysis, reduced to what a gate needs: with a `count`,
/// that many measurements are taken and the gate passes unless failures or
/// inconclusive results went past their limits (which decide at once);
/// without one, the gate passes at the first success and fails past the
/// failure limit. Consecutive errors past their limit end it too. Pure, so
/// its rules are tested without clocks.
#[derive(Debug, Default)]
pub(super) struct Analysis {
    pub count: Option<u32>,
    pub failure_limit: u32,
    pub inconclusive_limit: u32,
    pub error_limit: u32,
    pub taken: u32,
    pub successes: u32,
    pub failures: u32,
    pub inconclusive: u32,
    pub errors: u32,
}

impl Analysis {
    pub fn of(phase: &Phase) -> Analysis {
        let g = &phase.gates;
        Analysis {
            count: g.count,
            failure_limit: g.failure_limit,
            inconclusive_limit: g.inconclusive_limit,
            error_limit: g.error_limit,
            ..Default::default()
        }
    }

    /// Classifies one evaluation of proceed_when and fail_when.
    pub fn measure(&self, proceed: Option<GateValue>, fail: Option<GateValue>) -> Measurement {
        match (proceed, fail) {
            (Some(GateValue::Error(e)), _) | (_, Some(GateValue::Error(e))) => Measurement::Error(e),
            (_, Some(GateValue::Holds)) => Measurement::Failure,
            (Some(GateValue::Holds), _) => Measurement::Success,
            // Only fail_when: not failing is a success.
            (None, _) => Measurement::Success,
            (Some(GateValue::Clear), fail) => match (self.count, fail) {
                (None, _) => Measurement::Waiting,
                (Some(_), Some(_)) => Measurement::Inconclusive,
                (Some(_), None) => Measurement::Failure,
            },
        }
    }

    /// Takes a measurement; Some(verdict) once the analysis decided.
    pub fn record(&mut self, m: &Measurement) -> Option<Verdict> {
        if let Measurement::Error(e) = m {
            self.errors += 1;
            return (self.errors > self.error_limit).then(|| Verdict::Error(e.clone()));
        }
        self.errors = 0;
        match m {
            Measurement::Waiting => return None,
            Measurement::Success => self.successes += 1,
            Measurement::Failure => self.failures += 1,
            Measurement::Inconclusive => self.inconclusive += 1,
            Measurement::Error(_) => {}
        }
        self.taken += 1;
        if self.failures > self.failure_limit {
            return Some(Verdict::Fail);
        }
        if self.inconclusive > self.inconclusive_limit {
            return Some(Verdict::Inconclusive);
        }
        match self.count {
            Some(n) if self.taken >= n => Some(Verdict::Pass),
            None if *m == Measurement::Success => Some(Verdict::Pass),
            _ => None,
        }
    }

    fn tally(&self) -> String {
        format!(
            "{} successful, {} failed (limit {}), {} inconclusive (limit {})",
            self.successes, self.failures, self.failure_limit, self.inconclusive, self.inconclusive_limit
        )
    }

    fn data(&self, phase: &Phase) -> Value {
        json!({
            "phase": phase.name,
            "gate": phase.gates.proceed_when.as_ref().map(|e| &e.source),
            "fail_when": phase.gates.fail_when.as_ref().map(|e| &e.source),
            "taken": self.taken, "count": self.count, "successes": self.successes,
            "failures": self.failures, "inconclusive": self.inconclusive,
        })
    }
}

/// Holds a target at its phase's proceed gate until the analysis decides:
/// it passes (the phase starts), fails (the target fails and its rollback
/// runs), is inconclusive or cannot be evaluated (the target needs a human:
/// `cutover retry` measures again). Operator pause and abort still work.
pub(super) async fn proceed_gate(shared: &Arc<Shared>, tc: &TargetCtx<'_>, phase: &Phase) -> Result<Flow, EngineError> {
    let target = tc.target.name.clone();
    let g = &phase.gates;
    let shown = g.proceed_when.as_ref().or(g.fail_when.as_ref()).map(|e| e.source.clone()).unwrap_or_default();
    let mut a = Analysis::of(phase);
    let mut waited = false;
    loop {
        if *shared.abort.borrow() {
            return Ok(Flow::Aborted);
        }
        if shared.pause.load(Ordering::SeqCst) {
            return Ok(Flow::Paused(format!("paused at the proceed gate of phase `{}`", phase.name)));
        }
        let ctx = gate_ctx(shared, tc);
        let m = a.measure(
            g.proceed_when.as_ref().map(|e| eval_gate(e, &ctx)),
            g.fail_when.as_ref().map(|e| eval_gate(e, &ctx)),
        );
        let verdict = a.record(&m);
        let ev = |kind: &'static str, msg: String| NewEvent::target(&target, kind, msg).with_data(a.data(phase));
        match verdict {
            Some(Verdict::Pass) => {
                if waited || a.count.is_some() {
                    let msg =
                        format!("proceed gate of phase `{}` passed ({}): {shown} — going on", phase.name, a.tally());
                    shared.emit(ev("gate_passed", msg))?;
                }
                return Ok(Flow::Ok);
            }
            Some(Verdict::Fail) => {
                let msg = format!("proceed gate of phase `{}` failed: {}", phase.name, a.tally());
                shared.emit(ev("gate_failed", msg.clone()))?;
                return Ok(Flow::Fail(msg));
            }
            Some(Verdict::Inconclusive) => {
                let msg = format!(
                    "proceed gate of phase `{}` is inconclusive ({}): a human decides — `cutover retry {} {target}` measures again, `cutover skip` leaves the target out",
                    phase.name,
                    a.tally(),
                    shared.run_id
                );
                shared.emit(ev("gate_inconclusive", msg.clone()))?;
                return Ok(Flow::Attention(msg));
            }
            Some(Verdict::Error(e)) => {
                let msg = format!(
                    "the proceed gate of phase `{}` could not be evaluated {} times in a row: {e}",
                    phase.name, a.errors
                );
                shared.emit(ev("gate_error", msg.clone()))?;
                return Ok(Flow::Attention(msg));
            }
            None => {}
        }
        // Every counted measurement is on the record; a gate that merely
        // waits says so once.
        let counted = matches!(m, Measurement::Success | Measurement::Failure | Measurement::Inconclusive);
        if counted {
            let of = a.count.map(|n| format!(" of {n}")).unwrap_or_default();
            let what = match m {
                Measurement::Success => "successful",
                Measurement::Failure => "failed",
                _ => "inconclusive",
            };
            let msg =
                format!("proceed gate of phase `{}`: measurement {}{of} {what} ({})", phase.name, a.taken, a.tally());
            shared.emit(ev("gate_measured", msg))?;
        } else if !waited && m == Measurement::Waiting {
            waited = true;
            let msg = format!("waiting for the proceed gate of phase `{}`: {shown}", phase.name);
            shared.emit(ev("gate_waiting", msg))?;
        }
        tokio::time::sleep(g.interval).await;
    }
}

/// Holds a target before a step while its phase's pause_when holds
/// (throttle); it resumes by itself when it clears. A gate that cannot be
/// evaluated more than `gate_error_limit` times in a row puts the target in
/// needs_attention.
pub(super) async fn throttle_gate(
    shared: &Arc<Shared>,
    tc: &TargetCtx<'_>,
    phase: &Phase,
    g: &Expr,
) -> Result<Flow, EngineError> {
    let target = tc.target.name.clone();
    let mut waited = false;
    let mut errors = 0u32;
    loop {
        if *shared.abort.borrow() {
            return Ok(Flow::Aborted);
        }
        if shared.pause.load(Ordering::SeqCst) {
            return Ok(Flow::Paused(format!("paused at the pause_when gate of phase `{}`", phase.name)));
        }
        match eval_gate(g, &gate_ctx(shared, tc)) {
            GateValue::Clear => {
                if waited {
                    shared.emit(
                        NewEvent::target(
                            &target,
                            "throttle_cleared",
                            format!("pause_when cleared: {} — going on", g.source),
                        )
                        .with_data(json!({ "gate": g.source, "phase": phase.name })),
                    )?;
                }
                return Ok(Flow::Ok);
            }
            GateValue::Error(e) => {
                errors += 1;
                if errors > phase.gates.error_limit {
                    let msg = format!(
                        "the pause_when gate of phase `{}` could not be evaluated {errors} times in a row: {e}",
                        phase.name
                    );
                    shared.emit(NewEvent::target(&target, "gate_error", msg.clone()))?;
                    return Ok(Flow::Attention(msg));
                }
            }
            GateValue::Holds => {
                errors = 0;
                if !waited {
                    waited = true;
                    shared.emit(
                        NewEvent::target(&target, "target_throttled", format!("throttled: {}", g.source))
                            .with_data(json!({ "gate": g.source, "phase": phase.name })),
                    )?;
                }
            }
        }
        tokio::time::sleep(phase.gates.interval).await;
    }
}

/// While a step runs, its phase's pause_when is evaluated every gate
/// interval and published as the step's throttle signal; the flag file
/// exists while it holds (gh-ost's throttle-flag-file), so a script can
/// hold its own loop at its next safe point. Runs until dropped.
pub(super) async fn throttle_signal(
    shared: &Shared,
    base: Value,
    (target, step): (&str, &str),
    (phase, g): (&Phase, &Expr),
    tx: watch::Sender<bool>,
    file: &Path,
) {
    let mut throttled = false;
    let mut reported_error = false;
    loop {
        match eval_gate(g, &with_run(shared, base.clone(), target)) {
            GateValue::Holds if !throttled => {
                throttled = true;
                let _ = std::fs::write(file, format!("{}\n", g.source));
                let _ = tx.send(true);
                let _ = shared.emit(
                    NewEvent::step(
                        target,
                        step,
                        "target_throttled",
                        format!("throttled inside step `{step}`: {}", g.source),
                    )
                    .with_data(json!({ "gate": g.source, "phase": phase.name, "in_step": true })),
                );
            }
            GateValue::Clear if throttled => {
                throttled = false;
                let _ = std::fs::remove_file(file);
                let _ = tx.send(false);
                let _ = shared.emit(
                    NewEvent::step(
                        target,
                        step,
                        "throttle_cleared",
                        format!("pause_when cleared: {} — going on", g.source),
                    )
                    .with_data(json!({ "gate": g.source, "phase": phase.name, "in_step": true })),
                );
            }
            GateValue::Error(e) if !reported_error => {
                reported_error = true;
                let _ = shared.emit(NewEvent::step(
                    target,
                    step,
                    "gate_error",
                    format!("pause_when of phase `{}` cannot be evaluated during step `{step}`: {e}", phase.name),
                ));
            }
            _ => {}
        }
        tokio::time::sleep(phase.gates.interval).await;
    }
}

/// Whether a target already began a phase (some step of it has a record).
pub(super) fn phase_started(phase: &Phase, tc: &TargetCtx<'_>) -> bool {
    let mut started = false;
    for s in &phase.steps {
        s.walk(&mut |x| started |= tc.records.contains_key(&x.name));
    }
    started
}

/// The first phase whose abort_when holds while unfinished targets are in it.
pub(super) fn abort_gate(shared: &Shared, errors_seen: &mut Vec<String>) -> Result<Option<String>, EngineError> {
    let gated: Vec<&Phase> = shared.plan.phases.iter().filter(|p| p.gates.abort_when.is_some()).collect();
    if gated.is_empty() {
        return Ok(None);
    }
    let targets = shared.store().targets(&shared.run_id)?;
    let mut ctx = run_ctx(shared);
    if let Some(o) = ctx.as_object_mut() {
        o.insert("checks".into(), checks_ctx(shared, None));
    }
    for p in gated {
        let occupied = targets.iter().any(|t| !t.state.is_terminal() && t.phase.as_deref() == Some(p.name.as_str()));
        if !occupied {
            continue;
        }
        if let Some(o) = ctx.as_object_mut() {
            o.insert("phase".into(), json!({ "name": p.name }));
        }
        if let Some(g) = &p.gates.abort_when {
            match eval_gate(g, &ctx) {
                GateValue::Holds => return Ok(Some(format!("phase `{}`: {}", p.name, g.source))),
                GateValue::Error(e) if !errors_seen.contains(&e) => {
                    shared.emit(
                        NewEvent::run(
                            "gate_error",
                            format!("abort_when of phase `{}` cannot be evaluated: {e}", p.name),
                        )
                        .with_data(json!({ "gate": g.source })),
                    )?;
                    errors_seen.push(e);
                }
                _ => {}
            }
        }
    }
    Ok(None)
}

#[derive(Default)]
pub(super) struct WavesSeen {
    passed: Vec<usize>,
    failed: Option<usize>,
    /// The wave held at the wave gate, and when it was last evaluated.
    waiting: Option<(usize, i64)>,
    errors_seen: Vec<String>,
}

impl WavesSeen {
    /// Whether a settled wave waits at the wave gate (the run is not over).
    pub fn holding(&self) -> bool {
        self.waiting.is_some() && self.failed.is_none()
    }
}

/// The highest wave whose targets may start, or None once a wave failed
/// (more than max_fail_percent of it failed, or the wave gate's fail_when
/// held): no new target starts then. A settled wave also waits for the wave
/// gate's proceed_when (evaluated once a second) before the next starts.
pub(super) fn wave_gate(
    shared: &Shared,
    waves: &[usize],
    states: &HashMap<String, TargetState>,
    seen: &mut WavesSeen,
) -> Result<Option<usize>, EngineError> {
    let Some(&last) = waves.iter().max() else { return Ok(Some(0)) };
    if seen.failed.is_some() {
        return Ok(None);
    }
    let state_of = |i: usize| shared.plan.targets.get(i).and_then(|t| states.get(&t.name)).copied();
    for w in 0..=last {
        let members: Vec<usize> = (0..waves.len()).filter(|i| waves[*i] == w).collect();
        let settled = members.iter().all(|i| {
            matches!(
                state_of(*i),
                Some(TargetState::Succeeded | TargetState::Failed | TargetState::RolledBack | TargetState::Skipped)
            )
        });
        if !settled || w == last {
            return Ok(Some(w));
        }
        if seen.passed.contains(&w) {
            continue;
        }
        let failed = members
            .iter()
            .filter(|i| matches!(state_of(**i), Some(TargetState::Failed | TargetState::RolledBack)))
            .count();
        let succeeded = members.iter().filter(|i| state_of(**i) == Some(TargetState::Succeeded)).count();
        let pct = failed as f64 * 100.0 / members.len().max(1) as f64;
        let data = json!({ "wave": w + 1, "failed": failed, "succeeded": succeeded, "size": members.len() });
        let limit = shared.plan.max_fail_percent;
        if pct > f64::from(limit) {
            seen.failed = Some(w);
            let msg = format!(
                "wave {} failed: {failed} of {} targets failed ({pct:.0} % > {limit} %); no further wave starts",
                w + 1,
                members.len(),
            );
            shared.emit(NewEvent::run("wave_failed", msg).with_data(data))?;
            return Ok(None);
        }
        let wg = &shared.plan.wave_gate;
        if wg.proceed_when.is_some() || wg.fail_when.is_some() {
            // Held at the gate: evaluated again once a second, not at every turn.
            if let Some((held, at)) = seen.waiting
                && held == w
                && now_ms() - at < 1000
            {
                return Ok(Some(w));
            }
            let mut ctx = run_ctx(shared);
            if let Some(o) = ctx.as_object_mut() {
                o.insert("checks".into(), checks_ctx(shared, None));
                o.insert(
                    "wave".into(),
                    json!({ "number": w + 1, "size": members.len(), "succeeded": succeeded, "failed": failed, "failed_percent": pct }),
                );
            }
            let fail = wg.fail_when.as_ref().map(|e| (e, eval_gate(e, &ctx)));
            let proceed = wg.proceed_when.as_ref().map(|e| (e, eval_gate(e, &ctx)));
            for (e, v) in [&fail, &proceed].into_iter().flatten() {
                if let GateValue::Error(x) = v
                    && !seen.errors_seen.contains(x)
                {
                    seen.errors_seen.push(x.clone());
                    shared.emit(
                        NewEvent::run("gate_error", format!("the wave gate cannot be evaluated: {x}"))
                            .with_data(json!({ "gate": e.source })),
                    )?;
                }
            }
            if let Some((e, GateValue::Holds)) = &fail {
                seen.failed = Some(w);
                seen.waiting = None;
                let msg = format!("wave {} failed its gate: {}; no further wave starts", w + 1, e.source);
                shared.emit(NewEvent::run("wave_failed", msg).with_data(data))?;
                return Ok(None);
            }
            let hold = match &proceed {
                Some((_, GateValue::Holds)) | None => matches!(fail, Some((_, GateValue::Error(_)))),
                Some(_) => true,
            };
            if hold {
                if seen.waiting.is_none_or(|(held, _)| held != w) {
                    let why = proceed.as_ref().map(|(e, _)| e.source.clone()).unwrap_or_default();
                    shared.emit(
                        NewEvent::run(
                            "wave_waiting",
                            format!("wave {} settled; wave {} waits for: {why}", w + 1, w + 2),
                        )
                        .with_data(data.clone()),
                    )?;
                }
                seen.waiting = Some((w, now_ms()));
                return Ok(Some(w));
            }
        }
        seen.passed.push(w);
        seen.waiting = None;
        let msg = format!("wave {} passed: {failed} of {} targets failed (limit {limit} %)", w + 1, members.len());
        shared.emit(NewEvent::run("wave_passed", msg).with_data(data))?;
    }
    Ok(Some(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(count: Option<u32>, failure_limit: u32, inconclusive_limit: u32) -> Analysis {
        Analysis { count, failure_limit, inconclusive_limit, error_limit: 2, ..Default::default() }
    }

    fn run(a: &mut Analysis, ms: &[Measurement]) -> Vec<Option<Verdict>> {
        ms.iter().map(|m| a.record(m)).collect()
    }

    use Measurement::*;

    #[test]
    fn measurements_are_classified_as_argo_does() {
        let a = analysis(None, 0, 0);
        let (h, c) = (|| Some(GateValue::Holds), || Some(GateValue::Clear));
        assert_eq!(a.measure(h(), None), Success);
        assert_eq!(a.measure(c(), None), Waiting, "without a count, a gate that does not hold waits");
        assert_eq!(a.measure(c(), c()), Waiting);
        assert_eq!(a.measure(h(), h()), Failure, "fail_when wins");
        assert_eq!(a.measure(None, c()), Success, "only fail_when: not failing is a success");
        assert_eq!(a.measure(None, h()), Failure);
        assert_eq!(a.measure(Some(GateValue::Error("x".into())), h()), Error("x".into()));
        let counted = analysis(Some(3), 0, 0);
        assert_eq!(counted.measure(c(), c()), Inconclusive);
        assert_eq!(counted.measure(c(), None), Failure, "with a count and no fail_when, not holding fails");
    }

    #[test]
    fn a_count_takes_every_measurement_before_it_passes() {
        let mut a = analysis(Some(3), 1, 0);
        assert_eq!(run(&mut a, &[Success, Failure, Success]), [None, None, Some(Verdict::Pass)]);
        let mut a = analysis(Some(5), 1, 0);
        assert_eq!(run(&mut a, &[Failure, Success, Failure]), [None, None, Some(Verdict::Fail)]);
        let mut a = analysis(Some(5), 0, 1);
        assert_eq!(run(&mut a, &[Inconclusive, Success, Inconclusive]), [None, None, Some(Verdict::Inconclusive)]);
    }

    #[test]
    fn without_a_count_the_first_success_passes_and_waiting_is_free() {
        let mut a = analysis(None, 0, 0);
        assert_eq!(run(&mut a, &[Waiting, Waiting, Waiting, Success]), [None, None, None, Some(Verdict::Pass)]);
        let mut a = analysis(None, 1, 0);
        assert_eq!(run(&mut a, &[Failure, Waiting, Failure]), [None, None, Some(Verdict::Fail)]);
    }

    #[test]
    fn consecutive_errors_past_the_limit_end_the_analysis_and_a_result_resets_them() {
        let mut a = analysis(None, 0, 0);
        let e = || Error("no such key".into());
        assert_eq!(run(&mut a, &[e(), e(), Waiting, e(), e()]), [None, None, None, None, None]);
        assert_eq!(a.record(&e()), Some(Verdict::Error("no such key".into())));
    }
}
