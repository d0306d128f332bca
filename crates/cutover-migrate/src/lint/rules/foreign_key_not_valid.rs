//! M006 foreign-key-not-valid: a foreign key added to an existing table
//! without `NOT VALID`, or validated in the transaction that added it.

use pg_query::NodeEnum;
use pg_query::protobuf::{AlterTableCmd, AlterTableType, ConstrType, Node};

use super::common::{added_valid, not_valid_then_validate, shown_name, validated_in_adding_transaction, with_cmds};
use super::{Hit, Stmt, alter_cmds, column_constraints, column_def, existing_alter, sql_of};
use crate::lint::context::Cx;
use crate::lint::names::{Table, quoted, strings};
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M006",
    name: "foreign-key-not-valid",
    severity: Severity::Error,
    explanation: "Adding a foreign key checks every existing row while holding SHARE ROW EXCLUSIVE locks on both \
                  tables: INSERT, UPDATE and DELETE on either table wait for the whole check.",
    alternative: "ADD CONSTRAINT … FOREIGN KEY … NOT VALID (a catalog change; new rows are checked), then ALTER \
                  TABLE … VALIDATE CONSTRAINT in a later migration (it lets reads and writes go on).",
};

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    let Some((alter, table)) = existing_alter(cx, stmt) else { return };
    for cmd in alter_cmds(alter) {
        match cmd.subtype() {
            AlterTableType::AtAddConstraint => {
                let Some(c) = added_valid(cmd, ConstrType::ConstrForeign) else { continue };
                let referenced = c.pktable.as_ref().map(Table::of).map(|t| t.to_string()).unwrap_or_default();
                let cols = strings(&c.fk_attrs);
                let name = shown_name(c);
                let message = format!(
                    "ADD CONSTRAINT{name} FOREIGN KEY ({}) REFERENCES {referenced} on {table} checks every row of \
                     {table} while holding SHARE ROW EXCLUSIVE locks on {table} and {referenced} (blocks their \
                     INSERT/UPDATE/DELETE)",
                    cols.join(", ")
                );
                let alternative = not_valid_then_validate(alter, c, &table, &cols);
                out.push(Hit::new(&RULE, message, alternative).at(c.location));
            }
            AlterTableType::AtAddColumn => {
                let Some(col) = column_def(cmd) else { continue };
                let Some(fk) = column_constraints(col).find(|c| c.contype() == ConstrType::ConstrForeign) else {
                    continue;
                };
                let referenced = fk.pktable.as_ref().map(Table::of).map(|t| t.to_string()).unwrap_or_default();
                let message = format!(
                    "ADD COLUMN {} … REFERENCES {referenced} on {table} checks every row of {table} while holding \
                     an ACCESS EXCLUSIVE lock on {table} and SHARE ROW EXCLUSIVE on {referenced}",
                    quoted(&col.colname)
                );
                let mut bare = col.clone();
                bare.constraints.retain(|n| !is_foreign_key(n));
                let add_column = with_cmds(
                    alter,
                    vec![AlterTableCmd {
                        def: Some(Box::new(Node { node: Some(NodeEnum::ColumnDef(Box::new(bare))) })),
                        ..cmd.clone()
                    }],
                );
                let mut constraint = fk.clone();
                constraint.fk_attrs = vec![string_node(&col.colname)];
                let add_column = sql_of(add_column).unwrap_or_else(|| format!("ALTER TABLE {table} ADD COLUMN …"));
                let alternative = format!(
                    "{add_column}; {}",
                    not_valid_then_validate(alter, &constraint, &table, std::slice::from_ref(&col.colname))
                );
                out.push(Hit::new(&RULE, message, alternative).at(fk.location));
            }
            _ => {}
        }
    }
    validated_in_adding_transaction(
        cx,
        alter,
        &table,
        ConstrType::ConstrForeign,
        "SHARE ROW EXCLUSIVE on both tables",
        out,
        &RULE,
    );
}

fn is_foreign_key(n: &Node) -> bool {
    matches!(n.node.as_ref(), Some(NodeEnum::Constraint(c)) if c.contype() == ConstrType::ConstrForeign)
}

fn string_node(s: &str) -> Node {
    Node { node: Some(NodeEnum::String(pg_query::protobuf::String { sval: s.to_owned() })) }
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, check_no_tx, finding};

    #[test]
    fn foreign_keys_without_not_valid() {
        check(
            "SET lock_timeout = '2s';\n\
                ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);",
            &["M006@2"],
        );
        check(
            "SET lock_timeout = '2s';\nALTER TABLE orders\n  ADD COLUMN user_id bigint REFERENCES users;",
            &["M006@3"],
        );
        check("SET lock_timeout = '2s';\nALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users;", &["M006@2"]);
    }

    #[test]
    fn not_valid_then_validate_later_is_clean() {
        check(
            "SET lock_timeout = '2s';\n\
                ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users NOT VALID;",
            &[],
        );
        check("SET lock_timeout = '2s';\nALTER TABLE orders VALIDATE CONSTRAINT fk;", &[]);
    }

    #[test]
    fn validating_in_the_adding_transaction_is_flagged() {
        let sql = "SET lock_timeout = '2s';
ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT fk;";
        check(sql, &["M006@3"]);
        // Without a transaction, the ADD commits before the VALIDATE starts.
        check_no_tx(sql, &[]);
    }

    #[test]
    fn a_new_referencing_table_is_not_flagged() {
        check(
            "CREATE TABLE items (id int);\nSET lock_timeout = '2s';\n\
                ALTER TABLE items ADD FOREIGN KEY (id) REFERENCES orders;",
            &[],
        );
    }

    #[test]
    fn the_alternative_is_the_statement_with_not_valid() {
        let f = finding(
            "SET lock_timeout = '2s'; ALTER TABLE app.orders ADD FOREIGN KEY (user_id) REFERENCES app.users (id);",
            "M006",
        );
        assert!(f.message.contains("SHARE ROW EXCLUSIVE locks on app.orders and app.users"), "{}", f.message);
        assert!(
            f.alternative.starts_with(
                "ALTER TABLE app.orders ADD CONSTRAINT orders_user_id_fkey FOREIGN KEY (user_id) \
                 REFERENCES app.users (id) NOT VALID;"
            ),
            "{}",
            f.alternative
        );
        assert!(f.alternative.contains("VALIDATE CONSTRAINT orders_user_id_fkey"), "{}", f.alternative);
        let f =
            finding("SET lock_timeout = '2s'; ALTER TABLE orders ADD COLUMN user_id bigint REFERENCES users;", "M006");
        let expected = "ALTER TABLE orders ADD COLUMN user_id bigint; ALTER TABLE orders ADD CONSTRAINT \
                        orders_user_id_fkey FOREIGN KEY (user_id) REFERENCES users NOT VALID;";
        assert!(f.alternative.starts_with(expected), "{}", f.alternative);
    }
}
