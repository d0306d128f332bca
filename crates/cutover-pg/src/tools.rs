//! PostgreSQL's client programs (`pg_dump`, `pg_restore`): where they are,
//! and how to point them at a database without putting its password on a
//! command line (other users can read argv; the password goes in
//! `PGPASSWORD`, which only the child sees).

use crate::PgError;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

/// Where the client programs are.
#[derive(Clone, Debug, Default)]
pub struct Tools {
    /// A directory holding pg_dump and pg_restore; found when not given.
    pub bin: Option<PathBuf>,
}

impl Tools {
    pub fn new(bin: Option<PathBuf>) -> Tools {
        Tools { bin }
    }

    /// The program's path: the configured directory, `$CUTOVER_PG_BIN`, the
    /// newest `/usr/lib/postgresql/<major>/bin` that has it (a newer pg_dump
    /// reads older servers, not the other way round), else `$PATH`.
    pub fn program(&self, name: &str) -> PathBuf {
        if let Some(dir) = &self.bin {
            return dir.join(name);
        }
        if let Some(dir) = std::env::var_os("CUTOVER_PG_BIN").filter(|v| !v.is_empty()) {
            return PathBuf::from(dir).join(name);
        }
        let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin").join(name))))
            .filter(|(_, p): &(u32, PathBuf)| p.is_file())
            .collect();
        debian.sort_by_key(|(m, _)| std::cmp::Reverse(*m));
        debian.into_iter().next().map(|(_, p)| p).unwrap_or_else(|| PathBuf::from(name))
    }

    /// The major version of a client program (`pg_dump (PostgreSQL) 15.8` → 15).
    pub async fn major(&self, name: &str) -> Result<u32, PgError> {
        let path = self.program(name);
        let out = Command::new(&path).arg("--version").output().await.map_err(|e| not_found(&path, e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .filter_map(|w| w.split('.').next()?.parse::<u32>().ok())
            .next()
            .ok_or_else(|| PgError::Tool(format!("cannot read the version of {}: {}", path.display(), text.trim())))
    }

    /// A command for the program, connected to `dsn` through the
    /// environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD).
    pub fn command(&self, name: &str, dsn: &str) -> Result<Command, PgError> {
        let mut cmd = Command::new(self.program(name));
        for (k, v) in libpq_env(dsn)? {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        Ok(cmd)
    }
}

fn not_found(path: &Path, e: std::io::Error) -> PgError {
    PgError::Tool(format!(
        "cannot run {}: {e} (install PostgreSQL's client programs, or set pg_bin / CUTOVER_PG_BIN to their directory)",
        path.display()
    ))
}

/// The libpq environment for a DSN: every part the child needs, the
/// password included, none of it on the command line.
pub fn libpq_env(dsn: &str) -> Result<Vec<(&'static str, String)>, PgError> {
    let c: tokio_postgres::Config = dsn.parse().map_err(|e: tokio_postgres::Error| PgError::Dsn(e.to_string()))?;
    let mut env = vec![];
    if let Some(h) = c.get_hosts().first() {
        env.push((
            "PGHOST",
            match h {
                tokio_postgres::config::Host::Tcp(s) => s.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            },
        ));
    }
    if let Some(p) = c.get_ports().first() {
        env.push(("PGPORT", p.to_string()));
    }
    if let Some(u) = c.get_user() {
        env.push(("PGUSER", u.to_string()));
    }
    if let Some(d) = c.get_dbname() {
        env.push(("PGDATABASE", d.to_string()));
    }
    if let Some(p) = c.get_password() {
        env.push(("PGPASSWORD", String::from_utf8_lossy(p).into_owned()));
    }
    env.push(("PGCONNECT_TIMEOUT", "10".into()));
    env.push(("PGAPPNAME", "cutover".into()));
    Ok(env)
}

/// Runs a prepared command to its end; a failure is one sentence with the
/// last lines the program wrote to stderr.
pub async fn run(mut cmd: Command, what: &str) -> Result<(), PgError> {
    let program = cmd.as_std().get_program().to_owned();
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| not_found(Path::new(&program), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(PgError::Tool(format!("{what} failed ({}): {}", out.status, stderr_tail(&out.stderr))))
}

/// What a program said on stderr, on one line: its first error line (with
/// the "Command was" after it) when there is one, else its last lines.
pub fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if let Some(i) = lines.iter().position(|l| l.contains("ERROR:") || l.contains("error:") || l.contains("FATAL:")) {
        let end = (i + 2).min(lines.len());
        return lines[i..end].join(" / ");
    }
    let start = lines.len().saturating_sub(4);
    let tail = lines[start..].join(" / ");
    if tail.is_empty() { "no message".into() } else { tail }
}
