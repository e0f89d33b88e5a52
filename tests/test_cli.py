"""The CLI as an operator runs it: a real process over a SQLite file."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamward.app import create_app
from streamward.config import Settings


def run(var_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMWARD_") and k != "DATABASE_URL"}
    env["STREAMWARD_VAR_DIR"] = str(var_dir)
    return subprocess.run(
        [sys.executable, "-m", "streamward", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


def test_org_create_generates_a_password_when_not_a_terminal_and_it_logs_in(var_dir: Path) -> None:
    result = run(
        var_dir,
        "org",
        "create",
        "--name",
        "Acme",
        "--admin-email",
        "Boss@Acme.example.com",
        "--support-level",
        "premium",
        "--analytics-level",
        "full",
        "--package",
        "vod",
        "--package",
        "secure_playback",
    )
    assert result.returncode == 0, result.stderr
    password = re.search(r"password \(shown once\): (\S+)", result.stdout)
    api_key = re.search(r"API key \(shown once\): (swk_\S+)", result.stdout)
    assert password and api_key
    # The secrets went to stdout once, and nowhere into the log.
    assert password.group(1) not in result.stderr and api_key.group(1) not in result.stderr

    async def use_it() -> dict[str, Any]:
        app = create_app(Settings(var_dir=var_dir))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            login = await client.post(
                "/api/user/validate", json={"email": "boss@acme.example.com", "password": password.group(1)}
            )
            assert login.status_code == 200, login.text
            org = await client.get("/api/organisation", headers={"X-BINTU-APIKEY": api_key.group(1)})
        await app.state.runtime.database.dispose()
        return org.json()  # type: ignore[no-any-return]

    org = asyncio.run(use_it())
    assert (org["name"], org["supportLevel"], org["analyticsLevel"]) == ("Acme", "premium", "full")
    enabled = {p["key"] for p in org["packages"] if p["enabled"]}
    assert enabled == {"vod", "secure_playback"}


def test_org_create_refuses_bad_input(var_dir: Path) -> None:
    weak = run(
        var_dir, "org", "create", "--name", "A", "--admin-email", "a@example.com", "--admin-password", "short"
    )
    assert weak.returncode == 2 and "at least 8" in weak.stderr
    package = run(
        var_dir, "org", "create", "--name", "A", "--admin-email", "a@example.com", "--package", "nope"
    )
    assert package.returncode == 2 and "unknown package" in package.stderr


def test_demo_creates_three_roles_and_refuses_a_database_with_other_organisations(var_dir: Path) -> None:
    demo = run(var_dir, "demo")
    assert demo.returncode == 0, demo.stderr
    for role in ("nanoAdmin", "nanoUser", "nanoReadOnly"):
        assert role in demo.stdout
    again = run(var_dir, "demo", "--if-missing")
    assert again.returncode == 0
    assert again.stdout == demo.stdout  # make run prints the same credentials every start
    assert run(var_dir, "demo").returncode == 2

    other = var_dir.parent / "other"
    assert run(other, "org", "create", "--name", "Real", "--admin-email", "r@example.com").returncode == 0
    refused = run(other, "demo", "--if-missing")
    assert refused.returncode == 2
    assert "other organisations" in refused.stderr
