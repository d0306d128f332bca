//! Versioned schema migrations: golang-migrate directories read as they are
//! (`source`), applied with one history row per attempt under an advisory
//! lock (`run`), and linted for lock-heavy statements with PostgreSQL's own
//! grammar (`lint`); `pending` lints what a database has not applied yet,
//! with what its catalog says.

pub mod lint;
pub mod pending;
pub mod run;
pub mod source;
