//! The testkit's error type.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while starting, using or stopping a
/// throwaway PostgreSQL cluster. Each message says what to do about it.
///
/// `Debug` shows the variant's name and that message, so that a test
/// returning `Result<(), TestkitError>` prints the advice when it fails.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// No directory with `initdb`, `pg_ctl` and `postgres` for this major.
    #[error(
        "PostgreSQL {major} is not installed: no initdb, pg_ctl and postgres in {searched}. \
         Run `sudo scripts/install-test-deps` from the repository root (it installs 15 from \
         Debian and 13 and 16 under $CUTOVER_PG_ROOT, default /opt/cutover-pg), or set \
         CUTOVER_PG{major}_BIN to a bin directory that has them",
        searched = join_paths(searched)
    )]
    BinariesNotFound {
        /// The PostgreSQL major version asked for.
        major: u32,
        /// The directories that were looked in.
        searched: Vec<PathBuf>,
    },

    /// `CUTOVER_PG<major>_BIN` is set but does not point at usable binaries.
    #[error(
        "CUTOVER_PG{major}_BIN={dir} has no initdb, pg_ctl and postgres: fix or unset it \
         (then `scripts/install-test-deps` provides the default location)",
        dir = dir.display()
    )]
    BadBinOverride {
        /// The PostgreSQL major version asked for.
        major: u32,
        /// The value of the variable.
        dir: PathBuf,
    },

    /// The binaries found are of another major version.
    #[error(
        "{path} reports `{found}`, which is not PostgreSQL {expected}: fix CUTOVER_PG{expected}_BIN \
         or the install under $CUTOVER_PG_ROOT (re-run `sudo scripts/install-test-deps`)",
        path = path.display()
    )]
    VersionMismatch {
        /// The PostgreSQL major version asked for.
        expected: u32,
        /// The binary that was asked for its version.
        path: PathBuf,
        /// What it answered.
        found: String,
    },

    /// No `psql` client anywhere.
    #[error(
        "no psql client found in {searched}: run `sudo scripts/install-test-deps` (it installs \
         Debian's PostgreSQL 15 with its client) or set CUTOVER_PSQL to a psql binary",
        searched = join_paths(searched)
    )]
    PsqlNotFound {
        /// The places that were looked in.
        searched: Vec<PathBuf>,
    },

    /// The tests run as root but there is no `postgres` user to run the
    /// server as.
    #[error(
        "the tests run as root, but there is no `postgres` OS user to run the server as \
         (PostgreSQL refuses to run as root): run `sudo scripts/install-test-deps`, which creates it"
    )]
    NoPostgresUser,

    /// An I/O operation of the testkit itself failed.
    #[error("could not {action}: {source}")]
    Io {
        /// What was being done, e.g. "create a temporary directory under /tmp".
        action: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A PostgreSQL tool (initdb, pg_ctl, ...) failed.
    #[error("`{command}` failed ({status}); its output:\n{output}")]
    Command {
        /// The command line that was run.
        command: String,
        /// How it ended, e.g. "exit status: 1".
        status: String,
        /// Its stderr and stdout.
        output: String,
    },

    /// The server did not come up.
    #[error(
        "PostgreSQL {major} did not start (tried port(s) {ports:?}); see the server log {log}, \
         which ends with:\n{log_tail}",
        log = log_path.display()
    )]
    StartFailed {
        /// The PostgreSQL major version.
        major: u32,
        /// The ports tried, in order.
        ports: Vec<u16>,
        /// The server's log file (removed with the cluster).
        log_path: PathBuf,
        /// The last lines of that log and of pg_ctl's own output.
        log_tail: String,
    },

    /// `psql` reported an error (bad SQL, missing database, ...).
    #[error("psql on database `{db}` failed ({status}): {stderr}\n-- SQL was:\n{sql}")]
    Psql {
        /// The database the statement ran in.
        db: String,
        /// How psql ended.
        status: String,
        /// psql's stderr: the server's error message.
        stderr: String,
        /// The SQL sent (shortened if long).
        sql: String,
    },

    /// The process-wide shared cluster for this major failed to start
    /// earlier; it is not retried.
    #[error("the shared PostgreSQL {major} cluster of this test process failed to start earlier: {message}")]
    SharedStartFailed {
        /// The PostgreSQL major version.
        major: u32,
        /// The first error, rendered.
        message: String,
    },
}

impl fmt::Debug for TestkitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::BinariesNotFound { .. } => "BinariesNotFound",
            Self::BadBinOverride { .. } => "BadBinOverride",
            Self::VersionMismatch { .. } => "VersionMismatch",
            Self::PsqlNotFound { .. } => "PsqlNotFound",
            Self::NoPostgresUser => "NoPostgresUser",
            Self::Io { .. } => "Io",
            Self::Command { .. } => "Command",
            Self::StartFailed { .. } => "StartFailed",
            Self::Psql { .. } => "Psql",
            Self::SharedStartFailed { .. } => "SharedStartFailed",
        };
        write!(f, "{name}: {self}")
    }
}

impl TestkitError {
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Self {
        Self::Io { action: action.into(), source }
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(nowhere)".to_owned();
    }
    paths.iter().map(|p: &PathBuf| Path::display(p).to_string()).collect::<Vec<_>>().join(", ")
}
