"""A real HTTP webhook receiver on loopback, scripted per test: what to answer, and when."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hold: asyncio.Event | None = None  # answer only once this is set
    delay: float = 0.0


Script = Callable[[Received, int], Reply | Awaitable[Reply]]


class Receiver:
    """Minimal HTTP/1.1 server (one request per connection) that records every request."""

    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or (lambda _request, _n: Reply(200))
        self.requests: list[Received] = []
        self.arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self.port = 0

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def wait_for(self, count: int, within: float = 10.0) -> None:
        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(lambda: len(self.requests) >= count)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Received(method, path, headers, body)
            async with self.arrived:
                self.requests.append(request)
                number = len(self.requests)
                self.arrived.notify_all()
            reply = self.script(request, number)
            if not isinstance(reply, Reply):
                reply = await reply
            if reply.hold is not None:
                await reply.hold.wait()
            if reply.delay:
                await asyncio.sleep(reply.delay)
            extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
            writer.write(
                f"HTTP/1.1 {reply.status} X\r\ncontent-length: 0\r\nconnection: close\r\n{extra}\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
