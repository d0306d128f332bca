//! Online int → bigint conversion of a table's primary key and of every
//! foreign key referencing it (GitLab's procedure, with what pgroll and
//! Reshape leave out):
//!
//! 1. **expand** — a `bigint` shadow column per converted column, kept equal
//!    by a trigger; short, retried locks; the high-water mark of each table's
//!    key recorded.
//! 2. **backfill** — keyset batches, one transaction each, the position
//!    saved in the same transaction (so a killed process resumes where it
//!    stopped and loses no batch); batch size steered toward a target
//!    duration; throttled by the operator, the plan's gates, replication lag,
//!    old transactions and active backends.
//! 3. **verify** — no row where a shadow differs from its column.
//! 4. **prepare** — indexes built concurrently, NOT NULL proven by validated
//!    checks, foreign keys added NOT VALID then validated: no lock stopping
//!    writes for longer than a catalog change.
//! 5. **cutover** — one transaction under short `lock_timeout` and
//!    `statement_timeout`, retried with jitter and failing closed: columns,
//!    defaults, sequence, primary key, foreign keys and views swapped; the
//!    trigger turned round so the int columns stay current.
//!
//! Then **rollback** (the same swap backwards, after proving the int columns
//! can hold every key), **contract** (old columns, trigger and indexes
//! dropped) or, before the cut-over, **abort** (everything added dropped).
//!
//! The conversion's state lives in the database (`cutover.bigint_conversions`):
//! its stage, its backfill positions, and what discovery found — so that
//! `--status`, pause and resume work from any process, and a batch and its
//! checkpoint commit together. A session advisory lock keeps two processes
//! from converting the same table at once.

mod backfill;
pub mod discover;
mod run;
pub mod sql;

pub use run::{Action, Summary, run};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The stages of a conversion, in order.
pub const STAGES: &[&str] = &["expand", "backfill", "verify", "prepare", "cutover"];

/// Everything a conversion touches, as discovery found it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Spec {
    /// The parent table, schema-qualified and quoted.
    pub table: String,
    /// Its key column.
    pub column: String,
    /// The parent first, then each table with a foreign key to it.
    pub tables: Vec<TableSpec>,
    pub fks: Vec<discover::FkSpec>,
    /// Views reading a converted column, in creation order.
    pub views: Vec<discover::ViewSpec>,
    /// Triggers of the tables (they fire for each backfilled row).
    pub user_triggers: Vec<String>,
    pub server_major: u32,
}

impl Spec {
    /// Rows the backfill walks, as estimated at discovery (tables with a converted column).
    pub fn rows(&self) -> i64 {
        self.tables.iter().filter(|t| !t.columns.is_empty()).map(|t| t.rows).sum()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TableSpec {
    /// Schema-qualified and quoted.
    pub name: String,
    /// The schema, quoted.
    pub schema: String,
    pub oid: i64,
    /// Its converted columns (none for a child whose column is already bigint).
    pub columns: Vec<discover::ColSpec>,
    /// The key its backfill walks.
    pub key: Vec<discover::KeyCol>,
    /// Indexes holding a converted column.
    pub indexes: Vec<discover::IndexSpec>,
    /// Rows, estimated at discovery.
    pub rows: i64,
}

/// How a conversion runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub table: String,
    pub column: Option<String>,
    /// Stop after this stage (convert only).
    pub until: Option<String>,
    /// Start at this stage (convert only): the stages before it must be done.
    pub from: Option<String>,
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
    /// Tries of a short-lock statement or of the cut-over before failing.
    pub attempts: u32,
    /// The duration a backfill batch aims at.
    pub batch_time: Duration,
    /// The first batch's rows.
    pub batch_rows: u32,
    pub max_replication_lag: Duration,
    pub max_transaction_age: Duration,
    /// Throttle while more than this many other backends are active.
    pub max_active: Option<u32>,
}

impl Options {
    pub fn new(table: impl Into<String>) -> Options {
        Options {
            table: table.into(),
            column: None,
            until: None,
            from: None,
            lock_timeout: Duration::from_millis(500),
            statement_timeout: Duration::from_secs(1),
            attempts: 30,
            batch_time: Duration::from_millis(200),
            batch_rows: 1000,
            max_replication_lag: Duration::from_secs(10),
            max_transaction_age: Duration::from_secs(600),
            max_active: None,
        }
    }
}

/// What a conversion reports while it runs.
#[derive(Clone, Debug)]
pub enum Event {
    Stage {
        stage: String,
        message: String,
    },
    /// A DDL statement that ran, with how long it took.
    Statement {
        sql: String,
        ms: f64,
    },
    /// Backfill progress: rows walked of the estimated total.
    Progress {
        done: i64,
        total: i64,
        table: String,
        batch: i64,
    },
    /// Throttled (Some(reason)) or going on again (None).
    Throttle(Option<String>),
    /// A retry of a statement (or the cut-over) that could not get its lock.
    Retry {
        what: String,
        attempt: u32,
        message: String,
    },
}

pub struct Observer<'a> {
    pub emit: &'a (dyn Fn(Event) + Sync),
    /// While it holds `true` the backfill waits (the plan's pause_when).
    pub hold: Option<tokio::sync::watch::Receiver<bool>>,
}

/// One row of `--status`.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub table: String,
    pub column: String,
    /// The last stage completed ("" before expand; "contract" when finished).
    pub stage: String,
    /// What comes next, as a sentence.
    pub next: String,
    pub paused: bool,
    pub throttle: Option<String>,
    pub rows_done: i64,
    pub rows_total: i64,
    pub started_at: String,
    pub updated_at: String,
    pub history: serde_json::Value,
}

/// What the dry-run shows: what discovery found and the statements of each
/// stage still to run, with their locks.
#[derive(Clone, Debug, Serialize)]
pub struct DryRun {
    pub spec: Spec,
    pub stage: String,
    pub stages: Vec<(String, Vec<sql::Unit>)>,
    pub notes: Vec<String>,
}

pub use run::{dry_run, set_paused, status};
