"""Benchmark: webhook delivery throughput and latency, against a baseline measured in the same run.

* throughput: deliveries per second from the worker to a local receiver, as a ratio to a bare httpx
  POST loop (same concurrency, same receiver, same body size) — what signing, claiming, logging and
  retry bookkeeping cost on top of the HTTP itself;
* latency: time from an event's commit to its first attempt reaching the receiver, p50 and p99,
  (a) committed by another process (the worker finds it by polling) and (b) committed in-process by
  a request (the worker is woken at once).

    .venv/bin/python bench/delivery.py [--events 2000] [--engines sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from streamward.config import Settings  # noqa: E402
from streamward.events.outbox import emit  # noqa: E402
from streamward.migrate import upgrade  # noqa: E402
from streamward.orgs.models import Organisation  # noqa: E402
from streamward.orgs.service import create_organisation  # noqa: E402
from streamward.runtime import Runtime  # noqa: E402
from streamward.webhooks.delivery import WEBHOOK_SECRET_PURPOSE  # noqa: E402
from streamward.worker import worker_for  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PG_ADMIN = os.environ.get("STREAMWARD_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# One organisation's deliveries run at most STREAMWARD_WORKER_PER_ORGANISATION_CONCURRENCY (default 4)
# at a time; the baseline gets the same number of concurrent requests.
CONCURRENCY = Settings().worker_per_organisation_concurrency

RECEIVER = r"""
import json, sys, time
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
arrivals = {}
async def hook(request):
    await request.body()
    arrivals.setdefault(request.headers.get("webhook-id", ""), time.time())
    return Response(status_code=200)
async def seen(request):
    return JSONResponse(arrivals)
async def reset(request):
    arrivals.clear()
    return Response(status_code=204)
app = Starlette(routes=[Route("/hook", hook, methods=["POST"]), Route("/arrivals", seen),
                        Route("/reset", reset, methods=["POST"])])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_receiver(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    (workdir / "bench_receiver.py").write_text(RECEIVER)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench_receiver:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=workdir,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("receiver did not start")


async def baseline(url: str, count: int, body: bytes) -> float:
    """A bare httpx POST loop: the most the HTTP part alone can do here."""
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(count):
            queue.put_nowait(n)

        async def sender() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                response = await client.post(
                    url + "/hook",
                    content=body,
                    headers={"content-type": "application/json", "webhook-id": f"b{n}"},
                )
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))
        return count / (time.perf_counter() - started)


async def prepare(engine: str, workdir: Path, receiver_url: str) -> tuple[Runtime, Any, str | None]:
    pg_name = None
    if engine == "postgres":
        pg_name = f"streamward_bench_delivery_{os.getpid()}"
        await asyncio.to_thread(
            subprocess.run,
            [
                "psql",
                PG_ADMIN,
                "-q",
                "-c",
                f'DROP DATABASE IF EXISTS "{pg_name}"',
                "-c",
                f'CREATE DATABASE "{pg_name}"',
            ],
            check=True,
            capture_output=True,
        )
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + pg_name
    else:
        url = f"sqlite:///{workdir / 'bench.db'}"
    settings = Settings(
        database_url=url,
        var_dir=workdir,
        secret_key="bench-secret-key-" + "y" * 32,  # type: ignore[arg-type]
        allow_private_webhook_targets=True,
    )
    await asyncio.to_thread(upgrade, settings.effective_database_url)
    runtime = Runtime.from_settings(settings)
    async with runtime.database.session() as session:
        created = await create_organisation(session, runtime.secret_box, name="Bench")
        secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        await session.execute(
            update(Organisation)
            .where(Organisation.id == created.organisation.id)
            .values(
                webhook_url=receiver_url + "/hook",
                webhook_events=["bench.event"],
                webhook_secret_sealed=runtime.secret_box.seal(secret, purpose=WEBHOOK_SECRET_PURPOSE),
            )
        )
        await session.commit()
    return runtime, created.organisation.id, pg_name


async def emit_many(runtime: Runtime, organisation_id: Any, count: int) -> None:
    async with runtime.database.session() as session:
        for n in range(count):
            emit(session, "bench.event", {"n": n, "padding": "x" * 200}, organisation_id=organisation_id)
        await session.commit()


async def throughput(runtime: Runtime, organisation_id: Any, count: int) -> float:
    await emit_many(runtime, organisation_id, count)
    worker = worker_for(runtime)
    started = time.perf_counter()
    delivered = await worker.drain()
    elapsed = time.perf_counter() - started
    assert delivered == count, (delivered, count)
    return count / elapsed


async def latency(
    runtime: Runtime, organisation_id: Any, receiver_url: str, samples: int, *, wake: bool
) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        await client.post(receiver_url + "/reset")
        stop = asyncio.Event()
        worker = worker_for(runtime)
        task = asyncio.create_task(worker.run(stop))
        committed: dict[str, float] = {}
        try:
            for _ in range(samples):
                async with runtime.database.session() as session:
                    event = emit(session, "bench.event", {"probe": True}, organisation_id=organisation_id)
                    await session.commit()
                committed[str(event.id)] = time.time()
                if wake:
                    runtime.outbox_wakeup.set()
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await task
        arrivals = (await client.get(receiver_url + "/arrivals")).json()
    delays = sorted((arrivals[i] - t) * 1000 for i, t in committed.items() if i in arrivals)
    assert len(delays) == samples, f"only {len(delays)} of {samples} probes arrived"
    return {
        "p50_ms": round(statistics.median(delays), 1),
        "p99_ms": round(delays[int(0.99 * (len(delays) - 1))], 1),
    }


async def run_engine(
    engine: str, receiver_url: str, args: argparse.Namespace, base_rps: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        runtime, organisation_id, pg_name = await prepare(engine, Path(tmp), receiver_url)
        try:
            rps = await throughput(runtime, organisation_id, args.events)
            polled = await latency(runtime, organisation_id, receiver_url, args.samples, wake=False)
            woken = await latency(runtime, organisation_id, receiver_url, args.samples, wake=True)
        finally:
            await runtime.aclose()
            if pg_name:
                await asyncio.to_thread(
                    subprocess.run,
                    ["psql", PG_ADMIN, "-q", "-c", f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'],
                    check=False,
                )
    return {
        "deliveries_per_s": round(rps, 1),
        "ratio_to_bare_httpx": round(rps / base_rps, 3),
        "latency_other_process_polled": polled,
        "latency_in_process_woken": woken,
        "poll_interval_s": Settings().worker_poll_interval_seconds,
    }


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    results: dict[str, Any] = {"settings": {"events": args.events, "concurrency": CONCURRENCY}, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        receiver, receiver_url = start_receiver(Path(tmp))
        try:
            body = json.dumps(
                {"id": "x", "type": "bench.event", "data": {"n": 1, "padding": "x" * 200}}
            ).encode()
            base_rps = await baseline(receiver_url, args.events, body)
            results["runs"]["bare_httpx"] = {"requests_per_s": round(base_rps, 1)}
            for engine in args.engines.split(","):
                if engine == "postgres" and not postgres_reachable():
                    print("PostgreSQL not reachable: skipped", file=sys.stderr)
                    continue
                results["runs"][f"worker_{engine}"] = await run_engine(engine, receiver_url, args, base_rps)
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)

    print(f"\n{'run':<18}{'per s':>9}{'ratio':>8}{'polled p50/p99 ms':>20}{'woken p50/p99 ms':>19}")
    print(f"{'bare httpx':<18}{results['runs']['bare_httpx']['requests_per_s']:>9.0f}{1.0:>8.2f}")
    for name, run in results["runs"].items():
        if name == "bare_httpx":
            continue
        polled, woken = run["latency_other_process_polled"], run["latency_in_process_woken"]
        print(
            f"{name:<18}{run['deliveries_per_s']:>9.0f}{run['ratio_to_bare_httpx']:>8.2f}"
            f"{polled['p50_ms']:>11.1f} / {polled['p99_ms']:<6.1f}"
            f"{woken['p50_ms']:>10.1f} / {woken['p99_ms']:<6.1f}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "delivery.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
