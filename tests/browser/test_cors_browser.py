"""Cross-origin calls in a real browser (Debian's Chromium driven by Playwright): a page served from
one loopback origin (``http://localhost:<port2>``) calls Streamward on another
(``http://127.0.0.1:<port1>``) with the browser's own XHR and fetch, as the player, the webcaster
SDK and stream-list pages do from a customer's site. The bintu calls succeed; a call to a dashboard
path is blocked by the browser."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.browser import Server


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
async def page(browser: Any, customer_site: str) -> Any:
    context = await browser.new_context()
    opened = await context.new_page()
    await opened.goto(customer_site)
    return opened


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


async def test_a_page_on_another_origin_uses_the_bintu_api_but_not_the_dashboard(
    page: Any, shared_server: Server
) -> None:
    api = shared_server
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
