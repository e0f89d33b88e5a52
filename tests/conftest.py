"""Test fixtures: every API test runs on SQLite and on PostgreSQL, over a schema built by the migrations.

Isolation: SQLite gets a fresh copy of a migrated template file per test; PostgreSQL gets one
migrated database per run, truncated after each test. Both commit for real, so concurrency tests
see what two requests really see.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from streamward.app import create_app
from streamward.authn.service import issue_token
from streamward.authz.permissions import ADMIN_ROLE
from streamward.config import Settings
from streamward.crypto import SecretBox
from streamward.migrate import upgrade
from streamward.models import metadata
from streamward.orgs.models import Organisation
from streamward.orgs.service import create_organisation
from streamward.runtime import Runtime
from streamward.users.models import Account, Membership, new_token_key, normalise_email
from tests.support.pages import browser, signed_in

PG_ADMIN_URL = os.environ.get(
    "STREAMWARD_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("STREAMWARD_REQUIRE_POSTGRES") == "1"
TEST_SECRET = "test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
PASSWORD = "correct horse battery staple"


def _postgres_reachable() -> bool:
    host_port = PG_ADMIN_URL.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host, int(port or 5432)), timeout=1):
            return True
    except OSError:
        return False


POSTGRES_UP = _postgres_reachable()
if REQUIRE_POSTGRES and not POSTGRES_UP:
    raise pytest.UsageError(f"PostgreSQL is required (CI) but unreachable at {PG_ADMIN_URL}")

ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=pytest.mark.skipif(not POSTGRES_UP, reason="PostgreSQL not reachable"),
    ),
]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = f"streamward_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def admin(sql: str) -> None:
        engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(sql))
        await engine.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    # A test database need not survive a crash of the server: commits do not wait for the disk.
    asyncio.run(admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_cleanup_engines: dict[str, Any] = {}


async def _truncate_postgres(url: str) -> None:
    """Empty every table after a test. DELETE in reverse dependency order on one kept engine: on
    the handful of rows a test writes this is several times faster than TRUNCATE (which takes
    exclusive locks and rewrites files) with a fresh engine, and it is paid after every test."""
    engine = _cleanup_engines.get(url)
    if engine is None:
        engine = _cleanup_engines[url] = create_async_engine(url, pool_size=1)
    async with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(table.delete())


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "streamward.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    # Truncated after each test by `env`, which runs inside the event loop.
    yield request.getfixturevalue("postgres_url")


_hash_cache: dict[str, str] = {}


async def password_hash(password: str) -> str:
    """Hashing costs ~40 ms by design; tests reuse one hash per distinct password."""
    from streamward.passwords import hash_password

    if password not in _hash_cache:
        _hash_cache[password] = await hash_password(password)
    return _hash_cache[password]


@dataclass
class Member:
    membership: Membership
    account: Account
    organisation: Organisation
    password: str
    token: str | None = None

    @property
    def id(self) -> uuid.UUID:
        return self.membership.id

    @property
    def email(self) -> str:
        return self.account.email

    @property
    def headers(self) -> dict[str, str]:
        assert self.token, "log the member in first"
        return {"X-BINTU-TOKEN": self.token}


@dataclass
class CreatedOrg:
    organisation: Organisation
    api_key: str

    @property
    def id(self) -> uuid.UUID:
        return self.organisation.id

    @property
    def api_headers(self) -> dict[str, str]:
        return {"X-BINTU-APIKEY": self.api_key}


@dataclass
class Env:
    """One running app over one database, with factories that write straight to the database."""

    settings: Settings
    runtime: Runtime
    client: httpx.AsyncClient
    engine_name: str
    _counter: int = field(default=0)

    def client_from(self, address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.client._transport.app, client=(address, 50000))  # type: ignore[attr-defined]
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async def org(
        self, name: str | None = None, *, packages: list[str] | None = None, **kwargs: Any
    ) -> CreatedOrg:
        self._counter += 1
        async with self.runtime.database.session() as session:
            created = await create_organisation(
                session,
                self.runtime.secret_box,
                name=name or f"Org {self._counter}",
                packages=packages,
                **kwargs,
            )
            await session.commit()
        return CreatedOrg(created.organisation, created.api_key)

    async def member(
        self,
        org: CreatedOrg,
        role: str = ADMIN_ROLE,
        *,
        email: str | None = None,
        password: str = PASSWORD,
        token: bool = True,
        login: bool = False,
    ) -> Member:
        """A member of ``org``. With ``token`` it holds a bintu token issued straight into the session
        table: what a login stores, without the login's password check (~40 ms of argon2id). With
        ``login`` the token comes from a real login through the API instead, for tests of what a
        login does (its audit entry, metrics, log lines)."""
        self._counter += 1
        email = normalise_email(email or f"user{self._counter}@example.com")
        async with self.runtime.database.session() as session:
            account = (
                await session.execute(select(Account).where(Account.email == email))
            ).scalar_one_or_none()
            if account is None:
                account = Account(email=email, password_hash=await password_hash(password))
                session.add(account)
                await session.flush()
            membership = Membership(
                organisation_id=org.id, account_id=account.id, role=role, token_key=new_token_key()
            )
            session.add(membership)
            await session.flush()
            direct = token and not login
            issued = await issue_token(session, membership, self.session_lifetime) if direct else None
            await session.commit()
        member = Member(membership, account, org.organisation, password, issued.token if issued else None)
        if login:
            member.token = await self.login(member)
        return member

    @property
    def session_lifetime(self) -> timedelta:
        return timedelta(seconds=self.settings.session_lifetime_seconds)

    async def issue_token(self, member: Member) -> str:
        """Another bintu token for ``member``, issued directly (no login), under the membership's
        current token key (which a token reset through the API may have renewed)."""
        async with self.runtime.database.session() as session:
            membership = await session.get(Membership, member.id)
            assert membership is not None, "the member was deleted"
            issued = await issue_token(session, membership, self.session_lifetime)
            await session.commit()
        member.membership = membership
        return issued.token

    async def login(self, member: Member, **extra: Any) -> str:
        """A bintu token from a real login through POST /api/user/validate."""
        body = {"email": member.email, "password": member.password} | extra
        if "organisation" not in extra:
            body["organisation"] = str(member.organisation.id)
        response = await self.client.post("/api/user/validate", json=body)
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token


def make_settings(database_url: str, var_dir: Path, **overrides: Any) -> Settings:
    return Settings(
        database_url=database_url,
        var_dir=var_dir,
        secret_key=TEST_SECRET,  # type: ignore[arg-type]
        **overrides,
    )


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its tests."""
    return {}


@pytest.fixture
async def env(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path, settings_overrides: dict[str, Any]
) -> AsyncIterator[Env]:
    settings = make_settings(database_url, tmp_path / "var", **settings_overrides)
    runtime = Runtime.from_settings(settings)
    app = create_app(settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.10", 50000))
    engine_name = "sqlite" if database_url.startswith("sqlite") else "postgres"
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Env(settings, runtime, client, engine_name)
    finally:
        await runtime.aclose()
        if engine_name == "postgres":
            await _truncate_postgres(database_url)


SignIn = Callable[[Member], Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def sign_in(env: Env) -> AsyncIterator[SignIn]:
    """Signs a member in to the dashboard, each in a browser of its own (see tests/support/pages.py)."""
    opened: list[httpx.AsyncClient] = []

    async def sign_in(member: Member) -> httpx.AsyncClient:
        opened.append(await signed_in(env, member))
        return opened[-1]

    yield sign_in
    for client in opened:
        await client.aclose()


@pytest.fixture
async def stranger(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    """A browser that never signed in."""
    async with browser(env) as client:
        yield client


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(TEST_SECRET.encode())


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (pyproject.toml), except that the browser tests are one unit: one worker
    runs them all, with one Chromium and one demo for them."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class BrowserTestsTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "tests/browser/" if path.startswith("tests/browser/") else path

    return BrowserTestsTogether(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres_only`` exercise what only PostgreSQL offers (several concurrent claimers,
    row locks); their SQLite variants are not collected at all rather than skipped."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        engine = callspec.params.get("database_url") if callspec else None
        (dropped if item.get_closest_marker("postgres_only") and engine == "sqlite" else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


# What a request costs the database (the performance tests of #12).
@pytest.fixture
def statements(env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement this process sends: through SQLAlchemy, or straight through asyncpg."""
    sent: list[str] = []
    fetchrow, fetch = asyncpg.Connection.fetchrow, asyncpg.Connection.fetch

    async def noted_fetchrow(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(query)
        return await fetchrow(self, query, *args, **kwargs)

    async def noted_fetch(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(query)
        return await fetch(self, query, *args, **kwargs)

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    monkeypatch.setattr(asyncpg.Connection, "fetchrow", noted_fetchrow)
    monkeypatch.setattr(asyncpg.Connection, "fetch", noted_fetch)
    event.listen(env.runtime.database.engine.sync_engine, "before_cursor_execute", note)
    yield sent
    event.remove(env.runtime.database.engine.sync_engine, "before_cursor_execute", note)


@pytest.fixture
def opened_sessions(env: Env, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The mode of every session the database opens from now on (True: writing)."""
    opened: list[bool] = []
    original = env.runtime.database.session

    def session(*, write: bool = True) -> Any:
        opened.append(write)
        return original(write=write)

    monkeypatch.setattr(env.runtime.database, "session", session)
    return opened
