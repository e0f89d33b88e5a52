"""One error shape, stable codes, never a stack trace."""

from __future__ import annotations

from fastapi import APIRouter

from streamward.web.access import PUBLIC
from tests.conftest import Env


async def test_unknown_path_is_404_json(env: Env) -> None:
    response = await env.client.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}


async def test_wrong_method_is_405_json(env: Env) -> None:
    response = await env.client.delete("/api/user/validate")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_oversized_body_is_413_whether_announced_or_streamed(env: Env) -> None:
    big = b'{"email": "' + b"a" * (1024 * 1024 + 10) + b'", "password": "x"}'
    announced = await env.client.post(
        "/api/user/validate", content=big, headers={"content-type": "application/json"}
    )
    assert announced.status_code == 413
    assert announced.json()["error"]["code"] == "payload_too_large"

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"a" * 65536

    streamed = await env.client.post(
        "/api/user/validate", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


async def test_wrong_content_type_and_non_object_json_are_4xx(env: Env) -> None:
    form = await env.client.post("/api/user/validate", data={"email": "a@example.com", "password": "x"})
    assert 400 <= form.status_code < 500
    array = await env.client.post("/api/user/validate", json=[1, 2])
    assert array.status_code == 422
    assert array.json()["error"]["code"] == "validation_error"
    assert array.json()["error"]["details"]


async def test_unexpected_failure_is_500_without_traceback(env: Env) -> None:
    router = APIRouter()

    @router.get("/api/boom", dependencies=[PUBLIC])
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    app = env.client._transport.app  # type: ignore[attr-defined]
    app.include_router(router)
    import httpx

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/api/boom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text


async def test_security_headers_on_api_responses(env: Env) -> None:
    response = await env.client.get("/api/organisation")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
