//! Operator actions: pause, resume, abort, retry, skip and start-now. An action is first
//! recorded as a request in the store (the audit trail). A live driver picks
//! it up within a fraction of a second; with no live driver, the CLI applies
//! it to the recorded state itself through [`apply`].

use crate::model::*;
use crate::store::{Store, StoreError};
use cutover_plan::{Plan, StepKind};

/// What applying a request did, in one sentence for the operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Done(String),
    /// The request cannot apply in the target's current state.
    Refused(String),
}

/// Applies a retry or skip to the recorded state of a run (pause, resume and
/// abort concern a driver and are handled by it).
pub fn apply(store: &dyn Store, plan: &Plan, run: &str, req: &Request) -> Result<Applied, StoreError> {
    let Some(target) = req.target.as_deref() else {
        return Ok(Applied::Refused(format!("{} needs a target", req.action)));
    };
    let t = store.target(run, target)?;
    let by = &req.actor;
    let applied = match req.action {
        Action::Retry => match t.state {
            TargetState::NeedsAttention | TargetState::Failed => {
                let records = store.steps(run, target)?;
                let reset = steps_to_reset(plan, &records);
                store.delete_steps(run, target, &reset)?;
                // A step run again asks for its approval again.
                store.delete_approvals(run, target, &reset)?;
                store.set_skip_requested(run, target, false)?;
                store.set_target_state(
                    run,
                    target,
                    TargetState::Pending,
                    Some(&format!("retry requested by {by}")),
                    Some(
                        &NewEvent::target(
                            target,
                            "target_retry",
                            format!("{by} asked to retry `{target}`; it will continue from its first unfinished step"),
                        )
                        .with_data(serde_json::json!({ "actor": by, "reset_steps": reset, "note": req.note })),
                    ),
                )?;
                Applied::Done(format!("`{target}` will be retried from its first unfinished step"))
            }
            other => Applied::Refused(format!(
                "`{target}` is {other}: only a failed target or one that needs attention can be retried"
            )),
        },
        Action::Skip => match t.state {
            TargetState::Pending | TargetState::NeedsAttention | TargetState::Failed => {
                let records = store.steps(run, target)?;
                let open_block = crate::runner::has_open_block(plan, &records);
                let ev = NewEvent::target(target, "target_skip", format!("{by} skipped `{target}`"))
                    .with_data(serde_json::json!({ "actor": by, "open_block": open_block, "note": req.note }));
                if open_block {
                    store.set_skip_requested(run, target, true)?;
                    store.set_target_state(
                        run,
                        target,
                        TargetState::Pending,
                        Some(&format!("skip requested by {by}; its finally steps run first")),
                        Some(&ev),
                    )?;
                } else {
                    store.set_target_state(
                        run,
                        target,
                        TargetState::Skipped,
                        Some(&format!("skipped by {by}")),
                        Some(&ev),
                    )?;
                }
                if open_block {
                    Applied::Done(format!(
                        "`{target}` will be skipped once the finally steps of its open block have run"
                    ))
                } else {
                    Applied::Done(format!("`{target}` is skipped"))
                }
            }
            other => Applied::Refused(format!(
                "`{target}` is {other}: only a pending or failed target, or one that needs attention, can be skipped"
            )),
        },
        other => Applied::Refused(format!("{other} is handled by the process driving the run")),
    };
    Ok(applied)
}

/// What a retry runs again: every step that did not succeed, every rollback
/// step, every step of a phase whose rollback ran (it was undone), and the
/// `finally` steps of blocks that did not complete (a block that completed
/// keeps its finally steps done).
pub fn steps_to_reset(plan: &Plan, records: &[StepRecord]) -> Vec<String> {
    let done = |name: &str| records.iter().any(|r| r.step == name && r.state == StepState::Succeeded);
    let recorded = |name: &str| records.iter().any(|r| r.step == name);
    let mut exits: Vec<String> = vec![];
    for p in &plan.phases {
        let mut rolled_back = false;
        for s in &p.rollback {
            s.walk(&mut |x| {
                rolled_back |= recorded(&x.name);
                exits.push(x.name.clone());
            });
        }
        // A phase whose rollback ran was undone: a retry does it again.
        if rolled_back {
            for s in &p.steps {
                s.walk(&mut |x| exits.push(x.name.clone()));
            }
        }
        for s in &p.steps {
            s.walk(&mut |x| {
                if let StepKind::Block(b) = &x.kind
                    && !done(&x.name)
                {
                    for f in &b.finally {
                        f.walk(&mut |y| exits.push(y.name.clone()));
                    }
                }
            });
        }
    }
    records
        .iter()
        .filter(|r| r.state != StepState::Succeeded || exits.contains(&r.step))
        .map(|r| r.step.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: &str, state: StepState) -> StepRecord {
        StepRecord {
            target: "t".into(),
            step: step.into(),
            state,
            attempt: 1,
            started_at: None,
            finished_at: None,
            outputs: serde_json::Value::Null,
            error: None,
        }
    }

    const PLAN: &str = r#"name = "p"
[[targets]]
name = "t"
[[phases]]
name = "one"
[[phases.steps]]
name = "b1"
kind = "block"
[[phases.steps.steps]]
name = "s1"
kind = "exec"
command = "true"
[[phases.steps.finally]]
name = "f1"
kind = "exec"
command = "true"
[[phases]]
name = "two"
[[phases.steps]]
name = "s2"
kind = "exec"
command = "false"
[[phases.rollback]]
name = "r2"
kind = "exec"
command = "true"
"#;

    // Regression: a retry used to re-run the finally steps of blocks that had
    // already completed (turning a maintenance page off twice).
    #[test]
    fn retry_keeps_a_completed_blocks_finally_steps_done() {
        let plan = cutover_plan::load_str("p.toml", PLAN, std::path::Path::new("."), None).expect("valid");
        use StepState::*;
        let records =
            [rec("b1", Succeeded), rec("s1", Succeeded), rec("f1", Succeeded), rec("s2", Failed), rec("r2", Succeeded)];
        assert_eq!(steps_to_reset(&plan, &records), ["s2", "r2"]);
        let records = [rec("b1", Running), rec("s1", Succeeded), rec("f1", Succeeded)];
        assert_eq!(steps_to_reset(&plan, &records), ["b1", "f1"]);
        // Phase two was rolled back: its steps run again on a retry.
        let records =
            [rec("b1", Succeeded), rec("s1", Succeeded), rec("f1", Succeeded), rec("s2", Failed), rec("r2", Failed)];
        assert_eq!(steps_to_reset(&plan, &records), ["s2", "r2"]);
    }
}

/// Approves an approve step, for one target or for every target waiting at
/// it now (a target that reaches the step later waits for its own approval).
/// Recorded with who, in one transaction with its event.
pub fn approve(
    engine: &crate::Engine,
    run: &str,
    step: &str,
    target: Option<&str>,
    actor: &str,
    note: Option<&str>,
) -> Result<Result<Vec<String>, String>, crate::EngineError> {
    let store = engine.store();
    let rec = store.run(run)?;
    let plan = engine.load_plan(&rec)?;
    match plan.step(step) {
        Some(s) if s.kind.awaits_approval() => {}
        Some(s) => {
            return Ok(Err(format!(
                "step `{step}` is a {} step, not an approve step (nor a pg.bigint with approve_cutover)",
                s.kind.name()
            )));
        }
        None => return Ok(Err(format!("plan `{}` has no step `{step}`", plan.name))),
    }
    let targets: Vec<String> = match target {
        Some(t) => {
            store.target(run, t)?;
            vec![t.to_string()]
        }
        None => {
            // A pg.bigint step runs long before it waits: only the targets
            // that asked are approved (an approve step asks as it starts).
            let approve_step = plan.step(step).is_some_and(|s| matches!(s.kind, StepKind::Approve(_)));
            let asked: std::collections::BTreeSet<String> = if approve_step {
                Default::default()
            } else {
                store
                    .events_of_kinds(run, &["approval_needed"])?
                    .into_iter()
                    .filter(|e| e.step.as_deref() == Some(step))
                    .filter_map(|e| e.target)
                    .collect()
            };
            store
                .all_steps(run)?
                .into_iter()
                .filter(|r| r.step == step && r.state == StepState::Running)
                .filter(|r| approve_step || asked.contains(&r.target))
                .map(|r| r.target)
                .collect()
        }
    };
    if targets.is_empty() {
        return Ok(Err(format!(
            "no target is waiting at step `{step}`; name one with --target to approve it in advance"
        )));
    }
    for t in &targets {
        let a = Approval {
            step: step.to_string(),
            target: Some(t.clone()),
            actor: actor.to_string(),
            note: note.map(str::to_string),
            at: now(),
        };
        let ev = NewEvent::step(
            t,
            step,
            "approved",
            format!("{actor} approved step `{step}` for `{t}`{}", note.map(|n| format!(": {n}")).unwrap_or_default()),
        )
        .with_data(serde_json::json!({ "step": step, "target": t, "actor": actor, "note": note }));
        let e = store.add_approval(run, &a, &engine.redacted(ev))?;
        engine.publish(&e);
    }
    Ok(Ok(targets))
}

/// Ticks a manual check (for a target when the check is target-scoped),
/// recorded with who and why; a live driver or watch applies it at once.
/// `Err(sentence)` when the tick does not fit the check.
pub fn tick(
    engine: &crate::Engine,
    run: &str,
    check: &str,
    target: Option<&str>,
    ok: bool,
    actor: &str,
    note: Option<&str>,
) -> Result<Result<Event, String>, crate::EngineError> {
    let store = engine.store();
    let rec = store.run(run)?;
    let plan = engine.load_plan(&rec)?;
    match plan.check(check) {
        Some(c) if matches!(c.kind, cutover_plan::CheckKind::Manual) => match (c.scope, target) {
            (cutover_plan::CheckScope::Target, None) => {
                return Ok(Err(format!("check `{check}` is ticked per target: name the target")));
            }
            (cutover_plan::CheckScope::Target, Some(t)) => {
                store.target(run, t)?;
            }
            (cutover_plan::CheckScope::Run, Some(_)) => {
                return Ok(Err(format!("check `{check}` is ticked for the run as a whole, not per target")));
            }
            _ => {}
        },
        Some(c) => {
            return Ok(Err(format!("check `{check}` is a {} check: only manual checks are ticked", c.kind.name())));
        }
        None => return Ok(Err(format!("plan `{}` has no check `{check}`", plan.name))),
    }
    let verdict = if ok { "ok" } else { "not ok" };
    let t = Tick {
        id: 0,
        check: check.to_string(),
        target: target.map(str::to_string),
        ok,
        actor: actor.to_string(),
        note: note.map(str::to_string),
        at: now(),
    };
    let ev = NewEvent::run(
        "check_ticked",
        format!("{actor} ticked `{check}` {verdict}{}", note.map(|n| format!(": {n}")).unwrap_or_default()),
    )
    .with_data(serde_json::json!({ "check": check, "ok": ok, "actor": actor, "note": note, "target": target }));
    let e = store.add_tick(run, &t, &engine.redacted(ev))?;
    engine.publish(&e);
    Ok(Ok(e))
}

/// What became of an operator's action.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The process driving the run took it (`handled` once it acknowledged).
    Handed { pid: i64, host: String, handled: bool },
    /// Applied to the recorded state; the sentence says what happened.
    Applied(String),
    /// Not possible in the run's or target's state; the sentence says why.
    Refused(String),
    /// Nobody drives the run: the caller drives it now (resume) or aborts it
    /// (so that open blocks' finally steps run).
    Drive(Action),
}

/// The one way to act on a run, for the CLI and the tower alike: the action
/// is recorded as a request (the audit trail, with who and from where), then
/// handed to the live driver or applied to the recorded state.
pub async fn operate(
    engine: &crate::Engine,
    run: &str,
    action: Action,
    target: Option<&str>,
    actor: &str,
    note: Option<&str>,
) -> Result<Outcome, crate::EngineError> {
    let store = engine.store();
    let rec = store.run(run)?;
    if let Some(t) = target {
        store.target(run, t)?;
    }
    if matches!(rec.state, RunState::Succeeded | RunState::Aborted) {
        return Ok(Outcome::Refused(format!("run {run} has already ended ({})", rec.state)));
    }
    let id = store.add_request(run, action, target, actor, note)?;
    if let Some(l) = engine.live_holder(run)? {
        if action == Action::Resume {
            store.mark_request_handled(id)?;
            return Ok(Outcome::Refused(format!(
                "run {run} is already being driven by process {} on {}",
                l.pid, l.host
            )));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let mut handled = false;
        while std::time::Instant::now() < deadline {
            if store.request_handled(id)? {
                handled = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        return Ok(Outcome::Handed { pid: l.pid, host: l.host, handled });
    }
    store.mark_request_handled(id)?;
    Ok(match action {
        Action::Pause => {
            store.set_run_state(run, RunState::Paused)?;
            engine.emit(
                run,
                NewEvent::run("operator_pause", format!("{actor} paused the run (no process was driving it)"))
                    .with_data(serde_json::json!({ "actor": actor })),
            )?;
            Outcome::Applied(format!("run {run} is paused; continue with `cutover resume {run}`"))
        }
        Action::Abort => {
            engine.emit(
                run,
                NewEvent::run("operator_abort", format!("{actor} aborted the run"))
                    .with_data(serde_json::json!({ "actor": actor })),
            )?;
            Outcome::Drive(Action::Abort)
        }
        Action::Resume => {
            engine.emit(
                run,
                NewEvent::run("operator_resume", format!("{actor} resumed the run"))
                    .with_data(serde_json::json!({ "actor": actor })),
            )?;
            Outcome::Drive(Action::Resume)
        }
        Action::Retry | Action::Skip => {
            let plan = engine.load_plan(&rec)?;
            let req = Request {
                id,
                action,
                target: target.map(str::to_string),
                actor: actor.to_string(),
                note: note.map(str::to_string),
            };
            match apply(store.as_ref(), &plan, run, &req)? {
                Applied::Done(m) => Outcome::Applied(format!("{m}; continue with `cutover resume {run}`")),
                Applied::Refused(m) => Outcome::Refused(m),
            }
        }
        Action::StartNow => {
            let req = Request {
                id,
                action,
                target: target.map(str::to_string),
                actor: actor.to_string(),
                note: note.map(str::to_string),
            };
            match start_now(engine, run, &req)? {
                Applied::Done(m) => Outcome::Applied(format!("{m}; continue with `cutover resume {run}`")),
                Applied::Refused(m) => Outcome::Refused(m),
            }
        }
    })
}

/// A "start now": the target (every target, without one) may start whatever
/// its maintenance windows and notice period say. Recorded as an event with
/// who asked, which the driver reads (this one, or one that resumes later).
pub fn start_now(engine: &crate::Engine, run: &str, req: &Request) -> Result<Applied, crate::EngineError> {
    let by = &req.actor;
    if let Some(t) = req.target.as_deref() {
        let rec = engine.store().target(run, t)?;
        if rec.state != TargetState::Pending {
            return Ok(Applied::Refused(format!(
                "`{t}` is {}: start-now only concerns a target that has not started",
                rec.state
            )));
        }
    }
    let what = match req.target.as_deref() {
        Some(t) => format!("`{t}`"),
        None => "every target".to_string(),
    };
    let note = req.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
    engine.emit(
        run,
        NewEvent {
            target: req.target.clone(),
            step: None,
            kind: "start_now",
            message: format!(
                "{by} asked {what} to start now, whatever the maintenance windows and notice period say{note}"
            ),
            data: serde_json::json!({ "target": req.target, "actor": by, "note": req.note }),
        },
    )?;
    Ok(Applied::Done(format!("{what} may start now, whatever its windows and notice")))
}
