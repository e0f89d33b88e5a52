"""Fixtures of the browser tests: one Chromium per test session (each test gets fresh contexts, closed
after it), ``streamward demo`` once per session, and real servers started from a copy of it.

* ``server``: one per module, so that a module's changes to its organisation stay its own; a module
  may override ``server_settings`` (e.g. to allow webhook targets on loopback);
* ``shared_server``: one for the tests that change nothing the others look at.

Under pytest-xdist one worker runs all of them (the scheduler in tests/conftest.py). Without
Chromium (or Playwright) they are not collected, except with ``STREAMWARD_REQUIRE_BROWSER=1`` (CI),
where that is an error.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    REQUIRE_BROWSER,
    SCREENSHOTS,
    Demo,
    Server,
    Servers,
    make_demo,
    serve,
)

_MISSING = (
    "Playwright is not installed"
    if importlib.util.find_spec("playwright") is None
    else f"Chromium not installed at {CHROMIUM}"
    if not Path(CHROMIUM).exists()
    else None
)
if _MISSING and REQUIRE_BROWSER:
    raise pytest.UsageError(f"the browser tests are required (CI) but cannot run: {_MISSING}")
collect_ignore_glob = ["test_*.py"] if _MISSING else []


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return make_demo(tmp_path_factory.mktemp("demo") / "var")


@pytest.fixture(scope="session")
def servers(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The session's servers by name, each started on first use and stopped at the end of the
    session (so the tests of two modules may share one)."""
    running: dict[str, Server] = {}
    with ExitStack() as stack:

        def server(name: str, settings: dict[str, str]) -> Server:
            if name not in running:
                var_dir = tmp_path_factory.mktemp("server") / "var"
                running[name] = stack.enter_context(serve(demo, var_dir, **settings))
            return running[name]

        yield server


@pytest.fixture(scope="module")
def server_settings() -> dict[str, str]:
    """Settings of this module's server, as ``STREAMWARD_<NAME>`` values; override in a module."""
    return {}


@pytest.fixture
def server(request: pytest.FixtureRequest, servers: Servers, server_settings: dict[str, str]) -> Server:
    """This module's own server."""
    return servers(request.module.__name__, server_settings)


@pytest.fixture
def shared_server(servers: Servers) -> Server:
    return servers("shared", {"run_worker": "false"})


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def browser(chromium: Any, screenshots: Path) -> AsyncIterator[Any]:
    """The session's Chromium; the contexts a test opens are closed after it."""
    yield chromium
    for context in chromium.contexts:
        await context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    # Every browser test writes here: never wipe the others' screenshots.
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
