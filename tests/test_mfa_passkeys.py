"""Passkeys through the JSON API, with a software authenticator (tests/support/webauthn_soft.py):
registering several, listing, renaming, removing; the second step of a login; signing in with a
passkey alone; and what each of them refuses (another origin or rp id, a replayed challenge, a
lowered sign count, another account's or an unknown credential, no user verification where it is
required, the same credential twice)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from streamward.authn import service as authn_service
from streamward.authn.mfa.models import Passkey
from streamward.authn.mfa.passkeys import RelyingParty
from streamward.config import Settings
from tests.conftest import Env, Member
from tests.support.access import callers
from tests.support.data import audit_entries
from tests.support.interleave import Hold, one_then_other, refused_now
from tests.support.mfa import Clock, enrol_app, error_code, first_step, second_step
from tests.support.webauthn_soft import CredentialExcluded, SoftAuthenticator, SoftCredential, b64url

BASE_URL = "https://streamward.example"
RP_ID = "streamward.example"
PHISHING = "https://streamward-login.example"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"public_base_url": BASE_URL}


# --- helpers ------------------------------------------------------------------------------------


def browser_at(origin: str = BASE_URL, **knobs: Any) -> SoftAuthenticator:
    """A platform authenticator in a browser showing a page of ``origin``."""
    return SoftAuthenticator(origin=origin, **knobs)


async def registration_options(env: Env, member: Member) -> dict[str, Any]:
    response = await env.client.post("/api/user/mfa/passkeys/options", headers=member.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def register(
    env: Env, member: Member, authenticator: SoftAuthenticator, name: str = "Laptop", **knobs: Any
) -> httpx.Response:
    """One registration ceremony from options to the stored passkey; ``knobs`` go to the
    authenticator (origin, rp_id, credential, ignore_exclude...)."""
    options = await registration_options(env, member)
    credential = authenticator.create(options["publicKey"], **knobs)
    return await env.client.post(
        "/api/user/mfa/passkeys",
        json={"challenge": options["challenge"], "name": name, "credential": credential},
        headers=member.headers,
    )


async def registered(env: Env, member: Member, authenticator: SoftAuthenticator, name: str = "Laptop") -> str:
    """Register a passkey; its id."""
    response = await register(env, member, authenticator, name)
    assert response.status_code == 201, response.text
    passkey_id: str = response.json()["id"]
    return passkey_id


async def passwordless_options(env: Env, client: httpx.AsyncClient | None = None) -> dict[str, Any]:
    response = await (client or env.client).post("/api/user/passkey/options")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def passwordless(
    env: Env,
    options: dict[str, Any],
    assertion: dict[str, Any],
    client: httpx.AsyncClient | None = None,
    **extra: Any,
) -> httpx.Response:
    body = {"challenge": options["challenge"], "assertion": assertion} | extra
    return await (client or env.client).post("/api/user/validate/passkey", json=body)


async def stored_passkeys(env: Env, member: Member) -> list[Passkey]:
    async with env.runtime.database.session(write=False) as session:
        statement = (
            select(Passkey).where(Passkey.account_id == member.account.id).order_by(Passkey.created_at)
        )
        return list((await session.execute(statement)).scalars())


async def assert_signed_in(env: Env, token: str) -> None:
    response = await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": token})
    assert response.status_code == 200, response.text


# --- the relying party ----------------------------------------------------------------------------


def test_relying_party_is_the_public_base_url_or_where_the_app_serves(tmp_path: Any) -> None:
    def rp(**settings: Any) -> RelyingParty:
        return RelyingParty.from_settings(Settings(var_dir=tmp_path, **settings))

    assert rp(public_base_url="https://Streamward.Example/") == RelyingParty(
        "streamward.example", "Streamward", "https://streamward.example"
    )
    # A browser's origin leaves out the default port and keeps any other.
    assert rp(public_base_url="https://example.com:443").origin == "https://example.com"
    assert rp(public_base_url="http://localhost:8080/app").origin == "http://localhost:8080"
    assert rp(public_base_url="http://localhost:8080/app").id == "localhost"
    # No public base URL: http://host:port, as every link the app sends.
    assert rp(host="localhost", port=8123) == RelyingParty("localhost", "Streamward", "http://localhost:8123")
    assert rp(host="::1", port=8000).origin == "http://[::1]:8000"
    # Browsers run WebAuthn under a domain name in a secure context only.
    assert rp(public_base_url="https://streamward.example").browsers_accept
    assert rp(host="localhost", port=8123).browsers_accept
    assert not rp(public_base_url="http://streamward.example").browsers_accept
    assert not rp(host="127.0.0.1", port=8000).browsers_accept
    assert not rp(host="::1", port=8000).browsers_accept


# --- registration -------------------------------------------------------------------------------


async def test_register_two_passkeys_list_rename_and_remove(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    laptop = browser_at()

    options = await registration_options(env, member)
    public_key = options["publicKey"]
    assert options["challenge"].startswith("swc_") and options["expiresAt"].endswith("Z")
    assert public_key["rp"] == {"id": RP_ID, "name": "Streamward"}
    assert public_key["user"]["id"] == b64url(member.account.id.bytes)  # the account, not the membership
    assert public_key["user"]["name"] == member.email
    assert public_key["authenticatorSelection"]["residentKey"] == "required"
    assert public_key["authenticatorSelection"]["userVerification"] == "preferred"
    assert public_key["excludeCredentials"] == []
    assert {"type": "public-key", "alg": -7} in public_key["pubKeyCredParams"]
    assert len(base64.urlsafe_b64decode(public_key["challenge"] + "==")) >= 16

    first = await register(env, member, laptop, "Laptop")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["name"] == "Laptop" and body["lastUsedAt"] is None and body["createdAt"].endswith("Z")
    # The account's first factor: its recovery codes, this once.
    assert len(body["recoveryCodes"]) == 10

    # The second ceremony excludes the first credential; a second authenticator registers.
    options = await registration_options(env, member)
    assert [entry["id"] for entry in options["publicKey"]["excludeCredentials"]] == [laptop.credentials[0].id]
    assert options["publicKey"]["excludeCredentials"][0]["transports"] == ["internal", "hybrid"]
    phone = browser_at()
    second = await register(env, member, phone, "Phone")
    assert second.status_code == 201, second.text
    assert "recoveryCodes" not in second.json()

    stored = await stored_passkeys(env, member)
    assert [p.name for p in stored] == ["Laptop", "Phone"]
    assert stored[0].credential_id == laptop.credentials[0].id  # base64url of the credential id
    assert stored[0].transports == "internal,hybrid"

    listed = await env.client.get("/api/user/mfa", headers=member.headers)
    assert listed.status_code == 200, listed.text
    assert listed.json()["enrolled"] is True
    assert [(p["id"], p["name"]) for p in listed.json()["passkeys"]] == [
        (body["id"], "Laptop"),
        (second.json()["id"], "Phone"),
    ]

    renamed = await env.client.patch(
        f"/api/user/mfa/passkeys/{body['id']}", json={"name": "Work laptop"}, headers=member.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Work laptop" and renamed.json()["id"] == body["id"]
    blank = await env.client.patch(
        f"/api/user/mfa/passkeys/{second.json()['id']}", json={"name": "  "}, headers=member.headers
    )
    assert blank.status_code == 200 and blank.json()["name"] == "Passkey", blank.text
    too_long = await env.client.patch(
        f"/api/user/mfa/passkeys/{body['id']}", json={"name": "x" * 101}, headers=member.headers
    )
    assert too_long.status_code == 422, too_long.text

    # Removing needs proof: the password (or a code of an authenticator app).
    url = f"/api/user/mfa/passkeys/{second.json()['id']}"
    refused = await env.client.request("DELETE", url, json={"password": "not it"}, headers=member.headers)
    assert refused.status_code == 400 and error_code(refused) == "invalid_proof", refused.text
    removed = await env.client.request(
        "DELETE", url, json={"password": member.password}, headers=member.headers
    )
    assert removed.status_code == 204, removed.text
    assert [p.name for p in await stored_passkeys(env, member)] == ["Work laptop"]
    listed = await env.client.get("/api/user/mfa", headers=member.headers)
    assert [p["name"] for p in listed.json()["passkeys"]] == ["Work laptop"]
    assert listed.json()["enrolled"] is True


async def test_a_passkey_is_removed_with_an_app_code_too(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    org = await env.org()
    member = await env.member(org, "nanoUser")
    app = await enrol_app(env, member, clock)
    added = await register(env, member, browser_at())
    assert added.status_code == 201, added.text
    assert "recoveryCodes" not in added.json()  # not the account's first factor: the app was
    url = f"/api/user/mfa/passkeys/{added.json()['id']}"
    shown = {app.code(clock, offset) for offset in (-1, 0, 1)}
    wrong = next(code for code in ("000000", "111111", "222222", "333333") if code not in shown)
    for proof in ({"code": wrong}, {}, {"code": app.code(clock), "password": member.password}):
        refused = await env.client.request("DELETE", url, json=proof, headers=member.headers)
        assert refused.status_code == 400 and error_code(refused) == "invalid_proof", (proof, refused.text)
    removed = await env.client.request("DELETE", url, json={"code": app.code(clock)}, headers=member.headers)
    assert removed.status_code == 204, removed.text
    status = (await env.client.get("/api/user/mfa", headers=member.headers)).json()
    assert status["passkeys"] == [] and status["enrolled"] is True  # the app is still there
    [entry] = await audit_entries(env, org=org, action="user.mfa_removed")
    assert entry.after is not None and entry.after["kind"] == "passkey"


async def test_an_enrolment_session_registers_a_passkey_and_is_let_through(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    member = await env.member(org, "nanoUser")
    policy = await env.client.put(
        "/api/organisation/mfa-policy", json={"required": True}, headers=admin.headers
    )
    assert policy.status_code == 200, policy.text
    gated = await env.client.get("/api/organisation", headers=member.headers)
    assert gated.status_code == 403 and error_code(gated) == "mfa_enrolment_required", gated.text
    await registered(env, member, browser_at())
    await assert_signed_in(env, member.token or "")


async def test_another_accounts_passkey_is_not_found(env: Env) -> None:
    org = await env.org()
    owner = await env.member(org, "nanoUser")
    colleague = await env.member(org, "nanoAdmin")
    passkey_id = await registered(env, owner, browser_at())
    url = f"/api/user/mfa/passkeys/{passkey_id}"
    renamed = await env.client.patch(url, json={"name": "mine now"}, headers=colleague.headers)
    assert renamed.status_code == 404 and error_code(renamed) == "not_found", renamed.text
    removed = await env.client.request(
        "DELETE", url, json={"password": colleague.password}, headers=colleague.headers
    )
    assert removed.status_code == 404 and error_code(removed) == "not_found", removed.text
    assert [p.name for p in await stored_passkeys(env, owner)] == ["Laptop"]


async def test_registration_ends_the_accounts_other_sessions(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    other_session = await env.issue_token(member)
    await registered(env, member, browser_at())
    ended = await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": other_session})
    assert ended.status_code == 401, ended.text
    await assert_signed_in(env, member.token or "")  # the session that registered stays
    [added] = await audit_entries(env, org=org, action="user.mfa_added")
    assert added.after is not None and added.after.get("kind") == "passkey"


async def test_the_same_credential_is_registered_once(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    laptop = browser_at()
    await registered(env, member, laptop)
    # An authenticator honours excludeCredentials: it will not make a second credential here.
    options = await registration_options(env, member)
    with pytest.raises(CredentialExcluded):
        laptop.create(options["publicKey"])
    # A client that ignores it and presents the same credential again is refused.
    credential = laptop.credentials[0]
    again = await register(env, member, laptop, "Again", ignore_exclude=True, credential=credential)
    assert again.status_code == 409 and error_code(again) == "conflict", again.text
    # So is another account presenting it.
    stranger = await env.member(org, "nanoUser")
    theirs = await register(env, stranger, laptop, "Theirs", ignore_exclude=True, credential=credential)
    assert theirs.status_code == 409 and error_code(theirs) == "conflict", theirs.text
    assert len(await stored_passkeys(env, member)) == 1
    assert await stored_passkeys(env, stranger) == []


async def test_registration_refusals(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    laptop = browser_at()
    for knobs in ({"origin": PHISHING}, {"rp_id": "streamward-login.example"}):
        response = await register(env, member, laptop, **knobs)
        assert response.status_code == 400 and error_code(response) == "invalid_passkey", (
            knobs,
            response.text,
        )
    # Not what a browser sends at all: refused the same way, never a 500.
    options = await registration_options(env, member)
    for credential in (
        {},
        {"id": "x", "rawId": "x", "type": "public-key", "response": {"clientDataJSON": "%%"}},
    ):
        response = await env.client.post(
            "/api/user/mfa/passkeys",
            json={"challenge": options["challenge"], "name": "Bad", "credential": credential},
            headers=member.headers,
        )
        assert response.status_code == 400 and error_code(response) == "invalid_passkey", response.text
    assert await stored_passkeys(env, member) == []

    # A challenge answers once; another account's challenge not at all.
    options = await registration_options(env, member)
    credential = laptop.create(options["publicKey"])
    body = {"challenge": options["challenge"], "name": "Laptop", "credential": credential}
    first = await env.client.post("/api/user/mfa/passkeys", json=body, headers=member.headers)
    assert first.status_code == 201, first.text
    replayed = await env.client.post("/api/user/mfa/passkeys", json=body, headers=member.headers)
    assert replayed.status_code == 401 and error_code(replayed) == "invalid_challenge", replayed.text
    colleague = await env.member(org, "nanoUser")
    options = await registration_options(env, member)
    credential = browser_at().create(options["publicKey"])
    body = {"challenge": options["challenge"], "name": "Theirs", "credential": credential}
    stolen = await env.client.post("/api/user/mfa/passkeys", json=body, headers=colleague.headers)
    assert stolen.status_code == 401 and error_code(stolen) == "invalid_challenge", stolen.text
    # The API key is no person: it has no passkeys.
    response = await env.client.post("/api/user/mfa/passkeys/options", headers=org.api_headers)
    assert response.status_code == 400 and error_code(response) == "user_required", response.text


async def test_who_may_call_the_passkey_routes(env: Env) -> None:
    """The enrolment routes' own matrix (their objects are the caller's own, which the generated
    matrix cannot make per caller): every member, whatever their role and organisation, manages
    their own passkeys and finds nobody else's; the API key is no person (400 user_required, and
    no passkey is its own: 404); no credentials or the player key alone: 401."""
    mine, theirs = await env.org("Mine"), await env.org("Theirs")
    everyone = await callers(env, mine, theirs)
    owner = await env.member(mine, "nanoReadOnly")
    probe = await registered(env, owner, browser_at(), "Probe")
    probe_url = f"/api/user/mfa/passkeys/{probe}"
    failures: list[str] = []

    def check(caller: str, what: str, response: httpx.Response, status: int, code: str | None = None) -> None:
        got = (response.status_code, error_code(response) if code else None)
        if got != (status, code):
            failures.append(f"{caller} {what}: expected {status} {code}, got {response.text[:160]}")

    for caller in everyone:
        headers = caller.headers
        calls = {
            "options": lambda h=headers: env.client.post("/api/user/mfa/passkeys/options", headers=h),
            "register": lambda h=headers: env.client.post(
                "/api/user/mfa/passkeys",
                json={"challenge": "swc_" + "A" * 43, "name": "Key", "credential": {"id": "AAAA"}},
                headers=h,
            ),
            "rename": lambda h=headers: env.client.patch(probe_url, json={"name": "Mine"}, headers=h),
            "remove": lambda h=headers: env.client.request(
                "DELETE", probe_url, json={"password": "any password"}, headers=h
            ),
        }
        if caller.member is None:
            anonymous = caller.kind in ("anonymous", "player-key")
            for what, call in calls.items():
                # The API key: no passkeys of its own to start, and nobody's to name.
                refusal = (400, "user_required") if what in ("options", "register") else (404, "not_found")
                status, code = (401, "unauthenticated") if anonymous else refusal
                check(caller.name, what, await call(), status, code)
            continue
        member = caller.member
        own = await register(env, member, browser_at(), f"{caller.name}'s key")
        check(caller.name, "register", own, 201)
        own_url = f"/api/user/mfa/passkeys/{own.json()['id']}"
        check(
            caller.name,
            "rename own",
            await env.client.patch(own_url, json={"name": "x"}, headers=headers),
            200,
        )
        check(caller.name, "rename another's", await calls["rename"](), 404, "not_found")
        proof = {"password": member.password}
        another = await env.client.request("DELETE", probe_url, json=proof, headers=headers)
        check(caller.name, "remove another's", another, 404, "not_found")
        removed = await env.client.request("DELETE", own_url, json=proof, headers=headers)
        check(caller.name, "remove own", removed, 204)
    assert not failures, "\n".join(failures)
    # The probe was there all along, untouched by every refusal.
    assert [(p.name, str(p.id)) for p in await stored_passkeys(env, owner)] == [("Probe", probe)]


# --- the second step of a login -------------------------------------------------------------------


async def test_passkey_as_the_second_factor_of_a_login(env: Env) -> None:
    org = await env.org("Acme")
    member = await env.member(org, "nanoUser")
    laptop, phone = browser_at(), browser_at()
    await registered(env, member, laptop, "Laptop")
    await registered(env, member, phone, "Phone")

    details = await first_step(env, member)
    assert "passkey" in details["factors"]
    request = details["publicKey"]
    assert request["rpId"] == RP_ID
    assert {entry["id"] for entry in request["allowCredentials"]} == {
        laptop.credentials[0].id,
        phone.credentials[0].id,
    }
    response = await second_step(env, details["challenge"], assertion=phone.get(request))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["organisation"] == {"id": str(org.id), "name": "Acme"}
    assert body["user"] == {"id": str(member.id), "email": member.email}
    await assert_signed_in(env, body["token"])
    logins = await audit_entries(env, org=org, action="user.login")
    assert logins[-1].after == {"method": "password+passkey"}
    [used] = [p for p in await stored_passkeys(env, member) if p.name == "Phone"]
    assert used.sign_count == 1 and used.last_used_at is not None

    # The challenge answered once: the same answer again is refused.
    replayed = await second_step(env, details["challenge"], assertion=phone.get(request))
    assert replayed.status_code == 401 and error_code(replayed) == "invalid_challenge", replayed.text


async def test_second_factor_refusals(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    laptop = browser_at()
    await registered(env, member, laptop)
    other = await env.member(org, "nanoUser")
    their_laptop = browser_at()
    await registered(env, other, their_laptop)
    stranger_key = browser_at()  # a credential of this relying party we never registered
    stranger_key.credentials.append(
        SoftCredential(
            credential_id=b"\x01" * 32,
            private_key=laptop.credentials[0].private_key,
            rp_id=RP_ID,
            user_handle=member.account.id.bytes,
        )
    )

    def wrong_origin(request: dict[str, Any]) -> dict[str, Any]:
        return laptop.get(request, origin=PHISHING)

    def wrong_rp_id(request: dict[str, Any]) -> dict[str, Any]:
        return laptop.get(request, rp_id="streamward-login.example")

    def lowered_sign_count(request: dict[str, Any]) -> dict[str, Any]:
        return laptop.get(request, sign_count=7)  # below the 11 stored: a clone of the authenticator

    def another_accounts(request: dict[str, Any]) -> dict[str, Any]:
        # The other account's authenticator, answering this login's challenge.
        return their_laptop.get(request, credential=their_laptop.credentials[0])

    def unknown_credential(request: dict[str, Any]) -> dict[str, Any]:
        return stranger_key.get(request, credential=stranger_key.credentials[0])

    def another_challenge(request: dict[str, Any]) -> dict[str, Any]:
        return laptop.get(request, challenge=b64url(b"\x00" * 32))

    # Used once with a count of 11 (it was used elsewhere before), so that a lower one means a clone.
    laptop.credentials[0].sign_count = 10
    details = await first_step(env, member)
    used = await second_step(env, details["challenge"], assertion=laptop.get(details["publicKey"]))
    assert used.status_code == 200, used.text

    refusals = [wrong_origin, wrong_rp_id, lowered_sign_count, another_accounts, unknown_credential]
    for answer in [*refusals, another_challenge]:
        details = await first_step(env, member)
        response = await second_step(env, details["challenge"], assertion=answer(details["publicKey"]))
        assert response.status_code == 401, (answer.__name__, response.text)
        assert error_code(response) == "invalid_second_factor", (answer.__name__, response.text)
    # The stored count did not move, and the owner still signs in.
    [stored] = await stored_passkeys(env, member)
    assert stored.sign_count == 11
    details = await first_step(env, member)
    response = await second_step(env, details["challenge"], assertion=laptop.get(details["publicKey"]))
    assert response.status_code == 200, response.text


# --- passwordless -------------------------------------------------------------------------------


async def test_passwordless_login(env: Env) -> None:
    org = await env.org("Acme")
    member = await env.member(org, "nanoAdmin")
    laptop = browser_at()
    await registered(env, member, laptop)

    options = await passwordless_options(env)
    assert options["challenge"].startswith("swc_")
    request = options["publicKey"]
    assert request["rpId"] == RP_ID
    assert request["userVerification"] == "required"
    assert request.get("allowCredentials", []) == []  # discoverable: the credential names the account
    response = await passwordless(env, options, laptop.get(request))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["organisation"] == {"id": str(org.id), "name": "Acme"}
    assert body["user"] == {"id": str(member.id), "email": member.email}
    assert body["apiKey"] == org.api_key  # the same body as a password login
    await assert_signed_in(env, body["token"])
    logins = await audit_entries(env, org=org, action="user.login")
    assert logins[-1].after == {"method": "passkey"}


async def test_passwordless_login_of_a_person_in_two_organisations(env: Env) -> None:
    first = await env.org("Alpha")
    second = await env.org("Beta")
    member = await env.member(first, "nanoUser", email="both@example.com")
    await env.member(second, "nanoReadOnly", email="both@example.com")
    laptop = browser_at()
    await registered(env, member, laptop)

    options = await passwordless_options(env)
    response = await passwordless(env, options, laptop.get(options["publicKey"]))
    assert response.status_code == 409 and error_code(response) == "organisation_required", response.text
    choices = response.json()["error"]["details"]["organisations"]
    assert {choice["name"] for choice in choices} == {"Alpha", "Beta"}
    # Start again, naming one.
    options = await passwordless_options(env)
    response = await passwordless(env, options, laptop.get(options["publicKey"]), organisation=str(second.id))
    assert response.status_code == 200, response.text
    assert response.json()["organisation"] == {"id": str(second.id), "name": "Beta"}
    assert response.json()["role"]["name"] == "nanoReadOnly"


async def test_passwordless_refusals(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    laptop = browser_at()
    await registered(env, member, laptop)
    unknown = browser_at()
    unknown.credentials.append(
        SoftCredential(
            credential_id=b"\x02" * 32,
            private_key=laptop.credentials[0].private_key,
            rp_id=RP_ID,
            user_handle=member.account.id.bytes,
        )
    )
    cases = {
        "no user verification": lambda request: laptop.get(request, user_verified=False),
        "another origin": lambda request: laptop.get(request, origin=PHISHING),
        "another rp id": lambda request: laptop.get(request, rp_id="streamward-login.example"),
        "lowered sign count": lambda request: laptop.get(request, sign_count=0),
        "unknown credential": lambda request: unknown.get(request),
        "not an assertion": lambda request: {"id": "AAAA", "rawId": "AAAA", "type": "public-key"},
    }
    # Used once first, so that its sign count is above 0.
    options = await passwordless_options(env)
    assert (await passwordless(env, options, laptop.get(options["publicKey"]))).status_code == 200
    for name, answer in cases.items():
        options = await passwordless_options(env)
        response = await passwordless(env, options, answer(options["publicKey"]))
        assert response.status_code == 401, (name, response.text)
        assert error_code(response) == "invalid_second_factor", (name, response.text)
    failures = await audit_entries(env, org=org, action="user.login_failed")
    assert len(failures) == len(cases) - 2  # the unknown credential and the garbage name no account
    assert all(entry.after == {"reason": "invalid_second_factor", "method": "passkey"} for entry in failures)

    # A challenge answers once, and only its own client.
    options = await passwordless_options(env)
    assertion = laptop.get(options["publicKey"])
    elsewhere = env.client_from("198.51.100.7")
    moved = await passwordless(env, options, assertion, client=elsewhere)
    assert moved.status_code == 401 and error_code(moved) == "invalid_challenge", moved.text
    assert (await passwordless(env, options, assertion)).status_code == 200
    replayed = await passwordless(env, options, assertion)
    assert replayed.status_code == 401 and error_code(replayed) == "invalid_challenge", replayed.text
    # A registration challenge is not a login challenge.
    registration = await registration_options(env, member)
    response = await passwordless(env, registration, laptop.get(options["publicKey"]))
    assert response.status_code == 401 and error_code(response) == "invalid_challenge", response.text


async def test_five_wrong_answers_use_a_passwordless_challenge_up(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    laptop = browser_at()
    await registered(env, member, laptop)
    options = await passwordless_options(env)
    for _ in range(5):
        response = await passwordless(env, options, laptop.get(options["publicKey"], user_verified=False))
        assert error_code(response) == "invalid_second_factor", response.text
    response = await passwordless(env, options, laptop.get(options["publicKey"]))
    assert response.status_code == 401 and error_code(response) == "invalid_challenge", response.text


async def test_passwordless_routes_spend_the_per_address_login_budget(env: Env) -> None:
    throttle = env.runtime.login_throttle.per_address
    throttle.capacity, throttle.rate = 3, 1 / 3600
    client = env.client_from("198.51.100.9")
    options = await passwordless_options(env, client)
    await passwordless_options(env, client)
    refused = await passwordless(env, options, {"id": "AAAA"}, client=client)
    assert refused.status_code == 401, refused.text  # the third attempt: still in the budget
    for attempt in (
        client.post("/api/user/passkey/options"),
        passwordless(env, options, {"id": "AAAA"}, client=client),
    ):
        response = await attempt
        assert response.status_code == 429 and error_code(response) == "rate_limited", response.text
        assert int(response.headers["Retry-After"]) >= 1
    # Another address is not affected.
    await passwordless_options(env)


async def test_a_passwordless_login_while_the_member_is_removed(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login share-locks the passkey's account before the passkey's row, as every sign-in locks
    its account; the removal (the only membership: the account and its passkeys go too) takes the
    account first and waits. The passkey's row taken first, each waited for the other: a 500."""
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    member = await env.member(org, "nanoUser")
    laptop = browser_at()
    await registered(env, member, laptop)
    options = await passwordless_options(env)
    assertion = laptop.get(options["publicKey"])
    hold = Hold(monkeypatch, authn_service, "sign_in")
    removal = env.client.delete(f"/api/user/{member.id}", headers=admin.headers)
    logged_in, removed = await one_then_other(hold, passwordless(env, options, assertion), removal)
    assert removed.status_code == 204, removed.text
    await refused_now(env, logged_in)
