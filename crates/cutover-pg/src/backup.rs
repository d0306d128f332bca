//! `pg.backup` / `pg.restore`: a `pg_dump` archive of a database taken
//! before its switch, kept in a backups directory, and restored from there
//! by a step or by hand.
//!
//! Each backup is two files: `<id>.dump` (pg_dump's custom format) and
//! `<id>.json`, its manifest entry (database, server version, size, SHA-256,
//! time). One file per backup, so backups of a whole fleet taken at once
//! never race on a shared manifest; the manifest is the directory's
//! `*.json`. The archive is written as `<id>.dump.partial` and renamed when
//! complete, and its entry written last: a listed backup is whole.

use crate::tools::{self, Tools};
use crate::{PgError, connect, describe};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Backup {
    pub id: String,
    pub database: String,
    /// Where it came from (host:port/db, never a password).
    pub server: String,
    pub server_version: String,
    /// The archive's file name, in the backups directory.
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub seconds: f64,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// Free text: the run and target that took it.
    #[serde(default)]
    pub label: String,
}

/// Takes a backup of the database `dsn` names into `dir`.
pub async fn backup(dsn: &str, dir: &Path, tools: &Tools, label: &str) -> Result<Backup, PgError> {
    let t0 = Instant::now();
    let c = connect(dsn, CONNECT_TIMEOUT).await?;
    let r = c
        .query_one(
            "SELECT current_database()::text, current_setting('server_version'), pg_encoding_to_char(d.encoding)::text, \
                    d.datcollate::text, d.datctype::text FROM pg_database d WHERE d.datname = current_database()",
            &[],
        )
        .await
        .map_err(PgError::query)?;
    let (database, version): (String, String) = (r.get(0), r.get(1));
    std::fs::create_dir_all(dir).map_err(|e| PgError::Other(format!("cannot create {}: {e}", dir.display())))?;
    let stamp = jiff::Timestamp::now();
    let base = format!("{}-{}", crate::file_safe(&database), stamp.strftime("%Y%m%dT%H%M%SZ"));
    let mut id = base.clone();
    let mut n = 1;
    while dir.join(format!("{id}.dump")).exists() || dir.join(format!("{id}.json")).exists() {
        n += 1;
        id = format!("{base}-{n}");
    }
    let file = format!("{id}.dump");
    let partial = dir.join(format!("{file}.partial"));
    let mut dump = tools.command("pg_dump", dsn)?;
    dump.args(["--format=custom", "--file"]).arg(&partial);
    if let Err(e) = tools::run(dump, &format!("pg_dump of {}", describe(dsn))).await {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let path = dir.join(&file);
    std::fs::rename(&partial, &path)
        .map_err(|e| PgError::Other(format!("cannot rename {}: {e}", partial.display())))?;
    let (size, sha256) = digest(&path)?;
    let b = Backup {
        id: id.clone(),
        database,
        server: describe(dsn),
        server_version: version,
        file,
        size,
        sha256,
        created_at: stamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        seconds: t0.elapsed().as_secs_f64(),
        encoding: r.get(2),
        collate: r.get(3),
        ctype: r.get(4),
        label: label.to_string(),
    };
    let json = serde_json::to_string_pretty(&b).map_err(|e| PgError::Other(e.to_string()))?;
    let entry = dir.join(format!("{id}.json"));
    let tmp = dir.join(format!("{id}.json.partial"));
    std::fs::write(&tmp, json + "\n")
        .and_then(|_| std::fs::rename(&tmp, &entry))
        .map_err(|e| PgError::Other(format!("cannot write {}: {e}", entry.display())))?;
    Ok(b)
}

/// Size and SHA-256 (hex) of a file.
fn digest(path: &Path) -> Result<(u64, String), PgError> {
    let mut f =
        std::fs::File::open(path).map_err(|e| PgError::Other(format!("cannot read {}: {e}", path.display())))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| PgError::Other(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        ctx.update(&buf[..n]);
    }
    let hex: String = ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok((size, hex))
}

/// Every backup listed in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<Backup>, PgError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(PgError::Other(format!("cannot read {}: {e}", dir.display()))),
    };
    let mut out = vec![];
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let text =
                std::fs::read_to_string(&p).map_err(|e| PgError::Other(format!("cannot read {}: {e}", p.display())))?;
            let b: Backup = serde_json::from_str(&text)
                .map_err(|e| PgError::Other(format!("{} is not a backup manifest entry: {e}", p.display())))?;
            out.push(b);
        }
    }
    out.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    Ok(out)
}

/// A backup by id, or by the path of its archive.
pub fn find(dir: &Path, from: &str) -> Result<(Backup, PathBuf), PgError> {
    let as_path = Path::new(from);
    let (dir, id) = if from.ends_with(".dump") {
        let d = as_path.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf);
        let d = d.unwrap_or_else(|| dir.to_path_buf());
        let id = as_path.file_name().and_then(|f| f.to_str()).unwrap_or(from).trim_end_matches(".dump").to_string();
        (d, id)
    } else {
        (dir.to_path_buf(), from.to_string())
    };
    let entry = dir.join(format!("{id}.json"));
    let text = std::fs::read_to_string(&entry).map_err(|_| {
        let known = list(&dir).map(|l| l.len()).unwrap_or(0);
        PgError::Other(format!(
            "no backup `{id}` in {} ({known} backup(s) there; `cutover pg backups --dir {}` lists them)",
            dir.display(),
            dir.display()
        ))
    })?;
    let b: Backup = serde_json::from_str(&text)
        .map_err(|e| PgError::Other(format!("{} is not a backup manifest entry: {e}", entry.display())))?;
    let path = dir.join(&b.file);
    Ok((b, path))
}

#[derive(Clone, Debug, Serialize)]
pub struct Restored {
    pub id: String,
    pub database: String,
    pub created_database: bool,
    pub seconds: f64,
}

/// Restores a backup into the database `target_dsn` names (created when
/// missing). The archive's size and checksum are checked first: a damaged
/// backup is refused, not half-restored.
pub async fn restore(
    dir: &Path,
    from: &str,
    target_dsn: &str,
    jobs: usize,
    clean: bool,
    no_owner: bool,
    tools: &Tools,
) -> Result<Restored, PgError> {
    let t0 = Instant::now();
    let (b, path) = find(dir, from)?;
    let (size, sha) = digest(&path)?;
    if size != b.size || sha != b.sha256 {
        return Err(PgError::Other(format!(
            "backup {} is damaged: {} has {size} bytes with SHA-256 {sha}, its manifest says {} bytes with {}",
            b.id,
            path.display(),
            b.size,
            b.sha256
        )));
    }
    let (_, created) = crate::copy::ensure_database(target_dsn, Some((&b.encoding, &b.collate, &b.ctype))).await?;
    let mut cmd = tools.command("pg_restore", target_dsn)?;
    cmd.arg("--dbname").arg(crate::copy::dbname(target_dsn)?).arg(format!("--jobs={}", jobs.max(1)));
    if clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    crate::copy::no_owner_args(no_owner, &mut cmd);
    if jobs <= 1 {
        cmd.arg("--exit-on-error");
    }
    cmd.arg(&path);
    tools::run(cmd, &format!("pg_restore of backup {}", b.id)).await?;
    Ok(Restored { id: b.id, database: b.database, created_database: created, seconds: t0.elapsed().as_secs_f64() })
}
