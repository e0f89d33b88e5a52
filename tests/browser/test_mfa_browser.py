"""Second factors in Debian's Chromium, with the browser's own virtual authenticator (the DevTools
protocol's WebAuthn domain): a passkey registered from the security page, used as the second step
of a sign-in and as a sign-in of its own, then removed; an authenticator app set up from its QR
page; axe on each new page. Screenshots at 1440 px and 375 px (prefix ``mfa-``).

WebAuthn needs a secure context and a relying-party id that is a domain: http://localhost is both,
http://127.0.0.1 is not a valid rp id. So this module's server runs with ``host=localhost`` (its
public base URL, the relying party's origin, is then http://localhost:<port>) and the browser opens
it by that name.
"""

from __future__ import annotations

from typing import Any

import pyotp
import pytest

from tests.support.axe import RUN_AXE, axe_script
from tests.support.browser import WIDTHS, Server, new_page, shoot

FAILING_IMPACTS = ("serious", "critical")


@pytest.fixture(scope="module")
def server_settings() -> dict[str, str]:
    return {"host": "localhost", "run_worker": "false"}


def base_of(server: Server) -> str:
    return server.url.replace("://127.0.0.1:", "://localhost:")


async def virtual_authenticator(page: Any) -> tuple[Any, str]:
    """A platform authenticator that holds discoverable credentials and verifies the user (as a
    laptop's fingerprint reader does), answering every request without a touch."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable", {"enableUI": False})
    added = await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


async def credentials(cdp: Any, authenticator: str) -> list[dict[str, Any]]:
    found = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    return list(found["credentials"])


async def axe_clean(page: Any, axe: str, where: str) -> None:
    await page.evaluate(axe)
    violations = [v for v in await page.evaluate(RUN_AXE, None) if v["impact"] in FAILING_IMPACTS]
    assert not violations, f"{where}: {violations}"


async def both_widths(page: Any, name: str, axe: str) -> None:
    """Screenshots at both widths (and axe at each): nothing wider than the viewport."""
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 900})
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} at {width}px overflows by {overflow}px"
        await axe_clean(page, axe, f"{name} at {width}px")
        await shoot(page, f"mfa-{name}-{width}")
    await page.set_viewport_size({"width": WIDTHS[0], "height": 900})


async def sign_in_with_password(page: Any, base: str, email: str, password: str) -> None:
    await page.goto(base + "/login")
    await page.fill("#email", email)
    await page.fill("#password", password)
    await page.click("form[action='/login'] button[type=submit]")


async def log_out(page: Any, base: str) -> None:
    await page.click("button.avatar")
    await page.click("#profile-menu form[action='/logout'] button")
    await page.wait_for_url(base + "/login")


async def test_passkey_register_second_step_passwordless_and_remove(browser: Any, server: Server) -> None:
    axe = axe_script()
    base = base_of(server)
    email, password = server.operator
    page = await new_page(browser)
    cdp, authenticator = await virtual_authenticator(page)

    await sign_in_with_password(page, base, email, password)
    await page.wait_for_url(base + "/organisation/overview")
    await page.click("button.avatar")
    await page.click("#profile-menu a[href='/account/security']")
    await page.wait_for_url(base + "/account/security")
    await both_widths(page, "security-empty", axe)

    # Register: passkeys.js fetches the options, the virtual authenticator makes the credential.
    await page.fill("#passkey-name", "Virtual laptop")
    await page.click("form[action='/account/security/passkeys'] button[type=submit]")
    await page.wait_for_selector("#recovery-code-list")
    assert "Virtual laptop" in await page.inner_text("main")
    codes = await page.locator("#recovery-code-list li").all_inner_texts()
    assert len(codes) == 10
    held = await credentials(cdp, authenticator)
    assert len(held) == 1 and held[0]["isResidentCredential"] and held[0]["rpId"] == "localhost"
    await both_widths(page, "security-codes", axe)

    # An authenticator app too, from its QR page (pyotp reads the key the page shows).
    await page.fill("#totp-name", "Phone")
    await page.click("form[action='/account/security/totp'] button[type=submit]")
    await page.wait_for_selector(".qr svg")
    # Inline SVG, drawn at the size the stylesheet gives it.
    assert await page.evaluate("document.querySelector('.qr svg').getBoundingClientRect().width") > 100
    await both_widths(page, "totp-enrol", axe)
    secret = await page.get_attribute("#totp-secret", "value")
    assert secret
    await page.fill("#totp-code", pyotp.TOTP(secret).now())
    await page.click("form[action$='/confirm'] button[type=submit]")
    await page.wait_for_url(base + "/account/security")
    assert await page.locator("#recovery-code-list").count() == 0  # not the first factor: no codes
    await both_widths(page, "security", axe)
    await log_out(page, base)

    # Password, then the passkey as the second step.
    await sign_in_with_password(page, base, email, password)
    await page.wait_for_url(base + "/login/mfa")
    await both_widths(page, "login-mfa", axe)
    await page.click("form[data-passkey-assert] button[type=submit]")
    await page.wait_for_url(base + "/organisation/overview")
    await log_out(page, base)

    # A passkey alone (discoverable, user verified): the operator belongs to one organisation.
    await page.goto(base + "/login")
    assert await page.is_visible("form[data-passkey-login]")
    await both_widths(page, "login", axe)
    await page.click("form[data-passkey-login] button[type=submit]")
    await page.wait_for_url(base + "/organisation/overview")

    # Remove the passkey, confirmed with the password.
    await page.goto(base + "/account/security")
    await page.click("button[aria-label='Remove the passkey Virtual laptop']")
    dialog = page.locator("dialog[id^='remove-passkey-']")
    await dialog.locator("input[name=password]").fill(password)
    await shoot(page, "mfa-remove-passkey-1440", full_page=False)
    await dialog.locator("button[type=submit]").click()
    await page.wait_for_selector(".flash")
    assert "The passkey was removed" in await page.inner_text(".flash")
    assert "No passkey yet." in await page.inner_text("main")
    assert page.console_errors == []


async def test_a_cancelled_passkey_says_so_and_the_form_stays_usable(browser: Any, server: Server) -> None:
    base = base_of(server)
    email, password = server.observer
    page = await new_page(browser)
    cdp, authenticator = await virtual_authenticator(page)
    await sign_in_with_password(page, base, email, password)
    await page.wait_for_url(base + "/organisation/overview")
    await page.goto(base + "/account/security")
    # The person dismisses the browser's prompt: the ceremony fails with NotAllowedError.
    await page.evaluate(
        "() => { navigator.credentials.create = () =>"
        " Promise.reject(new DOMException('The operation was cancelled.', 'NotAllowedError')); }"
    )
    await page.fill("#passkey-name", "Never made")
    await page.click("form[action='/account/security/passkeys'] button[type=submit]")
    error = page.locator("form[action='/account/security/passkeys'] [data-passkey-error]")
    await error.wait_for(state="visible")
    assert "cancelled or timed out" in await error.inner_text()
    assert await page.is_enabled("form[action='/account/security/passkeys'] button[type=submit]")
    assert await credentials(cdp, authenticator) == []


async def test_the_policy_limits_a_member_until_they_set_up_a_factor(browser: Any, server: Server) -> None:
    axe = axe_script()
    base = base_of(server)
    email, password = server.admin
    page = await new_page(browser)
    await sign_in_with_password(page, base, email, password)
    await page.wait_for_url(base + "/organisation/overview")

    await page.click("button[data-dialog-open='mfa-policy-dialog']")
    await axe_clean(page, axe, "the policy dialog")
    await shoot(page, "mfa-policy-dialog-1440", full_page=False)
    await page.click("#mfa-policy-dialog button[type=submit]")
    # The administrator has no second factor either: from this request on, the session is limited.
    await page.wait_for_url(base + "/organisation/overview")
    assert "mfa_enrolment_required" in await page.inner_text("main")
    assert await page.locator("nav.topnav").count() == 0
    await both_widths(page, "enrolment-required", axe)

    await page.click("a.btn:has-text('Set up a second factor')")
    await page.wait_for_url(base + "/account/security")
    assert "requires a second factor" in await page.inner_text("main")
    await both_widths(page, "security-enrolment-only", axe)

    await page.click("form[action='/account/security/totp'] button[type=submit]")
    secret = await page.get_attribute("#totp-secret", "value")
    assert secret
    await page.fill("#totp-code", pyotp.TOTP(secret).now())
    await page.click("form[action$='/confirm'] button[type=submit]")
    await page.wait_for_selector("#recovery-code-list")

    # Enrolled: the whole dashboard again, and the switch can be turned off.
    await page.goto(base + "/organisation/overview")
    await page.click("form[action='/organisation/mfa-policy'] button[role=switch]")
    await page.wait_for_selector(".flash")
    assert "no longer required" in await page.inner_text(".flash")
    # The 403 page's own status is the one error the console shows.
    assert [e for e in page.console_errors if "status of 403" not in e] == []
