//! The statements of each stage, generated from a [`Spec`]: the same text
//! the dry-run prints and the stages run. Identifiers are quoted; the only
//! values spliced in are numbers the conversion computed and comments,
//! quoted as literals.
//!
//! Naming: while a column is not the live one it carries a suffix —
//! `id__bigint` before the cut-over, `id__int` after it — and so do the
//! indexes, constraints and foreign keys built for it, which makes every
//! stage idempotent (it looks for its objects by name) and the rollback the
//! same swap in the other direction.

use super::discover::{ColSpec, IndexSpec};
use super::{Spec, TableSpec};
use crate::copy::quote_literal;
use crate::quote_ident as qi;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

pub const SYNC_TRIGGER: &str = "zz_cutover_bigint_sync";

/// Which way a swap goes: to the bigint columns, or back to the int ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Forward,
    Back,
}

impl Dir {
    /// The suffix of the columns and objects this direction swaps in.
    pub fn sfx(self) -> &'static str {
        match self {
            Dir::Forward => "__bigint",
            Dir::Back => "__int",
        }
    }
    pub fn other(self) -> Dir {
        match self {
            Dir::Forward => Dir::Back,
            Dir::Back => Dir::Forward,
        }
    }
}

/// `name` with a suffix, cut to PostgreSQL's 63 bytes.
pub fn shadow(name: &str, sfx: &str) -> String {
    let mut end = name.len().min(63 - sfx.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{sfx}", &name[..end])
}

/// How a unit of statements runs.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One transaction with the short lock_timeout and statement_timeout, retried with jitter.
    Short,
    /// One transaction without timeouts: it holds no lock that stops writes.
    Long,
    /// Outside a transaction (CONCURRENTLY), without timeouts.
    Concurrent,
}

/// Statements that run together, and the locks they take.
#[derive(Clone, Debug, Serialize)]
pub struct Unit {
    pub sql: Vec<String>,
    pub mode: Mode,
    pub lock: String,
}

fn unit(mode: Mode, lock: impl Into<String>, sql: Vec<String>) -> Unit {
    Unit { sql, mode, lock: lock.into() }
}

/// Objects that exist now, so a stage run again skips what it already did.
#[derive(Default)]
pub struct Existing {
    pub constraints: BTreeSet<(i64, String)>,
    /// (table, index name) → valid
    pub indexes: BTreeMap<(i64, String), bool>,
}

fn index_name(t: &TableSpec, name: &str) -> String {
    format!("{}.{}", t.schema, qi(name))
}

fn not_null_check(c: &ColSpec, sfx: &str) -> String {
    shadow(&format!("{}_nn", c.name), sfx)
}

fn function_name(t: &TableSpec) -> String {
    format!("cutover.{}", qi(&format!("bigint_sync_{}", t.oid)))
}

/// The trigger function keeping the columns of `sfx` equal to the live ones.
/// Toward int, a value beyond the type's range is written as NULL (and a
/// rollback refuses while such a row exists).
pub fn sync_function(t: &TableSpec, dir: Dir) -> String {
    let sfx = dir.sfx();
    let mut body = String::new();
    for c in &t.columns {
        let (lo, hi) = if c.int_type == "smallint" { (-32768, 32767) } else { (-2147483648i64, 2147483647i64) };
        let target = qi(&shadow(&c.name, sfx));
        let src = qi(&c.name);
        match dir {
            Dir::Forward => body.push_str(&format!("  NEW.{target} := NEW.{src};\n")),
            Dir::Back => body.push_str(&format!(
                "  NEW.{target} := CASE WHEN NEW.{src} BETWEEN {lo} AND {hi} THEN NEW.{src} END;\n"
            )),
        }
    }
    format!(
        "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $cutover$\nBEGIN\n{body}  RETURN NEW;\nEND\n$cutover$",
        function_name(t)
    )
}

fn sync_trigger(t: &TableSpec, dir: Dir) -> Vec<String> {
    // Only when a copy differs: the backfill's own UPDATE (which already
    // sets it) and writes to rows already in sync do not call the function.
    let when: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("NEW.{} IS DISTINCT FROM NEW.{}", qi(&c.name), qi(&shadow(&c.name, dir.sfx()))))
        .collect();
    vec![
        format!("DROP TRIGGER IF EXISTS {SYNC_TRIGGER} ON {}", t.name),
        // Named to fire after the table's other BEFORE triggers (they fire
        // in name order), so it copies the key they may have set.
        format!(
            "CREATE TRIGGER {SYNC_TRIGGER} BEFORE INSERT OR UPDATE ON {} FOR EACH ROW WHEN ({}) EXECUTE FUNCTION {}()",
            t.name,
            when.join(" OR "),
            function_name(t)
        ),
    ]
}

pub const STATE_DDL: &str = "CREATE SCHEMA IF NOT EXISTS cutover;
CREATE TABLE IF NOT EXISTS cutover.bigint_conversions (
  table_name text NOT NULL,
  column_name text NOT NULL,
  stage text NOT NULL,
  paused boolean NOT NULL DEFAULT false,
  throttle text,
  rows_done bigint NOT NULL DEFAULT 0,
  rows_total bigint NOT NULL DEFAULT 0,
  spec jsonb NOT NULL,
  positions jsonb NOT NULL DEFAULT '{}',
  history jsonb NOT NULL DEFAULT '[]',
  started_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_name, column_name))";

/// Expand: the new columns and the triggers that keep them equal to the old
/// ones. Each table in one short transaction.
pub fn expand(spec: &Spec) -> Vec<Unit> {
    spec.tables
        .iter()
        .filter(|t| !t.columns.is_empty())
        .map(|t| {
            let mut sql: Vec<String> = t
                .columns
                .iter()
                .map(|c| {
                    format!(
                        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} bigint",
                        t.name,
                        qi(&shadow(&c.name, "__bigint"))
                    )
                })
                .collect();
            sql.push(sync_function(t, Dir::Forward));
            sql.extend(sync_trigger(t, Dir::Forward));
            unit(Mode::Short, format!("ACCESS EXCLUSIVE on {} for a catalog change (no rewrite, no scan)", t.name), sql)
        })
        .collect()
}

/// Rewrites the column names in an index definition's `USING …` part:
/// identifiers (bare or quoted) naming a converted column, except names of
/// functions, types after `::` and qualified names. Hand-written because no
/// parser crate prints SQL back; the definition comes from pg_get_indexdef,
/// whose quoting rules are PostgreSQL's own.
pub fn rename_columns(using: &str, names: &BTreeMap<String, String>) -> String {
    let b = using.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let mut prev_sig = String::new();
    while i < b.len() {
        let c = b[i] as char;
        if c == '\'' {
            let start = i;
            i += 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if i + 1 < b.len() && b[i + 1] == b'\'' {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i = (i + 1).min(b.len());
            out.push_str(&using[start..i]);
            prev_sig = "'".into();
            continue;
        }
        let (token, name) = if c == '"' {
            let start = i;
            i += 1;
            let mut name = String::new();
            while i < b.len() {
                if b[i] == b'"' {
                    if i + 1 < b.len() && b[i + 1] == b'"' {
                        name.push('"');
                        i += 2;
                        continue;
                    }
                    break;
                }
                let ch_len = using[i..].chars().next().map_or(1, char::len_utf8);
                name.push_str(&using[i..i + ch_len]);
                i += ch_len;
            }
            i = (i + 1).min(b.len());
            (&using[start..i], name)
        } else if c.is_ascii_alphabetic() || c == '_' || !c.is_ascii() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || !b[i].is_ascii()) {
                i += 1;
            }
            (&using[start..i], using[start..i].to_string())
        } else {
            let ch_len = using[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&using[i..i + ch_len]);
            if !c.is_whitespace() {
                prev_sig = if c == ':' && prev_sig == ":" { "::".into() } else { c.to_string() };
            }
            i += ch_len;
            continue;
        };
        let next = using[i..].trim_start().chars().next();
        let replace =
            names.get(&name).filter(|_| next != Some('(') && next != Some('.') && prev_sig != "::" && prev_sig != ".");
        match replace {
            Some(n) => out.push_str(&qi(n)),
            None => out.push_str(token),
        }
        prev_sig = "id".into();
    }
    out
}

fn renames(t: &TableSpec, sfx: &str) -> BTreeMap<String, String> {
    t.columns.iter().map(|c| (c.name.clone(), shadow(&c.name, sfx))).collect()
}

/// The index built for `ix` on the columns of `sfx`.
pub fn create_index(t: &TableSpec, ix: &IndexSpec, sfx: &str) -> String {
    format!(
        "CREATE {}INDEX CONCURRENTLY {} ON {} USING {}",
        if ix.unique { "UNIQUE " } else { "" },
        qi(&shadow(&ix.name, sfx)),
        t.name,
        rename_columns(&ix.using, &renames(t, sfx))
    )
}

/// Prepare: indexes on the columns of `dir` built concurrently (an invalid
/// one from an earlier attempt dropped first), NOT NULL proven by validated
/// checks, foreign keys added NOT VALID and then validated.
pub fn prepare(spec: &Spec, dir: Dir, now: &Existing) -> Vec<Unit> {
    let sfx = dir.sfx();
    let mut units = vec![];
    for t in &spec.tables {
        for ix in &t.indexes {
            let name = shadow(&ix.name, sfx);
            match now.indexes.get(&(t.oid, name.clone())) {
                Some(true) => continue,
                Some(false) => units.push(unit(
                    Mode::Concurrent,
                    format!(
                        "SHARE UPDATE EXCLUSIVE on {} (writes go on): an invalid index left by an earlier attempt",
                        t.name
                    ),
                    vec![format!("DROP INDEX CONCURRENTLY IF EXISTS {}", index_name(t, &name))],
                )),
                None => {}
            }
            units.push(unit(
                Mode::Concurrent,
                format!("SHARE UPDATE EXCLUSIVE on {} (writes go on); waits for older transactions", t.name),
                vec![create_index(t, ix, sfx)],
            ));
        }
    }
    for t in &spec.tables {
        for c in t.columns.iter().filter(|c| c.not_null) {
            let chk = not_null_check(c, sfx);
            if !now.constraints.contains(&(t.oid, chk.clone())) {
                units.push(unit(
                    Mode::Short,
                    format!("ACCESS EXCLUSIVE on {} for a catalog change (NOT VALID: no scan)", t.name),
                    vec![format!(
                        "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID",
                        t.name,
                        qi(&chk),
                        qi(&shadow(&c.name, sfx))
                    )],
                ));
            }
            units.push(unit(
                Mode::Long,
                format!("SHARE UPDATE EXCLUSIVE on {} (writes go on) while it scans", t.name),
                vec![format!("ALTER TABLE {} VALIDATE CONSTRAINT {}", t.name, qi(&chk))],
            ));
        }
    }
    let parent = &spec.tables[0];
    let key = &parent.columns[0].name;
    for fk in &spec.fks {
        let child = &spec.tables[fk.table];
        let name = shadow(&fk.name, sfx);
        let col = if fk.converted { shadow(&fk.column, sfx) } else { fk.column.clone() };
        if !now.constraints.contains(&(child.oid, name.clone())) {
            units.push(unit(
                Mode::Short,
                format!(
                    "SHARE ROW EXCLUSIVE on {} and {} for a catalog change (NOT VALID: no scan)",
                    child.name, parent.name
                ),
                vec![
                    // Parent first, the order writers take them in (insert a
                    // parent, then its children): the other order deadlocks
                    // with them, and lock_timeout fires before the detector.
                    if child.oid == parent.oid {
                        format!("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", parent.name)
                    } else {
                        format!("LOCK TABLE {}, {} IN SHARE ROW EXCLUSIVE MODE", parent.name, child.name)
                    },
                    format!(
                        "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) {} NOT VALID",
                        child.name,
                        qi(&name),
                        qi(&col),
                        parent.name,
                        qi(&shadow(key, sfx)),
                        fk.actions
                    ),
                ],
            ));
        }
        units.push(unit(
            Mode::Long,
            format!(
                "SHARE UPDATE EXCLUSIVE on {}, ROW SHARE on {} (writes go on) while it scans",
                child.name, parent.name
            ),
            vec![format!("ALTER TABLE {} VALIDATE CONSTRAINT {}", child.name, qi(&name))],
        ));
    }
    units
}

/// The LOCK that opens the cut-over: parent first, then the children.
pub fn swap_lock(spec: &Spec) -> String {
    let names: Vec<&str> = spec.tables.iter().map(|t| t.name.as_str()).collect();
    format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", names.join(", "))
}

/// Identity sequences whose next value the cut-over reads (under its lock)
/// to start the new identity where the old one was.
pub fn identity_sequences(spec: &Spec) -> Vec<String> {
    spec.tables
        .iter()
        .flat_map(|t| t.columns.iter())
        .filter(|c| c.identity.is_some())
        .filter_map(|c| c.sequence.as_ref().map(|s| s.name.clone()))
        .collect()
}

/// The cut-over (or, `Dir::Back`, the rollback) after its LOCK: one
/// transaction swapping the columns of `dir` in. `next` holds the next value
/// of each identity sequence (None: the dry-run's placeholder).
pub fn swap(spec: &Spec, dir: Dir, next: Option<&BTreeMap<String, i64>>) -> Vec<String> {
    let sfx = dir.sfx();
    let osfx = dir.other().sfx();
    let mut v = vec![];
    for view in spec.views.iter().rev() {
        v.push(format!("DROP VIEW {}", view.name));
    }
    for fk in &spec.fks {
        v.push(format!("ALTER TABLE {} DROP CONSTRAINT {}", spec.tables[fk.table].name, qi(&fk.name)));
    }
    for t in &spec.tables {
        v.push(format!("DROP TRIGGER IF EXISTS {SYNC_TRIGGER} ON {}", t.name));
        for ix in &t.indexes {
            if let Some((con, ..)) = &ix.constraint {
                v.push(format!("ALTER TABLE {} DROP CONSTRAINT {}", t.name, qi(con)));
            }
        }
    }
    for t in &spec.tables {
        for c in &t.columns {
            let col = qi(&c.name);
            if c.identity.is_some() {
                v.push(format!("ALTER TABLE {} ALTER COLUMN {col} DROP IDENTITY", t.name));
            } else if c.default.is_some() {
                v.push(format!("ALTER TABLE {} ALTER COLUMN {col} DROP DEFAULT", t.name));
            }
            if c.not_null {
                v.push(format!("ALTER TABLE {} ALTER COLUMN {col} DROP NOT NULL", t.name));
            }
            v.push(format!("ALTER TABLE {} RENAME COLUMN {col} TO {}", t.name, qi(&shadow(&c.name, osfx))));
            v.push(format!("ALTER TABLE {} RENAME COLUMN {} TO {col}", t.name, qi(&shadow(&c.name, sfx))));
            if c.not_null {
                v.push(format!("ALTER TABLE {} ALTER COLUMN {col} SET NOT NULL", t.name));
                v.push(format!("ALTER TABLE {} DROP CONSTRAINT {}", t.name, qi(&not_null_check(c, sfx))));
            }
            match (&c.identity, &c.sequence) {
                (Some(kind), Some(seq)) => {
                    let start = match next.and_then(|n| n.get(&seq.name)) {
                        Some(n) => n.to_string(),
                        None => "<the old sequence's next value>".into(),
                    };
                    v.push(format!(
                        "ALTER TABLE {} ALTER COLUMN {col} ADD GENERATED {} AS IDENTITY (SEQUENCE NAME {} INCREMENT BY {} CACHE {} {} START WITH {start})",
                        t.name,
                        if kind == "a" { "ALWAYS" } else { "BY DEFAULT" },
                        seq.name,
                        seq.increment,
                        seq.cache,
                        if seq.cycle { "CYCLE" } else { "NO CYCLE" }
                    ));
                }
                _ => {
                    if let Some(d) = &c.default {
                        v.push(format!("ALTER TABLE {} ALTER COLUMN {col} SET DEFAULT {d}", t.name));
                    }
                    if let Some(seq) = &c.sequence {
                        let seq_ty = match dir {
                            Dir::Forward => "bigint",
                            Dir::Back => seq.seq_type.as_str(),
                        };
                        let owned = if seq.owned { format!(" OWNED BY {}.{col}", t.name) } else { String::new() };
                        v.push(format!("ALTER SEQUENCE {} AS {seq_ty}{owned}", seq.name));
                    }
                }
            }
            if let Some(cm) = &c.comment {
                v.push(format!("COMMENT ON COLUMN {}.{col} IS {}", t.name, quote_literal(cm)));
            }
        }
    }
    for t in &spec.tables {
        for ix in &t.indexes {
            let new = qi(&shadow(&ix.name, sfx));
            match &ix.constraint {
                Some((con, kind, deferrable, deferred)) => v.push(format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {new}{}",
                    t.name,
                    qi(con),
                    if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" },
                    match (deferrable, deferred) {
                        (true, true) => " DEFERRABLE INITIALLY DEFERRED",
                        (true, false) => " DEFERRABLE",
                        _ => "",
                    }
                )),
                None => {
                    v.push(format!(
                        "ALTER INDEX {} RENAME TO {}",
                        index_name(t, &ix.name),
                        qi(&shadow(&ix.name, osfx))
                    ));
                    v.push(format!("ALTER INDEX {}.{new} RENAME TO {}", t.schema, qi(&ix.name)));
                }
            }
        }
    }
    for fk in &spec.fks {
        v.push(format!(
            "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
            spec.tables[fk.table].name,
            qi(&shadow(&fk.name, sfx)),
            qi(&fk.name)
        ));
    }
    for t in spec.tables.iter().filter(|t| !t.columns.is_empty()) {
        v.push(sync_function(t, dir.other()));
        v.extend(sync_trigger(t, dir.other()));
    }
    for view in &spec.views {
        let with = if view.options.is_empty() { String::new() } else { format!(" WITH ({})", view.options) };
        let def = view.definition.trim().trim_end_matches(';');
        v.push(format!("CREATE VIEW {}{with} AS {def}", view.name));
        v.push(format!("ALTER VIEW {} OWNER TO {}", view.name, view.owner));
        if let Some(cm) = &view.comment {
            v.push(format!("COMMENT ON VIEW {} IS {}", view.name, quote_literal(cm)));
        }
        for (grantee, privilege, grantable) in &view.grants {
            v.push(format!(
                "GRANT {privilege} ON {} TO {grantee}{}",
                view.name,
                if *grantable { " WITH GRANT OPTION" } else { "" }
            ));
        }
    }
    v
}

/// The sync triggers and their functions dropped, one short transaction per table.
fn drop_sync(spec: &Spec) -> Vec<Unit> {
    spec.tables
        .iter()
        .filter(|t| !t.columns.is_empty())
        .map(|t| {
            unit(
                Mode::Short,
                format!("SHARE ROW EXCLUSIVE on {}, brief", t.name),
                vec![
                    format!("DROP TRIGGER IF EXISTS {SYNC_TRIGGER} ON {}", t.name),
                    format!("DROP FUNCTION IF EXISTS {}()", function_name(t)),
                ],
            )
        })
        .collect()
}

/// Contract, after the cut-over: the triggers, the old indexes (concurrently)
/// and the old columns go; statistics are refreshed.
pub fn contract(spec: &Spec) -> Vec<Unit> {
    let osfx = Dir::Back.sfx();
    let mut units = drop_sync(spec);
    for t in &spec.tables {
        for ix in t.indexes.iter().filter(|ix| ix.constraint.is_none()) {
            units.push(unit(
                Mode::Concurrent,
                format!("SHARE UPDATE EXCLUSIVE on {} (writes go on)", t.name),
                vec![format!("DROP INDEX CONCURRENTLY IF EXISTS {}", index_name(t, &shadow(&ix.name, osfx)))],
            ));
        }
    }
    for t in spec.tables.iter().filter(|t| !t.columns.is_empty()) {
        let drops: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("ALTER TABLE {} DROP COLUMN IF EXISTS {}", t.name, qi(&shadow(&c.name, osfx))))
            .collect();
        units.push(unit(
            Mode::Short,
            format!(
                "ACCESS EXCLUSIVE on {} for a catalog change (the space is reclaimed by later writes and VACUUM)",
                t.name
            ),
            drops,
        ));
        units.push(unit(Mode::Long, "SHARE UPDATE EXCLUSIVE (writes go on)", vec![format!("ANALYZE {}", t.name)]));
    }
    units
}

/// Abort, before the cut-over (or after a rollback): everything the
/// conversion added goes, leaving the tables as they were.
pub fn abort(spec: &Spec) -> Vec<Unit> {
    let sfx = Dir::Forward.sfx();
    let mut units = drop_sync(spec);
    for fk in &spec.fks {
        let child = &spec.tables[fk.table];
        units.push(unit(
            Mode::Short,
            format!("ACCESS EXCLUSIVE on {}, brief", child.name),
            vec![format!("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}", child.name, qi(&shadow(&fk.name, sfx)))],
        ));
    }
    for t in &spec.tables {
        for ix in &t.indexes {
            units.push(unit(
                Mode::Concurrent,
                format!("SHARE UPDATE EXCLUSIVE on {} (writes go on)", t.name),
                vec![format!("DROP INDEX CONCURRENTLY IF EXISTS {}", index_name(t, &shadow(&ix.name, sfx)))],
            ));
        }
    }
    for t in spec.tables.iter().filter(|t| !t.columns.is_empty()) {
        let drops: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("ALTER TABLE {} DROP COLUMN IF EXISTS {}", t.name, qi(&shadow(&c.name, sfx))))
            .collect();
        units.push(unit(Mode::Short, format!("ACCESS EXCLUSIVE on {} for a catalog change", t.name), drops));
    }
    units
}

/// `a IS DISTINCT FROM b OR …` over a table's columns and their shadows of `sfx`.
pub fn differs(t: &TableSpec, sfx: &str) -> String {
    let parts: Vec<String> =
        t.columns.iter().map(|c| format!("{} IS DISTINCT FROM {}", qi(&shadow(&c.name, sfx)), qi(&c.name))).collect();
    if parts.is_empty() { "false".into() } else { parts.join(" OR ") }
}

/// `shadow = column, …` for a backfill's UPDATE.
pub fn assignments(t: &TableSpec, sfx: &str) -> String {
    t.columns.iter().map(|c| format!("{} = {}", qi(&shadow(&c.name, sfx)), qi(&c.name))).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn rename_columns_only_renames_column_references() {
        let m = names(&[("id", "id__bigint"), ("My Id", "My Id__bigint")]);
        assert_eq!(rename_columns("btree (id)", &m), "btree (\"id__bigint\")");
        assert_eq!(
            rename_columns("btree (\"My Id\" DESC NULLS LAST, created_at) INCLUDE (id) WHERE (id > 10)", &m),
            "btree (\"My Id__bigint\" DESC NULLS LAST, created_at) INCLUDE (\"id__bigint\") WHERE (\"id__bigint\" > 10)"
        );
        // A function named like the column, a type after ::, a string.
        assert_eq!(
            rename_columns("btree (id(x), (x)::id) WHERE (note <> 'id')", &m),
            "btree (id(x), (x)::id) WHERE (note <> 'id')"
        );
        assert_eq!(rename_columns("btree (ids, id_x)", &m), "btree (ids, id_x)");
    }

    #[test]
    fn shadow_names_fit_63_bytes() {
        assert_eq!(shadow("id", "__bigint"), "id__bigint");
        let long = "é".repeat(40);
        let s = shadow(&long, "__bigint");
        assert!(s.len() <= 63 && s.ends_with("__bigint"), "{s}");
    }
}
