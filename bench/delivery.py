"""Benchmark: webhook delivery throughput and latency, against a baseline measured in the same run.

* throughput: deliveries per second from the worker to a local receiver, as a ratio to a bare httpx
  POST loop (same concurrency, same receiver, same body size) — what signing, claiming, logging and
  retry bookkeeping cost on top of the HTTP itself. The machine is shared, so the baseline and each
  engine's worker take turns, ``--rounds`` times, and each ratio is taken within one round (the
  median of the rounds is reported);
* claims: this process's CPU per claim of ten due events, for all organisations and leaving one out;
* latency: time from an event's commit to its first attempt reaching the receiver, p50 and p99,
  (a) committed by another process (the worker finds it by polling) and (b) committed in-process
  (the post-commit hook the app installs wakes the worker at once). ``bench/delivery_latency.py``
  measures (b) through the app itself, from a media server's request.

    .venv/bin/python bench/delivery.py [--events 2000] [--rounds 3] [--engines sqlite,postgres]
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
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from streamward.config import Settings  # noqa: E402
from streamward.db import Database  # noqa: E402
from streamward.events.catalogue import EventType  # noqa: E402
from streamward.events.outbox import emit, wake_on_commit  # noqa: E402
from streamward.migrate import upgrade  # noqa: E402
from streamward.orgs.models import Organisation  # noqa: E402
from streamward.orgs.service import create_organisation  # noqa: E402
from streamward.runtime import Runtime  # noqa: E402
from streamward.webhooks import delivery  # noqa: E402
from streamward.webhooks.delivery import WEBHOOK_SECRET_PURPOSE  # noqa: E402
from streamward.worker import worker_for  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PG_ADMIN = os.environ.get("STREAMWARD_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# One organisation's deliveries run at most STREAMWARD_WORKER_PER_ORGANISATION_CONCURRENCY (default 4)
# at a time; the baseline gets the same number of concurrent requests.
CONCURRENCY = Settings().worker_per_organisation_concurrency
# A JSON management event the bench organisation subscribes to (its payload is not checked here).
BENCH_EVENT = EventType.ORGANISATION_UPDATED

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
        secret_key="bench-secret-key-" + "y" * 32,
        allow_private_webhook_targets=True,
    )
    await asyncio.to_thread(upgrade, settings.effective_database_url)
    runtime = Runtime.from_settings(settings)
    wake_on_commit(runtime.database, runtime.outbox_wakeup)  # as the app does
    async with runtime.database.session() as session:
        created = await create_organisation(session, runtime.secret_box, name="Bench")
        secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        await session.execute(
            update(Organisation)
            .where(Organisation.id == created.organisation.id)
            .values(
                webhook_url=receiver_url + "/hook",
                webhook_events=[BENCH_EVENT.value],
                webhook_secret_sealed=runtime.secret_box.seal(secret, purpose=WEBHOOK_SECRET_PURPOSE),
            )
        )
        await session.commit()
    return runtime, created.organisation.id, pg_name


async def emit_many(runtime: Runtime, organisation_id: Any, count: int) -> None:
    async with runtime.database.session() as session:
        for n in range(count):
            emit(session, BENCH_EVENT, {"n": n, "padding": "x" * 200}, organisation_id=organisation_id)
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
    """``wake``: committed in-process, the post-commit hook wakes the worker; else committed through
    an engine of its own without that hook, like another process: the worker finds it by polling."""
    committer = runtime.database if wake else Database(runtime.database.url)
    async with httpx.AsyncClient() as client:
        await client.post(receiver_url + "/reset")
        stop = asyncio.Event()
        worker = worker_for(runtime)
        task = asyncio.create_task(worker.run(stop))
        committed: dict[str, float] = {}
        try:
            for _ in range(samples):
                async with committer.session() as session:
                    event = emit(session, BENCH_EVENT, {"probe": True}, organisation_id=organisation_id)
                    await session.commit()
                committed[str(event.id)] = time.time()
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await task
            if committer is not runtime.database:
                await committer.dispose()
        arrivals = (await client.get(receiver_url + "/arrivals")).json()
    delays = sorted((arrivals[i] - t) * 1000 for i, t in committed.items() if i in arrivals)
    assert len(delays) == samples, f"only {len(delays)} of {samples} probes arrived"
    return {
        "p50_ms": round(statistics.median(delays), 1),
        "p99_ms": round(delays[int(0.99 * (len(delays) - 1))], 1),
    }


async def claim_cpu(runtime: Runtime, organisation_id: Any, claims: int = 200) -> dict[str, float]:
    """This process's CPU per claim of ten due events (the database's own work included on SQLite,
    which runs in this process), for all organisations and leaving one (another) out. The events
    claimed stay leased: this runs last."""
    await emit_many(runtime, organisation_id, 2 * claims * 10)
    measured = {}
    for label, exclude in (("all", []), ("one_left_out", [uuid.uuid4()])):
        started = time.process_time()
        for _ in range(claims):
            await delivery.claim(runtime.database, 10, lease_seconds=600, exclude=exclude)
        measured[f"cpu_ms_per_claim_{label}"] = round((time.process_time() - started) / claims * 1000, 3)
    return measured


def median(values: list[float]) -> float:
    return float(statistics.median(values))


async def run_engines(
    engines: list[str], receiver_url: str, body: bytes, args: argparse.Namespace
) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = {engine: await prepare(engine, Path(tmp), receiver_url) for engine in engines}
        try:
            base: list[float] = []
            rates: dict[str, list[float]] = {engine: [] for engine in engines}
            ratios: dict[str, list[float]] = {engine: [] for engine in engines}
            for _ in range(args.rounds):
                base.append(await baseline(receiver_url, args.events, body))
                for engine, (runtime, organisation_id, _) in prepared.items():
                    rates[engine].append(await throughput(runtime, organisation_id, args.events))
                    ratios[engine].append(rates[engine][-1] / base[-1])
            runs["bare_httpx"] = {
                "requests_per_s": round(median(base), 1),
                "rounds": [round(rate, 1) for rate in base],
            }
            for engine, (runtime, organisation_id, _) in prepared.items():
                polled = await latency(runtime, organisation_id, receiver_url, args.samples, wake=False)
                woken = await latency(runtime, organisation_id, receiver_url, args.samples, wake=True)
                runs[f"worker_{engine}"] = {
                    "deliveries_per_s": round(median(rates[engine]), 1),
                    "ratio_to_bare_httpx": round(median(ratios[engine]), 3),
                    "rounds": [round(rate, 1) for rate in rates[engine]],
                    "ratio_rounds": [round(ratio, 3) for ratio in ratios[engine]],
                    "latency_other_process_polled": polled,
                    "latency_in_process_woken": woken,
                    "poll_interval_s": Settings().worker_poll_interval_seconds,
                    **await claim_cpu(runtime, organisation_id),
                }
        finally:
            for runtime, _, pg_name in prepared.values():
                await runtime.aclose()
                if pg_name:
                    await asyncio.to_thread(
                        subprocess.run,
                        ["psql", PG_ADMIN, "-q", "-c", f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'],
                        check=False,
                    )
    return runs


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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    engines = []
    for engine in args.engines.split(","):
        if engine == "postgres" and not postgres_reachable():
            print("PostgreSQL not reachable: skipped", file=sys.stderr)
            continue
        engines.append(engine)
    results: dict[str, Any] = {
        "settings": {"events": args.events, "concurrency": CONCURRENCY, "rounds": args.rounds},
        "load_average": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        receiver, receiver_url = start_receiver(Path(tmp))
        try:
            body = json.dumps(
                {"id": "x", "type": BENCH_EVENT.value, "data": {"n": 1, "padding": "x" * 200}}
            ).encode()
            results["runs"] = await run_engines(engines, receiver_url, body, args)
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)
    results["load_average_after"] = os.getloadavg()

    before, after = results["load_average"][0], results["load_average_after"][0]
    print(f"\nload average {before:.2f} before, {after:.2f} after")
    print(f"{'run':<18}{'per s':>9}{'ratio':>8}{'polled p50/p99 ms':>20}{'woken p50/p99 ms':>19}")
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
    for name, run in results["runs"].items():
        if "cpu_ms_per_claim_all" in run:
            print(
                f"{name}: CPU per claim of 10, all organisations / one left out: "
                f"{run['cpu_ms_per_claim_all']:.2f} / {run['cpu_ms_per_claim_one_left_out']:.2f} ms"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "delivery.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
