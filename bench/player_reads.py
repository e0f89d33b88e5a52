"""Benchmark: what a live event's audience reads, against the bare frameworks, in one run.

Every viewer's player reads its stream (or stream group) without credentials on start, SDK pages
list streams with the player key, and every playback-token check is a ``POST /api/v1/splay/verify``.
Measured with wrk beside a bare Starlette hello app and a bare FastAPI hello app, all served the same
way (uvicorn, one worker, no uvicorn access log; Streamward logs as it does by default, without its
delivery worker); Streamward on PostgreSQL. Loaded: the anonymous player profile of a stream and of
its group, the player-key listing, each again with ``If-None-Match`` (304s), and the verify of a
revocable playback token presented for a stream (the most a verify reads): one token presented again
and again (an audience whose page embeds one token: its signature is checked once per process), and
a token the server has not met each time (viewers with a token each; more tokens than the server
keeps checked signatures of, sent in turn).

Reported are ratios (goals: player reads >= 0.35 of the bare hello, verify >= 0.5 of the bare FastAPI
hello). The baselines are loaded at the start and again at the end, and the higher reading counts:
on a shared machine the ratios then err low, never high. Also measured in this process: one Ed25519
signature check (cryptography, and PyJWT's decode), the verify route's per-request time in units of
it (under wrk: 1 / req/s, one worker being one core; in-process: CPU per request), and where the time
of a verify and of a cached player read goes inside the application (``in_process_breakdown``).

    .venv/bin/python bench/player_reads.py [--duration 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# bench/run.py (the foundation benchmark) knows how to serve, load and set up a database.
from run import (
    RESULTS,
    ROOT,
    drop_database,
    ensure_wrk,
    postgres_reachable,
    prepare_database,
    server,
    wrk,
)
from streamward.app import create_app
from streamward.config import Settings
from streamward.playback import service as playback
from streamward.playback.keys import VerifyingKey
from streamward.playback.service import PresentedToken
from streamward.runtime import Runtime

PLAYER_GOAL = 0.35  # of the bare Starlette hello
VERIFY_GOAL = 0.5  # of the bare FastAPI hello
ADMIN_EMAIL, ADMIN_PASSWORD = "player-bench@example.com", "player bench passphrase"
GROUP = "main-stage"
TAG = "bench"
TRANSCODES = [{"profile": "vtrans2-852x480x800x25"}, {"profile": "vtrans2-640x360x400x25"}]
STREAMS = 3  # one group, three streams of three renditions each


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def create_organisation(env: dict[str, str]) -> str:
    """An organisation with Secure Playback (players need no token: its default) and Transcoding;
    returns its API key."""
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamward",
            "org",
            "create",
            "--name",
            "Player bench",
            "--admin-email",
            ADMIN_EMAIL,
            "--admin-password",
            ADMIN_PASSWORD,
            "--package",
            "transcoding",
            "--package",
            "secure_playback",
        ],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    for line in created.stdout.splitlines():
        if line.startswith("API key (shown once): "):
            return line.rsplit(" ", 1)[1]
    raise RuntimeError(created.stdout)


def set_up(base_url: str, api_key: str) -> dict[str, Any]:
    """Streams of one group with the bench tag, the player key, and a revocable playback token
    (revocable: its check reads the revocation list, the most a verify does)."""
    headers = {"X-BINTU-APIKEY": api_key}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        streams = []
        for _ in range(STREAMS):
            body = {"tags": [TAG], "groupId": GROUP, "transcodes": TRANSCODES}
            response = client.post("/api/stream", json=body)
            response.raise_for_status()
            streams.append(response.json())
        player_key = client.get("/api/organisation/playerkey").json()["playerKey"]
        issued = client.post("/api/v1/splay", json={"streams": [streams[0]["name"]], "revocable": True})
        issued.raise_for_status()
        token = issued.json()["data"]["token"]
    return {"stream": streams[0], "player_key": player_key, "token": token}


def etag_of(base_url: str, path: str, headers: dict[str, str]) -> str | None:
    response = httpx.get(base_url + path, headers=headers, timeout=10)
    response.raise_for_status()
    return response.headers.get("etag")


def verify_script(directory: Path, token: str, stream_name: str) -> Path:
    """wrk sends GETs; a Lua script makes it POST the verify body."""
    body = json.dumps({"token": token, "stream": stream_name})
    script = directory / "verify.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return script


# Tokens for the verify of a token the server meets for the first time: more than it keeps checked
# signatures of (playback.service.MAX_VERIFIED_TOKENS), sent in turn by one wrk thread, so that each
# one's signature was forgotten before it comes again.
FRESH_TOKENS = playback.MAX_VERIFIED_TOKENS + 1000


def fresh_tokens(base_url: str, api_key: str, stream_name: str) -> list[str]:
    headers = {"X-BINTU-APIKEY": api_key}
    body = {"streams": [stream_name], "revocable": True}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        tokens = []
        for _ in range(FRESH_TOKENS):
            issued = client.post("/api/v1/splay", json=body)
            issued.raise_for_status()
            tokens.append(issued.json()["data"]["token"])
    return tokens


def fresh_verify_script(directory: Path, tokens: list[str], stream_name: str) -> Path:
    """Each request the next token's verify, in turn."""
    bodies = ",\n".join(json.dumps(json.dumps({"token": token, "stream": stream_name})) for token in tokens)
    script = directory / "verify_fresh.lua"
    script.write_text(
        f"local bodies = {{\n{bodies}\n}}\n"
        "local n = 0\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        "request = function()\n"
        "  n = n % #bodies + 1\n"
        "  return wrk.format(nil, nil, nil, bodies[n])\n"
        "end\n"
    )
    return script


def wrk_post(
    binary: str, url: str, script: Path, args: argparse.Namespace, *, threads: int = 2
) -> dict[str, float]:
    """As run.wrk (same warm-up, same parsing), with the request made by a Lua script."""
    command = [
        binary,
        f"-t{threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--latency",
        "-s",
        str(script),
    ]
    subprocess.run([*command[:3], "-d2s", *command[4:], url], capture_output=True, check=True)
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    if rps is None or p99 is None:
        raise RuntimeError(output)
    if "Non-2xx or 3xx responses" in output:
        raise RuntimeError(f"{url}: failed responses during the run\n{output}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {"rps": float(rps.group(1)), "p99_ms": float(p99.group(1)) * scale}


def in_process_verify_times(samples: int = 2000) -> dict[str, float]:
    """One Ed25519 signature check, bare (cryptography); a playback token read and checked as
    Streamward's verify does it (parse, signature, claims; no database); and as PyJWT decodes it
    (which Streamward used before)."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    now = int(time.time())
    organisation_id = uuid.uuid4()
    claims = {
        "iss": "x",
        "aud": "playback",
        "jti": "j",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "typ": "playback",
        "org": str(organisation_id),
    }
    token = jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": "k"})
    signing_input, _, signature = token.rpartition(".")
    raw_signature = jwt.utils.base64url_decode(signature)
    message = signing_input.encode()
    key = VerifyingKey("k", organisation_id, public)

    def bare() -> None:
        public.verify(raw_signature, message)

    def streamward() -> None:
        PresentedToken.parse(token).claims(key, issuer="x", now=now)

    def pyjwt() -> None:
        jwt.decode(token, public, algorithms=["EdDSA"], audience="playback", options={"verify_exp": False})

    def best_ms(call: Any) -> float:
        return min(timeit.repeat(call, number=samples, repeat=5)) / samples * 1000

    return {
        "ed25519_verify_ms": best_ms(bare),
        "token_check_ms": best_ms(streamward),
        "pyjwt_decode_ms": best_ms(pyjwt),
    }


async def _asgi(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """One request straight into the ASGI app (no socket, no HTTP parsing); its status."""
    route, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": route,
        "raw_path": route.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def _routes_first(app: Any, routers: tuple[Any, ...]) -> bool:
    """Move the routers of these paths to the front of the app's route table (FastAPI matches
    routes in order, one by one): what the position of a route in app.py costs. False when this
    FastAPI's route table does not look as expected."""
    routes = app.router.routes
    front = [route for route in routes if getattr(route, "original_router", None) in routers]
    if len(front) != len(routers) or not hasattr(app.router, "_mark_routes_changed"):
        return False
    routes[:] = front + [route for route in routes if route not in front]
    app.router._mark_routes_changed()
    return True


async def _cpu_per_call(call: Any, samples: int) -> float:
    """Milliseconds of this process's CPU per call (process time: other processes on a busy
    machine do not count; the database server's share of a query does not either)."""
    for _ in range(samples // 10):
        await call()
    started = time.process_time()
    for _ in range(samples):
        await call()
    return (time.process_time() - started) / samples * 1000


async def _breakdown(env: dict[str, str], made: dict[str, Any], samples: int) -> dict[str, Any]:
    from streamward.api.playback import splay_router
    from streamward.api.streams import stream_routes

    settings = Settings(
        database_url=env["STREAMWARD_DATABASE_URL"],
        var_dir=Path(env["STREAMWARD_VAR_DIR"]),
        secret_key=env["STREAMWARD_SECRET_KEY"],  # type: ignore[arg-type]
        run_worker=False,
    )
    name = made["stream"]["name"]
    verify_body = json.dumps({"token": made["token"], "stream": name}).encode()
    json_type = [(b"content-type", b"application/json")]
    stream_path = f"/api/stream/{made['stream']['id']}?profile=player"
    where = playback.Presentation(stream=name)
    result: dict[str, Any] = {}
    from baselines import fastapi_hello  # bench/baselines.py
    from hello import app as starlette_hello  # bench/hello.py

    for label, bare in (
        ("bare_starlette_hello_ms", starlette_hello),
        ("bare_fastapi_hello_ms", fastapi_hello),
    ):

        async def hello(app: Any = bare) -> None:
            assert await _asgi(app, "GET", "/", [], b"") == 200

        result[label] = round(await _cpu_per_call(hello, samples), 4)
    for label, reorder in (("as_is", False), ("stream_and_token_routes_first", True)):
        runtime = Runtime.from_settings(settings)
        app = create_app(settings, runtime=runtime)
        if reorder and not _routes_first(app, (stream_routes, splay_router)):
            await runtime.aclose()
            result[label] = "route table not as expected: skipped"
            continue

        async def verify_route(app: Any = app) -> None:
            assert await _asgi(app, "POST", "/api/v1/splay/verify", json_type, verify_body) == 200

        async def cached_read(app: Any = app) -> None:
            assert await _asgi(app, "GET", stream_path, [], b"") == 200

        async def floor(app: Any = app) -> None:
            assert await _asgi(app, "GET", "/healthz", [], b"") == 200

        result[label] = {
            "verify_route_ms": round(await _cpu_per_call(verify_route, samples), 4),
            "cached_player_stream_ms": round(await _cpu_per_call(cached_read, samples), 4),
            # A trivial public route registered after the API's: the middleware stack, a walk of the
            # whole route table and FastAPI's dependency resolution, before any work.
            "healthz_ms": round(await _cpu_per_call(floor, samples), 4),
        }
        if not reorder:

            async def verify_service(runtime: Runtime = runtime) -> None:
                async with runtime.database.session(write=False) as session:
                    await playback.verify(session, made["token"], where, issuer=settings.base_url)
                    await session.commit()

            async def empty_session(runtime: Runtime = runtime) -> None:
                async with runtime.database.session(write=False) as session:
                    await session.commit()

            result["verify_service_with_its_session_ms"] = round(
                await _cpu_per_call(verify_service, samples), 4
            )
            result["empty_read_session_ms"] = round(await _cpu_per_call(empty_session, samples), 4)
        await runtime.aclose()
    return result


def in_process_breakdown(env: dict[str, str], made: dict[str, Any], samples: int = 2000) -> dict[str, Any]:
    """Where a verify and a cached player read spend their time inside the application, measured
    in this process against the benchmark's database: the routes as app.py orders them and with
    the stream and token routes first, the verify service alone with its session, an empty session."""
    return asyncio.run(_breakdown(env, made, samples))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not postgres_reachable():
        raise SystemExit("PostgreSQL is not reachable: this benchmark runs on PostgreSQL only")
    binary = ensure_wrk()
    results: dict[str, Any] = {
        "settings": {
            "duration_s": args.duration,
            "connections": args.connections,
            "wrk_threads": 2,
            "workers": 1,
            "engine": "postgres",
        },
        "uptime_before": uptime(),
        "runs": {},
    }
    runs: dict[str, dict[str, float]] = results["runs"]

    baselines = {"hello": "bench.hello:app", "fastapi_hello": "bench.baselines:fastapi_hello"}
    for name, target in baselines.items():
        with server(target, {}) as url:
            runs[name] = wrk(binary, url + "/", {}, args)

    with tempfile.TemporaryDirectory() as workdir:
        env = prepare_database("postgres", Path(workdir))
        env["STREAMWARD_RUN_WORKER"] = "false"  # nothing to deliver; keep the core for the requests
        try:
            subprocess.run(
                [sys.executable, "-m", "streamward", "db", "upgrade"],
                env={**os.environ, **env},
                check=True,
                capture_output=True,
                cwd=ROOT,
            )
            api_key = create_organisation(env)
            with server("streamward.app:app_from_environment", env, factory=True) as url:
                made = set_up(url, api_key)
                stream_id = made["stream"]["id"]
                player = {"X-BINTU-PLAYERKEY": made["player_key"]}
                reads = {
                    "player_stream": (f"/api/stream/{stream_id}?profile=player", {}),
                    "player_group": (f"/api/stream/{stream_id}/group?profile=player", {}),
                    "player_key_listing": (f"/api/stream?tags[]={TAG}", player),
                }
                # A trivial public route registered after the API's (middleware, route table, FastAPI).
                runs["streamward_healthz"] = wrk(binary, url + "/healthz", {}, args)
                for name, (path, headers) in reads.items():
                    runs[name] = wrk(binary, url + path, headers, args)
                for name, (path, headers) in reads.items():
                    etag = etag_of(url, path, headers)
                    if etag is None:
                        print(f"{name}: no ETag, no 304 to measure", file=sys.stderr)
                        continue
                    runs[f"{name}_304"] = wrk(binary, url + path, headers | {"If-None-Match": etag}, args)
                script = verify_script(Path(workdir), made["token"], made["stream"]["name"])
                check = httpx.post(
                    url + "/api/v1/splay/verify",
                    json={"token": made["token"], "stream": made["stream"]["name"]},
                    timeout=10,
                )
                if check.status_code != 200:
                    raise RuntimeError(f"verify refused the benchmark's token: {check.text}")
                runs["verify"] = wrk_post(binary, url + "/api/v1/splay/verify", script, args)
                # Every viewer with a token of their own: no signature is met twice.
                tokens = fresh_tokens(url, api_key, made["stream"]["name"])
                fresh = fresh_verify_script(Path(workdir), tokens, made["stream"]["name"])
                runs["verify_fresh_tokens"] = wrk_post(
                    binary, url + "/api/v1/splay/verify", fresh, args, threads=1
                )
            results["in_process_breakdown"] = in_process_breakdown(env, made)
        finally:
            drop_database(env)

    # The baselines again at the end: on a shared machine the load changes during a run, and the
    # higher of the two readings is the baseline (the ratios err low, never high).
    for name, target in baselines.items():
        with server(target, {}) as url:
            runs[f"{name}_again"] = wrk(binary, url + "/", {}, args)
    hello = max(runs["hello"]["rps"], runs["hello_again"]["rps"])
    fastapi = max(runs["fastapi_hello"]["rps"], runs["fastapi_hello_again"]["rps"])
    results["baselines_rps"] = {"hello": hello, "fastapi_hello": fastapi}
    for run in runs.values():
        run["ratio_to_hello"] = round(run["rps"] / hello, 3)
        run["ratio_to_fastapi_hello"] = round(run["rps"] / fastapi, 3)
    signature = in_process_verify_times()
    verify_ms = 1000 / runs["verify"]["rps"]
    results["in_process"] = {
        **{name: round(value, 4) for name, value in signature.items()},
        "verify_route_ms_per_request": round(verify_ms, 4),
        "verify_route_to_ed25519": round(verify_ms / signature["ed25519_verify_ms"], 2),
        "verify_route_to_token_check": round(verify_ms / signature["token_check_ms"], 2),
        "token_check_to_ed25519": round(signature["token_check_ms"] / signature["ed25519_verify_ms"], 2),
    }
    as_is = results["in_process_breakdown"]["as_is"]
    results["in_process"]["verify_route_cpu_in_process_to_ed25519"] = round(
        as_is["verify_route_ms"] / signature["ed25519_verify_ms"], 2
    )
    player_runs = [name for name in runs if name.startswith("player_")]
    results["goals"] = {
        "player_reads_min_ratio_to_hello": min(runs[name]["ratio_to_hello"] for name in player_runs),
        "player_reads_goal": PLAYER_GOAL,
        "streamward_healthz_ratio_to_hello": runs["streamward_healthz"]["ratio_to_hello"],
        "verify_ratio_to_fastapi_hello": runs["verify"]["ratio_to_fastapi_hello"],
        "verify_fresh_tokens_ratio_to_fastapi_hello": runs["verify_fresh_tokens"]["ratio_to_fastapi_hello"],
        "verify_goal": VERIFY_GOAL,
    }
    results["uptime_after"] = uptime()

    print(f"\n{'run':<26}{'req/s':>10}{'p99 ms':>10}{'/hello':>8}{'/fastapi':>10}")
    for name, run in runs.items():
        print(
            f"{name:<26}{run['rps']:>10.0f}{run['p99_ms']:>10.2f}"
            f"{run['ratio_to_hello']:>8.2f}{run['ratio_to_fastapi_hello']:>10.2f}"
        )
    print(json.dumps({"in_process": results["in_process"], **results["in_process_breakdown"]}, indent=2))
    print(f"uptime before: {results['uptime_before']}\nuptime after:  {results['uptime_after']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "player_reads.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
