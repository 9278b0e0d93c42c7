"""Alerts through a REAL Alertmanager (Debian prometheus-alertmanager): the real collector
receives real wire envelopes over CoAP/DTLS, its alert thread POSTs to Alertmanager's
/api/v2/alerts, and Alertmanager's webhook receiver (a small HTTP server in this test) must get
the notifications:
  - end to end: a leaking Go service sampled by the real agent daemon pages with the leak's
    site, and the page resolves once a fixed service replaces it;
and, with snapshots made by the agent's `push --gen-out` (fast, exact timing):
  - a finding at likely fires with the documented labels and annotations, resolves when a
    newer snapshot of the target no longer carries it, and fires again when it reappears;
  - Alertmanager down at first: the alert waits in the durable outbox (surviving a kill -9
    of the collector) and is delivered once Alertmanager starts;
  - a finding stored while no alert thread ran is alerted at the next start (derived from
    the store, so a crash between the finding's commit and its evaluation loses nothing);
  - a device silent longer than silent_after fires EdgetraceDeviceSilent, resolved when the
    device reports again;
  - an Alertmanager that accepts and never answers does not slow ingest (own thread).

Run: make collector agent && make run-tests PYTEST_ARGS="tests/integration/test_alerts.py -x"
"""
import json
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import AGENT, COLLECTOR, free_port, wait_for
from test_collector import COAP_CLIENT, PUSH, Collector, coap_post

ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
PUBLIC = "http://collector.example:8080"


class Webhook:
    """Alertmanager's webhook receiver: keeps every notification it is sent."""

    def __init__(self):
        self.notes = []
        self.cv = threading.Condition()
        hook = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hook.cv:
                    hook.notes.append(json.loads(body))
                    hook.cv.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def alerts(self, **labels):
        """Every alert notified so far whose labels include these."""
        with self.cv:
            return [a for n in self.notes for a in n["alerts"]
                    if all(a["labels"].get(k) == v for k, v in labels.items())]

    def wait(self, status, timeout=30, count=1, **labels):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [a for a in self.alerts(**labels) if a["status"] == status]
            if len(got) >= count:
                return got
            time.sleep(0.1)
        pytest.fail(f"no {status} alert {labels} within {timeout}s; received {json.dumps(self.notes)[:3000]}")

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class Alertmanager:
    def __init__(self, workdir, hook_port, port=None):
        if not ALERTMANAGER.exists():
            pytest.fail(f"{ALERTMANAGER} missing (tools/setup.sh installs prometheus-alertmanager)")
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        cfg = self.dir / "alertmanager.yml"
        # One group per alert ('...'), and short waits so the test sees notifications fast.
        cfg.write_text(f"""route:
  receiver: hook
  group_by: ['...']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
- name: hook
  webhook_configs:
  - url: http://127.0.0.1:{hook_port}/hook
    send_resolved: true
""")
        self.log = open(self.dir / "alertmanager.log", "a")
        self.proc = subprocess.Popen(
            [str(ALERTMANAGER), f"--config.file={cfg}", f"--storage.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=", "--log.level=warn"],
            stdout=self.log, stderr=self.log)
        ok = wait_for(self.ready, timeout=30, step=0.2)
        assert ok, (self.dir / "alertmanager.log").read_text()
        self.url = f"http://127.0.0.1:{self.port}"

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def hook():
    h = Webhook()
    yield h
    h.stop()


@pytest.fixture(scope="module")
def am(hook, tmp_path_factory):
    a = Alertmanager(tmp_path_factory.mktemp("am"), hook.port)
    yield a
    a.stop()


def alert_collector(tmp_path, am_url, device, resend="2s", silent_after="0"):
    if not COAP_CLIENT.exists():
        pytest.fail(f"stock coap-client not found at {COAP_CLIENT} (make host-deps)")
    conf = tmp_path / "collector.conf"
    http_port = free_port()
    conf.write_text(f"""[collector]
http = 127.0.0.1:{http_port}
alertmanager_url = {am_url}
alert_resend_interval = {resend}
silent_after = {silent_after}
public_url = {PUBLIC}/
""")
    c = Collector(tmp_path, extra=["-c", str(conf)])
    c.creds = c.provision(device)
    c.http_port = http_port
    return c.start()


def send(c, tmp_path, finding=True):
    """One real snapshot of target 'synthetic' (with or without its goroutine-leak finding at
    likely), made by the agent and uploaded over DTLS; returns once the collector acknowledged."""
    out = tmp_path / f"gen-{time.monotonic_ns()}"
    r = subprocess.run(PUSH + ["--gen-out", str(out), "--synthetic", "1", "--findings-every", "1" if finding else "0",
                               "--credentials", c.creds["path"]], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (f,) = sorted(out.glob("*.snap"))
    t0 = time.monotonic()
    answer = coap_post(c.port, c.creds, f, tmp_path)
    assert "new " in answer, answer
    return time.monotonic() - t0


def test_finding_fires_resolves_and_reopens(am, hook, tmp_path):
    c = alert_collector(tmp_path, am.url, "gw-fire")
    try:
        send(c, tmp_path, finding=True)
        (a,) = hook.wait("firing", device="gw-fire")
        assert a["labels"] == {"alertname": "EdgetraceGoroutineLeak", "device": "gw-fire", "service": "synthetic",
                               "kind": "goroutine-leak", "function": "main.(*synthetic).leak", "confidence": "likely"}
        ann = a["annotations"]
        assert ann["location"] == "synthetic/main.go:42"
        assert ann["count"] == "10" and ann["growth"] == "1.50/min"
        fid = c.rows("SELECT id FROM findings")[0][0]
        assert ann["link"] == f"{PUBLIC}/#/findings/{fid}" == a["generatorURL"]
        first_start = a["startsAt"]

        # A newer snapshot of the same target without the finding: cleared -> resolved.
        send(c, tmp_path, finding=False)
        (r,) = hook.wait("resolved", device="gw-fire")
        assert r["labels"] == a["labels"] and r["startsAt"] == first_start

        # It comes back: a new alert (new startsAt) with the same labels.
        send(c, tmp_path, finding=True)
        again = hook.wait("firing", count=2, device="gw-fire")
        assert again[-1]["startsAt"] > first_start
        assert c.rows("SELECT count(*) FROM alert_outbox")[0][0] == 0
        # the alert thread's counters reach /metrics, and the exposition stays valid
        text = urllib.request.urlopen(f"http://127.0.0.1:{c.http_port}/metrics", timeout=10).read().decode()
        fired = [l for l in text.splitlines() if l.startswith("edgetrace_alerts_fired_total ")]
        assert fired and int(fired[0].split()[1]) >= 2, text[-2000:]
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        c.stop(signal.SIGKILL)


def test_active_alert_is_resent_and_kept_firing(am, hook, tmp_path):
    """Re-sent every resend interval with endsAt = now + 4 x resend: Alertmanager keeps it
    firing well past the first endsAt."""
    c = alert_collector(tmp_path, am.url, "gw-resend", resend="1s")
    try:
        send(c, tmp_path, finding=True)
        hook.wait("firing", device="gw-resend")
        time.sleep(7)  # > 4 x resend: without re-sends Alertmanager would resolve it
        with urllib.request.urlopen(f"{am.url}/api/v2/alerts?filter=device%3D%22gw-resend%22", timeout=5) as r:
            live = json.load(r)
        assert len(live) == 1 and live[0]["status"]["state"] == "active", live
        assert not [x for x in hook.alerts(device="gw-resend") if x["status"] == "resolved"]
    finally:
        c.stop(signal.SIGKILL)


def test_alertmanager_down_first_outbox_delivers_after_crash(hook, tmp_path):
    am_port = free_port()
    c = alert_collector(tmp_path, f"http://127.0.0.1:{am_port}", "gw-outbox", resend="2s")
    am = None
    try:
        send(c, tmp_path, finding=True)
        assert wait_for(lambda: c.rows("SELECT count(*) FROM alert_outbox")[0][0] == 1, timeout=10)
        assert wait_for(lambda: "not reachable" in c.log.read_text(), timeout=10)
        # Crash: the event is on disk, not in memory.
        c.stop(signal.SIGKILL)
        c.start()
        assert c.rows("SELECT count(*) FROM alert_outbox")[0][0] == 1
        am = Alertmanager(tmp_path / "am", hook.port, port=am_port)
        (a,) = hook.wait("firing", device="gw-outbox")
        assert a["labels"]["alertname"] == "EdgetraceGoroutineLeak"
        assert wait_for(lambda: c.rows("SELECT count(*) FROM alert_outbox")[0][0] == 0, timeout=10)
        assert "reachable again" in c.log.read_text()
    finally:
        c.stop(signal.SIGKILL)
        if am:
            am.stop()


def test_wrong_url_keeps_alerts_until_fixed(am, hook, tmp_path):
    """A wrong path prefix gets 404 from the real Alertmanager: a problem of the path, not of
    the alerts, so they wait in the outbox and go out once the URL is fixed."""
    c = alert_collector(tmp_path, am.url + "/wrong-prefix", "gw-404")
    try:
        send(c, tmp_path, finding=True)
        assert wait_for(lambda: "HTTP 404" in c.log.read_text(), timeout=10), c.log.read_text()
        time.sleep(1.5)  # retried, still kept
        assert c.rows("SELECT count(*) FROM alert_outbox")[0][0] == 1
        c.stop()
        (tmp_path / "collector.conf").write_text((tmp_path / "collector.conf").read_text()
                                                 .replace("/wrong-prefix", ""))
        c.start()
        hook.wait("firing", device="gw-404")
        assert wait_for(lambda: c.rows("SELECT count(*) FROM alert_outbox")[0][0] == 0, timeout=10)
    finally:
        c.stop(signal.SIGKILL)


def test_alerts_derive_from_the_store_after_a_crash(am, hook, tmp_path):
    """The finding committed, then the collector died before its alert thread looked (here: it
    had none): at the next start the alert is derived from the stored findings and sent."""
    c = alert_collector(tmp_path, am.url, "gw-derive")
    try:
        c.stop(signal.SIGKILL)
        c.extra = []  # no alerting while the finding arrives
        c.start()
        send(c, tmp_path, finding=True)
        c.stop(signal.SIGKILL)
        assert not hook.alerts(device="gw-derive")
        c.extra = ["-c", str(tmp_path / "collector.conf")]
        c.start()
        (a,) = hook.wait("firing", device="gw-derive")
        assert a["labels"]["function"] == "main.(*synthetic).leak"
    finally:
        c.stop(signal.SIGKILL)


def test_device_silent_fires_and_resolves(am, hook, tmp_path):
    c = alert_collector(tmp_path, am.url, "gw-silent", silent_after="3s")
    try:
        send(c, tmp_path, finding=False)
        t0 = time.monotonic()
        (a,) = hook.wait("firing", device="gw-silent")
        assert time.monotonic() - t0 >= 2.5  # not before silent_after
        assert a["labels"] == {"alertname": "EdgetraceDeviceSilent", "device": "gw-silent"}
        assert a["annotations"]["link"] == f"{PUBLIC}/#/devices/gw-silent"
        send(c, tmp_path, finding=False)
        hook.wait("resolved", device="gw-silent")
    finally:
        c.stop(signal.SIGKILL)


def test_black_hole_alertmanager_does_not_slow_ingest(tmp_path):
    """An Alertmanager that accepts connections and never answers: the alert thread waits
    out its timeouts while ingest keeps acknowledging at full speed."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    c = alert_collector(tmp_path, f"http://127.0.0.1:{hole.getsockname()[1]}", "gw-hole")
    try:
        times = [send(c, tmp_path, finding=True) for _ in range(6)]
        assert wait_for(lambda: c.rows("SELECT count(*) FROM alert_outbox")[0][0] >= 1, timeout=10)
        assert max(times) < 2.0, times
        assert c.alive()
        t0 = time.monotonic()
        assert c.stop() == 0  # SIGTERM while a POST hangs: a clean exit that does not wait for it
        assert time.monotonic() - t0 < 2.0
    finally:
        c.stop(signal.SIGKILL)
        hole.close()


def test_leaking_go_service_pages_end_to_end(am, hook, go_service, tmp_path):
    c = alert_collector(tmp_path, am.url, "gw-real", resend="2s")
    leaky = go_service("range-unclosed", go="1.23", args=("-rate", "40"))
    conf = tmp_path / "agent.conf"
    conf.write_text(f"""[agent]
interval = 1s
deep_interval = 4s
leak_interval = 5s
discover = no
[spool]
dir = {tmp_path / "spool"}
[uplink]
collector = coaps://127.0.0.1:{c.port}
credentials = {c.creds["path"]}
ack_timeout = 1s
[target "leaky"]
url = {leaky.url}
""")
    log = open(tmp_path / "agent.log", "w")
    agent = subprocess.Popen([str(AGENT), "run", "--config", str(conf)], stdout=log, stderr=log)
    try:
        pages = hook.wait("firing", timeout=90, device="gw-real", function="main.(*Pipeline).aggregate")
        a = pages[0]
        assert a["labels"]["alertname"] == "EdgetraceGoroutineLeak"
        assert a["labels"]["service"] == "leaky" and a["labels"]["kind"] == "goroutine-leak"
        assert a["labels"]["confidence"] in ("likely", "confirmed")
        assert a["annotations"]["location"].endswith(":33")
        assert int(a["annotations"]["count"]) > 0
        # The fix is deployed: a healthy service on the same address (a new incarnation).
        # The agent's snapshots of the target stop carrying the finding: resolved.
        leaky.stop()
        go_service("worker-pool", go="1.23", args=("-rate", "40", "-listen", leaky.addr))
        hook.wait("resolved", timeout=60, device="gw-real", function="main.(*Pipeline).aggregate")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        log.close()
        c.stop(signal.SIGKILL)


@pytest.mark.parametrize("line,msg", [("alertmanager_url = https://am:9093", "http://"),
                                      ("alertmanager_url = http://am:99999", "bad port"),
                                      ("alert_resend_interval = soon", "line 2"),
                                      ("silent_after = -5m", "line 2")])
def test_bad_alert_config_is_refused(tmp_path, line, msg):
    conf = tmp_path / "collector.conf"
    conf.write_text(f"[collector]\n{line}\n")
    r = subprocess.run([str(COLLECTOR), "serve", "-c", str(conf), "--db", str(tmp_path / "c.db"), "--listen",
                        f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and msg in r.stderr, (r.returncode, r.stderr)
