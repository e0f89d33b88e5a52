"""Benchmark: purging a million expired bintu sessions on PostgreSQL while the API keeps answering.

One organisation, its admin logged in, and ``--sessions`` expired sessions (bulk INSERT ...
generate_series, not the API). Measured in one run:

* the purge rate: rows per second of ``streamward.housekeeping.purge`` (batches of 1,000 rows, each
  its own transaction, ``FOR UPDATE SKIP LOCKED``);
* ``GET /api/organisation`` with the admin's bintu token, ``--clients`` requests at a time, before
  the purge and during it: p50 and p99 of each window, and their ratio (during / before).

The purge runs in the same process and event loop as the application, as the delivery worker runs it
inside ``streamward serve``; requests go through the ASGI application in-process (no network).

    .venv/bin/python bench/housekeeping.py [--sessions 1000000] [--clients 8] [--baseline-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

# bench/run.py (the foundation benchmark) knows where PostgreSQL is.
from run import PG_ADMIN, RESULTS, ROOT, postgres_reachable
from streamward.app import create_app
from streamward.authn.models import BintuSession
from streamward.config import Settings
from streamward.housekeeping import BATCH_SIZE, purge
from streamward.migrate import upgrade
from streamward.runtime import Runtime
from streamward.users.provisioning import create_with_admin

ADMIN_EMAIL, ADMIN_PASSWORD = "bench-admin@example.com", "bench admin passphrase"
INSERT_CHUNK = 250_000


def asyncpg_url(url: str) -> str:
    return "postgresql+asyncpg://" + url.split("://", 1)[1]


async def admin_sql(statement: str) -> None:
    engine = create_async_engine(asyncpg_url(PG_ADMIN), isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(statement))
    await engine.dispose()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Load:
    """``clients`` loops of ``GET /api/organisation``; each latency is filed under the current window."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str], clients: int) -> None:
        self.client, self.headers, self.clients = client, headers, clients
        self.window = "warm-up"
        self.samples: dict[str, list[float]] = {}
        self.errors = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _loop(self) -> None:
        while not self._stop.is_set():
            window = self.window
            started = time.perf_counter()
            response = await self.client.get("/api/organisation", headers=self.headers)
            elapsed_ms = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                self.errors += 1
            self.samples.setdefault(window, []).append(elapsed_ms)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self.clients)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def summary(self, window: str) -> dict[str, float]:
        values = self.samples.get(window, [])
        return {
            "requests": len(values),
            "p50_ms": round(statistics.median(values), 3),
            "p99_ms": round(percentile(values, 0.99), 3),
        }


async def run(args: argparse.Namespace, database_url: str, workdir: Path) -> dict[str, Any]:
    await asyncio.to_thread(upgrade, database_url)
    settings = Settings(
        database_url=database_url,
        var_dir=workdir,
        secret_key="bench-secret-key-" + "x" * 32,  # type: ignore[arg-type]
        run_worker=False,  # the purge is started by hand below, timed
    )
    runtime = Runtime.from_settings(settings)
    database = runtime.database
    async with database.session() as session:
        provisioned = await create_with_admin(
            session, runtime.secret_box, admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD, name="Bench"
        )
        membership = provisioned.admin
        await session.commit()
    print(f"seeding {args.sessions:,} expired sessions ...", file=sys.stderr)
    seeded = 0
    while seeded < args.sessions:
        chunk = min(INSERT_CHUNK, args.sessions - seeded)
        async with database.session() as session:
            await session.execute(
                text(
                    "INSERT INTO session (id, token_hash, membership_id, token_key, created_at, "
                    "expires_at, last_used_at) "
                    "SELECT gen_random_uuid(), md5(g::text) || md5('x' || g), :membership, :key, "
                    "now() - interval '2 days', now() - interval '1 day', now() - interval '1 day' "
                    "FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g"
                ),
                {
                    "membership": membership.id,
                    "key": membership.token_key,
                    "first": seeded,
                    "last": seeded + chunk - 1,
                },
            )
            await session.commit()
        seeded += chunk
    async with database.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM ANALYZE session"))

    app = create_app(settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            login = await client.post(
                "/api/user/validate", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            login.raise_for_status()
            load = Load(client, {"X-BINTU-TOKEN": login.json()["token"]}, args.clients)
            load.start()
            await asyncio.sleep(1.0)
            load.window = "before"
            print("measuring the API alone ...", file=sys.stderr)
            await asyncio.sleep(args.baseline_seconds)
            load.window = "during"
            print("purging ...", file=sys.stderr)
            started = time.perf_counter()
            counts = await purge(database, retention_days=settings.retention_days)
            purge_seconds = time.perf_counter() - started
            load.window = "after"
            await load.stop()
    finally:
        async with database.session(write=False) as session:
            left = await session.scalar(select(func.count()).select_from(BintuSession))
        await runtime.aclose()

    before, during = load.summary("before"), load.summary("during")
    return {
        "settings": {"sessions": args.sessions, "clients": args.clients, "batch_size": BATCH_SIZE},
        "purge": {
            "sessions_deleted": counts["sessions"],
            "seconds": round(purge_seconds, 3),
            "rows_per_second": round(counts["sessions"] / purge_seconds),
            "sessions_left": left,  # the admin's live one
        },
        "get_organisation": {
            "before": before,
            "during": during,
            "p99_ratio_during_to_before": round(during["p99_ms"] / before["p99_ms"], 3),
            "p50_ratio_during_to_before": round(during["p50_ms"] / before["p50_ms"], 3),
            "errors": load.errors,
        },
    }


def report(results: dict[str, Any]) -> None:
    purged, api = results["purge"], results["get_organisation"]
    print(
        f"\nhousekeeping benchmark, PostgreSQL: {purged['sessions_deleted']:,} expired sessions purged in "
        f"{purged['seconds']:.1f} s = {purged['rows_per_second']:,} rows/s "
        f"(batches of {results['settings']['batch_size']:,}; {purged['sessions_left']} left)"
    )
    print(f"GET /api/organisation, {results['settings']['clients']} at a time, in-process:")
    print(f"{'window':<10}{'requests':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for window in ("before", "during"):
        row = api[window]
        print(f"{window:<10}{row['requests']:>10}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}")
    print(
        f"during/before: p50 {api['p50_ratio_during_to_before']:.2f}, "
        f"p99 {api['p99_ratio_during_to_before']:.2f}; errors {api['errors']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=8, help="concurrent GET /api/organisation loops")
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    args = parser.parse_args()
    if not postgres_reachable():
        print("housekeeping benchmark: PostgreSQL not reachable; skipped", file=sys.stderr)
        return
    name = f"streamward_bench_housekeeping_{os.getpid()}"
    database_url = asyncpg_url(PG_ADMIN.rsplit("/", 1)[0] + "/" + name)
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        with tempfile.TemporaryDirectory() as workdir:
            results = asyncio.run(run(args, database_url, Path(workdir)))
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    report(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "housekeeping.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
