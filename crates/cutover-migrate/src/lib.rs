//! Versioned schema migrations: golang-migrate directories read as they are
//! (`source`), applied with one history row per attempt under an advisory
//! lock (`run`), and linted for lock-heavy statements with PostgreSQL's own
//! grammar (`lint`).

pub mod lint;
pub mod run;
pub mod source;
