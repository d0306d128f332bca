//! M012 table-rewrite: `VACUUM FULL` and `CLUSTER`, which copy a table into
//! a new file under an ACCESS EXCLUSIVE lock.

use pg_query::NodeEnum;

use super::{ACCESS_EXCLUSIVE, BLOCKS_ALL, Hit, Stmt, has_option};
use crate::lint::context::Cx;
use crate::lint::names::Table;
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M012",
    name: "table-rewrite",
    severity: Severity::Error,
    explanation: "VACUUM FULL and CLUSTER copy the whole table (and rebuild its indexes) while holding an ACCESS \
                  EXCLUSIVE lock: nothing can read or write it for the whole copy, and it needs room for a second \
                  copy on disk.",
    alternative: "pg_repack or pg_squeeze rebuild a table online, with short locks at the start and the end; a plain \
                  VACUUM (no FULL) makes dead space reusable without a rewrite.",
};

const ALTERNATIVE: &str = "Rebuild it online with pg_repack or pg_squeeze (short locks at the start and the end), \
                           outside the migration; or run a plain VACUUM (no FULL), which makes dead space reusable \
                           without a rewrite";

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    let (what, tables) = match stmt.node {
        NodeEnum::VacuumStmt(v) if v.is_vacuumcmd && has_option(&v.options, "full") => {
            let tables: Vec<Table> = v
                .rels
                .iter()
                .filter_map(|n| match n.node.as_ref() {
                    Some(NodeEnum::VacuumRelation(r)) => r.relation.as_ref().map(Table::of),
                    _ => None,
                })
                .collect();
            ("VACUUM FULL", tables)
        }
        NodeEnum::ClusterStmt(c) => ("CLUSTER", c.relation.iter().map(Table::of).collect()),
        _ => return,
    };
    let message = if tables.is_empty() {
        let which = if what == "CLUSTER" { "every table clustered before" } else { "every table in the database" };
        format!("{what} rewrites {which}, each while holding {ACCESS_EXCLUSIVE} on it ({BLOCKS_ALL})")
    } else if tables.iter().all(|t| cx.is_new_table(t)) {
        return;
    } else {
        let names: Vec<String> = tables.iter().map(Table::to_string).collect();
        let names = names.join(", ");
        format!(
            "{what} {names} rewrites {names} while holding {ACCESS_EXCLUSIVE} on it ({BLOCKS_ALL}) for the whole copy"
        )
    };
    out.push(Hit::new(&RULE, message, ALTERNATIVE.to_owned()));
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, check_no_tx, finding};

    #[test]
    fn vacuum_full_and_cluster() {
        check_no_tx("SET lock_timeout = '2s';\nVACUUM FULL orders;", &["M012@2"]);
        check_no_tx("SET lock_timeout = '2s';\nVACUUM (FULL, ANALYZE) orders;", &["M012@2"]);
        check("SET lock_timeout = '2s';\nCLUSTER orders USING orders_pkey;", &["M012@2"]);
        check("SET lock_timeout = '2s';\nCLUSTER;", &["M012@2"]);
    }

    #[test]
    fn plain_vacuum_is_fine() {
        check_no_tx("VACUUM (ANALYZE) orders;", &[]);
        check_no_tx("VACUUM (FULL false) orders;", &[]);
    }

    #[test]
    fn the_message_names_the_table() {
        let f = finding("SET lock_timeout = '2s'; CLUSTER app.orders USING orders_pkey;", "M012");
        assert!(f.message.starts_with("CLUSTER app.orders rewrites app.orders while holding an ACCESS EXCLUSIVE lock"));
    }
}
