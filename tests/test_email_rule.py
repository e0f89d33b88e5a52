"""One rule for what an account or invitation email is, on every surface (JSON API, dashboard forms,
CLI), with a setting that admits special-use top-level domains (``.local``, ``.test``) for intranets.

The API used to refuse ``ops@streams.local`` through pydantic's EmailStr whatever the deployment
wanted; now the API's models, the dashboard's forms and ``streamward org create`` all call
``users.service.checked_email``, which reads STREAMWARD_ALLOWED_SPECIAL_EMAIL_DOMAINS.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streamward.config import Settings
from tests.conftest import PASSWORD, Env
from tests.support.pages import browser, csrf_of

INTRANET = {"allowed_special_email_domains": "Local, .test"}


async def invite(env: Env, email: str) -> Any:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    return await env.client.post(
        "/api/user/invite", json={"role": "nanoUser", "email": email}, headers=admin.headers
    )


def refused_field(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    body = response.json()["error"]
    assert body["code"] == "validation_error"
    return [detail["field"] for detail in body["details"]]


async def test_by_default_special_use_domains_are_refused_everywhere(env: Env) -> None:
    assert refused_field(await invite(env, "ops@streams.local")) == ["email"]
    assert refused_field(await invite(env, "ops@qa.test")) == ["email"]
    # An open invitation cannot be accepted with such an address either, by the API or the page.
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    issued = await env.client.post("/api/user/invite", json={"role": "nanoUser"}, headers=admin.headers)
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    accept = await env.client.post(
        f"/api/invite/{token}/accept", json={"email": "ops@streams.local", "password": PASSWORD}
    )
    assert refused_field(accept) == ["email"]
    page = browser(env)
    form = await page.get(f"/invite/{token}")
    joined = await page.post(
        f"/invite/{token}",
        data={
            "csrf_token": csrf_of(form.text),
            "mode": "signup",
            "email": "ops@streams.local",
            "password": PASSWORD,
        },
    )
    assert joined.status_code == 400, joined.text
    assert "not a valid email address" in joined.text
    # The invitation is still there to be used with a proper address.
    assert (await env.client.get(f"/api/invite/{token}")).status_code == 200


@pytest.mark.parametrize("settings_overrides", [INTRANET])
async def test_the_setting_admits_intranet_domains_on_the_api_and_the_dashboard(env: Env) -> None:
    issued = await invite(env, "Ops@Streams.LOCAL")
    assert issued.status_code == 201, issued.text
    assert issued.json()["email"] == "ops@streams.local"  # normalised as always
    joined = await env.client.post(
        f"/api/invite/{issued.json()['token']}/accept",
        json={"email": "ops@streams.local", "password": PASSWORD},
    )
    assert joined.status_code == 200, joined.text

    # The dashboard's invitation page, for an open invitation, with a .test address.
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    open_invite = await env.client.post("/api/user/invite", json={"role": "nanoUser"}, headers=admin.headers)
    token = open_invite.json()["token"]
    page = browser(env)
    form = await page.get(f"/invite/{token}")
    signed_up = await page.post(
        f"/invite/{token}",
        data={
            "csrf_token": csrf_of(form.text),
            "mode": "signup",
            "email": "qa@lab.test",
            "password": PASSWORD,
        },
    )
    assert signed_up.status_code == 303, signed_up.text
    users = await env.client.get("/api/user", headers=admin.headers)
    assert "qa@lab.test" in users.text

    # Only the named top-level domains, and the rest of the address is still checked.
    assert refused_field(await invite(env, "ops@streams.localhost")) == ["email"]
    assert refused_field(await invite(env, "ops@local")) == ["email"]  # no dot: not an address
    assert refused_field(await invite(env, "two@@streams.local")) == ["email"]
    assert refused_field(await invite(env, "ops@-bad-.local")) == ["email"]


def test_the_setting_names_top_level_domains() -> None:
    assert Settings(allowed_special_email_domains=" Local,,.TEST ").special_email_domains == {"local", "test"}
    assert Settings().special_email_domains == frozenset()
    with pytest.raises(ValidationError, match="not a top-level domain"):
        Settings(allowed_special_email_domains="local,corp.example")


def test_the_api_reference_still_says_email() -> None:
    from streamward.invites.schemas import InviteCreate

    schema = InviteCreate.model_json_schema()["properties"]["email"]["anyOf"][0]
    assert schema == {"type": "string", "format": "email", "minLength": 1, "maxLength": 320}


def _cli(var_dir: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMWARD_") and k != "DATABASE_URL"}
    env |= {"STREAMWARD_VAR_DIR": str(var_dir)} | extra_env
    return subprocess.run(
        [sys.executable, "-m", "streamward", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_cli_follows_the_same_rule(tmp_path: Path) -> None:
    create = ("org", "create", "--name", "Intranet", "--admin-email", "boss@corp.local")
    refused = _cli(tmp_path / "strict", *create, "--admin-password", PASSWORD)
    assert refused.returncode != 0
    assert "not a valid email address" in refused.stderr + refused.stdout
    admitted = _cli(
        tmp_path / "intranet",
        *create,
        "--admin-password",
        PASSWORD,
        STREAMWARD_ALLOWED_SPECIAL_EMAIL_DOMAINS="local",
    )
    assert admitted.returncode == 0, admitted.stderr
    assert re.search(r"admin boss@corp\.local can log in", admitted.stdout)
