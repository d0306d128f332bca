//! What the linter knows about the file up to the statement being checked:
//! the tables and indexes it created, whether a `lock_timeout` is in
//! effect, whether a transaction is open, the constraints it added and
//! validated. The rules read it; [`Cx::observe`] updates it after each
//! statement, so a statement is judged by what came before it.

use pg_query::NodeEnum;
use pg_query::protobuf::{
    AlterTableType, ConstrType, Constraint, FuncCall, Node, ObjectType, RangeVar, TransactionStmtKind, VariableSetKind,
    VariableSetStmt, a_const::Val,
};

use super::names::{Table, object_parts, strings};
use super::rules::alter_cmds;
use super::{ColumnRef, ColumnType};

pub(crate) struct Cx {
    /// Whether the runner wraps the file in a transaction.
    pub(crate) transactional: bool,
    /// Where a `BEGIN` written in the file opened a transaction that is still
    /// open (only tracked in a no-transaction file, where it matters).
    pub(crate) explicit_begin: Option<usize>,
    /// Whether the file is one BEGIN … COMMIT around everything, which the
    /// runner replaces with its own transaction.
    pub(crate) wrapped: bool,
    /// Whether missing-lock-timeout was reported: it is reported once.
    pub(crate) lock_timeout_reported: bool,
    new_tables: Vec<NewTable>,
    new_indexes: Vec<Table>,
    /// Current types of columns, from the catalog (pending files only);
    /// forgotten once a statement changes or drops the column.
    columns: Vec<ColumnType>,
    lock_timeout: LockTimeout,
    constraints: Vec<Added>,
    validated: Vec<(Table, String)>,
}

/// What one file leaves for the next when files are linted as a sequence
/// that has not run yet (the pending files of a database): the tables they
/// create, and the indexes on those, are new in the later files too.
#[derive(Default)]
pub(crate) struct Carried {
    new_tables: Vec<NewTable>,
    new_indexes: Vec<Table>,
    columns: Vec<ColumnType>,
}

impl Carried {
    pub(crate) fn knowing(columns: Vec<ColumnType>) -> Carried {
        Carried { columns, ..Carried::default() }
    }
}

/// A table created earlier in the file: nobody else uses it yet, and unless
/// it came from `CREATE TABLE … AS`, it has no rows.
struct NewTable {
    table: Table,
    empty: bool,
    /// `CREATE TABLE IF NOT EXISTS`: the table may exist already, which the
    /// next file cannot assume it does not.
    if_not_exists: bool,
}

/// The lock_timeout the file set: a session value, and a `SET LOCAL` one
/// that lasts until the end of the transaction it was set in.
#[derive(Default)]
struct LockTimeout {
    session: bool,
    local: Option<bool>,
}

/// A constraint added by an `ALTER TABLE` earlier in the file.
pub(crate) struct Added {
    pub(crate) table: Table,
    pub(crate) name: String,
    pub(crate) kind: ConstrType,
    pub(crate) not_valid: bool,
    /// The column a `CHECK (col IS NOT NULL)` is about.
    pub(crate) not_null_column: Option<String>,
    /// Whether it was added inside the transaction that is still open
    /// (always, in a transactional file).
    pub(crate) in_open_transaction: bool,
}

impl Cx {
    pub(crate) fn new(transactional: bool, carried: Carried) -> Cx {
        Cx {
            transactional,
            explicit_begin: None,
            wrapped: false,
            lock_timeout_reported: false,
            new_tables: carried.new_tables,
            new_indexes: carried.new_indexes,
            columns: carried.columns,
            lock_timeout: LockTimeout::default(),
            constraints: Vec::new(),
            validated: Vec::new(),
        }
    }

    /// What the next file of a pending sequence inherits.
    pub(crate) fn carry(self) -> Carried {
        let new_tables = self.new_tables.into_iter().filter(|t| !t.if_not_exists).collect();
        Carried { new_tables, new_indexes: self.new_indexes, columns: self.columns }
    }

    /// Whether the statement runs inside a transaction block: the runner's,
    /// or one the file opened with `BEGIN`.
    pub(crate) fn in_transaction(&self) -> bool {
        self.transactional || self.explicit_begin.is_some()
    }

    /// Whether the table was created earlier in this file (or in an earlier
    /// file of a pending sequence).
    pub(crate) fn is_new(&self, rv: &RangeVar) -> bool {
        self.is_new_table(&Table::of(rv))
    }

    pub(crate) fn is_new_table(&self, table: &Table) -> bool {
        self.new_tables.iter().any(|t| t.table.same(table))
    }

    /// Whether the table was created earlier in this file without rows.
    pub(crate) fn is_new_and_empty(&self, rv: &RangeVar) -> bool {
        let table = Table::of(rv);
        self.new_tables.iter().any(|t| t.empty && t.table.same(&table))
    }

    /// The column's type before this statement, when the caller read it from
    /// the catalog and nothing earlier changed it. An unqualified name that
    /// could be either of two looked-up tables gives nothing.
    pub(crate) fn column_type(&self, table: &Table, column: &str) -> Option<&ColumnType> {
        let mut found = self.columns.iter().filter(|c| c.column.column == column && table.same(&table_of(&c.column)));
        match (found.next(), found.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    }

    /// Whether the index was created earlier in this file on a new table.
    pub(crate) fn is_new_index(&self, index: &Table) -> bool {
        self.new_indexes.iter().any(|i| i.same(index))
    }

    pub(crate) fn lock_timeout_set(&self) -> bool {
        self.lock_timeout.local.unwrap_or(self.lock_timeout.session)
    }

    /// The constraint of this name added to this table earlier in the file.
    pub(crate) fn added(&self, table: &Table, name: &str) -> Option<&Added> {
        self.constraints.iter().rev().find(|c| c.name == name && c.table.same(table))
    }

    /// The constraints of this table validated earlier in the file.
    pub(crate) fn validated(&self, table: &Table) -> impl Iterator<Item = &str> {
        self.validated.iter().filter(move |(t, _)| t.same(table)).map(|(_, name)| name.as_str())
    }

    /// Takes in what a statement changed, after the rules have seen it.
    pub(crate) fn observe(&mut self, node: &NodeEnum, start: usize) {
        match node {
            NodeEnum::CreateStmt(c) => {
                if let Some(rv) = &c.relation {
                    let if_not_exists = c.if_not_exists;
                    self.new_tables.push(NewTable { table: Table::of(rv), empty: true, if_not_exists });
                }
            }
            NodeEnum::CreateTableAsStmt(c) => {
                if let Some(rv) = c.into.as_ref().and_then(|i| i.rel.as_ref()) {
                    let empty = c.into.as_ref().is_some_and(|i| i.skip_data);
                    let if_not_exists = c.if_not_exists;
                    self.new_tables.push(NewTable { table: Table::of(rv), empty, if_not_exists });
                }
            }
            NodeEnum::SelectStmt(s) => {
                if let Some(rv) = s.into_clause.as_ref().and_then(|i| i.rel.as_ref()) {
                    self.new_tables.push(NewTable { table: Table::of(rv), empty: false, if_not_exists: false });
                }
                for target in &s.target_list {
                    if let Some(NodeEnum::ResTarget(r)) = target.node.as_ref()
                        && let Some(NodeEnum::FuncCall(f)) = r.val.as_ref().and_then(|v| v.node.as_ref())
                    {
                        self.set_config(f);
                    }
                }
            }
            NodeEnum::IndexStmt(i) => {
                if let Some(rv) = &i.relation
                    && !i.idxname.is_empty()
                    && self.is_new(rv)
                {
                    self.new_indexes.push(Table { schema: rv.schemaname.clone(), name: i.idxname.clone() });
                }
            }
            NodeEnum::RenameStmt(r) if r.rename_type() == ObjectType::ObjectTable => {
                if let Some(rv) = &r.relation {
                    let old = Table::of(rv);
                    self.forget_columns(&old);
                    for t in self.new_tables.iter_mut().filter(|t| t.table.same(&old)) {
                        t.table.name = r.newname.clone();
                    }
                }
            }
            // A renamed column (the swap of expand/contract) is no longer the
            // column whose type was read.
            NodeEnum::RenameStmt(r) if r.rename_type() == ObjectType::ObjectColumn => {
                if let Some(rv) = &r.relation {
                    self.forget_columns(&Table::of(rv));
                }
            }
            NodeEnum::AlterObjectSchemaStmt(a) => {
                if let Some(rv) = &a.relation {
                    self.forget_columns(&Table::of(rv));
                }
            }
            NodeEnum::DropStmt(d) if d.remove_type() == ObjectType::ObjectTable => {
                for object in &d.objects {
                    let dropped = Table::from_parts(&object_parts(object));
                    self.forget_columns(&dropped);
                    self.new_tables.retain(|t| !t.table.same(&dropped));
                }
            }
            // Unqualified names may now resolve to other tables.
            NodeEnum::VariableSetStmt(v) if v.name.eq_ignore_ascii_case("search_path") => {
                self.columns.retain(|c| !c.column.schema.is_empty());
            }
            NodeEnum::VariableSetStmt(v) if v.name.eq_ignore_ascii_case("lock_timeout") => self.set(v),
            NodeEnum::VariableSetStmt(v) if v.kind() == VariableSetKind::VarResetAll => {
                self.lock_timeout = LockTimeout::default();
            }
            NodeEnum::TransactionStmt(t) if !self.transactional => match t.kind() {
                TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart => {
                    self.explicit_begin = Some(start);
                }
                TransactionStmtKind::TransStmtCommit
                | TransactionStmtKind::TransStmtRollback
                | TransactionStmtKind::TransStmtPrepare => {
                    self.explicit_begin = None;
                    self.lock_timeout.local = None;
                    for c in &mut self.constraints {
                        c.in_open_transaction = false;
                    }
                }
                _ => {}
            },
            NodeEnum::AlterTableStmt(a) => {
                let Some(rv) = &a.relation else { return };
                let table = Table::of(rv);
                for cmd in alter_cmds(a) {
                    match (cmd.subtype(), cmd.def.as_ref().and_then(|d| d.node.as_ref())) {
                        (AlterTableType::AtAddConstraint, Some(NodeEnum::Constraint(c))) => {
                            self.constraints.push(Added {
                                table: table.clone(),
                                name: c.conname.clone(),
                                kind: c.contype(),
                                not_valid: c.skip_validation,
                                not_null_column: not_null_column(c),
                                in_open_transaction: self.in_transaction(),
                            });
                        }
                        (AlterTableType::AtValidateConstraint, _) => {
                            self.validated.push((table.clone(), cmd.name.clone()));
                        }
                        (AlterTableType::AtAlterColumnType | AlterTableType::AtDropColumn, _) => {
                            self.columns.retain(|c| c.column.column != cmd.name || !table.same(&table_of(&c.column)));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    /// Forgets what the catalog said about the table's columns.
    fn forget_columns(&mut self, table: &Table) {
        self.columns.retain(|c| !table.same(&table_of(&c.column)));
    }

    /// `SET [LOCAL] lock_timeout …`, `RESET lock_timeout`.
    fn set(&mut self, v: &VariableSetStmt) {
        let on = match v.kind() {
            VariableSetKind::VarSetValue => !v.args.first().is_some_and(is_zero),
            _ => false,
        };
        self.assign(on, v.is_local);
    }

    /// `SELECT set_config('lock_timeout', '2s', is_local)`.
    fn set_config(&mut self, f: &FuncCall) {
        if strings(&f.funcname).last().map(String::as_str) != Some("set_config") {
            return;
        }
        let [name, value, local] = f.args.as_slice() else { return };
        if const_str(name).as_deref() != Some("lock_timeout") {
            return;
        }
        let local = matches!(const_val(local), Some(Val::Boolval(b)) if b.boolval);
        self.assign(!is_zero(value), local);
    }

    fn assign(&mut self, on: bool, local: bool) {
        if !local {
            self.lock_timeout = LockTimeout { session: on, local: None };
        } else if self.in_transaction() {
            // SET LOCAL outside a transaction block only draws a warning from
            // PostgreSQL and changes nothing.
            self.lock_timeout.local = Some(on);
        }
    }
}

/// The table a looked-up column belongs to, as the file named it.
fn table_of(c: &ColumnRef) -> Table {
    Table { schema: c.schema.clone(), name: c.table.clone() }
}

/// The column of a `CHECK (col IS NOT NULL)`, or of a PostgreSQL 18
/// `NOT NULL col` table constraint.
pub(crate) fn not_null_column(c: &Constraint) -> Option<String> {
    match c.contype() {
        ConstrType::ConstrCheck => match c.raw_expr.as_ref().and_then(|e| e.node.as_ref()) {
            Some(NodeEnum::NullTest(t)) if t.nulltesttype() == pg_query::protobuf::NullTestType::IsNotNull => {
                match t.arg.as_ref().and_then(|a| a.node.as_ref()) {
                    Some(NodeEnum::ColumnRef(r)) => strings(&r.fields).last().cloned(),
                    _ => None,
                }
            }
            _ => None,
        },
        ConstrType::ConstrNotnull => strings(&c.keys).first().cloned(),
        _ => None,
    }
}

fn const_val(node: &Node) -> Option<&Val> {
    match node.node.as_ref() {
        Some(NodeEnum::AConst(c)) => c.val.as_ref(),
        Some(NodeEnum::TypeCast(t)) => t.arg.as_deref().and_then(const_val),
        _ => None,
    }
}

fn const_str(node: &Node) -> Option<String> {
    match const_val(node)? {
        Val::Sval(s) => Some(s.sval.clone()),
        _ => None,
    }
}

/// Whether a lock_timeout value turns it off: `0`, `'0'`, `'0ms'`.
fn is_zero(node: &Node) -> bool {
    match const_val(node) {
        Some(Val::Ival(i)) => i.ival == 0,
        Some(Val::Fval(f)) => f.fval.parse::<f64>().is_ok_and(|v| v == 0.0),
        Some(Val::Sval(s)) => {
            let digits: String = s.sval.trim().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            digits.parse::<f64>().is_ok_and(|v| v == 0.0)
        }
        _ => false,
    }
}
