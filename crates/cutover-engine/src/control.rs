//! Operator actions: pause, resume, abort, retry and skip. An action is first
//! recorded as a request in the store (the audit trail). A live driver picks
//! it up within a fraction of a second; with no live driver, the CLI applies
//! it to the recorded state itself through [`apply`].

use crate::model::*;
use crate::store::{Store, StoreError};
use cutover_plan::{Plan, Step, StepKind};

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
                let exits = exit_path_steps(plan);
                let reset: Vec<String> = records
                    .iter()
                    .filter(|r| r.state != StepState::Succeeded || exits.contains(&r.step) || is_block(plan, &r.step))
                    .map(|r| r.step.clone())
                    .collect();
                store.delete_steps(run, target, &reset)?;
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
                let open_block = records.iter().any(|r| r.state == StepState::Running && is_block(plan, &r.step));
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

fn is_block(plan: &Plan, name: &str) -> bool {
    plan.step(name).is_some_and(|s| matches!(s.kind, StepKind::Block(_)))
}

/// Steps on the way out of something (block `finally` steps and phases'
/// rollback steps): a retry runs them again.
pub fn exit_path_steps(plan: &Plan) -> Vec<String> {
    let mut out = vec![];
    let add_all = |s: &Step, out: &mut Vec<String>| s.walk(&mut |x| out.push(x.name.clone()));
    for p in &plan.phases {
        for s in &p.rollback {
            add_all(s, &mut out);
        }
        for s in &p.steps {
            s.walk(&mut |x| {
                if let StepKind::Block(b) = &x.kind {
                    for f in &b.finally {
                        f.walk(&mut |y| out.push(y.name.clone()));
                    }
                }
            });
        }
    }
    out
}
