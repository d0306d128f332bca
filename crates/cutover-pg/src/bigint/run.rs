//! Running a conversion: its state row, the stages in order, statements with
//! short retried locks, the cut-over transaction, rollback, contract, abort.

use super::sql::{self, Dir, Mode, Unit};
use super::{DryRun, Event, Observer, Options, STAGES, Spec, Status, discover};
use crate::PgError;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first key of the session advisory lock guarding a table's conversion ("cutb").
const LOCK_CLASS: i32 = 0x6375_7462;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Convert,
    Rollback,
    Contract,
    Abort,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "convert" => Action::Convert,
            "rollback" => Action::Rollback,
            "contract" => Action::Contract,
            "abort" => Action::Abort,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub table: String,
    pub column: String,
    /// Where the conversion stands at the end ("" when aborted).
    pub stage: String,
    /// The stages that ran, with their seconds.
    pub stages: Vec<(String, f64)>,
    /// Rows the backfill walked in this run.
    pub rows: i64,
    pub batches: u64,
    pub throttled_seconds: f64,
    pub statements: u64,
    /// The cut-over (or rollback) transaction, when it ran.
    pub cutover: Option<Cutover>,
    /// One sentence: what happened.
    pub message: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Cutover {
    pub attempts: u32,
    /// How long the successful attempt waited for its locks.
    pub lock_wait_ms: f64,
    /// How long it held them: from LOCK granted to COMMIT done.
    pub lock_held_ms: f64,
}

pub(super) struct Conv<'a> {
    pub client: Client,
    pub spec: Spec,
    pub opts: &'a Options,
    pub obs: &'a Observer<'a>,
    pub stage: String,
    pub positions: Map<String, Value>,
    pub rows_total: i64,
    pub sum: Summary,
}

pub(super) fn retryable(e: &PgError) -> bool {
    matches!(e, PgError::Query { sqlstate: Some(s), .. } if s == "55P03" || s == "57014" || s == "40P01")
}

/// A jittered pause before another attempt: between half and one and a half
/// times `base`. (Jitter only needs to differ between processes: the clock's
/// nanoseconds do, without a random-number crate.)
pub(super) async fn jitter(base: Duration) {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let frac = f64::from(nanos % 1000) / 1000.0;
    tokio::time::sleep(base.mul_f64(0.5 + frac)).await;
}

async fn ensure_state(client: &Client) -> Result<(), PgError> {
    // Two first conversions at once can race on CREATE … IF NOT EXISTS; the
    // loser's second try finds everything there.
    if client.batch_execute(sql::STATE_DDL).await.is_err() {
        client.batch_execute(sql::STATE_DDL).await.map_err(PgError::query)?;
    }
    Ok(())
}

async fn state_exists(client: &Client) -> Result<bool, PgError> {
    let r = client
        .query_one("SELECT to_regclass('cutover.bigint_conversions') IS NOT NULL", &[])
        .await
        .map_err(PgError::query)?;
    Ok(r.get(0))
}

/// Takes the session lock on a table's conversion, or says who holds it.
async fn lock_conversion(client: &Client, qname: &str) -> Result<(), PgError> {
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock($1, hashtext($2))", &[&LOCK_CLASS, &qname])
        .await
        .map_err(PgError::query)?
        .get(0);
    if got {
        return Ok(());
    }
    let holder: Option<String> = client
        .query_one(
            "SELECT string_agg(l.pid::text || coalesce(' (' || nullif(a.application_name, '') || ')', ''), ', ')
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid::int8 = $1::int8
               AND l.objid::int8 = (hashtext($2)::int8 & 4294967295)",
            &[&i64::from(LOCK_CLASS), &qname],
        )
        .await
        .map_err(PgError::query)?
        .get(0);
    Err(PgError::Other(format!(
        "another process is converting {qname} (backend pid {}): wait for it, or stop it first",
        holder.unwrap_or_else(|| "unknown".into())
    )))
}

struct Row {
    column: String,
    stage: String,
    spec: Spec,
    positions: Map<String, Value>,
    rows_total: i64,
}

async fn load(client: &Client, qname: &str, column: Option<&str>) -> Result<Option<Row>, PgError> {
    let rows = client
        .query(
            "SELECT column_name, stage, spec::text, positions::text, rows_total FROM cutover.bigint_conversions
             WHERE table_name = $1 AND ($2::text IS NULL OR column_name = $2)",
            &[&qname, &column],
        )
        .await
        .map_err(PgError::query)?;
    let Some(r) = rows.first() else { return Ok(None) };
    let spec: Spec = serde_json::from_str(&r.get::<_, String>(2))
        .map_err(|e| PgError::Other(format!("the saved state of {qname}'s conversion cannot be read: {e}")))?;
    let positions = match serde_json::from_str(&r.get::<_, String>(3)) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    Ok(Some(Row { column: r.get(0), stage: r.get(1), spec, positions, rows_total: r.get(4) }))
}

fn next_of(stage: &str) -> usize {
    STAGES.iter().position(|s| *s == stage).map_or(0, |i| i + 1)
}

fn stage_index(name: &str) -> Result<usize, PgError> {
    STAGES
        .iter()
        .position(|s| *s == name)
        .ok_or_else(|| PgError::Other(format!("there is no stage `{name}` (stages: {})", STAGES.join(", "))))
}

/// Runs an action on a table's conversion, from where its state says it is.
pub async fn run(dsn: &str, action: Action, opts: &Options, obs: &Observer<'_>) -> Result<Summary, PgError> {
    let client = crate::connect(dsn, CONNECT_TIMEOUT).await?;
    client
        .batch_execute("SET lock_timeout = 0; SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0")
        .await
        .map_err(PgError::query)?;
    ensure_state(&client).await?;
    let qname = discover::qualified(&client, &opts.table).await?;
    lock_conversion(&client, &qname).await?;
    let row = match load(&client, &qname, opts.column.as_deref()).await? {
        Some(r) => r,
        None if action == Action::Convert => {
            let spec = discover::discover(&client, &qname, opts.column.as_deref()).await?;
            let total = spec.rows();
            let text = serde_json::to_string(&spec).map_err(|e| PgError::Other(e.to_string()))?;
            client
                .execute(
                    "INSERT INTO cutover.bigint_conversions (table_name, column_name, stage, spec, rows_total)
                     VALUES ($1, $2, '', $3::text::jsonb, $4)",
                    &[&spec.table, &spec.column, &text, &total],
                )
                .await
                .map_err(PgError::query)?;
            Row { column: spec.column.clone(), stage: String::new(), spec, positions: Map::new(), rows_total: total }
        }
        None => {
            return Err(PgError::Other(format!(
                "no conversion of {qname} is under way (see `cutover pg bigint --status`)"
            )));
        }
    };
    let mut c = Conv {
        client,
        opts,
        obs,
        stage: row.stage,
        positions: row.positions,
        rows_total: row.rows_total,
        sum: Summary { table: row.spec.table.clone(), column: row.column, ..Default::default() },
        spec: row.spec,
    };
    match action {
        Action::Convert => c.convert().await?,
        Action::Rollback => c.rollback().await?,
        Action::Contract => c.contract().await?,
        Action::Abort => c.abort().await?,
    }
    c.sum.stage = c.stage.clone();
    Ok(c.sum)
}

impl Conv<'_> {
    fn emit(&self, e: Event) {
        (self.obs.emit)(e)
    }

    async fn set_stage(&mut self, stage: &str, history: Option<Value>) -> Result<(), PgError> {
        let h = history.map(|h| h.to_string()).unwrap_or_else(|| "null".into());
        self.client
            .execute(
                "UPDATE cutover.bigint_conversions SET stage = $3, updated_at = now(), throttle = NULL,
                   history = CASE WHEN $4::text::jsonb = 'null' THEN history ELSE history || jsonb_build_array($4::text::jsonb) END
                 WHERE table_name = $1 AND column_name = $2",
                &[&self.spec.table, &self.spec.column, &stage, &h],
            )
            .await
            .map_err(PgError::query)?;
        self.stage = stage.to_string();
        Ok(())
    }

    async fn convert(&mut self) -> Result<(), PgError> {
        if self.stage == "contract" {
            self.sum.message =
                format!("{}.{} is converted and contracted: nothing to do", self.spec.table, self.spec.column);
            return Ok(());
        }
        let next = next_of(&self.stage);
        let start = match &self.opts.from {
            Some(f) => stage_index(f)?,
            None => next,
        };
        if start > next {
            return Err(PgError::Other(format!(
                "stage {} needs {} first (the conversion is {})",
                STAGES[start],
                STAGES[next],
                if self.stage.is_empty() { "not started".to_string() } else { format!("at {} done", self.stage) }
            )));
        }
        if self.stage == "cutover" && start < next {
            return Err(PgError::Other(
                "the conversion is cut over: roll it back (--rollback) before running an earlier stage again".into(),
            ));
        }
        let end = match &self.opts.until {
            Some(u) => stage_index(u)?,
            None => STAGES.len() - 1,
        };
        if start > end {
            self.sum.message = if self.stage == "cutover" {
                format!(
                    "{} is already cut over to bigint: run contract to finish, or rollback to go back",
                    self.spec.table
                )
            } else {
                format!("nothing to do: the conversion is at {} done", self.stage)
            };
            return Ok(());
        }
        for (i, name) in STAGES.iter().copied().enumerate().take(end + 1).skip(start) {
            let t0 = Instant::now();
            self.emit(Event::Stage { stage: name.into(), message: stage_message(name, &self.spec) });
            match name {
                "expand" => self.expand().await?,
                "backfill" => {
                    if self.opts.from.as_deref() == Some("backfill") && i == start {
                        self.reset_positions();
                    }
                    self.backfill().await?
                }
                "verify" => self.verify(Dir::Forward).await?,
                "prepare" => {
                    let units = sql::prepare(&self.spec, Dir::Forward, &existing(&self.client, &self.spec).await?);
                    self.run_units(&units).await?;
                }
                _ => self.cutover(Dir::Forward).await?,
            }
            if name != "cutover" {
                self.set_stage(name, None).await?;
            }
            self.sum.stages.push((name.into(), t0.elapsed().as_secs_f64()));
        }
        self.sum.message = match self.stage.as_str() {
            "cutover" => format!(
                "{}.{} and {} foreign key(s) are bigint now; the int columns stay current until contract",
                self.spec.table,
                self.spec.column,
                self.spec.fks.len()
            ),
            s => format!("stopped after {s}, as asked: run again to go on"),
        };
        Ok(())
    }

    async fn expand(&mut self) -> Result<(), PgError> {
        let units = sql::expand(&self.spec);
        self.run_units(&units).await?;
        // The high-water mark of each key, read after the triggers exist:
        // rows written since are kept equal by them; the backfill walks up to it.
        for (i, t) in self.spec.tables.iter().enumerate() {
            if t.columns.is_empty() || self.positions.contains_key(&i.to_string()) {
                continue;
            }
            // Qualified, so ORDER BY sorts by the key and not by its text.
            let cols: Vec<String> = t.key.iter().map(|k| format!("k.{}::text", crate::quote_ident(&k.name))).collect();
            let desc: Vec<String> = t.key.iter().map(|k| format!("k.{} DESC", crate::quote_ident(&k.name))).collect();
            let row = self
                .client
                .query_opt(
                    &format!("SELECT {} FROM {} AS k ORDER BY {} LIMIT 1", cols.join(", "), t.name, desc.join(", ")),
                    &[],
                )
                .await
                .map_err(PgError::query)?;
            let hwm: Option<Vec<String>> = row.map(|r| (0..t.key.len()).map(|j| r.get::<_, String>(j)).collect());
            let done = hwm.is_none();
            self.positions.insert(i.to_string(), json!({ "hwm": hwm, "pos": null, "done": done, "rows": 0 }));
        }
        let text = Value::Object(self.positions.clone()).to_string();
        self.client
            .execute(
                "UPDATE cutover.bigint_conversions SET positions = $3::text::jsonb WHERE table_name = $1 AND column_name = $2",
                &[&self.spec.table, &self.spec.column, &text],
            )
            .await
            .map_err(PgError::query)?;
        Ok(())
    }

    fn reset_positions(&mut self) {
        for v in self.positions.values_mut() {
            if v["hwm"].is_array() {
                v["pos"] = Value::Null;
                v["done"] = json!(false);
            }
        }
    }

    pub(super) async fn verify(&mut self, dir: Dir) -> Result<(), PgError> {
        for t in self.spec.tables.iter().filter(|t| !t.columns.is_empty()) {
            let n: i64 = self
                .client
                .query_one(&format!("SELECT count(*) FROM {} WHERE {}", t.name, sql::differs(t, dir.sfx())), &[])
                .await
                .map_err(PgError::query)?
                .get(0);
            if n > 0 {
                let cols: Vec<String> = t.columns.iter().map(|c| crate::quote_ident(&c.name)).collect();
                return Err(PgError::Other(match dir {
                    Dir::Forward => format!(
                        "verify: {n} row(s) of {} differ between {} and their bigint copies: run the backfill again (--from backfill)",
                        t.name,
                        cols.join(", ")
                    ),
                    Dir::Back => format!(
                        "cannot roll back: {n} row(s) of {} hold a key beyond the range of {} (or differ from the int copy)",
                        t.name, t.columns[0].int_type
                    ),
                }));
            }
        }
        Ok(())
    }

    async fn run_units(&mut self, units: &[Unit]) -> Result<(), PgError> {
        for u in units {
            match u.mode {
                Mode::Short => self.short(&u.sql).await?,
                Mode::Long => {
                    for s in &u.sql {
                        self.exec(s).await?;
                    }
                }
                Mode::Concurrent => {
                    for s in &u.sql {
                        self.concurrent(s).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn exec(&mut self, s: &str) -> Result<(), PgError> {
        let t0 = Instant::now();
        self.client
            .batch_execute(s)
            .await
            .map_err(|e| PgError::Other(format!("`{}` failed: {}", first_line(s), PgError::query(e))))?;
        self.sum.statements += 1;
        self.emit(Event::Statement { sql: s.to_string(), ms: t0.elapsed().as_secs_f64() * 1000.0 });
        Ok(())
    }

    /// A statement outside any transaction. A CREATE INDEX CONCURRENTLY that
    /// fails leaves an invalid index: it is dropped and built again (three
    /// tries).
    async fn concurrent(&mut self, s: &str) -> Result<(), PgError> {
        let mut last = None;
        for _ in 0..3 {
            match self.exec(s).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let Some(name) = created_index(s) else { return Err(e) };
                    // The index is in the table's schema.
                    let schema = self.spec.tables.iter().find(|t| s.contains(&format!(" ON {} USING", t.name)));
                    if let Some(t) = schema {
                        let drop = format!("DROP INDEX CONCURRENTLY IF EXISTS {}.{}", t.schema, name);
                        self.exec(&drop).await?;
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| PgError::Other(format!("`{}` failed", first_line(s)))))
    }

    /// Statements in one transaction with the short timeouts, retried with
    /// jitter while their lock cannot be had; failing closed after
    /// `attempts`, having changed nothing.
    async fn short(&mut self, stmts: &[String]) -> Result<(), PgError> {
        let attempts = self.opts.attempts.max(1);
        for attempt in 1..=attempts {
            let r = self.short_once(stmts).await;
            match r {
                Ok(()) => return Ok(()),
                Err(e) if retryable(&e) => {
                    self.emit(Event::Retry { what: first_line(&stmts[0]).into(), attempt, message: e.to_string() });
                    jitter(self.opts.lock_timeout.min(Duration::from_millis(500))).await;
                }
                Err(e) => return Err(PgError::Other(format!("`{}` failed: {e}", first_line(&stmts[0])))),
            }
        }
        let holders = self.holders().await;
        Err(PgError::Other(format!(
            "could not take the lock for `{}` in {attempts} attempt(s) of {} ms each ({holders}); nothing was changed",
            first_line(&stmts[0]),
            self.opts.lock_timeout.as_millis()
        )))
    }

    async fn short_once(&mut self, stmts: &[String]) -> Result<(), PgError> {
        self.begin_short().await?;
        for s in stmts {
            let t0 = Instant::now();
            if let Err(e) = self.client.batch_execute(s).await {
                let _ = self.client.batch_execute("ROLLBACK").await;
                return Err(PgError::query(e));
            }
            self.sum.statements += 1;
            self.emit(Event::Statement { sql: s.clone(), ms: t0.elapsed().as_secs_f64() * 1000.0 });
        }
        self.client.batch_execute("COMMIT").await.map_err(PgError::query)
    }

    async fn begin_short(&self) -> Result<(), PgError> {
        self.client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
                self.opts.lock_timeout.as_millis().max(1),
                self.opts.statement_timeout.as_millis().max(1)
            ))
            .await
            .map_err(PgError::query)
    }

    /// Who holds locks on the tables now, for a failing-closed message.
    async fn holders(&self) -> String {
        let oids: Vec<i64> = self.spec.tables.iter().map(|t| t.oid).collect();
        let r = self
            .client
            .query_one(
                "SELECT string_agg(DISTINCT l.pid::text || ' (' || l.mode || coalesce(', ' || nullif(a.application_name, ''), '') || ')', ', ')
                 FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.relation::int8 = ANY ($1) AND l.granted AND l.pid <> pg_backend_pid()",
                &[&oids],
            )
            .await;
        match r.ok().and_then(|r| r.get::<_, Option<String>>(0)) {
            Some(h) => format!("held by backend {h}"),
            None => "no holder left now".into(),
        }
    }

    /// The cut-over (or the rollback's swap): LOCK, swap, state, COMMIT in
    /// one transaction under the short timeouts, retried with jitter,
    /// failing closed.
    pub(super) async fn cutover(&mut self, dir: Dir) -> Result<(), PgError> {
        let attempts = self.opts.attempts.max(1);
        let lock = sql::swap_lock(&self.spec);
        let seqs = sql::identity_sequences(&self.spec);
        let (stage, event) = match dir {
            Dir::Forward => ("cutover", "cut over to bigint"),
            Dir::Back => ("verify", "rolled back to int"),
        };
        for attempt in 1..=attempts {
            let t0 = Instant::now();
            self.begin_short().await?;
            let r: Result<(Instant, usize), PgError> = async {
                self.client.batch_execute(&lock).await.map_err(PgError::query)?;
                let locked = Instant::now();
                let mut next = BTreeMap::new();
                for s in &seqs {
                    let r = self
                        .client
                        .query_one(
                            &format!("SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM {s}"),
                            &[],
                        )
                        .await
                        .map_err(PgError::query)?;
                    next.insert(s.clone(), r.get::<_, i64>(0));
                }
                let body = sql::swap(&self.spec, dir, Some(&next));
                for s in &body {
                    self.client.batch_execute(s).await.map_err(|e| {
                        let e = PgError::query(e);
                        if retryable(&e) { e } else { PgError::Other(format!("`{}` failed: {e}", first_line(s))) }
                    })?;
                }
                let h = json!({ "event": event, "attempt": attempt }).to_string();
                self.client
                    .execute(
                        "UPDATE cutover.bigint_conversions SET stage = $3, updated_at = now(), throttle = NULL,
                           history = history || jsonb_build_array($4::text::jsonb || jsonb_build_object('at', now()))
                         WHERE table_name = $1 AND column_name = $2",
                        &[&self.spec.table, &self.spec.column, &stage, &h],
                    )
                    .await
                    .map_err(PgError::query)?;
                self.client.batch_execute("COMMIT").await.map_err(PgError::query)?;
                Ok((locked, body.len() + 2))
            }
            .await;
            match r {
                Ok((locked, n)) => {
                    let held = locked.elapsed().as_secs_f64() * 1000.0;
                    let wait = locked.duration_since(t0).as_secs_f64() * 1000.0;
                    self.sum.statements += n as u64;
                    self.sum.cutover = Some(Cutover { attempts: attempt, lock_wait_ms: wait, lock_held_ms: held });
                    self.emit(Event::Statement {
                        sql: format!("{lock}; … {n} statements …; COMMIT (locks held {held:.1} ms)"),
                        ms: held + wait,
                    });
                    self.stage = stage.into();
                    return Ok(());
                }
                Err(e) => {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    if !retryable(&e) {
                        return Err(PgError::Other(format!("the {} failed and changed nothing: {e}", stage_word(dir))));
                    }
                    self.emit(Event::Retry { what: stage_word(dir).into(), attempt, message: e.to_string() });
                    if attempt < attempts {
                        jitter(self.opts.lock_timeout.min(Duration::from_millis(500))).await;
                    }
                }
            }
        }
        let holders = self.holders().await;
        Err(PgError::Other(format!(
            "the {} could not take its locks in {attempts} attempt(s) (lock_timeout {} ms each; {holders}): nothing was changed, the tables are as they were",
            stage_word(dir),
            self.opts.lock_timeout.as_millis()
        )))
    }

    async fn rollback(&mut self) -> Result<(), PgError> {
        if self.stage != "cutover" {
            return Err(PgError::Other(format!(
                "nothing to roll back: {} is not cut over (the conversion is {}); abort undoes an unfinished one",
                self.spec.table,
                if self.stage.is_empty() { "not started".to_string() } else { format!("at {} done", self.stage) }
            )));
        }
        let t0 = Instant::now();
        self.emit(Event::Stage {
            stage: "rollback".into(),
            message: "checking that every key fits the int columns".into(),
        });
        self.verify(Dir::Back).await?;
        let units = sql::prepare(&self.spec, Dir::Back, &existing(&self.client, &self.spec).await?);
        self.emit(Event::Stage {
            stage: "rollback".into(),
            message: format!("{} statement group(s) to prepare the int columns", units.len()),
        });
        self.run_units(&units).await?;
        self.cutover(Dir::Back).await?;
        self.sum.stages.push(("rollback".into(), t0.elapsed().as_secs_f64()));
        self.sum.message = format!(
            "{}.{} is int again (the bigint columns stay current: cut over again, or abort to drop them)",
            self.spec.table, self.spec.column
        );
        Ok(())
    }

    async fn contract(&mut self) -> Result<(), PgError> {
        if self.stage == "contract" {
            self.sum.message = "already contracted: nothing to do".into();
            return Ok(());
        }
        if self.stage != "cutover" {
            return Err(PgError::Other(format!(
                "contract drops the old int columns, which only makes sense after the cut-over (the conversion is {})",
                if self.stage.is_empty() { "not started".to_string() } else { format!("at {} done", self.stage) }
            )));
        }
        let t0 = Instant::now();
        self.emit(Event::Stage {
            stage: "contract".into(),
            message: "dropping the int columns, trigger and old indexes".into(),
        });
        let units = sql::contract(&self.spec);
        self.run_units(&units).await?;
        self.set_stage("contract", Some(json!({ "event": "contracted" }))).await?;
        self.sum.stages.push(("contract".into(), t0.elapsed().as_secs_f64()));
        self.sum.message = format!("{} contracted: the int columns and the sync triggers are gone", self.spec.table);
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), PgError> {
        match self.stage.as_str() {
            "cutover" => {
                return Err(PgError::Other(
                    "the conversion is cut over: roll it back first (rollback), then abort".into(),
                ));
            }
            "contract" => return Err(PgError::Other("the conversion is finished: there is nothing to abort".into())),
            _ => {}
        }
        let t0 = Instant::now();
        self.emit(Event::Stage { stage: "abort".into(), message: "dropping what the conversion added".into() });
        let units = sql::abort(&self.spec);
        self.run_units(&units).await?;
        self.client
            .execute(
                "DELETE FROM cutover.bigint_conversions WHERE table_name = $1 AND column_name = $2",
                &[&self.spec.table, &self.spec.column],
            )
            .await
            .map_err(PgError::query)?;
        self.stage = String::new();
        self.sum.stages.push(("abort".into(), t0.elapsed().as_secs_f64()));
        self.sum.message = format!("conversion of {} aborted: the tables are as they were", self.spec.table);
        Ok(())
    }
}

async fn existing(client: &Client, spec: &Spec) -> Result<sql::Existing, PgError> {
    let oids: Vec<i64> = spec.tables.iter().map(|t| t.oid).collect();
    let mut e = sql::Existing::default();
    for r in client
        .query("SELECT conrelid::int8, conname::text FROM pg_constraint WHERE conrelid::int8 = ANY ($1)", &[&oids])
        .await
        .map_err(PgError::query)?
    {
        e.constraints.insert((r.get(0), r.get(1)));
    }
    for r in client
        .query(
            "SELECT i.indrelid::int8, c.relname::text, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid::int8 = ANY ($1)",
            &[&oids],
        )
        .await
        .map_err(PgError::query)?
    {
        e.indexes.insert((r.get(0), r.get(1)), r.get(2));
    }
    Ok(e)
}

fn stage_word(dir: Dir) -> &'static str {
    match dir {
        Dir::Forward => "cut-over",
        Dir::Back => "rollback",
    }
}

fn stage_message(stage: &str, spec: &Spec) -> String {
    let rows = spec.rows();
    match stage {
        "expand" => format!("adding bigint columns and sync triggers to {} table(s)", spec.tables.len()),
        "backfill" => format!("copying keys into the bigint columns (about {rows} rows)"),
        "verify" => "checking that every bigint column equals its int column".into(),
        "prepare" => "building indexes concurrently, validating NOT NULL and foreign keys".into(),
        _ => "swapping the columns in one short transaction".into(),
    }
}

fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or(s);
    if line.len() > 160 {
        let mut end = 160;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        &line[..end]
    } else {
        line
    }
}

/// The name of the index a CREATE INDEX CONCURRENTLY builds, as written.
fn created_index(s: &str) -> Option<&str> {
    let rest = s.split_once("INDEX CONCURRENTLY ")?.1;
    rest.split_once(" ON ").map(|(n, _)| n)
}

/// What a conversion would do now: discovery, and each stage still to run
/// with its statements and their locks. Changes nothing.
pub async fn dry_run(client: &Client, opts: &Options) -> Result<DryRun, PgError> {
    let qname = discover::qualified(client, &opts.table).await?;
    let saved = if state_exists(client).await? { load(client, &qname, opts.column.as_deref()).await? } else { None };
    let (spec, stage) = match saved {
        Some(r) => (r.spec, r.stage),
        None => (discover::discover(client, &qname, opts.column.as_deref()).await?, String::new()),
    };
    let mut stages = vec![];
    let from = next_of(&stage);
    let t = |u: Vec<String>, mode: Mode, lock: String| sql::Unit { sql: u, mode, lock };
    for name in STAGES.iter().skip(from) {
        let units = match *name {
            "expand" => sql::expand(&spec),
            "backfill" => spec
                .tables
                .iter()
                .filter(|t| !t.columns.is_empty())
                .map(|tb| {
                    let keys: Vec<String> = tb.key.iter().map(|k| crate::quote_ident(&k.name)).collect();
                    t(
                        vec![format!(
                            "UPDATE {} SET {} WHERE ({}) > (<last key>) AND ({}) <= (<batch end>) AND ({})  -- about {} rows, in batches of ~{} ms",
                            tb.name,
                            sql::assignments(tb, "__bigint"),
                            keys.join(", "),
                            keys.join(", "),
                            sql::differs(tb, "__bigint"),
                            tb.rows,
                            opts.batch_time.as_millis()
                        )],
                        Mode::Long,
                        format!("ROW EXCLUSIVE on {} and the row locks of one batch, one transaction per batch", tb.name),
                    )
                })
                .collect(),
            "verify" => spec
                .tables
                .iter()
                .filter(|t| !t.columns.is_empty())
                .map(|tb| {
                    t(
                        vec![format!("SELECT count(*) FROM {} WHERE {}", tb.name, sql::differs(tb, "__bigint"))],
                        Mode::Long,
                        format!("ACCESS SHARE on {} (reads only)", tb.name),
                    )
                })
                .collect(),
            "prepare" => {
                // What exists now decides what prepare still has to build.
                sql::prepare(&spec, Dir::Forward, &existing(client, &spec).await?)
            }
            _ => {
                let mut sql = vec![sql::swap_lock(&spec)];
                sql.extend(sql::swap(&spec, Dir::Forward, None));
                vec![t(
                    sql,
                    Mode::Short,
                    format!(
                        "ACCESS EXCLUSIVE on {} for the whole transaction (catalog changes only): lock_timeout {} ms, statement_timeout {} ms, up to {} attempts with jitter, then it fails having changed nothing",
                        spec.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "),
                        opts.lock_timeout.as_millis(),
                        opts.statement_timeout.as_millis(),
                        opts.attempts
                    ),
                )]
            }
        };
        stages.push((name.to_string(), units));
    }
    let mut notes = vec![];
    if !spec.user_triggers.is_empty() {
        notes
            .push(format!("these triggers fire for every row the backfill updates: {}", spec.user_triggers.join("; ")));
    }
    notes.push("each converted column moves to the end of its table's columns (SELECT * lists it last)".to_string());
    if !spec.views.is_empty() {
        let names: Vec<&str> = spec.views.iter().map(|v| v.name.as_str()).collect();
        notes.push(format!("views dropped and created again in the cut-over: {}", names.join(", ")));
    }
    let long: Option<String> = client
        .query_one(
            "SELECT string_agg(pid::text || ' (' || round(extract(epoch FROM now() - xact_start))::text || ' s)', ', ')
             FROM pg_stat_activity WHERE xact_start < now() - interval '1 minute' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .map_err(PgError::query)?
        .get(0);
    if let Some(l) = long {
        notes.push(format!("transactions open for over a minute now (they hold the backfill's dead rows and delay concurrent index builds): {l}"));
    }
    let size: Option<String> = client
        .query_one(
            "SELECT pg_size_pretty(sum(pg_indexes_size(oid))) FROM pg_class WHERE oid::int8 = ANY ($1)",
            &[&spec.tables.iter().map(|t| t.oid).collect::<Vec<i64>>()],
        )
        .await
        .map_err(PgError::query)?
        .get(0);
    if let Some(s) = size {
        notes.push(format!(
            "disk: the new indexes take about as much as those they replace (these tables' indexes: {s} in all), plus 8 bytes per row and a dead row version per row backfilled, until VACUUM"
        ));
    }
    Ok(DryRun { spec, stage, stages, notes })
}

/// The conversions recorded in a database (one table's when given).
pub async fn status(client: &Client, table: Option<&str>) -> Result<Vec<Status>, PgError> {
    if !state_exists(client).await? {
        return Ok(vec![]);
    }
    let qname = match table {
        Some(t) => Some(discover::qualified(client, t).await?),
        None => None,
    };
    let rows = client
        .query(
            "SELECT table_name, column_name, stage, paused, throttle, rows_done, rows_total,
                    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), history::text
             FROM cutover.bigint_conversions WHERE $1::text IS NULL OR table_name = $1 ORDER BY started_at",
            &[&qname],
        )
        .await
        .map_err(PgError::query)?;
    Ok(rows
        .iter()
        .map(|r| {
            let stage: String = r.get(2);
            let next = match stage.as_str() {
                "" => "expand: run it to start".to_string(),
                "cutover" => "cut over: contract to finish, or rollback to go back".to_string(),
                "contract" => "finished".to_string(),
                s => format!("{} next", STAGES.get(next_of(s)).copied().unwrap_or("cutover")),
            };
            Status {
                table: r.get(0),
                column: r.get(1),
                stage,
                next,
                paused: r.get(3),
                throttle: r.get(4),
                rows_done: r.get(5),
                rows_total: r.get(6),
                started_at: r.get(7),
                updated_at: r.get(8),
                history: serde_json::from_str(&r.get::<_, String>(9)).unwrap_or(Value::Null),
            }
        })
        .collect())
}

/// Pauses (or resumes) a conversion's backfill from any process: the
/// running one reads the flag between batches.
pub async fn set_paused(client: &Client, table: &str, paused: bool) -> Result<(), PgError> {
    let qname = discover::qualified(client, table).await?;
    let n = if state_exists(client).await? {
        client
            .execute(
                "UPDATE cutover.bigint_conversions SET paused = $2, updated_at = now() WHERE table_name = $1",
                &[&qname, &paused],
            )
            .await
            .map_err(PgError::query)?
    } else {
        0
    };
    if n == 0 {
        return Err(PgError::Other(format!("no conversion of {qname} is under way")));
    }
    Ok(())
}
