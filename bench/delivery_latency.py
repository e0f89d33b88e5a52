"""Benchmark: first-attempt latency in-process, from the commit of the request that emitted an event
to the receiver getting the event's first attempt (p50, p90, p99, max).

The app runs in this process with its own delivery worker, as ``streamward serve`` runs it
(``STREAMWARD_RUN_WORKER=true``); a media server posts ``update_publish`` reports to ``/api/ingest``,
each committing one ``media.update_publish`` event that the post-commit hook hands to the worker at
once. The commit is timed by a post-commit hook of its own, the arrival by the receiver (another
process, on loopback; both read the same wall clock).

Two runs per engine: ``idle`` (one report at a time, ``--interval`` apart, nothing else to deliver)
and ``busy`` (the same, while the worker delivers a backlog of ``--backlog`` events of another
organisation to the same receiver).

    .venv/bin/python bench/delivery_latency.py [--samples 200] [--engines sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from delivery import PG_ADMIN, postgres_reachable, start_receiver  # noqa: E402
from streamward.app import create_app  # noqa: E402
from streamward.config import Settings  # noqa: E402
from streamward.events.catalogue import EventType  # noqa: E402
from streamward.events.models import OutboxEvent  # noqa: E402
from streamward.events.outbox import emit, queued_events  # noqa: E402
from streamward.migrate import upgrade  # noqa: E402
from streamward.orgs.models import Organisation  # noqa: E402
from streamward.orgs.service import create_organisation  # noqa: E402
from streamward.runtime import Runtime  # noqa: E402
from streamward.webhooks.delivery import WEBHOOK_SECRET_PURPOSE  # noqa: E402

RESULTS = ROOT / "bench" / "results"
INGEST_SECRET = "bench-ingest-secret-0123456789abcdef"


async def database_url(engine: str, workdir: Path) -> tuple[str, str | None]:
    if engine != "postgres":
        return f"sqlite:///{workdir / 'latency.db'}", None
    name = f"streamward_bench_latency_{os.getpid()}"
    await asyncio.to_thread(
        subprocess.run,
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
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name, name


async def organisation_with_webhook(runtime: Runtime, name: str, url: str, events: list[str]) -> Any:
    async with runtime.database.session() as session:
        created = await create_organisation(session, runtime.secret_box, name=name)
        secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        await session.execute(
            update(Organisation)
            .where(Organisation.id == created.organisation.id)
            .values(
                webhook_url=url,
                webhook_events=events,
                webhook_secret_sealed=runtime.secret_box.seal(secret, purpose=WEBHOOK_SECRET_PURPOSE),
            )
        )
        await session.commit()
    return created


def percentile(ordered: list[float], fraction: float) -> float:
    return round(ordered[int(fraction * (len(ordered) - 1))], 1)


async def probe(
    app: Any, runtime: Runtime, api_key: str, receiver_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    """``--samples`` reports, one at a time; the latency of each one's event."""
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client,
        httpx.AsyncClient() as receiver,
    ):
        await receiver.post(receiver_url + "/reset")
        created = await client.post(
            "/api/stream", json={"title": "latency probe"}, headers={"X-BINTU-APIKEY": api_key}
        )
        assert created.status_code == 200, created.text
        stream_name = created.json()["name"]
        commits: list[float] = []
        timing = True

        def note_commit(info: dict[Any, Any]) -> None:
            if timing and queued_events(info):
                commits.append(time.time())

        # First in line: the app's wake-up hook, installed by create_app, clears the outbox mark.
        runtime.database.commit_hooks.insert(0, note_commit)
        report = {"call": "update_publish", "name": stream_name, "app": "live", "addr": "198.51.100.20"}
        for n in range(args.samples):
            answered = await client.post(
                "/api/ingest/update_publish",
                data=report | {"time": str(n)},
                headers={"X-Ingest-Secret": INGEST_SECRET},
            )
            assert answered.status_code == 200, answered.text
            await asyncio.sleep(args.interval)
        timing = False
        await asyncio.sleep(1.0)  # the last attempts arrive
        runtime.database.commit_hooks.remove(note_commit)
        arrivals: dict[str, float] = (await receiver.get(receiver_url + "/arrivals")).json()
    async with runtime.database.session(write=False) as session:
        ids = (
            await session.execute(
                select(OutboxEvent.id)
                .where(OutboxEvent.type == "media.update_publish")
                .order_by(OutboxEvent.id)  # UUIDv7: creation order
            )
        ).scalars()
        emitted = [str(event_id) for event_id in ids][-args.samples :]
    assert len(commits) == len(emitted) == args.samples, (len(commits), len(emitted))
    delays = sorted((arrivals[i] - t) * 1000 for i, t in zip(emitted, commits, strict=True) if i in arrivals)
    assert len(delays) == args.samples, f"only {len(delays)} of {args.samples} first attempts arrived"
    return {
        "p50_ms": round(statistics.median(delays), 1),
        "p90_ms": percentile(delays, 0.90),
        "p99_ms": percentile(delays, 0.99),
        "max_ms": round(delays[-1], 1),
    }


async def backlog(runtime: Runtime, organisation_id: Any, count: int) -> None:
    async with runtime.database.session() as session:
        for n in range(count):
            fields = {"call": "update_publish", "name": "backlog", "time": str(n), "padding": "x" * 200}
            emit(session, EventType.MEDIA_UPDATE_PUBLISH, {"fields": fields}, organisation_id=organisation_id)
        await session.commit()


async def run_engine(engine: str, receiver_url: str, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url, pg_name = await database_url(engine, Path(tmp))
        settings = Settings(
            database_url=url,
            var_dir=Path(tmp),
            secret_key="bench-secret-key-" + "z" * 32,
            allow_private_webhook_targets=True,
            ingest_secret=INGEST_SECRET,
            run_worker=True,
            housekeeping_interval_seconds=0,
        )
        await asyncio.to_thread(upgrade, settings.effective_database_url)
        runtime = Runtime.from_settings(settings)
        try:
            probed = await organisation_with_webhook(runtime, "Probe", receiver_url + "/hook", [])
            busy = await organisation_with_webhook(runtime, "Busy", receiver_url + "/hook", [])
            app = create_app(settings, runtime=runtime)
            async with app.router.lifespan_context(app):  # starts the in-process worker
                results["idle"] = await probe(app, runtime, probed.api_key, receiver_url, args)
                await backlog(runtime, busy.organisation.id, args.backlog)
                started = time.perf_counter()
                busy_run = results["busy"] = await probe(app, runtime, probed.api_key, receiver_url, args)
                seconds = time.perf_counter() - started
                delivered = args.backlog - await pending(runtime)
                # How hard the worker was working meanwhile: what a busy run's latency is paid against.
                busy_run["backlog_delivered_per_s"] = round(delivered / seconds, 1)
        finally:
            if pg_name:
                await asyncio.to_thread(
                    subprocess.run,
                    ["psql", PG_ADMIN, "-q", "-c", f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'],
                    check=False,
                )
    return results


async def pending(runtime: Runtime) -> int:
    async with runtime.database.session(write=False) as session:
        rows = await session.execute(select(OutboxEvent.id).where(OutboxEvent.status == "pending"))
        return len(rows.all())


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between two reports")
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "settings": {k: v for k, v in vars(args).items() if k != "engines"},
        "load_average": os.getloadavg(),
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        receiver, receiver_url = start_receiver(Path(tmp))
        try:
            for engine in args.engines.split(","):
                if engine == "postgres" and not postgres_reachable():
                    print("PostgreSQL not reachable: skipped", file=sys.stderr)
                    continue
                results["runs"][engine] = await run_engine(engine, receiver_url, args)
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)
    results["load_average_after"] = os.getloadavg()

    before, after = results["load_average"][0], results["load_average_after"][0]
    print(f"\nload average {before:.2f} before, {after:.2f} after")
    print("first attempt after the emitting request's commit, in-process (ms)")
    print(f"{'run':<18}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}   backlog delivered meanwhile")
    for engine, runs in results["runs"].items():
        for mode, run in runs.items():
            backlog = f"{run['backlog_delivered_per_s']:>8.0f}/s" if "backlog_delivered_per_s" in run else ""
            print(
                f"{engine + ' ' + mode:<18}{run['p50_ms']:>8.1f}{run['p90_ms']:>8.1f}"
                f"{run['p99_ms']:>8.1f}{run['max_ms']:>8.1f}   {backlog}"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "delivery_latency.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
