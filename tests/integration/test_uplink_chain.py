"""The whole uplink chain with real processes: agent (`edgetrace-agent push`, which runs the real
spool + uplink + event loop) -> tools/lossy-link -> edgetrace-collector (SQLite).

Exactly-once is checked against the agent's own record: with --ids-out the agent appends each
snapshot id once the snapshot is in its spool, and at the end every one of those ids must be in
the collector's database, each once (the UNIQUE constraint makes a second row impossible, so the
check that matters is "nothing missing" plus "no more rows than snapshots made").

  - weak cellular: 30% loss each way, 300 ms delay, one real 60 s outage and a NAT rebinding
  - NAT rebinding on a clean link keeps the DTLS session (Connection ID): one handshake only
  - the ARM (rpi4) agent under qemu through a lossy link with an outage and a rebinding
  - kill -9 of the agent at random moments during spooling and upload, many trials
  - kill -9 of the collector, repeatedly, while the agent uploads
  - the collector restarted on the same address under an agent with a backlog and the default
    timers: the agent re-handshakes and delivers again within 15 s
  - a bandwidth budget holds routine snapshots back and lets findings through

Run: /usr/bin/python3 -m pytest tests/integration/test_uplink_chain.py
"""

import json
import os
import random
import shlex
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from chaos import start_lossy_link
from conftest import AGENT, BUILD, COLLECTOR, wait_for
from test_collector import Collector

# tools/et-push.c: the agent's `push` loop with the harness's synthetic snapshots (host build,
# and cross-built for rpi4 by `make BOARD=rpi4 unit-cross`)
PUSH = shlex.split(os.environ.get("ET_PUSH_CMD", "")) or [str(BUILD / "host" / "et-push")]
AGENT_RPI4 = Path(os.environ.get("ET_PUSH_RPI4", BUILD / "rpi4" / "unit" / "et-push"))
QEMU_RPI4 = shlex.split(os.environ.get("ET_QEMU_RPI4", "qemu-aarch64-static"))


def push_cmd(creds, url, spool, ids, *extra, prefix=None):
    return (prefix or PUSH) + ["--credentials", creds["path"], "--collector", url, "--spool", str(spool),
                               "--ids-out", str(ids), "--json", *[str(e) for e in extra]]


def run_push(cmd, timeout):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    stats = None
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            stats = json.loads(line)
    return r, stats


def ids_of(path):
    p = Path(path)
    return [l.strip() for l in p.read_text().splitlines() if l.strip()] if p.exists() else []


def check_exactly_once(collector, produced_ids, max_extra=0):
    rows = collector.rows("SELECT snapshot_id, count(*) FROM snapshots GROUP BY snapshot_id")
    stored = {r[0]: r[1] for r in rows}
    missing = [i for i in produced_ids if i not in stored]
    assert not missing, f"{len(missing)} snapshots never reached the database: {missing[:5]}"
    assert all(n == 1 for n in stored.values())
    assert len(produced_ids) == len(set(produced_ids))
    assert len(stored) <= len(produced_ids) + max_extra, (len(stored), len(produced_ids))
    return stored


@pytest.fixture
def coll(tmp_path):
    c = Collector(tmp_path)
    c.creds = c.provision("gw-1")
    c.start()
    yield c
    c.stop(signal.SIGKILL)


def test_weak_cellular_with_60s_outage_and_rebinding(coll, tmp_path):
    """30% loss each way, 300 ms each way, a real 60 s outage, a NAT rebinding after it."""
    # One request in flight (NSTART = 1) at ~50% per-attempt success with RFC 7252 backoff costs
    # ~5 s per snapshot on this link, so the agent makes one every 3 s for 36 s: the spool
    # backs up during the outage and drains afterwards.
    n = 12
    with start_lossy_link(("127.0.0.1", coll.port), profile="weak_cellular", workdir=tmp_path / "link",
                          outage=[(8, 60)]) as link:
        url = "coaps://%s:%d" % link.addr
        cmd = push_cmd(coll.creds, url, tmp_path / "spool", tmp_path / "ids", "--synthetic", n, "--interval-ms", 3000,
                       "--ack-timeout-ms", 1200, "--max-retransmit", 4, "--backoff-min-ms", 1000,
                       "--backoff-max-ms", 8000, "--timeout", 420)
        agent = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        link.wait_outage_over(margin=2)
        link.rebind()
        out, err = agent.communicate(timeout=450)
        final = link.stats()
    stats = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    assert agent.returncode == 0, err[-2000:]
    assert stats["produced"] == n and stats["pending"] == 0
    check_exactly_once(coll, ids_of(tmp_path / "ids"))
    # the impairments really happened
    assert final.get("rebinds", 1) >= 1
    assert stats["posts"] > n, "30% loss must have cost retries"
    # A silent session gets a fresh handshake beside it; on a lossy link that is sometimes needless,
    # so each probe doubles the wait for the next (3, 6, 12, 24 s here, then libcoap's own 27 s
    # schedule ends first) and at most the first silence tries from more than one port.
    print(f"30% loss + outage: {stats['sessions']} sessions, {stats['probes']} probes, {stats['takeovers']} "
          f"takeovers; link up {final['up']['bytes_received']} B, down {final['down']['bytes_received']} B")
    assert stats["probes"] <= 10, stats


def test_rebinding_keeps_the_dtls_session(coll, tmp_path):
    """With DTLS Connection ID a NAT rebinding does not cost a new handshake."""
    n = 20
    with start_lossy_link(("127.0.0.1", coll.port), profile="clean", workdir=tmp_path / "link", delay_ms=20) as link:
        url = "coaps://%s:%d" % link.addr
        cmd = push_cmd(coll.creds, url, tmp_path / "spool", tmp_path / "ids", "--synthetic", n, "--interval-ms", 250,
                       "--ack-timeout-ms", 1000, "--max-retransmit", 3, "--timeout", 120)
        agent = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3):
            time.sleep(1.2)
            link.rebind()
        out, err = agent.communicate(timeout=150)
        ports = link.upstream_ports()
    stats = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    assert agent.returncode == 0, err[-2000:]
    check_exactly_once(coll, ids_of(tmp_path / "ids"))
    assert stats["sessions"] == 1, f"rebinding forced a new handshake: {stats}"
    assert stats["timeouts"] == 0, stats


@pytest.mark.skipif(not AGENT_RPI4.exists(), reason="rpi4 et-push not built (make BOARD=rpi4 unit-cross)")
def test_arm_agent_under_qemu_through_lossy_link(coll, tmp_path):
    n = 8
    with start_lossy_link(("127.0.0.1", coll.port), workdir=tmp_path / "link", loss=30, delay_ms=300,
                          outage=[(5, 10)]) as link:
        url = "coaps://%s:%d" % link.addr
        cmd = push_cmd(coll.creds, url, tmp_path / "spool", tmp_path / "ids", "--synthetic", n, "--interval-ms", 1000,
                       "--ack-timeout-ms", 1200, "--max-retransmit", 4, "--backoff-min-ms", 1000,
                       "--backoff-max-ms", 6000, "--timeout", 300, prefix=QEMU_RPI4 + [str(AGENT_RPI4)])
        agent = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        link.wait_outage_over(margin=1)
        link.rebind()
        out, err = agent.communicate(timeout=360)
    assert agent.returncode == 0, err[-2000:]
    stats = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    assert stats["produced"] == n and stats["pending"] == 0
    stored = check_exactly_once(coll, ids_of(tmp_path / "ids"))
    boards = {r[0] for r in coll.rows("SELECT DISTINCT board FROM snapshots")}
    assert boards == {"rpi4"}, boards


def test_kill9_agent_during_spooling_and_upload(coll, tmp_path):
    """Many trials: the agent makes snapshots and uploads them through a mildly lossy link and is
    SIGKILLed at a random moment; the next run reuses the spool. At the end nothing is missing."""
    rng = random.Random(9)
    trials = 25
    spool, ids = tmp_path / "spool", tmp_path / "ids"
    killed = 0
    with start_lossy_link(("127.0.0.1", coll.port), workdir=tmp_path / "link", loss=5, delay_ms=30) as link:
        url = "coaps://%s:%d" % link.addr
        for t in range(trials):
            cmd = push_cmd(coll.creds, url, spool, ids, "--synthetic", 6, "--interval-ms", 60, "--pad", 1200 * (t % 2),
                           "--ack-timeout-ms", 500, "--max-retransmit", 3, "--backoff-min-ms", 200,
                           "--backoff-max-ms", 1000, "--timeout", 60)
            agent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.0, 0.8))
            if agent.poll() is None:
                agent.send_signal(signal.SIGKILL)
                killed += 1
            agent.wait(timeout=60)
        # a last, undisturbed run drains whatever the killed runs left in the spool
        r, stats = run_push(push_cmd(coll.creds, url, spool, ids, "--ack-timeout-ms", 500, "--max-retransmit", 4,
                                     "--timeout", 120), timeout=150)
    assert r.returncode == 0, r.stderr[-2000:]
    assert stats["pending"] == 0
    assert killed >= trials // 2, f"only {killed} of {trials} trials were killed mid-run"
    produced = ids_of(ids)
    assert len(produced) >= 30
    # a kill between spooling and logging the id leaves at most one unlogged snapshot per trial
    check_exactly_once(coll, produced, max_extra=killed)


def test_kill9_collector_while_agent_uploads(coll, tmp_path):
    n = 40
    rng = random.Random(11)
    url = f"coaps://127.0.0.1:{coll.port}"
    cmd = push_cmd(coll.creds, url, tmp_path / "spool", tmp_path / "ids", "--synthetic", n, "--interval-ms", 100,
                   "--ack-timeout-ms", 400, "--max-retransmit", 2, "--backoff-min-ms", 200, "--backoff-max-ms", 1000,
                   "--timeout", 240)
    agent = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kills = 0
    while agent.poll() is None and kills < 6:
        time.sleep(rng.uniform(0.3, 1.5))
        coll.stop(signal.SIGKILL)
        kills += 1
        time.sleep(rng.uniform(0.0, 0.5))
        coll.start()
    out, err = agent.communicate(timeout=300)
    assert agent.returncode == 0, err[-2000:]
    assert kills >= 3
    check_exactly_once(coll, ids_of(tmp_path / "ids"))


def first_received_after(c, t_ms):
    r = c.rows("SELECT min(received) FROM snapshots WHERE received >= ?", (t_ms,))
    return r[0][0]


def test_collector_restart_under_backlog_rehandshakes_within_15s(coll, tmp_path):
    """The collector is killed and restarted on the same address while an agent with a backlog
    uploads, with the default timers (ack_timeout 4 s, max_retransmit 6). The new process does not
    know the agent's DTLS session and drops its records without a word; the path (the lossy-link
    relay, like most NATs and cellular networks) brings no ICMP back. The agent must notice and
    handshake afresh within 15 s, not after the 6-13 minutes of the whole retransmission schedule
    (the old code's behaviour: this test timed out on it). Nothing lost, nothing stored twice."""
    n = 2000
    spool, ids = tmp_path / "spool", tmp_path / "ids"
    with start_lossy_link(("127.0.0.1", coll.port), profile="clean", workdir=tmp_path / "link") as link:
        url = "coaps://%s:%d" % link.addr
        # all n spooled before the upload starts: a backlog the agent drains back to back
        cmd = push_cmd(coll.creds, url, spool, ids, "--synthetic", n, "--timeout", 150)
        agent = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert wait_for(lambda: coll.rows("SELECT count(*) FROM snapshots")[0][0] >= 50, timeout=60)
        coll.stop(signal.SIGKILL)
        t_kill = int(time.time() * 1000)
        coll.start()
        assert wait_for(lambda: first_received_after(coll, t_kill) is not None, timeout=100), \
            "no delivery after the restart"
        gap = (first_received_after(coll, t_kill) - t_kill) / 1000
        out, err = agent.communicate(timeout=200)
    stats = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    print(f"collector restart -> delivery again: {gap:.1f} s; agent: {stats}")
    assert agent.returncode == 0, err[-2000:]
    assert gap <= 15, f"{gap:.1f} s from the restart to the next stored snapshot: {stats}"
    # one fresh handshake, or up to 3 from new ports if the restarted collector was slow to listen
    assert stats["takeovers"] >= 1 and stats["probes"] <= 3, stats
    assert stats["timeouts"] == 0, "the agent waited out the retransmission schedule"
    assert stats["produced"] == n and stats["pending"] == 0, stats
    check_exactly_once(coll, ids_of(ids))


def test_budget_holds_routine_and_lets_findings_through(coll, tmp_path):
    """--budget: routine snapshots wait once 3/4 of the day's bytes are used, findings may use all."""
    url = f"coaps://127.0.0.1:{coll.port}"
    spool, ids = tmp_path / "spool", tmp_path / "ids"
    # 10 routine snapshots (~200 B each on the wire) against a 1200-byte budget: some must wait
    r, stats = run_push(push_cmd(coll.creds, url, spool, ids, "--synthetic", 10, "--findings-every", 0,
                                 "--budget", 1200, "--timeout", 5), timeout=30)
    assert r.returncode == 1 and stats["budget_deferred"] >= 1 and stats["pending"] > 0, stats
    routine_sent = stats["acked_new"]
    assert 0 < routine_sent < 10
    # a snapshot with a finding still goes (findings first, up to the whole budget)
    r, stats = run_push(push_cmd(coll.creds, url, spool, tmp_path / "ids2", "--synthetic", 1, "--findings-every", 1,
                                 "--budget", 1200, "--timeout", 5), timeout=30)
    assert stats["acked_new"] == 1, stats
    stored = {x[0] for x in coll.rows("SELECT snapshot_id FROM snapshots")}
    assert set(ids_of(tmp_path / "ids2")) <= stored


def test_request_acked_but_never_answered_is_retried(tmp_path):
    """A collector that ACKs a request (empty ACK: "separate response follows") and then dies must
    not leave the agent waiting forever: the answer watchdog gives up and the snapshot is resent.
    Plain CoAP against a scripted UDP peer, so the test controls every datagram."""
    import socket
    import threading

    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(0.2)
    seen = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, peer = srv.recvfrom(4096)
            except socket.timeout:
                continue
            if len(data) < 4 or data[1] != 0x02:  # only POSTs
                continue
            tkl = data[0] & 0x0F
            mid, token = data[2:4], data[4:4 + tkl]
            seen.append(time.monotonic())
            if len(seen) == 1:
                srv.sendto(bytes([0x60, 0x00]) + mid, peer)  # empty ACK, then silence
            else:
                srv.sendto(bytes([0x60 | tkl, 0x41]) + mid + token + b"\xffnew", peer)  # ACK + 2.01

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    creds = tmp_path / "creds"
    creds.write_text("[credentials]\ndevice_id = gw-1\npsk = 00112233\n")
    try:
        r, stats = run_push(PUSH + ["--credentials", str(creds), "--collector", "coap://127.0.0.1:%d" % srv.getsockname()[1],
                                    "--spool", str(tmp_path / "spool"), "--synthetic", "1", "--ack-timeout-ms", "300",
                                    "--max-retransmit", "2", "--answer-timeout-ms", "1500", "--backoff-min-ms", "100",
                                    "--timeout", "30", "--json"], timeout=60)
    finally:
        stop.set()
        t.join()
        srv.close()
    assert r.returncode == 0, r.stderr[-2000:]
    assert stats["timeouts"] == 1 and stats["acked_new"] == 1 and stats["posts"] == 2, stats
    assert len(seen) == 2 and seen[1] - seen[0] >= 1.4
