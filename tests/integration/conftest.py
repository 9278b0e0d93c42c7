"""Shared pytest fixtures for edgetrace integration tests.

Paths come from the environment the Makefile's run-tests target exports, with fallbacks
for running pytest by hand from the repository root."""
import os
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("ET_ROOT", Path(__file__).resolve().parents[2]))
BUILD = Path(os.environ.get("ET_BUILD", ROOT / "build"))
CACHE = Path(os.environ.get("ET_CACHE", "/var/cache/edgetrace"))
BOARDS = sorted(p.stem for p in (ROOT / "boards").glob("*.mk"))


def env_path(name, default):
    return Path(os.environ.get(name, default))


AGENT = env_path("ET_AGENT", BUILD / "x86_64" / "edgetrace-agent")
COLLECTOR = env_path("ET_COLLECTOR", BUILD / "host" / "edgetrace-collector")
LOSSY_LINK = env_path("ET_LOSSY_LINK", BUILD / "host" / "lossy-link")
TESTSVC = env_path("ET_TESTSVC", CACHE / "testsvc")
GO_VERSIONS = os.environ.get("ET_GO_VERSIONS", "1.21 1.23 1.27").split()


def board_var(board, var):
    """A variable of boards/<board>.mk (the Makefile syntax is 'NAME := value')."""
    for line in (ROOT / "boards" / f"{board}.mk").read_text().splitlines():
        if line.startswith(var) and ":=" in line and line.split(":=")[0].strip() == var:
            return line.split(":=", 1)[1].strip()
    return ""


def agent_cmd(board="x86_64"):
    """argv prefix that runs the agent for a board (under qemu-user for ARM boards)."""
    binary = BUILD / board / "edgetrace-agent"
    qemu = board_var(board, "BOARD_QEMU")
    return shlex.split(qemu) + [str(binary)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GoService:
    """A running Go test service from tools/testsvc, built by tools/testsvc/build.sh."""

    def __init__(self, program, go="1.23", args=(), env=None):
        self.binary = TESTSVC / go / program
        if not self.binary.exists():
            pytest.fail(f"test service {self.binary} not built (make testsvc)")
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen([str(self.binary), "-listen", "127.0.0.1:0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening "):
            self.stop()
            pytest.fail(f"{program}: unexpected first line {line!r}")
        self.addr = line.split()[1]
        self.url = f"http://{self.addr}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


@pytest.fixture
def go_service():
    started = []

    def start(program, go="1.23", args=(), env=None):
        s = GoService(program, go, args, env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def wait_for(pred, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()
