"""The dashboard in a real browser: Debian's Chromium (/usr/bin/chromium) driven by Playwright.

One real server process (``streamward serve`` on SQLite with the demo organisation) serves every
test here (tests/browser/conftest.py). Screenshots of each page at 1440 px and 375 px go to
test-artifacts/screenshots/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import WIDTHS, Server, new_page, shoot, sign_in


async def test_invite_accept_role_change_token_reset_and_delete(
    browser: Any, server: Server, screenshots: Path
) -> None:
    admin = await new_page(browser)
    await sign_in(admin, server, *server.admin)

    # The admin invites an Observer.
    await admin.goto(server.url + "/organisation/users/invite")
    await admin.select_option("#invite-role", "nanoReadOnly")
    assert "Observer" in await admin.inner_text("#invite-preview")  # the preview follows the selection
    async with admin.expect_navigation():  # post/redirect/get: the link is shown once after the redirect
        await admin.click("text=Generate new invite token")
    link = await admin.input_value("#invite-link")
    assert link.startswith(server.url + "/invite/swi_")

    # The invitee accepts in a second browser context (another person, another cookie jar).
    invitee = await new_page(browser)
    await invitee.goto(link)
    assert "Join Demo Organisation" in await invitee.inner_text("h1")
    await invitee.fill("#signup-email", "newcomer@example.com")
    await invitee.fill("#signup-password", "a-long-new-password")
    await invitee.click("button:text-is('Join')")
    await invitee.wait_for_url("**/organisation/overview")
    assert await invitee.locator("text=User management").count() == 0  # Observers do not read users
    assert await invitee.locator("text=Reveal").count() == 0

    # The used link does not work again.
    again = await new_page(browser)
    await again.goto(link)
    assert "cannot be used" in await again.inner_text("h1")

    # The admin makes the invitee an Operator.
    await admin.goto(server.url + "/organisation/users?q=newcomer")
    await admin.click("text=newcomer@example.com")
    user_url = admin.url
    await admin.click("[data-dialog-open=role-dialog]")
    await admin.select_option("#new-role", "nanoUser")
    assert "Create playback tokens" in await admin.inner_text("#new-role-preview")
    async with admin.expect_navigation():
        await admin.click("#role-dialog button[type=submit]")
    assert admin.url == user_url
    assert await admin.locator("[data-flash=success]").count() == 1
    assert "Operator" in await admin.inner_text(".facts")

    # A role change ends the invitee's bintu tokens (documented), so the next load asks them to
    # sign in; once in, the new rights show.
    await invitee.goto(server.url + "/organisation/overview")
    assert "/login" in invitee.url
    await sign_in(invitee, server, "newcomer@example.com", "a-long-new-password")
    assert await invitee.locator(".tabs >> text=User management").count() == 1

    # The admin resets the invitee's token: the invitee's next request lands on the login page.
    await admin.goto(user_url)
    await admin.click("text=Reset user token")
    async with admin.expect_navigation():
        await admin.click("#reset-dialog button[type=submit]")
    assert await admin.locator("[data-flash=success]").count() == 1
    await invitee.goto(server.url + "/organisation/users")
    assert "/login" in invitee.url

    # The admin deletes the invitee, who can no longer sign in.
    await admin.goto(user_url)
    await admin.click("#main >> text=Delete user")
    async with admin.expect_navigation():
        await admin.click("#delete-dialog button[type=submit]")
    assert admin.url.endswith("/organisation/users")
    assert await admin.locator("table >> text=newcomer@example.com").count() == 0  # the flash names them
    assert admin.console_errors == [] and invitee.console_errors == []
    await invitee.goto(server.url + "/login")
    await invitee.fill("#email", "newcomer@example.com")
    await invitee.fill("#password", "a-long-new-password")
    await invitee.click("form[action='/login'] button[type=submit]")
    assert "Email or password is wrong" in await invitee.inner_text("[role=alert]")


async def test_observer_sees_no_admin_controls_and_forged_posts_are_refused(
    browser: Any, server: Server
) -> None:
    page = await new_page(browser)
    await sign_in(page, server, *server.observer)
    body = await page.inner_text("body")
    for control in ("Reveal", "Set webhook", "Make VOD public", "Invite new user", "User management"):
        assert control not in body, control
    # A forged POST with the observer's own, valid CSRF token: the server refuses it anyway.
    csrf = await page.get_attribute("input[name=csrf_token]", "value")
    response = await page.request.post(
        server.url + "/organisation/vod", form={"csrf_token": csrf or "", "public": "on"}, max_redirects=0
    )
    assert response.status == 403
    assert "text/html" in response.headers["content-type"]  # a page, not JSON
    # Without a CSRF token, even a permitted action is refused.
    admin = await new_page(browser)
    await sign_in(admin, server, *server.admin)
    forged = await admin.request.post(
        server.url + "/organisation/vod", form={"public": "on"}, max_redirects=0
    )
    assert forged.status == 403


async def test_mobile_menu_has_the_account_section(browser: Any, server: Server) -> None:
    page = await new_page(browser, width=375)
    await sign_in(page, server, *server.admin)
    assert not await page.is_visible("#profile-menu")
    assert not await page.is_visible(".topnav")
    await page.click(".mobile-menu-button")
    menu = page.locator("#mobile-menu")
    assert await menu.is_visible()
    text = await menu.inner_text()
    assert "ACCOUNT" in text.upper()
    for entry in ("My organisation", "Invite new user", "Log out"):
        assert entry in text
    await page.keyboard.press("Escape")
    assert not await menu.is_visible()


async def test_profile_menu_on_desktop(browser: Any, server: Server) -> None:
    page = await new_page(browser)
    await sign_in(page, server, *server.admin)
    await page.click(".avatar")
    menu = page.locator("#profile-menu")
    assert await menu.is_visible()
    for entry in ("My organisation", "Invite new user", "Log out"):
        assert entry in await menu.inner_text()
    await page.click("#profile-menu >> text=Log out")
    await page.wait_for_url("**/login")


PAGES = [
    ("overview", "/organisation/overview"),
    ("users", "/organisation/users"),
    ("invite", "/organisation/users/invite"),
    ("streams", "/streams"),
    ("roles", "/roles"),
    ("audit", "/audit"),
    ("deliveries", "/webhook/deliveries"),
]


@pytest.mark.parametrize("width", WIDTHS)
async def test_screenshots_of_every_page(browser: Any, server: Server, screenshots: Path, width: int) -> None:
    page = await new_page(browser, width=width)
    await page.goto(server.url + "/login")
    await shoot(page, f"login-{width}")
    await sign_in(page, server, *server.admin)
    for name, path in PAGES:
        response = await page.goto(server.url + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        # Nothing may be wider than the viewport at 375 px (tables scroll inside their card).
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} overflows by {overflow}px at {width}px"
        await shoot(page, f"{name}-{width}")
    users = await page.goto(server.url + "/organisation/users")
    assert users is not None
    await page.click("table a:has-text('admin@demo.example.com')")
    await shoot(page, f"user-{width}")
    assert page.console_errors == []
    invalid = await page.goto(server.url + "/invite/swi_not-a-real-token")
    assert invalid is not None and invalid.status == 404  # a friendly page, with the right status
    await shoot(page, f"invite-invalid-{width}")
