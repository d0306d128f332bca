#!/usr/bin/env python3
"""pg.copy benchmark (not part of CI). One database of at least 2 GB on a
throwaway PostgreSQL 13 server, copied to a throwaway PostgreSQL 15 server
three ways in the same run, each into a fresh database:

  (a) pg_dump -Fc | pg_restore           (what Divio did; seed 002)
  (b) pg_dump -Fd -j2 ; pg_restore -j2   (the parallel baseline)
  (c) cutover pg copy --jobs N           (pg.copy's fast method)

Prints each wall time, the ratios (a)/(c) and (b)/(c), and checks each copy
with `cutover pg verify` (row counts and checksums) so a fast wrong copy
cannot win.

Usage: bench/copy.py [--gb 2.2] [--jobs 4] [--cutover target/release/cutover]
Needs PostgreSQL 13 (scripts/install-test-deps puts it under /opt/cutover-pg/13)
and 15 (Debian's). Runs as root by starting the servers as `postgres`.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from pgcluster import Cluster, bindir  # bench/pgcluster.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def build_source(src, gb):
    """A shop: accounts, a big events table with a bigint key, orders with FKs,
    indexes (btree, unique, partial), a sequence, a partitioned table."""
    src.psql("postgres", "CREATE DATABASE shop")
    events = int(gb * 1e9 / 170)  # about 170 bytes a row on disk with its header
    t = time.time()
    src.psql("shop", f"""
      CREATE TABLE accounts (id int PRIMARY KEY, email text UNIQUE NOT NULL, created timestamptz NOT NULL);
      INSERT INTO accounts SELECT g, 'user' || g || '@example.com', '2020-01-01'::timestamptz + g * interval '1 minute'
        FROM generate_series(1, 1000000) g;
      CREATE TABLE events (id bigint PRIMARY KEY, account int NOT NULL REFERENCES accounts, at timestamptz NOT NULL,
                           kind text NOT NULL, amount numeric(12,2), payload text);
      INSERT INTO events SELECT g, 1 + g % 1000000, '2024-01-01'::timestamptz + g * interval '1 second',
                                (ARRAY['view','click','buy','refund'])[1 + g % 4], (g % 10000) / 100.0,
                                md5(g::text) || md5((g * 7)::text)
        FROM generate_series(1, {events}) g;
      CREATE INDEX events_account ON events (account);
      CREATE INDEX events_at ON events (at);
      CREATE INDEX events_refunds ON events (account) WHERE kind = 'refund';
      CREATE TABLE orders (id bigserial PRIMARY KEY, account int NOT NULL REFERENCES accounts, total numeric(12,2), note text);
      INSERT INTO orders (account, total, note) SELECT 1 + g % 1000000, g % 5000, 'order ' || g FROM generate_series(1, 2000000) g;
      CREATE INDEX orders_account ON orders (account);
      CREATE TABLE metrics (day date NOT NULL, host int NOT NULL, v float8, PRIMARY KEY (day, host)) PARTITION BY RANGE (day);
      CREATE TABLE metrics_2025 PARTITION OF metrics FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE TABLE metrics_2026 PARTITION OF metrics FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
      INSERT INTO metrics SELECT '2025-01-01'::date + d, h, random() FROM generate_series(0, 700) d, generate_series(1, 1000) h;
    """)
    src.psql("shop", "VACUUM ANALYZE")
    size = int(src.psql("shop", "SELECT pg_database_size('shop')"))
    return size, time.time() - t


def timed(label, fn):
    t = time.time()
    fn()
    dt = time.time() - t
    print(f"  {label:<44} {dt:8.1f} s", flush=True)
    return dt


def sh(cmd, env=None):
    subprocess.run(cmd, shell=True, check=True, env=env, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.2, help="approximate heap size of the big table")
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--cutover", default=os.path.join(ROOT, "target/release/cutover"))
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="cutover-bench-copy-")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    src, dst = Cluster(13, root), Cluster(15, root)
    try:
        print(f"PostgreSQL 13 on :{src.port}, 15 on :{dst.port}; building the source…", flush=True)
        size, secs = build_source(src, a.gb)
        print(f"source database `shop`: {size / 2**30:.2f} GiB (pg_database_size), built in {secs:.0f} s", flush=True)
        b15 = bindir(15)
        env = dict(os.environ, PGHOST="127.0.0.1", PGUSER="postgres")
        dump_dir = os.path.join(root, "dump")
        os.makedirs(dump_dir)
        if os.geteuid() == 0:
            shutil.chown(dump_dir, "postgres", "postgres")

        def a_():
            dst.psql("postgres", "CREATE DATABASE a")
            sh(f"{b15}/pg_dump -p {src.port} -Fc shop | {b15}/pg_restore -p {dst.port} -d a --exit-on-error", env)

        def b_():
            dst.psql("postgres", "CREATE DATABASE b")
            sh(f"{b15}/pg_dump -p {src.port} -Fd -j2 -f {dump_dir}/d shop && "
               f"{b15}/pg_restore -p {dst.port} -d b -j2 --exit-on-error {dump_dir}/d", env)

        def c_():
            sh(f"{a.cutover} pg copy --source {src.dsn('shop')} --target {dst.dsn('c')} --jobs {a.jobs} --pg-bin {b15} 2>/dev/null")

        print("copies (wall time):", flush=True)
        ta = timed("(a) pg_dump -Fc | pg_restore", a_)
        tb = timed("(b) pg_dump -Fd -j2 + pg_restore -j2", b_)
        tc = timed(f"(c) cutover pg copy --jobs {a.jobs}", c_)
        for db in ("a", "b", "c"):
            r = subprocess.run([a.cutover, "pg", "verify", "--source", src.dsn("shop"), "--target", dst.dsn(db)],
                               capture_output=True, text=True)
            print(f"  verify {db}: {r.stdout.strip().splitlines()[0] if r.stdout.strip() else r.stderr.strip()}")
        print()
        print("| method | wall time (s) | ratio to (c) |")
        print("|---|---:|---:|")
        print(f"| (a) pg_dump -Fc \\| pg_restore | {ta:.1f} | {ta / tc:.2f} |")
        print(f"| (b) pg_dump -Fd -j2 + pg_restore -j2 | {tb:.1f} | {tb / tc:.2f} |")
        print(f"| (c) cutover pg copy --jobs {a.jobs} | {tc:.1f} | 1.00 |")
        print(f"\n(a)/(c) = {ta / tc:.2f}   (b)/(c) = {tb / tc:.2f}   database {size / 2**30:.2f} GiB, 2 cores")
    finally:
        src.stop()
        dst.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
