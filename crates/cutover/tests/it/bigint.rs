//! `cutover pg bigint` and the `pg.bigint` step on PostgreSQL 15: a run
//! killed in the middle of the backfill resumes where its last committed
//! batch left it; a pause shows in the tower and /metrics; the cut-over
//! waits for an approval; the one-liner's dry-run, status, contract and
//! errors.

use crate::support::*;
use crate::tower::{http, serve};
use cutover_testkit::{shared, unique_db_name};

const PARENT_ROWS: i64 = 300_000;
const CHILD_ROWS: i64 = 60_000;

fn shop() -> (String, String) {
    let pg = shared(15);
    let db = unique_db_name("bigint_it");
    let dsn = pg.create_database(&db).expect("db");
    pg.psql(
        &db,
        &format!(
            "CREATE TABLE parent (id serial PRIMARY KEY, name text NOT NULL);
             CREATE TABLE child (id serial PRIMARY KEY, parent_id int NOT NULL REFERENCES parent, v int);
             CREATE INDEX child_parent ON child (parent_id);
             INSERT INTO parent (name) SELECT 'p' || g FROM generate_series(1, {PARENT_ROWS}) g;
             INSERT INTO child (parent_id, v) SELECT 1 + g % {PARENT_ROWS}, g FROM generate_series(1, {CHILD_ROWS}) g;
             ANALYZE;"
        ),
    )
    .expect("schema");
    (db, dsn)
}

fn sql(db: &str, q: &str) -> String {
    shared(15).psql(db, q).expect("psql").trim().to_string()
}

#[test]
fn a_conversion_killed_mid_backfill_resumes_shows_its_pause_and_waits_for_approval() {
    let w = Work::new();
    let (db, dsn) = shop();
    let checksum = "SELECT md5(string_agg(id::text || name, ',' ORDER BY id)) FROM parent";
    let before = sql(&db, checksum);
    w.write(
        "p.toml",
        &format!(
            r#"name = "widen"
[[targets]]
name = "shop"
vars = {{ dsn = "{dsn}" }}
[[phases]]
name = "convert"
[[phases.steps]]
name = "widen"
kind = "pg.bigint"
table = "parent"
batch_rows = 200
batch_time = "20ms"
approve_cutover = true
"#
        ),
    );
    let mut child = w.spawn(&["run", "p.toml"]);
    let done = |db: &str| -> i64 {
        shared(15)
            .psql(db, "SELECT rows_done FROM cutover.bigint_conversions")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_until(60, "the backfill to commit a few batches", || done(&db) >= 2000);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let at_kill = done(&db);
    assert!(at_kill < PARENT_ROWS + CHILD_ROWS, "killed before the backfill finished ({at_kill})");
    let run = w.run_id();

    // The conversion's state, seen from another process.
    let st = w.json(&["pg", "bigint", "--dsn", &dsn, "--status"]);
    assert_eq!(st[0]["table"], "public.parent");
    assert_eq!(st[0]["stage"], "expand", "{st}");
    assert_eq!(st[0]["next"], "backfill next");
    assert!(st[0]["rows_done"].as_i64().unwrap_or(0) >= at_kill);

    // Paused before the run goes on: the tower and /metrics say why it waits.
    let o = w.run(&["pg", "bigint", "--dsn", &dsn, "--table", "parent", "--pause"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let (mut tower, url, _err) = serve(&w);
    let mut resumed = w.spawn(&["resume", &run]);
    wait_until(60, "the tower to show the throttle", || {
        let (_, body) = http("GET", &format!("{url}/api/runs/{run}"), &[], None);
        body.contains("throttled: paused by the operator")
    });
    let (_, metrics) = http("GET", &format!("{url}/metrics"), &[], None);
    assert!(
        metrics.lines().any(|l| l.starts_with("cutover_step_throttled{")
            && l.contains("step=\"widen\"")
            && l.contains("reason=\"paused by the operator")),
        "{metrics}"
    );
    assert!(metrics.contains("cutover_step_done{run=\""), "{metrics}");
    let o = w.run(&["pg", "bigint", "--dsn", &dsn, "--table", "parent", "--resume"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));

    // It stops before the cut-over until someone approves.
    wait_until(120, "the approval request", || kinds(&w.events(&run)).contains(&"approval_needed".to_string()));
    assert_eq!(
        sql(
            &db,
            "SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'parent'::regclass AND attname = 'id'"
        ),
        "integer"
    );
    assert_eq!(sql(&db, "SELECT stage FROM cutover.bigint_conversions"), "prepare");
    wait_until(30, "the tower's approve button", || {
        let (_, page) = http("GET", &format!("{url}/runs/{run}"), &[], None);
        page.contains("data-approve=\"widen\"")
    });
    let o = w.run(&["approve", &run, "widen"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(wait_exit(&mut resumed, 120), 0);
    let _ = tower.kill();
    let _ = tower.wait();

    // Nothing lost, nothing walked twice: the batches' rows add up to the tables'.
    assert_eq!(sql(&db, "SELECT rows_done FROM cutover.bigint_conversions"), (PARENT_ROWS + CHILD_ROWS).to_string());
    assert_eq!(sql(&db, checksum), before);
    assert_eq!(sql(&db, "SELECT count(*) FROM parent WHERE id IS DISTINCT FROM id__int"), "0");
    assert_eq!(sql(&db, "SELECT count(*) FROM child WHERE parent_id IS DISTINCT FROM parent_id__int"), "0");
    assert_eq!(
        sql(
            &db,
            "SELECT string_agg(attrelid::regclass || '.' || attname || ':' || format_type(atttypid, NULL), ' ' ORDER BY attrelid::regclass::text, attname) FROM pg_attribute WHERE attrelid IN ('parent'::regclass, 'child'::regclass) AND attname IN ('id', 'parent_id')"
        ),
        "child.id:integer child.parent_id:bigint parent.id:bigint"
    );
    let ev = w.events(&run);
    let report = ev.iter().find(|e| e["kind"] == "bigint_report").expect("bigint_report");
    assert_eq!(report["data"]["stage"], "cutover", "{report}");
    assert!(report["data"]["cutover"]["lock_held_ms"].as_f64().is_some_and(|ms| ms < 1000.0), "{report}");
    assert!(ev.iter().any(|e| e["kind"] == "bigint_throttled"), "the throttle was recorded");
    assert!(
        ev.iter().any(|e| e["kind"] == "step_progress"
            && e["data"]["note"].as_str().is_some_and(|n| n.starts_with("stage: backfill"))),
        "progress with its stage"
    );
    assert!(ev.iter().any(|e| e["kind"] == "approved"));
}

#[test]
fn the_one_liner_plans_converts_reports_and_contracts() {
    let w = Work::new();
    let (db, dsn) = shop();
    let o = w.run(&["pg", "bigint", "--dsn", &dsn, "--table", "parent", "--dry-run"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for want in [
        "public.parent.id (integer) on PostgreSQL 15",
        "foreign key child_parent_id_fkey on public.child.parent_id",
        "== expand",
        "-- lock: ACCESS EXCLUSIVE on public.parent for a catalog change (no rewrite, no scan)",
        "== prepare",
        "CREATE UNIQUE INDEX CONCURRENTLY \"parent_pkey__bigint\" ON public.parent USING btree (\"id__bigint\")",
        "== cutover",
        "LOCK TABLE public.parent, public.child IN ACCESS EXCLUSIVE MODE",
        "lock_timeout 500 ms, statement_timeout 1000 ms, up to 30 attempts",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(sql(&db, "SELECT to_regclass('cutover.bigint_conversions') IS NULL"), "t", "a dry-run writes nothing");

    let o = w.run(&["pg", "bigint", "--dsn", &dsn, "--table", "parent", "--lock-timeout", "300ms"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("public.parent.id and 1 foreign key(s) are bigint now"), "{out}");
    assert!(out.contains("swap: attempt 1, waited"), "{out}");
    let err = text(&o.stderr);
    assert!(
        err.contains("== backfill:") && err.contains("ALTER TABLE public.parent ADD COLUMN IF NOT EXISTS"),
        "{err}"
    );

    // Again: nothing to do. Contract, then status says finished.
    let o = w.run(&["pg", "bigint", "--dsn", &dsn, "--table", "parent"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("already cut over"), "{}", text(&o.stdout));
    let o = w.run(&["pg", "bigint", "--dsn", &dsn, "--table", "parent", "--contract"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let o = w.run(&["pg", "bigint", "--dsn", &dsn, "--status"]);
    assert!(text(&o.stdout).contains("finished"), "{}", text(&o.stdout));
    assert_eq!(sql(&db, "SELECT count(*) FROM pg_attribute WHERE attname LIKE '%\\_\\_int' AND NOT attisdropped"), "0");

    // Bad input: one sentence, non-zero, no secret.
    let o = w.run(&["pg", "bigint", "--dsn", &dsn, "--table", "nosuch"]);
    assert_ne!(code(&o), 0);
    let err = text(&o.stderr);
    assert!(err.contains("there is no table `nosuch`") && err.lines().count() == 1, "{err}");
    let bad = dsn.replacen("postgres@", "postgres:hunter2@", 1).replace("127.0.0.1:", "127.0.0.1:1");
    let o = w.run(&["pg", "bigint", "--dsn", &bad, "--table", "parent"]);
    assert_ne!(code(&o), 0);
    assert!(!text(&o.stderr).contains("hunter2"), "{}", text(&o.stderr));
    let o = w.run(&["pg", "bigint", "--dsn", &dsn, "--table", "parent", "--rollback"]);
    assert_ne!(code(&o), 0);
    assert!(text(&o.stderr).contains("nothing to roll back"), "{}", text(&o.stderr));
}
