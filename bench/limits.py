"""Benchmark: what shared rate limits (Redis) cost, measured against in-process limits in the same run.

Real ``streamward serve`` processes on one fresh PostgreSQL database, loaded with httpx at a fixed
concurrency for a fixed time, every budget set far above the load so that nothing is refused (the
limits are checked on every request, they just never say no):

* ``memory x1``: one process, in-process buckets (the single-process deployment);
* ``redis x1``:  one process, buckets in Redis (isolates the cost of the Redis round trips);
* ``redis x2``:  two processes behind a client that alternates between them, buckets in Redis.

Two routes: ``POST /api/user/validate`` (a successful login: two bucket checks, one argon2 verify,
which dominates on purpose, and a session insert) and ``POST /api/apikey`` (one bucket take and a
key lookup: where the limiter's own cost shows). Reports requests/s and p50/p99 latency; results go
to ``bench/results/limits.json``.

    .venv/bin/python bench/limits.py [--seconds 8] [--concurrency 16]

Needs PostgreSQL (STREAMWARD_BENCH_PG_URL) and Redis (STREAMWARD_BENCH_REDIS_URL); on a machine with
fewer than two free cores two processes cannot beat one on the CPU-bound login.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from streamward.limits import Limits, LocalLimits, RedisLimits  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PG_ADMIN = os.environ.get("STREAMWARD_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("STREAMWARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
EMAIL, PASSWORD = "bench@limits.example.com", "a long bench passphrase 42"
ADMIN = ["--admin-email", EMAIL, "--admin-password", PASSWORD]
NO_LIMIT = str(10**9)  # budgets nobody reaches: every request is checked, none refused


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def admin_sql(sql: str) -> None:
    engine = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(sql))
    await engine.dispose()


def base_environment(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMWARD_") and k != "DATABASE_URL"}
    return env | {
        "PYTHONPATH": str(ROOT / "src"),
        "STREAMWARD_DATABASE_URL": database_url,
        "STREAMWARD_SECRET_KEY": SECRET,
        "STREAMWARD_LOGIN_RATE_PER_IP": NO_LIMIT,
        "STREAMWARD_LOGIN_FAILURES_PER_ACCOUNT": NO_LIMIT,
        "STREAMWARD_RUN_WORKER": "false",
        "STREAMWARD_LOG_LEVEL": "warning",
    }


def start(env: dict[str, str], var_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamward", "serve"],
        env=env | {"STREAMWARD_PORT": str(port), "STREAMWARD_VAR_DIR": str(var_dir)},
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/login", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamward serve did not start") from None
            time.sleep(0.2)


async def load(
    urls: list[str], route: str, body: dict[str, str], seconds: float, concurrency: int
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def user(index: int) -> None:
            n = index
            while time.perf_counter() < stop_at:
                url = urls[n % len(urls)]  # alternate between the processes
                n += 1
                began = time.perf_counter()
                response = await client.post(url + route, json=body)
                latencies.append(time.perf_counter() - began)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(user(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "statuses": statuses,
    }


async def limiter_cost(limits: Limits, takes: int = 5000) -> float:
    """Microseconds per bucket take, one after the other: the limiter's own cost, no HTTP around it."""
    buckets = limits.buckets("bench", 10**9, 60)
    began = time.perf_counter()
    for i in range(takes):
        await buckets.take(f"198.51.100.{i % 200}")
    elapsed = time.perf_counter() - began
    await limits.aclose()
    return round(elapsed / takes * 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError):
        sys.exit(f"bench/limits.py: Redis does not answer at {REDIS_URL}")

    name = f"streamward_bench_limits_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    database_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    prefix = f"swbench:{uuid.uuid4().hex[:8]}:"
    results: dict[str, Any] = {
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "cores": os.cpu_count(),
    }
    results["take_us | memory"] = asyncio.run(limiter_cost(LocalLimits()))
    results["take_us | redis"] = asyncio.run(
        limiter_cost(RedisLimits(REDIS_URL, secret_key=SECRET.encode(), prefix=prefix))
    )
    print(f"one take: memory {results['take_us | memory']} us, redis {results['take_us | redis']} us")
    try:
        with tempfile.TemporaryDirectory() as workdir:
            env = base_environment(database_url)
            created = subprocess.run(
                [sys.executable, "-m", "streamward", "org", "create", "--name", "Bench", *ADMIN],
                env=env | {"STREAMWARD_VAR_DIR": workdir},
                capture_output=True,
                text=True,
                check=True,
            )
            api_key = next(word for word in created.stdout.split() if word.startswith("swk_"))
            shared = {"STREAMWARD_REDIS_URL": REDIS_URL, "STREAMWARD_REDIS_KEY_PREFIX": prefix}
            setups = [("memory x1", env, 1), ("redis x1", env | shared, 1), ("redis x2", env | shared, 2)]
            routes = [
                ("login", "/api/user/validate", {"email": EMAIL, "password": PASSWORD}),
                ("apikey check", "/api/apikey", {"apikey": api_key}),
            ]
            for label, setup_env, count in setups:
                processes = []
                try:
                    urls = []
                    for i in range(count):
                        process, url = start(setup_env, Path(workdir) / f"{label.replace(' ', '-')}-{i}")
                        processes.append(process)
                        urls.append(url)
                    for route_label, route, body in routes:
                        asyncio.run(load(urls, route, body, 1.0, args.concurrency))  # warm up
                        measured = asyncio.run(load(urls, route, body, args.seconds, args.concurrency))
                        results[f"{route_label} | {label}"] = measured
                        print(
                            f"{route_label:13} {label:10} {measured['rps']:8.1f} req/s  "
                            f"p50 {measured['p50_ms']:6.1f} ms  p99 {measured['p99_ms']:6.1f} ms  "
                            f"{measured['statuses']}",
                            flush=True,
                        )
                finally:
                    for process in processes:
                        process.terminate()
                    for process in processes:
                        process.wait(timeout=20)
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "limits.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {RESULTS / 'limits.json'}")


if __name__ == "__main__":
    main()
