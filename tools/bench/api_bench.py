#!/usr/bin/env python3
"""api_bench.py - the collector's HTTP API under a fleet-sized database, and ingest while the API
is hammered.

  python3 tools/bench/api_bench.py            (make bench section "api"; run.sh calls it)

1. Latency: a database of DEVICES x TARGETS targets x DAYS days of snapshots every INTERVAL s is
   generated through the collector's own store (build/host/api_dbgen: store_put_snapshot, the
   write path ingest uses). Generating it takes minutes, so it is kept in
   $ET_CACHE/bench/ keyed by the store's schema version, the generator's source hash and the
   shape, and reused. A collector serves it over HTTP (its own read-only connection); one
   keep-alive client times each query: the fleet overview (/api/devices, and the open findings
   the page fetches with it), one target's 7-day series (random targets), the findings list.
   p50 and p99 per query; target p99 < 100 ms.
2. Ingest while the API is hammered: ingest_bench (the ingest section's load generator, real
   DTLS PSK sessions, each answer after a durable commit) against a collector whose HTTP server
   is kept busy by HAMMER client threads looping over the same queries; the same run without
   them is the baseline. Ingest must not slow down because of readers (WAL, own connection).

Shape (env): API_BENCH_DEVICES=200 API_BENCH_TARGETS=5 API_BENCH_DAYS=7 API_BENCH_INTERVAL_S=100
(100 s gives 6.05M snapshots, the issue's "about 6M"; 30 s snapshots of the same fleet would be
20.2M), API_BENCH_N (requests per query, 200), API_BENCH_HAMMER (threads, 4),
API_BENCH_INGEST_COUNT (20000).
"""
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("ET_BUILD", ROOT / "build"))
CACHE = Path(os.environ.get("ET_CACHE", "/var/cache/edgetrace"))
COLLECTOR = Path(os.environ.get("ET_COLLECTOR", BUILD / "host" / "edgetrace-collector"))
DBGEN = BUILD / "host" / "api_dbgen"
INGEST = BUILD / "host" / "ingest_bench"
DEVICES = int(os.environ.get("API_BENCH_DEVICES", 200))
TARGETS = int(os.environ.get("API_BENCH_TARGETS", 5))
DAYS = int(os.environ.get("API_BENCH_DAYS", 7))
INTERVAL = int(os.environ.get("API_BENCH_INTERVAL_S", 100))
N = int(os.environ.get("API_BENCH_N", 200))
HAMMER = int(os.environ.get("API_BENCH_HAMMER", 4))
INGEST_COUNT = int(os.environ.get("API_BENCH_INGEST_COUNT", 20000))
WORK = Path(os.environ.get("ET_BENCH_WORK") or "/tmp") / f"api-bench-{os.getpid()}"
PROCS = []


def port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, log):
    p = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    PROCS.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def serve(db, name, ready=True):
    hport, cport = port(), port(socket.SOCK_DGRAM)
    p = start([COLLECTOR, "serve", "--db", db, "--listen", f"127.0.0.1:{cport}", "--http", f"127.0.0.1:{hport}",
               "--stats-interval", "0"], WORK / f"{name}.log")
    line = p.stdout.readline()
    if not line.startswith("ready "):
        raise SystemExit(f"collector did not start: {(WORK / f'{name}.log').read_text()[-2000:]}")
    return p, hport, cport


def cached_db():
    """The generated fleet database, from the cache or made now (the time it took is printed)."""
    # always through make: a no-op when current, and a stale generator would write a stale schema
    subprocess.run(["make", "-s", "--no-print-directory", str(DBGEN.relative_to(ROOT))], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    schema = subprocess.run([DBGEN, "--schema-version"], capture_output=True, text=True, check=True).stdout.strip()
    src = hashlib.sha256((ROOT / "tools/bench/api/api_dbgen.c").read_bytes()).hexdigest()[:10]
    shape = f"{DEVICES}x{TARGETS}x{DAYS}d-{INTERVAL}s"
    db = CACHE / "bench" / f"api-v{schema}-{src}-{shape}.db"
    if db.exists():
        print(f"database: {db} (cached; {db.stat().st_size / 1e9:.2f} GB)")
        return db
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_suffix(f".tmp{os.getpid()}")
    t0 = time.monotonic()
    r = subprocess.run([DBGEN, tmp, "--devices", str(DEVICES), "--targets", str(TARGETS), "--days", str(DAYS),
                        "--interval-s", str(INTERVAL)], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"api_dbgen failed: {r.stderr[-2000:]}")
    for suffix in ("-wal", "-shm"):  # api_dbgen closed cleanly: the WAL is checkpointed
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    os.replace(tmp, db)
    print(f"database: generated in {time.monotonic() - t0:.0f} s: {r.stdout.strip()}")
    return db


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Client:
    def __init__(self, hport):
        self.c = http.client.HTTPConnection("127.0.0.1", hport, timeout=60)

    def get(self, path):
        self.c.request("GET", path)
        r = self.c.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit(f"GET {path}: {r.status} {body[:300]!r}")
        return body


def queries(client, now_ms, rng):
    """The three measured queries as (name, path-maker) pairs; targets drawn at random."""
    targets = [t["id"] for d in json.loads(client.get("/api/devices"))["devices"][:DEVICES]
               for t in json.loads(client.get(f"/api/devices/{d['id']}/targets"))["targets"]]
    week = now_ms - 7 * 86400 * 1000
    return targets, [
        ("fleet overview (/api/devices)", lambda: "/api/devices"),
        ("fleet overview (open findings)", lambda: "/api/findings?state=open&limit=1000"),
        ("one target's 7-day series", lambda: f"/api/targets/{rng.choice(targets)}/series?from={week}&to={now_ms}"),
        ("findings list (/api/findings)", lambda: "/api/findings"),
    ]


def latency(db):
    p, hport, _ = serve(db, "latency")
    try:
        c = Client(hport)
        rng = random.Random(7)
        now_ms = int(time.time() * 1000)
        targets, qs = queries(c, now_ms, rng)
        devs = json.loads(c.get("/api/devices"))["devices"]
        s = json.loads(c.get(f"/api/targets/{targets[0]}/series?from={now_ms - 7 * 86400 * 1000}&to={now_ms}"))
        print(f"fleet: {len(devs)} devices, {len(targets)} targets; a 7-day series has {len(s['t'])} points "
              f"(step {s['step_ms'] / 1000:.0f} s)")
        rows = []
        for name, mk in qs:
            for _ in range(3):  # warm the page cache and the connection
                c.get(mk())
            ts, size = [], 0
            for _ in range(N):
                t0 = time.perf_counter()
                size = len(c.get(mk()))
                ts.append((time.perf_counter() - t0) * 1000)
            p50, p99 = pct(ts, 50), pct(ts, 99)
            rows.append((name, p50, p99, size))
            print(f"latency {name:36s} p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  ({N} requests, {size} bytes) "
                  f"{'ok' if p99 < 100 else 'MISS'}")
        return rows
    finally:
        stop(p)


def hammer(hport, stop_evt, counter):
    c = Client(hport)
    rng = random.Random(threading.get_ident())
    now_ms = int(time.time() * 1000)
    targets, qs = queries(c, now_ms, rng)
    while not stop_evt.is_set():
        for _, mk in qs:
            c.get(mk())
            counter[0] += 1  # one += per thread at a time under the GIL; an estimate is enough


def ingest_rate(db_src, label, threads):
    """ingest_bench against a collector serving (a copy of) db_src, with THREADS API clients."""
    db = WORK / f"ingest-{label}.db"
    shutil.copy(db_src, db)
    subprocess.run([COLLECTOR, "provision", "gw-bench", "--db", db, "--out", WORK / "gw.cred", "--force"],
                   check=True, capture_output=True)
    psk = next(l.split("=", 1)[1].strip() for l in (WORK / "gw.cred").read_text().splitlines()
               if l.startswith("psk"))
    p, hport, cport = serve(db, f"ingest-{label}")
    stop_evt, counter, ths = threading.Event(), [0], []
    try:
        for _ in range(threads):
            th = threading.Thread(target=hammer, args=(hport, stop_evt, counter), daemon=True)
            th.start()
            ths.append(th)
        time.sleep(1 if threads else 0)
        t0 = time.monotonic()
        r = subprocess.run([INGEST, "--url", f"coaps://127.0.0.1:{cport}/s", "--identity", "gw-bench", "--psk", psk,
                            "--sessions", "16", "--window", "4", "--count", str(INGEST_COUNT), "--json"],
                           capture_output=True, text=True, timeout=600)
        el = time.monotonic() - t0
        stop_evt.set()
        res = json.loads(r.stdout)
        api_rps = counter[0] / el if threads else 0
        print(f"ingest {label:28s} {res['per_second']:8.0f}/s  answered {res['answered']} (2.01 {res['created']}) "
              f" API requests answered meanwhile: {counter[0]} ({api_rps:.0f}/s by {threads} clients)")
        return res["per_second"], api_rps
    finally:
        stop_evt.set()
        for th in ths:  # let the clients finish their request before the server goes
            th.join(timeout=60)
        stop(p)


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    try:
        print(f"api bench: {DEVICES} devices x {TARGETS} targets x {DAYS} days, a snapshot every {INTERVAL} s per "
              f"target ({DEVICES * TARGETS * DAYS * 86400 // INTERVAL} snapshots), {os.cpu_count()} cores")
        db = cached_db()
        rows = latency(db)
        if not INGEST.exists():
            subprocess.run(["make", "-s", "--no-print-directory", "host-tools"], cwd=ROOT, check=True)
        # ingest into a small copy (a few days of 10 devices), so the copy is quick and the big cached
        # database stays untouched; the hammer clients query it the same way
        small = WORK / "small.db"
        subprocess.run([DBGEN, small, "--devices", "10", "--targets", str(TARGETS), "--days", "2",
                        "--interval-s", "30"], check=True, capture_output=True)
        base, _ = ingest_rate(small, "(API idle)", 0)
        busy, rps = ingest_rate(small, f"(API hammered)", HAMMER)
        print(f"ingest with the API hammered: {busy / base * 100:.0f}% of the idle rate")
        return 0 if all(r[2] < 100 for r in rows) else 1
    finally:
        for p in PROCS:
            stop(p)
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
