#!/usr/bin/python3
"""Execution-trace parse benchmark: edgetrace-agent's streaming reader vs Go's own parser.

    tools/bench/trace_bench.py [--agent PATH] [--trace FILE] [--busy N] [--window D] [--runs N]

Without --trace it builds tools/tracegen with Go 1.27 and records a busy service (N goroutine
pairs ping-ponging on channels, a contended mutex, short-lived goroutines) for --window, which
gives a trace of ~100 MB. Then it runs, --runs times each, alternating (best run kept):

    edgetrace-agent trace FILE --json          (our parser; summary to /dev/null)
    ettracebench FILE                          (Go 1.27's internal/trace.Reader: a ReadEvent
                                                loop that counts events and prints nothing)

under /usr/bin/time -v and prints one table: wall and CPU seconds, events/s and MB/s (both
over the same count: the wire events in the file, as the agent reports them) and peak RSS.
Targets (issue 13): >= 10x faster, <= 1/50 of the peak memory. Exit status 1 if missed.

Why not `go tool trace -d=parsed`: it prints every event as text, so most of its time was
formatting, which flattered the agent. internal/trace is importable only from inside
GOROOT/src, so ettracebench (tools/bench/tracebench/main.go) is built in a scratch copy of
the Go 1.27 root under $ET_CACHE/go-tracebench-1.27-HASH (hard links where the filesystem
allows; HASH covers the Go release and main.go), never in the shared Go install.

Env: ET_AGENT (default build/x86_64/edgetrace-agent), ET_CACHE (default /var/cache/edgetrace),
ET_BUILD (default build/; the generated trace is kept in $ET_BUILD/bench/).
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("ET_CACHE", "/var/cache/edgetrace"))
BUILD = Path(os.environ.get("ET_BUILD", ROOT / "build"))


def go_env(v):
    e = dict(os.environ)
    e.update(GOTOOLCHAIN="local", GOPROXY="off", GOFLAGS="-mod=mod", GOCACHE=str(CACHE / f"gocache-{v}"),
             GOPATH=str(CACHE / f"gocache-{v}" / "gopath"))
    return e


GO = str(CACHE / "go" / "1.27" / "bin" / "go")
GOROOT = CACHE / "go" / "1.27"
TRACEBENCH_SRC = ROOT / "tools" / "bench" / "tracebench" / "main.go"


def tracebench_binary():
    """Build ettracebench against Go 1.27's internal/trace in a scratch copy of the Go root
    (once per Go release and main.go: the result is kept in the cache)."""
    src = TRACEBENCH_SRC.read_bytes()
    key = hashlib.sha256((GOROOT / "VERSION").read_bytes() + b"\0" + src).hexdigest()[:12]
    home = CACHE / f"go-tracebench-1.27-{key}"
    binary = home / "ettracebench"
    if binary.exists():
        return binary
    home.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=home.name + ".", dir=home.parent))
    try:
        root = tmp / "go"
        root.mkdir()
        # -L: the Debian root is symlinks into /usr/share; --link: no 130 MB copy when the
        # cache and /usr share a filesystem (we only ever add files, never write Go's own).
        for item in ("VERSION", "go.env", "bin", "pkg", "src", "lib", "misc", "api"):
            if not (GOROOT / item).exists():
                continue
            r = subprocess.run(["cp", "-rL", "--link", str(GOROOT / item), str(root)], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["cp", "-rL", str(GOROOT / item), str(root)], check=True)
        pkg = root / "src" / "cmd" / "ettracebench"
        pkg.mkdir()
        (pkg / "main.go").write_bytes(src)
        env = go_env("1.27")
        env["GOROOT"] = str(root)
        subprocess.run([str(root / "bin" / "go"), "build", "-o", str(tmp / "ettracebench"), "cmd/ettracebench"],
                       cwd=root / "src", env=env, check=True)
        shutil.rmtree(root)  # keep only the binary
        os.replace(tmp, home)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return binary


def timed(cmd, keep_stdout=True):
    """Run cmd under /usr/bin/time -v; return (wall s, cpu s, peak RSS KB, stdout)."""
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=subprocess.PIPE if keep_stdout else subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode not in (0, 3):
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    err = r.stderr

    def field(name):
        return re.search(re.escape(name) + r":\s*(.+)", err).group(1).strip()

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    parts = [float(x) for x in wall.split(":")]
    secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    rss = int(field("Maximum resident set size (kbytes)"))
    return secs, cpu, rss, r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default=os.environ.get("ET_AGENT", str(BUILD / "x86_64" / "edgetrace-agent")))
    ap.add_argument("--trace")
    ap.add_argument("--busy", type=int, default=8)
    ap.add_argument("--window", default="5s")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()

    trace = Path(a.trace) if a.trace else BUILD / "bench" / f"busy-{a.busy}-{a.window}.trace"
    if not trace.exists():
        trace.parent.mkdir(parents=True, exist_ok=True)
        tg = trace.parent / "tracegen-1.27"
        subprocess.run([GO, "build", "-o", str(tg), "."], cwd=ROOT / "tools" / "tracegen", env=go_env("1.27"),
                       check=True)
        subprocess.run([str(tg), "-o", str(trace), "-window", a.window, "-busy", str(a.busy)], check=True)
    size = trace.stat().st_size

    gobench = tracebench_binary()

    best = {}
    summary = None
    go_events = None
    for _ in range(a.runs):
        w, c, rss, out = timed([a.agent, "trace", str(trace), "--json"])
        summary = json.loads(out)
        best["agent"] = min(best.get("agent", (1e9, 0, 0)), (w, c, rss))
        w, c, rss, out = timed([str(gobench), str(trace)])
        go_events = int(out.split()[-1])
        best["go"] = min(best.get("go", (1e9, 0, 0)), (w, c, rss))
    events = summary["events"]

    print(f"trace: {trace} ({size / 1e6:.1f} MB, {events} events, {summary['generations']} generations, "
          f"format {summary['format']}, status {summary['status']})")
    print(f"{'parser':32} {'wall s':>8} {'cpu s':>8} {'Mevents/s':>10} {'MB/s':>8} {'peak RSS MB':>12}")
    rows = [("edgetrace-agent trace --json", best["agent"]), ("go 1.27 internal/trace ReadEvent", best["go"])]
    for name, (w, c, rss) in rows:
        print(f"{name:32} {w:8.3f} {c:8.3f} {events / w / 1e6:10.2f} {size / w / 1e6:8.1f} {rss / 1024:12.1f}")
    speed = best["go"][0] / best["agent"][0]
    mem = best["go"][2] / best["agent"][2]
    cpu_speed = best["go"][1] / max(best["agent"][1], 0.001)
    print(f"speed-up {speed:.1f}x wall, {cpu_speed:.1f}x CPU (target >= 10x), memory {mem:.1f}x less (target >= 50x); "
          f"agent memory bound {summary['memory_bound'] / 1048576:.1f} MiB")
    print(f"internal/trace returned {go_events} events (its own events: wire events plus the synthesised "
          f"ones, e.g. Sync and state transitions); rates above use the agent's wire count for both")
    return 0 if speed >= 10 and mem >= 50 else 1


if __name__ == "__main__":
    sys.exit(main())
