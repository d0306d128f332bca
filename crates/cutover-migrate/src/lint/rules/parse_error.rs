//! M000 parse-error: the file is not SQL that PostgreSQL accepts.
//!
//! libpg_query's error carries a message but not the position, so the
//! position is found again: the smallest prefix of the file (in tokens) that
//! fails with the same message ends at the offending token, because the
//! parser reads left to right and stops at the first token it cannot take.

use pg_query::protobuf::Token;

use crate::lint::text::{Text, is_comment};
use crate::lint::{Rule, Severity};

pub(crate) const RULE: Rule = Rule {
    code: "M000",
    name: "parse-error",
    severity: Severity::Error,
    explanation: "PostgreSQL's parser rejects the file, so the migration fails as soon as it runs, and nothing else in \
                  it could be linted.",
    alternative: "Fix the statement at the line shown; psql -f on a scratch database shows PostgreSQL's own message \
                  and position.",
};

/// Where the parse error is (a byte offset) and the message to show.
pub(crate) fn locate(text: &Text, e: &pg_query::Error) -> (usize, String) {
    let message = match e {
        pg_query::Error::Parse(m) | pg_query::Error::Scan(m) => m.clone(),
        other => other.to_string(),
    };
    let at = match (e, &text.tokens) {
        (pg_query::Error::Conversion(_), _) => text.sql.find('\0').unwrap_or(0),
        (_, Err(scan_message)) => scan_error_at(text, scan_message),
        (_, Ok(tokens)) if message.ends_with("at end of input") => last_statement_start(tokens),
        (_, Ok(tokens)) => {
            let fails_here = |k: usize| {
                let end = tokens[k].end.max(0) as usize;
                matches!(text.sql.get(..end).map(|p| pg_query::parse(p, pg_query::ParserOptions::DEFAULT)),
                         Some(Err(pg_query::Error::Parse(m))) if m == message)
            };
            let indexes: Vec<usize> = (0..tokens.len()).collect();
            let k = indexes.partition_point(|&k| !fails_here(k));
            match tokens.get(k) {
                Some(t) => t.start.max(0) as usize,
                None => last_statement_start(tokens),
            }
        }
    };
    (at, format!("the file does not parse: {message}"))
}

/// The first token of the last statement: where the file ends mid-statement.
fn last_statement_start(tokens: &[pg_query::protobuf::ScanToken]) -> usize {
    let after = tokens.iter().rposition(|t| t.token() == Token::Ascii59).map_or(0, |i| i + 1);
    tokens[after..].iter().find(|t| !is_comment(t)).or_else(|| tokens.last()).map_or(0, |t| t.start.max(0) as usize)
}

/// Where a scanner error (an unterminated string or comment) starts. The
/// scanner quotes everything from the unterminated token to the end of the
/// file after "at or near", so that text's length gives the offset; failing
/// that, the first line at which a prefix of the file no longer scans.
fn scan_error_at(text: &Text, message: &str) -> usize {
    let near = message.split_once(" at or near \"").and_then(|(_, rest)| rest.strip_suffix('"'));
    if let Some(near) = near
        && !near.is_empty()
        && text.sql.ends_with(near)
    {
        return text.sql.len() - near.len();
    }
    let fails_by = |line: usize| {
        let end = text.line_start(line + 1);
        matches!(text.sql.get(..end).map(pg_query::scan), Some(Err(_)))
    };
    let lines: Vec<usize> = (1..=text.line_count()).collect();
    let line = lines.get(lines.partition_point(|&l| !fails_by(l))).copied().unwrap_or(1);
    text.line_start(line)
}

#[cfg(test)]
mod tests {
    use crate::lint::rules::test::{check, finding};

    #[test]
    fn a_syntax_error_is_found_at_its_line() {
        check("ALTER TABLE t ADD COLUMN c int;\n\nALTER TABLEE t ADD COLUMN d int;\n", &["M000@3"]);
        check("CREATE TABLE t (\n  a int,\n  b int,,\n  c int\n);", &["M000@3"]);
    }

    #[test]
    fn the_message_is_postgresqls() {
        let f = finding("SELECT 1;\nSELEC 2;", "M000");
        assert_eq!((f.line, f.column), (2, 1));
        assert_eq!(f.message, "the file does not parse: syntax error at or near \"SELEC\"");
        assert_eq!(f.statement, "SELEC 2");
    }

    #[test]
    fn a_file_that_ends_mid_statement_points_at_that_statement() {
        check("SELECT 1;\n-- unfinished\nALTER TABLE t\n  ALTER COLUMN c TYPE\n", &["M000@3"]);
    }

    #[test]
    fn an_unterminated_string_is_found_at_its_line() {
        check("SELECT 'a\nb';\nSELECT 1;\nSELECT 'oops;\nSELECT 2;\n", &["M000@4"]);
    }

    #[test]
    fn an_unterminated_comment_is_found_at_its_line() {
        check("SELECT 1;\n/* a comment\n that never ends;\nSELECT 2;\n", &["M000@2"]);
    }

    #[test]
    fn lint_ignore_does_not_hide_a_parse_error() {
        check("-- cutover:lint-ignore M000\nSELEC 1;", &["M000@2"]);
    }
}
