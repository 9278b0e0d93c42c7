"""The collector's HTTP server: JSON API, pprof export, /metrics, the web page and access control,
against a real collector fed by a real agent sampling a real leaking Go service (range-unclosed:
main.(*Pipeline).aggregate leaks at p/pipeline.go:33) and a healthy one (worker-pool).

The collector and the agent run once per backend (SQLite, then PostgreSQL: pgcluster.py); every test reads
the same database over HTTP.
Covered:
  - every endpoint of README "HTTP API", with the shapes scripts rely on
  - 400 (bad parameters), 404 (unknown ids and paths), 405 (methods), 414 (URL length)
  - hostile bytes on the HTTP socket: the collector keeps serving and keeps ingesting
  - pprof export opened by the real `go tool pprof` (-top and -traces): the leak's site first
  - /metrics checked by the real `promtool check metrics`
  - access: a non-loopback address without a token refuses to start; with one, 401 without it

Run: make run-tests PYTEST_ARGS="tests/integration/test_http_api.py -x"
"""
import gzip
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import AGENT, CACHE, COLLECTOR, GoService, free_port, wait_for
from pgcluster import BACKENDS, backend_db, pg_cluster  # noqa: F401 (pg_cluster: a fixture)

GO = CACHE / "go" / "1.23" / "bin" / "go"
PROMTOOL = "/usr/bin/promtool"
DEVICE = "gw-http"
LEAK_FN = "main.(*Pipeline).aggregate"


def udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(base, path, headers=None, method="GET"):
    """(status, headers, body bytes); HTTP errors are returned, not raised."""
    req = urllib.request.Request(base + path, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(base, path, status=200):
    code, hdrs, body = get(base, path)
    assert code == status, f"{path}: {code} {body[:300]!r}"
    assert hdrs.get("Content-Type", "").startswith("application/json"), hdrs
    return json.loads(body)


def start_collector(workdir, db, http_args, name="collector"):
    cport = udp_port()
    log = open(workdir / f"{name}.log", "w")
    p = subprocess.Popen([str(COLLECTOR), "serve", "--db", str(db), "--listen", f"127.0.0.1:{cport}",
                          "--stats-interval", "0", *http_args], stdout=subprocess.PIPE, stderr=log, text=True)
    return p, cport


class Fleet:
    pass


@pytest.fixture(scope="module", params=BACKENDS)
def fleet(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("http")
    db = backend_db(request, work)
    subprocess.run([str(COLLECTOR), "provision", DEVICE, "--db", str(db), "--out", str(work / "creds")],
                   check=True, capture_output=True)
    hport = free_port()
    coll, cport = start_collector(work, db, ["--http", f"127.0.0.1:{hport}"])
    line = coll.stdout.readline()
    assert line.startswith("ready "), (work / "collector.log").read_text()
    f = Fleet()
    f.work, f.db, f.coll, f.cport = work, db, coll, cport
    f.base = f"http://127.0.0.1:{hport}"
    services = [GoService("range-unclosed", "1.23", ("-rate", "40")), GoService("worker-pool", "1.23", ("-rate", "40"))]
    conf = work / "agent.conf"
    conf.write_text(f"""[agent]
interval = 1s
deep_interval = 4s
leak_interval = 5s
discover = no
[spool]
dir = {work / "spool"}
[uplink]
collector = coaps://127.0.0.1:{cport}
credentials = {work / "creds"}
ack_timeout = 1s
[target "leaky"]
url = {services[0].url}
[target "healthy"]
url = {services[1].url}
""")
    agent = subprocess.Popen([str(AGENT), "run", "--config", str(conf)], stdout=open(work / "agent.log", "w"),
                             stderr=subprocess.STDOUT)
    try:
        def leak_open():
            code, _, body = get(f.base, "/api/findings?state=open")
            return code == 200 and [x for x in json.loads(body)["findings"] if x["function"] == LEAK_FN]
        found = wait_for(leak_open, timeout=90, step=1)
        assert found, (work / "agent.log").read_text()[-3000:] + (work / "collector.log").read_text()[-3000:]
        f.finding = found[0]
        time.sleep(3)  # a few more snapshots after the finding opened: a series with a marker in it
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        for s in services:
            s.stop()
    yield f
    coll.send_signal(signal.SIGTERM)
    assert coll.wait(timeout=15) == 0


def test_healthz(fleet):
    h = get_json(fleet.base, "/healthz")
    assert h["status"] == "ok" and h["db"] == "ok" and h["version"]


def test_devices(fleet):
    devs = get_json(fleet.base, "/api/devices")["devices"]
    d = next(d for d in devs if d["id"] == DEVICE)
    assert d["status"] == "online" and d["board"] and d["agent_version"]
    assert d["last_seen_ms"] >= d["first_seen_ms"] > 1.7e12
    assert d["targets"] >= 2
    assert sum(d["open_findings"].values()) >= 1 and d["worst"] in ("likely", "confirmed", "suspected"), d
    one = get_json(fleet.base, f"/api/devices/{DEVICE}")
    assert one["id"] == DEVICE and {t["service"] for t in one["targets"]} >= {"leaky", "healthy"}
    targets = get_json(fleet.base, f"/api/devices/{DEVICE}/targets")["targets"]
    assert {t["service"] for t in targets} >= {"leaky", "healthy"}
    get_json(fleet.base, "/api/devices/gw-nobody", status=404)
    get_json(fleet.base, "/api/devices/gw-nobody/targets", status=404)


def leaky_target(fleet):
    targets = get_json(fleet.base, f"/api/devices/{DEVICE}/targets")["targets"]
    return next(t for t in targets if t["service"] == "leaky")


def test_target_and_series(fleet):
    t = leaky_target(fleet)
    one = get_json(fleet.base, f"/api/targets/{t['id']}")
    assert one["id"] == t["id"] and one["device"] == DEVICE
    assert any(f["function"] == LEAK_FN for f in one["findings"])
    assert one["last"]["goroutines"] > 0
    s = get_json(fleet.base, f"/api/targets/{t['id']}/series")  # default: the last 24 h, few wide buckets
    assert s["target"] == t["id"] and 1 <= len(s["t"]) <= 1000 and s["step_ms"] > 0
    assert any(m["finding"] == fleet.finding["id"] and m["event"] == "opened" for m in s["markers"])
    # the target's own lifetime: one point per snapshot
    full = get_json(fleet.base, f"/api/targets/{t['id']}/series?from={one['first_seen_ms']}&to={one['last_seen_ms'] + 1}")
    assert 3 <= len(full["t"]) <= 1000 and full["t"] == sorted(full["t"])
    for k in ("goroutines", "goroutines_max", "heap_inuse", "heap_alloc", "rss_bytes", "threads", "fds"):
        assert len(full[k]) == len(full["t"]), k
    g = [v for v in full["goroutines"] if v is not None]
    assert max(g) > 100 and g[-1] >= g[0], g  # the leaking service's goroutines pile up
    assert "chan receive" in full["by_state"]
    # an explicit range: the first half only
    mid = (full["t"][0] + full["t"][-1]) // 2
    half = get_json(fleet.base, f"/api/targets/{t['id']}/series?from={full['t'][0]}&to={mid}")
    assert half["t"] and max(half["t"]) <= mid and len(half["t"]) < len(full["t"])
    get_json(fleet.base, "/api/targets/999999", status=404)


def test_findings_filters(fleet):
    fid = fleet.finding["id"]
    ids = lambda q: {f["id"] for f in get_json(fleet.base, "/api/findings" + q)["findings"]}
    assert fid in ids("")
    assert fid in ids("?state=open&kind=goroutine-leak")
    assert fid not in ids("?state=cleared")
    assert fid in ids(f"?device={DEVICE}&service=leaky&confidence={fleet.finding['confidence']}")
    assert fid not in ids("?service=healthy")
    assert ids("?device=gw-nobody") == set()
    assert len(ids("?limit=1")) == 1
    f = fleet.finding
    for k in ("device", "target", "service", "kind", "confidence", "state", "function", "file", "line", "count",
              "growth_per_min", "first_seen_ms", "last_seen_ms", "snapshots", "fingerprint"):
        assert k in f, k
    assert f["line"] == 33 and f["file"].endswith("pipeline.go")


def test_finding_detail(fleet):
    d = get_json(fleet.base, f"/api/findings/{fleet.finding['id']}")
    assert d["id"] == fleet.finding["id"] and d["function"] == LEAK_FN
    assert d["stack"] and d["stack"][0].startswith(LEAK_FN)
    assert d["evidence"] and d["history"][0]["event"] == "opened"
    assert len(d["series"]["t"]) == len(d["series"]["count"]) >= 1
    get_json(fleet.base, "/api/findings/999999", status=404)


@pytest.mark.parametrize("path", [
    "/api/targets/1/series?from=abc",
    "/api/targets/1/series?from=2000&to=1000",
    "/api/targets/1/series?from=1&from=2",
    "/api/targets/1/series?step=5",
    "/api/findings?state=closed",
    "/api/findings?confidence=high",
    "/api/findings?limit=0",
    "/api/findings?limit=99999",
    "/api/findings?bogus=1",
    "/api/findings?" + "&".join(f"k{i}=1" for i in range(40)),
    "/api/targets/1/goroutine.pb.gz?at=yesterday",
])
def test_bad_parameters_get_400(fleet, path):
    body = get_json(fleet.base, path, status=400)
    assert body["error"]


@pytest.mark.parametrize("path", ["/api", "/api/targets/abc", "/api/targets/0", "/api/targets/-1",
                                  "/api/findings/1/nothing", "/api/devices/gw-http/x", "/etc/passwd",
                                  "/assets/../../etc/passwd", "/api/findings/999999/profile.pb.gz",
                                  "/api/targets/999999/goroutine.pb.gz"])
def test_unknown_paths_and_ids_get_404(fleet, path):
    code, _, body = get(fleet.base, path)
    assert code == 404, (path, code, body[:200])


def test_methods_limits_and_hostile_bytes(fleet):
    for m in ("POST", "PUT", "DELETE", "PATCH"):
        code, hdrs, _ = get(fleet.base, "/api/devices", method=m)
        assert code == 405 and "GET" in hdrs.get("Allow", ""), m
    code, _, _ = get(fleet.base, "/api/devices/" + "a" * 5000)
    assert code in (414, 431)
    port = int(fleet.base.rsplit(":", 1)[1])
    junk = [b"\x00\xff" * 500 + b"\r\n\r\n", b"GET /" + b"x" * 100000 + b" HTTP/1.1\r\n\r\n",
            b"GET /api/devices HTTP/1.1\r\nHost: x\r\n" + b"X-A: " + b"b" * 70000 + b"\r\n\r\n",
            b"GET /api/devices HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"GET /api/findings?state=%ff%00%zz HTTP/1.1\r\nHost: x\r\n\r\n"]
    for j in junk:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            try:
                s.sendall(j)
                s.recv(4096)
            except OSError:
                pass
    assert fleet.coll.poll() is None
    assert get_json(fleet.base, "/healthz")["status"] == "ok"


def run_pprof(path, *flags):
    if not GO.exists():
        pytest.fail(f"go toolchain not found at {GO} (make setup)")
    r = subprocess.run([str(GO), "tool", "pprof", *flags, str(path)], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="", HOME=str(path.parent)))
    assert r.returncode == 0, r.stderr
    return r.stdout


def first_top_row(out):
    lines = out.splitlines()
    i = next(i for i, l in enumerate(lines) if l.strip().startswith("flat"))
    return lines[i + 1]


def test_pprof_export_opens_in_go_tool_pprof(fleet, tmp_path):
    t = leaky_target(fleet)
    code, hdrs, body = get(fleet.base, f"/api/targets/{t['id']}/goroutine.pb.gz?at={int(time.time() * 1000)}")
    assert code == 200 and hdrs["Content-Type"] == "application/octet-stream", body[:200]
    assert gzip.decompress(body)  # a real gzip stream
    p = tmp_path / "target.pb.gz"
    p.write_bytes(body)
    top = run_pprof(p, "-top")
    assert "Type: goroutine" in top
    assert LEAK_FN in first_top_row(top), top
    assert LEAK_FN in run_pprof(p, "-traces")

    code, _, body = get(fleet.base, f"/api/findings/{fleet.finding['id']}/profile.pb.gz")
    assert code == 200
    p = tmp_path / "finding.pb.gz"
    p.write_bytes(body)
    assert LEAK_FN in first_top_row(run_pprof(p, "-top"))
    traces = run_pprof(p, "-traces")
    stack = get_json(fleet.base, f"/api/findings/{fleet.finding['id']}")["stack"]
    # the finding's stack frames are the sample's stack, leaf first
    frames = [l.split()[-1] for l in traces.splitlines() if l.startswith("   ") and l.split()]
    assert LEAK_FN in frames[0] and len(frames) >= min(len(stack), 2), traces


def test_metrics_pass_promtool(fleet, tmp_path):
    code, hdrs, body = get(fleet.base, "/metrics")
    assert code == 200 and hdrs["Content-Type"].startswith("text/plain")
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    text = body.decode()
    val = lambda name: float(next(l.split()[-1] for l in text.splitlines() if l.startswith(name)))
    assert val("edgetrace_snapshots_stored_total ") >= 10
    assert val("edgetrace_ingest_commit_latency_seconds_count ") >= 10
    assert val(f'edgetrace_device_last_seen_timestamp_seconds{{device="{DEVICE}"}}') > 1.7e9
    assert val('edgetrace_findings_open{kind="goroutine-leak"') >= 1
    assert val("edgetrace_database_size_bytes ") > 0
    assert 'edgetrace_ingest_rejects_total{code="4.00"' in text and "edgetrace_devices_silent " in text
    # nothing identifying a stack goes into a label
    assert fleet.finding["fingerprint"] not in text and LEAK_FN not in text


def test_web_page_is_served(fleet):
    code, hdrs, body = get(fleet.base, "/")
    assert code == 200 and hdrs["Content-Type"].startswith("text/html") and b"<html" in body.lower()
    code, hdrs, _ = get(fleet.base, "/assets/app.js")
    assert code == 200 and "javascript" in hdrs["Content-Type"]


def test_token_off_loopback(fleet, tmp_path):
    """0.0.0.0 is not loopback: without a token the collector refuses to start; with one, every request
    (reached here through 127.0.0.1) needs it."""
    db = tmp_path / "t.db"
    port = free_port()
    p, _ = start_collector(tmp_path, db, ["--http", f"0.0.0.0:{port}"], name="refuse")
    assert p.wait(timeout=15) != 0
    assert "token" in (tmp_path / "refuse.log").read_text()

    tok = tmp_path / "token"
    tok.write_text("s3cret-token-for-the-test-0123\n")
    tok.chmod(0o644)  # readable by others: refused too
    p, _ = start_collector(tmp_path, db, ["--http", f"0.0.0.0:{port}", "--http-token-file", str(tok)], name="world")
    assert p.wait(timeout=15) != 0
    tok.chmod(0o600)
    p, _ = start_collector(tmp_path, db, ["--http", f"0.0.0.0:{port}", "--http-token-file", str(tok)], name="tok")
    try:
        assert p.stdout.readline().startswith("ready ")
        base = f"http://127.0.0.1:{port}"
        assert get(base, "/api/devices")[0] == 401
        assert get(base, "/metrics")[0] == 401
        assert get(base, "/")[0] == 401
        assert get(base, "/api/devices", {"Authorization": "Bearer wrong-token"})[0] == 401
        code, _, body = get(base, "/api/devices", {"Authorization": "Bearer s3cret-token-for-the-test-0123"})
        assert code == 200 and "devices" in json.loads(body)
        assert get(base, "/healthz")[0] == 200  # for load balancers
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=15)
