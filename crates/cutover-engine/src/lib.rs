//! The durable run engine of cutover. A run's state lives in a [`store::Store`]
//! (SQLite by default); every transition of the run, its targets and steps is
//! committed there before the side effect that follows, and appended to an
//! event log. A killed process resumes where it stopped: finished steps are
//! not repeated, an idempotent step that was in flight runs again, and any
//! other in-flight step puts its target in `needs_attention` for an operator.
//!
//! The engine is quiet: it prints nothing. It emits [`model::Event`]s, which
//! the CLI (and later the tower) present.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let store: Arc<dyn cutover_engine::store::Store> = Arc::from(cutover_engine::store::open(".cutover/state.db")?);
//! let engine = cutover_engine::Engine::new(store);
//! let text = std::fs::read_to_string("plan.toml")?;
//! let plan = cutover_plan::load_file(std::path::Path::new("plan.toml"))?;
//! let run = engine.create_run(&plan, &text)?;
//! let state = engine.drive(&run).await?;
//! println!("{run}: {state}");
//! # Ok(()) }
//! ```
//!
//! Invariants: the engine never prints; it never stores a secret's value (all
//! text bound for the store passes the redactor); only the holder of a run's
//! lease changes its targets' and steps' states.

pub mod checks;
pub mod control;
pub mod model;
pub mod notify;
mod proc;
pub mod progress;
pub mod redact;
pub mod runner;
pub mod schedule;
pub mod secrets;
pub mod steps;
pub mod store;
pub mod watch;

use model::*;
use redact::Redactor;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use store::{Store, StoreError};
use tokio::sync::broadcast;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error("the plan recorded for run {run} no longer validates:\n{diags}")]
    Plan { run: String, diags: cutover_plan::Diagnostics },
    #[error(
        "run {run} is being driven by process {pid} on {host}; wait for it to finish or stop it (`cutover pause {run}`)"
    )]
    Held { run: String, pid: i64, host: String },
    #[error("run {run} has already ended ({state}); start a new run with `cutover run`")]
    Ended { run: String, state: RunState },
    #[error("another process took over run {0} (this process's lease expired); it stopped driving the run")]
    LeaseLost(String),
    #[error("{0}")]
    Other(String),
}

/// The engine: a store, an event stream and this process's identity.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    events: broadcast::Sender<Event>,
    holder: String,
    redactor: Redactor,
    /// Plans parsed from the store, by run: a run's plan text and targets
    /// never change, and a 10,000-target inventory takes a while to parse.
    plans: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<cutover_plan::Plan>>>>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>) -> Engine {
        // One TLS provider for the process; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (events, _) = broadcast::channel(4096);
        let nanos = jiff::Timestamp::now().subsec_nanosecond();
        Engine {
            store,
            events,
            holder: format!("{}:{}:{nanos}", hostname(), std::process::id()),
            redactor: Redactor::default(),
            plans: Arc::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Events as they are recorded (the store has them first).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Records an event (redacted), then tells subscribers.
    pub fn emit(&self, run: &str, ev: NewEvent) -> Result<Event, EngineError> {
        let e = self.store.append_event(run, &self.redacted(ev))?;
        self.publish(&e);
        Ok(e)
    }

    /// An event with every secret hidden, ready for the store.
    pub fn redacted(&self, mut ev: NewEvent) -> NewEvent {
        ev.message = self.redactor.redact(&ev.message);
        ev.data = self.redactor.redact_json(&ev.data);
        ev
    }

    /// Tells subscribers about an event the store has recorded.
    pub fn publish(&self, e: &Event) {
        // No subscriber is fine.
        let _ = self.events.send(e.clone());
    }

    /// Sets a target's state and records the event in one transaction.
    pub fn set_target_state(
        &self,
        run: &str,
        target: &str,
        state: TargetState,
        message: Option<&str>,
        ev: NewEvent,
    ) -> Result<(), EngineError> {
        let message = message.map(|m| self.redactor.redact(m));
        if let Some(e) =
            self.store.set_target_state(run, target, state, message.as_deref(), Some(&self.redacted(ev)))?
        {
            self.publish(&e);
        }
        Ok(())
    }

    /// Records a new run of a validated plan, with its targets as resolved now.
    pub fn create_run(&self, plan: &cutover_plan::Plan, plan_text: &str) -> Result<String, EngineError> {
        let id = new_run_id();
        let ts = now();
        let targets_json = serde_json::to_string(&plan.targets).map_err(|e| EngineError::Other(e.to_string()))?;
        let rec = RunRecord {
            id: id.clone(),
            plan_name: plan.name.clone(),
            plan_path: plan.path.display().to_string(),
            plan_dir: std::path::absolute(&plan.dir).unwrap_or_else(|_| plan.dir.clone()).display().to_string(),
            plan_text: plan_text.to_string(),
            targets_json,
            state: RunState::Running,
            created_at: ts.clone(),
            updated_at: ts,
        };
        let targets: Vec<(String, String)> = plan
            .targets
            .iter()
            .map(|t| (t.name.clone(), serde_json::to_string(&t.labels).unwrap_or_default()))
            .collect();
        self.store.create_run(&rec, &targets)?;
        self.emit(
            &id,
            NewEvent::run("run_created", format!("run of plan `{}` over {} target(s)", plan.name, plan.targets.len()))
                .with_data(serde_json::json!({ "plan": plan.name, "targets": plan.targets.len() })),
        )?;
        Ok(id)
    }

    /// The plan of a recorded run, from the text and targets recorded when it started.
    pub fn load_plan(&self, rec: &RunRecord) -> Result<cutover_plan::Plan, EngineError> {
        let targets: Vec<cutover_plan::Target> = serde_json::from_str(&rec.targets_json)
            .map_err(|e| EngineError::Other(format!("the targets recorded for run {} are unreadable: {e}", rec.id)))?;
        cutover_plan::load_str(&rec.plan_path, &rec.plan_text, Path::new(&rec.plan_dir), Some(targets))
            .map_err(|diags| EngineError::Plan { run: rec.id.clone(), diags })
    }

    /// The run's plan, parsed once per process (for readers such as the tower).
    pub fn plan_of(&self, rec: &RunRecord) -> Result<Arc<cutover_plan::Plan>, EngineError> {
        let cached = self.plans.lock().unwrap_or_else(|p| p.into_inner()).get(&rec.id).cloned();
        if let Some(p) = cached {
            return Ok(p);
        }
        let plan = Arc::new(self.load_plan(rec)?);
        self.plans.lock().unwrap_or_else(|p| p.into_inner()).insert(rec.id.clone(), plan.clone());
        Ok(plan)
    }

    /// Drives a run until all its targets are done, or it is paused or aborted.
    pub async fn drive(&self, run: &str) -> Result<RunState, EngineError> {
        runner::drive(self, run, false, None).await
    }

    /// Drives a run with secrets already read (and registered with this
    /// engine's redactor), so a `command:` secret is not fetched twice.
    pub async fn drive_with_secrets(
        &self,
        run: &str,
        secrets: BTreeMap<String, String>,
    ) -> Result<RunState, EngineError> {
        runner::drive(self, run, false, Some(secrets)).await
    }

    /// Aborts a run that no live process drives: runs the finally steps of
    /// open blocks and records the run as aborted.
    pub async fn abort_undriven(&self, run: &str) -> Result<RunState, EngineError> {
        runner::drive(self, run, true, None).await
    }

    /// Whether a live process holds the run's lease.
    pub fn live_holder(&self, run: &str) -> Result<Option<Lease>, EngineError> {
        Ok(self.store.lease(run)?.filter(|l| {
            // A holder on this host whose process is gone holds nothing.
            l.expires_at > now_ms() && (l.host != hostname() || proc::alive(l.pid))
        }))
    }
}

fn new_run_id() -> String {
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let salt = (now.timestamp().subsec_nanosecond() as u32) ^ std::process::id().rotate_left(16);
    format!("{}-{:04x}", now.strftime("%Y%m%d-%H%M%S"), salt & 0xffff)
}

/// `user@host`: who runs this process, for records of who did something.
pub fn user_at_host() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", hostname())
}

/// `user@host (pid N)`: this process.
pub fn this_process() -> String {
    format!("{} (pid {})", user_at_host(), std::process::id())
}

/// This host's name, for leases and messages.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
