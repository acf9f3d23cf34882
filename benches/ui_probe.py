"""The web UI at 5,000 services x 2 instances, measured in headless Chromium.

Usage: python3 benches/ui_probe.py HTTP_BASE TRIALS OUT_TABLE

Registers the catalog through PUT /v1/catalog/register, then drives Chromium
through chromedriver (plain WebDriver over HTTP) and times, inside the page
with performance.now():
  load    navigation start -> body[data-loaded=true] and the first service
          row inside the viewport (an upper bound: observed by polling every
          animation frame once the document has parsed);
  filter  the search text set and its input event sent -> #count shows the
          number of matching services and the first match is visible;
  live    the page itself sends a registration (fetch, same clock) -> the new
          service's row is on the page;
and, outside the browser, the time to read /v1/internal/ui/services.
Prints one line per measure; writes the Markdown table rows to OUT_TABLE.
"""
import concurrent.futures
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import http, wait  # noqa: E402

SERVICES = 5000
NODES = 100
ELEMENT = "element-6066-11e4-a4b2-ec2b-bbc3f06a3b6f"


def register_catalog(base):
    """5,000 services, each with an instance on two of 100 nodes, a passing
    check per instance and tags that the filter can find."""

    def one(i):
        name = f"svc-{i:05d}"
        for side, node in (("a", i % NODES), ("b", (i + NODES // 2) % NODES)):
            sid = f"{name}-{side}"
            body = {
                "Node": f"node-{node:03d}",
                "Address": f"10.20.{node // 250}.{node % 250 + 1}",
                "Service": {
                    "ID": sid,
                    "Service": name,
                    "Port": 8000 + (i % 1000),
                    "Tags": ["v1", f"zone-{i % 10}"],
                },
                "Check": {
                    "CheckID": f"service:{sid}",
                    "Name": "alive",
                    "ServiceID": sid,
                    "Status": "passing",
                },
            }
            for _ in range(5):
                status, text = http("PUT", f"{base}/v1/catalog/register", json.dumps(body), timeout=30)
                if status == 200:
                    break
                time.sleep(0.2)
            else:
                raise SystemExit(f"register {sid}: {status} {text}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(SERVICES)))


class WebDriver:
    """The few WebDriver commands the probe needs, over plain HTTP."""

    def __init__(self, url, chromium, profile):
        self.url = url
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    # Control returns at DOMContentLoaded, before the app's
                    # first fetch has come back, so the load timer sees it.
                    "pageLoadStrategy": "eager",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--window-size=1280,900",
                            f"--user-data-dir={profile}",
                        ],
                    },
                    "timeouts": {"script": 60000, "pageLoad": 60000},
                }
            }
        }
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            raise SystemExit(f"webdriver {method} {path}: {e.code} {e.read().decode()[:500]}")

    def cmd(self, method, path, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def goto(self, url):
        self.cmd("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def js_async(self, script, *args):
        return self.cmd("POST", "/execute/async", {"script": script, "args": list(args)})

    def close(self):
        try:
            self.cmd("DELETE", "")
        except SystemExit:
            pass


# Resolves with performance.now() once `cond()` holds, checked every frame.
WAIT_FRAME = """
const done = arguments[arguments.length - 1];
const cond = new Function(arguments[0]);
const deadline = performance.now() + 30000;
(function tick() {
  let ok = false;
  try { ok = cond(); } catch (e) {}
  if (ok) return done(performance.now());
  if (performance.now() > deadline) return done(-1);
  requestAnimationFrame(tick);
})();
"""

FIRST_ROW_VISIBLE = """
if (document.body.dataset.loaded !== 'true') return false;
const r = document.querySelector('[data-service]');
if (!r) return false;
const b = r.getBoundingClientRect();
return b.height > 0 && b.top < innerHeight && b.bottom > 0;
"""

FILTER = """
const [term, want, first] = arguments;
const done = arguments[arguments.length - 1];
const input = document.querySelector('#search');
const t0 = performance.now();
input.value = term;
input.dispatchEvent(new Event('input', {bubbles: true}));
const deadline = t0 + 30000;
(function tick() {
  const c = document.querySelector('#count');
  const row = document.querySelector('[data-service="' + first + '"]');
  if (c && c.textContent.trim() === want && row) return done(performance.now() - t0);
  if (performance.now() > deadline) return done(-1);
  requestAnimationFrame(tick);
})();
"""

LIVE = """
const [name] = arguments;
const done = arguments[arguments.length - 1];
const body = JSON.stringify({Node: 'node-000', Address: '10.20.0.1',
  Service: {ID: name, Service: name, Port: 1}});
const t0 = performance.now();
fetch('/v1/catalog/register', {method: 'PUT', body});
const deadline = t0 + 30000;
(function tick() {
  if (document.querySelector('[data-service="' + name + '"]')) return done(performance.now() - t0);
  if (performance.now() > deadline) return done(-1);
  requestAnimationFrame(tick);
})();
"""


def stats(xs):
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
    return statistics.median(xs), p90, xs[-1]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    base, trials, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_bin:
        raise SystemExit("missing required tool: chromium and chromedriver (apt-get install chromium chromium-driver)")

    t = time.monotonic()
    register_catalog(base)
    print(f"registered {SERVICES} services x 2 instances in {time.monotonic() - t:.1f} s", file=sys.stderr)

    rows = []
    # (d) the endpoint alone.
    times, size = [], 0
    for _ in range(max(trials, 10)):
        t = time.monotonic()
        with urllib.request.urlopen(f"{base}/v1/internal/ui/services?dc=dc1", timeout=30) as r:
            body = r.read()
        times.append((time.monotonic() - t) * 1000)
        size = len(body)
    n = len(json.loads(body))
    if n < SERVICES:
        raise SystemExit(f"/v1/internal/ui/services listed {n} services, want at least {SERVICES}")
    rows.append((f"`GET /v1/internal/ui/services` ({n} entries, {size / 1024:.0f} KiB)", times))

    work = tempfile.mkdtemp()
    port = free_port()
    driver = subprocess.Popen(
        [driver_bin, f"--port={port}", f"--log-path={work}/chromedriver.log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    wd = None
    try:
        if not wait(lambda: http("GET", f"http://127.0.0.1:{port}/status")[0] == 200, 20):
            raise SystemExit("chromedriver did not start")
        wd = WebDriver(f"http://127.0.0.1:{port}", chromium, f"{work}/profile")
        page = f"{base}/ui/dc1/services"
        # One load to warm the HTTP cache revalidation and the JIT, not counted.
        wd.goto(page)
        wd.js_async(WAIT_FRAME, FIRST_ROW_VISIBLE)

        loads, fetches = [], []
        for _ in range(trials):
            wd.goto("about:blank")
            wd.goto(page)
            ms = wd.js_async(WAIT_FRAME, FIRST_ROW_VISIBLE)
            if ms < 0:
                raise SystemExit("the services page did not load within 30 s")
            loads.append(ms)
            f = wd.js(
                "const e = performance.getEntriesByType('resource')"
                ".filter(e => e.name.includes('/v1/internal/ui/services'));"
                "return e.length ? e[0].responseEnd - e[0].startTime : null;"
            )
            if f is not None:
                fetches.append(f)
        rows.append(("services page load: navigation -> first row visible (`data-loaded=true`)", loads))
        if fetches:
            rows.append(("... of which the first `/v1/internal/ui/services` fetch", fetches))
        rows_in_dom = wd.js("return document.querySelectorAll('[data-service]').length;")

        filters = {}
        for term, want, first in (
            ("svc-0123", "10 services", "svc-01230"),
            ("zone-7", "500 services", "svc-00007"),
            ("svc-04999", "1 service", "svc-04999"),
        ):
            ms_list = []
            for _ in range(trials):
                wd.js(
                    "const i = document.querySelector('#search'); i.value = '';"
                    "i.dispatchEvent(new Event('input', {bubbles: true}));"
                )
                wd.js_async(WAIT_FRAME, f"return document.querySelector('#count').textContent.trim() !== {json.dumps(want)};")
                ms = wd.js_async(FILTER, term, want, first)
                if ms < 0:
                    raise SystemExit(f"filter {term!r} never showed {want!r}")
                ms_list.append(ms)
            filters[term] = ms_list
            rows.append((f"filter `{term}` -> `#count` reads `{want}`", ms_list))

        wd.goto(page)
        wd.js_async(WAIT_FRAME, FIRST_ROW_VISIBLE)
        lives = []
        for k in range(trials):
            # Sorted first, so the row is inside the rendered window.
            ms = wd.js_async(LIVE, f"aaa-live-{k:03d}")
            if ms < 0:
                raise SystemExit("a registration did not appear on the page within 30 s")
            lives.append(ms)
            time.sleep(0.2)
        rows.append(("live update: registration sent -> its row on the page", lives))
    finally:
        if wd:
            wd.close()
        try:
            os.killpg(driver.pid, 9)
        except ProcessLookupError:
            pass
        driver.wait()
        shutil.rmtree(work, ignore_errors=True)

    with open(out, "w") as f:
        for name, xs in rows:
            med, p90, mx = stats(xs)
            line = f"| {name} | {len(xs)} | {med:.0f} ms | {p90:.0f} ms | {mx:.0f} ms |"
            print(line)
            f.write(line + "\n")
        f.write(f"\nRow elements in the DOM with 5,000 services listed: {rows_in_dom}.\n")
    print(f"row elements in the DOM: {rows_in_dom}")


if __name__ == "__main__":
    main()
