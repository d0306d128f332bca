//! M011 drop: dropping a table or a column that already exists, a database,
//! or anything with `CASCADE`.

use pg_query::NodeEnum;
use pg_query::protobuf::{AlterTableType, DropBehavior, ObjectType};

use super::{Hit, Stmt, alter_cmds, existing_alter};
use crate::lint::context::Cx;
use crate::lint::names::{Table, object_parts, quoted};
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M011",
    name: "drop",
    severity: Severity::Warning,
    explanation: "Dropping a table or column loses its data for good, and the application deployed before the \
                  migration still reads it: its queries fail until every instance runs the new code. CASCADE \
                  silently drops whatever depends on the object too.",
    alternative: "Stop reading and writing it in the application, deploy, then drop it in a later migration (keep a \
                  backup, or rename it first and drop it after a while, if the data may be needed).",
};

const ALTERNATIVE: &str = "Stop reading and writing it in the application and deploy that first; drop it in a \
                           later migration, with a backup (or a rename first) if the data may be needed";

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    match stmt.node {
        NodeEnum::DropStmt(d) => {
            let cascade = d.behavior() == DropBehavior::DropCascade;
            for object in &d.objects {
                let target = Table::from_parts(&object_parts(object));
                let message = match d.remove_type() {
                    ObjectType::ObjectTable if cx.is_new_table(&target) => continue,
                    ObjectType::ObjectTable => {
                        let cascade = if cascade {
                            " (CASCADE also drops the views and foreign keys that depend on it)"
                        } else {
                            ""
                        };
                        format!(
                            "DROP TABLE {target} deletes its data and breaks code still reading or writing it: the \
                             application deployed before this migration fails until it is replaced{cascade}"
                        )
                    }
                    kind if cascade => format!(
                        "DROP {} {target} CASCADE also drops every object that depends on it (for a type or domain: \
                         the table columns of that type, with their data)",
                        object_kind(kind)
                    ),
                    _ => continue,
                };
                out.push(Hit::new(&RULE, message, ALTERNATIVE.to_owned()));
            }
        }
        NodeEnum::DropdbStmt(d) => {
            let message = format!("DROP DATABASE {} deletes the whole database", quoted(&d.dbname));
            out.push(Hit::new(&RULE, message, ALTERNATIVE.to_owned()));
        }
        NodeEnum::AlterTableStmt(_) => {
            let Some((alter, table)) = existing_alter(cx, stmt) else { return };
            for cmd in alter_cmds(alter).filter(|c| c.subtype() == AlterTableType::AtDropColumn) {
                let cascade = if cmd.behavior() == DropBehavior::DropCascade {
                    " (CASCADE also drops the indexes, constraints and views that use it)"
                } else {
                    ""
                };
                let message = format!(
                    "DROP COLUMN {} of {table} deletes its data and breaks code still reading or writing it: the \
                     application deployed before this migration fails until it is replaced{cascade}",
                    quoted(&cmd.name)
                );
                out.push(Hit::new(&RULE, message, ALTERNATIVE.to_owned()));
            }
        }
        _ => {}
    }
}

fn object_kind(kind: ObjectType) -> &'static str {
    match kind {
        ObjectType::ObjectIndex => "INDEX",
        ObjectType::ObjectView => "VIEW",
        ObjectType::ObjectMatview => "MATERIALIZED VIEW",
        ObjectType::ObjectSchema => "SCHEMA",
        ObjectType::ObjectType => "TYPE",
        ObjectType::ObjectDomain => "DOMAIN",
        ObjectType::ObjectFunction => "FUNCTION",
        ObjectType::ObjectProcedure => "PROCEDURE",
        ObjectType::ObjectSequence => "SEQUENCE",
        ObjectType::ObjectExtension => "EXTENSION",
        ObjectType::ObjectTrigger => "TRIGGER",
        ObjectType::ObjectForeignTable => "FOREIGN TABLE",
        _ => "…",
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, finding};

    #[test]
    fn dropping_tables_and_columns() {
        check("SET lock_timeout = '2s';\nDROP TABLE legacy_events;", &["M011@2"]);
        check("SET lock_timeout = '2s';\nDROP TABLE IF EXISTS a, b;", &["M011@2", "M011@2"]);
        check("SET lock_timeout = '2s';\nALTER TABLE users DROP COLUMN fax;", &["M011@2"]);
    }

    #[test]
    fn cascade_on_anything() {
        check("DROP TYPE mood CASCADE;", &["M011@1"]);
        check("DROP SCHEMA staging CASCADE;", &["M011@1"]);
        check("DROP TYPE mood;", &[]);
        check("DROP FUNCTION f(int);", &[]);
    }

    #[test]
    fn what_this_file_created_may_be_dropped() {
        check("CREATE TABLE tmp (a int);\nALTER TABLE tmp DROP COLUMN a;\nDROP TABLE tmp;", &[]);
    }

    #[test]
    fn the_message_names_the_object() {
        let f = finding("SET lock_timeout = '2s'; ALTER TABLE app.users DROP COLUMN fax CASCADE;", "M011");
        assert!(f.message.starts_with("DROP COLUMN \"fax\" of app.users deletes its data"), "{}", f.message);
        assert!(f.message.contains("CASCADE also drops"), "{}", f.message);
    }
}
