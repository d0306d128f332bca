//! Throwaway real PostgreSQL clusters for cutover's tests.
//!
//! Each [`PgCluster`] is a fresh `initdb` in a temporary directory under
//! `/tmp` (named `cutover-pg-*`), served on a free TCP port of 127.0.0.1 with
//! `trust` authentication for the `postgres` role and durability switched off
//! (`fsync`, `synchronous_commit`, `full_page_writes`) for speed. Dropping it
//! stops the server (`pg_ctl stop -m immediate`) and removes the directory.
//!
//! Most tests should not start their own cluster: [`shared`] starts one per
//! PostgreSQL major version per test process, lazily, and stops it when the
//! process exits; each test then creates its own database in it with a name
//! from [`unique_db_name`].
//!
//! The binaries come from `/usr/lib/postgresql/<major>/bin` (Debian's
//! packages; also `pg_config --bindir` when its major matches) or
//! `${CUTOVER_PG_ROOT:-/opt/cutover-pg}/<major>/bin`, where
//! `scripts/install-test-deps` installs PostgreSQL 13 and 16;
//! `CUTOVER_PG<major>_BIN` overrides both. SQL runs through the `psql`
//! binary, so this crate needs no PostgreSQL client library.
//!
//! When the tests run as root, the server runs as the `postgres` OS user
//! (through `runuser`), as PostgreSQL refuses to run as root.
//!
//! # Example
//!
//! ```
//! use cutover_testkit::{shared, unique_db_name};
//!
//! # fn main() -> Result<(), cutover_testkit::TestkitError> {
//! let pg = shared(15);
//! let db = unique_db_name("doc_example");
//! let dsn = pg.create_database(&db)?; // postgres://postgres@127.0.0.1:PORT/doc_example_...
//! assert!(dsn.starts_with("postgres://postgres@127.0.0.1:"));
//! pg.psql(&db, "create table t (id int primary key); insert into t values (1), (2);")?;
//! assert_eq!(pg.psql(&db, "select count(*) from t")?, "2");
//! # Ok(())
//! # }
//! ```
//!
//! A cluster of its own, e.g. to test against another major version:
//!
//! ```
//! # fn main() -> Result<(), cutover_testkit::TestkitError> {
//! let pg = cutover_testkit::PgCluster::start(13)?;
//! assert_eq!(pg.psql("postgres", "select current_setting('server_version_num')::int / 10000")?, "13");
//! // Stopped and removed here, when `pg` is dropped.
//! # Ok(())
//! # }
//! ```

mod error;
mod sys;

pub use error::TestkitError;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The major version [`PgCluster::start_default`] starts: Debian 12's.
pub const DEFAULT_MAJOR: u32 = 15;

/// Where `scripts/install-test-deps` puts majors other than Debian's, unless
/// `CUTOVER_PG_ROOT` says otherwise.
pub const DEFAULT_PG_ROOT: &str = "/opt/cutover-pg";

/// Name prefix of every cluster directory under `/tmp`.
pub const DIR_PREFIX: &str = "cutover-pg-";

/// The parent of cluster directories. Fixed rather than `$TMPDIR` so that the
/// Unix socket paths stay short and stale clusters are found again.
const TMP_ROOT: &str = "/tmp";
/// File in a cluster directory naming the test process that owns it.
const OWNER_FILE: &str = "cutover-owner";
/// How many free ports to try when the one picked gets taken meanwhile.
const START_ATTEMPTS: usize = 3;
/// `pg_ctl -t`: seconds to wait for a start or stop.
const PG_CTL_TIMEOUT_SECS: &str = "60";
/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1).
const MAX_IDENTIFIER_LEN: usize = 63;

/// A running throwaway PostgreSQL cluster. Stopped and deleted on drop.
#[derive(Debug)]
pub struct PgCluster {
    major: u32,
    port: u16,
    bin_dir: PathBuf,
    psql: PathBuf,
    dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    /// Run the server tools through `runuser -u postgres` (we are root).
    as_postgres: bool,
    /// Set once the server is stopped and the directory removed.
    shut_down: Mutex<bool>,
}

impl PgCluster {
    /// Initialises and starts a new cluster of PostgreSQL `major` (13, 15,
    /// 16, ...) on a free port of 127.0.0.1.
    ///
    /// # Errors
    ///
    /// [`TestkitError::BinariesNotFound`] when that major is not installed
    /// (run `scripts/install-test-deps`), or any failure of `initdb` or
    /// `pg_ctl start`, with the server log's end.
    pub fn start(major: u32) -> Result<Self, TestkitError> {
        let bin_dir = find_bin_dir(major)?;
        check_version(&bin_dir, major)?;
        let psql = find_psql(&bin_dir)?;
        let as_postgres = sys::is_root();
        let owner = if as_postgres { Some(postgres_user_ids()?) } else { None };
        reap_stale_clusters_once();

        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(TMP_ROOT)
            .map_err(|e| TestkitError::io(format!("create a directory under {TMP_ROOT}"), e))?
            .keep();
        // From here on, dropping `cluster` stops whatever got started and
        // removes the directory.
        let mut cluster = PgCluster {
            major,
            port: 0,
            bin_dir,
            psql,
            data_dir: dir.join("data"),
            socket_dir: dir.join("sock"),
            log_path: dir.join("postgres.log"),
            dir,
            as_postgres,
            shut_down: Mutex::new(false),
        };
        cluster.prepare_dir(owner)?;
        cluster.initdb()?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// [`PgCluster::start`] of the default major, [`DEFAULT_MAJOR`] (15).
    ///
    /// # Errors
    ///
    /// As [`PgCluster::start`].
    pub fn start_default() -> Result<Self, TestkitError> {
        Self::start(DEFAULT_MAJOR)
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PostgreSQL major version of the server.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// A libpq/tokio-postgres URL for database `db`:
    /// `postgres://postgres@127.0.0.1:PORT/DB` (no password: trust auth).
    pub fn dsn(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, percent_encode(db))
    }

    /// The directory of the server binaries used (`initdb`, `pg_ctl`,
    /// `postgres`, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server's log file. It is removed with the cluster: read it before
    /// the cluster is dropped.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The cluster's data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The `psql` binary used by [`PgCluster::psql`].
    pub fn psql_path(&self) -> &Path {
        &self.psql
    }

    /// Creates database `name` (taken literally, quoted as an identifier)
    /// and returns its [`dsn`](PgCluster::dsn).
    ///
    /// # Errors
    ///
    /// [`TestkitError::Psql`] when the database exists already or the
    /// server refuses.
    pub fn create_database(&self, name: &str) -> Result<String, TestkitError> {
        self.psql("postgres", &format!("CREATE DATABASE {}", quote_ident(name)))?;
        Ok(self.dsn(name))
    }

    /// Runs `sql` (one or more statements; psql meta-commands work too) in
    /// database `db` as `postgres` with `psql -X -q -A -t -v ON_ERROR_STOP=1`
    /// and returns its standard output, trimmed: unaligned, tuples only,
    /// columns separated by `|`, rows by newlines.
    ///
    /// # Errors
    ///
    /// [`TestkitError::Psql`] with psql's stderr when a statement fails or
    /// the connection does.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, TestkitError> {
        let port = self.port.to_string();
        let mut cmd = base_command(&self.psql, false);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", db])
            .args(["-f", "-"])
            .env("PGCONNECT_TIMEOUT", "30")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| TestkitError::io(format!("run {}", self.psql.display()), e))?;
        let stdin = child.stdin.take();
        // Feed stdin from another thread so that a large result cannot
        // deadlock against a large script.
        let output = std::thread::scope(|scope| {
            scope.spawn(move || {
                if let Some(mut stdin) = stdin {
                    // A write error means psql exited early; its exit
                    // status and stderr say why.
                    let _ = stdin.write_all(sql.as_bytes());
                }
            });
            child.wait_with_output()
        })
        .map_err(|e| TestkitError::io(format!("wait for {}", self.psql.display()), e))?;
        if !output.status.success() {
            return Err(TestkitError::Psql {
                db: db.to_owned(),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                sql: shorten(sql, 2000),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Stops the server and removes its directory now, reporting failure
    /// (dropping does the same but can only print errors).
    ///
    /// # Errors
    ///
    /// When `pg_ctl stop` fails and the postmaster is still running (the
    /// directory is then left for the next test process to clean up), or
    /// when the directory cannot be removed.
    pub fn stop(self) -> Result<(), TestkitError> {
        self.shutdown()
    }

    fn prepare_dir(&self, owner: Option<(u32, u32)>) -> Result<(), TestkitError> {
        let owner_file = self.dir.join(OWNER_FILE);
        let text = format!("pid={}\nbin_dir={}\n", std::process::id(), self.bin_dir.display());
        fs::write(&owner_file, text).map_err(|e| TestkitError::io(format!("write {}", owner_file.display()), e))?;
        fs::create_dir(&self.socket_dir)
            .map_err(|e| TestkitError::io(format!("create {}", self.socket_dir.display()), e))?;
        if let Some((uid, gid)) = owner {
            for path in [&self.dir, &self.socket_dir] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .map_err(|e| TestkitError::io(format!("chown {} to postgres", path.display()), e))?;
            }
        }
        Ok(())
    }

    fn tool(&self, name: &str) -> Command {
        base_command(&self.bin_dir.join(name), self.as_postgres)
    }

    fn initdb(&self) -> Result<(), TestkitError> {
        let mut cmd = self.tool("initdb");
        cmd.arg("-D").arg(&self.data_dir).args(["-A", "trust", "-U", "postgres", "--no-sync"]).args([
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        run(cmd).map(drop)
    }

    fn start_server(&mut self) -> Result<(), TestkitError> {
        let mut ports = Vec::new();
        loop {
            let port = free_port()?;
            ports.push(port);
            let log_before = fs::metadata(&self.log_path).map_or(0, |m| m.len());
            let options = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
                 -c max_prepared_transactions=10",
                self.socket_dir.display()
            );
            let mut cmd = self.tool("pg_ctl");
            cmd.args(["start", "-w", "-t", PG_CTL_TIMEOUT_SECS, "-D"])
                .arg(&self.data_dir)
                .arg("-l")
                .arg(&self.log_path)
                .arg("-o")
                .arg(options);
            let output = cmd.output().map_err(|e| TestkitError::io(format!("run {}", describe(&cmd)), e))?;
            if output.status.success() {
                self.port = port;
                return Ok(());
            }
            let log = read_from(&self.log_path, log_before);
            let port_taken = log.contains("Address already in use");
            if port_taken && ports.len() < START_ATTEMPTS {
                continue;
            }
            let mut log_tail = tail_lines(&log, 30);
            let pg_ctl_said = combined_output(&output);
            if !pg_ctl_said.is_empty() {
                log_tail.push_str("\n-- pg_ctl said:\n");
                log_tail.push_str(&pg_ctl_said);
            }
            return Err(TestkitError::StartFailed {
                major: self.major,
                ports,
                log_path: self.log_path.clone(),
                log_tail,
            });
        }
    }

    fn shutdown(&self) -> Result<(), TestkitError> {
        let mut done = lock(&self.shut_down);
        if *done {
            return Ok(());
        }
        // Leave the directory if the server may still be running: a later
        // test process finds and stops it (see `reap_stale_clusters`).
        stop_postmaster(&self.bin_dir, &self.data_dir, self.as_postgres)?;
        remove_dir(&self.dir)?;
        *done = true;
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!(
                "cutover-testkit: could not clean up the PostgreSQL {} cluster in {}: {e}",
                self.major,
                self.dir.display()
            );
        }
    }
}

// ------------------------------------------------------------------ shared --

type SharedSlot = Mutex<Option<Result<&'static PgCluster, String>>>;

static SHARED: OnceLock<Mutex<HashMap<u32, &'static SharedSlot>>> = OnceLock::new();
/// Every shared cluster started, for the exit handler.
static STARTED: Mutex<Vec<&'static PgCluster>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

/// The cluster of PostgreSQL `major` shared by the whole test process:
/// started on first use, stopped and removed when the process exits.
/// Create a database of your own in it ([`unique_db_name`],
/// [`PgCluster::create_database`]) rather than using `postgres`.
///
/// # Panics
///
/// When the cluster cannot be started (the message says why and what to
/// do); [`try_shared`] returns the error instead. A failed start is not
/// retried: later calls fail the same way at once.
pub fn shared(major: u32) -> &'static PgCluster {
    match try_shared(major) {
        Ok(cluster) => cluster,
        Err(e) => panic!("cutover-testkit: {e}"),
    }
}

/// [`shared`], returning an error instead of panicking.
///
/// # Errors
///
/// As [`PgCluster::start`] on the first call; later calls after a failed
/// start return [`TestkitError::SharedStartFailed`].
pub fn try_shared(major: u32) -> Result<&'static PgCluster, TestkitError> {
    let slot: &'static SharedSlot = {
        let mut map = lock(SHARED.get_or_init(Mutex::default));
        map.entry(major).or_insert_with(|| Box::leak(Box::new(Mutex::new(None))))
    };
    let mut slot = lock(slot);
    match &*slot {
        Some(Ok(cluster)) => return Ok(cluster),
        Some(Err(message)) => {
            return Err(TestkitError::SharedStartFailed { major, message: message.clone() });
        }
        None => {}
    }
    AT_EXIT.call_once(|| {
        if !sys::at_exit(stop_shared_clusters) {
            eprintln!(
                "cutover-testkit: atexit() failed; shared PostgreSQL clusters will be left \
                 running and cleaned up by the next test process"
            );
        }
    });
    match PgCluster::start(major) {
        Ok(cluster) => {
            let cluster: &'static PgCluster = Box::leak(Box::new(cluster));
            lock(&STARTED).push(cluster);
            *slot = Some(Ok(cluster));
            Ok(cluster)
        }
        Err(e) => {
            *slot = Some(Err(e.to_string()));
            Err(e)
        }
    }
}

/// Exit handler: statics are never dropped, so stop the shared clusters here.
extern "C" fn stop_shared_clusters() {
    // Unwinding out of an `extern "C"` function aborts: catch everything.
    let _ = std::panic::catch_unwind(|| {
        let clusters = std::mem::take(&mut *lock(&STARTED));
        for cluster in clusters {
            if let Err(e) = cluster.shutdown() {
                eprintln!("cutover-testkit: could not stop the shared PostgreSQL {} cluster: {e}", cluster.major);
            }
        }
    });
}

/// A database name unique in this test process and across concurrent test
/// processes: `prefix` (lowercased, anything but `[a-z0-9_]` turned into
/// `_`, shortened to fit) + `_<pid>_<counter>`, at most 63 bytes, safe to
/// use unquoted in SQL and in a URL.
pub fn unique_db_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("_{}_{n}", std::process::id());
    let mut name: String =
        prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    if name.is_empty() {
        name.push_str("db");
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "db_");
    }
    name.truncate(MAX_IDENTIFIER_LEN.saturating_sub(suffix.len()));
    name + &suffix
}

// ---------------------------------------------------------- finding things --

/// `${CUTOVER_PG_ROOT:-/opt/cutover-pg}`.
pub fn pg_root() -> PathBuf {
    std::env::var_os("CUTOVER_PG_ROOT")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_PG_ROOT), PathBuf::from)
}

/// The directory holding `initdb`, `pg_ctl` and `postgres` of PostgreSQL
/// `major`: `$CUTOVER_PG<major>_BIN` if set, else the first of
/// `/usr/lib/postgresql/<major>/bin`, `pg_config --bindir` (if its major
/// matches) and `${CUTOVER_PG_ROOT:-/opt/cutover-pg}/<major>/bin` that has
/// them.
///
/// # Errors
///
/// [`TestkitError::BinariesNotFound`] (naming `scripts/install-test-deps`)
/// or [`TestkitError::BadBinOverride`].
pub fn find_bin_dir(major: u32) -> Result<PathBuf, TestkitError> {
    if let Some(dir) = std::env::var_os(format!("CUTOVER_PG{major}_BIN")).filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        return if has_server_binaries(&dir) { Ok(dir) } else { Err(TestkitError::BadBinOverride { major, dir }) };
    }
    let mut searched = Vec::new();
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    if has_server_binaries(&debian) {
        return Ok(debian);
    }
    searched.push(debian);
    if let Some(dir) = pg_config_bindir(major) {
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        searched.push(dir);
    }
    let installed = pg_root().join(major.to_string()).join("bin");
    if has_server_binaries(&installed) {
        return Ok(installed);
    }
    searched.push(installed);
    Err(TestkitError::BinariesNotFound { major, searched })
}

fn pg_config_bindir(major: u32) -> Option<PathBuf> {
    let capture = |arg: &str| -> Option<String> {
        let output = base_command(Path::new("pg_config"), false).arg(arg).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    if parse_major(&capture("--version")?) != Some(major) {
        return None;
    }
    Some(PathBuf::from(capture("--bindir")?))
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"].iter().all(|name| is_executable(&dir.join(name)))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The major version in `postgres (PostgreSQL) 15.18 (Debian ...)` or
/// `PostgreSQL 13.23`.
fn parse_major(version: &str) -> Option<u32> {
    let mut words = version.split_whitespace();
    words.find(|w| w.contains("PostgreSQL"))?;
    let number = words.next()?;
    let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn check_version(bin_dir: &Path, major: u32) -> Result<(), TestkitError> {
    let postgres = bin_dir.join("postgres");
    let mut cmd = base_command(&postgres, false);
    cmd.arg("--version");
    let found = String::from_utf8_lossy(&run(cmd)?.stdout).trim().to_owned();
    if parse_major(&found) == Some(major) {
        Ok(())
    } else {
        Err(TestkitError::VersionMismatch { expected: major, path: postgres, found })
    }
}

/// `$CUTOVER_PSQL`, else the major's own `psql`, else the newest Debian one,
/// else `/usr/bin/psql`.
fn find_psql(bin_dir: &Path) -> Result<PathBuf, TestkitError> {
    if let Some(path) = std::env::var_os("CUTOVER_PSQL").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return if is_executable(&path) { Ok(path) } else { Err(TestkitError::PsqlNotFound { searched: vec![path] }) };
    }
    let mut candidates = vec![bin_dir.join("psql")];
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin").join("psql")))
        })
        .collect();
    debian.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    candidates.extend(debian.into_iter().map(|(_, path)| path));
    candidates.push(PathBuf::from("/usr/bin/psql"));
    match candidates.iter().find(|path| is_executable(path)) {
        Some(path) => Ok(path.clone()),
        None => Err(TestkitError::PsqlNotFound { searched: candidates }),
    }
}

/// Uid and gid of the `postgres` OS user.
fn postgres_user_ids() -> Result<(u32, u32), TestkitError> {
    static IDS: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    let ids = IDS.get_or_init(|| {
        let id = |flag: &str| -> Option<u32> {
            let output = base_command(Path::new("id"), false).args([flag, "postgres"]).output().ok()?;
            if !output.status.success() {
                return None;
            }
            String::from_utf8_lossy(&output.stdout).trim().parse().ok()
        };
        Some((id("-u")?, id("-g")?))
    });
    ids.ok_or(TestkitError::NoPostgresUser)
}

fn runuser() -> &'static Path {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .into_iter()
        .map(Path::new)
        .find(|p| is_executable(p))
        .unwrap_or(Path::new("runuser"))
}

// ---------------------------------------------------------------- running --

/// A command for `program`, through `runuser -u postgres --` if
/// `as_postgres`, with no `PG*` variables of ours leaking in, C messages,
/// `/` as working directory and no stdin.
fn base_command(program: &Path, as_postgres: bool) -> Command {
    let mut cmd = if as_postgres {
        let mut cmd = Command::new(runuser());
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    };
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("LC_ALL", "C").current_dir("/").stdin(Stdio::null());
    cmd
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(mut cmd: Command) -> Result<Output, TestkitError> {
    let output = cmd.output().map_err(|e| TestkitError::io(format!("run `{}`", describe(&cmd)), e))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(TestkitError::Command {
            command: describe(&cmd),
            status: output.status.to_string(),
            output: combined_output(&output),
        })
    }
}

fn combined_output(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    [stderr.trim(), stdout.trim()].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("\n")
}

fn free_port() -> Result<u16, TestkitError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| TestkitError::io("bind a free port on 127.0.0.1", e))?;
    let port = listener.local_addr().map_err(|e| TestkitError::io("read the port of a bound socket", e))?.port();
    Ok(port)
}

// --------------------------------------------------------------- stopping --

/// Stops the postmaster of `data_dir`, if one runs: `pg_ctl stop -m
/// immediate`, and if that fails, SIGQUIT then SIGKILL to the pid in
/// `postmaster.pid` — only after checking that this pid is a process serving
/// `data_dir`.
fn stop_postmaster(bin_dir: &Path, data_dir: &Path, as_postgres: bool) -> Result<(), TestkitError> {
    let pid_file = data_dir.join("postmaster.pid");
    if !pid_file.exists() {
        return Ok(());
    }
    let mut cmd = base_command(&bin_dir.join("pg_ctl"), as_postgres);
    cmd.args(["stop", "-m", "immediate", "-w", "-t", PG_CTL_TIMEOUT_SECS, "-D"]).arg(data_dir);
    let Err(pg_ctl_error) = run(cmd) else {
        return Ok(());
    };
    let Some(pid) = read_postmaster_pid(&pid_file) else {
        // No pid file any more (or an unreadable one): nothing runs there.
        return if pid_file.exists() { Err(pg_ctl_error) } else { Ok(()) };
    };
    if !is_postmaster_of(pid, data_dir) {
        // Stale pid file: that postmaster is gone (or the pid is reused by
        // another process, which must not be touched).
        return Ok(());
    }
    for signal in [sys::SIGQUIT, sys::SIGKILL] {
        sys::send_signal(pid, signal);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !process_alive(pid) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Err(pg_ctl_error)
}

fn read_postmaster_pid(pid_file: &Path) -> Option<i32> {
    fs::read_to_string(pid_file).ok()?.lines().next()?.trim().parse().ok()
}

/// Whether process `pid` runs with `-D data_dir` on its command line, as
/// `pg_ctl` starts the postmaster.
fn is_postmaster_of(pid: i32, data_dir: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let data_dir = data_dir.as_os_str().as_encoded_bytes();
    process_alive(pid) && cmdline.split(|b| *b == 0).any(|arg| arg == data_dir)
}

/// Whether `pid` exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself
    // contain parentheses.
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X" | "x") | None)
}

fn remove_dir(dir: &Path) -> Result<(), TestkitError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TestkitError::io(format!("remove {}", dir.display()), e)),
    }
}

/// Once per process, before the first cluster starts: stop and remove the
/// clusters of test processes that are gone (killed, or interrupted with
/// Ctrl-C, before they could clean up).
fn reap_stale_clusters_once() {
    static REAPED: Once = Once::new();
    REAPED.call_once(reap_stale_clusters);
}

fn reap_stale_clusters() {
    let Ok(entries) = fs::read_dir(TMP_ROOT) else {
        return;
    };
    let as_postgres = sys::is_root();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        // No (readable) owner file: not ours, someone else's, or still being
        // set up.
        let Ok(owner) = fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue;
        };
        let field = |key: &str| owner.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix('='));
        let (Some(pid), Some(bin_dir)) = (field("pid").and_then(|p| p.parse::<i32>().ok()), field("bin_dir")) else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        let result =
            stop_postmaster(Path::new(bin_dir), &dir.join("data"), as_postgres).and_then(|()| remove_dir(&dir));
        match result {
            Ok(()) => {
                eprintln!("cutover-testkit: removed the stale cluster {} left by test process {pid}", dir.display())
            }
            Err(e) => eprintln!("cutover-testkit: could not remove the stale cluster {}: {e}", dir.display()),
        }
    }
}

// ---------------------------------------------------------------- helpers --

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `name` as a double-quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}… ({} bytes in all)", &s[..i], s.len()),
        None => s.to_owned(),
    }
}

/// The bytes of `path` from `offset` on, lossily as text ("" if unreadable).
fn read_from(path: &Path, offset: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests;
