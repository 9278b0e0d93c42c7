"""kill -9 during spooling loses nothing: a driver appends (fsync policy "always") and acks in
a loop and is SIGKILLed at random points, 60 times in a row on the same spool directory.
After every kill the spool is reopened (the agent's recovery path) and:
  - every record reported durable ("D id") and not acked is present, exactly once;
  - at most ACK_BOUND records reported acked ("A id") come back (acks are persisted lazily;
    the collector dedups the resend);
  - the only record allowed to be missing is the one whose ack was in flight ("K id");
  - the only record allowed to appear unreported is the one whose append was in flight;
  - every payload length matches what the driver wrote (CRC-checked by the spool).

The driver is tools/spool-crashtest.c (a test tool, not in the device binary): build/host/
spool-crashtest from `make host-tools`, else built here against the host deps. The same test
runs its 32-bit armv7 build (BeagleBone, `make BOARD=bbb unit-cross`) under qemu-user.
A kill -9 cannot lose what the kernel already has; power loss is tested in
tests/unit/test_spool_powerloss.c."""
import shlex
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("ET_ROOT", Path(__file__).resolve().parents[2]))
BUILD = Path(os.environ.get("ET_BUILD", ROOT / "build"))
AGENT = Path(os.environ.get("ET_AGENT", BUILD / "x86_64" / "edgetrace-agent"))
HOST_DEPS = os.environ.get("ET_HOST_DEPS", "")
TRIALS = int(os.environ.get("ET_SPOOL_CRASH_TRIALS", "60"))
ACK_BOUND = 16  # spool_params.ack_persist_every default


def torture_len(i):
    return 40 + (i * 2654435761) % 1960


def agent_supports_spool(cmd, tmp):
    try:
        r = subprocess.run(cmd + ["check", "--dir", str(tmp / "probe")], capture_output=True, text=True,
                           timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and r.stdout.startswith("S ")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spooldrv")
    built = BUILD / "host" / "spool-crashtest"  # `make host-tools`
    if built.exists() and agent_supports_spool([str(built)], tmp):
        return [str(built)]
    exe = tmp / "spool-crashtest"
    inc = [f"-I{HOST_DEPS}/include"] if HOST_DEPS else []
    lib = [f"-L{HOST_DEPS}/lib"] if HOST_DEPS else []
    src = ["tools/spool-crashtest.c", "firmware/src/spool.c", "firmware/src/spool_io.c", "firmware/src/spool_state.c",
           "firmware/src/base.c"]
    cc = ["gcc", "-std=c11", "-D_GNU_SOURCE", "-O1", "-g", "-fsanitize=address,undefined",
          "-Ifirmware/src", *inc, *src, *lib, "-lz", "-o", str(exe)]
    r = subprocess.run(cc, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [str(exe)]


@pytest.fixture(scope="module")
def arm_driver(tmp_path_factory):
    drv = BUILD / "bbb" / "unit" / "spool-crashtest"
    qemu = shlex.split(os.environ.get("ET_QEMU_BBB", "qemu-arm-static -cpu cortex-a8"))
    if not drv.exists():
        pytest.skip(f"no armv7 driver at {drv} (make BOARD=bbb unit-cross)")
    cmd = qemu + [str(drv)]
    assert agent_supports_spool(cmd, tmp_path_factory.mktemp("armprobe")), "the armv7 driver does not start"
    return cmd


def run_check(driver, d):
    r = subprocess.run(driver + ["check", "--dir", str(d)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"spool check failed: {r.stderr}"
    pending = []
    stats = None
    for line in r.stdout.splitlines():
        f = line.split()
        if f[0] == "P":
            pending.append((f[1], int(f[2])))
        elif f[0] == "S":
            stats = [int(x) for x in f[1:]]
    assert stats is not None
    assert stats[0] == len(pending)
    return pending


def test_kill9_during_spooling_loses_nothing(driver, tmp_path):
    kill9_trials(driver, tmp_path, TRIALS, 0.02, 0.35)


def test_kill9_during_spooling_armv7_qemu(arm_driver, tmp_path):
    # qemu-user starts slower: longer windows, fewer trials, same checks
    kill9_trials(arm_driver, tmp_path, max(10, TRIALS // 3), 0.3, 1.0)


def kill9_trials(driver, tmp_path, trials, tmin, tmax):
    rng = random.Random(int(os.environ.get("ET_SEED", "20261123")))
    d = tmp_path / "spool"
    durable, acked = set(), set()
    started = time.monotonic()
    kills_mid_write = 0
    resent = 0
    for trial in range(trials):
        cmd = driver + ["torture", "--dir", str(d), "--policy", "always", "--seed", str(trial + 1),
                        "--ack-every", str(rng.choice([2, 3, 5])), "--max-bytes", str(64 << 20),
                        "--segment-bytes", str(rng.choice([8192, 16384, 65536]))]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(tmin, tmax))
        p.send_signal(signal.SIGKILL)
        out, errout = p.communicate(timeout=30)
        assert p.returncode == -signal.SIGKILL, f"driver exited on its own: {errout.decode()[-2000:]}"
        text = out.decode()
        lines = text.split("\n")
        if not text.endswith("\n"):
            lines = lines[:-1]  # a half line never counts
        inflight_ack = None
        for line in lines:
            if not line:
                continue
            tag, rid = line.split()
            if tag == "D":
                durable.add(rid)
            elif tag == "K":
                inflight_ack = rid
            elif tag == "A":
                acked.add(rid)
                if rid == inflight_ack:
                    inflight_ack = None

        pending = run_check(driver, d)
        ids = [rid for rid, _ in pending]
        assert len(ids) == len(set(ids)), f"trial {trial}: a record is present twice"
        for rid, n in pending:
            assert n == torture_len(int(rid[:16], 16)), f"trial {trial}: {rid} has the wrong length"
        present = set(ids)
        # Acks are persisted lazily (every ACK_BOUND acks, firmware/src/spool_state.c): a kill
        # may bring back that many acked records, which are then pending again (the collector
        # dedups the resend). More would be a lost ack cursor.
        came_back = present & acked
        assert len(came_back) <= ACK_BOUND, f"trial {trial}: {len(came_back)} acked records came back"
        acked -= came_back
        resent += len(came_back)
        missing = (durable - acked) - present
        assert missing <= ({inflight_ack} if inflight_ack else set()), \
            f"trial {trial}: durable records lost: {sorted(missing)[:5]}"
        if missing:
            acked |= missing  # the in-flight ack reached flash before the kill
        unreported = present - durable
        assert len(unreported) <= 1, f"trial {trial}: records nobody appended: {sorted(unreported)[:5]}"
        if unreported:
            kills_mid_write += 1
        durable |= unreported
    elapsed = time.monotonic() - started
    print(f"{trials} kills, {len(durable)} records appended, {len(acked)} acked, "
          f"{kills_mid_write} kills between write and report, {resent} acked records resent, {elapsed:.1f}s")
    assert len(durable) > trials, "the driver hardly appended anything"
    assert elapsed < 90
