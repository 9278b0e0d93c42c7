"""`edgetrace-agent run`: the daemon with several configured targets, its spool and its uplink
to a real collector. A wedged target (accepts, never answers) and a non-pprof one must not
stall the healthy ones; the leak reaches the collector's findings; SIGTERM stops it cleanly
with nothing left unsent."""
import json
import os
import signal
import socket
import subprocess
import threading
import time
import http.server

import pytest

from conftest import AGENT, COLLECTOR, free_port, wait_for


def udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Html(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html><body>login required</body></html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def collector(tmp_path):
    db = tmp_path / "collector.db"
    subprocess.run([str(COLLECTOR), "provision", "gw-run", "--db", str(db), "--out", str(tmp_path / "creds")],
                   check=True, capture_output=True)
    port = udp_port()
    p = subprocess.Popen([str(COLLECTOR), "serve", "--db", str(db), "--listen", f"127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=open(tmp_path / "collector.log", "w"))
    time.sleep(0.3)
    yield db, port, tmp_path / "creds"
    p.terminate()
    p.wait(timeout=10)


def query(db, what):
    out = subprocess.run([str(COLLECTOR), what, "--db", str(db), "--json"], capture_output=True, text=True)
    return json.loads(out.stdout or "[]")


def test_run_daemon_end_to_end(go_service, collector, tmp_path):
    db, cport, creds = collector
    leaky = go_service("range-unclosed", go="1.23", args=("-rate", "40"))
    healthy = go_service("worker-pool", go="1.23", args=("-rate", "40"))
    wedged = socket.socket()
    wedged.bind(("127.0.0.1", 0))
    wedged.listen(8)
    html = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    threading.Thread(target=html.serve_forever, daemon=True).start()
    spool = tmp_path / "spool"
    conf = tmp_path / "agent.conf"
    conf.write_text(f"""[agent]
interval = 1s
deep_interval = 4s
leak_interval = 5s
discover = no
log_level = info
[spool]
dir = {spool}
fsync = always
[uplink]
collector = coaps://127.0.0.1:{cport}
credentials = {creds}
ack_timeout = 1s
[target "leaky"]
url = {leaky.url}
[target "healthy"]
url = {healthy.url}
[target "wedged"]
url = http://127.0.0.1:{wedged.getsockname()[1]}
[target "html"]
url = http://127.0.0.1:{html.server_address[1]}
""")
    log = open(tmp_path / "agent.log", "w")
    agent = subprocess.Popen([str(AGENT), "run", "--config", str(conf)], stdout=log, stderr=log)
    started = time.monotonic()
    try:
        def leak_found():
            return [f for f in query(db, "findings") if f["function"] == "main.(*Pipeline).aggregate"]
        found = wait_for(leak_found, timeout=60, step=1)
        assert found, (tmp_path / "agent.log").read_text()[-3000:]
        f = found[0]
        assert f["device"] == "gw-run" and f["target"] == "leaky"
        assert f["kind"] == "goroutine-leak" and f["line"] == 33
        time.sleep(max(0.0, 15 - (time.monotonic() - started)))
    finally:
        agent.send_signal(signal.SIGTERM)
        rc = agent.wait(timeout=30)
        wedged.close()
        html.shutdown()
    assert rc == 0
    elapsed = time.monotonic() - started
    snaps = query(db, "snapshots")
    by_target = {}
    for s in snaps:
        by_target.setdefault(s["target"], []).append(s)
    # the wedged and the HTML targets did not stall the healthy ones: they kept their pace
    # (1 s interval; a wedged target holds one of the two workspaces for its 4 s timeout)
    counts = {k: len(v) for k, v in by_target.items()}
    assert counts.get("healthy", 0) >= 0.6 * elapsed, (elapsed, counts)
    assert counts.get("leaky", 0) >= 0.6 * elapsed, (elapsed, counts)
    assert counts.get("wedged", 0) >= 1 and counts.get("html", 0) >= 1, counts
    assert all(s["findings"] == 0 for s in by_target["healthy"])
    # a configured loopback target is followed in /proc too (RSS, threads)
    assert any(s["rss_kb"] > 0 and s["threads"] > 0 for s in by_target["healthy"])
    # bad targets are reported, not fatal
    text = (tmp_path / "agent.log").read_text()
    assert "wedged" in text and "html" in text
    # nothing acknowledged stays, nothing is stored twice
    ids = [s["snapshot_id"] for s in snaps]
    assert len(ids) == len(set(ids))
    st = json.loads(subprocess.run([str(AGENT), "spool", "stats", "--dir", str(spool), "--json"],
                                   capture_output=True, text=True).stdout)
    assert st["acked_total"] <= len(ids)  # every acknowledged snapshot is in the database
    assert st["appended_total"] == st["acked_total"] + st["pending_routine"] + st["pending_findings"]


def test_run_rejects_bad_config(tmp_path):
    conf = tmp_path / "agent.conf"
    conf.write_text("[agent]\ninterval = whenever\n")
    out = subprocess.run([str(AGENT), "run", "--config", str(conf)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "interval" in out.stderr
    out = subprocess.run([str(AGENT), "run", "--config", str(tmp_path / "missing.conf")], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 2 and "missing.conf" in out.stderr
