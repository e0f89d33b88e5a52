"""The bintu API at the bare root (clients whose base URL cannot carry ``/api``), over real sockets:
``streamward serve`` with ``STREAMWARD_BINTU_ROOT_PORT`` listens on a second port, and requests
whose Host is ``STREAMWARD_BINTU_ROOT_HOST`` are served the same way on the main port. The
dashboard keeps its paths on the main host and port, and is not served on the bintu root."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from streamward.bintu_root import api_path
from tests.support.net import free_port

ROOT_HOST = "bintu.streamward.test"


@dataclass(frozen=True)
class Server:
    main: str  # API under /api, and the dashboard
    root: str  # the bintu root port
    api_key: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    var_dir: Path = tmp_path_factory.mktemp("bintu-root-var")
    port, root_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMWARD_") and k != "DATABASE_URL"}
    env |= {
        "STREAMWARD_VAR_DIR": str(var_dir),
        "STREAMWARD_PORT": str(port),
        "STREAMWARD_BINTU_ROOT_PORT": str(root_port),
        "STREAMWARD_BINTU_ROOT_HOST": ROOT_HOST.upper(),
        "STREAMWARD_LOG_LEVEL": "warning",
        "STREAMWARD_RUN_WORKER": "false",
    }
    demo = subprocess.run(
        [sys.executable, "-m", "streamward", "demo"], env=env, capture_output=True, text=True, timeout=120
    )
    assert demo.returncode == 0, demo.stderr
    found = re.search(r"X-BINTU-APIKEY\): (\S+)", demo.stdout)
    assert found, demo.stdout
    process = subprocess.Popen([sys.executable, "-m", "streamward", "serve"], env=env)
    main, root = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{root_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(root + "/.well-known/jwks.json", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "the server stopped"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield Server(main, root, found.group(1))
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_path_mapping() -> None:
    assert [api_path(p) for p in ("/stream", "/stream/x/tag", "/", "/api", "/api/v1/splay")] == [
        "/api/stream",
        "/api/stream/x/tag",
        "/api/",
        "/api",
        "/api/v1/splay",
    ]
    assert api_path("/.well-known/jwks.json") == "/.well-known/jwks.json"
    assert api_path("/apikey") == "/api/apikey"  # not an /api/ path: only "/api" and "/api/..." are


def test_the_bintu_root_port_serves_the_api_at_the_root(server: Server) -> None:
    key = {"X-BINTU-APIKEY": server.api_key, "Accept": "application/json"}
    with httpx.Client(base_url=server.root, timeout=10) as client:
        at_root = client.get("/organisation", headers=key)
        assert at_root.status_code == 200, at_root.text
        assert client.get("/api/organisation", headers=key).json() == at_root.json()
        checked = client.post("/apikey", json={"apikey": server.api_key})
        assert (checked.status_code, checked.json()["key"]) == (200, server.api_key[:6] + "****")
        # The token service's documented paths already carry /api/v1: unchanged on the root.
        token = client.post("/api/v1/splay", json={"orgawide": True}, headers=key)
        assert token.status_code == 200, token.text
        verified = client.post("/api/v1/splay/verify", json={"token": token.json()["data"]["token"]})
        assert verified.json()["data"]["token"] == token.json()["data"]["token"]
        assert client.get("/.well-known/jwks.json").json()["keys"]
        # The dashboard is not there: its paths are API paths that do not exist.
        for path in ("/", "/login", "/organisation/users", "/static/app.css"):
            missing = client.get(path)
            assert missing.status_code == 404, (path, missing.text)
            assert missing.headers["content-type"].startswith("application/json")
            assert missing.json()["error"]["code"] == "not_found"
        # Browsers on other sites may call it.
        preflight = client.options(
            "/stream",
            headers={"Origin": "https://www.customer.example", "Access-Control-Request-Method": "POST"},
        )
        assert (preflight.status_code, preflight.headers["access-control-allow-origin"]) == (204, "*")


def test_the_main_port_keeps_the_dashboard_and_serves_the_root_host(server: Server) -> None:
    key = {"X-BINTU-APIKEY": server.api_key}
    with httpx.Client(base_url=server.main, timeout=10) as client:
        login = client.get("/login")
        assert login.status_code == 200 and login.headers["content-type"].startswith("text/html")
        assert client.get("/api/organisation", headers=key).status_code == 200
        page = client.get("/organisation", headers=key)
        assert not page.headers.get("content-type", "").startswith("application/json")  # the dashboard's page
        # The same port, reached by the bintu root host name (any case, any port): the API at the root.
        for host in (ROOT_HOST, f"{ROOT_HOST.title()}:443", f"{ROOT_HOST}.:8000"):
            at_root = client.get("/organisation", headers=key | {"Host": host})
            assert at_root.status_code == 200, (host, at_root.text)
            assert at_root.json() == client.get("/api/organisation", headers=key).json()
            assert client.get("/login", headers={"Host": host}).status_code == 404
        # Another host name is not the root.
        other = client.get("/organisation", headers=key | {"Host": "dashboard.streamward.test"})
        assert not other.headers.get("content-type", "").startswith("application/json")
