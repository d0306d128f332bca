//! Applying migrations to one database.
//!
//! State lives in the database, in its own schema:
//! - `cutover.schema_migrations`: the versions applied (one row each, with
//!   the file's checksum and how it got there: applied, baseline, adopted,
//!   forced, or `partial` for a no-transaction file that stopped part-way);
//! - `cutover.migration_history`: one row per attempt, written before the
//!   migration starts and finished in the migration's own transaction.
//!
//! Invariants:
//! - A session advisory lock ([`LOCK_KEY`]) is held for every change, and
//!   then golang-migrate's own ([`golang_migrate_lock_key`]), so neither a
//!   second cutover nor a golang-migrate process runs at the same time; a
//!   second runner waits up to `lock_wait`, then fails naming the holder.
//! - A transactional migration, its `schema_migrations` row and its history
//!   row commit together or not at all: a failure leaves nothing applied and
//!   no dirty state, only a history row saying what failed.
//! - A no-transaction file is marked `partial` before its first statement and
//!   `applied` after its last, so a failure or a kill in between is seen by
//!   the next run, which refuses to go on until an operator runs `force`.
//! - golang-migrate's `schema_migrations(version, dirty)` is read once, to
//!   adopt a database it migrated, and then kept in step, so either tool can
//!   read where the database is.
//! - Every text stored or returned passes through the caller's redactor.

use crate::source::{Migration, MigrationFile, OwnTransaction, Source};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// The advisory lock key: "cutomigr" in ASCII. Advisory locks are per
/// database, so one key serves every database of a server.
pub const LOCK_KEY: i64 = 0x6375_746f_6d69_6772;

/// The table golang-migrate keeps its single version row in, unless its
/// `x-migrations-table` says otherwise ([`Options::golang_migrate_table`]).
pub const GOLANG_MIGRATE_TABLE: &str = "schema_migrations";

/// The advisory lock key golang-migrate's postgres driver takes for a
/// database, schema and migrations table: the CRC-32 (IEEE) of
/// "schema\0table\0database" times a fixed salt, in 32 bits
/// (`database.GenerateAdvisoryLockId`). Holding it too keeps a golang-migrate
/// process from migrating the database while cutover does, and the other way
/// round.
pub fn golang_migrate_lock_key(database: &str, schema: &str, table: &str) -> i64 {
    const SALT: u32 = 1_486_364_155;
    let name = format!("{schema}\0{table}\0{database}");
    i64::from(crc32fast::hash(name.as_bytes()).wrapping_mul(SALT))
}

const SETUP: &str = "
CREATE SCHEMA IF NOT EXISTS cutover;
CREATE TABLE IF NOT EXISTS cutover.schema_migrations (
    version    bigint PRIMARY KEY,
    title      text NOT NULL,
    checksum   text,
    state      text NOT NULL CHECK (state IN ('applied', 'baseline', 'adopted', 'forced', 'partial')),
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL
);
CREATE TABLE IF NOT EXISTS cutover.migration_history (
    id               bigserial PRIMARY KEY,
    version          bigint NOT NULL,
    title            text NOT NULL,
    checksum         text,
    direction        text NOT NULL CHECK (direction IN ('up', 'down', 'force', 'baseline', 'adopt')),
    transactional    boolean NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at      timestamptz,
    duration_ms      bigint,
    success          boolean,
    error            text,
    statements_run   integer,
    statements_total integer,
    ran_by           text NOT NULL,
    db_user          text NOT NULL DEFAULT current_user,
    source           text NOT NULL
);
";

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Db(String),
    #[error(
        "another migration holds the lock on database {database}: {holder}; waited {waited:?}. Try again when it has finished{hint}"
    )]
    Locked { database: String, holder: String, waited: Duration, hint: String },
    #[error("{0}")]
    Refused(String),
    #[error("{direction} {label} failed{at}: {error}{left}")]
    Failed { label: String, direction: &'static str, at: String, error: String, left: String },
}

impl MigrateError {
    pub(crate) fn db(e: tokio_postgres::Error) -> MigrateError {
        MigrateError::Db(db_message(&e))
    }
}

fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{}: {}", db.severity(), db.message());
            if let Some(d) = db.detail() {
                m.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                m.push_str(&format!(" hint: {h}"));
            }
            m
        }
        None => e.to_string(),
    }
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The next N pending migrations (all of them with None).
    Up(Option<usize>),
    /// The last N applied migrations (every one with None).
    Down(Option<usize>),
    /// Up or down to exactly this version (0: nothing applied).
    Goto(u64),
    /// Record this version as the current one without running anything.
    Force(u64),
    /// Adopt a database whose schema is already at this version.
    Baseline(u64),
}

pub struct Options {
    /// How long to wait for the migration lock.
    pub lock_wait: Duration,
    /// `lock_timeout` for the migrations' statements (None: the server's).
    pub lock_timeout: Option<Duration>,
    /// `statement_timeout` for the migrations' statements (None: the server's).
    pub statement_timeout: Option<Duration>,
    pub allow_out_of_order: bool,
    pub allow_changed: bool,
    /// Who and where, e.g. `alice@deploy-1 (pid 4242)`; the caller knows
    /// who is acting (the CLI's actor, or a plan's run and target).
    pub ran_by: String,
    /// Hides secrets in every text stored or returned.
    pub redact: Box<dyn Fn(&str) -> String + Send + Sync>,
    /// While it holds `true`, the next migration waits (a plan's pause_when);
    /// the lock stays held, so nobody else starts in between.
    pub hold: Option<tokio::sync::watch::Receiver<bool>>,
    /// The table golang-migrate keeps its version in, in the connection's
    /// schema (its `x-migrations-table`; default `schema_migrations`): read
    /// once to adopt, kept in step, and part of its lock key.
    pub golang_migrate_table: String,
}

impl Options {
    pub fn new(ran_by: String) -> Options {
        Options {
            lock_wait: Duration::from_secs(30),
            lock_timeout: None,
            statement_timeout: None,
            allow_out_of_order: false,
            allow_changed: false,
            ran_by,
            redact: Box::new(|s| s.to_string()),
            hold: None,
            golang_migrate_table: GOLANG_MIGRATE_TABLE.to_string(),
        }
    }
}

/// What happens as migrations run, for progress and logs.
#[derive(Debug, Clone)]
pub enum Event {
    /// Waiting for the migration lock, held by someone else.
    Waiting {
        holder: String,
    },
    /// A note worth showing (adoption, a changed file allowed, …).
    Notice(String),
    Start {
        index: usize,
        total: usize,
        label: String,
        direction: &'static str,
        transactional: bool,
    },
    Done {
        index: usize,
        total: usize,
        label: String,
        direction: &'static str,
        duration: Duration,
    },
}

/// The outcome of a change.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub applied: Vec<Step>,
    pub before: Option<u64>,
    pub after: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub version: u64,
    pub title: String,
    pub direction: &'static str,
    pub duration_ms: u64,
}

/// A version recorded as applied.
#[derive(Debug, Clone)]
struct Applied {
    title: String,
    checksum: Option<String>,
    state: String,
    applied_at: String,
}

/// Runs `cmd` against the database. Takes the lock, creates the state tables
/// when missing, adopts golang-migrate's state once, checks the directory
/// against what was applied, then applies in order.
pub async fn apply(
    client: &Client,
    source: &Source,
    cmd: Command,
    opts: &Options,
    on: &(dyn Fn(Event) + Send + Sync),
) -> Result<Outcome, MigrateError> {
    check_golang_name(&opts.golang_migrate_table)?;
    exec(client, "SET application_name = 'cutover migrate'").await?;
    let names = client
        .query_one("SELECT current_database()::text, coalesce(current_schema()::text, 'public')", &[])
        .await
        .map_err(MigrateError::db)?;
    let golang = golang_migrate_lock_key(names.get(0), names.get(1), &opts.golang_migrate_table);
    // Always in this order, so two cutover runners cannot each hold one.
    let deadline = Instant::now() + opts.lock_wait;
    let keys = [(LOCK_KEY, "cutover"), (golang, "golang-migrate")];
    let mut held = Vec::new();
    let r = async {
        for (key, whose) in keys {
            lock(client, key, whose, deadline, opts, on).await?;
            held.push(key);
        }
        let r = apply_locked(client, source, cmd, opts, on).await;
        if r.is_err() {
            // A bookkeeping transaction may be open and aborted; a ROLLBACK
            // outside one is only a warning.
            let _ = client.batch_execute("ROLLBACK").await;
        }
        r
    }
    .await;
    // Session locks: a failed unlock only matters until the connection
    // closes, which the caller does next.
    for key in held.into_iter().rev() {
        let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&key]).await;
    }
    r.map_err(|e| redact_err(e, opts))
}

fn redact_err(e: MigrateError, opts: &Options) -> MigrateError {
    let r = &opts.redact;
    match e {
        MigrateError::Db(m) => MigrateError::Db(r(&m)),
        MigrateError::Refused(m) => MigrateError::Refused(r(&m)),
        MigrateError::Failed { label, direction, at, error, left } => {
            MigrateError::Failed { label, direction, at, error: r(&error), left: r(&left) }
        }
        other => other,
    }
}

async fn lock(
    client: &Client,
    key: i64,
    whose: &str,
    deadline: Instant,
    opts: &Options,
    on: &(dyn Fn(Event) + Send + Sync),
) -> Result<(), MigrateError> {
    let got: bool =
        client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).await.map_err(MigrateError::db)?.get(0);
    if got {
        return Ok(());
    }
    let describe =
        |h: Option<String>| h.map(|h| if whose == "cutover" { h } else { format!("{h}, holding {whose}'s lock") });
    let first = describe(holder(client, key).await).unwrap_or_else(|| "a session that has just ended".into());
    on(Event::Waiting { holder: first.clone() });
    // A blocking wait bounded by lock_timeout queues fairly behind the holder
    // and answers as soon as it lets go, without polling.
    let ms = deadline.saturating_duration_since(Instant::now()).as_millis().max(1);
    exec(client, &format!("SET lock_timeout = {ms}")).await?;
    let r = client.execute("SELECT pg_advisory_lock($1)", &[&key]).await;
    let reset = exec(client, "RESET lock_timeout").await;
    match r {
        Ok(_) => {
            if let Err(e) = reset {
                // Not handed back as held: let go of it here.
                let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&key]).await;
                return Err(e);
            }
            Ok(())
        }
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            let holder = describe(holder(client, key).await).unwrap_or(first);
            let database: String =
                client.query_one("SELECT current_database()", &[]).await.map_err(MigrateError::db)?.get(0);
            let hint = match pid_of(&holder) {
                Some(pid) => format!(", or end a stuck one with SELECT pg_terminate_backend({pid})"),
                None => String::new(),
            };
            Err(MigrateError::Locked { database, holder: (opts.redact)(&holder), waited: opts.lock_wait, hint })
        }
        Err(e) => Err(MigrateError::db(e)),
    }
}

fn pid_of(holder: &str) -> Option<i32> {
    holder.strip_prefix("pid ")?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// "pid 4242 (cutover migrate, user app from 10.0.0.5, since 12:00:01 UTC)".
async fn holder(client: &Client, key: i64) -> Option<String> {
    let row = client
        .query_opt(
            "SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''),
                    coalesce(host(a.client_addr), 'local socket'),
                    coalesce(to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC', '?')
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)
               AND l.objsubid = 1
             LIMIT 1",
            &[&key],
        )
        .await
        .ok()??;
    let pid: i32 = row.get(0);
    let app: String = row.get(1);
    let user: String = row.get(2);
    let from: String = row.get(3);
    let since: String = row.get(4);
    let app = if app.is_empty() { String::new() } else { format!("{app}, ") };
    Some(format!("pid {pid} ({app}user {user} from {from}, connected since {since})"))
}

async fn apply_locked(
    client: &Client,
    source: &Source,
    cmd: Command,
    opts: &Options,
    on: &(dyn Fn(Event) + Send + Sync),
) -> Result<Outcome, MigrateError> {
    exec(client, SETUP).await?;
    let golang = golang_table(client, &opts.golang_migrate_table).await?;
    let mut applied = read_applied(client).await?;
    // force is how a dirty golang-migrate database is put right: it records
    // the version itself, so there is nothing to adopt first.
    if applied.is_empty()
        && !matches!(cmd, Command::Force(_))
        && let Some(table) = &golang
        && let Some(v) = adopt(client, source, table, opts).await?
    {
        on(Event::Notice(format!(
            "adopted golang-migrate's {} at version {v}: every migration up to {v} is recorded as applied, none was run",
            opts.golang_migrate_table
        )));
        applied = read_applied(client).await?;
    }
    let before = current(&applied);
    match cmd {
        Command::Force(v) => return force(client, source, &applied, v, golang.as_deref(), opts, on).await,
        Command::Baseline(v) => return baseline(client, source, &applied, v, golang.as_deref(), opts).await,
        _ => {}
    }
    // Each file's part to run is read once, before anything runs, so a file
    // the runner would refuse stops the command with nothing applied.
    let mut work = Vec::new();
    for (m, direction) in plan(source, &applied, cmd, opts, on)? {
        let file = if direction == "up" { m.up.as_ref() } else { m.down.as_ref() };
        let Some(file) = file else { continue };
        let part = if file.transactional { body(file)? } else { (0, file.sql.as_str()) };
        work.push((m, direction, file, part));
    }
    let total = work.len();
    let mut done = Vec::new();
    for (i, (m, direction, file, part)) in work.into_iter().enumerate() {
        if let Some(rx) = &opts.hold
            && *rx.borrow()
        {
            on(Event::Notice(format!("holding before {} while the plan's pause_when holds", m.label())));
            let mut rx = rx.clone();
            // A closed channel means nobody can hold us any more: go on.
            let _ = rx.wait_for(|held| !*held).await;
        }
        on(Event::Start { index: i + 1, total, label: m.label(), direction, transactional: file.transactional });
        let t0 = Instant::now();
        run_one(client, source, m, file, part, direction, golang.as_deref(), opts).await?;
        let duration = t0.elapsed();
        on(Event::Done { index: i + 1, total, label: m.label(), direction, duration });
        done.push(Step {
            version: m.version,
            title: m.title.clone(),
            direction,
            duration_ms: duration.as_millis() as u64,
        });
    }
    let after = current(&read_applied(client).await?);
    Ok(Outcome { applied: done, before, after })
}

fn current(applied: &BTreeMap<u64, Applied>) -> Option<u64> {
    applied.keys().next_back().copied()
}

/// The migrations to run, in order, after checking the directory against
/// what was applied. Pure apart from notices.
fn plan<'a>(
    source: &'a Source,
    applied: &BTreeMap<u64, Applied>,
    cmd: Command,
    opts: &Options,
    on: &(dyn Fn(Event) + Send + Sync),
) -> Result<Vec<(&'a Migration, &'static str)>, MigrateError> {
    if let Some((v, a)) = applied.iter().find(|(_, a)| a.state == "partial") {
        return Err(MigrateError::Refused(format!(
            "migration {v}_{} stopped part-way outside a transaction (at {}); see `cutover migrate history` for what ran, \
             repair the schema by hand, then run `cutover migrate force {v}` if it is now fully applied or `force {}` if it is not",
            a.title,
            a.applied_at,
            applied.range(..*v).next_back().map(|(p, _)| *p).unwrap_or(0)
        )));
    }
    let top = current(applied).unwrap_or(0);
    // Changed files: applied, but not what was applied.
    for (v, a) in applied {
        let Some(m) = source.get(*v) else {
            on(Event::Notice(format!("migration {v}_{} is applied but has no file in {}", a.title, source.label)));
            continue;
        };
        let (Some(file), Some(sum)) = (&m.up, &a.checksum) else { continue };
        if &file.checksum != sum {
            let msg = format!(
                "{} has changed since it was applied (checksum {} then, {} now)",
                file.name,
                &sum[..sum.len().min(12)],
                &file.checksum[..12]
            );
            if !opts.allow_changed {
                return Err(MigrateError::Refused(format!(
                    "{msg}; an applied migration must not be edited: add a new migration instead, or pass --allow-changed if the edit changes nothing in the schema"
                )));
            }
            on(Event::Notice(format!("{msg}; going on (--allow-changed)")));
        }
    }
    let pending: Vec<&Migration> =
        source.migrations.iter().filter(|m| !applied.contains_key(&m.version) && m.up.is_some()).collect();
    let check_order = |upto: u64| -> Result<(), MigrateError> {
        let late: Vec<String> =
            pending.iter().filter(|m| m.version < top && m.version <= upto).map(|m| m.label()).collect();
        if late.is_empty() {
            return Ok(());
        }
        let list = late.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        if !opts.allow_out_of_order {
            return Err(MigrateError::Refused(format!(
                "{list} {} older than the current version {top} but not applied (added out of order, e.g. from a branch merged late); \
                 renumber {} above {top}, or pass --allow-out-of-order to apply {} now",
                if late.len() == 1 { "is" } else { "are" },
                if late.len() == 1 { "it" } else { "them" },
                if late.len() == 1 { "it" } else { "them" },
            )));
        }
        on(Event::Notice(format!("applying {list} out of order (--allow-out-of-order)")));
        Ok(())
    };
    let downs = |list: Vec<(&u64, &Applied)>| -> Result<Vec<(&'a Migration, &'static str)>, MigrateError> {
        let mut out = Vec::new();
        for (v, a) in list {
            let Some(m) = source.get(*v) else {
                return Err(MigrateError::Refused(format!(
                    "cannot roll back {v}_{}: it has no file in {}",
                    a.title, source.label
                )));
            };
            if m.down.is_none() {
                return Err(MigrateError::Refused(format!(
                    "cannot roll back {}: there is no {}.down.sql",
                    m.label(),
                    m.label()
                )));
            }
            out.push((m, "down"));
        }
        Ok(out)
    };
    match cmd {
        Command::Up(n) => {
            check_order(u64::MAX)?;
            Ok(pending.into_iter().take(n.unwrap_or(usize::MAX)).map(|m| (m, "up")).collect())
        }
        Command::Down(n) => downs(applied.iter().rev().take(n.unwrap_or(usize::MAX)).collect()),
        Command::Goto(v) => {
            if v != 0 && source.get(v).is_none() && !applied.contains_key(&v) {
                return Err(MigrateError::Refused(format!(
                    "there is no migration {v} in {} (goto takes an existing version, or 0 for none)",
                    source.label
                )));
            }
            check_order(v)?;
            let mut out = downs(applied.range(v + 1..).rev().collect())?;
            out.extend(pending.into_iter().filter(|m| m.version <= v).map(|m| (m, "up")));
            Ok(out)
        }
        Command::Force(_) | Command::Baseline(_) => Ok(Vec::new()),
    }
}

/// Refuses a golang-migrate table name PostgreSQL would not keep as given.
fn check_golang_name(name: &str) -> Result<(), MigrateError> {
    if name.is_empty() || name.len() > 63 {
        return Err(MigrateError::Refused(format!(
            "golang-migrate's table name `{name}` is not a PostgreSQL table name (1 to 63 bytes)"
        )));
    }
    Ok(())
}

/// Whether golang-migrate's table (`name`, with a `dirty` column) is in the
/// connection's current schema, where golang-migrate looks; when it is, its
/// schema-qualified name as SQL, so a `search_path` a migration sets
/// cannot send the reads and writes elsewhere.
async fn golang_table(client: &Client, name: &str) -> Result<Option<String>, MigrateError> {
    let row = client
        .query_opt(
            "SELECT c.table_schema::text FROM information_schema.columns c
             WHERE c.table_name::text = $1::text AND c.column_name::text = 'dirty'
               AND c.table_schema::text = current_schema()",
            &[&name],
        )
        .await
        .map_err(MigrateError::db)?;
    Ok(row.map(|r| {
        let schema: String = r.get(0);
        format!("{}.{}", cutover_pg::quote_ident(&schema), cutover_pg::quote_ident(name))
    }))
}

async fn read_applied(client: &Client) -> Result<BTreeMap<u64, Applied>, MigrateError> {
    let rows = client
        .query(
            "SELECT version, title, checksum, state,
                    to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'
             FROM cutover.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(MigrateError::db)?;
    Ok(rows
        .iter()
        .map(|r| {
            let v: i64 = r.get(0);
            (v as u64, Applied { title: r.get(1), checksum: r.get(2), state: r.get(3), applied_at: r.get(4) })
        })
        .collect())
}

/// golang-migrate's single row, if the table has one.
async fn golang_version(client: &Client, table: &str) -> Result<Option<(u64, bool)>, MigrateError> {
    let sql = format!("SELECT version::bigint, dirty FROM {table} LIMIT 1");
    let row = client.query_opt(&sql, &[]).await.map_err(MigrateError::db)?;
    Ok(row.map(|r| (r.get::<_, i64>(0).max(0) as u64, r.get(1))))
}

/// Records every file up to golang-migrate's version as adopted, in one
/// transaction with a history row. Refuses a dirty database.
async fn adopt(client: &Client, source: &Source, table: &str, opts: &Options) -> Result<Option<u64>, MigrateError> {
    let Some((v, dirty)) = golang_version(client, table).await? else { return Ok(None) };
    if dirty {
        return Err(MigrateError::Refused(format!(
            "golang-migrate left this database dirty at version {v}: that migration failed part-way. \
             Check the schema by hand, then run `cutover migrate force {v}` if it is fully applied, or `force {}` if it is not",
            source.migrations.iter().rev().find(|m| m.version < v).map(|m| m.version).unwrap_or(0)
        )));
    }
    if v == 0 {
        return Ok(None);
    }
    exec(client, "BEGIN").await?;
    mark_upto(client, source, v, "adopted", opts).await?;
    history_mark(client, v, title_of(source, v), "adopt", opts, &source.label).await?;
    exec(client, "COMMIT").await?;
    Ok(Some(v))
}

fn title_of(source: &Source, v: u64) -> String {
    source.get(v).map(|m| m.title.clone()).unwrap_or_default()
}

/// Inserts every file version ≤ v that is not recorded yet, with `state`.
async fn mark_upto(client: &Client, source: &Source, v: u64, state: &str, opts: &Options) -> Result<(), MigrateError> {
    for m in source.migrations.iter().filter(|m| m.version <= v) {
        client
            .execute(
                "INSERT INTO cutover.schema_migrations (version, title, checksum, state, applied_by)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (version) DO NOTHING",
                &[&(m.version as i64), &m.title, &m.up.as_ref().map(|f| f.checksum.clone()), &state, &opts.ran_by],
            )
            .await
            .map_err(MigrateError::db)?;
    }
    Ok(())
}

/// A finished history row for a bookkeeping action (adopt, force, baseline).
async fn history_mark(
    client: &Client,
    v: u64,
    title: String,
    direction: &str,
    opts: &Options,
    source: &str,
) -> Result<(), MigrateError> {
    client
        .execute(
            "INSERT INTO cutover.migration_history
                 (version, title, direction, transactional, finished_at, duration_ms, success, ran_by, source)
             VALUES ($1, $2, $3, true, clock_timestamp(), 0, true, $4, $5)",
            &[&(v as i64), &title, &direction, &opts.ran_by, &(opts.redact)(source)],
        )
        .await
        .map_err(MigrateError::db)?;
    Ok(())
}

async fn force(
    client: &Client,
    source: &Source,
    applied: &BTreeMap<u64, Applied>,
    v: u64,
    golang: Option<&str>,
    opts: &Options,
    on: &(dyn Fn(Event) + Send + Sync),
) -> Result<Outcome, MigrateError> {
    if v != 0 && source.get(v).is_none() && !applied.contains_key(&v) {
        return Err(MigrateError::Refused(format!(
            "there is no migration {v} in {}; force takes an existing version, or 0 for none",
            source.label
        )));
    }
    exec(client, "BEGIN").await?;
    client
        .execute("DELETE FROM cutover.schema_migrations WHERE version > $1 OR state = 'partial'", &[&(v as i64)])
        .await
        .map_err(MigrateError::db)?;
    mark_upto(client, source, v, "forced", opts).await?;
    history_mark(client, v, title_of(source, v), "force", opts, &source.label).await?;
    sync_golang(client, golang, (v > 0).then_some(v), false).await?;
    exec(client, "COMMIT").await?;
    on(Event::Notice(format!("forced to version {v}: recorded as the current version, nothing was run")));
    Ok(Outcome { applied: Vec::new(), before: current(applied), after: (v > 0).then_some(v) })
}

async fn baseline(
    client: &Client,
    source: &Source,
    applied: &BTreeMap<u64, Applied>,
    v: u64,
    golang: Option<&str>,
    opts: &Options,
) -> Result<Outcome, MigrateError> {
    if let Some(top) = current(applied) {
        return Err(MigrateError::Refused(format!(
            "this database already has migrations recorded (up to {top}); baseline adopts a database that has none — use force to move the version"
        )));
    }
    if source.get(v).is_none() {
        return Err(MigrateError::Refused(format!("there is no migration {v} in {}", source.label)));
    }
    exec(client, "BEGIN").await?;
    mark_upto(client, source, v, "baseline", opts).await?;
    history_mark(client, v, title_of(source, v), "baseline", opts, &source.label).await?;
    sync_golang(client, golang, Some(v), false).await?;
    exec(client, "COMMIT").await?;
    Ok(Outcome { applied: Vec::new(), before: None, after: Some(v) })
}

/// Keeps golang-migrate's single row where cutover's state is.
async fn sync_golang(client: &Client, table: Option<&str>, v: Option<u64>, dirty: bool) -> Result<(), MigrateError> {
    // The schema-qualified name from golang_table.
    let Some(t) = table else { return Ok(()) };
    client.execute(&format!("DELETE FROM {t}"), &[]).await.map_err(MigrateError::db)?;
    if let Some(v) = v {
        client
            .execute(&format!("INSERT INTO {t} (version, dirty) VALUES ($1, $2)"), &[&(v as i64), &dirty])
            .await
            .map_err(MigrateError::db)?;
    }
    Ok(())
}

/// Runs statements that return nothing (BEGIN, COMMIT, SET).
async fn exec(client: &Client, sql: &str) -> Result<(), MigrateError> {
    client.batch_execute(sql).await.map_err(MigrateError::db)
}

/// What part of a transactional file to run: the file's own `BEGIN; … COMMIT;`
/// (common in golang-migrate directories, whose driver adds none) is
/// replaced by the runner's transaction.
fn body(file: &MigrationFile) -> Result<(usize, &str), MigrateError> {
    let Ok(parsed) = pg_query::parse(&file.sql, pg_query::ParserOptions::DEFAULT) else {
        // The server will say what is wrong with it, with a position.
        return Ok((0, &file.sql));
    };
    let stmts = &parsed.protobuf.stmts;
    match crate::source::own_transaction(stmts) {
        OwnTransaction::None => return Ok((0, &file.sql)),
        OwnTransaction::Wrapped => {
            let first = &stmts[0];
            let start = (first.stmt_location + first.stmt_len) as usize;
            // Skip the `;` that ends BEGIN.
            let start = file.sql[start..].find(';').map(|i| start + i + 1).unwrap_or(start);
            let end = stmts[stmts.len() - 1].stmt_location as usize;
            if let Some(inner) = file.sql.get(start..end) {
                return Ok((start, inner));
            }
        }
        OwnTransaction::Other => {}
    }
    Err(MigrateError::Refused(format!(
        "{} controls its own transaction (BEGIN/COMMIT/ROLLBACK inside the file); cutover runs each migration in a \
         transaction of its own — remove them, or start the file with `-- {}` to run it statement by statement as written",
        file.name,
        crate::source::NO_TRANSACTION
    )))
}

/// The (line, column) of a 1-based character position in `text`, which starts at byte `offset` of the file.
fn position(sql: &str, offset: usize, text: &str, pos: u32) -> (usize, usize) {
    let byte = text.char_indices().nth(pos.saturating_sub(1) as usize).map(|(b, _)| b).unwrap_or(text.len());
    let upto = &sql[..(offset + byte).min(sql.len())];
    let line = upto.matches('\n').count() + 1;
    let col = upto.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

fn failure_at(e: &tokio_postgres::Error, file: &MigrationFile, offset: usize, text: &str) -> String {
    match e.as_db_error().and_then(|d| d.position()) {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => {
            let (line, col) = position(&file.sql, offset, text, *p);
            format!(" at {}:{line}:{col}", file.name)
        }
        _ => String::new(),
    }
}

/// Runs one file; `(offset, text)` is the part of it to run (see [`body`]).
#[allow(clippy::too_many_arguments)]
async fn run_one(
    client: &Client,
    source: &Source,
    m: &Migration,
    file: &MigrationFile,
    (offset, text): (usize, &str),
    direction: &'static str,
    golang: Option<&str>,
    opts: &Options,
) -> Result<(), MigrateError> {
    let statements: Vec<&str> = if file.transactional {
        Vec::new()
    } else {
        pg_query::split_with_parser(&file.sql).unwrap_or_else(|_| vec![file.sql.as_str()])
    };
    let t0 = Instant::now();
    let id: i64 = client
        .query_one(
            "INSERT INTO cutover.migration_history
                 (version, title, checksum, direction, transactional, statements_total, statements_run, ran_by, source)
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8) RETURNING id",
            &[
                &(m.version as i64),
                &m.title,
                &file.checksum,
                &direction,
                &file.transactional,
                &(if file.transactional { None } else { Some(statements.len() as i32) }),
                &opts.ran_by,
                &(opts.redact)(&source.label),
            ],
        )
        .await
        .map_err(MigrateError::db)?
        .get(0);
    let label = m.label();
    let finish_failed = |error: String, run: Option<i32>| async move {
        let ms = t0.elapsed().as_millis() as i64;
        let _ = client
            .execute(
                "UPDATE cutover.migration_history
                 SET finished_at = clock_timestamp(), duration_ms = $2, success = false, error = $3,
                     statements_run = coalesce($4, statements_run)
                 WHERE id = $1",
                &[&id, &ms, &error, &run],
            )
            .await;
    };
    let record = async |top_after: Option<u64>| -> Result<(), MigrateError> {
        if direction == "up" {
            client
                .execute(
                    "INSERT INTO cutover.schema_migrations (version, title, checksum, state, applied_by)
                     VALUES ($1, $2, $3, 'applied', $4)
                     ON CONFLICT (version) DO UPDATE SET state = 'applied', checksum = EXCLUDED.checksum,
                         applied_at = now(), applied_by = EXCLUDED.applied_by",
                    &[&(m.version as i64), &m.title, &file.checksum, &opts.ran_by],
                )
                .await
                .map_err(MigrateError::db)?;
        } else {
            client
                .execute("DELETE FROM cutover.schema_migrations WHERE version = $1", &[&(m.version as i64)])
                .await
                .map_err(MigrateError::db)?;
        }
        let ms = t0.elapsed().as_millis() as i64;
        client
            .execute(
                "UPDATE cutover.migration_history
                 SET finished_at = clock_timestamp(), duration_ms = $2, success = true,
                     statements_run = statements_total
                 WHERE id = $1",
                &[&id, &ms],
            )
            .await
            .map_err(MigrateError::db)?;
        sync_golang(client, golang, top_after, false).await
    };
    if file.transactional {
        exec(client, "BEGIN").await?;
        let r = async {
            set_timeouts(client, opts, true).await.map_err(|e| (String::new(), e.to_string()))?;
            client.batch_execute(text).await.map_err(|e| (failure_at(&e, file, offset, text), db_message(&e)))?;
            let top = after_version(client, m.version, direction).await.map_err(|e| (String::new(), e.to_string()))?;
            record(top).await.map_err(|e| (String::new(), e.to_string()))?;
            client.batch_execute("COMMIT").await.map_err(|e| (String::new(), db_message(&e)))
        }
        .await;
        return match r {
            Ok(()) => Ok(()),
            Err((at, error)) => {
                let _ = client.batch_execute("ROLLBACK").await;
                let error = (opts.redact)(&error);
                finish_failed(error.clone(), None).await;
                Err(MigrateError::Failed {
                    label,
                    direction,
                    at,
                    error,
                    left: "; nothing of it was applied (it ran in one transaction, now rolled back)".into(),
                })
            }
        };
    }
    // Outside a transaction: marked partial first, so a failure or a kill
    // part-way is seen by the next run.
    exec(client, "BEGIN").await?;
    client
        .execute(
            "INSERT INTO cutover.schema_migrations (version, title, checksum, state, applied_by)
             VALUES ($1, $2, $3, 'partial', $4)
             ON CONFLICT (version) DO UPDATE SET state = 'partial', applied_at = now(), applied_by = EXCLUDED.applied_by",
            &[&(m.version as i64), &m.title, &file.checksum, &opts.ran_by],
        )
        .await
        .map_err(MigrateError::db)?;
    sync_golang(client, golang, Some(m.version), true).await?;
    exec(client, "COMMIT").await?;
    set_timeouts(client, opts, false).await?;
    for (i, stmt) in statements.iter().enumerate() {
        if let Err(e) = client.batch_execute(stmt).await {
            let offset = stmt.as_ptr() as usize - file.sql.as_ptr() as usize;
            let at = failure_at(&e, file, offset, stmt);
            let error = (opts.redact)(&db_message(&e));
            let left = left_behind(client, &statements[..i]).await;
            let _ = client.batch_execute("RESET lock_timeout; RESET statement_timeout").await;
            finish_failed(format!("statement {} of {}{at}: {error}", i + 1, statements.len()), Some(i as i32)).await;
            return Err(MigrateError::Failed { label, direction, at, error, left: (opts.redact)(&left) });
        }
        client
            .execute("UPDATE cutover.migration_history SET statements_run = $2 WHERE id = $1", &[&id, &(i as i32 + 1)])
            .await
            .map_err(MigrateError::db)?;
    }
    exec(client, "RESET lock_timeout; RESET statement_timeout").await?;
    exec(client, "BEGIN").await?;
    let top = after_version(client, m.version, direction).await?;
    record(top).await?;
    exec(client, "COMMIT").await?;
    Ok(())
}

/// The current version once this migration is recorded.
async fn after_version(client: &Client, v: u64, direction: &str) -> Result<Option<u64>, MigrateError> {
    let row = client
        .query_one(
            "SELECT max(version) FROM cutover.schema_migrations
             WHERE state <> 'partial' AND version <> $1",
            &[&(v as i64)],
        )
        .await
        .map_err(MigrateError::db)?;
    let others: Option<i64> = row.get(0);
    let others = others.map(|x| x as u64);
    Ok(if direction == "up" { Some(others.map_or(v, |o| o.max(v))) } else { others })
}

async fn set_timeouts(client: &Client, opts: &Options, local: bool) -> Result<(), MigrateError> {
    let scope = if local { "SET LOCAL" } else { "SET" };
    let mut sql = String::new();
    if let Some(d) = opts.lock_timeout {
        sql.push_str(&format!("{scope} lock_timeout = {};", d.as_millis().max(1)));
    }
    if let Some(d) = opts.statement_timeout {
        sql.push_str(&format!("{scope} statement_timeout = {};", d.as_millis().max(1)));
    }
    if sql.is_empty() {
        return Ok(());
    }
    exec(client, &sql).await
}

/// What a no-transaction file left: the statements that ran, and any invalid
/// index (what a failed `CREATE INDEX CONCURRENTLY` leaves behind).
async fn left_behind(client: &Client, ran: &[&str]) -> String {
    let mut out = String::new();
    if ran.is_empty() {
        out.push_str("; it ran outside a transaction and none of its statements completed");
    } else {
        let list: Vec<String> = ran.iter().map(|s| short(s)).collect();
        out.push_str(&format!(
            "; it ran outside a transaction, so {} statement(s) before it stay applied: {}",
            ran.len(),
            list.join("; ")
        ));
    }
    let invalid = client
        .query(
            "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE NOT i.indisvalid ORDER BY 1",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>())
        .unwrap_or_default();
    if !invalid.is_empty() {
        out.push_str(&format!(
            ". Invalid index(es) left by a failed concurrent build: {} (drop with DROP INDEX CONCURRENTLY before retrying)",
            invalid.join(", ")
        ));
    }
    out.push_str(
        ". The migration is marked partial: repair the schema, then `cutover migrate force` to the version it is now at",
    );
    out
}

/// A statement on one line, without the comments before it, cut at 80 characters.
fn short(s: &str) -> String {
    let code = s.lines().skip_while(|l| l.trim().is_empty() || l.trim_start().starts_with("--")).collect::<Vec<_>>();
    let one: String = code.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 80 { format!("{}…", one.chars().take(79).collect::<String>()) } else { one }
}

/// One file's state, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct FileStatus {
    pub version: u64,
    pub title: String,
    /// applied, pending, out-of-order (pending below the current version),
    /// missing (applied, no file), changed (applied, file edited since), partial.
    pub state: &'static str,
    /// How it came to be applied: applied, baseline, adopted, forced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub how: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    pub transactional: bool,
    pub has_down: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub source: String,
    pub current: Option<u64>,
    pub partial: bool,
    /// Set when golang-migrate's table exists and cutover has not adopted it yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub golang_migrate: Option<GolangState>,
    pub files: Vec<FileStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GolangState {
    pub version: u64,
    pub dirty: bool,
}

/// Reads where the database is, against the directory, without writing.
/// `golang_migrate_table` is golang-migrate's table, as in [`Options`].
pub async fn status(client: &Client, source: &Source, golang_migrate_table: &str) -> Result<Status, MigrateError> {
    check_golang_name(golang_migrate_table)?;
    let exists: bool = client
        .query_one("SELECT to_regclass('cutover.schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(MigrateError::db)?
        .get(0);
    let mut applied = if exists { read_applied(client).await? } else { BTreeMap::new() };
    let mut golang_migrate = None;
    if applied.is_empty()
        && let Some(t) = golang_table(client, golang_migrate_table).await?
        && let Some((version, dirty)) = golang_version(client, &t).await?
    {
        golang_migrate = Some(GolangState { version, dirty });
        // Shown as it would be adopted.
        for m in source.migrations.iter().filter(|m| m.version <= version && !dirty) {
            applied.insert(
                m.version,
                Applied {
                    title: m.title.clone(),
                    checksum: m.up.as_ref().map(|f| f.checksum.clone()),
                    state: "adopted".into(),
                    applied_at: "(golang-migrate)".into(),
                },
            );
        }
    }
    let top = current(&applied).unwrap_or(0);
    let mut files = Vec::new();
    let mut versions: Vec<u64> = source.migrations.iter().map(|m| m.version).chain(applied.keys().copied()).collect();
    versions.sort_unstable();
    versions.dedup();
    for v in versions {
        let m = source.get(v);
        let a = applied.get(&v);
        let state = match (m, a) {
            (_, Some(a)) if a.state == "partial" => "partial",
            (None, Some(_)) => "missing",
            (Some(m), Some(a)) => match (&m.up, &a.checksum) {
                (Some(f), Some(sum)) if &f.checksum != sum => "changed",
                _ => "applied",
            },
            (Some(_), None) if v < top => "out-of-order",
            _ => "pending",
        };
        files.push(FileStatus {
            version: v,
            title: m.map(|m| m.title.clone()).or_else(|| a.map(|a| a.title.clone())).unwrap_or_default(),
            state,
            how: a.filter(|a| a.state != "partial").map(|a| a.state.clone()),
            applied_at: a.map(|a| a.applied_at.clone()),
            transactional: m.and_then(|m| m.up.as_ref()).is_none_or(|f| f.transactional),
            has_down: m.is_some_and(|m| m.down.is_some()),
        });
    }
    Ok(Status {
        source: source.label.clone(),
        current: applied.keys().next_back().copied(),
        partial: applied.values().any(|a| a.state == "partial"),
        golang_migrate,
        files,
    })
}

/// One attempt, for `history`.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub id: i64,
    pub version: u64,
    pub title: String,
    pub direction: String,
    pub transactional: bool,
    pub started_at: String,
    pub duration_ms: Option<i64>,
    /// None while running, or when the process died part-way.
    pub success: Option<bool>,
    pub error: Option<String>,
    pub statements_run: Option<i32>,
    pub statements_total: Option<i32>,
    pub checksum: Option<String>,
    pub ran_by: String,
    pub db_user: String,
    pub source: String,
}

/// The last `limit` attempts, newest last.
pub async fn history(client: &Client, limit: i64) -> Result<Vec<Attempt>, MigrateError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('cutover.migration_history') IS NOT NULL", &[])
        .await
        .map_err(MigrateError::db)?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT * FROM (
                SELECT id, version, title, direction, transactional,
                       to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC',
                       duration_ms, success, error, statements_run, statements_total, checksum, ran_by, db_user, source
                FROM cutover.migration_history ORDER BY id DESC LIMIT $1) h ORDER BY id",
            &[&limit],
        )
        .await
        .map_err(MigrateError::db)?;
    Ok(rows
        .iter()
        .map(|r| Attempt {
            id: r.get(0),
            version: r.get::<_, i64>(1) as u64,
            title: r.get(2),
            direction: r.get(3),
            transactional: r.get(4),
            started_at: r.get(5),
            duration_ms: r.get(6),
            success: r.get(7),
            error: r.get(8),
            statements_run: r.get(9),
            statements_total: r.get(10),
            checksum: r.get(11),
            ran_by: r.get(12),
            db_user: r.get(13),
            source: r.get(14),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golang_migrates_lock_key_matches_its_own_test_vector() {
        // database.GenerateAdvisoryLockId("database_name", "schema_name_1",
        // "schema_name_2") is 3743845847 in golang-migrate's util_test.go.
        assert_eq!(golang_migrate_lock_key("database_name", "schema_name_1", "schema_name_2"), 3_743_845_847);
    }

    #[test]
    fn positions_are_lines_and_columns_of_the_file() {
        let sql = "BEGIN;\nCREATE TABLE t (id int);\nSELEC 1;\nCOMMIT;\n";
        let offset = 6;
        let text = &sql[offset..];
        // "SELEC" is the 27th character of the text after BEGIN;
        let p = text.find("SELEC").expect("find") as u32 + 1;
        assert_eq!(position(sql, offset, text, p), (3, 1));
    }

    #[test]
    fn a_files_own_transaction_is_replaced_by_the_runners() {
        let f = |sql: &str| MigrationFile {
            name: "1_x.up.sql".into(),
            path: "1_x.up.sql".into(),
            sql: sql.into(),
            checksum: String::new(),
            transactional: true,
        };
        let file = f("-- hi\nBEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n");
        let (off, inner) = body(&file).expect("body");
        assert_eq!(inner.trim(), "CREATE TABLE t (id int);");
        assert_eq!(&file.sql[off..off + inner.len()], inner);
        let file = f("CREATE TABLE t (id int);");
        assert_eq!(body(&file).expect("body").1, "CREATE TABLE t (id int);");
        let file = f("BEGIN; CREATE TABLE t (id int); COMMIT; BEGIN; DROP TABLE t; COMMIT;");
        assert!(body(&file).is_err());
    }

    #[test]
    fn the_holders_pid_is_read_back_for_the_hint() {
        assert_eq!(pid_of("pid 4242 (cutover migrate, user x)"), Some(4242));
        assert_eq!(pid_of("a session that has just ended"), None);
    }
}
