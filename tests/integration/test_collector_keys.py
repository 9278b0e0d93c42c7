"""Device keys at the collector, through the real edgetrace-collector process and real DTLS
peers (stock libcoap coap-client, tools/bench/ingest_bench and the agent itself):
  - the database, its -wal/-shm and every credentials file are 0600 even with umask 000, and
    a credentials file is never written through a planted symlink
  - provision with a --collector longer than the agent can hold is refused cleanly (it used to
    copy stack bytes past a 512-byte buffer into the credentials file)
  - revoke: the device's next handshake fails, a live session's next request gets 4.01, the
    device stays listed as revoked, other devices are untouched
  - rotate: the old key works until the device first completes a handshake with the new one,
    then only the new key; with --grace, the old key stops at the deadline; the agent re-keyed
    with the new credentials delivers every snapshot

Run: make run-tests PYTEST_ARGS="tests/integration/test_collector_keys.py"
"""
import json
import os
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD, COLLECTOR, wait_for
from test_collector import PUSH, Collector, coap_post, gen_snapshots, read_creds
from test_collector import collector  # noqa: F401  (the fixture: gw-1 provisioned, collector running)


def mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def umask0():
    os.umask(0)


def collector_cmd(*args, **kw):
    return subprocess.run([str(COLLECTOR), *map(str, args)], capture_output=True, text=True, timeout=30, **kw)


def post_until_new(c, creds, snap, tmp_path, tries=3):
    """coap-client posts until the snapshot is stored; returns the number of attempts."""
    for n in range(1, tries + 1):
        out = coap_post(c.port, creds, snap, tmp_path, timeout=6)
        if "new " in out or "dup " in out:
            return n
    raise AssertionError(f"not stored after {tries} attempts: {out}")


def stats(c):
    n = c.log.read_text().count("stats requests=")
    c.proc.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: c.log.read_text().count("stats requests=") > n, timeout=5)
    line = [l for l in c.log.read_text().splitlines() if "stats requests=" in l][-1]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def test_key_files_are_0600_whatever_the_umask(tmp_path):
    db = tmp_path / "c.db"
    cred = tmp_path / "gw-1.cred"
    r = collector_cmd("provision", "gw-1", "--db", db, "--out", cred, preexec_fn=umask0)
    assert r.returncode == 0, r.stderr
    assert mode(db) == 0o600 and mode(cred) == 0o600
    port = Collector(tmp_path).port
    proc = subprocess.Popen([str(COLLECTOR), "serve", "--db", str(db), "--listen", f"127.0.0.1:{port}",
                             "--stats-interval", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=umask0)
    try:
        assert proc.stdout.readline().startswith("ready ")
        creds = read_creds(cred) | {"path": str(cred)}
        snap = gen_snapshots(tmp_path, creds, 1)[0]
        assert "new " in coap_post(port, creds, snap, tmp_path)
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(db) + suffix)
            assert p.exists() and mode(p) == 0o600, (p, oct(mode(p)))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    rot = tmp_path / "gw-1.new.cred"
    r = collector_cmd("rotate", "gw-1", "--db", db, "--out", rot, preexec_fn=umask0)
    assert r.returncode == 0, r.stderr
    assert mode(rot) == 0o600
    # a database left world-readable by an older version is tightened when opened
    os.chmod(db, 0o644)
    assert collector_cmd("keys", "--db", db).returncode == 0
    assert mode(db) == 0o600


def test_credentials_never_written_through_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "gw-1.cred"
    (tmp_path / "gw-1.cred.tmp").symlink_to(victim)  # the name the old code wrote through
    r = collector_cmd("provision", "gw-1", "--db", tmp_path / "c.db", "--out", out)
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "precious\n"
    assert not out.is_symlink() and "psk = " in out.read_text()
    assert not list(tmp_path.glob("gw-1.cred.tmp-*"))  # no temporary file left behind


def test_provision_with_a_long_collector_url(tmp_path):
    db, out = tmp_path / "c.db", tmp_path / "gw-1.cred"
    long_url = "coaps://" + "c" * 2000 + ".example:5684"
    r = collector_cmd("provision", "gw-1", "--db", db, "--out", out, "--collector", long_url)
    assert r.returncode == 2 and "--collector must be 1-159" in r.stderr, (r.returncode, r.stderr)
    assert not out.exists()
    r = collector_cmd("provision", "gw-1", "--db", db, "--collector", long_url)  # to stdout
    assert r.returncode == 2 and r.stdout == ""
    r = collector_cmd("provision", "gw-1", "--db", db, "--collector", "coaps://x\npsk = 00")  # no injected lines
    assert r.returncode == 2
    url = "coaps://" + "c" * 140 + ":5684"  # the longest kind the agent holds
    r = collector_cmd("provision", "gw-1", "--db", db, "--out", out, "--collector", url)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.endswith(f"collector = {url}\n")
    assert all(l.isprintable() for l in text.splitlines())
    assert read_creds(out)["collector"] == url


def test_revoke(collector, tmp_path):
    other = collector.provision("gw-2")
    snaps = gen_snapshots(tmp_path, collector.creds, 3)
    assert "new " in coap_post(collector.port, collector.creds, snaps[0], tmp_path)
    r = collector_cmd("revoke", "gw-1", "--db", collector.db)
    assert r.returncode == 0, r.stderr
    out = coap_post(collector.port, collector.creds, snaps[1], tmp_path, timeout=5)
    assert "new " not in out
    assert "device 'gw-1' is revoked; handshake refused" in collector.log.read_text()
    assert collector.rows("SELECT count(*) FROM snapshots WHERE device='gw-1'")[0][0] == 1
    # other devices are untouched; the revoked one stays listed
    assert "new " in coap_post(collector.port, other, gen_snapshots(tmp_path, other, 1, name="o")[0], tmp_path)
    keys = json.loads(collector_cmd("keys", "--db", collector.db, "--json").stdout)
    assert {k["device"]: k["state"] for k in keys} == {"gw-1": "revoked", "gw-2": "active"}
    assert [k["revoked_at"] > 0 for k in keys if k["device"] == "gw-1"] == [True]
    # the key material is gone from the database
    assert collector.rows("SELECT length(psk), next_psk FROM device_keys WHERE device='gw-1'") == [(0, None)]
    assert stats(collector)["revoked"] >= 1
    # provision --force brings it back with a new key
    r = collector_cmd("provision", "gw-1", "--db", collector.db, "--out", tmp_path / "again.cred", "--force")
    assert r.returncode == 0, r.stderr
    again = read_creds(tmp_path / "again.cred") | {"path": str(tmp_path / "again.cred")}
    assert "new " in coap_post(collector.port, again, snaps[2], tmp_path)


def test_revoke_refuses_a_live_session(collector, tmp_path):
    """A DTLS session opened before the revoke: its next request gets 4.01."""
    bench = BUILD / "host" / "ingest_bench"
    if not bench.exists():
        pytest.fail(f"{bench} not built (make host-tools)")
    gen = subprocess.Popen([str(bench), "--url", f"coaps://127.0.0.1:{collector.port}/s", "--identity", "gw-1", "--psk",
                            collector.creds["psk"], "--sessions", "1", "--window", "1", "--count", "100000",
                            "--max-seconds", "4", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: collector.rows("SELECT count(*) FROM snapshots")[0][0] > 20, timeout=10)
    r = collector_cmd("revoke", "gw-1", "--db", collector.db)
    assert r.returncode == 0, r.stderr
    stored = collector.rows("SELECT count(*) FROM snapshots")[0][0]
    out, err = gen.communicate(timeout=60)
    res = json.loads(out.strip().splitlines()[-1])
    assert res["other"] >= 1, res  # 4.01 answers
    assert collector.rows("SELECT count(*) FROM snapshots")[0][0] <= stored + 1  # at most one in flight
    assert "refused a request from gw-1: device gw-1 is revoked" in collector.log.read_text()


def test_rotate_old_key_until_the_new_one_is_used(collector, tmp_path):
    old = collector.creds
    snaps = gen_snapshots(tmp_path, old, 5)
    new_path = tmp_path / "gw-1.new.cred"
    r = collector_cmd("rotate", "gw-1", "--db", collector.db, "--out", new_path, "--grace", "1h",
                      "--collector", f"coaps://127.0.0.1:{collector.port}")
    assert r.returncode == 0, r.stderr
    new = read_creds(new_path) | {"path": str(new_path)}
    assert new["psk"] != old["psk"] and new["device_id"] == "gw-1"
    assert new["collector"] == f"coaps://127.0.0.1:{collector.port}"
    # before the device has the new key, the old one keeps working
    assert "new " in coap_post(collector.port, old, snaps[0], tmp_path)
    assert "new " in coap_post(collector.port, old, snaps[1], tmp_path)
    keys = json.loads(collector_cmd("keys", "--db", collector.db, "--json").stdout)
    assert keys[0]["state"] == "rotating" and keys[0]["next_deadline"] > 0
    # the device switches: DTLS PSK lets the server offer one key per handshake, so the first
    # handshake with the new key may fail once; the retry succeeds
    tries = post_until_new(collector, new, snaps[2], tmp_path)
    assert tries <= 2
    assert "first handshake with the new key; the old key is retired" in collector.log.read_text()
    # from now on only the new key
    out = coap_post(collector.port, old, snaps[3], tmp_path, timeout=5)
    assert "new " not in out, out
    assert post_until_new(collector, new, snaps[4], tmp_path, tries=1) == 1
    keys = json.loads(collector_cmd("keys", "--db", collector.db, "--json").stdout)
    assert keys[0]["state"] == "active"
    st = stats(collector)
    assert st["key_promoted"] == 1
    stored = {r[0] for r in collector.rows("SELECT snapshot_id FROM snapshots")}
    assert stored == {s.stem for s in (snaps[0], snaps[1], snaps[2], snaps[4])}


def test_rotate_grace_deadline(collector, tmp_path):
    old = collector.creds
    snaps = gen_snapshots(tmp_path, old, 3)
    new_path = tmp_path / "gw-1.new.cred"
    r = collector_cmd("rotate", "gw-1", "--db", collector.db, "--out", new_path, "--grace", "2s")
    assert r.returncode == 0, r.stderr
    new = read_creds(new_path) | {"path": str(new_path)}
    assert "new " in coap_post(collector.port, old, snaps[0], tmp_path)
    time.sleep(2.5)
    out = coap_post(collector.port, old, snaps[1], tmp_path, timeout=5)
    assert "new " not in out, out
    assert post_until_new(collector, new, snaps[2], tmp_path, tries=1) == 1  # promoted at the deadline
    assert "the grace period ended" in collector.log.read_text()
    assert collector_cmd("rotate", "gw-1", "--db", collector.db, "--grace", "soon").returncode == 2
    assert collector_cmd("rotate", "gw-nobody", "--db", collector.db).returncode == 1


def test_rotate_with_the_agent_loses_nothing(collector, tmp_path):
    """The real agent re-keyed mid-life: with the new credentials every snapshot arrives (its first
    handshake may fail once, and it retries); afterwards the old credentials get nowhere."""
    def push(creds_path, spool, n, timeout):
        cmd = PUSH + ["--credentials", str(creds_path), "--collector", f"coaps://127.0.0.1:{collector.port}",
                      "--spool", str(tmp_path / spool), "--synthetic", str(n), "--timeout", str(timeout), "--json"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30)
        return json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])

    st = push(collector.creds["path"], "s0", 2, 15)
    assert st["acked_new"] == 2, st
    new_path = tmp_path / "gw-1.new.cred"
    assert collector_cmd("rotate", "gw-1", "--db", collector.db, "--out", new_path).returncode == 0
    st = push(new_path, "s1", 3, 20)
    assert st["acked_new"] == 3 and st["pending"] == 0 and st["dtls_failures"] <= 1, st
    st = push(collector.creds["path"], "s2", 1, 5)
    assert st["acked_new"] == 0 and st["pending"] == 1, st
    assert collector.rows("SELECT count(*) FROM snapshots")[0][0] == 5
