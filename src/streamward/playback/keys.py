"""Playback signing keys: one active Ed25519 key per organisation signs; retired keys keep verifying.

Created on an organisation's first token. A rotation retires the active key (its tokens stay valid
until they expire) or, with ``revoke_old``, revokes every older key (their tokens stop at once).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from sqlalchemy import Select, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record, record_change
from streamward.crypto import SecretBox
from streamward.db import LookupSource, lookup_reader, utcnow
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


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    """What checking a signature needs of a key: its public half and its organisation. Neither
    ever changes for a kid (a rotation makes a new key), so a process may keep them; whether the
    key was revoked changes, and is read from the database at every verify."""

    kid: str
    organisation_id: uuid.UUID
    public_key: Ed25519PublicKey


# Per process, bounded: a verifier sees the keys of the organisations whose players it serves.
MAX_VERIFYING_KEYS = 1024
_verifying_keys: OrderedDict[str, VerifyingKey] = OrderedDict()
_VERIFYING_KEY = select(PlaybackSigningKey.organisation_id, PlaybackSigningKey.public_key).where(
    PlaybackSigningKey.kid == bindparam("kid")
)


# The same for asyncpg itself, on the look-up pool (a reading request on PostgreSQL opens no session).
_RAW_VERIFYING_KEY_SQL = str(
    _VERIFYING_KEY.compile(dialect=postgresql.asyncpg.dialect())  # type: ignore[no-untyped-call]
)


async def verifying_key(source: LookupSource, kid: str) -> VerifyingKey | None:
    """The key ``kid`` names, read once per process; None when there is no such key (not kept: a
    key created later must verify at once)."""
    key = _verifying_keys.get(kid)
    if key is not None:
        _verifying_keys.move_to_end(kid)
        return key
    reader = await lookup_reader(source)
    if reader is not None:
        row = await reader.fetchrow(_RAW_VERIFYING_KEY_SQL, kid)
    else:
        assert isinstance(source, AsyncSession)  # lookup_reader answers None only for a session
        row = (await source.execute(_VERIFYING_KEY, {"kid": kid})).one_or_none()
    if row is None:
        return None
    organisation_id, public_key = row
    key = VerifyingKey(kid, organisation_id, Ed25519PublicKey.from_public_bytes(_b64url_decode(public_key)))
    _verifying_keys[kid] = key
    if len(_verifying_keys) > MAX_VERIFYING_KEYS:
        _verifying_keys.popitem(last=False)
    return key


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
