#!/usr/bin/env python3
"""Control-tower benchmark (not part of CI). Prints its figures and ratios
against baselines measured in the same run:

1. A run of 10,000 targets (recorded by `cutover run`; targets/s).
2. Server-side render time of that run's page, against /healthz on the same
   server (median of 20).
3. SSE latency: from a state change committed by `cutover check` to the
   event received from the stream, against one poll of the JSON API for
   that event (median and p95 of 20; the server reads the store every 150 ms).
4. CPU used by `cutover watch` probing 1,000 HTTP checks every second against
   a local server, against the CPU the server spends answering them.

Usage: bench/tower.py [path/to/cutover]   (default: target/release/cutover)
"""
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from pgcluster import free_port  # bench/pgcluster.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUTOVER = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/cutover")
TOKEN = "bench-token"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(work, state):
    port = free_port()
    env = dict(os.environ, CUTOVER_TOKEN=TOKEN)
    p = subprocess.Popen([CUTOVER, "--state", state, "serve", "--listen", f"127.0.0.1:{port}"], cwd=work, env=env,
                         stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("cutover serve did not start")


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t = time.perf_counter()
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    dt = time.perf_counter() - t
    c.close()
    return r.status, body, dt


def main():
    work = tempfile.mkdtemp(prefix="cutover-bench-")
    state = os.path.join(work, "state.db")
    n = 10_000
    lines = ['name = "fleet-10k"', "[concurrency]", "limit = 64", "per_label = { region = 32 }",
             '[[checks]]', 'name = "backups-off"', 'kind = "manual"']
    for i in range(n):
        lines += ["[[targets]]", f'name = "db-{i:05}"', f'labels = {{ region = "r{i % 4}", tier = "t{i % 3}" }}']
    lines += ["[[phases]]", 'name = "upgrade"', "[[phases]]", 'name = "verify"']
    with open(os.path.join(work, "fleet.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    t = time.perf_counter()
    subprocess.run([CUTOVER, "--state", state, "run", "fleet.toml"], cwd=work, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_s = time.perf_counter() - t
    run_id = json.loads(subprocess.check_output([CUTOVER, "--state", state, "runs", "-o", "json"], cwd=work))[-1]["id"]
    print(f"run of {n} targets recorded: {run_s:.1f} s ({n / run_s:.0f} targets/s)")

    server, port = serve(work, state)
    try:
        get(port, f"/runs/{run_id}")  # warm
        page = [get(port, f"/runs/{run_id}") for _ in range(20)]
        health = [get(port, "/healthz")[2] for _ in range(20)]
        size = len(page[0][1])
        pm, hm = statistics.median(p[2] for p in page), statistics.median(health)
        print(f"run page of {n} targets: median {pm * 1000:.1f} ms ({size / 1024:.0f} KiB); "
              f"/healthz: {hm * 1000:.2f} ms; ratio {pm / hm:.0f}x")

        # SSE latency.
        sse = socket.create_connection(("127.0.0.1", port))
        sse.sendall(f"GET /api/runs/{run_id}/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
        sse.settimeout(5)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sse.recv(4096)
        lat, api = [], []
        for i in range(20):
            subprocess.run([CUTOVER, "--state", state, "check", run_id, "backups-off", "--ok" if i % 2 == 0 else "--not-ok"],
                           cwd=work, check=True, stdout=subprocess.DEVNULL)
            t0 = time.perf_counter()
            data = b""
            while b"check_ticked" not in data:
                data += sse.recv(65536)
            lat.append(time.perf_counter() - t0)
            # Baseline: one poll of the JSON API for the same (last) event.
            last_id = int(data.split(b"id: ")[-1].split(b"\n")[0])
            api.append(get(port, f"/api/runs/{run_id}/events?after={last_id - 1}")[2])
        sse.close()
        lat.sort()
        print(f"SSE latency (change committed → event received): median {statistics.median(lat) * 1000:.0f} ms, "
              f"p95 {lat[int(len(lat) * 0.95) - 1] * 1000:.0f} ms; one poll of the JSON API for that event: median "
              f"{statistics.median(api) * 1000:.0f} ms; ratio {statistics.median(lat) / statistics.median(api):.1f}x")

        # 1,000 HTTP checks every second against the tower's own /healthz.
        checks = ['name = "checks-1000"']
        for i in range(1000):
            checks += ["[[checks]]", f'name = "c{i:04}"', 'kind = "http"', f'url = "http://127.0.0.1:{port}/healthz"',
                       'interval = "1s"']
        checks += ["[[checks]]", 'name = "never"', 'kind = "manual"', "[[phases]]", 'name = "wait"', 'checks = ["never"]']
        with open(os.path.join(work, "checks.toml"), "w") as f:
            f.write("\n".join(checks) + "\n")
        watch = subprocess.Popen([CUTOVER, "--state", os.path.join(work, "w.db"), "watch", "checks.toml"], cwd=work,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(5)  # warm up: every check has probed a few times
        w0, s0, t0 = cpu_seconds(watch.pid), cpu_seconds(server.pid), time.perf_counter()
        time.sleep(20)
        w1, s1, t1 = cpu_seconds(watch.pid), cpu_seconds(server.pid), time.perf_counter()
        watch.terminate()
        watch.wait()
        wall = t1 - t0
        wc, sc = (w1 - w0) / wall * 100, (s1 - s0) / wall * 100
        print(f"1,000 HTTP checks at 1 s: cutover watch used {wc:.0f} % of a core; the server answering them "
              f"{sc:.0f} %; ratio {wc / max(sc, 0.1):.1f}x")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
