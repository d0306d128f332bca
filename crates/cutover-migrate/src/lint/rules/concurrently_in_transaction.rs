//! M002 concurrently-in-transaction: a statement PostgreSQL refuses to run
//! inside a transaction block, in a file that runs in one.

use pg_query::NodeEnum;
use pg_query::protobuf::{AlterTableType, ObjectType, ReindexObjectType};

use super::{Hit, NO_TRANSACTION_HEADER, Stmt, alter_cmds, has_option};
use crate::lint::context::Cx;
use crate::lint::names::{Table, object_parts, quoted};
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M002",
    name: "concurrently-in-transaction",
    severity: Severity::Error,
    explanation: "CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY, VACUUM, CREATE DATABASE, ALTER SYSTEM and a \
                  few others cannot run inside a transaction block, and cutover runs each migration in one: the \
                  migration fails with \"cannot run inside a transaction block\".",
    alternative: "Make -- cutover:no-transaction the first line of the file, and keep such a file to the statements \
                  that need it (each runs on its own, so a failure part-way leaves the earlier ones applied).",
};

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    if !cx.in_transaction() {
        return;
    }
    let Some(what) = refuses_transaction(stmt.node) else { return };
    let (message, alternative) = if cx.transactional {
        (
            format!(
                "{what} cannot run inside a transaction block, and this migration runs in one: PostgreSQL rejects it \
                 and the migration fails"
            ),
            format!(
                "Add {NO_TRANSACTION_HEADER} as the first line of this file (or move the statement to a file of its \
                 own that has it), so the statement runs outside a transaction"
            ),
        )
    } else {
        (
            format!(
                "{what} cannot run inside a transaction block, and it follows a BEGIN written in this file: \
                 PostgreSQL rejects it"
            ),
            "Move it out of the BEGIN … COMMIT block: this file already runs without a transaction".to_owned(),
        )
    };
    out.push(Hit::new(&RULE, message, alternative));
}

/// What the statement is, when PostgreSQL refuses to run it in a
/// transaction block. `ALTER TYPE … ADD VALUE` is not here: PostgreSQL 12
/// runs it in a transaction (the new value is usable after the commit).
fn refuses_transaction(node: &NodeEnum) -> Option<String> {
    match node {
        NodeEnum::IndexStmt(i) if i.concurrent => {
            let on = i.relation.as_ref().map(|rv| format!(" on {}", Table::of(rv))).unwrap_or_default();
            let name = if i.idxname.is_empty() { String::new() } else { format!(" {}", quoted(&i.idxname)) };
            let unique = if i.unique { " UNIQUE" } else { "" };
            Some(format!("CREATE{unique} INDEX CONCURRENTLY{name}{on}"))
        }
        NodeEnum::DropStmt(d) if d.concurrent => {
            let names: Vec<String> =
                d.objects.iter().map(|o| Table::from_parts(&object_parts(o)).to_string()).collect();
            let kind = if d.remove_type() == ObjectType::ObjectIndex { "INDEX" } else { "…" };
            Some(format!("DROP {kind} CONCURRENTLY {}", names.join(", ")))
        }
        NodeEnum::ReindexStmt(r) => {
            let kind = r.kind();
            let whole = matches!(
                kind,
                ReindexObjectType::ReindexObjectSchema
                    | ReindexObjectType::ReindexObjectDatabase
                    | ReindexObjectType::ReindexObjectSystem
            );
            let concurrently = has_option(&r.params, "concurrently");
            (concurrently || whole).then(|| {
                let what = match kind {
                    ReindexObjectType::ReindexObjectIndex => "INDEX",
                    ReindexObjectType::ReindexObjectTable => "TABLE",
                    ReindexObjectType::ReindexObjectSchema => "SCHEMA",
                    ReindexObjectType::ReindexObjectDatabase => "DATABASE",
                    _ => "SYSTEM",
                };
                let name = r.relation.as_ref().map(|rv| Table::of(rv).to_string()).unwrap_or_else(|| r.name.clone());
                let concurrently = if concurrently { " CONCURRENTLY" } else { "" };
                format!("REINDEX {what}{concurrently} {name}").trim_end().to_owned()
            })
        }
        NodeEnum::VacuumStmt(v) if v.is_vacuumcmd => {
            Some(if has_option(&v.options, "full") { "VACUUM FULL" } else { "VACUUM" }.to_owned())
        }
        NodeEnum::CreatedbStmt(c) => Some(format!("CREATE DATABASE {}", quoted(&c.dbname))),
        NodeEnum::DropdbStmt(d) => Some(format!("DROP DATABASE {}", quoted(&d.dbname))),
        NodeEnum::AlterSystemStmt(_) => Some("ALTER SYSTEM".to_owned()),
        NodeEnum::CreateTableSpaceStmt(t) => Some(format!("CREATE TABLESPACE {}", quoted(&t.tablespacename))),
        NodeEnum::DropTableSpaceStmt(t) => Some(format!("DROP TABLESPACE {}", quoted(&t.tablespacename))),
        // A subscription that creates its replication slot (the default)
        // cannot be created in a transaction block.
        NodeEnum::CreateSubscriptionStmt(s)
            if !s.options.iter().any(|o| match o.node.as_ref() {
                Some(NodeEnum::DefElem(d)) => {
                    matches!(d.defname.as_str(), "create_slot" | "connect")
                        && !has_option(std::slice::from_ref(o), &d.defname)
                }
                _ => false,
            }) =>
        {
            Some(format!("CREATE SUBSCRIPTION {}", quoted(&s.subname)))
        }
        NodeEnum::AlterTableStmt(a) => {
            let detach = alter_cmds(a).find_map(|cmd| match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
                Some(NodeEnum::PartitionCmd(p))
                    if cmd.subtype() == AlterTableType::AtDetachPartition && p.concurrent =>
                {
                    p.name.as_ref().map(Table::of)
                }
                _ => None,
            })?;
            let parent = a.relation.as_ref().map(Table::of).map(|t| t.to_string()).unwrap_or_default();
            Some(format!("ALTER TABLE {parent} DETACH PARTITION {detach} CONCURRENTLY"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, check_no_tx, finding};

    #[test]
    fn concurrently_in_a_transactional_file_fails() {
        check("CREATE INDEX CONCURRENTLY i ON t (c);", &["M002@1"]);
        check("DROP INDEX CONCURRENTLY i;", &["M002@1"]);
        check("REINDEX INDEX CONCURRENTLY i;", &["M002@1"]);
        check("SET lock_timeout = '1s';\nALTER TABLE p DETACH PARTITION p_2020 CONCURRENTLY;", &["M002@2"]);
    }

    #[test]
    fn other_statements_that_refuse_a_transaction_block() {
        check("VACUUM ANALYZE orders;", &["M002@1"]);
        check("CREATE DATABASE reports;", &["M002@1"]);
        check("ALTER SYSTEM SET work_mem = '64MB';", &["M002@1"]);
        check("REINDEX SCHEMA app;", &["M002@1", "M014@1"]);
        check("CREATE SUBSCRIPTION s CONNECTION 'host=a' PUBLICATION p;", &["M002@1"]);
        check("CREATE SUBSCRIPTION s CONNECTION 'host=a' PUBLICATION p WITH (create_slot = false);", &[]);
    }

    #[test]
    fn what_may_run_in_a_transaction_is_not_flagged() {
        check("ALTER TYPE mood ADD VALUE 'meh';", &[]);
        check("ANALYZE orders;", &[]);
    }

    #[test]
    fn a_no_transaction_file_may_run_them() {
        check_no_tx("CREATE INDEX CONCURRENTLY i ON t (c);\nDROP INDEX CONCURRENTLY j;\nVACUUM t;", &[]);
    }

    #[test]
    fn a_begin_written_in_a_no_transaction_file_brings_the_block_back() {
        check_no_tx(
            "BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (c);\nCOMMIT;\nCREATE INDEX CONCURRENTLY j ON t (d);",
            &["M002@2"],
        );
    }

    #[test]
    fn the_message_says_to_add_the_header() {
        let f = finding("CREATE INDEX CONCURRENTLY orders_user_idx ON app.orders (user_id);", "M002");
        assert!(f.message.starts_with("CREATE INDEX CONCURRENTLY \"orders_user_idx\" on app.orders cannot run"));
        assert!(f.alternative.contains("-- cutover:no-transaction as the first line"));
    }
}
