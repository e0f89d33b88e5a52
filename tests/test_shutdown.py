"""Graceful shutdown and several server processes: a real ``streamward serve`` (or ``worker``) process,
stopped with SIGTERM as an orchestrator does."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from streamward.events.models import WebhookDelivery
from streamward.worker import DeliveryWorker, WorkerOptions
from tests.conftest import TEST_SECRET, Env
from tests.support.data import configure_webhook, emit_event, event_row
from tests.support.receiver import Receiver, Reply


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_private_webhook_targets": True}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_environment(env: Env, var_dir: Path, **settings: str) -> dict[str, str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith("STREAMWARD_") and k != "DATABASE_URL"}
    child |= {
        "STREAMWARD_DATABASE_URL": env.runtime.database.url,
        "STREAMWARD_SECRET_KEY": TEST_SECRET,
        "STREAMWARD_VAR_DIR": str(var_dir),
        "STREAMWARD_ALLOW_PRIVATE_WEBHOOK_TARGETS": "true",
        "STREAMWARD_LOG_LEVEL": "warning",
        "STREAMWARD_WORKER_POLL_INTERVAL_SECONDS": "0.05",
    }
    return child | {f"STREAMWARD_{name.upper()}": value for name, value in settings.items()}


@asynccontextmanager
async def serving(
    env: Env, var_dir: Path, *args: str, **settings: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``streamward serve`` in a process of its own; yields it and its base URL once it answers."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamward",
        "serve",
        "--port",
        str(port),
        *args,
        env=child_environment(env, var_dir, **settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(60), httpx.AsyncClient(base_url=base) as client:
            while True:
                assert process.returncode is None, "the server stopped"
                try:
                    await client.get("/api/openapi.json")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        yield process, base
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_a_stopped_worker_hands_back_what_it_claimed_and_did_not_send(env: Env) -> None:
    """Claimed (leased, attempt counted), then the worker is told to stop before sending: the lease
    is cleared and the attempt given back, so another worker sends it at once as attempt 1."""
    org = await env.org()
    async with Receiver() as receiver:
        await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        ids = [await emit_event(env, org) for _ in range(3)]
        first = DeliveryWorker(env.runtime.database, env.runtime.secret_box, env.runtime.egress)
        claimed = await first.claim(10)
        assert {event.id for event in claimed} == set(ids)
        stop = asyncio.Event()
        stop.set()
        await first.run(stop)  # stops at once
        for event_id in ids:
            row = await event_row(env, event_id)
            assert (row.status, row.locked_until, row.attempts) == ("pending", None, 0)

        second = DeliveryWorker(
            env.runtime.database, env.runtime.secret_box, env.runtime.egress, WorkerOptions()
        )
        assert await second.drain() == 3  # no lease to wait out
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(map(str, ids))
    async with env.runtime.database.session(write=False) as session:
        attempts = (await session.execute(select(WebhookDelivery.attempt))).scalars().all()
    assert sorted(attempts) == [1, 1, 1]


async def test_sigterm_lets_the_worker_finish_the_send_under_way(env: Env, tmp_path: Path) -> None:
    org = await env.org()
    answer = asyncio.Event()
    async with Receiver(lambda _r, _n: Reply(200, hold=answer)) as receiver:
        await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        event_id = await emit_event(env, org)
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamward",
            "worker",
            env=child_environment(env, tmp_path / "var"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await receiver.wait_for(1, within=30)  # the send is under way
            worker.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            assert worker.returncode is None  # still waiting for the receiver's answer
            answer.set()
            async with asyncio.timeout(30):
                await worker.wait()
        finally:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    assert worker.returncode == 0
    row = await event_row(env, event_id)
    assert (row.status, row.locked_until) == ("delivered", None)


async def test_sigterm_during_a_burst_completes_or_refuses_every_request(env: Env, tmp_path: Path) -> None:
    """Requests that take a while (a test event to a receiver answering after 0.5 s) keep arriving
    while the server gets SIGTERM: each one is answered 200 in full, or never reaches the server.
    Every test event the receiver saw was answered to its caller: none was cut off."""
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    outcomes: list[str] = []
    async with (
        Receiver(lambda _r, _n: Reply(200, delay=0.5)) as receiver,
        serving(env, tmp_path / "var", SHUTDOWN_GRACE_SECONDS="20") as (server, base),
    ):
        await configure_webhook(env, org, receiver.url())
        # One connection per request, as separate clients would: none is reused across the stop.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

            async def one() -> None:
                try:
                    response = await client.post("/api/organisation/webhook/test", headers=admin.headers)
                except httpx.ConnectError:
                    outcomes.append("refused")
                except httpx.TransportError as error:
                    outcomes.append(f"no answer: {type(error).__name__}")
                else:
                    outcomes.append(str(response.status_code))

            requests: list[asyncio.Task[None]] = []
            stopped_at: float | None = None
            loop = asyncio.get_running_loop()
            while stopped_at is None or loop.time() < stopped_at + 1.0:
                requests.append(asyncio.create_task(one()))
                if stopped_at is None and len(receiver.requests) >= 3:
                    server.send_signal(signal.SIGTERM)  # with several test events under way
                    stopped_at = loop.time()
                await asyncio.sleep(0.05)
            await asyncio.gather(*requests)
        async with asyncio.timeout(30):
            await server.wait()
    answered = [outcome for outcome in outcomes if outcome.isdigit()]
    assert set(answered) == {"200"}, outcomes  # never a 5xx
    assert len(answered) >= 3 and "refused" in outcomes
    # Every request the server took in was completed: the receiver saw one test event per 200. What
    # got no answer (refused, or a connection the stopping server closed before reading its request)
    # was never processed.
    assert len(receiver.requests) == len(answered), outcomes
    assert server.returncode in (0, -signal.SIGTERM)


async def test_several_workers_are_refused_on_sqlite(tmp_path: Path) -> None:
    child = {k: v for k, v in os.environ.items() if not k.startswith("STREAMWARD_") and k != "DATABASE_URL"}
    child |= {"STREAMWARD_VAR_DIR": str(tmp_path / "var"), "STREAMWARD_SECRET_KEY": TEST_SECRET}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "streamward", "serve", "--workers", "2"],
        env=child,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert "--workers needs PostgreSQL" in line


def server_processes(pid: int) -> list[int]:
    """The server processes uvicorn spawned under ``pid`` (not multiprocessing's resource tracker)."""
    children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [child for child in children if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


@pytest.mark.postgres_only
async def test_two_workers_on_postgresql_both_answer(env: Env, tmp_path: Path) -> None:
    """``--workers 2``: two processes serve the one port, each answering on its own (the other one
    stopped), with the command line's --port reaching both (links are built from it)."""
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    async with serving(env, tmp_path / "var", "--workers", "2") as (server, base):
        async with asyncio.timeout(30):
            while len(server_processes(server.pid)) < 2:  # noqa: ASYNC110 - processes starting
                await asyncio.sleep(0.1)
        first, second = server_processes(server.pid)
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:
            for answering, paused in ((first, second), (second, first)):
                os.kill(paused, signal.SIGSTOP)  # only `answering` can take connections now
                try:
                    await asyncio.sleep(0.2)
                    for _ in range(3):
                        invited = await client.post(
                            "/api/user/invite", json={"role": "nanoUser"}, headers=admin.headers
                        )
                        assert invited.status_code in (200, 201), invited.text
                        assert invited.json()["url"].startswith(f"{base}/invite/")
                finally:
                    os.kill(paused, signal.SIGCONT)
                assert answering in server_processes(server.pid)
        server.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await server.wait()
