//! M013 missing-lock-timeout: the first statement that waits for a lock
//! that blocks reads or writes of an existing table, with no `lock_timeout`
//! set before it in the file. Reported once per file.
//!
//! The danger is the wait, not the lock: a statement queued behind a long
//! transaction holds its place in the lock queue, and every later query on
//! the table queues behind it, so a one-millisecond ALTER becomes an outage
//! as long as the slowest transaction. lock_timeout bounds the wait.

use pg_query::NodeEnum;
use pg_query::protobuf::{AlterTableCmd, AlterTableType, ConstrType, ObjectType, ReindexObjectType};

use super::{Hit, Stmt, alter_cmds, column_constraints, column_def, constraint_def, has_option};
use crate::lint::context::Cx;
use crate::lint::names::{Table, object_parts, quoted};
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M013",
    name: "missing-lock-timeout",
    severity: Severity::Warning,
    explanation: "A statement that needs an ACCESS EXCLUSIVE, SHARE or SHARE ROW EXCLUSIVE lock waits behind any \
                  long-running query on the table, and while it waits every other query on the table queues behind \
                  it: without a lock_timeout, a short ALTER can stall the table for as long as the slowest \
                  transaction.",
    alternative: "SET lock_timeout = '2s'; at the top of the file, and retry the migration when it times out.",
};

const ACCESS_EXCLUSIVE: &str = "ACCESS EXCLUSIVE";
const SHARE: &str = "SHARE";
const SHARE_ROW_EXCLUSIVE: &str = "SHARE ROW EXCLUSIVE";

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    if cx.lock_timeout_reported || cx.lock_timeout_set() {
        return;
    }
    let Some(Lock { what, mode, on }) = strong_lock(cx, stmt.node) else { return };
    let article = if mode.starts_with(['A', 'E']) { "an" } else { "a" };
    let message = format!(
        "{what} waits for {article} {mode} lock on {on} with no lock_timeout set: while it waits behind a \
         long-running query, every other query on {on} queues behind it"
    );
    let set = if cx.transactional { "SET LOCAL lock_timeout = '2s';" } else { "SET lock_timeout = '2s';" };
    let alternative = format!(
        "{set} at the top of the file (before this statement), and retry the migration when it times out: a short \
         failed attempt is better than a stalled table"
    );
    out.push(Hit::new(&RULE, message, alternative));
}

/// A lock that blocks reads or writes, and what takes it on which table.
struct Lock {
    what: String,
    mode: &'static str,
    on: String,
}

fn lock(what: String, mode: &'static str, on: impl ToString) -> Option<Lock> {
    Some(Lock { what, mode, on: on.to_string() })
}

fn strong_lock(cx: &Cx, node: &NodeEnum) -> Option<Lock> {
    match node {
        NodeEnum::AlterTableStmt(a) => {
            let rv = a.relation.as_ref()?;
            let table = Table::of(rv);
            let kind = match a.objtype() {
                ObjectType::ObjectIndex => "INDEX",
                ObjectType::ObjectView => "VIEW",
                ObjectType::ObjectMatview => "MATERIALIZED VIEW",
                ObjectType::ObjectSequence => "SEQUENCE",
                ObjectType::ObjectForeignTable => "FOREIGN TABLE",
                _ => "TABLE",
            };
            let what = format!("ALTER {kind} {table}");
            // Foreign keys lock the referenced table too, even when the
            // referencing one is new.
            let referenced = alter_cmds(a).find_map(|cmd| {
                let fk = match cmd.subtype() {
                    AlterTableType::AtAddConstraint => {
                        constraint_def(cmd).filter(|c| c.contype() == ConstrType::ConstrForeign)
                    }
                    AlterTableType::AtAddColumn => column_def(cmd)
                        .and_then(|col| column_constraints(col).find(|c| c.contype() == ConstrType::ConstrForeign)),
                    _ => None,
                }?;
                fk.pktable.as_ref().filter(|pk| !cx.is_new(pk)).map(Table::of)
            });
            if cx.is_new(rv) {
                return referenced.and_then(|r| lock(what, SHARE_ROW_EXCLUSIVE, r));
            }
            let mut strongest = None;
            for cmd in alter_cmds(a) {
                let mode = match cmd.subtype() {
                    // These take SHARE UPDATE EXCLUSIVE: reads and writes go on.
                    AlterTableType::AtValidateConstraint
                    | AlterTableType::AtSetStatistics
                    | AlterTableType::AtClusterOn
                    | AlterTableType::AtDropCluster
                    | AlterTableType::AtAttachPartition => continue,
                    AlterTableType::AtDetachPartition if detaches_concurrently(cmd) => continue,
                    AlterTableType::AtAddConstraint
                        if constraint_def(cmd).is_some_and(|c| c.contype() == ConstrType::ConstrForeign) =>
                    {
                        SHARE_ROW_EXCLUSIVE
                    }
                    _ => ACCESS_EXCLUSIVE,
                };
                if strongest != Some(ACCESS_EXCLUSIVE) {
                    strongest = Some(mode);
                }
            }
            match (strongest, referenced) {
                (Some(SHARE_ROW_EXCLUSIVE), Some(r)) => lock(what, SHARE_ROW_EXCLUSIVE, format!("{table} and {r}")),
                (Some(mode), _) => lock(what, mode, table),
                (None, _) => None,
            }
        }
        NodeEnum::IndexStmt(i) if !i.concurrent => {
            let rv = i.relation.as_ref().filter(|rv| !cx.is_new(rv) && rv.inh)?;
            let name = if i.idxname.is_empty() { String::new() } else { format!(" {}", quoted(&i.idxname)) };
            lock(format!("CREATE INDEX{name}"), SHARE, Table::of(rv))
        }
        NodeEnum::DropStmt(d) => {
            let targets: Vec<Table> = d.objects.iter().map(|o| Table::from_parts(&object_parts(o))).collect();
            match d.remove_type() {
                ObjectType::ObjectTable | ObjectType::ObjectView | ObjectType::ObjectMatview => {
                    let t = targets.iter().find(|t| !cx.is_new_table(t))?;
                    lock(format!("DROP {t}"), ACCESS_EXCLUSIVE, t)
                }
                ObjectType::ObjectIndex if !d.concurrent => {
                    let t = targets.iter().find(|t| !cx.is_new_index(t))?;
                    lock(format!("DROP INDEX {t}"), ACCESS_EXCLUSIVE, "its table")
                }
                ObjectType::ObjectTrigger => {
                    // DROP TRIGGER name ON table: the parts are the table's,
                    // then the trigger's name.
                    let parts = d.objects.first().map(object_parts)?;
                    let (trigger, table) = parts.split_last()?;
                    let table = Table::from_parts(table);
                    (!cx.is_new_table(&table)).then_some(())?;
                    lock(format!("DROP TRIGGER {}", quoted(trigger)), ACCESS_EXCLUSIVE, table)
                }
                _ => None,
            }
        }
        NodeEnum::RenameStmt(r) => {
            let rv = r.relation.as_ref().filter(|rv| !cx.is_new(rv))?;
            match r.rename_type() {
                ObjectType::ObjectTable
                | ObjectType::ObjectColumn
                | ObjectType::ObjectTabconstraint
                | ObjectType::ObjectTrigger => {
                    lock(format!("ALTER TABLE {} RENAME", Table::of(rv)), ACCESS_EXCLUSIVE, Table::of(rv))
                }
                _ => None,
            }
        }
        NodeEnum::CreateTrigStmt(t) => {
            let rv = t.relation.as_ref().filter(|rv| !cx.is_new(rv))?;
            lock(format!("CREATE TRIGGER {}", quoted(&t.trigname)), SHARE_ROW_EXCLUSIVE, Table::of(rv))
        }
        NodeEnum::TruncateStmt(t) => {
            let table = t.relations.iter().find_map(|n| match n.node.as_ref() {
                Some(NodeEnum::RangeVar(rv)) if !cx.is_new(rv) => Some(Table::of(rv)),
                _ => None,
            })?;
            lock(format!("TRUNCATE {table}"), ACCESS_EXCLUSIVE, table)
        }
        NodeEnum::LockStmt(l) if l.mode >= pg_query::LockMode::ShareLock as i32 => {
            let table = l.relations.iter().find_map(|n| match n.node.as_ref() {
                Some(NodeEnum::RangeVar(rv)) if !cx.is_new(rv) => Some(Table::of(rv)),
                _ => None,
            })?;
            let mode = match l.mode {
                5 => SHARE,
                6 => SHARE_ROW_EXCLUSIVE,
                7 => "EXCLUSIVE",
                _ => ACCESS_EXCLUSIVE,
            };
            lock(format!("LOCK TABLE {table}"), mode, table)
        }
        NodeEnum::VacuumStmt(v) if v.is_vacuumcmd && has_option(&v.options, "full") => {
            let table = v.rels.iter().find_map(|n| match n.node.as_ref() {
                Some(NodeEnum::VacuumRelation(r)) => r.relation.as_ref().filter(|rv| !cx.is_new(rv)).map(Table::of),
                _ => None,
            });
            match table {
                Some(t) => lock(format!("VACUUM FULL {t}"), ACCESS_EXCLUSIVE, t),
                None if v.rels.is_empty() => lock("VACUUM FULL".to_owned(), ACCESS_EXCLUSIVE, "every table"),
                None => None,
            }
        }
        NodeEnum::ClusterStmt(c) => match &c.relation {
            Some(rv) if cx.is_new(rv) => None,
            Some(rv) => lock(format!("CLUSTER {}", Table::of(rv)), ACCESS_EXCLUSIVE, Table::of(rv)),
            None => lock("CLUSTER".to_owned(), ACCESS_EXCLUSIVE, "every clustered table"),
        },
        NodeEnum::ReindexStmt(r) if !has_option(&r.params, "concurrently") => match (r.kind(), &r.relation) {
            (ReindexObjectType::ReindexObjectTable, Some(rv)) if !cx.is_new(rv) => {
                lock(format!("REINDEX TABLE {}", Table::of(rv)), SHARE, Table::of(rv))
            }
            (ReindexObjectType::ReindexObjectIndex, Some(rv)) if !cx.is_new_index(&Table::of(rv)) => {
                lock(format!("REINDEX INDEX {}", Table::of(rv)), SHARE, "its table")
            }
            _ => None,
        },
        NodeEnum::CreateStmt(c) => {
            // A new table that references an existing one, or is a partition
            // of one, locks that one.
            if let Some(parent) =
                c.partbound.as_ref().and(c.inh_relations.first()).and_then(|n| match n.node.as_ref() {
                    Some(NodeEnum::RangeVar(rv)) if !cx.is_new(rv) => Some(Table::of(rv)),
                    _ => None,
                })
            {
                let what = format!("CREATE TABLE {} PARTITION OF {parent}", c.relation.as_ref().map(Table::of)?);
                return lock(what, ACCESS_EXCLUSIVE, parent);
            }
            let referenced = c.table_elts.iter().chain(&c.constraints).find_map(|n| {
                let fk = match n.node.as_ref()? {
                    NodeEnum::Constraint(k) if k.contype() == ConstrType::ConstrForeign => Some(&**k),
                    NodeEnum::ColumnDef(col) => {
                        column_constraints(col).find(|k| k.contype() == ConstrType::ConstrForeign)
                    }
                    _ => None,
                }?;
                fk.pktable.as_ref().filter(|pk| !cx.is_new(pk)).map(Table::of)
            })?;
            let what = format!("CREATE TABLE {} (… REFERENCES {referenced})", c.relation.as_ref().map(Table::of)?);
            lock(what, SHARE_ROW_EXCLUSIVE, referenced)
        }
        _ => None,
    }
}

fn detaches_concurrently(cmd: &AlterTableCmd) -> bool {
    matches!(cmd.def.as_ref().and_then(|d| d.node.as_ref()), Some(NodeEnum::PartitionCmd(p)) if p.concurrent)
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, check_no_tx, finding};

    #[test]
    fn reported_once_at_the_first_locking_statement() {
        check("ALTER TABLE a ADD COLUMN x int;\nALTER TABLE b ADD COLUMN y int;", &["M013@1"]);
        check("SELECT 1;\n\nCOMMENT ON TABLE a IS 'x';\nDROP TABLE a;\nDROP TABLE b;", &["M011@4", "M013@4", "M011@5"]);
    }

    #[test]
    fn a_lock_timeout_before_it_is_enough() {
        check("SET lock_timeout = '2s';\nALTER TABLE a ADD COLUMN x int;", &[]);
        check("SET LOCAL lock_timeout TO 5000;\nALTER TABLE a ADD COLUMN x int;", &[]);
        check("SELECT set_config('lock_timeout', '2s', true);\nALTER TABLE a ADD COLUMN x int;", &[]);
        check("ALTER TABLE a ADD COLUMN x int;\nSET lock_timeout = '2s';", &["M013@1"]);
    }

    #[test]
    fn a_zero_or_reset_lock_timeout_does_not_count() {
        check("SET lock_timeout = 0;\nALTER TABLE a ADD COLUMN x int;", &["M013@2"]);
        check("SET lock_timeout = '2s';\nRESET lock_timeout;\nALTER TABLE a ADD COLUMN x int;", &["M013@3"]);
        check("SET lock_timeout = '2s';\nSET lock_timeout TO DEFAULT;\nALTER TABLE a ADD COLUMN x int;", &["M013@3"]);
    }

    #[test]
    fn set_local_outside_a_transaction_does_nothing() {
        check_no_tx("SET LOCAL lock_timeout = '2s';\nALTER TABLE a ADD COLUMN x int;", &["M013@2"]);
        check_no_tx("BEGIN;\nSET LOCAL lock_timeout = '2s';\nALTER TABLE a ADD COLUMN x int;\nCOMMIT;", &[]);
        check_no_tx(
            "BEGIN;\nSET LOCAL lock_timeout = '2s';\nALTER TABLE a ADD COLUMN x int;\nCOMMIT;\n\
                ALTER TABLE b ADD COLUMN y int;",
            &["M013@5"],
        );
    }

    #[test]
    fn statements_that_do_not_block_traffic_are_not_flagged() {
        check("ALTER TABLE a VALIDATE CONSTRAINT c;", &[]);
        check_no_tx("CREATE INDEX CONCURRENTLY i ON a (x);", &[]);
        check("CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN x int;\nCREATE INDEX ON t (x);", &[]);
        check("ALTER TABLE p ATTACH PARTITION p_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');", &[]);
    }

    #[test]
    fn new_tables_that_lock_existing_ones() {
        check("CREATE TABLE items (id int, order_id int REFERENCES orders);", &["M013@1"]);
        check("CREATE TABLE items (id int, FOREIGN KEY (id) REFERENCES orders);", &["M013@1"]);
        check(
            "CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
            &["M013@1"],
        );
        check("CREATE TABLE a (id int PRIMARY KEY);\nCREATE TABLE b (a_id int REFERENCES a);", &[]);
    }

    #[test]
    fn other_locking_statements() {
        check("TRUNCATE audit_log;", &["M013@1"]);
        check("LOCK TABLE orders IN SHARE MODE;", &["M013@1"]);
        check("LOCK TABLE orders IN ACCESS SHARE MODE;", &[]);
        check("CREATE TRIGGER t BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION f();", &["M013@1"]);
        // A sequence locked ACCESS EXCLUSIVE stops every nextval(), so every INSERT.
        check("ALTER SEQUENCE orders_id_seq OWNER TO app;", &["M013@1"]);
        check("DROP TRIGGER t ON orders;", &["M013@1"]);
    }

    #[test]
    fn the_message_names_the_lock_and_the_table() {
        let f = finding("ALTER TABLE app.orders ADD COLUMN note text;", "M013");
        assert_eq!(
            f.message,
            "ALTER TABLE app.orders waits for an ACCESS EXCLUSIVE lock on app.orders with no lock_timeout set: while \
             it waits behind a long-running query, every other query on app.orders queues behind it"
        );
        let f = finding("CREATE TABLE items (order_id int REFERENCES orders);", "M013");
        assert!(f.message.contains("SHARE ROW EXCLUSIVE lock on orders"), "{}", f.message);
    }
}
