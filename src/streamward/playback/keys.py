"""Playback signing keys: one active Ed25519 key per organisation signs; retired keys keep verifying.

Created on an organisation's first token. A rotation retires the active key (its tokens stay valid
until they expire) or, with ``revoke_old``, revokes every older key (their tokens stop at once).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from sqlalchemy import Select, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record, record_change
from streamward.crypto import SecretBox
from streamward.db import utcnow
from streamward.events.catalogue import EventType
from streamward.orgs.service import lock_organisation
from streamward.playback.models import PlaybackSigningKey

SIGNING_KEY_PURPOSE = "playback.signing_key"
# Slack added to a key's expiry bound, so that issuing tokens writes the bound at most once an hour.
EXPIRY_BOUND_SLACK = timedelta(hours=1)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_signing_key(box: SecretBox, organisation_id: uuid.UUID) -> PlaybackSigningKey:
    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    raw_public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PlaybackSigningKey(
        organisation_id=organisation_id,
        kid=secrets.token_urlsafe(16),
        public_key=_b64url(raw_public),
        private_key_sealed=box.seal(_b64url(raw_private), purpose=SIGNING_KEY_PURPOSE),
        created_at=utcnow(),
    )


def private_key_of(box: SecretBox, key: PlaybackSigningKey) -> Ed25519PrivateKey:
    raw = _b64url_decode(box.open(key.private_key_sealed, purpose=SIGNING_KEY_PURPOSE))
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_of(key: PlaybackSigningKey) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_b64url_decode(key.public_key))


def _active_key(organisation_id: uuid.UUID) -> Select[PlaybackSigningKey]:
    return (
        select(PlaybackSigningKey)
        .where(
            PlaybackSigningKey.organisation_id == organisation_id,
            PlaybackSigningKey.retired_at.is_(None),
            PlaybackSigningKey.revoked_at.is_(None),
        )
        .order_by(PlaybackSigningKey.id.desc())
        .limit(1)
    )


async def active_key(
    session: AsyncSession, box: SecretBox, organisation_id: uuid.UUID, *, actor: Actor
) -> PlaybackSigningKey:
    """The key that signs the organisation's tokens; created on first use."""
    statement = _active_key(organisation_id)
    key = (await session.execute(statement)).scalar_one_or_none()
    if key is not None:
        return key
    await lock_organisation(session, organisation_id)
    key = (await session.execute(statement)).scalar_one_or_none()  # created meanwhile?
    if key is not None:
        return key
    key = new_signing_key(box, organisation_id)
    session.add(key)
    await session.flush()
    record(
        session,
        actor,
        "playback.key_created",
        organisation_id=organisation_id,
        target_type="playback_key",
        target_id=key.kid,
    )
    return key


async def note_token_expiry(session: AsyncSession, key: PlaybackSigningKey, expires_at: datetime) -> None:
    """Keep ``tokens_expire_by`` at or after the expiry of every token the key signed."""
    await session.execute(
        update(PlaybackSigningKey)
        .where(
            PlaybackSigningKey.id == key.id,
            or_(
                PlaybackSigningKey.tokens_expire_by.is_(None),
                PlaybackSigningKey.tokens_expire_by < expires_at,
            ),
        )
        .values(tokens_expire_by=expires_at + EXPIRY_BOUND_SLACK)
        .execution_options(synchronize_session=False)
    )


async def key_for_kid(session: AsyncSession, kid: str) -> PlaybackSigningKey | None:
    statement = select(PlaybackSigningKey).where(PlaybackSigningKey.kid == kid)
    return (await session.execute(statement)).scalar_one_or_none()


async def published_keys(
    session: AsyncSession, organisation_id: uuid.UUID | None = None
) -> list[PlaybackSigningKey]:
    """Keys a verifier may need: active ones, and retired ones until their last token expires."""
    now = utcnow()
    statement = select(PlaybackSigningKey).where(
        PlaybackSigningKey.revoked_at.is_(None),
        or_(PlaybackSigningKey.retired_at.is_(None), PlaybackSigningKey.tokens_expire_by > now),
    )
    if organisation_id is not None:
        statement = statement.where(PlaybackSigningKey.organisation_id == organisation_id)
    return list((await session.execute(statement.order_by(PlaybackSigningKey.id))).scalars())


def jwk_of(key: PlaybackSigningKey) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": key.public_key, "kid": key.kid, "alg": "EdDSA", "use": "sig"}


@dataclass(frozen=True)
class Rotation:
    kid: str
    retired: list[str]
    revoked: list[str]


async def rotate(
    session: AsyncSession, box: SecretBox, organisation_id: uuid.UUID, *, revoke_old: bool, actor: Actor
) -> Rotation:
    await lock_organisation(session, organisation_id)
    now = utcnow()
    older = list(
        (
            await session.execute(
                select(PlaybackSigningKey).where(
                    PlaybackSigningKey.organisation_id == organisation_id,
                    PlaybackSigningKey.revoked_at.is_(None),
                )
            )
        ).scalars()
    )
    retired = [key for key in older if key.retired_at is None]
    for key in retired:
        key.retired_at = now
    if revoke_old:
        for key in older:
            key.revoked_at = now
    new_key = new_signing_key(box, organisation_id)
    session.add(new_key)
    await session.flush()
    rotation = Rotation(
        kid=new_key.kid,
        retired=[key.kid for key in retired],
        revoked=[key.kid for key in older] if revoke_old else [],
    )
    record_change(
        session,
        actor,
        "playback.keys_rotated",
        organisation_id=organisation_id,
        target_type="playback_key",
        target_id=new_key.kid,
        event=EventType.ORGANISATION_UPDATED,
        payload=EventType.ORGANISATION_UPDATED.payload(id=str(organisation_id), changed=["playbackKeys"]),
        after={"kid": rotation.kid, "retired": rotation.retired, "revoked": rotation.revoked},
    )
    return rotation
