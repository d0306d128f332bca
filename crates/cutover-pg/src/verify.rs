//! `pg.verify`: compares a database with its copy on another server —
//! every table's row count and an order-independent checksum computed in
//! the database, sequences' values, and object counts per kind. Read-only.
//!
//! The checksum is the sum of the first 64 bits of md5 over each row's text
//! form: it does not depend on row order or physical layout, so a copy
//! with a different layout (another major version) compares equal.

use crate::{PgError, USER_SCHEMAS, quote_ident};
use serde::Serialize;
use std::collections::BTreeMap;
use tokio_postgres::Client;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TableSum {
    pub rows: i64,
    /// Sum of the rows' 64-bit hashes, as decimal text.
    pub checksum: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Difference {
    /// `table`, `sequence` or `objects`.
    pub kind: &'static str,
    pub object: String,
    pub source: String,
    pub target: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub tables: usize,
    pub rows: i64,
    pub sequences: usize,
    pub differences: Vec<Difference>,
}

/// Tables that hold rows (partitions, not their parents), by qualified name.
async fn tables(c: &Client) -> Result<Vec<(String, String)>, PgError> {
    let rows = c
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'm') AND {USER_SCHEMAS} \
                 AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid \
                                 WHERE d.objid = c.oid AND d.deptype = 'e') ORDER BY 1, 2"
            ),
            &[],
        )
        .await
        .map_err(PgError::query)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Row count and checksum of one table.
pub async fn table_sum(c: &Client, schema: &str, table: &str) -> Result<TableSum, PgError> {
    let q = format!(
        "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0)::text \
         FROM {}.{} t",
        quote_ident(schema),
        quote_ident(table)
    );
    let r = c.query_one(&q, &[]).await.map_err(PgError::query)?;
    Ok(TableSum { rows: r.get(0), checksum: r.get(1) })
}

async fn sequences(c: &Client) -> Result<BTreeMap<String, String>, PgError> {
    let rows = c
        .query(
            "SELECT schemaname || '.' || sequencename, coalesce(last_value::text, 'not called') FROM pg_sequences",
            &[],
        )
        .await
        .map_err(PgError::query)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// How many objects of each kind the user schemas hold.
async fn object_counts(c: &Client) -> Result<BTreeMap<String, i64>, PgError> {
    let q = format!(
        "SELECT 'tables', count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMAS} \
         UNION ALL SELECT 'views', count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') AND {USER_SCHEMAS} \
         UNION ALL SELECT 'indexes', count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('i', 'I') AND {USER_SCHEMAS} \
         UNION ALL SELECT 'sequences', count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S' AND {USER_SCHEMAS} \
         UNION ALL SELECT 'constraints', count(*) FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE {USER_SCHEMAS} \
         UNION ALL SELECT 'functions', count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER_SCHEMAS} \
            AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') \
         UNION ALL SELECT 'triggers', count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND {USER_SCHEMAS} \
         UNION ALL SELECT 'extensions', count(*) FROM pg_extension"
    );
    let rows = c.query(&q, &[]).await.map_err(PgError::query)?;
    Ok(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1))).collect())
}

/// Compares `source` with `target`; every difference is named.
pub async fn run(source: &Client, target: &Client) -> Result<Report, PgError> {
    let mut diffs = vec![];
    let (st, tt) = (tables(source).await?, tables(target).await?);
    let mut rows = 0;
    for (schema, table) in &st {
        let name = format!("{schema}.{table}");
        if !tt.contains(&(schema.clone(), table.clone())) {
            diffs.push(Difference { kind: "table", object: name, source: "present".into(), target: "missing".into() });
            continue;
        }
        let (a, b) = (table_sum(source, schema, table).await?, table_sum(target, schema, table).await?);
        rows += a.rows;
        if a.rows != b.rows {
            diffs.push(Difference {
                kind: "table",
                object: name,
                source: format!("{} rows", a.rows),
                target: format!("{} rows", b.rows),
            });
        } else if a.checksum != b.checksum {
            diffs.push(Difference {
                kind: "table",
                object: name,
                source: format!("checksum {}", a.checksum),
                target: format!("checksum {} (same {} rows, different contents)", b.checksum, b.rows),
            });
        }
    }
    for (schema, table) in tt.iter().filter(|t| !st.contains(t)) {
        diffs.push(Difference {
            kind: "table",
            object: format!("{schema}.{table}"),
            source: "missing".into(),
            target: "present".into(),
        });
    }
    let (ss, ts) = (sequences(source).await?, sequences(target).await?);
    for (name, v) in &ss {
        let w = ts.get(name).cloned().unwrap_or_else(|| "missing".into());
        if &w != v {
            diffs.push(Difference { kind: "sequence", object: name.clone(), source: v.clone(), target: w });
        }
    }
    let (so, to) = (object_counts(source).await?, object_counts(target).await?);
    for (kind, n) in &so {
        let m = to.get(kind).copied().unwrap_or(0);
        if *n != m {
            diffs.push(Difference {
                kind: "objects",
                object: kind.clone(),
                source: n.to_string(),
                target: m.to_string(),
            });
        }
    }
    Ok(Report { tables: st.len(), rows, sequences: ss.len(), differences: diffs })
}
