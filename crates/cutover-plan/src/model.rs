//! The typed plan, built from a tree that passed the shape check.

use crate::diag::Pos;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub type Vars = serde_json::Map<String, serde_json::Value>;

/// A CEL expression as written, with where it was written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expr {
    pub source: String,
    #[serde(skip)]
    pub pos: Pos,
}

/// A template string as written (rendered per target at run time).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Template {
    pub source: String,
    #[serde(skip)]
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub name: String,
    pub description: Option<String>,
    /// The plan file, as given.
    pub path: PathBuf,
    /// The directory relative paths are resolved from.
    pub dir: PathBuf,
    pub select: Option<Expr>,
    pub vars: Vars,
    pub secrets: Vec<SecretDef>,
    pub concurrency: Concurrency,
    /// Every target of the inventory, before `select`.
    pub all_targets: Vec<Target>,
    /// The targets the plan applies to (those `select` keeps), in inventory order.
    pub targets: Vec<Target>,
    pub phases: Vec<Phase>,
    pub checks: Vec<Check>,
    /// Cumulative wave sizes; empty means one wave of every target.
    pub waves: Vec<WaveSize>,
    pub max_fail_percent: u32,
    /// The gate between waves.
    pub wave_gate: WaveGate,
    pub notify: Vec<Notify>,
    /// Maintenance windows, notice and estimates (`[schedule]`).
    pub schedule: crate::schedule::Schedule,
    /// Problems that do not stop the plan (shown by validate, plan and run).
    #[serde(skip)]
    pub warnings: Vec<crate::Diagnostic>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SecretDef {
    pub name: String,
    /// `env:NAME`, `file:PATH` or `command:CMD` — a reference, never a value.
    pub reference: String,
    #[serde(skip)]
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Concurrency {
    pub limit: u32,
    pub per_label: BTreeMap<String, u32>,
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency { limit: 4, per_label: BTreeMap::new() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Target {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub vars: Vars,
    #[serde(default)]
    pub after: Vec<String>,
    /// Maintenance windows as written ("Thu 01:00-05:00 Europe/Zurich");
    /// parsed by `schedule::target_schedule`.
    #[serde(default, rename = "window", skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
    /// When the target's owners were notified (RFC 3339, as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<String>,
    /// The target's size as written: bytes, or "12GB".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(skip)]
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Phase {
    pub name: String,
    pub description: Option<String>,
    pub steps: Vec<Step>,
    /// Checks that must be ok for the phase to be complete.
    pub checks: Vec<String>,
    pub gates: Gates,
    pub rollback: Vec<Step>,
    /// Whether the phase is part of the maintenance window (the service is
    /// down while a target is in it); `cutover report` measures downtime
    /// over these phases.
    pub downtime: bool,
    #[serde(skip)]
    pub pos: Pos,
}

/// A phase's go/no-go decisions, in CEL over checks, progress, run and target.
#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct Gates {
    pub proceed_when: Option<Expr>,
    pub pause_when: Option<Expr>,
    pub rollback_when: Option<Expr>,
    pub abort_when: Option<Expr>,
    /// A measurement of the proceed gate fails when this holds.
    pub fail_when: Option<Expr>,
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// Consecutive evaluation errors tolerated.
    pub error_limit: u32,
    /// Measurements the proceed gate takes before it decides (Argo's
    /// `count`); None: it passes at the first success.
    pub count: Option<u32>,
    /// Failed measurements tolerated; one more fails the target.
    pub failure_limit: u32,
    /// Inconclusive measurements tolerated; one more holds the target for a human.
    pub inconclusive_limit: u32,
}

/// The gate between waves: the next wave starts once the previous one
/// settled, kept `max_fail_percent` and this gate passed.
#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct WaveGate {
    pub proceed_when: Option<Expr>,
    pub fail_when: Option<Expr>,
}

/// A webhook.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notify {
    pub name: String,
    pub url: Template,
    /// "json" or "slack".
    pub format: String,
    /// Event groups; empty means all.
    pub on: Vec<String>,
    pub headers: BTreeMap<String, Template>,
}

/// One entry of `waves`: a number of targets or a percentage, cumulative.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum WaveSize {
    Count(u32),
    Percent(f64),
}

impl Plan {
    /// The wave of each selected target, by position (0-based).
    pub fn wave_of(&self) -> Vec<usize> {
        let n = self.targets.len();
        if self.waves.is_empty() {
            return vec![0; n];
        }
        let mut ends: Vec<usize> = self
            .waves
            .iter()
            .map(|w| match w {
                WaveSize::Count(c) => (*c as usize).min(n),
                WaveSize::Percent(p) => ((n as f64) * p / 100.0).ceil() as usize,
            })
            .collect();
        // Cumulative and growing; the last wave takes everything left.
        for i in 1..ends.len() {
            ends[i] = ends[i].max(ends[i - 1]);
        }
        if let Some(last) = ends.last_mut() {
            *last = n;
        }
        (0..n).map(|i| ends.iter().position(|e| i < *e).unwrap_or(ends.len() - 1)).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub name: String,
    pub description: Option<String>,
    pub when: Option<Expr>,
    #[serde(serialize_with = "ser_opt_duration")]
    pub timeout: Option<Duration>,
    pub retries: u32,
    #[serde(serialize_with = "ser_duration")]
    pub backoff: Duration,
    /// Whether the step may be re-run after a crash left it in flight.
    pub idempotent: bool,
    #[serde(flatten)]
    pub kind: StepKind,
    #[serde(skip)]
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StepKind {
    Exec(ExecStep),
    Sql(SqlStep),
    Http(HttpStep),
    Wait(WaitStep),
    Approve(ApproveStep),
    Block(BlockStep),
    PgPreflight(PgPreflightStep),
    PgVerify(PgVerifyStep),
    PgCopy(PgCopyStep),
    PgBackup(PgBackupStep),
    PgRestore(PgRestoreStep),
    PgBigint(PgBigintStep),
    PgMigrate(PgMigrateStep),
}

/// `pg.copy`: copy a database to a server of another major version.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PgCopyStep {
    pub dsn: Template,
    pub target_dsn: Template,
    /// "fast" or "dump".
    pub method: String,
    pub jobs: u32,
    pub split_mb: u32,
    pub no_owner: bool,
    pub pg_bin: Option<String>,
    pub maintenance_work_mem: String,
}

/// `pg.bigint`: an online int → bigint conversion of a table's primary key and
/// every foreign key referencing it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PgBigintStep {
    /// The database (default "{{ vars.dsn }}").
    pub dsn: Template,
    /// The table whose key is converted, optionally schema-qualified.
    pub table: Template,
    /// The column to convert; None: the primary key's column.
    pub column: Option<Template>,
    /// "convert" (default), "rollback", "contract" or "abort" (see `PG_BIGINT_ACTIONS`).
    pub action: String,
    /// The last stage to run (`PG_BIGINT_STAGES`); None: all of them. Only with action = "convert".
    pub until: Option<String>,
    /// The first stage to run (`PG_BIGINT_STAGES`); None: where the database's state says. Only with
    /// action = "convert".
    pub from: Option<String>,
    /// Wait for `cutover approve RUN STEP` right before the cut-over.
    pub approve_cutover: bool,
    /// lock_timeout of every statement that takes a lock (default 500ms, at most 10s).
    #[serde(serialize_with = "ser_duration")]
    pub lock_timeout: Duration,
    /// statement_timeout of the short-lock statements and the cut-over (default 1s, at most 10s).
    #[serde(serialize_with = "ser_duration")]
    pub statement_timeout: Duration,
    /// Tries of each short-lock statement and of the cut-over (default 30).
    pub attempts: u32,
    /// Target duration of one backfill batch (default 200ms).
    #[serde(serialize_with = "ser_duration")]
    pub batch_time: Duration,
    /// Rows of the first backfill batch (default 1000).
    pub batch_rows: u32,
    /// The backfill pauses while a replica lags more than this (default 10s).
    #[serde(serialize_with = "ser_duration")]
    pub max_replication_lag: Duration,
    /// The backfill pauses while another transaction is older than this (default 10m).
    #[serde(serialize_with = "ser_duration")]
    pub max_transaction_age: Duration,
    /// The backfill pauses while more than this many other backends are active (default: off).
    pub max_active: Option<u32>,
}

/// `pg.migrate`: a directory of versioned migrations (golang-migrate's
/// layout) applied to the target's database by cutover-migrate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PgMigrateStep {
    /// The database to migrate.
    pub dsn: Template,
    /// The migrations: a directory relative to the plan's directory, or
    /// `git:PATH_OR_URL#REF:DIR`, passed to cutover-migrate as it is.
    pub dir: String,
    /// Where `dir`'s value is in the plan (the step's position when it is missing), for diagnostics.
    #[serde(skip)]
    pub dir_pos: Pos,
    /// Go up or down to exactly this version (0: nothing applied); None: up to the newest.
    pub to: Option<u64>,
    /// Apply a pending file older than the current version instead of refusing.
    pub allow_out_of_order: bool,
    /// Go on when an applied file was edited since (its checksum differs).
    pub allow_changed: bool,
    /// golang-migrate's table in the connection's schema (its
    /// `x-migrations-table`); None: `schema_migrations`.
    pub golang_migrate_table: Option<String>,
    /// How long to wait for another runner's migration lock on the same database (default 30s).
    #[serde(serialize_with = "ser_duration")]
    pub lock_wait: Duration,
    /// `lock_timeout` of the migrations' statements; None: the server's.
    #[serde(serialize_with = "ser_opt_duration")]
    pub lock_timeout: Option<Duration>,
    /// `statement_timeout` of the migrations' statements; None: the server's.
    #[serde(serialize_with = "ser_opt_duration")]
    pub statement_timeout: Option<Duration>,
    /// Lint the pending files first and refuse to apply any of them when one has a lint error.
    pub lint: bool,
}

/// `pg.backup`: a pg_dump archive in a backups directory, with a manifest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PgBackupStep {
    pub dsn: Template,
    pub dir: Template,
    pub pg_bin: Option<String>,
}

/// `pg.restore`: a backup from the manifest, restored into a database.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PgRestoreStep {
    pub from: Template,
    pub target_dsn: Template,
    pub dir: Template,
    pub jobs: u32,
    pub clean: bool,
    pub no_owner: bool,
    pub pg_bin: Option<String>,
}

/// `pg.verify`: compare a database with its copy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PgVerifyStep {
    pub dsn: Template,
    pub target_dsn: Template,
}

/// `pg.preflight`: what would fail or hurt when the database moves to
/// another major version.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PgPreflightStep {
    pub dsn: Template,
    pub target_dsn: Option<Template>,
    pub target_version: Option<u32>,
    pub ignore: Vec<String>,
    /// The lowest severity that fails the step: "blocker", "warning" or "info".
    pub fail_on: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApproveStep {
    pub message: Option<Template>,
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Exec(_) => "exec",
            StepKind::Sql(_) => "sql",
            StepKind::Http(_) => "http",
            StepKind::Wait(_) => "wait",
            StepKind::Approve(_) => "approve",
            StepKind::Block(_) => "block",
            StepKind::PgPreflight(_) => "pg.preflight",
            StepKind::PgVerify(_) => "pg.verify",
            StepKind::PgCopy(_) => "pg.copy",
            StepKind::PgBackup(_) => "pg.backup",
            StepKind::PgRestore(_) => "pg.restore",
            StepKind::PgBigint(_) => "pg.bigint",
            StepKind::PgMigrate(_) => "pg.migrate",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// Run by `sh -c`.
    Shell(Template),
    /// Run directly, no shell.
    Argv(Vec<Template>),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExecStep {
    pub command: Command,
    pub env: BTreeMap<String, Template>,
    pub cwd: Option<Template>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SqlStatement {
    pub sql: String,
    pub params: Vec<Template>,
    #[serde(skip)]
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SqlStep {
    pub dsn: Template,
    pub statements: Vec<SqlStatement>,
    pub transaction: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpStep {
    pub method: String,
    pub url: Template,
    pub headers: BTreeMap<String, Template>,
    pub body: Option<Template>,
    /// Empty means any 2xx.
    pub expect_status: Vec<u16>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WaitStep {
    pub until: Expr,
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    pub probe: Option<Box<Step>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BlockStep {
    pub steps: Vec<Step>,
    pub finally: Vec<Step>,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::duration::format(*d))
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

impl Plan {
    /// Every step of the plan in document order (phases' steps, blocks' inner and
    /// `finally` steps, wait probes, then rollback steps), with its phase index.
    pub fn all_steps(&self) -> Vec<(usize, &Step)> {
        let mut out = vec![];
        for (i, p) in self.phases.iter().enumerate() {
            for s in p.steps.iter().chain(p.rollback.iter()) {
                s.walk(&mut |st| out.push((i, st)));
            }
        }
        out
    }

    pub fn step(&self, name: &str) -> Option<&Step> {
        self.all_steps().into_iter().map(|(_, s)| s).find(|s| s.name == name)
    }

    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }
}

impl Step {
    /// Calls `f` on this step and every step nested in it, in document order.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Step)) {
        f(self);
        match &self.kind {
            StepKind::Block(b) => {
                for s in b.steps.iter().chain(b.finally.iter()) {
                    s.walk(f);
                }
            }
            StepKind::Wait(w) => {
                if let Some(p) = &w.probe {
                    p.walk(f);
                }
            }
            _ => {}
        }
    }
}

/// A check (probe): a measurement with a status, on an interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    pub description: Option<String>,
    pub scope: CheckScope,
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub stale_after: Duration,
    pub href: Option<Template>,
    /// The expectation outside the phases named in `expect`.
    pub conditions: Conditions,
    /// Expectations by phase name.
    pub expect: BTreeMap<String, Conditions>,
    #[serde(rename = "for", serialize_with = "ser_opt_duration")]
    pub hold_for: Option<Duration>,
    #[serde(serialize_with = "ser_opt_duration")]
    pub keep_for: Option<Duration>,
    #[serde(flatten)]
    pub kind: CheckKind,
    #[serde(skip)]
    pub pos: Pos,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckScope {
    Run,
    Target,
}

#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct Conditions {
    pub ok: Option<Expr>,
    pub warn: Option<Expr>,
    pub alarm: Option<Expr>,
    pub range: Option<(Option<f64>, Option<f64>)>,
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        self.ok.is_none() && self.warn.is_none() && self.alarm.is_none() && self.range.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CheckKind {
    Http {
        url: Template,
        method: String,
        headers: BTreeMap<String, Template>,
        json_path: Option<String>,
        body_regex: Option<String>,
    },
    Sql {
        dsn: Template,
        query: Option<String>,
        params: Vec<Template>,
        preset: Option<String>,
    },
    Tcp {
        address: Template,
    },
    Command {
        command: Command,
        env: BTreeMap<String, Template>,
    },
    Prometheus {
        url: Template,
        query: String,
    },
    Log {
        file: Option<Template>,
        command: Option<String>,
        steps: Vec<(String, String)>,
        heartbeat: Option<String>,
        #[serde(serialize_with = "ser_duration")]
        liveness: Duration,
    },
    Manual,
}

impl CheckKind {
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Http { .. } => "http",
            CheckKind::Sql { .. } => "sql",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Command { .. } => "command",
            CheckKind::Prometheus { .. } => "prometheus",
            CheckKind::Log { .. } => "log",
            CheckKind::Manual => "manual",
        }
    }
}

impl Check {
    /// The expectation in force during `phase`.
    pub fn conditions_for(&self, phase: Option<&str>) -> &Conditions {
        phase.and_then(|p| self.expect.get(p)).unwrap_or(&self.conditions)
    }
}

impl StepKind {
    /// Whether a step of this kind waits for `cutover approve`: an approve
    /// step, or a pg.bigint asked to wait before its cut-over.
    pub fn awaits_approval(&self) -> bool {
        match self {
            StepKind::Approve(_) => true,
            StepKind::PgBigint(b) => b.approve_cutover,
            _ => false,
        }
    }
}
