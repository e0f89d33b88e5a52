"""Logs an operator can use: JSON lines, the request id everywhere, and never a secret."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter

from streamward.config import Settings
from streamward.logs import QUIET_LIBRARIES, BatchedStreamHandler, configure_logging, redact
from streamward.web.access import PUBLIC
from tests.conftest import TEST_SECRET, Env
from tests.support.data import create_stream, use_fake_dns
from tests.support.mail import mailed_reset_tokens

ADMIN_PASSWORD = "admin passphrase that must stay secret"


class CapturedLog:
    def __init__(self, stream: io.StringIO, handler: logging.Handler) -> None:
        self.stream, self.handler = stream, handler

    @property
    def text(self) -> str:
        self.handler.flush()  # what waits in the batch (as the writer thread would, within 0.5 s)
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["logger"] == "streamward.access"]


@pytest.fixture
def json_log() -> Iterator[CapturedLog]:
    """What ``streamward serve`` sets up with STREAMWARD_LOG_FORMAT=json, at DEBUG, into a buffer."""
    root = logging.getLogger()
    saved_level = root.level
    saved_levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    stream = io.StringIO()
    settings = Settings(log_format="json", log_level="debug", secret_key=TEST_SECRET)  # type: ignore[arg-type]
    handler = configure_logging(settings, stream=stream)
    try:
        yield CapturedLog(stream, handler)
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


async def test_json_lines_with_the_access_line_of_each_request(env: Env, json_log: CapturedLog) -> None:
    org = await env.org()
    admin = await env.member(org)
    member = await env.member(org, "nanoUser", token=False)
    response = await env.client.get(f"/api/user/{member.id}?filter=secret-query", headers=admin.headers)
    assert response.status_code == 200

    lines = json_log.lines()
    assert lines, "nothing was logged"
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]) for line in lines)
    [access] = [line for line in json_log.access() if line["request_id"] == response.headers["x-request-id"]]
    assert access["level"] == "info"
    assert access["method"] == "GET"
    assert access["route"] == "/api/user/{user_id}"
    assert access["status"] == 200
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] >= 0
    assert access["organisation_id"] == str(org.id)
    # Neither the path's id nor the query string.
    assert str(member.id) not in json.dumps(access) and "secret-query" not in json_log.text


async def test_request_id_is_echoed_when_sane_and_generated_otherwise(env: Env) -> None:
    sane = "edge-1234.abc:DEF_5"
    echoed = await env.client.get("/healthz", headers={"X-Request-ID": sane})
    assert echoed.headers["x-request-id"] == sane
    longest = "a" * 128
    assert (await env.client.get("/healthz", headers={"X-Request-ID": longest})).headers[
        "x-request-id"
    ] == longest

    generated = set()
    for insane in (None, "", "a" * 129, "has space", "semi;colon", "new\tline", "ünïcode", "<script>"):
        headers = {"X-Request-ID": insane.encode()} if insane is not None else {}
        response = await env.client.get("/healthz", headers=headers)
        request_id = response.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id), (insane, request_id)
        generated.add(request_id)
    assert len(generated) == 8  # a new one each time

    # Refusals carry it too: unauthenticated, no such route, body too large.
    assert "x-request-id" in (await env.client.get("/api/organisation")).headers
    assert "x-request-id" in (await env.client.get("/api/nothing-here")).headers
    too_large = await env.client.post("/api/user/validate", content=b"x" * (1024 * 1024 + 1))
    assert too_large.status_code == 413 and "x-request-id" in too_large.headers


async def test_an_unexpected_failure_is_answered_and_logged_with_its_request_id(
    env: Env, json_log: CapturedLog
) -> None:
    router = APIRouter()

    @router.get("/api/boom/{token}", dependencies=[PUBLIC])
    async def boom(token: str) -> None:
        raise RuntimeError("internal detail")

    app = env.client._transport.app  # type: ignore[attr-defined]
    app.include_router(router)
    response = await env.client.get("/api/boom/swi_path-secret", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.headers["x-request-id"] == "boom-1"
    [failure] = [line for line in json_log.lines() if line.get("exception")]
    assert failure["request_id"] == "boom-1" and failure["route"] == "/api/boom/{token}"
    assert "RuntimeError: internal detail" in failure["exception"]
    [access] = json_log.access()
    assert access["status"] == 500
    assert "swi_path-secret" not in json_log.text


async def test_audit_entries_record_the_request_id(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org, login=True)
    created = await env.client.post(
        "/api/user/invite", json={"role": "nanoUser"}, headers=admin.headers | {"X-Request-ID": "trace-42"}
    )
    assert created.status_code == 201
    page = (await env.client.get("/api/audit?action=invite.created", headers=admin.headers)).json()
    [entry] = page["items"]
    assert entry["requestId"] == "trace-42"
    login = (await env.client.get("/api/audit?action=user.login", headers=admin.headers)).json()
    assert re.fullmatch(r"[0-9a-f]{32}", login["items"][0]["requestId"])  # generated for the login

    exported = await env.client.get("/api/audit?format=csv&action=invite.created", headers=admin.headers)
    [row] = list(csv.DictReader(io.StringIO(exported.text)))
    assert row["requestId"] == "trace-42"


async def test_no_secret_reaches_the_log_at_debug(
    env: Env, json_log: CapturedLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    use_fake_dns(env)
    org = await env.org(packages=["secure_playback"])
    admin = await env.member(org, email="admin@example.com", password=ADMIN_PASSWORD, login=True)
    assert admin.token
    seen: set[str] = {ADMIN_PASSWORD, admin.token, org.api_key}

    def secret(response: Any, *path: str) -> str:
        assert response.status_code in (200, 201), response.text
        value: Any = response.json()
        for key in path:
            value = value[key]
        assert isinstance(value, str) and value
        seen.add(value)
        return value

    api_key = secret(await env.client.get("/api/organisation/apikey", headers=admin.headers), "apiKey")
    rotated_key = secret(
        await env.client.post(
            "/api/organisation/apikey/rotate", json={"confirm": True}, headers=admin.headers
        ),
        "apiKey",
    )
    assert api_key == org.api_key and rotated_key != api_key
    invite = await env.client.post("/api/user/invite", json={"role": "nanoUser"}, headers=admin.headers)
    invite_token = secret(invite, "token")
    seen.add(invite.json()["url"])
    joined = await env.client.post(
        f"/api/invite/{invite_token}/accept",
        json={"email": "joiner@example.com", "password": "joiner passphrase kept secret"},
    )
    secret(joined, "token")
    seen.add("joiner passphrase kept secret")
    assert (
        await env.client.post("/api/user/password/reset", json={"email": "joiner@example.com"})
    ).status_code in (200, 202, 204)
    [reset_token] = mailed_reset_tokens(env)
    seen.add(reset_token)
    completed = await env.client.post(
        f"/api/user/password/reset/{reset_token}", json={"password": "reset passphrase kept secret"}
    )
    assert completed.status_code in (200, 204), completed.text
    seen.add("reset passphrase kept secret")
    webhook = await env.client.put(
        "/api/organisation/webhook", json={"webhook": "https://hooks.example.com/in"}, headers=admin.headers
    )
    secret(webhook, "secret")
    secret(
        await env.client.post(
            "/api/organisation/webhook/secret/rotate", json={"confirm": True}, headers=admin.headers
        ),
        "secret",
    )
    new_key_headers = {"X-BINTU-APIKEY": rotated_key}
    stream = await create_stream(env, type(org)(org.organisation, rotated_key))
    playback = await env.client.post(
        "/api/v1/splay", json={"streams": [stream["name"]]}, headers=new_key_headers
    )
    playback_token = secret(playback, "data", "token")
    verified = await env.client.post(
        "/api/v1/splay/verify", json={"token": playback_token, "stream": stream["name"]}
    )
    assert verified.status_code == 200 and verified.json()["data"]["valid"] is True

    written = json_log.text
    assert len(json_log.access()) >= 12, "the flow's requests were not logged"
    assert {"/api/invite/{token}/accept", "/api/user/password/reset/{token}"} <= {
        line["route"] for line in json_log.access()
    }
    leaked = sorted(value for value in seen if value in written)
    assert not leaked, f"secrets in the log output: {leaked}"
    # Not only masked on the way out: no log call was made with one (the masking is a last net).
    raw = "\n".join(record.getMessage() for record in caplog.records)
    assert not sorted(value for value in seen if value in raw)


def test_secrets_after_percent_encoded_separators_are_masked() -> None:
    """A link logged URL-encoded has no word boundary before the token ("%2Fswi_...")."""
    jwt = "eyJ" + "a" * 20 + ".eyJ" + "b" * 20 + "." + "c" * 20
    line = "next=%2Finvite%2Fswi_" + "A" * 40 + "&t=token%3D" + jwt
    masked = redact(line)
    assert "A" * 40 not in masked and "b" * 20 not in masked, masked


def test_line_times_are_what_logging_and_the_clock_say_across_seconds() -> None:
    """Both formats format a line's second once and keep it (#12): every line still carries its own
    time, to the millisecond, across second boundaries and back."""
    from datetime import UTC, datetime

    from streamward.logs import JsonFormatter, TextFormatter

    text, structured, reference = TextFormatter(), JsonFormatter(), logging.Formatter()
    for created in (
        1_700_000_000.999,
        1_700_000_001.0,
        1_700_000_001.5004,
        1_699_999_999.25,
        1_700_000_001.001,
    ):
        record = logging.LogRecord("streamward.access", logging.INFO, "", 0, "line", None, None)
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        assert text.formatTime(record) == reference.formatTime(record)
        # The line's second, and its milliseconds as logging reckons them (record.msecs, truncated).
        second = datetime.fromtimestamp(int(created), UTC)
        expected = second.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"
        assert json.loads(structured.format(record))["time"] == expected


def _configured(flush_seconds: float, stream: io.StringIO) -> logging.Handler:
    """The handler ``streamward serve`` would set up, driven directly, not through the root logger."""
    settings = Settings(log_flush_seconds=flush_seconds, secret_key=TEST_SECRET)  # type: ignore[arg-type]
    handler = configure_logging(settings, stream=stream)
    logging.getLogger().removeHandler(handler)
    return handler


@contextmanager
def _logging_to(handler: logging.Handler) -> Iterator[logging.Logger]:
    logger = logging.getLogger("streamward.test_batches")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_info_lines_are_written_in_batches_and_a_warning_at_once_in_order() -> None:
    """Access lines wait for the batch (one write for many); a warning writes what waits, then
    itself; closing (the process's exit) writes the rest."""
    stream = io.StringIO()
    handler = _configured(10, stream)
    with _logging_to(handler) as logger:
        logger.info("first")
        logger.info("second")
        assert stream.getvalue() == ""
        logger.warning("trouble")
        assert [line.split()[-1] for line in stream.getvalue().splitlines()] == ["first", "second", "trouble"]
        logger.info("last")
        handler.close()
        assert stream.getvalue().splitlines()[-1].endswith("last")


def test_a_batch_is_written_within_its_interval_without_more_lines() -> None:
    stream = io.StringIO()
    with _logging_to(_configured(0.05, stream)) as logger:
        logger.info("alone")
        deadline = time.monotonic() + 5
        while "alone" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "alone" in stream.getvalue()


def test_a_full_batch_is_written_at_once() -> None:
    stream = io.StringIO()
    with _logging_to(_configured(10, stream)) as logger:
        line = "x" * 1000
        for _ in range(70):  # 70 KB and more with each line's prefix: past the 64 KiB batch
            logger.info(line)
        written = stream.getvalue().count(line)
        assert 60 <= written < 70, written  # the full batch written; what came after it waits


def test_no_batches_when_the_interval_is_zero() -> None:
    stream = io.StringIO()
    handler = _configured(0, stream)
    with _logging_to(handler) as logger:
        logger.info("now")
        assert "now" in stream.getvalue()
        assert type(handler) is logging.StreamHandler


def test_a_forked_child_writes_its_own_lines_and_not_the_parents(tmp_path: Path) -> None:
    """What waited at the fork is the parent's to write; the child starts its own batches."""
    path = tmp_path / "log.txt"
    with path.open("w") as stream:
        handler = BatchedStreamHandler(stream, 10)
        handler.setFormatter(logging.Formatter("%(message)s"))
        with _logging_to(handler) as logger:
            logger.info("before the fork")
            child = os.fork()
            if child == 0:  # pragma: no cover (the child's coverage is not collected)
                try:
                    logger.info("in the child")
                    handler.close()
                finally:
                    os._exit(0)
            os.waitpid(child, 0)
    assert sorted(path.read_text().splitlines()) == ["before the fork", "in the child"]
