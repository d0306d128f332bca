//! M009 volatile-default: `ADD COLUMN` whose value must be computed row by
//! row — a volatile default, a serial or identity column, a stored generated
//! column — on an existing table.
//!
//! Only the volatile functions below are known; a default calling a
//! function of your own is not flagged (the linter cannot see its
//! volatility). `now()` and `current_timestamp` are stable: PostgreSQL 11+
//! evaluates them once and stores the value in the catalog, no rewrite.

use pg_query::NodeEnum;
use pg_query::protobuf::{AlterTableType, ColumnDef, ConstrType};

use super::add_column_required::SERIAL_TYPES;
use super::{
    ACCESS_EXCLUSIVE, BLOCKS_ALL, Hit, Stmt, alter_cmds, column_constraints, column_def, existing_alter, walk_expr,
};
use crate::lint::context::Cx;
use crate::lint::names::{base_type, ident, quoted, strings, type_sql};
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M009",
    name: "volatile-default",
    severity: Severity::Error,
    explanation: "A column whose default is volatile (random(), gen_random_uuid(), clock_timestamp(), nextval(), a \
                  serial or identity column, a stored generated column) needs its own value in every row, so adding \
                  it rewrites the whole table under an ACCESS EXCLUSIVE lock.",
    alternative: "Add the column without a default, then ALTER COLUMN … SET DEFAULT (it applies to new rows only), \
                  then backfill existing rows in batches.",
};

/// Functions PostgreSQL marks volatile that defaults commonly call.
const VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "gen_random_uuid",
    "gen_random_bytes",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "currval",
    "lastval",
    "txid_current",
    "pg_current_xact_id",
    "setseed",
];

pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    let Some((alter, table)) = existing_alter(cx, stmt) else { return };
    for cmd in alter_cmds(alter).filter(|c| c.subtype() == AlterTableType::AtAddColumn) {
        let Some(col) = column_def(cmd) else { continue };
        let Some(why) = per_row_value(col) else { continue };
        let ty = col.type_name.as_ref().map(type_sql).unwrap_or_default();
        let message = format!(
            "ADD COLUMN {} {ty} on {table} {why}, so it rewrites {table} while holding {ACCESS_EXCLUSIVE} on {table} \
             ({BLOCKS_ALL})",
            quoted(&col.colname)
        );
        let column = ident(&col.colname);
        let plain_type = match col.type_name.as_ref().map(base_type).unwrap_or_default().as_str() {
            "bigserial" | "serial8" => "bigint".to_owned(),
            "serial" | "serial4" => "integer".to_owned(),
            "smallserial" | "serial2" => "smallint".to_owned(),
            _ => ty.clone(),
        };
        let alternative = format!(
            "ALTER TABLE {table} ADD COLUMN {column} {plain_type}; then ALTER TABLE {table} ALTER COLUMN {column} SET \
             DEFAULT … (new rows only; for a sequence, CREATE SEQUENCE first and use nextval), then backfill existing \
             rows in batches, then make it NOT NULL through a validated CHECK if it must be (M004)"
        );
        out.push(Hit::new(&RULE, message, alternative).at(col.location));
    }
}

/// Why every existing row needs its own value, if it does.
fn per_row_value(col: &ColumnDef) -> Option<String> {
    if let Some(t) = &col.type_name
        && SERIAL_TYPES.contains(&base_type(t).as_str())
    {
        return Some(format!("is a {} (it fills every existing row from a new sequence)", type_sql(t)));
    }
    for c in column_constraints(col) {
        match c.contype() {
            ConstrType::ConstrIdentity => {
                return Some("is an identity column (it fills every existing row from a new sequence)".to_owned());
            }
            // PostgreSQL 18 makes generated columns VIRTUAL by default; only
            // STORED ones are written into every row.
            ConstrType::ConstrGenerated if c.generated_kind != "v" => {
                return Some(
                    "is a stored generated column (its value is computed and written into every row)".to_owned(),
                );
            }
            ConstrType::ConstrDefault => {
                if let Some(function) = volatile_call(c.raw_expr.as_deref()) {
                    return Some(format!(
                        "has a DEFAULT calling {function}(), which is volatile: every existing row gets its own value"
                    ));
                }
            }
            _ => {}
        }
    }
    volatile_call(col.raw_default.as_deref()).map(|function| {
        format!("has a DEFAULT calling {function}(), which is volatile: every existing row gets its own value")
    })
}

/// The first known volatile function an expression calls.
fn volatile_call(expr: Option<&pg_query::protobuf::Node>) -> Option<String> {
    let mut found = None;
    walk_expr(expr, &mut |n| {
        if let NodeEnum::FuncCall(f) = n
            && found.is_none()
            && let Some(name) = strings(&f.funcname).last()
            && VOLATILE.contains(&name.to_ascii_lowercase().as_str())
        {
            found = Some(name.clone());
        }
    });
    found
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, finding};

    #[test]
    fn volatile_defaults_rewrite_the_table() {
        check(
            "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();",
            &["M009@2"],
        );
        check("SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN r float8 DEFAULT random() * 10;", &["M009@2"]);
        check(
            "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN t text DEFAULT md5(clock_timestamp()::text);",
            &["M009@2"],
        );
        check(
            "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN n bigint DEFAULT nextval('users_n_seq');",
            &["M009@2"],
        );
    }

    #[test]
    fn serial_identity_and_stored_generated_columns_rewrite_the_table() {
        check("SET lock_timeout = '2s';\nALTER TABLE events ADD COLUMN id bigserial;", &["M009@2"]);
        check(
            "SET lock_timeout = '2s';\nALTER TABLE events ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;",
            &["M009@2"],
        );
        check(
            "SET lock_timeout = '2s';\n\
                ALTER TABLE orders ADD COLUMN total numeric GENERATED ALWAYS AS (qty * price) STORED;",
            &["M009@2"],
        );
    }

    #[test]
    fn stable_and_constant_defaults_are_catalog_only() {
        check("SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN created_at timestamptz DEFAULT now();", &[]);
        check(
            "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN created_at timestamptz DEFAULT current_timestamp;",
            &[],
        );
        check("SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN active boolean NOT NULL DEFAULT true;", &[]);
        check(
            "SET lock_timeout = '2s';\n\
                ALTER TABLE orders ADD COLUMN total numeric GENERATED ALWAYS AS (qty * price) VIRTUAL;",
            &[],
        );
    }

    #[test]
    fn setting_the_default_afterwards_is_the_safe_form() {
        check(
            "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN token uuid;\n\
                ALTER TABLE users ALTER COLUMN token SET DEFAULT gen_random_uuid();",
            &[],
        );
    }

    #[test]
    fn the_message_names_the_function() {
        let f = finding(
            "SET lock_timeout = '2s'; ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();",
            "M009",
        );
        assert!(f.message.contains("DEFAULT calling gen_random_uuid(), which is volatile"), "{}", f.message);
        assert!(f.alternative.starts_with("ALTER TABLE users ADD COLUMN token uuid; then"), "{}", f.alternative);
    }
}
