"""A gateway that starts without credentials (not provisioned yet, or its node's key not yet in
the Kubernetes Secret), with the real daemon (`edgetrace-agent run` sampling a real Go service),
the real collector and real SQLite:

  - it starts, samples and spools; it says once, not in a loop, that it has no credentials;
    nothing reaches the collector
  - the file appears (as `provision --out` writes it): within ~10 s everything spooled so far is
    stored, each snapshot exactly once, without a restart
  - a malformed file is an error (once), the good credentials stay in use, delivery goes on
  - the key is rotated (`provision --force`, a new file): the agent drops its session and
    handshakes with the new key; the collector is restarted (it forgets every DTLS session)
    and delivery goes on, which the old key could not do
  - the same with `credentials_dir` and `--device-id` over a directory updated the way the
    kubelet updates a Secret volume (timestamped directory, `..data` symlink swapped)

On the old code the daemon refused to start without the file (exit 2), or with a broken one.

Run: make run-tests PYTEST_ARGS="tests/integration/test_creds_watch.py -x"
"""
import json
import os
import re
import subprocess
import time

from conftest import AGENT, COLLECTOR, wait_for
from test_collector import Collector
from test_uplink_seams import Agent as SeamsAgent, drain_and_check, pending, spooled, write_conf


class Agent(SeamsAgent):
    """`edgetrace-agent run` with extra arguments."""

    def __init__(self, tmp_path, conf, args=()):
        self.log = tmp_path / "agent.log"
        self.proc = subprocess.Popen([str(AGENT), "run", "--config", str(conf), *args], stdout=open(self.log, "a"),
                                     stderr=subprocess.STDOUT)


def snapshots(c):
    """What the collector stored, through its own query command."""
    r = subprocess.run([str(COLLECTOR), "snapshots", "--db", str(c.db), "--json", "--limit", "100000"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout or "[]")


def stored_ids(c):
    return [s["snapshot_id"] for s in snapshots(c)]


def devices(c):
    return {s["device"] for s in snapshots(c)}


def provision(c, device, out, force=False):
    r = subprocess.run([str(COLLECTOR), "provision", device, "--db", str(c.db), "--out", str(out),
                        "--collector", f"coaps://127.0.0.1:{c.port}", *(["--force"] if force else [])],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    os.chmod(out, 0o600)


def count(log, pattern):
    return len(re.findall(pattern, log.read_text()))


def restart(c):
    c.stop()
    n = Collector(c.workdir)
    n.port, n.plain_port = c.port, c.plain_port
    return n.start()


def all_arrived(c, log):
    """Everything spooled so far is stored, each once."""
    ids = stored_ids(c)
    assert len(ids) == len(set(ids)), "a snapshot stored twice"
    return len(ids) >= spooled(log)


def test_starts_without_credentials_delivers_once_they_appear_and_follows_a_rotation(go_service, tmp_path):
    svc = go_service("worker-pool", go="1.23", args=("-rate", "40"))
    c = Collector(tmp_path).start()
    spool = tmp_path / "spool"
    creds = tmp_path / "etc" / "credentials"
    creds.parent.mkdir()
    conf = tmp_path / "agent.conf"
    # no [uplink] collector: it comes from the credentials file, like a freshly flashed gateway
    write_conf(conf, spool, None, creds, [("svc", svc.url)])
    agent = Agent(tmp_path, conf)
    try:
        # 1. no file: it samples and spools, says so once (the watch ticks every 2 s), sends nothing
        assert wait_for(lambda: spooled(agent.log) >= 6, timeout=30, step=0.5), agent.log.read_text()[-2000:]
        assert agent.proc.poll() is None
        assert count(agent.log, rf"no credentials at {re.escape(str(creds))}: sampling and spooling; "
                                r"snapshots are delivered once they exist") == 1, agent.log.read_text()
        assert pending(spool) >= 5
        assert stored_ids(c) == []
        # 2. provisioned while it runs: the backlog arrives, each snapshot once
        before = spooled(agent.log)
        provision(c, "gw-late", creds)
        t0 = time.monotonic()
        assert wait_for(lambda: len(stored_ids(c)) >= before, timeout=10, step=0.25), \
            (len(stored_ids(c)), before, agent.log.read_text()[-2000:])
        print(f"backlog of {before} snapshots stored {time.monotonic() - t0:.1f} s after the file appeared")
        assert wait_for(lambda: all_arrived(c, agent.log), timeout=10, step=0.25)
        assert devices(c) == {"gw-late"}
        # 3. a broken file: an error once, the loaded key stays in use
        good = creds.read_text()
        creds.write_text("[credentials]\ndevice_id = gw-late\npsk = zzzz\n")
        os.chmod(creds, 0o600)
        bad = r"credentials .*:3: psk is not hex \(1 bad so far\): the ones loaded before stay in use"
        assert wait_for(lambda: count(agent.log, bad) == 1,
                        timeout=10, step=0.25), agent.log.read_text()[-2000:]
        n = len(stored_ids(c))
        assert wait_for(lambda: len(stored_ids(c)) >= n + 3, timeout=15, step=0.25)
        assert agent.proc.poll() is None
        # 4. rotation: a new key in the collector's database and in the file
        provision(c, "gw-late", creds, force=True)
        assert creds.read_text() != good
        assert wait_for(lambda: count(agent.log, r"new key for gw-late: new DTLS session") == 1, timeout=10,
                        step=0.25), agent.log.read_text()[-2000:]
        c = restart(c)  # every session forgotten: only the new key gets in
        n = len(stored_ids(c))
        assert wait_for(lambda: len(stored_ids(c)) >= n + 3, timeout=30, step=0.25), agent.log.read_text()[-2000:]
        assert wait_for(lambda: all_arrived(c, agent.log), timeout=20, step=0.25)
        # still said once; the watch never crashed or restarted anything
        assert count(agent.log, r"no credentials at") == 1
        assert agent.proc.poll() is None
    finally:
        agent.stop()
    drain_and_check(tmp_path, conf, c, spool, spooled(agent.log))


def secret_volume_update(d, keys, gen):
    """What the kubelet's atomic writer does to a Secret volume: every key goes into a new
    timestamped directory, `..data` is swapped to it, and each key is a symlink through it."""
    ts = d / f"..{gen}"
    ts.mkdir()
    for key, text in keys.items():
        (ts / key).write_text(text)
        os.chmod(ts / key, 0o400)
    tmp = d / "..data_tmp"
    tmp.symlink_to(ts.name)
    os.replace(tmp, d / "..data")
    for key in keys:
        if not (d / key).is_symlink():
            (d / key).symlink_to(f"..data/{key}")


def test_kubernetes_secret_directory_keyed_by_device_id(go_service, tmp_path):
    svc = go_service("worker-pool", go="1.23", args=("-rate", "40"))
    c = Collector(tmp_path).start()
    spool = tmp_path / "spool"
    secret = tmp_path / "creds"
    secret.mkdir()
    conf = tmp_path / "agent.conf"
    # the ConfigMap is the same on every node: the id comes from --device-id $(NODE_NAME)
    write_conf(conf, spool, None, tmp_path / "unused", [("svc", svc.url)], extra=f"credentials_dir = {secret}/")
    agent = Agent(tmp_path, conf, args=("--device-id", "node-3"))
    try:
        assert wait_for(lambda: spooled(agent.log) >= 3, timeout=30, step=0.5), agent.log.read_text()[-2000:]
        assert count(agent.log, rf"no credentials at {re.escape(str(secret))}/node-3: ") == 1
        assert stored_ids(c) == []
        # the Secret gets this node's key (and another node's, which this agent must not take)
        out = tmp_path / "node-3.cred"
        provision(c, "node-3", out)
        provision(c, "node-4", tmp_path / "node-4.cred")
        other = (tmp_path / "node-4.cred").read_text()
        secret_volume_update(secret, {"node-4": other}, 1)
        time.sleep(3)  # the watch ticks: still nothing for this node
        assert stored_ids(c) == []
        secret_volume_update(secret, {"node-4": other, "node-3": out.read_text()}, 2)
        assert wait_for(lambda: len(stored_ids(c)) >= 3 and all_arrived(c, agent.log), timeout=15, step=0.25), \
            agent.log.read_text()[-2000:]
        # the key rotated in the Secret: a new ..data generation
        provision(c, "node-3", out, force=True)
        secret_volume_update(secret, {"node-4": other, "node-3": out.read_text()}, 3)
        assert wait_for(lambda: count(agent.log, r"new key for node-3: new DTLS session") == 1, timeout=10,
                        step=0.25), agent.log.read_text()[-2000:]
        c = restart(c)
        n = len(stored_ids(c))
        assert wait_for(lambda: len(stored_ids(c)) >= n + 2, timeout=30, step=0.25), agent.log.read_text()[-2000:]
        assert devices(c) == {"node-3"}
        assert agent.proc.poll() is None
    finally:
        agent.stop()
        c.stop()
