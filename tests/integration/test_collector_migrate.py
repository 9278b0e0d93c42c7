"""A database written by the first release (schema 1) opens in this collector's `serve`, is upgraded
in place, keeps every row, and goes on deduplicating what the old collector stored. The v1 DDL is
kept here verbatim (as collector/src/store.c of release 1 wrote it), so the fixture is exactly what
an upgrading user has on disk."""
import json
import signal
import sqlite3
import time

from test_collector import Collector, coap_post, gen_snapshots, snapshot_id

V1_DDL = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
INSERT OR IGNORE INTO meta VALUES('schema_version','1');
CREATE TABLE IF NOT EXISTS devices(
  id TEXT PRIMARY KEY, psk BLOB NOT NULL, created INTEGER NOT NULL,
  last_seen INTEGER, snapshots INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS targets(
  id INTEGER PRIMARY KEY, device TEXT NOT NULL, service TEXT NOT NULL, pod TEXT NOT NULL,
  incarnation TEXT, first_seen INTEGER, last_seen INTEGER,
  UNIQUE(device, service, pod));
CREATE TABLE IF NOT EXISTS snapshots(
  id INTEGER PRIMARY KEY, snapshot_id TEXT NOT NULL UNIQUE, device TEXT NOT NULL,
  target INTEGER REFERENCES targets(id), received INTEGER NOT NULL,
  wall_ms INTEGER, wall_trusted INTEGER, mono_ms INTEGER, boot_id TEXT, seq INTEGER,
  board TEXT, agent_version TEXT, incarnation TEXT,
  goroutines INTEGER, heap_inuse INTEGER, rss_kb INTEGER, threads INTEGER,
  spool_dropped INTEGER, nfindings INTEGER, size INTEGER, payload BLOB);
CREATE INDEX IF NOT EXISTS snapshots_device ON snapshots(device, received);
CREATE TABLE IF NOT EXISTS findings(
  id INTEGER PRIMARY KEY, device TEXT NOT NULL, target INTEGER NOT NULL REFERENCES targets(id),
  fingerprint TEXT NOT NULL, kind TEXT, confidence TEXT, state TEXT, evidence INTEGER,
  function TEXT, file TEXT, line INTEGER, created_by TEXT,
  count INTEGER, max_count INTEGER, growth_per_min REAL, oldest_wait_s REAL, value INTEGER,
  first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, snapshots INTEGER NOT NULL,
  last_snapshot TEXT,
  UNIQUE(device, target, fingerprint));
"""


def test_v1_database_upgrades_in_place(tmp_path):
    c = Collector(tmp_path)
    psk = "a5" * 32
    creds_path = tmp_path / "gw-1.cred"
    creds_path.write_text(f"[credentials]\ndevice_id = gw-1\npsk = {psk}\ncollector = coaps://127.0.0.1:{c.port}\n")
    creds = {"device_id": "gw-1", "psk": psk, "path": str(creds_path)}
    files = gen_snapshots(tmp_path, creds, 2)
    old_id = snapshot_id(files[0])  # the old collector already stored this one

    # an hour ago: inside every retention window, so what the upgrade keeps is all there
    t0 = int(time.time() * 1000) - 3600_000
    con = sqlite3.connect(c.db)
    con.executescript(V1_DDL)
    con.execute("INSERT INTO devices VALUES('gw-1', ?, ?, ?, 2)", (bytes.fromhex(psk), t0 - 1000, t0 + 60500))
    con.execute("INSERT INTO targets VALUES(1,'gw-1','billing','prod/billing-7d9f8c6b5-ab/app','77:9',?,?)",
                (t0, t0 + 60000))
    con.execute("INSERT INTO snapshots VALUES(1,?,'gw-1',1,?,?,1,5,'b',1,'rpi4','0.1.0',"
                "'77:9',10,1000,2048,9,0,1,100,?)", (old_id, t0 + 500, t0, files[0].read_bytes()))
    con.execute("INSERT INTO snapshots VALUES(2,'00ff','gw-1',1,?,?,1,6,'b',2,'rpi4',"
                "'0.1.0','77:9',20,2000,4096,9,0,0,100,NULL)", (t0 + 60500, t0 + 60000))
    con.execute("INSERT INTO findings VALUES(1,'gw-1',1,'00112233aabbccdd','goroutine-leak','likely','chan receive',"
                "3,'main.(*P).agg','p/pipeline.go',33,'main.start',10,10,1.5,600,0,?,?,1,?)", (t0, t0, old_id))
    con.commit()
    con.close()

    c.start()
    try:
        out = coap_post(c.port, creds, files[0], tmp_path)
        assert f"dup {old_id}" in out, out  # stored by the old collector: not stored twice
        out = coap_post(c.port, creds, files[1], tmp_path)
        assert f"new {snapshot_id(files[1])}" in out, out
    finally:
        c.stop(signal.SIGTERM)
    assert c.rows("SELECT value FROM meta WHERE key='schema_version'") == [("7",)]  # v1 -> 7 in place
    # v6: central settings, empty after an upgrade (no scope has a set yet)
    assert c.rows("SELECT count(*) FROM settings") == [(0,)]
    assert c.rows("SELECT count(*) FROM settings_state") == [(0,)]
    assert c.rows("SELECT count(*) FROM snapshots") == [(3,)]
    assert c.rows("SELECT payload FROM snapshots WHERE snapshot_id=?", (old_id,)) == [(files[0].read_bytes(),)]
    assert c.rows("SELECT goroutines, rss_kb FROM series WHERE snap=2") == [(20, 4096)]
    # the CLI reads the upgraded file: the old finding with its history, the old device's key
    findings = json.loads(c.query("findings", "--json"))
    old = [f for f in findings if f["function"] == "main.(*P).agg"]
    assert len(old) == 1 and old[0]["status"] == "cleared" and old[0]["snapshots"] == 1
    assert c.rows("SELECT event FROM finding_events WHERE finding=1 ORDER BY t") == [("opened",), ("cleared",)]
    snaps = json.loads(c.query("snapshots", "--json"))
    assert {s["snapshot_id"] for s in snaps} == {old_id, "00ff", snapshot_id(files[1])}
    assert "gw-1" in c.query("devices")
