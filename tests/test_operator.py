"""The platform operator: packages, levels and trial flag through the operator API and the CLI.
Organisation users cannot change them; every change is audited as the operator."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any, get_args

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from streamward.audit.models import AuditEntry
from streamward.cli import app as cli_app
from streamward.config import Settings
from streamward.db import Database
from streamward.orgs.models import ANALYTICS_LEVELS, SUPPORT_LEVELS
from streamward.orgs.schemas import AnalyticsLevel, SupportLevel
from tests.conftest import Env
from tests.support.data import audit_entries, events

OPERATOR_TOKEN = "operator-token-for-tests-0123456789"
BEARER = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"operator_token": getattr(request, "param", OPERATOR_TOKEN)}


@pytest.mark.parametrize("settings_overrides", [None, ""], indirect=True)
async def test_operator_api_is_off_without_a_token_setting(env: Env) -> None:
    org = await env.org()
    for headers in ({}, BEARER, {"Authorization": "Bearer "}):
        response = await env.client.get("/api/operator/organisation", headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "operator_api_disabled")
        response = await env.client.patch(
            f"/api/operator/organisation/{org.id}", json={"trial": True}, headers=headers
        )
        assert response.status_code == 404


async def test_operator_api_refuses_wrong_or_missing_tokens(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {OPERATOR_TOKEN}"},
        {"Authorization": OPERATOR_TOKEN},
        {"Authorization": f"Bearer {OPERATOR_TOKEN}x"},
        admin.headers,  # an organisation's administrator is not the operator
        org.api_headers,
    ):
        response = await env.client.patch(
            f"/api/operator/organisation/{org.id}", json={"packages": ["vod"]}, headers=headers
        )
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["error"]["code"] == "unauthenticated"
        assert response.headers["www-authenticate"] == "Bearer"
    assert await audit_entries(env, org=org) == []


async def test_operator_lists_reads_and_updates_organisations(env: Env) -> None:
    first = await env.org("First")
    second = await env.org("Second", packages=["vod"])
    page = (await env.client.get("/api/operator/organisation", params={"limit": 1}, headers=BEARER)).json()
    assert [o["name"] for o in page["items"]] == ["Second"] and page["nextCursor"]
    rest = (
        await env.client.get(
            "/api/operator/organisation", params={"limit": 1, "cursor": page["nextCursor"]}, headers=BEARER
        )
    ).json()
    assert [o["name"] for o in rest["items"]] == ["First"] and rest["nextCursor"] is None

    response = await env.client.patch(
        f"/api/operator/organisation/{first.id}",
        json={
            "name": "First Corp",
            "supportLevel": "premium",
            "analyticsLevel": "full",
            "trial": True,
            "addPackages": ["secure_playback", "live_processing.recording"],
        },
        headers=BEARER,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["supportLevel"], body["analyticsLevel"], body["trial"]) == (
        "First Corp",
        "premium",
        "full",
        True,
    )
    assert body["packages"] == ["live_processing", "live_processing.recording", "secure_playback"]
    assert (await env.client.get(f"/api/operator/organisation/{first.id}", headers=BEARER)).json() == body

    (entry,) = await audit_entries(env, org=first, action="organisation.updated")
    assert entry.actor == "operator" and entry.client_address == "203.0.113.10"
    assert entry.before == {
        "name": "First",
        "supportLevel": "basic",
        "analyticsLevel": "basic",
        "trial": False,
        "packages": [],
    }
    assert entry.after is not None and entry.after["packages"] == body["packages"]
    (event,) = await events(env, org=first, type="organisation.updated")
    assert event.payload["changed"] == ["name", "supportLevel", "analyticsLevel", "trial", "packages"]
    # The organisation sees it at once: the package now unlocks its feature.
    token = await env.client.post("/api/v1/splay", json={"orgawide": True}, headers=first.api_headers)
    assert token.status_code == 200
    assert await audit_entries(env, org=second) == []


async def test_operator_update_refusals(env: Env) -> None:
    org = await env.org(packages=["vod"])
    for body, code in (
        ({"supportLevel": "platinum"}, "validation_error"),
        ({"packages": ["teleport"]}, "invalid_value"),
        ({"removePackages": ["nope"]}, "invalid_value"),
        ({"name": ""}, "validation_error"),
    ):
        response = await env.client.patch(f"/api/operator/organisation/{org.id}", json=body, headers=BEARER)
        assert response.status_code in (400, 422), response.text
        assert response.json()["error"]["code"] == code
    missing = await env.client.patch(
        "/api/operator/organisation/00000000-0000-7000-8000-000000000000",
        json={"trial": True},
        headers=BEARER,
    )
    assert missing.status_code == 404
    unchanged = await env.client.patch(
        f"/api/operator/organisation/{org.id}", json={"trial": False}, headers=BEARER
    )
    assert unchanged.status_code == 200
    assert await audit_entries(env, org=org) == []  # nothing changed, nothing to audit


async def test_organisation_users_cannot_change_packages_or_levels(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    for method in ("PUT", "PATCH", "POST"):
        response = await env.client.request(
            method,
            "/api/organisation",
            json={"packages": ["vod"], "supportLevel": "enterprise"},
            headers=admin.headers,
        )
        assert response.status_code == 405
    body = (await env.client.get("/api/organisation", headers=admin.headers)).json()
    assert body["supportLevel"] == "basic" and not any(p["enabled"] for p in body["packages"])


def test_cli_org_update(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process (typer's runner): the same command line parsing and code, without a new interpreter.
    for name in list(os.environ):
        if name.startswith("STREAMWARD_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    var_dir = tmp_path / "var"
    runner = CliRunner()

    def cli(*args: str) -> Result:
        return runner.invoke(cli_app, list(args), env={"STREAMWARD_VAR_DIR": str(var_dir)})

    created = cli("org", "create", "--name", "Acme", "--admin-email", "a@acme.example.com")
    assert created.exit_code == 0, created.output
    found = re.search(r"created: (\S+)", created.stdout)
    assert found
    org_id = found.group(1)
    result = cli(
        "org",
        "update",
        org_id,
        "--support-level",
        "enterprise",
        "--add-package",
        "vod",
        "--add-package",
        "transcoding",
        "--trial",
    )
    assert result.exit_code == 0, result.output
    assert "support enterprise" in result.stdout and "trial yes" in result.stdout
    removed = cli("org", "update", org_id, "--remove-package", "vod", "--no-trial")
    assert (
        removed.exit_code == 0 and "packages transcoding" in removed.stdout and "trial no" in removed.stdout
    )

    assert cli("org", "update", org_id, "--package", "vod", "--add-package", "x").exit_code == 2
    bad = cli("org", "update", org_id, "--analytics-level", "galactic")
    assert bad.exit_code == 2 and "unknown analytics level" in bad.stderr
    assert cli("org", "update", "not-an-id", "--trial").exit_code == 2

    async def audit_actors() -> list[tuple[str, str]]:
        database = Database(Settings(var_dir=var_dir).effective_database_url)
        async with database.session() as session:
            rows = (await session.execute(select(AuditEntry.actor, AuditEntry.action))).all()
        await database.dispose()
        return [(actor, action) for actor, action in rows]

    assert asyncio.run(audit_actors()) == [("operator", "organisation.updated")] * 2


def test_operator_schema_levels_match_the_model() -> None:
    assert get_args(SupportLevel) == SUPPORT_LEVELS
    assert get_args(AnalyticsLevel) == ANALYTICS_LEVELS
