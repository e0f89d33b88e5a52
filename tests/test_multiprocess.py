"""Two real ``streamward serve`` processes, A and B, on one PostgreSQL database and one Redis (the
same key prefix): what a client sees must not depend on which process answers.

* A login flood split across A and B is limited as one budget, and audited once, not once per process.
* Permissions are resolved per request: a role edited through A applies to the very next request
  through B, and a role change through A is refused on the very next request through B.

Needs PostgreSQL and Redis (skipped without them, except in CI)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from streamward.audit.models import AuditEntry
from tests.conftest import PG_ADMIN_URL, POSTGRES_UP, TEST_SECRET
from tests.support.net import free_port
from tests.support.redis_store import REDIS_URL, drop_keys, needs_redis, new_prefix

pytestmark = [pytest.mark.skipif(not POSTGRES_UP, reason="PostgreSQL not reachable"), needs_redis]

ADMIN_EMAIL = "admin@multi.example.com"
ADMIN_PASSWORD = "a sturdy admin passphrase 1"
ADMIN_OPTIONS = ["--admin-email", ADMIN_EMAIL, "--admin-password", ADMIN_PASSWORD]
MEMBER_EMAIL = "ops@multi.example.com"
MEMBER_PASSWORD = "a sturdy member passphrase 2"
LOGIN_BUDGET = 6  # per client address and minute, in all processes together


@dataclass
class Cluster:
    a: str
    b: str
    database_url: str
    organisation_id: str


def _admin_sql(sql: str) -> None:
    async def run() -> None:
        engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(sql))
        await engine.dispose()

    asyncio.run(run())


def _wait_until_serving(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/login", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamward serve did not start") from None
            time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name = f"streamward_multi_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _admin_sql(f'CREATE DATABASE "{name}"')
    database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    prefix = new_prefix()
    base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMWARD_") and k != "DATABASE_URL"}
    base |= {
        "STREAMWARD_DATABASE_URL": database_url,
        # Every process of one deployment shares the secret key (and so the Redis key names).
        "STREAMWARD_SECRET_KEY": TEST_SECRET,
        "STREAMWARD_REDIS_URL": REDIS_URL,
        "STREAMWARD_REDIS_KEY_PREFIX": prefix,
        "STREAMWARD_LOGIN_RATE_PER_IP": str(LOGIN_BUDGET),
        # Each test speaks from client addresses of its own, as a proxy on 127.0.0.1 forwards them.
        "STREAMWARD_TRUST_FORWARDED_FOR": "true",
        "STREAMWARD_RUN_WORKER": "false",
        "STREAMWARD_LOG_LEVEL": "warning",
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        created = subprocess.run(
            [sys.executable, "-m", "streamward", "org", "create", "--name", "Multi", *ADMIN_OPTIONS],
            env=base | {"STREAMWARD_VAR_DIR": str(tmp_path_factory.mktemp("multi-cli"))},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert created.returncode == 0, created.stderr
        urls = []
        for label in ("a", "b"):  # one after the other: each upgrades the schema on start
            port = free_port()
            env = base | {
                "STREAMWARD_PORT": str(port),
                "STREAMWARD_VAR_DIR": str(tmp_path_factory.mktemp(f"multi-{label}")),
            }
            process = subprocess.Popen([sys.executable, "-m", "streamward", "serve"], env=env)
            processes.append(process)
            urls.append(f"http://127.0.0.1:{port}")
            _wait_until_serving(process, urls[-1])
        organisation_id = _organisation_id(urls[0])
        yield Cluster(urls[0], urls[1], database_url, organisation_id)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)
        drop_keys(prefix)
        _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _organisation_id(url: str) -> str:
    login = httpx.post(
        url + "/api/user/validate",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        headers={"X-Forwarded-For": "192.0.2.200"},
    )
    assert login.status_code == 200, login.text
    return str(login.json()["organisation"]["id"])


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def _login(
    client: httpx.AsyncClient, url: str, email: str, password: str, address: str
) -> dict[str, str]:
    """The bintu token header of a login through ``url`` from client ``address``."""
    response = await client.post(
        url + "/api/user/validate", json={"email": email, "password": password}, headers=_from(address)
    )
    assert response.status_code == 200, response.text
    return {"X-BINTU-TOKEN": response.json()["token"]}


async def _rate_limited_audit_entries(database_url: str, email: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(AuditEntry.after).where(
                        AuditEntry.action == "user.login_failed", AuditEntry.actor_email == email
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    return sum(1 for (after,) in rows if after == {"reason": "rate_limited"})


async def test_a_login_flood_split_across_two_processes_is_limited_as_one_budget(cluster: Cluster) -> None:
    address = "198.51.100.21"
    async with httpx.AsyncClient(timeout=30) as client:
        statuses = []
        for attempt in range(2 * LOGIN_BUDGET):
            url = (cluster.a, cluster.b)[attempt % 2]
            response = await client.post(
                url + "/api/user/validate",
                json={"email": f"guess{attempt}@multi.example.com", "password": "wrong-password"},
                headers=_from(address),
            )
            statuses.append(response.status_code)
        # One budget: each process on its own would have let all twelve through (6 each).
        assert statuses == [401] * LOGIN_BUDGET + [429] * LOGIN_BUDGET
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["error"]["code"] == "rate_limited"

        # Refused attempts keep being refused by both, and are audited once for both together.
        flood_email = "flood@multi.example.com"
        for attempt in range(6):
            url = (cluster.a, cluster.b)[attempt % 2]
            refused = await client.post(
                url + "/api/user/validate",
                json={"email": flood_email, "password": "wrong-password"},
                headers=_from(address),
            )
            assert refused.status_code == 429
        assert await _rate_limited_audit_entries(cluster.database_url, flood_email) == 1

        # Another client address still has its whole budget, through either process.
        other = await client.post(
            cluster.b + "/api/user/validate",
            json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            headers=_from("198.51.100.22"),
        )
        assert other.status_code == 200, other.text


async def test_role_edits_and_changes_through_a_apply_to_the_next_request_through_b(cluster: Cluster) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        admin = await _login(client, cluster.a, ADMIN_EMAIL, ADMIN_PASSWORD, "198.51.100.31")
        role = await client.post(
            cluster.a + "/api/permission",
            json={"name": "ops", "permissions": ["org:read", "user:read"]},
            headers=admin,
        )
        assert role.status_code == 201, role.text
        invite = await client.post(cluster.a + "/api/user/invite", json={"role": "ops"}, headers=admin)
        assert invite.status_code == 201, invite.text
        accepted = await client.post(
            cluster.b + f"/api/invite/{invite.json()['token']}/accept",
            json={"email": MEMBER_EMAIL, "password": MEMBER_PASSWORD},
            headers=_from("198.51.100.32"),
        )
        assert accepted.status_code == 200, accepted.text
        holder = {"X-BINTU-TOKEN": accepted.json()["token"]}
        holder_id = accepted.json()["user"]["id"]
        assert (await client.get(cluster.b + "/api/user", headers=holder)).status_code == 200

        # The role loses user:read through A; B, which just answered 200, refuses the next request.
        narrowed = await client.put(
            cluster.a + "/api/permission/ops", json={"permissions": ["org:read"]}, headers=admin
        )
        assert narrowed.status_code == 200, narrowed.text
        assert (await client.get(cluster.b + "/api/user", headers=holder)).status_code == 403
        assert (await client.get(cluster.b + "/api/organisation", headers=holder)).status_code == 200

        # Given back through A, then the member moved to a role without it through A: refused by B.
        widened = await client.put(
            cluster.a + "/api/permission/ops", json={"permissions": ["org:read", "user:read"]}, headers=admin
        )
        assert widened.status_code == 200, widened.text
        assert (await client.get(cluster.b + "/api/user", headers=holder)).status_code == 200
        changed = await client.put(
            cluster.a + "/api/user/permission",
            json={"userId": holder_id, "role": "nanoReadOnly"},
            headers=admin,
        )
        assert changed.status_code == 200, changed.text
        # A role change also ends the member's bintu tokens: B no longer accepts the old one.
        after = await client.get(cluster.b + "/api/user", headers=holder)
        assert (after.status_code, after.json()["error"]["code"]) == (401, "unauthenticated")
        again = await _login(client, cluster.b, MEMBER_EMAIL, MEMBER_PASSWORD, "198.51.100.33")
        assert (await client.get(cluster.b + "/api/user", headers=again)).status_code == 403
        assert (await client.get(cluster.b + "/api/organisation", headers=again)).status_code == 200


async def _hammer(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], stop: asyncio.Event
) -> list[tuple[float, int]]:
    """Reads ``/api/organisation`` back to back until ``stop``: when each request set off, and its status."""
    log: list[tuple[float, int]] = []
    while not stop.is_set():
        started = time.monotonic()
        response = await client.get(url + "/api/organisation", headers=headers)
        log.append((started, response.status_code))
    return log


def _after(log: list[tuple[float, int]], moment: float) -> list[int]:
    return [status for started, status in log if started > moment]


async def test_revocations_through_a_refuse_the_next_request_through_b_under_full_load(
    cluster: Cluster,
) -> None:
    """B serves a steady flood of reads with a bintu token and with the API key (more concurrent
    requests than its connection pools hold). A rotates the API key, then renews the token's key:
    every request that set off after A's answer is refused by B, however busy B is."""
    limits = httpx.Limits(max_connections=80, max_keepalive_connections=80)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        flooded = await _login(client, cluster.a, ADMIN_EMAIL, ADMIN_PASSWORD, "198.51.100.41")
        acting = await _login(client, cluster.a, ADMIN_EMAIL, ADMIN_PASSWORD, "198.51.100.41")
        revealed = await client.get(cluster.a + "/api/organisation/apikey", headers=acting)
        assert revealed.status_code == 200, revealed.text
        api_key = {"X-BINTU-APIKEY": revealed.json()["apiKey"]}

        stop = asyncio.Event()
        flood = [
            asyncio.create_task(_hammer(client, cluster.b, headers, stop))
            for headers in [flooded] * 20 + [api_key] * 20
        ]
        await asyncio.sleep(1.5)  # B at full load
        rotated = await client.post(
            cluster.a + "/api/organisation/apikey/rotate", json={"confirm": True}, headers=acting
        )
        assert rotated.status_code == 200, rotated.text
        key_rotated = time.monotonic()
        await asyncio.sleep(1.0)
        renewed = await client.put(cluster.a + "/api/user/tokenkey", json={}, headers=acting)
        assert renewed.status_code == 200, renewed.text
        token_ended = time.monotonic()
        await asyncio.sleep(1.0)
        stop.set()
        logs = await asyncio.gather(*flood)

    token_log = [entry for log in logs[:20] for entry in log]
    key_log = [entry for log in logs[20:] for entry in log]
    # Both floods were being served before the change...
    assert [status for started, status in key_log if started < key_rotated - 0.5].count(200) > 20
    assert [status for started, status in token_log if started < token_ended - 0.5].count(200) > 20
    # ...and every request that set off after it was refused, by the process that did not make it.
    after_rotation, after_renewal = _after(key_log, key_rotated), _after(token_log, token_ended)
    assert len(after_rotation) > 20 and set(after_rotation) == {401}, after_rotation[:50]
    assert len(after_renewal) > 20 and set(after_renewal) == {401}, after_renewal[:50]
