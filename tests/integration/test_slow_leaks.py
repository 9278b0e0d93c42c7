"""Slow leaks at the gateway's default cadence, in real time.

Production leaks are mostly slow: one goroutine lost per failed request. Compressed time
cannot exercise what catches them, because the evidence lives in minute-resolution waits and
in goroutine ids that survive between debug=2 dumps a minute apart (analyze_survivors.c). So
this module samples every 30 s, as the daemon does (deep_interval 10 m: the only debug=2
dumps are the ones the analyzer asks for), for 7 samples:

  - every goroutine-leak program of the corpus, its load set so that it leaks one goroutine
    per 30 s interval on average: likely within 6 intervals of the leak's onset (a program
    whose leak is a fraction of its events and that lost under 3/4 of a goroutine per
    interval in this run is reported as skipped, not judged);
  - a few of them at two per interval: likely within 4 intervals;
  - every healthy program, at its usual load: never likely, and debug=2 at most 0.1 per interval.

Go 1.23: no goroutineleak profile, so the heuristics alone must do it. Everything runs at
once (the programs are light), so the module takes one 3.5-minute window."""
import json
import re
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import AGENT, ROOT, GoService

CORPUS = json.loads((ROOT / "tools" / "testsvc" / "corpus.json").read_text())["programs"]
GO = "1.23"
INTERVAL_S = 30
SAMPLES = 8  # 0..7: the first leak lands within the first interval or two
POSITIVES = [p for p in CORPUS if p.get("leaks") and p.get("kind") == "goroutine-leak"]
FAST2 = ["range-unclosed", "select-no-exit", "ctx-no-cancel"]  # also at two per interval
NEGATIVES = [p for p in CORPUS if not p.get("leaks") and not p.get("benchmark") and p["name"] != "basic"]


def rate_for(program, per_interval):
    """Load events per second that leak `per_interval` goroutines per 30 s on average."""
    return per_interval / (INTERVAL_S * program["growth_per_event"])


def sample_each(url, samples):
    out = subprocess.run([str(AGENT), "sample", url, "--samples", str(samples), "--interval", f"{INTERVAL_S}s",
                          "--deep-interval", "10m", "--each", "--all"],
                         capture_output=True, text=True, timeout=samples * INTERVAL_S + 120)
    lines = [json.loads(l) for l in out.stdout.splitlines() if l.strip().startswith("{")]
    assert len(lines) == samples, f"rc={out.returncode} {out.stdout[-400:]!r} {out.stderr[-800:]!r}"
    return lines


def site_count(url, function):
    """Goroutines at the labelled site now (debug=1 groups identical stacks: sum the records
    whose frames name the function)."""
    text = urllib.request.urlopen(f"{url}/debug/pprof/goroutine?debug=1", timeout=10).read().decode()
    n = 0
    for rec in text.split("\n\n"):
        m = re.search(r"^(\d+) @", rec, re.M)
        if m and f"\t{function}+" in rec:
            n += int(m.group(1))
    return n


def first_likely(lines, function=None):
    for l in lines:
        for f in l["findings"]:
            if f["kind"] == "goroutine-leak" and f["confidence"] in ("likely", "confirmed") and \
                    (function is None or f["function"] == function):
                return l["sample"] - 1, f  # intervals since the first sample
    return None, None


@pytest.fixture(scope="module")
def realtime_run():
    runs = [(p, 1) for p in POSITIVES] + [(p, 2) for p in POSITIVES if p["name"] in FAST2] + \
           [(p, None) for p in NEGATIVES]
    services = []
    try:
        for p, per in runs:
            args = ("-rate", f"{rate_for(p, per):.5f}") if per else ()
            services.append(GoService(p["name"], go=GO, args=args))
        with ThreadPoolExecutor(max_workers=len(services)) as ex:
            futs = [ex.submit(sample_each, s.url, SAMPLES if per != 2 else 6) for s, (p, per) in zip(services, runs)]
            results = [f.result() for f in futs]
        # how many goroutines each leak actually lost by the end (the load is a rate; some
        # programs leak on a fraction of their events)
        for (p, per), s, r in zip(runs, services, results):
            if per:
                r.append({"site_count_end": site_count(s.url, p["function"])})
    finally:
        for s in services:
            s.stop()
    out = {(p["name"], per): r for (p, per), r in zip(runs, results)}
    art = ROOT / "build" / "test-artifacts"
    art.mkdir(parents=True, exist_ok=True)
    (art / "slow_leaks.json").write_text(json.dumps({f"{k[0]}@{k[1]}": v for k, v in out.items()}, indent=1))
    return out


def judge(lines, function, per, within):
    """Intervals from the leak's onset (the first sample whose goroutine total rose) to the
    first likely finding at the site, when the program leaked at the intended rate."""
    end = lines[-1]["site_count_end"]
    lines = lines[:-1]
    base = lines[0]["goroutines"]
    onset = next((i for i, l in enumerate(lines) if l["goroutines"] > base), None)
    if onset is None or onset + within >= len(lines) + 1:
        pytest.skip(f"the leak began too late to judge (onset {onset})")
    rate = end / max(1, len(lines) - onset)
    if rate < 0.75 * per:
        pytest.skip(f"leaked {end} goroutines in {len(lines) - onset} intervals: not {per} per interval at this load")
    at, f = first_likely(lines, function)
    assert at is not None and at - onset <= within, (function, onset, at, [l["goroutines"] for l in lines])


@pytest.mark.parametrize("program", [p["name"] for p in POSITIVES])
def test_one_per_interval_within_6(realtime_run, program):
    p = next(x for x in POSITIVES if x["name"] == program)
    judge(realtime_run[(program, 1)], p["function"], 1, 6)


@pytest.mark.parametrize("program", FAST2)
def test_two_per_interval_within_4(realtime_run, program):
    p = next(x for x in POSITIVES if x["name"] == program)
    judge(realtime_run[(program, 2)], p["function"], 2, 4)


@pytest.mark.parametrize("program", [p["name"] for p in NEGATIVES])
def test_healthy_quiet_and_cheap(realtime_run, program):
    lines = realtime_run[(program, None)]
    at, f = first_likely(lines)
    assert at is None, (program, f)
    for l in lines:
        assert not [x for x in l["findings"] if x["confidence"] in ("likely", "confirmed")], (program, l)
    # debug=2 stops the world: the scheduled deep_interval dump, and at most one more in 7
    # intervals (the long-run rate, <= 0.1 per interval, is measured by `make bench`)
    assert sum(1 for l in lines if l["deep"]) <= 2, (program, [l["deep"] for l in lines])
