"""Recovery codes: ten single-use codes that stand in for a lost second factor.

A code is 10 characters of Crockford's base32 (50 random bits), shown as ``xxxxx-xxxxx``; what
someone types is compared normalised (case, dashes and spaces ignored; ``o`` read as ``0``, ``i``
and ``l`` as ``1``). Only an HMAC-SHA256 of each code is stored, keyed from the secret key: 50
random bits need no password hash (and a login must not pay a second argon2 run), and without the
key a copy of the table does not let anyone test guesses offline. A code is used up by one
conditional UPDATE whose row count decides, so of concurrent uses of one code exactly one wins.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authn.mfa.models import RecoveryCode
from streamward.db import new_id, utcnow

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32: no i, l, o, u
CODE_COUNT = 10
CODE_LENGTH = 10
_READ_AS = str.maketrans({"o": "0", "i": "1", "l": "1"})
_IGNORED = str.maketrans("", "", "- \t\r\n")

# The HMAC key, derived from the secret key once per process (``use_secret_key``, called by
# create_app like the other settings the services read as process state): the code paths that
# create codes (the first factor of an account, whichever kind) must not all carry the settings.
_key: bytes | None = None


def use_secret_key(secret_key: bytes) -> None:
    global _key
    _key = hmac.new(secret_key, b"streamward/recovery-codes", hashlib.sha256).digest()


def _hash_key() -> bytes:
    if _key is None:
        raise RuntimeError("recovery codes need the secret key: call recovery.use_secret_key first")
    return _key


def _new_raw_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def shown(raw: str) -> str:
    """A code as it is shown: two groups of five."""
    return f"{raw[:5]}-{raw[5:]}"


def normalised(code: str) -> str | None:
    """The code's 10 characters as stored, or None when what was typed cannot be a code."""
    text = code.translate(_IGNORED).lower().translate(_READ_AS)
    if len(text) != CODE_LENGTH or any(char not in ALPHABET for char in text):
        return None
    return text


def code_hash(account_id: uuid.UUID, code: str) -> str:
    """The stored digest of a normalised code; the account is part of it, so equal codes of two
    accounts are unrelated rows."""
    message = f"{account_id}:{code}".encode()
    return hmac.new(_hash_key(), message, hashlib.sha256).hexdigest()


async def replace_codes(session: AsyncSession, account_id: uuid.UUID) -> list[str]:
    """Ten new codes for the account, every previous one gone; the codes are returned once and
    never again."""
    raw_codes = [_new_raw_code() for _ in range(CODE_COUNT)]
    await forget(session, account_id)
    now = utcnow()
    await session.execute(
        insert(RecoveryCode),
        [
            {
                "id": new_id(),
                "account_id": account_id,
                "code_hash": code_hash(account_id, raw),
                "created_at": now,
            }
            for raw in raw_codes
        ],
    )
    return [shown(raw) for raw in raw_codes]


async def forget(session: AsyncSession, account_id: uuid.UUID) -> None:
    await session.execute(
        delete(RecoveryCode)
        .where(RecoveryCode.account_id == account_id)
        .execution_options(synchronize_session=False)
    )


async def use_code(session: AsyncSession, account_id: uuid.UUID, code: str) -> bool:
    """Whether ``code`` was an unused code of the account; it is used up if it was."""
    text = normalised(code)
    if text is None:
        return False
    result = await session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.account_id == account_id,
            RecoveryCode.code_hash == code_hash(account_id, text),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def remaining(session: AsyncSession, account_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.account_id == account_id, RecoveryCode.used_at.is_(None))
    )
    return int(count or 0)
