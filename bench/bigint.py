#!/usr/bin/env python3
"""pg.bigint benchmark (not part of CI). On a throwaway PostgreSQL 15 server,
the int key of `parent` (10,000,000 rows by default) and `child.parent_id`
(a tenth as many rows, FK + index) are converted to bigint two ways, each on
its own copy of the same data, while pgbench writes (4 clients, every
transaction logged with -l):

  (a) naive:   ALTER TABLE child ALTER parent_id TYPE bigint;
               ALTER TABLE parent ALTER id TYPE bigint;
               ALTER SEQUENCE parent_id_seq AS bigint        (one transaction)
  (b) cutover pg bigint --table parent   (expand, backfill, verify, prepare,
               cut-over; contract is not run or timed)

The load (--load): `tx` (default) INSERTs into parent and child and UPDATEs a
random parent in one transaction; `split` runs the same statements each in
its own transaction.

Before each change, 10 s of the load give the baseline throughput. Per method
it prints the total time, the longest write wait (the longest pgbench
transaction overlapping the change), the write throughput during the change
against the baseline, the lowest 1-s throughput, the writes that failed
(deadlock…) and for (b) the cut-over's lock_held_ms from its JSON summary;
then the ratios and the issue's goals (b's longest write wait < 1 s; b's
total within 2x of a's). A method that fails is reported as such, with its
time until it failed and its error, and the run goes on.

Usage: bench/bigint.py [--rows 10000000] [--clients 4] [--load tx|split]
                       [--batch-time 1s] [--cutover-arg=--lock-timeout=1s ...]
                       [--cutover target/release/cutover]
  e.g. bench/bigint.py --rows 200000      # a quick try (about a minute)
Needs PostgreSQL 15 (Debian's, or CUTOVER_PG15_BIN) with pgbench, and the
release binary (cargo build --release --locked). Runs as root by starting
the server as `postgres`; stops it and removes its temporary directory at
the end. About 2 GB of disk per 10 million rows.
"""
import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from pgcluster import Cluster  # bench/pgcluster.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE_S = 10.0  # load measured before each change
WARMUP_S = 3.0  # load before the baseline window
TAIL_S = 5.0  # load after the change, so blocked transactions finish and get logged



def build(pg, db, rows):
    """parent (int serial key) and child (FK + index, a tenth as many rows),
    loaded with generate_series before their keys and indexes."""
    children = max(rows // 10, 1)
    pg.psql("postgres", f"CREATE DATABASE {db}")
    t = time.time()
    pg.psql(db, f"""
      CREATE TABLE parent (id serial, payload text, updated_at timestamptz);
      INSERT INTO parent (id, payload, updated_at)
        SELECT g, md5(g::text), '2024-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, {rows}) g;
      ALTER TABLE parent ADD PRIMARY KEY (id);
      SELECT setval('parent_id_seq', {rows});
      CREATE TABLE child (id bigserial, parent_id int NOT NULL, v int);
      INSERT INTO child (id, parent_id, v)
        SELECT g, 1 + (g::bigint * 7919) % {rows}, g % 1000 FROM generate_series(1, {children}) g;
      ALTER TABLE child ADD PRIMARY KEY (id);
      SELECT setval('child_id_seq', {children});
      ALTER TABLE child ADD CONSTRAINT child_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES parent;
      CREATE INDEX child_parent_id ON child (parent_id);
    """)
    pg.psql(db, "VACUUM ANALYZE")
    try:
        pg.psql(db, "CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    except RuntimeError:
        pass
    size = int(pg.psql(db, f"SELECT pg_database_size('{db}')"))
    return size, time.time() - t


def prewarm(pg, db):
    """The same start for both copies: their tables and indexes in shared_buffers
    when pg_prewarm is there, and no checkpoint due."""
    try:
        pg.psql(db, "SELECT pg_prewarm(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')")
    except RuntimeError:
        pass
    pg.psql(db, "CHECKPOINT")


SCRIPTS = {
    # One transaction: writes parent, then child (the FK's usual order).
    "tx": """\\set pid random(1, :maxid)
BEGIN;
WITH p AS (INSERT INTO parent (payload, updated_at) VALUES (md5(random()::text), now()) RETURNING id)
  INSERT INTO child (parent_id, v) SELECT id, :client_id FROM p;
UPDATE parent SET payload = md5(random()::text), updated_at = now() WHERE id = :pid;
END;
""",
    # The same writes, each statement its own transaction: none holds a lock
    # on parent while it asks for one on child.
    "split": """\\set pid random(1, :maxid)
INSERT INTO parent (payload, updated_at) VALUES (md5(random()::text), now()) RETURNING id \\gset
INSERT INTO child (parent_id, v) VALUES (:id, :client_id);
UPDATE parent SET payload = md5(random()::text), updated_at = now() WHERE id = :pid;
""",
}


class Load:
    """pgbench writing to one database, every transaction logged (-l)."""

    def __init__(self, pg, db, rows, clients, root, name, kind):
        self.dir = os.path.join(root, f"pgbench-{name}")
        os.makedirs(self.dir)
        script = os.path.join(self.dir, "write.sql")
        with open(script, "w") as f:
            f.write(SCRIPTS[kind])
        self.err = open(os.path.join(self.dir, "stderr"), "w")
        cmd = [f"{pg.bin}/pgbench", "-n", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
               "-c", str(clients), "-j", str(min(2, clients)), "-T", "86400", "-P", "1", "-f", script,
               "-D", f"maxid={rows}", "--failures-detailed", "-l", "--log-prefix", os.path.join(self.dir, "tx"), db]
        self.proc = subprocess.Popen(cmd, stdout=self.err, stderr=self.err, start_new_session=True)
        self.t0 = time.time()

    def stop(self):
        if self.proc.poll() is None:
            # pgbench has no graceful stop: its last buffered log lines (a few
            # ms of load, after TAIL_S) are lost, nothing inside the windows.
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.err.close()

    def alive(self):
        return self.proc.poll() is None

    def transactions(self):
        """[(start, end, latency_s, ok, failure)] from every thread's log
        (a failure is "deadlock", "serialization" or "failed")."""
        out = []
        for path in glob.glob(os.path.join(self.dir, "tx.*")):
            with open(path) as f:
                for line in f:
                    p = line.split()
                    if len(p) < 6:
                        continue
                    try:
                        end = int(p[4]) + int(p[5]) / 1e6
                    except ValueError:
                        continue
                    if not p[2].isdigit():
                        if p[2] != "skipped":
                            out.append((end, end, 0.0, False, p[2]))
                        continue
                    lat = int(p[2]) / 1e6
                    out.append((end - lat, end, lat, True, ""))
        return out

    def aborted(self):
        with open(os.path.join(self.dir, "stderr")) as f:
            return [line.strip() for line in f if "abort" in line or "ERROR" in line]


def window(txs, t0, t1):
    """Throughput of [t0, t1] (transactions ended in it), its lowest 1-s
    throughput, and the longest transaction overlapping it."""
    done = [t for t in txs if t0 <= t[1] < t1 and t[3]]
    tps = len(done) / max(t1 - t0, 1e-9)
    secs = int(t1 - t0)
    per = [0] * max(secs, 1)
    for t in done:
        i = int(t[1] - t0)
        if i < len(per):
            per[i] += 1
    longest = max((t[2] for t in txs if t[3] and t[0] < t1 and t[1] > t0), default=0.0)
    return tps, (min(per) if secs >= 1 else len(done) / max(t1 - t0, 1e-9)), longest


def under_load(pg, db, rows, clients, kind, root, name, change):
    """Starts the load, measures its baseline, runs change(), keeps the load
    TAIL_S longer, and returns the figures."""
    load = Load(pg, db, rows, clients, root, name, kind)
    try:
        time.sleep(WARMUP_S + BASELINE_S)
        if not load.alive():
            raise RuntimeError(f"pgbench stopped: {open(os.path.join(load.dir, 'stderr')).read()[-2000:]}")
        t1 = time.time()
        b0 = t1 - BASELINE_S
        extra = change()
        t2 = time.time()
        time.sleep(TAIL_S)
        alive = load.alive()
    finally:
        load.stop()
    txs = load.transactions()
    base_tps, base_min, base_longest = window(txs, b0, t1)
    tps, min_tps, longest = window(txs, t1, t2)
    return {
        "total": t2 - t1, "base_tps": base_tps, "base_min": base_min, "base_longest": base_longest,
        "tps": tps, "min_tps": min_tps, "longest": longest,
        "failed": [t[4] for t in txs if not t[3] and t1 <= t[1] <= t2 + TAIL_S], "aborted": load.aborted(),
        "pgbench_alive": alive,
        "extra": extra,
    }


def failed(r):
    """How many writes failed during the change, and why: "0", "4 (deadlock)"."""
    f = r["failed"]
    if not f:
        return "0"
    kinds = sorted(set(f))
    why = kinds[0] if len(kinds) == 1 else ", ".join(f"{k} {f.count(k)}" for k in kinds)
    return f"{len(f)} ({why})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows of parent (child gets a tenth)")
    ap.add_argument("--clients", type=int, default=4, help="pgbench clients (-c; -j is 2)")
    ap.add_argument("--load", choices=sorted(SCRIPTS), default="tx",
                    help="tx: INSERT parent + child and UPDATE parent in one transaction (default); "
                         "split: the same statements, each its own transaction")
    ap.add_argument("--batch-time", default=None, help="passed to cutover pg bigint (default: the tool's, 200ms)")
    ap.add_argument("--cutover-arg", action="append", default=[], metavar="ARG",
                    help="one more argument for cutover pg bigint (repeat it), e.g. --cutover-arg=--lock-timeout=1s")
    ap.add_argument("--cutover", default=os.path.join(ROOT, "target/release/cutover"))
    a = ap.parse_args()
    if not os.path.exists(a.cutover):
        sys.exit(f"{a.cutover} is missing: cargo build --release --locked")
    children = max(a.rows // 10, 1)
    root = tempfile.mkdtemp(prefix="cutover-bench-bigint-")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    pg = None
    try:
        pg = Cluster(15, root)
        print(f"PostgreSQL 15 on :{pg.port}; building parent ({a.rows:,} rows) and child ({children:,})…", flush=True)
        size, secs = build(pg, "a", a.rows)
        # (b) starts from a file copy of (a)'s database, before (a) changes it.
        pg.psql("postgres", "CREATE DATABASE b TEMPLATE a STRATEGY FILE_COPY")
        print(f"database a: {size / 2**30:.2f} GiB, built in {secs:.0f} s; b is a copy of it", flush=True)

        def naive():
            try:
                pg.psql("a", "BEGIN; ALTER TABLE child ALTER COLUMN parent_id TYPE bigint; "
                             "ALTER TABLE parent ALTER COLUMN id TYPE bigint; ALTER SEQUENCE parent_id_seq AS bigint; COMMIT")
                return {"ok": True}
            except RuntimeError as e:
                return {"ok": False, "error": str(e).splitlines()[0]}

        extra = ([f"--batch-time={a.batch_time}"] if a.batch_time else []) + a.cutover_arg
        cut_args = ["--output", "json", "--state", os.path.join(root, "state.db"), "pg", "bigint",
                    "--dsn", pg.dsn("b"), "--table", "parent"] + extra
        options = " ".join(extra) if extra else "the tool's defaults (--batch-time 200ms, --lock-timeout 500ms)"

        def cutover():
            """The summary (JSON) or, when it fails, what it said."""
            log_path = os.path.join(root, "cutover.stderr")
            p = subprocess.Popen([a.cutover] + cut_args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=root)
            t0 = time.time()
            seen = {"stage": "", "retries": 0, "last": 0.0, "tail": []}

            def relay():
                with open(log_path, "w") as log:
                    for line in p.stderr:
                        log.write(line)
                        s = line.strip()
                        now = time.time()
                        seen["tail"] = (seen["tail"] + [s])[-3:]
                        if s.startswith("== "):
                            seen["stage"] = s[3:].split(":")[0]
                        if s.startswith("retry"):
                            seen["retries"] += 1
                        # stage changes, throttling, the swap, the first retries of a
                        # statement, backfill progress every 30 s
                        show = s.startswith("==") or "throttled" in s or "locks held" in s or s.startswith("error")
                        show = show or (s.startswith("retry") and seen["retries"] <= 3)
                        if s.startswith("backfill") and now - seen["last"] >= 30:
                            seen["last"], show = now, True
                        if show:
                            print(f"    {now - t0:7.1f} s  {s[:200]}", flush=True)

            th = threading.Thread(target=relay)
            th.start()
            out = p.stdout.read()
            rc = p.wait()
            th.join()
            if seen["retries"] > 3:
                print(f"    ({seen['retries']} retries in all)", flush=True)
            if rc != 0:
                err = next((t for t in reversed(seen["tail"]) if t.startswith("error")), seen["tail"][-1:] or [""])
                return {"ok": False, "rc": rc, "stage": seen["stage"], "retries": seen["retries"],
                        "error": err if isinstance(err, str) else err[0]}
            return dict(json.loads(out), ok=True)

        def check(db):
            types = pg.psql(db, "SELECT string_agg(table_name || '.' || column_name || ' ' || data_type, ', ' "
                                "ORDER BY table_name DESC) FROM information_schema.columns WHERE table_schema = 'public' "
                                "AND (table_name, column_name) IN (('parent', 'id'), ('child', 'parent_id'))")
            fk = pg.psql(db, "SELECT string_agg(conname || CASE WHEN convalidated THEN ' (valid)' ELSE ' (NOT VALID)' END, ', ') "
                             "FROM pg_constraint WHERE contype = 'f' AND conrelid = 'child'::regclass")
            seq = pg.psql(db, "SELECT data_type FROM pg_sequences WHERE schemaname || '.' || sequencename = "
                              "pg_get_serial_sequence('parent', 'id')")
            n = pg.psql(db, "SELECT (SELECT count(*) FROM parent) || ' parent rows, ' || (SELECT count(*) FROM child) "
                            "|| ' child rows'")
            print(f"  check {db}: {types}; FK {fk}; sequence {seq or '?'}; {n}", flush=True)

        print(f"pgbench: {a.clients} clients, -j 2, load `{a.load}` (INSERT parent + child, UPDATE a random parent"
              f"{' in one transaction' if a.load == 'tx' else ', each statement its own transaction'}); "
              f"{BASELINE_S:.0f} s baseline before each change", flush=True)
        prewarm(pg, "a")
        print("(a) naive ALTER … TYPE bigint (one transaction)…", flush=True)
        ra = under_load(pg, "a", a.rows, a.clients, a.load, root, "a", naive)
        if ra["extra"]["ok"]:
            print(f"  done in {ra['total']:.1f} s", flush=True)
        else:
            print(f"  FAILED after {ra['total']:.1f} s: {ra['extra']['error']}", flush=True)
        check("a")
        prewarm(pg, "b")
        print(f"(b) cutover pg bigint --table parent, {options}…", flush=True)
        rb = under_load(pg, "b", a.rows, a.clients, a.load, root, "b", cutover)
        s = rb["extra"]
        co = s.get("cutover") or {}
        if s["ok"]:
            print(f"  done in {rb['total']:.1f} s", flush=True)
            stages = ", ".join(f"{n} {v:.1f} s" for n, v in s.get("stages", []))
            print(f"  summary: stages {stages}; rows {s.get('rows')}, batches {s.get('batches')}, "
                  f"throttled {s.get('throttled_seconds', 0):.1f} s; swap: attempt {co.get('attempts')}, "
                  f"waited {co.get('lock_wait_ms', 0):.1f} ms for its locks, held them {co.get('lock_held_ms', 0):.1f} ms")
        else:
            print(f"  FAILED after {rb['total']:.1f} s, in stage {s['stage'] or '?'}, after {s['retries']} retries "
                  f"(exit {s['rc']}):\n  `{a.cutover} {' '.join(cut_args)}`\n  {s['error']}", flush=True)
        check("b")
        for name, r in (("a", ra), ("b", rb)):
            if r["failed"] or r["aborted"] or not r["pgbench_alive"]:
                print(f"  WARNING ({name}): {failed(r)} pgbench transaction(s) failed during the change; pgbench "
                      f"{'was running' if r['pgbench_alive'] else 'had stopped'} at the end"
                      + "".join(f"; {x}" for x in r["aborted"][:3]))

        print()
        print(f"parent {a.rows:,} rows, child {children:,} rows, PostgreSQL 15, pgbench {a.clients} clients (load `{a.load}`), "
              f"{os.cpu_count()} cores; cutover with {options}")
        print()
        print("| method | total (s) | longest write wait (s) | tps before | tps during | during / before "
              "| lowest 1-s tps during | failed writes | lock held (ms) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        b_label = "(b) cutover pg bigint" if s["ok"] else f"(b) cutover pg bigint — FAILED in {s['stage'] or '?'}"
        b_held = f"{co.get('lock_held_ms', 0):.1f}" if s["ok"] else "—"
        a_label = "(a) naive ALTER TABLE … TYPE bigint" + ("" if ra["extra"]["ok"] else " — FAILED")
        for label, r, held in ((a_label, ra, "—"), (b_label, rb, b_held)):
            total = f"{r['total']:.1f}" if r["extra"]["ok"] else f"{r['total']:.1f} (until it failed)"
            print(f"| {label} | {total} | {r['longest']:.3f} | {r['base_tps']:.0f} | {r['tps']:.0f} | "
                  f"{r['tps'] / max(r['base_tps'], 1e-9):.2f} | {r['min_tps']:.0f} | {failed(r)} | {held} |")
        print()
        fin = "" if s["ok"] else "   ((b) did not finish: its time until it failed)"
        print(f"(b) total / (a) total              = {rb['total']:.1f} s / {ra['total']:.1f} s = "
              f"{rb['total'] / ra['total']:.2f}{fin}")
        print(f"(b) longest write wait vs 1 s goal = {rb['longest']:.3f} s / 1 s = {rb['longest']:.2f}")
        print(f"(a) longest write wait / (a) total = {ra['longest']:.1f} s / {ra['total']:.1f} s = "
              f"{ra['longest'] / ra['total']:.2f}")
        print(f"longest write wait in the baseline: (a) {ra['base_longest']:.3f} s, (b) {rb['base_longest']:.3f} s")
        print()
        g1 = rb["longest"] < 1.0
        g2 = s["ok"] and rb["total"] <= 2 * ra["total"]
        print(f"goal: longest write wait < 1 s in (b): {'met' if g1 else 'NOT met'} ({rb['longest']:.3f} s)")
        print(f"goal: (b) total within 2x of (a):      {'met' if g2 else 'NOT met'} "
              + (f"({rb['total'] / ra['total']:.2f}x)" if s["ok"] else "((b) failed)"))
        if not s["ok"]:
            print(f"(b) FAILED: {s['error']}")
    finally:
        if pg:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
