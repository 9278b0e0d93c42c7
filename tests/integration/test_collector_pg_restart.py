"""PostgreSQL restarting under ingest (issue 11, item 4): real agents (`edgetrace-agent run`, one
real Go service sampled every second) upload through two real `serve` nodes to a real
PostgreSQL 15 (pgcluster.py); the database is stopped for a while and started again.

While it is away the nodes answer 5.03 (Service Unavailable, counted on /metrics) over the
agents' live DTLS sessions and keep running; the agents keep what they sample in their spools.
When it is back the nodes reconnect by themselves and everything arrives, once: per device the
stored seqs are one unbroken run (nothing lost, the outage's snapshots included), no snapshot id
twice, and the agent's spool accounts for every snapshot it made.

Run: make agent collector host-tools testsvc; /usr/bin/python3 -m pytest tests/integration/test_collector_pg_restart.py
"""

import json
import re
import signal
import subprocess
import time
import urllib.request

from conftest import AGENT, wait_for
from test_collector_pg import db, nodes, pg, pg_cluster, provision  # noqa: F401 (fixtures)

OUTAGE_S = 8


def agent_conf(tmp_path, name, port, creds, url):
    conf = tmp_path / f"{name}.conf"
    conf.write_text(f"""[agent]
interval = 1s
deep_interval = 4s
discover = no
log_level = info
[spool]
dir = {tmp_path / ('spool-' + name)}
fsync = always
[uplink]
collector = coaps://127.0.0.1:{port}
credentials = {creds}
ack_timeout = 1s
[target "svc"]
url = {url}
""")
    return conf


def per_device(pg, name):
    rows = pg.sql(name, "SELECT device, snapshot_id, seq FROM snapshots")
    out = {}
    for dev, sid, seq in rows:
        out.setdefault(dev, []).append((sid, int(seq)))
    return out


def metric(node, line_start):
    with urllib.request.urlopen(f"http://127.0.0.1:{node.http}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(line_start):
                return float(line.split()[-1])
    return 0.0


def test_postgresql_restart_under_real_agents(pg, db, nodes, go_service, tmp_path):
    name, url = db
    svc = go_service("worker-pool", go="1.23", args=("-rate", "40"))
    a, b = nodes(url, "a"), nodes(url, "b")
    devices = {"gw-0": a, "gw-1": b, "gw-2": a}
    agents = {}
    try:
        for dev, node in devices.items():
            creds = provision(url, dev, tmp_path)
            conf = agent_conf(tmp_path, dev, node.port, creds["path"], svc.url)
            agents[dev] = subprocess.Popen([str(AGENT), "run", "--config", str(conf)],
                                           stdout=open(tmp_path / f"{dev}.log", "w"), stderr=subprocess.STDOUT)
        assert wait_for(lambda: all(len(v) >= 3 for v in per_device(pg, name).values())
                        and len(per_device(pg, name)) == 3, timeout=60, step=0.5), per_device(pg, name)

        pg.stop()
        stopped = time.monotonic()
        try:
            # the agents keep sampling into their spools; over their live sessions the nodes say 5.03
            assert wait_for(lambda: all("answered 5.03" in (tmp_path / f"{d}.log").read_text() for d in devices),
                            timeout=OUTAGE_S + 20, step=0.5), \
                {d: (tmp_path / f"{d}.log").read_text()[-1500:] for d in devices}
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
            assert a.proc.poll() is None and b.proc.poll() is None, "the nodes keep running while it is away"
        finally:
            pg.start()
        back = int(time.time() * 1000)
        assert metric(a, 'edgetrace_ingest_rejects_total{code="5.03"') + \
            metric(b, 'edgetrace_ingest_rejects_total{code="5.03"') > 0

        # the nodes reconnect by themselves and the spools drain: what was sampled during the outage
        # arrives (a snapshot that failed several times in a row is held back 20 s while later ones
        # go first: it comes last), and the agents move on to new snapshots stored after the restart
        def drained():
            rows = pg.sql(name, f"SELECT device, count(*) FROM snapshots WHERE received > {back + 3000} GROUP BY device")
            if len(rows) < 3 or any(int(n) < 2 for _, n in rows):
                return False
            return all(sorted(s for _, s in v) == list(range(min(s for _, s in v), min(s for _, s in v) + len(v)))
                       for v in per_device(pg, name).values())
        assert wait_for(drained, timeout=90, step=1), \
            (per_device(pg, name), {d: (tmp_path / f"{d}.log").read_text()[-1500:] for d in devices})
    finally:
        for p in agents.values():
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=30) for p in agents.values()]
    assert codes == [0, 0, 0]

    stored = per_device(pg, name)
    for dev in devices:
        ids = [sid for sid, _ in stored[dev]]
        seqs = sorted(seq for _, seq in stored[dev])
        st = json.loads(subprocess.run([str(AGENT), "spool", "stats", "--dir", str(tmp_path / f"spool-{dev}"),
                                        "--json"], capture_output=True, text=True, check=True).stdout)
        pending = st["pending_routine"] + st["pending_findings"]
        assert len(ids) == len(set(ids)), f"{dev}: a snapshot stored twice"
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (f"{dev}: seqs missing: {seqs}", st)
        assert len(seqs) >= OUTAGE_S + 6, (dev, len(seqs))  # the outage's seconds are in there
        # every snapshot the agent made is stored, but for at most the newest, in flight at SIGTERM
        # and still in the spool (appended_total counts a held record's move to the back again)
        made = int(re.search(r"stopped after (\d+) snapshots", (tmp_path / f"{dev}.log").read_text()).group(1))
        assert pending <= 2 and made - pending <= len(ids) <= made, (dev, made, len(ids), st)
