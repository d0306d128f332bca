//! M004 set-not-null: `ALTER COLUMN … SET NOT NULL` (or a PostgreSQL 18
//! `ADD CONSTRAINT … NOT NULL` without `NOT VALID`) on an existing table.
//!
//! PostgreSQL 12+ skips the scan when a validated `CHECK (col IS NOT NULL)`
//! already proves the column has no nulls. So a `SET NOT NULL` that follows a
//! `VALIDATE CONSTRAINT` on the same table in this file is taken to be the
//! last step of that safe pattern — unless the validated constraint was
//! added in this file and is about something else.

use pg_query::protobuf::{AlterTableType, ConstrType};

use super::common::added_valid;
use super::{ACCESS_EXCLUSIVE, BLOCKS_ALL, Hit, Stmt, alter_cmds, existing_alter};
use crate::lint::context::Cx;
use crate::lint::names::{Table, ident, quoted, strings};
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M004",
    name: "set-not-null",
    severity: Severity::Error,
    explanation: "SET NOT NULL scans the whole table to check for nulls while holding an ACCESS EXCLUSIVE lock: \
                  nothing can read or write the table until the scan is done.",
    alternative: "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; in a later migration VALIDATE CONSTRAINT c \
                  (reads and writes go on), then SET NOT NULL (PostgreSQL 12+ uses the validated check instead of \
                  scanning), then DROP CONSTRAINT c.",
};

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    let Some((alter, table)) = existing_alter(cx, stmt) else { return };
    for cmd in alter_cmds(alter) {
        match cmd.subtype() {
            AlterTableType::AtSetNotNull if !proven_by_a_validated_check(cx, &table, &cmd.name) => {
                let message = format!(
                    "ALTER COLUMN {} SET NOT NULL on {table} scans every row for nulls while holding \
                     {ACCESS_EXCLUSIVE} on {table} ({BLOCKS_ALL})",
                    quoted(&cmd.name)
                );
                out.push(Hit::new(&RULE, message, alternative(&table, &cmd.name)));
            }
            AlterTableType::AtAddConstraint => {
                let Some(c) = added_valid(cmd, ConstrType::ConstrNotnull) else { continue };
                let column = strings(&c.keys).first().cloned().unwrap_or_default();
                let message = format!(
                    "ADD CONSTRAINT {} NOT NULL {} on {table} scans every row for nulls while holding \
                     {ACCESS_EXCLUSIVE} on {table} ({BLOCKS_ALL})",
                    quoted(&c.conname),
                    ident(&column)
                );
                let alternative = format!(
                    "On PostgreSQL 18: ADD CONSTRAINT {} NOT NULL {} NOT VALID, then VALIDATE CONSTRAINT in a later \
                     migration. Before 18: {}",
                    ident(&c.conname),
                    ident(&column),
                    alternative(&table, &column)
                );
                out.push(Hit::new(&RULE, message, alternative).at(c.location));
            }
            _ => {}
        }
    }
}

fn proven_by_a_validated_check(cx: &Cx, table: &Table, column: &str) -> bool {
    cx.validated(table).any(|name| match cx.added(table, name) {
        Some(added) => added.kind == ConstrType::ConstrCheck && added.not_null_column.as_deref() == Some(column),
        // Added by an earlier migration: the linter cannot see what it
        // checks, and this is the pattern the alternative recommends.
        None => true,
    })
}

fn alternative(table: &Table, column: &str) -> String {
    let check = ident(&table.derived(&format!("{column}_not_null")));
    let col = ident(column);
    format!(
        "ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({col} IS NOT NULL) NOT VALID; then in a later migration: \
         ALTER TABLE {table} VALIDATE CONSTRAINT {check}; ALTER TABLE {table} ALTER COLUMN {col} SET NOT NULL; \
         ALTER TABLE {table} DROP CONSTRAINT {check}; (the validation lets writes go on, and SET NOT NULL uses the \
         validated check instead of scanning, PostgreSQL 12+)"
    )
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, check_no_tx, finding};

    #[test]
    fn set_not_null_on_an_existing_table() {
        check("SET lock_timeout = '2s';\nALTER TABLE users ALTER COLUMN email SET NOT NULL;", &["M004@2"]);
        check("SET lock_timeout = '2s';\nALTER TABLE users ADD CONSTRAINT email_nn NOT NULL email;", &["M004@2"]);
    }

    #[test]
    fn the_validated_check_pattern_is_clean() {
        let sql = "SET lock_timeout = '2s';
ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null;
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
ALTER TABLE users DROP CONSTRAINT users_email_not_null;";
        check(sql, &[]);
        check("SET lock_timeout = '2s';\nALTER TABLE users ADD CONSTRAINT email_nn NOT NULL email NOT VALID;", &[]);
    }

    #[test]
    fn a_validated_check_on_another_column_does_not_count() {
        let sql = "SET lock_timeout = '2s';
ALTER TABLE users ADD CONSTRAINT name_nn CHECK (name IS NOT NULL) NOT VALID;
ALTER TABLE users VALIDATE CONSTRAINT name_nn;
ALTER TABLE users ALTER COLUMN email SET NOT NULL;";
        check_no_tx(sql, &["M004@4"]);
    }

    #[test]
    fn a_new_table_is_not_flagged() {
        check("CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a SET NOT NULL;", &[]);
    }

    #[test]
    fn the_alternative_spells_out_the_check_pattern() {
        let f = finding("SET lock_timeout = '2s'; ALTER TABLE app.users ALTER email SET NOT NULL;", "M004");
        assert!(f.message.contains("\"email\" SET NOT NULL on app.users"), "{}", f.message);
        assert!(
            f.alternative.starts_with(
                "ALTER TABLE app.users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL) NOT VALID;"
            ),
            "{}",
            f.alternative
        );
    }
}
