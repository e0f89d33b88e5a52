"""Second factors in the dashboard, over HTTP as a browser drives it: setting up an authenticator app
(pyotp plays the app) and a passkey (tests/support/webauthn_soft.py plays the browser's
authenticator), the recovery codes shown once, the login's second step (app code, passkey, recovery
code, wrong answers, an exhausted challenge), signing in with a passkey alone, the organisation's
policy and the enrolment-only session it leaves a member without a factor, the users table's
factor column, an administrator's reset, CSRF, and hostile factor names rendered as text."""

from __future__ import annotations

import html
import json
import re
import time
from datetime import timedelta
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import select, update

from streamward.authn.mfa.factors import FRESH_SIGN_IN
from streamward.authn.mfa.models import Passkey, TotpFactor
from streamward.authn.models import BintuSession
from streamward.db import utcnow
from streamward.orgs.models import Organisation
from streamward.users.models import Account
from tests.conftest import PASSWORD, CreatedOrg, Env, Member
from tests.support.access import rule_of
from tests.support.data import audit_entries
from tests.support.mail import filed_mails
from tests.support.pages import SESSION_COOKIE, browser, csrf_of, flash_of, signed_in
from tests.support.routes import api_routes
from tests.support.webauthn_soft import SoftAuthenticator

BASE_URL = "https://streamward.example"
SECURITY = "/account/security"
LOGIN_STEP_COOKIE = "sw_login_step"
_SECRET = re.compile(r'id="totp-secret" type="hidden" value="([A-Z2-7]+)"')
_CODES = re.compile(r"<li>([0-9a-z]{5}-[0-9a-z]{5})</li>")
_QR = re.compile(r'<div class="qr" role="img" aria-label="[^"]+"><svg [^>]*viewBox="0 0 \d+ \d+"[^>]*><g ')
_CONFIRM = re.compile(r'action="/account/security/totp/([0-9a-f-]{36})/confirm"')
_PASSKEY_OPTIONS = re.compile(
    r'<script type="application/json" id="mfa-passkey-options">(.*?)</script>', re.S
)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Passkeys answer for the public base URL: the soft authenticator plays a page of that origin.
    return {"public_base_url": BASE_URL}


# --- helpers -----------------------------------------------------------------------------------------


def page_of(response: httpx.Response, status: int = 200) -> str:
    """An HTML page within the CSP: scripts only from files or as JSON data, no style attributes."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    text = response.text
    for tag in re.findall(r"<script[^>]*>", text):
        assert re.fullmatch(
            r'<script (src="/static/[^"]+" defer|type="application/json" id="[\w-]+")>', tag
        ), tag
    assert " style=" not in text
    return text


def refused_with(response: httpx.Response, code: str, status: int = 403) -> str:
    text = page_of(response, status)
    assert f"<code>{code}</code>" in text, text
    return text


def at_next_step(secret: str) -> str:
    """The app's code for the next 30-second step: a code is accepted once per step, and ±1 step of
    clock drift is allowed, so this one is new even right after the current one was used."""
    return pyotp.TOTP(secret).at(int(time.time()) + 30)


async def add_app(client: httpx.AsyncClient, name: str = "Phone") -> tuple[str, list[str]]:
    """Set up an authenticator app through the security page: (its secret, the recovery codes
    shown when it was the account's first factor — else [])."""
    page = page_of(await client.get(SECURITY))
    started = await client.post(f"{SECURITY}/totp", data={"csrf_token": csrf_of(page), "name": name})
    enrol = page_of(started)
    assert _QR.search(enrol), "the QR code is inline SVG"
    secret = _SECRET.findall(enrol)[0]
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    assert grouped in enrol  # the key, grouped for typing
    factor_id = _CONFIRM.findall(enrol)[0]
    confirmed = await client.post(
        f"{SECURITY}/totp/{factor_id}/confirm",
        data={"csrf_token": csrf_of(enrol), "code": pyotp.TOTP(secret).now()},
    )
    assert confirmed.status_code == 303, confirmed.text
    assert confirmed.headers["location"] == SECURITY
    shown = page_of(await client.get(SECURITY))
    return secret, _CODES.findall(shown)


async def password_step(
    client: httpx.AsyncClient, member: Member, next_page: str = "/organisation/overview"
) -> httpx.Response:
    login = page_of(await client.get("/login"))
    return await client.post(
        "/login",
        data={
            "csrf_token": csrf_of(login),
            "email": member.email,
            "password": member.password,
            "organisation": str(member.organisation.id),
            "next": next_page,
        },
    )


async def at_second_step(
    client: httpx.AsyncClient, member: Member, next_page: str = "/organisation/overview"
) -> str:
    """The password step done: the page that asks for the second factor."""
    answered = await password_step(client, member, next_page)
    assert answered.status_code == 303, answered.text
    assert answered.headers["location"] == "/login/mfa"
    cookie = answered.headers["set-cookie"]
    assert cookie.startswith(f"{LOGIN_STEP_COOKIE}=")
    for attribute in ("HttpOnly", "Path=/login", "SameSite=lax", "Max-Age="):
        assert attribute in cookie, cookie
    assert not client.cookies.get(SESSION_COOKIE)  # not signed in yet
    return page_of(await client.get("/login/mfa"))


async def answer(client: httpx.AsyncClient, page: str, **fields: str) -> httpx.Response:
    return await client.post("/login/mfa", data={"csrf_token": csrf_of(page)} | fields)


async def set_policy(env: Env, org: CreatedOrg, required: bool) -> None:
    async with env.runtime.database.session() as session:
        organisation = await session.get(Organisation, org.id)
        assert organisation is not None
        organisation.mfa_required = required
        await session.commit()


async def factor_rows(env: Env, member: Member) -> tuple[list[TotpFactor], list[Passkey], bool]:
    async with env.runtime.database.session() as session:
        apps = list(
            (
                await session.execute(select(TotpFactor).where(TotpFactor.account_id == member.account.id))
            ).scalars()
        )
        keys = list(
            (await session.execute(select(Passkey).where(Passkey.account_id == member.account.id))).scalars()
        )
        account = await session.get(Account, member.account.id)
        assert account is not None
        return apps, keys, account.mfa_enrolled


async def add_passkey(
    client: httpx.AsyncClient, authenticator: SoftAuthenticator, name: str
) -> httpx.Response:
    """What passkeys.js does: options as JSON, the authenticator's answer posted with the form."""
    page = page_of(await client.get(SECURITY))
    csrf = csrf_of(page)
    assert 'data-passkey-register="/account/security/passkeys/options"' in page
    options = await client.post(f"{SECURITY}/passkeys/options", data={"csrf_token": csrf})
    assert options.status_code == 200, options.text
    body = options.json()
    credential = authenticator.create(body["publicKey"])
    return await client.post(
        f"{SECURITY}/passkeys",
        data={
            "csrf_token": csrf,
            "name": name,
            "challenge": body["challenge"],
            "credential": json.dumps(credential),
        },
    )


# --- setting up an authenticator app -------------------------------------------------------------------


async def test_an_app_is_set_up_from_the_security_page_and_the_codes_are_shown_once(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")  # every role has its own account to protect
    other_session = member.headers
    client = await signed_in(env, member)

    menu = page_of(await client.get("/organisation/overview"))
    assert 'href="/account/password">Change password</a>' in menu
    assert f'href="{SECURITY}">Second factor and passkeys</a>' in menu
    empty = page_of(await client.get(SECURITY))
    assert "No authenticator app yet." in empty and "No passkey yet." in empty

    secret, codes = await add_app(client, "Work phone")
    assert len(codes) == 10 and len(set(codes)) == 10
    shown = page_of(await client.get(SECURITY))  # leaving the page and coming back: gone
    assert not _CODES.findall(shown)
    assert "Work phone" in shown and "10 of 10 left" in shown
    apps, _, enrolled = await factor_rows(env, member)
    assert enrolled and [app.confirmed_at is not None for app in apps] == [True]
    assert secret not in apps[0].secret_sealed  # sealed at rest
    # Adding a factor ends the account's other sessions, not this one.
    assert (await env.client.get("/api/organisation", headers=other_session)).status_code == 401
    assert (await client.get(SECURITY)).status_code == 200
    assert await audit_entries(env, action="user.mfa_added", org=org)

    # A second app: no new codes.
    _, more = await add_app(client, "Tablet")
    assert more == []


async def test_a_wrong_first_code_asks_again_and_the_app_stays_pending(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    client = await signed_in(env, member)
    page = page_of(await client.get(SECURITY))
    enrol = page_of(
        await client.post(f"{SECURITY}/totp", data={"csrf_token": csrf_of(page), "name": "Phone"})
    )
    secret, factor_id = _SECRET.findall(enrol)[0], _CONFIRM.findall(enrol)[0]
    wrong = await client.post(
        f"{SECURITY}/totp/{factor_id}/confirm", data={"csrf_token": csrf_of(enrol), "code": "000000"}
    )
    again = page_of(wrong, 400)
    assert "That code is not right" in again
    assert secret not in again  # the key is not shown again
    assert f"/account/security/totp/{factor_id}/confirm" in again
    _, _, enrolled = await factor_rows(env, member)
    assert not enrolled
    right = await client.post(
        f"{SECURITY}/totp/{factor_id}/confirm",
        data={"csrf_token": csrf_of(again), "code": pyotp.TOTP(secret).now()},
    )
    assert right.status_code == 303, right.text
    _, _, enrolled = await factor_rows(env, member)
    assert enrolled


async def test_removing_an_app_and_new_codes_need_the_password_or_a_code(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    client = await signed_in(env, member)
    secret, first_codes = await add_app(client)
    page = page_of(await client.get(SECURITY))
    csrf = csrf_of(page)
    app_id = re.findall(r'action="/account/security/totp/([0-9a-f-]{36})/remove"', page)[0]

    nothing = await client.post(f"{SECURITY}/recovery-codes", data={"csrf_token": csrf})
    assert nothing.status_code == 303
    kind, text = flash_of(page_of(await client.get(SECURITY)))
    assert kind == "danger" and "Nothing was changed" in text
    wrong = await client.post(
        f"{SECURITY}/recovery-codes", data={"csrf_token": csrf, "password": "not-it-at-all"}
    )
    assert wrong.status_code == 303
    kind, text = flash_of(page_of(await client.get(SECURITY)))
    assert kind == "danger" and "password or a code" in text

    renewed = await client.post(f"{SECURITY}/recovery-codes", data={"csrf_token": csrf, "password": PASSWORD})
    assert renewed.status_code == 303
    shown = page_of(await client.get(SECURITY))
    new_codes = _CODES.findall(shown)
    assert len(new_codes) == 10 and not set(new_codes) & set(first_codes)
    assert "Shown only this once." in shown

    removed = await client.post(
        f"{SECURITY}/totp/{app_id}/remove", data={"csrf_token": csrf, "code": at_next_step(secret)}
    )
    assert removed.status_code == 303
    kind, text = flash_of(page_of(await client.get(SECURITY)))
    assert kind == "success" and "was removed" in text
    apps, _, enrolled = await factor_rows(env, member)
    assert apps == [] and not enrolled


# --- the login's second step ---------------------------------------------------------------------------


async def test_the_second_step_takes_an_app_code_after_the_password(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    secret, _ = await add_app(await signed_in(env, member))

    client = browser(env)
    step = await at_second_step(client, member, next_page="/streams")
    assert 'autocomplete="one-time-code"' in step and 'inputmode="numeric"' in step
    assert "Use a recovery code" in step
    assert "Use a passkey" not in step  # the account has no passkey
    assert member.email in step

    wrong = page_of(await answer(client, step, code="000000"), 401)
    assert "That code or passkey was not accepted." in wrong
    assert not client.cookies.get(SESSION_COOKIE)
    empty = page_of(await answer(client, wrong, code=" "), 400)
    assert "Enter the code" in empty

    done = await answer(client, empty, code=at_next_step(secret))
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/streams"
    assert client.cookies.get(SESSION_COOKIE)
    assert LOGIN_STEP_COOKIE not in client.cookies  # forgotten
    assert (await client.get("/streams")).status_code == 200
    logins = await audit_entries(env, action="user.login", org=org)
    assert logins[-1].after == {"method": "password+totp"}
    # The step is used up: answering it again starts over.
    again = await client.post(
        "/login/mfa", data={"csrf_token": csrf_of(page_of(await client.get(SECURITY))), "code": "123456"}
    )
    assert again.status_code == 303 and again.headers["location"] == "/login"


async def test_a_recovery_code_signs_in_once_and_is_mailed(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    _, codes = await add_app(await signed_in(env, member))

    client = browser(env)
    step = await at_second_step(client, member)
    done = await answer(client, step, recovery_code=codes[3].upper().replace("-", " "))
    assert done.status_code == 303, done.text
    assert client.cookies.get(SESSION_COOKIE)
    logins = await audit_entries(env, action="user.login", org=org)
    assert logins[-1].after == {"method": "password+recoveryCode"}
    assert [mail["To"] for mail in filed_mails(env) if "recovery code" in mail["Subject"]] == [member.email]

    other = browser(env)
    step = await at_second_step(other, member)
    used = page_of(await answer(other, step, recovery_code=codes[3]), 401)
    assert "not accepted" in used
    assert '<details class="recovery-step" open>' in used  # the form that was used stays open


async def test_five_wrong_answers_use_the_step_up_and_send_back_to_the_login(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    secret, _ = await add_app(await signed_in(env, member))
    client = browser(env)
    page = await at_second_step(client, member)
    for _ in range(5):
        page = page_of(await answer(client, page, code="000000"), 401)
    spent = await answer(client, page, code=at_next_step(secret))
    assert spent.status_code == 303 and spent.headers["location"] == "/login"
    kind, text = flash_of(page_of(await client.get("/login")))
    assert kind == "info" and "Sign in again" in text
    assert not client.cookies.get(SESSION_COOKIE)
    # Without a remembered step the page sends to the login too.
    assert (await browser(env).get("/login/mfa")).headers["location"] == "/login"


async def test_over_https_the_step_cookie_is_secure_like_the_session_cookie(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    await add_app(await signed_in(env, member))
    transport = httpx.ASGITransport(app=env.client._transport.app, client=("192.0.2.200", 50000))  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        answered = await password_step(client, member)
        assert answered.headers["location"] == "/login/mfa"
        assert "; Secure" in answered.headers["set-cookie"]
        assert (await client.get("/login/mfa")).status_code == 200


async def test_a_planted_or_altered_step_cookie_is_ignored(env: Env) -> None:
    client = browser(env)
    client.cookies.set(LOGIN_STEP_COOKIE, "forged", domain="testserver.local", path="/login")
    response = await client.get("/login/mfa")
    assert response.status_code == 303 and response.headers["location"] == "/login"


async def test_a_passkey_is_added_renamed_and_answers_the_second_step(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    client = await signed_in(env, member)
    authenticator = SoftAuthenticator(origin=BASE_URL)
    added = await add_passkey(client, authenticator, "Laptop")
    assert added.status_code == 303, added.text
    shown = page_of(await client.get(SECURITY))
    assert len(_CODES.findall(shown)) == 10  # the first factor: its codes, once
    assert "Laptop" in shown
    passkey_id = re.findall(r'action="/account/security/passkeys/([0-9a-f-]{36})/rename"', shown)[0]
    renamed = await client.post(
        f"{SECURITY}/passkeys/{passkey_id}/rename", data={"csrf_token": csrf_of(shown), "name": "Work laptop"}
    )
    assert renamed.status_code == 303
    assert "Work laptop" in page_of(await client.get(SECURITY))

    other = browser(env)
    step = await at_second_step(other, member)
    assert 'data-passkey-assert="mfa-passkey-options"' in step
    options = json.loads(_PASSKEY_OPTIONS.findall(step)[0])
    assert options["rpId"] == "streamward.example"
    assertion = authenticator.get(options)
    done = await answer(other, step, assertion=json.dumps(assertion))
    assert done.status_code == 303, done.text
    assert other.cookies.get(SESSION_COOKIE)
    logins = await audit_entries(env, action="user.login", org=org)
    assert logins[-1].after == {"method": "password+passkey"}

    # Removing it with the password: the last factor goes, the codes with it.
    page = page_of(await other.get(SECURITY))
    removed = await other.post(
        f"{SECURITY}/passkeys/{passkey_id}/remove", data={"csrf_token": csrf_of(page), "password": PASSWORD}
    )
    assert removed.status_code == 303
    _, keys, enrolled = await factor_rows(env, member)
    assert keys == [] and not enrolled


async def test_a_passkey_alone_signs_in_and_asks_for_the_organisation_when_there_are_several(
    env: Env,
) -> None:
    first, second = await env.org("Alpha"), await env.org("Beta")
    member = await env.member(first, "nanoUser")
    await env.member(second, "nanoReadOnly", email=member.email)
    authenticator = SoftAuthenticator(origin=BASE_URL)
    assert (await add_passkey(await signed_in(env, member), authenticator, "Phone")).status_code == 303

    client = browser(env)
    login = page_of(await client.get("/login?next=/streams"))
    assert 'data-passkey-login="/login/passkey/options"' in login
    csrf = csrf_of(login)

    async def passkey_login(**extra: str) -> httpx.Response:
        options = await client.post("/login/passkey/options", data={"csrf_token": csrf})
        assert options.status_code == 200, options.text
        body = options.json()
        assert "allowCredentials" not in body["publicKey"] or body["publicKey"]["allowCredentials"] == []
        assertion = authenticator.get(body["publicKey"])
        return await client.post(
            "/login/passkey",
            data={
                "csrf_token": csrf,
                "challenge": body["challenge"],
                "assertion": json.dumps(assertion),
                "next": "/streams",
            }
            | extra,
        )

    choose = page_of(await passkey_login())
    assert "Choose the organisation, then sign in with your passkey again." in choose
    assert re.search(r'<select id="passkey-organisation" name="organisation"[^>]*>', choose)
    assert f'<option value="{first.id}">Alpha</option>' in choose
    assert not client.cookies.get(SESSION_COOKIE)
    done = await passkey_login(organisation=str(first.id))
    assert done.status_code == 303 and done.headers["location"] == "/streams"
    assert client.cookies.get(SESSION_COOKIE)
    logins = await audit_entries(env, action="user.login", org=first)
    assert logins[-1].after == {"method": "passkey"}

    no_script = await browser(env).post("/login/passkey", data={})
    refused_with(no_script, "csrf_refused")


# --- the policy and the enrolment-only session ---------------------------------------------------------


async def test_the_policy_switch_needs_its_permission(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    operator = await env.member(org, "nanoUser")
    admins, operators = await signed_in(env, admin), await signed_in(env, operator)

    seen = page_of(await operators.get("/organisation/overview"))
    assert "Optional" in seen and 'action="/organisation/mfa-policy"' not in seen
    refused = await operators.post(
        "/organisation/mfa-policy", data={"csrf_token": csrf_of(seen), "required": "on"}
    )
    refused_with(refused, "forbidden")
    no_csrf = await admins.post("/organisation/mfa-policy", data={"required": "on"})
    refused_with(no_csrf, "csrf_refused")

    page = page_of(await admins.get("/organisation/overview"))
    assert "Require a second factor for every member" in page
    switched = await admins.post(
        "/organisation/mfa-policy", data={"csrf_token": csrf_of(page), "required": "on"}
    )
    assert switched.status_code == 303
    after = page_of(await operators.get(SECURITY))  # the operator's session is now limited
    assert "requires a second factor" in after
    entries = await audit_entries(env, action="organisation.mfa_policy_changed", org=org)
    assert [entry.after for entry in entries] == [{"mfaRequired": True}]


async def test_an_enrolment_only_session_reaches_security_and_logout_only(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoAdmin", token=False)  # holds every permission
    await set_policy(env, org, True)

    client = browser(env)
    signed = await password_step(client, member, next_page="/streams")
    assert signed.status_code == 303
    assert signed.headers["location"] == SECURITY  # not `next`: the only place it may go
    security = page_of(await client.get(SECURITY))
    assert "requires a second factor" in security
    assert 'href="/organisation/overview"' not in security  # no page links it could not open
    csrf = csrf_of(security)

    # Every other dashboard page: the 403 page with the way to the security page.
    app = env.client._transport.app  # type: ignore[attr-defined]
    pages = [
        route
        for route in api_routes(app)
        if rule_of(route).startswith("dashboard:") and rule_of(route) != "dashboard:enrolment"
    ]
    assert len(pages) > 20
    for route in pages:
        if route.path == "/logout":
            continue
        url = re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", route.path)
        if route.method == "GET":
            response = await client.get(url)
        else:
            response = await client.post(url, data={"csrf_token": csrf})
        text = refused_with(response, "mfa_enrolment_required")
        assert f'<a class="btn" href="{SECURITY}">Set up a second factor</a>' in text, route

    # Setting up an app lifts the limit on the next request.
    await add_app(client)
    assert (await client.get("/organisation/overview")).status_code == 200

    limited = browser(env)
    other = await env.member(org, "nanoReadOnly", token=False)
    assert (await password_step(limited, other)).headers["location"] == SECURITY
    out = await limited.post("/logout", data={"csrf_token": csrf_of(page_of(await limited.get(SECURITY)))})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert (await limited.get(SECURITY)).headers["location"].startswith("/login?next=")


async def test_joining_an_organisation_that_requires_a_factor_leads_to_the_security_page(env: Env) -> None:
    org = await env.org()
    await set_policy(env, org, True)
    issued = await env.client.post("/api/user/invite", json={"role": "nanoUser"}, headers=org.api_headers)
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    visitor = browser(env)
    accept = page_of(await visitor.get(f"/invite/{token}"))
    joined = await visitor.post(
        f"/invite/{token}",
        data={
            "csrf_token": csrf_of(accept),
            "mode": "signup",
            "email": "new.member@example.com",
            "password": PASSWORD,
        },
    )
    assert joined.status_code == 303 and joined.headers["location"] == SECURITY
    page = page_of(await visitor.get(SECURITY))
    assert "requires a second factor" in page
    assert flash_of(page)[1].startswith("Welcome to")


# --- administration --------------------------------------------------------------------------------------


async def test_the_users_table_shows_factors_and_an_admin_resets_them(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    member = await env.member(org, "nanoUser")
    await add_app(await signed_in(env, member))
    admins = await signed_in(env, admin)

    table = page_of(await admins.get("/organisation/users"))
    assert '<th scope="col" class="th-wrap">Second factor</th>' in table
    row = table.split(member.email)[1].split("</tr>")[0]
    assert '<span class="badge badge-ok">App</span>' in row
    mine = table.split(f">{admin.email}</a>")[1].split("</tr>")[0]
    assert '<span class="badge badge-neutral">None</span>' in mine

    user_page = page_of(await admins.get(f"/organisation/users/{member.id}"))
    assert "Reset second factors" in user_page
    no_csrf = await admins.post(f"/organisation/users/{member.id}/mfa-reset")
    refused_with(no_csrf, "csrf_refused")
    reset = await admins.post(
        f"/organisation/users/{member.id}/mfa-reset", data={"csrf_token": csrf_of(user_page)}
    )
    assert reset.status_code == 303
    kind, text = flash_of(page_of(await admins.get(f"/organisation/users/{member.id}")))
    assert kind == "success" and "were removed" in text
    apps, _, enrolled = await factor_rows(env, member)
    assert apps == [] and not enrolled
    assert [mail["To"] for mail in filed_mails(env) if "second factors were removed" in mail["Subject"]] == [
        member.email
    ]
    assert await audit_entries(env, action="user.mfa_reset", org=org)

    # Not on a member whose role holds more than one's own: a custom role with user:edit may reset
    # an operator's factors, not an administrator's (the service's rule, said on the page).
    role = {
        "name": "supportDesk",
        "description": "Helps members",
        "permissions": ["org:read", "user:read", "user:edit"],
    }
    assert (await env.client.post("/api/permission", json=role, headers=admin.headers)).status_code == 201
    support = await signed_in(env, await env.member(org, "supportDesk"))
    await add_app(await signed_in(env, admin))
    admin_page = page_of(await support.get(f"/organisation/users/{admin.id}"))
    assert "Reset second factors" in admin_page  # offered; the service decides
    refused = await support.post(
        f"/organisation/users/{admin.id}/mfa-reset", data={"csrf_token": csrf_of(admin_page)}
    )
    assert refused.status_code == 303
    kind, text = flash_of(page_of(await support.get(f"/organisation/users/{admin.id}")))
    assert kind == "danger" and text == (
        "Nothing was changed. This user's role (nanoAdmin) holds permissions you do not have."
    )
    apps, _, enrolled = await factor_rows(env, admin)
    assert enrolled and len(apps) == 1


# --- CSRF and escaping ---------------------------------------------------------------------------------


async def test_every_security_form_needs_its_csrf_token(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    client = await signed_in(env, member)
    some_id = "00000000-0000-4000-8000-000000000000"
    for action in (
        f"{SECURITY}/totp",
        f"{SECURITY}/totp/{some_id}/confirm",
        f"{SECURITY}/totp/{some_id}/remove",
        f"{SECURITY}/recovery-codes",
        f"{SECURITY}/passkeys/options",
        f"{SECURITY}/passkeys",
        f"{SECURITY}/passkeys/{some_id}/rename",
        f"{SECURITY}/passkeys/{some_id}/remove",
    ):
        refused_with(await client.post(action, data={"name": "x"}), "csrf_refused")
    anonymous = browser(env)
    for action in ("/login/mfa", "/login/passkey/options", "/login/passkey"):
        refused_with(await anonymous.post(action, data={"code": "123456"}), "csrf_refused")
    apps, keys, _ = await factor_rows(env, member)
    assert apps == [] and keys == []


async def test_factor_names_are_text(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    client = await signed_in(env, member)
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    await add_app(client, hostile)
    assert (await add_passkey(client, SoftAuthenticator(origin=BASE_URL), hostile)).status_code == 303
    page = page_of(await client.get(SECURITY))
    assert hostile not in page and "<img src=x" not in page
    assert page.count(html.escape(hostile, quote=False).replace('"', "&#34;")) >= 2
    kind, text = flash_of(page)
    assert hostile in text  # the flash names the passkey, as text
    too_long = await client.post(
        f"{SECURITY}/passkeys",
        data={"csrf_token": csrf_of(page), "name": "x" * 101, "challenge": "swc_x", "credential": "{}"},
    )
    assert too_long.status_code == 303
    kind, text = flash_of(page_of(await client.get(SECURITY)))
    assert kind == "danger" and "Name" in text


async def test_adding_a_factor_long_after_signing_in_asks_for_the_password(env: Env) -> None:
    """The service's rule on the page: a sign-in older than ten minutes shows a password field in
    both add forms, and adding without it changes nothing."""
    org = await env.org()
    member = await env.member(org, "nanoUser")
    client = await signed_in(env, member)
    fresh = page_of(await client.get(SECURITY))
    assert 'name="password" type="password"' not in fresh
    async with env.runtime.database.session() as session:
        await session.execute(
            update(BintuSession).values(created_at=utcnow() - FRESH_SIGN_IN - timedelta(minutes=1))
        )
        await session.commit()
    page = page_of(await client.get(SECURITY))
    assert page.count('name="password" type="password"') == 2  # the app form and the passkey form
    refused = await client.post(f"{SECURITY}/totp", data={"csrf_token": csrf_of(page), "name": "Phone"})
    assert refused.status_code == 303 and refused.headers["location"] == SECURITY
    assert "Nothing was changed" in page_of(await client.get(SECURITY))
    started = await client.post(
        f"{SECURITY}/totp", data={"csrf_token": csrf_of(page), "name": "Phone", "password": PASSWORD}
    )
    assert _QR.search(page_of(started))
