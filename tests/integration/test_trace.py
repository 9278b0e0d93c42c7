"""edgetrace-agent trace: the streaming execution-trace reader checked against Go's own parser.

For every Go release that writes a distinct trace format (1.22, 1.23, 1.25, 1.26 and 1.27) we
build tools/tracegen with that toolchain, record real traces (goroutines that end, leak on
channels, mutexes, conds, a WaitGroup, select{}, sleep, and sit in a syscall; optionally a busy
scheduler), and compare, goroutine by goroutine, what the agent reports with what
`go tool trace -d=parsed` of Go 1.27 prints (its StateTransition events): final state, number
of transitions, reason of the last block, and the "goroutines" totals of the JSON. Go's own
trace test data (internal/trace/testdata/tests/*.test, a text format) is turned into binary
traces with Go's internal/trace/testtrace package (built through a -overlay into GOROOT, so
nothing of Go is copied) and compared the same way.

Run: ET_AGENT=build/x86_64/edgetrace-agent /usr/bin/python3 -m pytest tests/integration/test_trace.py
(ET_CACHE defaults to /var/cache/edgetrace; the Makefile exports both.)
"""
import json
import os
import random
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("ET_ROOT", Path(__file__).resolve().parents[2]))
CACHE = Path(os.environ.get("ET_CACHE", "/var/cache/edgetrace"))
AGENT = os.environ.get("ET_AGENT", "")
GO_VERSIONS = ["1.22", "1.23", "1.25", "1.26", "1.27"]
EXPECT_HEADER = {"1.22": 22, "1.23": 23, "1.25": 25, "1.26": 26, "1.27": 26}


def go_env(v):
    e = dict(os.environ)
    e.update(GOTOOLCHAIN="local", GOPROXY="off", GOFLAGS="-mod=mod",
             GOCACHE=str(CACHE / f"gocache-{v}"), GOPATH=str(CACHE / f"gocache-{v}" / "gopath"))
    return e


def go_bin(v):
    return str(CACHE / "go" / v / "bin" / "go")


@pytest.fixture(scope="session")
def agent():
    if not AGENT or not os.access(AGENT, os.X_OK):
        pytest.fail("ET_AGENT must point at an edgetrace-agent binary with the trace subcommand")
    return AGENT


def run_agent(agent, *args, timeout=120):
    return subprocess.run([agent, "trace", *args], capture_output=True, text=True, timeout=timeout)


def agent_json(agent, path, *extra):
    r = run_agent(agent, str(path), "--json", "--goroutines", *extra)
    assert r.returncode in (0, 3), f"agent failed ({r.returncode}): {r.stderr}\n{r.stdout[:2000]}"
    return r.returncode, json.loads(r.stdout)


# ---- Go's view -------------------------------------------------------------------------
TRANS = re.compile(r' StateTransition Time=-?\d+ GoID=(-?\d+) (\w+)->(\w+) Reason="((?:[^"\\]|\\.)*)"')


def go_parsed(path):
    """Per-goroutine final state, transitions, created flag and last block reason from
    `go tool trace -d=parsed` (Go 1.27)."""
    # Streamed line by line: a busy trace prints millions of events, far too much to hold.
    proc = subprocess.Popen([go_bin("1.27"), "tool", "trace", "-d=parsed", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=go_env("1.27"))
    gs = {}
    for line in proc.stdout:
        if "StateTransition" not in line:
            continue
        m = TRANS.search(line)
        if not m:
            continue
        gid, frm, to, reason = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        g = gs.setdefault(gid, {"state": None, "transitions": 0, "created": False, "reason": ""})
        g["transitions"] += 1
        g["state"] = to
        if frm == "NotExist":
            g["created"] = True
        if to == "Waiting" and frm != "Waiting":
            g["reason"] = reason
        elif to != "Waiting":
            g["reason"] = ""
    err = proc.stderr.read()
    return proc.wait(timeout=600), err, gs


def go_totals(gs):
    t = {"seen": len(gs), "created": 0, "ended": 0, "waiting": 0, "runnable": 0, "running": 0, "syscall": 0}
    for g in gs.values():
        t["created"] += g["created"]
        key = {"NotExist": "ended", "Waiting": "waiting", "Runnable": "runnable", "Running": "running",
               "Syscall": "syscall"}[g["state"]]
        t[key] += 1
    return t


def compare_with_go(agent, path):
    rc, d = agent_json(agent, path)
    grc, gerr, gs = go_parsed(path)
    assert grc == 0, f"go tool trace failed on {path}: {gerr}"
    assert d["status"] == "ok", d["error"]
    mine = {g["id"]: g for g in d["goroutine_list"]}
    assert set(mine) == set(gs), f"goroutine sets differ: only agent {sorted(set(mine) - set(gs))[:10]}, " \
                                 f"only go {sorted(set(gs) - set(mine))[:10]}"
    bad = []
    for gid, g in gs.items():
        m = mine[gid]
        if m["state"] != g["state"] or m["transitions"] != g["transitions"] or m["created"] != g["created"]:
            bad.append((gid, m, g))
        elif g["state"] == "Waiting" and m["reason"] != g["reason"]:
            bad.append((gid, m, g))
    assert not bad, f"{len(bad)} goroutines differ, e.g. {bad[:5]}"
    assert d["goroutines"] == go_totals(gs)
    assert d["transitions"] == sum(g["transitions"] for g in gs.values())
    return d


# ---- traces from real programs ---------------------------------------------------------------
@pytest.fixture(scope="session")
def tracegen(tmp_path_factory):
    out = tmp_path_factory.mktemp("tracegen")
    bins = {}
    for v in GO_VERSIONS:
        b = out / f"tracegen-{v}"
        subprocess.run([go_bin(v), "build", "-o", str(b), "."], cwd=ROOT / "tools" / "tracegen", env=go_env(v),
                       check=True, capture_output=True, timeout=600)
        bins[v] = b
    return bins


@pytest.fixture(scope="session")
def traces(tracegen, tmp_path_factory):
    """(version, scenario) -> trace file. 'plain' spans two generations (1.5 s; the runtime
    advances every second); 'busy' adds a busy scheduler so batches interleave heavily."""
    out = tmp_path_factory.mktemp("traces")
    res = {}
    for v, b in tracegen.items():
        for name, args in (("plain", ["-window", "1500ms"]), ("busy", ["-window", "1200ms", "-busy", "4"])):
            f = out / f"{name}-{v}.trace"
            subprocess.run([str(b), "-o", str(f), *args], check=True, timeout=120)
            res[(v, name)] = f
    return res


# Events that live in M batches (everything the agent counts in event_counts).
M_EVENTS = {"ProcsChange", "ProcStart", "ProcStop", "ProcSteal", "ProcStatus", "GoCreate", "GoCreateSyscall",
            "GoStart", "GoDestroy", "GoDestroySyscall", "GoStop", "GoBlock", "GoUnblock", "GoSyscallBegin",
            "GoSyscallEnd", "GoSyscallEndBlocked", "GoStatus", "STWBegin", "STWEnd", "GCActive", "GCBegin", "GCEnd",
            "GCSweepActive", "GCSweepBegin", "GCSweepEnd", "GCMarkAssistActive", "GCMarkAssistBegin",
            "GCMarkAssistEnd", "HeapAlloc", "HeapGoal", "GoLabel", "UserTaskBegin", "UserTaskEnd", "UserRegionBegin",
            "UserRegionEnd", "UserLog", "GoSwitch", "GoSwitchDestroy", "GoCreateBlocked", "GoStatusStack"}


def go_wire_counts(path):
    """Per-type counts of the events in M batches, from `go tool trace -d=wire` (Go's raw reader)."""
    proc = subprocess.Popen([go_bin("1.27"), "tool", "trace", "-d=wire", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=go_env("1.27"))
    counts = {}
    for line in proc.stdout:
        name = line.split(" ", 1)[0]
        if name in M_EVENTS:
            counts[name] = counts.get(name, 0) + 1
    err = proc.stderr.read()
    assert proc.wait(timeout=600) == 0, err
    return counts


@pytest.mark.parametrize("v", GO_VERSIONS)
@pytest.mark.parametrize("scenario", ["plain", "busy"])
def test_matches_go_parser(agent, traces, v, scenario):
    d = compare_with_go(agent, traces[(v, scenario)])
    assert d["format"] == f"go 1.{EXPECT_HEADER[v]} trace"
    if scenario == "plain":
        assert d["generations"] >= 2
    assert d["event_counts"] == go_wire_counts(traces[(v, scenario)])
    assert d["events"] == sum(d["event_counts"].values())


# What tracegen's windowScenario leaks, by entry function: (count, Go reason, go_state).
LEAKS = {
    "main.leakRecv": (7, "chan receive", "Waiting"),
    "main.leakSend": (5, "chan send", "Waiting"),
    "main.leakMutex": (4, "sync", "Waiting"),
    "main.leakCond": (3, "sync.(*Cond).Wait", "Waiting"),
    "main.leakWG": (2, "sync", "Waiting"),
    "main.leakSelect": (2, "forever", "Waiting"),
    "main.leakSleep": (3, "sleep", "Waiting"),
    "main.leakSyscall": (1, "", "Syscall"),
}


@pytest.mark.parametrize("v", GO_VERSIONS)
def test_leak_groups(agent, traces, v):
    _, d = agent_json(agent, traces[(v, "plain")])
    groups = {g["start_func"]: g for g in d["groups"] if g["created_by"] == "main.windowScenario"}
    for fn, (n, reason, st) in LEAKS.items():
        g = groups.get(fn)
        assert g, f"no group for {fn}: {[x['start_func'] for x in d['groups']]}"
        assert (g["count"], g["created_in_window"], g["reason"], g["go_state"]) == (n, n, reason, st), g
        assert g["block_user_func"] == fn and g["block_file"].endswith("tracegen/main.go") and g["block_line"] > 0, g
        assert 0.5e9 < g["oldest_ns"] < 1.6e9, g
    # Leaked before the trace started: still waiting, for the whole window.
    pre = [g for g in d["groups"] if g["created_by"] == "" and g["block_user_func"] in ("main.leakRecv", "main.leakMutex")]
    if v != "1.22":  # 1.22 has no GoStatusStack: a status carries no stack
        assert sum(g["count"] for g in pre) == 4 and all(g["blocked_before_window"] == g["count"] for g in pre), pre
    # The workers ended.
    assert d["goroutines"]["ended"] >= 20


def test_any_chunking_gives_the_same_summary(agent, traces):
    path = traces[("1.25", "busy")]
    _, whole = agent_json(agent, path)
    for chunk in ("1", "7", "4093"):
        _, d = agent_json(agent, path, "--chunk", chunk)
        assert d == whole, f"chunk {chunk} differs"


# ---- Go's own trace test data -----------------------------------------------------------------
CONVERTER = """package main

import (
\t"internal/trace/testtrace"
\t"io"
\t"os"
\t"path/filepath"
\t"strings"
)

// Writes the binary trace of each internal/trace/testdata/tests/*.test file given.
func main() {
\tout := os.Args[1]
\tfor _, in := range os.Args[2:] {
\t\tr, _, _, err := testtrace.ParseFile(in)
\t\tif err != nil {
\t\t\tos.Stderr.WriteString(in + ": " + err.Error() + "\\n")
\t\t\tcontinue
\t\t}
\t\tf, err := os.Create(filepath.Join(out, strings.TrimSuffix(filepath.Base(in), ".test")+".trace"))
\t\tif err != nil {
\t\t\tpanic(err)
\t\t}
\t\tif _, err := io.Copy(f, r); err != nil {
\t\t\tpanic(err)
\t\t}
\t\tf.Close()
\t}
}
"""


@pytest.fixture(scope="session")
def go_testdata(tmp_path_factory):
    out = tmp_path_factory.mktemp("gotestdata")
    goroot = subprocess.run([go_bin("1.27"), "env", "GOROOT"], capture_output=True, text=True, env=go_env("1.27"),
                            check=True).stdout.strip()
    src = out / "conv.go"
    src.write_text(CONVERTER)
    # internal/ packages are importable only from inside GOROOT: place the converter there
    # virtually with -overlay instead of touching the toolchain.
    ov = out / "overlay.json"
    ov.write_text(json.dumps({"Replace": {f"{goroot}/src/internal/trace/etconv/main.go": str(src)}}))
    conv = out / "conv"
    subprocess.run([go_bin("1.27"), "build", "-overlay", str(ov), "-o", str(conv), "internal/trace/etconv"],
                   env=go_env("1.27"), check=True, capture_output=True, timeout=600)
    tests = sorted(Path(goroot, "src/internal/trace/testdata/tests").glob("*.test"))
    assert tests, "no Go trace test data"
    subprocess.run([str(conv), str(out), *map(str, tests)], check=True, timeout=120)
    res = {}
    for t in tests:
        expect = t.read_text().split("-- trace --")[0]
        res[t.stem] = (out / f"{t.stem}.trace", "SUCCESS" in expect)
    return res


def test_go_testdata(agent, go_testdata):
    compared = 0
    for name, (path, success) in go_testdata.items():
        if not path.exists():
            continue
        if success:
            compare_with_go(agent, path)
            compared += 1
        else:
            # Go rejects these (broken scheduling invariants); we must not crash either way.
            r = run_agent(agent, str(path), "--json")
            assert r.returncode in (0, 1, 3), (name, r.returncode, r.stderr)
            json.loads(r.stdout)
    assert compared >= 15


# ---- bad input ------------------------------------------------------------------------------------
def test_truncated_traces_are_partial(agent, traces):
    data = traces[("1.26", "busy")].read_bytes()
    rnd = random.Random(5)
    cuts = [10, 16, 17, 100, len(data) // 3, len(data) // 2, len(data) - 1] + [rnd.randrange(16, len(data)) for _ in range(8)]
    for cut in cuts:
        r = subprocess.run([agent, "trace", "-", "--json"], input=data[:cut], capture_output=True, timeout=60)
        d = json.loads(r.stdout)
        if cut < 16:
            assert r.returncode == 1 and d["status"] == "error"
        elif cut == 16:  # header only: an empty trace, as for Go's reader
            assert r.returncode == 0 and d["events"] == 0
        else:
            assert r.returncode == 3, (cut, r.returncode, r.stderr)
            assert d["status"] == "partial" and d["error"], (cut, d["status"], d["error"])


def test_truncated_pre126_trace_is_partial(agent, traces):
    data = traces[("1.23", "plain")].read_bytes()
    r = subprocess.run([agent, "trace", "-", "--json"], input=data[: len(data) * 2 // 3], capture_output=True, timeout=60)
    assert r.returncode == 3
    assert json.loads(r.stdout)["status"] == "partial"


def test_garbage(agent, tmp_path):
    rnd = random.Random(7)
    for i in range(20):
        blob = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 5000)))
        if i % 2:
            blob = b"go 1.25 trace\x00\x00\x00" + blob
        r = subprocess.run([agent, "trace", "-", "--json"], input=blob, capture_output=True, timeout=60)
        assert r.returncode in (1, 3), (i, r.returncode, r.stderr)
        d = json.loads(r.stdout)
        assert d["status"] in ("error", "partial")
    r = subprocess.run([agent, "trace", "-"], input=b"hello world, not a trace", capture_output=True, text=False)
    assert r.returncode == 1 and b"not a Go execution trace" in r.stderr


def test_future_version(agent, traces):
    data = traces[("1.26", "plain")].read_bytes()
    r = subprocess.run([agent, "trace", "-", "--json"], input=b"go 1.99 trace\x00\x00\x00" + data[16:],
                       capture_output=True, timeout=60)
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert d["status"] == "unsupported-version" and "go 1.99" in d["error"]


def test_pre_122_trace_is_unsupported(agent, tmp_path):
    """A real Go 1.21 trace (the old v1 format) gets a clear version error."""
    src = tmp_path / "old"
    src.mkdir()
    (src / "go.mod").write_text("module old\n\ngo 1.21\n")
    (src / "main.go").write_text(
        'package main\n\nimport (\n\t"os"\n\t"runtime/trace"\n\t"time"\n)\n\n'
        'func main() {\n\tf, _ := os.Create(os.Args[1])\n\ttrace.Start(f)\n\tgo func() { select {} }()\n'
        '\ttime.Sleep(50 * time.Millisecond)\n\ttrace.Stop()\n\tf.Close()\n}\n')
    subprocess.run([go_bin("1.21"), "build", "-o", str(tmp_path / "old-bin"), "."], cwd=src, env=go_env("1.21"),
                   check=True, capture_output=True, timeout=600)
    subprocess.run([str(tmp_path / "old-bin"), str(tmp_path / "old.trace")], check=True, timeout=60)
    r = run_agent(agent, str(tmp_path / "old.trace"), "--json")
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert d["status"] == "unsupported-version" and "go 1.21" in d["error"] and "pre-1.22" in d["error"]


def test_caps_degrade_to_counted_truncation(agent, traces):
    path = traces[("1.27", "busy")]
    r = run_agent(agent, str(path), "--json", "--max-goroutines", "8", "--max-strings", "16", "--max-stacks", "4")
    assert r.returncode == 3, r.stderr
    d = json.loads(r.stdout)
    assert d["status"] == "partial"
    assert d["trunc"]["goroutines"] > 0 and d["trunc"]["strings"] > 0 and d["trunc"]["stacks"] > 0
    assert d["goroutines"]["seen"] <= 8 + d["goroutines"]["ended"]
    _, full = agent_json(agent, path)
    assert d["memory_bound"] < full["memory_bound"] / 2


# ---- straight from /debug/pprof/trace ------------------------------------------------------------
def test_url_source(agent, tracegen):
    p = subprocess.Popen([str(tracegen["1.27"]), "-serve", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        addr = p.stdout.readline().strip()
        assert addr, "tracegen did not print its address"
        time.sleep(0.3)
        r = run_agent(agent, f"http://{addr}/debug/pprof/trace?seconds=1", "--json")
        if "not available in this build" in r.stderr + r.stdout:
            pytest.skip("agent built without the HTTP client")
        assert r.returncode == 0, (r.returncode, r.stderr, r.stdout[:500])
        d = json.loads(r.stdout)
        assert d["status"] == "ok" and d["goroutines"]["seen"] > 20
        assert any(g["block_user_func"] == "main.leakRecv" for g in d["groups"])
    finally:
        p.kill()
        p.wait()


def test_peak_rss_within_memory_bound(agent, traces):
    """The parser's footprint is fixed up front: peak RSS stays under the bound it reports
    (plus the process's own baseline), whatever the trace."""
    path = traces[("1.27", "busy")]
    r = subprocess.run(["/usr/bin/time", "-v", agent, "trace", str(path), "--json"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", r.stderr).group(1))
    bound = json.loads(r.stdout)["memory_bound"]
    baseline_kb = 8 * 1024 if "asan" not in agent else 64 * 1024
    assert rss_kb * 1024 <= bound + baseline_kb * 1024, (rss_kb, bound)
