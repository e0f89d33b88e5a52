"""Fuzz the JSON API with schemathesis against a real ``streamward serve`` on a fresh PostgreSQL database.

    .venv/bin/python tests/fuzz/run_schemathesis.py [--max-examples N] [--time-cap SECONDS] [--keep DIR]

(``make fuzz``; ``.ci/run`` runs it after the test suite.) It creates a database, starts
``streamward serve`` on a free port (which migrates it), creates an organisation with every package
(so that no route answers 403 ``upgrade_needed`` for lack of one) and its nanoAdmin with the CLI,
logs in, and runs schemathesis over ``/api/openapi.json``:

1. as the admin (``X-BINTU-TOKEN``), 2. as the organisation's API key (``X-BINTU-APIKEY``), both
   with the ingest secret so that the media-server routes are exercised too;
3. the operator API alone, with the operator token. Last, because the operator may change the
   organisation's packages (``PATCH`` with ``packages: []``), which would gate routes of the others.

Every response must not be a 5xx and must have a documented status, content type and body schema.

Operations left out, because they end the credentials the run itself uses (the rest of the run would
then only see 401s):

* as the admin: ``POST /api/user/logout`` (ends the token), ``PUT /api/user/tokenkey`` (without
  ``userId`` it renews the caller's own token key, which ends the token) and
  ``/api/organisation/mfa-policy`` (requiring a second factor, which the admin has not set up, turns
  the token into an enrolment session: 403 ``mfa_enrolment_required`` nearly everywhere; the API key
  is not affected, so its run covers the path);
* as the API key: ``POST /api/organisation/apikey/rotate`` (the old key stops at once).

Deleting the caller (``DELETE /api/user/{id}``) stays in: the admin is the organisation's only
nanoAdmin, which the server refuses to remove (409 ``last_admin``). The operator routes are left out
of runs 1 and 2 (they take neither credential) and are all of run 3.

Exit status 0 only when schemathesis found nothing; otherwise its failures are printed, with the
server's tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from streamward.orgs.packages import PACKAGE_KEYS

POSTGRES = os.environ.get("STREAMWARD_FUZZ_PG_URL", "postgresql://postgres@127.0.0.1:5432")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
# Stateful testing (chains of calls) is left out: it has no time bound of its own.
PHASES = "examples,coverage,fuzzing"
ADMIN_EMAIL = "admin@fuzz.example.com"
OPERATOR_PATHS = "^/api/operator/"


@dataclass(frozen=True)
class Identity:
    """One schemathesis run: who calls, and which operations."""

    name: str
    headers: dict[str, str]
    excluded_paths: tuple[str, ...] = ()  # one operation each; see the module's docstring
    include_path_regex: str | None = None
    exclude_path_regex: str | None = None


@dataclass
class Outcome:
    identity: str
    returncode: int
    output: str
    seconds: float
    figures: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tested = re.search(r"Tested: (\d+)", self.output)
        cases = re.search(r"Test cases:\s*\n\s*(.+)", self.output)
        self.figures = {
            "operations": tested.group(1) if tested else "?",
            "cases": cases.group(1).strip() if cases else "?",
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _admin_sql(statement: str) -> None:
    connection = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def fresh_database() -> Iterator[str]:
    name = f"streamward_fuzz_{secrets.token_hex(4)}"
    asyncio.run(_admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        asyncio.run(_admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def running_server(env: dict[str, str], base_url: str, log_path: Path) -> Iterator[None]:
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamward", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                if process.poll() is not None:
                    raise SystemExit(
                        f"streamward serve exited with {process.returncode}:\n{log_path.read_text()}"
                    )
                try:
                    if httpx.get(f"{base_url}/api/openapi.json", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"streamward serve did not start:\n{log_path.read_text()}")
                time.sleep(0.3)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def create_organisation(env: dict[str, str], password: str) -> None:
    packages = [arg for key in sorted(PACKAGE_KEYS) for arg in ("--package", key)]
    command = [sys.executable, "-m", "streamward", "org", "create", "--name", "Fuzz"]
    command += ["--admin-email", ADMIN_EMAIL, "--admin-password", password, *packages]
    created = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    if created.returncode != 0:
        raise SystemExit(f"streamward org create failed:\n{created.stdout}\n{created.stderr}")


def log_in(base_url: str, password: str) -> str:
    reply = httpx.post(
        f"{base_url}/api/user/validate", json={"email": ADMIN_EMAIL, "password": password}, timeout=30
    )
    reply.raise_for_status()
    return str(reply.json()["token"])


def reveal_api_key(base_url: str, token: str) -> str:
    """The API key as it is now: the admin's run may have rotated it."""
    reply = httpx.get(f"{base_url}/api/organisation/apikey", headers={"X-BINTU-TOKEN": token}, timeout=30)
    reply.raise_for_status()
    return str(reply.json()["apiKey"])


def run_schemathesis(
    base_url: str, identity: Identity, *, max_examples: int, time_cap: float, report_dir: Path
) -> Outcome:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{base_url}/api/openapi.json",
        *("--checks", ",".join(CHECKS)),
        *("--phases", PHASES),
        *("--max-examples", str(max_examples)),
        *("--workers", "2"),
        *("--request-timeout", "20"),
        *("--seed", os.environ.get("STREAMWARD_FUZZ_SEED", "1")),
        # The run's own credentials go in as headers below; generated ones would only make
        # requests carry a token and a key at once (400 ambiguous_credentials).
        *("--generation-with-security-parameters", "false"),
        *("--generation-database", "none"),
        "--no-color",
        *("--report", "junit,har"),
        *("--report-dir", str(report_dir)),
        *("--report-junit-path", str(report_dir / f"{identity.name}.xml")),
        *("--report-har-path", str(report_dir / f"{identity.name}.har")),
    ]
    for name, value in identity.headers.items():
        command += ["--header", f"{name}: {value}"]
    for path in identity.excluded_paths:
        command += ["--exclude-path", path]
    if identity.include_path_regex:
        command += ["--include-path-regex", identity.include_path_regex]
    if identity.exclude_path_regex:
        command += ["--exclude-path-regex", identity.exclude_path_regex]
    started = time.monotonic()
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=time_cap, check=False, cwd=report_dir
        )
        output, returncode = result.stdout + result.stderr, result.returncode
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        output = partial + f"\n[fuzz] schemathesis exceeded its {time_cap:.0f} s cap and was stopped"
        returncode = 124
    return Outcome(identity.name, returncode, output, time.monotonic() - started)


def server_tracebacks(log_text: str) -> str:
    """The server log's unhandled errors (the 500s), one block each."""
    blocks: list[list[str]] = []
    for line in log_text.splitlines():
        if "unhandled error on" in line or "Exception in ASGI application" in line:
            blocks.append([line])
        elif blocks and (
            line.startswith((" ", "Traceback")) or re.match(r"^[\w.]+(Error|Exception)\b", line)
        ):
            blocks[-1].append(line)
    return "\n\n".join("\n".join(block) for block in blocks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--max-examples",
        type=int,
        default=int(os.environ.get("STREAMWARD_FUZZ_EXAMPLES", "10")),
        help="test cases per operation and phase (default 10)",
    )
    parser.add_argument(
        "--time-cap",
        type=float,
        default=float(os.environ.get("STREAMWARD_FUZZ_TIME_CAP", "420")),
        help="wall-clock cap of all schemathesis runs together, in seconds (default 420)",
    )
    parser.add_argument("--keep", type=Path, help="keep the server log and the reports (JUnit, HAR) here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="streamward-fuzz-"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    password = secrets.token_urlsafe(18)
    operator_token, ingest_secret = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    outcomes: list[Outcome] = []
    started = time.monotonic()
    deadline = started + args.time_cap

    def run(identity: Identity) -> None:
        budget = max(deadline - time.monotonic(), 1.0)
        outcomes.append(
            run_schemathesis(
                base_url, identity, max_examples=args.max_examples, time_cap=budget, report_dir=work
            )
        )

    with fresh_database() as database_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMWARD_") and k != "DATABASE_URL"}
        env |= {
            "STREAMWARD_DATABASE_URL": database_url,
            "STREAMWARD_VAR_DIR": str(work / "var"),
            "STREAMWARD_SECRET_KEY": secrets.token_urlsafe(32),
            "STREAMWARD_PORT": str(port),
            "STREAMWARD_LOG_LEVEL": "warning",
            "STREAMWARD_OPERATOR_TOKEN": operator_token,
            "STREAMWARD_INGEST_SECRET": ingest_secret,
            # Webhooks the fuzzer configures get no deliveries: no worker.
            "STREAMWARD_RUN_WORKER": "false",
        }
        log_path = work / "server.log"
        with running_server(env, base_url, log_path):
            create_organisation(env, password)
            token = log_in(base_url, password)
            ingest = {"X-Ingest-Secret": ingest_secret}
            run(
                Identity(
                    "admin-token",
                    {"X-BINTU-TOKEN": token} | ingest,
                    excluded_paths=("/api/user/logout", "/api/user/tokenkey", "/api/organisation/mfa-policy"),
                    exclude_path_regex=OPERATOR_PATHS,
                )
            )
            api_key = reveal_api_key(base_url, token)
            run(
                Identity(
                    "api-key",
                    {"X-BINTU-APIKEY": api_key} | ingest,
                    excluded_paths=("/api/organisation/apikey/rotate",),
                    exclude_path_regex=OPERATOR_PATHS,
                )
            )
            run(
                Identity(
                    "operator",
                    {"Authorization": f"Bearer {operator_token}"},
                    include_path_regex=OPERATOR_PATHS,
                )
            )
        log_text = log_path.read_text()

    failed = [outcome for outcome in outcomes if outcome.returncode != 0]
    for outcome in failed:
        print(
            f"\n===== schemathesis as {outcome.identity}: exit {outcome.returncode} =====\n{outcome.output}"
        )
    tracebacks = server_tracebacks(log_text)
    if tracebacks:
        print("\n===== server tracebacks =====\n" + tracebacks)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        for path in work.iterdir():
            if path.is_file():
                shutil.copy(path, args.keep / path.name)
    shutil.rmtree(work, ignore_errors=True)

    print("\nfuzz: schemathesis over /api/openapi.json")
    for outcome in outcomes:
        verdict = "ok" if outcome.returncode == 0 else "FAILED"
        print(
            f"  as {outcome.identity:<12} {verdict:<6} {outcome.seconds:4.0f} s  "
            f"operations {outcome.figures['operations']}, test cases: {outcome.figures['cases']}"
        )
    print(f"fuzz: {time.monotonic() - started:.0f} s in all")
    print(f"fuzz: {len(outcomes) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
