"""Housekeeping: what has expired goes, batch by batch; what still means something stays, and the
audit log is never touched. Checked through the API where the API shows it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from streamward.audit.models import AuditEntry
from streamward.authn.models import BintuSession, PasswordReset
from streamward.authn.service import issue_token
from streamward.db import utcnow
from streamward.events.models import OutboxEvent, WebhookDelivery
from streamward.events.outbox import emit
from streamward.housekeeping import purge
from streamward.invites.models import Invitation
from streamward.playback.models import PlaybackRevocation
from streamward.playback.service import REVOCATION_KEPT_AFTER_EXP_SECONDS
from streamward.worker import DeliveryWorker, WorkerOptions
from tests.conftest import TEST_SECRET, CreatedOrg, Env, Member

RETENTION_DAYS = 30
DAY = timedelta(days=1)


async def expired_sessions(env: Env, member: Member, count: int, *, ago: timedelta = DAY) -> None:
    async with env.runtime.database.session() as session:
        for _ in range(count):
            issued = await issue_token(session, member.membership, timedelta(hours=1))
            issued.session.expires_at = utcnow() - ago
        await session.commit()


async def count(env: Env, model: Any) -> int:
    async with env.runtime.database.session(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def invite(env: Env, admin: Member, *, expires: timedelta, state: str = "pending") -> str:
    response = await env.client.post("/api/user/invite", json={"role": "nanoUser"}, headers=admin.headers)
    assert response.status_code in (200, 201), response.text
    invite_id = response.json()["id"]
    values: dict[str, Any] = {"expires_at": utcnow() + expires}
    if state == "accepted":
        values["accepted_at"] = utcnow() - 40 * DAY
    if state == "revoked":
        values["revoked_at"] = utcnow() - 40 * DAY
    async with env.runtime.database.session() as session:
        await session.execute(
            update(Invitation).where(Invitation.id == uuid.UUID(invite_id)).values(**values)
        )
        await session.commit()
    return str(invite_id)


async def finished_event(
    env: Env, org: CreatedOrg, status: str, *, last_attempt: timedelta, attempts: int
) -> uuid.UUID:
    """An event in ``status`` whose last attempt was scheduled ``last_attempt`` ago, with its log."""
    async with env.runtime.database.session() as session:
        event = emit(session, "user.invited", {"n": 1}, organisation_id=org.id)
        event.status = status
        event.next_attempt_at = utcnow() - last_attempt
        await session.flush()
        for attempt in range(1, attempts + 1):
            session.add(
                WebhookDelivery(
                    organisation_id=org.id,
                    event_id=event.id,
                    event_type=event.type,
                    attempt=attempt,
                    status="failed",
                    response_code=500,
                    url="https://hooks.example.com/",
                )
            )
        await session.commit()
    return event.id


async def test_purge_removes_what_expired_keeps_the_rest_and_never_the_audit_log(env: Env) -> None:
    now = utcnow()
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")

    # Sessions: five expired (more than one batch), the admin's own stays usable.
    await expired_sessions(env, admin, 5)

    # Reset links: expired; used long enough ago; used just now (still counts for the mail interval);
    # valid and unused.
    async with env.runtime.database.session() as session:
        for token, expires, used in (
            ("expired", now - timedelta(minutes=1), None),
            ("used-long-ago", now + timedelta(minutes=30), now - timedelta(minutes=5)),
            ("used-just-now", now + timedelta(minutes=30), now - timedelta(seconds=10)),
            ("valid", now + timedelta(minutes=30), None),
        ):
            session.add(
                PasswordReset(
                    account_id=admin.account.id,
                    token_hash=token.ljust(64, "0"),
                    created_at=now - timedelta(minutes=30),
                    expires_at=expires,
                    used_at=used,
                )
            )
        # Revocations: one past the playback service's keep rule, one still inside it.
        kept = timedelta(seconds=REVOCATION_KEPT_AFTER_EXP_SECONDS)
        session.add(
            PlaybackRevocation(jti="forgettable", organisation_id=org.id, expires_at=now - kept - DAY)
        )
        session.add(
            PlaybackRevocation(
                jti="still-needed", organisation_id=org.id, expires_at=now - kept + timedelta(seconds=5)
            )
        )
        await session.commit()

    # Invitations: expired beyond the retention (goes), revoked and long expired (goes), recently
    # expired (stays, still listed as expired), accepted long ago (stays), pending (stays).
    old_expired = await invite(env, admin, expires=-(RETENTION_DAYS + 1) * DAY)
    old_revoked = await invite(env, admin, expires=-(RETENTION_DAYS + 10) * DAY, state="revoked")
    recent_expired = await invite(env, admin, expires=-DAY)
    accepted = await invite(env, admin, expires=-(RETENTION_DAYS + 10) * DAY, state="accepted")
    pending = await invite(env, admin, expires=7 * DAY)

    # Events: finished long ago go with their delivery log; recent or unfinished ones stay.
    old = (RETENTION_DAYS + 1) * DAY
    gone = [
        await finished_event(env, org, "delivered", last_attempt=old, attempts=2),
        await finished_event(env, org, "failed", last_attempt=old, attempts=1),
        await finished_event(env, org, "skipped", last_attempt=old, attempts=0),
    ]
    recent = await finished_event(env, org, "delivered", last_attempt=DAY, attempts=1)
    retrying = await finished_event(env, org, "pending", last_attempt=old, attempts=1)

    audit_before = await count(env, AuditEntry)
    assert audit_before > 0

    counts = await purge(env.runtime.database, retention_days=RETENTION_DAYS, batch_size=2, now=now)
    assert counts == {
        "sessions": 5,
        "password reset links": 2,
        "login challenges": 0,
        "playback revocations": 1,
        "invitations": 2,
        "outbox events": 3,
        "webhook deliveries": 3,
    }
    assert await count(env, AuditEntry) == audit_before

    # What a client sees afterwards.
    assert (await env.client.get("/api/organisation", headers=admin.headers)).status_code == 200
    listed = await env.client.get("/api/user/invite?limit=200", headers=admin.headers)
    assert listed.status_code == 200, listed.text
    assert {item["id"] for item in listed.json()["items"]} == {recent_expired, accepted, pending}
    expired = await env.client.get("/api/user/invite?status=expired", headers=admin.headers)
    assert [item["id"] for item in expired.json()["items"]] == [recent_expired]
    deliveries = await env.client.get("/api/organisation/webhook/deliveries", headers=admin.headers)
    assert {item["eventId"] for item in deliveries.json()["items"]} == {str(recent), str(retrying)}
    assert old_expired not in {item["id"] for item in listed.json()["items"]}
    assert old_revoked not in {item["id"] for item in listed.json()["items"]}

    async with env.runtime.database.session(write=False) as session:
        jtis = set((await session.execute(select(PlaybackRevocation.jti))).scalars())
        links = set((await session.execute(select(PasswordReset.token_hash))).scalars())
        events = set((await session.execute(select(OutboxEvent.id))).scalars())
    assert jtis == {"still-needed"}
    assert {link.rstrip("0") for link in links} == {"used-just-now", "valid"}
    assert not events & set(gone)

    # A second run finds nothing.
    again = await purge(env.runtime.database, retention_days=RETENTION_DAYS, now=now)
    assert not any(again.values())


async def test_the_delivery_worker_purges_every_interval(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    await expired_sessions(env, admin, 3)
    assert await count(env, BintuSession) == 4
    stop = asyncio.Event()
    worker = DeliveryWorker(
        env.runtime.database,
        env.runtime.secret_box,
        env.runtime.egress,
        WorkerOptions(poll_interval_seconds=0.05, housekeeping_interval_seconds=0.05),
    )
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(10):
            while await count(env, BintuSession) != 1:  # noqa: ASYNC110 - the worker's progress is in the database
                await asyncio.sleep(0.05)
        await expired_sessions(env, admin, 2)  # and again, one interval later
        async with asyncio.timeout(10):
            while await count(env, BintuSession) != 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert (await env.client.get("/api/organisation", headers=admin.headers)).status_code == 200


def cli_env(env: Env, var_dir: Path) -> dict[str, str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith("STREAMWARD_") and k != "DATABASE_URL"}
    child |= {
        "STREAMWARD_DATABASE_URL": env.runtime.database.url,
        "STREAMWARD_SECRET_KEY": TEST_SECRET,
        "STREAMWARD_VAR_DIR": str(var_dir),
        "STREAMWARD_LOG_LEVEL": "warning",
    }
    return child


async def test_cli_housekeeping_prints_counts_per_kind(env: Env, tmp_path: Path) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    await expired_sessions(env, admin, 3)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "streamward", "housekeeping"],
        env=cli_env(env, tmp_path / "var"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.rsplit(None, 1) for line in result.stdout.splitlines())
    assert {name.strip(): int(value) for name, value in lines.items()} == {
        "sessions": 3,
        "password reset links": 0,
        "login challenges": 0,
        "playback revocations": 0,
        "invitations": 0,
        "outbox events": 0,
        "webhook deliveries": 0,
    }
    assert await count(env, BintuSession) == 1


@pytest.mark.postgres_only
async def test_purge_skips_rows_another_transaction_holds_and_never_waits(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    await expired_sessions(env, admin, 4)
    async with env.runtime.database.session(write=False) as session:
        held_id = await session.scalar(
            select(BintuSession.id).where(BintuSession.expires_at < utcnow()).limit(1)
        )
    async with env.runtime.database.session() as holder:
        # A request holding one of the expired rows (as a row lock) while the purge runs.
        await holder.execute(text("SELECT id FROM session WHERE id = :id FOR UPDATE"), {"id": held_id})
        async with asyncio.timeout(10):  # waiting on the lock would hang here until the holder ends
            counts = await purge(env.runtime.database, retention_days=RETENTION_DAYS, batch_size=2)
        assert counts["sessions"] == 3
        await holder.rollback()
    async with env.runtime.database.session(write=False) as session:
        left = set((await session.execute(select(BintuSession.id))).scalars())
    assert held_id in left and len(left) == 2  # the held row and the admin's live session
    counts = await purge(env.runtime.database, retention_days=RETENTION_DAYS)
    assert counts["sessions"] == 1
