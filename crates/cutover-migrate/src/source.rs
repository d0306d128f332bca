//! A migrations directory as golang-migrate writes it:
//! `{version}_{title}.up.sql` and `{version}_{title}.down.sql`, read as it is,
//! from a path or from a directory inside a git repository at a ref
//! (`git:PATH_OR_URL#REF:DIR`), checked out with the system git into a
//! temporary place that lives as long as the [`Source`].

use ring::digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The header comment that runs a file outside a transaction, statement by
/// statement (for `CREATE INDEX CONCURRENTLY` and the like).
pub const NO_TRANSACTION: &str = "cutover:no-transaction";

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the migrations directory {0} does not exist or cannot be read: {1}")]
    Dir(String, String),
    #[error("{0} and {1} both hold the {2} migration of version {3}; a version has one file each way")]
    Duplicate(String, String, &'static str, u64),
    #[error("{0}: version 0 is reserved for \"nothing applied\"; number migrations from 1")]
    VersionZero(String),
    #[error("{0}: its version does not fit in 64 bits")]
    VersionTooLarge(String),
    #[error("cannot read {0}: {1}")]
    Read(String, String),
    #[error("{0}")]
    Git(String),
    #[error("{0}")]
    Create(String),
}

/// One migration file.
#[derive(Debug, Clone)]
pub struct MigrationFile {
    /// The file name, e.g. `0003_add_email.up.sql`.
    pub name: String,
    pub path: PathBuf,
    pub sql: String,
    /// SHA-256 of the file's bytes, hex.
    pub checksum: String,
    /// False when the file starts with the `-- cutover:no-transaction` header.
    pub transactional: bool,
}

/// One version: its up file and, when there is one, its down file.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: u64,
    pub title: String,
    pub up: Option<MigrationFile>,
    pub down: Option<MigrationFile>,
}

impl Migration {
    /// `0003_add_email`: how messages name a migration.
    pub fn label(&self) -> String {
        format!("{}_{}", self.version, self.title)
    }
}

/// The migrations of a directory, sorted by version.
#[derive(Debug)]
pub struct Source {
    /// How the user named it (a path, or the git spec with any password hidden
    /// and the commit it resolved to).
    pub label: String,
    pub dir: PathBuf,
    pub migrations: Vec<Migration>,
    /// The digits of the widest zero-padded sequential version (0 when none is padded).
    pub width: usize,
    /// Files that do not look like migrations (READMEs and the like), skipped.
    pub skipped: Vec<String>,
    _checkout: Option<tempfile::TempDir>,
}

impl Source {
    /// Reads a directory, or checks out `git:PATH_OR_URL#REF:DIR` first.
    pub fn open(spec: &str) -> Result<Source, SourceError> {
        match spec.strip_prefix("git:") {
            Some(git) => open_git(git),
            None => {
                let dir = PathBuf::from(spec);
                let (migrations, width, skipped) = read_dir(&dir)?;
                Ok(Source { label: spec.to_string(), dir, migrations, width, skipped, _checkout: None })
            }
        }
    }

    pub fn get(&self, version: u64) -> Option<&Migration> {
        self.migrations.binary_search_by_key(&version, |m| m.version).ok().map(|i| &self.migrations[i])
    }

    /// The highest version with a file, if any.
    pub fn last(&self) -> Option<u64> {
        self.migrations.last().map(|m| m.version)
    }
}

/// golang-migrate's file name: `^([0-9]+)_(.*)\.(down|up)\.(.*)$`.
fn parse_name(name: &str) -> Option<(&str, &str, &'static str)> {
    let (digits, rest) = name.split_once('_')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The direction is the second-to-last dot-separated part, as in golang-migrate.
    let (stem, _ext) = rest.rsplit_once('.')?;
    let (title, dir) = stem.rsplit_once('.')?;
    let dir = match dir {
        "up" => "up",
        "down" => "down",
        _ => return None,
    };
    Some((digits, title, dir))
}

/// Whether a file's leading comment lines carry the no-transaction header.
pub fn is_transactional(sql: &str) -> bool {
    for line in sql.lines() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let Some(comment) = l.strip_prefix("--") else { break };
        let words: String = comment.split_whitespace().collect();
        if words.eq_ignore_ascii_case(NO_TRANSACTION) {
            return false;
        }
    }
    true
}

/// A file's own transaction control, as the runner and the linter both see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnTransaction {
    /// No BEGIN, COMMIT or ROLLBACK.
    None,
    /// One BEGIN first and one COMMIT last (golang-migrate's habit): the
    /// runner runs what is between them in its own transaction instead.
    Wrapped,
    /// Anything else: refused in a transactional file.
    Other,
}

/// Classifies the top-level statements of a parsed file.
pub fn own_transaction(stmts: &[pg_query::protobuf::RawStmt]) -> OwnTransaction {
    use pg_query::NodeEnum;
    use pg_query::protobuf::TransactionStmtKind as K;
    let kind = |i: usize| match stmts.get(i).and_then(|s| s.stmt.as_ref()).and_then(|n| n.node.as_ref()) {
        Some(NodeEnum::TransactionStmt(t)) => Some(t.kind()),
        _ => None,
    };
    // Savepoints live inside a transaction and do not end it.
    let control = |k: K| !matches!(k, K::TransStmtSavepoint | K::TransStmtRelease | K::TransStmtRollbackTo);
    let count = (0..stmts.len()).filter(|i| kind(*i).is_some_and(control)).count();
    if count == 0 {
        return OwnTransaction::None;
    }
    let last = stmts.len() - 1;
    let opens = matches!(kind(0), Some(K::TransStmtBegin | K::TransStmtStart));
    let closes = matches!(kind(last), Some(K::TransStmtCommit));
    if count == 2 && last > 0 && opens && closes { OwnTransaction::Wrapped } else { OwnTransaction::Other }
}

/// Whether the runner can run a file as written: PostgreSQL's grammar
/// (libpg_query) accepts it and, in a transactional file, its own
/// transaction control is at most one BEGIN first and one COMMIT last.
pub fn runnable(file: &MigrationFile) -> Result<(), String> {
    let parsed =
        pg_query::parse(&file.sql, pg_query::ParserOptions::DEFAULT).map_err(|e| format!("it does not parse: {e}"))?;
    if file.transactional && own_transaction(&parsed.protobuf.stmts) == OwnTransaction::Other {
        return Err(format!(
            "it controls its own transaction (BEGIN/COMMIT/ROLLBACK beyond one BEGIN first and one COMMIT last); \
             the runner refuses it: split it, or start it with `-- {NO_TRANSACTION}`"
        ));
    }
    Ok(())
}

pub fn checksum(bytes: &[u8]) -> String {
    digest::digest(&digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

type DirContents = (Vec<Migration>, usize, Vec<String>);

fn read_dir(dir: &Path) -> Result<DirContents, SourceError> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| SourceError::Dir(shown.clone(), e.to_string()))?;
    let mut by_version: BTreeMap<u64, Migration> = BTreeMap::new();
    let mut width = 0;
    let mut skipped = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SourceError::Dir(shown.clone(), e.to_string()))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((digits, title, direction)) = parse_name(&name) else {
            skipped.push(name);
            continue;
        };
        let version: u64 = digits.parse().map_err(|_| SourceError::VersionTooLarge(name.clone()))?;
        if version == 0 {
            return Err(SourceError::VersionZero(name));
        }
        if digits.len() > 1 && digits.starts_with('0') {
            width = width.max(digits.len());
        }
        let bytes = std::fs::read(&path).map_err(|e| SourceError::Read(path.display().to_string(), e.to_string()))?;
        let sql = String::from_utf8(bytes)
            .map_err(|_| SourceError::Read(path.display().to_string(), "it is not UTF-8 text".into()))?;
        let file = MigrationFile {
            name: name.clone(),
            path,
            checksum: checksum(sql.as_bytes()),
            transactional: is_transactional(&sql),
            sql,
        };
        let m = by_version.entry(version).or_insert_with(|| Migration {
            version,
            title: title.to_string(),
            up: None,
            down: None,
        });
        let slot = if direction == "up" { &mut m.up } else { &mut m.down };
        if let Some(other) = slot {
            return Err(SourceError::Duplicate(other.name.clone(), name, direction, version));
        }
        if direction == "up" {
            m.title = title.to_string();
        }
        *slot = Some(file);
    }
    skipped.sort();
    Ok((by_version.into_values().collect(), width, skipped))
}

/// `PATH_OR_URL#REF:DIR` (DIR optional): the repository is cloned without a
/// work tree, the ref resolved (a branch of the remote, a tag or a commit) and
/// checked out detached.
fn open_git(spec: &str) -> Result<Source, SourceError> {
    let usage = || {
        SourceError::Git(format!(
            "git:{} is not a git source; write git:PATH_OR_URL#REF:DIR, e.g. git:https://example.com/app.git#v1.4.0:db/migrations",
            hide_userinfo(spec)
        ))
    };
    let (repo, rest) = spec.rsplit_once('#').ok_or_else(usage)?;
    let (reference, sub) = rest.split_once(':').unwrap_or((rest, ""));
    if repo.is_empty() || reference.is_empty() {
        return Err(usage());
    }
    let shown_repo = hide_userinfo(repo);
    let tmp = tempfile::Builder::new()
        .prefix("cutover-migrations-")
        .tempdir()
        .map_err(|e| SourceError::Git(format!("cannot make a temporary directory for the checkout: {e}")))?;
    let work = tmp.path().join("repo");
    let git = |args: &[&std::ffi::OsStr], what: &str| -> Result<String, SourceError> {
        let out = Command::new("git")
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "true")
            .output()
            .map_err(|e| SourceError::Git(format!("cannot run git to {what}: {e}")))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            return Err(SourceError::Git(format!("git could not {what}: {}", hide_userinfo(last))));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    git(
        &[
            "clone".as_ref(),
            "--quiet".as_ref(),
            "--no-checkout".as_ref(),
            "--".as_ref(),
            repo.as_ref(),
            work.as_os_str(),
        ],
        &format!("clone {shown_repo}"),
    )?;
    let c = work.as_os_str();
    let rev_of = |r: &str| {
        git(
            &[
                "-C".as_ref(),
                c,
                "rev-parse".as_ref(),
                "--verify".as_ref(),
                "--quiet".as_ref(),
                format!("{r}^{{commit}}").as_ref(),
            ],
            "resolve",
        )
    };
    let commit = rev_of(&format!("origin/{reference}"))
        .or_else(|_| rev_of(reference))
        .map_err(|_| SourceError::Git(format!("{shown_repo} has no branch, tag or commit `{reference}`")))?;
    git(
        &[
            "-C".as_ref(),
            c,
            "-c".as_ref(),
            "advice.detachedHead=false".as_ref(),
            "checkout".as_ref(),
            "--quiet".as_ref(),
            "--detach".as_ref(),
            commit.as_ref(),
        ],
        &format!("check out {reference}"),
    )?;
    let dir = if sub.is_empty() { work.clone() } else { work.join(sub) };
    if !dir.is_dir() {
        return Err(SourceError::Git(format!("{shown_repo} at {reference} has no directory `{sub}`")));
    }
    let (migrations, width, skipped) = read_dir(&dir)?;
    let short = commit.get(..12).unwrap_or(&commit);
    Ok(Source {
        label: format!("git:{shown_repo}#{reference}:{sub} (commit {short})"),
        dir,
        migrations,
        width,
        skipped,
        _checkout: Some(tmp),
    })
}

/// Hides `user:password@` in a URL so a repository address with a token can be shown.
pub fn hide_userinfo(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else { return s.to_string() };
    let after = &s[scheme_end + 3..];
    let host_end = after.find('/').unwrap_or(after.len());
    match after[..host_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &s[..scheme_end], &after[at + 1..]),
        None => s.to_string(),
    }
}

/// How `create` numbers a new migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbering {
    /// The next integer after the highest version, zero-padded like the others.
    Sequential,
    /// UTC `YYYYMMDDHHMMSS`.
    Timestamp,
    /// Timestamp when the directory already uses timestamps, else sequential.
    Auto,
}

/// Writes an empty up and down file for a new migration and returns their paths.
pub fn create(
    dir: &Path,
    title: &str,
    numbering: Numbering,
    now: jiff::Timestamp,
) -> Result<[PathBuf; 2], SourceError> {
    std::fs::create_dir_all(dir).map_err(|e| SourceError::Create(format!("cannot create {}: {e}", dir.display())))?;
    let (existing, width, _) = read_dir(dir)?;
    let slug: String = title
        .trim()
        .chars()
        .map(|c| if c.is_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect::<String>()
        .split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if slug.is_empty() {
        return Err(SourceError::Create(format!("the title {title:?} has no letters or digits to name a file with")));
    }
    let last = existing.last().map(|m| m.version).unwrap_or(0);
    // A version of 14 digits starting with 19 or 20 is a timestamp.
    let uses_timestamps = last >= 19_000_000_000_000;
    let numbering = match numbering {
        Numbering::Auto if uses_timestamps => Numbering::Timestamp,
        Numbering::Auto => Numbering::Sequential,
        n => n,
    };
    let digits = match numbering {
        Numbering::Timestamp => {
            let s = now.to_zoned(jiff::tz::TimeZone::UTC).strftime("%Y%m%d%H%M%S").to_string();
            let v: u64 = s.parse().map_err(|_| SourceError::Create("cannot make a timestamp version".into()))?;
            if v <= last {
                return Err(SourceError::Create(format!(
                    "the timestamp version {v} is not above the highest version {last}; wait a second or use --seq"
                )));
            }
            s
        }
        _ => {
            let next = last + 1;
            let w = if width > 0 {
                width
            } else if existing.is_empty() {
                6
            } else {
                0
            };
            format!("{next:0w$}")
        }
    };
    let paths = ["up", "down"].map(|d| dir.join(format!("{digits}_{slug}.{d}.sql")));
    for p in &paths {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
            .map_err(|e| SourceError::Create(format!("cannot create {}: {e}", p.display())))?;
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_as_golang_migrate_reads_them() {
        assert_eq!(parse_name("0001_init.up.sql"), Some(("0001", "init", "up")));
        assert_eq!(
            parse_name("20260101120000_add.users.email.down.sql"),
            Some(("20260101120000", "add.users.email", "down"))
        );
        assert_eq!(parse_name("3_x.up.psql"), Some(("3", "x", "up")));
        assert_eq!(parse_name("README.md"), None);
        assert_eq!(parse_name("0001_init.sql"), None);
        assert_eq!(parse_name("v1_init.up.sql"), None);
    }

    #[test]
    fn the_header_opts_out_of_the_transaction() {
        assert!(!is_transactional("-- cutover:no-transaction\nCREATE INDEX CONCURRENTLY i ON t(c);"));
        assert!(!is_transactional(
            "\n-- add an index\n--  cutover: no-transaction\nCREATE INDEX CONCURRENTLY i ON t(c);"
        ));
        assert!(is_transactional("CREATE TABLE t();\n-- cutover:no-transaction\n"));
        assert!(is_transactional("-- nothing special\nSELECT 1;"));
    }

    #[test]
    fn passwords_in_repository_urls_are_hidden() {
        assert_eq!(hide_userinfo("https://user:tok@example.com/a.git"), "https://***@example.com/a.git");
        assert_eq!(hide_userinfo("/srv/repo"), "/srv/repo");
        assert_eq!(hide_userinfo("https://example.com/a@b.git"), "https://example.com/a@b.git");
    }

    #[test]
    fn a_directory_is_read_and_create_numbers_the_next_file() {
        let d = tempfile::tempdir().expect("tmp");
        for (n, s) in
            [("0001_init.up.sql", "CREATE TABLE t();"), ("0001_init.down.sql", "DROP TABLE t;"), ("README.md", "x")]
        {
            std::fs::write(d.path().join(n), s).expect("write");
        }
        let src = Source::open(&d.path().display().to_string()).expect("open");
        assert_eq!(src.migrations.len(), 1);
        assert_eq!(src.width, 4);
        assert_eq!(src.skipped, vec!["README.md".to_string()]);
        let now = jiff::Timestamp::from_second(1_790_000_000).expect("ts");
        let [up, down] = create(d.path(), "Add user's email", Numbering::Auto, now).expect("create");
        assert!(up.ends_with("0002_add_user_s_email.up.sql"), "{}", up.display());
        assert!(down.ends_with("0002_add_user_s_email.down.sql"));
        let [up, _] = create(d.path(), "ts", Numbering::Timestamp, now).expect("create");
        assert!(up.file_name().is_some_and(|n| n.to_string_lossy().starts_with("2026")), "{}", up.display());
        std::fs::write(d.path().join("0002_dup.up.sql"), "").expect("write");
        let e = Source::open(&d.path().display().to_string()).expect_err("duplicate");
        assert!(e.to_string().contains("version 2"), "{e}");
    }
}
