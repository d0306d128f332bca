//! Diagnostics: problems in a plan are data, reported all at once, each at a
//! `file:line:column`.

use std::fmt;
use std::sync::Arc;

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

/// A source file's text with the means to turn byte offsets into positions.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: Arc<str>,
    pub text: Arc<str>,
    line_starts: Arc<[usize]>,
}

impl Source {
    pub fn new(path: impl Into<Arc<str>>, text: impl Into<Arc<str>>) -> Self {
        let text: Arc<str> = text.into();
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source { path: path.into(), text, line_starts: starts.into() }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self.text.get(start..offset).map(|s| s.chars().count()).unwrap_or(offset - start);
        (line + 1, col + 1)
    }

    /// A position at the start of `span`.
    pub fn pos(&self, span: Span) -> Pos {
        let (line, column) = self.line_col(span.start);
        Pos { file: self.path.clone(), line, column }
    }
}

/// Where something was written: `file:line:column`, 1-based.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// A position that only names a file (e.g. a file that could not be read).
    pub fn file(path: impl Into<Arc<str>>) -> Self {
        Pos { file: path.into(), line: 1, column: 1 }
    }

    /// The position `offset` characters further on the same line; used to point
    /// inside a string (a CEL or template error at a column of the expression).
    pub fn shifted(&self, line_delta: usize, column: usize) -> Pos {
        if line_delta == 0 {
            Pos { file: self.file.clone(), line: self.line, column: self.column + column }
        } else {
            Pos { file: self.file.clone(), line: self.line + line_delta, column: column + 1 }
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Codes that are warnings: the plan is still valid.
pub const WARNINGS: &[&str] = &["inline-password"];

/// One problem found in a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub pos: Pos,
    /// A stable code, e.g. `unknown-key`, so tools and tests can match on it.
    pub code: &'static str,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(pos: Pos, code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic { pos, code, message: message.into(), help: None }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds "did you mean `PREFIXname`?" when `word` is a likely typo of one of `names`.
    pub fn suggest(self, word: &str, names: &[&str], prefix: &str) -> Self {
        match crate::shape::closest(word, names) {
            Some(c) => self.with_help(format!("did you mean `{prefix}{c}`?")),
            None => self,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = if WARNINGS.contains(&self.code) { "warning" } else { "error" };
        write!(f, "{}: {level}[{}]: {}", self.pos, self.code, self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// All the problems of one plan, in source order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
    /// Sorts by file, line and column, and drops exact duplicates.
    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| (&a.pos.file, a.pos.line, a.pos.column).cmp(&(&b.pos.file, b.pos.line, b.pos.column)));
        self.0.dedup();
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let s = Source::new("p.toml", "ab\nçd = 1\n");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(3), (2, 1));
        // 'ç' is two bytes: byte 5 is the third character of line 2.
        assert_eq!(s.line_col(5), (2, 2));
        assert_eq!(s.line_col(6), (2, 3));
    }
}
