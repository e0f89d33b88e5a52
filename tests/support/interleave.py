"""Two requests interleaved at a chosen point: one is held inside a coroutine function of the
application until the other has got as far as it can (on PostgreSQL, usually waiting for a lock the
first holds), then both finish. For the rules about what makes and what ends sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest

from tests.conftest import Env


class Hold:
    """Holds the first call of ``target.name`` (a coroutine function) until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> None:
        self.reached, self.released = asyncio.Event(), asyncio.Event()
        original = getattr(target, name)

        async def held(*args: Any, **kwargs: Any) -> Any:
            if not self.reached.is_set():
                self.reached.set()
                await self.released.wait()
            return await original(*args, **kwargs)

        monkeypatch.setattr(target, name, held)


async def one_then_other(
    hold: Hold, first: Awaitable[httpx.Response], second: Awaitable[httpx.Response]
) -> tuple[httpx.Response, httpx.Response]:
    """``first`` until it is held, then ``second`` (which gets as far as it can), then both finish."""
    started = asyncio.ensure_future(first)
    await asyncio.wait_for(hold.reached.wait(), 10)
    other = asyncio.ensure_future(second)
    await asyncio.sleep(0.5)
    hold.released.set()
    one, two = await asyncio.wait_for(asyncio.gather(started, other), 30)
    return one, two


async def refused_now(env: Env, response: httpx.Response) -> None:
    """A token a request made is refused now (or the request was refused)."""
    if response.status_code in (200, 201):
        token = {"X-BINTU-TOKEN": response.json()["token"]}
        assert (await env.client.get("/api/organisation", headers=token)).status_code == 401
    else:
        assert response.status_code == 401, response.text
