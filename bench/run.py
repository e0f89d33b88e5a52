"""Benchmark: Streamward's hot paths against baselines measured in the same run.

Baselines: a bare Starlette hello app, a bare FastAPI hello, and the stack's limit for a request that
checks its credential in the database (bench/baselines.py: FastAPI + one prepared asyncpg query).
Measured on PostgreSQL, beside 10,000 other organisations and 100,000 other members with a live session
each: ``GET /api/organisation`` with a bintu token and with the API key, the users
list and the bintu stream list (50 each), logins per second against cores / (time of one argon2id
hash), the authenticated read's p99 during a login burst, and the read with 2 and 4 server processes.
For the logins also where their CPU goes (the server's event loop, its hashing threads, PostgreSQL),
and so the ratio they could reach with every core busy with nothing else.

Both servers run the same way (uvicorn, one worker, no access log) and are loaded by the same tool
(wrk) with the same connections and duration; what is reported is the ratio, which is what stays
comparable from one machine to another.

    make bench                    # SQLite and, when reachable, PostgreSQL
    make bench BENCH_ARGS="--duration 5 --connections 16"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# The process serving each base URL that server() started (one worker: the process that serves).
SERVED_BY: dict[str, int] = {}
PG_ADMIN = os.environ.get("STREAMWARD_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found; installing Debian's package", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed for the benchmark and could not be installed")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(target: str, env: dict[str, str], *, factory: bool = False, workers: int = 1):  # type: ignore[no-untyped-def]
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if factory:
        command.append("--factory")
    # The servers' own log lines would drown the report; their failures show as failed requests.
    process = subprocess.Popen(
        command, env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{target} did not start")
        SERVED_BY[f"http://127.0.0.1:{port}"] = process.pid
        yield f"http://127.0.0.1:{port}"
    finally:
        SERVED_BY.pop(f"http://127.0.0.1:{port}", None)
        process.terminate()
        process.wait(timeout=10)


def wrk(
    binary: str,
    url: str,
    headers: dict[str, str],
    args: argparse.Namespace,
    *,
    script: str | None = None,
    connections: int | None = None,
    cpu_of: int | None = None,
) -> dict[str, Any]:
    """``cpu_of``: a server's process id; the result then has ``cpu_ms_per_request`` (see cpu_ms)."""
    command = [binary, "-t2", f"-c{connections or args.connections}", f"-d{args.duration}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script:
        command += ["-s", script]
    # Warm-up run, discarded: connection pools, caches, JIT-free but lazy imports.
    subprocess.run([*command[:3], "-d2s", *command[4:], url], capture_output=True, check=True)
    before = cpu_ms(cpu_of) if cpu_of else None
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    measured: dict[str, Any] = _parse_wrk(url, output)
    if before is not None and cpu_of:
        after = cpu_ms(cpu_of)
        measured["cpu_ms_per_request"] = {
            part: round((after[part] - before[part]) / measured["requests"], 3) for part in after
        }
    return measured


def cpu_ms(pid: int) -> dict[str, float]:
    """CPU time used so far, in ms (Linux's /proc; elsewhere nothing): the server's event loop (its
    main thread), its other threads (during logins, the hashing pool), and every PostgreSQL process
    on this machine (the benchmarks are its only clients). wrk's own share is not counted."""
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")

    def used(stat_path: str) -> float:
        with open(stat_path) as stat:  # utime and stime: the 14th and 15th fields
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * tick_ms

    try:
        threads = {tid: used(f"/proc/{pid}/task/{tid}/stat") for tid in os.listdir(f"/proc/{pid}/task")}
    except OSError:
        return {}
    postgres = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() == "postgres":
                        postgres += used(f"/proc/{entry}/stat")
            except OSError:  # a process that ended meanwhile
                continue
    loop = threads.pop(str(pid), 0.0)
    return {"event_loop": loop, "other_threads": sum(threads.values()), "postgres": postgres}


def _parse_wrk(url: str, output: str) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    assert p99, output
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise RuntimeError(f"{url}: {non_2xx.group(1)} failed responses during the run")
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale, "requests": requests}


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def prepare_database(engine: str, workdir: Path) -> dict[str, str]:
    env = {"STREAMWARD_VAR_DIR": str(workdir), "STREAMWARD_SECRET_KEY": "bench-secret-key-" + "x" * 32}
    if engine == "postgres":
        name = f"streamward_bench_{os.getpid()}"
        subprocess.run(
            [
                "psql",
                PG_ADMIN,
                "-q",
                "-c",
                f'DROP DATABASE IF EXISTS "{name}"',
                "-c",
                f'CREATE DATABASE "{name}"',
            ],
            check=True,
            capture_output=True,
        )
        env["STREAMWARD_DATABASE_URL"] = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    return env


def drop_database(env: dict[str, str]) -> None:
    url = env.get("STREAMWARD_DATABASE_URL")
    if url:
        name = url.rsplit("/", 1)[1]
        subprocess.run(
            ["psql", PG_ADMIN, "-q", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=False
        )


def create_org_and_login(env: dict[str, str], base_url: str) -> tuple[str, str]:
    """The Bench organisation (with Transcoding) and its nanoAdmin: (bintu token, API key)."""
    password = BENCH_PASSWORD
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamward",
            "org",
            "create",
            "--name",
            "Bench",
            "--admin-email",
            "bench@example.com",
            "--admin-password",
            password,
            "--package",
            "transcoding",
        ],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    api_key = re.search(r"API key \(shown once\): (\S+)", created.stdout)
    assert api_key, created.stdout
    response = httpx.post(
        f"{base_url}/api/user/validate", json={"email": "bench@example.com", "password": password}, timeout=10
    )
    response.raise_for_status()
    return str(response.json()["token"]), api_key.group(1)


STREAM_LIST_SIZE = 50


def create_transcoded_streams(base_url: str, api_key: str) -> str:
    """50 streams with two transcoded renditions each; returns the path of the list read."""
    headers = {"X-BINTU-APIKEY": api_key}
    for _ in range(STREAM_LIST_SIZE):
        body = {"transcodes": [{"profile": "vtrans2-852x480x800x25"}, {"profile": "vtrans2-640x360x400x25"}]}
        response = httpx.post(f"{base_url}/api/stream", json=body, headers=headers, timeout=10)
        response.raise_for_status()
    return f"/api/stream?quantity={STREAM_LIST_SIZE}"


USERS_LIST_SIZE = 50


async def _add_members(database_url: str, count: int) -> None:
    """``count`` more nanoUsers in the Bench organisation, inserted directly (the list's subject,
    not its cost)."""
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import create_async_engine

    from streamward.db import new_id
    from streamward.orgs.models import Organisation
    from streamward.users.models import Account, Membership, new_token_key

    engine = create_async_engine(database_url.replace("postgresql://", "postgresql+asyncpg://", 1))
    async with engine.begin() as conn:
        org_id = (
            await conn.execute(select(Organisation.id).where(Organisation.name == "Bench"))
        ).scalar_one()
        accounts = [
            {"id": new_id(), "email": f"member{n}@example.com", "password_hash": "x"} for n in range(count)
        ]
        await conn.execute(Account.__table__.insert(), accounts)
        await conn.execute(
            Membership.__table__.insert(),
            [
                {
                    "id": new_id(),
                    "organisation_id": org_id,
                    "account_id": a["id"],
                    "role": "nanoUser",
                    "token_key": new_token_key(),
                }
                for a in accounts
            ],
        )
    await engine.dispose()


# Other tenants, so that the credential look-ups run against tables of a realistic size: PostgreSQL
# plans a statement by its tables' statistics, and on near-empty tables every plan looks alike.
_FILLER_SQL = """
INSERT INTO organisation (id, name, support_level, analytics_level, trial, packages, webhook_events,
  vod_public, api_key_hash, api_key_sealed, player_key, created_at, player_key_hash)
SELECT gen_random_uuid(), 'filler ' || g, 'basic', 'basic', false, '[]', '[]', false,
  md5('k' || g) || md5('kk' || g), 'x', md5('p' || g), now(), md5('ph' || g) || md5('q' || g)
FROM generate_series(1, 10000) g;
INSERT INTO account (id, email, password_hash, created_at)
SELECT gen_random_uuid(), 'filler' || g || '@example.com', 'x', now()
FROM generate_series(1, 100000) g;
INSERT INTO membership (id, organisation_id, account_id, role, token_key, created_at)
SELECT gen_random_uuid(), o.id, a.id, 'nanoUser', 'filler', now()
FROM (SELECT id, row_number() OVER () AS n FROM account WHERE email LIKE 'filler%') a
JOIN (SELECT id, row_number() OVER () AS n FROM organisation WHERE name LIKE 'filler %') o
  ON o.n = 1 + (a.n % 10000);
INSERT INTO session (id, token_hash, membership_id, token_key, created_at, expires_at, last_used_at)
SELECT gen_random_uuid(), md5('t' || m.id::text) || md5('u' || m.id::text), m.id, 'filler', now(),
  now() + interval '1 day', now()
FROM membership m WHERE m.token_key = 'filler';
ANALYZE;
"""


def _fill_other_organisations(database_url: str) -> None:
    """10,000 other organisations and 100,000 members of theirs, each member with a live session
    (SQL straight into the tables: their cost is not what is measured)."""
    subprocess.run(["psql", "-q", database_url, "-c", _FILLER_SQL], check=True, capture_output=True)


def _lua(path: Path, method: str, body: dict[str, Any]) -> str:
    path.write_text(
        f'wrk.method = "{method}"\n'
        f"wrk.body = [[{json.dumps(body)}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return str(path)


def _argon2_seconds() -> float:
    """One argon2id hash at Streamward's parameters, in this process (the median of a few)."""
    from streamward.passwords import _hasher

    times = []
    for _ in range(7):
        start = time.perf_counter()
        _hasher.hash("bench password")
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _hashing_alone_ratio(t_hash: float, count: int = 120) -> float:
    """Hashes per second with every core hashing and nothing else to do (one thread per core, as the
    server's hashing pool), as a share of cores / ``t_hash`` (the logins' own, so that the logins'
    ratio divided by this one is their rate against this rate): the ceiling of the logins' ratio
    that the hash itself sets on this machine, up to the noise of two timings. Below 1 when
    concurrent hashes slow each other down (two 19 MiB working sets share the last-level cache and
    the memory bus)."""
    from concurrent.futures import ThreadPoolExecutor

    from streamward.passwords import _hasher

    cores = os.cpu_count() or 1
    with ThreadPoolExecutor(cores) as pool:
        start = time.perf_counter()
        list(pool.map(lambda _: _hasher.hash("bench password"), range(count)))
        elapsed = time.perf_counter() - start
    return (count / elapsed) / (cores / t_hash)


def _login_burst(
    binary: str, url: str, token: str, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Logins at full tilt on their own (their rate against the hashing ceiling), then again with the
    authenticated read measured at the same time on other connections (the read's p99 while hashing:
    the hashing threads yield to the event loop, so logins slow down while reads saturate the CPU)."""
    import threading

    script = _lua(workdir / "login.lua", "POST", {"email": "bench@example.com", "password": BENCH_PASSWORD})
    # One hash timed right before the logins and one a second after them (the machine's speed
    # drifts in a run); the faster counts (below).
    hash_before = _argon2_seconds()
    out: dict[str, Any] = {
        "logins": wrk(
            binary, url + "/api/user/validate", {}, args, script=script, connections=8, cpu_of=SERVED_BY[url]
        )
    }
    # The server is still finishing the logins under way when wrk stops, and hashes timed right then
    # came out 10-16 % slow (18.0-18.9 ms, against 16.2-16.4 ms before the run and one second
    # after it): averaged in, they flattered the ratio (once past what hashing alone reached). Let
    # those logins end; and of the two timings take the faster, since whatever else runs on the
    # machine can only slow a hash down.
    time.sleep(1)
    out["argon2_seconds"] = min(hash_before, _argon2_seconds())
    out["hashing_alone_ratio"] = _hashing_alone_ratio(out["argon2_seconds"])

    def logins() -> None:
        out["logins_during_reads"] = wrk(
            binary, url + "/api/user/validate", {}, args, script=script, connections=8
        )

    thread = threading.Thread(target=logins)
    thread.start()
    time.sleep(3)  # inside the login run (after its 2 s warm-up)
    out["organisation_during_logins"] = wrk(
        binary, url + "/api/organisation", {"X-BINTU-TOKEN": token}, args, connections=8
    )
    thread.join()
    return out


def _measure_postgres(binary: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    measured: dict[str, Any] = {}
    env = prepare_database("postgres", workdir)
    # The bench logs in for its whole login run from one address: lift the per-address login limit.
    env["STREAMWARD_LOGIN_RATE_PER_IP"] = "100000000"
    try:
        subprocess.run(
            [sys.executable, "-m", "streamward", "db", "upgrade"],
            env={**os.environ, **env},
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        limit_env = {"BENCH_DATABASE_URL": env["STREAMWARD_DATABASE_URL"], "BENCH_POOL_SIZE": "20"}
        with server("streamward.app:app_from_environment", env, factory=True) as url:
            token, api_key = create_org_and_login(env, url)
            asyncio.run(_add_members(env["STREAMWARD_DATABASE_URL"], USERS_LIST_SIZE))
            _fill_other_organisations(env["STREAMWARD_DATABASE_URL"])
            # The limit right before and right after the reads compared with it (its server idles
            # meanwhile): this machine's speed drifts within a run, and a limit measured minutes
            # later had moved a ratio by half.
            with server("bench.baselines:stack_limit", limit_env) as limit_url:
                organisation = limit_url + "/api/organisation"
                before = wrk(binary, organisation, {"X-BINTU-TOKEN": token}, args)
                measured["organisation_token"] = wrk(
                    binary, url + "/api/organisation", {"X-BINTU-TOKEN": token}, args
                )
                measured["organisation_apikey"] = wrk(
                    binary, url + "/api/organisation", {"X-BINTU-APIKEY": api_key}, args
                )
                after = wrk(binary, organisation, {"X-BINTU-TOKEN": token}, args)
            measured["stack_limit"] = {
                "rps": (before["rps"] + after["rps"]) / 2,
                "p99_ms": (before["p99_ms"] + after["p99_ms"]) / 2,
                "rps_before_and_after": [before["rps"], after["rps"]],
            }
            measured["users_list_50"] = wrk(
                binary, url + f"/api/user?limit={USERS_LIST_SIZE}", {"X-BINTU-TOKEN": token}, args
            )
            path = create_transcoded_streams(url, api_key)
            measured["stream_list_50"] = wrk(binary, url + path, {"X-BINTU-APIKEY": api_key}, args)
            SERIALISATION.update(asyncio.run(_serialisation_alone(env, api_key)))
            burst = _login_burst(binary, url, token, workdir, args)
            measured["logins"] = burst["logins"]
            ARGON2_SECONDS.append(burst["argon2_seconds"])
            HASHING_ALONE.append(burst["hashing_alone_ratio"])
            measured["logins_during_reads"] = burst["logins_during_reads"]
            measured["organisation_during_logins"] = burst["organisation_during_logins"]
            measured["organisation_token_8c"] = wrk(
                binary, url + "/api/organisation", {"X-BINTU-TOKEN": token}, args, connections=8
            )
        for workers in (2, 4):
            with server("streamward.app:app_from_environment", env, factory=True, workers=workers) as url:
                time.sleep(2)  # every worker up
                measured[f"organisation_token_{workers}_processes"] = wrk(
                    binary, url + "/api/organisation", {"X-BINTU-TOKEN": token}, args
                )
    finally:
        drop_database(env)
    return measured


BENCH_PASSWORD = "bench-password-1234"

# One argon2id hash, the faster of two timed around the login run (filled by _measure_postgres).
ARGON2_SECONDS: list[float] = []

# Hashing on every core with nothing else running, as a share of cores / t_hash (filled likewise).
HASHING_ALONE: list[float] = []

# The two lists' answers built and serialised on their own (filled by _measure_postgres).
SERIALISATION: dict[str, float] = {}


async def _serialisation_alone(env: dict[str, str], api_key: str) -> dict[str, float]:
    """In-process CPU (ms, best of 5) of turning the fifty rows of each list, already read, into the
    bytes of its answer, as the routes build them when nothing is kept: the stream objects (playout
    URLs of every rendition) and their JSON; the users page's objects (UserSummary.wire) and their
    JSON. What is left of a list request is HTTP, authentication and the queries (the stream list
    keeps each stream's JSON: its later pages cost less than this)."""
    import timeit

    from pydantic_core import to_json

    from streamward.authn.mfa.overview import FACTOR_KIND_COLUMNS
    from streamward.authn.principals import principal_from_api_key
    from streamward.config import Settings
    from streamward.runtime import Runtime
    from streamward.streams import service as streams
    from streamward.streams.playout import Addresses, stream_object
    from streamward.users import service as users
    from streamward.users.schemas import UserSummary

    settings = Settings(
        database_url=env["STREAMWARD_DATABASE_URL"],
        var_dir=Path(env["STREAMWARD_VAR_DIR"]),
        secret_key=env["STREAMWARD_SECRET_KEY"],  # type: ignore[arg-type]
        run_worker=False,
    )
    runtime = Runtime.from_settings(settings)
    try:
        async with runtime.database.session(write=False) as session:
            principal = await principal_from_api_key(session, api_key)
            assert principal is not None
            views = (
                await streams.list_streams(
                    session,
                    principal,
                    tags=[],
                    state=None,
                    group_id=None,
                    limit=STREAM_LIST_SIZE,
                    cursor=None,
                )
            ).items
            rows = (
                await users.list_users(
                    session,
                    principal,
                    role=None,
                    email_starts_with=None,
                    limit=USERS_LIST_SIZE,
                    cursor=None,
                    also=FACTOR_KIND_COLUMNS,
                )
            ).items
    finally:
        await runtime.aclose()
    addresses = Addresses.of(settings)

    def stream_page() -> bytes:
        return to_json([stream_object(view, addresses, show_push_url=True) for view in views])

    def users_page() -> bytes:
        return to_json({"items": [UserSummary.wire(row) for row in rows], "nextCursor": None})

    def best_ms(build: Any) -> float:
        return min(timeit.repeat(build, number=200, repeat=5)) / 200 * 1000

    return {
        "stream_list_50_ms": round(best_ms(stream_page), 3),
        "stream_list_50_bytes": len(stream_page()),
        "users_list_50_ms": round(best_ms(users_page), 3),
        "users_list_50_bytes": len(users_page()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    binary = ensure_wrk()
    results: dict[str, Any] = {
        "settings": {"duration_s": args.duration, "connections": args.connections, "wrk_threads": 2},
        "cores": os.cpu_count(),
        "runs": {},
    }
    runs = results["runs"]
    with server("bench.hello:app", {}) as url:
        runs["hello"] = wrk(binary, url + "/", {}, args)
    with server("bench.baselines:fastapi_hello", {}) as url:
        runs["fastapi_hello"] = wrk(binary, url + "/", {}, args)

    for engine in args.engines.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            if engine == "postgres":
                if not postgres_reachable():
                    print("PostgreSQL not reachable: skipped", file=sys.stderr)
                    continue
                for name, run in _measure_postgres(binary, args, workdir).items():
                    runs[f"{name}_postgres"] = run
                continue
            env = prepare_database(engine, workdir)
            subprocess.run(
                [sys.executable, "-m", "streamward", "db", "upgrade"],
                env={**os.environ, **env},
                check=True,
                capture_output=True,
                cwd=ROOT,
            )
            with server("streamward.app:app_from_environment", env, factory=True) as url:
                token, _ = create_org_and_login(env, url)
                runs[f"organisation_token_{engine}"] = wrk(
                    binary, url + "/api/organisation", {"X-BINTU-TOKEN": token}, args
                )

    hello, limit = runs["hello"]["rps"], runs.get("stack_limit_postgres", {}).get("rps")
    for run in runs.values():
        run["ratio_to_hello"] = round(run["rps"] / hello, 3)
        if limit:
            run["ratio_to_stack_limit"] = round(run["rps"] / limit, 3)
    t_hash = ARGON2_SECONDS[0] if ARGON2_SECONDS else _argon2_seconds()
    cores = os.cpu_count() or 1
    results["argon2_seconds"] = round(t_hash, 4)
    if "logins_postgres" in runs:
        ceiling = cores / t_hash
        results["logins"] = {
            "per_second": runs["logins_postgres"]["rps"],
            "ceiling_cores_over_t_hash": round(ceiling, 1),
            "ratio": round(runs["logins_postgres"]["rps"] / ceiling, 3),
            "read_p99_idle_ms": runs["organisation_token_8c_postgres"]["p99_ms"],
            "read_p99_during_logins_ms": runs["organisation_during_logins_postgres"]["p99_ms"],
            "logins_per_second_during_reads": runs["logins_during_reads_postgres"]["rps"],
        }
        split = runs["logins_postgres"].get("cpu_ms_per_request")
        if split:
            # Where a login's CPU goes on this machine (the hash runs on the other threads), and the
            # ratio logins would reach if every core did nothing but that work: the limit the login
            # path's own work sets, whatever the scheduling.
            results["logins"]["cpu_ms_per_login"] = split
            results["logins"]["ratio_with_every_core_busy"] = round(t_hash * 1000 / sum(split.values()), 3)
        if HASHING_ALONE:
            # The hash's own ceiling: the logins cannot go faster than hashing alone (a ratio to it
            # over 1 is the noise of two measurements seconds apart).
            results["logins"]["hashing_alone_ratio"] = round(HASHING_ALONE[0], 3)
            results["logins"]["ratio_to_hashing_alone"] = round(
                results["logins"]["ratio"] / HASHING_ALONE[0], 3
            )
    if limit:
        results["stack_limit_p99_ms"] = runs["stack_limit_postgres"]["p99_ms"]
        results["stack_limit_rps_before_and_after"] = runs["stack_limit_postgres"]["rps_before_and_after"]
    if SERIALISATION:
        # Each list's serialisation as a share of its request (one worker: 1 / req/s of CPU each).
        for name in ("stream_list_50", "users_list_50"):
            SERIALISATION[f"{name}_share_of_request"] = round(
                SERIALISATION[f"{name}_ms"] * runs[f"{name}_postgres"]["rps"] / 1000, 3
            )
        results["serialisation_alone"] = SERIALISATION

    print(f"\n{'run':<40}{'req/s':>10}{'p99 ms':>10}{'/hello':>8}{'/limit':>8}")
    for name, run in runs.items():
        print(
            f"{name:<40}{run['rps']:>10.0f}{run['p99_ms']:>10.2f}{run['ratio_to_hello']:>8.3f}"
            f"{run.get('ratio_to_stack_limit', float('nan')):>8.3f}"
        )
    if "logins" in results:
        print("logins:", results["logins"], "argon2 s:", results["argon2_seconds"])
    if SERIALISATION:
        print("serialisation alone:", SERIALISATION)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "foundation.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
