//! M010 rename: renaming a table or a column that already exists.

use pg_query::NodeEnum;
use pg_query::protobuf::ObjectType;

use super::{Hit, Stmt};
use crate::lint::context::Cx;
use crate::lint::names::{Table, ident, quoted};
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M010",
    name: "rename",
    severity: Severity::Warning,
    explanation: "The application deployed before the migration still uses the old name: from the moment the rename \
                  commits until every instance runs the new code, its queries fail.",
    alternative: "Expand/contract: add the new name next to the old one (a view with the new name, or a new column \
                  kept in sync), deploy code that uses the new name, then drop the old one in a later migration.",
};

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    let NodeEnum::RenameStmt(r) = stmt.node else { return };
    let Some(rv) = &r.relation else { return };
    if cx.is_new(rv) {
        return;
    }
    let table = Table::of(rv);
    let (message, alternative) = match r.rename_type() {
        ObjectType::ObjectTable => (
            format!(
                "RENAME of table {table} to {} breaks every query that still uses {table}: the application deployed \
                 before this migration keeps using the old name until it is replaced",
                ident(&r.newname)
            ),
            format!(
                "Rename it and keep the old name as a view in the same migration (ALTER TABLE {table} RENAME TO {new}; \
                 CREATE VIEW {table} AS SELECT * FROM {new_q}; — a simple view is updatable), deploy code that uses \
                 {new}, then DROP VIEW {table} in a later migration",
                new = ident(&r.newname),
                new_q = Table { schema: table.schema.clone(), name: r.newname.clone() },
            ),
        ),
        ObjectType::ObjectColumn => (
            format!(
                "RENAME COLUMN {} of {table} to {} breaks every query that still uses {}: the application deployed \
                 before this migration keeps using the old name until it is replaced",
                quoted(&r.subname),
                quoted(&r.newname),
                quoted(&r.subname)
            ),
            format!(
                "Expand/contract: ADD COLUMN {new} to {table}, keep both in sync (a trigger or dual writes), backfill \
                 {new} in batches, deploy code that reads {new}, then drop {old} in a later migration",
                new = ident(&r.newname),
                old = ident(&r.subname),
            ),
        ),
        _ => return,
    };
    out.push(Hit::new(&RULE, message, alternative));
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, finding};

    #[test]
    fn renaming_a_table_or_a_column() {
        check("SET lock_timeout = '2s';\nALTER TABLE orders RENAME TO purchases;", &["M010@2"]);
        check("SET lock_timeout = '2s';\nALTER TABLE users RENAME COLUMN email TO email_address;", &["M010@2"]);
        check("SET lock_timeout = '2s';\nALTER TABLE users RENAME email TO email_address;", &["M010@2"]);
    }

    #[test]
    fn renaming_what_this_file_created_or_other_objects_is_fine() {
        check("CREATE TABLE t (a int);\nALTER TABLE t RENAME COLUMN a TO b;\nALTER TABLE t RENAME TO u;", &[]);
        check("SET lock_timeout = '2s';\nALTER INDEX orders_idx RENAME TO orders_user_idx;", &[]);
        check("SET lock_timeout = '2s';\nALTER TABLE orders RENAME CONSTRAINT a TO b;", &[]);
    }

    #[test]
    fn the_message_names_old_and_new() {
        let f = finding("SET lock_timeout = '2s'; ALTER TABLE app.users RENAME COLUMN email TO email_address;", "M010");
        assert!(f.message.starts_with("RENAME COLUMN \"email\" of app.users to \"email_address\""), "{}", f.message);
        let f = finding("SET lock_timeout = '2s'; ALTER TABLE app.orders RENAME TO purchases;", "M010");
        assert!(f.alternative.contains("CREATE VIEW app.orders AS SELECT * FROM app.purchases"), "{}", f.alternative);
    }
}
