from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from streamward.config import Settings, SettingsError, load_settings


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STREAMWARD_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.effective_database_url == "sqlite+aiosqlite:///var/streamward.db"
    assert settings.session_lifetime_seconds == 86400
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.operator_token is None


def test_postgres_urls_are_normalised_to_asyncpg() -> None:
    settings = Settings(database_url="postgresql://u@h/db")
    assert settings.effective_database_url == "postgresql+asyncpg://u@h/db"
    assert not settings.is_sqlite


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"STREAMWARD_PORT": "eighty"}, "STREAMWARD_PORT"),
        ({"STREAMWARD_PORT": "70000"}, "STREAMWARD_PORT"),
        ({"STREAMWARD_DATABASE_URL": "mysql://x/y"}, "unsupported database"),
        ({"STREAMWARD_SECRET_KEY": "short"}, "at least 32"),
        ({"STREAMWARD_SESSION_LIFETIME_SECONDS": "5"}, "STREAMWARD_SESSION_LIFETIME_SECONDS"),
        ({"STREAMWARD_PUBLIC_BASE_URL": "ftp://x"}, "http"),
    ],
)
def test_invalid_settings_are_one_line(
    env: dict[str, str], fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert fragment in message


def test_invalid_setting_stops_the_cli_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streamward", "db", "upgrade"],
        env={**os.environ, "STREAMWARD_PORT": "nope", "STREAMWARD_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "STREAMWARD_PORT" in result.stderr


def test_secret_key_generated_once_with_mode_0600(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = Settings(var_dir=tmp_path).secret_key_bytes
    path = tmp_path / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert "STREAMWARD_SECRET_KEY is not set" in caplog.text
    assert first.decode() not in caplog.text  # the key itself is never logged
    assert Settings(var_dir=tmp_path).secret_key_bytes == first
