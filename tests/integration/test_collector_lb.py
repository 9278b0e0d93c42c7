"""Several collector nodes on one PostgreSQL behind a real UDP load balancer: Debian's nginx with its
stream module, configured from the shipped deploy/nginx-udp-lb.conf. Real PostgreSQL 15 (started
once for this module), three real `serve` processes, 30 DTLS sessions from tools/bench/ingest_bench.

During the upload one node is killed with SIGKILL, restarted, and another is killed. Afterwards every
snapshot that got a 2.01/2.04 is in the database, and none is in it twice.

The second test measures what issue 11 asks of the agent: real agent uplinks with the default CoAP
timers, the node that holds their DTLS sessions killed with SIGKILL, and the time until each of its
agents delivers again (a fresh handshake once its session went silent; target 15 s).

Run: make collector host-tools; /usr/bin/python3 -m pytest tests/integration/test_collector_lb.py
"""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BUILD, ROOT, wait_for
from test_collector import free_udp_port
from test_collector_pg import BENCH, db, nodes, pg, pg_cluster, provision, stored_ids  # noqa: F401 (fixtures)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MODULES = Path("/usr/lib/nginx/modules")
PUSH = Path(os.environ.get("ET_PUSH", BUILD / "host" / "et-push"))


def render_lb(rundir, listen, backends):
    conf = (ROOT / "deploy" / "nginx-udp-lb.conf").read_text()
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in backends)
    conf = (conf.replace("@NGINX_MODULES@", str(MODULES)).replace("@RUNDIR@", str(rundir))
            .replace("@DAEMON@", "daemon off;").replace("@SERVERS@", servers).replace("@LISTEN@", listen))
    path = rundir / "nginx.conf"
    path.write_text(conf)
    return path


@pytest.fixture
def balancer(tmp_path):
    if not (MODULES / "ngx_stream_module.so").exists():
        pytest.fail("nginx stream module missing (tools/setup.sh installs nginx and libnginx-mod-stream)")
    procs = []

    def start(backends):
        port = free_udp_port()
        conf = render_lb(tmp_path, f"127.0.0.1:{port}", backends)
        r = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        procs.append(subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf)], stderr=subprocess.DEVNULL))
        assert wait_for(lambda: (tmp_path / "nginx.pid").exists(), timeout=10)
        return port

    yield start
    for p in procs:
        p.send_signal(signal.SIGQUIT)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def test_three_nodes_behind_nginx_kill9_restart_kill9_exactly_once(pg, db, nodes, balancer, tmp_path):
    if not BENCH.exists():
        pytest.fail(f"{BENCH} not built (make host-tools)")
    name, url = db
    creds = provision(url, "gw-1", tmp_path)
    ns = [nodes(url, f"n{i}") for i in range(3)]
    lb = balancer([n.port for n in ns])
    acked = tmp_path / "acked"
    gen = subprocess.Popen([str(BENCH), "--url", f"coaps://127.0.0.1:{lb}/s", "--identity", "gw-1", "--psk",
                            creds["psk"], "--sessions", "30", "--window", "2", "--count", "200000",
                            "--max-seconds", "14", "--acked-out", str(acked)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in gen.stdout:
        lines.append(line)
        if "sessions up" in line or "came up" in line:
            break
    assert any("sessions up" in l for l in lines), "".join(lines)
    time.sleep(2.0)
    ns[0].stop(signal.SIGKILL)  # mid-upload
    time.sleep(2.0)
    ns[0].start()               # same port: the balancer's hash sends its clients back to it
    time.sleep(2.0)
    ns[1].stop(signal.SIGKILL)
    out = "".join(lines) + gen.communicate(timeout=90)[0]
    ids = acked.read_text().split()
    print(out, f"acked={len(ids)}")
    assert len(ids) >= 300, f"too few answers to mean anything: {out}"
    stored = stored_ids(pg, name)
    assert len(stored) == len(set(stored)), "a snapshot stored twice"
    missing = set(ids) - set(stored)
    assert not missing, f"{len(missing)} of {len(ids)} acknowledged snapshots lost: {out}"
    # the balancer spread the 30 sessions: the surviving node n2 stored some of them
    ns[2].stop()
    assert "new=0 " not in (tmp_path / "n2.log").read_text().split("shutdown:")[-1], out


def dtls_sessions(node):
    with urllib.request.urlopen(f"http://127.0.0.1:{node.http}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("edgetrace_dtls_sessions "):
                return int(float(line.split()[1]))
    return 0


def test_node_death_agents_deliver_again_within_15s(pg, db, nodes, balancer, tmp_path):
    """Nine real agent uplinks (et-push: the agent's spool, uplink and event loop; one device each, a
    snapshot every 250 ms, the default timers: ack_timeout 4 s, max_retransmit 6) go through nginx to
    3 nodes. The node holding the most DTLS sessions is killed with SIGKILL; nginx moves its agents
    to a node that does not know their sessions and drops their records without a word. Each of
    them must deliver again within 15 s of the kill (the old agent waited out the retransmission
    schedule: 6-13 minutes). Afterwards every snapshot the agents made is stored exactly once."""
    if not PUSH.exists():
        pytest.fail(f"{PUSH} not built (make host-tools)")
    name, url = db
    ns = [nodes(url, f"n{i}") for i in range(3)]
    lb = balancer([n.port for n in ns])
    n_agents, per_agent = 9, 160
    agents = []
    for i in range(n_agents):
        creds = provision(url, f"gw-{i}", tmp_path)
        agents.append(subprocess.Popen(
            [str(PUSH), "--credentials", creds["path"], "--collector", f"coaps://127.0.0.1:{lb}",
             "--spool", str(tmp_path / f"spool{i}"), "--ids-out", str(tmp_path / f"ids{i}"), "--json",
             "--synthetic", str(per_agent), "--interval-ms", "250", "--timeout", "150"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        devices = lambda: {r[0] for r in pg.sql(name, "SELECT DISTINCT device FROM snapshots")}  # noqa: E731
        assert wait_for(lambda: len(devices()) == n_agents, timeout=60), "not every agent delivered"
        held = [dtls_sessions(n) for n in ns]
        victim = max(range(3), key=lambda k: held[k])
        t_kill = int(time.time() * 1000)
        ns[victim].stop(signal.SIGKILL)
        outs = [a.communicate(timeout=240) for a in agents]
    finally:
        for a in agents:
            if a.poll() is None:
                a.kill()
    stats = [json.loads([l for l in o.splitlines() if l.startswith("{")][-1]) for o, _ in outs]
    first = {r[0]: int(r[1]) for r in pg.sql(
        name, f"SELECT device, min(received) FROM snapshots WHERE received >= {t_kill} GROUP BY device")}
    gaps = [(first[f"gw-{i}"] - t_kill) / 1000 for i in range(n_agents)]
    # the agents whose session was on the dead node: they had to handshake again
    moved = [i for i in range(n_agents) if stats[i]["sessions"] > 1]
    report = "; ".join(f"gw-{i}: {gaps[i]:.1f} s, {stats[i]['sessions']} sessions, {stats[i]['probes']} probes, "
                       f"{stats[i]['takeovers']} takeovers, {stats[i]['timeouts']} timeouts" for i in moved)
    print(f"DTLS sessions per node before the kill {held}, killed n{victim}; node death -> delivery again: {report}; "
          f"the others: {max(gaps[i] for i in range(n_agents) if i not in moved):.1f} s at most")
    for i, (o, e) in enumerate(outs):
        assert agents[i].returncode == 0, f"gw-{i}: {e[-2000:]}"
    assert moved, f"no agent lost its session: {held} {stats}"
    assert all(gaps[i] <= 15 for i in moved), report
    assert all(stats[i]["timeouts"] == 0 for i in moved), "an agent waited out the retransmission schedule"
    stored = stored_ids(pg, name)
    assert len(stored) == len(set(stored)), "a snapshot stored twice"
    made = [x for i in range(n_agents) for x in (tmp_path / f"ids{i}").read_text().split()]
    assert len(made) == n_agents * per_agent
    assert not set(made) - set(stored), "a snapshot lost"
