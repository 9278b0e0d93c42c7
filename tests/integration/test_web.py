"""The fleet web page in a real browser: a real agent samples a real leaking Go service
(range-unclosed) and a real healthy one (worker-pool) and pushes its snapshots to a real
collector over CoAP/DTLS; the collector serves the page from the assets built into its binary,
and headless Debian Chromium (driven by chromedriver through python3-selenium) loads it.

It checks what a person running the fleet relies on: the leaking service is marked on the
fleet overview (and the healthy one is not), the finding page shows the leak's site and a
frame of the service's stack, the target page's plots have drawn points, and the browser's
console stays free of errors. Screenshots go to build/test-artifacts/web/."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import AGENT, BUILD, COLLECTOR, ROOT, GoService, free_port, wait_for
from pgcluster import BACKENDS, backend_db, pg_cluster  # noqa: F401 (pg_cluster: a fixture)

selenium = pytest.importorskip("selenium", reason="python3-selenium (tools/setup.sh installs it)")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ARTIFACTS = BUILD / "test-artifacts" / "web"
CORPUS = {p["name"]: p for p in json.loads((ROOT / "tools/testsvc/corpus.json").read_text())["programs"]}
LEAKY, HEALTHY = "range-unclosed", "worker-pool"
DEVICE = "gw-web"
IDLE = 300  # provisioned devices that never report: the overview must stay fast and show them silent


def udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module", params=BACKENDS)
def fleet(request, tmp_path_factory):
    """One collector (CoAP + HTTP) fed by one agent watching a leaking and a healthy service,
    left running for every test of the module once the leak is an open finding; once per backend
    (SQLite, then PostgreSQL: pgcluster.py)."""
    tmp = tmp_path_factory.mktemp("web")
    db, creds = backend_db(request, tmp), tmp / "creds"
    subprocess.run([str(COLLECTOR), "provision", DEVICE, "--db", str(db), "--out", str(creds)],
                   check=True, capture_output=True)
    for i in range(IDLE):
        subprocess.run([str(COLLECTOR), "provision", f"gw-idle-{i:03d}", "--db", str(db), "--out", str(tmp / "idle.creds")],
                       check=True, capture_output=True)
    cport, hport = udp_port(), free_port()
    base = f"http://127.0.0.1:{hport}"
    procs = []
    try:
        procs.append(subprocess.Popen(
            [str(COLLECTOR), "serve", "--db", str(db), "--listen", f"127.0.0.1:{cport}", "--http", f"127.0.0.1:{hport}"],
            stdout=subprocess.DEVNULL, stderr=open(tmp / "collector.log", "w")))

        def healthy():
            try:
                return get_json(base + "/healthz").get("status") == "ok"
            except OSError:
                return False
        assert wait_for(healthy, timeout=10, step=0.1), (tmp / "collector.log").read_text()[-2000:]
        leaky = GoService(LEAKY, "1.23", ("-rate", "40"))
        procs.append(leaky.proc)
        good = GoService(HEALTHY, "1.23", ("-rate", "40"))
        procs.append(good.proc)
        conf = tmp / "agent.conf"
        # short intervals keep the module fast: the leak is judged within ~10 s
        conf.write_text(f"""[agent]
device_id = {DEVICE}
interval = 1s
deep_interval = 4s
leak_interval = 5s
discover = no
[spool]
dir = {tmp / "spool"}
fsync = always
[uplink]
collector = coaps://127.0.0.1:{cport}
credentials = {creds}
ack_timeout = 1s
[target "{LEAKY}"]
url = {leaky.url}
[target "{HEALTHY}"]
url = {good.url}
""")
        procs.append(subprocess.Popen([str(AGENT), "run", "--config", str(conf)],
                                      stdout=open(tmp / "agent.log", "w"), stderr=subprocess.STDOUT))
        fn = CORPUS[LEAKY]["function"]

        def leak_open():
            try:
                fs = get_json(base + "/api/findings?state=open")
            except OSError:
                return None
            fs = fs if isinstance(fs, list) else fs.get("findings", [])
            return next((f for f in fs if f.get("function") == fn and f.get("service") == LEAKY), None)
        finding = wait_for(leak_open, timeout=90, step=1)
        assert finding, (tmp / "agent.log").read_text()[-3000:]
        yield {"base": base, "finding": finding, "tmp": tmp}
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("chromium and chromium-driver are needed (tools/setup.sh installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1440,1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    # the browser's console, read after each page: any error there fails the test
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    b = webdriver.Chrome(service=Service(driver), options=opts)
    b.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield b
    b.quit()


def load(browser, base, route, shot, allow=()):
    """Opens a route of the page, waits until the app says the view is rendered, saves a
    screenshot, and fails on any console error (SEVERE: uncaught exceptions, failed loads)."""
    # A fresh document per route: between two routes of one page the browser would only change
    # the hash, and the "rendered" mark and the request timings of the last view would remain.
    browser.get("about:blank")
    browser.get(f"{base}/#{route}")
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "return document.body.getAttribute('data-ready')"))
    time.sleep(0.3)  # let uPlot's first draw (requestAnimationFrame) finish before the screenshot
    browser.save_screenshot(str(ARTIFACTS / f"{shot}.png"))
    errors = [e for e in browser.get_log("browser")
              if e["level"] == "SEVERE" and not any(a in e["message"] for a in allow)]
    assert not errors, errors


def test_assets_are_served_from_the_binary(fleet):
    with urllib.request.urlopen(fleet["base"] + "/", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/html")
        assert b"/assets/app.js" in r.read()
    for path, ctype in (("/assets/app.js", "text/javascript"), ("/assets/uPlot.min.js", "text/javascript"),
                        ("/assets/uPlot.min.css", "text/css"), ("/assets/app.css", "text/css")):
        with urllib.request.urlopen(fleet["base"] + path, timeout=5) as r:
            assert r.headers["Content-Type"].startswith(ctype), path
            assert len(r.read()) > 100, path


def test_fleet_overview_marks_the_leaking_service(fleet, browser):
    load(browser, fleet["base"], "/", "fleet")
    rows = browser.find_elements(By.CSS_SELECTOR, "#fleet-grid tbody tr")
    assert any(DEVICE in r.text for r in rows), [r.text for r in rows]
    cell = browser.find_element(By.CSS_SELECTOR, f'#fleet-grid td.cell[data-service="{LEAKY}"]')
    assert cell.get_attribute("data-worst") in ("suspected", "likely", "confirmed"), cell.get_attribute("outerHTML")
    # the healthy service is never marked with a finding
    for c in browser.find_elements(By.CSS_SELECTOR, f'#fleet-grid td.cell[data-service="{HEALTHY}"]'):
        assert c.get_attribute("data-worst") == "ok", c.get_attribute("outerHTML")
    # the cell leads to the finding, whose page is the next test's subject
    href = cell.find_element(By.TAG_NAME, "a").get_attribute("href")
    assert href.endswith(f"#/findings/{fleet['finding']['id']}"), href


def test_fleet_overview_is_fast_with_hundreds_of_devices(fleet, browser):
    """301 devices: one row each, the never-seen ones visibly silent, the leaking one on top,
    fetched with a fixed number of API requests (none per device) and rendered quickly."""
    load(browser, fleet["base"], "/", "fleet-301")
    rows = browser.find_elements(By.CSS_SELECTOR, "#fleet-grid tbody tr")
    assert len(rows) == IDLE + 1
    assert DEVICE in rows[0].text  # worst first
    assert len(browser.find_elements(By.CSS_SELECTOR, "#fleet-grid tbody tr.silent")) == IDLE
    assert "silent" in rows[-1].text
    api_calls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/api/'))")
    assert len(api_calls) == 2, api_calls
    load_ms = int(browser.execute_script("return document.body.getAttribute('data-load-ms')"))
    print(f"fleet overview, {IDLE + 1} devices: {load_ms} ms from route to rendered")
    assert load_ms < 2000, load_ms
    # the filter narrows hundreds of rows to the one asked for, in the browser
    browser.find_element(By.ID, "filter").send_keys("gw-idle-042")
    WebDriverWait(browser, 5).until(lambda d: len([r for r in rows if r.is_displayed()]) == 1)


def test_finding_page_shows_the_site_and_the_stack(fleet, browser):
    f, want = fleet["finding"], CORPUS[LEAKY]
    load(browser, fleet["base"], f"/findings/{f['id']}", "finding")
    site = browser.find_element(By.ID, "site").text
    assert want["function"] in site and f"{want['file']}:{want['line']}" in site, site
    frames = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#stack li")]
    assert any(want["function"] in fr for fr in frames), frames
    assert any(want["created_by"] in t.text for t in browser.find_elements(By.TAG_NAME, "section")), \
        "created_by missing"
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "a[data-download]")]
    assert any(h.endswith(f"/api/findings/{f['id']}/profile.pb.gz") for h in links), links
    assert any(h.endswith(f"/api/targets/{f['target']}/goroutine.pb.gz") for h in links), links
    # the growth plot drew the site's count series
    assert int(browser.find_element(By.ID, "p-growth").get_attribute("data-points")) >= 2


# Counts the canvas pixels a plot painted: uPlot draws series paths onto its canvas, so a plot
# with no drawn data (only the empty frame, axes are DOM) stays almost blank.
PAINTED = """
const c = document.querySelector(arguments[0] + ' canvas');
if (!c) return -1;
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
return n;
"""


def test_target_page_plots_have_drawn_points(fleet, browser):
    target = fleet["finding"]["target"]
    load(browser, fleet["base"], f"/targets/{target}?range=1h", "target")
    points = int(browser.find_element(By.ID, "p-gor").get_attribute("data-points"))
    assert points >= 5, points
    for plot in ("#p-gor", "#p-heap", "#p-rss", "#p-thr"):
        assert browser.execute_script(PAINTED, plot) > 500, plot
    # the finding's opening is marked on the time axis and links to the finding
    fid = fleet["finding"]["id"]
    assert browser.find_elements(By.CSS_SELECTOR, f'a.marker[href="#/findings/{fid}"]')
    assert int(browser.find_element(By.ID, "p-gor").get_attribute("data-markers")) >= 1
    # the range picker switches the window and the page stays healthy
    browser.find_element(By.CSS_SELECTOR, '#ranges a[href$="range=6h"]').click()
    # read in one script: the view is re-rendered under a WebElement held across two calls
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(
        "const a = document.querySelector('#ranges a.on'); return a && a.textContent") == "6h")
    assert int(browser.execute_script("return document.getElementById('p-gor').getAttribute('data-points')")) >= 5
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_device_page_lists_both_targets(fleet, browser):
    load(browser, fleet["base"], f"/devices/{DEVICE}", "device")
    text = browser.find_element(By.ID, "app").text
    assert LEAKY in text and HEALTHY in text, text
    assert "online" in text


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A second collector whose HTTP side requires a token (http_token_file)."""
    tmp = tmp_path_factory.mktemp("web-token")
    db, token = tmp / "collector.db", "web-test-token-5f0c2d9e7a41"
    (tmp / "token").write_text(token + "\n")
    os.chmod(tmp / "token", 0o600)
    subprocess.run([str(COLLECTOR), "provision", "gw-guarded", "--db", str(db), "--out", str(tmp / "creds")],
                   check=True, capture_output=True)
    hport = free_port()
    p = subprocess.Popen([str(COLLECTOR), "serve", "--db", str(db), "--listen", f"127.0.0.1:{udp_port()}",
                          "--http", f"127.0.0.1:{hport}", "--http-token-file", str(tmp / "token")],
                         stdout=subprocess.DEVNULL, stderr=open(tmp / "collector.log", "w"))
    base = f"http://127.0.0.1:{hport}"

    def up():
        try:
            return get_json(base + "/healthz")
        except OSError:
            return None
    assert wait_for(up, timeout=10, step=0.1), (tmp / "collector.log").read_text()
    yield base, token
    p.terminate()
    p.wait(timeout=10)


def test_page_behind_a_token_works_with_http_basic(guarded, browser):
    """A person opens the guarded page with the token as the HTTP Basic password (the browser's
    login prompt, or user:token@ in the URL); the page's API requests must then work too (a
    relative fetch() against a URL with credentials is refused by the browser)."""
    base, token = guarded
    try:
        urllib.request.urlopen(base + "/api/devices", timeout=5)
        pytest.fail("the API answered without a token")
    except urllib.error.HTTPError as e:
        assert e.code == 401
    load(browser, base.replace("http://", f"http://edgetrace:{token}@"), "/", "fleet-token")
    rows = browser.find_elements(By.CSS_SELECTOR, "#fleet-grid tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "th.dev").text.split()[0] for r in rows] == ["gw-guarded"]


def test_unknown_ids_and_bad_routes_show_a_message(fleet, browser):
    """An unknown finding is the API's 404, shown as a message; a malformed hash neither throws
    nor leaves a blank page. Only the browser's own line about the 404 response is tolerated."""
    load(browser, fleet["base"], "/findings/987654", "finding-404", allow=("status of 404",))
    text = browser.find_element(By.ID, "app").text
    assert "Could not load this page" in text and "404" in text, text
    load(browser, fleet["base"], "/devices/%E0%A4%A", "device-bad-escape", allow=("status of 404",))
    assert browser.find_element(By.ID, "app").text.strip()
    load(browser, fleet["base"], "/no/such/page", "no-such-page")
    assert "no such page" in browser.find_element(By.ID, "app").text


def test_findings_list_by_state(fleet, browser):
    f = fleet["finding"]
    load(browser, fleet["base"], "/findings", "findings")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-finding="{f["id"]}"]')
    assert CORPUS[LEAKY]["function"] in row.text and LEAKY in row.text, row.text
    load(browser, fleet["base"], "/findings?state=cleared", "findings-cleared")
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-finding="{f["id"]}"]')
