//! Runs a plan's checks on their intervals for one run: each (check, target)
//! pair is probed by its own task; its status goes through the plan's
//! conditions for the current phase and through its tracker; every result is
//! stored, and every change of the shown status is an event.

use super::eval::{self, Reading};
use super::status::{Status, Timing, Tracker};
use super::{ProbeCtx, Prober};
use crate::Engine;
use crate::model::{NewEvent, Tick, now_ms};
use cutover_plan::{Check, CheckKind, CheckScope, Plan, Target};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::task::JoinSet;

/// What the tower and the CLI show of one check (for one target).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckView {
    pub check: String,
    pub target: Option<String>,
    pub kind: String,
    pub status: Status,
    /// The status of the latest reading alone (before for/keep_for).
    pub raw: Status,
    pub value: Value,
    pub message: Option<String>,
    /// When the latest reading arrived (RFC 3339), if any.
    pub reading_at: Option<String>,
    pub reading_ms: Option<i64>,
    pub stale_after_ms: i64,
    pub href: Option<String>,
    pub phase: Option<String>,
    pub extras: serde_json::Map<String, Value>,
}

struct Entry {
    tracker: Tracker,
    timing: Timing,
    view: CheckView,
}

type Key = (String, String);

/// The phase whose expectations apply: the run's, or a target's own for a
/// target-scoped check once the driver says where that target is.
#[derive(Default)]
struct Phases {
    run: Option<String>,
    targets: std::collections::HashMap<String, String>,
}

impl Phases {
    fn of(&self, target: &str) -> Option<String> {
        self.targets.get(target).cloned().or_else(|| self.run.clone())
    }
}

/// The checks of one run, probed in the background until dropped.
pub struct CheckRunner {
    engine: Engine,
    run_id: String,
    plan: Arc<Plan>,
    secrets: Arc<BTreeMap<String, String>>,
    states: Arc<Mutex<BTreeMap<Key, Entry>>>,
    phase: Arc<RwLock<Phases>>,
    dirty: Arc<Mutex<BTreeMap<Key, Value>>>,
    tasks: JoinSet<()>,
}

impl Drop for CheckRunner {
    fn drop(&mut self) {
        // The last readings are kept for the record.
        let _ = self.handle().flush();
    }
}

fn timing(c: &Check) -> Timing {
    // A tick holds until an operator changes it: a manual check is never stale.
    let stale_after = (!matches!(c.kind, CheckKind::Manual)).then_some(c.stale_after);
    Timing { hold_for: c.hold_for, keep_for: c.keep_for, stale_after }
}

impl CheckRunner {
    /// Starts probing every check of `plan` (once per target for target-scoped ones).
    pub fn start(
        engine: &Engine,
        run_id: &str,
        plan: Arc<Plan>,
        secrets: Arc<BTreeMap<String, String>>,
    ) -> CheckRunner {
        let mut r = CheckRunner {
            engine: engine.clone(),
            run_id: run_id.to_string(),
            plan: plan.clone(),
            secrets,
            states: Arc::default(),
            phase: Arc::default(),
            dirty: Arc::default(),
            tasks: JoinSet::new(),
        };
        // Every check shows from the start (no data yet), a manual one with
        // its buttons before the first tick.
        {
            let initial: Vec<(String, Option<String>, Value)> = r
                .lock()
                .values()
                .map(|e| {
                    (e.view.check.clone(), e.view.target.clone(), serde_json::to_value(&e.view).unwrap_or(Value::Null))
                })
                .collect();
            let _ = engine.store().put_check_results(run_id, &initial);
        }
        let flusher = r.handle();
        r.tasks.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                // A busy store is tried again at the next second.
                let _ = flusher.flush();
                let _ = flusher.sweep_stale();
            }
        });
        let http = reqwest::Client::builder()
            .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        for c in &plan.checks {
            let targets: Vec<Option<Target>> = match c.scope {
                CheckScope::Run => vec![None],
                CheckScope::Target => plan.targets.iter().cloned().map(Some).collect(),
            };
            for t in targets {
                let key = (c.name.clone(), t.as_ref().map(|t| t.name.clone()).unwrap_or_default());
                let now = now_ms();
                r.lock().insert(
                    key.clone(),
                    Entry { tracker: Tracker::new(now), timing: timing(c), view: r.empty_view(c, t.as_ref()) },
                );
                if matches!(c.kind, CheckKind::Manual) {
                    continue;
                }
                let task = ProbeTask {
                    runner: r.handle(),
                    prober: Prober::new(c.clone()),
                    target: t,
                    key,
                    http: http.clone(),
                };
                r.tasks.spawn(task.run());
            }
        }
        r
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Entry>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handle(&self) -> Handle {
        Handle {
            engine: self.engine.clone(),
            run_id: self.run_id.clone(),
            plan: self.plan.clone(),
            secrets: self.secrets.clone(),
            states: self.states.clone(),
            phase: self.phase.clone(),
            dirty: self.dirty.clone(),
        }
    }

    fn empty_view(&self, c: &Check, t: Option<&Target>) -> CheckView {
        CheckView {
            check: c.name.clone(),
            target: t.map(|t| t.name.clone()),
            kind: c.kind.name().into(),
            status: Status::NoData,
            raw: Status::NoData,
            value: Value::Null,
            message: None,
            reading_at: None,
            reading_ms: None,
            stale_after_ms: c.stale_after.as_millis() as i64,
            href: None,
            phase: None,
            extras: Default::default(),
        }
    }

    /// The phase whose expectations apply from now on.
    pub fn set_phase(&self, phase: Option<&str>) {
        self.phase.write().unwrap_or_else(|p| p.into_inner()).run = phase.map(str::to_string);
    }

    /// Where each target is: a target-scoped check of that target follows
    /// that target's phase, not the run's.
    pub fn set_target_phases(&self, phases: std::collections::HashMap<String, String>) {
        self.phase.write().unwrap_or_else(|p| p.into_inner()).targets = phases;
    }

    /// Every check as shown at `now` (stale results are shown stale).
    pub fn snapshot(&self, now: i64) -> Vec<CheckView> {
        self.lock()
            .values()
            .map(|e| {
                let mut v = e.view.clone();
                v.status = e.tracker.shown(now, e.timing);
                v
            })
            .collect()
    }

    /// Whether every listed check is ok now (for every target it runs for),
    /// judged under the current phase's expectations: a reading taken before
    /// the phase changed does not count.
    pub fn all_ok(&self, names: &[String], now: i64) -> bool {
        let phases = self.phase.read().unwrap_or_else(|p| p.into_inner());
        let states = self.lock();
        names.iter().all(|n| {
            let mut any = false;
            let ok = states.iter().filter(|((c, _), _)| c == n).all(|((_, t), e)| {
                any = true;
                e.tracker.shown(now, e.timing) == Status::Ok
                    && (e.view.kind == "manual" || e.view.phase == phases.of(t))
            });
            any && ok
        })
    }

    /// An operator's tick of a manual check becomes its reading.
    pub fn apply_tick(&self, tick: &Tick) -> Result<(), crate::EngineError> {
        let reading = Reading { value: Value::Bool(tick.ok), extras: Default::default(), default_ok: tick.ok };
        let (raw, msg) = if tick.ok {
            (Status::Ok, None)
        } else {
            (Status::Alarm, Some(format!("ticked not ok by {}", tick.actor)))
        };
        let key = (tick.check.clone(), tick.target.clone().unwrap_or_default());
        self.handle().record(&key, now_ms(), raw, Ok(reading), msg)
    }
}

/// What a probe task needs of the runner.
#[derive(Clone)]
struct Handle {
    engine: Engine,
    run_id: String,
    plan: Arc<Plan>,
    secrets: Arc<BTreeMap<String, String>>,
    states: Arc<Mutex<BTreeMap<Key, Entry>>>,
    phase: Arc<RwLock<Phases>>,
    dirty: Arc<Mutex<BTreeMap<Key, Value>>>,
}

impl Handle {
    /// Writes the readings that changed no status since the last flush.
    fn flush(&self) -> Result<(), crate::EngineError> {
        let batch = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, Option<String>, Value)> =
            batch.into_iter().map(|((c, t), v)| (c, (!t.is_empty()).then_some(t), v)).collect();
        self.engine.store().put_check_results(&self.run_id, &rows)?;
        Ok(())
    }

    /// A check whose probe stopped answering goes stale with nobody
    /// reading it: the change is recorded (with its event) when it happens,
    /// not when the next reading comes.
    fn sweep_stale(&self) -> Result<(), crate::EngineError> {
        let now = now_ms();
        let gone: Vec<(Status, CheckView)> = {
            let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
            states
                .values_mut()
                .filter_map(|e| {
                    let shown = e.tracker.shown(now, e.timing);
                    (shown == Status::Stale && e.view.status != Status::Stale).then(|| {
                        let from = e.view.status;
                        e.view.status = shown;
                        (from, e.view.clone())
                    })
                })
                .collect()
        };
        for (from, view) in gone {
            let age = view.reading_ms.map(|r| (now - r) / 1000).unwrap_or(0);
            let who = view.target.as_deref().map(|t| format!(" for `{t}`")).unwrap_or_default();
            let ev = NewEvent {
                target: view.target.clone(),
                step: None,
                kind: "check_status",
                message: format!(
                    "check `{}`{who} is stale (was {from}): no reading for {age} s (stale after {} s)",
                    view.check,
                    view.stale_after_ms / 1000
                ),
                data: json!({ "check": view.check, "from": from, "to": Status::Stale, "value": view.value }),
            };
            let result = serde_json::to_value(&view).unwrap_or(Value::Null);
            let ev = self.engine.redacted(ev);
            if let Some(e) = self.engine.store().put_check_result(
                &self.run_id,
                &view.check,
                view.target.as_deref(),
                &result,
                Some(&ev),
            )? {
                self.engine.publish(&e);
            }
        }
        Ok(())
    }

    /// The phase for a target ("" for a run-scoped check).
    fn phase(&self, target: &str) -> Option<String> {
        self.phase.read().unwrap_or_else(|p| p.into_inner()).of(target)
    }

    fn context(&self, t: Option<&Target>) -> Value {
        let empty = Target::default();
        let mut ctx = cutover_plan::context(t.unwrap_or(&empty), &self.plan.vars, &Default::default());
        if let Some(o) = ctx.as_object_mut() {
            o.insert("phase".into(), json!({ "name": self.phase(t.map(|t| t.name.as_str()).unwrap_or_default()) }));
            o.insert("secrets".into(), json!(*self.secrets));
            if t.is_none() {
                o.remove("name");
                o.remove("target");
                o.remove("labels");
            }
        }
        ctx
    }

    /// Records a reading's outcome; an event when the shown status changes.
    fn record(
        &self,
        key: &Key,
        now: i64,
        raw: Status,
        reading: Result<Reading, String>,
        message: Option<String>,
    ) -> Result<(), crate::EngineError> {
        let (view, change) = {
            let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
            let Some(e) = states.get_mut(key) else { return Ok(()) };
            let change = e.tracker.observe(now, raw, e.timing);
            e.view.raw = raw;
            e.view.status = e.tracker.shown(now, e.timing);
            e.view.reading_ms = Some(now);
            e.view.reading_at = jiff::Timestamp::from_millisecond(now).ok().map(|t| t.to_string());
            e.view.phase = self.phase(&key.1);
            e.view.message = message.map(|m| self.engine.redactor().redact(&m));
            match reading {
                Ok(r) => {
                    e.view.value = self.engine.redactor().redact_json(&r.value);
                    e.view.extras = match self.engine.redactor().redact_json(&Value::Object(r.extras)) {
                        Value::Object(o) => o,
                        _ => Default::default(),
                    };
                }
                Err(_) => e.view.value = Value::Null,
            }
            (e.view.clone(), change)
        };
        let target = view.target.as_deref();
        let event = change.map(|(from, to)| {
            let who = target.map(|t| format!(" for `{t}`")).unwrap_or_default();
            let why = view.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            NewEvent {
                target: target.map(str::to_string),
                step: None,
                kind: "check_status",
                message: format!("check `{}`{who} is {to} (was {from}){why}", view.check),
                data: json!({ "check": view.check, "from": from, "to": to, "value": view.value }),
            }
        });
        let result = serde_json::to_value(&view).unwrap_or(Value::Null);
        match event {
            // A change of status is a transition: recorded at once, with its event.
            Some(e) => {
                // An older pending reading must not overwrite this one at the next flush.
                self.dirty.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
                let e = self.engine.redacted(e);
                if let Some(ev) =
                    self.engine.store().put_check_result(&self.run_id, &view.check, target, &result, Some(&e))?
                {
                    self.engine.publish(&ev);
                }
            }
            // A new value with the same status waits for the next flush: one
            // transaction a second for every check, not one per reading.
            None => {
                self.dirty.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), result);
            }
        }
        Ok(())
    }
}

struct ProbeTask {
    runner: Handle,
    prober: Prober,
    target: Option<Target>,
    key: Key,
    http: reqwest::Client,
}

impl ProbeTask {
    async fn run(mut self) {
        let check = self.prober.check().clone();
        let href = check.href.clone();
        loop {
            let started = tokio::time::Instant::now();
            let now = now_ms();
            let ctx = self.runner.context(self.target.as_ref());
            let dir = self.runner.plan.dir.clone();
            let pctx = ProbeCtx { vars: &ctx, dir: &dir, redactor: self.runner.engine.redactor(), http: &self.http };
            if let Some(h) = &href
                && let Ok(link) = pctx.render(h, "href")
                && let Some(e) = self.runner.states.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&self.key)
            {
                e.view.href = Some(link);
            }
            let result = self.prober.probe(&pctx, now).await;
            let phase = self.runner.phase(&self.key.1);
            let (raw, message) = match &result {
                Ok(r) => eval::classify(check.conditions_for(phase.as_deref()), r, &ctx),
                Err(e) => (Status::Error, Some(e.clone())),
            };
            // A store that cannot be written now is retried at the next probe.
            let _ = self.runner.record(&self.key, now_ms(), raw, result, message);
            tokio::time::sleep_until(started + check.interval).await;
        }
    }
}
