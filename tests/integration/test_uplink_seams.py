"""The seams between the agent's uplink and the collector, with the real daemon
(`edgetrace-agent run` sampling real Go services), the real collector and real SQLite.

  - answers that a collector config change could turn into success never delete a record:
    a collector whose max_body is too small answers 4.13, one without the agent's zstd
    dictionary answers 5.01; the agent keeps every such snapshot, retries slowly, lets the
    others pass, shows them in `spool stats` and in its snapshots' counters; after the
    collector is restarted with the right config, every snapshot arrives exactly once
  - a snapshot larger than the day's byte budget goes first thing in a UTC day
  - snapshots spooled under another device id (before provisioning, or before a rename) are
    stored under the DTLS session's identity, none blocks the queue
  - the collector's name does not resolve when the agent starts (gateway booted before its
    network): the agent samples and spools anyway, resolves in the background, and follows
    the collector to a new address after a session failure

Each of these failed on the old code: 4.13 dropped the records, the identity mismatch was a
4.03 retried for ever, and an unresolvable name made the daemon exit at start.

Run: make run-tests PYTEST_ARGS="tests/integration/test_uplink_seams.py -x"
"""
import json
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import AGENT, COLLECTOR, ROOT, wait_for
from test_collector import Collector, free_udp_port, read_creds


def spooled(log):
    """Snapshots the agent put into its spool, from its log (one info line per snapshot)."""
    return len(re.findall(r"bytes spooled", log.read_text())) if log.exists() else 0


def spool_stats(spool):
    r = subprocess.run([str(AGENT), "spool", "stats", "--dir", str(spool), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def write_conf(path, spool, collector_url, creds, targets, extra=""):
    t = "".join(f'[target "{name}"]\nurl = {url}\n' for name, url in targets)
    path.write_text(f"""[agent]
device_id = gw-old
interval = 1s
deep_interval = 3s
leak_interval = 5s
discover = no
log_level = info
[spool]
dir = {spool}
fsync = batch
[uplink]
{f"collector = {collector_url}" if collector_url else ""}
credentials = {creds}
ack_timeout = 1s
hold_max = 2s
{extra}
{t}""")


class Agent:
    def __init__(self, tmp_path, conf, name="agent", prefix=()):
        self.log = tmp_path / f"{name}.log"
        self.proc = subprocess.Popen([*prefix, str(AGENT), "run", "--config", str(conf)], stdout=open(self.log, "a"),
                                     stderr=subprocess.STDOUT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def stored(c):
    return c.rows("SELECT count(*) FROM snapshots")[0][0]


def assert_exactly_once(c, produced, spool):
    st = spool_stats(spool)
    assert st["pending_routine"] + st["pending_findings"] == 0, st
    assert st["uplink_rejected"] == 0, st
    rows = c.rows("SELECT snapshot_id, count(*) FROM snapshots GROUP BY snapshot_id")
    assert all(n == 1 for _, n in rows)
    assert len(rows) == produced, (len(rows), produced)


def cbor(b, i=0):
    """Minimal CBOR reader for the snapshot's shapes (ints, strings, arrays, maps, definite or
    indefinite): returns (value, next index)."""
    ib = b[i]
    major, info = ib >> 5, ib & 31
    i += 1
    if info < 24:
        n = info
    elif info in (24, 25, 26, 27):
        k = 1 << (info - 24)
        n = int.from_bytes(b[i:i + k], "big")
        i += k
    elif info == 31:
        n = None
    else:
        raise ValueError(f"CBOR info {info}")
    if major == 0:
        return n, i
    if major == 1:
        return -1 - n, i
    if major in (2, 3):
        return b[i:i + n], i + n
    if major == 7:
        return info, i
    items = []
    count = n if n is not None else 1 << 30
    per = 2 if major == 5 else 1
    while len(items) < count * per:
        if n is None and b[i] == 0xFF:
            i += 1
            break
        v, i = cbor(b, i)
        items.append(v)
    if major == 4:
        return items, i
    return dict(zip(items[::2], items[1::2])), i


def snapshot_doc(payload, tmp_path):
    """The CBOR map of a stored envelope (zstd-decompressed with the zstd tool if needed)."""
    body = bytes(payload[4:])
    if payload[3] & 1:
        f = tmp_path / "frame.zst"
        f.write_bytes(body)
        body = subprocess.run(["zstd", "-dc", str(f)], capture_output=True, check=True).stdout
    return cbor(body)[0]


def restart(old, extra=()):
    """The same collector (database, port) restarted with other settings."""
    old.stop()
    c = Collector(old.workdir, extra=list(extra))
    c.port, c.plain_port = old.port, free_udp_port()
    return c.start()


def pending(spool):
    st = spool_stats(spool)
    return st["pending_routine"] + st["pending_findings"]


def drain_and_check(tmp_path, conf, c, spool, produced, prefix=()):
    """What the agent spooled in its last seconds goes with one more run; then every snapshot
    it ever made is in the database exactly once, and nothing is left or dropped."""
    drain = Agent(tmp_path, conf, name="drain", prefix=prefix)
    try:
        assert wait_for(lambda: pending(spool) == 0, timeout=60, step=0.5), \
            (tmp_path / "drain.log").read_text()[-2000:]
    finally:
        drain.stop()
        c.stop()
    assert_exactly_once(c, produced + spooled(tmp_path / "drain.log"), spool)


def test_answers_a_collector_change_can_fix_never_delete(go_service, tmp_path):
    """A collector whose max_body is too small answers 4.13. Every snapshot too big is kept (and
    shown in `spool stats`); the ones that fit keep going past it; once the limit is raised,
    every snapshot arrives exactly once."""
    svc = go_service("worker-pool", go="1.23", args=("-rate", "40"))
    c = Collector(tmp_path, extra=["--max-body", "64"])
    creds = c.provision("gw-1")
    c.start()
    spool = tmp_path / "spool"
    conf = tmp_path / "agent.conf"
    write_conf(conf, spool, f"coaps://127.0.0.1:{c.port}", creds["path"], [("svc", svc.url)])
    agent = Agent(tmp_path, conf)
    try:
        # 1. nothing fits (64 bytes): every snapshot is kept, none stored, the agent keeps sampling
        assert wait_for(lambda: spooled(agent.log) >= 5, timeout=30, step=0.5)
        time.sleep(2)
        assert stored(c) == 0
        st = spool_stats(spool)
        assert st["uplink_held"] >= 2 and st["uplink_rejected"] == 0, st
        assert pending(spool) >= spooled(agent.log) - 1, (st, spooled(agent.log))
        # 2. routine snapshots (~300 bytes) fit, deep ones (~500 bytes, every 3 s) do not: the small
        #    ones, including those spooled behind a held one, go on arriving
        c = restart(c, ["--max-body", "400"])
        assert wait_for(lambda: stored(c) >= 8, timeout=40, step=0.5), agent.log.read_text()[-3000:]
        assert pending(spool) >= 1
        # 3. the limit raised: everything arrives
        c = restart(c)
        assert wait_for(lambda: stored(c) >= spooled(agent.log) - 1, timeout=60, step=0.5), \
            (stored(c), spooled(agent.log), agent.log.read_text()[-2000:])
        # the held records reached the collector in the snapshots' counters too (schema 2 keys,
        # written only once this collector said, in its answers, that it reads a later schema:
        # it says s=3, so the agent writes schema 3, which carries them too)
        docs = [snapshot_doc(p, tmp_path) for (p,) in c.rows("SELECT payload FROM snapshots")]
        assert {d[0] for d in docs} == {1, 3}, [d[0] for d in docs]
        assert max(d.get(15, {}).get(6, 0) for d in docs if d[0] >= 2) >= 2
    finally:
        assert agent.stop() == 0
    drain_and_check(tmp_path, conf, c, spool, spooled(agent.log))
    assert "rejected" not in agent.log.read_text()


def test_unregistered_dictionary_holds_until_the_collector_has_it(go_service, tmp_path):
    """The agent compresses with a zstd dictionary the collector does not have yet (5.01): every
    such snapshot is kept; once the collector is restarted with the dictionary, all arrive once."""
    svc = go_service("worker-pool", go="1.23", args=("-rate", "40"))
    d = tmp_path / "snap.dict"
    fixtures = sorted(str(p) for p in (ROOT / "tests" / "fixtures" / "pprof").glob("*.txt"))
    subprocess.run(["zstd", "--train", "-q", "-B512", *fixtures, "--maxdict=8192", "-o", str(d)], check=True)
    c = Collector(tmp_path)
    creds = c.provision("gw-1")
    c.start()
    spool = tmp_path / "spool"
    conf = tmp_path / "agent.conf"
    write_conf(conf, spool, f"coaps://127.0.0.1:{c.port}", creds["path"], [("svc", svc.url)], f"dict = {d}")
    agent = Agent(tmp_path, conf)
    try:
        assert wait_for(lambda: "5.01" in agent.log.read_text(), timeout=30, step=0.5), agent.log.read_text()[-2000:]
        assert wait_for(lambda: spooled(agent.log) >= 5, timeout=30, step=0.5)
        st = spool_stats(spool)
        assert st["uplink_held"] >= 1 and st["uplink_rejected"] == 0 and pending(spool) >= 1, st
        c.proc.send_signal(signal.SIGUSR1)
        assert wait_for(lambda: re.search(r"unreadable=[1-9]", c.log.read_text()), timeout=5)
        c = restart(c, ["--dict", str(d)])
        assert wait_for(lambda: stored(c) >= spooled(agent.log) - 1, timeout=60, step=0.5), \
            (stored(c), spooled(agent.log), agent.log.read_text()[-2000:])
    finally:
        assert agent.stop() == 0
    drain_and_check(tmp_path, conf, c, spool, spooled(agent.log))


def test_old_device_id_in_the_spool_does_not_block(go_service, tmp_path):
    """Snapshots spooled as gw-old before provisioning are stored under the session's gw-new."""
    svc = go_service("worker-pool", go="1.23", args=("-rate", "40"))
    c = Collector(tmp_path)
    spool = tmp_path / "spool"
    conf = tmp_path / "agent.conf"
    # before provisioning: no collector, snapshots wait in the spool under the id gw-old
    write_conf(conf, spool, "", tmp_path / "none", [("svc", svc.url)])
    a1 = Agent(tmp_path, conf, name="before")
    assert wait_for(lambda: spooled(a1.log) >= 4, timeout=30, step=0.5)
    assert a1.stop() == 0
    before = spooled(a1.log)
    # provisioned as gw-new: the credentials file sets the DTLS identity
    creds = c.provision("gw-new")
    c.start()
    write_conf(conf, spool, f"coaps://127.0.0.1:{c.port}", creds["path"], [("svc", svc.url)])
    a2 = Agent(tmp_path, conf, name="after")
    try:
        assert wait_for(lambda: stored(c) >= before + 3, timeout=40, step=0.5), a2.log.read_text()[-2000:]
    finally:
        assert a2.stop() == 0
    drain_and_check(tmp_path, conf, c, spool, before + spooled(a2.log))
    assert c.rows("SELECT DISTINCT device FROM snapshots") == [("gw-new",)]
    assert c.rows("SELECT DISTINCT device FROM targets") == [("gw-new",)]


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_collector_name_unresolvable_at_start_then_moves(go_service, tmp_path):
    """/etc/hosts (bind-mounted in a private mount namespace) has no entry for the collector when
    the agent starts; it gets one later, and later still the collector moves to another IP."""
    svc = go_service("worker-pool", go="1.23", args=("-rate", "40"))
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")  # nothing listens: fails fast
    c = Collector(tmp_path)
    creds = c.provision("gw-1")
    spool = tmp_path / "spool"
    conf = tmp_path / "agent.conf"
    write_conf(conf, spool, f"coaps://collector.test:{c.port}", creds["path"], [("svc", svc.url)],
               "max_retransmit = 2")
    ns = ["unshare", "-rm", "sh", "-c",
          f"mount --bind {hosts} /etc/hosts && mount --bind {resolv} /etc/resolv.conf && exec \"$0\" \"$@\""]
    agent = Agent(tmp_path, conf, prefix=ns)
    try:
        # the name does not resolve: the daemon stays up, samples and spools
        assert wait_for(lambda: spooled(agent.log) >= 3, timeout=30, step=0.5), agent.log.read_text()[-2000:]
        assert agent.proc.poll() is None
        assert "cannot resolve" in agent.log.read_text()
        c.start()
        time.sleep(2)
        assert stored(c) == 0
        # the network comes up: the name resolves (same file, written in place: the bind mount follows the inode)
        with open(hosts, "w") as f:
            f.write("127.0.0.1 localhost\n127.0.0.1 collector.test\n")
        assert wait_for(lambda: stored(c) >= spooled(agent.log) - 1, timeout=60, step=0.5), \
            agent.log.read_text()[-2000:]
        # the collector moves to 127.0.0.2: its old address goes silent, the agent's session fails,
        # it resolves again and follows
        c.stop()
        moved = Collector(tmp_path)
        moved.port, moved.plain_port = c.port, free_udp_port()
        moved_cmd_host = "127.0.0.2"
        with open(hosts, "w") as f:
            f.write(f"127.0.0.1 localhost\n{moved_cmd_host} collector.test\n")
        start_moved(moved, moved_cmd_host)
        n_before = stored(moved)
        assert wait_for(lambda: stored(moved) >= n_before + 3, timeout=90, step=0.5), agent.log.read_text()[-3000:]
    finally:
        assert agent.stop() == 0
    drain_and_check(tmp_path, conf, moved, spool, spooled(agent.log), prefix=ns)


def start_moved(c, host):
    """Collector.start() listens on 127.0.0.1; this one listens on HOST (same DB, same port)."""
    c.logf = open(c.log, "a")
    c.proc = subprocess.Popen([str(COLLECTOR), "serve", "--db", str(c.db), "--listen", f"{host}:{c.port}",
                               "--stats-interval", "0"], stdout=subprocess.PIPE, stderr=c.logf, text=True)
    line = c.proc.stdout.readline()
    assert line.startswith("ready "), line


def test_snapshot_over_the_daily_budget_does_not_wait_for_ever(go_service, tmp_path):
    """A daily budget smaller than any snapshot: the first one of the UTC day goes anyway (it
    would otherwise block the queue for ever), the rest wait for the next day's budget."""
    svc = go_service("worker-pool", go="1.23", args=("-rate", "40"))
    c = Collector(tmp_path)
    creds = c.provision("gw-1")
    c.start()
    spool = tmp_path / "spool"
    conf = tmp_path / "agent.conf"
    write_conf(conf, spool, f"coaps://127.0.0.1:{c.port}", creds["path"], [("svc", svc.url)],
               "budget_bytes_per_day = 100")
    agent = Agent(tmp_path, conf)
    try:
        assert wait_for(lambda: stored(c) >= 1, timeout=30, step=0.5), agent.log.read_text()[-2000:]
        assert wait_for(lambda: spooled(agent.log) >= 5, timeout=30, step=0.5)
        time.sleep(1)
        assert stored(c) == 1
        assert "daily budget" in agent.log.read_text()
    finally:
        assert agent.stop() == 0
        c.stop()
    assert pending(spool) == spooled(agent.log) - 1


def test_certificate_without_ca_needs_an_explicit_opt_out(tmp_path):
    """pki_cert without pki_ca used to skip verifying the collector silently. Now the daemon
    refuses to start, unless insecure_skip_verify = yes, and then says so at every start."""
    spool = tmp_path / "spool"
    conf = tmp_path / "agent.conf"
    pki = f"pki_cert = {tmp_path}/gw.crt\npki_key = {tmp_path}/gw.key"
    write_conf(conf, spool, "coaps://127.0.0.1:5684", tmp_path / "none", [], pki)
    r = subprocess.run([str(AGENT), "run", "--config", str(conf)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "pki_ca" in r.stderr and "insecure_skip_verify" in r.stderr, r.stderr
    write_conf(conf, spool, "coaps://127.0.0.1:5684", tmp_path / "none", [], pki + "\ninsecure_skip_verify = yes")
    for run in range(2):
        agent = Agent(tmp_path, conf, name=f"insecure{run}")
        try:
            assert wait_for(lambda: "NOT verified" in agent.log.read_text(), timeout=10), agent.log.read_text()
        finally:
            assert agent.stop() == 0
