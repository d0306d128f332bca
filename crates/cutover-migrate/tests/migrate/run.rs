//! The runner as a library, on real PostgreSQL 15: what the command line
//! cannot show directly (a hold between migrations, the events in order, a
//! killed no-transaction attempt seen by the next run).

use cutover_migrate::run::{self, Command, Event, Options};
use cutover_migrate::source::Source;
use cutover_testkit::{shared, unique_db_name};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tmp");
    for (n, s) in files {
        std::fs::write(d.path().join(n), s).expect("write");
    }
    d
}

#[test]
fn a_hold_stops_the_next_migration_until_released_with_the_lock_kept() {
    let db = unique_db_name("migrate_hold");
    let dsn = shared(15).create_database(&db).expect("db");
    let d = dir(&[("1_a.up.sql", "CREATE TABLE a (id int);"), ("2_b.up.sql", "CREATE TABLE b (id int);")]);
    let source = Source::open(&d.path().display().to_string()).expect("source");
    rt().block_on(async {
        let client = cutover_pg::connect(&dsn, Duration::from_secs(10)).await.expect("connect");
        let probe = cutover_pg::connect(&dsn, Duration::from_secs(10)).await.expect("connect");
        let (tx, rx) = tokio::sync::watch::channel(true);
        let mut opts = Options::new("test".into());
        opts.hold = Some(rx);
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let on = move |e: Event| seen.lock().expect("events").push(format!("{e:?}"));
        let apply = run::apply(&client, &source, Command::Up(None), &opts, &on);
        let check = async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let none: bool = probe
                .query_one("SELECT to_regclass('a') IS NULL AND to_regclass('b') IS NULL", &[])
                .await
                .expect("probe")
                .get(0);
            assert!(none, "nothing runs while held");
            let locked: i64 = probe
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                    &[],
                )
                .await
                .expect("locks")
                .get(0);
            assert_eq!(locked, 2, "the migration locks (cutover's, golang-migrate's) stay held while waiting");
            tx.send(false).expect("release");
        };
        let (outcome, ()) = tokio::join!(apply, check);
        let outcome = outcome.expect("apply");
        assert_eq!(outcome.applied.len(), 2);
        assert_eq!(outcome.after, Some(2));
        let events = events.lock().expect("events").clone();
        assert!(events[0].contains("holding before 1_a while the plan's pause_when holds"), "{events:?}");
        assert!(events[1].starts_with("Start") && events.last().is_some_and(|e| e.starts_with("Done")), "{events:?}");
    });
}

/// golang-migrate's own advisory lock is taken too: while a golang-migrate
/// process holds it, cutover waits, then fails naming that backend.
#[test]
fn golang_migrates_lock_keeps_cutover_out_until_released() {
    let db = unique_db_name("migrate_golock");
    let dsn = shared(15).create_database(&db).expect("db");
    let d = dir(&[("1_a.up.sql", "CREATE TABLE a (id int);")]);
    let source = Source::open(&d.path().display().to_string()).expect("source");
    rt().block_on(async {
        let client = cutover_pg::connect(&dsn, Duration::from_secs(10)).await.expect("connect");
        let other = cutover_pg::connect(&dsn, Duration::from_secs(10)).await.expect("connect");
        // What golang-migrate's postgres driver runs for this database, in
        // the default schema, with its default table.
        let key = run::golang_migrate_lock_key(&db, "public", "schema_migrations");
        other.execute("SELECT pg_advisory_lock($1)", &[&key]).await.expect("golang-migrate's lock");
        let pid: i32 = other.query_one("SELECT pg_backend_pid()", &[]).await.expect("pid").get(0);
        let mut opts = Options::new("test".into());
        opts.lock_wait = Duration::from_millis(800);
        let started = std::time::Instant::now();
        let err = run::apply(&client, &source, Command::Up(None), &opts, &|_| {}).await.expect_err("locked out");
        let msg = err.to_string();
        assert!(started.elapsed() >= Duration::from_millis(700), "it waited: {:?}", started.elapsed());
        assert!(msg.contains(&format!("pid {pid} (")) && msg.contains("holding golang-migrate's lock"), "{msg}");
        assert!(msg.contains(&format!("pg_terminate_backend({pid})")), "{msg}");
        let none: bool = client.query_one("SELECT to_regclass('a') IS NULL", &[]).await.expect("probe").get(0);
        assert!(none, "nothing ran");
        // cutover's own lock was let go when it gave up.
        let free: bool =
            other.query_one("SELECT pg_try_advisory_lock($1)", &[&run::LOCK_KEY]).await.expect("try").get(0);
        assert!(free, "cutover's lock is released after the failure");
        other.batch_execute("SELECT pg_advisory_unlock_all()").await.expect("unlock");
        let outcome = run::apply(&client, &source, Command::Up(None), &opts, &|_| {}).await.expect("apply");
        assert_eq!(outcome.after, Some(1));
    });
}

/// golang-migrate configured with `x-migrations-table=app_versions`: adopted
/// from that table, kept in step there, and locked with that table's key.
#[test]
fn a_custom_golang_migrate_table_is_adopted_kept_in_step_and_locked() {
    let db = unique_db_name("migrate_gotable");
    let dsn = shared(15).create_database(&db).expect("db");
    let files: Vec<(String, String)> =
        (1..=4).map(|v| (format!("{v}_t{v}.up.sql"), format!("CREATE TABLE t{v} (id int);"))).collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect();
    let d = dir(&files);
    let source = Source::open(&d.path().display().to_string()).expect("source");
    rt().block_on(async {
        let client = cutover_pg::connect(&dsn, Duration::from_secs(10)).await.expect("connect");
        let other = cutover_pg::connect(&dsn, Duration::from_secs(10)).await.expect("connect");
        // What golang-migrate leaves after files 1-3 with that option.
        client
            .batch_execute(
                "CREATE TABLE t1 (id int); CREATE TABLE t2 (id int); CREATE TABLE t3 (id int);
                 CREATE TABLE app_versions (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
                 INSERT INTO app_versions VALUES (3, false);",
            )
            .await
            .expect("golang-migrate's state");
        let st = run::status(&client, &source, run::GOLANG_MIGRATE_TABLE).await.expect("status");
        assert!(st.golang_migrate.is_none(), "not under the default name");
        let st = run::status(&client, &source, "app_versions").await.expect("status");
        assert_eq!(st.golang_migrate.map(|g| (g.version, g.dirty)), Some((3, false)));

        let key = run::golang_migrate_lock_key(&db, "public", "app_versions");
        other.execute("SELECT pg_advisory_lock($1)", &[&key]).await.expect("golang-migrate's lock");
        let mut opts = Options::new("test".into());
        opts.golang_migrate_table = "app_versions".into();
        opts.lock_wait = Duration::from_millis(300);
        let err = run::apply(&client, &source, Command::Up(None), &opts, &|_| {}).await.expect_err("locked");
        assert!(err.to_string().contains("holding golang-migrate's lock"), "{err}");
        other.batch_execute("SELECT pg_advisory_unlock_all()").await.expect("unlock");

        let outcome = run::apply(&client, &source, Command::Up(None), &opts, &|_| {}).await.expect("apply");
        let applied: Vec<u64> = outcome.applied.iter().map(|s| s.version).collect();
        assert_eq!(applied, [4], "only 4 runs");
        let row = client.query_one("SELECT version, dirty FROM app_versions", &[]).await.expect("row");
        assert_eq!((row.get::<_, i64>(0), row.get::<_, bool>(1)), (4, false));
        let states: Vec<String> = client
            .query("SELECT state FROM cutover.schema_migrations ORDER BY version", &[])
            .await
            .expect("states")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(states, ["adopted", "adopted", "adopted", "applied"]);

        let err = run::status(&client, &source, "").await.expect_err("empty name");
        assert!(err.to_string().contains("is not a PostgreSQL table name"), "{err}");
        opts.golang_migrate_table = String::new();
        let err = run::apply(&client, &source, Command::Up(None), &opts, &|_| {}).await.expect_err("empty name");
        assert!(err.to_string().contains("is not a PostgreSQL table name"), "{err}");
    });
}

/// A no-transaction attempt killed part-way (its connection ended) is seen by
/// the next run as partial, and the history shows an attempt that never finished.
#[test]
fn a_no_transaction_attempt_cut_off_part_way_stops_the_next_run() {
    let db = unique_db_name("migrate_cut");
    let dsn = shared(15).create_database(&db).expect("db");
    let d = dir(&[(
        "1_slow.up.sql",
        "-- cutover:no-transaction\nCREATE TABLE s (id int);\nSELECT pg_sleep(30);\nCREATE INDEX CONCURRENTLY s_id ON s (id);\n",
    )]);
    let source = Source::open(&d.path().display().to_string()).expect("source");
    rt().block_on(async {
        let client = cutover_pg::connect(&dsn, Duration::from_secs(10)).await.expect("connect");
        let killer = cutover_pg::connect(&dsn, Duration::from_secs(10)).await.expect("connect");
        let opts = Options::new("test".into());
        let apply = run::apply(&client, &source, Command::Up(None), &opts, &|_| {});
        let kill = async {
            // Wait for the sleep, then end that backend as a crash would.
            for _ in 0..100 {
                let n = killer
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(30)%'",
                        &[],
                    )
                    .await
                    .expect("terminate");
                if n > 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the sleep never started");
        };
        let (r, ()) = tokio::join!(apply, kill);
        assert!(r.is_err(), "the attempt was cut off");
        let again = cutover_pg::connect(&dsn, Duration::from_secs(10)).await.expect("connect");
        let e = run::apply(&again, &source, Command::Up(None), &opts, &|_| {}).await.expect_err("refused");
        assert!(e.to_string().contains("1_slow stopped part-way outside a transaction"), "{e}");
        let s = run::status(&again, &source, run::GOLANG_MIGRATE_TABLE).await.expect("status");
        assert!(s.partial && s.files[0].state == "partial", "{s:?}");
        let h = run::history(&again, 10).await.expect("history");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].success, None, "an attempt that never finished: {:?}", h[0]);
        assert_eq!(h[0].statements_run, Some(1), "{:?}", h[0]);
        let exists: bool = again.query_one("SELECT to_regclass('s') IS NOT NULL", &[]).await.expect("q").get(0);
        assert!(exists, "the first statement stays applied");
    });
}
