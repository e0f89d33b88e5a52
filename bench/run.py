"""Benchmark: Streamward's authenticated hot path against a bare Starlette app, in the same run.

Both servers run the same way (uvicorn, one worker, no access log) and are loaded by the same tool
(wrk) with the same connections and duration; what is reported is the ratio, which is what stays
comparable from one machine to another.

    make bench                    # SQLite and, when reachable, PostgreSQL
    make bench BENCH_ARGS="--duration 5 --connections 16"
"""

from __future__ import annotations

import argparse
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
def server(target: str, env: dict[str, str], *, factory: bool = False):  # type: ignore[no-untyped-def]
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
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if factory:
        command.append("--factory")
    process = subprocess.Popen(command, env={**os.environ, **env}, cwd=ROOT)
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
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def wrk(binary: str, url: str, headers: dict[str, str], args: argparse.Namespace) -> dict[str, float]:
    command = [binary, "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    # Warm-up run, discarded: connection pools, caches, JIT-free but lazy imports.
    subprocess.run([*command[:3], "-d2s", *command[4:], url], capture_output=True, check=True)
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    assert p99, output
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise RuntimeError(f"{url}: {non_2xx.group(1)} failed responses during the run")
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale}


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
    password = "bench-password-1234"
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
        "settings": {
            "duration_s": args.duration,
            "connections": args.connections,
            "wrk_threads": 2,
            "workers": 1,
        },
        "runs": {},
    }

    with server("bench.hello:app", {}) as url:
        baseline = wrk(binary, url + "/", {}, args)
    results["runs"]["hello"] = baseline

    for engine in args.engines.split(","):
        if engine == "postgres" and not postgres_reachable():
            print("PostgreSQL not reachable: skipped", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as workdir:
            env = prepare_database(engine, Path(workdir))
            try:
                subprocess.run(
                    [sys.executable, "-m", "streamward", "db", "upgrade"],
                    env={**os.environ, **env},
                    check=True,
                    capture_output=True,
                    cwd=ROOT,
                )
                with server("streamward.app:app_from_environment", env, factory=True) as url:
                    token, api_key = create_org_and_login(env, url)
                    measured = {
                        f"organisation_{engine}": wrk(
                            binary, url + "/api/organisation", {"X-BINTU-TOKEN": token}, args
                        )
                    }
                    if engine == "postgres":
                        # The bintu stream list: 50 transcoded streams, read with the API key.
                        path = create_transcoded_streams(url, api_key)
                        measured["stream_list_postgres"] = wrk(
                            binary, url + path, {"X-BINTU-APIKEY": api_key}, args
                        )
            finally:
                drop_database(env)
        for name, run in measured.items():
            run["ratio_to_hello"] = round(run["rps"] / baseline["rps"], 3)
            results["runs"][name] = run

    print(f"\n{'run':<24}{'req/s':>10}{'p99 ms':>10}{'ratio':>8}")
    for name, run in results["runs"].items():
        ratio = run.get("ratio_to_hello", 1.0)
        print(f"{name:<24}{run['rps']:>10.0f}{run['p99_ms']:>10.2f}{ratio:>8.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "foundation.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
