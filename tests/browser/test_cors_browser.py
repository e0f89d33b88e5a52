"""Cross-origin calls in a real browser (Debian's Chromium driven by Playwright): a page served from
one loopback origin (``http://localhost:<port2>``) calls Streamward on another
(``http://127.0.0.1:<port1>``) with the browser's own XHR and fetch, as the player, the webcaster
SDK and stream-list pages do from a customer's site. The bintu calls succeed; a call to a dashboard
path is blocked by the browser."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = os.environ.get("STREAMWARD_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("STREAMWARD_REQUIRE_BROWSER") == "1"
if not Path(CHROMIUM).exists():
    if REQUIRE_BROWSER:
        raise pytest.UsageError(f"Chromium is required (CI) but missing at {CHROMIUM}")
    pytest.skip(f"Chromium not installed at {CHROMIUM}", allow_module_level=True)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@dataclass(frozen=True)
class Api:
    url: str
    api_key: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    var_dir = tmp_path_factory.mktemp("cors-browser-var")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMWARD_") and k != "DATABASE_URL"}
    env |= {
        "STREAMWARD_VAR_DIR": str(var_dir),
        "STREAMWARD_PORT": str(port),
        "STREAMWARD_LOG_LEVEL": "warning",
        "STREAMWARD_RUN_WORKER": "false",
    }
    demo = subprocess.run(
        [sys.executable, "-m", "streamward", "demo"], env=env, capture_output=True, text=True, timeout=120
    )
    assert demo.returncode == 0, demo.stderr
    found = re.search(r"X-BINTU-APIKEY\): (\S+)", demo.stdout)
    assert found, demo.stdout
    process = subprocess.Popen([sys.executable, "-m", "streamward", "serve"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/login", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "the server stopped"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield Api(url, found.group(1))
    finally:
        process.terminate()
        process.wait(timeout=20)


class _CustomerPage(BaseHTTPRequestHandler):
    """The customer's own site: one empty page; the test's script runs in it."""

    def do_GET(self) -> None:
        body = b"<!doctype html><title>customer site</title><p>player here</p>"
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def customer_site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CustomerPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # "localhost" and "127.0.0.1" are different origins to the browser.
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def page(customer_site: str) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            opened = await browser.new_page()
            await opened.goto(customer_site)
            yield opened
        finally:
            await browser.close()


# Run in the customer's page: the SDK's XHR (Accept + Content-Type even on GET, the API key header),
# then fetch calls of the player and a token backend's front end. Each result is what the page can
# read, or the error the browser raised.
CALLS = """
async ({api, apiKey}) => {
  const xhr = (method, path, headers, body) => new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open(method, api + path, true);
    for (const [name, value] of Object.entries(headers)) request.setRequestHeader(name, value);
    request.onreadystatechange = () => {
      if (request.readyState === 4) resolve({status: request.status, body: request.responseText});
    };
    request.send(body === undefined ? null : JSON.stringify(body));
  });
  const call = async (method, path, headers, body) => {
    try {
      const response = await fetch(api + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
      return {status: response.status, body: await response.text(),
              retryAfter: response.headers.get("Retry-After")};
    } catch (error) {
      return {blocked: String(error)};
    }
  };
  const sdk = {"Accept": "application/json", "Content-Type": "application/json"};
  const results = {};
  results.organisation = await xhr("GET", "/api/organisation", {...sdk, "X-BINTU-APIKEY": apiKey});
  results.refused = await xhr("GET", "/api/organisation", sdk);
  results.splay = await call("POST", "/api/v1/splay", {...sdk, "X-BINTU-APIKEY": apiKey}, {orgawide: true});
  const token = JSON.parse(results.splay.body || "{}").data?.token;
  results.verify = await call("POST", "/api/v1/splay/verify", {"Content-Type": "application/json"}, {token});
  results.apikey = await call("POST", "/api/apikey", sdk, {apikey: apiKey});
  results.dashboard = await call("GET", "/organisation", {});
  results.dashboardForm = await call("POST", "/login", {"Content-Type": "application/json"}, {});
  return results;
}
"""


async def test_a_page_on_another_origin_uses_the_bintu_api_but_not_the_dashboard(page: Any, api: Api) -> None:
    import json

    assert page.url.startswith("http://localhost:") and not api.url.startswith("http://localhost:")
    results = await page.evaluate(CALLS, {"api": api.url, "apiKey": api.api_key})

    organisation = results["organisation"]
    assert organisation["status"] == 200, organisation
    assert json.loads(organisation["body"])["id"]
    # Errors are readable too: the page can tell "bad key" from "network down".
    assert results["refused"]["status"] == 401, results["refused"]
    assert json.loads(results["refused"]["body"])["error"]["code"] == "unauthenticated"

    splay = results["splay"]
    assert splay["status"] == 200, splay
    token = json.loads(splay["body"])["data"]["token"]
    verify = results["verify"]
    assert verify["status"] == 200, verify
    assert json.loads(verify["body"])["data"]["token"] == token
    apikey = results["apikey"]
    assert apikey["status"] == 200, apikey
    assert json.loads(apikey["body"])["key"] == api.api_key[:6] + "****"

    # The dashboard sends no CORS headers: the browser refuses the page the response.
    for name in ("dashboard", "dashboardForm"):
        assert "blocked" in results[name], (name, results[name])
        assert "Failed to fetch" in results[name]["blocked"]
