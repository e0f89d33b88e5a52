from __future__ import annotations

import re

import pytest

from streamward.authz.permissions import PREDEFINED_ROLES
from tests.conftest import Env


@pytest.mark.parametrize("role", list(PREDEFINED_ROLES))
async def test_every_predefined_role_reads_its_organisation(env: Env, role: str) -> None:
    org = await env.org(
        "Acme",
        packages=["secure_playback", "live_processing.recording"],
        support_level="premium",
        analytics_level="full",
        trial=True,
    )
    member = await env.member(org, role)
    response = await env.client.get("/api/organisation", headers=member.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == str(org.id)
    assert body["name"] == "Acme"
    assert (body["supportLevel"], body["analyticsLevel"], body["trial"]) == ("premium", "full", True)
    assert body["webhook"] is None
    assert body["vodPublic"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["createdAt"])
    packages = {p["key"]: p for p in body["packages"]}
    assert list(packages) == [
        "live_processing",
        "h5live_player",
        "webcaster",
        "transcoding",
        "secure_playback",
        "vod",
        "metadata",
    ]
    assert packages["secure_playback"]["enabled"] is True
    assert packages["vod"]["enabled"] is False
    live = packages["live_processing"]
    assert live["enabled"] is True  # a sub-feature implies its package
    assert {f["key"]: f["enabled"] for f in live["features"]} == {
        "live_processing.thumbnail": False,
        "live_processing.motion_clip": False,
        "live_processing.recording": True,
        "live_processing.live_replay": False,
    }
    # No secrets in the organisation view.
    assert org.api_key not in response.text


async def test_without_credentials_401(env: Env) -> None:
    response = await env.client.get("/api/organisation")
    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "unauthenticated", "message": response.json()["error"]["message"]}
    }


async def test_another_organisations_user_sees_only_their_own(env: Env) -> None:
    mine, theirs = await env.org("Mine"), await env.org("Theirs")
    stranger = await env.member(theirs, "nanoAdmin")
    response = await env.client.get("/api/organisation", headers=stranger.headers)
    assert response.json()["id"] == str(theirs.id)
    # No way to name another organisation: an organisation query parameter is ignored, not honoured.
    response = await env.client.get(f"/api/organisation?organisation={mine.id}", headers=stranger.headers)
    assert response.json()["id"] == str(theirs.id)
    assert "Mine" not in response.text


async def test_role_without_org_read_is_refused(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "someUnknownRole")
    response = await env.client.get("/api/organisation", headers=member.headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
