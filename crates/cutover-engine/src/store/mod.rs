//! Where runs live. The engine only talks to the [`Store`] trait; SQLite is the
//! default (one file, zero setup). A PostgreSQL store for shared and
//! multi-worker use will implement the same trait.
//!
//! Invariant: every method that changes state commits before it returns, so a
//! caller can perform the side effect that follows knowing the record exists.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::model::*;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the state file {path} is locked by another process (waited {waited}); is another cutover running?")]
    Locked { path: String, waited: String },
    #[error(
        "the state file {path} was written by a newer cutover (state schema {found}, this binary knows up to {known}); use a newer cutover"
    )]
    TooNew { path: String, found: i64, known: i64 },
    #[error("cannot open the state file {path}: {message}")]
    Open { path: String, message: String },
    #[error("the state store is not available: {0}")]
    Unsupported(String),
    #[error("no run {0:?} in the state store (see `cutover runs`)")]
    NoSuchRun(String),
    #[error("run {run} has no target {target:?}")]
    NoSuchTarget { run: String, target: String },
    #[error("state store error: {0}")]
    Db(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The operations the engine needs from a store.
pub trait Store: Send + Sync {
    fn create_run(&self, run: &RunRecord, targets: &[(String, String)]) -> Result<()>;
    fn run(&self, id: &str) -> Result<RunRecord>;
    fn runs(&self) -> Result<Vec<RunRecord>>;
    fn set_run_state(&self, id: &str, state: RunState) -> Result<()>;

    fn targets(&self, run: &str) -> Result<Vec<TargetRecord>>;
    fn target(&self, run: &str, target: &str) -> Result<TargetRecord>;
    /// Sets a target's state (stamping its start or end time), and records
    /// `event` in the same transaction, so the log never misses a transition.
    fn set_target_state(
        &self,
        run: &str,
        target: &str,
        state: TargetState,
        message: Option<&str>,
        event: Option<&NewEvent>,
    ) -> Result<Option<Event>>;
    fn set_target_position(&self, run: &str, target: &str, phase: Option<&str>, step: Option<&str>) -> Result<()>;
    fn set_skip_requested(&self, run: &str, target: &str, requested: bool) -> Result<()>;

    fn steps(&self, run: &str, target: &str) -> Result<Vec<StepRecord>>;
    fn all_steps(&self, run: &str) -> Result<Vec<StepRecord>>;
    /// Writes a step record, and `event` in the same transaction.
    fn put_step(&self, run: &str, rec: &StepRecord, event: Option<&NewEvent>) -> Result<Option<Event>>;
    fn delete_steps(&self, run: &str, target: &str, steps: &[String]) -> Result<()>;

    fn append_event(&self, run: &str, ev: &NewEvent) -> Result<Event>;
    /// Events with an id greater than `after`, oldest first.
    fn events(&self, run: &str, after: i64) -> Result<Vec<Event>>;
    /// The first `n` events of a run.
    fn first_events(&self, run: &str, n: usize) -> Result<Vec<Event>>;
    /// The last `n` events of a run, oldest first.
    fn last_events(&self, run: &str, n: usize) -> Result<Vec<Event>>;
    /// A run's events of these kinds, oldest first.
    fn events_of_kinds(&self, run: &str, kinds: &[&str]) -> Result<Vec<Event>>;

    /// Takes the run's lease if it is free, expired, or held by `lease.holder`;
    /// otherwise returns the current holder.
    fn acquire_lease(&self, run: &str, lease: &Lease) -> Result<std::result::Result<(), Lease>>;
    /// Extends the lease; false when another holder took it.
    fn renew_lease(&self, run: &str, holder: &str, expires_at: i64) -> Result<bool>;
    fn release_lease(&self, run: &str, holder: &str) -> Result<()>;
    fn lease(&self, run: &str) -> Result<Option<Lease>>;
    /// Forces the lease to `lease` if the current one still is `expected` (used
    /// to take over from a holder known to be dead).
    fn steal_lease(&self, run: &str, expected: &Lease, lease: &Lease) -> Result<bool>;

    /// The latest result of a check (for a target), and its event if the status changed.
    fn put_check_result(
        &self,
        run: &str,
        check: &str,
        target: Option<&str>,
        result: &serde_json::Value,
        event: Option<&NewEvent>,
    ) -> Result<Option<Event>>;
    fn check_results(&self, run: &str) -> Result<Vec<serde_json::Value>>;
    /// Many check results in one transaction (readings that changed no status).
    fn put_check_results(&self, run: &str, rows: &[(String, Option<String>, serde_json::Value)]) -> Result<()>;
    /// An operator's tick of a manual check, with its event.
    fn add_tick(&self, run: &str, tick: &Tick, event: &NewEvent) -> Result<Event>;
    fn ticks(&self, run: &str, after: i64) -> Result<Vec<Tick>>;

    /// A human's approval of an approve step (for one target, or all when
    /// `target` is None), with its event.
    fn add_approval(&self, run: &str, approval: &Approval, event: &NewEvent) -> Result<Event>;
    fn approval(&self, run: &str, target: &str, step: &str) -> Result<Option<Approval>>;
    /// Withdraws a target's approvals of these steps (a retry asks again);
    /// the events that recorded them stay.
    fn delete_approvals(&self, run: &str, target: &str, steps: &[String]) -> Result<()>;

    fn add_request(
        &self,
        run: &str,
        action: Action,
        target: Option<&str>,
        actor: &str,
        note: Option<&str>,
    ) -> Result<i64>;
    fn pending_requests(&self, run: &str) -> Result<Vec<Request>>;
    fn mark_request_handled(&self, id: i64) -> Result<()>;
    fn request_handled(&self, id: i64) -> Result<bool>;
}

/// Where the state lives by default: `.cutover/state.db` under the working directory.
pub fn default_path() -> PathBuf {
    Path::new(".cutover").join("state.db")
}

/// Opens a store from a URL or a path: `sqlite:PATH`, `sqlite://PATH`, or a
/// plain file path. `postgres://…` is recognised and refused for now.
pub fn open(url: &str) -> Result<Box<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(StoreError::Unsupported(
            "a PostgreSQL state store is not implemented yet; use a SQLite file (the default)".into(),
        ));
    }
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    Ok(Box::new(SqliteStore::open(Path::new(path))?))
}
