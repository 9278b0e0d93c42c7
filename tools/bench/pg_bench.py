#!/usr/bin/env python3
"""pg_bench.py - scaling out (README "Scaling out"): ingest on PostgreSQL through 1, 2 and 3 collector
nodes beside one node on SQLite, in one run on this machine; then the HTTP API's latency on
PostgreSQL for a fleet-view database, beside SQLite on the same data.

  python3 tools/bench/pg_bench.py            (make bench section "pg"; run.sh calls it)

1. Ingest: a real PostgreSQL 15 (Debian's, tests/integration/pgcluster.py: a throwaway cluster
   under /tmp, unix socket, fsync and synchronous_commit on) and N `serve` nodes on one database,
   each fed by its own ingest_bench (real DTLS PSK sessions, full snapshots: 16 sites, memstats,
   /proc, a finding every tenth; every answer after a durable COMMIT). Each node has its own
   device, as the balancer's address hash gives each gateway one node. The same total COUNT for
   every row; the rate is all answers over the longest bench's time. CPU time per snapshot of the
   nodes, of PostgreSQL (postmaster and every backend) and of the load generators is printed:
   the basis of the estimate for a larger machine.
2. API latency: the api section's generator (tools/bench/api/api_dbgen.c) writes a smaller
   fleet database (API_PG_DEVICES x 5 targets x API_PG_DAYS days at 100 s, cached as the api
   section caches its own), `edgetrace-collector migrate` copies it into PostgreSQL (timed), and
   the api section's queries are timed against a node on each backend.

Env: PG_BENCH_COUNT (6000), PG_BENCH_SESSIONS (8 per node), API_PG_DEVICES (50), API_PG_DAYS (2),
API_BENCH_N (requests per query, 200).
"""
import contextlib
import io
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "tools" / "bench"))
# the api section's generator, cache and queries, on a smaller fleet than its own
os.environ.setdefault("API_BENCH_DEVICES", os.environ.get("API_PG_DEVICES", "50"))
os.environ.setdefault("API_BENCH_DAYS", os.environ.get("API_PG_DAYS", "2"))
os.environ.setdefault("API_BENCH_INTERVAL_S", "100")
import api_bench  # noqa: E402
from pgcluster import PgCluster  # noqa: E402

COLLECTOR = api_bench.COLLECTOR
INGEST = api_bench.INGEST
COUNT = int(os.environ.get("PG_BENCH_COUNT", 6000))
SESSIONS = int(os.environ.get("PG_BENCH_SESSIONS", 8))
WORK = api_bench.WORK
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pids):
    """utime + stime of the live processes among pids, in seconds"""
    total = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def children_cpu_s():
    """CPU of this script's waited-for children (the load generators)"""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def pg_pids(cluster):
    """the postmaster and its children (backends, walwriter, checkpointer, ...)"""
    pm = int((cluster.data / "postmaster.pid").read_text().split()[0])
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pm:
                    kids.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return [pm, *kids]


def udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def provision(db, device):
    out = WORK / f"{device}.cred"
    subprocess.run([COLLECTOR, "provision", device, "--db", db, "--out", out, "--force"], check=True,
                   capture_output=True)
    return next(l.split("=", 1)[1].strip() for l in out.read_text().splitlines() if l.startswith("psk"))


def ingest(label, db, nodes, cluster=None):
    """nodes `serve` processes on db, one device and one ingest_bench each, COUNT snapshots in all"""
    procs, benches = [], []
    try:
        for i in range(nodes):
            psk = provision(db, f"gw-{i}")
            p, _, cport = api_bench.serve(db, f"{label}-{i}".replace(" ", "-"))
            procs.append((p, cport, f"gw-{i}", psk))
        pg = pg_pids(cluster) if cluster else []
        node_pids = [p.pid for p, *_ in procs]
        c0 = (cpu_s(node_pids), cpu_s(pg), children_cpu_s())
        for p, cport, dev, psk in procs:
            benches.append(subprocess.Popen(
                [INGEST, "--url", f"coaps://127.0.0.1:{cport}/s", "--identity", dev, "--psk", psk, "--sessions",
                 str(SESSIONS), "--window", "4", "--count", str(COUNT // nodes), "--full", "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        res = []
        for b in benches:
            out, err = b.communicate(timeout=900)
            if b.returncode:
                raise SystemExit(f"ingest_bench failed: {err[-1000:]}")
            res.append(json.loads(out))
        pg = pg_pids(cluster) if cluster else []
        c1 = (cpu_s(node_pids), cpu_s(pg), children_cpu_s())
        answered = sum(r["answered"] for r in res)
        created = sum(r["created"] for r in res)
        secs = max(r["seconds"] for r in res)
        rate = answered / secs if secs else 0
        node_ms, pg_ms, gen_ms = ((c1[i] - c0[i]) * 1000 / max(answered, 1) for i in range(3))
        print(f"ingest {label:24s} {rate:8.0f}/s  answered {answered} (2.01 {created}) in {secs:.2f} s"
              f"  cpu/snapshot: nodes {node_ms:.3f} ms" + (f", postgres {pg_ms:.3f} ms" if cluster else "")
              + f", load generators {gen_ms:.3f} ms", flush=True)
        return rate
    finally:
        for p, *_ in procs:
            api_bench.stop(p)


def latency(label, db):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rows = api_bench.latency(db)
    for line in buf.getvalue().splitlines():
        if line.startswith("fleet:"):
            print(f"{label}: {line}")
    for name, p50, p99, size in rows:
        print(f"api {label:10s} {name:36s} p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  ({size} bytes)"
              f" {'ok' if p99 < 100 else 'MISS'}", flush=True)


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    for exe in (COLLECTOR, INGEST):
        if not Path(exe).exists():
            raise SystemExit(f"{exe} not built (make collector host-tools)")
    cluster = PgCluster()
    if not cluster.available():
        raise SystemExit("PostgreSQL 15 server binaries not found (tools/setup.sh installs postgresql)")
    try:
        cluster.init()
        with open(cluster.data / "postgresql.conf", "a") as f:
            f.write("max_connections = 100\n")
        cluster.start()
        print(f"pg bench: ingest of {COUNT} full snapshots (ingest_bench --full, {SESSIONS} DTLS sessions x 4 "
              f"per node), PostgreSQL 15 and the nodes on the same {os.cpu_count()} cores", flush=True)
        sq = WORK / "ingest.db"
        ingest("sqlite 1 node", sq, 1)
        for n in (1, 2, 3):
            url = cluster.createdb(f"ingest{n}")
            ingest(f"postgresql {n} node{'s' if n > 1 else ''}", url, n, cluster)

        print(f"api on postgresql: {api_bench.DEVICES} devices x {api_bench.TARGETS} targets x {api_bench.DAYS} days, "
              f"a snapshot every {api_bench.INTERVAL} s per target "
              f"({api_bench.DEVICES * api_bench.TARGETS * api_bench.DAYS * 86400 // api_bench.INTERVAL} snapshots)",
              flush=True)
        src = api_bench.cached_db()
        url = cluster.createdb("fleet")
        t0 = time.monotonic()
        r = subprocess.run([COLLECTOR, "migrate", "--from", f"sqlite:{src}", "--to", url], capture_output=True,
                           text=True, timeout=1800)
        if r.returncode:
            raise SystemExit(f"migrate failed: {r.stderr[-2000:]}")
        rows = next((l for l in r.stdout.splitlines() if l.startswith("migrated ")), "")
        size = cluster.sql("fleet", "SELECT pg_database_size('fleet')")[0][0]
        print(f"migrate: {rows} in {time.monotonic() - t0:.1f} s; database {int(size) / 1e9:.2f} GB "
              f"(SQLite file {src.stat().st_size / 1e9:.2f} GB)", flush=True)
        latency("sqlite", src)
        latency("postgresql", url)
        return 0
    finally:
        cluster.cleanup()
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
