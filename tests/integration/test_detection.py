"""Detection on the labelled Go corpus (tools/testsvc/corpus.json), for each Go version.

Every program of the corpus runs at once (each is light), and the real agent samples each
one with `sample URL --json` at a compressed interval. Positives must be reported at their
labelled kind (and, for goroutine leaks, at their labelled function) with confidence
likely or confirmed; negatives must produce no finding at all at that level.

The labels name sites, the detectors never see them: nothing in the agent knows these
programs (see tools/testsvc/README.md)."""
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import AGENT, GO_VERSIONS, ROOT, TESTSVC, GoService

CORPUS = json.loads((ROOT / "tools" / "testsvc" / "corpus.json").read_text())["programs"]
PROGRAMS = [p for p in CORPUS if not p.get("benchmark") and p["name"] != "basic"]
SAMPLES = 6
# Heap growth is judged per GC epoch (the post-GC floor), and a small service at this load
# runs a GC every few seconds: give memory leaks a longer window than goroutine leaks.
MEMORY_SAMPLES = 20  # 40 s: on a loaded 2-core machine the service's GC runs less often, and
                     # the heap detectors need their GC epochs (one miss in 6 runs at 14)
INTERVAL = "2s"


def samples_for(program):
    return MEMORY_SAMPLES if program.get("kind") in ("heap-growth", "rss-growth") else SAMPLES


def sample(url, samples):
    """One JSON line per sample (--each): an alert raised at any sample counts for a positive
    (that is when an operator is paged), and a negative must stay quiet at every sample."""
    out = subprocess.run([str(AGENT), "sample", url, "--samples", str(samples), "--interval", INTERVAL, "--each"],
                         capture_output=True, text=True, timeout=180)
    try:
        lines = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
    except json.JSONDecodeError:
        lines = []
    if len(lines) != samples:
        return {"error": f"rc={out.returncode} stdout={out.stdout[-500:]!r} stderr={out.stderr[-800:]!r}"}
    findings, seen = [], set()
    for l in lines:
        for f in l["findings"]:
            key = (f["kind"], f["fingerprint"])
            if key not in seen:
                seen.add(key)
                findings.append(dict(f, sample=l["sample"]))
    return {"findings": findings, "samples_ok": sum(1 for l in lines if l["ok"])}


def run_corpus(go):
    services = {}
    try:
        for p in PROGRAMS:
            # A brisk but modest load: leaks show within a few intervals, the machine keeps up.
            # A label's "args" scale a program to this window (see corpus.json).
            services[p["name"]] = GoService(p["name"], go=go, args=("-rate", "40", *p.get("args", [])))
        with ThreadPoolExecutor(max_workers=len(services)) as ex:
            by_name = {p["name"]: p for p in PROGRAMS}
            futs = {name: ex.submit(sample, s.url, samples_for(by_name[name])) for name, s in services.items()}
            return {name: f.result() for name, f in futs.items()}
    finally:
        for s in services.values():
            s.stop()


_results = {}


def results(go):
    if go not in _results:
        _results[go] = run_corpus(go)
    return _results[go]


def matches(program, finding):
    kinds = {program["kind"], *program.get("also", [])}
    if finding["kind"] not in kinds:
        return False
    if finding["kind"] in ("goroutine-leak", "deadlock"):
        return finding.get("function") == program["function"] or program["kind"] == "deadlock"
    return True


@pytest.mark.parametrize("go", GO_VERSIONS)
@pytest.mark.parametrize("program", [p for p in PROGRAMS if p["leaks"]], ids=lambda p: p["name"])
def test_positive_detected(go, program):
    r = results(go)[program["name"]]
    assert "findings" in r, r.get("error")
    found = [f for f in r["findings"] if matches(program, f)]
    assert found, f"{program['name']} (Go {go}): expected {program['kind']} at {program.get('function')}, got " + \
        json.dumps(r["findings"], indent=1)[:3000]
    f = found[0]
    assert f["confidence"] in ("likely", "confirmed")
    assert len(f["fingerprint"]) == 16
    for h in found:
        if h["kind"] == "heap-growth":  # a heap finding names its site, or says why not
            assert h["function"] or (h["no_site"] and h["no_site_reason"]), h
            assert not (h["function"] and h["no_site"]), h
    if program["kind"] == "goroutine-leak":
        assert f["file"].endswith(program["file"]), f
        assert f["line"] == program["line"], f
        assert f["state"] == program["state"], f


@pytest.mark.parametrize("go", GO_VERSIONS)
@pytest.mark.parametrize("program", [p for p in PROGRAMS if not p["leaks"]], ids=lambda p: p["name"])
def test_negative_quiet(go, program):
    r = results(go)[program["name"]]
    assert "findings" in r, r.get("error")
    assert r["samples_ok"] == samples_for(program)
    assert r["findings"] == [], json.dumps(r["findings"], indent=1)[:3000]
