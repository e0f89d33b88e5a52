"""What the observability middleware (request id, metrics, access log) costs on the hot path.

In-process, same run: ``GET /api/organisation`` with a bintu token, called straight through ASGI
(no HTTP client, no server: what remains is the application's own cost, so the middleware's share
is not diluted). Two apps over the same database, identical but for the middleware; rounds
alternate between them and the median round of each is compared, in CPU time of the process.

    .venv/bin/python bench/observability_overhead.py                   # SQLite
    .venv/bin/python bench/observability_overhead.py --database-url postgresql+asyncpg://...
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message

from streamward.app import create_app
from streamward.authn.service import issue_token
from streamward.config import Settings
from streamward.logs import configure_logging
from streamward.metrics import Metrics
from streamward.migrate import upgrade
from streamward.observability import Observability
from streamward.orgs.service import create_organisation
from streamward.runtime import Runtime
from streamward.users.models import Account, Membership, new_token_key

SECRET = "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"


async def setup(url: str, var: Path) -> tuple[Settings, str]:
    settings = Settings(database_url=url, var_dir=var, secret_key=SECRET, run_worker=False)  # type: ignore[arg-type]
    runtime = Runtime.from_settings(settings)
    async with runtime.database.session() as session:
        created = await create_organisation(session, runtime.secret_box, name="Bench")
        account = Account(email="bench@example.com", password_hash="x")
        session.add(account)
        await session.flush()
        membership = Membership(
            organisation_id=created.organisation.id,
            account_id=account.id,
            role="nanoAdmin",
            token_key=new_token_key(),
        )
        session.add(membership)
        await session.flush()
        issued = await issue_token(session, membership, timedelta(hours=1))
        await session.commit()
    await runtime.aclose()
    return settings, issued.token


def app_without_observability() -> ASGIApp:
    """For uvicorn --factory: the app as ``streamward.app:app_from_environment`` builds it, minus
    the middleware (the --wrk comparison)."""
    from streamward.config import load_settings

    return build(load_settings(), observed=False)


def compare_with_wrk(settings: Settings, token: str, turns: int = 3) -> None:
    """The bench/run.py way: uvicorn + wrk, both apps in turn, same connections and duration."""
    from bench.run import ensure_wrk, server, wrk

    binary = ensure_wrk()
    env = {
        "STREAMWARD_DATABASE_URL": settings.effective_database_url,
        "STREAMWARD_VAR_DIR": str(settings.var_dir),
        "STREAMWARD_SECRET_KEY": SECRET,
        "STREAMWARD_RUN_WORKER": "false",
    }
    options = argparse.Namespace(connections=16, duration=8)
    targets = {
        "without": "bench.observability_overhead:app_without_observability",
        "with": "streamward.app:app_from_environment",
    }
    rates: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(turns):
        for name, target in targets.items():
            with server(target, env, factory=True) as url:
                result = wrk(binary, url + "/api/organisation", {"X-BINTU-TOKEN": token}, options)
            rates[name].append(result["rps"])
    without, with_ = statistics.median(rates["without"]), statistics.median(rates["with"])
    print(f"wrk, 16 connections, {turns} x 8 s each: without {rates['without']} req/s, with {rates['with']}")
    print(
        f"  median without {without:.0f} req/s, with {with_:.0f} req/s ({(with_ / without - 1) * 100:+.1f} %)"
    )


def build(settings: Settings, *, observed: bool) -> ASGIApp:
    app = create_app(settings)
    if not observed:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not Observability]
    return app


async def call(app: ASGIApp, token: str) -> int:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/organisation",
        "raw_path": b"/api/organisation",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"x-bintu-token", token.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    status = 0

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def round_of(app: ASGIApp, token: str, requests: int) -> float:
    # CPU time of this process (the SQLite driver's thread included), not wall time: other work on
    # the machine then hardly moves the figures.
    started = time.process_time()
    for _ in range(requests):
        assert await call(app, token) == 200
    return (time.process_time() - started) / requests


async def measure(settings: Settings, token: str, rounds: int, requests: int) -> dict[str, float]:
    """Median and best round of each app, in microseconds per request. ``control`` is a second app
    without the middleware: how far two identical apps differ is the noise floor of the figures."""
    apps = {
        "without": build(settings, observed=False),
        "with": build(settings, observed=True),
        "control": build(settings, observed=False),
    }
    for app in apps.values():  # warm-up: caches, pool, first-request costs
        await round_of(app, token, 200)
    times: dict[str, list[float]] = {name: [] for name in apps}
    for turn in range(rounds):
        order = list(apps.items())
        for name, app in order[turn % 3 :] + order[: turn % 3]:  # no app always first
            times[name].append(await round_of(app, token, requests) * 1e6)
    result = {f"{name}_median": statistics.median(values) for name, values in times.items()}
    result |= {f"{name}_best": min(values) for name, values in times.items()}
    return result


async def middleware_alone(requests: int = 20_000) -> float:
    """Microseconds the middleware adds around an app that answers at once (its absolute cost)."""

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = _Route()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    wrapped = Observability(answer, metrics=Metrics())
    costs = []
    for app in (answer, wrapped):
        started = time.process_time()
        for _ in range(requests):
            await call(app, "token")
        costs.append((time.process_time() - started) / requests * 1e6)
    return costs[1] - costs[0]


class _Route:
    path_format = "/api/organisation"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--wrk", action="store_true", help="also compare under uvicorn + wrk")
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="streamward-obs-bench-"))
    url = args.database_url or f"sqlite+aiosqlite:///{var / 'bench.db'}"
    await asyncio.to_thread(upgrade, url)
    settings, token = await setup(url, var)

    print(f"GET /api/organisation, {url.split(':', 1)[0]}, {args.rounds} rounds of {args.requests}")
    sink = open(os.devnull, "w")  # noqa: ASYNC230, SIM115 - flushed per line, like a file or pipe
    for label, level in (("access log off (WARNING)", "warning"), ("JSON access log on (INFO)", "info")):
        logged = settings.model_copy(update={"log_format": "json", "log_level": level})
        handler = configure_logging(logged, stream=sink)
        alone = await middleware_alone()
        r = await measure(settings, token, args.rounds, args.requests)
        logging.getLogger().removeHandler(handler)
        print(f"  {label}: the middleware alone costs {alone:.1f} us/request")
        for stat in ("median", "best"):
            without, with_, control = r[f"without_{stat}"], r[f"with_{stat}"], r[f"control_{stat}"]
            print(
                f"    {stat:6} without {without:7.1f} us  with {with_:7.1f} us "
                f"({(with_ / without - 1) * 100:+.1f} %)  control {control:7.1f} us "
                f"({(control / without - 1) * 100:+.1f} %, the noise)"
            )
    sink.close()
    if args.wrk:
        compare_with_wrk(settings, token)


if __name__ == "__main__":
    asyncio.run(main())
