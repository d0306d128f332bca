//! M007 check-not-valid: a `CHECK` constraint added to an existing table
//! without `NOT VALID`, or validated in the transaction that added it.

use pg_query::protobuf::{AlterTableType, ConstrType};

use super::common::{added_valid, not_valid_then_validate, shown_name, validated_in_adding_transaction};
use super::{ACCESS_EXCLUSIVE, BLOCKS_ALL, Hit, Stmt, alter_cmds, column_constraints, column_def, existing_alter};
use crate::lint::context::Cx;
use crate::lint::names::quoted;
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M007",
    name: "check-not-valid",
    severity: Severity::Error,
    explanation: "Adding a CHECK constraint scans every row to prove it while holding an ACCESS EXCLUSIVE lock: \
                  nothing can read or write the table until the scan is done.",
    alternative: "ADD CONSTRAINT … CHECK (…) NOT VALID (a catalog change; new rows are checked), then ALTER TABLE … \
                  VALIDATE CONSTRAINT in a later migration (it lets reads and writes go on).",
};

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    let Some((alter, table)) = existing_alter(cx, stmt) else { return };
    for cmd in alter_cmds(alter) {
        match cmd.subtype() {
            AlterTableType::AtAddConstraint => {
                let Some(c) = added_valid(cmd, ConstrType::ConstrCheck) else { continue };
                let name = shown_name(c);
                let message = format!(
                    "ADD CONSTRAINT{name} CHECK on {table} scans every row while holding {ACCESS_EXCLUSIVE} on \
                     {table} ({BLOCKS_ALL})"
                );
                let columns = super::column_refs(c.raw_expr.as_deref());
                let alternative = not_valid_then_validate(alter, c, &table, &columns);
                out.push(Hit::new(&RULE, message, alternative).at(c.location));
            }
            AlterTableType::AtAddColumn => {
                let Some(col) = column_def(cmd) else { continue };
                let Some(check) = column_constraints(col).find(|c| c.contype() == ConstrType::ConstrCheck) else {
                    continue;
                };
                let message = format!(
                    "ADD COLUMN {} … CHECK on {table} scans every row to check it while holding {ACCESS_EXCLUSIVE} \
                     on {table} ({BLOCKS_ALL})",
                    quoted(&col.colname)
                );
                let alternative = format!(
                    "Add the column without the CHECK, then {}",
                    not_valid_then_validate(alter, check, &table, std::slice::from_ref(&col.colname))
                );
                out.push(Hit::new(&RULE, message, alternative).at(check.location));
            }
            _ => {}
        }
    }
    validated_in_adding_transaction(cx, alter, &table, ConstrType::ConstrCheck, "ACCESS EXCLUSIVE", out, &RULE);
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, finding};

    #[test]
    fn checks_without_not_valid() {
        check(
            "SET lock_timeout = '2s';\nALTER TABLE orders ADD CONSTRAINT total_positive CHECK (total > 0);",
            &["M007@2"],
        );
        check("SET lock_timeout = '2s';\nALTER TABLE orders ADD CHECK (total > 0);", &["M007@2"]);
        check("SET lock_timeout = '2s';\nALTER TABLE orders ADD COLUMN qty int CHECK (qty > 0);", &["M007@2"]);
    }

    #[test]
    fn not_valid_is_clean_and_validating_in_the_same_transaction_is_not() {
        check("SET lock_timeout = '2s';\nALTER TABLE orders ADD CONSTRAINT c CHECK (total > 0) NOT VALID;", &[]);
        check(
            "SET lock_timeout = '2s';\nALTER TABLE orders ADD CONSTRAINT c CHECK (total > 0) NOT VALID;\n\
                ALTER TABLE orders VALIDATE CONSTRAINT c;",
            &["M007@3"],
        );
    }

    #[test]
    fn a_new_table_is_not_flagged() {
        check("CREATE TABLE t (total int);\nALTER TABLE t ADD CONSTRAINT c CHECK (total > 0);", &[]);
    }

    #[test]
    fn the_alternative_names_the_constraint() {
        let f = finding("SET lock_timeout = '2s'; ALTER TABLE orders ADD CHECK (total > 0);", "M007");
        assert!(
            f.alternative
                .starts_with("ALTER TABLE orders ADD CONSTRAINT orders_total_check CHECK (total > 0) NOT VALID;"),
            "{}",
            f.alternative
        );
    }
}
