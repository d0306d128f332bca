//! Linting what is pending in a database: the up files it has not applied,
//! in the order they will run, with the current types of the columns they
//! alter read from its catalog. The linter itself never connects; this is
//! where what it is told about the database comes from.

use crate::lint::{self, ColumnRef, ColumnType, Finding, Pending};
use crate::run::MigrateError;
use crate::source::Source;
use tokio_postgres::Client;

/// What [`lint_pending`] linted and found.
#[derive(Debug)]
pub struct Linted {
    /// How many up files were linted.
    pub files: usize,
    pub findings: Vec<Finding>,
}

/// Lints the up files of these versions (the pending ones, from
/// [`crate::run::status`]) as one sequence, knowing the current types of the
/// columns whose type they change.
pub async fn lint_pending(client: &Client, source: &Source, versions: &[u64]) -> Result<Linted, MigrateError> {
    let files: Vec<_> =
        source.migrations.iter().filter(|m| versions.contains(&m.version)).filter_map(|m| m.up.as_ref()).collect();
    // Each file is parsed once: for the columns to look up, then to lint.
    let parsed: Vec<_> = files.iter().map(|f| lint::parse(&f.sql)).collect();
    let mut wanted: Vec<ColumnRef> = Vec::new();
    for p in parsed.iter().flatten() {
        for c in lint::altered_columns(p) {
            if !wanted.contains(&c) {
                wanted.push(c);
            }
        }
    }
    let mut sequence = Pending::knowing(column_types(client, &wanted).await?);
    let findings = files
        .iter()
        .zip(&parsed)
        .flat_map(|(f, p)| sequence.lint_parsed(&f.name, &f.sql, p, f.transactional))
        .collect();
    Ok(Linted { files: files.len(), findings })
}

/// The current type of each column that exists, resolving an unqualified
/// table name through the search path as the migration will.
async fn column_types(client: &Client, wanted: &[ColumnRef]) -> Result<Vec<ColumnType>, MigrateError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let schemas: Vec<&str> = wanted.iter().map(|c| c.schema.as_str()).collect();
    let tables: Vec<&str> = wanted.iter().map(|c| c.table.as_str()).collect();
    let columns: Vec<&str> = wanted.iter().map(|c| c.column.as_str()).collect();
    let rows = client
        .query(
            "SELECT r.i::int8, t.typname::text, a.atttypmod, format_type(a.atttypid, a.atttypmod),
                    ARRAY(SELECT DISTINCT ic.relname::text
                          FROM pg_depend d
                          JOIN pg_index x ON x.indexrelid = d.objid
                          JOIN pg_class ic ON ic.oid = x.indexrelid
                          WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                            AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum
                            AND (x.indexprs IS NOT NULL OR x.indpred IS NOT NULL)
                          ORDER BY 1)
             FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS r(s, t, c, i)
             JOIN pg_attribute a
               ON a.attrelid = to_regclass(CASE WHEN r.s = '' THEN quote_ident(r.t)
                                                ELSE quote_ident(r.s) || '.' || quote_ident(r.t) END)
              AND a.attname = r.c AND a.attnum > 0 AND NOT a.attisdropped
             JOIN pg_type t ON t.oid = a.atttypid",
            &[&schemas, &tables, &columns],
        )
        .await
        .map_err(MigrateError::db)?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let i = usize::try_from(r.get::<_, i64>(0)).ok()?.checked_sub(1)?;
            Some(ColumnType {
                column: wanted.get(i)?.clone(),
                type_name: r.get(1),
                typmod: r.get(2),
                display: r.get(3),
                expression_indexes: r.get(4),
            })
        })
        .collect())
}
