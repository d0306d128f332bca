//! What the NOT VALID rules (M004 set-not-null, M006 foreign-key-not-valid,
//! M007 check-not-valid) share: finding a constraint added without
//! `NOT VALID`, naming it in a message, spelling out the two-step
//! alternative, and flagging a `VALIDATE` in the transaction that added it.

use pg_query::NodeEnum;
use pg_query::protobuf::{AlterTableCmd, AlterTableStmt, AlterTableType, ConstrType, Constraint, DropBehavior, Node};

use super::{Hit, alter_cmds, constraint_def, sql_of};
use crate::lint::Rule;
use crate::lint::context::Cx;
use crate::lint::names::{Table, ident, quoted};

/// The constraint of an `ADD CONSTRAINT` of this kind written without
/// `NOT VALID`, so adding it checks every existing row.
pub(super) fn added_valid(cmd: &AlterTableCmd, kind: ConstrType) -> Option<&Constraint> {
    constraint_def(cmd).filter(|c| c.contype() == kind && !c.skip_validation)
}

/// The constraint's name as a message shows it after `ADD CONSTRAINT`:
/// ` "name"`, or nothing when it has none.
pub(super) fn shown_name(c: &Constraint) -> String {
    if c.conname.is_empty() { String::new() } else { format!(" {}", quoted(&c.conname)) }
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

/// `VALIDATE CONSTRAINT c` in the transaction that added `c … NOT VALID`:
/// the lock the `ADD` took is still held, so the validation blocks as much
/// as adding it valid would have.
pub(super) fn validated_in_adding_transaction(
    cx: &Cx,
    alter: &AlterTableStmt,
    table: &Table,
    kind: ConstrType,
    lock: &str,
    out: &mut Vec<Hit>,
    rule: &'static Rule,
) {
    for cmd in alter_cmds(alter).filter(|c| c.subtype() == AlterTableType::AtValidateConstraint) {
        let Some(added) = cx.added(table, &cmd.name) else { continue };
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
