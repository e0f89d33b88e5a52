"""The API reference (``/api/docs``) in a real browser: Swagger UI renders every operation and the
"Authorize" dialog under the page's strict CSP, with no request to another origin. A CSP violation
only shows in the browser's console, so only a browser can tell that the page still works."""

from __future__ import annotations

from typing import Any

from tests.support.browser import Server, new_page


async def test_api_reference_renders_under_its_csp(browser: Any, shared_server: Server) -> None:
    server = shared_server
    page = await new_page(browser)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))  # type: ignore[attr-defined]

    reply = await page.goto(server.url + "/api/docs")  # type: ignore[attr-defined]
    assert "script-src 'self';" in (await reply.header_value("content-security-policy"))
    await page.wait_for_selector(".opblock", timeout=30_000)  # type: ignore[attr-defined]
    assert await page.locator(".opblock").count() >= 50  # type: ignore[attr-defined]
    await page.click("button.authorize")  # type: ignore[attr-defined]
    dialog = await page.inner_text(".auth-container >> nth=0")  # type: ignore[attr-defined]
    assert "X-BINTU-TOKEN" in dialog

    assert not page.console_errors, page.console_errors  # type: ignore[attr-defined]
    assert requested and all(url.startswith(server.url + "/") for url in requested), requested
