"""HSTS on HTTPS responses only; mails of the development (console) backend go to private files,
never to the log; the SQLite database, its folder and its WAL files are private to this user."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import httpx
import pytest

from streamward.config import Settings
from streamward.db import Database
from streamward.migrate import upgrade
from tests.conftest import TEST_SECRET, Env
from tests.support.mail import mailed_reset_links

HSTS = "max-age=31536000; includeSubDomains"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def over_https(env: Env) -> httpx.AsyncClient:
    """The same app reached as https://: what a TLS-terminating server (uvicorn --ssl-*) hands it."""
    return httpx.AsyncClient(transport=env.client._transport, base_url="https://testserver")


@pytest.mark.parametrize("path", ["/login", "/api/organisation", "/static/app.css", "/no-such-page"])
async def test_hsts_on_https_responses_only(env: Env, path: str) -> None:
    async with over_https(env) as secure:
        response = await secure.get(path)
    assert response.headers["strict-transport-security"] == HSTS
    plain = await env.client.get(path)
    assert plain.status_code == response.status_code
    assert "strict-transport-security" not in plain.headers


async def test_a_reset_request_logs_no_token_and_files_the_mail_privately(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    org = await env.org()
    user = await env.member(org, "nanoUser", email="forgetful@example.com", token=False)
    response = await env.client.post("/api/user/password/reset", json={"email": user.email})
    assert response.status_code == 202
    [(link, token)] = mailed_reset_links(env)
    assert token not in caplog.text and "/password/reset/" not in caplog.text
    # The log says who got what, and where the mail is.
    folder = env.settings.var_dir / "mail"
    [filed] = list(folder.iterdir())
    assert "forgetful@example.com" in caplog.text and str(filed) in caplog.text
    assert (mode_of(folder), mode_of(filed)) == (0o700, 0o600)
    # The filed link works.
    assert link.startswith(env.settings.base_url)
    done = await env.client.post(
        f"/api/user/password/reset/{token}", json={"password": "a completely new passphrase"}
    )
    assert done.status_code == 204, done.text


def test_the_sqlite_database_is_created_private(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    database_file = var_dir / "streamward.db"
    upgrade(f"sqlite+aiosqlite:///{database_file}")
    assert (mode_of(var_dir), mode_of(database_file)) == (0o700, 0o600)


async def test_the_default_database_and_its_wal_files_are_private(tmp_path: Path) -> None:
    """The app's own engine creating the default SQLite file (no migration run first)."""
    settings = Settings(var_dir=tmp_path / "var", secret_key=TEST_SECRET)
    database = Database(settings.effective_database_url)
    try:
        async with database.session() as session:
            await session.connection()  # opens the file, switches it to WAL
            await session.commit()
        var_dir = settings.var_dir
        files = {path.name: mode_of(path) for path in var_dir.iterdir()}
        assert files["streamward.db"] == 0o600
        assert files.get("streamward.db-wal", 0o600) == 0o600
        assert files.get("streamward.db-shm", 0o600) == 0o600
        assert "streamward.db-wal" in files or "streamward.db-shm" in files
        assert mode_of(var_dir) == 0o700
    finally:
        await database.dispose()


def test_the_generated_secret_key_lives_in_a_private_folder(tmp_path: Path) -> None:
    var_dir = tmp_path / "fresh" / "var"
    _ = Settings(var_dir=var_dir).secret_key_bytes
    assert (mode_of(var_dir), mode_of(var_dir / "secret_key")) == (0o700, 0o600)
