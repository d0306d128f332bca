//! The file as text: line and column of a byte offset, the statements'
//! spans and display text, and the comments (the only text the linter reads
//! itself, for `-- cutover:lint-ignore`). Comments and token boundaries come
//! from PostgreSQL's scanner, so a `--` inside a string is not a comment.

use std::ops::Range;

use pg_query::protobuf::{ScanToken, Token};

/// How long a finding's statement text may be before it is cut.
const STATEMENT_CHARS: usize = 120;

pub(crate) struct Text<'a> {
    pub(crate) sql: &'a str,
    line_starts: Vec<usize>,
    /// The scanner's tokens, comments included; `Err` with the scanner's
    /// message when the file does not even scan (an unterminated string).
    pub(crate) tokens: Result<Vec<ScanToken>, String>,
}

impl<'a> Text<'a> {
    pub(crate) fn new(sql: &'a str) -> Self {
        let line_starts = std::iter::once(0).chain(sql.match_indices('\n').map(|(i, _)| i + 1)).collect();
        let tokens = match pg_query::scan(sql) {
            Ok(scan) => Ok(scan.tokens),
            Err(pg_query::Error::Scan(message)) => Err(message),
            Err(e) => Err(e.to_string()),
        };
        Text { sql, line_starts, tokens }
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub(crate) fn position(&self, at: usize) -> (u32, u32) {
        let at = self.floor(at);
        let line = self.line_starts.partition_point(|&start| start <= at).max(1);
        let start = self.line_starts[line - 1];
        let column = self.sql[start..at].chars().count() + 1;
        (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX))
    }

    /// The byte offset where a 1-based line starts.
    pub(crate) fn line_start(&self, line: usize) -> usize {
        self.line_starts.get(line.saturating_sub(1)).copied().unwrap_or(self.sql.len())
    }

    pub(crate) fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    /// A byte offset moved back onto a character boundary and into the file.
    fn floor(&self, at: usize) -> usize {
        let mut at = at.min(self.sql.len());
        while !self.sql.is_char_boundary(at) {
            at -= 1;
        }
        at
    }

    fn tokens(&self) -> &[ScanToken] {
        self.tokens.as_deref().unwrap_or(&[])
    }

    /// A statement's bytes, from its first token (past any comments that
    /// precede it) to its end, from the parser's `stmt_location` and
    /// `stmt_len` (0 meaning "to the end of the input").
    pub(crate) fn statement_span(&self, location: i32, len: i32) -> Range<usize> {
        let location = self.floor(usize::try_from(location).unwrap_or(0));
        let end = match usize::try_from(len) {
            Ok(0) | Err(_) => self.sql.len(),
            Ok(len) => self.floor(location + len),
        };
        let start = self
            .tokens()
            .iter()
            .filter(|t| !is_comment(t))
            .map(|t| usize::try_from(t.start).unwrap_or(0))
            .find(|&start| start >= location)
            .unwrap_or_else(|| location + self.sql[location..].len() - self.sql[location..].trim_start().len());
        start.min(end)..end
    }

    /// A statement's text for a finding: comments dropped, whitespace
    /// collapsed, cut to about 120 characters with an ellipsis.
    pub(crate) fn statement_text(&self, span: Range<usize>) -> String {
        let mut kept = String::new();
        let mut from = span.start;
        for t in self.tokens().iter().filter(|t| is_comment(t)) {
            let (start, end) = (self.floor(t.start.max(0) as usize), self.floor(t.end.max(0) as usize));
            if start < from || end > span.end {
                continue;
            }
            kept.push_str(&self.sql[from..start]);
            kept.push(' ');
            from = end;
        }
        kept.push_str(&self.sql[from..span.end]);
        let collapsed = kept.split_whitespace().collect::<Vec<_>>().join(" ");
        cut(&collapsed)
    }

    /// The text of the statement that contains a byte offset, for findings
    /// that are not tied to a parsed statement (a parse error): from the
    /// first token after the last `;` before it to the next `;`.
    pub(crate) fn statement_at(&self, at: usize) -> String {
        let tokens = self.tokens();
        let semicolon = |t: &&ScanToken| t.token() == Token::Ascii59;
        let start = tokens
            .iter()
            .rev()
            .filter(|t| (t.end.max(0) as usize) <= at)
            .find(semicolon)
            .map_or(0, |t| t.end.max(0) as usize);
        let end = tokens
            .iter()
            .filter(|t| (t.start.max(0) as usize) >= at)
            .find(semicolon)
            .map_or(self.sql.len(), |t| t.start.max(0) as usize);
        if tokens.is_empty() {
            // Without tokens (the file does not scan), the line is the best
            // statement text there is.
            let (line, _) = self.position(at);
            let start = self.line_start(line as usize);
            let end = self.line_start(line as usize + 1);
            return cut(&self.sql[start..end].split_whitespace().collect::<Vec<_>>().join(" "));
        }
        let span = self.statement_span(i32::try_from(start).unwrap_or(0), 0);
        self.statement_text(span.start.min(end)..end.max(span.start.min(end)))
    }

    /// The codes a `-- cutover:lint-ignore M010,M011` comment turns off,
    /// upper-cased; codes may be separated by commas or spaces.
    pub(crate) fn ignored_codes(&self) -> Vec<String> {
        self.tokens()
            .iter()
            .filter(|t| t.token() == Token::SqlComment)
            .filter_map(|t| self.sql.get(t.start.max(0) as usize..t.end.max(0) as usize))
            .filter_map(|comment| comment.trim_start_matches('-').trim().strip_prefix(super::IGNORE_DIRECTIVE))
            .flat_map(|codes| codes.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|code| !code.is_empty())
            .map(str::to_ascii_uppercase)
            .collect()
    }
}

pub(crate) fn is_comment(t: &ScanToken) -> bool {
    matches!(t.token(), Token::SqlComment | Token::CComment)
}

/// Cuts text to about [`STATEMENT_CHARS`] characters, on a word boundary
/// when one is near, ending in an ellipsis.
pub(crate) fn cut(s: &str) -> String {
    if s.chars().count() <= STATEMENT_CHARS {
        return s.to_owned();
    }
    let head: String = s.chars().take(STATEMENT_CHARS - 1).collect();
    let head = match head.rfind(' ') {
        Some(space) if space > STATEMENT_CHARS * 3 / 4 => &head[..space],
        _ => head.as_str(),
    };
    format!("{}…", head.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_characters_not_bytes() {
        let text = Text::new("SELECT 1;\n-- é\nSELECT 'é', 2;");
        assert_eq!(text.position(0), (1, 1));
        assert_eq!(text.position(10), (2, 1));
        let at = text.sql.rfind('2').unwrap_or(0);
        assert_eq!(text.position(at), (3, 13));
    }

    #[test]
    fn statement_text_drops_comments_and_collapses_whitespace() {
        let sql = "-- lead\nALTER TABLE t -- why\n  ADD COLUMN /* inline */ c int;";
        let text = Text::new(sql);
        let span = text.statement_span(0, i32::try_from(sql.len() - 1).unwrap_or(0));
        assert_eq!(text.position(span.start), (2, 1));
        assert_eq!(text.statement_text(span), "ALTER TABLE t ADD COLUMN c int");
    }

    #[test]
    fn long_statements_are_cut_with_an_ellipsis() {
        let long = format!("SELECT {}", vec!["column_name"; 40].join(", "));
        let cut = cut(&long);
        assert!(cut.ends_with('…'));
        assert!(cut.chars().count() <= STATEMENT_CHARS);
    }

    #[test]
    fn ignore_comments_are_read_from_comments_only() {
        let text = Text::new("-- cutover:lint-ignore m010, M011 M013\nSELECT '-- cutover:lint-ignore M001';");
        assert_eq!(text.ignored_codes(), ["M010", "M011", "M013"]);
    }
}
