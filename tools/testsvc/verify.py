#!/usr/bin/python3
"""Run built test services briefly and check their labels (developer tool).

  verify.py BINDIR [--rate R] [--warmup S] [--duration S] [--jobs N] [--only a,b] [--qemu CMD]

For each program in corpus.json: start BINDIR/<name> -rate R on port 0, wait
warm-up, sample /debug/pprof/goroutine?debug=1, heap?debug=1 and
/proc/PID/status a few times over the duration, then fetch
/debug/pprof/goroutineleak?debug=1 (if served). Positives must grow at the
labelled site (or in heap / RSS / threads); negatives must stay flat. Prints
one line per program and a JSON summary (with gc-proof observations) to
--json FILE if given. Exit status 1 if any label is contradicted.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def http_get(addr, path, timeout=60):
    try:
        with urllib.request.urlopen("http://%s%s" % (addr, path), timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, ""


def parse_debug1(text):
    """-> (total, [(count, [(func, basename, line)])])"""
    total = 0
    recs = []
    cur = None
    for line in text.split("\n"):
        m = re.match(r"^\S+ profile: total (\d+)", line)
        if m:
            total = int(m.group(1))
            continue
        m = re.match(r"^(\d+) @", line)
        if m:
            cur = (int(m.group(1)), [])
            recs.append(cur)
            continue
        m = re.match(r"^#\s+0x[0-9a-f]+\s+(\S+)\+0x[0-9a-f]+\s+(\S+):(\d+)", line)
        if m and cur is not None:
            cur[1].append((m.group(1), os.path.basename(m.group(2)), int(m.group(3))))
    return total, recs


def site_count(recs, label):
    n = 0
    for count, frames in recs:
        for fn, base, ln in frames:
            if fn == label["function"] and base == label["file"] and ln == label["line"]:
                n += count
                break
    return n


def debug2_states(text, label):
    """Raw wait states (debug=2 headers) and creators of the goroutines blocked
    at the label's site: ({state: n}, {created_by: n})."""
    states, creators = {}, {}
    for block in text.split("\n\n"):
        lines = block.strip("\n").split("\n")
        m = re.match(r"^goroutine \d+ .*?\[([^\]]*)\]", lines[0]) if lines else None
        if not m:
            continue
        hit = False
        creator = None
        for i in range(1, len(lines) - 1):
            fn = lines[i]
            if fn.startswith("created by "):
                creator = fn[len("created by "):].split(" in goroutine")[0]
                continue
            loc = re.match(r"^\t(\S+):(\d+)", lines[i + 1])
            if not loc or fn.startswith("\t"):
                continue
            name = fn[:fn.rfind("(")] if fn.endswith(")") else fn
            if name == label["function"] and os.path.basename(loc.group(1)) == label["file"] \
                    and int(loc.group(2)) == label["line"]:
                hit = True
        if hit:
            st = m.group(1).split(", ")[0]
            states[st] = states.get(st, 0) + 1
            creators[creator] = creators.get(creator, 0) + 1
    return states, creators


def memstat(text, key):
    m = re.search(r"^# %s = (\d+)" % key, text, re.M)
    return int(m.group(1)) if m else 0


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "Threads"):
                out[k] = int(v.split()[0])
    out["fds"] = len(os.listdir("/proc/%d/fd" % pid))
    return out


def sample(addr, pid, label):
    _, g = http_get(addr, "/debug/pprof/goroutine?debug=1")
    total, recs = parse_debug1(g)
    _, h = http_get(addr, "/debug/pprof/heap?debug=1")
    s = proc_status(pid)
    return {
        "t": time.time(),
        "goroutines": total,
        "site": site_count(recs, label) if label.get("function") and label.get("state") else None,
        "heap_inuse": memstat(h, "HeapInuse"),
        "heap_sys_minus_released": memstat(h, "HeapSys") - memstat(h, "HeapReleased"),
        "rss_kb": s["VmRSS"],
        "threads": s["Threads"],
        "fds": s["fds"],
    }


def run_one(binpath, label, args):
    rate = args.rate
    extra = []
    warm = args.warmup
    if label["name"] == "bigdump":
        extra = ["-n", str(args.bigdump_n)]
    if label["name"] == "mutex-double-lock":
        extra = ["-token-ttl", "2s"]
        warm = max(warm, 3)
    if label["name"] == "burst-plateau":
        warm = max(warm, 3)
    if label["name"] == "http-dead-peer":
        rate = min(rate, 50)
    p = subprocess.Popen(args.qemu.split() + [binpath, "-rate", str(rate)] + extra, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    res = {"name": label["name"], "leaks": label["leaks"], "kind": label["kind"], "rate": rate}
    try:
        first = p.stdout.readline().strip()
        m = re.match(r"^listening (127\.0\.0\.1:\d+)$", first)
        if not m:
            res["error"] = "bad first line %r" % first
            return res
        addr = m.group(1)
        time.sleep(warm)
        samples = [sample(addr, p.pid, label)]
        for _ in range(args.samples - 1):
            time.sleep(args.duration / (args.samples - 1))
            samples.append(sample(addr, p.pid, label))
        res["samples"] = samples
        if label.get("state"):
            _, d2 = http_get(addr, "/debug/pprof/goroutine?debug=2")
            res["debug2_states"], res["debug2_created_by"] = debug2_states(d2, label)
        st, leak = http_get(addr, "/debug/pprof/goroutineleak?debug=1", timeout=120)
        res["goroutineleak_status"] = st
        if st == 200:
            total, recs = parse_debug1(leak)
            res["goroutineleak_total"] = total
            if label.get("function") and label.get("state"):
                res["goroutineleak_site"] = site_count(recs, label)
            res["goroutineleak_top"] = sorted(
                ((c, next((f for f in fr if f[0].startswith("main.")), fr[0] if fr else None))
                 for c, fr in recs), key=lambda x: -x[0])[:4]
        res["verdict"] = judge(label, samples, res, rate)
    finally:
        p.kill()
        p.wait()
    return res


def judge(label, s, res, rate):
    a, b = s[0], s[-1]
    dt = b["t"] - a["t"]
    kind = label["kind"]
    problems = []
    if not label["leaks"]:
        tol = max(10, a["goroutines"] // 10)
        if label["name"] == "fanout-buffered":
            tol = max(tol, int(rate * 0.6))
        g = [x["goroutines"] for x in s]
        if g[-1] - g[0] > tol and g == sorted(g):
            problems.append("goroutines grow %s" % g)
        if b["threads"] - a["threads"] > 4:
            problems.append("threads grow %d->%d" % (a["threads"], b["threads"]))
        if b["heap_inuse"] > 2 * max(x["heap_inuse"] for x in s[:-1]) + (8 << 20):
            problems.append("heap grows")
        return "ok (flat %s)" % g if not problems else "FAIL: " + "; ".join(problems)
    if kind == "deadlock":
        if b["site"] != 2 or b["goroutines"] - a["goroutines"] > 3:
            problems.append("site %s->%s goroutines %d->%d" % (a["site"], b["site"], a["goroutines"], b["goroutines"]))
        return "ok (site=2, flat)" if not problems else "FAIL: " + "; ".join(problems)
    if kind == "heap-growth":
        want = 0.5 * label["heap_bytes_per_event"] * rate * dt
        got = b["heap_inuse"] - a["heap_inuse"]
        ok = got >= want and abs(b["goroutines"] - a["goroutines"]) <= 5
        return ("ok" if ok else "FAIL") + " (HeapInuse +%.1f MiB, want >= %.1f; goroutines %d->%d)" % (
            got / 2**20, want / 2**20, a["goroutines"], b["goroutines"])
    if kind == "rss-growth":
        want = 0.5 * label["rss_bytes_per_event"] * rate * dt / 1024
        got = b["rss_kb"] - a["rss_kb"]
        heap = (b["heap_sys_minus_released"] - a["heap_sys_minus_released"]) / 1024
        ok = got >= want and heap < got / 4
        return ("ok" if ok else "FAIL") + " (RSS +%d KiB, want >= %d; HeapSys-Released %+d KiB)" % (got, want, heap)
    want = 0.5 * label["growth_per_event"] * rate * dt
    got = b["site"] - a["site"]
    ok = got >= want
    msg = "site %d->%d (want +%d)" % (a["site"], b["site"], want)
    if kind == "thread-leak":
        tg = b["threads"] - a["threads"]
        ok = ok and tg >= 0.5 * label["threads_per_event"] * rate * dt
        msg += " threads %d->%d" % (a["threads"], b["threads"])
    return ("ok " if ok else "FAIL ") + msg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bindir")
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--warmup", type=float, default=4)
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", default="")
    ap.add_argument("--bigdump-n", type=int, default=20000)
    ap.add_argument("--json")
    ap.add_argument("--qemu", default="", help="command prefix, e.g. qemu-aarch64-static (thread counts then include qemu's)")
    args = ap.parse_args()
    with open(os.path.join(HERE, "corpus.json")) as f:
        corpus = json.load(f)["programs"]
    todo = [p for p in corpus if not args.only or p["name"] in args.only.split(",")]
    results = []
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                label = todo.pop(0)
            r = run_one(os.path.join(args.bindir, label["name"]), label, args)
            with lock:
                results.append(r)
                gl = ""
                if "goroutineleak_status" in r:
                    gl = " goroutineleak=%s" % r["goroutineleak_status"]
                    if r["goroutineleak_status"] == 200:
                        gl += " total=%d site=%s" % (r["goroutineleak_total"], r.get("goroutineleak_site"))
                if r.get("debug2_states"):
                    gl += " states=%s created_by=%s" % (r["debug2_states"], r["debug2_created_by"])
                print("%-22s %-5s %s%s" % (r["name"], r["leaks"], r.get("verdict", r.get("error")), gl), flush=True)

    ts = [threading.Thread(target=worker) for _ in range(args.jobs)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    bad = [r for r in results if not r.get("verdict", "").startswith("ok")]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
