//! pg.copy 13 → 15 of a database with every common object kind, checked
//! by pg.verify and by looking at what verify does not count (comments,
//! grants, clustering, identity continuing, triggers firing); a corrupted
//! target is named; a resumed copy does not duplicate rows; the dump method.

use super::{client, rt};
use cutover_pg::copy::{self, CopyEvent, Method, Observer, Options};
use cutover_pg::verify;
use cutover_testkit::{PgCluster, shared, unique_db_name};
use std::collections::HashSet;
use std::sync::Mutex;

const SCHEMA: &str = "
CREATE EXTENSION citext;
CREATE EXTENSION pg_trgm;
DO $$ BEGIN CREATE ROLE copy_reader NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE SCHEMA shop;
CREATE TABLE shop.customers (id serial PRIMARY KEY, email citext UNIQUE NOT NULL, name text NOT NULL,
  balance numeric(12, 2) CHECK (balance >= 0), tags text[], seen timestamptz, gone int);
ALTER TABLE shop.customers DROP COLUMN gone;
CREATE TABLE shop.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer int NOT NULL REFERENCES shop.customers ON DELETE CASCADE, total float8 CHECK (total >= 0), doc jsonb,
  total_cents bigint GENERATED ALWAYS AS ((total * 100)::bigint) STORED, note text);
CREATE INDEX orders_customer ON shop.orders (customer);
CREATE INDEX orders_note_trgm ON shop.orders USING gin (note gin_trgm_ops);
CREATE INDEX orders_big ON shop.orders (total) WHERE total > 100;
CLUSTER shop.orders USING orders_customer;
CREATE TABLE shop.lines (order_id bigint REFERENCES shop.orders, n int, sku text, PRIMARY KEY (order_id, n));
CREATE TABLE shop.slots (id int PRIMARY KEY, during tstzrange, EXCLUDE USING gist (during WITH &&));
CREATE TABLE shop.codes (code text, UNIQUE (code) DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE shop.events (at timestamptz, line text);
CREATE UNLOGGED TABLE shop.cache (k text, v bytea);
CREATE TABLE shop.measures (day date NOT NULL, v int, PRIMARY KEY (day, v)) PARTITION BY RANGE (day);
CREATE TABLE shop.measures_2026 PARTITION OF shop.measures FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE shop.measures_2027 PARTITION OF shop.measures FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
CREATE INDEX measures_v ON shop.measures (v);
CREATE TABLE shop.tree (id int PRIMARY KEY, parent int REFERENCES shop.tree);
CREATE VIEW shop.big_orders AS SELECT * FROM shop.orders WHERE total > 100;
CREATE MATERIALIZED VIEW shop.totals AS SELECT customer, sum(total_cents) AS cents FROM shop.orders GROUP BY customer;
CREATE UNIQUE INDEX totals_customer ON shop.totals (customer);
CREATE FUNCTION shop.touch() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN NEW.seen := '2030-01-01'; RETURN NEW; END $f$;
CREATE TRIGGER customers_touch BEFORE UPDATE ON shop.customers FOR EACH ROW EXECUTE FUNCTION shop.touch();
COMMENT ON TABLE shop.orders IS 'what customers bought';
COMMENT ON COLUMN shop.orders.doc IS 'the order as sent';
COMMENT ON INDEX shop.orders_customer IS 'for the customer page';
COMMENT ON CONSTRAINT customers_email_key ON shop.customers IS 'one account per address';
COMMENT ON CONSTRAINT lines_order_id_fkey ON shop.lines IS 'the order''s lines';
GRANT USAGE ON SCHEMA shop TO copy_reader;
GRANT SELECT ON shop.orders TO copy_reader;
INSERT INTO shop.customers (email, name, balance, tags, seen)
  SELECT 'C' || g || '@example.com', 'c' || g, g * 1.5, ARRAY['a', 'b' || g], '2026-01-01'::timestamptz + g * interval '1 hour'
  FROM generate_series(1, 500) g;
INSERT INTO shop.orders (customer, total, doc, note)
  SELECT 1 + g % 500, g / 7.0, jsonb_build_object('n', g, 'x', 'é€'), 'note ' || md5(g::text) FROM generate_series(1, 20000) g;
INSERT INTO shop.lines SELECT o, n, 'sku-' || n FROM generate_series(1, 2000) o, generate_series(1, 3) n;
INSERT INTO shop.slots SELECT g, tstzrange('2026-01-01'::timestamptz + g * interval '1 day', '2026-01-01'::timestamptz + (g + 1) * interval '1 day') FROM generate_series(1, 50) g;
INSERT INTO shop.codes SELECT 'code-' || g FROM generate_series(1, 100) g;
INSERT INTO shop.events SELECT '2026-01-01'::timestamptz, NULL FROM generate_series(1, 10);
INSERT INTO shop.cache SELECT 'k' || g, decode(md5(g::text), 'hex') FROM generate_series(1, 100) g;
INSERT INTO shop.measures SELECT '2026-01-01'::date + g % 700, g FROM generate_series(1, 5000) g;
INSERT INTO shop.tree VALUES (1, NULL), (2, 1), (3, 1), (4, 2);
REFRESH MATERIALIZED VIEW shop.totals;
";

fn options(dst: &PgCluster, work: &std::path::Path) -> Options {
    let mut o = Options::new(work.to_path_buf());
    o.tools = cutover_pg::tools::Tools::new(Some(dst.bin_dir().to_path_buf()));
    o.jobs = 3;
    // Small enough that shop.orders (about 2.5 MB) is copied in key ranges.
    o.split_bytes = 512 * 1024;
    o
}

fn copy_with(src: &str, dst: &str, opts: &Options, done: HashSet<String>) -> (copy::Summary, Vec<CopyEvent>) {
    let seen = Mutex::new(vec![]);
    let emit = |e: CopyEvent| seen.lock().expect("lock").push(e);
    let obs = Observer { done, emit: &emit, hold: None };
    let sum = rt().block_on(copy::run(src, dst, opts, &obs)).expect("copy");
    (sum, seen.into_inner().expect("lock"))
}

fn verified(src: &str, dst: &str) -> verify::Report {
    rt().block_on(async {
        let (s, t) = (client(src).await, client(dst).await);
        verify::run(&s, &t).await.expect("verify")
    })
}

#[test]
fn every_object_kind_is_copied_from_13_to_15_and_verifies() {
    let (src, dst) = (shared(13), shared(15));
    let db = unique_db_name("copy");
    src.create_database(&db).expect("db");
    src.psql(&db, SCHEMA).expect("schema");
    dst.psql(
        "postgres",
        "DO $$ BEGIN CREATE ROLE copy_reader NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;",
    )
    .expect("role on 15");
    let work = tempfile::tempdir().expect("tempdir");
    let opts = options(dst, work.path());

    // The target database does not exist yet: pg.copy creates it.
    let (sum, events) = copy_with(&src.dsn(&db), &dst.dsn(&db), &opts, HashSet::new());
    assert!(sum.created_database);
    assert_eq!(sum.tables, 10, "{sum:?}");
    assert!(sum.parts > sum.tables, "shop.orders is split into key ranges: {sum:?}");
    let expected_rows = 500 + 20000 + 6000 + 50 + 100 + 10 + 100 + 5000 + 4;
    assert_eq!(sum.rows, expected_rows as u64);
    assert!(sum.bytes > 1_000_000, "{sum:?}");
    // Primary keys and unique constraints of plain tables come as unique
    // indexes attached with USING INDEX (customers: pkey, email; orders,
    // lines, slots, codes, tree: pkey) — the exclusion constraint and the
    // partitioned table's key are pg_restore's.
    assert_eq!(sum.constraints, 7, "{sum:?}");
    assert_eq!(sum.indexes, 7 + 3, "{sum:?}");
    assert_eq!(sum.foreign_keys, 3, "{sum:?}");
    assert!(sum.sequences >= 2, "{sum:?}");
    let parts = events
        .iter()
        .filter(|e| matches!(e, CopyEvent::Done { key, .. } if key.starts_with("data:shop.orders#")))
        .count();
    assert!(parts >= 2, "orders in {parts} parts");
    assert!(events.iter().any(|e| matches!(e, CopyEvent::Progress { bytes, .. } if *bytes > 0)));

    let r = verified(&src.dsn(&db), &dst.dsn(&db));
    assert_eq!(r.differences, vec![], "the copy compares equal");
    assert_eq!(r.tables, 10 + 1, "10 tables and the materialized view");

    // What verify does not count.
    let q = |sql: &str| dst.psql(&db, sql).expect("query").trim().to_string();
    assert_eq!(q("SELECT obj_description('shop.orders'::regclass, 'pg_class')"), "what customers bought");
    assert_eq!(q("SELECT obj_description('shop.orders_customer'::regclass, 'pg_class')"), "for the customer page");
    assert_eq!(
        q("SELECT obj_description(oid, 'pg_constraint') FROM pg_constraint WHERE conname = 'customers_email_key'"),
        "one account per address"
    );
    assert_eq!(
        q("SELECT obj_description(oid, 'pg_constraint') FROM pg_constraint WHERE conname = 'lines_order_id_fkey'"),
        "the order's lines"
    );
    assert_eq!(q("SELECT has_table_privilege('copy_reader', 'shop.orders', 'SELECT')"), "t");
    assert_eq!(q("SELECT indisclustered FROM pg_index WHERE indexrelid = 'shop.orders_customer'::regclass"), "t");
    assert_eq!(
        q("SELECT condeferrable AND condeferred FROM pg_constraint WHERE conname = 'codes_code_key'"),
        "t",
        "deferrable unique constraint"
    );
    assert_eq!(q("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated"), "0");
    assert_eq!(q("SELECT relpersistence FROM pg_class WHERE oid = 'shop.cache'::regclass"), "u");
    assert_eq!(q("SELECT count(*) FROM shop.totals"), "500", "materialized view populated");
    // Identity and serial continue after the copied values; triggers fire.
    assert_eq!(q("INSERT INTO shop.orders (customer, total) VALUES (1, 1) RETURNING id"), "20001");
    assert_eq!(q("INSERT INTO shop.customers (email, name) VALUES ('new@x', 'n') RETURNING id"), "501");
    assert_eq!(q("UPDATE shop.customers SET name = 'x' WHERE id = 1 RETURNING seen"), "2030-01-01 00:00:00+00");
    // The exclusion constraint holds on the copy.
    assert!(
        dst.psql(&db, "INSERT INTO shop.slots VALUES (999, tstzrange('2026-01-02 12:00', '2026-01-02 13:00'))")
            .is_err()
    );
    assert_eq!(q("SELECT split_part(version(), ' ', 2)").split('.').next(), Some("15"));

    // A corrupted copy is named by verify.
    dst.psql(&db, "UPDATE shop.lines SET sku = 'tampered' WHERE order_id = 7 AND n = 2").expect("corrupt");
    let r = verified(&src.dsn(&db), &dst.dsn(&db));
    let named: Vec<(&str, &str)> = r.differences.iter().map(|d| (d.kind, d.object.as_str())).collect();
    assert!(named.contains(&("table", "shop.lines")), "{named:?}");
}

#[test]
fn a_resumed_copy_redoes_unfinished_pieces_without_duplicating_rows() {
    let (src, dst) = (shared(13), shared(15));
    let db = unique_db_name("resume");
    src.create_database(&db).expect("db");
    src.psql(
        &db,
        "CREATE TABLE big (id int PRIMARY KEY, pad text);
         CREATE TABLE small (k text);
         CREATE INDEX big_pad ON big (pad);
         INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 40000) g;
         INSERT INTO small SELECT 'k' || g FROM generate_series(1, 300) g;",
    )
    .expect("schema");
    let work = tempfile::tempdir().expect("tempdir");
    let mut opts = options(dst, work.path());
    opts.split_bytes = 1 << 20;
    let (first, events) = copy_with(&src.dsn(&db), &dst.dsn(&db), &opts, HashSet::new());
    assert!(first.parts >= 4, "{first:?}");
    let keys: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            CopyEvent::Done { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect();
    // As if the process died after committing every piece but before
    // reporting half of the key ranges, the small table and the index:
    // their data is in the target already and must not be doubled.
    let done: HashSet<String> = keys
        .iter()
        .enumerate()
        .filter(|(i, k)| k.as_str() == "schema" || (k.starts_with("data:public.big#") && i % 2 == 0))
        .map(|(_, k)| k.clone())
        .collect();
    assert!(done.len() >= 2 && done.len() < keys.len(), "{done:?} of {keys:?}");
    // Add a row the second attempt must bring (the source moved on).
    src.psql(&db, "INSERT INTO small VALUES ('late')").expect("insert");
    let (second, _) = copy_with(&src.dsn(&db), &dst.dsn(&db), &opts, done.clone());
    assert_eq!(second.skipped, done.len(), "{second:?}");
    assert!(second.rows < 40000 + 301, "only unfinished pieces are copied again: {second:?}");
    let q = |sql: &str| dst.psql(&db, sql).expect("query").trim().to_string();
    assert_eq!(q("SELECT count(*), count(DISTINCT id) FROM big"), "40000|40000");
    assert_eq!(q("SELECT count(*) FROM small"), "301");
    let r = verified(&src.dsn(&db), &dst.dsn(&db));
    assert_eq!(r.differences, vec![]);
}

#[test]
fn the_dump_method_copies_large_objects_which_the_fast_one_refuses() {
    let (src, dst) = (shared(13), shared(15));
    let db = unique_db_name("dumpm");
    src.create_database(&db).expect("db");
    src.psql(
        &db,
        "CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT 'v' || g FROM generate_series(1, 1000) g;
         SELECT lo_from_bytea(0, 'a large object');",
    )
    .expect("schema");
    let work = tempfile::tempdir().expect("tempdir");
    let mut opts = options(dst, work.path());
    // The fast method refuses large objects, in one sentence.
    let emit = |_: CopyEvent| {};
    let obs = Observer { done: HashSet::new(), emit: &emit, hold: None };
    let err = rt().block_on(copy::run(&src.dsn(&db), &dst.dsn(&db), &opts, &obs)).expect_err("large objects");
    assert!(err.to_string().contains("1 large object(s)") && err.to_string().contains("method = \"dump\""), "{err}");
    for jobs in [1, 2] {
        let target = format!("{db}_{jobs}");
        opts.method = Method::Dump;
        opts.jobs = jobs;
        let (sum, _) = copy_with(&src.dsn(&db), &dst.dsn(&target), &opts, HashSet::new());
        assert!(sum.created_database);
        assert_eq!(verified(&src.dsn(&db), &dst.dsn(&target)).differences, vec![], "jobs = {jobs}");
        let los = dst.psql(&target, "SELECT count(*) FROM pg_largeobject_metadata").expect("q");
        assert_eq!(los.trim(), "1");
    }
}
