//! M006 foreign-key-not-valid: a foreign key added to an existing table
//! without `NOT VALID`, or validated in the transaction that added it.

use pg_query::NodeEnum;
use pg_query::protobuf::{AlterTableCmd, AlterTableStmt, AlterTableType, ConstrType, Constraint, DropBehavior, Node};

use super::{Hit, Stmt, alter_cmds, column_constraints, column_def, constraint_def, existing_alter, sql_of};
use crate::lint::context::Cx;
use crate::lint::names::{Table, ident, quoted, strings};
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
    let Some(alter) = existing_alter(cx, stmt) else { return };
    let Some(rv) = &alter.relation else { return };
    let table = Table::of(rv);
    for cmd in alter_cmds(alter) {
        match cmd.subtype() {
            AlterTableType::AtAddConstraint => {
                let Some(c) = constraint_def(cmd) else { continue };
                if c.contype() != ConstrType::ConstrForeign || c.skip_validation {
                    continue;
                }
                let referenced = c.pktable.as_ref().map(Table::of).map(|t| t.to_string()).unwrap_or_default();
                let cols = strings(&c.fk_attrs);
                let name = if c.conname.is_empty() { String::new() } else { format!(" {}", quoted(&c.conname)) };
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
        ConstrType::ConstrForeign,
        "SHARE ROW EXCLUSIVE on both tables",
        out,
        &RULE,
    );
}

/// `ALTER TABLE t ADD CONSTRAINT c … NOT VALID; then … VALIDATE CONSTRAINT c`
/// for this constraint, named as PostgreSQL would name it when it has no
/// name (the VALIDATE needs one).
pub(super) fn not_valid_then_validate(
    alter: &AlterTableStmt,
    c: &Constraint,
    table: &Table,
    cols: &[String],
) -> String {
    let mut c = c.clone();
    if c.conname.is_empty() {
        c.conname = match c.contype() {
            ConstrType::ConstrForeign => table.derived(&format!("{}_fkey", cols.join("_"))),
            _ => match cols.first() {
                Some(col) => table.derived(&format!("{col}_check")),
                None => table.derived("check"),
            },
        };
    }
    c.skip_validation = true;
    c.initially_valid = false;
    let name = ident(&c.conname);
    let cmd = AlterTableCmd {
        subtype: AlterTableType::AtAddConstraint.into(),
        // Every enum field must hold a real value: libpg_query asserts on the
        // protobuf's 0 ("undefined") when it deparses.
        behavior: DropBehavior::DropRestrict.into(),
        def: Some(Box::new(Node { node: Some(NodeEnum::Constraint(Box::new(c))) })),
        ..Default::default()
    };
    let add = sql_of(with_cmds(alter, vec![cmd]))
        .unwrap_or_else(|| format!("ALTER TABLE {table} ADD CONSTRAINT {name} … NOT VALID"));
    format!(
        "{add}; then, in a later migration, ALTER TABLE {table} VALIDATE CONSTRAINT {name}; (the validation takes a \
         SHARE UPDATE EXCLUSIVE lock: reads and writes go on)"
    )
}

/// The same `ALTER TABLE` with other commands.
pub(super) fn with_cmds(alter: &AlterTableStmt, cmds: Vec<AlterTableCmd>) -> NodeEnum {
    let cmds = cmds.into_iter().map(|c| Node { node: Some(NodeEnum::AlterTableCmd(Box::new(c))) }).collect();
    NodeEnum::AlterTableStmt(AlterTableStmt { cmds, ..alter.clone() })
}

fn is_foreign_key(n: &Node) -> bool {
    matches!(n.node.as_ref(), Some(NodeEnum::Constraint(c)) if c.contype() == ConstrType::ConstrForeign)
}

fn string_node(s: &str) -> Node {
    Node { node: Some(NodeEnum::String(pg_query::protobuf::String { sval: s.to_owned() })) }
}

/// `VALIDATE CONSTRAINT c` in the transaction that added `c … NOT VALID`:
/// the lock the `ADD` took is still held, so the validation blocks as much
/// as adding it valid would have.
pub(super) fn validated_in_adding_transaction(
    cx: &Cx,
    alter: &AlterTableStmt,
    kind: ConstrType,
    lock: &str,
    out: &mut Vec<Hit>,
    rule: &'static Rule,
) {
    let Some(rv) = &alter.relation else { return };
    let table = Table::of(rv);
    for cmd in alter_cmds(alter).filter(|c| c.subtype() == AlterTableType::AtValidateConstraint) {
        let Some(added) = cx.added(&table, &cmd.name) else { continue };
        if added.kind != kind || !added.not_valid || !added.in_open_transaction {
            continue;
        }
        let message = format!(
            "VALIDATE CONSTRAINT {} on {table} runs in the same transaction as the ADD CONSTRAINT … NOT VALID before \
             it, so the lock the ADD took ({lock}) is still held for the whole validation",
            quoted(&cmd.name)
        );
        let alternative = format!(
            "Move ALTER TABLE {table} VALIDATE CONSTRAINT {} to a later migration, so the ADD commits first and the \
             validation holds only a SHARE UPDATE EXCLUSIVE lock",
            ident(&cmd.name)
        );
        out.push(Hit::new(rule, message, alternative));
    }
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
