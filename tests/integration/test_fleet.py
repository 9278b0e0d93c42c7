"""`edgetrace-collector provision --from FILE`: credentials for a list of devices, as files for
flash.sh or as the Kubernetes Secret deploy/agent-daemonset.yaml mounts; idempotent, --rotate;
a bad list changes nothing. The keys are the collector's: an agent with a generated file
delivers to a real collector. On both backends (SQLite, PostgreSQL: pgcluster.py)."""
import base64
import json
import signal
import stat
import subprocess
import time

import yaml

import pytest

from conftest import AGENT, COLLECTOR, wait_for
from pgcluster import BACKENDS, backend_db, pg_cluster  # noqa: F401 (pg_cluster: a fixture)
from test_agent_run import query, udp_port

LIST = """device,site,line
# plant 3
gw-1,plant-3,7
gw-2,plant-3,
node-a
"""


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    return backend_db(request, tmp_path)


def provision(db, *args):
    return subprocess.run([str(COLLECTOR), "provision", "--db", str(db), *map(str, args)],
                          capture_output=True, text=True, timeout=30)


def test_list_to_files_and_secret_idempotent_and_rotate(tmp_path, db):
    lst = tmp_path / "fleet.csv"
    lst.write_text(LIST)
    out = provision(db, "--from", lst, "--out-dir", tmp_path / "creds", "--k8s-secret", tmp_path / "s.yaml",
                    "--collector", "coaps://collector.example:5684")
    assert out.returncode == 0, out.stderr
    assert "3 new keys, 0 kept" in out.stderr
    files = {p.stem: p.read_text() for p in (tmp_path / "creds").glob("*.credentials")}
    assert sorted(files) == ["gw-1", "gw-2", "node-a"]
    for p in (tmp_path / "creds").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "s.yaml").stat().st_mode) == 0o600
    assert "device_id = gw-1\n" in files["gw-1"] and "[labels]\nsite = plant-3\nline = 7\n" in files["gw-1"]
    assert "line =" not in files["gw-2"] and "[labels]" not in files["node-a"]
    secret = yaml.safe_load((tmp_path / "s.yaml").read_text())
    assert (secret["kind"], secret["metadata"]["name"], secret["metadata"]["namespace"]) == \
        ("Secret", "edgetrace-credentials", "edgetrace")
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == files
    # "-": the same Secret on stdout, for `kubectl apply -f -` (keys kept: same bytes)
    piped = provision(db, "--from", lst, "--k8s-secret", "-", "--collector", "coaps://collector.example:5684")
    assert piped.returncode == 0 and piped.stdout == (tmp_path / "s.yaml").read_text()
    devices = json.loads(subprocess.run([str(COLLECTOR), "devices", "--db", str(db), "--json"],
                                        capture_output=True, text=True).stdout)
    assert sorted(d["device"] for d in devices) == ["gw-1", "gw-2", "node-a"]

    # again: nothing changes (same keys, same files)
    again = provision(db, "--from", lst, "--out-dir", tmp_path / "creds", "--collector",
                      "coaps://collector.example:5684")
    assert again.returncode == 0 and "0 new keys, 3 kept" in again.stderr
    assert {p.stem: p.read_text() for p in (tmp_path / "creds").glob("*.credentials")} == files
    # --rotate: every key is new
    rot = provision(db, "--from", lst, "--out-dir", tmp_path / "creds", "--rotate")
    assert rot.returncode == 0, rot.stderr
    for name, text in files.items():
        new = (tmp_path / "creds" / f"{name}.credentials").read_text()
        assert new.split("psk = ")[1][:64] != text.split("psk = ")[1][:64]


def test_bad_lists_change_nothing(tmp_path, db):
    cases = {"bad-id": "gw-1\nbad name\n", "twice": "gw-1\ngw-1\n", "label": "gw-1,plant-3\n",
             "long": "gw-1," + "x=" + "y" * 2000 + "\n", "empty": "# nobody\n"}
    for name, text in cases.items():
        lst = tmp_path / name
        lst.write_text(text)
        out = provision(db, "--from", lst, "--out-dir", tmp_path / "creds")
        assert out.returncode == 2, (name, out.stderr)
        assert "edgetrace-collector provision:" in out.stderr
        assert not (tmp_path / "creds").exists()
    colon = tmp_path / "colon"
    colon.write_text("site:gw-1\n")
    out = provision(db, "--from", colon, "--k8s-secret", tmp_path / "s.yaml")
    assert out.returncode == 1 and "cannot be a Secret key" in out.stderr
    assert not (tmp_path / "s.yaml").exists()
    assert provision(db, "--from", colon).returncode == 2   # no output named: usage


def test_generated_credentials_deliver(tmp_path, go_service, db):
    lst = tmp_path / "fleet"
    lst.write_text("gw-1\ngw-2\n")
    assert provision(db, "--from", lst, "--out-dir", tmp_path / "creds").returncode == 0
    assert provision(db, "--from", lst, "--out-dir", tmp_path / "creds", "--rotate").returncode == 0
    port = udp_port()
    coll = subprocess.Popen([str(COLLECTOR), "serve", "--db", str(db), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "collector.log", "w"))
    svc = go_service("basic", go="1.23")
    conf = tmp_path / "agent.conf"
    conf.write_text(f"""[agent]
interval = 1s
discover = no
[spool]
dir = {tmp_path / "spool"}
[uplink]
collector = coaps://127.0.0.1:{port}
credentials = {tmp_path / "creds" / "gw-2.credentials"}
ack_timeout = 1s
[target "fleet"]
url = {svc.url}
""")
    agent = subprocess.Popen([str(AGENT), "run", "--config", str(conf)], stdout=subprocess.DEVNULL,
                             stderr=open(tmp_path / "agent.log", "w"))
    try:
        time.sleep(0.3)
        got = wait_for(lambda: [s for s in query(db, "snapshots") if s["target"] == "fleet"],
                       timeout=30, step=0.5)
        assert got, (tmp_path / "agent.log").read_text()[-2000:]
        assert got[0]["device"] == "gw-2"   # the rotated key is the one the collector holds
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)
        coll.terminate()
        coll.wait(timeout=10)
