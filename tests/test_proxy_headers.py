"""Client address and scheme come from one place: the peer of the connection, or, only when
STREAMWARD_TRUST_FORWARDED_FOR is on and the peer is one of STREAMWARD_TRUSTED_PROXIES, the
X-Forwarded-For / X-Forwarded-Proto headers that proxy added. The audited address, the login
rate-limit bucket, the cookies' Secure flag and HSTS all follow it.

Checked in-process (ASGI, the peer chosen per client) and over a real socket against
``streamward serve``, so that uvicorn's own proxy-header handling is proven off too."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from streamward.audit.models import AuditEntry
from streamward.config import SettingsError, load_settings
from tests.conftest import Env
from tests.support.net import free_port

SPOOFED = {"X-Forwarded-For": "192.0.2.77", "X-Forwarded-Proto": "https"}
OFF: dict[str, Any] = {"login_rate_per_ip": 2}
TRUSTING: dict[str, Any] = {"login_rate_per_ip": 2, "trust_forwarded_for": True}
TRUSTING_OTHER_PROXY: dict[str, Any] = TRUSTING | {"trusted_proxies": "10.0.0.0/8"}


async def failed_login_addresses(env: Env) -> list[str | None]:
    async with env.runtime.database.session(write=False) as session:
        rows = await session.execute(
            select(AuditEntry.client_address)
            .where(AuditEntry.action == "user.login_failed")
            .order_by(AuditEntry.id)
        )
        return list(rows.scalars())


async def failed_logins(client: httpx.AsyncClient, forwarded_for: list[str]) -> list[int]:
    """One failed login per X-Forwarded-For value; the statuses (429: the address's bucket is empty)."""
    statuses = []
    for i, address in enumerate(forwarded_for):
        response = await client.post(
            "/api/user/validate",
            json={"email": f"nobody{i}@example.com", "password": "wrong password"},
            headers={"X-Forwarded-For": address},
        )
        statuses.append(response.status_code)
    return statuses


def secure_flag(response: httpx.Response, cookie: str) -> bool:
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{cookie}=")]
    return "secure" in [part.strip().lower() for part in header.split(";")]


@pytest.mark.parametrize("settings_overrides", [OFF, TRUSTING_OTHER_PROXY], ids=["off", "untrusted-peer"])
async def test_forwarded_headers_change_nothing_unless_trusted(env: Env) -> None:
    async with env.client_from("127.0.0.1") as local:
        assert await failed_logins(local, ["192.0.2.1", "192.0.2.2", "192.0.2.3"]) == [401, 401, 429]
        page = await local.get("/login", headers=SPOOFED)
    assert set(await failed_login_addresses(env)) == {"127.0.0.1"}
    assert not secure_flag(page, "sw_csrf")
    assert "strict-transport-security" not in page.headers


@pytest.mark.parametrize("settings_overrides", [TRUSTING], ids=["trusted-peer"])
async def test_a_trusted_proxy_decides_address_and_scheme(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, token=False)
    async with env.client_from("127.0.0.1") as proxy:
        # Each forwarded client has its own bucket; the proxy's own address is not throttled.
        assert await failed_logins(proxy, ["192.0.2.1", "192.0.2.2", "192.0.2.3"]) == [401, 401, 401]
        page = await proxy.get("/login", headers=SPOOFED)
        assert secure_flag(page, "sw_csrf")
        assert page.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        anonymous_token = proxy.cookies["sw_csrf"]
        signed_in = await proxy.post(
            "/login",
            data={
                "csrf_token": anonymous_token,
                "email": member.email,
                "password": member.password,
                "organisation": str(org.id),
            },
            # The client speaks plain HTTP to this test app: it would hold back a Secure cookie.
            headers=SPOOFED | {"Cookie": f"sw_csrf={anonymous_token}"},
        )
        assert signed_in.status_code == 303, signed_in.text
        assert secure_flag(signed_in, "sw_session")
    async with env.client_from("127.0.0.1") as proxy:
        # The same proxy forwarding a plain-HTTP request: no Secure flag, no HSTS.
        plain = await proxy.get("/login", headers={"X-Forwarded-Proto": "http"})
        assert not secure_flag(plain, "sw_csrf")
        assert "strict-transport-security" not in plain.headers
    assert await failed_login_addresses(env) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]


@pytest.mark.parametrize("settings_overrides", [TRUSTING], ids=["trusted-peer"])
async def test_the_right_most_untrusted_hop_is_the_client(env: Env) -> None:
    """Whatever the client wrote into X-Forwarded-For stands left of what the proxies appended: the
    left-most value is the client's to choose, the right-most address no trusted proxy owns is not."""
    async with env.client_from("127.0.0.1") as proxy:
        await failed_logins(proxy, ["203.0.113.99, 198.51.100.4, ::1"])
    assert await failed_login_addresses(env) == ["198.51.100.4"]


def test_forwarded_for_is_used_only_when_it_holds_an_address() -> None:
    """Text that is no address never becomes the client (it would land in rate-limit keys and the
    audit log); the nearest address the proxies vouch for stands instead."""
    from streamward.middleware import ForwardedClient

    seen: list[tuple[Any, str]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["client"], scope["scheme"]))

    proxies = load_settings(trusted_proxies="127.0.0.1, 10.0.0.0/8").trusted_proxy_networks
    middleware = ForwardedClient(app, trust_forwarded_for=True, trusted_proxies=proxies)

    def through(peer: str, forwarded_for: str, proto: str = "") -> tuple[Any, str]:
        headers = [(b"x-forwarded-for", forwarded_for.encode())]
        if proto:
            headers.append((b"x-forwarded-proto", proto.encode()))
        scope = {"type": "http", "scheme": "http", "headers": headers, "client": (peer, 5000)}
        asyncio.run(middleware(scope, None, None))  # type: ignore[arg-type]
        return seen.pop()

    assert through("127.0.0.1", "x" * 500) == (("127.0.0.1", 5000), "http")
    assert through("127.0.0.1", "") == (("127.0.0.1", 5000), "http")
    assert through("127.0.0.1", "198.51.100.1, unknown, 10.1.2.3") == (("10.1.2.3", 0), "http")
    assert through("127.0.0.1", "198.51.100.1, 10.1.2.3") == (("198.51.100.1", 0), "http")
    assert through("127.0.0.1", "2001:db8::1", "https") == (("2001:db8::1", 0), "https")
    assert through("127.0.0.1", "198.51.100.1", "javascript") == (("198.51.100.1", 0), "http")
    assert through("198.51.100.9", "192.0.2.1", "https") == (("198.51.100.9", 5000), "http")


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert load_settings(trusted_proxies="10.0.0.0/8, ::1 ,192.0.2.7").trusted_proxies == (
        "10.0.0.0/8,::1,192.0.2.7"
    )
    with pytest.raises(SettingsError, match="STREAMWARD_TRUSTED_PROXIES"):
        load_settings(trusted_proxies="10.0.0.0/8, proxy.example.com")


# --- over a real socket: `streamward serve`, uvicorn included ---------------------------------


def _serve(var_dir: Path, extra: dict[str, str]) -> Iterator[str]:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STREAMWARD_")}
    environment.pop("DATABASE_URL", None)
    environment.pop("FORWARDED_ALLOW_IPS", None)
    environment |= {
        "STREAMWARD_VAR_DIR": str(var_dir),
        "STREAMWARD_PORT": str(port),
        "STREAMWARD_LOG_LEVEL": "warning",
        "STREAMWARD_RUN_WORKER": "false",
        "STREAMWARD_LOGIN_RATE_PER_IP": "2",
    } | extra
    process = subprocess.Popen([sys.executable, "-m", "streamward", "serve"], env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/login", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("streamward serve did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.parametrize(
    ("extra", "trusted"),
    [
        ({}, False),
        ({"STREAMWARD_TRUST_FORWARDED_FOR": "true"}, True),
        ({"STREAMWARD_TRUST_FORWARDED_FOR": "true", "STREAMWARD_TRUSTED_PROXIES": "10.0.0.0/8"}, False),
    ],
    ids=["off", "trusted-peer", "untrusted-peer"],
)
def test_streamward_serve_honours_the_setting(tmp_path: Path, extra: dict[str, str], trusted: bool) -> None:
    var_dir = tmp_path / "var"
    forwarded = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    for url in _serve(var_dir, extra):
        with httpx.Client(base_url=url) as client:
            page = client.get("/login", headers=SPOOFED)
            statuses = [
                client.post(
                    "/api/user/validate",
                    json={"email": f"nobody{i}@example.com", "password": "wrong password"},
                    headers={"X-Forwarded-For": address, "X-Forwarded-Proto": "https"},
                ).status_code
                for i, address in enumerate(forwarded)
            ]
    with sqlite3.connect(var_dir / "streamward.db") as db:
        addresses = [
            row[0]
            for row in db.execute(
                "SELECT client_address FROM audit_entry WHERE action = 'user.login_failed' ORDER BY id"
            )
        ]
    assert secure_flag(page, "sw_csrf") is trusted
    assert ("strict-transport-security" in page.headers) is trusted
    if trusted:
        assert statuses == [401, 401, 401]
        assert addresses == forwarded
    else:
        assert statuses == [401, 401, 429]
        assert set(addresses) == {"127.0.0.1"}
