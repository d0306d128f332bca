//! pg.bigint on real PostgreSQL 15 and 13: a parent of 200,000 rows with two
//! children and a view converted while writers insert and update; rollback
//! after the cut-over; a cut-over lock that cannot be had; identity and a
//! name that needs quoting; refusals; pause from another connection.

use super::client;
use cutover_pg::bigint::{self, Action, Event, Observer, Options};
use cutover_testkit::{PgCluster, shared, unique_db_name};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn mt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(3).enable_all().build().expect("runtime")
}

const SHOP: &str = "
CREATE TABLE parent (id serial PRIMARY KEY, name text NOT NULL, note text);
CREATE TABLE child_a (id bigserial PRIMARY KEY, parent_id int NOT NULL REFERENCES parent ON DELETE CASCADE, v int);
CREATE INDEX child_a_parent ON child_a (parent_id);
CREATE TABLE child_b (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, parent_id int REFERENCES parent, created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX child_b_parent_created ON child_b (parent_id, created_at DESC);
CREATE VIEW parent_names AS SELECT p.id, p.name FROM parent p WHERE p.note IS NULL;
GRANT SELECT ON parent_names TO PUBLIC;
COMMENT ON VIEW parent_names IS 'untouched parents';
INSERT INTO parent (name) SELECT 'p' || g FROM generate_series(1, 200000) g;
INSERT INTO child_a (parent_id, v) SELECT 1 + g % 200000, g FROM generate_series(1, 30000) g;
INSERT INTO child_b (parent_id) SELECT 1 + (g * 7) % 200000 FROM generate_series(1, 20000) g;
ANALYZE;
";

fn opts(table: &str) -> Options {
    let mut o = Options::new(table);
    o.lock_timeout = Duration::from_millis(300);
    o.statement_timeout = Duration::from_secs(1);
    o.batch_time = Duration::from_millis(100);
    o
}

struct Writers {
    stop: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<String>>>,
    max_wait_us: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

/// Two writers: one inserts parents with a child each, one updates random parents.
async fn writers(dsn: &str) -> Writers {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(vec![]));
    let max_wait_us = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let mut handles = vec![];
    for w in 0..2 {
        let c = client(dsn).await;
        let (stop, errors, max_wait_us, writes) = (stop.clone(), errors.clone(), max_wait_us.clone(), writes.clone());
        handles.push(tokio::spawn(async move {
            let mut i: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let t0 = Instant::now();
                let r = if w == 0 {
                    c.batch_execute(&format!(
                        "WITH p AS (INSERT INTO parent (name) VALUES ('w{i}') RETURNING id)
                         INSERT INTO child_a (parent_id, v) SELECT id, {i} FROM p"
                    ))
                    .await
                } else {
                    c.batch_execute(&format!("UPDATE parent SET note = 'n{i}' WHERE id = {}", 1 + (i * 7919) % 200000))
                        .await
                };
                let us = t0.elapsed().as_micros() as u64;
                max_wait_us.fetch_max(us, Ordering::Relaxed);
                writes.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = r {
                    errors.lock().expect("errors").push(format!("{e:?}"));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    Writers { stop, errors, max_wait_us, writes, handles }
}

fn one(pg: &PgCluster, db: &str, sql: &str) -> String {
    pg.psql(db, sql).expect("psql").trim().to_string()
}

fn convert_under_writes(major: u32) {
    let pg = shared(major);
    let db = unique_db_name("bigint");
    let dsn = pg.create_database(&db).expect("db");
    pg.psql(&db, SHOP).expect("schema");
    let before =
        one(pg, &db, "SELECT md5(string_agg(id::text || name, ',' ORDER BY id)) FROM parent WHERE id <= 200000");
    let rt = mt();

    // The dry-run names what will change, in order, with locks.
    let plan = rt.block_on(async { bigint::dry_run(&client(&dsn).await, &opts("parent")).await }).expect("dry-run");
    assert_eq!(plan.spec.tables.len(), 3, "{plan:?}");
    assert_eq!(plan.spec.fks.len(), 2);
    assert_eq!(plan.spec.views.len(), 1);
    let names: Vec<&str> = plan.stages.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["expand", "backfill", "verify", "prepare", "cutover"]);
    let cut = &plan.stages[4].1[0];
    assert!(cut.sql[0].starts_with("LOCK TABLE public.parent, public.child_a, public.child_b"), "{cut:?}");
    assert!(cut.lock.contains("lock_timeout 300 ms"), "{}", cut.lock);
    assert!(
        cut.sql
            .iter()
            .any(|s| s.contains("ALTER SEQUENCE public.parent_id_seq AS bigint OWNED BY public.parent.\"id\""))
    );
    assert_eq!(
        one(pg, &db, "SELECT count(*) FROM pg_attribute WHERE attname LIKE '%bigint'"),
        "0",
        "dry-run changed nothing"
    );

    let events = Mutex::new(vec![]);
    let emit = |e: Event| events.lock().expect("events").push(e);
    let obs = Observer { emit: &emit, hold: None };
    let (sum, w) = rt.block_on(async {
        let w = writers(&dsn).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sum = bigint::run(&dsn, Action::Convert, &opts("parent"), &obs).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Writers { stop, errors, max_wait_us, writes, handles } = w;
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            let _ = h.await;
        }
        (sum, (errors, max_wait_us, writes))
    });
    let sum = sum.expect("conversion");
    let (errors, max_wait_us, writes) = w;
    let errors = errors.lock().expect("errors").clone();
    assert!(errors.is_empty(), "the writers saw errors: {errors:?}");
    let max_wait = Duration::from_micros(max_wait_us.load(Ordering::Relaxed));
    assert!(writes.load(Ordering::Relaxed) > 100, "the writers wrote");
    let cut = sum.cutover.clone().expect("cut-over report");
    eprintln!(
        "PG{major}: {} rows in {} batches, stages {:?}, cut-over {cut:?}, longest write {max_wait:?}",
        sum.rows, sum.batches, sum.stages
    );
    assert!(max_wait < Duration::from_millis(300 + 700), "a write waited {max_wait:?}");
    assert_eq!(sum.stage, "cutover");
    assert!(sum.rows >= 200_000, "{sum:?}");

    // Types, constraints, indexes, views.
    assert_eq!(
        one(
            pg,
            &db,
            "SELECT string_agg(table_name || '.' || column_name || ':' || data_type, ' ' ORDER BY table_name, column_name) FROM information_schema.columns WHERE table_schema = 'public' AND column_name IN ('id', 'parent_id') AND table_name IN ('parent', 'child_a', 'child_b', 'parent_names')"
        ),
        "child_a.id:bigint child_a.parent_id:bigint child_b.id:integer child_b.parent_id:bigint parent.id:bigint parent_names.id:bigint"
    );
    assert_eq!(one(pg, &db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"), "0");
    assert_eq!(
        one(
            pg,
            &db,
            "SELECT string_agg(conname || ':' || contype::text || ':' || convalidated, ' ' ORDER BY conname) FROM pg_constraint WHERE conrelid IN ('parent'::regclass, 'child_a'::regclass, 'child_b'::regclass)"
        ),
        "child_a_parent_id_fkey:f:true child_a_pkey:p:true child_b_parent_id_fkey:f:true child_b_pkey:p:true parent_pkey:p:true"
    );
    assert_eq!(
        one(pg, &db, "SELECT pg_get_indexdef('child_b_parent_created'::regclass)"),
        "CREATE INDEX child_b_parent_created ON public.child_b USING btree (parent_id, created_at DESC)"
    );
    assert_eq!(
        one(pg, &db, "SELECT format_type(seqtypid, NULL) FROM pg_sequence WHERE seqrelid = 'parent_id_seq'::regclass"),
        "bigint"
    );
    assert_eq!(one(pg, &db, "SELECT pg_get_serial_sequence('parent', 'id')"), "public.parent_id_seq");
    assert_eq!(one(pg, &db, "SELECT obj_description('parent_names'::regclass, 'pg_class')"), "untouched parents");
    assert_eq!(one(pg, &db, "SELECT has_table_privilege('public', 'parent_names', 'SELECT')"), "t");
    // Contents: the original rows unchanged, every written row there, the int copies equal.
    assert_eq!(
        one(pg, &db, "SELECT md5(string_agg(id::text || name, ',' ORDER BY id)) FROM parent WHERE id <= 200000"),
        before
    );
    assert_eq!(one(pg, &db, "SELECT count(*) FROM parent WHERE id IS DISTINCT FROM id__int"), "0");
    assert_eq!(one(pg, &db, "SELECT count(*) FROM child_a WHERE parent_id IS DISTINCT FROM parent_id__int"), "0");
    assert_eq!(
        one(
            pg,
            &db,
            "SELECT count(*) FROM parent p WHERE name LIKE 'w%' AND NOT EXISTS (SELECT 1 FROM child_a c WHERE c.parent_id = p.id)"
        ),
        "0"
    );
    // New rows get bigint keys past int's range.
    pg.psql(&db, "SELECT setval('parent_id_seq', 3000000000); INSERT INTO parent (name) VALUES ('big'); INSERT INTO child_a (parent_id) SELECT id FROM parent WHERE name = 'big';").expect("big key");
    assert_eq!(one(pg, &db, "SELECT id FROM parent WHERE name = 'big'"), "3000000001");
    assert_eq!(one(pg, &db, "SELECT id__int IS NULL FROM parent WHERE name = 'big'"), "t");
    // …which the rollback refuses to lose.
    let err = rt.block_on(bigint::run(&dsn, Action::Rollback, &opts("parent"), &obs)).expect_err("rollback refused");
    assert!(err.to_string().contains("beyond the range of integer"), "{err}");
    pg.psql(&db, "DELETE FROM child_a WHERE parent_id > 2147483647; DELETE FROM parent WHERE id > 2147483647;")
        .expect("delete");

    // Progress and the swap were reported.
    let ev = events.lock().expect("events");
    assert!(ev.iter().any(|e| matches!(e, Event::Progress { done, total, .. } if *done > 0 && *total >= 200_000)));
    assert!(ev.iter().any(|e| matches!(e, Event::Stage { stage, .. } if stage == "cutover")));
    drop(ev);

    // Contract: the int columns, triggers and old indexes go.
    let sum = rt.block_on(bigint::run(&dsn, Action::Contract, &opts("parent"), &obs)).expect("contract");
    assert_eq!(sum.stage, "contract");
    assert_eq!(
        one(pg, &db, "SELECT count(*) FROM pg_attribute WHERE attname LIKE '%\\_\\_int' AND NOT attisdropped"),
        "0"
    );
    assert_eq!(one(pg, &db, "SELECT count(*) FROM pg_trigger WHERE tgname = 'zz_cutover_bigint_sync'"), "0");
    assert_eq!(one(pg, &db, "SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_\\_int'"), "0");
    let st = rt.block_on(async { bigint::status(&client(&dsn).await, None).await }).expect("status");
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].stage, "contract");
    assert_eq!(st[0].next, "finished");
}

#[test]
fn converts_a_parent_and_its_children_under_writes_on_15() {
    convert_under_writes(15);
}

#[test]
fn converts_a_parent_and_its_children_under_writes_on_13() {
    convert_under_writes(13);
}

#[test]
fn rollback_after_cutover_keeps_what_was_written_and_a_held_lock_fails_closed() {
    let pg = shared(15);
    let db = unique_db_name("bigint_rb");
    let dsn = pg.create_database(&db).expect("db");
    pg.psql(
        &db,
        "CREATE TABLE parent (id serial PRIMARY KEY, name text, up int REFERENCES parent);
         CREATE TABLE child (id serial PRIMARY KEY, parent_id int NOT NULL REFERENCES parent);
         INSERT INTO parent (name) SELECT 'p' || g FROM generate_series(1, 5000) g;
         UPDATE parent SET up = id - 1 WHERE id > 1;
         INSERT INTO child (parent_id) SELECT g FROM generate_series(1, 5000) g;",
    )
    .expect("schema");
    let rt = mt();
    let emit = |_e: Event| {};
    let obs = Observer { emit: &emit, hold: None };
    let mut o = opts("parent");
    o.until = Some("verify".into());
    rt.block_on(bigint::run(&dsn, Action::Convert, &o, &obs)).expect("until verify");
    // A failed CREATE INDEX CONCURRENTLY left an invalid index with the name
    // prepare uses: it is found, dropped and built again.
    assert!(pg.psql(&db, "CREATE UNIQUE INDEX CONCURRENTLY parent_pkey__bigint ON parent ((name::int))").is_err());
    assert_eq!(one(pg, &db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'parent_pkey__bigint'::regclass"), "f");
    o.until = Some("prepare".into());
    let sum = rt.block_on(bigint::run(&dsn, Action::Convert, &o, &obs)).expect("until prepare");
    assert_eq!(
        one(
            pg,
            &db,
            "SELECT indisvalid || ' ' || pg_get_indexdef(indexrelid) FROM pg_index WHERE indexrelid = 'parent_pkey__bigint'::regclass"
        ),
        "true CREATE UNIQUE INDEX parent_pkey__bigint ON public.parent USING btree (id__bigint)"
    );
    assert_eq!(sum.stage, "prepare");
    assert_eq!(
        one(
            pg,
            &db,
            "SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'parent'::regclass AND attname = 'id'"
        ),
        "integer"
    );

    // Another session holds a lock the cut-over needs: bounded retries, then a clean failure.
    let holder = rt.block_on(async {
        let c = client(&dsn).await;
        c.batch_execute("BEGIN; LOCK TABLE child IN ACCESS SHARE MODE").await.expect("hold");
        let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).await.expect("pid").get(0);
        (c, pid)
    });
    let mut o = opts("parent");
    o.from = Some("cutover".into());
    o.attempts = 3;
    o.lock_timeout = Duration::from_millis(200);
    let t0 = Instant::now();
    let err = rt.block_on(bigint::run(&dsn, Action::Convert, &o, &obs)).expect_err("lock held");
    let took = t0.elapsed();
    let msg = err.to_string();
    assert!(msg.contains("could not take its locks in 3 attempt(s)"), "{msg}");
    assert!(msg.contains(&holder.1.to_string()), "names the holder: {msg}");
    assert!(msg.contains("nothing was changed"), "{msg}");
    assert!(took < Duration::from_secs(5), "bounded: {took:?}");
    assert_eq!(
        one(
            pg,
            &db,
            "SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'parent'::regclass AND attname = 'id'"
        ),
        "integer"
    );
    assert_eq!(one(pg, &db, "SELECT stage FROM cutover.bigint_conversions"), "prepare");
    rt.block_on(holder.0.batch_execute("ROLLBACK")).expect("release");

    let sum = rt.block_on(bigint::run(&dsn, Action::Convert, &o, &obs)).expect("cut-over");
    assert_eq!(sum.stage, "cutover");
    // The self-reference is converted with the key.
    assert_eq!(
        one(
            pg,
            &db,
            "SELECT string_agg(attname || ':' || format_type(atttypid, NULL), ' ' ORDER BY attname) FROM pg_attribute WHERE attrelid = 'parent'::regclass AND attname IN ('id', 'up')"
        ),
        "id:bigint up:bigint"
    );
    assert_eq!(one(pg, &db, "SELECT count(*) FROM parent p JOIN parent q ON q.id = p.up"), "4999");
    assert!(sum.cutover.as_ref().is_some_and(|c| c.lock_held_ms < 1000.0), "{sum:?}");
    pg.psql(&db, "INSERT INTO parent (name) VALUES ('after'); INSERT INTO child (parent_id) SELECT id FROM parent WHERE name = 'after'; UPDATE parent SET name = 'changed' WHERE id = 7;").expect("writes");

    let sum = rt.block_on(bigint::run(&dsn, Action::Rollback, &opts("parent"), &obs)).expect("rollback");
    assert_eq!(sum.stage, "verify");
    assert_eq!(
        one(
            pg,
            &db,
            "SELECT string_agg(attrelid::regclass || '.' || attname || ':' || format_type(atttypid, NULL), ' ' ORDER BY attrelid::regclass::text, attname) FROM pg_attribute WHERE attrelid IN ('parent'::regclass, 'child'::regclass) AND attname IN ('id', 'parent_id', 'up')"
        ),
        "child.id:integer child.parent_id:integer parent.id:integer parent.up:integer"
    );
    assert_eq!(one(pg, &db, "SELECT count(*) FROM parent"), "5001");
    assert_eq!(one(pg, &db, "SELECT name FROM parent WHERE id = 7"), "changed");
    assert_eq!(
        one(pg, &db, "SELECT count(*) FROM child c JOIN parent p ON p.id = c.parent_id WHERE p.name = 'after'"),
        "1"
    );
    assert_eq!(
        one(pg, &db, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'parent_pkey'"),
        "PRIMARY KEY (id)"
    );
    assert_eq!(one(pg, &db, "SELECT convalidated FROM pg_constraint WHERE conname = 'child_parent_id_fkey'"), "t");
    assert_eq!(
        one(pg, &db, "SELECT format_type(seqtypid, NULL) FROM pg_sequence WHERE seqrelid = 'parent_id_seq'::regclass"),
        "integer"
    );
    pg.psql(&db, "INSERT INTO parent (name) VALUES ('after rollback')").expect("insert after rollback");
    assert_eq!(one(pg, &db, "SELECT id FROM parent WHERE name = 'after rollback'"), "5002");
    // Abort drops what the conversion added.
    rt.block_on(bigint::run(&dsn, Action::Abort, &opts("parent"), &obs)).expect("abort");
    assert_eq!(
        one(pg, &db, "SELECT count(*) FROM pg_attribute WHERE attname LIKE '%\\_\\_bigint' AND NOT attisdropped"),
        "0"
    );
    assert_eq!(one(pg, &db, "SELECT count(*) FROM cutover.bigint_conversions"), "0");
}

#[test]
fn identity_quoted_names_no_foreign_keys_pause_and_refusals() {
    let pg = shared(13);
    let db = unique_db_name("bigint_id");
    let dsn = pg.create_database(&db).expect("db");
    pg.psql(
        &db,
        "CREATE SCHEMA \"Sales\";
         CREATE TABLE \"Sales\".\"Order Items\" (\"Item Id\" int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, sku text);
         INSERT INTO \"Sales\".\"Order Items\" (sku) SELECT 's' || g FROM generate_series(1, 3000) g;
         CREATE TABLE big (id bigint PRIMARY KEY);
         CREATE TABLE checked (id int PRIMARY KEY CHECK (id > 0));
         CREATE TABLE parts (id int, PRIMARY KEY (id)) PARTITION BY RANGE (id);",
    )
    .expect("schema");
    let rt = mt();
    let emit = |_e: Event| {};
    let obs = Observer { emit: &emit, hold: None };
    let refuse = |t: &str| rt.block_on(bigint::run(&dsn, Action::Convert, &opts(t), &obs)).expect_err(t).to_string();
    assert!(refuse("big").contains("already bigint"), "{}", refuse("big"));
    assert!(refuse("checked").contains("check constraint checked_id_check"), "{}", refuse("checked"));
    assert!(refuse("parts").contains("partitioned"), "{}", refuse("parts"));
    assert!(refuse("nosuch").contains("there is no table `nosuch`"), "{}", refuse("nosuch"));

    // Pause from another connection: the backfill waits and says why.
    let table = "Sales.Order Items";
    let mut o = opts(table);
    o.until = Some("expand".into());
    rt.block_on(bigint::run(&dsn, Action::Convert, &o, &obs)).expect("expand");
    rt.block_on(async { bigint::set_paused(&client(&dsn).await, table, true).await }).expect("pause");
    let seen = Mutex::new(vec![]);
    let emit2 = |e: Event| {
        if let Event::Throttle(r) = e {
            seen.lock().expect("seen").push(r);
        }
    };
    let obs2 = Observer { emit: &emit2, hold: None };
    let sum = rt.block_on(async {
        let o = opts(table);
        let run = bigint::run(&dsn, Action::Convert, &o, &obs2);
        let resume = async {
            let c = client(&dsn).await;
            let mut shown = None;
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let st = bigint::status(&c, Some(table)).await.expect("status");
                if let Some(t) = st[0].throttle.clone() {
                    shown = Some(t);
                    break;
                }
            }
            bigint::set_paused(&c, table, false).await.expect("resume");
            shown
        };
        let (sum, shown) = tokio::join!(run, resume);
        assert!(shown.is_some_and(|s| s.starts_with("paused by the operator")), "status shows the pause");
        sum
    });
    let sum = sum.expect("identity conversion");
    assert!(sum.throttled_seconds > 0.0, "{sum:?}");
    let seen = seen.lock().expect("seen").clone();
    assert!(seen.first().is_some_and(|r| r.as_deref().is_some_and(|r| r.starts_with("paused"))), "{seen:?}");
    assert_eq!(seen.last(), Some(&None), "{seen:?}");
    assert_eq!(
        one(
            pg,
            &db,
            "SELECT format_type(atttypid, NULL) || ' ' || attidentity FROM pg_attribute WHERE attrelid = '\"Sales\".\"Order Items\"'::regclass AND attname = 'Item Id'"
        ),
        "bigint d"
    );
    pg.psql(&db, "INSERT INTO \"Sales\".\"Order Items\" (sku) VALUES ('next')").expect("insert");
    assert_eq!(one(pg, &db, "SELECT \"Item Id\" FROM \"Sales\".\"Order Items\" WHERE sku = 'next'"), "3001");
    assert_eq!(
        one(
            pg,
            &db,
            "SELECT count(*) FROM \"Sales\".\"Order Items\" WHERE \"Item Id\" IS DISTINCT FROM \"Item Id__int\""
        ),
        "0"
    );
    rt.block_on(bigint::run(&dsn, Action::Contract, &opts(table), &obs)).expect("contract");
    assert_eq!(
        one(
            pg,
            &db,
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = '\"Sales\".\"Order Items\"'::regclass AND attnum > 0 AND NOT attisdropped"
        ),
        "sku,Item Id"
    );
}

#[test]
fn the_backfill_waits_for_old_transactions_load_and_the_plan_gate() {
    // A server of its own: load is counted server-wide, and the other tests'
    // queries on the shared server would be load too.
    let pg = PgCluster::start(15).expect("a private PostgreSQL 15");
    let db = "bigint_thr";
    let dsn = pg.create_database(db).expect("db");
    pg.psql(
        db,
        "CREATE TABLE t (id serial PRIMARY KEY, v int); INSERT INTO t (v) SELECT g FROM generate_series(1, 2000) g;",
    )
    .expect("schema");
    let rt = mt();
    let seen = Mutex::new(vec![]);
    let emit = |e: Event| {
        if let Event::Throttle(r) = e {
            seen.lock().expect("seen").push(r);
        }
    };
    let (tx, rx) = tokio::sync::watch::channel(true);
    let obs = Observer { emit: &emit, hold: Some(rx) };
    let mut o = opts("t");
    o.max_transaction_age = Duration::from_millis(500);
    o.max_active = Some(0);
    o.until = Some("backfill".into());
    let sum = rt.block_on(async {
        // An open transaction (idle in it) and an active query elsewhere.
        let old = client(&dsn).await;
        old.batch_execute("BEGIN; SELECT txid_current()").await.expect("old transaction");
        let busy = client(&dsn).await;
        let sleeper = tokio::spawn(async move { busy.batch_execute("SELECT pg_sleep(2)").await });
        let run = bigint::run(&dsn, Action::Convert, &o, &obs);
        let release = async {
            // The plan's gate first, then the old transaction; the sleeper ends by itself.
            tokio::time::sleep(Duration::from_millis(800)).await;
            tx.send(false).expect("gate");
            tokio::time::sleep(Duration::from_millis(2500)).await;
            old.batch_execute("COMMIT").await.expect("commit");
        };
        let (sum, ()) = tokio::join!(run, release);
        let _ = sleeper.await;
        sum
    });
    let sum = sum.expect("backfill");
    let seen: Vec<String> = seen.lock().expect("seen").iter().map(|r| r.clone().unwrap_or_default()).collect();
    assert_eq!(seen.first().map(String::as_str), Some("the plan's pause_when holds"), "{seen:?}");
    assert!(
        seen.iter().any(|r| r.starts_with("a transaction of backend") && r.ends_with("is open longer than 0.5 s")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|r| r.contains("active backends > 0")), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some(""), "it went on: {seen:?}");
    assert!(sum.throttled_seconds >= 2.0, "{sum:?}");
    assert_eq!(sum.rows, 2000);
}
