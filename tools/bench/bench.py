#!/usr/bin/env python3
"""edgetrace benchmarks, one section per call (driven by tools/bench/run.sh).

    bench.py parse | detect | snapshot | size

Each section starts the real Go test services it needs (tools/testsvc, loopback only),
runs the real agent / host tools against them, prints one aligned table

    metric | edgetrace | baseline | target | verdict

and kills everything it started, whatever happens. A missed target prints MISS and still
exits 0: `make bench` reports, it does not gate. A bench that cannot run (a tool crashed,
a service would not start, a Python exception) exits 1 so run.sh can fail the run.

CPU time and peak RSS of a child come from os.wait4() on that very child (ru_utime,
ru_stime, ru_maxrss), so nothing else running on this shared machine is counted.
What each figure means and what its baseline is: tools/bench/README.md."""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(os.environ.get("ET_ROOT", Path(__file__).resolve().parents[2]))
BUILD = Path(os.environ.get("ET_BUILD", ROOT / "build"))
CACHE = Path(os.environ.get("ET_CACHE", "/var/cache/edgetrace"))
TESTSVC = Path(os.environ.get("ET_TESTSVC", CACHE / "testsvc"))
AGENT = Path(os.environ.get("ET_AGENT", BUILD / "x86_64" / "edgetrace-agent"))
HOST = BUILD / "host"
COLLECTOR = Path(os.environ.get("ET_COLLECTOR", HOST / "edgetrace-collector"))
GO_VERSIONS = os.environ.get("ET_GO_VERSIONS", "1.21 1.23 1.27").split()
PPROF_GO = os.environ.get("ET_PPROF_GO", "1.27")  # the Go whose `go tool pprof` is the baseline
WORK = Path(os.environ.get("ET_BENCH_WORK") or tempfile.mkdtemp(prefix="edgetrace-bench-"))
WORK.mkdir(parents=True, exist_ok=True)
CORPUS = json.loads((ROOT / "tools" / "testsvc" / "corpus.json").read_text())["programs"]


class Crash(Exception):
    """A bench could not produce its figure (as opposed to a figure missing its target)."""


# ---- process bookkeeping: everything started here is killed on any exit ------------------

_started = []


def _kill_all():
    for p in _started:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # services are session leaders: take children too
            except (ProcessLookupError, PermissionError):
                pass
    for p in _started:
        try:
            p.wait(timeout=10)
        except (subprocess.TimeoutExpired, ChildProcessError):
            pass
    _started.clear()


def _on_signal(signum, _frame):
    _kill_all()
    sys.exit(128 + signum)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _on_signal)


def popen(argv, **kw):
    p = subprocess.Popen([str(a) for a in argv], start_new_session=True, **kw)
    _started.append(p)
    return p


def go_env(v):
    e = dict(os.environ)
    e.update(GOTOOLCHAIN="local", GOPROXY="off", GOFLAGS="-mod=mod",
             GOCACHE=str(CACHE / f"gocache-{v}" / "cache"), GOPATH=str(CACHE / f"gocache-{v}" / "path"),
             PPROF_TMPDIR=str(WORK / "pprof"), HOME=str(WORK))
    return e


class Service:
    """A tools/testsvc program on 127.0.0.1:0 (it prints 'listening ADDR' first)."""

    def __init__(self, program, go, args=(), ready_stderr=None, timeout=60):
        binary = TESTSVC / go / program
        if not binary.exists():
            raise Crash(f"test service {binary} not built (make testsvc)")
        self.name, self.go = program, go
        self.errlog = WORK / f"{program}-{go}-{os.getpid()}-{len(_started)}.err"
        self.proc = popen([binary, "-listen", "127.0.0.1:0", *args], stdout=subprocess.PIPE,
                          stderr=open(self.errlog, "w"), text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening "):
            raise Crash(f"{program} (Go {go}): first line {line!r}; stderr: {self.errlog.read_text()[-400:]}")
        self.addr = line.split()[1]
        self.url = f"http://{self.addr}"
        # Keep draining stdout so a chatty service never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        if ready_stderr:  # e.g. bigdump logs once every goroutine is parked
            deadline = time.monotonic() + timeout
            while ready_stderr not in self.errlog.read_text():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise Crash(f"{program}: not ready: {self.errlog.read_text()[-400:]}")
                time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def fetch(url, dest=None, timeout=300):
    """GET url; returns (bytes or None, status, seconds). Writes the body to dest if given."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            status = r.status
            if dest:
                with open(dest, "wb") as f:
                    shutil.copyfileobj(r, f, 1 << 20)
                body = None
            else:
                body = r.read()
    except urllib.error.HTTPError as e:
        return None, e.code, time.monotonic() - t0
    return body, status, time.monotonic() - t0


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def _vm_hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class Measured:
    """Run argv to completion (or timeout) and keep its own wall time, CPU time and peak RSS.

    Not os.wait4() on a child forked from this Python process: Linux carries the pre-exec
    high-water RSS across execve (fs/exec.c, setmax_mm_hiwater_rss), so every child would
    report at least this interpreter's ~25 MB. GNU time forks the command from its own
    small image, so its %M is the command's own peak. Without /usr/bin/time, VmHWM (the
    current image's high-water mark, reset by exec) is polled every 10 ms until exit."""

    def __init__(self, argv, timeout=300, env=None, stdin=None):
        tag = f"{Path(str(argv[0])).name}-{time.monotonic_ns()}"
        self.out_path, self.err_path = WORK / f"{tag}.out", WORK / f"{tag}.err"
        tfile = WORK / f"{tag}.time"
        full = ([GNU_TIME, "-f", "%e %U %S %M", "-o", tfile, "--"] if GNU_TIME else []) + list(argv)
        hwm = 0
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            t0 = time.monotonic()
            p = popen(full, stdout=out, stderr=err, env=env, stdin=stdin or subprocess.DEVNULL)
            self.proc = p
            self.timed_out = False
            while True:
                if not GNU_TIME:
                    hwm = max(hwm, _vm_hwm_kb(p.pid))
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid == p.pid:
                    break
                if time.monotonic() - t0 > timeout:
                    os.killpg(p.pid, signal.SIGKILL)
                    self.timed_out = True
                    pid, status, ru = os.wait4(p.pid, 0)
                    break
                time.sleep(0.01)
            self.wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen consistent
        self.rc = p.returncode
        self.signal = -self.rc if self.rc < 0 else 0
        self.cpu = ru.ru_utime + ru.ru_stime
        self.maxrss_kb = hwm
        if GNU_TIME:
            lines = tfile.read_text().splitlines() if tfile.exists() else []
            for line in lines:
                m = re.match(r"Command terminated by signal (\d+)", line)
                if m:
                    self.signal = int(m.group(1))
            nums = lines[-1].split() if lines else []
            if len(nums) == 4 and not self.timed_out:
                self.maxrss_kb = int(nums[3])  # CPU stays from wait4: time's own share is nil
            if self.signal and self.rc >= 128:
                self.rc = -self.signal
        self.stdout = self.out_path.read_text(errors="replace")
        self.stderr = self.err_path.read_text(errors="replace")

    @property
    def crashed(self):
        return self.signal != 0 and not self.timed_out  # killed by a signal it did not ask for


# ---- output ------------------------------------------------------------------------------

def table(title, rows, head=("metric", "edgetrace", "baseline", "target", "verdict")):
    rows = [tuple("" if c is None else str(c) for c in r) for r in rows]
    w = [max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i]) for i in range(len(head))]
    print(f"\n{title}")
    fmt = "  " + "  ".join(f"{{:<{x}}}" for x in w)
    print(fmt.format(*head).rstrip())
    print(fmt.format(*("-" * x for x in w)))
    for r in rows:
        print(fmt.format(*r).rstrip())
    sys.stdout.flush()


def verdict(ok):
    return "ok" if ok else "MISS"


def mb(n):
    return f"{n / 1e6:.1f} MB"


def kb_mb(kb):
    return f"{kb / 1024:.1f} MiB"


def note(msg):
    print(f"  note: {msg}")
    sys.stdout.flush()


# ---- replay server: serves captured profile bodies like a Go service would -----------------

class Replay:
    """Loopback HTTP server answering /debug/pprof/<path> from files captured from a real
    service, so the agent's own cost can be measured on a 100k-goroutine dump without the
    service's stop-the-world time in front of it (see README)."""

    def __init__(self, files):
        routes = files

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                path = routes.get(self.path)
                if path is None:
                    self.send_error(404)
                    return
                size = os.path.getsize(path)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                with open(path, "rb") as f:
                    shutil.copyfileobj(f, self.wfile, 1 << 16)

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


# ---- section 1: parse throughput and memory ------------------------------------------------

def pprof_binary(v):
    """Path of Go v's pprof tool; `go tool -n` builds it into the cache first if needed, so the
    build is never timed as part of the baseline."""
    go = CACHE / "go" / v / "bin" / "go"
    r = subprocess.run([str(go), "tool", "-n", "pprof"], capture_output=True, text=True, env=go_env(v),
                       timeout=600)
    path = r.stdout.strip().split()[-1] if r.returncode == 0 and r.stdout.strip() else ""
    if not path or not os.access(path, os.X_OK):
        raise Crash(f"go {v} tool -n pprof: rc={r.returncode} {r.stdout[-200:]} {r.stderr[-400:]}")
    return path


def agent_sample(url, samples, interval, extra=(), timeout=300):
    m = Measured([AGENT, "sample", url, "--samples", samples, "--interval", interval, "--json", *extra],
                 timeout=timeout)
    if m.crashed:
        raise Crash(f"agent sample crashed (rc={m.rc}): {m.stderr[-600:]}")
    try:
        m.json = json.loads(m.stdout)
    except json.JSONDecodeError:
        m.json = {"error": f"rc={m.rc}: {m.stderr.strip()[-300:]}"}
    return m


def section_parse():
    for b in (HOST / "parse_bench", AGENT):
        if not b.exists():
            raise Crash(f"{b} not built")
    pprof = pprof_binary(PPROF_GO)
    svc = Service("bigdump", "1.23", args=("-rate", "0"), ready_stderr="bigdump:", timeout=120)
    d2 = WORK / "goroutine-debug2.txt"
    proto = WORK / "goroutine.pb.gz"
    heap = WORK / "heap-debug1.txt"
    base = svc.url + "/debug/pprof"
    _, st, t_d2 = fetch(base + "/goroutine?debug=2", d2, timeout=600)
    if st != 200:
        raise Crash(f"bigdump goroutine?debug=2: HTTP {st}")
    _, st, t_proto = fetch(base + "/goroutine", proto)
    _, st2, _ = fetch(base + "/heap?debug=1", heap)
    if st != 200 or st2 != 200:
        raise Crash(f"bigdump goroutine/heap: HTTP {st}/{st2}")
    d2_size = d2.stat().st_size
    d2_goroutines = sum(1 for line in open(d2, "rb") if line.startswith(b"goroutine "))

    pb = Measured([HOST / "parse_bench", d2, "5"], timeout=600)
    if pb.rc != 0:
        raise Crash(f"parse_bench rc={pb.rc}: {pb.stdout[-300:]} {pb.stderr[-300:]}")
    kv = dict(re.findall(r"(\w+)=(\S+)", pb.stdout))
    mbps = float(kv["parse_MBps"])
    parse_ms = float(kv["best_ms"])

    # Text-parse baseline: panicparse (Debian) on the same debug=2 file, in its fastest honest
    # mode: read, parse, deduplicate into buckets, print them (to a file: a few KB). No source
    # parsing (-parse=false reads the .go files the frames name) and no GOROOT guessing (-rebase,
    # stats paths): neither is parsing the dump, and the agent does neither.
    pp_bin = shutil.which("panicparse")
    pp = None
    # Like for like with panicparse: the whole process (start, read the file, parse once).
    pb1 = min((Measured([HOST / "parse_bench", d2, "1"], timeout=600) for _ in range(3)), key=lambda m: m.wall)
    if pp_bin:
        for _ in range(3):
            m = Measured([pp_bin, "-parse=false", "-rebase=false", "-no-color", d2], timeout=600)
            if m.rc != 0:
                raise Crash(f"panicparse rc={m.rc}: {m.stderr[-400:]}")
            pp = m if pp is None or m.wall < pp.wall else pp
        pp_buckets = sum(1 for line in pp.stdout.splitlines() if re.match(r"^\d+: ", line))

    # Baseline: Go's own tool on the same service's goroutine profile (proto), from the file
    # and live from the URL (fetch + decode + report, the same job as one agent cycle).
    top_file = Measured([pprof, "-top", proto], env=go_env(PPROF_GO), timeout=300)
    if top_file.rc != 0:
        raise Crash(f"pprof -top FILE rc={top_file.rc}: {top_file.stderr[-400:]}")
    top_url = Measured([pprof, "-top", base + "/goroutine"], env=go_env(PPROF_GO), timeout=300)
    if top_url.rc != 0:
        raise Crash(f"pprof -top URL rc={top_url.rc}: {top_url.stderr[-400:]}")
    m = re.search(r"of (\d+) total", top_file.stdout)
    pprof_total = int(m.group(1)) if m else -1

    # Whole agent, live, one ordinary cycle (goroutine proto, heap, /proc): the every-interval cost.
    plain = agent_sample(svc.url, "1", "1s", ("--no-trace",), timeout=300)
    plain_ok = plain.rc == 0 and plain.json.get("samples_ok", 0) >= 1
    # Whole agent, live: one cycle with the deep dump forced.
    live = agent_sample(svc.url, "1", "1s", ("--debug2", "--no-trace"), timeout=600)
    svc.stop()

    # Whole agent on the same bytes from a replay server: 3 cycles, each a full debug=2 dump.
    routes = {"/debug/pprof/goroutine?debug=2": d2, "/debug/pprof/goroutine": proto,
              "/debug/pprof/heap?debug=1": heap}
    rep = Replay(routes)
    cycles = 3
    try:
        replay = agent_sample(rep.url, str(cycles), "1s", ("--debug2", "--no-trace"), timeout=600)
    finally:
        rep.stop()

    live_ok = live.rc == 0 and not live.json.get("error") and live.json.get("samples_ok", 0) >= 1
    rep_ok = replay.rc == 0 and replay.json.get("samples_ok", 0) == cycles
    rss_kb = max([x.maxrss_kb for x, ok in ((live, live_ok), (replay, rep_ok)) if ok] or [0])
    rep_cpu_ms = replay.cpu / cycles * 1e3

    rows = [
        ("input", f"debug=2 text {mb(d2_size)}, {d2_goroutines} goroutines",
         f"proto {proto.stat().st_size} B, {pprof_total} goroutines", "", ""),
        ("service time to write it", f"{t_d2:.1f} s", f"{t_proto:.1f} s", "", ""),
        ("parse throughput (parse_bench, best of 5)", f"{mbps:.0f} MB/s", "n/a (proto is pre-aggregated)",
         ">= 200 MB/s", verdict(mbps >= 200)),
        ("debug=2 text, whole process (best of 3)", f"{d2_size / pb1.wall / 1e6:.0f} MB/s (parse_bench FILE 1)",
         f"{d2_size / pp.wall / 1e6:.0f} MB/s (panicparse)" if pp else "panicparse not installed", "", ""),
        ("debug=2 text, whole-process peak RSS", kb_mb(pb1.maxrss_kb),
         f"{kb_mb(pp.maxrss_kb)} (panicparse)" if pp else "-", "", ""),
        ("parse wall time", f"{parse_ms:.0f} ms", f"{top_file.wall * 1e3:.0f} ms (pprof -top FILE)", "", ""),
        ("parse peak RSS", kb_mb(int(kv["peak_rss_kb"])), f"{kb_mb(top_file.maxrss_kb)} (pprof -top FILE)", "", ""),
        ("whole agent, live ordinary cycle (proto)",
         f"{plain.wall:.1f} s, {plain.cpu * 1e3:.0f} ms CPU, {kb_mb(plain.maxrss_kb)}" if plain_ok
         else f"FAILED: {plain.json.get('error', '')[:60]}",
         f"{top_url.wall:.1f} s, {top_url.cpu * 1e3:.0f} ms CPU, {kb_mb(top_url.maxrss_kb)} (pprof -top URL)", "",
         ""),
        ("whole agent, live cycle --debug2",
         (f"{live.wall:.1f} s, {kb_mb(live.maxrss_kb)}" if live_ok else "FAILED (see note)"),
         f"{top_url.wall:.1f} s, {kb_mb(top_url.maxrss_kb)} (pprof -top URL)", "", ""),
        (f"whole agent peak RSS, {cycles} replayed debug=2 cycles",
         kb_mb(replay.maxrss_kb) if rep_ok else f"FAILED: {replay.json.get('error', '')[:60]}",
         f"{kb_mb(top_url.maxrss_kb)} (pprof -top URL)", "<= 8 MiB",
         verdict(rep_ok and live_ok and rss_kb <= 8 * 1024) if live_ok else verdict(rep_ok and rss_kb <= 8 * 1024)),
        ("agent CPU per cycle (debug=2 100k, user+sys)", f"{rep_cpu_ms:.0f} ms" if rep_ok else "FAILED",
         f"{top_url.cpu * 1e3:.0f} ms (pprof -top URL)", "", ""),
    ]
    table("1. Parse throughput and memory (bigdump, 100k goroutines, Go 1.23; baseline: Go "
          f"{PPROF_GO} `go tool pprof -top`)", rows)
    if d2_goroutines < 100000:
        note(f"Go caps the debug=2 dump at 64 MiB (runtime/pprof writeGoroutineStacks): {d2_goroutines} "
             "of 100000 goroutines fit")
    if pp:
        note(f"panicparse -parse=false -rebase=false -no-color FILE: best {pp.wall * 1e3:.0f} ms wall, "
             f"{pp.cpu * 1e3:.0f} ms CPU, {pp_buckets} buckets; parse_bench: {parse_ms:.0f} ms "
             f"(parser only, best of 5, file in the page cache)")
    else:
        note("panicparse not found (Debian package panicparse, tools/setup.sh installs it)")
    if not live_ok:
        note(f"live agent cycle failed (the service took {t_d2:.0f} s to write the dump; the agent "
             f"gives up on a silent peer): {live.json.get('error', '')}")
    if live_ok:
        note(f"live cycle: {live.cpu * 1e3:.0f} ms CPU, agent reported {live.json.get('goroutines')} goroutines")
    if rep_ok:
        note(f"replayed cycles: agent reported {replay.json.get('goroutines')} goroutines, "
             f"{replay.json.get('bytes_fetched')} bytes fetched, {replay.json.get('ms_per_cycle')} ms/cycle")


# ---- section 2: detection quality ----------------------------------------------------------

DET_SAMPLES = int(os.environ.get("ET_BENCH_SAMPLES", "8"))
DET_INTERVAL = os.environ.get("ET_BENCH_INTERVAL", "2s")
DET_PROGRAMS = [p for p in CORPUS if not p.get("benchmark") and p["name"] != "basic"]
ALERT = ("likely", "confirmed")


def matches(program, finding):
    """Same rule as tests/integration/test_detection.py."""
    if not program["leaks"]:
        return False
    kinds = {program["kind"], *program.get("also", [])}
    if finding.get("kind") not in kinds:
        return False
    if finding["kind"] in ("goroutine-leak", "deadlock"):
        return finding.get("function") == program["function"] or program["kind"] == "deadlock"
    return True


def leak_sites(text):
    """Functions listed in a goroutineleak?debug=1 body ('#\\t0xADDR\\tfunc+0xOFF\\tfile:line')."""
    funcs = set()
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0] == "#":
            funcs.add(parts[2].rsplit("+", 1)[0])
    return funcs


def read_jsonl(path):
    """The JSON lines of an agent's `sample --each` output (anything else is skipped)."""
    lines = []
    for line in Path(path).read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return lines


DIED = {}  # go version -> notes on services that exited on their own during the run


def run_version(go):
    services, agents = {}, {}
    try:
        for p in DET_PROGRAMS:
            services[p["name"]] = Service(p["name"], go, args=("-rate", "40"))
        for name, s in services.items():
            out = WORK / f"detect-{go}-{name}.jsonl"
            err = WORK / f"detect-{go}-{name}.err"
            agents[name] = (popen([AGENT, "sample", s.url, "--samples", DET_SAMPLES, "--interval", DET_INTERVAL,
                                   "--json", "--each", "--all"], stdout=open(out, "w"), stderr=open(err, "w")),
                            out, err)
        usage, deadline = {}, time.monotonic() + 60 + DET_SAMPLES * 20
        pending = {a[0].pid: n for n, a in agents.items()}
        while pending:
            for pid, name in list(pending.items()):
                r, status, ru = os.wait4(pid, os.WNOHANG)
                if r == pid:
                    agents[name][0].returncode = os.waitstatus_to_exitcode(status)
                    usage[name] = ru.ru_utime + ru.ru_stime
                    del pending[pid]
            if pending and time.monotonic() > deadline:
                raise Crash(f"Go {go}: agents still running: {sorted(pending.values())}")
            time.sleep(0.05)
        # A service that died during the run explains 'connection refused' samples: say so.
        for name, sv in services.items():
            if sv.proc.poll() is not None:
                DIED.setdefault(go, []).append(
                    f"service {name} exited during the run (rc={sv.proc.returncode}): "
                    f"{sv.errlog.read_text(errors='replace').strip()[-200:]}")
        leaks = {}
        if go >= "1.26":  # ground truth from the runtime's GC, fetched at the end of the run
            for name, s in services.items():
                body, st, _ = fetch(s.url + "/debug/pprof/goroutineleak?debug=1", timeout=60)
                leaks[name] = leak_sites(body.decode(errors="replace")) if st == 200 and body else None
    finally:
        for s in services.values():
            s.stop()
    res = {}
    for name, (proc, out, err) in agents.items():
        if proc.returncode < 0:
            raise Crash(f"Go {go}: agent on {name} killed by signal {-proc.returncode}: "
                        f"{err.read_text()[-400:]}")
        lines = read_jsonl(out)
        res[name] = {"samples": lines, "rc": proc.returncode, "cpu": usage.get(name, 0.0),
                     "stderr": err.read_text()[-300:], "leak": leaks.get(name)}
    return res


def score(go, res):
    """Per program: first sample (1-based) with a matching alert; alerts that match nothing."""
    per = {}
    for p in DET_PROGRAMS:
        r = res[p["name"]]
        first, tp_fp, fp_fp, last_match, fp_desc = None, set(), set(), None, {}
        ok = sum(1 for s in r["samples"] if s.get("ok"))
        for s in r["samples"]:
            for f in s.get("findings", []):
                fid = f.get("fingerprint") or f"{f.get('kind')}:{f.get('function')}"
                if matches(p, f):
                    last_match = f  # latest view of the labelled site (for gc-proof)
                    if f.get("confidence") in ALERT:
                        tp_fp.add(fid)
                        if first is None:
                            first = s.get("sample")
                elif f.get("confidence") in ALERT:
                    fp_fp.add(fid)
                    fp_desc[fid] = (f"{f.get('kind')} {f.get('function') or ''} {f.get('state') or ''} "
                                    f"({f.get('confidence')}, sample {s.get('sample')})").replace("  ", " ")
        per[p["name"]] = {"first": first, "tp": tp_fp, "fp": fp_fp, "fp_desc": fp_desc, "ok": ok, "n": len(r["samples"]),
                          "last": last_match, "cpu": r["cpu"], "rc": r["rc"], "stderr": r["stderr"],
                          "leak": r["leak"]}
    return per


def section_detect():
    if not AGENT.exists():
        raise Crash(f"{AGENT} not built")
    pos = [p for p in DET_PROGRAMS if p["leaks"]]
    neg = [p for p in DET_PROGRAMS if not p["leaks"]]
    matrix, agree_rows = {}, []
    for go in GO_VERSIONS:
        t0 = time.monotonic()
        per = score(go, run_version(go))
        matrix[go] = per
        detected = [p for p in pos if per[p["name"]]["first"] is not None]
        in3 = [p for p in detected if per[p["name"]]["first"] - 1 <= 3]
        tp = sum(len(per[p["name"]]["tp"]) for p in pos)
        fp = sum(len(v["fp"]) for v in per.values())
        neg_fp = [p["name"] for p in neg if per[p["name"]]["fp"]]
        ttd = [per[p["name"]]["first"] - 1 for p in detected]
        samples_ok = sum(v["ok"] for v in per.values())
        samples_n = len(per) * DET_SAMPLES
        cpu_cycle = statistics.median(v["cpu"] / max(v["n"], 1) for v in per.values()) * 1e3
        precision = tp / (tp + fp) if tp + fp else 0.0
        rows = [
            ("recall (positives alerted at their label)", f"{len(detected)}/{len(pos)} = {len(detected) / len(pos):.2f}",
             "", "", ""),
            ("precision (alerting findings that match a label)", f"{tp}/{tp + fp} = {precision:.2f}", "", "", ""),
            ("false positives on negatives", f"{len(neg_fp)}/{len(neg)} programs", "", "0", verdict(not neg_fp)),
            ("positives detected within 3 intervals", f"{len(in3)}/{len(pos)}", "", f"{len(pos)}/{len(pos)}",
             verdict(len(in3) == len(pos))),
            ("time to detect (intervals): median / max",
             f"{statistics.median(ttd):.0f} / {max(ttd)}" if ttd else "-", "", "<= 3", ""),
            ("samples answered", f"{samples_ok}/{samples_n}", "", "", verdict(samples_ok == samples_n)),
            ("agent CPU per cycle (median over programs)", f"{cpu_cycle:.1f} ms", "", "", ""),
        ]
        if go >= "1.26":
            # Baseline: the runtime's own goroutineleak profile (GC-proven leaks) at the end of the run.
            gl = [p for p in pos if p["kind"] == "goroutine-leak"]
            gl_listed = [p for p in gl if per[p["name"]]["leak"] and p["function"] in per[p["name"]]["leak"]]
            gl_neg = [p["name"] for p in neg if per[p["name"]]["leak"]]
            rows[0] = (rows[0][0], rows[0][1], f"goroutineleak: {len(gl_listed)}/{len(gl)} goroutine-leak sites",
                       "", "")
            rows[2] = (rows[2][0], rows[2][1], f"goroutineleak: {len(gl_neg)}/{len(neg)}", rows[2][3], rows[2][4])
            for p in gl:
                v = per[p["name"]]
                listed = v["leak"] is not None and p["function"] in v["leak"]
                f = v["last"] or {}
                proof = "gc-proof" in f.get("evidence", []) or f.get("confidence") == "confirmed"
                agree_rows.append((p["name"], p["function"], "n/a" if v["leak"] is None else ("yes" if listed else "no"),
                                   "yes" if v["first"] else "no",
                                   f"{f.get('confidence', '-')}{'+gc-proof' if 'gc-proof' in f.get('evidence', []) else ''}",
                                   "yes" if listed == proof else "NO"))
        table(f"2. Detection quality, Go {go} ({len(pos)} positives, {len(neg)} negatives, -rate 40, "
              f"{DET_SAMPLES} samples every {DET_INTERVAL}; {time.monotonic() - t0:.0f} s)", rows)
        for name, v in per.items():
            for fid in sorted(v["fp"]):
                note(f"unmatched alert on {name}: {v['fp_desc'].get(fid, fid)}")
        for msg in DIED.get(go, []):
            note(msg)
        bad = [n for n, v in per.items() if v["ok"] < DET_SAMPLES]
        for n in bad:
            note(f"{n}: {per[n]['ok']}/{DET_SAMPLES} samples ok, rc={per[n]['rc']}: {per[n]['stderr'].strip()[-160:]}")

    # One line per program across versions: intervals to detect (positives), quiet/FP (negatives).
    rows = []
    for p in DET_PROGRAMS:
        cells = []
        for go in GO_VERSIONS:
            v = matrix[go][p["name"]]
            if p["leaks"]:
                c = f"{v['first'] - 1}" if v["first"] else f"MISS(>{DET_SAMPLES - 1})"
                if v["fp"]:
                    c += f" +{len(v['fp'])}fp"
            else:
                c = f"FP({len(v['fp'])})" if v["fp"] else "quiet"
            cells.append(c)
        rows.append((p["name"], p.get("kind") or "negative", *cells))
    table("2b. Per program: sampling intervals to the first alert at the labelled site (positives), "
          "alerts on negatives", rows, head=("program", "kind", *[f"Go {g}" for g in GO_VERSIONS]))
    if agree_rows:
        agree = sum(1 for r in agree_rows if r[-1] == "yes")
        table("2c. Go 1.27: agent vs /debug/pprof/goroutineleak on goroutine-leak positives "
              "(agree = site listed by goroutineleak <=> agent finding carries gc-proof/confirmed)",
              agree_rows, head=("program", "labelled site", "goroutineleak lists it", "agent alerted",
                                "agent finding", "agree"))
        note(f"agreement {agree}/{len(agree_rows)}")


# ---- section 2r: detection at the gateway's default cadence, in real time (issue 13) -------

RT_INTERVAL_S = int(os.environ.get("ET_BENCH_RT_INTERVAL", "30"))
RT_SAMPLES = int(os.environ.get("ET_BENCH_RT_SAMPLES", "13"))
RT_FAST_RATE = os.environ.get("ET_BENCH_RT_FAST_RATE", "1")  # load events/s of the fast leaks
RT_POS = [p for p in CORPUS if p.get("leaks") and p.get("kind") == "goroutine-leak"]
RT_NEG = [p for p in CORPUS if not p.get("leaks") and not p.get("benchmark") and p["name"] != "basic"]
RT_WITHIN = (3, 6, 12)


def rt_site_count(url, function):
    """Goroutines at the labelled site now: debug=1 groups identical stacks, so sum the
    records whose frames name the function (as tests/integration/test_slow_leaks.py)."""
    body, st, _ = fetch(f"{url}/debug/pprof/goroutine?debug=1", timeout=60)
    if st != 200 or not body:
        return None
    n = 0
    for rec in body.decode(errors="replace").split("\n\n"):
        m = re.search(r"^(\d+) @", rec, re.M)
        if m and f"\t{function}+" in rec:
            n += int(m.group(1))
    return n


def rt_judge(p, lines, end, per):
    """One leak run -> (state, delay): delay = intervals from the leak's onset (the first
    sample whose goroutine total rose above the first sample's) to the first likely or
    confirmed finding at the labelled function; state says when the run cannot be judged."""
    ok = [l for l in lines if l.get("ok")]
    if len(lines) < RT_SAMPLES or len(ok) < RT_SAMPLES:
        return f"{len(ok)}/{RT_SAMPLES} samples ok", None, None
    base = lines[0]["goroutines"]
    onset = next((i for i, l in enumerate(lines) if l["goroutines"] > base), None)
    if onset is None:
        return "never leaked", None, None
    got = (end or 0) / max(1, len(lines) - onset)
    at = next((l["sample"] - 1 for l in lines for f in l["findings"]
               if f.get("confidence") in ALERT and matches(p, f)), None)
    delay = None if at is None else max(0, at - onset)
    if got < 0.75 * per:
        return f"leaked {got:.2f}/interval, not {per:g}", onset, delay
    return "ok", onset, delay


def section_realtime():
    """Every goroutine-leak positive at one leaked goroutine per interval and at a fast rate,
    every negative at its default load, one real agent per program sampling every 30 s
    (deep_interval 10 m, as the daemon), all Go versions at once: one ~7-minute window."""
    if not AGENT.exists():
        raise Crash(f"{AGENT} not built")
    runs = []  # (go, program, mode, per-interval leak intended or None)
    for go in GO_VERSIONS:
        for p in RT_POS:
            runs.append((go, p, "slow", 1.0))
            runs.append((go, p, "fast", float(RT_FAST_RATE) * RT_INTERVAL_S * p["growth_per_event"]))
        for p in RT_NEG:
            runs.append((go, p, "neg", None))
    svcs, agents = [], []
    t0 = time.monotonic()
    for go, p, mode, per in runs:
        if mode == "slow":
            args = ("-rate", f"{1.0 / (RT_INTERVAL_S * p['growth_per_event']):.5f}")
        elif mode == "fast":
            args = ("-rate", RT_FAST_RATE)
        else:
            args = ()
        svcs.append(Service(p["name"], go, args=args))
    for (go, p, mode, _), s in zip(runs, svcs):
        out = WORK / f"rt-{go}-{p['name']}-{mode}.jsonl"
        err = WORK / f"rt-{go}-{p['name']}-{mode}.err"
        agents.append((popen([AGENT, "sample", s.url, "--samples", RT_SAMPLES, "--interval", f"{RT_INTERVAL_S}s",
                              "--deep-interval", "10m", "--each", "--all"],
                             stdout=open(out, "w"), stderr=open(err, "w")), out, err))
    deadline = time.monotonic() + RT_SAMPLES * RT_INTERVAL_S + 240
    for a, _, err in agents:
        left = deadline - time.monotonic()
        try:
            a.wait(timeout=max(1, left))
        except subprocess.TimeoutExpired:
            raise Crash(f"agent {a.args[2]} still running after the window: {err.read_text()[-300:]}")
    ends = [rt_site_count(s.url, p["function"]) if mode != "neg" else None
            for (go, p, mode, _), s in zip(runs, svcs)]
    died = [f"Go {go} {p['name']} ({mode})" for (go, p, mode, _), s in zip(runs, svcs) if s.proc.poll() is not None]
    for s in svcs:
        s.stop()
    took = time.monotonic() - t0

    res = {}
    for (go, p, mode, per), (a, out, err), end in zip(runs, agents, ends):
        if a.returncode is not None and a.returncode < 0:
            raise Crash(f"Go {go}: agent on {p['name']} killed by signal {-a.returncode}: {err.read_text()[-400:]}")
        res[(go, p["name"], mode)] = (p, per, read_jsonl(out), end)

    cells = {}  # (program, mode, go) -> what table 2s shows
    for go in GO_VERSIONS:
        rows, offnotes = [], []
        for mode, label in (("fast", f"fast (-rate {RT_FAST_RATE})"), ("slow", "slow (1 per interval)")):
            judged = {k: [0, 0] for k in RT_WITHIN}  # within k: [hits, judged]
            off = []
            for p in RT_POS:
                _, per, lines, end = res[(go, p["name"], mode)]
                state, onset, delay = rt_judge(p, lines, end, per)
                cells[(p["name"], mode, go)] = (f"{delay}" if delay is not None else f"MISS") + \
                    ("" if state == "ok" else f" ({state})")
                if state != "ok":
                    off.append(f"{p['name']}: {state}")
                    continue
                for k in RT_WITHIN:
                    if delay is not None and delay <= k:
                        judged[k][0] += 1
                        judged[k][1] += 1
                    elif onset + k <= RT_SAMPLES - 1:  # the window covered k intervals after onset
                        judged[k][1] += 1
            for k in RT_WITHIN:
                h, n = judged[k]
                target = {6: ">= 90% (issue 13)"}.get(k, "") if mode == "slow" else \
                    ({3: "all"}.get(k, ""))
                ok = "" if not target else verdict(n > 0 and (h == n if mode == "fast" else h >= 0.9 * n))
                rows.append((f"recall within {k} intervals, {label}", f"{h}/{n}" if n else "-", "", target, ok))
            if off:
                rows.append((f"  not judged ({label})", f"{len(off)}", "", "", ""))
                offnotes.extend(f"{mode}: {o}" for o in off)
        fp, deepnotes = [], []
        deep, nsamp = 0, 0
        for p in RT_NEG:
            _, _, lines, _ = res[(go, p["name"], "neg")]
            alerts = {f"{f.get('kind')} {f.get('function') or ''}".strip() for l in lines for f in l["findings"]
                      if f.get("confidence") in ALERT}
            if alerts:
                fp.append(f"{p['name']}: {', '.join(sorted(alerts))}")
            cells[(p["name"], "neg", go)] = f"FP({len(alerts)})" if alerts else "quiet"
            d = [l["sample"] for l in lines if l.get("deep")]
            deep += len(d)
            nsamp += len(lines)
            if len(d) > 1:  # beyond the scheduled one at the first sample
                deepnotes.append(f"{p['name']}: debug=2 at samples {', '.join(map(str, d))}")
        rows.append(("false positives on negatives", f"{len(fp)}/{len(RT_NEG)} programs", "", "0", verdict(not fp)))
        per_iv = deep / nsamp if nsamp else 0
        rows.append(("debug=2 fetches per interval, healthy services", f"{per_iv:.3f} ({deep} in {nsamp} samples)",
                     "", "<= 0.1", verdict(nsamp > 0 and per_iv <= 0.1)))
        table(f"2r. Detection at the default cadence, Go {go}: {len(RT_POS)} goroutine-leak positives "
              f"slow and fast, {len(RT_NEG)} negatives, {RT_SAMPLES} samples every {RT_INTERVAL_S} s "
              f"(all versions at once, {took:.0f} s)", rows)
        for msg in fp:
            note(f"false positive: {msg}")
        for o in offnotes + deepnotes:
            note(o)
    rows = []
    for p in RT_POS:
        for mode in ("fast", "slow"):
            rows.append((p["name"], mode, *[cells[(p["name"], mode, go)] for go in GO_VERSIONS]))
    for p in RT_NEG:
        rows.append((p["name"], "negative", *[cells[(p["name"], "neg", go)] for go in GO_VERSIONS]))
    table("2s. Per program: intervals from the leak's onset to the first likely finding at the labelled site",
          rows, head=("program", "load", *[f"Go {g}" for g in GO_VERSIONS]))
    for d in died:
        note(f"service exited during the run: {d}")


# ---- section 3: snapshot size --------------------------------------------------------------

def section_snapshot():
    sb = HOST / "snapshot_bench"
    if not sb.exists():
        raise Crash(f"{sb} not built")
    svc = Service("bigdump", "1.23", args=("-n", "2000", "-rate", "0"), ready_stderr="bigdump:")
    try:
        base = svc.url + "/debug/pprof"
        g, st1, _ = fetch(base + "/goroutine")
        h, st2, _ = fetch(base + "/heap")
        t, st3, _ = fetch(base + "/goroutine?debug=1")
    finally:
        svc.stop()
    if (st1, st2, st3) != (200, 200, 200):
        raise Crash(f"bigdump -n 2000 profiles: HTTP {st1}/{st2}/{st3}")
    text = t.decode(errors="replace")
    m = re.search(r"total (\d+)", text)
    total = int(m.group(1)) if m else -1
    stacks = sum(1 for line in text.splitlines() if re.match(r"^\d+ @ ", line))
    r = Measured([sb, "--goroutines", "2000", "--sites", "50", "--json"], timeout=120)
    if r.rc != 0:
        raise Crash(f"snapshot_bench rc={r.rc}: {r.stderr[-400:]}")
    j = json.loads(r.stdout.strip().splitlines()[-1])
    raw = len(g) + len(h)
    wire = j["wire_bytes"]
    rows = [
        ("steady-state snapshot, wire bytes", f"{wire} B", f"{raw} B (gzip proto goroutine {len(g)} + heap {len(h)})",
         "<= 1024 B", verdict(wire <= 1024)),
        ("first snapshot (all names), wire bytes", f"{j['wire_bytes_full']} B", f"{raw} B", "", ""),
        ("CBOR before zstd, steady state", f"{j['cbor_bytes']} B", "", "", ""),
        ("size ratio (baseline / edgetrace)", f"{raw / wire:.1f}x smaller" if wire else "-", "", "", ""),
    ]
    table(f"3. Snapshot size: {j['goroutines']} goroutines / {j['sites']} sites (top {j['sites_carried']} carried, "
          f"zstd {j['level']}) vs raw profiles of bigdump -n 2000 (Go 1.23: {total} goroutines, "
          f"{stacks} distinct stacks)", rows)


# ---- sections 4 and 5: other helpers' benches, summarised in the common table ------------

def helper_trace(log):
    """tools/bench/trace_bench.py prints one row per parser: wall s, cpu s, Mevents/s, MB/s,
    peak RSS MB (best of its runs), then a speed-up line."""
    text = Path(log).read_text(errors="replace")
    rows = {}
    for m in re.finditer(r"^(edgetrace-agent trace[^\n]*?|go [\d.]+ internal/trace[^\n]*?)\s+([\d.]+)\s+([\d.]+)\s+"
                         r"([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", text, re.M):
        key = "agent" if m.group(1).startswith("edgetrace") else "go"
        rows[key] = [float(x) for x in m.groups()[1:]]
    if set(rows) != {"agent", "go"}:
        return False
    a, g = rows["agent"], rows["go"]
    speed = g[0] / a[0] if a[0] else 0
    mem = g[4] / a[4] if a[4] else 0
    t = re.search(r"^trace: (\S+) \(([^)]*)\)", text, re.M)
    table(f"4. Trace parsing{' (' + t.group(2) + ')' if t else ''}: edgetrace-agent trace vs Go 1.27 "
          "internal/trace (a ReadEvent loop that prints nothing; best of runs)", [
              ("wall time", f"{a[0]:.2f} s", f"{g[0]:.2f} s", "", ""),
              ("CPU time", f"{a[1]:.2f} s", f"{g[1]:.2f} s", "", ""),
              ("throughput", f"{a[2]:.2f} Mevents/s, {a[3]:.0f} MB/s", f"{g[2]:.2f} Mevents/s, {g[3]:.0f} MB/s", "", ""),
              ("speed-up (wall)", f"{speed:.1f}x", "1x", ">= 10x", verdict(speed >= 10)),
              ("peak RSS", f"{a[4]:.1f} MB", f"{g[4]:.1f} MB", f"<= {g[4] / 50:.1f} MB (1/50)", verdict(mem >= 50)),
          ])
    return True


def helper_ingest(log):
    """tools/bench/ingest_bench.sh prints 'LABEL  N/s  answered ...' per configuration."""
    text = Path(log).read_text(errors="replace")
    rate = {m.group(1).strip(): float(m.group(2))
            for m in re.finditer(r"^(collector \([^)]*\)|stock coap-server)\s+([\d.]+)/s", text, re.M)}
    group = next((v for k, v in rate.items() if "group" in k), None)
    per = next((v for k, v in rate.items() if "per snapshot" in k), None)
    stock = rate.get("stock coap-server")
    if group is None or stock is None:
        return False
    head = re.search(r"^ingest rate: ([^\n]*)", text, re.M)
    rows = [("snapshots/s, DTLS PSK, durable (group commit)", f"{group:.0f}/s",
             f"{stock:.0f}/s (stock coap-server, memory only)", ">= 5000/s", verdict(group >= 5000))]
    if per is not None:
        rows.append(("snapshots/s, DTLS PSK, commit per snapshot", f"{per:.0f}/s", "", "", ""))
    # full snapshots (16 sites, memstats, /proc, findings): every table of the store written
    for m in re.finditer(r"^(collector, full[^\n]*?)\s+([\d.]+)/s[^\n]*?db (\d+) B/snapshot", text, re.M):
        label, r, b = m.group(1).strip(), float(m.group(2)), int(m.group(3))
        rows.append((f"snapshots/s, {label[len('collector, '):]}", f"{r:.0f}/s", f"{group:.0f}/s (minimal snapshots)",
                     ">= 5000/s", verdict(r >= 5000)))
        rows.append((f"database bytes per snapshot, {label[len('collector, '):]}", f"{b} B", "", "", ""))
    table(f"5. Collector ingest{' (' + head.group(1) + ')' if head else ''}", rows)
    return True


def helper_api(log):
    """tools/bench/api_bench.py prints 'latency NAME p50 X ms p99 Y ms' per query and
    'ingest (API idle|hammered) N/s' lines."""
    text = Path(log).read_text(errors="replace")
    rows = [(f"{m.group(1).strip()}: p50 / p99", f"{float(m.group(2)):.1f} / {float(m.group(3)):.1f} ms", "",
             "p99 < 100 ms", verdict(float(m.group(3)) < 100))
            for m in re.finditer(r"^latency (.+?)\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms", text, re.M)]
    ing = {m.group(1): float(m.group(2)) for m in re.finditer(r"^ingest \(API (idle|hammered)\)\s+([\d.]+)/s", text, re.M)}
    if not rows or len(ing) != 2:
        return False
    rows.append(("ingest snapshots/s while 4 clients hammer the API", f"{ing['hammered']:.0f}/s",
                 f"{ing['idle']:.0f}/s (API idle)", ">= 5000/s", verdict(ing["hammered"] >= 5000)))
    head = re.search(r"^api bench: ([^\n]*)", text, re.M)
    table(f"7. HTTP API{' (' + head.group(1) + ')' if head else ''}", rows)
    return True


def helper_pg(log):
    """tools/bench/pg_bench.py prints 'ingest BACKEND N node(s) R/s ... cpu/snapshot: nodes X ms[, postgres Y ms]'
    per configuration and 'api BACKEND NAME p50 X ms p99 Y ms' per query and backend."""
    text = Path(log).read_text(errors="replace")
    ing = {(m.group(1), int(m.group(2))): (float(m.group(3)), m.group(4), m.group(5))
           for m in re.finditer(r"^ingest (sqlite|postgresql) (\d) nodes?\s+([\d.]+)/s.*?nodes ([\d.]+) ms"
                                r"(?:, postgres ([\d.]+) ms)?", text, re.M)}
    api = {(m.group(1), m.group(2).strip()): (float(m.group(3)), float(m.group(4)))
           for m in re.finditer(r"^api (sqlite|postgresql)\s+(.+?)\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms", text, re.M)}
    sq = ing.get(("sqlite", 1))
    if not sq or not any(k[0] == "postgresql" for k in ing):
        return False
    rows = []
    for (backend, n), (rate, node_ms, pg_ms) in sorted(ing.items()):
        if backend == "postgresql":
            rows.append((f"ingest snapshots/s, PostgreSQL, {n} node{'s' if n > 1 else ''}",
                         f"{rate:.0f}/s (CPU per snapshot: nodes {node_ms} ms, postgres {pg_ms} ms)",
                         f"{sq[0]:.0f}/s (SQLite, 1 node, {sq[1]} ms)", "", ""))
    for (backend, name), (p50, p99) in api.items():
        if backend == "postgresql":
            base = api.get(("sqlite", name))
            rows.append((f"PostgreSQL {name}: p50 / p99", f"{p50:.1f} / {p99:.1f} ms",
                         f"{base[0]:.1f} / {base[1]:.1f} ms (SQLite, same data)" if base else "", "p99 < 100 ms",
                         verdict(p99 < 100)))
    head = re.search(r"^pg bench: ([^\n]*)", text, re.M)
    mig = re.search(r"^migrate: ([^\n]*)", text, re.M)
    table(f"9. Scaling out{' (' + head.group(1) + ')' if head else ''}", rows)
    if mig:
        note(f"API database: {mig.group(1)}")
    return True


# ---- section 6: agent size and RSS ---------------------------------------------------------

def board_var(board, var):
    for line in (ROOT / "boards" / f"{board}.mk").read_text().splitlines():
        if ":=" in line and line.split(":=")[0].strip() == var:
            return line.split(":=", 1)[1].strip()
    return ""


def proc_status(pid):
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def section_size():
    rows = []
    srcs = [*ROOT.glob("firmware/src/*.[ch]"), *ROOT.glob("wire/*.[ch]")]
    newest_src = max((f.stat().st_mtime for f in srcs), default=0)
    for mk in sorted((ROOT / "boards").glob("*.mk")):
        b = mk.stem
        binary = BUILD / b / "edgetrace-agent"
        budget = int(board_var(b, "BOARD_SIZE_BUDGET") or 0)
        arch = board_var(b, "BOARD_ARCH")
        if not binary.exists():
            rows.append((f"{b} ({arch}) stripped agent", "not built", "", f"<= {budget // 1024} KiB", ""))
            continue
        s = binary.stat().st_size
        stale = " STALE (older than sources)" if binary.stat().st_mtime < newest_src else ""
        rows.append((f"{b} ({arch}) stripped agent", f"{s / 1024:.0f} KiB ({s} B){stale}", "",
                     f"<= {budget // 1024} KiB", verdict(s <= budget)))

    # The daemon: `run` against two services (one leaking), uploading to a real collector.
    seconds = int(os.environ.get("ET_BENCH_RUN_SECONDS", "60"))
    rss = None
    if AGENT.exists() and COLLECTOR.exists():
        d = WORK / "daemon"
        (d / "spool").mkdir(parents=True, exist_ok=True)
        r = subprocess.run([str(COLLECTOR), "provision", "bench-gw", "--db", str(d / "c.db"), "--out",
                            str(d / "cred")], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise Crash(f"collector provision: {r.stderr[-300:]}")
        import socket
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as so:
            so.bind(("127.0.0.1", 0))
            port = so.getsockname()[1]
        coll = popen([COLLECTOR, "serve", "--db", d / "c.db", "--listen", f"127.0.0.1:{port}"],
                     stdout=open(d / "collector.log", "w"), stderr=subprocess.STDOUT)
        leaky = Service("range-unclosed", "1.23", args=("-rate", "40"))
        healthy = Service("worker-pool", "1.23", args=("-rate", "40"))
        (d / "agent.conf").write_text(f"""[agent]
device_id = bench-gw
interval = 3s
deep_interval = 15s
leak_interval = 30s
discover = no
[spool]
dir = {d / 'spool'}
max_bytes = 4M
[uplink]
collector = coaps://127.0.0.1:{port}
credentials = {d / 'cred'}
[target "leaky"]
url = {leaky.url}
[target "healthy"]
url = {healthy.url}
""")
        agent = popen([AGENT, "run", "--config", d / "agent.conf"], stdout=open(d / "agent.log", "w"),
                      stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds and agent.poll() is None:
            time.sleep(1)
        if agent.poll() is None:
            rss = proc_status(agent.pid)
            os.killpg(agent.pid, signal.SIGTERM)
            try:
                agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(agent.pid, signal.SIGKILL)
        alive_for = time.monotonic() - t0
        for s in (leaky, healthy):
            s.stop()
        snaps = subprocess.run([str(COLLECTOR), "snapshots", "--db", str(d / "c.db"), "--json"],
                               capture_output=True, text=True, timeout=60)
        os.killpg(coll.pid, signal.SIGKILL)
        coll.wait(timeout=10)
        nsnap = "?"
        try:
            js = json.loads(snaps.stdout)
            nsnap = len(js if isinstance(js, list) else js.get("snapshots", []))
        except (json.JSONDecodeError, AttributeError):
            pass
        if rss:
            rows.append((f"x86_64 agent daemon RSS after {seconds} s of `run` (2 services)",
                         f"VmRSS {kb_mb(rss.get('VmRSS', 0))}, VmHWM {kb_mb(rss.get('VmHWM', 0))}", "",
                         "<= 8 MiB", verdict(rss.get("VmHWM", 1 << 30) <= 8 * 1024)))
            rows.append(("snapshots stored by the collector meanwhile", str(nsnap), "", "", ""))
        else:
            log = (d / "agent.log").read_text(errors="replace")[-300:]
            rows.append((f"x86_64 agent daemon RSS after {seconds} s", f"FAILED: exited after {alive_for:.0f} s "
                         f"rc={agent.returncode}", "", "<= 8 MiB", "MISS"))
            note(f"agent log: {log}")
    table("6. Agent binary size per board (stripped, static musl) and daemon RSS", rows)


SECTIONS = {"parse": section_parse, "detect": section_detect, "realtime": section_realtime, "snapshot": section_snapshot, "size": section_size}


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "helper":  # helper trace|ingest LOG -> table
        f = {"trace": helper_trace, "ingest": helper_ingest, "api": helper_api, "pg": helper_pg}.get(sys.argv[2])
        return 0 if f and f(sys.argv[3]) else 3
    if len(sys.argv) != 2 or sys.argv[1] not in SECTIONS:
        print(f"usage: {sys.argv[0]} {'|'.join(SECTIONS)}", file=sys.stderr)
        return 2
    try:
        SECTIONS[sys.argv[1]]()
        return 0
    except Crash as e:
        print(f"\n  BENCH FAILED ({sys.argv[1]}): {e}")
        return 1
    finally:
        _kill_all()
        if not os.environ.get("ET_BENCH_WORK") and not os.environ.get("ET_BENCH_KEEP"):
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
