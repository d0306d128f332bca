//! Discovery: everything an int → bigint conversion of one key column
//! touches, read from the catalog, and a refusal (one sentence saying why and
//! what to do) for what it cannot convert safely. The result, a [`Spec`], is
//! stored with the conversion so that later stages need not rediscover a
//! catalog they have already changed.

use super::{Spec, TableSpec};
use crate::PgError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::Client;

/// A column converted (the key, or a foreign-key column referencing it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ColSpec {
    pub name: String,
    /// Its type before: "integer" or "smallint".
    pub int_type: String,
    pub not_null: bool,
    /// Its default expression, unless it is an identity column.
    pub default: Option<String>,
    /// 'a' (ALWAYS) or 'd' (BY DEFAULT) for an identity column.
    pub identity: Option<String>,
    pub sequence: Option<SeqSpec>,
    pub comment: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SeqSpec {
    /// Schema-qualified and quoted.
    pub name: String,
    /// Its type before (`integer` for a serial).
    pub seq_type: String,
    /// Owned by the column (serial, identity), not only used by its default.
    pub owned: bool,
    pub increment: i64,
    pub cache: i64,
    pub cycle: bool,
}

/// An index holding a converted column: rebuilt on the new column.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IndexSpec {
    pub name: String,
    /// `pg_get_indexdef` from `USING …` on: method, columns, options, predicate.
    pub using: String,
    pub unique: bool,
    /// The primary key or unique constraint it backs: (name, 'p' | 'u', deferrable, deferred).
    pub constraint: Option<(String, String, bool, bool)>,
}

/// A foreign key referencing the converted key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FkSpec {
    pub name: String,
    /// Index into [`Spec::tables`].
    pub table: usize,
    pub column: String,
    /// Whether its column is converted too (false when it is already bigint).
    pub converted: bool,
    /// `ON UPDATE … ON DELETE … MATCH … DEFERRABLE …`, from the catalog.
    pub actions: String,
}

/// A view depending on a converted column: dropped and created again in the
/// cut-over transaction, so that it reads the new column.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ViewSpec {
    pub name: String,
    pub definition: String,
    pub options: String,
    pub owner: String,
    pub comment: Option<String>,
    /// (grantee or PUBLIC, privilege, grantable)
    pub grants: Vec<(String, String, bool)>,
}

/// A key a table's backfill walks: its primary key's columns and types.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KeyCol {
    pub name: String,
    pub ty: String,
}

fn refuse(msg: impl Into<String>) -> PgError {
    PgError::Other(msg.into())
}

/// Finds a table by `schema.table`, a quoted name, or an exact name.
async fn resolve(client: &Client, table: &str) -> Result<i64, PgError> {
    // to_regclass raises on a name it cannot parse (a space…): then look for the exact name.
    let direct = client
        .query_one("SELECT to_regclass($1)::oid::int8", &[&table])
        .await
        .ok()
        .and_then(|r| r.get::<_, Option<i64>>(0));
    if let Some(oid) = direct {
        return Ok(oid);
    }
    let rows = client
        .query(
            "SELECT c.oid::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND (c.relname = $1 AND pg_table_is_visible(c.oid) OR n.nspname || '.' || c.relname = $1)",
            &[&table],
        )
        .await
        .map_err(PgError::query)?;
    match rows.as_slice() {
        [r] => Ok(r.get(0)),
        [] => Err(refuse(format!(
            "there is no table `{table}` (name it as schema.table; write a mixed-case name as it is, e.g. Orders, or quoted, e.g. \"Orders\")"
        ))),
        _ => Err(refuse(format!("`{table}` names several tables: add the schema (schema.table)"))),
    }
}

pub(super) struct Rel {
    pub qname: String,
    pub relkind: String,
    pub inherits: bool,
    pub schema: String,
}

async fn rel(client: &Client, oid: i64) -> Result<Rel, PgError> {
    let r = client
        .query_one(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind::text,
                    EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid),
                    quote_ident(n.nspname)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::int8::oid",
            &[&oid],
        )
        .await
        .map_err(PgError::query)?;
    Ok(Rel { qname: r.get(0), relkind: r.get(1), inherits: r.get(2), schema: r.get(3) })
}

async fn column(client: &Client, oid: i64, name: &str, qname: &str) -> Result<(i16, ColSpec), PgError> {
    let row = client
        .query_opt(
            "SELECT a.attnum, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity::text,
                    a.attgenerated::text, pg_get_expr(d.adbin, d.adrelid), col_description(a.attrelid, a.attnum),
                    a.attacl IS NOT NULL
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = $1::int8::oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&oid, &name],
        )
        .await
        .map_err(PgError::query)?
        .ok_or_else(|| refuse(format!("table {qname} has no column `{name}`")))?;
    let attnum: i16 = row.get(0);
    let ty: String = row.get(1);
    let identity: String = row.get(3);
    let generated: String = row.get(4);
    if !generated.is_empty() {
        return Err(refuse(format!("{qname}.{name} is a generated column: it cannot be converted")));
    }
    if row.get::<_, bool>(7) {
        return Err(refuse(format!(
            "{qname}.{name} has column-level privileges: grant on the table instead, then convert"
        )));
    }
    let mut col = ColSpec {
        name: name.to_string(),
        int_type: ty,
        not_null: row.get(2),
        default: if identity.is_empty() { row.get(5) } else { None },
        identity: (!identity.is_empty()).then_some(identity),
        sequence: None,
        comment: row.get(6),
    };
    col.sequence = sequence(client, oid, attnum).await?;
    Ok((attnum, col))
}

/// The sequence a column owns (serial, identity) or its default calls.
async fn sequence(client: &Client, oid: i64, attnum: i16) -> Result<Option<SeqSpec>, PgError> {
    let row = client
        .query_opt(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(s.relname), format_type(q.seqtypid, NULL),
                    owned, q.seqincrement, q.seqcache, q.seqcycle
             FROM (SELECT d.objid AS seq, true AS owned FROM pg_depend d
                   WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                     AND d.refobjid = $1::int8::oid AND d.refobjsubid = $2 AND d.deptype IN ('a', 'i')
                   UNION ALL
                   SELECT d.refobjid, false FROM pg_attrdef ad JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass
                     AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
                   WHERE ad.adrelid = $1::int8::oid AND ad.adnum = $2) x
             JOIN pg_class s ON s.oid = x.seq AND s.relkind = 'S'
             JOIN pg_namespace n ON n.oid = s.relnamespace JOIN pg_sequence q ON q.seqrelid = s.oid
             ORDER BY owned DESC LIMIT 1",
            &[&oid, &i32::from(attnum)],
        )
        .await
        .map_err(PgError::query)?;
    Ok(row.map(|r| SeqSpec {
        name: r.get(0),
        seq_type: r.get(1),
        owned: r.get(2),
        increment: r.get(3),
        cache: r.get(4),
        cycle: r.get(5),
    }))
}

fn fk_actions(upd: &str, del: &str, matchtype: &str, deferrable: bool, deferred: bool) -> String {
    let action = |c: &str| match c {
        "r" => "RESTRICT",
        "c" => "CASCADE",
        "n" => "SET NULL",
        "d" => "SET DEFAULT",
        _ => "NO ACTION",
    };
    let mut s = String::new();
    if matchtype == "f" {
        s.push_str("MATCH FULL ");
    }
    s.push_str(&format!("ON UPDATE {} ON DELETE {}", action(upd), action(del)));
    if deferrable {
        s.push_str(if deferred { " DEFERRABLE INITIALLY DEFERRED" } else { " DEFERRABLE" });
    }
    s
}

/// What depends on one converted column, sorted into what the conversion
/// carries along (indexes, views, the sequence, known foreign keys) and what
/// makes it refuse.
struct Deps {
    indexes: BTreeSet<i64>,
    views: BTreeSet<i64>,
}

async fn dependents(
    client: &Client,
    oid: i64,
    attnum: i16,
    what: &str,
    known_fks: &BTreeSet<String>,
) -> Result<Deps, PgError> {
    let rows = client
        .query(
            "SELECT d.classid::regclass::text, d.objid::int8,
                    coalesce((SELECT c.relkind::text FROM pg_class c WHERE d.classid = 'pg_class'::regclass AND c.oid = d.objid), ''),
                    coalesce((SELECT con.contype::text || ':' || con.conindid::int8::text || ':' || con.conname FROM pg_constraint con
                              WHERE d.classid = 'pg_constraint'::regclass AND con.oid = d.objid), ''),
                    coalesce((SELECT c.relkind::text || ':' || c.oid::text FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
                              WHERE d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid), ''),
                    coalesce((SELECT ad.adnum FROM pg_attrdef ad WHERE d.classid = 'pg_attrdef'::regclass AND ad.oid = d.objid), 0)::int2,
                    coalesce((SELECT t.tgname FROM pg_trigger t WHERE d.classid = 'pg_trigger'::regclass AND t.oid = d.objid), '')
             FROM pg_depend d
             WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = $1::int8::oid AND d.refobjsubid = $2",
            &[&oid, &i32::from(attnum)],
        )
        .await
        .map_err(PgError::query)?;
    let mut deps = Deps { indexes: BTreeSet::new(), views: BTreeSet::new() };
    for r in rows {
        let class: String = r.get(0);
        let objid: i64 = r.get(1);
        let relkind: String = r.get(2);
        let con: String = r.get(3);
        let rule: String = r.get(4);
        let adnum: i16 = r.get(5);
        let tg: String = r.get(6);
        match class.as_str() {
            "pg_class" if relkind == "S" => {}
            "pg_class" if relkind == "i" => {
                deps.indexes.insert(objid);
            }
            "pg_constraint" => {
                let mut parts = con.splitn(3, ':');
                let (kind, index, name) =
                    (parts.next().unwrap_or(""), parts.next().unwrap_or("0"), parts.next().unwrap_or(""));
                match kind {
                    // The index behind a key depends on the constraint, not the column.
                    "p" | "u" => {
                        deps.indexes.insert(index.parse().unwrap_or(0));
                    }
                    "f" if known_fks.contains(name) => {}
                    "f" => {
                        return Err(refuse(format!(
                            "{what} is also part of foreign key {name}, which points elsewhere: drop it first, or convert that key on its own"
                        )));
                    }
                    "c" => {
                        return Err(refuse(format!(
                            "check constraint {name} uses {what}: drop it before the conversion and add it again after (NOT VALID, then VALIDATE)"
                        )));
                    }
                    "x" => return Err(refuse(format!("exclusion constraint {name} uses {what}: not supported"))),
                    _ => return Err(refuse(format!("constraint {name} uses {what}: not supported"))),
                }
            }
            "pg_attrdef" if adnum == attnum => {}
            "pg_attrdef" => {
                return Err(refuse(format!(
                    "a generated column's expression uses {what}: drop that column first, or convert by hand"
                )));
            }
            "pg_rewrite" => {
                let (kind, voi) = rule.split_once(':').unwrap_or(("", "0"));
                if kind == "v" {
                    deps.views.insert(voi.parse().unwrap_or(0));
                } else {
                    return Err(refuse(format!(
                        "a materialized view (or a rule) reads {what}: drop it first and create it again after the conversion"
                    )));
                }
            }
            "pg_trigger" => {
                return Err(refuse(format!(
                    "trigger {tg} fires on UPDATE OF {what}: drop it during the conversion and create it again after"
                )));
            }
            "pg_policy" => {
                return Err(refuse(format!(
                    "a row-level security policy uses {what}: drop it during the conversion and create it again after"
                )));
            }
            "pg_statistic_ext" => {
                return Err(refuse(format!(
                    "extended statistics use {what}: DROP STATISTICS first and create them again after"
                )));
            }
            other => return Err(refuse(format!("{what} is used by an object of {other}: not supported"))),
        }
    }
    Ok(deps)
}

async fn index(client: &Client, oid: i64, what: &str, known_fks: &BTreeSet<String>) -> Result<IndexSpec, PgError> {
    let r = client
        .query_one(
            "SELECT ci.relname, pg_get_indexdef(i.indexrelid), i.indisvalid, i.indisunique, am.amname,
                    con.conname, con.contype::text, coalesce(con.condeferrable, false), coalesce(con.condeferred, false),
                    (SELECT string_agg(f.conname, ', ') FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = i.indexrelid)
             FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_am am ON am.oid = ci.relam
             LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')
             WHERE i.indexrelid = $1::int8::oid",
            &[&oid],
        )
        .await
        .map_err(PgError::query)?;
    let name: String = r.get(0);
    let def: String = r.get(1);
    if !r.get::<_, bool>(2) {
        return Err(refuse(format!(
            "index {name} on {what} is invalid (a failed CREATE INDEX CONCURRENTLY): drop it or REINDEX it first"
        )));
    }
    if let Some(names) = r.get::<_, Option<String>>(9)
        && names.split(", ").any(|n| !known_fks.contains(n))
    {
        return Err(refuse(format!(
            "foreign key(s) {names} rely on index {name} on {what}, which the conversion rebuilds: not supported"
        )));
    }
    let am: String = r.get(4);
    let marker = format!(" USING {am} ");
    let using = match def.find(" ON ").and_then(|on| def[on..].find(&marker).map(|p| on + p + " USING ".len())) {
        Some(p) => def[p..].to_string(),
        None => return Err(refuse(format!("cannot read the definition of index {name}: {def}"))),
    };
    let constraint = match r.get::<_, Option<String>>(5) {
        Some(c) => {
            let kind: String = r.get(6);
            if kind == "x" {
                return Err(refuse(format!("exclusion constraint {c} uses {what}: not supported")));
            }
            Some((c, kind, r.get(7), r.get(8)))
        }
        None => None,
    };
    Ok(IndexSpec { name, using, unique: r.get(3), constraint })
}

async fn view(client: &Client, oid: i64) -> Result<super::discover::ViewSpec, PgError> {
    let r = client
        .query_one(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), pg_get_viewdef(c.oid),
                    coalesce(array_to_string(c.reloptions, ', '), ''), quote_ident(pg_get_userbyid(c.relowner)),
                    obj_description(c.oid, 'pg_class'),
                    (SELECT coalesce(json_agg(json_build_array(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                                                                a.privilege_type, a.is_grantable)), '[]')::text
                     FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner),
                    EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid),
                    EXISTS (SELECT 1 FROM pg_rewrite w WHERE w.ev_class = c.oid AND w.rulename <> '_RETURN')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::int8::oid",
            &[&oid],
        )
        .await
        .map_err(PgError::query)?;
    let name: String = r.get(0);
    if r.get::<_, bool>(6) || r.get::<_, bool>(7) {
        return Err(refuse(format!(
            "view {name} has triggers or rules, which dropping and creating it again would lose: not supported"
        )));
    }
    let grants: Vec<(String, String, bool)> = serde_json::from_str(&r.get::<_, String>(5)).unwrap_or_default();
    Ok(ViewSpec { name, definition: r.get(1), options: r.get(2), owner: r.get(3), comment: r.get(4), grants })
}

/// Views reading `start` views, transitively, in an order that creates each
/// after the views it reads.
async fn view_closure(client: &Client, start: BTreeSet<i64>) -> Result<Vec<i64>, PgError> {
    let mut reads: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    let mut todo: Vec<i64> = start.iter().copied().collect();
    let mut seen = start;
    while let Some(v) = todo.pop() {
        let rows = client
            .query(
                "SELECT DISTINCT r.ev_class::int8, c.relkind::text, c.relname
                 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class c ON c.oid = r.ev_class
                 WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                   AND d.refobjid = $1::int8::oid AND r.ev_class <> $1::int8::oid",
                &[&v],
            )
            .await
            .map_err(PgError::query)?;
        reads.entry(v).or_default();
        for r in rows {
            let dep: i64 = r.get(0);
            if r.get::<_, String>(1) != "v" {
                return Err(refuse(format!(
                    "materialized view {} reads a view that reads the key: drop it first and create it again after",
                    r.get::<_, String>(2)
                )));
            }
            reads.entry(dep).or_default().insert(v);
            if seen.insert(dep) {
                todo.push(dep);
            }
        }
    }
    let mut order = vec![];
    let mut placed = BTreeSet::new();
    while placed.len() < reads.len() {
        let next: Vec<i64> = reads
            .iter()
            .filter(|(v, deps)| {
                !placed.contains(*v) && deps.iter().all(|d| placed.contains(d) || !reads.contains_key(d))
            })
            .map(|(v, _)| *v)
            .collect();
        if next.is_empty() {
            return Err(refuse("the views reading the key depend on each other in a cycle"));
        }
        for v in next {
            placed.insert(v);
            order.push(v);
        }
    }
    Ok(order)
}

async fn key_of(client: &Client, oid: i64, qname: &str) -> Result<Vec<KeyCol>, PgError> {
    let rows = client
        .query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod)
             FROM pg_constraint con CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(att, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.att
             WHERE con.conrelid = $1::int8::oid AND con.contype = 'p' ORDER BY k.ord",
            &[&oid],
        )
        .await
        .map_err(PgError::query)?;
    if rows.is_empty() {
        return Err(refuse(format!(
            "table {qname} has no primary key, and the backfill walks one in batches: add a primary key first"
        )));
    }
    Ok(rows.iter().map(|r| KeyCol { name: r.get(0), ty: r.get(1) }).collect())
}

async fn estimate_rows(client: &Client, oid: i64, qname: &str) -> Result<i64, PgError> {
    let r = client
        .query_one("SELECT reltuples::int8, relpages::int8 FROM pg_class WHERE oid = $1::int8::oid", &[&oid])
        .await
        .map_err(PgError::query)?;
    let (tuples, pages): (i64, i64) = (r.get(0), r.get(1));
    if tuples > 0 && pages >= 1000 {
        return Ok(tuples);
    }
    let r = client.query_one(&format!("SELECT count(*) FROM {qname}"), &[]).await.map_err(PgError::query)?;
    Ok(r.get(0))
}

/// A table's schema-qualified, quoted name (the key of its conversion).
pub async fn qualified(client: &Client, table: &str) -> Result<String, PgError> {
    let oid = resolve(client, table).await?;
    Ok(rel(client, oid).await?.qname)
}

/// Reads the catalog and builds the conversion's [`Spec`], or refuses.
pub async fn discover(client: &Client, table: &str, column: Option<&str>) -> Result<Spec, PgError> {
    let oid = resolve(client, table).await?;
    let parent = rel(client, oid).await?;
    let qname = parent.qname.clone();
    if parent.relkind == "p" || parent.inherits {
        return Err(refuse(format!(
            "{qname} is partitioned, a partition, or uses inheritance: not supported (indexes cannot be built concurrently on a partitioned table, and a partition's key belongs to its parent)"
        )));
    }
    if parent.relkind != "r" {
        return Err(refuse(format!("{qname} is not a table")));
    }
    let pk = client
        .query(
            "SELECT a.attname FROM pg_constraint con JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = ANY (con.conkey)
             WHERE con.conrelid = $1::int8::oid AND con.contype = 'p'",
            &[&oid],
        )
        .await
        .map_err(PgError::query)?;
    let pk_cols: Vec<String> = pk.iter().map(|r| r.get(0)).collect();
    let column = match (column, pk_cols.as_slice()) {
        (_, []) => return Err(refuse(format!("{qname} has no primary key: pg.bigint converts a table's key"))),
        (_, [_, _, ..]) => {
            return Err(refuse(format!(
                "{qname}'s primary key has {} columns ({}): pg.bigint converts a single-column key",
                pk_cols.len(),
                pk_cols.join(", ")
            )));
        }
        (Some(c), [k]) if c != k => {
            return Err(refuse(format!(
                "{qname}.{c} is not the primary key ({k} is): pg.bigint converts the key and the foreign keys referencing it"
            )));
        }
        (_, [k]) => k.clone(),
    };
    let (attnum, col) = column_spec(client, oid, &column, &qname).await?;
    let major = crate::server_major(client).await?;

    // Foreign keys referencing the key.
    let rows = client
        .query(
            "SELECT con.conname, con.conrelid::int8, a.attname, format_type(a.atttypid, a.atttypmod),
                    con.confupdtype::text, con.confdeltype::text, con.confmatchtype::text, con.condeferrable,
                    con.condeferred, array_length(con.conkey, 1), con.convalidated
             FROM pg_constraint con JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
             WHERE con.contype = 'f' AND con.confrelid = $1::int8::oid AND $2 = ANY (con.confkey) ORDER BY con.conname",
            &[&oid, &attnum],
        )
        .await
        .map_err(PgError::query)?;
    let mut tables: Vec<TableSpec> = vec![TableSpec {
        name: qname.clone(),
        schema: parent.schema.clone(),
        oid,
        columns: vec![col.clone()],
        key: key_of(client, oid, &qname).await?,
        indexes: vec![],
        rows: 0,
    }];
    let mut fks = vec![];
    let mut known_fks = BTreeSet::new();
    let mut attnums: Vec<(usize, i16, String)> = vec![(0, attnum, column.clone())];
    for r in &rows {
        let name: String = r.get(0);
        let child_oid: i64 = r.get(1);
        let fcol: String = r.get(2);
        let fty: String = r.get(3);
        if r.get::<_, Option<i32>>(9) != Some(1) {
            return Err(refuse(format!("foreign key {name} has several columns: not supported")));
        }
        if !r.get::<_, bool>(10) {
            return Err(refuse(format!(
                "foreign key {name} is NOT VALID: validate it (ALTER TABLE … VALIDATE CONSTRAINT) first"
            )));
        }
        let child = rel(client, child_oid).await?;
        if child.relkind != "r" || child.inherits {
            return Err(refuse(format!(
                "{} (foreign key {name}) is partitioned or uses inheritance: not supported",
                child.qname
            )));
        }
        let idx = match tables.iter().position(|t| t.oid == child_oid) {
            Some(i) => i,
            None => {
                tables.push(TableSpec {
                    name: child.qname.clone(),
                    schema: child.schema.clone(),
                    oid: child_oid,
                    columns: vec![],
                    key: key_of(client, child_oid, &child.qname).await?,
                    indexes: vec![],
                    rows: 0,
                });
                tables.len() - 1
            }
        };
        let converted = match fty.as_str() {
            "integer" | "smallint" => true,
            "bigint" => false,
            other => return Err(refuse(format!("{}.{fcol} is {other}: not supported", child.qname))),
        };
        if converted && !tables[idx].columns.iter().any(|c| c.name == fcol) {
            let (fnum, fspec) = column_spec(client, child_oid, &fcol, &child.qname).await?;
            tables[idx].columns.push(fspec);
            attnums.push((idx, fnum, fcol.clone()));
        }
        known_fks.insert(name.clone());
        fks.push(FkSpec {
            name,
            table: idx,
            column: fcol,
            converted,
            actions: fk_actions(
                &r.get::<_, String>(4),
                &r.get::<_, String>(5),
                &r.get::<_, String>(6),
                r.get(7),
                r.get(8),
            ),
        });
    }

    // What depends on each converted column.
    let mut view_oids = BTreeSet::new();
    for (ti, num, name) in &attnums {
        let what = format!("{}.{}", tables[*ti].name, crate::quote_ident(name));
        let deps = dependents(client, tables[*ti].oid, *num, &what, &known_fks).await?;
        for i in deps.indexes {
            let spec = index(client, i, &what, &known_fks).await?;
            if !tables[*ti].indexes.iter().any(|x| x.name == spec.name) {
                tables[*ti].indexes.push(spec);
            }
        }
        view_oids.extend(deps.views);
    }
    let mut views = vec![];
    for v in view_closure(client, view_oids).await? {
        views.push(view(client, v).await?);
    }

    // Publications: subscribers would receive columns they do not have.
    let oids: Vec<i64> = tables.iter().map(|t| t.oid).collect();
    let pub_sql = if major >= 15 {
        "SELECT string_agg(p.pubname, ', ') FROM pg_publication p WHERE p.puballtables
           OR EXISTS (SELECT 1 FROM pg_publication_rel r WHERE r.prpubid = p.oid AND r.prrelid::int8 = ANY ($1))
           OR EXISTS (SELECT 1 FROM pg_publication_namespace pn JOIN pg_class c ON c.relnamespace = pn.pnnspid
                      WHERE pn.pnpubid = p.oid AND c.oid::int8 = ANY ($1))"
    } else {
        "SELECT string_agg(p.pubname, ', ') FROM pg_publication p WHERE p.puballtables
           OR EXISTS (SELECT 1 FROM pg_publication_rel r WHERE r.prpubid = p.oid AND r.prrelid::int8 = ANY ($1))"
    };
    let pubs: Option<String> = client.query_one(pub_sql, &[&oids]).await.map_err(PgError::query)?.get(0);
    if let Some(p) = pubs {
        return Err(refuse(format!(
            "the tables are published ({p}): subscribers would receive the new columns before they have them; add the columns on the subscribers first or convert without logical replication"
        )));
    }
    let triggers: Vec<String> = client
        .query(
            "SELECT t.tgrelid::regclass::text || ': ' || t.tgname FROM pg_trigger t
             WHERE t.tgrelid::int8 = ANY ($1) AND NOT t.tgisinternal AND t.tgname <> $2 ORDER BY 1",
            &[&oids, &super::sql::SYNC_TRIGGER],
        )
        .await
        .map_err(PgError::query)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in tables.iter_mut() {
        t.rows = estimate_rows(client, t.oid, &t.name).await?;
    }
    Ok(Spec { table: qname, column, tables, fks, views, user_triggers: triggers, server_major: major })
}

async fn column_spec(client: &Client, oid: i64, name: &str, qname: &str) -> Result<(i16, ColSpec), PgError> {
    let (num, col) = column(client, oid, name, qname).await?;
    match col.int_type.as_str() {
        "integer" | "smallint" => Ok((num, col)),
        "bigint" => Err(refuse(format!("{qname}.{} is already bigint: nothing to convert", crate::quote_ident(name)))),
        other => Err(refuse(format!("{qname}.{} is {other}, not an integer: pg.bigint converts integer keys", name))),
    }
}
