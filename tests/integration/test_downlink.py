"""Downlink commands (wire/command.h, README "Commands"): the real collector queues a command
for a device and hands it out in the answer to that device's own request; the real agent
daemon runs it once. An idle agent (nothing to upload) fetches it with an empty check-in
within one sampling interval; a busy one gets it in an upload's 2.01."""
import signal
import sqlite3
import subprocess
import time

import pytest

from conftest import AGENT, COLLECTOR, wait_for
from pgcluster import BACKENDS, backend_db, pg_cluster  # noqa: F401 (pg_cluster: a fixture)
from test_agent_run import collector, udp_port  # noqa: F401 (fixture)


def queue(db, *args):
    out = subprocess.run([str(COLLECTOR), "command", "gw-run", *args, "--db", str(db)], capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def start_agent(tmp_path, cport, creds, targets="", agent_extra=""):
    conf = tmp_path / "agent.conf"
    conf.write_text(f"""[agent]
interval = 1s
discover = no
log_level = info
{agent_extra}
[spool]
dir = {tmp_path / "spool"}
[uplink]
collector = coaps://127.0.0.1:{cport}
credentials = {creds}
ack_timeout = 1s
{targets}""")
    log = tmp_path / "agent.log"
    return subprocess.Popen([str(AGENT), "run", "--config", str(conf)], stdout=open(log, "a"),
                            stderr=subprocess.STDOUT), log


def stop(agent):
    agent.send_signal(signal.SIGTERM)
    return agent.wait(timeout=30)


def ran(log, cid):
    return log.read_text().count(f"downlink: command {cid}: ")


def test_idle_agent_checks_in_and_runs_each_command_once(collector, tmp_path):  # noqa: F811
    db, cport, creds = collector
    agent, log = start_agent(tmp_path, cport, creds)
    try:
        time.sleep(1)  # running, nothing to upload (no targets): only check-ins go out
        assert agent.poll() is None
        rd = queue(db, "rediscover", "--ttl", "120")
        heap = queue(db, "heap", "svc-a")
        t0 = time.monotonic()
        assert wait_for(lambda: ran(log, rd) and ran(log, heap), timeout=10), log.read_text()[-2000:]
        # within about one sampling interval (1 s), plus a handshake on a loaded machine
        assert time.monotonic() - t0 < 6
        # handed out again after the collector's re-delivery period would still not run twice:
        # an agent restart keeps the executed ids (spool state v3)
        assert stop(agent) == 0
        con = sqlite3.connect(db)
        con.execute("UPDATE commands SET delivered_ms=NULL")  # due again at once
        con.commit()
        con.close()
        agent, log = start_agent(tmp_path, cport, creds)
        assert wait_for(lambda: sqlite3.connect(db).execute("SELECT min(deliveries) FROM commands").fetchone()[0] >= 2,
                        timeout=10)
        time.sleep(1.5)
        assert ran(log, rd) == 1 and ran(log, heap) == 1, log.read_text()[-2000:]
    finally:
        stop(agent)


def test_command_rides_on_an_upload_answer(go_service, collector, tmp_path):  # noqa: F811
    db, cport, creds = collector
    svc = go_service("worker-pool", go="1.23", args=("-rate", "40"))
    agent, log = start_agent(tmp_path, cport, creds, f'[target "svc"]\nurl = {svc.url}\n')
    try:
        assert wait_for(lambda: "s=2" in log.read_text() or
                        subprocess.run([str(COLLECTOR), "snapshots", "--db", str(db), "--json"],
                                       capture_output=True, text=True).stdout.count("snapshot_id") >= 2,
                        timeout=30)
        cid = queue(db, "trace", "svc", "--seconds", "3")
        assert wait_for(lambda: ran(log, cid), timeout=10), log.read_text()[-2000:]
        assert "trace svc" in log.read_text()
    finally:
        stop(agent)


def test_cli_refuses_an_invalid_command(collector):  # noqa: F811
    db, _, _ = collector
    out = subprocess.run([str(COLLECTOR), "command", "gw-run", "heap", "--db", str(db)], capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 1 and "needs a target" in out.stderr
    out = subprocess.run([str(COLLECTOR), "command", "gw-run", "trace", "svc", "--seconds", "99", "--db", str(db)],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 2


def http(port, method, path, body=None, ctype="application/json"):
    import json
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else body.encode())
    if body is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except urllib.error.URLError:
        return 0, None  # the collector's HTTP server is not listening yet


def http_fleet(go_service, tmp_path, go="1.23", program="worker-pool", args=("-rate", "40"), coll_args=(),
               agent_extra="", db=None):
    """A real collector with its HTTP API (on db: default a SQLite file), a real Go service and the agent
    sampling it; returns (collector, agent, log, http port, the service's target id)."""
    from test_http_api import start_collector
    from conftest import free_port
    db = db or tmp_path / "collector.db"
    subprocess.run([str(COLLECTOR), "provision", "gw-run", "--db", str(db), "--out", str(tmp_path / "creds")],
                   check=True, capture_output=True)
    hport = free_port()
    coll, cport = start_collector(tmp_path, db, ["--http", f"127.0.0.1:{hport}", *coll_args])
    svc = go_service(program, go=go, args=args)
    agent, log = start_agent(tmp_path, cport, tmp_path / "creds", f'[target "svc"]\nurl = {svc.url}\n',
                             agent_extra=agent_extra)

    def target_id():
        st, doc = http(hport, "GET", "/api/devices/gw-run/targets")
        return st == 200 and doc["targets"] and doc["targets"][0]["id"]
    tid = wait_for(target_id, timeout=30, step=0.5)
    if not tid:
        stop(agent)
        coll.terminate()
        raise AssertionError(log.read_text()[-2000:])
    return coll, agent, log, hport, tid


def test_capture_requested_through_the_http_api_reaches_the_agent(go_service, tmp_path):
    coll, agent, log, hport, tid = http_fleet(go_service, tmp_path)
    try:
        path = f"/api/targets/{tid}/captures"
        # refused: a cross-site form (no JSON content type), bad kinds and members, unknown target
        assert http(hport, "POST", path, '{"kind":"trace"}', ctype="text/plain")[0] == 415
        assert http(hport, "POST", path, '{"kind":"cpu"}')[0] == 400
        assert http(hport, "POST", path, '{"kind":"heap","seconds":3}')[0] == 400
        assert http(hport, "POST", path, '{"kind":"trace","seconds":99}')[0] == 400
        assert http(hport, "POST", path, '{"kind":"trace","x":1}')[0] == 400
        assert http(hport, "POST", path, "[1,2")[0] == 400
        assert http(hport, "POST", "/api/targets/999999/captures", '{"kind":"heap"}')[0] == 404
        # a capture linked to a finding must be of that finding's target
        st, doc = http(hport, "POST", path, '{"kind":"heap","finding":999999}')
        assert st == 400 and "not a finding of target" in doc["error"], doc
        assert http(hport, "GET", path)[0] == 405
        st, doc = http(hport, "POST", path, '{"kind":"trace","seconds":3}')
        assert st == 201, doc
        cid = doc["id"]
        st, cap = http(hport, "GET", f"/api/captures/{cid}")
        assert st == 200 and cap["kind"] == "trace" and cap["seconds"] == 3 and cap["target"] == tid
        # one capture in flight per target
        assert http(hport, "POST", path, '{"kind":"heap"}')[0] == 429
        # handed out with the next upload's answer, run by the agent
        assert wait_for(lambda: http(hport, "GET", f"/api/captures/{cid}")[1]["state"] in
                        ("delivered", "running", "uploaded"), timeout=10)
        assert wait_for(lambda: ran(log, cid), timeout=10), log.read_text()[-2000:]
        assert http(hport, "GET", "/api/captures/424242")[0] == 404
    finally:
        stop(agent)
        coll.terminate()
        coll.wait(timeout=10)


GO = "/var/cache/edgetrace/go/1.27/bin/go"


@pytest.mark.parametrize("backend", BACKENDS)
def test_trace_and_debug2_captures_arrive_and_open(go_service, tmp_path, request, backend):
    """On both backends: the capture queue, its results' bytes and their download."""
    import json
    import os
    import urllib.request
    # a quiet service: one second of its trace stays under the 120 KiB cap (a busier one is cut,
    # and a cut trace does not parse)
    coll, agent, log, hport, tid = http_fleet(go_service, tmp_path, go="1.27", program="basic", args=(),
                                              db=backend_db(request, tmp_path, backend))
    try:
        results = {}
        # A trace whose second overlaps the agent's own deep sample (a forced GC, a debug=2 dump) can
        # outgrow the cap and be cut exactly there; a cut trace does not parse, so ask again (at most
        # twice more, within the hourly limit) for one that is whole.
        bodies = ['{"kind":"trace","seconds":1}', '{"kind":"goroutine-debug2"}']
        tries = 0
        while bodies:
            body = bodies.pop(0)
            st, doc = http(hport, "POST", f"/api/targets/{tid}/captures", body)
            assert st == 201, doc
            cid = doc["id"]
            seen = []

            def ended():
                state = http(hport, "GET", f"/api/captures/{cid}")[1]["state"]
                if not seen or seen[-1] != state:
                    seen.append(state)
                return state in ("uploaded", "failed")
            assert wait_for(ended, timeout=40, step=0.1), (http(hport, "GET", f"/api/captures/{cid}"),
                                                           log.read_text()[-2000:])
            cap = http(hport, "GET", f"/api/captures/{cid}")[1]
            assert cap["state"] == "uploaded" and cap["error"] == "" and cap["bytes"] > 0, cap
            # the agent reported that it started: every state in order, each with its time
            assert cap["created_ms"] <= cap["delivered_ms"] <= cap["started_ms"] <= cap["uploaded_ms"], cap
            if "trace" in body:
                # the trace is seen running (the agent's started report, before its result)
                assert "running" in seen, seen
                assert cap["uploaded_ms"] - cap["started_ms"] >= 500, cap
                if cap["cut"]:
                    assert cap["bytes"] == 120 * 1024, cap   # cut at the cap, never anywhere else
                    tries += 1
                    assert tries < 3, ("every trace was cut", cap)
                    bodies.insert(0, body)
                    continue
            with urllib.request.urlopen(f"http://127.0.0.1:{hport}/api/captures/{cid}/data", timeout=10) as r:
                results[json.loads(body)["kind"]] = (r.read(), r.headers.get("Content-Disposition", ""))
        trace, disp = results["trace"]
        assert "capture-" in disp and disp.endswith('.trace"')
        path = tmp_path / "capture.trace"
        path.write_bytes(trace)
        if os.path.exists(GO):
            out = subprocess.run([GO, "tool", "trace", "-d=parsed", str(path)], capture_output=True, text=True,
                                 timeout=120)
            assert out.returncode == 0, (len(trace), out.stderr[-2000:])
        dump, _ = results["goroutine-debug2"]
        assert dump.startswith(b"goroutine ") and b"goroutine" in dump[10:]
        # exactly once: one result per command, whatever the retries
        assert ran(log, cid) == 1
    finally:
        stop(agent)
        coll.terminate()
        coll.wait(timeout=10)


def test_capture_through_loss_and_an_outage_runs_once(go_service, tmp_path):
    """30% loss both ways and an outage: a debug=2 capture queued while the link is down is
    handed out when it returns, run once, and its bytes arrive intact."""
    import urllib.request
    from chaos import start_lossy_link
    from test_http_api import start_collector
    from conftest import free_port
    db = tmp_path / "collector.db"
    subprocess.run([str(COLLECTOR), "provision", "gw-run", "--db", str(db), "--out", str(tmp_path / "creds")],
                   check=True, capture_output=True)
    hport = free_port()
    coll, cport = start_collector(tmp_path, db, ["--http", f"127.0.0.1:{hport}"])
    # the outage starts once the agent is sampling and has found its target (below)
    link = start_lossy_link(("127.0.0.1", cport), workdir=tmp_path / "link", seed=12, loss=30,
                            outage=[(12, 10)])
    svc = go_service("worker-pool", go="1.23", args=("-rate", "40"))
    agent, log = start_agent(tmp_path, link.addr[1], tmp_path / "creds", f'[target "svc"]\nurl = {svc.url}\n')
    try:
        def target_id():
            st, doc = http(hport, "GET", "/api/devices/gw-run/targets")
            return st == 200 and doc["targets"] and doc["targets"][0]["id"]
        tid = wait_for(target_id, timeout=12, step=0.5)
        assert tid, log.read_text()[-2000:]
        # into the outage
        time.sleep(max(0.0, link.started_at + 13 - time.monotonic()))
        st, doc = http(hport, "POST", f"/api/targets/{tid}/captures", '{"kind":"goroutine-debug2"}')
        assert st == 201, doc
        cid = doc["id"]
        assert http(hport, "GET", f"/api/captures/{cid}")[1]["state"] == "queued"
        # the link returns 22 s after it started; then loss alone
        assert wait_for(lambda: http(hport, "GET", f"/api/captures/{cid}")[1]["state"] in ("uploaded", "failed"),
                        timeout=120, step=1), (http(hport, "GET", f"/api/captures/{cid}")[1], log.read_text()[-2000:])
        cap = http(hport, "GET", f"/api/captures/{cid}")[1]
        assert cap["state"] == "uploaded" and not cap["cut"], cap
        assert cap["delivered_ms"] >= cap["created_ms"]
        with urllib.request.urlopen(f"http://127.0.0.1:{hport}/api/captures/{cid}/data", timeout=10) as r:
            dump = r.read()
        # intact: what the collector stored, and a whole debug=2 dump (every goroutine block ends
        # in a frame's file:line; the service's own code is in it)
        assert len(dump) == cap["bytes"] and dump.startswith(b"goroutine "), dump[:200]
        assert dump.rstrip().split(b"\n")[-1].startswith(b"\t"), dump[-300:]
        assert b"main." in dump
        # complete: every goroutine of the service is in it (a fixed pool of 200 workers plus
        # the harness and the HTTP server), as many as the service itself counts now
        blocks = [b for b in dump.split(b"\n\n") if b.strip()]
        assert all(b.startswith(b"goroutine ") and b"[" in b.split(b"\n")[0] for b in blocks), blocks[:2]
        with urllib.request.urlopen(f"{svc.url}/debug/pprof/goroutine?debug=1", timeout=10) as r:
            total = int(r.read().split(b"\n")[0].rsplit(b" ", 1)[1])
        assert len(blocks) >= 200 and abs(len(blocks) - total) <= 5, (len(blocks), total)
        time.sleep(2)  # re-deliveries (30 s apart) and retried uploads change nothing
        assert ran(log, cid) == 1
        assert log.read_text().count(f"capture: command {cid} ") == 1
        st = link.stats()
        assert st["up"]["dropped_loss"] + st["down"]["dropped_loss"] > 0, st
        assert st["up"]["dropped_outage"] + st["down"]["dropped_outage"] > 0, st
    finally:
        stop(agent)
        link.stop()
        coll.terminate()
        coll.wait(timeout=10)


def test_captures_per_hour_is_the_configured_number(go_service, tmp_path):
    """collector.conf captures_per_hour: the third capture of a device within the hour is
    refused with 429 when the key says 2 (the default is 6); the flag checks its range."""
    bad = subprocess.run([str(COLLECTOR), "serve", "--captures-per-hour", "0", "--db", str(tmp_path / "x.db")],
                         capture_output=True, text=True, timeout=20)
    assert bad.returncode == 2 and "captures-per-hour" in bad.stderr
    conf = tmp_path / "collector.conf"
    conf.write_text("[collector]\ncaptures_per_hour = 2\n")
    coll, agent, log, hport, tid = http_fleet(go_service, tmp_path, coll_args=("-c", str(conf)))
    try:
        path = f"/api/targets/{tid}/captures"
        for _ in range(2):
            st, doc = http(hport, "POST", path, '{"kind":"heap"}')
            assert st == 201, doc
            cid = doc["id"]
            # the in-flight limit per target holds until the result is in
            assert http(hport, "POST", path, '{"kind":"heap"}')[0] == 429
            assert wait_for(lambda: http(hport, "GET", f"/api/captures/{cid}")[1]["state"] == "uploaded",
                            timeout=30, step=0.3), http(hport, "GET", f"/api/captures/{cid}")
        st, doc = http(hport, "POST", path, '{"kind":"heap"}')
        assert st == 429 and "limit 2" in doc["error"], doc
    finally:
        stop(agent)
        coll.terminate()
        coll.wait(timeout=10)


def test_started_reports_from_a_stock_coap_client(tmp_path):
    """The started report ("r=ID" Uri-Query, wire/command.h) as any CoAP peer can send it: stock
    coap-client checks in over DTLS naming its own command, another device's, and hostile
    values. Only its own command becomes running; the bad values are counted and ignored; the
    check-in is answered as always."""
    import os
    from test_collector import COAP_CLIENT, Collector
    if not COAP_CLIENT.exists():
        pytest.fail(f"stock coap-client not found at {COAP_CLIENT} (make host-deps)")
    c = Collector(tmp_path, extra=("--http", "off"))
    creds = c.provision("gw-run")
    c.provision("gw-other")
    c.start()
    try:
        mine = queue(c.db, "heap", "svc")
        out = subprocess.run([str(COLLECTOR), "command", "gw-other", "heap", "svc", "--db", str(c.db)],
                             capture_output=True, text=True, timeout=20)
        theirs = int(out.stdout)
        q = f"r={mine}&r={theirs}&r=abc&r=0{mine}"
        r = subprocess.run([str(COAP_CLIENT), "-m", "post", "-u", "gw-run", "-k", "0x" + creds["psk"], "-B", "20",
                            f"coaps://127.0.0.1:{c.port}/s?{q}"], capture_output=True, timeout=40)
        assert r.stdout.startswith(b"idle s="), (r.stdout, r.stderr)  # then NUL + the commands due
        started = dict(c.rows("SELECT id, started_ms FROM commands"))
        assert started[mine] is not None and started[theirs] is None, started
        os.kill(c.proc.pid, signal.SIGUSR1)
        assert wait_for(lambda: "started=1 started_bad=2" in c.log.read_text(), timeout=10), c.log.read_text()[-1500:]
        assert c.alive()
    finally:
        c.stop()
