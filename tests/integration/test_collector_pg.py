"""The collector on PostgreSQL (`--db postgresql://...`): a real PostgreSQL 15 cluster from Debian's
packages (pgcluster.py, started once for this module, one database per test), real collector
processes, real DTLS clients (tools/bench/ingest_bench, stock coap-client).

Covered:
  - ingest through one node, every acknowledged snapshot stored exactly once, the HTTP API and the
    CLI listings answered from PostgreSQL by another node;
  - exactly-once across nodes: a snapshot stored through node A and retried through node B is
    answered 2.04 and stored once;
  - keys live in the database: a revoke made with the CLI holds on a running node's next handshake;
  - kill -9 of a node under load loses nothing acknowledged;
  - PostgreSQL restarting under a running node: errors (retryable 5.xx) while it is away, then the
    node reconnects by itself and stores again;
  - retention rolls series and site counts up into 10-minute buckets and drops whole expired partitions,
    and clears payloads older than retention_payload_days;
  - a database of schema v1 is upgraded in place by the first node, keeping its rows;
  - the store's, the alert tables' and the settings' unit suites (cmocka) pass on PostgreSQL with their
    SQLite assertions.
The HTTP API, captures, provisioning and alerts on PostgreSQL are tested by test_http_api, test_downlink,
test_fleet (each over both backends) and test_alerts_pg.

Run: make collector host-tools host-deps (coap-client, et-push, ingest_bench); /usr/bin/python3 -m pytest tests/integration/test_collector_pg.py
"""

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BUILD, COLLECTOR, free_port, wait_for
from pgcluster import pg_cluster  # noqa: F401 (a fixture)
from test_collector import (Collector, coap_post, free_udp_port, gen_snapshots, read_creds,
                            snapshot_id)

BENCH = Path(os.environ.get("ET_INGEST_BENCH", BUILD / "host" / "ingest_bench"))


@pytest.fixture(scope="module")
def pg(pg_cluster):
    return pg_cluster


_dbn = [0]


@pytest.fixture
def db(pg):
    _dbn[0] += 1
    name = f"et{_dbn[0]}"
    return name, pg.createdb(name)


class Node(Collector):
    """One `edgetrace-collector serve` on the shared database (stop/alive as test_collector's)."""

    def __init__(self, workdir, url, name="n1", extra=()):
        self.workdir = Path(workdir)
        self.url = url
        self.port = free_udp_port()
        self.http = free_port()
        self.log = self.workdir / f"{name}.log"
        self.extra = list(extra)
        self.proc = None

    def start(self):
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen([str(COLLECTOR), "serve", "--db", self.url,
                                      "--listen", f"127.0.0.1:{self.port}",
                                      "--http", f"127.0.0.1:{self.http}", "--stats-interval", "0", *self.extra],
                                     stdout=subprocess.PIPE, stderr=self.logf, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("ready "), f"node did not start: {line!r} {self.log.read_text()}"
        return self

    def api(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=10) as r:
            return json.loads(r.read())


@pytest.fixture
def nodes(tmp_path):
    """Starts nodes on a database URL; every one is stopped after the test."""
    started = []

    def start(url, name="n1", extra=()):
        started.append(Node(tmp_path, url, name, extra).start())
        return started[-1]

    yield start
    for n in started:
        n.stop(signal.SIGKILL)


def cli(*args):
    r = subprocess.run([str(COLLECTOR), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def provision(url, device, tmp_path, port=5684):
    out = tmp_path / f"{device}.cred"
    cli("provision", device, "--db", url, "--out", str(out), "--collector", f"coaps://127.0.0.1:{port}")
    return read_creds(out) | {"path": str(out)}


def bench(node, creds, *args, acked=None):
    if not BENCH.exists():
        pytest.fail(f"{BENCH} not built (make host-tools)")
    cmd = [str(BENCH), "--url", f"coaps://127.0.0.1:{node.port}/s", "--identity", creds["device_id"], "--psk",
           creds["psk"], *args]
    if acked:
        cmd += ["--acked-out", str(acked)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def stored_ids(pg, name):
    rows = pg.sql(name, "SELECT snapshot_id FROM snapshots")
    return [r[0] for r in rows]


def test_ingest_api_and_cli_on_postgresql(pg, db, nodes, tmp_path):
    name, url = db
    creds = provision(url, "gw-1", tmp_path)
    a = nodes(url, "a")
    b = nodes(url, "b")  # a second node on the same database: the reader here
    acked = tmp_path / "acked"
    r = bench(a, creds, "--sessions", "4", "--window", "4", "--count", "400", "--full", acked=acked)
    assert r.returncode == 0, r.stdout + r.stderr
    ids = acked.read_text().split()
    assert len(ids) >= 400
    stored = stored_ids(pg, name)
    assert len(stored) == len(set(stored)) == 404, "400 + one warm-up per session, each once"
    assert set(ids) <= set(stored), "every acknowledged snapshot stored"
    assert pg.sql(name, "SELECT count(*) FROM series")[0][0] == str(len(stored))
    devs = b.api("/api/devices")["devices"]
    assert [d["id"] for d in devs] == ["gw-1"]
    assert devs[0]["snapshots"] == len(stored) and devs[0]["targets"] == 5 and devs[0]["board"] == "bench"
    dev = b.api("/api/devices/gw-1")
    assert len(dev["targets"]) == 5 and all(t["last"]["goroutines"] is not None for t in dev["targets"])
    rows = json.loads(cli("devices", "--db", url, "--json"))
    assert rows[0]["device"] == "gw-1" and rows[0]["snapshots"] == len(stored)
    snaps = json.loads(cli("snapshots", "--db", url, "--json", "--limit", "5"))
    assert len(snaps) == 5 and all(s["device"] == "gw-1" and s["goroutines"] is not None for s in snaps)


def test_retry_on_another_node_is_a_duplicate(pg, db, nodes, tmp_path):
    name, url = db
    creds = provision(url, "gw-1", tmp_path)
    a = nodes(url, "a")
    b = nodes(url, "b")
    f = gen_snapshots(tmp_path, creds, 1)[0]
    out = coap_post(a.port, creds, f, tmp_path)
    assert f"new {snapshot_id(f)}" in out, out
    out = coap_post(b.port, creds, f, tmp_path)
    assert f"dup {snapshot_id(f)}" in out, out
    assert stored_ids(pg, name) == [snapshot_id(f)]


def test_revoke_in_the_database_holds_on_a_running_node(pg, db, nodes, tmp_path):
    name, url = db
    creds = provision(url, "gw-1", tmp_path)
    node = nodes(url)
    files = gen_snapshots(tmp_path, creds, 2)
    out = coap_post(node.port, creds, files[0], tmp_path)
    assert f"new {snapshot_id(files[0])}" in out, out
    cli("revoke", "gw-1", "--db", url)  # another process, straight into the database
    assert json.loads(cli("keys", "--db", url, "--json"))[0]["state"] == "revoked"
    out = coap_post(node.port, creds, files[1], tmp_path, timeout=4)
    assert "new " not in out, out
    assert stored_ids(pg, name) == [snapshot_id(files[0])]
    assert "revoked" in node.log.read_text()


def test_kill9_of_a_node_under_load_loses_nothing_acknowledged(pg, db, nodes, tmp_path):
    name, url = db
    creds = provision(url, "gw-1", tmp_path)
    node = nodes(url)
    acked = tmp_path / "acked"
    if not BENCH.exists():
        pytest.fail(f"{BENCH} not built (make host-tools)")
    gen = subprocess.Popen([str(BENCH), "--url", f"coaps://127.0.0.1:{node.port}/s", "--identity", "gw-1", "--psk",
                            creds["psk"], "--sessions", "8", "--window", "4", "--count", "200000",
                            "--max-seconds", "8", "--acked-out", str(acked)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in gen.stdout:
        lines.append(line)
        if "sessions up" in line:
            break
    time.sleep(2.0)
    node.stop(signal.SIGKILL)
    out = "".join(lines) + gen.communicate(timeout=60)[0]
    ids = acked.read_text().split()
    assert len(ids) >= 100, f"too few answers before the kill to mean anything: {out}"
    stored = stored_ids(pg, name)
    assert len(stored) == len(set(stored))
    missing = set(ids) - set(stored)
    assert not missing, f"{len(missing)} of {len(ids)} acknowledged snapshots lost"


def test_database_restart_under_a_running_node(pg, db, nodes, tmp_path):
    name, url = db
    creds = provision(url, "gw-1", tmp_path)
    node = nodes(url)
    files = gen_snapshots(tmp_path, creds, 3)
    out = coap_post(node.port, creds, files[0], tmp_path)
    assert f"new {snapshot_id(files[0])}" in out, out
    pg.stop()
    try:
        # no key lookup and no COMMIT while it is away: never a 2.01, the agent keeps it
        out = coap_post(node.port, creds, files[1], tmp_path, timeout=4)
        assert "new " not in out and "dup " not in out, out
    finally:
        pg.start()
    assert node.proc.poll() is None, "the node keeps running while the database is away"
    # the node reconnects by itself: the same snapshot and a fresh one are stored
    for f in files[1:]:
        out = coap_post(node.port, creds, f, tmp_path)
        assert f"new {snapshot_id(f)}" in out, out + node.log.read_text()[-2000:]
    assert sorted(stored_ids(pg, name)) == sorted(snapshot_id(f) for f in files)


def test_retention_drops_whole_expired_partitions(pg, db, nodes, tmp_path):
    name, url = db
    provision(url, "gw-1", tmp_path)  # creates the schema and today's partitions
    day = 86400 * 1000
    old = (int(time.time() * 1000) // day - 40) * day
    stamp = time.strftime("%Y%m%d", time.gmtime(old / 1000))
    q = f"FOR VALUES FROM ({old}) TO ({old + day})"
    pg.sql(name, f"CREATE TABLE snapshots_p{stamp} PARTITION OF snapshots {q};"
                 f"CREATE TABLE series_p{stamp} PARTITION OF series {q};"
                 f"CREATE TABLE site_counts_p{stamp} PARTITION OF site_counts {q};"
                 f"INSERT INTO snapshots(snapshot_id, device, received, t) VALUES('aa', 'gw-1', {old + 5}, {old});"
                 # two snapshots' figures in one 10-minute bucket, one in the next
                 f"INSERT INTO series(target, t, snap, received, goroutines, rss_kb) VALUES"
                 f" (7, {old}, 1, {old}, 10, 100), (7, {old + 1000}, 2, {old + 1000}, 30, 50),"
                 f" (7, {old + 600000}, 3, {old + 600000}, 20, 70);"
                 f"INSERT INTO site_counts(target, key, t, count, received) VALUES"
                 f" (7, 99, {old}, 4, {old}), (7, 99, {old + 1000}, 6, {old + 1000})")
    # payloads: cleared after retention_payload_days (7), in partitions that stay
    mid = (int(time.time() * 1000) // day - 10) * day
    pg.sql(name, f"CREATE TABLE snapshots_p{time.strftime('%Y%m%d', time.gmtime(mid / 1000))} PARTITION OF snapshots"
                 f" FOR VALUES FROM ({mid}) TO ({mid + day});"
                 f"INSERT INTO snapshots(snapshot_id, device, received, t, payload) VALUES"
                 f" ('bb', 'gw-1', {mid + 5}, {mid}, '\\x01')")
    nodes(url, extra=["--retention-full-days", "30"])  # its pruner does the work
    assert wait_for(lambda: pg.sql(name, "SELECT snapshot_id FROM snapshots WHERE payload IS NULL") == [["bb"]],
                    timeout=20), pg.sql(name, "SELECT snapshot_id, payload FROM snapshots")
    for t in ("snapshots", "series", "site_counts"):
        assert wait_for(lambda: pg.sql(name, f"SELECT to_regclass('{t}_p{stamp}') IS NULL")[0][0] == "t", timeout=20)
    assert pg.sql(name, "SELECT snapshot_id FROM snapshots ORDER BY 1") == [["bb"]]
    # rolled up before the drop, as SQLite keeps them: min/max/last per 10 minutes
    assert pg.sql(name, "SELECT t, n, goroutines_min, goroutines_max, goroutines_last, rss_kb_last FROM series_rollup"
                        " ORDER BY t") == [[str(old), "2", "10", "30", "30", "50"],
                                           [str(old + 600000), "1", "20", "20", "20", "70"]]
    assert pg.sql(name, "SELECT key, count_min, count_max, count_last FROM site_rollup") == [["99", "4", "6", "6"]]
    assert int(pg.sql(name, "SELECT value FROM meta WHERE key='prune_rows_total'")[0][0]) >= 3
    # partitions ahead exist for the days to come
    tomorrow = time.strftime("%Y%m%d", time.gmtime(time.time() + 86400))
    assert pg.sql(name, f"SELECT to_regclass('series_p{tomorrow}') IS NOT NULL")[0][0] == "t"


def test_schema_v1_upgrades_in_place(pg, db, nodes, tmp_path):
    """A database of the first PostgreSQL schema (snapshots, series, keys, dedup: v1) is upgraded to v5 by
    the first node that starts on it, keeping its rows; the version says so and the new tables serve."""
    name, url = db
    creds = provision(url, "gw-1", tmp_path)
    n = nodes(url, "a")
    files = gen_snapshots(tmp_path, creds, 2)
    for f in files:
        assert "new " in coap_post(n.port, creds, f, tmp_path)
    n.stop(signal.SIGKILL)
    v2 = ("sites", "site_counts", "attachments", "finding_counts", "finding_events", "findings", "series_rollup",
          "site_rollup", "commands", "alert_state", "alert_outbox", "settings", "settings_state")
    pg.sql(name, "".join(f"DROP TABLE {t};" for t in v2) +
           "DELETE FROM meta WHERE key='prune_rows_total'; UPDATE meta SET value='1' WHERE key='schema_version'")
    b = nodes(url, "b")
    assert pg.sql(name, "SELECT value FROM meta WHERE key='schema_version'") == [["5"]]
    assert pg.sql(name, "SELECT count(*) FROM commands WHERE started_ms IS NULL") == [["0"]]  # v3's column
    assert sorted(stored_ids(pg, name)) == sorted(snapshot_id(f) for f in files)
    assert b.api("/api/findings") == {"findings": []} and len(b.api("/api/devices/gw-1")["targets"]) >= 1


@pytest.mark.parametrize("suite,count", [("test_collector_store_fleet", 6), ("test_collector_alert", 4),
                                         ("test_collector_settings", 1)])
def test_store_unit_suites_on_postgresql(pg, db, suite, count):
    """The store's and the alert tables' own cmocka suites run against PostgreSQL with the same assertions as on
    SQLite: every wire field kept, target identity, dedup per device, finding history with out-of-order arrivals
    and the survivor evidence, the API's JSON (test_collector_store_fleet.c); the alert state machine, its
    outbox and the alert thread (test_collector_alert.c); central settings' versions, merge and delivery
    (test_collector_settings.c)."""
    name, url = db
    unit = BUILD / "host-asan" / suite
    if not unit.exists():
        pytest.fail(f"{unit} not built (make {unit.relative_to(BUILD.parent)})")
    r = subprocess.run([str(unit)], env=dict(os.environ, ET_TEST_PG_URL=url), capture_output=True, text=True,
                       timeout=120)
    out = r.stdout + r.stderr
    passed = re.search(r"PASSED  \] (\d+) test", out)
    assert r.returncode == 0 and passed and int(passed.group(1)) >= count, out[-3000:]
