//! Versioned migrations against real PostgreSQL, and the linter's corpus.

mod lint;
mod run;
