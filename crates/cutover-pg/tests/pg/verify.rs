//! pg.verify: a faithful copy compares equal; a changed row, a missing row,
//! a sequence behind and a dropped index are each named.

use super::{client, rt};
use cutover_pg::verify;
use cutover_testkit::{shared, unique_db_name};

const SCHEMA: &str = "
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, balance numeric(12, 2), tags text[], seen timestamptz);
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer int REFERENCES customers, total float8 CHECK (total >= 0), doc jsonb);
CREATE TABLE log (at timestamptz, line text);
CREATE TABLE measures (day date NOT NULL, v int) PARTITION BY RANGE (day);
CREATE TABLE measures_2026 PARTITION OF measures FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX orders_customer ON orders (customer);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
CREATE MATERIALIZED VIEW totals AS SELECT customer, sum(total) FROM orders GROUP BY customer;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.seen := now(); RETURN NEW; END $$;
CREATE TRIGGER customers_touch BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION touch();
INSERT INTO customers (name, balance, tags, seen) SELECT 'c' || g, g * 1.5, ARRAY['a', 'b' || g], '2026-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 500) g;
INSERT INTO orders (customer, total, doc) SELECT 1 + g % 500, g / 7.0, jsonb_build_object('n', g, 'x', 'é€') FROM generate_series(1, 3000) g;
INSERT INTO log SELECT now(), NULL FROM generate_series(1, 10);
INSERT INTO measures SELECT '2026-01-01'::date + g % 300, g FROM generate_series(1, 1000) g;
REFRESH MATERIALIZED VIEW totals;
";

#[test]
fn a_faithful_copy_verifies_and_every_kind_of_difference_is_named() {
    let (src, dst) = (shared(13), shared(15));
    let db = unique_db_name("verify");
    src.create_database(&db).expect("db");
    src.psql(&db, SCHEMA).expect("schema");
    // The copy: PostgreSQL 15's pg_dump of the 13 server, restored on 15.
    dst.create_database(&db).expect("target db");
    let dump = std::process::Command::new(dst.bin_dir().join("pg_dump"))
        .args(["-h", "127.0.0.1", "-p", &src.port().to_string(), "-U", "postgres", "-d", &db, "--no-owner"])
        .output()
        .expect("pg_dump");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    dst.psql(&db, &String::from_utf8_lossy(&dump.stdout)).expect("restore");

    let rt = rt();
    let check = || {
        rt.block_on(async {
            let (s, t) = (client(&src.dsn(&db)).await, client(&dst.dsn(&db)).await);
            verify::run(&s, &t).await.expect("verify")
        })
    };
    let r = check();
    assert_eq!(r.differences, vec![], "a faithful copy compares equal");
    assert_eq!((r.tables, r.rows), (5, 500 + 3000 + 10 + 1000 + 500), "4 tables with rows and a materialized view");

    dst.psql(
        &db,
        "UPDATE orders SET total = total + 0.01 WHERE id = 42;
         DELETE FROM log WHERE ctid = (SELECT ctid FROM log LIMIT 1);
         SELECT setval('customers_id_seq', 10);
         DROP INDEX orders_customer;",
    )
    .expect("corrupt");
    let r = check();
    let named: Vec<(&str, &str)> = r.differences.iter().map(|d| (d.kind, d.object.as_str())).collect();
    assert_eq!(
        named,
        [
            ("table", "public.log"),
            ("table", "public.orders"),
            ("sequence", "public.customers_id_seq"),
            ("objects", "indexes")
        ],
        "{:#?}",
        r.differences
    );
    let orders = &r.differences[1];
    assert!(orders.target.contains("same 3000 rows, different contents"), "{orders:?}");
    assert_eq!((r.differences[0].source.as_str(), r.differences[0].target.as_str()), ("10 rows", "9 rows"));
}
