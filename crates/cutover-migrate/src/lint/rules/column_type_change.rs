//! M003 column-type-change: `ALTER TABLE … ALTER COLUMN … TYPE` on a table
//! that already exists.
//!
//! The linter sees the new type but not the old one. A change to `text` or
//! `varchar` is, in practice, the widening of a `varchar`, which PostgreSQL
//! does without a rewrite (only a short ACCESS EXCLUSIVE lock), so those are
//! warnings; with a `USING` clause, or to any other type, an error.

use pg_query::protobuf::AlterTableType;

use super::{ACCESS_EXCLUSIVE, BLOCKS_ALL, Hit, Stmt, alter_cmds, column_def, existing_alter};
use crate::lint::context::Cx;
use crate::lint::names::{base_type, quoted, shell_arg, type_sql};
use crate::lint::{Rule, Severity};

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
        let hit = if matches!(base.as_str(), "text" | "varchar") && !using {
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
            let message = format!(
                "ALTER COLUMN {} TYPE {type_sql} rewrites {table} and rebuilds its indexes while holding \
                 {ACCESS_EXCLUSIVE} on {table} ({BLOCKS_ALL}) for the whole rewrite",
                quoted(column)
            );
            let alternative = if matches!(base.as_str(), "int8" | "bigint" | "bigserial" | "serial8") {
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
