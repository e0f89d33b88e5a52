"""Rules the invitation service holds once, whatever the surface: how long an invitation link may
work, and which roles may be offered."""

from __future__ import annotations

import pytest

from streamward.invites.service import InvalidInviteLifetime, invitation_lifetime
from tests.conftest import Env
from tests.support.pages import csrf_of, signed_in


@pytest.mark.parametrize("days", [0, 31, -1])
def test_the_service_refuses_a_lifetime_out_of_range_as_the_api_does(days: int) -> None:
    with pytest.raises(InvalidInviteLifetime) as refused:
        invitation_lifetime(days)
    assert (refused.value.status_code, refused.value.code) == (422, "validation_error")


async def test_the_invite_form_answers_the_services_lifetime_refusal(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin", token=False)
    dashboard = await signed_in(env, admin)
    try:
        for days in ("0", "31", "a week"):
            form = await dashboard.get("/organisation/users/invite")
            refused = await dashboard.post(
                "/organisation/users/invite",
                data={"csrf_token": csrf_of(form.text), "role": "nanoUser", "expires_in_days": days},
            )
            assert refused.status_code == 422, (days, refused.text)
            assert InvalidInviteLifetime.message in refused.text
            assert f'value="{days}"' in refused.text  # what was typed stays in the form
        listed = await env.client.get("/api/user/invite", headers=org.api_headers)
        assert listed.json()["items"] == []

        form = await dashboard.get("/organisation/users/invite")
        made = await dashboard.post(
            "/organisation/users/invite",
            data={"csrf_token": csrf_of(form.text), "role": "nanoUser", "expires_in_days": "30"},
        )
        assert made.status_code == 303, made.text
    finally:
        await dashboard.aclose()


async def test_the_invite_form_offers_only_roles_the_viewer_may_grant(env: Env) -> None:
    org = await env.org()
    recruiter_permissions = ["user:read", "user:invite", "stream:read"]
    created = await env.client.post(
        "/api/permission",
        json={"name": "recruiter", "description": "", "permissions": recruiter_permissions},
        headers=org.api_headers,
    )
    assert created.status_code == 201, created.text
    recruiter = await env.member(org, "recruiter", token=False)
    dashboard = await signed_in(env, recruiter)
    try:
        form = (await dashboard.get("/organisation/users/invite")).text
        assert '<option value="recruiter"' in form  # its own role: the viewer holds all of it
        assert '<option value="nanoAdmin"' not in form and '<option value="nanoUser"' not in form
    finally:
        await dashboard.aclose()
