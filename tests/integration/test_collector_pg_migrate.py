"""`edgetrace-collector migrate --from sqlite:PATH --to postgresql://...`: a single-node SQLite
database, filled through real ingest (a real `serve` on SQLite, the ingest bench's DTLS sessions
with full snapshots, a stock coap-client upload), moved into a real PostgreSQL 15 (pgcluster.py).

Covered:
  - every table both backends have holds the same number of rows afterwards; snap_keys (the
    cross-node dedup authority, PostgreSQL only) has one key per snapshot; old rows land in their
    day's partition, not the default one;
  - a PostgreSQL node answers the API and the CLI as the SQLite node did;
  - a migrated snapshot retried through the PostgreSQL node is a duplicate (2.04), a new one and
    a new device's targets are stored (the id sequences moved past the copied ids);
  - what PostgreSQL has no table for is a refusal that names it, with nothing written, unless
    --skip-missing;
  - all or nothing: a row PostgreSQL cannot take fails the run with no row written, and the run
    can be repeated; a second run into the filled database is refused.

Run: make collector host-tools host-deps; /usr/bin/python3 -m pytest tests/integration/test_collector_pg_migrate.py
"""

import json
import sqlite3
import subprocess
import time
import urllib.request

from conftest import COLLECTOR, free_port
from test_collector import Collector, coap_post, gen_snapshots, snapshot_id
from test_collector_pg import bench, cli, db, nodes, pg, pg_cluster, provision  # noqa: F401 (fixtures)

DAY_MS = 86400 * 1000


def migrate(src, url, *extra):
    return subprocess.run([str(COLLECTOR), "migrate", "--from", f"sqlite:{src}", "--to", url, *extra],
                          capture_output=True, text=True, timeout=300)


def sqlite_counts(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_schema WHERE type='table'"
                                           " AND name NOT LIKE 'sqlite_%' AND name != 'meta'")]
        return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    finally:
        con.close()


def pg_tables(pg, name):
    return {r[0] for r in pg.sql(name, "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid=c.relnamespace"
                                       " WHERE n.nspname='public' AND c.relkind IN ('r','p') AND NOT c.relispartition")}


def pg_count(pg, name, table):
    return int(pg.sql(name, f'SELECT count(*) FROM "{table}"')[0][0])


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def without(v, keys):
    """v with the given keys removed at every depth"""
    if isinstance(v, dict):
        return {k: without(x, keys) for k, x in v.items() if k not in keys}
    if isinstance(v, list):
        return [without(x, keys) for x in v]
    return v


def test_migrate_moves_every_row_and_the_api_answers_alike(pg, db, nodes, tmp_path):
    name, url = db
    http = free_port()
    sq = Collector(tmp_path, extra=["--http", f"127.0.0.1:{http}"])
    c1, c2 = sq.provision("gw-1"), sq.provision("gw-2")
    sq.start()
    try:
        for creds in (c1, c2):
            r = bench(sq, creds, "--sessions", "2", "--window", "4", "--count", "150", "--full")
            assert r.returncode == 0, r.stdout + r.stderr
        files = gen_snapshots(tmp_path, c1, 2)
        out = coap_post(sq.port, c1, files[0], tmp_path)
        assert f"new {snapshot_id(files[0])}" in out, out
    finally:
        assert sq.stop() == 0
    # an old day's rows, as a database that has run for weeks holds them
    old_day = (int(time.time() * 1000) // DAY_MS - 20) * DAY_MS
    con = sqlite3.connect(sq.db)
    con.execute("UPDATE snapshots SET received=?1 + id WHERE device='gw-2' AND id % 10 = 0", (old_day,))
    con.commit()
    con.close()
    cli_before = [cli(w, "--db", str(sq.db), "--json", "--limit", "500") for w in ("devices", "snapshots")]
    src = sqlite_counts(sq.db)
    assert src["snapshots"] == 2 * 152 + 1 and src["series"] == src["snapshots"]

    r = migrate(sq.db, url)
    tables = pg_tables(pg, name)  # the schema exists now, whether the run went through or not
    missing = sorted(t for t, n in src.items() if n and t not in tables)
    if missing:
        # the PostgreSQL backend does not store these yet: refused, named, nothing written
        assert r.returncode == 1 and "--skip-missing" in r.stderr, r.stdout + r.stderr
        assert all(t in r.stderr for t in missing), (missing, r.stderr)
        assert pg_count(pg, name, "snapshots") == 0 and pg_count(pg, name, "devices") == 0
        r = migrate(sq.db, url, "--skip-missing")
    assert r.returncode == 0, r.stdout + r.stderr
    common = sorted(t for t in src if t in tables)
    assert {"devices", "device_keys", "targets", "snapshots", "series"} <= set(common)
    for t in common:
        assert pg_count(pg, name, t) == src[t], (t, r.stdout)
    assert pg_count(pg, name, "snap_keys") == src["snapshots"]
    stamp = time.strftime("%Y%m%d", time.gmtime(old_day / 1000))
    assert pg_count(pg, name, f"snapshots_p{stamp}") > 0 and pg_count(pg, name, "snapshots_default") == 0

    node = nodes(url, "pg")
    # both nodes asked back to back: answers that depend on the clock (online/silent) agree
    sq.start()
    try:
        before = {p: get(http, p) for p in ("/api/devices", "/api/devices/gw-1", "/api/devices/gw-2")}
    finally:
        assert sq.stop() == 0
    # what findings decide is compared once findings are on PostgreSQL (they were left behind)
    drop = set() if "findings" in tables else {"open_findings", "worst"}
    for path, want in before.items():
        got, want = without(node.api(path), drop), without(want, drop)
        if path == "/api/devices":
            # field by field where both backends answer (the fleet view grows on PostgreSQL)
            for g, w in zip(got["devices"], want["devices"], strict=True):
                assert {k: v for k, v in g.items() if k in w} == {k: v for k, v in w.items() if k in g}
        else:
            assert got == want, path
    cli_after = [cli(w, "--db", url, "--json", "--limit", "500") for w in ("devices", "snapshots")]
    drop |= set() if "findings" in tables else {"findings"}  # the CLI's count column
    assert [without(json.loads(c), drop) for c in cli_after] == [without(json.loads(c), drop) for c in cli_before]

    # the dedup authority came along: a retry of a migrated snapshot is a duplicate
    out = coap_post(node.port, c1, files[0], tmp_path)
    assert f"dup {snapshot_id(files[0])}" in out, out
    out = coap_post(node.port, c1, files[1], tmp_path)
    assert f"new {snapshot_id(files[1])}" in out, out
    # a new device's new targets get ids past the migrated ones
    c3 = provision(url, "gw-3", tmp_path)
    r = bench(node, c3, "--sessions", "1", "--count", "20", "--full")
    assert r.returncode == 0, r.stdout + r.stderr
    assert pg_count(pg, name, "targets") == src["targets"] + 5

    # a second run into the filled database is refused and changes nothing
    again = migrate(sq.db, url, "--skip-missing")
    assert again.returncode == 1 and "not empty" in again.stderr, again.stderr
    assert pg_count(pg, name, "snapshots") == src["snapshots"] + 1 + 21


def test_migrate_refuses_a_table_it_cannot_place_and_is_all_or_nothing(pg, db, tmp_path):
    name, url = db
    path = tmp_path / "one.db"
    for dev in ("gw-a", "gw-b"):
        subprocess.run([str(COLLECTOR), "provision", dev, "--db", str(path), "--out", str(tmp_path / dev)],
                       check=True, capture_output=True)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE local_notes(x TEXT)")
    con.executemany("INSERT INTO local_notes VALUES(?)", [("a",), ("b",)])
    # a value PostgreSQL's typed column cannot take (SQLite keeps any type in any column)
    con.execute("INSERT INTO targets(device, service, ident, port) VALUES('gw-b', 'svc', 'x|1', 'not a port')")
    con.commit()
    con.close()

    r = migrate(path, url)
    assert r.returncode == 1 and "local_notes (2 rows)" in r.stderr and "Nothing was written" in r.stderr, r.stderr
    assert pg_count(pg, name, "devices") == 0

    # past the refusal, the bad row fails the run after devices were copied: none of them stays
    r = migrate(path, url, "--skip-missing")
    assert r.returncode == 1 and "targets" in r.stderr, r.stdout + r.stderr
    assert "devices" in r.stdout  # it got that far
    assert pg_count(pg, name, "devices") == 0 and pg_count(pg, name, "device_keys") == 0

    # fixed at the source, the same command runs again from the start
    con = sqlite3.connect(path)
    con.execute("UPDATE targets SET port=6060 WHERE service='svc'")
    con.commit()
    con.close()
    r = migrate(path, url, "--skip-missing")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "left behind (--skip-missing): local_notes (2 rows)" in r.stdout
    assert pg_count(pg, name, "devices") == 2 and pg_count(pg, name, "targets") == 1
    keys = json.loads(cli("keys", "--db", url, "--json"))
    assert sorted(k["device"] for k in keys) == ["gw-a", "gw-b"]


def test_migrate_usage_errors(tmp_path):
    r = subprocess.run([str(COLLECTOR), "migrate", "--from", str(tmp_path / "x.db"), "--to", "postgresql://x/y"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "sqlite:PATH" in r.stderr
    r = subprocess.run([str(COLLECTOR), "migrate", "--from", f"sqlite:{tmp_path / 'absent.db'}", "--to",
                        "postgresql://x/y"], capture_output=True, text=True)
    assert r.returncode == 1 and "no such database file" in r.stderr
    assert not (tmp_path / "absent.db").exists()
