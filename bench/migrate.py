#!/usr/bin/env python3
"""cutover migrate benchmark (not part of CI). On a throwaway PostgreSQL 15
server, the same directory of N small migrations (default 200: a table, a
column, an index, a row, in turn) is applied to each of D fresh databases
(default 10) two ways:

  (a) baseline: one psql session per database runs every file in its own
      BEGIN … COMMIT (the SQL alone: no lock, no state, no history);
  (b) cutover migrate up: one process per database (advisory locks, state
      and history rows, checksums, one transaction per migration).

It prints each method's total time and time per migration, the ratio b/a
(cutover's bookkeeping overhead), then a second `cutover migrate up` with
nothing pending (the cost of a no-op deploy), `status`, and `lint` over the
N files without a database and with one (pending files, catalog types read).

Usage: bench/migrate.py [--migrations 200] [--databases 10]
                        [--cutover target/release/cutover]
Needs PostgreSQL 15 (Debian's, or CUTOVER_PG15_BIN) and the release binary
(cargo build --release --locked). Runs as root by starting the server as
`postgres`; stops it and removes its temporary directory at the end.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from pgcluster import Cluster  # bench/pgcluster.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_migrations(d, n):
    """n golang-migrate files: a table every 4th, then a column, an index
    and a row on it."""
    os.makedirs(d)
    for v in range(1, n + 1):
        t = f"t{(v - 1) // 4}"
        sql = [
            f"CREATE TABLE {t} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, created timestamptz NOT NULL DEFAULT now());",
            f"ALTER TABLE {t} ADD COLUMN note text;",
            f"CREATE INDEX {t}_created ON {t} (created);",
            f"INSERT INTO {t} (note) VALUES ('v{v}');",
        ][(v - 1) % 4]
        with open(os.path.join(d, f"{v:06d}_step_{v}.up.sql"), "w") as f:
            f.write(sql + "\n")
        with open(os.path.join(d, f"{v:06d}_step_{v}.down.sql"), "w") as f:
            f.write("SELECT 1;\n")


def timed(cmd, **kw):
    t = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode not in (0, 1) or (r.returncode == 1 and "lint" not in cmd):
        sys.exit(f"{' '.join(cmd[:4])}… failed ({r.returncode}): {r.stderr.strip()[:500]}")
    return time.monotonic() - t, r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--migrations", type=int, default=200)
    ap.add_argument("--databases", type=int, default=10)
    ap.add_argument("--cutover", default=os.path.join(ROOT, "target/release/cutover"))
    a = ap.parse_args()
    if not os.path.exists(a.cutover):
        sys.exit(f"{a.cutover} is missing: cargo build --release --locked")
    root = tempfile.mkdtemp(prefix="cutover-bench-migrate-")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    pg = None
    try:
        pg = Cluster(15, root)
        mig = os.path.join(root, "migrations")
        write_migrations(mig, a.migrations)
        files = sorted(f for f in os.listdir(mig) if f.endswith(".up.sql"))
        # One script per database for the baseline: each file in its own transaction.
        script = os.path.join(root, "all.sql")
        with open(script, "w") as out:
            for f in files:
                out.write("BEGIN;\n")
                out.write(open(os.path.join(mig, f)).read())
                out.write("COMMIT;\n")
        for m in ("a", "b"):
            for i in range(a.databases):
                pg.psql("postgres", f"CREATE DATABASE bench_{m}_{i}")
        n = a.migrations * a.databases
        print(f"{a.migrations} migrations x {a.databases} databases = {n} applications, PostgreSQL 15")

        base = 0.0
        for i in range(a.databases):
            s, _ = timed([f"{pg.bin}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", pg.dsn(f"bench_a_{i}"), "-f", script])
            base += s
        print(f"(a) psql, one session per database:      {base:7.2f} s  {base / n * 1000:6.2f} ms/migration")

        env = dict(os.environ, CUTOVER_STATE=os.path.join(root, "state.db"))
        cut = 0.0
        for i in range(a.databases):
            s, _ = timed([a.cutover, "migrate", "--dsn", pg.dsn(f"bench_b_{i}"), "--dir", mig, "up"], env=env)
            cut += s
        applied = pg.psql("bench_b_0", "SELECT count(*) FROM cutover.migration_history WHERE success")
        if int(applied) != a.migrations:
            sys.exit(f"cutover recorded {applied} successful migrations, not {a.migrations}")
        print(f"(b) cutover migrate up, one per database: {cut:7.2f} s  {cut / n * 1000:6.2f} ms/migration")
        print(f"    ratio b/a: {cut / base:.2f}x  (overhead {(cut - base) / n * 1000:.2f} ms per migration)")

        noop, _ = timed([a.cutover, "migrate", "--dsn", pg.dsn("bench_b_0"), "--dir", mig, "up"], env=env)
        status, _ = timed([a.cutover, "migrate", "--dsn", pg.dsn("bench_b_0"), "--dir", mig, "status"], env=env)
        print(f"    up with nothing pending: {noop * 1000:.0f} ms; status of {a.migrations} files: {status * 1000:.0f} ms")

        lint_all, r = timed([a.cutover, "migrate", "--dir", mig, "lint"], env=env)
        # Every file pending in an empty database: status, then the catalog's column types.
        pg.psql("postgres", "CREATE DATABASE bench_lint")
        lint_pending, _ = timed([a.cutover, "migrate", "--dsn", pg.dsn("bench_lint"), "--dir", mig, "lint"], env=env)
        tail = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        print(f"lint of {a.migrations} files: {lint_all * 1000:.0f} ms without a database ({tail}); "
              f"{lint_pending * 1000:.0f} ms with one (all pending)")
    finally:
        if pg:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
