"""`seq` keeps rising across agent restarts (issue 8, item 6): the agent takes it from the
spool's state (reserved in blocks, firmware/src/spool_state.c), not from a counter that starts
at 0 in every process. Before, a restart on the same boot numbered from 0 again, and the
snapshot ids (derived from boot id and seq) repeated: the collector took new snapshots for
resends and dropped them."""
import signal
import sqlite3
import subprocess
import time

from conftest import AGENT, wait_for
from test_agent_run import collector  # noqa: F401  (the fixture: a provisioned collector)


def seqs(db):
    with sqlite3.connect(str(db)) as c:
        return [r[0] for r in c.execute("SELECT seq FROM snapshots ORDER BY id")]


def run_agent(conf, db, tmp_path, want, name):
    log = open(tmp_path / f"{name}.log", "w")
    agent = subprocess.Popen([str(AGENT), "run", "--config", str(conf)], stdout=log, stderr=log)
    try:
        assert wait_for(lambda: len(seqs(db)) >= want, timeout=60, step=0.5), \
            (tmp_path / f"{name}.log").read_text()[-3000:]
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0


def test_seq_continues_after_restart(go_service, collector, tmp_path):  # noqa: F811
    db, cport, creds = collector
    svc = go_service("worker-pool", go="1.23", args=("-rate", "40"))
    conf = tmp_path / "agent.conf"
    conf.write_text(f"""[agent]
interval = 1s
discover = no
[spool]
dir = {tmp_path / "spool"}
[uplink]
collector = coaps://127.0.0.1:{cport}
credentials = {creds}
ack_timeout = 1s
[target "svc"]
url = {svc.url}
""")
    run_agent(conf, db, tmp_path, 3, "first")
    first = seqs(db)
    time.sleep(0.5)
    run_agent(conf, db, tmp_path, len(first) + 3, "second")
    second = seqs(db)[len(first):]
    assert len(set(first + second)) == len(first + second), (first, second)
    assert min(second) > max(first), (first, second)
