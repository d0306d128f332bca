"""A throwaway PostgreSQL server for the benchmarks: initdb under a temporary
directory, started as the `postgres` user when run as root, on a free port
of 127.0.0.1, with the same settings for every benchmark."""
import os
import shutil
import socket
import subprocess
import sys


def bindir(major):
    for d in (os.environ.get(f"CUTOVER_PG{major}_BIN", ""), f"/usr/lib/postgresql/{major}/bin",
              f"/opt/cutover-pg/{major}/bin"):
        if d and os.path.exists(os.path.join(d, "postgres")):
            return d
    sys.exit(f"PostgreSQL {major} is not installed (run scripts/install-test-deps)")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def as_postgres(cmd):
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


class Cluster:
    def __init__(self, major, root):
        self.major, self.bin = major, bindir(major)
        self.dir = os.path.join(root, f"pg{major}")
        os.makedirs(self.dir)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.started = False
        subprocess.run(as_postgres([f"{self.bin}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                                    "--no-locale"]), check=True, stdout=subprocess.DEVNULL)
        # The same settings for every benchmark and method.
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c shared_buffers=1GB "
                "-c max_wal_size=16GB -c checkpoint_timeout=30min -c maintenance_work_mem=256MB "
                "-c max_parallel_maintenance_workers=0")
        subprocess.run(as_postgres([f"{self.bin}/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-o", opts,
                                    "-w", "start"]), check=True, stdout=subprocess.DEVNULL)
        self.started = True

    def dsn(self, db):
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def psql(self, db, sql):
        r = subprocess.run([f"{self.bin}/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.dsn(db), "-c", sql],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql -d {db} failed: {r.stderr.strip()}\n  SQL: {sql.strip()[:300]}")
        return r.stdout.strip()

    def stop(self):
        if self.started:
            subprocess.run(as_postgres([f"{self.bin}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.started = False

