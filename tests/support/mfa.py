"""Second factors as a person uses them, through the API: an authenticator app (pyotp plays the
app), logging in in two steps, and a clock for the codes that tests move instead of waiting."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import pyotp
import pytest

from streamward.authn.mfa import totp
from tests.conftest import Env, Member

PERIOD = totp.PERIOD_SECONDS


class Clock:
    """The time authenticator codes are judged by (``authn.mfa.totp.clock``), frozen until moved."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # In the middle of a step: a test that moves by whole steps never lands on a boundary.
        self.now = (int(time.time()) // PERIOD) * PERIOD + PERIOD / 2
        monkeypatch.setattr(totp, "clock", lambda: self.now)

    def step(self, steps: int = 1) -> None:
        self.now += steps * PERIOD


@dataclass
class App:
    """An authenticator app holding one secret."""

    factor_id: str
    secret: str
    recovery_codes: list[str] | None

    def code(self, clock: Clock, offset_steps: int = 0) -> str:
        return str(pyotp.TOTP(self.secret).at(clock.now + offset_steps * PERIOD))


async def enrol_app(
    env: Env, member: Member, clock: Clock, *, name: str = "Phone", headers: dict[str, str] | None = None
) -> App:
    """Set up and confirm an authenticator app for ``member``; the clock then moves one step on, so
    that the app's next code is a fresh one."""
    headers = headers or member.headers
    started = await env.client.post("/api/user/mfa/totp", json={"name": name}, headers=headers)
    assert started.status_code == 201, started.text
    body = started.json()
    app = App(body["id"], body["secret"], None)
    confirmed = await env.client.post(
        f"/api/user/mfa/totp/{app.factor_id}/confirm", json={"code": app.code(clock)}, headers=headers
    )
    assert confirmed.status_code == 200, confirmed.text
    app.recovery_codes = confirmed.json().get("recoveryCodes")
    clock.step()
    return app


def password_body(member: Member) -> dict[str, str]:
    return {"email": member.email, "password": member.password, "organisation": str(member.organisation.id)}


async def first_step(env: Env, member: Member, client: httpx.AsyncClient | None = None) -> dict[str, Any]:
    """The password step of a login that asks for a second factor: the 401's details."""
    response = await (client or env.client).post("/api/user/validate", json=password_body(member))
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "mfa_required", error
    details: dict[str, Any] = error["details"]
    return details


async def second_step(
    env: Env, challenge: str, client: httpx.AsyncClient | None = None, **answer: Any
) -> httpx.Response:
    return await (client or env.client).post("/api/user/validate/mfa", json={"challenge": challenge} | answer)


async def login_with_app(env: Env, member: Member, app: App, clock: Clock) -> str:
    """A bintu token from both steps, with the app's current code (the clock moves on after it)."""
    details = await first_step(env, member)
    response = await second_step(env, details["challenge"], code=app.code(clock))
    assert response.status_code == 200, response.text
    clock.step()
    token: str = response.json()["token"]
    return token


def error_code(response: httpx.Response) -> str | None:
    try:
        code: str | None = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code
