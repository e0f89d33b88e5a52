"""Benchmark: the users list at depth and token reset against the number of sessions, on PostgreSQL.

One organisation with 100,000 memberships (bulk INSERTs, not the API). Measured in one run, so that
what is reported are ratios, which stay comparable from one machine to another:

* ``GET /api/user?role=nanoUser&limit=50`` on the first page and ~1,000 pages deep (the cursor is built
  from the id of the 50,000th nanoUser, as the list would hand it out): keyset pagination should make
  depth free (goal: deep / first <= 1.5);
* ``PUT /api/user/tokenkey`` for a user with 10 and with 10,000 live sessions: one UPDATE of the
  membership, whatever the number of sessions (goal: <= 1.5). A reset ends the user's sessions, so
  each timed reset is of another user: 55 users with 10 sessions, 55 with 10,000 (550,000 rows).

Server time is the time a request spends inside the ASGI application, measured in-process (no
network, no client parsing): the p50 of many requests, after a warm-up.

    make bench                                  # after bench/run.py
    .venv/bin/python bench/users.py [--members 100000] [--samples 200]
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
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

# bench/run.py (the foundation benchmark) knows where PostgreSQL is.
from run import PG_ADMIN, RESULTS, ROOT, postgres_reachable
from streamward.app import create_app
from streamward.config import Settings
from streamward.crypto import digest, new_token
from streamward.db import new_id, utcnow
from streamward.migrate import upgrade
from streamward.pagination import encode_cursor
from streamward.passwords import hash_password
from streamward.runtime import Runtime
from streamward.users.models import Membership, new_token_key
from streamward.users.provisioning import create_with_admin

ADMIN_EMAIL, ADMIN_PASSWORD = "bench-admin@example.com", "bench admin passphrase"
PAGE = 50
DEEP_PAGES = 1_000


def deep_pages(members: int) -> int:
    """1,000 pages deep, or, in a smaller organisation, the last full page of its nanoUsers (7 in 10)
    that still has one after it (the check below wants a next cursor)."""
    return min(DEEP_PAGES, members * 7 // 10 // PAGE - 2)


INSERT_BATCH = 5_000
GOAL = 1.5
RESET_SAMPLES = 50
RESET_USERS = RESET_SAMPLES + RESET_SAMPLES // 10  # the samples and their warm-up


def asyncpg_url(url: str) -> str:
    return "postgresql+asyncpg://" + url.split("://", 1)[1]


async def admin_sql(statement: str) -> None:
    engine = create_async_engine(asyncpg_url(PG_ADMIN), isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(statement))
    await engine.dispose()


async def copy_rows(session: AsyncSession, table: str, rows: list[dict[str, Any]]) -> None:
    """Bulk insert with PostgreSQL's COPY, inside the session's transaction."""
    connection = await (await session.connection()).get_raw_connection()
    columns = list(rows[0])
    await connection.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
        table, records=[tuple(row[c] for c in columns) for row in rows], columns=columns
    )


async def bulk_memberships(session: AsyncSession, organisation_id: uuid.UUID, count: int) -> None:
    """``count`` accounts and memberships; 7 in 10 are nanoUser."""
    password_hash = await hash_password("bench member passphrase")  # one hash for all: not measured
    now = utcnow()
    accounts, memberships = [], []
    for n in range(count):
        account_id = new_id()
        accounts.append(
            {
                "id": account_id,
                "email": f"member-{n:06d}@example.com",
                "password_hash": password_hash,
                "created_at": now,
            }
        )
        memberships.append(
            {
                "id": new_id(),
                "organisation_id": organisation_id,
                "account_id": account_id,
                "role": "nanoUser" if n % 10 < 7 else "nanoReadOnly",
                "token_key": new_token_key(),
                "created_at": now,
            }
        )
    await copy_rows(session, "account", accounts)
    await copy_rows(session, "membership", memberships)


async def add_sessions(session: AsyncSession, members: list[Membership], per_member: int) -> None:
    """``per_member`` live bintu sessions (issued under the current token key) for each member."""
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "token_hash": digest(new_token("swt")),
            "membership_id": membership.id,
            "token_key": membership.token_key,
            "created_at": now,
            "expires_at": now + timedelta(days=1),
            "last_used_at": now,
        }
        for membership in members
        for _ in range(per_member)
    ]
    await copy_rows(session, "session", rows)


Request = Callable[[], Awaitable[httpx.Response]]


async def p50s_ms(requests: list[Request], samples: int) -> list[float]:
    """Median time of each request, taking turns (a, b, a, b, ...) so that whatever drifts during
    the run (caches, background writes) weighs on all of them alike."""
    timings: list[list[float]] = [[] for _ in requests]
    warm_up = samples // 10  # the first tenth of each is not counted
    for i in range(samples + warm_up):
        for n, request in enumerate(requests):
            started = time.perf_counter()
            response = await request()
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"unexpected {response.status_code}: {response.text[:300]}")
            if i >= warm_up:
                timings[n].append(elapsed * 1000)
    return [statistics.median(t) for t in timings]


async def run(args: argparse.Namespace, database_url: str, workdir: Path) -> dict[str, Any]:
    await asyncio.to_thread(upgrade, database_url)
    settings = Settings(
        database_url=database_url,
        var_dir=workdir,
        secret_key="bench-secret-key-" + "x" * 32,  # type: ignore[arg-type]
    )
    runtime = Runtime.from_settings(settings)
    database = runtime.database
    print(f"seeding {args.members:,} memberships ...", file=sys.stderr)
    async with database.session() as session:
        provisioned = await create_with_admin(
            session, runtime.secret_box, admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD, name="Bench"
        )
        organisation_id = provisioned.created.organisation.id
        await bulk_memberships(session, organisation_id, args.members)
        # Token reset changes the key once per user, so every timed reset gets a user of its own.
        readers = list(
            (
                await session.execute(
                    select(Membership)
                    .where(Membership.organisation_id == organisation_id, Membership.role == "nanoReadOnly")
                    .order_by(Membership.id)
                    .limit(2 * RESET_USERS)
                )
            ).scalars()
        )
        with_few, with_many = readers[:RESET_USERS], readers[RESET_USERS:]
        await add_sessions(session, with_few, 10)
        await add_sessions(session, with_many, 10_000)
        deep_after = (
            await session.execute(
                select(Membership.id)
                .where(Membership.organisation_id == organisation_id, Membership.role == "nanoUser")
                .order_by(Membership.id.desc())
                .offset(PAGE * deep_pages(args.members) - 1)
                .limit(1)
            )
        ).scalar_one()
        await session.commit()
    async with database.engine.connect() as connection:
        await connection.execute(text("ANALYZE"))
        await connection.commit()
        plan = "\n".join(
            (
                await connection.execute(
                    text("EXPLAIN SELECT id FROM account WHERE email LIKE 'member-0999%' ORDER BY email")
                )
            ).scalars()
        )

    app = create_app(settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            login = await client.post(
                "/api/user/validate", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            login.raise_for_status()
            headers = {"X-BINTU-TOKEN": login.json()["token"]}
            first_url = f"/api/user?role=nanoUser&limit={PAGE}"
            deep_url = f"{first_url}&cursor={encode_cursor(deep_after)}"
            for url in (first_url, deep_url):
                page = (await client.get(url, headers=headers)).json()
                assert len(page["items"]) == PAGE and page["nextCursor"], url
            print("measuring ...", file=sys.stderr)
            first, deep = await p50s_ms(
                [
                    lambda: client.get(first_url, headers=headers),
                    lambda: client.get(deep_url, headers=headers),
                ],
                args.samples,
            )
            [search] = await p50s_ms(
                [lambda: client.get("/api/user?q=member-0999&limit=50", headers=headers)], args.samples
            )

            def reset_each(users: list[Membership]) -> Request:
                """A token reset of the next user of ``users`` at every call."""
                ids = iter([user.id for user in users])
                return lambda: client.put(
                    "/api/user/tokenkey", json={"userId": str(next(ids))}, headers=headers
                )

            reset_few, reset_many = await p50s_ms(
                [reset_each(with_few), reset_each(with_many)], RESET_SAMPLES
            )
    finally:
        await runtime.aclose()

    return {
        "settings": {
            "members": args.members,
            "samples": args.samples,
            "page": PAGE,
            "deep_pages": deep_pages(args.members),
        },
        "users_list": {
            "first_page_p50_ms": round(first, 3),
            "deep_page_p50_ms": round(deep, 3),
            "ratio_deep_to_first": round(deep / first, 3),
            "goal": GOAL,
        },
        "email_prefix_search": {
            "p50_ms": round(search, 3),
            "uses_pattern_index": "ix_account_email_pattern" in plan,
        },
        "token_reset": {
            "sessions_10_p50_ms": round(reset_few, 3),
            "sessions_10000_p50_ms": round(reset_many, 3),
            "ratio_10000_to_10": round(reset_many / reset_few, 3),
            "goal": GOAL,
        },
    }


def report(results: dict[str, Any]) -> None:
    users, reset, search = results["users_list"], results["token_reset"], results["email_prefix_search"]
    members = results["settings"]["members"]
    rows = [
        ("GET /api/user?role=nanoUser&limit=50, first page", users["first_page_p50_ms"], ""),
        (
            f"  same, {results['settings']['deep_pages']:,} pages deep",
            users["deep_page_p50_ms"],
            f"deep/first {users['ratio_deep_to_first']:.2f} (goal <= {GOAL})",
        ),
        (
            "GET /api/user?q=<prefix> (email prefix)",
            search["p50_ms"],
            "pattern index used" if search["uses_pattern_index"] else "PATTERN INDEX NOT USED",
        ),
        ("PUT /api/user/tokenkey, 10 live sessions", reset["sessions_10_p50_ms"], ""),
        (
            "  same, 10,000 live sessions",
            reset["sessions_10000_p50_ms"],
            f"10,000/10 {reset['ratio_10000_to_10']:.2f} (goal <= {GOAL})",
        ),
    ]
    print(f"\nusers benchmark, PostgreSQL, {members:,} memberships; server time p50")
    print(f"{'request':<52}{'p50 ms':>9}  ratio")
    for name, value, note in rows:
        print(f"{name:<52}{value:>9.2f}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200, help="timed requests per measurement")
    args = parser.parse_args()
    if deep_pages(args.members) < 1:
        parser.error("--members must leave at least two pages of nanoUser members (7 in 10)")
    if not postgres_reachable():
        print("users benchmark: PostgreSQL not reachable; skipped", file=sys.stderr)
        return
    name = f"streamward_bench_users_{os.getpid()}"
    database_url = asyncpg_url(PG_ADMIN.rsplit("/", 1)[0] + "/" + name)
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        with tempfile.TemporaryDirectory() as workdir:
            results = asyncio.run(run(args, database_url, Path(workdir)))
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    report(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"users_{args.members}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
