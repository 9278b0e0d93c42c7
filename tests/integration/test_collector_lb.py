"""Several collector nodes on one PostgreSQL behind a real UDP load balancer: Debian's nginx with its
stream module, configured from the shipped deploy/nginx-udp-lb.conf. Real PostgreSQL 15 (started
once for this module), three real `serve` processes, 30 DTLS sessions from tools/bench/ingest_bench.

During the upload one node is killed with SIGKILL, restarted, and another is killed. Afterwards every
snapshot that got a 2.01/2.04 is in the database, and none is in it twice.

Run: make collector host-tools; /usr/bin/python3 -m pytest tests/integration/test_collector_lb.py
"""

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, wait_for
from test_collector import free_udp_port
from test_collector_pg import BENCH, db, nodes, pg, pg_cluster, provision, stored_ids  # noqa: F401 (fixtures)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MODULES = Path("/usr/lib/nginx/modules")


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
