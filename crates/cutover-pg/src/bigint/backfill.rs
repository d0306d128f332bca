//! The backfill: each table's key walked in keyset batches up to the
//! high-water mark taken at expand, one transaction per batch that also
//! saves the position, the batch size steered toward a target duration, and
//! throttling between batches.

use super::Event;
use super::run::Conv;
use super::sql;
use crate::PgError;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_postgres::types::ToSql;

const MIN_BATCH: i64 = 10;
const MAX_BATCH: i64 = 200_000;

/// `($i::text::type, …)` for a key's columns, numbered from `first`.
fn placeholders(types: &[String], first: usize) -> String {
    let p: Vec<String> = types.iter().enumerate().map(|(i, t)| format!("${}::text::{t}", first + i)).collect();
    format!("({})", p.join(", "))
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?.iter().map(|x| x.as_str().map(str::to_string)).collect()
}

impl Conv<'_> {
    /// Rows walked so far, over every table.
    fn rows_done(&self) -> i64 {
        self.positions.values().map(|p| p["rows"].as_i64().unwrap_or(0)).sum()
    }

    pub(super) async fn backfill(&mut self) -> Result<(), PgError> {
        let mut n = i64::from(self.opts.batch_rows.max(1)).clamp(MIN_BATCH, MAX_BATCH);
        let target = self.opts.batch_time.as_secs_f64().max(0.001);
        let mut throttled: Option<String> = None;
        for i in 0..self.spec.tables.len() {
            let key = i.to_string();
            let Some(p) = self.positions.get(&key).cloned() else { continue };
            if p["done"].as_bool() == Some(true) {
                continue;
            }
            let t = self.spec.tables[i].clone();
            let Some(hwm) = strings(&p["hwm"]) else {
                self.positions.insert(key, json!({ "hwm": null, "pos": null, "done": true, "rows": 0 }));
                continue;
            };
            let mut pos = strings(&p["pos"]);
            let mut rows = p["rows"].as_i64().unwrap_or(0);
            let types: Vec<String> = t.key.iter().map(|k| k.ty.clone()).collect();
            let names: Vec<String> = t.key.iter().map(|k| crate::quote_ident(&k.name)).collect();
            let cols = names.join(", ");
            let tuple = format!("({cols})");
            // Qualified: an output column `id::text` is also named id, and
            // ORDER BY would sort by the text.
            let texts: Vec<String> = names.iter().map(|k| format!("b.{k}::text")).collect();
            let desc: Vec<String> = names.iter().map(|k| format!("b.{k} DESC")).collect();
            let k = types.len();
            loop {
                self.wait_unthrottled(&mut throttled).await?;
                let t0 = Instant::now();
                let (lower, first) = match &pos {
                    Some(_) => (format!("{tuple} > {} AND ", placeholders(&types, 1)), k + 1),
                    None => (String::new(), 1),
                };
                let find_end = format!(
                    "WITH b AS (SELECT {cols} FROM {} WHERE {lower}{tuple} <= {} ORDER BY {cols} LIMIT ${})
                     SELECT {}, (SELECT count(*) FROM b) FROM b AS b ORDER BY {} LIMIT 1",
                    t.name,
                    placeholders(&types, first),
                    first + k,
                    texts.join(", "),
                    desc.join(", ")
                );
                let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![];
                if let Some(p) = &pos {
                    params.extend(p.iter().map(|v| Box::new(v.clone()) as Box<dyn ToSql + Sync + Send>));
                }
                params.extend(hwm.iter().map(|v| Box::new(v.clone()) as Box<dyn ToSql + Sync + Send>));
                params.push(Box::new(n));
                self.client.batch_execute("BEGIN").await.map_err(PgError::query)?;
                let r: Result<(Vec<String>, i64, bool), PgError> = async {
                    let refs: Vec<&(dyn ToSql + Sync)> =
                        params.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
                    let row = self.client.query_opt(&find_end, &refs).await.map_err(PgError::query)?;
                    let (end, count) = match row {
                        Some(r) => ((0..k).map(|j| r.get::<_, String>(j)).collect::<Vec<_>>(), r.get::<_, i64>(k)),
                        None => (hwm.clone(), 0),
                    };
                    let last = count < n || end == hwm;
                    let update = format!(
                        "UPDATE {} SET {} WHERE {lower}{tuple} <= {} AND ({})",
                        t.name,
                        sql::assignments(&t, "__bigint"),
                        placeholders(&types, first),
                        sql::differs(&t, "__bigint")
                    );
                    let mut up: Vec<&(dyn ToSql + Sync)> = vec![];
                    if let Some(p) = &pos {
                        up.extend(p.iter().map(|v| v as &(dyn ToSql + Sync)));
                    }
                    up.extend(end.iter().map(|v| v as &(dyn ToSql + Sync)));
                    self.client.execute(&update, &up).await.map_err(PgError::query)?;
                    Ok((end, count, last))
                }
                .await;
                let (end, count, last) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = self.client.batch_execute("ROLLBACK").await;
                        return Err(PgError::Other(format!("backfill of {} failed: {e}", t.name)));
                    }
                };
                rows += count;
                let state = json!({ "hwm": hwm, "pos": end, "done": last, "rows": rows });
                self.positions.insert(key.clone(), state.clone());
                let done = self.rows_done();
                let saved = self
                    .client
                    .execute(
                        "UPDATE cutover.bigint_conversions SET positions = jsonb_set(positions, ARRAY[$3], $4::text::jsonb),
                           rows_done = $5, updated_at = now(), throttle = NULL
                         WHERE table_name = $1 AND column_name = $2",
                        &[&self.spec.table, &self.spec.column, &key, &state.to_string(), &done],
                    )
                    .await;
                if let Err(e) = saved {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    return Err(PgError::query(e));
                }
                self.client.batch_execute("COMMIT").await.map_err(PgError::query)?;
                pos = Some(end);
                self.sum.rows += count;
                self.sum.batches += 1;
                // Steer the size toward the target duration, at most halving
                // or doubling it at a time.
                let took = t0.elapsed().as_secs_f64().max(0.000_1);
                let factor = (target / took).clamp(0.5, 2.0);
                n = ((n as f64 * factor) as i64).clamp(MIN_BATCH, MAX_BATCH);
                self.emit_progress(done, &t.name, n);
                if last {
                    break;
                }
            }
        }
        Ok(())
    }

    fn emit_progress(&self, done: i64, table: &str, batch: i64) {
        (self.obs.emit)(Event::Progress { done, total: self.rows_total.max(done), table: table.to_string(), batch });
    }

    /// Returns once nothing throttles the backfill; while something does,
    /// says what (to the observer and in the state row) and waits.
    async fn wait_unthrottled(&mut self, current: &mut Option<String>) -> Result<(), PgError> {
        let mut since: Option<Instant> = None;
        loop {
            let reason = self.throttle_reason().await?;
            if reason != *current {
                (self.obs.emit)(Event::Throttle(reason.clone()));
                self.client
                    .execute(
                        "UPDATE cutover.bigint_conversions SET throttle = $3 WHERE table_name = $1 AND column_name = $2",
                        &[&self.spec.table, &self.spec.column, &reason],
                    )
                    .await
                    .map_err(PgError::query)?;
                *current = reason.clone();
            }
            match reason {
                None => {
                    if let Some(s) = since {
                        self.sum.throttled_seconds += s.elapsed().as_secs_f64();
                    }
                    return Ok(());
                }
                Some(_) => {
                    since.get_or_insert_with(Instant::now);
                    match &self.obs.hold {
                        // Wake at once when the gate clears, or re-read the database in half a second.
                        Some(rx) if *rx.borrow() => {
                            let mut rx = rx.clone();
                            let _ = tokio::time::timeout(Duration::from_millis(500), rx.wait_for(|h| !*h)).await;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            }
        }
    }

    /// Why the backfill should wait now, if it should: the operator's pause,
    /// the plan's pause_when, replication lag, an old transaction, load.
    async fn throttle_reason(&self) -> Result<Option<String>, PgError> {
        let r = self
            .client
            .query_one(
                "SELECT coalesce((SELECT paused FROM cutover.bigint_conversions WHERE table_name = $1 AND column_name = $2), false),
                        (SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication),
                        o.pid, coalesce(o.age, 0)::float8,
                        (SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()
                           AND backend_type = 'client backend')
                 FROM (SELECT 1) AS one LEFT JOIN LATERAL (
                   SELECT pid, extract(epoch FROM now() - xact_start) AS age FROM pg_stat_activity
                   WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'
                     AND datname = current_database()
                   ORDER BY xact_start LIMIT 1) o ON true",
                &[&self.spec.table, &self.spec.column],
            )
            .await
            .map_err(PgError::query)?;
        if r.get::<_, bool>(0) {
            return Ok(Some("paused by the operator (cutover pg bigint --resume goes on)".into()));
        }
        if self.obs.hold.as_ref().is_some_and(|h| *h.borrow()) {
            return Ok(Some("the plan's pause_when holds".into()));
        }
        let lag: f64 = r.get(1);
        if lag > self.opts.max_replication_lag.as_secs_f64() {
            // Without the figure, so the reason does not change every second.
            return Ok(Some(format!("a replica lags more than {} s", self.opts.max_replication_lag.as_secs_f64())));
        }
        let active: i64 = r.get(4);
        if let Some(max) = self.opts.max_active
            && active > i64::from(max)
        {
            return Ok(Some(format!("{active} active backends > {max}")));
        }
        // Only this database's transactions: those in other databases neither
        // hold back vacuum of this table's dead row versions nor delay its
        // CREATE INDEX CONCURRENTLY. Load (above) is the whole server's.
        let age: f64 = r.get(3);
        if age > self.opts.max_transaction_age.as_secs_f64() {
            let pid: Option<i32> = r.get(2);
            // Without its age, so the reason does not change every second.
            return Ok(Some(format!(
                "a transaction of backend {} is open longer than {} s",
                pid.unwrap_or(0),
                self.opts.max_transaction_age.as_secs_f64()
            )));
        }
        Ok(None)
    }
}
