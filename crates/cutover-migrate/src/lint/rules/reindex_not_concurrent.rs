//! M014 reindex-not-concurrent: `REINDEX` without `CONCURRENTLY`.

use pg_query::NodeEnum;
use pg_query::protobuf::ReindexObjectType;

use super::{Hit, NO_TRANSACTION_HEADER, Stmt, has_option};
use crate::lint::context::Cx;
use crate::lint::names::Table;
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M014",
    name: "reindex-not-concurrent",
    severity: Severity::Error,
    explanation: "REINDEX holds a SHARE lock on the table (every write waits) and an ACCESS EXCLUSIVE lock on each \
                  index it rebuilds (every query that would use it waits) for the whole rebuild.",
    alternative: "REINDEX … CONCURRENTLY (PostgreSQL 12+), in a migration file of its own whose first line is -- \
                  cutover:no-transaction.",
};

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    let NodeEnum::ReindexStmt(r) = stmt.node else { return };
    if has_option(&r.params, "concurrently") {
        return;
    }
    let target = r.relation.as_ref().map(Table::of);
    let (what, locks) = match (r.kind(), &target) {
        (ReindexObjectType::ReindexObjectIndex, Some(index)) if cx.is_new_index(index) => return,
        (ReindexObjectType::ReindexObjectTable, Some(table)) if cx.is_new_table(table) => return,
        (ReindexObjectType::ReindexObjectIndex, Some(index)) => (
            format!("REINDEX INDEX {index}"),
            "an ACCESS EXCLUSIVE lock on the index (queries that would use it wait) and a SHARE lock on its table \
             (writes wait)"
                .to_owned(),
        ),
        (ReindexObjectType::ReindexObjectTable, Some(table)) => (
            format!("REINDEX TABLE {table}"),
            format!(
                "a SHARE lock on {table} (writes wait) and an ACCESS EXCLUSIVE lock on each of its indexes (queries \
                 that would use them wait)"
            ),
        ),
        // REINDEX SYSTEM has no concurrent form.
        (ReindexObjectType::ReindexObjectSystem, _) => return,
        (ReindexObjectType::ReindexObjectSchema, _) => (
            format!("REINDEX SCHEMA {}", r.name),
            "SHARE locks on every table in the schema and ACCESS EXCLUSIVE locks on their indexes, one table at a \
             time"
                .to_owned(),
        ),
        _ => (
            format!("REINDEX DATABASE {}", r.name).trim_end().to_owned(),
            "SHARE locks on every table and ACCESS EXCLUSIVE locks on their indexes, one table at a time".to_owned(),
        ),
    };
    let message = format!("{what} without CONCURRENTLY holds {locks} for the whole rebuild");
    // `REINDEX INDEX CONCURRENTLY name` works from PostgreSQL 12; the
    // `REINDEX (CONCURRENTLY) …` option-list spelling needs 14.
    let sql = match what.split_once(' ').and_then(|(_, rest)| rest.split_once(' ')) {
        Some((kind, name)) => format!("REINDEX {kind} CONCURRENTLY {name}"),
        None => format!("{what} CONCURRENTLY"),
    };
    let alternative = format!(
        "{sql}; in a migration file of its own whose first line is {NO_TRANSACTION_HEADER} (PostgreSQL 12+; a failed \
         run leaves an INVALID _ccnew index to drop)"
    );
    out.push(Hit::new(&RULE, message, alternative));
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, check_no_tx, finding};

    #[test]
    fn reindex_without_concurrently() {
        check("SET lock_timeout = '2s';\nREINDEX INDEX orders_pkey;", &["M014@2"]);
        check("SET lock_timeout = '2s';\nREINDEX TABLE orders;", &["M014@2"]);
        check("SET lock_timeout = '2s';\nREINDEX (VERBOSE) TABLE orders;", &["M014@2"]);
    }

    #[test]
    fn concurrently_in_a_no_transaction_file_is_the_safe_form() {
        check_no_tx("REINDEX INDEX CONCURRENTLY orders_pkey;", &[]);
        check_no_tx("REINDEX (CONCURRENTLY) TABLE orders;", &[]);
    }

    #[test]
    fn what_this_file_created_may_be_reindexed() {
        check("CREATE TABLE t (a int);\nCREATE INDEX t_a ON t (a);\nREINDEX INDEX t_a;\nREINDEX TABLE t;", &[]);
    }

    #[test]
    fn the_alternative_is_the_statement_with_concurrently() {
        let f = finding("SET lock_timeout = '2s'; REINDEX TABLE app.orders;", "M014");
        assert!(
            f.message.starts_with("REINDEX TABLE app.orders without CONCURRENTLY holds a SHARE lock on app.orders")
        );
        assert!(f.alternative.starts_with("REINDEX TABLE CONCURRENTLY app.orders;"), "{}", f.alternative);
        let f = finding("SET lock_timeout = '2s'; REINDEX (VERBOSE) INDEX orders_pkey;", "M014");
        assert!(f.alternative.starts_with("REINDEX INDEX CONCURRENTLY orders_pkey;"), "{}", f.alternative);
    }
}
