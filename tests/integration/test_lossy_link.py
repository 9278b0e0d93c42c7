"""Integration tests for tools/lossy-link (the userspace UDP impairment proxy).

Each test starts the real binary between a UDP client socket and a small UDP echo server on
127.0.0.1, drives traffic through it and checks both what arrived and the proxy's own stats.
Random decisions use fixed seeds, and the statistical bounds are many standard deviations wide.

Run: /usr/bin/python3 -m pytest tests/integration/test_lossy_link.py
Binary: $ET_LOSSY_LINK, default build/host/lossy-link under the repo root.
"""

import json
import os
import select
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

ROOT = os.environ.get("ET_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("ET_LOSSY_LINK") or os.path.join(ROOT, "build", "host", "lossy-link")
BIG_BUF = 4 * 1024 * 1024


def _big_buffers(sock):
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, BIG_BUF)
        except OSError:
            pass
    # As root, the *FORCE variants lift the rmem_max/wmem_max cap, so bursts are not lost in the kernel.
    for opt in (33, 32):  # SO_RCVBUFFORCE, SO_SNDBUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, BIG_BUF)
        except OSError:
            pass


class EchoServer:
    """UDP server on 127.0.0.1 that records (arrival time, peer, payload) and optionally echoes."""

    def __init__(self, reply=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _big_buffers(self.sock)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.addr = self.sock.getsockname()
        self.reply = reply
        self.received = []  # (monotonic time, peer, payload)
        self.lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.received.append((time.monotonic(), peer, data))
            if self.reply:
                try:
                    self.sock.sendto(data, peer)
                except OSError:
                    pass

    def snapshot(self):
        with self.lock:
            return list(self.received)

    def payloads(self):
        return [d for _, _, d in self.snapshot()]

    def peers(self):
        return [p for _, p, _ in self.snapshot()]

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()


class Proxy:
    """A running lossy-link; stderr goes to a file so it can never block on a full pipe."""

    def __init__(self, tmp_path, upstream, *args):
        self.stderr_path = tmp_path / "lossy-link.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [BINARY, "--listen", "127.0.0.1:0", "--upstream", "%s:%d" % upstream, *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        line = self._read_line(self.proc.stdout, 5.0)
        assert line.startswith(b"ready "), "no ready line, got %r; stderr: %s" % (line, self.stderr_text())
        host, port = line.split()[1].decode().rsplit(":", 1)
        self.addr = (host, int(port))
        self.t0 = time.monotonic()  # at or just after the proxy's own start time

    @staticmethod
    def _read_line(pipe, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([pipe], [], [], left)[0]:
                return buf
            chunk = os.read(pipe.fileno(), 1)
            if not chunk:
                return buf
            buf += chunk
        return buf

    def stderr_text(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def json_lines(self):
        return [json.loads(l) for l in self.stderr_text().splitlines() if l.startswith("{")]

    def stats(self):
        """Ask for stats with SIGUSR2 and return the new JSON line."""
        before = len(self.json_lines())
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            lines = self.json_lines()
            if len(lines) > before:
                return lines[-1]
            time.sleep(0.01)
        raise AssertionError("no stats line after SIGUSR2; stderr: " + self.stderr_text())

    def stop(self, sig=signal.SIGTERM):
        """Stop the proxy; return the final stats line. Asserts a clean exit."""
        self.proc.send_signal(sig)
        rc = self.proc.wait(5)
        self._stderr.close()
        self.proc.stdout.close()
        assert rc == 0, "exit status %d; stderr: %s" % (rc, self.stderr_text())
        lines = self.json_lines()
        assert lines, "no final stats; stderr: " + self.stderr_text()
        return lines[-1]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if not self._stderr.closed:
            self._stderr.close()
        if not self.proc.stdout.closed:
            self.proc.stdout.close()


@pytest.fixture(autouse=True)
def _binary_present():
    if not os.access(BINARY, os.X_OK):
        pytest.fail("lossy-link binary not found at %s (build it or set ET_LOSSY_LINK)" % BINARY)


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def sink():
    server = EchoServer(reply=False)
    yield server
    server.close()


@pytest.fixture
def proxies(tmp_path):
    started = []

    def start(upstream, *args):
        d = tmp_path / ("p%d" % len(started))
        d.mkdir()
        p = Proxy(d, upstream, *args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


def client_for(proxy):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _big_buffers(sock)
    sock.connect(proxy.addr)
    return sock


def send_numbered(sock, count, pace_every=20, pace_s=0.001, size=16):
    """Send COUNT datagrams carrying their index, pausing briefly so no kernel buffer overflows."""
    for i in range(count):
        sock.send(struct.pack("!I", i) + b"x" * (size - 4))
        if pace_every and i % pace_every == pace_every - 1:
            time.sleep(pace_s)


def recv_all(sock, quiet_s=0.3, limit_s=5.0):
    """Collect datagrams until none arrived for QUIET_S seconds."""
    out = []
    deadline = time.monotonic() + limit_s
    sock.settimeout(quiet_s)
    while time.monotonic() < deadline:
        try:
            out.append(sock.recv(65536))
        except socket.timeout:
            break
    return out


def wait_settled(server, quiet_s=0.3, limit_s=5.0):
    """Wait until SERVER has received nothing new for QUIET_S seconds."""
    deadline = time.monotonic() + limit_s
    last = -1
    while time.monotonic() < deadline:
        n = len(server.snapshot())
        if n == last:
            return
        last = n
        time.sleep(quiet_s)


def seqs(payloads):
    return [struct.unpack("!I", p[:4])[0] for p in payloads]


def udp_local_ports():
    ports = set()
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            ports.add(int(line.split()[1].split(":")[1], 16))
    return ports


def dropped(d):
    return sum(v for k, v in d.items() if k.startswith("dropped_"))


def assert_accounting(stats):
    """Once the queue is empty every datagram (and every duplicate) is forwarded or dropped."""
    assert stats["queue_len"] == 0
    for direction in ("up", "down"):
        d = stats[direction]
        assert d["queued"] == 0
        assert d["received"] + d["duplicated"] == d["forwarded"] + dropped(d), (direction, d)


# --------------------------------------------------------------------------------------------- tests


def test_help_and_bad_arguments():
    r = subprocess.run([BINARY, "--help"], capture_output=True, timeout=5)
    assert r.returncode == 0 and b"--listen" in r.stdout and b"--outage" in r.stdout
    good = ["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9"]
    bad = [
        [],
        ["--listen", "127.0.0.1:0"],
        ["--upstream", "127.0.0.1:9"],
        ["--listen", "nonsense", "--upstream", "127.0.0.1:9"],
        ["--listen", "127.0.0.1:70000", "--upstream", "127.0.0.1:9"],
        ["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:0"],
        ["--listen", "::1:5", "--upstream", "127.0.0.1:9"],
        good + ["--loss", "101"],
        good + ["--loss-up", "-1"],
        good + ["--loss-down", "nan"],
        good + ["--dup", "abc"],
        good + ["--delay-ms", "-5"],
        good + ["--delay-ms"],
        good + ["--jitter-ms", "1e9"],
        good + ["--seed", "-1"],
        good + ["--seed", "12x"],
        good + ["--outage", "5"],
        good + ["--outage", "5:0"],
        good + ["--outage", "a:b"],
        good + ["--rebind-every", "0"],
        good + ["--rate-kbps", "0"],
        good + ["--max-queue", "0"],
        good + ["--max-flows", "99999999999999999999999"],
        good + ["--no-such-option"],
        good + ["stray-positional"],
        good + ["--outage", "1:1"] * 65,
    ]
    for args in bad:
        r = subprocess.run([BINARY, *args], capture_output=True, timeout=5)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert b"lossy-link" in r.stderr and r.stdout == b"", (args, r.stderr, r.stdout)


def test_bind_failure_is_runtime_error():
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        r = subprocess.run(
            [BINARY, "--listen", "127.0.0.1:%d" % taken.getsockname()[1], "--upstream", "127.0.0.1:9"],
            capture_output=True,
            timeout=5,
        )
    finally:
        taken.close()
    assert r.returncode == 1 and b"cannot listen" in r.stderr


def test_clean_passthrough_ready_file_and_edge_sizes(echo, proxies, tmp_path):
    ready = tmp_path / "ready"
    p = proxies(echo.addr, "--ready-file", str(ready))
    assert ready.read_text() == "%s:%d\n" % p.addr
    c = client_for(p)
    # zero-length, a typical DTLS record and the largest UDP payload over IPv4
    sizes = [0, 1, 1200, 9000, 65507]
    payloads = [os.urandom(n) for n in sizes]
    for data in payloads:
        c.send(data)
        c.settimeout(3)
        assert c.recv(65536) == data
    st = p.stop(signal.SIGINT)
    assert st["up"]["received"] == len(sizes) and st["up"]["forwarded"] == len(sizes)
    assert st["down"]["forwarded"] == len(sizes)
    assert st["up"]["bytes_forwarded"] == sum(sizes)
    assert st["flows_active"] == 1 and len(st["flows"]) == 1
    assert st["flows"][0]["client"] == "%s:%d" % c.getsockname()
    assert_accounting(st)


def test_loss_up_rate_and_exact_accounting(sink, proxies):
    p = proxies(sink.addr, "--loss-up", "30", "--seed", "1")
    c = client_for(p)
    n = 2000
    send_numbered(c, n)
    wait_settled(sink)
    st = p.stop()
    got = len(sink.snapshot())
    assert st["up"]["received"] == n
    assert st["up"]["dropped_loss"] + st["up"]["forwarded"] == n
    assert got == st["up"]["forwarded"]
    # 30% of 2000: mean 600 lost, sd ~20.5; the band is over 6 sd wide each side
    assert 0.22 * n < st["up"]["dropped_loss"] < 0.38 * n
    assert_accounting(st)


def test_loss_down_rate(echo, proxies):
    p = proxies(echo.addr, "--loss-down", "40", "--seed", "2")
    c = client_for(p)
    n = 1000
    send_numbered(c, n)
    back = recv_all(c)
    st = p.stop()
    assert st["up"]["dropped_loss"] == 0 and st["up"]["forwarded"] == n
    assert st["down"]["received"] == n
    assert len(back) == st["down"]["forwarded"]
    assert 0.30 * n < st["down"]["dropped_loss"] < 0.50 * n
    assert len(set(seqs(back))) == len(back)  # nothing duplicated by accident
    assert_accounting(st)


def test_seed_makes_losses_reproducible(sink, proxies):
    def lost_set(seed):
        p = proxies(sink.addr, "--loss-up", "50", "--seed", str(seed))
        c = client_for(p)
        start = len(sink.snapshot())
        send_numbered(c, 300)
        wait_settled(sink)
        p.stop()
        c.close()
        arrived = set(seqs([d for _, _, d in sink.snapshot()[start:]]))
        return set(range(300)) - arrived

    a, b, other = lost_set(42), lost_set(42), lost_set(43)
    assert 100 < len(a) < 200
    assert a == b
    assert a != other


def test_delay_and_jitter_per_direction(echo, proxies):
    p = proxies(echo.addr, "--delay-up-ms", "120", "--delay-down-ms", "30", "--jitter-ms", "20", "--seed", "3")
    c = client_for(p)
    c.settimeout(3)
    rtts, one_way = [], []
    for i in range(8):
        start = time.monotonic()
        c.send(struct.pack("!I", i))
        assert seqs([c.recv(100)]) == [i]
        rtts.append(time.monotonic() - start)
        one_way.append(echo.snapshot()[-1][0] - start)
    p.stop()
    assert min(one_way) >= 0.120
    assert min(rtts) >= 0.150
    # jitter adds at most 20 ms per direction; the rest is slack for a busy 2-core machine
    assert sorted(rtts)[len(rtts) // 2] < 0.150 + 0.040 + 0.250


def test_duplication(sink, proxies):
    p = proxies(sink.addr, "--dup-up", "50", "--seed", "4")
    c = client_for(p)
    n = 400
    send_numbered(c, n)
    wait_settled(sink)
    st = p.stop()
    got = seqs(sink.payloads())
    counts = {}
    for s in got:
        counts[s] = counts.get(s, 0) + 1
    assert set(counts) == set(range(n))
    assert max(counts.values()) == 2
    extra = len(got) - n
    assert extra == st["up"]["duplicated"]
    assert 0.35 * n < extra < 0.65 * n
    assert_accounting(st)


def test_reordering(sink, proxies):
    p = proxies(sink.addr, "--reorder-up", "25", "--seed", "5")
    c = client_for(p)
    n = 300
    send_numbered(c, n, pace_every=1, pace_s=0.002)
    wait_settled(sink, quiet_s=0.4)
    st = p.stop()
    got = seqs(sink.payloads())
    assert sorted(got) == list(range(n))  # reordering neither loses nor duplicates
    descents = sum(1 for a, b in zip(got, got[1:]) if a > b)
    # each held packet swaps with the one after it: one adjacent inversion per reorder
    assert descents == st["up"]["reordered"]
    assert all(got[i] == got[i + 1] + 1 for i in range(n - 1) if got[i] > got[i + 1])
    assert 0.10 * n < descents < 0.35 * n
    assert st["up"]["reordered"] + st["up"]["reorder_timeouts"] <= n
    assert_accounting(st)


def test_reorder_hold_times_out_without_a_follower(sink, proxies):
    p = proxies(sink.addr, "--reorder-up", "100", "--reorder-hold-ms", "150")
    c = client_for(p)
    start = time.monotonic()
    c.send(b"alone")
    wait_settled(sink, quiet_s=0.4)
    got = sink.snapshot()
    st = p.stop()
    assert [d for _, _, d in got] == [b"alone"]
    assert got[0][0] - start >= 0.150
    assert st["up"]["reorder_timeouts"] == 1 and st["up"]["reordered"] == 0


def test_outage_drops_everything_then_recovers(echo, proxies):
    p = proxies(echo.addr, "--outage", "1:1")
    c = client_for(p)
    c.setblocking(False)
    sent = {}  # seq -> send time relative to the proxy's start (slightly underestimated)
    replies = set()
    i = 0
    while time.monotonic() - p.t0 < 3.0:
        sent[i] = time.monotonic() - p.t0
        c.send(struct.pack("!I", i))
        i += 1
        time.sleep(0.02)
        try:
            while True:
                replies.add(seqs([c.recv(100)])[0])
        except BlockingIOError:
            pass
    c.setblocking(True)
    replies.update(seqs(recv_all(c)))
    stats = p.stop()
    before = [s for s, t in sent.items() if t < 0.8]
    during = [s for s, t in sent.items() if 1.05 <= t <= 1.8]
    after = [s for s, t in sent.items() if t >= 2.3]
    assert before and during and after
    assert all(s in replies for s in before)
    assert not any(s in replies for s in during)
    assert all(s in replies for s in after)
    assert stats["up"]["dropped_outage"] >= len(during)
    assert stats["up"]["dropped_loss"] == 0 and stats["in_outage"] is False
    assert_accounting(stats)


def test_rebind_on_sigusr1(echo, proxies):
    p = proxies(echo.addr)
    c = client_for(p)
    c.settimeout(3)
    c.send(b"one")
    assert c.recv(100) == b"one"
    port1 = echo.peers()[-1][1]
    assert p.stats()["flows"][0]["upstream_port"] == port1
    p.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 3
    while p.stats()["rebinds"] < 1:
        assert time.monotonic() < deadline
    c.send(b"two")
    assert c.recv(100) == b"two"  # replies to the new port still reach the same client
    port2 = echo.peers()[-1][1]
    assert port2 != port1
    # the old socket is closed: no socket holds its port any more
    assert port1 not in udp_local_ports() and port2 in udp_local_ports()
    st = p.stop()
    assert st["rebinds"] == 1 and st["rebind_failures"] == 0
    assert st["flows"][0]["upstream_port"] == port2 and st["flows"][0]["rebinds"] == 1
    assert st["flows_created"] == 1  # same flow, new port: a NAT rebinding, not a new client
    # and the server's reply to the old port goes nowhere
    echo.sock.sendto(b"stale", ("127.0.0.1", port1))
    c.settimeout(0.3)
    with pytest.raises(socket.timeout):
        c.recv(100)


def test_rebind_every(echo, proxies):
    p = proxies(echo.addr, "--rebind-every", "0.4")
    c = client_for(p)
    c.setblocking(False)
    replies = 0
    n = 0
    fds_before = None
    while time.monotonic() - p.t0 < 1.5:
        if n == 1:
            fds_before = len(os.listdir("/proc/%d/fd" % p.proc.pid))
        c.send(struct.pack("!I", n))
        n += 1
        time.sleep(0.03)
        try:
            while True:
                c.recv(100)
                replies += 1
        except BlockingIOError:
            pass
    fds_after = len(os.listdir("/proc/%d/fd" % p.proc.pid))
    st = p.stop()
    assert fds_after == fds_before  # each rebind closes the socket it replaces
    ports = set(port for _, port in echo.peers())
    assert len(ports) >= 3 and st["rebinds"] >= 3
    assert len(ports) == st["rebinds"] + 1 or len(ports) == st["rebinds"]
    # a reply in flight across a rebind is lost (the old socket is closed); nearly all arrive
    assert replies >= 0.8 * n


def test_flows_are_separate_and_capped(echo, proxies):
    p = proxies(echo.addr, "--max-flows", "2")
    clients = [client_for(p) for _ in range(3)]
    for i, c in enumerate(clients[:2]):
        c.settimeout(3)
        c.send(b"c%d" % i)
        assert c.recv(100) == b"c%d" % i
    clients[2].send(b"c2")
    clients[2].settimeout(0.3)
    with pytest.raises(socket.timeout):
        clients[2].recv(100)
    st = p.stop()
    assert len(set(echo.peers())) == 2
    assert st["flows_active"] == 2 and st["flows_rejected"] == 1 and st["up"]["dropped_no_flow"] == 1
    assert sorted(f["client"] for f in st["flows"]) == sorted("%s:%d" % c.getsockname() for c in clients[:2])
    assert_accounting(st)


def test_idle_flow_expires_and_comes_back_on_new_port(echo, proxies):
    p = proxies(echo.addr, "--flow-idle-s", "0.5")
    c = client_for(p)
    c.settimeout(3)
    c.send(b"a")
    assert c.recv(10) == b"a"
    deadline = time.monotonic() + 4
    while p.stats()["flows_active"] != 0:
        assert time.monotonic() < deadline, "flow never expired"
        time.sleep(0.1)
    c.send(b"b")
    assert c.recv(10) == b"b"
    st = p.stop()
    assert st["flows_expired"] == 1 and st["flows_created"] == 2
    assert echo.peers()[0] != echo.peers()[1]


def test_queue_cap_counts_drops(sink, proxies):
    p = proxies(sink.addr, "--delay-ms", "300", "--max-queue", "10")
    c = client_for(p)
    send_numbered(c, 30, pace_every=0)
    time.sleep(0.05)
    mid = p.stats()
    assert mid["queue_len"] == 10 and mid["up"]["queued"] == 10 and mid["queue_peak"] == 10
    wait_settled(sink, quiet_s=0.4)
    st = p.stop()
    assert seqs(sink.payloads()) == list(range(10))
    assert st["up"]["dropped_queue"] == 20 and st["up"]["forwarded"] == 10
    assert_accounting(st)


def test_rate_cap(sink, proxies):
    # 100 kbit/s; 1222 bytes payload + 28 header = 10,000 bits = 100 ms per datagram
    p = proxies(sink.addr, "--rate-up-kbps", "100")
    c = client_for(p)
    start = time.monotonic()
    send_numbered(c, 10, pace_every=0, size=1222)
    wait_settled(sink, quiet_s=0.4)
    got = sink.snapshot()
    st = p.stop()
    assert seqs([d for _, _, d in got]) == list(range(10))
    assert got[-1][0] - start >= 0.95
    assert got[-1][0] - got[0][0] >= 0.85
    assert st["up"]["dropped_queue"] == 0


def test_rate_buffer_overflow_drops(sink, proxies):
    p = proxies(sink.addr, "--rate-up-kbps", "100", "--rate-buffer-ms", "250")
    c = client_for(p)
    send_numbered(c, 10, pace_every=0, size=1222)
    time.sleep(0.1)
    mid = p.stats()
    # arrivals meet a backlog of 0, ~100 and ~200 ms and are admitted; from ~300 ms on the buffer is full
    assert mid["up"]["dropped_queue"] == 7
    wait_settled(sink, quiet_s=0.4)
    st = p.stop()
    assert seqs(sink.payloads()) == [0, 1, 2] and st["up"]["forwarded"] == 3
    assert_accounting(st)


def test_stats_signal_file_and_exit(echo, proxies, tmp_path):
    stats_file = tmp_path / "stats.json"
    p = proxies(echo.addr, "--stats-file", str(stats_file), "--loss", "20", "--dup", "20", "--seed", "6")
    first = json.loads(stats_file.read_text())  # written before "ready"
    assert first["up"]["received"] == 0 and first["seed"] == 6
    c = client_for(p)
    n = 200
    send_numbered(c, n)
    back = recv_all(c)
    time.sleep(1.2)  # at least one periodic rewrite
    periodic = json.loads(stats_file.read_text())
    assert periodic["seq"] > first["seq"] and periodic["up"]["received"] == n
    sig = p.stats()
    assert sig["up"]["received"] == n
    on_file = json.loads(stats_file.read_text())
    assert on_file["seq"] >= sig["seq"]
    st = p.stop()
    assert json.loads(stats_file.read_text()) == st
    up, down = st["up"], st["down"]
    assert up["received"] == n and up["dropped_loss"] > 0 and up["duplicated"] > 0
    assert down["received"] == up["forwarded"] == len(echo.snapshot())
    assert down["forwarded"] == len(back)
    assert up["bytes_received"] == 16 * n
    for key in ("flows_active", "flows_created", "rebinds", "queue_len", "queue_peak", "uptime_s", "in_outage"):
        assert key in st
    for d in (up, down):
        for key in ("dropped_outage", "dropped_queue", "dropped_no_flow", "dropped_send", "dropped_oversize",
                    "reordered", "reorder_timeouts", "bytes_forwarded"):
            assert key in d
    assert_accounting(st)


def test_sigterm_with_packets_queued_exits_cleanly(sink, proxies):
    p = proxies(sink.addr, "--delay-ms", "5000")
    c = client_for(p)
    send_numbered(c, 50, pace_every=0, size=60000)
    time.sleep(0.1)
    st = p.stop()
    assert st["up"]["received"] == 50 and st["up"]["queued"] == 50 and st["queue_bytes"] == 50 * 60000
    assert sink.snapshot() == []


# ------------------------------------------------------------------- the chaos.py helper module


def test_chaos_helpers(echo, tmp_path):
    import random

    import chaos

    assert chaos.profile_args("weak_cellular") == ["--delay-ms", "300", "--loss", "30", "--outage", "20:60"]
    assert chaos.profile_args("weak_cellular", loss=None, outage=["1:2", (3, 0.5)]) == [
        "--delay-ms", "300", "--outage", "1:2", "--outage", "3:0.5"]
    with pytest.raises(ValueError):
        chaos.profile_args("no-such-profile")
    with pytest.raises(ValueError):
        chaos.profile_args({"los": 30})
    for name in chaos.PROFILES:  # every named profile is accepted by the real binary
        with chaos.start_lossy_link(echo.addr, profile=name, workdir=tmp_path / name) as link:
            assert link.stats()["seq"] >= 2

    link = chaos.start_lossy_link(echo.addr, profile="mild", workdir=tmp_path / "link", seed=9, loss=0,
                                  outage=[(30, 1)])
    try:
        assert link.seed == 9 and "seed=9" in repr(link)
        (start, end), = link.outage_windows()
        assert 29.9 < start - link.started_at < 30.1 and end - start == 1
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.connect(link.addr)
        c.settimeout(3)
        c.send(b"hello")
        assert c.recv(100) == b"hello"
        st = link.stats()
        assert st["seed"] == 9 and st["up"]["received"] == 1 and st["down"]["forwarded"] == 1
        client = "%s:%d" % c.getsockname()
        port_before = link.upstream_ports()[client]
        assert port_before == echo.peers()[-1][1]
        after = link.rebind()
        assert after["rebinds"] == 1 and link.upstream_ports()[client] != port_before
        c.send(b"again")
        assert c.recv(100) == b"again" and echo.peers()[-1][1] == link.upstream_ports()[client]
        final = link.stop()
        assert final["up"]["received"] == 2 and link.final_stats == final and not link.alive()
    finally:
        link.kill()

    # kill -9 helpers, on a stand-in process
    rng = random.Random(1)
    victim = subprocess.Popen(["sleep", "30"])
    start = time.monotonic()
    delay = chaos.kill_at_random(victim, rng, 0.1, 0.3)
    assert delay is not None and 0.1 <= delay <= 0.3 and time.monotonic() - start >= 0.1
    assert victim.returncode == -signal.SIGKILL
    quick = subprocess.Popen(["true"])
    quick.wait()
    assert chaos.kill_at_random(quick, rng, 0, 0.05) is None  # already gone: the trial is void

    victim = subprocess.Popen(["sleep", "30"])
    thread, result = chaos.kill_at_random_async(victim, rng, 0.05, 0.1)
    thread.join(5)
    assert result["delay"] is not None and victim.returncode == -signal.SIGKILL

    flag = tmp_path / "flag"
    victim = subprocess.Popen(["sh", "-c", "sleep 0.2; touch %s; sleep 30" % flag])
    assert chaos.kill_when(victim, flag.exists, timeout=5)
    assert victim.returncode == -signal.SIGKILL

    a = [(i, s, r.random()) for i, s, r in chaos.trial_rngs(3, base_seed=100)]
    assert [s for _, s, _ in a] == [100, 101, 102]
    assert a == [(i, s, r.random()) for i, s, r in chaos.trial_rngs(3, base_seed=100)]
