"""What a second factor costs a login: ``POST /api/user/validate`` alone (an account without a second
factor) against ``POST /api/user/validate`` (401 ``mfa_required``) then ``POST /api/user/validate/mfa``
with an authenticator app's code (an account with one), in-process through httpx's ASGITransport.

Per login: CPU time of the process (the client's share included: httpx, and pyotp making the code)
and wall time, both the median of rounds that alternate between the two kinds; and the SQL statements
each request sends (a SQLAlchemy ``before_cursor_execute`` listener, and on PostgreSQL the statements
run on the raw look-up pool, where each login reads and writes; SQLite's ``BEGIN IMMEDIATE`` counted
apart). The issue's budget: the second step adds at most one database round trip to what a
plain login costs, and no second password hash.

Logins are sequential (one client): logins per second = 1 / wall time per login. The codes are
judged by a clock the bench moves one 30-second step per login (``authn.mfa.totp.clock``): otherwise
an app's code is accepted once per step and a run would wait out each step.

    .venv/bin/python bench/mfa_login.py                                  # SQLite
    .venv/bin/python bench/mfa_login.py --database-url postgresql+asyncpg://postgres@127.0.0.1/db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp
from sqlalchemy import event

from streamward.app import create_app
from streamward.authn.mfa import totp
from streamward.authn.mfa.models import TotpFactor
from streamward.config import Settings
from streamward.db import utcnow
from streamward.lookup_pool import LookupPool
from streamward.migrate import upgrade
from streamward.orgs.service import create_organisation
from streamward.passwords import hash_password
from streamward.runtime import Runtime
from streamward.users.models import Account, Membership, new_token_key

SECRET = "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
PASSWORD = "correct horse battery staple"
RESULTS = Path(__file__).parent / "results" / "mfa_login.json"


@dataclass
class Accounts:
    plain: str  # email of an account without a second factor
    with_app: str  # email of one with an authenticator app
    secret: str  # that app's secret


async def setup(runtime: Runtime) -> Accounts:
    """One organisation, two nanoUser members (no API key in the login answer, no reveal to audit)."""
    password_hash = await hash_password(PASSWORD)
    secret = totp.new_secret()
    async with runtime.database.session() as session:
        created = await create_organisation(session, runtime.secret_box, name="Bench")
        for email, enrolled in (("plain@example.com", False), ("app@example.com", True)):
            account = Account(email=email, password_hash=password_hash, mfa_enrolled=enrolled)
            session.add(account)
            await session.flush()
            session.add(
                Membership(
                    organisation_id=created.organisation.id,
                    account_id=account.id,
                    role="nanoUser",
                    token_key=new_token_key(),
                )
            )
            if enrolled:
                session.add(
                    TotpFactor(
                        account_id=account.id,
                        name="Bench",
                        secret_sealed=totp.sealed(runtime.secret_box, secret),
                        last_used_step=0,
                        confirmed_at=utcnow(),
                    )
                )
        await session.commit()
    return Accounts("plain@example.com", "app@example.com", secret)


class Statements:
    """SQL statements sent, per label of the request being made."""

    def __init__(self) -> None:
        self.label = "setup"
        self.counts: Counter[str] = Counter()
        self.begins: Counter[str] = Counter()

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.strip().upper().startswith("BEGIN"):
            self.begins[self.label] += 1
        else:
            self.counts[self.label] += 1


class Bench:
    def __init__(self, client: httpx.AsyncClient, accounts: Accounts, statements: Statements) -> None:
        self.client, self.accounts, self.statements = client, accounts, statements
        self.app = pyotp.TOTP(accounts.secret)
        self.now = time.time()
        self.requests: dict[str, list[tuple[float, float]]] = defaultdict(list)  # (CPU, wall) each
        totp.clock = lambda: self.now  # the bench's own clock: one step per login (module docstring)

    async def _post(self, label: str, path: str, body: dict[str, Any]) -> httpx.Response:
        self.statements.label = label
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return await self.client.post(path, json=body)
        finally:
            self.requests[label].append((time.process_time() - cpu, time.perf_counter() - wall))
            self.statements.label = "between"

    async def plain(self) -> None:
        body = {"email": self.accounts.plain, "password": PASSWORD}
        response = await self._post("validate (plain)", "/api/user/validate", body)
        assert response.status_code == 200, response.text

    async def with_app(self) -> None:
        body = {"email": self.accounts.with_app, "password": PASSWORD}
        first = await self._post("validate (401 mfa_required)", "/api/user/validate", body)
        assert first.status_code == 401, first.text
        self.now += totp.PERIOD_SECONDS
        answer = {"challenge": first.json()["error"]["details"]["challenge"], "code": self.app.at(self.now)}
        second = await self._post("validate/mfa", "/api/user/validate/mfa", answer)
        assert second.status_code == 200, second.text


def count_pool_statements(statements: Statements) -> None:
    """Count what runs on the look-up pool too (PostgreSQL: a login's read and its one-statement write)."""
    for name in ("fetch", "fetchrow"):
        original = getattr(LookupPool, name)

        async def counted(self: LookupPool, sql: str, *args: Any, _original: Any = original) -> Any:
            statements(None, None, sql)
            return await _original(self, sql, *args)

        setattr(LookupPool, name, counted)


async def round_of(step: Any, logins: int) -> tuple[float, float]:
    """(CPU, wall) seconds per login."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(logins):
        await step()
    return (time.process_time() - cpu) / logins, (time.perf_counter() - wall) / logins


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--logins", type=int, default=20, help="logins per round and kind")
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="streamward-mfa-bench-"))
    url = args.database_url or f"sqlite+aiosqlite:///{var / 'bench.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = Settings(
        database_url=url,
        var_dir=var,
        secret_key=SECRET,  # type: ignore[arg-type]
        run_worker=False,
        # One client makes every login: the throttles would be the bottleneck, not the logins.
        login_rate_per_ip=1_000_000,
        login_failures_per_account=1_000_000,
    )
    runtime = Runtime.from_settings(settings)
    accounts = await setup(runtime)
    statements = Statements()
    engine = runtime.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", statements)
    count_pool_statements(statements)
    app = create_app(settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        bench = Bench(client, accounts, statements)
        for _ in range(3):  # warm-up: first-request costs, pools, caches
            await bench.plain()
            await bench.with_app()
        statements.counts.clear()
        statements.begins.clear()
        bench.requests.clear()
        times: dict[str, list[tuple[float, float]]] = {"plain": [], "with_app": []}
        for turn in range(args.rounds):
            kinds = [("plain", bench.plain), ("with_app", bench.with_app)]
            for name, step in kinds if turn % 2 == 0 else kinds[::-1]:  # neither always first
                times[name].append(await round_of(step, args.logins))
    event.remove(engine, "before_cursor_execute", statements)
    await runtime.aclose()

    logins = args.rounds * args.logins
    per_request = {label: count / logins for label, count in statements.counts.items() if label != "between"}
    begins = {label: count / logins for label, count in statements.begins.items() if label != "between"}
    result: dict[str, Any] = {
        "database": url.split(":", 1)[0],
        "rounds": args.rounds,
        "logins_per_round": args.logins,
        "statements_per_request": per_request,
        "begin_statements_per_request": begins,
        "second_step_minus_plain_statements": per_request["validate/mfa"] - per_request["validate (plain)"],
    }
    for name, values in times.items():
        cpu = statistics.median(v[0] for v in values)
        wall = statistics.median(v[1] for v in values)
        result[name] = {
            "cpu_ms_per_login": cpu * 1e3,
            "wall_ms_per_login": wall * 1e3,
            "logins_per_s": 1 / wall,
        }
    result["per_request_median_ms"] = {
        label: {
            "cpu": statistics.median(v[0] for v in values) * 1e3,
            "wall": statistics.median(v[1] for v in values) * 1e3,
        }
        for label, values in bench.requests.items()
    }
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
