"""/healthz and /readyz: what the orchestrator asks, and what they say when something is wrong."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url

from streamward.app import create_app
from streamward.migrate import alembic_config
from tests.conftest import POSTGRES_UP, Env, make_settings
from tests.support.net import free_port

URL_PASSWORD = "hunter2-not-for-logs"


def _head_and_previous() -> tuple[str, str]:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    (head,) = scripts.get_heads()
    previous = scripts.get_revision(head).down_revision
    assert isinstance(previous, str)
    return head, previous


@contextlib.asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
    await app.state.runtime.aclose()


async def test_healthz_answers_without_credentials(env: Env) -> None:
    response = await env.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ready_on_a_migrated_database(env: Env) -> None:
    head, _ = _head_and_previous()
    response = await env.client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {
            "database": {"ok": True},
            "schema": {"ok": True, "current": head, "expected": head},
        },
    }


async def _set_schema_version(env: Env, version: str) -> None:
    async with env.runtime.database.session() as session:
        await session.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": version})
        await session.commit()


async def test_readyz_is_unready_while_the_schema_is_behind_and_ready_after(env: Env) -> None:
    head, previous = _head_and_previous()
    await _set_schema_version(env, previous)  # as if this code ran against a database not yet upgraded
    try:
        behind = await env.client.get("/readyz")
    finally:
        await _set_schema_version(env, head)
    assert behind.status_code == 503
    assert behind.json() == {
        "status": "unready",
        "checks": {
            "database": {"ok": True},
            "schema": {"ok": False, "current": previous, "expected": head},
        },
    }
    assert (await env.client.get("/readyz")).status_code == 200


async def test_readyz_names_the_unreachable_database_without_its_url(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+asyncpg://streamward:{URL_PASSWORD}@127.0.0.1:{port}/streamward"
    async with client_of(create_app(make_settings(url, tmp_path))) as client:
        assert (await client.get("/healthz")).status_code == 200  # alive, though not ready
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unready"
    assert body["checks"]["database"] == {"ok": False, "error": "unreachable"}
    assert body["checks"]["schema"]["ok"] is False
    for secret_or_address in (URL_PASSWORD, "streamward:", str(port), "127.0.0.1", "asyncpg"):
        assert secret_or_address not in response.text


async def test_readyz_on_sqlite_follows_the_database_file(tmp_path: Path, sqlite_template: Path) -> None:
    path = tmp_path / "data" / "streamward.db"
    path.mkdir(parents=True)  # a folder where the database file should be: SQLite cannot open it
    async with client_of(create_app(make_settings(f"sqlite+aiosqlite:///{path}", tmp_path))) as client:
        down = await client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["checks"]["database"] == {"ok": False, "error": "unreachable"}
        path.rmdir()
        shutil.copy(sqlite_template, path)  # the database is back
        up = await client.get("/readyz")
        assert up.status_code == 200, up.text


class Forwarder:
    """A TCP relay to the real PostgreSQL that a test can switch off and on: the database 'goes away'."""

    def __init__(self, target: tuple[str, int], port: int) -> None:
        self.target, self.port = target, port
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, upstream_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


@pytest.mark.skipif(not POSTGRES_UP, reason="PostgreSQL not reachable")
async def test_readyz_follows_postgresql_going_away_and_coming_back(
    postgres_url: str, tmp_path: Path
) -> None:
    real = make_url(postgres_url)
    forwarder = Forwarder((real.host or "127.0.0.1", real.port or 5432), free_port())
    url = real.set(host="127.0.0.1", port=forwarder.port).render_as_string(hide_password=False)
    async with client_of(create_app(make_settings(url, tmp_path))) as client:
        states: list[Any] = [(await client.get("/readyz")).status_code]
        await forwarder.start()
        states.append((await client.get("/readyz")).status_code)
        await forwarder.stop()  # the pooled connection dies with it
        states.append((await client.get("/readyz")).status_code)
        await forwarder.start()
        states.append((await client.get("/readyz")).status_code)
        await forwarder.stop()
    assert states == [503, 200, 503, 200]


async def test_readyz_watches_the_delivery_worker_this_process_runs(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("streamward.app.tune_garbage_collector", lambda: None)  # no gc.freeze in tests
    app = env.client._transport.app  # type: ignore[attr-defined]
    async with app.router.lifespan_context(app):  # what uvicorn does at start-up: the worker runs
        running = await env.client.get("/readyz")
    stopped = await env.client.get("/readyz")  # the worker has stopped, the process still answers
    assert running.status_code == 200, running.text
    assert running.json()["checks"]["worker"]["ok"] is True
    assert stopped.status_code == 503
    assert stopped.json()["checks"]["worker"] == {"ok": False, "error": "stopped"}
