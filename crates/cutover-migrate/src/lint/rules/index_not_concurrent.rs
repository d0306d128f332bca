//! M001 index-not-concurrent: `CREATE INDEX` without `CONCURRENTLY` on a
//! table that already exists.

use pg_query::NodeEnum;

use super::{BLOCKS_WRITES, Hit, NO_TRANSACTION_HEADER, Stmt, sql_of};
use crate::lint::context::Cx;
use crate::lint::names::{Table, quoted};
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M001",
    name: "index-not-concurrent",
    severity: Severity::Error,
    explanation: "CREATE INDEX holds a SHARE lock on the table for the whole build: reads go on, but every INSERT, \
                  UPDATE and DELETE waits until the index is built, which takes minutes on a large table.",
    alternative: "CREATE INDEX CONCURRENTLY, in a migration file of its own whose first line is \
                  -- cutover:no-transaction (it cannot run in a transaction block).",
};

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    let NodeEnum::IndexStmt(index) = stmt.node else { return };
    let Some(rv) = &index.relation else { return };
    // `ON ONLY parent` builds nothing: it is the first step of indexing a
    // partitioned table one partition at a time.
    if index.concurrent || cx.is_new(rv) || !rv.inh {
        return;
    }
    let table = Table::of(rv);
    let create = if index.unique { "CREATE UNIQUE INDEX" } else { "CREATE INDEX" };
    let named = if index.idxname.is_empty() { String::new() } else { format!(" {}", quoted(&index.idxname)) };
    let message = format!(
        "{create}{named} on {table} without CONCURRENTLY holds a SHARE lock on {table} ({BLOCKS_WRITES}) for the whole \
         build"
    );
    let mut concurrent = index.clone();
    concurrent.concurrent = true;
    let sql = sql_of(NodeEnum::IndexStmt(concurrent))
        .unwrap_or_else(|| format!("{create} CONCURRENTLY{named} ON {table} (…)"));
    let alternative = format!(
        "{sql}; in a migration file of its own whose first line is {NO_TRANSACTION_HEADER} (if the build fails it \
         leaves an INVALID index: DROP INDEX CONCURRENTLY it and run the migration again)"
    );
    out.push(Hit::new(&RULE, message, alternative));
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, check_no_tx, finding};

    #[test]
    fn create_index_on_an_existing_table() {
        check("SET lock_timeout = '2s';\nCREATE INDEX orders_user_idx ON orders (user_id);", &["M001@2"]);
        check("SET lock_timeout = '2s';\ncreate unique index on app.users (lower(email));", &["M001@2"]);
        check("SET lock_timeout = '2s'; CREATE INDEX IF NOT EXISTS i ON t USING gin (doc);", &["M001@1"]);
    }

    #[test]
    fn concurrently_in_a_no_transaction_file_is_the_safe_form() {
        check_no_tx("CREATE INDEX CONCURRENTLY orders_user_idx ON orders (user_id);", &[]);
    }

    #[test]
    fn a_table_created_in_the_same_file_is_empty() {
        check("CREATE TABLE t (id bigint);\nCREATE INDEX t_id_idx ON t (id);", &[]);
        check("CREATE TABLE app.t (id bigint);\nCREATE INDEX ON t (id);", &[]);
        check("CREATE TABLE app.t (id bigint);\nSET lock_timeout = '1s';\nCREATE INDEX ON other.t (id);", &["M001@3"]);
    }

    #[test]
    fn on_only_a_partitioned_parent_builds_nothing() {
        check("SET lock_timeout = '2s'; CREATE INDEX events_at_idx ON ONLY events (at);", &[]);
    }

    #[test]
    fn the_message_names_the_index_the_table_and_the_lock() {
        let f = finding("SET lock_timeout = '2s';\nCREATE INDEX orders_user_idx ON orders (user_id);", "M001");
        assert_eq!(
            f.message,
            "CREATE INDEX \"orders_user_idx\" on orders without CONCURRENTLY holds a SHARE lock on orders (blocks \
             INSERT/UPDATE/DELETE) for the whole build"
        );
        assert!(f.alternative.starts_with("CREATE INDEX CONCURRENTLY orders_user_idx ON orders"), "{}", f.alternative);
        assert!(f.alternative.contains("-- cutover:no-transaction"));
    }
}
