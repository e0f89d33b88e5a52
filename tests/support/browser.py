"""The real server and the Chromium the browser tests share (tests/browser/conftest.py holds the
fixtures): Debian's Chromium (/usr/bin/chromium) driven by Playwright, and ``streamward serve``
processes on SQLite with the demo organisation.

``streamward demo`` runs once per session; each server starts from a copy of what it made (the
database and the secret key that seals its secrets), so a module that changes its organisation
changes only its own copy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.net import free_port

CHROMIUM = os.environ.get("STREAMWARD_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("STREAMWARD_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
WIDTHS = (1440, 375)


@dataclass(frozen=True)
class Demo:
    """What ``streamward demo`` made: its var directory, its users and the organisation's API key."""

    var_dir: Path
    users: dict[str, tuple[str, str]]  # role -> (email, password)
    api_key: str


def _environment(var_dir: Path, **settings: str) -> dict[str, str]:
    """The server's environment: none of the test run's own Streamward settings, ``settings`` as
    ``STREAMWARD_<NAME>`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMWARD_") and k != "DATABASE_URL"}
    env |= {"STREAMWARD_VAR_DIR": str(var_dir), "STREAMWARD_LOG_LEVEL": "warning"}
    return env | {f"STREAMWARD_{name.upper()}": value for name, value in settings.items()}


def make_demo(var_dir: Path) -> Demo:
    made = subprocess.run(
        [sys.executable, "-m", "streamward", "demo"],
        env=_environment(var_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    users = re.findall(r"(nano\w+)\s+.*?(\S+@demo\.example\.com)\s+password: (\S+)", made.stdout)
    api_key = re.search(r"X-BINTU-APIKEY\): (\S+)", made.stdout)
    assert users and api_key, made.stdout
    return Demo(var_dir, {role: (email, password) for role, email, password in users}, api_key.group(1))


@dataclass(frozen=True)
class Server:
    url: str
    demo: Demo

    @property
    def admin(self) -> tuple[str, str]:
        return self.demo.users["nanoAdmin"]

    @property
    def operator(self) -> tuple[str, str]:
        return self.demo.users["nanoUser"]

    @property
    def observer(self) -> tuple[str, str]:
        return self.demo.users["nanoReadOnly"]

    @property
    def api_key(self) -> str:
        return self.demo.api_key


# The session's servers by name (tests/browser/conftest.py): (name, settings) -> the running server.
Servers = Callable[[str, dict[str, str]], Server]


@contextmanager
def serve(demo: Demo, var_dir: Path, **settings: str) -> Iterator[Server]:
    """``streamward serve`` on a copy of the demo's var directory, on a free port."""
    shutil.copytree(demo.var_dir, var_dir)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamward", "serve"], env=_environment(var_dir, port=str(port), **settings)
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/login", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "the server stopped"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)  # polling a process that is starting: nothing to wait on instead
        yield Server(url, demo)
    finally:
        process.terminate()
        process.wait(timeout=20)


async def new_page(browser: Any, width: int = 1440, height: int = 900) -> Any:
    """A page in a context of its own (its own cookie jar) that records console errors."""
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    page.console_errors = []
    page.on(
        "console",
        lambda message: page.console_errors.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    return page


async def sign_in(page: Any, server: Server, email: str, password: str) -> None:
    """Through the login form, as a person does."""
    await page.goto(server.url + "/login")
    await page.fill("#email", email)
    await page.fill("#password", password)
    await page.click("form[action='/login'] button[type=submit]")
    await page.wait_for_url("**/organisation/overview")


async def shoot(page: Any, name: str, *, full_page: bool = True) -> None:
    """A screenshot into test-artifacts/screenshots/ (the viewport only for an open dialog)."""
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)
