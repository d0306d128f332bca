//! PostgreSQL support for cutover: the one way the engine connects to a
//! database, and statements run with bind parameters — values are never
//! spliced into SQL text.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cutover_pg::PgError> {
//! let client = cutover_pg::connect("postgres://app@127.0.0.1/app", std::time::Duration::from_secs(5)).await?;
//! let out = cutover_pg::run_statements(
//!     &client,
//!     &[("select count(*) as n from users where region = $1".into(), vec!["eu".into()])],
//!     true,
//! )
//! .await?;
//! println!("{}", out["n"]);
//! # Ok(()) }
//! ```
//!
//! Invariant: error messages never contain the DSN (it may hold a password).

use bytes_param::TextParam;
use serde_json::{Map, Value};
use std::time::Duration;
pub use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row};

pub mod backup;
pub mod bigint;
mod bytes_param;
pub mod copy;
pub mod preflight;
pub mod tools;
pub mod verify;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("invalid connection string: {0}")]
    Dsn(String),
    #[error("cannot connect to {host}: {message}")]
    Connect { host: String, message: String },
    #[error("connecting to {host} timed out after {secs}s")]
    ConnectTimeout { host: String, secs: u64 },
    #[error("{message}")]
    Query { message: String, sqlstate: Option<String> },
    /// A client program (pg_dump, pg_restore) failed or is missing.
    #[error("{0}")]
    Tool(String),
    /// Anything else that stops an operation, said in one sentence.
    #[error("{0}")]
    Other(String),
}

impl PgError {
    pub(crate) fn query(e: tokio_postgres::Error) -> PgError {
        let sqlstate = e.code().map(|c| c.code().to_string());
        let message = match e.as_db_error() {
            Some(db) => {
                let mut m = format!("{}: {}", db.severity(), db.message());
                if let Some(d) = db.detail() {
                    m.push_str(&format!(" ({d})"));
                }
                m
            }
            None => e.to_string(),
        };
        PgError::Query { message, sqlstate }
    }
}

/// Where a DSN points, for messages (never its password).
pub fn describe(dsn: &str) -> String {
    match dsn.parse::<tokio_postgres::Config>() {
        Ok(c) => {
            let host = c
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(s) => s.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_else(|| "localhost".into());
            let port = c.get_ports().first().copied().unwrap_or(5432);
            let db = c.get_dbname().unwrap_or("");
            format!("{host}:{port}/{db}")
        }
        Err(_) => "the database".into(),
    }
}

/// Connects without TLS (TLS comes with the fleet work), with a bounded wait.
pub async fn connect(dsn: &str, timeout: Duration) -> Result<Client, PgError> {
    let config: tokio_postgres::Config = dsn.parse().map_err(|e: tokio_postgres::Error| PgError::Dsn(e.to_string()))?;
    connect_config(config, describe(dsn), timeout).await
}

/// Connects to another database of the server a DSN points at (e.g. the
/// `postgres` database, to create the one the DSN names).
pub async fn connect_to_db(dsn: &str, dbname: &str, timeout: Duration) -> Result<Client, PgError> {
    let mut config: tokio_postgres::Config =
        dsn.parse().map_err(|e: tokio_postgres::Error| PgError::Dsn(e.to_string()))?;
    config.dbname(dbname);
    let host = describe(dsn);
    let host = match host.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{dbname}"),
        None => host,
    };
    connect_config(config, host, timeout).await
}

async fn connect_config(
    mut config: tokio_postgres::Config,
    host: String,
    timeout: Duration,
) -> Result<Client, PgError> {
    if config.get_application_name().is_none() {
        config.application_name("cutover");
    }
    config.connect_timeout(timeout);
    let fut = config.connect(NoTls);
    let (client, connection) = match tokio::time::timeout(timeout, fut).await {
        Err(_) => {
            return Err(PgError::ConnectTimeout { host, secs: timeout.as_secs() });
        }
        Ok(Err(e)) => {
            let message = match e.as_db_error() {
                Some(db) => db.message().to_string(),
                None => {
                    // The source error says why (refused, unknown host…).
                    let mut m = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        m = format!("{m}: {s}");
                        src = s.source();
                    }
                    m
                }
            };
            return Err(PgError::Connect { host, message });
        }
        Ok(Ok(pair)) => pair,
    };
    tokio::spawn(async move {
        // The connection ends when the client is dropped; errors then are moot.
        let _ = connection.await;
    });
    Ok(client)
}

/// A name made safe for a file name: ASCII letters, digits, `-` and `_`
/// kept, anything else `_`.
pub fn file_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Quotes an identifier for SQL text (identifiers cannot be bind parameters).
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A WHERE condition on `n.nspname` (pg_namespace aliased `n`) keeping the
/// schemas users create objects in.
pub(crate) const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

/// The server's major version (13, 15…).
pub async fn server_major(client: &Client) -> Result<u32, PgError> {
    let row =
        client.query_one("SELECT current_setting('server_version_num')::int", &[]).await.map_err(PgError::query)?;
    Ok((row.get::<_, i32>(0) / 10000) as u32)
}

/// Runs statements in order, each with its text parameters (sent as text, so
/// the server parses them to whatever type the statement wants), optionally
/// in one transaction. Returns the outputs: the first row of the last
/// statement as an object of its columns, plus `rows` (rows returned by the
/// last statement) and `rows_affected` (summed over all statements).
pub async fn run_statements(
    client: &Client,
    statements: &[(String, Vec<String>)],
    transaction: bool,
) -> Result<Map<String, Value>, PgError> {
    if transaction {
        client.batch_execute("BEGIN").await.map_err(PgError::query)?;
    }
    let result = run_all(client, statements).await;
    if transaction {
        match &result {
            Ok(_) => client.batch_execute("COMMIT").await.map_err(PgError::query)?,
            Err(_) => {
                // The error that matters is the statement's; a failed rollback
                // only means the connection is gone, which ends the transaction too.
                let _ = client.batch_execute("ROLLBACK").await;
            }
        }
    }
    result
}

async fn run_all(client: &Client, statements: &[(String, Vec<String>)]) -> Result<Map<String, Value>, PgError> {
    let mut out = Map::new();
    let mut affected: u64 = 0;
    for (sql, params) in statements {
        let stmt = client.prepare(sql).await.map_err(PgError::query)?;
        let values: Vec<TextParam> = params.iter().map(|p| TextParam(p.clone())).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        if stmt.columns().is_empty() {
            affected += client.execute(&stmt, &refs).await.map_err(PgError::query)?;
            out = Map::new();
            out.insert("rows".into(), Value::from(0));
        } else {
            let rows = client.query(&stmt, &refs).await.map_err(PgError::query)?;
            affected += rows.len() as u64;
            out = rows.first().map(row_to_json).unwrap_or_default();
            out.insert("rows".into(), Value::from(rows.len()));
        }
    }
    out.insert("rows_affected".into(), Value::from(affected));
    Ok(out)
}

/// A row as JSON; types without a JSON form are shown with a hint to cast.
pub fn row_to_json(row: &Row) -> Map<String, Value> {
    let mut m = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_();
        let v: Value = match *ty {
            Type::BOOL => row.try_get::<_, Option<bool>>(i).ok().flatten().map(Value::from).unwrap_or(Value::Null),
            Type::INT2 => opt(row.try_get::<_, Option<i16>>(i)),
            Type::INT4 => opt(row.try_get::<_, Option<i32>>(i)),
            Type::INT8 => opt(row.try_get::<_, Option<i64>>(i)),
            Type::OID => opt(row.try_get::<_, Option<u32>>(i)),
            Type::FLOAT4 => opt(row.try_get::<_, Option<f32>>(i)),
            Type::FLOAT8 => opt(row.try_get::<_, Option<f64>>(i)),
            Type::JSON | Type::JSONB => row.try_get::<_, Option<Value>>(i).ok().flatten().unwrap_or(Value::Null),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                opt(row.try_get::<_, Option<String>>(i))
            }
            _ => Value::String(format!("<{} value: cast it to text>", ty.name())),
        };
        m.insert(col.name().to_string(), v);
    }
    m
}

fn opt<T: Into<Value>>(r: Result<Option<T>, tokio_postgres::Error>) -> Value {
    r.ok().flatten().map(Into::into).unwrap_or(Value::Null)
}
