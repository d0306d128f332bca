//! `cutover pg preflight` and the `pg.preflight` step, PostgreSQL 13 → 15.

use crate::support::*;
use cutover_testkit::{shared, unique_db_name};

/// A PostgreSQL 13 database with a blocker (a btree entry over 2704 bytes,
/// left as an invalid index) and warnings (an unlogged table, a large object).
fn trap_db() -> String {
    let src = shared(13);
    let db = unique_db_name("trap");
    src.create_database(&db).expect("db");
    src.psql(
        &db,
        "CREATE TABLE docs (id int PRIMARY KEY, body text);
         INSERT INTO docs SELECT 1, string_agg(md5(g::text), '') FROM generate_series(1, 100) g;
         CREATE UNLOGGED TABLE cache (k text);
         SELECT lo_create(0);",
    )
    .expect("schema");
    assert!(src.psql(&db, "CREATE INDEX CONCURRENTLY docs_body ON docs (body);").is_err());
    src.dsn(&db)
}

#[test]
fn the_preflight_command_reports_blockers_and_exits_by_severity() {
    let w = Work::new();
    let source = trap_db();
    let target = shared(15).dsn("postgres");
    let o = w.run(&["pg", "preflight", "--source", &source, "--target", &target]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("(PostgreSQL 13.") && out.contains("→ 15): 1 blocker(s), 3 warning(s)"), "{out}");
    assert!(out.contains("BLOCKER  index-row-size:") && out.contains("- public.docs.docs_body (1 row(s)"), "{out}");
    assert!(out.contains("fix: Shorten the values"), "{out}");

    let j = w.json(&["pg", "preflight", "--source", &source, "--target-version", "15"]);
    let rules: Vec<&str> =
        j["findings"].as_array().expect("findings").iter().filter_map(|f| f["rule"].as_str()).collect();
    assert_eq!(rules, ["index-row-size", "unlogged-tables", "large-objects", "invalid-indexes"]);
    assert_eq!(j["findings"][0]["severity"], "blocker");

    let ignore = ["--ignore", "index-row-size", "--ignore", "invalid-indexes"];
    let base = ["pg", "preflight", "--source", &source, "--target-version", "15"];
    assert_eq!(code(&w.run(&[&base[..], &ignore[..]].concat())), 0, "warnings alone pass");
    assert_eq!(code(&w.run(&[&base[..], &ignore[..], &["--fail-on", "warning"]].concat())), 1);

    // Bad input: one sentence, exit 2, no password.
    let o = w.run(&["pg", "preflight", "--source", "postgres://u:s3cret-pw@127.0.0.1:1/x", "--target-version", "15"]);
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    assert!(err.starts_with("error: cannot connect to 127.0.0.1:1/x") && !err.contains("s3cret-pw"), "{err}");
    let o = w.run(&["pg", "preflight", "--source", &source, "--target-version", "15", "--ignore", "nope"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("there is no preflight rule `nope`"), "{}", text(&o.stderr));
}

#[test]
fn a_preflight_step_keeps_a_trapped_database_out_and_lets_a_clean_one_through() {
    let w = Work::new();
    let src = shared(13);
    let clean = unique_db_name("clean");
    src.create_database(&clean).expect("db");
    src.psql(&clean, "CREATE TABLE t (id serial PRIMARY KEY, v text);").expect("schema");
    let plan = format!(
        r#"name = "preflight"
[[targets]]
name = "clean"
vars = {{ dsn = "{}" }}
[[targets]]
name = "trapped"
vars = {{ dsn = "{}" }}
[[phases]]
name = "check"
[[phases.steps]]
name = "preflight"
kind = "pg.preflight"
target_dsn = "{}"
[[phases]]
name = "window"
[[phases.steps]]
name = "switch"
kind = "exec"
command = "touch switched-{{{{ name }}}}"
"#,
        src.dsn(&clean),
        trap_db(),
        shared(15).dsn("postgres")
    );
    w.write("p.toml", &plan);
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let run = w.run_id();
    assert_eq!(w.target_state(&run, "clean"), "succeeded");
    assert_eq!(w.target_state(&run, "trapped"), "failed");
    assert!(w.file("switched-clean").exists() && !w.file("switched-trapped").exists());
    let ev = w.events(&run);
    let failed = ev.iter().find(|e| e["kind"] == "step_failed" && e["target"] == "trapped").expect("failed");
    assert!(
        failed["message"].as_str().unwrap_or("").contains(
            "preflight found 1 blocker(s), 3 warning(s), 0 info: blocker index-row-size: public.docs.docs_body"
        ),
        "{failed}"
    );
    let reports = ev.iter().filter(|e| e["kind"] == "preflight_report").count();
    assert_eq!(reports, 2, "each target's report is on record");
    // A preflight without a version to check against is refused.
    w.write("q.toml", "name = \"q\"\n[[targets]]\nname = \"a\"\nvars = { dsn = \"x\" }\n[[phases]]\nname = \"p\"\n[[phases.steps]]\nname = \"pf\"\nkind = \"pg.preflight\"\n");
    let o = w.run(&["validate", "q.toml"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("needs target_version or target_dsn"), "{}", text(&o.stderr));
}

#[test]
fn the_verify_step_passes_a_faithful_copy_and_the_command_names_a_difference() {
    let w = Work::new();
    let (src, dst) = (shared(13), shared(15));
    let db = unique_db_name("verify");
    src.create_database(&db).expect("db");
    src.psql(&db, "CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 200) g;")
        .expect("schema");
    dst.create_database(&db).expect("copy db");
    let dump = std::process::Command::new(dst.bin_dir().join("pg_dump"))
        .args(["-h", "127.0.0.1", "-p", &src.port().to_string(), "-U", "postgres", "-d", &db])
        .output()
        .expect("pg_dump");
    dst.psql(&db, &String::from_utf8_lossy(&dump.stdout)).expect("restore");
    w.write(
        "p.toml",
        &format!(
            "name = \"verify\"\n[[targets]]\nname = \"a\"\nvars = {{ dsn = \"{}\", new_dsn = \"{}\" }}\n[[phases]]\nname = \"verify\"\n[[phases.steps]]\nname = \"verify\"\nkind = \"pg.verify\"\ntarget_dsn = \"{{{{ vars.new_dsn }}}}\"\n",
            src.dsn(&db),
            dst.dsn(&db)
        ),
    );
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let ev = w.events(&w.run_id());
    let report = ev.iter().find(|e| e["kind"] == "verify_report").expect("verify_report");
    assert_eq!(report["data"]["rows"], 200);

    dst.psql(&db, "UPDATE t SET v = 'changed' WHERE id = 7;").expect("corrupt");
    let o = w.run(&["pg", "verify", "--source", &src.dsn(&db), "--target", &dst.dsn(&db)]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("1 difference(s)") && out.contains("public.t") && out.contains("different contents"), "{out}");
}

/// A PostgreSQL 13 database big enough that a copy in 1 MiB key ranges on
/// one connection takes seconds: 400,000 rows of about 100 bytes (some 45
/// ranges), an index, a foreign key.
fn copy_source() -> String {
    let src = shared(13);
    let db = unique_db_name("copysrc");
    src.create_database(&db).expect("db");
    src.psql(
        &db,
        "CREATE TABLE accounts (id int PRIMARY KEY, name text);
         CREATE TABLE moves (id bigserial PRIMARY KEY, account int REFERENCES accounts, amount numeric, memo text);
         CREATE INDEX moves_account ON moves (account);
         INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 1000) g;
         INSERT INTO moves (account, amount, memo) SELECT 1 + g % 1000, g / 3.0, repeat(md5(g::text), 2) FROM generate_series(1, 400000) g;",
    )
    .expect("schema");
    db
}

#[test]
fn a_copy_step_killed_in_the_middle_resumes_without_duplicating_rows() {
    let w = Work::new();
    let (src, dst) = (shared(13), shared(15));
    let db = copy_source();
    let plan = format!(
        r#"name = "copy"
[[targets]]
name = "shop"
vars = {{ dsn = "{}", new_dsn = "{}" }}
[[phases]]
name = "move"
downtime = true
[[phases.steps]]
name = "backup"
kind = "pg.backup"
pg_bin = "{bin}"
[[phases.steps]]
name = "copy"
kind = "pg.copy"
target_dsn = "{{{{ vars.new_dsn }}}}"
jobs = 1
split_mb = 1
pg_bin = "{bin}"
[[phases.steps]]
name = "verify"
kind = "pg.verify"
target_dsn = "{{{{ vars.new_dsn }}}}"
"#,
        src.dsn(&db),
        dst.dsn(&db),
        bin = dst.bin_dir().display()
    );
    w.write("p.toml", &plan);
    let mut child = w.spawn(&["run", "p.toml"]);
    let data_done = |w: &Work| -> usize {
        let Ok(runs) = w.cmd(&["runs", "--output", "json"]).output() else { return 0 };
        let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap_or_default();
        let Some(run) = runs.as_array().and_then(|a| a.last()).and_then(|r| r["id"].as_str()) else { return 0 };
        let Ok(out) = w.cmd(&["events", run, "--output", "json"]).output() else { return 0 };
        text(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["kind"] == "copy_done" && e["data"]["key"].as_str().is_some_and(|k| k.starts_with("data:")))
            .count()
    };
    wait_until(60, "a first piece of data to be copied", || w.state().exists() && data_done(&w) >= 1);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let run = w.run_id();
    let before = data_done(&w);
    let ev = w.events(&run);
    assert!(!ev.iter().any(|e| e["kind"] == "copy_report"), "killed before the copy finished");

    let o = w.run(&["resume", &run]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let ev = w.events(&run);
    let report = ev.iter().find(|e| e["kind"] == "copy_report").expect("copy_report");
    assert!(report["data"]["skipped"].as_u64().unwrap_or(0) >= before as u64, "{report}");
    assert!(report["data"]["parts"].as_u64().unwrap_or(0) >= 10, "{report}");
    let verify = ev.iter().find(|e| e["kind"] == "verify_report").expect("verify_report");
    assert_eq!(verify["data"]["differences"], serde_json::json!([]), "{verify}");
    let counts = dst.psql(&db, "SELECT count(*), count(DISTINCT id) FROM moves").expect("count");
    assert_eq!(counts.trim(), "400000|400000");
    assert!(ev.iter().any(|e| e["kind"] == "step_progress" && e["step"] == "copy"), "progress reached the store");
    let backup = ev.iter().find(|e| e["kind"] == "backup_taken").expect("backup_taken");
    assert!(backup["message"].as_str().unwrap_or("").contains("(PostgreSQL 13."), "{backup}");

    // The backup, listed and restored by hand.
    let dir = w.file("backups");
    let list = w.json(&["pg", "backups", "--dir", dir.to_str().expect("utf-8")]);
    let id = list[0]["id"].as_str().expect("id").to_string();
    assert_eq!(list[0]["database"], db.as_str());
    let restored = format!("{db}_restored");
    let o = w.run(&[
        "pg",
        "restore",
        &id,
        "--dir",
        dir.to_str().expect("utf-8"),
        "--target",
        &dst.dsn(&restored),
        "--pg-bin",
        dst.bin_dir().to_str().expect("utf-8"),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("(database created)"), "{}", text(&o.stdout));
    assert_eq!(dst.psql(&restored, "SELECT count(*) FROM moves").expect("count").trim(), "400000");
}

#[test]
fn the_copy_command_copies_and_refuses_a_target_that_is_not_empty() {
    let w = Work::new();
    let (src, dst) = (shared(13), shared(15));
    let db = unique_db_name("copycli");
    src.create_database(&db).expect("db");
    src.psql(&db, "CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 5000) g;")
        .expect("schema");
    let bin = dst.bin_dir().to_str().expect("utf-8").to_string();
    let args = ["pg", "copy", "--source", &src.dsn(&db), "--target", &dst.dsn(&db), "--pg-bin", &bin, "--jobs", "2"];
    let o = w.run(&args);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("1 table(s) in 1 part(s), 5000 row(s)") && out.contains("1 constraint(s)"), "{out}");
    assert!(text(&o.stderr).contains("== data:"), "progress on stderr: {}", text(&o.stderr));
    let o = w.run(&["pg", "verify", "--source", &src.dsn(&db), "--target", &dst.dsn(&db)]);
    assert_eq!(code(&o), 0, "{}", text(&o.stdout));
    // Again into the same database: refused in one sentence.
    let o = w.run(&args);
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    assert!(err.contains("already holds 1 table(s)") && err.lines().count() == 1, "{err}");
}
