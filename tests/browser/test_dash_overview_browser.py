"""The Overview, audit log, deliveries, roles and streams pages in Debian's Chromium (Playwright).

Its own ``streamward serve`` (tests/browser/conftest.py: the demo organisation, private webhook
targets allowed so that a receiver on loopback can answer) and a webhook receiver in this process
that fails on purpose.
Screenshots at 1440 px and 375 px go to test-artifacts/screenshots/ (prefix ``b-``).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.browser import WIDTHS, Server, new_page, shoot, sign_in
from tests.support.receiver import Receiver, Reply


@pytest.fixture(scope="module")
def server_settings() -> dict[str, str]:
    return {"allow_private_webhook_targets": "true"}  # the receiver below listens on loopback


async def shot(page: Any, name: str) -> None:
    await shoot(page, f"b-{name}")


async def no_overflow(page: Any, where: str) -> None:
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")  # type: ignore[attr-defined]
    assert overflow <= 0, f"{where} overflows the viewport by {overflow}px"


async def background(page: Any, selector: str) -> str:
    return str(await page.eval_on_selector(selector, "e => getComputedStyle(e).backgroundColor"))  # type: ignore[attr-defined]


GREEN_BACKGROUND = "rgb(228, 245, 236)"  # --ok-bg: the success callout


async def test_overview_secrets_feedback_and_confirmations(browser: Any, server: Server) -> None:
    page = await new_page(browser)
    await sign_in(page, server, *server.admin)
    overview = server.url + "/organisation/overview"

    # No webhook yet: the delivery log says what to do, and links to where to do it.
    await page.goto(server.url + "/webhook/deliveries")
    empty = page.locator(".empty-state")
    assert "set up a webhook" in await empty.inner_text()
    await shot(page, "deliveries-empty-1440")
    await empty.locator("a", has_text="Overview").click()
    await page.wait_for_url(overview + "#webhook-title")
    await page.goto(overview)

    # The API-access warning is a danger callout (it was amber).
    callout = "section[aria-labelledby=api-title] .notice"
    assert "notice-danger" in (await page.get_attribute(callout, "class") or "")
    amber = await page.evaluate(
        """() => { const probe = document.createElement("div"); probe.className = "notice notice-warn";
        document.body.append(probe); const color = getComputedStyle(probe).backgroundColor;
        probe.remove(); return color; }"""
    )
    assert await background(page, callout) != amber

    # Reveal: the browser ends on the overview's GET; a reload neither posts again nor shows the key.
    await page.click("form[action='/organisation/apikey/reveal'] button")
    await page.wait_for_url(overview)
    key = await page.input_value("#api-key")
    assert "•" not in key and len(key) > 20
    await shot(page, "overview-revealed-1440")
    await page.reload()
    assert page.url == overview
    assert "•" in await page.input_value("#api-key")

    async with Receiver(lambda _request, _n: Reply(503)) as receiver:
        # A webhook to a receiver that fails: its new secret shows once, after a redirect.
        await page.click("text=Set webhook")
        await page.fill("#webhook-url", receiver.url())
        await page.click("#webhook-dialog button[type=submit]:text-is('Save')")
        await page.wait_for_url(overview)
        assert (await page.input_value("#webhook-secret")).startswith("whsec_")

        # Send test event: a failure is a danger flash that says what the receiver answered.
        await page.click("text=Send test event")
        await page.wait_for_url(overview)
        flash = page.locator("[data-flash]")
        assert await flash.get_attribute("data-flash") == "danger"
        assert "HTTP 503" in await flash.inner_text()
        assert await background(page, "[data-flash]") != GREEN_BACKGROUND
        await shot(page, "overview-test-failed-1440")
        await page.reload()
        assert await page.locator("[data-flash]").count() == 0  # said once

    # Rotate secret asks first, in a danger dialog; Escape closes it and focus goes back.
    opener = page.locator("[data-dialog-open=rotate-secret-dialog]")
    await opener.click()
    dialog = page.locator("#rotate-secret-dialog")
    assert await dialog.is_visible()
    assert "Receivers must update their secret" in await dialog.inner_text()
    await shot(page, "dialog-rotate-secret-1440")
    await page.keyboard.press("Escape")
    assert not await dialog.is_visible()
    assert await opener.evaluate("e => e === document.activeElement")
    await opener.click()
    await page.click("#rotate-secret-dialog button[type=submit]")
    await page.wait_for_url(overview)
    rotated = await page.input_value("#webhook-secret")
    assert rotated.startswith("whsec_")
    await page.reload()
    assert await page.locator("#webhook-secret").count() == 0

    # Make VOD public asks first, in a warning dialog; Cancel changes nothing.
    await page.click("button:text-is('Make VOD public')")
    vod = page.locator("#vod-public-dialog")
    assert "readable without credentials" in await vod.inner_text()
    await shot(page, "dialog-vod-public-1440")
    await page.click("#vod-public-dialog [data-dialog-close]")
    assert "Private" in await page.inner_text("section[aria-labelledby=vod-title]")

    # Tags on the overview lead to the streams carrying them.
    await page.goto(server.url + "/streams/new")
    await page.fill("#s-tags", "event:keynote")
    await page.click("button:text-is('Create stream')")
    await page.wait_for_url(re.compile(r".*/streams/[0-9a-f-]{36}$"))
    name = (await page.inner_text("h1")).removeprefix("Stream ").strip()
    await page.goto(overview)
    await page.click("section[aria-labelledby=tags-title] a.chip")
    await page.wait_for_url(re.compile(r".*/streams\?tag=event%3Akeynote$"))
    assert name in await page.inner_text("table")
    assert page.console_errors == []  # type: ignore[attr-defined]


async def test_audit_log_reads_as_sentences_and_stacks_on_phones(browser: Any, server: Server) -> None:
    page = await new_page(browser)
    await sign_in(page, server, *server.admin)
    # Something to read: a role change of the demo observer.
    await page.goto(server.url + "/organisation/users")
    await page.goto(server.url + "/audit")
    await page.select_option("#f-action", "user.login")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url(re.compile(r".*action=user.login"))
    first = page.locator("table.audit-table tbody tr").first
    text = await first.inner_text()
    assert "admin@demo.example.com" in text and "signed in" in text
    assert "{" not in await page.inner_text("table.audit-table")  # no raw JSON
    # Dates on one line, ids whole.
    time_cell = first.locator("td").first
    box = await time_cell.bounding_box()
    line = float(await time_cell.evaluate("e => parseFloat(getComputedStyle(e).lineHeight)"))
    assert box and box["height"] < 2 * line + 20, box
    await no_overflow(page, "/audit")

    phone = await new_page(browser, width=375)
    await sign_in(phone, server, *server.admin)
    await phone.goto(server.url + "/audit")
    assert await phone.locator("table.audit-table thead").is_hidden() or await phone.eval_on_selector(
        "table.audit-table thead", "e => e.getBoundingClientRect().height <= 1"
    )
    row = phone.locator("table.audit-table tbody tr").first
    assert await row.evaluate("e => getComputedStyle(e).display") == "block"
    await no_overflow(phone, "/audit at 375")


@pytest.mark.parametrize("width", WIDTHS)
async def test_screenshots_of_helper_b_pages(browser: Any, server: Server, width: int) -> None:
    page = await new_page(browser, width=width)
    await sign_in(page, server, *server.admin)
    for name, path in [
        ("overview", "/organisation/overview"),
        ("audit", "/audit"),
        ("deliveries", "/webhook/deliveries"),
        ("roles", "/roles"),
        ("streams", "/streams"),
        ("streams-empty-filter", "/streams?tag=nothing-here"),
        ("audit-empty-filter", "/audit?action=tag.deleted"),
    ]:
        response = await page.goto(server.url + path)
        assert response is not None and response.status == 200, path
        await no_overflow(page, f"{path} at {width}")
        await shot(page, f"{name}-{width}")
    await page.goto(server.url + "/organisation/overview")
    if await page.locator("[data-dialog-open=rotate-secret-dialog]").count():
        await page.click("[data-dialog-open=rotate-secret-dialog]")
        await shot(page, f"dialog-rotate-secret-{width}")
        await page.keyboard.press("Escape")
    await page.click("button:text-is('Make VOD public')")
    await shot(page, f"dialog-vod-public-{width}")
    # The dialog's confirm button is on screen (not below the fold) on a phone.
    confirm = page.locator("#vod-public-dialog button[type=submit]")
    assert await confirm.is_visible()
    box = await confirm.bounding_box()
    assert box and box["y"] + box["height"] <= 900
    assert page.console_errors == []  # type: ignore[attr-defined]
