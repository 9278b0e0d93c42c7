"""The collector against stock libcoap: real edgetrace-collector, real coap-client (built from the
same libcoap 4.3.5 source, $ET_HOST_DEPS/bin/coap-client) over DTLS PSK, real SQLite.

Snapshot files are made by the agent itself (`edgetrace-agent push --gen-out DIR`), so the bytes
are the real wire envelopes. Covered here:
  - upload with a PSK, single datagram and block-wise (-b 64); stored bytes == file bytes
  - a duplicate is acknowledged (2.04 "dup") and stored once
  - wrong PSK / unknown identity: no session, nothing stored, collector keeps serving
  - the device identity comes from the DTLS session: a snapshot claiming another device gets 4.03
  - malformed bodies: wrong or missing Content-Format (4.15), not an envelope, corrupt zstd and
    corrupt CBOR (4.00), a schema violation (4.22), an unknown envelope or schema version (5.01),
    oversized (4.13); each counted and logged
  - malformed CoAP datagrams on the (test-only) plain port and garbage on the DTLS port
  - kill -9 of the collector while coap-client uploads: every snapshot that got a 2.01/2.04 is in
    the database after the restart
  - SIGUSR1 prints the counters, SIGTERM exits 0

Run: /usr/bin/python3 -m pytest tests/integration/test_collector.py
"""

import json
import os
import random
import re
import shlex
import signal
import socket
import sqlite3
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import AGENT, BUILD, COLLECTOR, ROOT, wait_for

HOST_DEPS = Path(os.environ.get("ET_HOST_DEPS", ""))
COAP_CLIENT = HOST_DEPS / "bin" / "coap-client"
# tools/et-push.c (the agent's `push` loop plus the test harness's made-up snapshots, kept out
# of the device binary) makes the snapshot files; ET_PUSH_CMD overrides the argv prefix.
PUSH = shlex.split(os.environ.get("ET_PUSH_CMD", "")) or [str(BUILD / "host" / "et-push")]


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_creds(path):
    out = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.startswith(";"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


class Collector:
    def __init__(self, workdir, extra=()):
        self.workdir = Path(workdir)
        self.db = self.workdir / "collector.db"
        self.port = free_udp_port()
        self.plain_port = free_udp_port()
        self.extra = list(extra)
        self.proc = None
        self.log = self.workdir / "collector.log"

    def provision(self, device):
        out = self.workdir / f"{device}.cred"
        r = subprocess.run([str(COLLECTOR), "provision", device, "--db", str(self.db), "--out", str(out),
                            "--collector", f"coaps://127.0.0.1:{self.port}"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return read_creds(out) | {"path": str(out)}

    def start(self):
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen([str(COLLECTOR), "serve", "--db", str(self.db), "--listen",
                                      f"127.0.0.1:{self.port}", "--insecure-plain-listen", f"127.0.0.1:{self.plain_port}",
                                      "--stats-interval", "0", *self.extra],
                                     stdout=subprocess.PIPE, stderr=self.logf, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("ready "), f"collector did not start: {line!r} {self.log.read_text()}"
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def rows(self, sql, args=()):
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def query(self, what, *args):
        r = subprocess.run([str(COLLECTOR), what, "--db", str(self.db), *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout


@pytest.fixture
def collector(tmp_path):
    if not COAP_CLIENT.exists():
        pytest.fail(f"stock coap-client not found at {COAP_CLIENT} (set ET_HOST_DEPS; make host-deps)")
    c = Collector(tmp_path)
    c.creds = c.provision("gw-1")
    c.start()
    yield c
    c.stop(signal.SIGKILL)


def gen_snapshots(tmp_path, creds, n, pad=0, name="gen"):
    out = tmp_path / name
    cmd = PUSH + ["--gen-out", str(out), "--synthetic", str(n), "--credentials", creds["path"]]
    if pad:
        cmd += ["--pad", str(pad)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{cmd}: {r.stderr}"
    files = sorted(out.glob("*.snap"))
    assert len(files) == n
    return files


def coap_post(port, creds, path_or_bytes, tmp_path, fmt="42", block=None, key=None, identity=None, timeout=30):
    if isinstance(path_or_bytes, (bytes, bytearray)):
        f = tmp_path / f"body-{random.getrandbits(32):08x}"
        f.write_bytes(path_or_bytes)
    else:
        f = path_or_bytes
    cmd = [str(COAP_CLIENT), "-m", "post", "-f", str(f), "-u", identity or creds["device_id"], "-k",
           "0x" + (key or creds["psk"]), "-B", str(timeout)]
    if fmt is not None:
        cmd += ["-t", fmt]
    if block:
        cmd += ["-b", str(block)]
    cmd.append(f"coaps://127.0.0.1:{port}/s")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 15)
    return r.stdout + r.stderr


def snapshot_id(path):
    return Path(path).stem


def test_upload_psk_single_and_blockwise_and_dedup(collector, tmp_path):
    files = gen_snapshots(tmp_path, collector.creds, 2)
    out = coap_post(collector.port, collector.creds, files[0], tmp_path)
    assert f"new {snapshot_id(files[0])}" in out, out
    out = coap_post(collector.port, collector.creds, files[0], tmp_path)
    assert f"dup {snapshot_id(files[0])}" in out, out  # acknowledged as success, not stored twice
    big = gen_snapshots(tmp_path, collector.creds, 1, pad=3000, name="big")[0]
    assert big.stat().st_size > 3000
    out = coap_post(collector.port, collector.creds, big, tmp_path, block=64)  # ~50 Block1 blocks
    assert f"new {snapshot_id(big)}" in out, out
    rows = collector.rows("SELECT snapshot_id, device, payload FROM snapshots ORDER BY id")
    assert [r[0] for r in rows] == [snapshot_id(files[0]), snapshot_id(big)]
    assert all(r[1] == "gw-1" for r in rows)
    assert rows[0][2] == files[0].read_bytes() and rows[1][2] == big.read_bytes()
    # the query tool sees them, and the synthetic finding twice merged into one
    js = collector.query("findings", "--json")
    import json
    findings = json.loads(js)
    assert len(findings) == 1
    f = findings[0]
    for key in ("device", "target", "kind", "confidence", "function", "file", "line", "first_seen", "last_seen",
                "fingerprint"):
        assert key in f, key
    assert f["snapshots"] == 2 and f["device"] == "gw-1" and f["kind"] == "goroutine-leak"
    assert "gw-1" in collector.query("devices")


def test_wrong_psk_and_unknown_identity_are_refused(collector, tmp_path):
    files = gen_snapshots(tmp_path, collector.creds, 1)
    wrong = "%064x" % (int(collector.creds["psk"], 16) ^ 1)
    out = coap_post(collector.port, collector.creds, files[0], tmp_path, key=wrong, timeout=8)
    assert "new " not in out
    out = coap_post(collector.port, collector.creds, files[0], tmp_path, identity="gw-nobody", timeout=8)
    assert "new " not in out
    assert collector.rows("SELECT count(*) FROM snapshots")[0][0] == 0
    assert collector.alive()
    out = coap_post(collector.port, collector.creds, files[0], tmp_path)
    assert "new " in out, out
    assert "unknown device 'gw-nobody'" in collector.log.read_text()


def test_identity_comes_from_the_session(collector, tmp_path):
    other = collector.provision("gw-2")
    files = gen_snapshots(tmp_path, collector.creds, 1)  # claims device gw-1
    out = coap_post(collector.port, other, files[0], tmp_path)  # but the session is gw-2's
    # stored, under the session's identity only (a 4.03 would block gw-2's spool for ever)
    assert "new " in out, out
    assert collector.rows("SELECT device FROM snapshots") == [("gw-2",)]
    assert collector.rows("SELECT DISTINCT device FROM targets") == [("gw-2",)]
    collector.proc.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: "identity_mismatch=1" in collector.log.read_text(), timeout=5)


def test_malformed_bodies_get_clean_rejections(tmp_path):
    c = Collector(tmp_path, extra=["--max-body", "4096"])
    creds = c.provision("gw-1")
    c.start()
    try:
        good = gen_snapshots(tmp_path, creds, 1)[0].read_bytes()
        hdr_zstd = bytes([0x45, 0x54, 1, 0x01])
        hdr_raw = bytes([0x45, 0x54, 1, 0x00])
        cases = [
            ("not an envelope", os.urandom(100), "42", "4.00"),
            ("wrong content format", good, "0", "4.15"),
            ("no content format", good, None, "4.15"),
            ("corrupt zstd", hdr_zstd + b"\x28\xb5\x2f\xfd" + os.urandom(60), "42", "4.00"),
            ("not zstd at all", hdr_zstd + os.urandom(60), "42", "4.00"),
            ("truncated CBOR", good[: len(good) // 2] if good[3] == 0 else hdr_raw + b"\xa5\x00", "42", "4.00"),
            ("CBOR of the wrong shape", hdr_raw + b"\x83\x01\x02\x03", "42", "4.22"),
            ("unknown envelope flags", bytes([0x45, 0x54, 1, 0x80]) + good[4:], "42", "5.01"),
            ("unknown envelope version", bytes([0x45, 0x54, 9, 0x00]) + b"\xa1\x00\x01", "42", "5.01"),
            ("unknown schema version", hdr_raw + b"\xa2\x00\x18\x63\x18\x28\x01", "42", "5.01"),
            ("schema violation", hdr_raw + b"\xa2\x00\x01\x18\x28\x01", "42", "4.22"),
            ("over the size cap", hdr_raw + os.urandom(6000), "42", "4.13"),
        ]
        for name, body, fmt, code in cases:
            out = coap_post(c.port, creds, body, tmp_path, fmt=fmt, block=256)
            assert code in out, f"{name}: expected {code}, got {out!r}"
            assert c.alive(), name
        assert c.rows("SELECT count(*) FROM snapshots")[0][0] == 0
        out = coap_post(c.port, creds, good, tmp_path)
        assert "new " in out, out
        c.proc.send_signal(signal.SIGUSR1)
        assert wait_for(lambda: "stats requests=" in c.log.read_text(), timeout=5)
        stats = [l for l in c.log.read_text().splitlines() if "stats requests=" in l][-1]
        counts = dict(re.findall(r"(\w+)=(\d+)", stats))
        assert int(counts["bad_format"]) >= 2 and int(counts["bad_request"]) >= 5 and int(counts["too_large"]) >= 1
        assert int(counts["unreadable"]) == 3
        assert int(counts["new"]) == 1
    finally:
        assert c.stop() == 0  # SIGTERM: clean exit


def coap_header(ver=1, typ=0, tkl=0, code=0x02, mid=0x1234):
    return bytes([(ver << 6) | (typ << 4) | tkl, code]) + struct.pack(">H", mid)


def test_malformed_coap_datagrams(collector, tmp_path):
    """Raw datagrams on the plain test port and on the DTLS port: no crash, valid traffic still served."""
    bad = [
        b"",
        b"\x40",
        coap_header(ver=2),
        coap_header(tkl=9) + b"\x00" * 9,
        coap_header(tkl=8) + b"\x01",                         # token shorter than TKL
        coap_header() + b"\xf0",                               # option delta 15 (reserved)
        coap_header() + b"\xd0",                               # extended delta missing
        coap_header() + b"\xb1s\xff",                          # payload marker without payload
        coap_header() + b"\xb1s\x11\x2a\xff" + os.urandom(30),  # POST /s, CF 42, garbage, no device
        coap_header(code=0x02) + b"\xb1s\x11\x2a\xd1\x02\x01\xff" + b"x" * 16,  # Block1 with a short block
        os.urandom(1200),
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        for d in bad:
            s.sendto(d, ("127.0.0.1", collector.plain_port))
            s.sendto(d, ("127.0.0.1", collector.port))
            try:
                s.recv(2048)
            except socket.timeout:
                pass
        # a POST without an identity on the plain port: 4.01 (never stored)
        s.sendto(coap_header(tkl=1, mid=7) + b"\x33" + b"\xb1s\x11\x2a\xff" + b"ET\x01\x00\xa0", ("127.0.0.1", collector.plain_port))
        reply = s.recv(2048)
        assert reply[1] == (4 << 5 | 1), reply
        # Block1 (plain port, device named by the test-only query): a body that starts at block 1
        # is 4.08, a Size1 over the cap is 4.13 before anything is buffered
        opts = b"\xb1s" + b"\x11\x2a" + b"\x36d=gw-1"
        s.sendto(coap_header(tkl=1, mid=8) + b"\x34" + opts + b"\xc1\x1a" + b"\xff" + b"x" * 64,
                 ("127.0.0.1", collector.plain_port))
        assert s.recv(2048)[1] == (4 << 5 | 8)
        s.sendto(coap_header(tkl=1, mid=9) + b"\x35" + opts + b"\xc1\x0a" + b"\xd4\x14\x7f\xff\xff\xff" + b"\xff" +
                 b"x" * 64, ("127.0.0.1", collector.plain_port))
        assert s.recv(2048)[1] == (4 << 5 | 13)
    assert collector.alive()
    files = gen_snapshots(tmp_path, collector.creds, 1)
    assert "new " in coap_post(collector.port, collector.creds, files[0], tmp_path)


def test_kill9_during_ingest_loses_nothing_acknowledged(tmp_path):
    """coap-client uploads one snapshot after another; during many of the uploads the collector is
    SIGKILLed a random few milliseconds in (mid-handshake, mid-request, mid-commit) and restarted.
    Every snapshot that got a success answer must be in the database afterwards."""
    c = Collector(tmp_path)
    creds = c.provision("gw-1")
    c.start()
    files = gen_snapshots(tmp_path, creds, 60)
    acked, kills = [], 0
    rng = random.Random(4)
    try:
        for f in files:
            cmd = [str(COAP_CLIENT), "-m", "post", "-t", "42", "-f", str(f), "-u", "gw-1", "-k",
                   "0x" + creds["psk"], "-B", "3", f"coaps://127.0.0.1:{c.port}/s"]
            client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if rng.random() < 0.5:
                time.sleep(rng.uniform(0.0, 0.02))
                c.stop(signal.SIGKILL)
                kills += 1
            out, _ = client.communicate(timeout=20)
            if re.search(r"\b(new|dup) " + snapshot_id(f), out):
                acked.append(snapshot_id(f))
            if not c.alive():
                c.start()
        c.stop(signal.SIGKILL)
        c.start()
        stored = {r[0] for r in c.rows("SELECT snapshot_id FROM snapshots")}
    finally:
        c.stop(signal.SIGKILL)
    assert kills >= 15
    assert len(acked) >= 20
    missing = [a for a in acked if a not in stored]
    assert not missing, f"acknowledged but lost after kill -9: {missing}"


def test_serve_from_config_file(tmp_path):
    """`serve -c collector.conf`: the INI file sets the database, the address and the body cap."""
    if not COAP_CLIENT.exists():
        pytest.fail(f"stock coap-client not found at {COAP_CLIENT}")
    db = tmp_path / "conf.db"
    port = free_udp_port()
    creds_path = tmp_path / "gw-9.cred"
    r = subprocess.run([str(COLLECTOR), "provision", "gw-9", "--db", str(db), "--out", str(creds_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    creds = read_creds(creds_path) | {"path": str(creds_path)}
    conf = tmp_path / "collector.conf"
    conf.write_text(f"[collector]\ndb = {db}\nlisten = 127.0.0.1:{port}\nmax_body = 2K\ngroup_commit = yes\n"
                    "stats_interval = 1\n")
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([str(COLLECTOR), "serve", "-c", str(conf)], stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert proc.stdout.readline().startswith("ready 127.0.0.1:%d" % port)
        small = gen_snapshots(tmp_path, creds, 1)[0]
        assert "new " in coap_post(port, creds, small, tmp_path)
        big = gen_snapshots(tmp_path, creds, 1, pad=3000, name="big")[0]
        assert "4.13" in coap_post(port, creds, big, tmp_path, block=512)
        # stats_interval = 1: counters appear in the log without a signal
        assert wait_for(lambda: "stats requests=" in (tmp_path / "serve.log").read_text(), timeout=5)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    bad = tmp_path / "bad.conf"
    bad.write_text("[collector]\nmax_body = lots\n")
    r = subprocess.run([str(COLLECTOR), "serve", "-c", str(bad)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "line 2" in r.stderr


def test_kill9_under_load_loses_nothing_acknowledged(tmp_path):
    """Group commit under load: 16 DTLS sessions x 4 POSTs in flight (tools/bench/ingest_bench), the
    collector SIGKILLed mid-stream. Every snapshot that got a 2.01/2.04 must be in the database;
    an answer sent before its batch's COMMIT returned would show up here as a loss."""
    bench = BUILD / "host" / "ingest_bench"
    bench = Path(os.environ.get("ET_INGEST_BENCH", bench))
    if not bench.exists():
        pytest.fail(f"{bench} not built (make host-tools)")
    c = Collector(tmp_path)
    creds = c.provision("gw-1")
    c.start()
    try:
        acked_file = tmp_path / "acked"
        gen = subprocess.Popen([str(bench), "--url", f"coaps://127.0.0.1:{c.port}/s", "--identity", "gw-1", "--psk",
                                creds["psk"], "--sessions", "16", "--window", "4", "--count", "200000",
                                "--max-seconds", "8", "--acked-out", str(acked_file)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # Kill mid-stream, not mid-handshake: on a loaded machine the 16 DTLS handshakes alone
        # can take seconds. The bench says when they are done.
        lines = []
        deadline = time.monotonic() + 60
        for line in gen.stdout:
            lines.append(line)
            if "sessions up" in line or time.monotonic() > deadline:
                break
        assert any("sessions up" in l for l in lines), "".join(lines)
        time.sleep(2.0)
        c.stop(signal.SIGKILL)
        out, _ = gen.communicate(timeout=60)
        out = "".join(lines) + out
        acked = acked_file.read_text().split()
        c.start()
        stored = {r[0] for r in c.rows("SELECT snapshot_id FROM snapshots")}
        commits_log = c.log.read_text()
    finally:
        c.stop(signal.SIGKILL)
    assert len(acked) >= 500, f"too few answers before the kill to mean anything: {out}"
    missing = [a for a in acked if a not in stored]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged snapshots lost after kill -9"
    assert "group commit" in commits_log


def _make_pki(d):
    """A test CA and EC P-256 certificates for the collector and two devices (openssl CLI)."""
    def run(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    run("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=edgetrace-test-ca", "-days", "2", "-out", "ca.pem")
    for name in ("collector", "gw-1", "gw-unknown"):
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key")
        run("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-out", f"{name}.pem")


@pytest.mark.skipif(subprocess.run(["which", "openssl"], capture_output=True).returncode != 0,
                    reason="openssl CLI not installed")
def test_certificates_instead_of_psk(tmp_path):
    """Optional PKI: the device id is the client certificate's CN (validated against pki_ca, device
    provisioned); an unprovisioned certificate gets 4.01; PSK devices keep working on the same port."""
    _make_pki(tmp_path)
    c = Collector(tmp_path, extra=["--pki-cert", str(tmp_path / "collector.pem"), "--pki-key",
                                   str(tmp_path / "collector.key"), "--pki-ca", str(tmp_path / "ca.pem")])
    creds = c.provision("gw-1")
    c.start()
    try:
        def push(cert, spool, n):
            cmd = PUSH + ["--credentials", creds["path"], "--collector", f"coaps://127.0.0.1:{c.port}", "--spool",
                          str(tmp_path / spool), "--synthetic", str(n), "--timeout", "8", "--json", "--ack-timeout-ms",
                          "500", "--max-retransmit", "2"]
            if cert:
                cmd += ["--pki-cert", str(tmp_path / f"{cert}.pem"), "--pki-key", str(tmp_path / f"{cert}.key"),
                        "--pki-ca", str(tmp_path / "ca.pem"), "--pki-server-name", "collector"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            return r, json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])

        r, st = push("gw-1", "s1", 2)
        assert r.returncode == 0 and st["acked_new"] == 2, (st, r.stderr[-1000:])
        r, st = push("gw-unknown", "s2", 1)
        assert r.returncode == 1 and st["refused"] >= 1 and st["acked_new"] == 0, st
        r, st = push(None, "s3", 1)  # PSK on the same endpoint
        assert r.returncode == 0 and st["acked_new"] == 1, st
        assert c.rows("SELECT device, count(*) FROM snapshots GROUP BY device") == [("gw-1", 3)]
        assert "client certificate for unknown device 'gw-unknown'" in c.log.read_text()
    finally:
        c.stop(signal.SIGKILL)


def coap_request(mid, token, options, payload=b""):
    """A CON POST with options [(number, value bytes)] in ascending order."""
    out = bytearray([0x40 | len(token), 0x02]) + struct.pack(">H", mid) + token
    prev = 0
    for num, val in options:
        delta, length = num - prev, len(val)
        prev = num

        def nib(v):
            return (v, b"") if v < 13 else (13, bytes([v - 13])) if v < 269 else (14, struct.pack(">H", v - 269))
        dn, dx = nib(delta)
        ln, lx = nib(length)
        out += bytes([dn << 4 | ln]) + dx + lx + val
    if payload:
        out += b"\xff" + payload
    return bytes(out)


def uint_opt(v):
    return v.to_bytes((v.bit_length() + 7) // 8, "big") if v else b""


def test_block1_delayed_block0_is_not_spliced(collector, tmp_path):
    """Two bodies from one session (one source port): body X starts, body Y starts under another
    token, X's block 0 arrives again late, then the rest of Y. Reassembly keyed per session
    alone spliced X's block 0 into Y (4.00 or a corrupt row); keyed per token, Y is stored whole,
    and X completes after it. A finished body's buffer is freed at once: once both are stored the
    stats show no reassembly memory held, without waiting for the session to expire."""
    x, y = [f.read_bytes() for f in gen_snapshots(tmp_path, collector.creds, 2)]
    assert len(x) > 128 and len(y) > 128
    szx, bs = 2, 64
    mids = iter(range(100, 10000))

    def block(tok, body, num):
        more = (num + 1) * bs < len(body)
        opts = [(11, b"s"), (12, bytes([42])), (15, b"d=gw-1"), (27, uint_opt(num << 4 | more << 3 | szx))]
        return coap_request(next(mids), tok, opts, body[num * bs:(num + 1) * bs])

    def nblocks(body):
        return (len(body) + bs - 1) // bs

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)

        def send(d):
            s.sendto(d, ("127.0.0.1", collector.plain_port))
            r = s.recv(2048)
            return r[1], r[r.index(b"\xff") + 1:].decode() if b"\xff" in r else ""

        assert send(block(b"\x01", x, 0))[0] == 0x5F       # 2.31
        assert send(block(b"\x02", y, 0))[0] == 0x5F
        assert send(block(b"\x01", x, 0))[0] == 0x5F       # X's block 0 again, late
        for n in range(1, nblocks(y)):
            code, text = send(block(b"\x02", y, n))
        assert code == 0x41 and text.startswith("new "), (hex(code), text)  # 2.01
        for n in range(1, nblocks(x)):
            code, text = send(block(b"\x01", x, n))
        assert code == 0x41, (hex(code), text)
    rows = collector.rows("SELECT payload FROM snapshots ORDER BY id")
    assert [r[0] for r in rows] == [y, x]
    collector.proc.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: "stats requests=" in collector.log.read_text(), timeout=5)
    stats = [l for l in collector.log.read_text().splitlines() if "stats requests=" in l][-1]
    counts = dict(re.findall(r"(\w+)=(\d+)", stats))
    assert counts["reassembly_bytes"] == "0" and counts["reassembly_bodies"] == "0", stats


def test_plain_listen_only_by_an_insecure_flag(tmp_path):
    """Unauthenticated plain CoAP (device named by ?d=) is refused in the config file, so a
    test setting cannot slip into a production config; the --insecure-plain-listen flag turns it
    on and the collector says so loudly at start."""
    conf = tmp_path / "collector.conf"
    conf.write_text(f"[collector]\ndb = {tmp_path / 'c.db'}\nlisten = 127.0.0.1:{free_udp_port()}\n"
                    f"plain_listen = 127.0.0.1:{free_udp_port()}\n")
    r = subprocess.run([str(COLLECTOR), "serve", "-c", str(conf)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "plain_listen is not accepted in a config file" in r.stderr, r.stderr
    r = subprocess.run([str(COLLECTOR), "serve", "--db", str(tmp_path / "c.db"), "--plain-listen", "127.0.0.1:1"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "unknown option '--plain-listen'" in r.stderr
    c = Collector(tmp_path)  # starts with --insecure-plain-listen
    c.start()
    try:
        log = c.log.read_text()
        assert "WARNING: INSECURE: plain CoAP on coap://127.0.0.1:%d" % c.plain_port in log, log
    finally:
        c.stop()
