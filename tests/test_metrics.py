"""/metrics: Prometheus text for the platform operator, labelled by route template, never by path."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from streamward.app import create_app
from streamward.events.outbox import emit
from streamward.orgs.models import Organisation
from streamward.webhooks.delivery import WEBHOOK_SECRET_PURPOSE
from tests.conftest import PASSWORD, Env, make_settings
from tests.support.receiver import Receiver

OPERATOR_TOKEN = "operator-token-for-metrics-0123456789"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "operator_token": OPERATOR_TOKEN,
        "login_rate_per_ip": 2,
        "allow_private_webhook_targets": True,
        "webhook_timeout_seconds": 2.0,
        "bintu_root_host": "bintu.example.com",
    }


async def scrape(env: Env) -> list[Sample]:
    response = await env.client.get("/metrics", headers=OPERATOR)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    return None


async def test_requests_are_counted_by_route_template_method_and_status(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org, login=True)  # counted below
    member = await env.member(org, "nanoUser", token=False)
    assert (await env.client.get(f"/api/user/{member.id}", headers=admin.headers)).status_code == 200
    assert (await env.client.get(f"/api/user/{uuid.uuid4()}", headers=admin.headers)).status_code == 404
    # The bintu root's /user/{id} is the same route as /api/user/{id}.
    on_root = admin.headers | {"Host": "bintu.example.com"}
    assert (await env.client.get(f"/user/{member.id}", headers=on_root)).status_code == 200
    secret_path = "/api/invite/swi_not-a-real-token-but-shaped-like-one"
    await env.client.get(secret_path)
    await env.client.get(f"/api/no-such-route/{member.id}")

    samples = await scrape(env)
    requests = "streamward_http_requests_total"
    template = "/api/user/{user_id}"
    assert value(samples, requests, route=template, method="GET", status="200") == 2
    assert value(samples, requests, route=template, method="GET", status="404") == 1
    assert value(samples, requests, route="/api/invite/{token}", method="GET") == 1
    assert value(samples, requests, route="unmatched", method="GET", status="404") == 1
    assert value(samples, requests, route="/api/user/validate", method="POST", status="200") == 1
    assert value(samples, "streamward_http_request_duration_seconds_count", route=template, method="GET") == 3
    # No id, token or raw path in any label.
    labels = {label for sample in samples for label in sample.labels.values()}
    assert not {label for label in labels if str(member.id) in label or "swi_" in label or "no-such" in label}


async def test_logins_are_counted_by_outcome_and_refusals_by_limit(env: Env) -> None:
    org = await env.org()
    user = await env.member(org, token=False)
    client = env.client_from("198.51.100.7")  # its own per-address budget: 2 attempts
    attempt = {"email": user.email, "organisation": str(org.id)}
    async with client:
        ok = await client.post("/api/user/validate", json=attempt | {"password": PASSWORD})
        wrong = await client.post("/api/user/validate", json=attempt | {"password": "not it"})
        throttled = await client.post("/api/user/validate", json=attempt | {"password": PASSWORD})
    assert (ok.status_code, wrong.status_code, throttled.status_code) == (200, 401, 429)

    samples = await scrape(env)
    assert value(samples, "streamward_logins_total", outcome="success") == 1
    assert value(samples, "streamward_logins_total", outcome="invalid_credentials") == 1
    assert value(samples, "streamward_logins_total", outcome="rate_limited") == 1
    assert value(samples, "streamward_rate_limit_refusals_total", limit="login") == 1
    assert value(samples, "streamward_http_requests_total", route="/api/user/validate", status="429") == 1


async def test_metrics_are_for_the_operator_only(env: Env) -> None:
    await env.client.get("/healthz")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": OPERATOR_TOKEN}):
        refused = await env.client.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert "streamward_http_requests" not in refused.text
    env.runtime.settings.operator_token = None  # a deployment that never configured one
    absent = await env.client.get("/metrics", headers=OPERATOR)
    assert absent.status_code == 404
    assert "streamward_http_requests" not in absent.text


async def test_outbox_backlog_pool_and_delivery_attempts(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    org = await env.org()
    async with env.runtime.database.session() as session:
        emit(session, "webhook.test", {"n": 1}, organisation_id=org.id)
        await session.commit()
    waiting = await scrape(env)
    assert value(waiting, "streamward_outbox_pending_events") == 1
    oldest = value(waiting, "streamward_outbox_oldest_pending_age_seconds")
    assert oldest is not None and oldest >= 0
    assert value(waiting, "streamward_db_pool_connections_in_use") is not None

    monkeypatch.setattr("streamward.app.tune_garbage_collector", lambda: None)  # no gc.freeze in tests
    app = env.client._transport.app  # type: ignore[attr-defined]
    async with Receiver() as receiver:
        async with env.runtime.database.session() as session:
            stored = await session.get(Organisation, org.id)
            assert stored is not None
            stored.webhook_url = receiver.url()
            stored.webhook_secret_sealed = env.runtime.secret_box.seal(
                "whsec_" + "A" * 32, purpose=WEBHOOK_SECRET_PURPOSE
            )
            await session.commit()
        async with app.router.lifespan_context(app):  # the in-process delivery worker runs
            await receiver.wait_for(1)
            async with asyncio.timeout(10):
                while value(await scrape(env), "streamward_outbox_pending_events") != 0:  # noqa: ASYNC110 - state lives in the database
                    await asyncio.sleep(0.05)
            delivered = await scrape(env)
    assert value(delivered, "streamward_webhook_delivery_attempts_total", outcome="succeeded") == 1
    assert value(delivered, "streamward_webhook_delivery_duration_seconds_count", outcome="succeeded") == 1
    assert value(delivered, "streamward_outbox_oldest_pending_age_seconds") == 0


@pytest.mark.parametrize("wanted", [False, True])
def test_fastapis_own_telemetry_is_the_operators_choice(tmp_path: Path, wanted: bool) -> None:
    """Off by default (Streamward has its own metrics and access log, and FastAPI would otherwise
    ask the OpenTelemetry API on every request whether a provider is configured); on when asked,
    with FastAPI's own defaults."""
    fastapi_telemetry = "telemetry" in inspect.signature(FastAPI).parameters
    if not fastapi_telemetry:
        pytest.skip("this FastAPI has no native telemetry")
    settings = make_settings("sqlite+aiosqlite:///" + str(tmp_path / "t.db"), tmp_path)
    app = create_app(settings.model_copy(update={"framework_telemetry": wanted}))
    config = app._telemetry  # type: ignore[attr-defined]
    assert (config["tracing"], config["metrics"], config["logs"]) == (wanted, wanted, wanted)
