"""The "capture now" flow in headless Chromium: a real agent samples a real Go service and
pushes to a real collector. On the target page the user asks for a goroutine dump, the page
shows the request's progress (queued, then uploaded) and offers the result for download; the
downloaded link serves the dump the agent captured. On the page of a real finding (a leaking
service) the user asks for a trace and a heap profile: the page follows queued -> delivered ->
running -> uploaded with times, the files open in `go tool trace` and `go tool pprof`, and the
finding lists both captures."""
import re
import subprocess
import urllib.request

import pytest

from conftest import AGENT, wait_for
from test_downlink import GO, http, http_fleet, stop
from test_http_api import run_pprof

pytest.importorskip("selenium", reason="python3-selenium (tools/setup.sh installs it)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from test_web import browser, load  # noqa: E402,F401 (fixture)


def test_capture_now_shows_progress_and_offers_the_download(go_service, tmp_path, browser):  # noqa: F811
    coll, agent, log, hport, tid = http_fleet(go_service, tmp_path)
    base = f"http://127.0.0.1:{hport}"
    try:
        load(browser, base, f"/targets/{tid}", "capture-target")
        # the gateway goes quiet: the request waits, and the page says so
        assert stop(agent) == 0
        browser.find_element(By.CSS_SELECTOR, "#capture-kind option[value='goroutine-debug2']").click()
        browser.find_element(By.ID, "capture-go").click()
        state = browser.find_element(By.ID, "capture-state")
        WebDriverWait(browser, 10).until(lambda d: state.get_attribute("data-state") == "queued")
        assert "queued" in state.text
        browser.save_screenshot(str(tmp_path / "capture-queued.png"))
        # it comes back: the capture is delivered, run and uploaded; the page follows
        agent = subprocess.Popen([str(AGENT), "run", "--config", str(tmp_path / "agent.conf")],
                                 stdout=open(log, "a"), stderr=subprocess.STDOUT)
        WebDriverWait(browser, 40, poll_frequency=0.2).until(
            lambda d: state.get_attribute("data-state") in ("uploaded", "failed", "expired"))
        assert state.get_attribute("data-state") == "uploaded", state.text
        link = browser.find_element(By.ID, "capture-download")
        assert link.get_attribute("data-download").endswith("-goroutine-debug2.txt")
        href = link.get_attribute("href")
        with urllib.request.urlopen(href, timeout=10) as r:
            assert r.read().startswith(b"goroutine ")
            assert "attachment" in r.headers.get("Content-Disposition", "")
        # the target's captures list follows, with the download link
        row = WebDriverWait(browser, 10).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#capture-list tbody tr[data-state='uploaded']"))[0]
        assert row.find_element(By.CSS_SELECTOR, "a[data-download]").get_attribute("href") == href
        browser.save_screenshot(str(tmp_path / "capture-done.png"))
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        stop(agent)
        coll.terminate()
        coll.wait(timeout=10)


def capture_from_page(browser, kind, seconds=None):
    """Asks for a capture with the page's card; returns (the states the page showed, in order,
    the state element) once it has ended."""
    browser.find_element(By.CSS_SELECTOR, f"#capture-kind option[value='{kind}']").click()
    if seconds:
        box = browser.find_element(By.ID, "capture-seconds")
        box.clear()
        box.send_keys(str(seconds))
    browser.find_element(By.ID, "capture-go").click()
    state = browser.find_element(By.ID, "capture-state")
    seen = []

    def ended(d):
        s = state.get_attribute("data-state")
        if s and (not seen or seen[-1] != s):
            seen.append(s)
        return s in ("uploaded", "failed", "expired")
    WebDriverWait(browser, 60, poll_frequency=0.1).until(ended)
    assert seen[-1] == "uploaded", (seen, state.text)
    return seen, state


def download(browser, base):
    link = browser.find_element(By.ID, "capture-download")
    with urllib.request.urlopen(link.get_attribute("href"), timeout=10) as r:
        return link.get_attribute("data-download"), r.read()


def test_capture_from_the_finding_page(go_service, tmp_path, browser):  # noqa: F811
    # a leaking service (Go 1.27, whose trace format `go tool trace` reads): a finding opens
    coll, agent, log, hport, tid = http_fleet(go_service, tmp_path, go="1.27", program="range-unclosed",
                                              agent_extra="deep_interval = 4s\nleak_interval = 5s")
    base = f"http://127.0.0.1:{hport}"
    try:
        def open_finding():
            st, doc = http(hport, "GET", "/api/findings?state=open")
            return st == 200 and next((f for f in doc["findings"] if f["target"] == tid), None)
        finding = wait_for(open_finding, timeout=90, step=1)
        assert finding, log.read_text()[-2000:]
        fid = finding["id"]
        load(browser, base, f"/findings/{fid}", "capture-finding")
        assert "No captures yet" in browser.find_element(By.ID, "captures").text

        # a 2 s trace: the page shows it running (the agent's started report) before its result
        seen, state = capture_from_page(browser, "trace", seconds=2)
        assert "running" in seen, seen
        steps = {li.get_attribute("data-step"): li for li in state.find_elements(By.CSS_SELECTOR, ".capture-steps li")}
        for step in ("queued", "delivered", "running", "uploaded"):
            assert "on" in steps[step].get_attribute("class"), (step, state.text)
            assert steps[step].find_element(By.TAG_NAME, "time").text.count(":") == 2, (step, state.text)
        browser.execute_script("arguments[0].scrollIntoView()", state)
        browser.save_screenshot(str(tmp_path / "capture-finding-trace.png"))
        name, trace = download(browser, base)
        assert name.endswith("-trace.trace"), name
        assert re.match(rb"go 1\.\d+ trace\x00", trace), trace[:32]  # the runtime's trace header
        cid_trace = int(name.split("-")[1])
        cap = http(hport, "GET", f"/api/captures/{cid_trace}")[1]
        assert cap["finding"] == fid and cap["started_ms"] <= cap["uploaded_ms"], cap
        # a leaking service sampled every second usually fills the 120 KiB cap within the
        # trace's span: the page says so, and a cut trace is not for go tool trace (test_downlink
        # opens a whole one from a quiet service)
        assert ("cut at the size cap" in state.text) == cap["cut"], (state.text, cap)
        if not cap["cut"]:
            path = tmp_path / name
            path.write_bytes(trace)
            out = subprocess.run([GO, "tool", "trace", "-d=parsed", str(path)], capture_output=True, text=True,
                                 timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                                   "GOTOOLCHAIN": "local"})
            assert out.returncode == 0, out.stderr[-2000:]

        # a heap profile of the same target, opened by go tool pprof
        capture_from_page(browser, "heap")
        name, heap = download(browser, base)
        assert name.endswith("-heap.pb.gz") and heap[:2] == b"\x1f\x8b", (name, heap[:8])
        (tmp_path / name).write_bytes(heap)
        assert "flat" in run_pprof(tmp_path / name, "-top", "-sample_index=inuse_space")

        # the finding lists both, newest first, with their download links
        rows = WebDriverWait(browser, 10).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#capture-list tbody tr")) == 2 and
            d.find_elements(By.CSS_SELECTOR, "#capture-list tbody tr"))
        assert [r.get_attribute("data-state") for r in rows] == ["uploaded", "uploaded"]
        assert rows[1].get_attribute("data-capture") == str(cid_trace)
        links = [r.find_element(By.CSS_SELECTOR, "a[data-download]").get_attribute("href") for r in rows]
        assert links[1].endswith(f"/api/captures/{cid_trace}/data"), links
        detail = http(hport, "GET", f"/api/findings/{fid}")[1]
        assert [c["kind"] for c in detail["captures"]] == ["heap", "trace"], detail["captures"]
        load(browser, base, f"/findings/{fid}", "capture-finding-list")  # reloaded: the list is there
        assert len(browser.find_elements(By.CSS_SELECTOR, "#capture-list tbody tr")) == 2
    finally:
        stop(agent)
        coll.terminate()
        coll.wait(timeout=10)
