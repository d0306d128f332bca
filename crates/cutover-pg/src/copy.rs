//! `pg.copy`: one database from a source server to a target server of
//! another major version, the way pgcopydb does it rather than
//! `pg_dump | pg_restore`:
//!
//! 1. **schema** — `pg_dump --schema-only` of the source (a small archive),
//!    its pre-data section restored in one transaction;
//! 2. **data** — each table streamed by `COPY … TO STDOUT` on the source into
//!    `COPY … FROM STDIN` on the target over `jobs` pairs of connections
//!    (no intermediate file), all reading one exported snapshot; tables
//!    larger than `split_bytes` with an integer primary key are split into
//!    key ranges copied in parallel;
//! 3. **indexes** — a table's indexes are built (in parallel, by the same
//!    workers) as soon as its data is in, while other tables still copy;
//!    primary keys and unique constraints are built as unique indexes first,
//!    then attached by `ADD CONSTRAINT … USING INDEX` (instant);
//! 4. **post-data** — whatever else the post-data section holds (triggers,
//!    partitioned indexes, exclusion constraints, rules, comments…) from the
//!    archive minus what step 3 built, in one transaction; then foreign keys,
//!    added `NOT VALID` and validated in parallel;
//! 5. **sequences** set to the source's values, materialized views refreshed.
//!
//! Resume: every piece of work reports a key when it is committed; given the
//! keys of an earlier attempt, `run` skips those pieces. A piece is
//! idempotent by itself — a table's data is `TRUNCATE` + `COPY` in one
//! transaction, a key range `DELETE` of that range + `COPY` — so a piece cut
//! off between its commit and its report is redone without duplicating rows.
//!
//! Large objects are not copied by the fast method (it says so and stops);
//! `method = dump` (`pg_dump | pg_restore`) copies them.

use crate::tools::{self, Tools};
use crate::{PgError, USER_SCHEMAS, connect, connect_to_db, quote_ident, server_major};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, pin_mut};
use serde::Serialize;
use serde_json::json;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Parallel streaming COPY, indexes built beside it.
    Fast,
    /// `pg_dump | pg_restore` (`-Fd -j` when jobs > 1).
    Dump,
}

impl Method {
    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "fast" | "copy" => Some(Method::Fast),
            "dump" => Some(Method::Dump),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub method: Method,
    /// Pairs of connections working at once (and pg_dump/pg_restore -j).
    pub jobs: usize,
    /// Tables larger than this (heap bytes) with an integer primary key are
    /// copied in key ranges of about this size.
    pub split_bytes: u64,
    pub tools: Tools,
    /// Where the schema archive (and the dump method's archive) go.
    pub work_dir: PathBuf,
    /// Restore without ownership and grants (pg_restore -O -x), for a target
    /// server that lacks the source's roles.
    pub no_owner: bool,
    /// `maintenance_work_mem` of the index-building sessions.
    pub maintenance_work_mem: String,
}

impl Options {
    pub fn new(work_dir: PathBuf) -> Options {
        Options {
            method: Method::Fast,
            jobs: 4,
            split_bytes: 1 << 30,
            tools: Tools::default(),
            work_dir,
            no_owner: false,
            maintenance_work_mem: "256MB".into(),
        }
    }
}

/// What the copy tells its caller while it works.
#[derive(Clone, Debug)]
pub enum CopyEvent {
    /// A phase began.
    Phase { name: &'static str, message: String },
    /// A piece is committed on the target and need not be redone: `key`
    /// goes back into [`Observer::done`] on a resumed attempt.
    Done { key: String, message: String, data: serde_json::Value },
    /// Data moved so far (over all tables).
    Progress { bytes: u64, rows: u64, total_bytes: u64 },
}

pub struct Observer<'a> {
    /// Keys of pieces an earlier attempt finished.
    pub done: HashSet<String>,
    pub emit: &'a (dyn Fn(CopyEvent) + Sync),
    /// While it holds `true`, workers wait before their next piece (the
    /// phase's pause_when, as a throttle).
    pub hold: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Observer<'_> {
    async fn safe_point(&self) {
        if let Some(rx) = &self.hold {
            let mut rx = rx.clone();
            // A closed channel means nobody throttles any more.
            let _ = rx.wait_for(|held| !*held).await;
        }
    }

    fn done(&self, key: String, message: String, data: serde_json::Value) {
        (self.emit)(CopyEvent::Done { key, message, data });
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub method: String,
    pub tables: usize,
    pub parts: usize,
    pub rows: u64,
    pub bytes: u64,
    pub indexes: usize,
    pub constraints: usize,
    pub foreign_keys: usize,
    pub sequences: usize,
    pub materialized_views: usize,
    /// Pieces an earlier attempt had finished, not redone.
    pub skipped: usize,
    /// Whether the target database was created.
    pub created_database: bool,
    /// Seconds per phase, in order.
    pub phases: Vec<(String, f64)>,
    pub seconds: f64,
}

/// Copies the database `source_dsn` names into the one `target_dsn` names
/// (created, from template0 with the source's encoding and locale, when
/// missing).
pub async fn run(source_dsn: &str, target_dsn: &str, opts: &Options, obs: &Observer<'_>) -> Result<Summary, PgError> {
    let started = Instant::now();
    let mut sum = Summary {
        method: match opts.method {
            Method::Fast => "fast".into(),
            Method::Dump => "dump".into(),
        },
        ..Summary::default()
    };
    let source = connect(source_dsn, CONNECT_TIMEOUT).await?;
    let (enc, collate, ctype) = locale(&source).await?;
    let (target, created) = ensure_database(target_dsn, Some((&enc, &collate, &ctype))).await?;
    sum.created_database = created;
    let major = server_major(&source).await?;
    let dump_major = opts.tools.major("pg_dump").await?;
    if dump_major < major {
        return Err(PgError::Tool(format!(
            "pg_dump {dump_major} cannot dump a PostgreSQL {major} server: set pg_bin (or CUTOVER_PG_BIN) to the client programs of version {major} or newer"
        )));
    }
    std::fs::create_dir_all(&opts.work_dir)
        .map_err(|e| PgError::Other(format!("cannot create {}: {e}", opts.work_dir.display())))?;
    // Keys from an earlier attempt are only good while its work is there.
    let mut done = obs.done.clone();
    let existing = user_tables(&target).await?;
    if existing == 0 {
        done.clear();
    } else if done.is_empty() && opts.method == Method::Fast {
        return Err(PgError::Other(format!(
            "the target database {} already holds {existing} table(s): pg.copy copies into an empty database (drop it, or resume the run that started the copy)",
            crate::describe(target_dsn)
        )));
    }
    let obs = Observer { done, emit: obs.emit, hold: obs.hold.clone() };
    match opts.method {
        Method::Dump => dump_copy(source_dsn, target_dsn, &target, opts, &obs, &mut sum).await?,
        Method::Fast => fast_copy(source_dsn, target_dsn, &source, &target, major, opts, &obs, &mut sum).await?,
    }
    sum.seconds = started.elapsed().as_secs_f64();
    Ok(sum)
}

async fn user_tables(c: &Client) -> Result<i64, PgError> {
    let q = format!(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMAS}"
    );
    Ok(c.query_one(&q, &[]).await.map_err(PgError::query)?.get(0))
}

/// The encoding, collation and ctype of the database a client is in.
async fn locale(c: &Client) -> Result<(String, String, String), PgError> {
    let r = c
        .query_one(
            "SELECT pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_err(PgError::query)?;
    Ok((r.get(0), r.get(1), r.get(2)))
}

/// Connects to the target database, creating it (from template0, with the
/// given encoding, collation and ctype) when the server says it does not
/// exist.
pub(crate) async fn ensure_database(
    target_dsn: &str,
    locale: Option<(&str, &str, &str)>,
) -> Result<(Client, bool), PgError> {
    match connect(target_dsn, CONNECT_TIMEOUT).await {
        Ok(c) => return Ok((c, false)),
        Err(PgError::Connect { message, .. }) if message.contains("does not exist") => {}
        Err(e) => return Err(e),
    }
    let name = dbname(target_dsn)?;
    let admin = connect_to_db(target_dsn, "postgres", CONNECT_TIMEOUT).await?;
    // CREATE DATABASE takes no bind parameters: the values are quoted literals.
    let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&name));
    if let Some((enc, collate, ctype)) = locale {
        sql.push_str(&format!(
            " ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_literal(enc),
            quote_literal(collate),
            quote_literal(ctype)
        ));
    }
    admin
        .batch_execute(&sql)
        .await
        .map_err(|e| PgError::Other(format!("creating database {name}: {}", PgError::query(e))))?;
    Ok((connect(target_dsn, CONNECT_TIMEOUT).await?, true))
}

/// Quotes a string literal (standard_conforming_strings, on by default
/// since 9.1).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(crate) fn dbname(dsn: &str) -> Result<String, PgError> {
    let c: tokio_postgres::Config = dsn.parse().map_err(|e: tokio_postgres::Error| PgError::Dsn(e.to_string()))?;
    Ok(c.get_dbname().or(c.get_user()).unwrap_or("postgres").to_string())
}

/// pg_restore without ownership and grants, when asked.
pub(crate) fn no_owner_args(no_owner: bool, cmd: &mut tokio::process::Command) {
    if no_owner {
        cmd.args(["--no-owner", "--no-privileges"]);
    }
}

// ---------------------------------------------------------------- dump

async fn dump_copy(
    source_dsn: &str,
    target_dsn: &str,
    target: &Client,
    opts: &Options,
    obs: &Observer<'_>,
    sum: &mut Summary,
) -> Result<(), PgError> {
    if obs.done.contains("dump") {
        sum.skipped += 1;
        return Ok(());
    }
    let t0 = Instant::now();
    // A restore cut off half-way left objects behind: drop them first.
    let clean = user_tables(target).await? > 0;
    (obs.emit)(CopyEvent::Phase {
        name: "dump",
        message: format!(
            "pg_dump | pg_restore with {} job(s){}",
            opts.jobs,
            if clean { ", cleaning first" } else { "" }
        ),
    });
    let db = dbname(target_dsn)?;
    let mut restore = opts.tools.command("pg_restore", target_dsn)?;
    restore.arg("--dbname").arg(&db);
    no_owner_args(opts.no_owner, &mut restore);
    if clean {
        restore.args(["--clean", "--if-exists"]);
    }
    if opts.jobs > 1 {
        let dir = opts.work_dir.join("dump");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| PgError::Other(format!("cannot remove {}: {e}", dir.display())))?;
        }
        let mut dump = opts.tools.command("pg_dump", source_dsn)?;
        dump.args(["--format=directory", "--compress=0", &format!("--jobs={}", opts.jobs), "--file"]).arg(&dir);
        tools::run(dump, "pg_dump").await?;
        restore.arg(format!("--jobs={}", opts.jobs)).arg(&dir);
        tools::run(restore, "pg_restore").await?;
        // The archive is a copy of the whole database: not left lying around.
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        let mut dump = opts.tools.command("pg_dump", source_dsn)?;
        dump.arg("--format=custom").stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut dump = dump.spawn().map_err(|e| PgError::Tool(format!("cannot run pg_dump: {e}")))?;
        let pipe: std::process::Stdio = dump
            .stdout
            .take()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| PgError::Tool("cannot connect pg_dump to pg_restore".into()))?;
        restore.stdin(pipe).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        let restore = restore.spawn().map_err(|e| PgError::Tool(format!("cannot run pg_restore: {e}")))?;
        let (d, r) = tokio::join!(dump.wait_with_output(), restore.wait_with_output());
        let d = d.map_err(|e| PgError::Tool(format!("pg_dump: {e}")))?;
        let r = r.map_err(|e| PgError::Tool(format!("pg_restore: {e}")))?;
        if !d.status.success() {
            return Err(PgError::Tool(format!("pg_dump failed ({}): {}", d.status, tools::stderr_tail(&d.stderr))));
        }
        if !r.status.success() {
            return Err(PgError::Tool(format!("pg_restore failed ({}): {}", r.status, tools::stderr_tail(&r.stderr))));
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    sum.phases.push(("dump".into(), secs));
    obs.done("dump".into(), format!("pg_dump | pg_restore done in {secs:.1} s"), json!({ "seconds": secs }));
    Ok(())
}

// ---------------------------------------------------------------- fast

/// A table whose rows are copied.
#[derive(Debug)]
struct Table {
    name: String,
    /// Column list for COPY (quoted, generated columns left out), or empty.
    columns: String,
    /// Every column's type has a binary send/receive: COPY in binary.
    binary: bool,
    /// Indexes still to build before its constraints can be attached.
    indexes: Vec<usize>,
}

#[derive(Debug)]
struct Part {
    table: usize,
    key: String,
    /// `(column, low, high)`: low <= column < high, open ends as None.
    range: Option<(String, Option<i64>, Option<i64>)>,
    label: String,
    bytes: u64,
}

#[derive(Debug)]
struct Index {
    oid: u32,
    table: usize,
    schema: String,
    name: String,
    def: String,
    clustered: bool,
    replident: bool,
    /// Comments on the index and on its constraint: pg_restore leaves out
    /// the comments of entries it was told to skip.
    comment: Option<String>,
    constraint_comment: Option<String>,
    /// Its table's name, unquoted (as pg_restore --list writes it).
    table_name: String,
    /// The constraint it backs: (oid, name, "PRIMARY KEY" | "UNIQUE", deferrable clause).
    constraint: Option<(u32, String, &'static str, &'static str)>,
}

#[derive(Debug)]
enum Job {
    Part(usize),
    Index(usize),
}

struct Plan {
    tables: Vec<Table>,
    parts: Vec<Part>,
    indexes: Vec<Index>,
}

#[allow(clippy::too_many_arguments)]
async fn fast_copy(
    source_dsn: &str,
    target_dsn: &str,
    source: &Client,
    target: &Client,
    major: u32,
    opts: &Options,
    obs: &Observer<'_>,
    sum: &mut Summary,
) -> Result<(), PgError> {
    let los: i64 =
        source.query_one("SELECT count(*) FROM pg_largeobject_metadata", &[]).await.map_err(PgError::query)?.get(0);
    if los > 0 {
        return Err(PgError::Other(format!(
            "the source has {los} large object(s), which pg.copy's fast method does not copy: use method = \"dump\""
        )));
    }
    let archive = opts.work_dir.join("schema.dump");
    let mut phase = Instant::now();
    // The archive serves the pre-data and post-data sections: a resumed
    // copy past both does not dump the schema again.
    if !(obs.done.contains("schema") && obs.done.contains("post-data")) {
        (obs.emit)(CopyEvent::Phase { name: "schema", message: "pg_dump --schema-only; pre-data restored".into() });
        let mut dump = opts.tools.command("pg_dump", source_dsn)?;
        dump.args(["--schema-only", "--format=custom", "--file"]).arg(&archive);
        tools::run(dump, "pg_dump --schema-only").await?;
    }
    if obs.done.contains("schema") {
        sum.skipped += 1;
    } else {
        let mut restore = opts.tools.command("pg_restore", target_dsn)?;
        restore
            .args(["--section=pre-data", "--single-transaction", "--exit-on-error", "--dbname"])
            .arg(dbname(target_dsn)?);
        no_owner_args(opts.no_owner, &mut restore);
        restore.arg(&archive);
        tools::run(restore, "pg_restore of the schema (pre-data)").await?;
        obs.done("schema".into(), "schema (pre-data) restored".into(), json!({}));
    }
    sum.phases.push(("schema".into(), phase.elapsed().as_secs_f64()));

    // One snapshot for every worker: the copy is of one moment.
    phase = Instant::now();
    source
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET search_path = ''")
        .await
        .map_err(PgError::query)?;
    let snapshot: String = source.query_one("SELECT pg_export_snapshot()", &[]).await.map_err(PgError::query)?.get(0);
    let plan = plan(source, major, opts).await?;
    // Parts of an earlier attempt may be in the target: ranges are emptied first.
    let resuming = !obs.done.is_empty();
    sum.tables = plan.tables.len();
    sum.parts = plan.parts.len();
    let data_result = data_and_indexes(source_dsn, target_dsn, &snapshot, &plan, resuming, opts, obs, sum).await;
    // The snapshot's transaction only read.
    let _ = source.batch_execute("COMMIT; RESET search_path").await;
    data_result?;
    sum.phases.push(("data and indexes".into(), phase.elapsed().as_secs_f64()));

    phase = Instant::now();
    if obs.done.contains("post-data") {
        sum.skipped += 1;
    } else {
        (obs.emit)(CopyEvent::Phase { name: "post-data", message: "the rest of the post-data section".into() });
        let mut list = opts.tools.command("pg_restore", target_dsn)?;
        list.arg("--list").arg(&archive).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let out = list.output().await.map_err(|e| PgError::Tool(format!("cannot run pg_restore --list: {e}")))?;
        if !out.status.success() {
            return Err(PgError::Tool(format!("pg_restore --list failed: {}", tools::stderr_tail(&out.stderr))));
        }
        let fks = foreign_keys(source, major).await?;
        // What cutover builds itself, and the comments on it (applied by
        // cutover too: pg_restore would run some of them before the object).
        let mut ours: HashSet<(u32, u32)> = HashSet::new();
        let mut tags: Vec<String> = vec![];
        for i in &plan.indexes {
            ours.insert((1259, i.oid));
            tags.push(format!("COMMENT {} INDEX {}", i.schema, i.name));
            if let Some((coid, con, ..)) = &i.constraint {
                ours.insert((2606, *coid));
                tags.push(format!("COMMENT {} CONSTRAINT {con} ON {}", i.schema, i.table_name));
            }
        }
        for fk in &fks {
            ours.insert((2606, fk.oid));
            tags.push(format!("COMMENT {} CONSTRAINT {} ON {}", fk.schema, fk.name, fk.table_name));
        }
        let kept = without_entries(&String::from_utf8_lossy(&out.stdout), &ours, &tags);
        let list_path = opts.work_dir.join("post-data.list");
        std::fs::write(&list_path, kept)
            .map_err(|e| PgError::Other(format!("cannot write {}: {e}", list_path.display())))?;
        let mut restore = opts.tools.command("pg_restore", target_dsn)?;
        restore
            .args(["--section=post-data", "--single-transaction", "--exit-on-error", "--use-list"])
            .arg(&list_path)
            .arg("--dbname")
            .arg(dbname(target_dsn)?);
        no_owner_args(opts.no_owner, &mut restore);
        restore.arg(&archive);
        tools::run(restore, "pg_restore of the post-data section").await?;
        obs.done(
            "post-data".into(),
            "post-data section restored (triggers, rules, partitioned indexes…)".into(),
            json!({}),
        );
        sum.phases.push(("post-data".into(), phase.elapsed().as_secs_f64()));

        phase = Instant::now();
        sum.foreign_keys = add_foreign_keys(target_dsn, target, &fks, opts, obs).await?;
        sum.phases.push(("foreign keys".into(), phase.elapsed().as_secs_f64()));
    }

    phase = Instant::now();
    sum.sequences = copy_sequences(source, target).await?;
    sum.materialized_views = refresh_matviews(source, target).await?;
    sum.phases.push(("sequences and materialized views".into(), phase.elapsed().as_secs_f64()));
    let _ = std::fs::remove_file(&archive);
    Ok(())
}

/// Reads what to copy and build, inside the snapshot's transaction.
async fn plan(source: &Client, major: u32, opts: &Options) -> Result<Plan, PgError> {
    let generated = if major >= 12 { "AND a.attgenerated = ''" } else { "" };
    let q = format!(
        "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), pg_relation_size(c.oid), \
           coalesce((SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a \
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped {generated}), ''), \
           coalesce((SELECT bool_and(t.typsend <> 0 AND t.typreceive <> 0) FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), true), \
           (SELECT quote_ident(a.attname) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnatts = 1 \
               AND a.atttypid IN ('pg_catalog.int2'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype, 'pg_catalog.int8'::pg_catalog.regtype)) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND {USER_SCHEMAS} \
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e') \
         ORDER BY 3 DESC, 2"
    );
    let rows = source.query(&q, &[]).await.map_err(PgError::query)?;
    let mut tables = vec![];
    let mut parts = vec![];
    let mut by_oid = HashMap::new();
    for r in &rows {
        let oid: u32 = r.get(0);
        let name: String = r.get(1);
        let bytes = r.get::<_, i64>(2).max(0) as u64;
        let key: Option<String> = r.get(5);
        let t = tables.len();
        by_oid.insert(oid, t);
        let n = if bytes > opts.split_bytes && key.is_some() {
            bytes.div_ceil(opts.split_bytes.max(1)).clamp(2, 64)
        } else {
            1
        };
        match (n, key) {
            (n, Some(col)) if n > 1 => {
                let mm = source
                    .query_one(&format!("SELECT min({col})::int8, max({col})::int8 FROM ONLY {name}"), &[])
                    .await
                    .map_err(PgError::query)?;
                let (lo, hi): (Option<i64>, Option<i64>) = (mm.get(0), mm.get(1));
                let (lo, hi) = (lo.unwrap_or(0), hi.unwrap_or(0));
                let width = ((hi as i128 - lo as i128) / n as i128 + 1).max(1);
                for i in 0..n {
                    let low = (i > 0).then(|| (lo as i128 + width * i as i128) as i64);
                    let high = (i + 1 < n).then(|| (lo as i128 + width * (i + 1) as i128) as i64);
                    parts.push(Part {
                        table: t,
                        key: format!("data:{name}#{}/{n}", i + 1),
                        range: Some((col.clone(), low, high)),
                        label: format!("{name} part {}/{n}", i + 1),
                        bytes: bytes / n,
                    });
                }
            }
            _ => parts.push(Part { table: t, key: format!("data:{name}"), range: None, label: name.clone(), bytes }),
        }
        tables.push(Table { name, columns: r.get(3), binary: r.get(4), indexes: vec![] });
    }
    let q = format!(
        "SELECT i.indexrelid, c.oid, n.nspname::text, ic.relname::text, pg_get_indexdef(i.indexrelid), i.indisclustered, i.indisreplident, \
                k.oid, k.conname::text, k.contype::text, k.condeferrable, k.condeferred, \
                obj_description(i.indexrelid, 'pg_class'), obj_description(k.oid, 'pg_constraint'), c.relname::text \
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid \
           JOIN pg_namespace n ON n.oid = c.relnamespace \
           LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = c.oid AND k.contype IN ('p', 'u', 'x') \
         WHERE c.relkind = 'r' AND NOT c.relispartition AND i.indisvalid AND {USER_SCHEMAS} \
           AND (k.contype IS NULL OR k.contype <> 'x') \
         ORDER BY pg_relation_size(c.oid) DESC, ic.relname"
    );
    let mut indexes = vec![];
    for r in source.query(&q, &[]).await.map_err(PgError::query)? {
        let Some(&t) = by_oid.get(&r.get::<_, u32>(1)) else { continue };
        let constraint = match r.get::<_, Option<u32>>(7) {
            Some(coid) => {
                let kind = if r.get::<_, Option<String>>(9).as_deref() == Some("p") { "PRIMARY KEY" } else { "UNIQUE" };
                let deferrable = match (r.get::<_, Option<bool>>(10), r.get::<_, Option<bool>>(11)) {
                    (Some(true), Some(true)) => " DEFERRABLE INITIALLY DEFERRED",
                    (Some(true), _) => " DEFERRABLE",
                    _ => "",
                };
                Some((coid, r.get::<_, Option<String>>(8).unwrap_or_default(), kind, deferrable))
            }
            None => None,
        };
        tables[t].indexes.push(indexes.len());
        indexes.push(Index {
            oid: r.get(0),
            table: t,
            schema: r.get(2),
            name: r.get(3),
            def: r.get(4),
            clustered: r.get(5),
            replident: r.get(6),
            comment: r.get(12),
            constraint_comment: r.get(13),
            table_name: r.get(14),
            constraint,
        });
    }
    Ok(Plan { tables, parts, indexes })
}

/// The shared state of the workers: a queue of jobs (data parts first,
/// largest first; a table's indexes join the front once its data is in).
struct Pool {
    queue: VecDeque<Job>,
    running: usize,
    parts_left: Vec<usize>,
    failed: bool,
}

#[allow(clippy::too_many_arguments)]
async fn data_and_indexes(
    source_dsn: &str,
    target_dsn: &str,
    snapshot: &str,
    plan: &Plan,
    resuming: bool,
    opts: &Options,
    obs: &Observer<'_>,
    sum: &mut Summary,
) -> Result<(), PgError> {
    if !snapshot.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(PgError::Other(format!("unexpected snapshot name {snapshot:?}")));
    }
    let mut parts_left = vec![0; plan.tables.len()];
    let mut queue = VecDeque::new();
    for (i, p) in plan.parts.iter().enumerate() {
        if obs.done.contains(&p.key) {
            sum.skipped += 1;
        } else {
            parts_left[p.table] += 1;
            queue.push_back(Job::Part(i));
        }
    }
    for (t, left) in parts_left.iter().enumerate() {
        if *left == 0 {
            queue.extend(plan.tables[t].indexes.iter().map(|i| Job::Index(*i)));
        }
    }
    let total_bytes: u64 = plan.parts.iter().filter(|p| !obs.done.contains(&p.key)).map(|p| p.bytes).sum();
    (obs.emit)(CopyEvent::Phase {
        name: "data",
        message: format!(
            "{} table(s) in {} part(s), {} index(es), {} job(s)",
            plan.tables.len(),
            plan.parts.len(),
            plan.indexes.len(),
            opts.jobs
        ),
    });
    let pool = Mutex::new(Pool { queue, running: 0, parts_left, failed: false });
    let counters = Counters::default();
    let jobs = opts.jobs.clamp(1, 64);
    let mut workers = vec![];
    for _ in 0..jobs {
        let src = connect(source_dsn, CONNECT_TIMEOUT).await?;
        src.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{snapshot}'; SET search_path = ''"
        ))
        .await
        .map_err(PgError::query)?;
        let dst = connect(target_dsn, CONNECT_TIMEOUT).await?;
        dst.batch_execute(&format!(
            "SET search_path = ''; SET maintenance_work_mem = {}; SET synchronous_commit = off",
            quote_literal(&opts.maintenance_work_mem)
        ))
        .await
        .map_err(PgError::query)?;
        workers.push(worker(src, dst, plan, &pool, resuming, total_bytes, &counters, obs));
    }
    let results = futures_util::future::try_join_all(workers).await?;
    for r in results {
        sum.rows += r.rows;
        sum.bytes += r.bytes;
        sum.indexes += r.indexes;
        sum.constraints += r.constraints;
    }
    Ok(())
}

#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    rows: AtomicU64,
}

#[derive(Default)]
struct WorkerSum {
    rows: u64,
    bytes: u64,
    indexes: usize,
    constraints: usize,
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    src: Client,
    dst: Client,
    plan: &Plan,
    pool: &Mutex<Pool>,
    resuming: bool,
    total_bytes: u64,
    counters: &Counters,
    obs: &Observer<'_>,
) -> Result<WorkerSum, PgError> {
    let mut mine = WorkerSum::default();
    loop {
        obs.safe_point().await;
        let job = {
            let mut p = pool.lock().unwrap_or_else(|e| e.into_inner());
            if p.failed {
                return Ok(mine);
            }
            match p.queue.pop_front() {
                Some(j) => {
                    p.running += 1;
                    Some(j)
                }
                None if p.running == 0 => return Ok(mine),
                None => None,
            }
        };
        let Some(job) = job else {
            // Others are still copying data whose indexes may come.
            tokio::time::sleep(Duration::from_millis(25)).await;
            continue;
        };
        let result = match &job {
            Job::Part(i) => copy_part(&src, &dst, plan, &plan.parts[*i], resuming, total_bytes, counters, obs)
                .await
                .map(|(rows, bytes)| {
                    mine.rows += rows;
                    mine.bytes += bytes;
                }),
            Job::Index(i) => build_index(&dst, plan, &plan.indexes[*i], obs).await.map(|attached| {
                mine.indexes += 1;
                mine.constraints += attached as usize;
            }),
        };
        let mut p = pool.lock().unwrap_or_else(|e| e.into_inner());
        p.running -= 1;
        if let Err(e) = result {
            p.failed = true;
            return Err(e);
        }
        if let Job::Part(i) = job {
            let t = plan.parts[i].table;
            p.parts_left[t] -= 1;
            if p.parts_left[t] == 0 {
                for ix in plan.tables[t].indexes.iter().rev() {
                    p.queue.push_front(Job::Index(*ix));
                }
            }
        }
    }
}

/// One table or key range: emptied and copied in one target transaction.
#[allow(clippy::too_many_arguments)]
async fn copy_part(
    src: &Client,
    dst: &Client,
    plan: &Plan,
    part: &Part,
    resuming: bool,
    total_bytes: u64,
    counters: &Counters,
    obs: &Observer<'_>,
) -> Result<(u64, u64), PgError> {
    let t0 = Instant::now();
    let table = &plan.tables[part.table];
    let fmt = if table.binary { "binary" } else { "text" };
    let cols = if table.columns.is_empty() { String::new() } else { format!(" ({})", table.columns) };
    let select_cols = if table.columns.is_empty() { "*".to_string() } else { table.columns.clone() };
    dst.batch_execute("BEGIN").await.map_err(PgError::query)?;
    let (out_sql, in_sql) = match &part.range {
        None => {
            dst.batch_execute(&format!("TRUNCATE ONLY {}", table.name)).await.map_err(PgError::query)?;
            (
                format!("COPY {}{cols} TO STDOUT (FORMAT {fmt})", table.name),
                format!("COPY {}{cols} FROM STDIN (FORMAT {fmt}, FREEZE)", table.name),
            )
        }
        Some((col, lo, hi)) => {
            // Integers computed here, not input: safe to write into the text.
            let mut conds = vec![];
            if let Some(lo) = lo {
                conds.push(format!("{col} >= {lo}"));
            }
            if let Some(hi) = hi {
                conds.push(format!("{col} < {hi}"));
            }
            let cond = if conds.is_empty() { "true".to_string() } else { conds.join(" AND ") };
            if resuming {
                dst.batch_execute(&format!("DELETE FROM ONLY {} WHERE {cond}", table.name))
                    .await
                    .map_err(PgError::query)?;
            }
            (
                format!("COPY (SELECT {select_cols} FROM ONLY {} WHERE {cond}) TO STDOUT (FORMAT {fmt})", table.name),
                format!("COPY {}{cols} FROM STDIN (FORMAT {fmt})", table.name),
            )
        }
    };
    let copied = stream(src, dst, &out_sql, &in_sql, total_bytes, counters, obs).await;
    let (rows, bytes) = match copied {
        Ok(v) => v,
        Err(e) => {
            let _ = dst.batch_execute("ROLLBACK").await;
            return Err(PgError::Other(format!("copying {}: {e}", part.label)));
        }
    };
    dst.batch_execute("COMMIT").await.map_err(PgError::query)?;
    let secs = t0.elapsed().as_secs_f64();
    obs.done(
        part.key.clone(),
        format!("{}: {rows} rows, {} in {secs:.1} s", part.label, human_bytes(bytes)),
        json!({ "table": table.name, "part": part.label, "rows": rows, "bytes": bytes, "seconds": secs }),
    );
    Ok((rows, bytes))
}

async fn stream(
    src: &Client,
    dst: &Client,
    out_sql: &str,
    in_sql: &str,
    total_bytes: u64,
    counters: &Counters,
    obs: &Observer<'_>,
) -> Result<(u64, u64), PgError> {
    let sink = dst.copy_in::<_, Bytes>(in_sql).await.map_err(PgError::query)?;
    let out = src.copy_out(out_sql).await.map_err(PgError::query)?;
    pin_mut!(sink);
    pin_mut!(out);
    let mut bytes = 0u64;
    let mut since_report = 0u64;
    while let Some(chunk) = out.next().await {
        let chunk = chunk.map_err(PgError::query)?;
        let n = chunk.len() as u64;
        bytes += n;
        since_report += n;
        sink.feed(chunk).await.map_err(PgError::query)?;
        counters.rows.fetch_add(1, Ordering::Relaxed);
        let all = counters.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if since_report >= 8 << 20 {
            since_report = 0;
            (obs.emit)(CopyEvent::Progress {
                bytes: all,
                rows: counters.rows.load(Ordering::Relaxed),
                total_bytes: total_bytes.max(all),
            });
        }
    }
    let rows = sink.as_mut().finish().await.map_err(PgError::query)?;
    (obs.emit)(CopyEvent::Progress {
        bytes: counters.bytes.load(Ordering::Relaxed),
        rows: counters.rows.load(Ordering::Relaxed),
        total_bytes: total_bytes.max(counters.bytes.load(Ordering::Relaxed)),
    });
    Ok((rows, bytes))
}

/// Builds one index (unless an earlier attempt did) and, when it backs a
/// primary key or unique constraint, attaches it as that constraint.
async fn build_index(dst: &Client, plan: &Plan, ix: &Index, obs: &Observer<'_>) -> Result<bool, PgError> {
    let key = format!("index:{}.{}", ix.schema, ix.name);
    if obs.done.contains(&key) {
        return Ok(ix.constraint.is_some());
    }
    let t0 = Instant::now();
    let table = &plan.tables[ix.table].name;
    let qname = format!("{}.{}", quote_ident(&ix.schema), quote_ident(&ix.name));
    let attached = match &ix.constraint {
        Some((_, con, _, _)) => exists(dst, CONSTRAINT_EXISTS, &ix.schema, con).await?,
        None => false,
    };
    let built = attached || exists(dst, RELATION_EXISTS, &ix.schema, &ix.name).await?;
    let fail = |e: tokio_postgres::Error| PgError::Other(format!("building index {qname}: {}", PgError::query(e)));
    if !built {
        // A constraint's index is built as a plain unique index first.
        dst.batch_execute(&ix.def).await.map_err(fail)?;
    }
    if let Some((_, con, kind, deferrable)) = &ix.constraint
        && !attached
    {
        dst.batch_execute(&format!(
            "ALTER TABLE ONLY {table} ADD CONSTRAINT {} {kind} USING INDEX {}{deferrable}",
            quote_ident(con),
            quote_ident(&ix.name)
        ))
        .await
        .map_err(fail)?;
    }
    let final_name = match &ix.constraint {
        Some((_, con, ..)) => quote_ident(con),
        None => quote_ident(&ix.name),
    };
    if let (Some((_, con, ..)), Some(c)) = (&ix.constraint, &ix.constraint_comment) {
        dst.batch_execute(&format!("COMMENT ON CONSTRAINT {} ON {table} IS {}", quote_ident(con), quote_literal(c)))
            .await
            .map_err(fail)?;
    } else if let Some(c) = &ix.comment {
        dst.batch_execute(&format!("COMMENT ON INDEX {qname} IS {}", quote_literal(c))).await.map_err(fail)?;
    }
    if ix.clustered {
        dst.batch_execute(&format!("ALTER TABLE ONLY {table} CLUSTER ON {final_name}")).await.map_err(fail)?;
    }
    if ix.replident {
        dst.batch_execute(&format!("ALTER TABLE ONLY {table} REPLICA IDENTITY USING INDEX {final_name}"))
            .await
            .map_err(fail)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let what = match &ix.constraint {
        Some((_, con, kind, _)) => format!("index {qname} built and attached as {kind} {}", quote_ident(con)),
        None => format!("index {qname} built"),
    };
    obs.done(key, format!("{what} in {secs:.1} s"), json!({ "index": qname, "table": table, "seconds": secs }));
    Ok(ix.constraint.is_some())
}

const CONSTRAINT_EXISTS: &str = "SELECT 1 FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = $1 AND k.conname = $2";
const RELATION_EXISTS: &str = "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2";

async fn exists(c: &Client, sql: &str, schema: &str, name: &str) -> Result<bool, PgError> {
    c.query_opt(sql, &[&schema, &name]).await.map(|r| r.is_some()).map_err(PgError::query)
}

struct ForeignKey {
    oid: u32,
    table: String,
    schema: String,
    table_name: String,
    name: String,
    def: String,
    validated: bool,
    comment: Option<String>,
}

/// Foreign keys cutover adds itself: those of plain tables.
async fn foreign_keys(source: &Client, major: u32) -> Result<Vec<ForeignKey>, PgError> {
    let parent = if major >= 11 { "AND k.conparentid = 0" } else { "" };
    let q = format!(
        "SELECT k.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), k.conname::text, \
                pg_get_constraintdef(k.oid), k.convalidated, obj_description(k.oid, 'pg_constraint'), \
                n.nspname::text, c.relname::text \
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE k.contype = 'f' AND c.relkind = 'r' AND NOT c.relispartition {parent} AND {USER_SCHEMAS} \
         ORDER BY 2, 3"
    );
    // pg_get_constraintdef qualifies names only when the search_path hides them.
    source.batch_execute("SET search_path = ''").await.map_err(PgError::query)?;
    let rows = source.query(&q, &[]).await.map_err(PgError::query);
    let _ = source.batch_execute("RESET search_path").await;
    Ok(rows?
        .iter()
        .map(|r| ForeignKey {
            oid: r.get(0),
            table: r.get(1),
            name: r.get(2),
            def: r.get(3),
            validated: r.get(4),
            comment: r.get(5),
            schema: r.get(6),
            table_name: r.get(7),
        })
        .collect())
}

/// Adds the foreign keys NOT VALID (instant, one at a time: two ALTERs on
/// tables that reference each other would deadlock), then validates them
/// on `jobs` connections (a validation locks its table against another
/// validation only, so they run side by side).
async fn add_foreign_keys(
    target_dsn: &str,
    target: &Client,
    fks: &[ForeignKey],
    opts: &Options,
    obs: &Observer<'_>,
) -> Result<usize, PgError> {
    if fks.is_empty() {
        return Ok(0);
    }
    (obs.emit)(CopyEvent::Phase { name: "foreign-keys", message: format!("{} foreign key(s)", fks.len()) });
    target.batch_execute("SET search_path = ''").await.map_err(PgError::query)?;
    let mut to_validate = vec![];
    for fk in fks {
        let exists = target
            .query_opt(
                "SELECT k.convalidated FROM pg_catalog.pg_constraint k WHERE k.conrelid = $1::text::pg_catalog.regclass AND k.conname = $2",
                &[&fk.table, &fk.name],
            )
            .await
            .map_err(PgError::query)?
            .map(|r| r.get::<_, bool>(0));
        match exists {
            Some(true) => continue,
            Some(false) => {}
            None => {
                let def = fk.def.replace(" NOT VALID", "");
                target
                    .batch_execute(&format!(
                        "ALTER TABLE ONLY {} ADD CONSTRAINT {} {def} NOT VALID",
                        fk.table,
                        quote_ident(&fk.name)
                    ))
                    .await
                    .map_err(|e| PgError::Other(format!("adding foreign key {}: {}", fk.name, PgError::query(e))))?;
                if let Some(c) = &fk.comment {
                    target
                        .batch_execute(&format!(
                            "COMMENT ON CONSTRAINT {} ON {} IS {}",
                            quote_ident(&fk.name),
                            fk.table,
                            quote_literal(c)
                        ))
                        .await
                        .map_err(PgError::query)?;
                }
            }
        }
        if fk.validated {
            to_validate.push(fk);
        }
    }
    let queue = Mutex::new(to_validate.into_iter().collect::<VecDeque<_>>());
    let mut workers = vec![];
    for _ in 0..opts.jobs.clamp(1, 64) {
        let queue = &queue;
        let c = connect(target_dsn, CONNECT_TIMEOUT).await?;
        workers.push(async move {
            loop {
                obs.safe_point().await;
                let Some(fk) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else { return Ok(()) };
                let t0 = Instant::now();
                c.batch_execute(&format!("ALTER TABLE {} VALIDATE CONSTRAINT {}", fk.table, quote_ident(&fk.name)))
                    .await
                    .map_err(|e| {
                        PgError::Other(format!("validating foreign key {}: {}", fk.name, PgError::query(e)))
                    })?;
                let secs = t0.elapsed().as_secs_f64();
                obs.done(
                    format!("fk:{}.{}", fk.table, fk.name),
                    format!("foreign key {} on {} validated in {secs:.1} s", fk.name, fk.table),
                    json!({ "table": fk.table, "seconds": secs }),
                );
            }
        });
    }
    futures_util::future::try_join_all(workers).await?;
    let _ = target.batch_execute("RESET search_path").await;
    Ok(fks.len())
}

/// Sets every sequence of the target to the source's value.
async fn copy_sequences(source: &Client, target: &Client) -> Result<usize, PgError> {
    let q = format!(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'S' AND {USER_SCHEMAS} \
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1"
    );
    let names: Vec<String> = source.query(&q, &[]).await.map_err(PgError::query)?.iter().map(|r| r.get(0)).collect();
    for name in &names {
        let r = source
            .query_one(&format!("SELECT last_value, is_called FROM {name}"), &[])
            .await
            .map_err(PgError::query)?;
        let (value, called): (i64, bool) = (r.get(0), r.get(1));
        target
            .execute("SELECT pg_catalog.setval($1::text::pg_catalog.regclass, $2, $3)", &[name, &value, &called])
            .await
            .map_err(|e| PgError::Other(format!("setting sequence {name}: {}", PgError::query(e))))?;
    }
    Ok(names.len())
}

/// Refreshes the materialized views that hold data on the source and not
/// yet on the target, in creation order (one may read another).
async fn refresh_matviews(source: &Client, target: &Client) -> Result<usize, PgError> {
    let q = format!(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'm' AND c.relispopulated AND {USER_SCHEMAS} ORDER BY c.oid"
    );
    let names: Vec<String> = source.query(&q, &[]).await.map_err(PgError::query)?.iter().map(|r| r.get(0)).collect();
    let mut n = 0;
    for name in &names {
        let populated: bool = target
            .query_one(
                "SELECT relispopulated FROM pg_catalog.pg_class WHERE oid = $1::text::pg_catalog.regclass",
                &[name],
            )
            .await
            .map_err(PgError::query)?
            .get(0);
        if !populated {
            target
                .batch_execute(&format!("REFRESH MATERIALIZED VIEW {name}"))
                .await
                .map_err(|e| PgError::Other(format!("refreshing {name}: {}", PgError::query(e))))?;
            n += 1;
        }
    }
    Ok(n)
}

/// A `pg_restore --list` without the entries whose (catalog, oid) are in
/// `ours`. An entry line reads `dumpId; tableoid oid TYPE schema name owner`.
/// Entries whose text (after the ids) starts with one of `tags` and a
/// space go too (comments carry no oid of their object).
fn without_entries(list: &str, ours: &HashSet<(u32, u32)>, tags: &[String]) -> String {
    let mut kept = String::new();
    for line in list.lines() {
        let entry = line.split_once(';').and_then(|(_, rest)| {
            let rest = rest.trim_start();
            let (a, rest) = rest.split_once(' ')?;
            let (b, rest) = rest.split_once(' ')?;
            Some(((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?), rest))
        });
        if let Some((id, text)) = entry
            && (ours.contains(&id)
                || tags.iter().any(|t| text.strip_prefix(t.as_str()).is_some_and(|r| r.starts_with(' '))))
        {
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

/// 1536 → "1.5 KiB".
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", units[u]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_filter_drops_only_the_named_entries() {
        let list = ";\n; Archive created at\n3245; 1259 16400 INDEX public orders_created_idx postgres\n\
                    3246; 2606 16412 CONSTRAINT public orders orders_pkey postgres\n\
                    3247; 2620 16420 TRIGGER public orders audit postgres\n";
        let list = format!(
            "{list}3348; 0 0 COMMENT public CONSTRAINT orders_pkey ON orders postgres\n\
                            3349; 0 0 COMMENT public CONSTRAINT orders_pkey2 ON orders postgres\n"
        );
        let ours = HashSet::from([(1259, 16400), (2606, 16412)]);
        let tags = vec!["COMMENT public CONSTRAINT orders_pkey ON orders".to_string()];
        let kept = without_entries(&list, &ours, &tags);
        assert!(kept.contains("orders_pkey2"), "only the exact tag goes");
        assert!(!kept.contains("orders_created_idx"));
        assert!(!kept.contains("orders orders_pkey postgres"));
        assert!(!kept.contains("CONSTRAINT orders_pkey ON"));
        assert!(kept.contains("TRIGGER public orders audit"));
        assert!(kept.starts_with(";\n; Archive created at\n"));
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn literals_double_their_quotes() {
        assert_eq!(quote_literal("en_US.UTF-8"), "'en_US.UTF-8'");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
