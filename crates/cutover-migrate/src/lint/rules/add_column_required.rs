//! M005 add-column-required: `ADD COLUMN … NOT NULL` without a `DEFAULT` on
//! a table that may have rows.

use pg_query::NodeEnum;
use pg_query::protobuf::{AlterTableType, ConstrType};

use super::{Hit, Stmt, alter_cmds, column_def, has_constraint};
use crate::lint::context::Cx;
use crate::lint::names::{Table, base_type, ident, quoted, type_sql};
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M005",
    name: "add-column-required",
    severity: Severity::Error,
    explanation: "A NOT NULL column added without a DEFAULT has no value for the rows already there, so the \
                  migration fails with \"column … contains null values\" on any table that has rows (it passes on \
                  an empty development database).",
    alternative: "Give it a DEFAULT (with a constant or stable default, PostgreSQL 11+ adds it without a rewrite), \
                  or add it nullable, backfill in batches, and make it NOT NULL through a validated CHECK (see \
                  M004).",
};

/// The types that bring their own default (a sequence).
pub(super) const SERIAL_TYPES: &[&str] = &["serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"];

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    let NodeEnum::AlterTableStmt(alter) = stmt.node else { return };
    let Some(rv) = &alter.relation else { return };
    if cx.is_new_and_empty(rv) {
        return;
    }
    let table = Table::of(rv);
    for cmd in alter_cmds(alter).filter(|c| c.subtype() == AlterTableType::AtAddColumn) {
        let Some(col) = column_def(cmd) else { continue };
        let not_null = col.is_not_null
            || has_constraint(col, ConstrType::ConstrNotnull)
            || has_constraint(col, ConstrType::ConstrPrimary);
        let filled = col.raw_default.is_some()
            || has_constraint(col, ConstrType::ConstrDefault)
            || has_constraint(col, ConstrType::ConstrIdentity)
            || has_constraint(col, ConstrType::ConstrGenerated)
            || col.type_name.as_ref().is_some_and(|t| SERIAL_TYPES.contains(&base_type(t).as_str()));
        if !not_null || filled {
            continue;
        }
        let ty = col.type_name.as_ref().map(type_sql).unwrap_or_default();
        let message = format!(
            "ADD COLUMN {} {ty} NOT NULL without a DEFAULT on {table} fails as soon as {table} has a row (column {} \
             of relation {} contains null values)",
            quoted(&col.colname),
            quoted(&col.colname),
            quoted(&table.name)
        );
        let alternative = format!(
            "ALTER TABLE {table} ADD COLUMN {} {ty} NOT NULL DEFAULT <value> (no rewrite on PostgreSQL 11+ when the \
             default is a constant or stable); or add it nullable, backfill in batches, then SET NOT NULL through a \
             validated CHECK (M004)",
            ident(&col.colname)
        );
        out.push(Hit::new(&RULE, message, alternative).at(col.location));
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, finding};

    #[test]
    fn not_null_without_default() {
        check("SET lock_timeout = '2s';\nALTER TABLE orders ADD COLUMN status text NOT NULL;", &["M005@2"]);
        check("SET lock_timeout = '2s';\nALTER TABLE orders\n  ADD COLUMN a int,\n  ADD b int NOT NULL;", &["M005@4"]);
    }

    #[test]
    fn with_a_default_or_nullable_it_is_fine() {
        check("SET lock_timeout = '2s'; ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'new';", &[]);
        check("SET lock_timeout = '2s'; ALTER TABLE orders ADD COLUMN note text;", &[]);
        check("SET lock_timeout = '2s'; ALTER TABLE orders ADD COLUMN at timestamptz NOT NULL DEFAULT now();", &[]);
    }

    #[test]
    fn a_table_created_empty_in_the_same_file_is_fine_but_not_one_created_with_rows() {
        check("CREATE TABLE t (a int);\nALTER TABLE t ADD COLUMN b int NOT NULL;", &[]);
        check("CREATE TABLE t AS SELECT 1 AS a;\nALTER TABLE t ADD COLUMN b int NOT NULL;", &["M005@2"]);
    }

    #[test]
    fn the_message_names_the_column_and_the_table() {
        let f = finding("SET lock_timeout = '2s'; ALTER TABLE app.orders ADD COLUMN status text NOT NULL;", "M005");
        assert!(f.message.starts_with("ADD COLUMN \"status\" text NOT NULL without a DEFAULT on app.orders"));
        assert!(f.alternative.starts_with("ALTER TABLE app.orders ADD COLUMN status text NOT NULL DEFAULT"));
    }
}
