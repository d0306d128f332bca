//! The SQLite store: one file, WAL journal, `synchronous = FULL` so a commit
//! survives a power cut, and a busy timeout so two processes take turns.

use super::{Result, Store, StoreError};
use crate::model::*;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The schema version this binary writes; a file with a higher one is refused.
pub const SCHEMA_VERSION: i64 = 1;
const BUSY: Duration = Duration::from_secs(10);

/// How long to wait for another process's write to finish:
/// `CUTOVER_BUSY_TIMEOUT_MS`, 10 s by default.
fn busy_timeout() -> Duration {
    std::env::var("CUTOVER_BUSY_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(BUSY)
}

pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: String,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    plan_name TEXT NOT NULL,
    plan_path TEXT NOT NULL,
    plan_dir TEXT NOT NULL,
    plan_text TEXT NOT NULL,
    targets_json TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS targets (
    run_id TEXT NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    labels_json TEXT NOT NULL,
    state TEXT NOT NULL,
    phase TEXT,
    step TEXT,
    message TEXT,
    started_at TEXT,
    finished_at TEXT,
    skip_requested INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL,
    target TEXT NOT NULL,
    step TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    outputs_json TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (run_id, target, step)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    ts TEXT NOT NULL,
    target TEXT,
    step TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, id);
CREATE INDEX IF NOT EXISTS events_kind ON events(run_id, kind, id);
CREATE TABLE IF NOT EXISTS leases (
    run_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS check_results (
    run_id TEXT NOT NULL,
    check_name TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    result_json TEXT NOT NULL,
    PRIMARY KEY (run_id, check_name, target)
);
CREATE TABLE IF NOT EXISTS ticks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    check_name TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    ok INTEGER NOT NULL,
    actor TEXT NOT NULL,
    note TEXT,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    actor TEXT NOT NULL,
    note TEXT,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    actor TEXT NOT NULL,
    note TEXT,
    created_at TEXT NOT NULL,
    handled_at TEXT
);
"#;

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

fn parse<T: std::str::FromStr<Err = String>>(s: String) -> rusqlite::Result<T> {
    s.parse().map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let shown = path.display().to_string();
        let open_err = |e: &dyn std::fmt::Display| StoreError::Open { path: shown.clone(), message: e.to_string() };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(&e))?;
        }
        let conn = Connection::open(path).map_err(|e| open_err(&e))?;
        conn.busy_timeout(busy_timeout()).map_err(|e| open_err(&e))?;
        let store = SqliteStore { conn: Mutex::new(conn), path: shown };
        store.init()?;
        Ok(store)
    }

    fn init(&self) -> Result<()> {
        let conn = self.conn();
        let locked = |e: rusqlite::Error| self.classify(e);
        // Not a SQLite file at all, or a newer schema: say so before writing anything.
        let existing: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))
            .optional()
            .or_else(|e| match e {
                rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such table") => Ok(None),
                other => Err(other),
            })
            .map_err(locked)?;
        if let Some(v) = existing {
            let found: i64 = v.parse().unwrap_or(i64::MAX);
            if found > SCHEMA_VERSION {
                return Err(StoreError::TooNew { path: self.path.clone(), found, known: SCHEMA_VERSION });
            }
        }
        conn.pragma_update(None, "journal_mode", "WAL").map_err(locked)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(locked)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(locked)?;
        conn.execute_batch(SCHEMA).map_err(locked)?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?1)",
            params![SCHEMA_VERSION.to_string()],
        )
        .map_err(locked)?;
        Ok(())
    }

    fn classify(&self, e: rusqlite::Error) -> StoreError {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
            {
                StoreError::Locked { path: self.path.clone(), waited: format!("{:.1}s", busy_timeout().as_secs_f64()) }
            }
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => StoreError::Open {
                path: self.path.clone(),
                message: "it is not a cutover state file (not a SQLite database)".into(),
            },
            _ => db(e),
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A poisoned lock means a panic elsewhere while holding it; the
        // connection itself is still usable (SQLite rolled back any open work).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every row of a query, mapped.
    fn all<T>(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let conn = self.conn();
        let mut st = conn.prepare(sql).map_err(|e| self.classify(e))?;
        let rows = st.query_map(p, f).map_err(|e| self.classify(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.classify(e))
    }

    fn exec(&self, sql: &str, p: impl rusqlite::Params) -> Result<usize> {
        self.conn().execute(sql, p).map_err(|e| self.classify(e))
    }
}

fn target_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TargetRecord> {
    Ok(TargetRecord {
        name: r.get(0)?,
        position: r.get(1)?,
        state: parse(r.get(2)?)?,
        phase: r.get(3)?,
        step: r.get(4)?,
        message: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        skip_requested: r.get::<_, i64>(8)? != 0,
    })
}

fn step_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StepRecord> {
    let outputs: String = r.get(6)?;
    Ok(StepRecord {
        target: r.get(0)?,
        step: r.get(1)?,
        state: parse(r.get(2)?)?,
        attempt: r.get(3)?,
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        outputs: serde_json::from_str(&outputs).unwrap_or(serde_json::Value::Null),
        error: r.get(7)?,
    })
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: r.get(0)?,
        plan_name: r.get(1)?,
        plan_path: r.get(2)?,
        plan_dir: r.get(3)?,
        plan_text: r.get(4)?,
        targets_json: r.get(5)?,
        state: parse(r.get(6)?)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let data: String = r.get(7)?;
    Ok(Event {
        id: r.get(0)?,
        run_id: r.get(1)?,
        ts: r.get(2)?,
        target: r.get(3)?,
        step: r.get(4)?,
        kind: r.get(5)?,
        message: r.get(6)?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
    })
}

const RUN_COLS: &str = "id, plan_name, plan_path, plan_dir, plan_text, targets_json, state, created_at, updated_at";
const TARGET_COLS: &str = "name, position, state, phase, step, message, started_at, finished_at, skip_requested";
const STEP_COLS: &str = "target, step, state, attempt, started_at, finished_at, outputs_json, error";

impl Store for SqliteStore {
    fn create_run(&self, run: &RunRecord, targets: &[(String, String)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.classify(e))?;
        tx.execute(
            &format!("INSERT INTO runs ({RUN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![
                run.id,
                run.plan_name,
                run.plan_path,
                run.plan_dir,
                run.plan_text,
                run.targets_json,
                run.state.as_str(),
                run.created_at,
                run.updated_at
            ],
        )
        .map_err(|e| self.classify(e))?;
        for (i, (name, labels)) in targets.iter().enumerate() {
            tx.execute(
                "INSERT INTO targets (run_id, name, position, labels_json, state) VALUES (?1, ?2, ?3, ?4, 'pending')",
                params![run.id, name, i as i64, labels],
            )
            .map_err(|e| self.classify(e))?;
        }
        tx.commit().map_err(|e| self.classify(e))
    }

    fn run(&self, id: &str) -> Result<RunRecord> {
        self.conn()
            .query_row(&format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"), params![id], run_row)
            .optional()
            .map_err(|e| self.classify(e))?
            .ok_or_else(|| StoreError::NoSuchRun(id.to_string()))
    }

    fn runs(&self) -> Result<Vec<RunRecord>> {
        self.all(&format!("SELECT {RUN_COLS} FROM runs ORDER BY created_at, id"), [], run_row)
    }

    fn set_run_state(&self, id: &str, state: RunState) -> Result<()> {
        let n =
            self.exec("UPDATE runs SET state = ?2, updated_at = ?3 WHERE id = ?1", params![id, state.as_str(), now()])?;
        if n == 0 {
            return Err(StoreError::NoSuchRun(id.to_string()));
        }
        Ok(())
    }

    fn targets(&self, run: &str) -> Result<Vec<TargetRecord>> {
        self.all(
            &format!("SELECT {TARGET_COLS} FROM targets WHERE run_id = ?1 ORDER BY position"),
            params![run],
            target_row,
        )
    }

    fn target(&self, run: &str, target: &str) -> Result<TargetRecord> {
        self.conn()
            .query_row(
                &format!("SELECT {TARGET_COLS} FROM targets WHERE run_id = ?1 AND name = ?2"),
                params![run, target],
                target_row,
            )
            .optional()
            .map_err(|e| self.classify(e))?
            .ok_or_else(|| StoreError::NoSuchTarget { run: run.to_string(), target: target.to_string() })
    }

    fn set_target_state(
        &self,
        run: &str,
        target: &str,
        state: TargetState,
        message: Option<&str>,
        event: Option<&NewEvent>,
    ) -> Result<Option<Event>> {
        let ts = now();
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.classify(e))?;
        let n = match state {
            TargetState::Running => tx.execute(
                "UPDATE targets SET state = ?3, message = ?4, started_at = COALESCE(started_at, ?5), finished_at = NULL WHERE run_id = ?1 AND name = ?2",
                params![run, target, state.as_str(), message, ts],
            ),
            TargetState::Pending => tx.execute(
                "UPDATE targets SET state = ?3, message = ?4, finished_at = NULL WHERE run_id = ?1 AND name = ?2",
                params![run, target, state.as_str(), message],
            ),
            _ => tx.execute(
                "UPDATE targets SET state = ?3, message = ?4, finished_at = ?5 WHERE run_id = ?1 AND name = ?2",
                params![run, target, state.as_str(), message, ts],
            ),
        }
        .map_err(|e| self.classify(e))?;
        if n == 0 {
            return Err(StoreError::NoSuchTarget { run: run.to_string(), target: target.to_string() });
        }
        let ev = event.map(|e| insert_event(&tx, run, e)).transpose().map_err(|e| self.classify(e))?;
        tx.commit().map_err(|e| self.classify(e))?;
        Ok(ev)
    }

    fn set_target_position(&self, run: &str, target: &str, phase: Option<&str>, step: Option<&str>) -> Result<()> {
        self.exec(
            "UPDATE targets SET phase = ?3, step = ?4 WHERE run_id = ?1 AND name = ?2",
            params![run, target, phase, step],
        )
        .map(|_| ())
    }

    fn set_skip_requested(&self, run: &str, target: &str, requested: bool) -> Result<()> {
        self.exec(
            "UPDATE targets SET skip_requested = ?3 WHERE run_id = ?1 AND name = ?2",
            params![run, target, i64::from(requested)],
        )
        .map(|_| ())
    }

    fn steps(&self, run: &str, target: &str) -> Result<Vec<StepRecord>> {
        self.all(
            &format!("SELECT {STEP_COLS} FROM steps WHERE run_id = ?1 AND target = ?2"),
            params![run, target],
            step_row,
        )
    }

    fn all_steps(&self, run: &str) -> Result<Vec<StepRecord>> {
        self.all(
            &format!("SELECT {STEP_COLS} FROM steps WHERE run_id = ?1 ORDER BY target, started_at"),
            params![run],
            step_row,
        )
    }

    fn put_step(&self, run: &str, r: &StepRecord, event: Option<&NewEvent>) -> Result<Option<Event>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.classify(e))?;
        tx.execute(
            &format!(
                "INSERT INTO steps (run_id, {STEP_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (run_id, target, step) DO UPDATE SET state = excluded.state, attempt = excluded.attempt,
                 started_at = excluded.started_at, finished_at = excluded.finished_at,
                 outputs_json = excluded.outputs_json, error = excluded.error"
            ),
            params![
                run,
                r.target,
                r.step,
                r.state.as_str(),
                r.attempt,
                r.started_at,
                r.finished_at,
                r.outputs.to_string(),
                r.error
            ],
        )
        .map_err(|e| self.classify(e))?;
        let ev = event.map(|e| insert_event(&tx, run, e)).transpose().map_err(|e| self.classify(e))?;
        tx.commit().map_err(|e| self.classify(e))?;
        Ok(ev)
    }

    fn delete_steps(&self, run: &str, target: &str, steps: &[String]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.classify(e))?;
        for s in steps {
            tx.execute("DELETE FROM steps WHERE run_id = ?1 AND target = ?2 AND step = ?3", params![run, target, s])
                .map_err(|e| self.classify(e))?;
        }
        tx.commit().map_err(|e| self.classify(e))
    }

    fn append_event(&self, run: &str, ev: &NewEvent) -> Result<Event> {
        insert_event(&self.conn(), run, ev).map_err(|e| self.classify(e))
    }

    fn events(&self, run: &str, after: i64) -> Result<Vec<Event>> {
        self.all("SELECT id, run_id, ts, target, step, kind, message, data_json FROM events WHERE run_id = ?1 AND id > ?2 ORDER BY id", params![run, after], event_row)
    }

    fn first_events(&self, run: &str, n: usize) -> Result<Vec<Event>> {
        self.all(
            "SELECT id, run_id, ts, target, step, kind, message, data_json FROM events WHERE run_id = ?1 ORDER BY id LIMIT ?2",
            params![run, n as i64],
            event_row,
        )
    }

    fn last_events(&self, run: &str, n: usize) -> Result<Vec<Event>> {
        let mut v = self.all(
            "SELECT id, run_id, ts, target, step, kind, message, data_json FROM events WHERE run_id = ?1 ORDER BY id DESC LIMIT ?2",
            params![run, n as i64],
            event_row,
        )?;
        v.reverse();
        Ok(v)
    }

    fn events_of_kinds(&self, run: &str, kinds: &[&str]) -> Result<Vec<Event>> {
        if kinds.is_empty() {
            return Ok(vec![]);
        }
        let marks = vec!["?"; kinds.len()].join(", ");
        let sql = format!(
            "SELECT id, run_id, ts, target, step, kind, message, data_json FROM events WHERE run_id = ? AND kind IN ({marks}) ORDER BY id"
        );
        let values: Vec<&str> = std::iter::once(run).chain(kinds.iter().copied()).collect();
        self.all(&sql, rusqlite::params_from_iter(values), event_row)
    }

    fn acquire_lease(&self, run: &str, l: &Lease) -> Result<std::result::Result<(), Lease>> {
        let mut conn = self.conn();
        let tx =
            conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| self.classify(e))?;
        let current = lease_of(&tx, run).map_err(|e| self.classify(e))?;
        if let Some(c) = current
            && c.holder != l.holder
            && c.expires_at > now_ms()
        {
            return Ok(Err(c));
        }
        tx.execute(
            "INSERT INTO leases (run_id, holder, pid, host, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (run_id) DO UPDATE SET holder = excluded.holder, pid = excluded.pid, host = excluded.host, expires_at = excluded.expires_at",
            params![run, l.holder, l.pid, l.host, l.expires_at],
        )
        .map_err(|e| self.classify(e))?;
        tx.commit().map_err(|e| self.classify(e))?;
        Ok(Ok(()))
    }

    fn renew_lease(&self, run: &str, holder: &str, expires_at: i64) -> Result<bool> {
        Ok(self.exec(
            "UPDATE leases SET expires_at = ?3 WHERE run_id = ?1 AND holder = ?2",
            params![run, holder, expires_at],
        )? == 1)
    }

    fn release_lease(&self, run: &str, holder: &str) -> Result<()> {
        self.exec("DELETE FROM leases WHERE run_id = ?1 AND holder = ?2", params![run, holder]).map(|_| ())
    }

    fn lease(&self, run: &str) -> Result<Option<Lease>> {
        lease_of(&self.conn(), run).map_err(|e| self.classify(e))
    }

    fn steal_lease(&self, run: &str, expected: &Lease, l: &Lease) -> Result<bool> {
        Ok(self.exec(
            "UPDATE leases SET holder = ?3, pid = ?4, host = ?5, expires_at = ?6 WHERE run_id = ?1 AND holder = ?2",
            params![run, expected.holder, l.holder, l.pid, l.host, l.expires_at],
        )? == 1)
    }

    fn put_check_result(
        &self,
        run: &str,
        check: &str,
        target: Option<&str>,
        result: &serde_json::Value,
        event: Option<&NewEvent>,
    ) -> Result<Option<Event>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.classify(e))?;
        tx.execute(
            "INSERT INTO check_results (run_id, check_name, target, result_json) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (run_id, check_name, target) DO UPDATE SET result_json = excluded.result_json",
            params![run, check, target.unwrap_or(""), result.to_string()],
        )
        .map_err(|e| self.classify(e))?;
        let ev = event.map(|e| insert_event(&tx, run, e)).transpose().map_err(|e| self.classify(e))?;
        tx.commit().map_err(|e| self.classify(e))?;
        Ok(ev)
    }

    fn put_check_results(&self, run: &str, rows: &[(String, Option<String>, serde_json::Value)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.classify(e))?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO check_results (run_id, check_name, target, result_json) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (run_id, check_name, target) DO UPDATE SET result_json = excluded.result_json",
                )
                .map_err(|e| self.classify(e))?;
            for (check, target, v) in rows {
                st.execute(params![run, check, target.as_deref().unwrap_or(""), v.to_string()])
                    .map_err(|e| self.classify(e))?;
            }
        }
        tx.commit().map_err(|e| self.classify(e))
    }

    fn check_results(&self, run: &str) -> Result<Vec<serde_json::Value>> {
        self.all(
            "SELECT result_json FROM check_results WHERE run_id = ?1 ORDER BY check_name, target",
            params![run],
            |r| {
                let s: String = r.get(0)?;
                Ok(serde_json::from_str(&s).unwrap_or(serde_json::Value::Null))
            },
        )
    }

    fn add_tick(&self, run: &str, tick: &Tick, event: &NewEvent) -> Result<Event> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.classify(e))?;
        tx.execute(
            "INSERT INTO ticks (run_id, check_name, target, ok, actor, note, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                run,
                tick.check,
                tick.target.as_deref().unwrap_or(""),
                i64::from(tick.ok),
                tick.actor,
                tick.note,
                tick.at
            ],
        )
        .map_err(|e| self.classify(e))?;
        let ev = insert_event(&tx, run, event).map_err(|e| self.classify(e))?;
        tx.commit().map_err(|e| self.classify(e))?;
        Ok(ev)
    }

    fn ticks(&self, run: &str, after: i64) -> Result<Vec<Tick>> {
        self.all(
            "SELECT id, check_name, target, ok, actor, note, at FROM ticks WHERE run_id = ?1 AND id > ?2 ORDER BY id",
            params![run, after],
            SqliteStore::tick_row,
        )
    }

    fn add_approval(&self, run: &str, a: &Approval, event: &NewEvent) -> Result<Event> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.classify(e))?;
        tx.execute(
            "INSERT INTO approvals (run_id, step, target, actor, note, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![run, a.step, a.target.as_deref().unwrap_or(""), a.actor, a.note, a.at],
        )
        .map_err(|e| self.classify(e))?;
        let ev = insert_event(&tx, run, event).map_err(|e| self.classify(e))?;
        tx.commit().map_err(|e| self.classify(e))?;
        Ok(ev)
    }

    fn delete_approvals(&self, run: &str, target: &str, steps: &[String]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.classify(e))?;
        for s in steps {
            tx.execute(
                "DELETE FROM approvals WHERE run_id = ?1 AND target = ?2 AND step = ?3",
                params![run, target, s],
            )
            .map_err(|e| self.classify(e))?;
        }
        tx.commit().map_err(|e| self.classify(e))
    }

    fn approval(&self, run: &str, target: &str, step: &str) -> Result<Option<Approval>> {
        self.conn()
            .query_row(
                "SELECT step, target, actor, note, at FROM approvals WHERE run_id = ?1 AND step = ?2 AND (target = ?3 OR target = '') ORDER BY id LIMIT 1",
                params![run, step, target],
                |r| {
                    Ok(Approval {
                        step: r.get(0)?,
                        target: r.get::<_, String>(1).map(|t| (!t.is_empty()).then_some(t))?,
                        actor: r.get(2)?,
                        note: r.get(3)?,
                        at: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.classify(e))
    }

    fn add_request(
        &self,
        run: &str,
        action: Action,
        target: Option<&str>,
        actor: &str,
        note: Option<&str>,
    ) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO requests (run_id, action, target, actor, note, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![run, action.as_str(), target, actor, note, now()],
        )
        .map_err(|e| self.classify(e))?;
        Ok(conn.last_insert_rowid())
    }

    fn pending_requests(&self, run: &str) -> Result<Vec<Request>> {
        self.all(
            "SELECT id, action, target, actor, note FROM requests WHERE run_id = ?1 AND handled_at IS NULL ORDER BY id",
            params![run],
            |r| {
                Ok(Request {
                    id: r.get(0)?,
                    action: parse(r.get(1)?)?,
                    target: r.get(2)?,
                    actor: r.get(3)?,
                    note: r.get(4)?,
                })
            },
        )
    }

    fn mark_request_handled(&self, id: i64) -> Result<()> {
        self.exec("UPDATE requests SET handled_at = ?2 WHERE id = ?1", params![id, now()]).map(|_| ())
    }

    fn request_handled(&self, id: i64) -> Result<bool> {
        self.conn()
            .query_row("SELECT handled_at IS NOT NULL FROM requests WHERE id = ?1", params![id], |r| r.get(0))
            .map_err(|e| self.classify(e))
    }
}

impl SqliteStore {
    fn tick_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Tick> {
        Ok(Tick {
            id: r.get(0)?,
            check: r.get(1)?,
            target: r.get::<_, String>(2).map(|t| (!t.is_empty()).then_some(t))?,
            ok: r.get::<_, i64>(3)? != 0,
            actor: r.get(4)?,
            note: r.get(5)?,
            at: r.get(6)?,
        })
    }
}

fn insert_event(conn: &Connection, run: &str, ev: &NewEvent) -> rusqlite::Result<Event> {
    let ts = now();
    conn.execute(
        "INSERT INTO events (run_id, ts, target, step, kind, message, data_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![run, ts, ev.target, ev.step, ev.kind, ev.message, ev.data.to_string()],
    )?;
    Ok(Event {
        id: conn.last_insert_rowid(),
        run_id: run.to_string(),
        ts,
        target: ev.target.clone(),
        step: ev.step.clone(),
        kind: ev.kind.to_string(),
        message: ev.message.clone(),
        data: ev.data.clone(),
    })
}

fn lease_of(conn: &Connection, run: &str) -> rusqlite::Result<Option<Lease>> {
    conn.query_row("SELECT holder, pid, host, expires_at FROM leases WHERE run_id = ?1", params![run], |r| {
        Ok(Lease { holder: r.get(0)?, pid: r.get(1)?, host: r.get(2)?, expires_at: r.get(3)? })
    })
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_schema_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        drop(SqliteStore::open(&path).expect("opens"));
        let conn = Connection::open(&path).expect("raw");
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'", []).expect("update");
        drop(conn);
        let err = SqliteStore::open(&path).err().expect("refused");
        assert!(err.to_string().contains("newer cutover"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        std::fs::write(&path, "this is not a database, just text that is long enough to have a header").expect("write");
        let err = SqliteStore::open(&path).err().expect("refused");
        assert!(err.to_string().contains("not a cutover state file"), "{err}");
    }

    #[test]
    fn a_live_lease_is_not_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&dir.path().join("s.db")).expect("opens");
        let a = Lease { holder: "a".into(), pid: 1, host: "h".into(), expires_at: now_ms() + 60_000 };
        let b = Lease { holder: "b".into(), ..a.clone() };
        assert_eq!(s.acquire_lease("r", &a).expect("ok"), Ok(()));
        assert_eq!(s.acquire_lease("r", &b).expect("ok"), Err(a.clone()));
        assert!(s.steal_lease("r", &a, &b).expect("ok"));
        assert!(!s.renew_lease("r", "a", now_ms()).expect("ok"));
    }
}
