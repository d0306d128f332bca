//! M008 unique-without-index: a `UNIQUE` or `PRIMARY KEY` constraint added
//! to an existing table without `USING INDEX`.

use pg_query::protobuf::{AlterTableType, ConstrType, Constraint};

use super::common::shown_name;
use super::{
    ACCESS_EXCLUSIVE, BLOCKS_ALL, Hit, NO_TRANSACTION_HEADER, Stmt, alter_cmds, column_constraints, column_def,
    constraint_def, existing_alter,
};
use crate::lint::context::Cx;
use crate::lint::names::{Table, ident, quoted, strings};
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M008",
    name: "unique-without-index",
    severity: Severity::Error,
    explanation: "Adding a UNIQUE or PRIMARY KEY constraint builds its index while holding an ACCESS EXCLUSIVE lock: \
                  nothing can read or write the table for the whole build.",
    alternative: "CREATE UNIQUE INDEX CONCURRENTLY (in a -- cutover:no-transaction file), then ALTER TABLE … ADD \
                  CONSTRAINT … UNIQUE (or PRIMARY KEY) USING INDEX, which only takes a short lock.",
};

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    let Some((alter, table)) = existing_alter(cx, stmt) else { return };
    for cmd in alter_cmds(alter) {
        match cmd.subtype() {
            AlterTableType::AtAddConstraint => {
                let Some(c) = constraint_def(cmd) else { continue };
                if let Some(hit) = hit(&table, c, strings(&c.keys), "ADD CONSTRAINT") {
                    out.push(hit.at(c.location));
                }
            }
            AlterTableType::AtAddColumn => {
                let Some(col) = column_def(cmd) else { continue };
                for c in column_constraints(col) {
                    let what = format!("ADD COLUMN {} …", quoted(&col.colname));
                    if let Some(hit) = hit(&table, c, vec![col.colname.clone()], &what) {
                        out.push(hit.at(c.location));
                    }
                }
            }
            _ => {}
        }
    }
}

fn hit(table: &Table, c: &Constraint, columns: Vec<String>, what: &str) -> Option<Hit> {
    let (kind, suffix) = match c.contype() {
        ConstrType::ConstrUnique => ("UNIQUE", format!("{}_key", columns.join("_"))),
        ConstrType::ConstrPrimary => ("PRIMARY KEY", "pkey".to_owned()),
        _ => return None,
    };
    if !c.indexname.is_empty() {
        return None;
    }
    let name = if c.conname.is_empty() { table.derived(&suffix) } else { c.conname.clone() };
    let shown = if what == "ADD CONSTRAINT" { shown_name(c) } else { String::new() };
    let message = format!(
        "{what}{shown} {kind} on {table} builds a unique index while holding {ACCESS_EXCLUSIVE} on {table} \
         ({BLOCKS_ALL}) for the whole build"
    );
    let cols = columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
    let not_null = if kind == "PRIMARY KEY" {
        " (the key's columns must already be NOT NULL, or this sets them NOT NULL with a scan: see M004)"
    } else {
        ""
    };
    let alternative = format!(
        "CREATE UNIQUE INDEX CONCURRENTLY {index} ON {table} ({cols}); in a migration file of its own whose first line \
         is {NO_TRANSACTION_HEADER}, then ALTER TABLE {table} ADD CONSTRAINT {name} {kind} USING INDEX {bare}; \
         (a short lock, no build){not_null}",
        index = table.sibling(&name),
        name = ident(&name),
        bare = ident(&name),
    );
    Some(Hit::new(&RULE, message, alternative))
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, finding};

    #[test]
    fn unique_and_primary_key_constraints_build_an_index() {
        check(
            "SET lock_timeout = '2s';\nALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);",
            &["M008@2"],
        );
        check("SET lock_timeout = '2s';\nALTER TABLE users ADD PRIMARY KEY (id);", &["M008@2"]);
        check("SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN handle text UNIQUE;", &["M008@2"]);
    }

    #[test]
    fn using_index_is_the_safe_form() {
        check(
            "SET lock_timeout = '2s';\n\
                ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_idx;",
            &[],
        );
        check(
            "SET lock_timeout = '2s';\n\
                ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_id_idx;",
            &[],
        );
    }

    #[test]
    fn a_new_table_is_not_flagged() {
        check("CREATE TABLE t (id int);\nALTER TABLE t ADD PRIMARY KEY (id);", &[]);
    }

    #[test]
    fn the_alternative_builds_the_index_first() {
        let f = finding("SET lock_timeout = '2s'; ALTER TABLE app.users ADD UNIQUE (email);", "M008");
        assert!(f.message.starts_with("ADD CONSTRAINT UNIQUE on app.users builds a unique index"), "{}", f.message);
        assert!(
            f.alternative.starts_with(
                "CREATE UNIQUE INDEX CONCURRENTLY app.users_email_key ON app.users (email); in a migration file"
            ),
            "{}",
            f.alternative
        );
        assert!(f.alternative.contains("ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_key;"));
    }
}
