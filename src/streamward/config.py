"""Typed settings, read from the environment (prefix ``STREAMWARD_``) and an optional ``.env`` file."""

from __future__ import annotations

import logging
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

SECRET_KEY_FILE = "secret_key"
MIN_SECRET_KEY_LENGTH = 32


class SettingsError(Exception):
    """Settings that cannot be used; the message is one line meant for the operator."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STREAMWARD_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
    )

    var_dir: Path = Field(
        default=Path("var"), description="Folder for the SQLite file and the generated key."
    )
    database_url: str = Field(
        default="",
        validation_alias=AliasChoices("STREAMWARD_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="SQLAlchemy URL; sqlite or postgresql. Empty: a SQLite file under var_dir.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key material for encrypting revealable secrets. Unset: generated once into var_dir.",
    )
    session_lifetime_seconds: Annotated[int, Field(ge=60, le=366 * 86400)] = 86400
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    public_base_url: str = Field(default="", description="Base URL used in links. Empty: http://host:port.")
    operator_token: SecretStr | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Login throttling: token buckets per client address and per account (failures only).
    login_rate_per_ip: Annotated[int, Field(ge=1)] = 30
    login_rate_per_ip_window_seconds: Annotated[int, Field(ge=1)] = 60
    login_failures_per_account: Annotated[int, Field(ge=1)] = 10
    login_failures_per_account_window_seconds: Annotated[int, Field(ge=1)] = 300
    trust_forwarded_for: bool = Field(
        default=False,
        description="Take the client address from X-Forwarded-For (only behind a trusted proxy).",
    )
    db_pool_size: Annotated[int, Field(ge=1, le=200)] = 10
    ingest_rtmp_url: str = Field(
        default="rtmp://127.0.0.1:1935/live",
        description="RTMP URL that broadcasters publish to; a stream's ingest is this URL plus its name.",
    )
    playout_base_url: str = Field(
        default="http://127.0.0.1:8080/live",
        description="Base of playout (HLS) URLs: <base>/<stream name>/index.m3u8.",
    )
    # Outgoing mail (password reset links). "console" logs each message whole: for development only.
    mail_backend: Literal["console", "smtp"] = "console"
    smtp_host: str = "localhost"
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = Field(default=True, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_from: str = "Streamward <streamward@localhost>"
    # Webhooks and event delivery.
    allow_private_webhook_targets: bool = Field(
        default=False,
        description="Let webhooks reach loopback/private addresses (development and tests only).",
    )
    webhook_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 10.0
    run_worker: bool = Field(default=True, description="`streamward serve` also runs the delivery worker.")
    worker_poll_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 0.2
    worker_concurrency: Annotated[int, Field(ge=1, le=1000)] = 32
    worker_per_organisation_concurrency: Annotated[int, Field(ge=1, le=100)] = 4
    # Media-server ingest (publish / update_publish / publish_done); off while no secret is set.
    ingest_secret: SecretStr | None = None
    publish_webhook_timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 2.0

    @field_validator("database_url")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if not value:
            return value
        scheme = value.split("://", 1)[0]
        if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if scheme in ("sqlite", "sqlite+aiosqlite"):
            return "sqlite+aiosqlite://" + value.split("://", 1)[1]
        raise ValueError(f"unsupported database {scheme!r}: use a sqlite:// or postgresql:// URL")

    @field_validator("secret_key")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_KEY_LENGTH} characters")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _http_base(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("ingest_rtmp_url")
    @classmethod
    def _rtmp_url(cls, value: str) -> str:
        if not value.startswith(("rtmp://", "rtmps://")):
            raise ValueError("must start with rtmp:// or rtmps://")
        return value.rstrip("/")

    @field_validator("playout_base_url")
    @classmethod
    def _http_playout(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.var_dir / 'streamward.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def base_url(self) -> str:
        return self.public_base_url or f"http://{self.host}:{self.port}"

    @cached_property
    def secret_key_bytes(self) -> bytes:
        """The secret key; generated once into ``var_dir`` (mode 0600) when none is configured."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.var_dir / SECRET_KEY_FILE
        if not path.exists():
            self.var_dir.mkdir(parents=True, exist_ok=True)
            # O_EXCL: two processes starting at once must not both write a key.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_urlsafe(48))
                log.warning(
                    "STREAMWARD_SECRET_KEY is not set: generated one into %s; back it up, "
                    "encrypted secrets cannot be read without it",
                    path,
                )
        key = path.read_text().strip()
        if len(key) < MIN_SECRET_KEY_LENGTH:
            raise SettingsError(
                f"{path}: the stored secret key is shorter than {MIN_SECRET_KEY_LENGTH} characters"
            )
        return key.encode()


def load_settings(**overrides: object) -> Settings:
    """Read settings; on a bad value raise SettingsError with one line that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        name = field if field.isupper() else "STREAMWARD_" + field.upper()
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"invalid setting {name}: {message}") from None
