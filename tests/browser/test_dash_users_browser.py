"""User management in a real browser (Debian's Chromium through Playwright): the Invite new user
dialog, the users table, the user overview's dialogs, flash messages after post/redirect/get, and the
keyboard behaviour of dialogs and menus. Screenshots of each page and dialog at 1440 and 375 px go
to test-artifacts/screenshots/ (users-*)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from tests.support.browser import Server, new_page, shoot, sign_in

OBSERVER = "observer@demo.example.com"
ADMIN = "admin@demo.example.com"


async def shoot_page(page: Any, name: str, width: int) -> None:
    await shoot(page, f"users-{name}-{width}")


async def shoot_dialog(page: Any, name: str, width: int) -> None:
    # The viewport as the person sees it (a modal dialog over the page), not the full page.
    await shoot(page, f"users-dialog-{name}-{width}", full_page=False)


async def active_text(page: Any) -> str:
    return str(await page.evaluate("document.activeElement && document.activeElement.textContent.trim()"))


def holding(posts: list[str], release: asyncio.Event) -> Any:
    """A route handler that records each request and holds it until ``release`` is set."""

    async def hold(route: Any) -> None:
        posts.append(route.request.url)
        await release.wait()
        await route.continue_()

    return hold


def in_viewport(box: dict[str, float] | None, height: int) -> bool:
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


async def user_id_of(page: Any, email: str) -> str:
    href = await page.get_attribute(f".users-table a:text-is('{email}')", "href")
    assert href
    return href.rsplit("/", 1)[1]


async def test_users_page_invite_dialog_and_keyboard_at_1440(
    browser: Any, server: Server, screenshots: Path
) -> None:
    page = await new_page(browser, 1440)
    await sign_in(page, server, *server.admin)

    # Skip link: the first Tab stop, and it moves focus to the main content.
    await page.keyboard.press("Tab")
    assert await active_text(page) == "Skip to content"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"

    # Profile menu closes when keyboard focus leaves it.
    await page.click(".avatar")
    assert await page.is_visible("#profile-menu")
    for _ in range(6):
        await page.keyboard.press("Tab")
    assert not await page.is_visible("#profile-menu")
    assert await page.get_attribute(".avatar", "aria-expanded") == "false"

    # Invite new user from the profile menu on another page: the users page opens the dialog.
    await page.click(".avatar")
    await page.click("#profile-menu >> text=Invite new user")
    await page.wait_for_url("**/organisation/users")
    dialog = page.locator("#invite-dialog")
    await dialog.wait_for(state="visible")
    # The permission overview sits beneath the role selector and follows the selection.
    select_box = await page.locator("#invite-dialog-role").bounding_box()
    preview_box = await page.locator("#invite-dialog-preview").bounding_box()
    assert select_box and preview_box and preview_box["y"] > select_box["y"]
    assert "Operator (nanoUser)" in await page.inner_text("#invite-dialog-preview")
    await page.select_option("#invite-dialog-role", "nanoReadOnly")
    preview = await page.inner_text("#invite-dialog-preview")
    assert "Observer (nanoReadOnly)" in preview and "Create stream" not in preview
    await shoot_dialog(page, "invite", 1440)
    # Escape closes it and focus returns to the page's Invite button.
    await page.keyboard.press("Escape")
    assert not await dialog.is_visible()

    # From the page's button: the dialog, then the result after the redirect.
    await page.click("main >> text=Invite new user")
    await dialog.wait_for(state="visible")
    await page.select_option("#invite-dialog-role", "nanoReadOnly")
    await page.click("#invite-dialog button[type=submit]")
    await page.wait_for_url("**/organisation/users")
    assert "shown only this once" in await page.inner_text("[data-flash=success]")
    link = await page.input_value("#invite-link")
    assert re.fullmatch(re.escape(server.url) + r"/invite/swi_[\w-]+", link)
    assert "swi_" not in page.url
    result = await page.inner_text(".invite-result")
    assert result.count("Observer (nanoReadOnly)") == 1
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", result)) == 1
    assert await page.input_value("#invite-dialog-role") == "nanoReadOnly"  # the form keeps the role
    await shoot_page(page, "invited", 1440)
    await page.reload()
    assert await page.locator("#invite-link").count() == 0  # shown once
    assert await page.locator("[data-flash]").count() == 0

    # The users table: no wall of red, your row marked, the sole admin's Delete disabled and explained.
    delete = page.get_by_role("button", name=f"Delete user {OBSERVER}")
    assert await delete.count() == 1
    background = await delete.evaluate("b => getComputedStyle(b).backgroundColor")
    assert background in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)"), background
    own_row = page.locator("tr.is-self")
    assert await own_row.locator(".badge-you").inner_text() == "You"
    own_delete = page.get_by_role("button", name=f"Delete user {ADMIN}")
    assert await own_delete.is_disabled()
    assert "only Administrator" in (await own_delete.get_attribute("title") or "")
    description = await own_delete.evaluate(
        "b => document.getElementById(b.getAttribute('aria-describedby')).textContent"
    )
    assert "only Administrator" in description
    await shoot_page(page, "list", 1440)

    # A per-row dialog: the danger callout, Escape, focus back on the row's button.
    await delete.click()
    observer_id = await user_id_of(page, OBSERVER)
    danger = page.locator(f"#delete-{observer_id} .notice-danger")
    assert await danger.is_visible()
    await shoot_dialog(page, "delete-from-list", 1440)
    await page.keyboard.press("Escape")
    assert (
        await page.evaluate("document.activeElement.getAttribute('aria-label')") == f"Delete user {OBSERVER}"
    )
    await page.get_by_role("button", name=f"Reset user token of {OBSERVER}").click()
    assert await page.locator(f"#reset-{observer_id} .notice-warn").is_visible()
    await page.keyboard.press("Escape")

    # Revoke asks first.
    await page.locator("button:text-is('Revoke')").first.click()
    revoke = page.locator("dialog[id^=revoke-][open]")
    assert await revoke.locator(".notice-danger").is_visible()
    await shoot_dialog(page, "revoke", 1440)
    await revoke.locator("button[type=submit]").click()
    await page.wait_for_url("**/organisation/users")
    assert "revoked" in await page.inner_text("[data-flash=success]")
    assert page.console_errors == []


async def test_user_overview_dialogs_flashes_and_phone_layout(
    browser: Any, server: Server, screenshots: Path
) -> None:
    for width in (1440, 375):
        page = await new_page(browser, width)
        height = 900
        await sign_in(page, server, *server.admin)
        await page.goto(server.url + "/organisation/users")
        await shoot_page(page, "list", width)
        observer_id = await user_id_of(page, OBSERVER)
        user_url = f"{server.url}/organisation/users/{observer_id}"
        await page.goto(user_url)
        await shoot_page(page, "user", width)

        # Update permission sits at the top of the overview, above the facts.
        button = await page.locator("[data-dialog-open=role-dialog]").bounding_box()
        facts = await page.locator("dl.facts").bounding_box()
        assert button and facts and button["y"] < facts["y"]

        # Its dialog compares the current role with the chosen one, and follows the selection.
        await page.click("[data-dialog-open=role-dialog]")
        preview = page.locator("#new-role-preview")
        assert "confirming changes nothing" in await preview.inner_text()
        await page.select_option("#new-role", "nanoAdmin")
        text = await preview.inner_text()
        assert "Observer (nanoReadOnly)" in text and "Administrator (nanoAdmin)" in text
        assert "Gains" in text and "Loses" not in text
        confirm = page.locator("#role-dialog button[type=submit]")
        assert in_viewport(await confirm.bounding_box(), height)  # reachable without scrolling
        await shoot_dialog(page, "role", width)
        await page.keyboard.press("Escape")
        assert await active_text(page) == "Update permission"

        # The warnings are callouts.
        await page.click("#main >> text=Reset user token")
        assert await page.locator("#reset-dialog .notice-warn").is_visible()
        await shoot_dialog(page, "reset", width)
        await page.keyboard.press("Escape")
        await page.click("#main >> text=Delete user")
        assert await page.locator("#delete-dialog .notice-danger").is_visible()
        await shoot_dialog(page, "delete", width)
        await page.keyboard.press("Escape")

        # Confirming the current role: says nothing changed, on the user page (post/redirect/get).
        await page.click("[data-dialog-open=role-dialog]")
        await page.select_option("#new-role", "nanoReadOnly")
        await page.click("#role-dialog button[type=submit]")
        await page.wait_for_url(user_url)
        assert "Nothing was changed" in await page.inner_text("[data-flash=info]")
        await page.reload()
        assert await page.locator("[data-flash]").count() == 0  # once

        # No double submit: while the reset is on its way its button is disabled, a second click
        # sends nothing more.
        posts: list[str] = []
        release = asyncio.Event()

        await page.route("**/token-reset", holding(posts, release))
        await page.click("#main >> text=Reset user token")
        submit = page.locator("#reset-dialog button[type=submit]")
        # One script does press, look, press again: while a navigation is pending, Playwright
        # runs no new script in the page.
        pressed = await submit.evaluate(
            """async (button) => {
                button.click();
                await new Promise((resolve) => setTimeout(resolve, 50));
                const disabled = button.disabled;
                button.form.requestSubmit();  // what a second press (or Enter) would do
                return disabled;
            }"""
        )
        assert pressed is True
        release.set()
        await page.wait_for_url(user_url)
        assert "token of observer@demo.example.com was reset" in await page.inner_text("[data-flash=success]")
        assert len(posts) == 1
        await page.unroute("**/token-reset")

        # A refusal from a dialog (the sole admin demoting themselves) comes back with a danger flash.
        await page.goto(server.url + "/organisation/users")
        own_url = page.url + "/" + await user_id_of(page, ADMIN)
        await page.goto(own_url)
        await page.click("[data-dialog-open=role-dialog]")
        await page.select_option("#new-role", "nanoUser")
        await page.click("#role-dialog button[type=submit]")
        await page.wait_for_url(own_url)
        flash = await page.inner_text("[data-flash=danger]")
        assert "at least one Administrator" in flash
        assert await page.get_attribute("[data-flash=danger]", "role") == "alert"
        await shoot_page(page, "refused", width)

        if width == 375:
            # On a phone the new invitation link is visible without scrolling.
            await page.goto(server.url + "/organisation/users")
            await page.click(".mobile-menu-button")
            await page.click("#mobile-menu >> text=Invite new user")
            await page.locator("#invite-dialog").wait_for(state="visible")
            await shoot_dialog(page, "invite", width)
            generate = page.locator("#invite-dialog button[type=submit]")
            assert in_viewport(await generate.bounding_box(), height)
            await generate.click()
            await page.wait_for_url("**/organisation/users")
            assert in_viewport(await page.locator("#invite-link").bounding_box(), height)
            await shoot(page, "users-invited-375", full_page=False)
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the page scrolls sideways by {overflow} px"
        assert page.console_errors == []
        await page.context.close()
