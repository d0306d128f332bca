//! The driver of a run: schedules targets within the concurrency limits and
//! the `after` order, walks each target's phases and steps, records every
//! transition before the side effect that follows it, and answers operator
//! requests. Only the process holding the run's lease drives it.

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
    });
    let resumed = rec.created_at != rec.updated_at || rec.state != RunState::Running;
    engine.store.set_run_state(run_id, RunState::Running)?;
    shared.emit(NewEvent::run(
        if resumed { "run_resumed" } else { "run_started" },
        format!("process {} on {} drives the run", std::process::id(), crate::hostname()),
    ))?;
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
        if let Some(c) = checks {
            if now_ms() - last_phase_check >= 1000 {
                last_phase_check = now_ms();
                c.set_phase(current_phase(plan, &store.targets(run_id)?));
            }
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
        if running.is_empty() {
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
                states.insert(name, end);
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
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

#[derive(Clone, Copy, PartialEq)]
enum GateKind {
    /// Wait until the expression holds.
    Proceed,
    /// Wait while the expression holds (throttle).
    Pause,
}

enum GateValue {
    Holds,
    Clear,
    Error(String),
}

fn eval_gate(e: &cutover_plan::Expr, ctx: &Value) -> GateValue {
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
fn gate_ctx(shared: &Shared, tc: &TargetCtx<'_>) -> Value {
    let mut v = context(shared, tc);
    let run = run_ctx(shared);
    if let (Some(o), Some(r)) = (v.as_object_mut(), run.as_object()) {
        for (k, x) in r {
            o.insert(k.clone(), x.clone());
        }
        o.insert("checks".into(), checks_ctx(shared, Some(&tc.target.name)));
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

/// Waits at a gate: until it holds (proceed) or while it holds (pause).
/// Operator pause and abort still work; a gate that cannot be evaluated more
/// than `error_limit` times in a row puts the target in needs_attention.
async fn hold_gate(
    shared: &Arc<Shared>,
    tc: &TargetCtx<'_>,
    phase: &cutover_plan::Phase,
    g: &cutover_plan::Expr,
    kind: GateKind,
) -> Result<Flow, EngineError> {
    let target = tc.target.name.clone();
    let (what, waiting_kind, done_kind) = match kind {
        GateKind::Proceed => ("proceed_when", "gate_waiting", "gate_passed"),
        GateKind::Pause => ("pause_when", "target_throttled", "throttle_cleared"),
    };
    let mut waited = false;
    let mut errors = 0u32;
    loop {
        if *shared.abort.borrow() {
            return Ok(Flow::Aborted);
        }
        if shared.pause.load(Ordering::SeqCst) {
            return Ok(Flow::Paused(format!("paused at the {what} gate of phase `{}`", phase.name)));
        }
        let verdict = eval_gate(g, &gate_ctx(shared, tc));
        let pass = match (&verdict, kind) {
            (GateValue::Holds, GateKind::Proceed) | (GateValue::Clear, GateKind::Pause) => true,
            (GateValue::Error(e), _) => {
                errors += 1;
                if errors > phase.gates.error_limit {
                    let msg = format!(
                        "the {what} gate of phase `{}` could not be evaluated {errors} times in a row: {e}",
                        phase.name
                    );
                    shared.emit(NewEvent::target(&target, "gate_error", msg.clone()))?;
                    return Ok(Flow::Attention(msg));
                }
                false
            }
            _ => {
                errors = 0;
                false
            }
        };
        if pass {
            if waited {
                shared.emit(
                    NewEvent::target(
                        &target,
                        done_kind,
                        format!("{what} of phase `{}`: {} — going on", phase.name, g.source),
                    )
                    .with_data(json!({ "gate": g.source, "phase": phase.name })),
                )?;
            }
            return Ok(Flow::Ok);
        }
        if !waited {
            waited = true;
            let msg = match kind {
                GateKind::Proceed => format!("waiting for {what} of phase `{}`: {}", phase.name, g.source),
                GateKind::Pause => format!("throttled: {}", g.source),
            };
            shared.emit(
                NewEvent::target(&target, waiting_kind, msg)
                    .with_data(json!({ "gate": g.source, "phase": phase.name })),
            )?;
        }
        tokio::time::sleep(phase.gates.interval).await;
    }
}

/// Whether a target already began a phase (some step of it has a record).
fn phase_started(phase: &cutover_plan::Phase, tc: &TargetCtx<'_>) -> bool {
    let mut started = false;
    for s in &phase.steps {
        s.walk(&mut |x| started |= tc.records.contains_key(&x.name));
    }
    started
}

/// The first phase whose abort_when holds while unfinished targets are in it.
fn abort_gate(shared: &Shared, errors_seen: &mut Vec<String>) -> Result<Option<String>, EngineError> {
    let gated: Vec<&cutover_plan::Phase> = shared.plan.phases.iter().filter(|p| p.gates.abort_when.is_some()).collect();
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
struct WavesSeen {
    passed: Vec<usize>,
    failed: Option<usize>,
}

/// The highest wave whose targets may start, or None once a wave failed
/// (more than max_fail_percent of it failed): no new target starts then.
fn wave_gate(
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
        let pct = failed as f64 * 100.0 / members.len().max(1) as f64;
        if pct > f64::from(shared.plan.max_fail_percent) {
            seen.failed = Some(w);
            shared.emit(
                NewEvent::run(
                    "wave_failed",
                    format!(
                        "wave {} failed: {failed} of {} targets failed ({pct:.0} % > {} %); no further wave starts",
                        w + 1,
                        members.len(),
                        shared.plan.max_fail_percent
                    ),
                )
                .with_data(json!({ "wave": w + 1, "failed": failed, "size": members.len() })),
            )?;
            return Ok(None);
        }
        seen.passed.push(w);
        shared.emit(
            NewEvent::run(
                "wave_passed",
                format!(
                    "wave {} passed: {failed} of {} targets failed (limit {} %)",
                    w + 1,
                    members.len(),
                    shared.plan.max_fail_percent
                ),
            )
            .with_data(json!({ "wave": w + 1, "failed": failed, "size": members.len() })),
        )?;
    }
    Ok(Some(last))
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
        if let Some(g) = &phase.gates.proceed_when
            && !phase_started(phase, &tc)
        {
            match hold_gate(shared, &tc, phase, g, GateKind::Proceed).await? {
                Flow::Ok => {}
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
                match hold_gate(shared, tc, phase, g, GateKind::Pause).await? {
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
            tokio::select! {
                r = fut => Some(r),
                _ = wait_abort(&mut abort) => None,
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
