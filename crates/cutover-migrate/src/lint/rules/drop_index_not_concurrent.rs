//! M015 drop-index-not-concurrent: `DROP INDEX` without `CONCURRENTLY`.

use pg_query::NodeEnum;
use pg_query::protobuf::{DropBehavior, DropStmt, ObjectType};

use super::{Hit, NO_TRANSACTION_HEADER, Stmt, sql_of};
use crate::lint::context::Cx;
use crate::lint::names::{Table, object_parts};
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M015",
    name: "drop-index-not-concurrent",
    severity: Severity::Warning,
    explanation: "DROP INDEX takes an ACCESS EXCLUSIVE lock on the index's table: the drop itself is quick, but it \
                  waits behind every running query on the table, and every query on the table waits behind it.",
    alternative: "DROP INDEX CONCURRENTLY, one index per statement, in a migration file whose first line is -- \
                  cutover:no-transaction.",
};

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    let NodeEnum::DropStmt(d) = stmt.node else { return };
    if d.remove_type() != ObjectType::ObjectIndex || d.concurrent {
        return;
    }
    for object in &d.objects {
        let index = Table::from_parts(&object_parts(object));
        if cx.is_new_index(&index) {
            continue;
        }
        let message = format!(
            "DROP INDEX {index} without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on its table (blocks reads and \
             writes) while it waits for running queries and drops"
        );
        // CONCURRENTLY drops one index per statement, without CASCADE.
        let single = DropStmt {
            objects: vec![object.clone()],
            concurrent: true,
            behavior: DropBehavior::DropRestrict.into(),
            ..d.clone()
        };
        let sql = sql_of(NodeEnum::DropStmt(single)).unwrap_or_else(|| format!("DROP INDEX CONCURRENTLY {index}"));
        let cascade = if d.behavior() == DropBehavior::DropCascade {
            " (CONCURRENTLY does not take CASCADE: drop what depends on the index first)"
        } else {
            ""
        };
        let alternative =
            format!("{sql}; in a migration file of its own whose first line is {NO_TRANSACTION_HEADER}{cascade}");
        out.push(Hit::new(&RULE, message, alternative));
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, check_no_tx, finding};

    #[test]
    fn drop_index_without_concurrently() {
        check("SET lock_timeout = '2s';\nDROP INDEX orders_old_idx;", &["M015@2"]);
        check("SET lock_timeout = '2s';\nDROP INDEX IF EXISTS a, app.b;", &["M015@2", "M015@2"]);
    }

    #[test]
    fn concurrently_or_an_index_of_a_new_table_is_fine() {
        check_no_tx("DROP INDEX CONCURRENTLY IF EXISTS orders_old_idx;", &[]);
        check("CREATE TABLE t (a int);\nCREATE INDEX t_a ON t (a);\nDROP INDEX t_a;", &[]);
    }

    #[test]
    fn the_alternative_is_one_concurrent_drop_per_index() {
        let f = finding("SET lock_timeout = '2s'; DROP INDEX IF EXISTS app.orders_old_idx;", "M015");
        assert!(f.message.starts_with("DROP INDEX app.orders_old_idx without CONCURRENTLY"), "{}", f.message);
        assert!(
            f.alternative.starts_with("DROP INDEX CONCURRENTLY IF EXISTS app.orders_old_idx;"),
            "{}",
            f.alternative
        );
    }
}
