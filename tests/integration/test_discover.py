"""`edgetrace-agent discover` against real processes.

- Real Go services (tools/testsvc `basic`, per Go version, or a tiny net/http/pprof server
  built here with the cached toolchain) are found with their port, PID and Go version, and
  confirmed with GET /debug/pprof/.
- A non-Go listener (python's http.server) is ignored; a Go process's non-pprof port is
  rejected with the 404 as the reason.
- A restart keeps the identity and changes the incarnation.
- Network namespaces: a Go server bound to 127.0.0.1 inside a namespace made with
  `ip netns add` is discovered and confirmed through setns (skipped unless root and
  `ip netns` works).
- The 32-bit ARM agent (under qemu-user) finds the same service when it is built.
"""
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import AGENT, BUILD, CACHE, TESTSVC, free_port  # noqa: E402

GO = CACHE / "go" / "1.23" / "bin" / "go"

PPROF_SRC = r'''
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "pprof address")
	app := flag.String("app", "", "optional second listener that is not pprof")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *app != "" {
		al, err := net.Listen("tcp", *app)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go http.Serve(al, http.NotFoundHandler())
	}
	fmt.Printf("listening %s\n", ln.Addr())
	http.Serve(ln, nil)
}
'''


def go_env(version):
    e = dict(os.environ)
    e.update(GOTOOLCHAIN="local", GOPROXY="off", GOFLAGS="-mod=mod",
             GOCACHE=str(CACHE / f"gocache-{version}" / "cache"),
             GOPATH=str(CACHE / f"gocache-{version}" / "path"))
    return e


@pytest.fixture(scope="module")
def pprof_server_bin(tmp_path_factory):
    """A two-listener Go pprof server (pprof + a 404-only app port), built once."""
    if not GO.exists():
        pytest.skip(f"{GO} missing")
    d = tmp_path_factory.mktemp("gopprof")
    (d / "main.go").write_text(PPROF_SRC)
    (d / "go.mod").write_text("module etdiscover\n\ngo 1.21\n")
    out = d / "pprofsvc"
    subprocess.run([str(GO), "build", "-o", str(out), "."], cwd=d, env=go_env("1.23"), check=True, timeout=600)
    return out


class Proc:
    def __init__(self, argv, netns=None):
        if netns:
            argv = ["ip", "netns", "exec", netns] + list(argv)
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline().strip()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"{argv}: unexpected first line {line!r}: {self.p.stderr.read()}")
        self.addr = line.split()[1]
        self.port = int(self.addr.rsplit(":", 1)[1])

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=10)


def agent_argv():
    if not AGENT.exists():
        pytest.skip(f"agent {AGENT} not built")
    return [str(AGENT)]


def discover(*args, argv=None, timeout=60):
    r = subprocess.run((argv or agent_argv()) + ["discover", "--json", *args], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def find(doc, pid=None, port=None, key="targets"):
    return [t for t in doc[key] if (pid is None or t["pid"] == pid) and (port is None or t["port"] == port)]


@pytest.fixture
def http_server_python():
    """A non-Go listener: python's http.server."""
    port = free_port()
    p = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port, p.pid
    p.kill()
    p.wait()


def test_finds_go_service_ignores_python(pprof_server_bin, http_server_python):
    py_port, py_pid = http_server_python
    app_port = free_port()
    svc = Proc([str(pprof_server_bin), "-listen", "127.0.0.1:0", "-app", f"127.0.0.1:{app_port}"])
    try:
        doc = discover()
        mine = find(doc, pid=svc.pid)
        assert len(mine) == 1, json.dumps(doc, indent=1)
        t = mine[0]
        assert t["port"] == svc.port
        assert t["source"] == "proc"
        assert t["go_version"].startswith("go1.23"), t
        assert t["confirmed"] is True
        assert t["url"] == f"http://127.0.0.1:{svc.port}/debug/pprof/"
        assert t["identity"] == f"exe:{pprof_server_bin}:{svc.port}"
        assert "listens on 127.0.0.1:%d" % svc.port in t["reason"]
        assert t["netns"]["foreign"] is False
        # the app port of the same Go process: rejected, with the 404 as the reason
        rej = find(doc, pid=svc.pid, key="rejected")
        assert [r["port"] for r in rej] == [app_port]
        assert "404" in rej[0]["confirm"]
        # python's http.server is not Go: not even a candidate
        assert not find(doc, pid=py_pid) and not find(doc, pid=py_pid, key="rejected")
        assert not [x for x in doc["targets"] + doc["rejected"] if x["port"] == py_port]

        # --no-confirm lists both ports unconfirmed
        doc = discover("--no-confirm")
        ports = sorted(t["port"] for t in find(doc, pid=svc.pid))
        assert ports == sorted([svc.port, app_port])
        assert all(t["confirmed"] is None for t in find(doc, pid=svc.pid))
    finally:
        svc.stop()


def test_restart_keeps_identity_changes_incarnation(pprof_server_bin):
    port = free_port()
    a = Proc([str(pprof_server_bin), "-listen", f"127.0.0.1:{port}"])
    try:
        first = find(discover(), port=port)
    finally:
        a.stop()
    b = Proc([str(pprof_server_bin), "-listen", f"127.0.0.1:{port}"])
    try:
        second = find(discover(), port=port)
    finally:
        b.stop()
    assert len(first) == 1 and len(second) == 1
    assert first[0]["identity"] == second[0]["identity"]
    assert first[0]["pid"] == a.pid and second[0]["pid"] == b.pid
    assert first[0]["incarnation"] != second[0]["incarnation"]


@pytest.mark.parametrize("gover", ["1.21", "1.23", "1.27"])
def test_go_versions_from_testsvc(gover):
    binary = TESTSVC / gover / "basic"
    if not binary.exists():
        pytest.skip(f"{binary} not built (make testsvc)")
    svc = Proc([str(binary), "-listen", "127.0.0.1:0"])
    try:
        mine = find(discover(), pid=svc.pid)
        assert len(mine) == 1
        assert mine[0]["go_version"].startswith("go" + gover), mine[0]
        assert mine[0]["port"] == svc.port
        assert mine[0]["confirmed"] is True
    finally:
        svc.stop()


def test_config_target_is_matched_to_its_process(pprof_server_bin, tmp_path):
    svc = Proc([str(pprof_server_bin), "-listen", "127.0.0.1:0"])
    try:
        conf = tmp_path / "agent.conf"
        conf.write_text(f'[target "billing"]\nurl = http://127.0.0.1:{svc.port}\nprofiles = goroutine,heap\n')
        doc = discover("--config", str(conf))
        cfg = [t for t in doc["targets"] if t["source"] == "config"]
        assert len(cfg) == 1
        assert cfg[0]["identity"] == "config:billing"
        assert cfg[0]["pid"] == svc.pid
        assert cfg[0]["confirmed"] is True
        assert cfg[0]["profiles"] == ["goroutine", "heap"]
        assert not [t for t in doc["targets"] if t["source"] != "config" and t["port"] == svc.port]
    finally:
        svc.stop()


def _ip_netns_ok():
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    return True


@pytest.fixture
def netns():
    if not _ip_netns_ok():
        pytest.skip("needs root and iproute2")
    name = f"et-disc-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"ip netns add failed: {r.stderr.strip()}")
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_netns_service_found_and_reached_through_setns(pprof_server_bin, netns):
    # The port is free in the new namespace whatever the host uses; pick one anyway.
    port = free_port()
    svc = Proc([str(pprof_server_bin), "-listen", f"127.0.0.1:{port}"], netns=netns)
    try:
        # `ip netns exec` execs the server, so svc.pid is the Go process itself.
        ns_ino = os.stat(f"/proc/{svc.pid}/ns/net").st_ino
        assert ns_ino != os.stat("/proc/self/ns/net").st_ino
        # Nothing listens on that port in our own namespace...
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        doc = discover()
        mine = find(doc, pid=svc.pid)
        assert len(mine) == 1, json.dumps(doc, indent=1)
        t = mine[0]
        assert t["netns"]["foreign"] is True
        assert t["netns"]["inode"] == ns_ino
        # ...so a confirmed GET proves the socket was made inside the pod's namespace.
        assert t["confirmed"] is True, t["confirm"]
        assert "network namespace" in t["reason"]
        assert t["go_version"].startswith("go1.23")
    finally:
        svc.stop()


def test_arm32_agent_finds_the_same_service(pprof_server_bin):
    arm = Path(os.environ.get("ET_AGENT_BBB", BUILD / "bbb" / "edgetrace-agent"))
    qemu = os.environ.get("ET_QEMU_BBB", "qemu-arm-static")
    if not arm.exists() or not shutil.which(shlex.split(qemu)[0]):
        pytest.skip("bbb agent or qemu-arm not available")
    svc = Proc([str(pprof_server_bin), "-listen", "127.0.0.1:0"])
    try:
        doc = discover(argv=shlex.split(qemu) + [str(arm)], timeout=120)
        mine = find(doc, pid=svc.pid)
        assert len(mine) == 1
        assert mine[0]["go_version"].startswith("go1.23")
        assert mine[0]["confirmed"] is True
    finally:
        svc.stop()


def test_fixture_proc_root_and_bad_args(tmp_path):
    # An empty fixture tree: no targets, no crash; a missing one: a clear error.
    (tmp_path / "proc").mkdir()
    doc = discover("--proc-root", str(tmp_path / "proc"), "--no-confirm")
    assert doc["targets"] == [] and doc["scanned"] == 0
    r = subprocess.run(agent_argv() + ["discover", "--proc-root", str(tmp_path / "nope")], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "cannot" in r.stderr
    r = subprocess.run(agent_argv() + ["discover", "--bogus"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
