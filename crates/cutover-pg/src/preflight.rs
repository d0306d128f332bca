//! `pg.preflight`: what would fail or hurt when a database moves to another
//! major version, found before any downtime. Each rule is one function over
//! the source (and, when given, the target server); each finding names its
//! objects and what to do. Read-only: it changes nothing on either server.
//!
//! The rules follow what broke in real fleets (FIELD-NOTES §5, seed 002):
//! SCRAM and old clients, btree entries over the new maximum, extensions
//! missing on the new server; and what `pg_upgrade --check` and pgcopydb
//! refuse or skip.

use crate::{PgError, USER_SCHEMAS, quote_ident};
use serde::Serialize;
use tokio_postgres::Client;

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Blocker,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Blocker => "blocker",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "blocker" => Some(Severity::Blocker),
            _ => None,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub summary: String,
    /// The objects concerned (schema-qualified where they have a schema).
    pub objects: Vec<String>,
    pub remediation: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub database: String,
    /// The source server's version, as it says it (`13.16`).
    pub source_version: String,
    pub source_major: u32,
    pub target_major: u32,
    /// Whether a target server was reachable to compare with.
    pub target_checked: bool,
    pub findings: Vec<Finding>,
    /// Rules that ran (an ignored rule is not run).
    pub rules: Vec<&'static str>,
}

impl Report {
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }

    /// Findings at or above `level`.
    pub fn at_least(&self, level: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.severity >= level)
    }
}

/// The rules, in the order they run, with what each looks for.
pub const RULES: &[(&str, &str)] = &[
    (
        "md5-passwords",
        "login roles of this database (its owner, owners of its objects, grantees on its tables) whose passwords are stored as md5 hashes while the new server uses scram-sha-256",
    ),
    ("index-row-size", "btree index entries larger than the new version's maximum (2704 bytes)"),
    ("extensions", "extensions (and versions) installed on the source but not available on the target server"),
    ("unlogged-tables", "unlogged tables (not crash-safe, not replicated)"),
    ("large-objects", "large objects (pg_largeobject), which COPY streams do not carry"),
    ("reg-types", "user columns of reg* types, which store OIDs"),
    ("invalid-indexes", "invalid indexes (a failed CREATE INDEX CONCURRENTLY)"),
    ("prepared-transactions", "prepared transactions, which hold locks and would be lost"),
    ("replication-slots", "replication slots, which are not carried over"),
    ("tablespaces", "objects in tablespaces other than pg_default"),
    ("sequences-near-max", "sequences past 90 % of their type's range"),
];

/// The btree maximum for an index tuple since PostgreSQL 12 (btree version 4).
pub const BTREE_V4_MAX: i64 = 2704;
/// Version 3 (PostgreSQL 11 and older, and indexes pg_upgrade carried over).
pub const BTREE_V3_MAX: i64 = 2712;

/// Runs every rule not in `ignore` against `source` (and `target` when
/// given) for a move to `target_major`.
pub async fn run(
    source: &Client,
    target: Option<&Client>,
    target_major: u32,
    ignore: &[String],
) -> Result<Report, PgError> {
    let row = source
        .query_one("SELECT current_database()::text, current_setting('server_version'), current_setting('server_version_num')::int", &[])
        .await
        .map_err(PgError::query)?;
    let database: String = row.get(0);
    let source_version: String = row.get(1);
    let num: i32 = row.get(2);
    let mut r = Report {
        database,
        source_version,
        source_major: (num / 10000) as u32,
        target_major,
        target_checked: target.is_some(),
        findings: vec![],
        rules: vec![],
    };
    for (rule, _) in RULES {
        if ignore.iter().any(|i| i == rule) {
            continue;
        }
        r.rules.push(rule);
        let found = match *rule {
            "md5-passwords" => md5_passwords(source, target, target_major).await?,
            "index-row-size" => index_row_size(source).await?,
            "extensions" => extensions(source, target).await?,
            "unlogged-tables" => unlogged_tables(source).await?,
            "large-objects" => large_objects(source).await?,
            "reg-types" => reg_types(source).await?,
            "invalid-indexes" => invalid_indexes(source).await?,
            "prepared-transactions" => prepared_transactions(source).await?,
            "replication-slots" => replication_slots(source).await?,
            "tablespaces" => tablespaces(source).await?,
            "sequences-near-max" => sequences_near_max(source).await?,
            _ => vec![],
        };
        r.findings.extend(found);
    }
    r.findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Ok(r)
}

/// The first column of every row, as text.
async fn texts(c: &Client, sql: &str) -> Result<Vec<String>, PgError> {
    let rows = c.query(sql, &[]).await.map_err(PgError::query)?;
    Ok(rows.iter().map(|r| r.get::<_, Option<String>>(0).unwrap_or_default()).collect())
}

fn finding(rule: &'static str, severity: Severity, summary: String, objects: Vec<String>, fix: &str) -> Finding {
    Finding { rule, severity, summary, objects, remediation: fix.to_string() }
}

async fn md5_passwords(source: &Client, target: Option<&Client>, target_major: u32) -> Result<Vec<Finding>, PgError> {
    let roles = match texts(
        source,
        // The roles this database's clients log in as: its owner, owners of
        // its objects, and roles granted privileges on its tables. (Roles
        // are server-wide; a role that never touches this database is not
        // this database's problem.)
        "SELECT a.rolname::text FROM pg_authid a WHERE a.rolcanlogin AND a.rolpassword LIKE 'md5%' AND ( \
           a.oid = (SELECT datdba FROM pg_database WHERE datname = current_database()) \
           OR EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = a.oid) \
           OR EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspowner = a.oid AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema') \
           OR EXISTS (SELECT 1 FROM pg_proc p WHERE p.proowner = a.oid) \
           OR EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) x WHERE x.grantee = a.oid)) ORDER BY 1",
    )
    .await
    {
        Ok(r) => r,
        Err(PgError::Query { sqlstate: Some(s), .. }) if s == "42501" => {
            return Ok(vec![finding(
                "md5-passwords",
                Severity::Info,
                "password hashes not checked: reading pg_authid needs a superuser".into(),
                vec![],
                "run the preflight as a superuser (or a role that can read pg_authid) to check password hashes",
            )]);
        }
        Err(e) => return Err(e),
    };
    if roles.is_empty() {
        return Ok(vec![]);
    }
    // What the new server hashes with: asked when it is reachable, else its
    // version's default (scram-sha-256 since PostgreSQL 14).
    let scram = match target {
        Some(t) => texts(t, "SELECT current_setting('password_encryption')")
            .await?
            .first()
            .is_some_and(|v| v == "scram-sha-256"),
        None => target_major >= 14,
    };
    let n = roles.len();
    Ok(vec![if scram {
        finding(
            "md5-passwords",
            Severity::Blocker,
            format!(
                "{n} login role(s) have md5 password hashes; the PostgreSQL {target_major} server hashes passwords with scram-sha-256"
            ),
            roles,
            "Either keep md5 on the new server for now (password_encryption = 'md5' and `md5` in pg_hba.conf, which accepts md5 and SCRAM hashes) \
             or re-set these passwords there with SCRAM and make sure every client uses libpq 10 or newer: older clients cannot authenticate \
             with SCRAM, the cause of ~99 % of the failures in a 7,000-database 13→15 move. When that is done, add `md5-passwords` to `ignore`.",
        )
    } else {
        finding(
            "md5-passwords",
            Severity::Info,
            format!("{n} login role(s) have md5 password hashes; the new server also uses md5"),
            roles,
            "nothing to do for the move; plan the switch to SCRAM (libpq 10+ clients) separately",
        )
    }])
}

async fn index_row_size(source: &Client) -> Result<Vec<Finding>, PgError> {
    // Btree indexes with a variable-length column (key or INCLUDE); an
    // expression column (attnum 0) cannot be measured from the table.
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, i.relname::text, \
                array_agg(a.attname::text ORDER BY k.ord), bool_or(k.attnum = 0) \
         FROM pg_index x \
         JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class c ON c.oid = x.indrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_am am ON am.oid = i.relam \
         CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
         WHERE am.amname = 'btree' AND c.relkind IN ('r', 'm') AND {USER_SCHEMAS} \
         GROUP BY 1, 2, 3 \
         HAVING bool_or(a.attlen = -1) \
         ORDER BY 1, 2, 3"
    );
    let rows = source.query(&sql, &[]).await.map_err(PgError::query)?;
    let mut over = vec![];
    let mut unmeasured = vec![];
    for row in rows {
        let (schema, table, index): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let cols: Vec<Option<String>> = row.get(3);
        let has_expr: bool = row.get(4);
        let name = format!("{schema}.{table}.{index}");
        if has_expr {
            unmeasured.push(name);
            continue;
        }
        // An index tuple is its values plus an 8-byte header; values are
        // measured as stored (compressed where the heap compressed them).
        let sum: Vec<String> =
            cols.iter().flatten().map(|c| format!("coalesce(pg_column_size({}), 0)", quote_ident(c))).collect();
        let q = format!(
            "SELECT count(*), coalesce(max(s), 0)::bigint FROM (SELECT 8 + {} AS s FROM {}.{}) t WHERE s > $1::bigint",
            sum.join(" + "),
            quote_ident(&schema),
            quote_ident(&table)
        );
        let r = source.query_one(&q, &[&BTREE_V4_MAX]).await.map_err(PgError::query)?;
        let (n, max): (i64, i64) = (r.get(0), r.get(1));
        if n > 0 {
            over.push(format!("{name} ({n} row(s), largest entry {max} bytes)"));
        }
    }
    let mut out = vec![];
    if !over.is_empty() {
        out.push(finding(
            "index-row-size",
            Severity::Blocker,
            format!(
                "{} btree index(es) hold entries larger than {BTREE_V4_MAX} bytes, the maximum of btree version 4: building them on the new server fails (\"index row size … exceeds btree version 4 maximum 2704\")",
                over.len()
            ),
            over,
            "Shorten the values, or index a hash of them instead (CREATE INDEX … ((md5(col))) or USING hash), or drop the index, before the window.",
        ));
    }
    if !unmeasured.is_empty() {
        out.push(finding(
            "index-row-size",
            Severity::Info,
            format!("{} expression btree index(es) on variable-length values were not measured", unmeasured.len()),
            unmeasured,
            "check their largest entries by hand if the expression can produce values over 2 kB",
        ));
    }
    Ok(out)
}

async fn extensions(source: &Client, target: Option<&Client>) -> Result<Vec<Finding>, PgError> {
    let rows = source
        .query("SELECT extname::text, extversion FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1", &[])
        .await
        .map_err(PgError::query)?;
    let installed: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    if installed.is_empty() {
        return Ok(vec![]);
    }
    let Some(t) = target else {
        return Ok(vec![finding(
            "extensions",
            Severity::Info,
            format!("{} extension(s) installed; not compared: no target server given", installed.len()),
            installed.iter().map(|(n, v)| format!("{n} {v}")).collect(),
            "give the target server (--target or target_dsn) to check they are available there",
        )]);
    };
    let avail = t
        .query(
            "SELECT name::text, array_agg(version ORDER BY version) FROM pg_available_extension_versions GROUP BY 1",
            &[],
        )
        .await
        .map_err(PgError::query)?;
    let avail: std::collections::HashMap<String, Vec<String>> = avail.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut missing = vec![];
    let mut other_version = vec![];
    for (name, version) in &installed {
        match avail.get(name) {
            None => missing.push(format!("{name} {version}")),
            Some(vs) if !vs.contains(version) => {
                other_version.push(format!("{name} {version} (target has {})", vs.join(", ")))
            }
            Some(_) => {}
        }
    }
    let mut out = vec![];
    if !missing.is_empty() {
        out.push(finding(
            "extensions",
            Severity::Blocker,
            format!("{} extension(s) are not available on the target server", missing.len()),
            missing,
            "Install the extension's package for the new major version on the target server, or drop the extension from the database before the window.",
        ));
    }
    if !other_version.is_empty() {
        out.push(finding(
            "extensions",
            Severity::Info,
            format!("{} extension(s) exist on the target in other versions only", other_version.len()),
            other_version,
            "the copy creates the target's version; run ALTER EXTENSION … UPDATE and test the app against it",
        ));
    }
    Ok(out)
}

async fn unlogged_tables(source: &Client) -> Result<Vec<Finding>, PgError> {
    let t = texts(
        source,
        &format!(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relpersistence = 'u' AND c.relkind IN ('r', 'p') AND {USER_SCHEMAS} ORDER BY 1"
        ),
    )
    .await?;
    Ok(if t.is_empty() {
        vec![]
    } else {
        vec![finding(
            "unlogged-tables",
            Severity::Warning,
            format!(
                "{} unlogged table(s): their contents are copied, but are lost on a crash and not replicated",
                t.len()
            ),
            t,
            "Check that nothing relies on them after the switch (or ALTER TABLE … SET LOGGED before the window).",
        )]
    })
}

async fn large_objects(source: &Client) -> Result<Vec<Finding>, PgError> {
    let n: i64 =
        source.query_one("SELECT count(*) FROM pg_largeobject_metadata", &[]).await.map_err(PgError::query)?.get(0);
    Ok(if n == 0 {
        vec![]
    } else {
        vec![finding(
            "large-objects",
            Severity::Warning,
            format!("{n} large object(s): table COPY streams do not carry them"),
            vec![format!("pg_largeobject ({n})")],
            "Copy this database with method = \"dump\" (pg_dump carries large objects), or move them to bytea columns first.",
        )]
    })
}

async fn reg_types(source: &Client) -> Result<Vec<Finding>, PgError> {
    let t = texts(
        source,
        &format!(
            "SELECT n.nspname || '.' || c.relname || '.' || a.attname || ' (' || format_type(a.atttypid, a.atttypmod) || ')' \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_type ty ON ty.oid = a.atttypid \
             WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'm', 'p') AND {USER_SCHEMAS} \
             AND ty.typname IN ('regproc', 'regprocedure', 'regoper', 'regoperator', 'regconfig', 'regdictionary', 'regnamespace', 'regcollation') \
             ORDER BY 1"
        ),
    )
    .await?;
    Ok(if t.is_empty() {
        vec![]
    } else {
        vec![finding(
            "reg-types",
            Severity::Warning,
            format!("{} column(s) of reg* types store OIDs of objects, which differ on the new server", t.len()),
            t,
            "A copy writes them as names, which resolve only if the objects exist on the target when data loads; pg_upgrade refuses them. Prefer text columns.",
        )]
    })
}

async fn invalid_indexes(source: &Client) -> Result<Vec<Finding>, PgError> {
    let t = texts(
        source,
        &format!(
            "SELECT n.nspname || '.' || c.relname || '.' || i.relname FROM pg_index x \
             JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT x.indisvalid AND {USER_SCHEMAS} ORDER BY 1"
        ),
    )
    .await?;
    Ok(if t.is_empty() {
        vec![]
    } else {
        vec![finding(
            "invalid-indexes",
            Severity::Warning,
            format!(
                "{} invalid index(es), left by a failed CREATE INDEX CONCURRENTLY: the copy would build them, and may fail as they did",
                t.len()
            ),
            t,
            "DROP INDEX CONCURRENTLY or REINDEX INDEX CONCURRENTLY each one before the window.",
        )]
    })
}

async fn prepared_transactions(source: &Client) -> Result<Vec<Finding>, PgError> {
    let t = texts(
        source,
        "SELECT gid || ' (prepared ' || prepared::text || ' by ' || owner::text || ')' FROM pg_prepared_xacts WHERE database = current_database() ORDER BY prepared",
    )
    .await?;
    Ok(if t.is_empty() {
        vec![]
    } else {
        vec![finding(
            "prepared-transactions",
            Severity::Blocker,
            format!("{} prepared transaction(s) hold locks and would be lost by the move", t.len()),
            t,
            "Have their transaction manager finish them, or COMMIT PREPARED / ROLLBACK PREPARED each one.",
        )]
    })
}

async fn replication_slots(source: &Client) -> Result<Vec<Finding>, PgError> {
    let t = texts(
        source,
        "SELECT slot_name || ' (' || slot_type || coalesce(', ' || plugin, '') || CASE WHEN active THEN ', active' ELSE '' END || ')' \
         FROM pg_replication_slots WHERE database IS NULL OR database = current_database() ORDER BY 1",
    )
    .await?;
    Ok(if t.is_empty() {
        vec![]
    } else {
        vec![finding(
            "replication-slots",
            Severity::Warning,
            format!(
                "{} replication slot(s) are not carried over: their consumers (replicas, change data capture) stop",
                t.len()
            ),
            t,
            "Re-create the slots on the new server and re-point their consumers after the switch; drop unused slots (they hold WAL).",
        )]
    })
}

async fn tablespaces(source: &Client) -> Result<Vec<Finding>, PgError> {
    let t = texts(
        source,
        "SELECT DISTINCT s.spcname::text FROM pg_tablespace s \
         WHERE s.spcname NOT IN ('pg_default', 'pg_global') AND (s.oid IN (SELECT reltablespace FROM pg_class) \
            OR s.oid = (SELECT dattablespace FROM pg_database WHERE datname = current_database())) ORDER BY 1",
    )
    .await?;
    Ok(if t.is_empty() {
        vec![]
    } else {
        vec![finding(
            "tablespaces",
            Severity::Warning,
            format!("{} tablespace(s) other than pg_default are used", t.len()),
            t,
            "Create them on the new server before the copy (CREATE TABLESPACE), or copy without tablespaces so everything lands in pg_default.",
        )]
    })
}

async fn sequences_near_max(source: &Client) -> Result<Vec<Finding>, PgError> {
    let t = texts(
        source,
        "SELECT schemaname || '.' || sequencename || ' (' || last_value || ' of ' || \
                CASE WHEN increment_by > 0 THEN max_value ELSE min_value END || ', ' || \
                round(100 * last_value::numeric / CASE WHEN increment_by > 0 THEN max_value ELSE min_value END, 1) || ' %)' \
         FROM pg_sequences WHERE last_value IS NOT NULL AND \
            ((increment_by > 0 AND last_value::numeric >= 0.9 * max_value) OR (increment_by < 0 AND last_value::numeric <= 0.9 * min_value)) \
         ORDER BY 1",
    )
    .await?;
    Ok(if t.is_empty() {
        vec![]
    } else {
        vec![finding(
            "sequences-near-max",
            Severity::Warning,
            format!("{} sequence(s) past 90 % of their range", t.len()),
            t,
            "Widen them (ALTER SEQUENCE … AS bigint, and the column: see pg.bigint) before they run out; the move carries their values as they are.",
        )]
    })
}
