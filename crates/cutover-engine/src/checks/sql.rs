//! `sql` check: a query's scalar (one column) or row (several), or a
//! built-in preset over PostgreSQL's statistics and progress views.

use super::{ProbeCtx, Reading};
use cutover_plan::Template;
use serde_json::{Value, json};
use std::time::Duration;

/// The built-in queries. Each gives one row; `value` is its main figure.
fn preset_sql(name: &str) -> Option<&'static str> {
    Some(match name {
        // Client connections to this database, grouped by application and state.
        "connections" => {
            "SELECT coalesce(sum(n), 0)::int8 AS value,
                    coalesce(json_agg(json_build_object('application', application, 'state', state, 'count', n)), '[]'::json) AS groups
             FROM (SELECT coalesce(application_name, '') AS application, coalesce(state, '') AS state, count(*)::int8 AS n
                   FROM pg_stat_activity
                   WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = current_database()
                     AND coalesce(application_name, '') <> 'cutover'
                   GROUP BY 1, 2 ORDER BY 3 DESC) g"
        }
        // Sessions waiting on another session's lock.
        "blocking_locks" => {
            "SELECT count(*)::int8 AS value,
                    coalesce(json_agg(json_build_object('pid', pid, 'blocked_by', pg_blocking_pids(pid), 'query', left(query, 200))), '[]'::json) AS blocked
             FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0"
        }
        // Age in seconds of the oldest open transaction.
        "long_transactions" => {
            "SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float8 AS value,
                    (SELECT pid FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() ORDER BY xact_start LIMIT 1) AS oldest_pid
             FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()"
        }
        // Seconds of replication lag: of the slowest standby on a primary, or
        // since the last replayed transaction on a standby.
        "replication_lag" => {
            "SELECT (CASE WHEN pg_is_in_recovery()
                          THEN coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
                          ELSE coalesce((SELECT max(extract(epoch FROM replay_lag)) FROM pg_stat_replication), 0) END)::float8 AS value,
                    (SELECT count(*) FROM pg_stat_replication)::int8 AS standbys"
        }
        "progress_copy" => {
            "SELECT coalesce(sum(bytes_processed), 0)::int8 AS done, coalesce(sum(bytes_total), 0)::int8 AS total,
                    'bytes' AS unit, count(*)::int8 AS operations FROM pg_stat_progress_copy"
        }
        "progress_create_index" => {
            "SELECT coalesce(sum(blocks_done), 0)::int8 AS done, coalesce(sum(blocks_total), 0)::int8 AS total,
                    'blocks' AS unit, count(*)::int8 AS operations FROM pg_stat_progress_create_index"
        }
        "progress_cluster" => {
            "SELECT coalesce(sum(heap_blks_scanned), 0)::int8 AS done, coalesce(sum(heap_blks_total), 0)::int8 AS total,
                    'blocks' AS unit, count(*)::int8 AS operations FROM pg_stat_progress_cluster"
        }
        "progress_vacuum" => {
            "SELECT coalesce(sum(heap_blks_scanned), 0)::int8 AS done, coalesce(sum(heap_blks_total), 0)::int8 AS total,
                    'blocks' AS unit, count(*)::int8 AS operations FROM pg_stat_progress_vacuum"
        }
        _ => return None,
    })
}

pub async fn probe(
    ctx: &ProbeCtx<'_>,
    dsn: &Template,
    query: Option<&str>,
    params: &[Template],
    preset: Option<&str>,
    timeout: Duration,
) -> Result<Reading, String> {
    let dsn = ctx.render(dsn, "the dsn")?;
    ctx.redactor.add_url_password(&dsn);
    let (sql, params): (String, Vec<String>) = match (query, preset) {
        (Some(q), _) => {
            let p = params.iter().map(|t| ctx.render(t, "a parameter")).collect::<Result<_, _>>()?;
            (q.to_string(), p)
        }
        (None, Some(p)) => (preset_sql(p).ok_or_else(|| format!("unknown preset {p}"))?.to_string(), vec![]),
        (None, None) => return Err("an sql check needs `query` or `preset`".into()),
    };
    let client = cutover_pg::connect(&dsn, timeout).await.map_err(|e| e.to_string())?;
    let mut row = cutover_pg::run_statements(&client, &[(sql, params)], false).await.map_err(|e| e.to_string())?;
    let rows = row.remove("rows").and_then(|v| v.as_u64()).unwrap_or(0);
    row.remove("rows_affected");
    let value = if let Some(v) = row.get("value").filter(|_| preset.is_some()) {
        v.clone()
    } else if preset.is_some() && row.contains_key("done") {
        json!({ "done": row["done"], "total": row["total"], "unit": row["unit"] })
    } else if rows == 0 {
        Value::Null
    } else if row.len() == 1 {
        row.values().next().cloned().unwrap_or(Value::Null)
    } else {
        Value::Object(row.clone())
    };
    Ok(Reading { value, extras: row, default_ok: true })
}
