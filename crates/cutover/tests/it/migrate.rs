//! `cutover migrate` on PostgreSQL 15: a directory written for golang-migrate
//! applied, inspected, rolled back and moved with goto; changed and
//! out-of-order files refused; a database golang-migrate left adopted; a
//! failing migration (in a transaction and outside one); two runners at
//! once; a DSN from a `command:` secret that never shows; a `git:` source;
//! the linter from the command line.

use crate::support::*;
use cutover_testkit::{shared, unique_db_name};
use std::path::Path;
use std::process::Command;

fn sql(db: &str, q: &str) -> String {
    shared(15).psql(db, q).expect("psql").trim().to_string()
}

fn fresh_db(prefix: &str) -> (String, String) {
    let db = unique_db_name(prefix);
    let dsn = shared(15).create_database(&db).expect("db");
    (db, dsn)
}

/// A directory as golang-migrate users write it: sequential, zero-padded,
/// one file with its own BEGIN/COMMIT (golang-migrate's driver adds none), a
/// no-transaction index build, and a README the tool must skip.
const SHOP: &[(&str, &str)] = &[
    ("000001_create_users.up.sql", "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);\n"),
    ("000001_create_users.down.sql", "DROP TABLE users;\n"),
    (
        "000002_create_orders.up.sql",
        "BEGIN;\nCREATE TABLE orders (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users);\nCOMMIT;\n",
    ),
    ("000002_create_orders.down.sql", "DROP TABLE orders;\n"),
    ("000003_add_users_name.up.sql", "ALTER TABLE users ADD COLUMN name text;\n"),
    ("000003_add_users_name.down.sql", "ALTER TABLE users DROP COLUMN name;\n"),
    (
        "000004_index_orders_user.up.sql",
        "-- cutover:no-transaction\nCREATE INDEX CONCURRENTLY orders_user_idx ON orders (user_id);\n",
    ),
    ("000004_index_orders_user.down.sql", "-- cutover:no-transaction\nDROP INDEX CONCURRENTLY orders_user_idx;\n"),
    ("000005_seed_admin.up.sql", "INSERT INTO users (email, name) VALUES ('admin@example.com', 'Admin');\n"),
    ("000005_seed_admin.down.sql", "DELETE FROM users WHERE email = 'admin@example.com';\n"),
    ("README.md", "Migrations for the shop.\n"),
];

fn write_dir(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for (name, body) in files {
        std::fs::write(dir.join(name), body).expect("write");
    }
}

fn shop_dir(w: &Work) -> String {
    let dir = w.file("migrations");
    write_dir(&dir, SHOP);
    dir.display().to_string()
}

fn ok(o: &std::process::Output) -> String {
    assert_eq!(code(o), 0, "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

fn version(w: &Work, dsn: &str, dir: &str) -> String {
    ok(&w.run(&["migrate", "--dsn", dsn, "--dir", dir, "version"])).trim().to_string()
}

fn state_of(status: &serde_json::Value, v: u64) -> String {
    status["files"]
        .as_array()
        .and_then(|f| f.iter().find(|x| x["version"] == v))
        .and_then(|x| x["state"].as_str())
        .unwrap_or("?")
        .to_string()
}

#[test]
fn a_golang_migrate_directory_goes_up_shows_its_status_comes_down_and_goes_to_a_version() {
    up_status_down_goto(15);
}

#[test]
fn the_same_cycle_on_postgresql_13() {
    up_status_down_goto(13);
}

fn up_status_down_goto(major: u32) {
    let w = Work::new();
    let db = unique_db_name("migrate_shop");
    let dsn = shared(major).create_database(&db).expect("db");
    let sql = |q: &str| shared(major).psql(&db, q).expect("psql").trim().to_string();
    let dir = shop_dir(&w);
    let m = |args: &[&str]| {
        let mut a = vec!["migrate", "--dsn", &dsn, "--dir", &dir];
        a.extend_from_slice(args);
        w.run(&a)
    };
    assert_eq!(version(&w, &dsn, &dir), "none");

    let o = m(&["up"]);
    let out = ok(&o);
    for v in ["000001_create_users", "2_create_orders", "3_add_users_name", "4_index_orders_user", "5_seed_admin"] {
        assert!(out.contains(&format!("applied {}", v.trim_start_matches('0'))), "{v} in:\n{out}");
    }
    assert!(out.contains("the current version is 5 (5 migration(s) run)"), "{out}");
    assert!(text(&o.stderr).contains("[4/5] up 4_index_orders_user (outside a transaction)"), "{}", text(&o.stderr));
    assert_eq!(sql("SELECT count(*) FROM users"), "1");
    assert_eq!(sql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_user_idx'::regclass"), "t");
    assert_eq!(version(&w, &dsn, &dir), "5");
    assert!(ok(&m(&["up"])).contains("nothing to do: the current version is 5"));

    let status = w.json(&["migrate", "--dsn", &dsn, "--dir", &dir, "status"]);
    assert_eq!(status["current"], 5);
    for v in 1..=5 {
        assert_eq!(state_of(&status, v), "applied", "{status}");
    }
    let table = ok(&m(&["status"]));
    assert!(table.contains("VERSION") && table.contains("no-transaction"), "{table}");

    // down needs a count (or --all).
    let o = m(&["down"]);
    assert_eq!(code(&o), 2, "{}", text(&o.stderr));
    let out = ok(&m(&["down", "1"]));
    assert!(out.contains("rolled back 5_seed_admin"), "{out}");
    assert_eq!(sql("SELECT count(*) FROM users"), "0");
    assert_eq!(version(&w, &dsn, &dir), "4");

    let out = ok(&m(&["goto", "2"]));
    assert!(out.contains("rolled back 4_index_orders_user") && out.contains("rolled back 3_add_users_name"), "{out}");
    assert_eq!(version(&w, &dsn, &dir), "2");
    assert_eq!(sql("SELECT to_regclass('orders_user_idx') IS NULL"), "t");
    assert_eq!(
        sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'name'"),
        "0"
    );
    let status = w.json(&["migrate", "--dsn", &dsn, "--dir", &dir, "status"]);
    assert_eq!(state_of(&status, 3), "pending", "{status}");

    let out = ok(&m(&["goto", "4"]));
    assert!(out.contains("applied 3_add_users_name") && out.contains("applied 4_index_orders_user"), "{out}");
    assert!(!out.contains("5_seed_admin"), "{out}");
    let o = m(&["goto", "9"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stderr).contains("there is no migration 9"), "{}", text(&o.stderr));

    // The history: one row per attempt, with who ran it.
    let h = w.json(&["migrate", "--dsn", &dsn, "--dir", &dir, "history", "--limit", "100"]);
    let h = h.as_array().expect("history");
    assert_eq!(h.len(), 5 + 1 + 2 + 2, "{h:?}");
    assert!(h.iter().all(|a| a["success"] == true && a["ran_by"].as_str().is_some_and(|r| r.contains("(pid "))));
    assert_eq!(h.iter().filter(|a| a["direction"] == "down").count(), 3);
    assert_eq!(
        sql("SELECT count(*) FROM cutover.migration_history WHERE checksum IS NULL OR duration_ms IS NULL"),
        "0"
    );

    // create: the next zero-padded version.
    let o = w.run(&["migrate", "--dir", &dir, "create", "add", "orders", "total"]);
    let out = ok(&o);
    assert!(
        out.contains("000006_add_orders_total.up.sql") && out.contains("000006_add_orders_total.down.sql"),
        "{out}"
    );
    // validate: the directory parses; the README is only a warning.
    let out = ok(&m(&["validate"]));
    assert!(out.contains("0 error(s)") && out.contains("README.md is not named like a migration"), "{out}");
    // A COMMIT half-way through a file: validate says what up would refuse.
    std::fs::write(
        Path::new(&dir).join("000006_add_orders_total.up.sql"),
        "ALTER TABLE orders ADD COLUMN total int;\nCOMMIT;\nALTER TABLE orders ADD COLUMN tax int;\n",
    )
    .expect("write");
    let o = m(&["validate"]);
    assert_eq!(code(&o), 1);
    assert!(
        text(&o.stdout).contains("000006_add_orders_total.up.sql: it controls its own transaction"),
        "{}",
        text(&o.stdout)
    );
    let o = m(&["up"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stderr).contains("controls its own transaction"), "{}", text(&o.stderr));
    assert_eq!(version(&w, &dsn, &dir), "4", "refused before 5 ran");
    assert_eq!(
        sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'total'"),
        "0"
    );
}

#[test]
fn a_changed_applied_file_and_an_out_of_order_file_fail_loudly_unless_allowed() {
    let w = Work::new();
    let (db, dsn) = fresh_db("migrate_drift");
    let dir = w.file("migrations");
    // 1, 2, 3 and 5 first; 4 arrives later, as from a branch merged late.
    let files: Vec<(&str, &str)> = SHOP.iter().filter(|(n, _)| !n.starts_with("000004")).copied().collect();
    write_dir(&dir, &files);
    let dir = dir.display().to_string();
    let m = |args: &[&str]| {
        let mut a = vec!["migrate", "--dsn", &dsn, "--dir", &dir];
        a.extend_from_slice(args);
        w.run(&a)
    };
    ok(&m(&["up"]));
    assert_eq!(version(&w, &dsn, &dir), "5");

    // An applied file edited.
    let path = Path::new(&dir).join("000003_add_users_name.up.sql");
    std::fs::write(&path, "ALTER TABLE users ADD COLUMN name varchar(100);\n").expect("edit");
    let o = m(&["up"]);
    assert_eq!(code(&o), 1);
    let err = text(&o.stderr);
    assert!(err.contains("000003_add_users_name.up.sql has changed since it was applied"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let status = w.json(&["migrate", "--dsn", &dsn, "--dir", &dir, "status"]);
    assert_eq!(state_of(&status, 3), "changed", "{status}");
    assert_eq!(code(&m(&["validate"])), 1);
    let o = m(&["--allow-changed", "up"]);
    ok(&o);
    assert!(text(&o.stderr).contains("going on (--allow-changed)"), "{}", text(&o.stderr));
    std::fs::write(&path, SHOP[4].1).expect("restore");

    // A file older than the current version, never applied.
    write_dir(Path::new(&dir), &SHOP[6..8]);
    let o = m(&["up"]);
    assert_eq!(code(&o), 1);
    let err = text(&o.stderr);
    assert!(err.contains("4_index_orders_user is older than the current version 5 but not applied"), "{err}");
    assert_eq!(state_of(&w.json(&["migrate", "--dsn", &dsn, "--dir", &dir, "status"]), 4), "out-of-order");
    let o = m(&["validate"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stdout).contains("out of order"), "{}", text(&o.stdout));
    assert_eq!(sql(&db, "SELECT to_regclass('orders_user_idx') IS NULL"), "t", "nothing ran");
    let out = ok(&m(&["up", "--allow-out-of-order"]));
    assert!(out.contains("applied 4_index_orders_user"), "{out}");
    assert_eq!(version(&w, &dsn, &dir), "5");
    let status = w.json(&["migrate", "--dsn", &dsn, "--dir", &dir, "status"]);
    assert!((1..=5).all(|v| state_of(&status, v) == "applied"), "{status}");
}

/// What golang-migrate's postgres driver leaves: its table with one row.
fn golang_migrated(db: &str, version: u64, dirty: bool) {
    let mut script = String::new();
    for (name, body) in SHOP {
        let v: u64 = name.split('_').next().and_then(|d| d.parse().ok()).unwrap_or(99);
        if v <= version && name.ends_with(".up.sql") {
            script.push_str(body);
        }
    }
    script.push_str(&format!(
        "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
         INSERT INTO schema_migrations (version, dirty) VALUES ({version}, {dirty});"
    ));
    shared(15).psql(db, &script).expect("golang-migrate's state");
}

#[test]
fn a_database_left_by_golang_migrate_is_adopted_and_only_later_files_run() {
    let w = Work::new();
    let dir = shop_dir(&w);
    let (db, dsn) = fresh_db("migrate_adopt");
    golang_migrated(&db, 3, false);

    let status = w.json(&["migrate", "--dsn", &dsn, "--dir", &dir, "status"]);
    assert_eq!(status["golang_migrate"]["version"], 3, "{status}");
    assert_eq!(state_of(&status, 3), "applied");
    assert_eq!(state_of(&status, 4), "pending");
    assert_eq!(sql(&db, "SELECT to_regclass('cutover.schema_migrations') IS NULL"), "t", "status writes nothing");
    // golang-migrate run with another x-migrations-table keeps its version elsewhere.
    let other = w.json(&["migrate", "--dsn", &dsn, "--dir", &dir, "--golang-migrate-table", "app_versions", "status"]);
    assert!(other.get("golang_migrate").is_none() && state_of(&other, 3) == "pending", "{other}");

    let o = w.run(&["migrate", "--dsn", &dsn, "--dir", &dir, "up"]);
    let out = ok(&o);
    assert!(text(&o.stderr).contains("adopted golang-migrate's schema_migrations at version 3"), "{}", text(&o.stderr));
    assert!(out.contains("applied 4_index_orders_user") && out.contains("applied 5_seed_admin"), "{out}");
    assert!(!out.contains("1_create_users") && !out.contains("3_add_users_name"), "{out}");
    assert_eq!(sql(&db, "SELECT count(*) FROM users"), "1");
    // golang-migrate's own table follows, so either tool reads where it is.
    assert_eq!(sql(&db, "SELECT version || ' ' || dirty FROM schema_migrations"), "5 false");
    assert_eq!(
        sql(&db, "SELECT string_agg(version || ':' || state, ',' ORDER BY version) FROM cutover.schema_migrations"),
        "1:adopted,2:adopted,3:adopted,4:applied,5:applied"
    );
    assert_eq!(
        sql(&db, "SELECT count(*) FROM cutover.migration_history WHERE direction = 'adopt' AND version = 3"),
        "1"
    );

    // Left dirty by golang-migrate: refused, and force is the way out.
    let (db2, dsn2) = fresh_db("migrate_dirty");
    golang_migrated(&db2, 3, true);
    let o = w.run(&["migrate", "--dsn", &dsn2, "--dir", &dir, "up"]);
    assert_eq!(code(&o), 1);
    let err = text(&o.stderr);
    assert!(err.contains("golang-migrate left this database dirty at version 3") && err.contains("force 3"), "{err}");
    assert_eq!(sql(&db2, "SELECT to_regclass('orders_user_idx') IS NULL"), "t");
    let out = ok(&w.run(&["migrate", "--dsn", &dsn2, "--dir", &dir, "force", "3"]));
    assert!(out.contains("forced: the current version is 3"), "{out}");
    ok(&w.run(&["migrate", "--dsn", &dsn2, "--dir", &dir, "up"]));
    assert_eq!(sql(&db2, "SELECT version || ' ' || dirty FROM schema_migrations"), "5 false");
    assert_eq!(sql(&db2, "SELECT count(*) FROM cutover.migration_history WHERE direction = 'force'"), "1");

    // baseline: a database built by hand, adopted at 2.
    let (db3, dsn3) = fresh_db("migrate_baseline");
    shared(15)
        .psql(
            &db3,
            &format!(
                "{}{}",
                SHOP[0].1, "CREATE TABLE orders (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users);"
            ),
        )
        .expect("schema");
    ok(&w.run(&["migrate", "--dsn", &dsn3, "--dir", &dir, "baseline", "2"]));
    let out = ok(&w.run(&["migrate", "--dsn", &dsn3, "--dir", &dir, "up", "1"]));
    assert!(out.contains("applied 3_add_users_name") && !out.contains("4_"), "{out}");
    let o = w.run(&["migrate", "--dsn", &dsn3, "--dir", &dir, "baseline", "2"]);
    assert_eq!(code(&o), 1, "a second baseline is refused: {}", text(&o.stderr));
}

#[test]
fn a_failing_migration_leaves_nothing_and_a_failing_no_transaction_one_says_what_it_left() {
    let w = Work::new();
    let (db, dsn) = fresh_db("migrate_fail");
    let dir = w.file("migrations");
    write_dir(
        &dir,
        &[
            ("1_base.up.sql", "CREATE TABLE base (id int PRIMARY KEY);\n"),
            (
                "2_half.up.sql",
                "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\nINSERT INTO nosuch VALUES (1);\n",
            ),
        ],
    );
    let dir = dir.display().to_string();
    let o = w.run(&["migrate", "--dsn", &dsn, "--dir", &dir, "up"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stdout).contains("applied 1_base"), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert!(
        err.contains("up 2_half failed at 2_half.up.sql:3:13: ERROR: relation \"nosuch\" does not exist")
            && err.contains("nothing of it was applied"),
        "{err}"
    );
    assert_eq!(sql(&db, "SELECT to_regclass('half') IS NULL"), "t", "the transaction rolled back");
    assert_eq!(version(&w, &dsn, &dir), "1", "no dirty state");
    assert_eq!(
        sql(
            &db,
            "SELECT success || ' ' || (error LIKE '%relation \"nosuch\" does not exist%') FROM cutover.migration_history WHERE version = 2"
        ),
        "false true"
    );
    // Fixed, it goes through; the failed attempt stays in the history.
    std::fs::write(
        Path::new(&dir).join("2_half.up.sql"),
        "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\n",
    )
    .expect("fix");
    ok(&w.run(&["migrate", "--dsn", &dsn, "--dir", &dir, "up"]));
    assert_eq!(sql(&db, "SELECT count(*) FROM half"), "1");
    assert_eq!(
        sql(&db, "SELECT string_agg(success::text, ',' ORDER BY id) FROM cutover.migration_history WHERE version = 2"),
        "false,true"
    );

    // Outside a transaction, the second statement fails and leaves an invalid index.
    std::fs::write(
        Path::new(&dir).join("3_unique_half.up.sql"),
        "-- cutover:no-transaction\nCREATE TABLE dup AS SELECT 1 AS x UNION ALL SELECT 1;\nCREATE UNIQUE INDEX CONCURRENTLY dup_x ON dup (x);\n",
    )
    .expect("write");
    let o = w.run(&["migrate", "--dsn", &dsn, "--dir", &dir, "up"]);
    assert_eq!(code(&o), 1);
    let err = text(&o.stderr);
    for want in [
        "up 3_unique_half failed",
        "could not create unique index \"dup_x\"",
        "1 statement(s) before it stay applied: CREATE TABLE dup AS SELECT 1 AS x UNION ALL SELECT 1",
        "Invalid index(es) left by a failed concurrent build: dup_x",
        "marked partial",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert_eq!(version(&w, &dsn, &dir), "3 (partial)");
    assert_eq!(
        sql(
            &db,
            "SELECT statements_run || '/' || statements_total || ' ' || success FROM cutover.migration_history WHERE version = 3"
        ),
        "1/2 false"
    );
    let o = w.run(&["migrate", "--dsn", &dsn, "--dir", &dir, "up"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stderr).contains("stopped part-way outside a transaction"), "{}", text(&o.stderr));
    // Repaired by hand, then forced back to 2 and run again.
    sql(&db, "DROP INDEX dup_x; DROP TABLE dup");
    ok(&w.run(&["migrate", "--dsn", &dsn, "--dir", &dir, "force", "2"]));
    std::fs::write(
        Path::new(&dir).join("3_unique_half.up.sql"),
        "-- cutover:no-transaction\nCREATE TABLE dup AS SELECT 1 AS x;\nCREATE UNIQUE INDEX CONCURRENTLY dup_x ON dup (x);\n",
    )
    .expect("fix");
    ok(&w.run(&["migrate", "--dsn", &dsn, "--dir", &dir, "up"]));
    assert_eq!(version(&w, &dsn, &dir), "3");
    assert_eq!(sql(&db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'dup_x'::regclass"), "t");
}

#[test]
fn two_runners_at_once_one_applies_the_other_waits_then_names_the_holder() {
    let w = Work::new();
    let (db, dsn) = fresh_db("migrate_lock");
    let dir = w.file("migrations");
    write_dir(
        &dir,
        &[
            ("1_slow.up.sql", "SELECT pg_sleep(4);\nCREATE TABLE slow (id int);\n"),
            ("2_next.up.sql", "CREATE TABLE next (id int);\n"),
        ],
    );
    let dir = dir.display().to_string();
    let mut first = w.spawn(&["migrate", "--dsn", &dsn, "--dir", &dir, "up"]);
    let holder = || {
        sql(
            &db,
            "SELECT DISTINCT l.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid)
             WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'cutover migrate'
               AND a.datname = current_database()",
        )
    };
    wait_until(20, "the first runner to hold the lock", || !holder().is_empty());
    let pid = holder();
    // One that waits long enough gets the lock after the first and finds nothing to do.
    let mut patient = w.spawn(&["migrate", "--dsn", &dsn, "--dir", &dir, "--lock-wait", "60s", "up"]);
    let o = w.run(&["migrate", "--dsn", &dsn, "--dir", &dir, "--lock-wait", "1s", "up"]);
    assert_eq!(code(&o), 1);
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("another migration holds the lock on database {db}: pid {pid} (cutover migrate")),
        "{err}"
    );
    assert!(err.contains("waited 1s") && err.contains(&format!("pg_terminate_backend({pid})")), "{err}");
    assert_eq!(wait_exit(&mut first, 60), 0);
    assert_eq!(wait_exit(&mut patient, 60), 0);
    let out = patient.wait_with_output().expect("output");
    assert!(text(&out.stderr).contains("waiting for the migration lock, held by pid"), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("nothing to do"), "{}", text(&out.stdout));
    assert_eq!(sql(&db, "SELECT count(*) FROM cutover.migration_history"), "2", "each applied once");
    assert_eq!(sql(&db, "SELECT count(*) FROM cutover.schema_migrations"), "2");
}

#[test]
fn a_dsn_from_a_command_secret_never_shows_in_output_history_or_errors() {
    let w = Work::new();
    let (db, dsn) = fresh_db("migrate_secret");
    const PW: &str = "pw-Secret-4711";
    // The test server trusts loopback, so the password is carried but not checked.
    let secret_dsn = dsn.replacen("postgres@", &format!("postgres:{PW}@"), 1);
    assert!(secret_dsn.contains(PW));
    w.write("dsn.txt", &secret_dsn);
    let dir = w.file("migrations");
    write_dir(
        &dir,
        &[
            ("1_t.up.sql", "CREATE TABLE t (id int);\n"),
            // Its error message quotes the secret back.
            ("2_leak.up.sql", &format!("SELECT '{PW}'::int;\n")),
        ],
    );
    let dir = dir.display().to_string();
    let reference = "command:cat dsn.txt";
    let mut seen = String::new();
    for args in [vec!["up"], vec!["status"], vec!["history"], vec!["version"], vec!["--output", "json", "history"]] {
        let mut a = vec!["migrate", "--dsn", reference, "--dir", &dir];
        a.extend(args);
        let o = w.run(&a);
        seen.push_str(&text(&o.stdout));
        seen.push_str(&text(&o.stderr));
    }
    assert!(seen.contains("[redacted]"), "the failing migration's error is shown, masked:\n{seen}");
    assert!(seen.contains("invalid input syntax for type integer"), "{seen}");
    // A wrong port in the secret: the connect error does not show it either.
    w.write("bad.txt", &secret_dsn.replace("127.0.0.1:", "127.0.0.1:1"));
    let o = w.run(&["migrate", "--dsn", "command:cat bad.txt", "--dir", &dir, "up"]);
    assert_eq!(code(&o), 2);
    seen.push_str(&text(&o.stderr));
    // And a command that fails.
    let o = w.run(&["migrate", "--dsn", &format!("command:echo {PW}; exit 3"), "--dir", &dir, "up"]);
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    assert!(err.contains("its command failed"), "{err}");
    seen.push_str(&err);
    assert!(!seen.contains(PW), "the secret leaked:\n{seen}");
    let stored = sql(
        &db,
        "SELECT string_agg(concat_ws(' ', error, ran_by, source, db_user), E'\\n') FROM cutover.migration_history",
    );
    assert!(stored.contains("[redacted]") && !stored.contains(PW), "{stored}");
}

#[test]
fn a_git_source_is_checked_out_at_its_ref() {
    let w = Work::new();
    let (db, dsn) = fresh_db("migrate_git");
    let repo = w.file("repo");
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git");
        assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
    };
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&["init", "--quiet", "--initial-branch", "main"]);
    write_dir(&repo.join("db/migrations"), &SHOP[..4]);
    git(&["add", "."]);
    git(&["commit", "--quiet", "-m", "v1"]);
    git(&["tag", "v1"]);
    write_dir(&repo.join("db/migrations"), &SHOP[4..6]);
    git(&["add", "."]);
    git(&["commit", "--quiet", "-m", "v2"]);

    let source = format!("git:{}#v1:db/migrations", repo.display());
    let out = ok(&w.run(&["migrate", "--dsn", &dsn, "--dir", &source, "up"]));
    assert!(out.contains("applied 2_create_orders") && !out.contains("3_add_users_name"), "{out}");
    let out =
        ok(&w.run(&["migrate", "--dsn", &dsn, "--dir", &format!("git:{}#main:db/migrations", repo.display()), "up"]));
    assert!(out.contains("applied 3_add_users_name"), "{out}");
    assert!(
        sql(&db, "SELECT source FROM cutover.migration_history WHERE version = 3")
            .contains("#main:db/migrations (commit "),
        "the history says which commit"
    );
    let o = w.run(&["migrate", "--dsn", &dsn, "--dir", &format!("git:{}#nosuch:db", repo.display()), "up"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("has no branch, tag or commit `nosuch`"), "{}", text(&o.stderr));
}

#[test]
fn lint_from_the_command_line_exits_one_on_errors_and_lints_only_pending_files_with_a_dsn() {
    let w = Work::new();
    let dir = w.file("migrations");
    write_dir(
        &dir,
        &[
            (
                "1_users.up.sql",
                "CREATE TABLE users (id bigint PRIMARY KEY, email text);\nCREATE INDEX users_email ON users (email);\n",
            ),
            ("2_index.up.sql", "CREATE INDEX users_email2 ON users (email);\n"),
        ],
    );
    let dir = dir.display().to_string();
    let o = w.run(&["migrate", "--dir", &dir, "lint"]);
    assert_eq!(code(&o), 1, "{}", text(&o.stdout));
    let out = text(&o.stdout);
    assert!(out.contains("2_index.up.sql:1:1: error M001 index-not-concurrent"), "{out}");
    assert!(!out.contains("1_users.up.sql:2"), "an index on a table made in the same file is fine:\n{out}");
    let j = w.json(&["migrate", "--dir", &dir, "lint"]);
    assert_eq!(j["files"], 2);
    assert!(j["errors"].as_u64().is_some_and(|n| n >= 1), "{j}");
    assert_eq!(j["findings"][0]["code"], "M001", "{j}");

    // Against an empty database both files are pending: users does not exist
    // yet, so indexing it in file 2 blocks nobody.
    let (_db, dsn) = fresh_db("migrate_lint");
    let out = ok(&w.run(&["migrate", "--dsn", &dsn, "--dir", &dir, "lint"]));
    assert!(out.contains("2 file(s) linted: 0 error(s)"), "{out}");
    // Once file 1 has run, users may be in use: the same index is an error.
    ok(&w.run(&["migrate", "--dsn", &dsn, "--dir", &dir, "up", "1"]));
    let o = w.run(&["migrate", "--dsn", &dsn, "--dir", &dir, "lint"]);
    assert_eq!(code(&o), 1, "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("2_index.up.sql:1:1: error M001"), "{}", text(&o.stdout));
    // With the database at 2, nothing is pending: clean.
    ok(&w.run(&["migrate", "--dsn", &dsn, "--dir", &dir, "up"]));
    let out = ok(&w.run(&["migrate", "--dsn", &dsn, "--dir", &dir, "lint"]));
    assert!(out.contains("0 file(s) linted: 0 error(s)"), "{out}");
    let out = ok(&w.run(&["migrate", "--dir", &dir, "lint", "--rules"]));
    assert!(out.contains("M001") && out.contains("index-not-concurrent"), "{out}");
}

#[test]
fn lint_with_a_dsn_knows_the_current_column_types() {
    let w = Work::new();
    let (db, dsn) = fresh_db("migrate_lint_types");
    sql(
        &db,
        "CREATE TABLE accounts (id integer PRIMARY KEY, name varchar(50), total numeric(10,2), email varchar(50));
         CREATE INDEX accounts_email_lower ON accounts (lower(email));",
    );
    let dir = w.file("migrations");
    let set = "SET lock_timeout = '2s';\n";
    write_dir(
        &dir,
        &[
            ("1_widen.up.sql", &format!("{set}ALTER TABLE accounts ALTER COLUMN name TYPE varchar(100);\n")),
            ("2_id.up.sql", &format!("{set}ALTER TABLE accounts ALTER COLUMN id TYPE bigint;\n")),
            ("3_total.up.sql", &format!("{set}ALTER TABLE accounts ALTER COLUMN total TYPE numeric(8,2);\n")),
            ("4_email.up.sql", &format!("{set}ALTER TABLE accounts ALTER COLUMN email TYPE varchar(100);\n")),
        ],
    );
    let dir = dir.display().to_string();
    let findings = |j: &serde_json::Value| -> Vec<(String, String, String, String)> {
        j["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| {
                let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
                (s("file"), s("severity"), s("message"), s("alternative"))
            })
            .collect()
    };
    // From the files alone: the widening may or may not rewrite (a warning).
    let alone = findings(&w.json(&["migrate", "--dir", &dir, "lint"]));
    assert_eq!(
        alone.iter().map(|f| (f.0.as_str(), f.1.as_str())).collect::<Vec<_>>(),
        [
            ("1_widen.up.sql", "warning"),
            ("2_id.up.sql", "error"),
            ("3_total.up.sql", "error"),
            ("4_email.up.sql", "warning")
        ]
    );
    // Against the database: varchar(50) → varchar(100) rewrites nothing, and
    // the others name the type the column has now; the same widening of a
    // column with an expression index still rebuilds that index.
    let known = findings(&w.json(&["migrate", "--dsn", &dsn, "--dir", &dir, "lint"]));
    assert_eq!(known.len(), 3, "{known:#?}");
    assert!(
        known[2].2.contains("rewrites no rows of accounts, but rebuilds \"accounts_email_lower\""),
        "{}",
        known[2].2
    );
    assert_eq!((known[0].0.as_str(), known[0].1.as_str()), ("2_id.up.sql", "error"));
    assert!(known[0].2.contains("TYPE bigint (now integer) rewrites accounts"), "{}", known[0].2);
    assert!(known[0].3.contains("cutover pg bigint --table accounts --column id"), "{}", known[0].3);
    assert!(known[1].2.contains("TYPE numeric(8,2) (now numeric(10,2))"), "{}", known[1].2);
    assert!(!known[1].3.contains("cutover pg bigint"), "{}", known[1].3);
}
