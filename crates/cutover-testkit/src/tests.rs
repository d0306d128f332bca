//! These start real servers: run `sudo scripts/install-test-deps` first.

use super::*;
use std::net::TcpStream;

type TestResult = Result<(), TestkitError>;

/// Starts a cluster of `major`, creates a database in it and runs a query.
fn exercise_own_cluster(major: u32) -> TestResult {
    let pg = PgCluster::start(major)?;
    assert_eq!(pg.major(), major);
    assert_ne!(pg.port(), 0);
    let db = unique_db_name(&format!("own_{major}"));
    let dsn = pg.create_database(&db)?;
    assert_eq!(dsn, format!("postgres://postgres@127.0.0.1:{}/{db}", pg.port()));
    assert_eq!(pg.psql(&db, "select 1")?, "1");
    assert_eq!(pg.psql(&db, "select current_setting('server_version_num')::int / 10000")?, major.to_string());
    assert_eq!(pg.psql(&db, "select current_database()")?, db);
    assert_eq!(pg.psql(&db, "show fsync")?, "off");
    assert!(pg.log_path().starts_with(TMP_ROOT));
    assert!(pg.bin_dir().join("pg_ctl").exists());
    Ok(())
}

#[test]
fn postgres_15_starts_creates_a_database_and_answers() -> TestResult {
    exercise_own_cluster(15)
}

#[test]
fn postgres_13_starts_creates_a_database_and_answers() -> TestResult {
    exercise_own_cluster(13)
}

#[test]
fn postgres_16_starts_creates_a_database_and_answers() -> TestResult {
    exercise_own_cluster(16)
}

#[test]
fn start_default_is_15() -> TestResult {
    let pg = PgCluster::start_default()?;
    assert_eq!(pg.major(), 15);
    assert_eq!(pg.psql("postgres", "select 1 + 1")?, "2");
    Ok(())
}

#[test]
fn a_missing_major_names_the_install_script() {
    let err = match PgCluster::start(9) {
        Ok(pg) => panic!("PostgreSQL 9 should not be installed, got {pg:?}"),
        Err(e) => e,
    };
    assert!(matches!(err, TestkitError::BinariesNotFound { major: 9, .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("scripts/install-test-deps"), "{message}");
    assert!(message.contains("CUTOVER_PG9_BIN"), "{message}");
    assert!(message.contains("/opt/cutover-pg/9/bin") || message.contains("/9/bin"), "{message}");
}

#[test]
fn shared_is_one_cluster_per_major() -> TestResult {
    let a = try_shared(15)?;
    let b = shared(15);
    assert!(std::ptr::eq(a, b));
    let db = unique_db_name("shared");
    a.create_database(&db)?;
    b.psql(&db, "create table t (id int primary key, v text)")?;
    b.psql(&db, "insert into t values (1, 'a'), (2, 'b|c')")?;
    assert_eq!(a.psql(&db, "select id, v from t order by id")?, "1|a\n2|b|c");
    Ok(())
}

#[test]
fn shared_clusters_serve_many_databases_concurrently() -> TestResult {
    let pg = try_shared(15)?;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                scope.spawn(move || -> TestResult {
                    let db = unique_db_name("concurrent");
                    pg.create_database(&db)?;
                    assert_eq!(pg.psql(&db, &format!("select {i}"))?, i.to_string());
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(result) => result?,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(())
    })
}

#[test]
fn psql_errors_carry_the_server_message() -> TestResult {
    let pg = try_shared(15)?;
    let db = unique_db_name("errors");
    pg.create_database(&db)?;
    let err = match pg.psql(&db, "select * from no_such_table") {
        Ok(out) => panic!("expected an error, got {out:?}"),
        Err(e) => e,
    };
    assert!(matches!(err, TestkitError::Psql { .. }), "{err:?}");
    assert!(err.to_string().contains("relation \"no_such_table\" does not exist"), "{err}");
    // ON_ERROR_STOP: nothing after the failing statement runs.
    let _ = pg.psql(&db, "create table a (x int); select 1/0; create table b (x int);");
    assert_eq!(
        pg.psql(&db, "select string_agg(relname, ',' order by relname) from pg_class where relname in ('a', 'b')")?,
        "a"
    );
    // Creating a database twice fails.
    assert!(matches!(pg.create_database(&db), Err(TestkitError::Psql { .. })));
    Ok(())
}

#[test]
fn dropping_stops_the_server_and_removes_the_directory() -> TestResult {
    let pg = PgCluster::start(15)?;
    let port = pg.port();
    let data_dir = pg.data_dir().to_path_buf();
    let dir = data_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| data_dir.clone());
    assert!(dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with(DIR_PREFIX)));
    let pid = read_postmaster_pid(&data_dir.join("postmaster.pid"));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    pg.stop()?;
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    if let Some(pid) = pid {
        assert!(!process_alive(pid), "postmaster {pid} still running");
    }
    Ok(())
}

#[test]
fn stale_clusters_of_dead_processes_are_reaped() -> TestResult {
    // A cluster whose owner file names a process that no longer exists.
    let pg = PgCluster::start(15)?;
    let data_dir = pg.data_dir().to_path_buf();
    let dir = data_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| data_dir.clone());
    let mut child = Command::new("true").spawn().map_err(|e| TestkitError::io("run true", e))?;
    let dead_pid = child.id();
    child.wait().map_err(|e| TestkitError::io("wait for true", e))?;
    fs::write(dir.join(OWNER_FILE), format!("pid={dead_pid}\nbin_dir={}\n", pg.bin_dir().display()))
        .map_err(|e| TestkitError::io("rewrite the owner file", e))?;
    // Forget `pg` without dropping it, as a killed test process would.
    let port = pg.port();
    std::mem::forget(pg);
    reap_stale_clusters();
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    Ok(())
}

#[test]
fn unique_db_names_are_unique_and_safe() {
    let a = unique_db_name("My-Test");
    let b = unique_db_name("My-Test");
    assert_ne!(a, b);
    assert!(a.starts_with("my_test_"), "{a}");
    assert!(a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    assert!(unique_db_name("").starts_with("db_"));
    assert!(unique_db_name("1x").starts_with("db_1x_"));
    let long = unique_db_name(&"x".repeat(200));
    assert!(long.len() <= MAX_IDENTIFIER_LEN, "{long}");
    assert!(long.contains(&format!("_{}_", std::process::id())), "{long}");
}

#[test]
fn helpers() {
    assert_eq!(parse_major("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"), Some(15));
    assert_eq!(parse_major("PostgreSQL 13.23"), Some(13));
    assert_eq!(parse_major("pg_ctl (PostgreSQL) 16beta1"), Some(16));
    assert_eq!(parse_major("something else"), None);
    assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
    assert_eq!(percent_encode("a b/c_d"), "a%20b%2Fc_d");
    assert_eq!(tail_lines("1\n2\n3", 2), "2\n3");
}
