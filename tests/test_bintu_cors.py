"""CORS on the bintu paths and the token service (browsers on the customer's own site call them),
none on the dashboard, the operator API or the ingest API. tests/browser/test_cors_browser.py
checks the same in Chromium."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from streamward.config import SettingsError, load_settings
from tests.conftest import Env

ORIGIN = "https://player.customer.example"


def preflight(method: str = "GET", headers: str = "accept,content-type,x-bintu-apikey") -> dict[str, str]:
    """What Chromium sends before a cross-origin request with the SDKs' headers."""
    return {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


def _listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


BINTU_PATHS = [
    ("GET", "/api/organisation"),
    ("POST", "/api/stream"),
    ("GET", "/api/stream/0b9e5e3c-2b61-4bde-9b40-4f3b1a1b8a11"),
    ("PUT", "/api/stream/0b9e5e3c-2b61-4bde-9b40-4f3b1a1b8a11/tag"),
    ("DELETE", "/api/stream/0b9e5e3c-2b61-4bde-9b40-4f3b1a1b8a11"),
    ("POST", "/api/user/validate"),
    ("POST", "/api/user/password"),
    ("GET", "/api/permission/list"),
    ("POST", "/api/apikey"),
    ("POST", "/api/v1/splay"),
    ("POST", "/api/v1/splay/verify"),
    ("POST", "/api/v1/splay/revoke"),
    ("GET", "/.well-known/jwks.json"),
]


@pytest.mark.parametrize(("method", "path"), BINTU_PATHS, ids=lambda value: value)
async def test_preflight_is_answered_on_bintu_paths(env: Env, method: str, path: str) -> None:
    response = await env.client.options(
        path, headers=preflight(method, "Content-Type,X-BINTU-TOKEN,x-bintu-playerkey")
    )
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    assert method.lower() in _listed(response.headers["access-control-allow-methods"])
    allowed = _listed(response.headers["access-control-allow-headers"])
    assert {"content-type", "accept", "x-bintu-apikey", "x-bintu-token", "x-bintu-playerkey"} <= allowed
    assert "access-control-allow-credentials" not in response.headers
    assert "vary" not in response.headers  # the answer is the same for every origin


async def test_responses_carry_cors_headers_errors_included(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    ok = await env.client.get("/api/organisation", headers={"Origin": ORIGIN} | org.api_headers)
    refused = await env.client.get("/api/organisation", headers={"Origin": ORIGIN})
    token = await env.client.post("/api/v1/splay", json={}, headers={"Origin": ORIGIN} | org.api_headers)
    for response, status in ((ok, 200), (refused, 401), (token, 400)):
        assert response.status_code == status, response.text
        assert response.headers["access-control-allow-origin"] == "*"
        assert _listed(response.headers["access-control-expose-headers"]) == {
            "link",
            "etag",
            "retry-after",
            "x-request-id",
        }
        assert "access-control-allow-credentials" not in response.headers
    # No Origin, no CORS answer needed (not a browser's cross-origin request).
    plain = await env.client.get("/api/organisation", headers=org.api_headers)
    assert "access-control-allow-origin" not in plain.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/login"),
        ("POST", "/login"),
        ("GET", "/organisation"),
        ("POST", "/organisation/apikey/reveal"),
        ("GET", "/api/operator/organisation"),
        ("POST", "/api/ingest/publish"),
    ],
    ids=lambda value: value,
)
async def test_dashboard_operator_and_ingest_get_no_cors(env: Env, method: str, path: str) -> None:
    answered = await env.client.options(path, headers=preflight(method))
    assert "access-control-allow-origin" not in answered.headers
    assert answered.status_code != 204
    actual = await env.client.request(method, path, headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in actual.headers


ALLOWED = "https://app.customer.example, https://www.customer.example:8443/"


@pytest.mark.parametrize("settings_overrides", [{"cors_allowed_origins": ALLOWED}])
async def test_a_list_of_origins(env: Env) -> None:
    org = await env.org()

    async def get(origin: str) -> httpx.Response:
        return await env.client.get("/api/organisation", headers={"Origin": origin} | org.api_headers)

    for origin in ("https://app.customer.example", "https://www.customer.example:8443"):
        response = await get(origin)
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["vary"] == "Origin"
        answered = await env.client.options("/api/organisation", headers=preflight() | {"Origin": origin})
        assert (answered.status_code, answered.headers["access-control-allow-origin"]) == (204, origin)
        assert answered.headers["vary"] == "Origin"

    for stranger in ("https://evil.example", "http://app.customer.example", "null"):
        response = await get(stranger)
        assert response.status_code == 200  # served, but the browser will not hand it to the page
        assert "access-control-allow-origin" not in response.headers
        assert response.headers["vary"] == "Origin"
        answered = await env.client.options("/api/organisation", headers=preflight() | {"Origin": stranger})
        assert answered.status_code == 403
        assert answered.json()["error"]["code"] == "origin_not_allowed"
        assert "access-control-allow-origin" not in answered.headers


@pytest.mark.parametrize(
    "overrides",
    [
        {"cors_allowed_origins": "ftp://files.example"},
        {"cors_allowed_origins": "https://app.example/path"},
        {"cors_allowed_origins": "*, https://app.example"},
        {"cors_allowed_origins": ""},
        {"bintu_root_host": "https://bintu.example.com"},
        {"bintu_root_port": 0},
    ],
    ids=str,
)
def test_bad_settings_stop_start_up_naming_the_variable(overrides: dict[str, Any]) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(**overrides)
    (name,) = overrides
    assert f"STREAMWARD_{name.upper()}" in str(refused.value)
