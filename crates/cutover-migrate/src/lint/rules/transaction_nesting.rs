//! M016 transaction-nesting: `BEGIN`/`COMMIT`/`ROLLBACK` written in a file
//! that cutover already runs in a transaction, or a `BEGIN` left open at the
//! end of a no-transaction file. One `BEGIN` first and one `COMMIT` last
//! (golang-migrate's habit) is fine: the runner replaces them with its own.

use pg_query::NodeEnum;
use pg_query::protobuf::TransactionStmtKind;

use super::{Hit, NO_TRANSACTION_HEADER, Stmt};
use crate::lint::context::Cx;
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M016",
    name: "transaction-nesting",
    severity: Severity::Error,
    explanation: "cutover runs each migration in a transaction of its own: a COMMIT or ROLLBACK in the file ends that \
                  transaction early, so the statements after it run outside it and a failure leaves the migration \
                  half applied. A BEGIN left open at the end of a no-transaction file is rolled back.",
    alternative: "Remove BEGIN/COMMIT from the file: cutover wraps it in a transaction. For statements that must run \
                  outside one, use a -- cutover:no-transaction file, and close every BEGIN you open there.",
};

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    let NodeEnum::TransactionStmt(t) = stmt.node else { return };
    if !cx.transactional || cx.wrapped {
        return;
    }
    let (what, effect) = match t.kind() {
        TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart => {
            ("BEGIN", "is ignored with a warning, and the COMMIT that usually follows it ends that transaction early")
        }
        TransactionStmtKind::TransStmtCommit => (
            "COMMIT",
            "commits that transaction early: the statements after it run outside it, and a failure there leaves the \
             migration half applied",
        ),
        TransactionStmtKind::TransStmtRollback => (
            "ROLLBACK",
            "rolls back everything before it, and the statements after it run outside cutover's transaction",
        ),
        TransactionStmtKind::TransStmtPrepare => ("PREPARE TRANSACTION", "takes that transaction away from cutover"),
        _ => return,
    };
    let message = format!("{what} in a migration that cutover already runs in a transaction {effect}");
    let alternative = format!(
        "Remove the {what}: cutover wraps the file in a transaction. If statements must run outside a transaction, \
         put them in a file whose first line is {NO_TRANSACTION_HEADER}"
    );
    out.push(Hit::new(&RULE, message, alternative));
}

pub(super) fn finish(cx: &Cx, out: &mut Vec<Hit>) {
    let Some(begin) = cx.explicit_begin else { return };
    let message = "BEGIN without a COMMIT before the end of the file: the session ends with the transaction open, \
                   and PostgreSQL rolls it back"
        .to_owned();
    let alternative = "End the transaction with COMMIT; before the end of the file".to_owned();
    let mut hit = Hit::new(&RULE, message, alternative);
    hit.at = Some(begin);
    out.push(hit);
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, check_no_tx};

    #[test]
    fn transaction_control_in_a_transactional_file() {
        check("BEGIN;\nSET lock_timeout = '2s';\nALTER TABLE a ADD COLUMN x int;\nCOMMIT;", &[]);
        check(
            "BEGIN;\nSET lock_timeout = '2s';\nALTER TABLE a ADD COLUMN x int;\nCOMMIT;\nBEGIN;\nCOMMIT;",
            &["M016@1", "M016@4", "M016@5", "M016@6"],
        );
        check("SET lock_timeout = '2s';\nALTER TABLE a ADD COLUMN x int;\nROLLBACK;", &["M016@3"]);
    }

    #[test]
    fn savepoints_are_fine() {
        check("SAVEPOINT s;\nSELECT 1;\nRELEASE SAVEPOINT s;", &[]);
    }

    #[test]
    fn a_no_transaction_file_may_open_and_close_its_own() {
        check_no_tx("BEGIN;\nSET LOCAL lock_timeout = '2s';\nALTER TABLE a ADD COLUMN x int;\nCOMMIT;", &[]);
        check_no_tx("SELECT 1;\nBEGIN;\nSET LOCAL lock_timeout = '2s';\nALTER TABLE a ADD COLUMN x int;", &["M016@2"]);
    }
}
