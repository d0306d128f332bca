//! The rules, one file each: its [`Rule`] (code, name, severity, the
//! general explanation and alternative) and a `check` that looks at one
//! statement and returns what is wrong with it, specifically. Adding a rule
//! means a file here, a line in [`ALL`] and one in [`check`], its tests
//! beside it, and its section in `docs/lint.md`.

pub(super) mod add_column_required;
pub(super) mod check_not_valid;
pub(super) mod column_type_change;
mod common;
pub(super) mod concurrently_in_transaction;
pub(super) mod drop;
pub(super) mod drop_index_not_concurrent;
pub(super) mod foreign_key_not_valid;
pub(super) mod index_not_concurrent;
pub(super) mod missing_lock_timeout;
pub(super) mod parse_error;
pub(super) mod reindex_not_concurrent;
pub(super) mod rename;
pub(super) mod set_not_null;
pub(super) mod table_rewrite;
pub(super) mod transaction_nesting;
pub(super) mod unique_without_index;
pub(super) mod volatile_default;

use pg_query::NodeEnum;
use pg_query::protobuf::{AlterTableCmd, AlterTableStmt, ColumnDef, ConstrType, Constraint, DefElem, Node};

use super::context::Cx;
use super::names::Table;
use super::{Rule, Severity};

/// Every rule, in code order.
pub(super) const ALL: &[Rule] = &[
    parse_error::RULE,
    index_not_concurrent::RULE,
    concurrently_in_transaction::RULE,
    column_type_change::RULE,
    set_not_null::RULE,
    add_column_required::RULE,
    foreign_key_not_valid::RULE,
    check_not_valid::RULE,
    unique_without_index::RULE,
    volatile_default::RULE,
    rename::RULE,
    drop::RULE,
    table_rewrite::RULE,
    missing_lock_timeout::RULE,
    reindex_not_concurrent::RULE,
    drop_index_not_concurrent::RULE,
    transaction_nesting::RULE,
];

/// Runs every statement rule on one statement.
pub(super) fn check(cx: &Cx, stmt: &Stmt, out: &mut Vec<Hit>) {
    index_not_concurrent::check(cx, stmt, out);
    concurrently_in_transaction::check(cx, stmt, out);
    column_type_change::check(cx, stmt, out);
    set_not_null::check(cx, stmt, out);
    add_column_required::check(cx, stmt, out);
    foreign_key_not_valid::check(cx, stmt, out);
    check_not_valid::check(cx, stmt, out);
    unique_without_index::check(cx, stmt, out);
    volatile_default::check(cx, stmt, out);
    rename::check(cx, stmt, out);
    drop::check(cx, stmt, out);
    table_rewrite::check(cx, stmt, out);
    missing_lock_timeout::check(cx, stmt, out);
    reindex_not_concurrent::check(cx, stmt, out);
    drop_index_not_concurrent::check(cx, stmt, out);
    transaction_nesting::check(cx, stmt, out);
}

/// Runs the rules that judge the file as a whole, after its last statement.
pub(super) fn finish(cx: &Cx, out: &mut Vec<Hit>) {
    transaction_nesting::finish(cx, out);
}

/// One statement, as the rules see it: its parse tree.
pub(super) struct Stmt<'a> {
    pub(super) node: &'a NodeEnum,
}

/// What a rule found, before the linter adds the file, position and
/// statement text.
pub(super) struct Hit {
    pub(super) rule: &'static Rule,
    pub(super) severity: Severity,
    /// The byte offset of the clause at fault, when the parser recorded one;
    /// otherwise the statement's start.
    pub(super) at: Option<usize>,
    pub(super) message: String,
    pub(super) alternative: String,
}

impl Hit {
    pub(super) fn new(rule: &'static Rule, message: String, alternative: String) -> Hit {
        Hit { rule, severity: rule.severity, at: None, message, alternative }
    }

    /// Points the finding at a parser location (`-1` when it has none).
    pub(super) fn at(mut self, location: i32) -> Hit {
        self.at = usize::try_from(location).ok();
        self
    }

    pub(super) fn severity(mut self, severity: Severity) -> Hit {
        self.severity = severity;
        self
    }
}

/// The header that takes a file out of the per-migration transaction.
pub(super) const NO_TRANSACTION_HEADER: &str = "-- cutover:no-transaction";

/// The commands of an `ALTER TABLE`.
pub(crate) fn alter_cmds(a: &AlterTableStmt) -> impl Iterator<Item = &AlterTableCmd> {
    a.cmds.iter().filter_map(|n| match n.node.as_ref() {
        Some(NodeEnum::AlterTableCmd(c)) => Some(&**c),
        _ => None,
    })
}

/// The `ALTER TABLE` of a statement and the table it alters, when it is one
/// on a table that existed before this file.
pub(super) fn existing_alter<'a>(cx: &Cx, stmt: &Stmt<'a>) -> Option<(&'a AlterTableStmt, Table)> {
    match stmt.node {
        NodeEnum::AlterTableStmt(a) => match &a.relation {
            Some(rv) if !cx.is_new(rv) => Some((a, Table::of(rv))),
            _ => None,
        },
        _ => None,
    }
}

/// The column definition of an `ADD COLUMN`.
pub(super) fn column_def(cmd: &AlterTableCmd) -> Option<&ColumnDef> {
    match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
        Some(NodeEnum::ColumnDef(c)) => Some(c),
        _ => None,
    }
}

/// The constraint of an `ADD CONSTRAINT`.
pub(super) fn constraint_def(cmd: &AlterTableCmd) -> Option<&Constraint> {
    match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
        Some(NodeEnum::Constraint(c)) => Some(c),
        _ => None,
    }
}

/// The constraints written on a column definition.
pub(super) fn column_constraints(col: &ColumnDef) -> impl Iterator<Item = &Constraint> {
    col.constraints.iter().filter_map(|n| match n.node.as_ref() {
        Some(NodeEnum::Constraint(c)) => Some(&**c),
        _ => None,
    })
}

pub(super) fn has_constraint(col: &ColumnDef, kind: ConstrType) -> bool {
    column_constraints(col).any(|c| c.contype() == kind)
}

/// Whether a `VACUUM`/`REINDEX`/`CLUSTER` option list has this option
/// switched on (`FULL`, `CONCURRENTLY`, `FULL true`).
pub(super) fn has_option(options: &[Node], name: &str) -> bool {
    options.iter().any(|n| match n.node.as_ref() {
        Some(NodeEnum::DefElem(d)) => d.defname.eq_ignore_ascii_case(name) && option_on(d),
        _ => false,
    })
}

fn option_on(d: &DefElem) -> bool {
    use pg_query::protobuf::a_const::Val;
    match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
        None => true,
        Some(NodeEnum::Boolean(b)) => b.boolval,
        Some(NodeEnum::Integer(i)) => i.ival != 0,
        Some(NodeEnum::String(s)) => !matches!(s.sval.to_ascii_lowercase().as_str(), "false" | "off" | "0" | "no"),
        Some(NodeEnum::AConst(c)) => match c.val.as_ref() {
            Some(Val::Boolval(b)) => b.boolval,
            Some(Val::Ival(i)) => i.ival != 0,
            Some(Val::Sval(s)) => !matches!(s.sval.to_ascii_lowercase().as_str(), "false" | "off" | "0" | "no"),
            _ => true,
        },
        Some(_) => true,
    }
}

/// Calls `f` on every node of an expression, for the expression forms a
/// default or a check constraint is made of (function calls, operators,
/// casts, CASE, COALESCE, boolean logic, arrays, rows).
pub(super) fn walk_expr<'a>(node: Option<&'a Node>, f: &mut impl FnMut(&'a NodeEnum)) {
    let Some(node) = node.and_then(|n| n.node.as_ref()) else { return };
    f(node);
    fn all<'a>(nodes: &'a [Node], f: &mut impl FnMut(&'a NodeEnum)) {
        nodes.iter().for_each(|n| walk_expr(Some(n), f));
    }
    match node {
        NodeEnum::FuncCall(c) => all(&c.args, f),
        NodeEnum::AExpr(e) => {
            walk_expr(e.lexpr.as_deref(), f);
            walk_expr(e.rexpr.as_deref(), f);
        }
        NodeEnum::TypeCast(c) => walk_expr(c.arg.as_deref(), f),
        NodeEnum::BoolExpr(b) => all(&b.args, f),
        NodeEnum::CoalesceExpr(c) => all(&c.args, f),
        NodeEnum::MinMaxExpr(m) => all(&m.args, f),
        NodeEnum::NullIfExpr(n) => all(&n.args, f),
        NodeEnum::RowExpr(r) => all(&r.args, f),
        NodeEnum::AArrayExpr(a) => all(&a.elements, f),
        NodeEnum::List(l) => all(&l.items, f),
        NodeEnum::NullTest(t) => walk_expr(t.arg.as_deref(), f),
        NodeEnum::CollateClause(c) => walk_expr(c.arg.as_deref(), f),
        NodeEnum::AIndirection(i) => walk_expr(i.arg.as_deref(), f),
        NodeEnum::CaseExpr(c) => {
            walk_expr(c.arg.as_deref(), f);
            all(&c.args, f);
            walk_expr(c.defresult.as_deref(), f);
        }
        NodeEnum::CaseWhen(w) => {
            walk_expr(w.expr.as_deref(), f);
            walk_expr(w.result.as_deref(), f);
        }
        _ => {}
    }
}

/// The columns an expression refers to, in order of appearance.
pub(super) fn column_refs(expr: Option<&Node>) -> Vec<String> {
    let mut columns = Vec::new();
    walk_expr(expr, &mut |n| {
        if let NodeEnum::ColumnRef(r) = n
            && let Some(name) = super::names::strings(&r.fields).last()
            && !columns.contains(name)
        {
            columns.push(name.clone());
        }
    });
    columns
}

/// A statement printed back as SQL by PostgreSQL's deparser, for the
/// alternatives that are the statement with one thing changed. A node built
/// here must give every enum field a real value: libpg_query asserts on the
/// protobuf's 0 ("undefined"), which aborts the process in a debug build.
pub(super) fn sql_of(node: NodeEnum) -> Option<String> {
    node.deparse(pg_query::DeparseOptions::default()).ok()
}

/// The lock names and what they block, as the messages say them.
pub(super) const ACCESS_EXCLUSIVE: &str = "an ACCESS EXCLUSIVE lock";
pub(super) const BLOCKS_ALL: &str = "blocks reads and writes";
pub(super) const BLOCKS_WRITES: &str = "blocks INSERT/UPDATE/DELETE";

#[cfg(test)]
pub(super) mod test {
    //! The rules' test helper: lint a snippet and compare `code@line`s.

    /// Lints `sql` as a transactional file and compares the findings'
    /// `code@line` with `expected` (sorted as the linter sorts them).
    #[track_caller]
    pub(crate) fn check(sql: &str, expected: &[&str]) {
        check_with(sql, true, expected);
    }

    /// Like [`check`], for a no-transaction file.
    #[track_caller]
    pub(crate) fn check_no_tx(sql: &str, expected: &[&str]) {
        check_with(sql, false, expected);
    }

    #[track_caller]
    fn check_with(sql: &str, transactional: bool, expected: &[&str]) {
        let findings = crate::lint::lint_sql("test.sql", sql, transactional);
        let got: Vec<String> = findings.iter().map(|f| format!("{}@{}", f.code, f.line)).collect();
        assert_eq!(got, expected, "{sql}\n{findings:#?}");
    }

    /// The one finding with this code, for tests of the message's wording.
    #[track_caller]
    pub(crate) fn finding(sql: &str, code: &str) -> crate::lint::Finding {
        let findings = crate::lint::lint_sql("test.sql", sql, true);
        let mut with_code = findings.iter().filter(|f| f.code == code);
        match (with_code.next(), with_code.next()) {
            (Some(f), None) => f.clone(),
            _ => panic!("expected exactly one {code} in {findings:#?}"),
        }
    }
}
