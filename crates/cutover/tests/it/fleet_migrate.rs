//! The `pg.migrate` step over a fleet of tenant databases on PostgreSQL 15:
//! four tenants in two waves of two behind a wave gate, the DSN built from a
//! secret and each target's database name. A first run brings every tenant
//! to version 3 (one migration outside a transaction); a fourth migration
//! that conflicts with one tenant's schema fails that target only, leaves
//! nothing of itself behind there, and goes through after a repair and a
//! retry; a migration lock held by someone else fails its tenant after
//! `lock_wait`, naming the holder; with `lint = true`, a file that builds an
//! index without CONCURRENTLY is refused before any tenant is touched.

use crate::support::*;
use cutover_testkit::{shared, unique_db_name};
use serde_json::Value;
use std::process::Output;

/// The secret that holds the server's address; the plan adds the database.
const SECRET_ENV: &str = "FLEET_MIGRATE_PG";

const MIGRATIONS: &[(&str, &str)] = &[
    (
        "1_create_orders.up.sql",
        "CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint NOT NULL, total numeric(12, 2) NOT NULL);\n",
    ),
    ("1_create_orders.down.sql", "DROP TABLE orders;\n"),
    // golang-migrate's own BEGIN/COMMIT, run inside the runner's transaction.
    ("2_add_status.up.sql", "BEGIN;\nALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'new';\nCOMMIT;\n"),
    ("2_add_status.down.sql", "ALTER TABLE orders DROP COLUMN status;\n"),
    (
        "3_index_orders_user.up.sql",
        "-- cutover:no-transaction\nCREATE INDEX CONCURRENTLY orders_user_idx ON orders (user_id);\n",
    ),
    ("3_index_orders_user.down.sql", "-- cutover:no-transaction\nDROP INDEX CONCURRENTLY orders_user_idx;\n"),
];

/// Its first statement succeeds everywhere; its second fails where a
/// `discounts` table exists already, so the first must not stay.
const FOURTH: (&str, &str) = (
    "4_add_discounts.up.sql",
    "ALTER TABLE orders ADD COLUMN discount_code text;\n\
     CREATE TABLE discounts (code text PRIMARY KEY, percent int NOT NULL CHECK (percent BETWEEN 0 AND 100));\n",
);

/// Four fresh tenant databases.
fn tenants(prefix: &str) -> Vec<String> {
    let pg = shared(15);
    (0..4)
        .map(|_| {
            let db = unique_db_name(prefix);
            pg.create_database(&db).expect("tenant database");
            db
        })
        .collect()
}

fn sql(db: &str, q: &str) -> String {
    shared(15).psql(db, q).expect("psql").trim().to_string()
}

/// The plan: t1…t4 in waves of 2, at most 2 at once, the next wave only
/// once the last one had no failure, one pg.migrate step.
fn plan(dbs: &[String], dir: &str, extra: &str) -> String {
    let mut targets = String::new();
    for (i, db) in dbs.iter().enumerate() {
        targets.push_str(&format!("[[targets]]\nname = \"t{}\"\nvars = {{ db = \"{db}\" }}\n", i + 1));
    }
    format!(
        r#"name = "tenants"
waves = [2, "100%"]
wave_gate = {{ proceed_when = "wave.failed == 0" }}
[secrets]
pg = "env:{SECRET_ENV}"
[concurrency]
limit = 2
{targets}
[[phases]]
name = "schema"
[[phases.steps]]
name = "migrate"
kind = "pg.migrate"
dsn = "{{{{ secrets.pg }}}}/{{{{ vars.db }}}}"
dir = "{dir}"
lock_timeout = "5s"
{extra}"#
    )
}

/// `cutover ARGS` with the secret set.
fn cutover(w: &Work, args: &[&str]) -> Output {
    let server = format!("postgres://postgres@127.0.0.1:{}", shared(15).port());
    w.cmd(args).env(SECRET_ENV, server).output().expect("run cutover")
}

fn write_dir(w: &Work, dir: &str, files: &[(&str, &str)]) {
    std::fs::create_dir_all(w.file(dir)).expect("mkdir");
    for (name, text) in files {
        w.write(&format!("{dir}/{name}"), text);
    }
}

/// The events of `kind` for one target.
fn of<'a>(events: &'a [Value], kind: &str, target: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind && e["target"] == target).collect()
}

/// A target's `migrate` outputs from its step_succeeded event.
fn outputs(events: &[Value], target: &str) -> Value {
    of(events, "step_succeeded", target)
        .iter()
        .find(|e| e["step"] == "migrate")
        .map(|e| e["data"]["outputs"].clone())
        .unwrap_or_else(|| panic!("no outputs of migrate for {target}"))
}

/// A target's message in `cutover status --output json`.
fn message(status: &Value, target: &str) -> String {
    let targets = status["targets"].as_array().expect("targets");
    let t = targets.iter().find(|t| t["name"] == target).expect("target");
    t["message"].as_str().unwrap_or_default().to_string()
}

fn version(db: &str) -> String {
    sql(db, "SELECT max(version) FROM cutover.schema_migrations WHERE state = 'applied'")
}

#[test]
fn fleet_migrate_applies_in_waves_fails_one_tenant_cleanly_and_lint_refuses_before_any() {
    let w = Work::new();
    let dbs = tenants("fleet_migrate");
    write_dir(&w, "migrations", MIGRATIONS);
    w.write("p.toml", &plan(&dbs, "migrations", ""));

    // 1. Every tenant to version 3, wave by wave.
    let o = cutover(&w, &["run", "p.toml"]);
    assert_eq!(code(&o), 0, "stderr: {}", text(&o.stderr));
    let run = w.run_id();
    let status = w.status(&run);
    assert_eq!(status["counts"]["succeeded"], 4, "{status:#}");
    let events = w.events(&run);
    for (i, db) in dbs.iter().enumerate() {
        let t = format!("t{}", i + 1);
        assert_eq!(version(db), "3", "{t}");
        assert_eq!(
            sql(
                db,
                "SELECT string_agg(version || ':' || direction || ':' || success, ' ' ORDER BY id) FROM cutover.migration_history"
            ),
            "1:up:true 2:up:true 3:up:true",
            "{t}"
        );
        assert!(
            sql(db, "SELECT ran_by FROM cutover.migration_history WHERE version = 3")
                .starts_with(&format!("cutover run {run} target {t} — ")),
            "{t}"
        );
        assert_eq!(sql(db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_user_idx'::regclass"), "t");
        assert_eq!(
            sql(
                db,
                "SELECT column_default FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'status'"
            ),
            "'new'::text"
        );
        // One migration_applied per migration, in order, with its duration.
        let applied = of(&events, "migration_applied", &t);
        let versions: Vec<u64> = applied.iter().filter_map(|e| e["data"]["version"].as_u64()).collect();
        assert_eq!(versions, [1, 2, 3], "{t}: {applied:#?}");
        assert_eq!(applied[2]["data"]["title"], "index_orders_user");
        assert!(applied.iter().all(|e| e["data"]["duration_ms"].is_u64()), "{applied:#?}");
        // Progress in migrations, with the no-transaction file named as such.
        let progress = of(&events, "step_progress", &t);
        let last = progress.last().expect("progress");
        assert_eq!((last["data"]["done"].as_f64(), last["data"]["total"].as_f64()), (Some(3.0), Some(3.0)), "{last}");
        assert_eq!(last["data"]["unit"], "migrations");
        assert!(
            progress.iter().any(|p| p["data"]["note"] == "up 3_index_orders_user (outside a transaction)"),
            "{progress:#?}"
        );
        let out = outputs(&events, &t);
        assert_eq!((out["before"].clone(), out["after"].clone()), (Value::Null, 3.into()), "{out}");
        assert_eq!(out["applied"], serde_json::json!([1, 2, 3]));
    }
    // Wave 2 started only after wave 1 had passed its gate.
    let wave = events.iter().find(|e| e["kind"] == "wave_passed").expect("wave_passed");
    assert_eq!(wave["data"]["wave"], 1, "{wave}");
    let at = |t: &str, key: &str| -> String {
        let targets = status["targets"].as_array().expect("targets");
        let rec = targets.iter().find(|x| x["name"] == t).expect("target");
        rec[key].as_str().expect("time").to_string()
    };
    for late in ["t3", "t4"] {
        for early in ["t1", "t2"] {
            assert!(at(early, "finished_at") <= at(late, "started_at"), "{late} started before {early} finished");
        }
    }
    // The secret never reached the store.
    let server = format!("127.0.0.1:{}", shared(15).port());
    assert!(!w.run(&["events", &run]).stdout.windows(server.len()).any(|x| x == server.as_bytes()));

    // 2. A fourth migration that conflicts with t3's schema.
    sql(&dbs[2], "CREATE TABLE discounts (code text)");
    write_dir(&w, "migrations", &[FOURTH]);
    let o = cutover(&w, &["run", "p.toml"]);
    assert_eq!(code(&o), 1, "stderr: {}", text(&o.stderr));
    let run2 = w.run_id();
    assert_ne!(run2, run);
    let status = w.status(&run2);
    // t3 is in the last wave, which is not judged: t4 beside it goes on (docs/gates.md, Waves).
    let states: Vec<String> = (1..=4).map(|i| w.target_state(&run2, &format!("t{i}"))).collect();
    assert_eq!(states, ["succeeded", "succeeded", "failed", "succeeded"], "{status:#}");
    assert_eq!(status["run"]["state"], "failed", "{status:#}");
    for i in [0, 1, 3] {
        assert_eq!(version(&dbs[i]), "4");
        assert_eq!(sql(&dbs[i], "SELECT count(*) FROM cutover.migration_history WHERE success"), "4");
    }
    let t3 = &dbs[2];
    let msg = message(&status, "t3");
    for part in ["up 4_add_discounts failed", "relation \"discounts\" already exists", "nothing of it was applied"] {
        assert!(msg.contains(part), "{part:?} not in {msg:?}");
    }
    // Still at 3, with the failed attempt in the history and nothing half-applied.
    assert_eq!(version(t3), "3");
    assert_eq!(sql(t3, "SELECT count(*) FROM cutover.schema_migrations WHERE version = 4"), "0");
    assert!(
        sql(t3, "SELECT error FROM cutover.migration_history WHERE version = 4 AND NOT success")
            .contains("relation \"discounts\" already exists")
    );
    assert_eq!(
        sql(
            t3,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'discount_code'"
        ),
        "0"
    );
    let events = w.events(&run2);
    let failed = of(&events, "migration_failed", "t3");
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["data"]["version"], 4);
    assert_eq!(outputs(&events, "t1")["applied"], serde_json::json!([4]));
    assert_eq!(outputs(&events, "t1")["before"], 3);

    // Repaired by hand, retried: the history keeps both attempts.
    sql(t3, "DROP TABLE discounts");
    assert_eq!(code(&w.run(&["retry", &run2, "t3"])), 0);
    let o = cutover(&w, &["resume", &run2]);
    assert_eq!(code(&o), 0, "stderr: {}", text(&o.stderr));
    assert_eq!(version(t3), "4");
    assert_eq!(
        sql(t3, "SELECT string_agg(version || ':' || success, ' ' ORDER BY id) FROM cutover.migration_history"),
        "1:true 2:true 3:true 4:false 4:true"
    );

    // 3. Someone else holds t1's migration lock: t1 waits `lock_wait`, fails
    // naming the holder, and runs nothing; t2 beside it goes on; the ramp stops.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dsn1 = shared(15).dsn(&dbs[0]);
    let holder = rt.block_on(async {
        let c = cutover_pg::connect(&dsn1, std::time::Duration::from_secs(10)).await.expect("connect");
        c.batch_execute("SET application_name = 'a stuck deploy'").await.expect("name");
        c.execute("SELECT pg_advisory_lock($1)", &[&cutover_migrate::run::LOCK_KEY]).await.expect("lock");
        c
    });
    write_dir(&w, "migrations", &[("5_add_notes.up.sql", "ALTER TABLE orders ADD COLUMN notes text;\n")]);
    w.write("p.toml", &plan(&dbs, "migrations", "lock_wait = \"1s\"\n"));
    let o = cutover(&w, &["run", "p.toml"]);
    assert_eq!(code(&o), 1, "stderr: {}", text(&o.stderr));
    // The holder's session ends with its runtime.
    drop(holder);
    drop(rt);
    let run4 = w.run_id();
    let states: Vec<String> = (1..=4).map(|i| w.target_state(&run4, &format!("t{i}"))).collect();
    assert_eq!(states, ["failed", "succeeded", "pending", "pending"]);
    let msg = message(&w.status(&run4), "t1");
    let locked = format!("another migration holds the lock on database {}: pid ", dbs[0]);
    for part in [locked.as_str(), "(a stuck deploy, user postgres", "waited 1s", "pg_terminate_backend("] {
        assert!(msg.contains(part), "{part:?} not in {msg:?}");
    }
    assert_eq!(version(&dbs[0]), "4");
    assert_eq!(version(&dbs[1]), "5");
    let events = w.events(&run4);
    assert_eq!(of(&events, "migration_waiting", "t1").len(), 1, "{events:#?}");
    assert!(of(&events, "migration_applied", "t1").is_empty());
    let o = w.run(&["report", &run4, "--format", "json"]);
    let r: Value = serde_json::from_slice(&o.stdout).expect("report JSON");
    let causes: Vec<&str> =
        r["failures"].as_array().expect("failures").iter().filter_map(|g| g["cause"].as_str()).collect();
    assert_eq!(causes, ["migration lock held"]);

    // 4. lint = true: an index built without CONCURRENTLY is refused on every
    // tenant of the first wave before anything runs, and the ramp stops there.
    // (The index is on a table the tenants already have: one created by an
    // earlier pending file would be new, and indexing it blocks nobody.)
    let fresh = tenants("fleet_lint");
    for db in &fresh {
        sql(db, "CREATE TABLE accounts (id bigint PRIMARY KEY, total numeric)");
    }
    write_dir(
        &w,
        "risky",
        &[MIGRATIONS[0], ("2_index_accounts_total.up.sql", "CREATE INDEX accounts_total_idx ON accounts (total);\n")],
    );
    w.write("lint.toml", &plan(&fresh, "risky", "lint = true\n"));
    let o = cutover(&w, &["run", "lint.toml"]);
    assert_eq!(code(&o), 1, "stderr: {}", text(&o.stderr));
    let run3 = w.run_id();
    let states: Vec<String> = (1..=4).map(|i| w.target_state(&run3, &format!("t{i}"))).collect();
    assert_eq!(states, ["failed", "failed", "pending", "pending"]);
    let status = w.status(&run3);
    let msg = message(&status, "t1");
    for part in
        ["lint found 1 error(s)", "none was applied", "2_index_accounts_total.up.sql:1: M001 index-not-concurrent"]
    {
        assert!(msg.contains(part), "{part:?} not in {msg:?}");
    }
    for db in &fresh {
        assert_eq!(
            sql(db, "SELECT to_regclass('cutover.schema_migrations') IS NULL AND to_regclass('orders') IS NULL"),
            "t"
        );
    }
    let events = w.events(&run3);
    let lint = of(&events, "migration_lint", "t1");
    assert_eq!(lint.len(), 1);
    let codes: Vec<&str> =
        lint[0]["data"]["findings"].as_array().expect("findings").iter().filter_map(|f| f["code"].as_str()).collect();
    assert!(codes.contains(&"M001"), "{codes:?}");
    assert!(events.iter().any(|e| e["kind"] == "wave_failed"), "the first wave's failure stops the ramp");
}
