"""Typed settings, read from the environment (prefix ``STREAMWARD_``) and an optional ``.env`` file."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

SECRET_KEY_FILE = "secret_key"
MIN_SECRET_KEY_LENGTH = 32

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated addresses and CIDR networks; an address is a network of one."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    return tuple(networks)


_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?|\[[0-9a-f:.]+\]")


def host_without_port(host: str) -> str:
    """A Host header value (or a host name) as compared: lower case, no port, no trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):  # [IPv6]:port
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0].rstrip(".") if ":" in host else host.rstrip(".")


def parse_origins(value: str) -> frozenset[str] | None:
    """``*`` (any origin: None) or a comma-separated list of origins (``scheme://host[:port]``)."""
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    if entries == ["*"]:
        return None
    origins = set()
    for entry in entries:
        parts = urlsplit(entry.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            raise ValueError(f"{entry!r} is not an origin like https://www.example.com (or use * alone)")
        origins.add(f"{parts.scheme}://{parts.netloc.lower()}")
    if not origins:
        raise ValueError("must be * or at least one origin")
    return frozenset(origins)


class SettingsError(Exception):
    """Settings that cannot be used; the message is one line meant for the operator."""


def _base_url(value: str, *schemes: str) -> str:
    if not value.startswith(tuple(f"{scheme}://" for scheme in schemes)):
        raise ValueError("must start with " + " or ".join(f"{scheme}://" for scheme in schemes))
    return value.rstrip("/")


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
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: readable lines; json: one JSON object per line (request id, route, status...).",
    )
    log_flush_seconds: Annotated[float, Field(ge=0, le=10)] = Field(
        default=0.5,
        description="Lines of INFO and below (access lines) are written in batches at most this late; "
        "warnings and errors at once. 0: every line as it comes.",
    )
    framework_telemetry: bool = Field(
        default=False,
        description="FastAPI's own OpenTelemetry spans, metrics and logs, to the providers configured in "
        "the process. Off: Streamward's metrics and access log stand, and requests skip FastAPI's check "
        "for configured providers (6 us each, about a sixth of a cached player read).",
    )
    # Login throttling: token buckets per client address and per account (failures only).
    login_rate_per_ip: Annotated[int, Field(ge=1)] = 30
    login_rate_per_ip_window_seconds: Annotated[int, Field(ge=1)] = 60
    login_failures_per_account: Annotated[int, Field(ge=1)] = 10
    login_failures_per_account_window_seconds: Annotated[int, Field(ge=1)] = 300
    trust_forwarded_for: bool = Field(
        default=False,
        description="Take client address and scheme from X-Forwarded-For / X-Forwarded-Proto, "
        "when the connection comes from one of trusted_proxies.",
    )
    trusted_proxies: str = Field(
        default="127.0.0.1,::1",
        description="Comma-separated addresses or CIDR networks of the proxies whose forwarded "
        "headers count (with trust_forwarded_for only).",
    )
    # PostgreSQL connections kept open per process. Sized to the concurrency one process serves: a
    # pool smaller than the load opens and closes overflow connections all the time (measured: 538
    # new connections in 12 s at 32 concurrent requests with 10 + 10 overflow). Four processes at
    # 20 (+5 overflow) stay within PostgreSQL's default max_connections of 100.
    db_pool_size: Annotated[int, Field(ge=1, le=200)] = 20
    ingest_rtmp_url: str = Field(
        default="rtmp://127.0.0.1:1935/live",
        description="RTMP URL that broadcasters publish to; a stream's ingest is this URL plus its name.",
    )
    playout_base_url: str = Field(
        default="http://127.0.0.1:8080/live",
        description="Base of playout (HLS) URLs: <base>/<stream name>/index.m3u8.",
    )
    # What players are told (the bintu stream object's `playout`); the media servers' addresses.
    playout_rtmp_url: str = Field(
        default="rtmp://127.0.0.1:1935/live",
        description="RTMP playout base; a rendition plays at this URL with its stream name.",
    )
    h5live_websocket_url: str = Field(
        default="ws://127.0.0.1:8080/h5live/stream",
        description="H5Live server's WebSocket endpoint (playout.h5live[].server.websocket).",
    )
    h5live_hls_url: str = Field(
        default="http://127.0.0.1:8080/h5live/http/playlist.m3u8",
        description="H5Live server's HLS endpoint (playout.h5live[].server.hls).",
    )
    h5live_progressive_url: str = Field(
        default="http://127.0.0.1:8080/h5live/http/stream.mp4",
        description="H5Live server's progressive endpoint (playout.h5live[].server.progressive).",
    )
    web_player_url: str = Field(
        default="http://127.0.0.1:8080/player",
        description="Web player page; playout.web[] links to it with ?streamname=<name>.",
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
    # Housekeeping: what is purged and how often the delivery worker does it (0: only by the CLI).
    retention_days: Annotated[int, Field(ge=1, le=3650)] = Field(
        default=30,
        description="Finished outbox events (with their delivery log) and long-expired invitations "
        "are kept this many days.",
    )
    housekeeping_interval_seconds: Annotated[float, Field(ge=0, le=86400)] = Field(
        default=300.0, description="How often the delivery worker purges what has expired; 0: never."
    )
    # Graceful shutdown: how long requests in flight may run on after SIGTERM (uvicorn's limit).
    shutdown_grace_seconds: Annotated[int, Field(ge=0, le=3600)] = 30
    # Media-server ingest (publish / update_publish / publish_done); off while no secret is set.
    ingest_secret: SecretStr | None = None
    publish_webhook_timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 2.0
    # bintu clients: the API at the bare root of a host name and/or a port of its own (their base URL
    # cannot carry /api), and the origins whose browser pages may call the API (CORS).
    bintu_root_host: str | None = Field(
        default=None, description="Host name (Host header, any port) whose root serves the bintu API."
    )
    bintu_root_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        default=None, description="`streamward serve` also listens here, serving the bintu API at the root."
    )
    cors_allowed_origins: str = Field(
        default="*", description="Origins whose browser pages may call the API: * or a comma-separated list."
    )
    allowed_special_email_domains: str = Field(
        default="",
        description="Special-use top-level domains (RFC 6761/6762: local, test, ...) admitted in account and "
        "invitation emails, comma-separated: intranet addresses like ops@streams.local.",
    )
    # Rate limits shared by every process (login, password reset, links, API-key checks); unset: each
    # process keeps its own, which is right for a single process only.
    redis_url: SecretStr | None = Field(
        default=None,
        description="redis://[:password@]host[:port][/db] (or rediss://, unix://) holding the rate limits.",
    )
    redis_key_prefix: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        default="streamward:", description="Prefix of every Redis key Streamward writes."
    )

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

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        parse_networks(value)  # refuse a bad entry at start-up, naming it
        return ",".join(part.strip() for part in value.split(",") if part.strip())

    @field_validator("public_base_url")
    @classmethod
    def _http_base(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    # Media-server addresses: a base URL of the right scheme, kept without a trailing slash.
    @field_validator("ingest_rtmp_url", "playout_rtmp_url")
    @classmethod
    def _rtmp_url(cls, value: str) -> str:
        return _base_url(value, "rtmp", "rtmps")

    @field_validator("h5live_websocket_url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        return _base_url(value, "ws", "wss")

    @field_validator("playout_base_url", "h5live_hls_url", "h5live_progressive_url", "web_player_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _base_url(value, "http", "https")

    @field_validator("bintu_root_host")
    @classmethod
    def _root_host(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        name = host_without_port(value)
        if "/" in value or not _HOST_NAME.fullmatch(name):
            raise ValueError("must be a host name, like api.example.com")
        return name

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        parse_origins(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("allowed_special_email_domains")
    @classmethod
    def _special_email_domains(cls, value: str) -> str:
        labels = [part.strip().lower().lstrip(".") for part in value.split(",") if part.strip()]
        for label in labels:
            if not _DNS_LABEL.fullmatch(label):
                raise ValueError(f"{label!r} is not a top-level domain like local or test")
        return ",".join(labels)

    @property
    def special_email_domains(self) -> frozenset[str]:
        """The top-level domains of ``allowed_special_email_domains``, lower case."""
        return frozenset(filter(None, self.allowed_special_email_domains.split(",")))

    @property
    def cors_origins(self) -> frozenset[str] | None:
        """The allowed origins, normalised; None when any origin is allowed (``*``)."""
        return parse_origins(self.cors_allowed_origins)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.var_dir / 'streamward.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.trusted_proxies)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address in a URL
        return self.public_base_url or f"http://{host}:{self.port}"

    @cached_property
    def secret_key_bytes(self) -> bytes:
        """The secret key; generated once into ``var_dir`` (mode 0600) when none is configured."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.var_dir / SECRET_KEY_FILE
        if not path.exists():
            make_private_dir(self.var_dir)
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


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) readable by this user only: it holds the secret key,
    the SQLite database and development mails. An existing folder keeps its mode (the operator's)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


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
