//! The migration linter: finds the statements in a migration file that would
//! take a lock production traffic queues behind, rewrite a table, fail on a
//! table with rows, or break code that is still running, and says what to
//! write instead.
//!
//! It reads the file with PostgreSQL's own grammar (libpg_query), so it sees
//! the statements the server will see — comments, quoting, dollar-quoted
//! bodies and case included — and walks their parse trees, never their text.
//! It does not connect to a database (`crate::pending` reads what it is told
//! about one: column types, for M003): what it knows about a table comes from
//! the file alone (a table created earlier in the same file is new and empty,
//! so the lock rules leave it alone), or, for the pending files of a database
//! linted in order ([`Pending`]), from the files before it that have not run
//! either.
//!
//! Each rule has a code (`M001`…), a name, a severity, an explanation and a
//! safe alternative ([`RULES`]); `docs/lint.md` has a section per rule.
//!
//! ```
//! use cutover_migrate::lint::{lint_sql, Severity};
//!
//! let sql = "SET lock_timeout = '2s';\nCREATE INDEX orders_user_idx ON orders (user_id);\n";
//! let findings = lint_sql("0002_orders_user_idx.up.sql", sql, true);
//! assert_eq!(findings.len(), 1);
//! assert_eq!((findings[0].code, findings[0].line, findings[0].severity), ("M001", 2, Severity::Error));
//! assert!(findings[0].alternative.contains("CREATE INDEX CONCURRENTLY orders_user_idx ON orders"));
//! ```

mod context;
mod names;
mod rules;
mod text;

use serde::Serialize;

use context::{Carried, Cx};
use text::Text;

/// How bad a finding is: an error fails `cutover migrate lint` (exit code 1),
/// a warning is reported but passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One lint rule: what it catches and what to write instead, in general
/// terms (a [`Finding`] says it for the statement at hand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// `M000`…, stable: `-- cutover:lint-ignore` and CI configurations name it.
    pub code: &'static str,
    /// Kebab-case, e.g. `index-not-concurrent`.
    pub name: &'static str,
    /// The severity of its findings (a finding may be milder, see M003).
    pub severity: Severity,
    /// The lock or rewrite the statement takes, and why that hurts.
    pub explanation: &'static str,
    /// The safe way to get the same result.
    pub alternative: &'static str,
}

/// Every rule, in code order.
pub const RULES: &[Rule] = rules::ALL;

/// The rule with this code (`M001`), if there is one.
pub fn rule(code: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.code.eq_ignore_ascii_case(code))
}

/// The comment that turns rules off for a whole file:
/// `-- cutover:lint-ignore M010,M011`.
pub const IGNORE_DIRECTIVE: &str = "cutover:lint-ignore";

/// One problem in one statement of a migration file.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The file as the caller named it.
    pub file: String,
    /// 1-based line of the statement, or of the clause in it that the parser
    /// records a position for (a column or constraint definition).
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// The rule's code, e.g. `M001`.
    pub code: &'static str,
    /// The rule's name, e.g. `index-not-concurrent`.
    pub rule: &'static str,
    /// Usually the rule's severity; a few findings are milder (M003).
    pub severity: Severity,
    /// The statement's text, comments removed, whitespace collapsed, cut to
    /// about 120 characters.
    pub statement: String,
    /// What is wrong with this statement: the object, the lock, the effect.
    pub message: String,
    /// What to write instead, for this statement where it can be said.
    pub alternative: String,
}

/// Lints one migration file. `transactional` is false when the file opted
/// out of the per-migration transaction (its `-- cutover:no-transaction`
/// header). Findings come sorted by line, column and code; a file that does
/// not parse gives one `M000` finding.
pub fn lint_sql(file: &str, sql: &str, transactional: bool) -> Vec<Finding> {
    lint_in(file, sql, &parse(sql), transactional, &mut Carried::default())
}

/// Lints files that have not run yet, in the order they will run: a table
/// that an earlier one creates does not exist in the database yet, so in the
/// later files it is new and empty, as it is in its own file. Only for a
/// database's pending files: of files already applied, nothing is known.
///
/// ```
/// use cutover_migrate::lint::{Pending, lint_sql};
///
/// let create = "CREATE TABLE audit (id bigint, at timestamptz);";
/// let index = "CREATE INDEX audit_at ON audit (at);";
/// let mut pending = Pending::default();
/// assert!(pending.lint("7_audit.up.sql", create, true).is_empty());
/// assert!(pending.lint("8_audit_at.up.sql", index, true).is_empty());
/// // On its own, the index file may be indexing a table in use.
/// assert_eq!(lint_sql("8_audit_at.up.sql", index, true)[0].code, "M001");
/// ```
#[derive(Default)]
pub struct Pending {
    carried: Carried,
}

/// A column a file changes the type of (`ALTER COLUMN … TYPE`), named as
/// the file names it: what a caller looks up in the catalog for
/// [`Pending::knowing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRef {
    /// The schema as written, or empty (the search path decides).
    pub schema: String,
    pub table: String,
    pub column: String,
}

/// The type a column has now, read from the database's catalog by the
/// caller (the linter never connects): `pg_type.typname` and
/// `pg_attribute.atttypmod`, and `format_type` for messages.
#[derive(Debug, Clone)]
pub struct ColumnType {
    pub column: ColumnRef,
    /// `int4`, `varchar`, `numeric`…
    pub type_name: String,
    /// -1 when the type has no modifier (`varchar` without a length).
    pub typmod: i32,
    /// `integer`, `character varying(50)`…
    pub display: String,
    /// The expression and partial indexes that use the column: PostgreSQL
    /// rebuilds them on any type change, even one that rewrites no rows.
    pub expression_indexes: Vec<String>,
}

/// The columns whose type a parsed file changes (`ALTER COLUMN … TYPE`).
pub(crate) fn altered_columns(parsed: &pg_query::ParseResult) -> Vec<ColumnRef> {
    let mut out = Vec::new();
    for raw in &parsed.protobuf.stmts {
        if let Some(pg_query::NodeEnum::AlterTableStmt(a)) = raw.stmt.as_ref().and_then(|n| n.node.as_ref())
            && let Some(rv) = &a.relation
        {
            let altered =
                rules::alter_cmds(a).filter(|c| c.subtype() == pg_query::protobuf::AlterTableType::AtAlterColumnType);
            out.extend(altered.map(|cmd| ColumnRef {
                schema: rv.schemaname.clone(),
                table: rv.relname.clone(),
                column: cmd.name.clone(),
            }));
        }
    }
    out
}

impl Pending {
    /// A sequence whose linter knows the current types of these columns
    /// (read from the database the files are pending in), so M003 can tell
    /// an int → bigint change, and a widening that rewrites nothing, from
    /// the rest.
    pub fn knowing(columns: Vec<ColumnType>) -> Pending {
        Pending { carried: Carried::knowing(columns) }
    }

    /// Lints the next file of the sequence; see [`lint_sql`].
    pub fn lint(&mut self, file: &str, sql: &str, transactional: bool) -> Vec<Finding> {
        lint_in(file, sql, &parse(sql), transactional, &mut self.carried)
    }

    /// [`Pending::lint`] for a file the caller parsed already.
    pub(crate) fn lint_parsed(
        &mut self,
        file: &str,
        sql: &str,
        parsed: &pg_query::Result<pg_query::ParseResult>,
        transactional: bool,
    ) -> Vec<Finding> {
        lint_in(file, sql, parsed, transactional, &mut self.carried)
    }
}

/// A file read with PostgreSQL's grammar.
pub(crate) fn parse(sql: &str) -> pg_query::Result<pg_query::ParseResult> {
    pg_query::parse(sql, pg_query::ParserOptions::DEFAULT)
}

fn lint_in(
    file: &str,
    sql: &str,
    parsed: &pg_query::Result<pg_query::ParseResult>,
    transactional: bool,
    carried: &mut Carried,
) -> Vec<Finding> {
    let text = Text::new(sql);
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let (at, message) = rules::parse_error::locate(&text, e);
            let hit = rules::Hit::new(&rules::parse_error::RULE, message, rules::parse_error::RULE.alternative.into());
            let statement = text.statement_at(at);
            return vec![finding(file, &text, at, &statement, hit)];
        }
    };
    let ignored = text.ignored_codes();
    let mut cx = Cx::new(transactional, std::mem::take(carried));
    cx.wrapped = crate::source::own_transaction(&parsed.protobuf.stmts) == crate::source::OwnTransaction::Wrapped;
    let mut out = Vec::new();
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else { continue };
        let span = text.statement_span(raw.stmt_location, raw.stmt_len);
        let statement = text.statement_text(span.clone());
        let stmt = rules::Stmt { node };
        let mut hits = Vec::new();
        rules::check(&cx, &stmt, &mut hits);
        for hit in hits {
            if hit.rule.code == rules::missing_lock_timeout::RULE.code {
                cx.lock_timeout_reported = true;
            }
            let at = hit.at.unwrap_or(span.start);
            out.push(finding(file, &text, at, &statement, hit));
        }
        cx.observe(node, span.start);
    }
    let mut hits = Vec::new();
    rules::finish(&cx, &mut hits);
    for hit in hits {
        let at = hit.at.unwrap_or(0);
        let statement = text.statement_at(at);
        out.push(finding(file, &text, at, &statement, hit));
    }
    *carried = cx.carry();
    out.retain(|f| !ignored.iter().any(|code| code == f.code));
    out.sort_by(|a, b| (a.line, a.column, a.code).cmp(&(b.line, b.column, b.code)));
    out
}

fn finding(file: &str, text: &Text, at: usize, statement: &str, hit: rules::Hit) -> Finding {
    let (line, column) = text.position(at);
    Finding {
        file: file.to_owned(),
        line,
        column,
        code: hit.rule.code,
        rule: hit.rule.name,
        severity: hit.severity,
        statement: statement.to_owned(),
        message: hit.message,
        alternative: hit.alternative,
    }
}

#[cfg(test)]
mod tests {
    use super::rules::test::{check, check_no_tx, finding};

    #[test]
    fn a_pending_sequence_carries_new_tables_but_not_if_not_exists_ones() {
        let mut seq = super::Pending::default();
        assert!(
            seq.lint("1.up.sql", "CREATE TABLE a (id int);\nCREATE TABLE IF NOT EXISTS b (id int);", true).is_empty()
        );
        let f = seq.lint(
            "2.up.sql",
            "SET lock_timeout = '1s';\nCREATE INDEX ai ON a (id);\nCREATE INDEX bi ON b (id);",
            true,
        );
        let got: Vec<(&str, u32)> = f.iter().map(|f| (f.code, f.line)).collect();
        assert_eq!(got, [("M001", 3)], "only b, which may have existed, is flagged: {f:#?}");
    }

    #[test]
    fn files_without_statements_are_clean() {
        check("", &[]);
        check("-- nothing yet\n/* still nothing */\n", &[]);
        check_no_tx("\n-- cutover:no-transaction\n", &[]);
    }

    #[test]
    fn positions_skip_leading_comments_and_count_columns() {
        let f = finding("-- why\n/* more */\n  DROP TABLE legacy;", "M011");
        assert_eq!((f.line, f.column), (3, 3));
        assert_eq!(f.statement, "DROP TABLE legacy");
        let f = finding("SET lock_timeout = '2s'; ALTER TABLE t DROP COLUMN c;", "M011");
        assert_eq!((f.line, f.column), (1, 26));
    }

    #[test]
    fn windows_line_endings_count_the_same() {
        check("SET lock_timeout = '2s';\r\n\r\nDROP TABLE legacy;\r\n", &["M011@3"]);
    }

    #[test]
    fn findings_are_sorted_by_line_column_and_code() {
        check("DROP TABLE b; DROP TABLE a;\nDROP INDEX i;", &["M011@1", "M013@1", "M011@1", "M015@2"]);
    }

    #[test]
    fn lint_ignore_takes_several_codes_and_ignores_unknown_ones() {
        check("-- cutover:lint-ignore M011 M013, M999\nDROP TABLE a;\nDROP INDEX i;", &["M015@3"]);
        check("DROP TABLE a; -- cutover:lint-ignore M011,M013", &[]);
        // Only a `--` comment is a directive, not a string that looks like one.
        check("SELECT '-- cutover:lint-ignore M011';\nSET lock_timeout = '1s';\nDROP TABLE a;", &["M011@3"]);
    }

    #[test]
    fn schema_qualified_and_quoted_names_are_kept() {
        let f = finding("SET lock_timeout = '2s'; ALTER TABLE \"Sales\".\"Order Items\" DROP COLUMN \"Qty\";", "M011");
        assert!(f.message.starts_with("DROP COLUMN \"Qty\" of \"Sales\".\"Order Items\""), "{}", f.message);
    }

    #[test]
    fn statement_text_is_cut_at_about_120_characters() {
        let columns: Vec<String> = (0..40).map(|i| format!("ADD COLUMN column_{i} int")).collect();
        let sql = format!("SET lock_timeout = '2s'; ALTER TABLE t ADD COLUMN x int NOT NULL, {};", columns.join(", "));
        let f = finding(&sql, "M005");
        assert!(f.statement.ends_with('…') && f.statement.chars().count() <= 120, "{}", f.statement);
    }
}
