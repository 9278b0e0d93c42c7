"""`edgetrace-agent sample URL`: the thin slice, on every Go version and on ARM under qemu."""
import http.server
import json
import socket
import subprocess
import threading

import pytest

from conftest import GO_VERSIONS, agent_cmd, free_port

BOARDS = ["x86_64", "rpi4", "bbb"]


def run_sample(board, url, *extra, timeout=120):
    return subprocess.run(agent_cmd(board) + ["sample", url, *extra], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("go", GO_VERSIONS)
@pytest.mark.parametrize("board", BOARDS)
def test_sample_reports_goroutine_total(go_service, go, board):
    svc = go_service("basic", go=go)
    out = run_sample(board, svc.url, "--samples", "1", "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["target"] == svc.url
    # the release comes from the binary's build info (the proto profile does not carry it)
    assert r["go_version"].startswith("go" + go), r
    # basic runs 16 workers + a ticker loop + main + pprof server: about 25 goroutines
    assert 18 <= r["goroutines"] <= 40, r
    assert r["findings"] == []
    human = run_sample(board, svc.url, "--samples", "1")
    assert human.returncode == 0 and "goroutines" in human.stdout


def test_sample_service_down_is_a_clear_error():
    port = free_port()
    out = run_sample("x86_64", f"http://127.0.0.1:{port}", "--samples", "1")
    assert out.returncode == 1
    assert "refused" in out.stderr.lower() or "no goroutine profile" in out.stderr


class _NotPprof(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html><body><h1>Welcome to nginx!</h1></body></html>\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_sample_non_pprof_answer_is_a_clear_error():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotPprof)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        out = run_sample("x86_64", f"http://127.0.0.1:{srv.server_address[1]}", "--samples", "1")
        assert out.returncode == 1
        assert "goroutine" in out.stderr
    finally:
        srv.shutdown()


def test_sample_silent_service_times_out():
    """A service that accepts and never answers must not hang the agent."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    try:
        out = run_sample("x86_64", f"http://127.0.0.1:{ls.getsockname()[1]}", "--samples", "1", timeout=60)
        assert out.returncode == 1
    finally:
        ls.close()


def test_sample_usage_errors():
    assert run_sample("x86_64", "ftp://example/").returncode == 2
    assert subprocess.run(agent_cmd() + ["sample"], capture_output=True).returncode == 2
    assert run_sample("x86_64", "http://127.0.0.1:1", "--samples", "zero").returncode == 2
