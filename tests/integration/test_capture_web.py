"""The "capture now" flow of the target page in headless Chromium: a real agent samples a real
Go service and pushes to a real collector; on the target page the user asks for a goroutine
dump, the page shows the request's progress (queued/delivered, then done) and offers the
result for download; the downloaded link serves the dump the agent captured."""
import subprocess
import urllib.request

import pytest

from conftest import AGENT
from test_downlink import http_fleet, stop

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
            lambda d: state.get_attribute("data-state") in ("done", "failed", "expired"))
        assert state.get_attribute("data-state") == "done", state.text
        link = browser.find_element(By.ID, "capture-download")
        assert link.get_attribute("data-download").endswith("-goroutine-debug2.txt")
        href = link.get_attribute("href")
        with urllib.request.urlopen(href, timeout=10) as r:
            assert r.read().startswith(b"goroutine ")
            assert "attachment" in r.headers.get("Content-Disposition", "")
        browser.save_screenshot(str(tmp_path / "capture-done.png"))
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        stop(agent)
        coll.terminate()
        coll.wait(timeout=10)
