//! M003 column-type-change: `ALTER TABLE … ALTER COLUMN … TYPE` on a table
//! that already exists.
//!
//! From the file alone, the linter sees the new type but not the old one. A
//! change to `text` or `varchar` is, in practice, the widening of a
//! `varchar`, which PostgreSQL does without a rewrite (only a short ACCESS
//! EXCLUSIVE lock), so those are warnings; with a `USING` clause, or to any
//! other type, an error. When the caller read the column's current type from
//! the database (pending files, [`crate::lint::Pending::knowing`]), a change
//! that rewrites nothing is not flagged, any other is an error naming the
//! current type, and only integer → bigint points to `cutover pg bigint`.

use pg_query::NodeEnum;
use pg_query::protobuf::{AlterTableType, TypeName, a_const::Val};

use super::{ACCESS_EXCLUSIVE, BLOCKS_ALL, Hit, Stmt, alter_cmds, column_def, existing_alter};
use crate::lint::context::Cx;
use crate::lint::names::{base_type, quoted, shell_arg, type_sql};
use crate::lint::{ColumnType, Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M003",
    name: "column-type-change",
    severity: Severity::Error,
    explanation: "Changing a column's type rewrites the whole table and rebuilds its indexes while holding an ACCESS \
                  EXCLUSIVE lock: nothing can read or write the table until it is done.",
    alternative: "For an int key that is running out: cutover pg bigint --table T --column C converts it online. \
                  Otherwise expand/contract: add a column of the new type, keep it in sync (trigger), backfill in \
                  batches, switch the application over, then drop the old column.",
};

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    let Some((alter, table)) = existing_alter(cx, stmt) else { return };
    for cmd in alter_cmds(alter).filter(|c| c.subtype() == AlterTableType::AtAlterColumnType) {
        let Some(def) = column_def(cmd) else { continue };
        let Some(new_type) = &def.type_name else { continue };
        let column = &cmd.name;
        let base = base_type(new_type);
        let using = def.raw_default.is_some();
        let type_sql = type_sql(new_type);
        // With the column's current type from the catalog (pending files
        // linted against their database), what PostgreSQL will do is known.
        let now = cx.column_type(&table, column);
        if let Some(old) = now
            && !using
            && change(old, new_type) != Change::Rewrite
        {
            // No row is rewritten, but some indexes may still be rebuilt.
            let what = if def.coll_clause.is_some() {
                format!("every index on {} (its collation changes)", quoted(column))
            } else if !old.expression_indexes.is_empty() {
                format!(
                    "{} (expression and partial indexes on {} are rebuilt on any type change)",
                    old.expression_indexes.iter().map(|i| quoted(i)).collect::<Vec<_>>().join(", "),
                    quoted(column)
                )
            } else {
                continue;
            };
            let hit = Hit::new(
                &RULE,
                format!(
                    "ALTER COLUMN {} TYPE {type_sql} (now {}) rewrites no rows of {table}, but rebuilds {what} while \
                     holding {ACCESS_EXCLUSIVE} on {table} ({BLOCKS_ALL})",
                    quoted(column),
                    old.display
                ),
                "In a -- cutover:no-transaction file, DROP INDEX CONCURRENTLY those indexes first, change the type, \
                 then CREATE INDEX CONCURRENTLY them again; or expand/contract with a new column"
                    .to_owned(),
            );
            out.push(hit.at(def.location));
            continue;
        }
        let hit = if now.is_none() && matches!(base.as_str(), "text" | "varchar") && !using {
            Hit::new(
                &RULE,
                format!(
                    "ALTER COLUMN {} TYPE {type_sql} on {table} takes {ACCESS_EXCLUSIVE} on {table}, and rewrites \
                     {table} and its indexes under it unless the column is a varchar being widened (the linter \
                     cannot see its current type)",
                    quoted(column)
                ),
                format!(
                    "If {} is a varchar(n) becoming text or a longer varchar, there is no rewrite and this is safe \
                     with a lock_timeout; otherwise add a {type_sql} column, backfill it in batches, switch over, \
                     then drop the old one",
                    quoted(column)
                ),
            )
            .severity(Severity::Warning)
        } else {
            let was = now.map(|o| format!(" (now {})", o.display)).unwrap_or_default();
            let message = format!(
                "ALTER COLUMN {} TYPE {type_sql}{was} rewrites {table} and rebuilds its indexes while holding \
                 {ACCESS_EXCLUSIVE} on {table} ({BLOCKS_ALL}) for the whole rewrite",
                quoted(column)
            );
            let to_bigint = matches!(base.as_str(), "int8" | "bigint" | "bigserial" | "serial8");
            let from_int = now.is_none_or(|o| matches!(o.type_name.as_str(), "int4" | "int2"));
            let alternative = if to_bigint && from_int {
                format!(
                    "If {col} is the primary key of {table}: cutover pg bigint --table {} --column {} converts it \
                     online, with every foreign-key column referencing it (bigint copies kept in sync by triggers, \
                     a batched backfill, a cut-over of about a second). For a foreign-key column, convert the \
                     referenced table's key, which takes this column along. For another column: add a bigint \
                     column, backfill it in batches, switch over, then drop the old one",
                    shell_arg(&table.plain()),
                    shell_arg(column),
                    col = quoted(column),
                )
            } else {
                format!(
                    "Expand/contract: ADD COLUMN a {type_sql} column next to {col}, keep it in sync with a trigger, \
                     backfill existing rows in batches, switch the application to it, then drop {col} in a later \
                     migration",
                    col = quoted(column)
                )
            };
            Hit::new(&RULE, message, alternative)
        };
        out.push(hit.at(def.location));
    }
}

/// What a type change does to the table, when the old type is known.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// The same type: nothing happens.
    Same,
    /// Binary-compatible (a varchar widened, varchar ↔ text, numeric's
    /// precision raised): a catalog change under a brief lock, no rewrite.
    NoRewrite,
    /// Every row rewritten, every index rebuilt.
    Rewrite,
}

/// Follows PostgreSQL's own test (`ATColumnChangeRequiresRewrite`) for the
/// common cases and assumes a rewrite for the rest.
fn change(old: &ColumnType, new: &TypeName) -> Change {
    if !new.array_bounds.is_empty() {
        return Change::Rewrite;
    }
    let base = base_type(new);
    let mods: Vec<i32> = new
        .typmods
        .iter()
        .map(|m| match m.node.as_ref() {
            Some(NodeEnum::AConst(c)) => match c.val.as_ref() {
                Some(Val::Ival(i)) => i.ival,
                _ => -1,
            },
            _ => -1,
        })
        .collect();
    let old_mod = (old.typmod >= 4).then_some(old.typmod - 4);
    match (old.type_name.as_str(), base.as_str()) {
        ("varchar", "varchar") => match (old_mod, mods.as_slice()) {
            (None, []) => Change::Same,
            (Some(_), []) => Change::NoRewrite,
            (Some(n), [m]) if *m == n => Change::Same,
            (Some(n), [m]) if *m > n => Change::NoRewrite,
            _ => Change::Rewrite,
        },
        ("varchar", "text") | ("text", "varchar") if mods.is_empty() => Change::NoRewrite,
        ("numeric", "numeric") => {
            let (p0, s0) = match old_mod {
                Some(m) => ((m >> 16) & 0xffff, m & 0xffff),
                None => return if mods.is_empty() { Change::Same } else { Change::Rewrite },
            };
            match mods.as_slice() {
                [] => Change::NoRewrite,
                [p] | [p, _] if *p < p0 => Change::Rewrite,
                [p] if s0 == 0 => {
                    if *p == p0 {
                        Change::Same
                    } else {
                        Change::NoRewrite
                    }
                }
                [p, s] if *s == s0 => {
                    if *p == p0 {
                        Change::Same
                    } else {
                        Change::NoRewrite
                    }
                }
                _ => Change::Rewrite,
            }
        }
        (o, n) if o == n && mods.is_empty() && old_mod.is_none() => Change::Same,
        _ => Change::Rewrite,
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::Severity;
    use crate::lint::rules::test::{check, finding};

    #[test]
    fn type_changes_on_an_existing_table() {
        check("SET lock_timeout = '2s';\nALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2);", &["M003@2"]);
        check(
            "SET lock_timeout = '2s';\nALTER TABLE t\n  ALTER COLUMN a SET DEFAULT 1,\n  ALTER b TYPE int8;",
            &["M003@4"],
        );
        check("SET lock_timeout = '2s';\nALTER TABLE t ALTER COLUMN a SET DATA TYPE text USING a::text;", &["M003@2"]);
    }

    #[test]
    fn a_new_table_is_not_flagged() {
        check("CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a TYPE bigint;", &[]);
    }

    #[test]
    fn to_bigint_points_at_cutover_pg_bigint() {
        let f = finding("SET lock_timeout = '2s';\nALTER TABLE public.orders ALTER COLUMN id TYPE bigint;", "M003");
        assert_eq!(f.severity, Severity::Error);
        assert!(f.message.starts_with("ALTER COLUMN \"id\" TYPE bigint rewrites public.orders"), "{}", f.message);
        assert!(f.alternative.contains("cutover pg bigint --table public.orders --column id"), "{}", f.alternative);
        let f = finding("SET lock_timeout = '2s';\nALTER TABLE \"Order Items\" ALTER id TYPE int8;", "M003");
        assert!(f.alternative.contains("--table 'Order Items' --column id"), "{}", f.alternative);
    }

    /// Lints `sql` knowing the current types `(column, typname, typmod,
    /// display)` of table `t`'s columns.
    fn knowing(sql: &str, columns: &[(&str, &str, i32, &str)]) -> Vec<crate::lint::Finding> {
        let known = columns
            .iter()
            .map(|(column, type_name, typmod, display)| crate::lint::ColumnType {
                column: crate::lint::ColumnRef { schema: String::new(), table: "t".into(), column: (*column).into() },
                type_name: (*type_name).into(),
                typmod: *typmod,
                display: (*display).into(),
                expression_indexes: if *column == "bio" { vec!["users_bio_lower".into()] } else { vec![] },
            })
            .collect();
        crate::lint::Pending::knowing(known).lint("test.sql", &format!("SET lock_timeout = '2s';\n{sql}"), true)
    }

    #[test]
    fn with_the_current_type_known_only_rewrites_are_flagged() {
        let cols = [
            ("id", "int4", -1, "integer"),
            ("name", "varchar", 54, "character varying(50)"),
            ("bio", "text", -1, "text"),
            ("total", "numeric", (10 << 16 | 2) + 4, "numeric(10,2)"),
            ("big", "int8", -1, "bigint"),
        ];
        let codes = |sql: &str| knowing(sql, &cols).iter().map(|f| f.code).collect::<Vec<_>>();
        // No rewrite: a longer varchar, varchar to text and back without a
        // length, more numeric precision at the same scale, the same type.
        for sql in [
            "ALTER TABLE t ALTER COLUMN name TYPE varchar(100);",
            "ALTER TABLE t ALTER COLUMN name TYPE varchar(50);",
            "ALTER TABLE t ALTER COLUMN name TYPE text;",
            "ALTER TABLE t ALTER COLUMN name TYPE varchar;",
            "ALTER TABLE t ALTER COLUMN total TYPE numeric(14,2);",
            "ALTER TABLE t ALTER COLUMN total TYPE numeric;",
            "ALTER TABLE t ALTER COLUMN big TYPE bigint;",
        ] {
            assert!(codes(sql).is_empty(), "{sql}: {:#?}", knowing(sql, &cols));
        }
        // Rewrites: a shorter varchar, a length added to text, less precision
        // or another scale, USING, another type altogether.
        for sql in [
            "ALTER TABLE t ALTER COLUMN name TYPE varchar(20);",
            "ALTER TABLE t ALTER COLUMN bio TYPE varchar(20);",
            "ALTER TABLE t ALTER COLUMN total TYPE numeric(8,2);",
            "ALTER TABLE t ALTER COLUMN total TYPE numeric(12,3);",
            "ALTER TABLE t ALTER COLUMN name TYPE text USING name::text;",
            "ALTER TABLE t ALTER COLUMN big TYPE numeric;",
        ] {
            let f = knowing(sql, &cols);
            assert_eq!(
                f.iter().map(|f| (f.code, f.severity)).collect::<Vec<_>>(),
                [("M003", Severity::Error)],
                "{sql}"
            );
            assert!(f[0].message.contains(" (now "), "{}", f[0].message);
        }
        // integer → bigint names the current type and points to cutover pg bigint;
        // bigint → numeric does not.
        let f = knowing("ALTER TABLE t ALTER COLUMN id TYPE bigint;", &cols);
        assert!(
            f[0].message.starts_with("ALTER COLUMN \"id\" TYPE bigint (now integer) rewrites t"),
            "{}",
            f[0].message
        );
        assert!(f[0].alternative.contains("cutover pg bigint --table t --column id"), "{}", f[0].alternative);
        let f = knowing("ALTER TABLE t ALTER COLUMN big TYPE numeric;", &cols);
        assert!(!f[0].alternative.contains("cutover pg bigint"), "{}", f[0].alternative);
        // No row rewritten, but indexes rebuilt: a new collation, an expression index.
        let f = knowing("ALTER TABLE t ALTER COLUMN name TYPE varchar(100) COLLATE \"C\";", &cols);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert!(
            f[0].message.contains("rewrites no rows of t, but rebuilds every index on \"name\""),
            "{}",
            f[0].message
        );
        let f = knowing("ALTER TABLE t ALTER COLUMN bio TYPE varchar;", &cols);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert!(f[0].message.contains("rebuilds \"users_bio_lower\" (expression"), "{}", f[0].message);
        // A column renamed, or a table moved, since it was read is no longer known.
        assert_eq!(
            codes(
                "ALTER TABLE t RENAME COLUMN id TO old_id;\nALTER TABLE t RENAME COLUMN name TO id;\nALTER TABLE t ALTER COLUMN id TYPE varchar(100);"
            ),
            ["M010", "M010", "M003"]
        );
        assert_eq!(codes("SET search_path = app;\nALTER TABLE t ALTER COLUMN name TYPE varchar(100);"), ["M003"]);
        // A column changed earlier in the sequence is no longer known.
        assert_eq!(
            codes(
                "ALTER TABLE t ALTER COLUMN name TYPE varchar(200);\nALTER TABLE t ALTER COLUMN name TYPE varchar(300);"
            ),
            ["M003"]
        );
    }

    #[test]
    fn widening_to_text_or_varchar_is_a_warning() {
        let f = finding("SET lock_timeout = '2s'; ALTER TABLE users ALTER COLUMN bio TYPE text;", "M003");
        assert_eq!(f.severity, Severity::Warning);
        let f = finding("SET lock_timeout = '2s'; ALTER TABLE users ALTER COLUMN name TYPE varchar(200);", "M003");
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.message.contains("TYPE varchar(200)"), "{}", f.message);
        let f = finding("SET lock_timeout = '2s'; ALTER TABLE t ALTER COLUMN a TYPE text USING a::text;", "M003");
        assert_eq!(f.severity, Severity::Error);
    }
}
