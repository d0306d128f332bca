//! The driver of a run: schedules targets within the concurrency limits and
//! the `after` order, walks each target's phases and steps, records every
//! transition before the side effect that follows it, and answers operator
//! requests. Only the process holding the run's lease drives it.

mod gates;
mod windows;

use crate::checks::runner::CheckRunner;
use crate::control;
use crate::model::*;
use crate::proc;
use crate::redact::Redactor;
use crate::secrets;
use crate::steps::{self, Outputs, StepCtx, StepError};
use crate::store::Store;
use crate::{Engine, EngineError};
use cutover_plan::{Plan, Step, StepKind, Target};
use gates::{
    GateValue, WavesSeen, abort_gate, eval_gate, gate_ctx, phase_started, proceed_gate, throttle_gate, wave_gate,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

const LEASE_TTL_MS: i64 = 15_000;
const HEARTBEAT: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(200);

/// How one target's walk ended.
#[derive(Debug, Clone, PartialEq)]
enum Flow {
    Ok,
    Fail(String),
    /// Failed, then every rollback step ran and succeeded.
    RolledBack(String),
    Attention(String),
    Paused(String),
    Aborted,
}

/// Shared by the driver and its target tasks.
struct Shared {
    engine: Engine,
    run_id: String,
    plan: Plan,
    secrets: BTreeMap<String, String>,
    http: reqwest::Client,
    pause: AtomicBool,
    abort: watch::Receiver<bool>,
    checks: Option<Arc<CheckRunner>>,
    /// Maintenance windows, notice and estimates, when the plan has any.
    schedule: Option<windows::Scheduler>,
}

impl Shared {
    fn store(&self) -> &dyn Store {
        self.engine.store.as_ref()
    }
    fn redactor(&self) -> &Redactor {
        &self.engine.redactor
    }
    fn emit(&self, ev: NewEvent) -> Result<(), EngineError> {
        self.engine.emit(&self.run_id, ev).map(|_| ())
    }
}

/// The lease of this process on a run, renewed in the background.
pub(crate) struct LeaseGuard {
    engine: Engine,
    run_id: String,
    pub(crate) lost: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseGuard {
    pub(crate) async fn acquire(engine: &Engine, run_id: &str) -> Result<LeaseGuard, EngineError> {
        let lease = Lease {
            holder: engine.holder.clone(),
            pid: i64::from(std::process::id()),
            host: crate::hostname(),
            expires_at: now_ms() + LEASE_TTL_MS,
        };
        if let Err(current) = engine.store.acquire_lease(run_id, &lease)? {
            // A holder on this host whose process is gone (killed with -9, a
            // crash) is taken over at once instead of waiting for expiry.
            let dead = current.host == lease.host && !proc::alive(current.pid);
            if !(dead && engine.store.steal_lease(run_id, &current, &lease)?) {
                return Err(EngineError::Held { run: run_id.to_string(), pid: current.pid, host: current.host });
            }
            engine.emit(
                run_id,
                NewEvent::run(
                    "lease_taken_over",
                    format!(
                        "took over the run from process {} on {}, which is no longer running",
                        current.pid, current.host
                    ),
                ),
            )?;
        }
        let lost = Arc::new(AtomicBool::new(false));
        let (e, id, l) = (engine.clone(), run_id.to_string(), lost.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                match e.store.renew_lease(&id, &e.holder, now_ms() + LEASE_TTL_MS) {
                    Ok(true) => {}
                    // Another process took the run (our heartbeat was late):
                    // stop starting anything.
                    Ok(false) => {
                        l.store(true, Ordering::SeqCst);
                        return;
                    }
                    // A busy store is retried at the next beat; the lease lasts
                    // several beats.
                    Err(_) => {}
                }
            }
        });
        Ok(LeaseGuard { engine: engine.clone(), run_id: run_id.to_string(), lost, task })
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.task.abort();
        // Releasing is a courtesy: an unreleased lease expires by itself.
        let _ = self.engine.store.release_lease(&self.run_id, &self.engine.holder);
    }
}

/// Drives a run until every target is done, or it is paused or aborted.
pub async fn drive(
    engine: &Engine,
    run_id: &str,
    abort_first: bool,
    resolved: Option<BTreeMap<String, String>>,
) -> Result<RunState, EngineError> {
    let rec = engine.store.run(run_id)?;
    if matches!(rec.state, RunState::Succeeded | RunState::Aborted) {
        return Err(EngineError::Ended { run: run_id.to_string(), state: rec.state });
    }
    // A watched run has no steps to drive: watching again starts a new run.
    if engine.store().first_events(run_id, 4)?.iter().any(|e| e.kind == "watch_started") {
        return Err(EngineError::Other(format!(
            "run {run_id} is a watch, not a run to drive: watch again with `cutover watch PLAN`"
        )));
    }
    let lease = LeaseGuard::acquire(engine, run_id).await?;
    let plan = engine.load_plan(&rec)?;
    for t in &plan.targets {
        register_url_passwords(engine.redactor(), &Value::Object(t.vars.clone()));
    }
    register_url_passwords(engine.redactor(), &Value::Object(plan.vars.clone()));
    let read = match resolved {
        Some(s) => Ok(s),
        None => secrets::resolve(&plan.secrets, &plan.dir, engine.redactor()),
    };
    let secrets = match read {
        Ok(s) => s,
        Err(e) => {
            engine.emit(run_id, NewEvent::run("run_error", e.to_string()))?;
            return Err(EngineError::Secret(e));
        }
    };
    let (abort_tx, abort_rx) = watch::channel(false);
    // The plan's checks are probed for as long as the run is driven; their
    // expectations follow the least advanced unfinished phase.
    let checks = (!plan.checks.is_empty())
        .then(|| Arc::new(CheckRunner::start(engine, run_id, Arc::new(plan.clone()), Arc::new(secrets.clone()))));
    let scheduler = windows::Scheduler::new(engine, run_id, &plan)?;
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        run_id: run_id.to_string(),
        plan,
        secrets,
        http: reqwest::Client::builder()
            .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| EngineError::Other(format!("cannot set up the HTTP client: {e}")))?,
        pause: AtomicBool::new(false),
        abort: abort_rx,
        checks,
        schedule: scheduler,
    });
    let resumed = rec.created_at != rec.updated_at || rec.state != RunState::Running;
    engine.store.set_run_state(run_id, RunState::Running)?;
    shared.emit(NewEvent::run(
        if resumed { "run_resumed" } else { "run_started" },
        format!("process {} on {} drives the run", std::process::id(), crate::hostname()),
    ))?;
    if let Some(s) = &shared.schedule {
        s.announce(&shared)?;
    }
    // Targets that were running when an earlier process stopped continue from
    // their step records.
    for t in engine.store.targets(run_id)? {
        if t.state == TargetState::Running {
            engine.set_target_state(
                run_id,
                &t.name,
                TargetState::Pending,
                Some("interrupted; resuming"),
                NewEvent::target(
                    &t.name,
                    "target_interrupted",
                    "was running when the previous process stopped; it continues from its step records",
                ),
            )?;
        }
    }
    if abort_first {
        shared.emit(NewEvent::run("run_aborting", "abort requested while no process was driving the run"))?;
        let _ = abort_tx.send(true);
    }
    let notifier =
        crate::notify::start(engine, run_id, Arc::new(shared.plan.clone()), Arc::new(shared.secrets.clone()));
    let result = schedule(&shared, &abort_tx, &lease).await;
    if let Some(n) = notifier {
        // The notifier ends after the run's end went out (with its retries).
        let _ = tokio::time::timeout(Duration::from_secs(30), n).await;
    }
    drop(lease);
    result
}

fn register_url_passwords(r: &Redactor, v: &Value) {
    match v {
        Value::String(s) => r.add_url_password(s),
        Value::Array(a) => a.iter().for_each(|x| register_url_passwords(r, x)),
        Value::Object(o) => o.values().for_each(|x| register_url_passwords(r, x)),
        _ => {}
    }
}

async fn schedule(
    shared: &Arc<Shared>,
    abort_tx: &watch::Sender<bool>,
    lease: &LeaseGuard,
) -> Result<RunState, EngineError> {
    let checks = shared.checks.as_deref();
    let waves = shared.plan.wave_of();
    let mut waves_seen = WavesSeen::default();
    let mut last_abort_check = 0i64;
    let mut abort_errors: Vec<String> = vec![];
    let store = shared.store();
    let run_id = shared.run_id.as_str();
    let plan = &shared.plan;
    let by_name: HashMap<&str, &Target> = plan.targets.iter().map(|t| (t.name.as_str(), t)).collect();
    let position: HashMap<&str, usize> = plan.targets.iter().enumerate().map(|(i, t)| (t.name.as_str(), i)).collect();
    // The targets' states, kept in memory: this process is the only writer
    // while it holds the lease, except through requests (re-read after them).
    // Reading 10,000 rows at every turn of the loop made large runs quadratic.
    let mut states: HashMap<String, TargetState> =
        store.targets(run_id)?.into_iter().map(|r| (r.name, r.state)).collect();
    let mut last_phase_check = 0i64;
    // Phases every target got through (those done before a resume are not
    // announced again).
    let mut phases_done = phases_complete(plan, &store.targets(run_id)?);
    let mut running: JoinSet<(String, Result<Flow, EngineError>)> = JoinSet::new();
    let mut running_names: Vec<String> = vec![];
    let mut closing_started = false;
    let mut last_tick = 0;
    loop {
        if lease.lost.load(Ordering::SeqCst) {
            let _ = abort_tx.send(true);
            running.shutdown().await;
            return Err(EngineError::LeaseLost(run_id.to_string()));
        }
        let requests = store.pending_requests(run_id)?;
        for req in &requests {
            handle_request(shared, abort_tx, req)?;
            store.mark_request_handled(req.id)?;
        }
        if !requests.is_empty() {
            states = store.targets(run_id)?.into_iter().map(|r| (r.name, r.state)).collect();
        }
        let aborting = *abort_tx.borrow();
        let pausing = shared.pause.load(Ordering::SeqCst);
        if now_ms() - last_phase_check >= 1000 {
            last_phase_check = now_ms();
            let records = store.targets(run_id)?;
            if let Some(c) = checks {
                c.set_phase(current_phase(plan, &records));
                c.set_target_phases(records.iter().filter_map(|r| Some((r.name.clone(), r.phase.clone()?))).collect());
            }
            announce_phases(shared, &records, &mut phases_done)?;
        }
        if let Some(c) = checks {
            for t in store.ticks(run_id, last_tick)? {
                last_tick = t.id;
                c.apply_tick(&t)?;
            }
        }
        if aborting && !closing_started {
            // Targets left inside a block (paused, interrupted, waiting for a
            // decision) get their finally steps run before the run ends.
            closing_started = true;
            for r in store.targets(run_id)? {
                let waiting = matches!(r.state, TargetState::Pending | TargetState::NeedsAttention);
                if waiting && !running_names.contains(&r.name) && has_open_block(plan, &store.steps(run_id, &r.name)?) {
                    shared.engine.set_target_state(
                        run_id,
                        &r.name,
                        TargetState::Running,
                        Some("closing its open block after the abort"),
                        NewEvent::target(
                            &r.name,
                            "target_closing",
                            "the run is aborted: the finally steps of its open block run",
                        ),
                    )?;
                    running_names.push(r.name.clone());
                    states.insert(r.name.clone(), TargetState::Running);
                    let (sh, name) = (shared.clone(), r.name.clone());
                    running.spawn(async move {
                        let flow = run_target(&sh, &name).await;
                        (name, flow)
                    });
                }
            }
        }
        if !aborting && now_ms() - last_abort_check >= 1000 {
            last_abort_check = now_ms();
            if let Some(why) = abort_gate(shared, &mut abort_errors)? {
                shared.emit(
                    NewEvent::run("gate_abort", format!("abort_when held: {why}")).with_data(json!({ "gate": why })),
                )?;
                let _ = abort_tx.send(true);
                continue;
            }
        }
        let open_wave = wave_gate(shared, &waves, &states, &mut waves_seen)?;
        let full = running_names.len() >= plan.concurrency.limit as usize;
        if !aborting && !pausing && !full {
            let pending: Vec<&Target> =
                plan.targets.iter().filter(|t| states.get(&t.name) == Some(&TargetState::Pending)).collect();
            if let Some(s) = &shared.schedule {
                s.begin_pass();
            }
            for t in pending {
                if running_names.len() >= plan.concurrency.limit as usize {
                    break;
                }
                if running_names.contains(&t.name) {
                    continue;
                }
                let at = position.get(t.name.as_str()).copied().unwrap_or(0);
                if open_wave.is_none_or(|w| waves.get(at).is_some_and(|tw| *tw > w)) {
                    continue;
                }
                // An `after` dependency that ended without success means this
                // target will not start.
                let blocked_by = t.after.iter().find(|d| {
                    matches!(
                        states.get(d.as_str()),
                        Some(TargetState::Failed | TargetState::RolledBack | TargetState::Skipped)
                    )
                });
                if let Some(d) = blocked_by {
                    let msg = format!("not started: `{d}` did not succeed");
                    shared.engine.set_target_state(
                        run_id,
                        &t.name,
                        TargetState::Skipped,
                        Some(&msg),
                        NewEvent::target(&t.name, "target_skipped", msg.clone()),
                    )?;
                    states.insert(t.name.clone(), TargetState::Skipped);
                    continue;
                }
                let ready = t.after.iter().all(|d| {
                    !states.contains_key(d.as_str()) || states.get(d.as_str()) == Some(&TargetState::Succeeded)
                });
                if !ready || !fits(plan, t, &running_names, &by_name) {
                    continue;
                }
                // Outside its maintenance windows, or before its notice ran out.
                if let Some(s) = &shared.schedule
                    && !s.may_start(shared, t)?
                {
                    continue;
                }
                shared.engine.set_target_state(
                    run_id,
                    &t.name,
                    TargetState::Running,
                    None,
                    NewEvent::target(&t.name, "target_started", format!("started `{}`", t.name)),
                )?;
                running_names.push(t.name.clone());
                states.insert(t.name.clone(), TargetState::Running);
                let (sh, name) = (shared.clone(), t.name.clone());
                running.spawn(async move {
                    let flow = run_target(&sh, &name).await;
                    (name, flow)
                });
            }
        }
        // A wave held at its gate, or a target waiting for its window, keeps
        // the run going with nothing running.
        let holding = waves_seen.holding() || shared.schedule.as_ref().is_some_and(|s| s.holding());
        if running.is_empty() && !(holding && !aborting && !pausing) {
            break;
        }
        tokio::select! {
            Some(done) = running.join_next() => {
                let (name, flow) = match done {
                    Ok(x) => x,
                    Err(e) => return Err(EngineError::Other(format!("a target task failed: {e}"))),
                };
                running_names.retain(|n| n != &name);
                let end = finish_target(shared, &name, flow?)?;
                if let Some(s) = &shared.schedule {
                    s.finished(shared, &name, end)?;
                }
                states.insert(name, end);
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    announce_phases(shared, &store.targets(run_id)?, &mut phases_done)?;
    let state = final_state(shared, *abort_tx.borrow(), shared.pause.load(Ordering::SeqCst))?;
    store.set_run_state(run_id, state)?;
    let how = match state {
        RunState::Succeeded => "the run succeeded: every target is done".to_string(),
        RunState::Paused => "the run is paused".to_string(),
        RunState::Aborted => "the run was aborted".to_string(),
        other => format!("the run ended: {other}"),
    };
    shared.emit(NewEvent::run("run_finished", how).with_data(json!({ "state": state })))?;
    Ok(state)
}

/// The least advanced phase among targets that have not finished (the first
/// phase before any started), which decides the checks' expectations.
fn current_phase<'a>(plan: &'a Plan, targets: &[TargetRecord]) -> Option<&'a str> {
    let index = |name: &str| plan.phases.iter().position(|p| p.name == name);
    targets
        .iter()
        .filter(|t| !t.state.is_terminal())
        .map(|t| t.phase.as_deref().and_then(index).unwrap_or(0))
        .min()
        .or(plan.phases.len().checked_sub(1))
        .and_then(|i| plan.phases.get(i))
        .map(|p| p.name.as_str())
}

/// Records `phase_completed` for the phases every target got through since `done`.
fn announce_phases(shared: &Shared, targets: &[TargetRecord], done: &mut usize) -> Result<(), EngineError> {
    let upto = phases_complete(&shared.plan, targets);
    for p in shared.plan.phases.iter().take(upto).skip(*done) {
        shared.emit(
            NewEvent::run("phase_completed", format!("phase `{}` is done for every target", p.name))
                .with_data(json!({ "phase": p.name })),
        )?;
    }
    *done = (*done).max(upto);
    Ok(())
}

/// How many leading phases every target got through (succeeded, skipped,
/// or is in a later phase); a failed target holds its phase open.
fn phases_complete(plan: &Plan, targets: &[TargetRecord]) -> usize {
    let index = |name: &str| plan.phases.iter().position(|p| p.name == name);
    targets
        .iter()
        .filter(|t| !matches!(t.state, TargetState::Succeeded | TargetState::Skipped))
        .map(|t| t.phase.as_deref().and_then(index).unwrap_or(0))
        .min()
        .unwrap_or(plan.phases.len())
}

/// Whether a target's records show a block that started and was not left.
pub fn has_open_block(plan: &Plan, records: &[StepRecord]) -> bool {
    records.iter().any(|r| {
        r.state == StepState::Running && plan.step(&r.step).is_some_and(|s| matches!(s.kind, StepKind::Block(_)))
    })
}

/// Whether starting `t` keeps the global and per-label limits.
fn fits(plan: &Plan, t: &Target, running: &[String], by_name: &HashMap<&str, &Target>) -> bool {
    if running.len() >= plan.concurrency.limit as usize {
        return false;
    }
    plan.concurrency.per_label.iter().all(|(label, max)| {
        let Some(v) = t.labels.get(label) else { return true };
        let same =
            running.iter().filter_map(|n| by_name.get(n.as_str())).filter(|o| o.labels.get(label) == Some(v)).count();
        same < *max as usize
    })
}

fn handle_request(shared: &Arc<Shared>, abort_tx: &watch::Sender<bool>, req: &Request) -> Result<(), EngineError> {
    let by = &req.actor;
    match req.action {
        Action::Pause => {
            shared.pause.store(true, Ordering::SeqCst);
            shared.emit(
                NewEvent::run(
                    "operator_pause",
                    format!("{by} paused the run: no new step starts; steps in flight finish"),
                )
                .with_data(json!({ "actor": by })),
            )?;
        }
        Action::Abort => {
            let _ = abort_tx.send(true);
            shared.emit(
                NewEvent::run(
                    "operator_abort",
                    format!("{by} aborted the run: steps in flight are stopped, finally steps run"),
                )
                .with_data(json!({ "actor": by })),
            )?;
        }
        Action::Resume => {
            shared.emit(NewEvent::run(
                "operator_resume",
                format!("{by} asked to resume; the run is already being driven"),
            ))?;
        }
        Action::Retry | Action::Skip => {
            if let control::Applied::Refused(why) = control::apply(shared.store(), &shared.plan, &shared.run_id, req)? {
                shared.emit(NewEvent::run("request_refused", why))?;
            }
        }
        Action::StartNow => match control::start_now(&shared.engine, &shared.run_id, req)? {
            control::Applied::Done(_) => {
                if let Some(s) = &shared.schedule {
                    s.start_now(req.target.as_deref(), &req.actor);
                }
            }
            control::Applied::Refused(why) => shared.emit(NewEvent::run("request_refused", why))?,
        },
    }
    Ok(())
}

fn finish_target(shared: &Shared, name: &str, flow: Flow) -> Result<TargetState, EngineError> {
    let store = shared.store();
    let (state, kind, msg) = match flow {
        Flow::Ok => {
            if store.target(&shared.run_id, name)?.skip_requested {
                store.set_skip_requested(&shared.run_id, name, false)?;
                (TargetState::Skipped, "target_skipped", "skipped (its finally steps ran)".to_string())
            } else {
                (TargetState::Succeeded, "target_succeeded", "succeeded".to_string())
            }
        }
        Flow::RolledBack(m) => (TargetState::RolledBack, "target_rolled_back", format!("rolled back after: {m}")),
        Flow::Fail(m) => (TargetState::Failed, "target_failed", m),
        Flow::Attention(m) => (TargetState::NeedsAttention, "target_needs_attention", m),
        Flow::Paused(m) => (TargetState::Pending, "target_paused", m),
        Flow::Aborted => (TargetState::Failed, "target_aborted", "aborted by the operator".to_string()),
    };
    shared.engine.set_target_state(
        &shared.run_id,
        name,
        state,
        Some(&msg),
        NewEvent::target(name, kind, msg.clone()).with_data(json!({ "state": state })),
    )?;
    Ok(state)
}

fn final_state(shared: &Shared, aborted: bool, paused: bool) -> Result<RunState, EngineError> {
    if aborted {
        return Ok(RunState::Aborted);
    }
    let targets = shared.store().targets(&shared.run_id)?;
    if paused && targets.iter().any(|t| t.state == TargetState::Pending) {
        return Ok(RunState::Paused);
    }
    Ok(if targets.iter().any(|t| matches!(t.state, TargetState::Failed | TargetState::RolledBack)) {
        RunState::Failed
    } else if targets.iter().any(|t| !t.state.is_terminal() || t.state == TargetState::NeedsAttention) {
        RunState::NeedsAttention
    } else {
        RunState::Succeeded
    })
}

/// One target's walk through the phases, with rollback on failure.
async fn run_target(shared: &Arc<Shared>, name: &str) -> Result<Flow, EngineError> {
    let store = shared.store();
    let run_id = &shared.run_id;
    let plan = &shared.plan;
    let Some(target) = plan.target(name) else {
        return Ok(Flow::Fail(format!("`{name}` is not a target of the plan")));
    };
    let mut tc = TargetCtx {
        target,
        records: store.steps(run_id, name)?.into_iter().map(|r| (r.step.clone(), r)).collect(),
        phase: String::new(),
    };
    let rec = store.target(run_id, name)?;
    if rec.skip_requested {
        return close_open_blocks(shared, &mut tc).await;
    }
    for (i, phase) in plan.phases.iter().enumerate() {
        tc.phase = phase.name.clone();
        store.set_target_position(run_id, name, Some(&phase.name), None)?;
        // A target entering a phase waits for its proceed gate; one that had
        // already started the phase (a resume) does not wait again.
        let gated = phase.gates.proceed_when.is_some() || phase.gates.fail_when.is_some();
        if gated && !phase_started(phase, &tc) {
            match proceed_gate(shared, &tc, phase).await? {
                Flow::Ok => {}
                // A failed analysis undoes the phases this target went through
                // (this one has not started).
                Flow::Fail(msg) if i > 0 => return rollback(shared, &mut tc, i - 1, msg).await,
                other => return Ok(other),
            }
        }
        let flow = run_steps(shared, &mut tc, &phase.steps, Mode::Main).await?;
        match flow {
            Flow::Ok => continue,
            Flow::Fail(msg) => return rollback(shared, &mut tc, i, msg).await,
            other => return Ok(other),
        }
    }
    Ok(Flow::Ok)
}

async fn rollback(
    shared: &Arc<Shared>,
    tc: &mut TargetCtx<'_>,
    failed_phase: usize,
    msg: String,
) -> Result<Flow, EngineError> {
    let phases = &shared.plan.phases[..=failed_phase];
    if phases.iter().all(|p| p.rollback.is_empty()) {
        return Ok(Flow::Fail(msg));
    }
    shared.emit(NewEvent::target(
        tc.target.name.as_str(),
        "target_rolling_back",
        format!("rolling back after: {msg}"),
    ))?;
    for phase in phases.iter().rev() {
        tc.phase = phase.name.clone();
        match run_steps(shared, tc, &phase.rollback, Mode::Exit).await? {
            Flow::Ok => {}
            Flow::Fail(rb) => {
                return Ok(Flow::Fail(format!("{msg}; then rollback of phase `{}` failed: {rb}", phase.name)));
            }
            other => return Ok(other),
        }
    }
    Ok(Flow::RolledBack(msg))
}

/// A skipped target with an open block: run that block's finally steps.
async fn close_open_blocks(shared: &Arc<Shared>, tc: &mut TargetCtx<'_>) -> Result<Flow, EngineError> {
    let mut open: Vec<&Step> = vec![];
    for (_, s) in shared.plan.all_steps() {
        if matches!(s.kind, StepKind::Block(_))
            && tc.records.get(&s.name).is_some_and(|r| r.state == StepState::Running)
        {
            open.push(s);
        }
    }
    // Innermost blocks close first.
    for s in open.into_iter().rev() {
        if let StepKind::Block(b) = &s.kind {
            // The step that was in flight is left as it was recorded; skipping
            // the target means nobody re-runs it.
            for inner in &b.steps {
                if let Some(r) = tc.records.get_mut(&inner.name).filter(|r| r.state == StepState::Running) {
                    r.state = StepState::Skipped;
                    r.error = Some("skipped by the operator while in flight".into());
                    shared.store().put_step(&shared.run_id, r, None)?;
                }
            }
            match run_steps(shared, tc, &b.finally, Mode::Exit).await? {
                Flow::Ok => {}
                other => return Ok(other),
            }
            put_state(
                shared,
                tc,
                s,
                Change::new(StepState::Skipped, 0).event(NewEvent::step(
                    &tc.target.name.clone(),
                    &s.name,
                    "block_finished",
                    format!("block `{}` closed: the target is skipped", s.name),
                )),
            )?;
        }
    }
    Ok(Flow::Ok)
}

/// Main steps stop for pause and abort; exit steps (finally, rollback) run
/// through both, because leaving a maintenance page on is worse.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Main,
    Exit,
}

struct TargetCtx<'a> {
    target: &'a Target,
    records: HashMap<String, StepRecord>,
    phase: String,
}

impl TargetCtx<'_> {
    fn outputs(&self) -> serde_json::Map<String, Value> {
        self.records
            .values()
            .filter(|r| r.state == StepState::Succeeded)
            .map(|r| (r.step.clone(), r.outputs.clone()))
            .collect()
    }
}

type Boxed<'a> = Pin<Box<dyn Future<Output = Result<Flow, EngineError>> + Send + 'a>>;

fn run_steps<'a>(shared: &'a Arc<Shared>, tc: &'a mut TargetCtx<'_>, steps: &'a [Step], mode: Mode) -> Boxed<'a> {
    Box::pin(async move {
        for step in steps {
            let flow = run_step(shared, tc, step, mode).await?;
            if flow != Flow::Ok {
                return Ok(flow);
            }
        }
        Ok(Flow::Ok)
    })
}

/// Runs every step, even after one fails: `finally` steps all run. The worst
/// outcome is returned (needs attention, then failure).
async fn run_all(shared: &Arc<Shared>, tc: &mut TargetCtx<'_>, steps: &[Step]) -> Result<Flow, EngineError> {
    let mut failures = vec![];
    let mut attention = None;
    for step in steps {
        match run_step(shared, tc, step, Mode::Exit).await? {
            Flow::Ok => {}
            Flow::Attention(m) => attention = attention.or(Some(m)),
            Flow::Fail(m) | Flow::RolledBack(m) | Flow::Paused(m) => failures.push(m),
            Flow::Aborted => failures.push(format!("step `{}` was aborted", step.name)),
        }
    }
    Ok(match (attention, failures.is_empty()) {
        (Some(a), _) => Flow::Attention(a),
        (None, false) => Flow::Fail(failures.join("; ")),
        (None, true) => Flow::Ok,
    })
}

/// A step's next recorded state, and the event that tells of it.
struct Change {
    state: StepState,
    attempt: i64,
    outputs: Option<Value>,
    error: Option<String>,
    event: Option<NewEvent>,
}

impl Change {
    fn new(state: StepState, attempt: i64) -> Change {
        Change { state, attempt, outputs: None, error: None, event: None }
    }
    fn error(mut self, e: impl Into<String>) -> Change {
        self.error = Some(e.into());
        self
    }
    fn outputs(mut self, o: Value) -> Change {
        self.outputs = Some(o);
        self
    }
    fn event(mut self, e: NewEvent) -> Change {
        self.event = Some(e);
        self
    }
}

/// Records a step's state and its event in one transaction, before anything
/// that follows happens.
fn put_state(shared: &Shared, tc: &mut TargetCtx<'_>, step: &Step, c: Change) -> Result<(), EngineError> {
    let prev = tc.records.get(&step.name);
    let started_at = match c.state {
        StepState::Running => Some(now()),
        _ => prev.and_then(|p| p.started_at.clone()),
    };
    let rec = StepRecord {
        target: tc.target.name.clone(),
        step: step.name.clone(),
        state: c.state,
        attempt: c.attempt,
        started_at,
        finished_at: (c.state != StepState::Running).then(now),
        outputs: c.outputs.unwrap_or(Value::Null),
        error: c.error.map(|e| shared.redactor().redact(&e)),
    };
    let ev = c.event.map(|e| shared.engine.redacted(e));
    if let Some(e) = shared.store().put_step(&shared.run_id, &rec, ev.as_ref())? {
        shared.engine.publish(&e);
    }
    tc.records.insert(step.name.clone(), rec);
    Ok(())
}

fn run_step<'a>(shared: &'a Arc<Shared>, tc: &'a mut TargetCtx<'_>, step: &'a Step, mode: Mode) -> Boxed<'a> {
    Box::pin(async move {
        let target = tc.target.name.clone();
        let prev = tc.records.get(&step.name).cloned();
        let is_block = matches!(step.kind, StepKind::Block(_));
        let open_block = is_block && prev.as_ref().is_some_and(|p| p.state == StepState::Running);
        match prev.as_ref().map(|r| r.state) {
            Some(StepState::Succeeded | StepState::Skipped) => return Ok(Flow::Ok),
            Some(StepState::Failed) => {
                return Ok(Flow::Fail(format!(
                    "step `{}` failed: {}",
                    step.name,
                    prev.and_then(|p| p.error).unwrap_or_default()
                )));
            }
            _ => {}
        }
        // An abort stops main steps before they start; a step recorded in
        // flight by a process that died is closed as aborted. An open block is
        // entered, so that its finally steps run.
        if mode == Mode::Main && !open_block && *shared.abort.borrow() {
            if prev.as_ref().is_some_and(|p| p.state == StepState::Running) {
                let ev = NewEvent::step(
                    &target,
                    &step.name,
                    "step_aborted",
                    format!("step `{}` was in flight when its process stopped; the run is aborted", step.name),
                );
                let attempt = prev.as_ref().map(|p| p.attempt).unwrap_or(0);
                put_state(
                    shared,
                    tc,
                    step,
                    Change::new(StepState::Failed, attempt).error("aborted by the operator").event(ev),
                )?;
            }
            return Ok(Flow::Aborted);
        }
        match prev.as_ref().map(|r| r.state) {
            Some(StepState::Running) if !is_block && !step.idempotent => {
                let msg = format!(
                    "step `{}` was in flight when the process stopped and is not idempotent: check what it did, then run `cutover retry {} {target}` to run it again or `cutover skip {} {target}`",
                    step.name, shared.run_id, shared.run_id
                );
                shared.emit(NewEvent::step(&target, &step.name, "step_interrupted", msg.clone()))?;
                return Ok(Flow::Attention(msg));
            }
            Some(StepState::Running) if !is_block => {
                shared.emit(NewEvent::step(
                    &target,
                    &step.name,
                    "step_rerun",
                    format!(
                        "step `{}` was in flight when the process stopped; it is idempotent, so it runs again",
                        step.name
                    ),
                ))?;
            }
            _ => {}
        }
        if mode == Mode::Main && !open_block && shared.pause.load(Ordering::SeqCst) {
            return Ok(Flow::Paused(format!("paused before step `{}`", step.name)));
        }
        if mode == Mode::Main
            && !open_block
            && let Some(phase) = shared.plan.phases.iter().find(|p| p.name == tc.phase)
        {
            let verdict = phase.gates.rollback_when.as_ref().map(|g| (g, eval_gate(g, &gate_ctx(shared, tc))));
            if let Some((g, GateValue::Error(e))) = &verdict {
                shared.emit(
                    NewEvent::step(
                        &target,
                        &step.name,
                        "gate_error",
                        format!("rollback_when of phase `{}` cannot be evaluated: {e}", phase.name),
                    )
                    .with_data(json!({ "gate": g.source })),
                )?;
            }
            if let Some((g, GateValue::Holds)) = verdict {
                let msg =
                    format!("rollback_when of phase `{}` held before step `{}`: {}", phase.name, step.name, g.source);
                shared.emit(
                    NewEvent::step(&target, &step.name, "gate_rollback", msg.clone())
                        .with_data(json!({ "gate": g.source })),
                )?;
                return Ok(Flow::Fail(msg));
            }
            if let Some(g) = &phase.gates.pause_when {
                match throttle_gate(shared, tc, phase, g).await? {
                    Flow::Ok => {}
                    other => return Ok(other),
                }
            }
        }
        let ctx_value = context(shared, tc);
        if let Some(w) = &step.when {
            let holds = cutover_plan::expr::compile(&w.source)
                .map_err(|e| e.message)
                .and_then(|p| cutover_plan::expr::eval_bool(&p, &ctx_value));
            match holds {
                Ok(true) => {}
                Ok(false) => {
                    put_state(
                        shared,
                        tc,
                        step,
                        Change::new(StepState::Skipped, 0).event(NewEvent::step(
                            &target,
                            &step.name,
                            "step_skipped",
                            format!("`when` is false: {}", w.source),
                        )),
                    )?;
                    return Ok(Flow::Ok);
                }
                Err(e) => {
                    let msg =
                        shared.redactor().redact(&format!("`when` of step `{}` cannot be evaluated: {e}", step.name));
                    put_state(
                        shared,
                        tc,
                        step,
                        Change::new(StepState::Failed, 0).error(msg.clone()).event(NewEvent::step(
                            &target,
                            &step.name,
                            "step_failed",
                            msg.clone(),
                        )),
                    )?;
                    return Ok(Flow::Fail(msg));
                }
            }
        }
        shared.store().set_target_position(&shared.run_id, &target, Some(&tc.phase), Some(&step.name))?;
        if let StepKind::Block(b) = &step.kind {
            return run_block(shared, tc, step, &b.steps, &b.finally).await;
        }
        run_attempts(shared, tc, step, mode, ctx_value, prev.map(|p| p.attempt).unwrap_or(0)).await
    })
}

/// Whether a block's record says it started and was not left.
fn is_block_open(prev: &Option<StepRecord>) -> bool {
    prev.as_ref().is_some_and(|p| p.state == StepState::Running)
}

async fn run_block(
    shared: &Arc<Shared>,
    tc: &mut TargetCtx<'_>,
    step: &Step,
    inner: &[Step],
    finally: &[Step],
) -> Result<Flow, EngineError> {
    let target = tc.target.name.clone();
    if !is_block_open(&tc.records.get(&step.name).cloned()) {
        put_state(
            shared,
            tc,
            step,
            Change::new(StepState::Running, 1).event(NewEvent::step(
                &target,
                &step.name,
                "block_started",
                format!("block `{}` started; its finally steps will run whatever happens", step.name),
            )),
        )?;
    }
    let flow = run_steps(shared, tc, inner, Mode::Main).await?;
    if matches!(flow, Flow::Paused(_) | Flow::Attention(_)) {
        // The block stays open: its finally steps run when it is left.
        return Ok(flow);
    }
    let fin = run_all(shared, tc, finally).await?;
    let result = match (&flow, fin) {
        (Flow::Ok, Flow::Ok) => Flow::Ok,
        (Flow::Ok, other) => other,
        (Flow::Fail(m), Flow::Fail(f)) => Flow::Fail(format!("{m}; and a finally step failed: {f}")),
        (_, Flow::Attention(a)) => Flow::Attention(a),
        _ => flow.clone(),
    };
    let (state, err) = match &result {
        Flow::Ok => (StepState::Succeeded, None),
        Flow::Fail(m) => (StepState::Failed, Some(m.clone())),
        Flow::Aborted => (StepState::Failed, Some("aborted by the operator".to_string())),
        _ => (StepState::Running, None),
    };
    if state != StepState::Running {
        let mut c = Change::new(state, 1).event(NewEvent::step(
            &target,
            &step.name,
            "block_finished",
            format!("block `{}` {state}", step.name),
        ));
        c.error = err;
        put_state(shared, tc, step, c)?;
    }
    // A failed block already recorded its failure; the target-level failure
    // names the block.
    Ok(match result {
        Flow::Fail(m) => Flow::Fail(format!("block `{}`: {m}", step.name)),
        other => other,
    })
}

fn context(shared: &Shared, tc: &TargetCtx<'_>) -> Value {
    let mut v = cutover_plan::context(tc.target, &shared.plan.vars, &tc.outputs());
    if let Some(o) = v.as_object_mut() {
        o.insert("secrets".into(), json!(shared.secrets));
        o.insert("plan".into(), json!({ "name": shared.plan.name }));
        o.insert("run".into(), json!({ "id": shared.run_id }));
        o.insert("phase".into(), json!({ "name": tc.phase }));
    }
    v
}

async fn run_attempts(
    shared: &Arc<Shared>,
    tc: &mut TargetCtx<'_>,
    step: &Step,
    mode: Mode,
    ctx_value: Value,
    prev_attempts: i64,
) -> Result<Flow, EngineError> {
    let target = tc.target.name.clone();
    let total = i64::from(step.retries) + 1;
    let mut abort = shared.abort.clone();
    for n in 1..=total {
        let attempt = prev_attempts + n;
        let started = NewEvent::step(
            &target,
            &step.name,
            "step_started",
            format!("{} step `{}` started (attempt {n} of {total})", step.kind.name(), step.name),
        )
        .with_data(json!({ "phase": tc.phase, "attempt": attempt, "kind": step.kind.name() }));
        put_state(shared, tc, step, Change::new(StepState::Running, attempt).event(started))?;
        // A phase with pause_when throttles inside the step too: its signal
        // is evaluated alongside the step.
        let pause_when = (mode == Mode::Main)
            .then(|| shared.plan.phases.iter().find(|p| p.name == tc.phase))
            .flatten()
            .and_then(|p| p.gates.pause_when.as_ref().map(|g| (p, g)));
        let (throttle_tx, throttle_rx) = watch::channel(false);
        let throttle_file = std::env::temp_dir().join(format!(
            "cutover-throttle-{}.flag",
            [shared.run_id.as_str(), target.as_str(), step.name.as_str()]
                .join("-")
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
                .collect::<String>()
        ));
        let ctx = StepCtx {
            run_id: &shared.run_id,
            target: &target,
            step: &step.name,
            vars: &ctx_value,
            plan_dir: &shared.plan.dir,
            redactor: shared.redactor(),
            http: &shared.http,
            timeout: step.timeout,
            engine: &shared.engine,
            last_progress: Default::default(),
            throttle: pause_when.map(|_| steps::Throttle { rx: throttle_rx, file: throttle_file.clone() }),
        };
        let signal = async {
            match pause_when {
                Some((phase, g)) => {
                    gates::throttle_signal(
                        shared,
                        ctx_value.clone(),
                        (&target, &step.name),
                        (phase, g),
                        throttle_tx,
                        &throttle_file,
                    )
                    .await
                }
                None => std::future::pending::<()>().await,
            }
        };
        // An approval wait gives way to an operator's pause (it is asked
        // again on resume); other steps run to their end.
        let is_approve = matches!(step.kind, StepKind::Approve(_));
        let paused = async {
            if !is_approve {
                return std::future::pending::<()>().await;
            }
            // An approval already given wins over a pause that came after it.
            let approved = || shared.store().approval(&shared.run_id, &target, &step.name).ok().flatten().is_some();
            while !shared.pause.load(Ordering::SeqCst) || approved() {
                tokio::time::sleep(POLL).await;
            }
        };
        let fut = async {
            match step.timeout {
                Some(t) => tokio::time::timeout(t, steps::execute(&step.kind, &ctx)).await.unwrap_or_else(|_| {
                    Err(StepError::Failed(format!("timed out after {}", cutover_plan::duration::format(t))))
                }),
                None => steps::execute(&step.kind, &ctx).await,
            }
        };
        let result = if mode == Mode::Main {
            let r = tokio::select! {
                r = fut => Some(Some(r)),
                _ = wait_abort(&mut abort) => None,
                _ = signal => None,
                _ = paused => Some(None),
            };
            let _ = std::fs::remove_file(&throttle_file);
            match r {
                Some(Some(r)) => Some(r),
                Some(None) => {
                    // Forget the attempt: the step has not started as far as a resume is concerned.
                    shared.store().delete_steps(&shared.run_id, &target, std::slice::from_ref(&step.name))?;
                    tc.records.remove(&step.name);
                    shared.emit(NewEvent::step(
                        &target,
                        &step.name,
                        "approval_paused",
                        format!("the run is paused: step `{}` will ask for its approval again on resume", step.name),
                    ))?;
                    return Ok(Flow::Paused(format!("paused while step `{}` waited for approval", step.name)));
                }
                None => None,
            }
        } else {
            Some(fut.await)
        };
        match result {
            None => {
                let ev = NewEvent::step(
                    &target,
                    &step.name,
                    "step_aborted",
                    format!("step `{}` was stopped by the abort", step.name),
                );
                put_state(
                    shared,
                    tc,
                    step,
                    Change::new(StepState::Failed, attempt).error("aborted by the operator").event(ev),
                )?;
                return Ok(Flow::Aborted);
            }
            Some(Ok(outputs)) => {
                let outputs = shared.redactor().redact_json(&Value::Object(outputs));
                let ev =
                    NewEvent::step(&target, &step.name, "step_succeeded", format!("step `{}` succeeded", step.name))
                        .with_data(json!({ "outputs": outputs, "attempt": attempt }));
                put_state(shared, tc, step, Change::new(StepState::Succeeded, attempt).outputs(outputs).event(ev))?;
                return Ok(Flow::Ok);
            }
            Some(Err(e)) => {
                let msg = shared.redactor().redact(&e.to_string());
                let retryable = matches!(e, StepError::Failed(_));
                if n < total && retryable {
                    let wait = step.backoff.saturating_mul(1 << (n - 1).min(16) as u32);
                    shared.emit(
                        NewEvent::step(
                            &target,
                            &step.name,
                            "step_retrying",
                            format!(
                                "attempt {n} of {total} failed: {msg}; retrying in {}",
                                cutover_plan::duration::format(wait)
                            ),
                        )
                        .with_data(json!({ "attempt": attempt, "error": msg })),
                    )?;
                    if mode == Mode::Main {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = wait_abort(&mut abort) => {
                                let ev = NewEvent::step(&target, &step.name, "step_aborted", format!("step `{}` was stopped by the abort while waiting to retry", step.name));
                                put_state(shared, tc, step, Change::new(StepState::Failed, attempt).error("aborted by the operator").event(ev))?;
                                return Ok(Flow::Aborted);
                            }
                        }
                    } else {
                        tokio::time::sleep(wait).await;
                    }
                    continue;
                }
                let ev =
                    NewEvent::step(&target, &step.name, "step_failed", format!("step `{}` failed: {msg}", step.name))
                        .with_data(json!({ "attempt": attempt, "error": msg }));
                put_state(shared, tc, step, Change::new(StepState::Failed, attempt).error(msg.clone()).event(ev))?;
                return Ok(Flow::Fail(format!("step `{}` failed: {msg}", step.name)));
            }
        }
    }
    Ok(Flow::Fail(format!("step `{}` failed", step.name)))
}

async fn wait_abort(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow() {
            return;
        }
        if rx.changed().await.is_err() {
            // The sender is gone: no abort can come any more.
            std::future::pending::<()>().await;
        }
    }
}

/// Outputs as the next steps see them (a convenience for tests and tools).
pub fn outputs_of(records: &[StepRecord]) -> Outputs {
    records.iter().filter(|r| r.state == StepState::Succeeded).map(|r| (r.step.clone(), r.outputs.clone())).collect()
}
