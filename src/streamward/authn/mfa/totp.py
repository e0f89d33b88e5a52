"""Authenticator apps (RFC 6238): 30-second steps, 6 digits, SHA-1 (what every app supports).

A code is accepted for the current step or one step either side (clocks drift), and only for a step
later than the last one accepted for that factor: one conditional UPDATE of ``last_used_step``
decides, so a code seen once (or two concurrent uses of it) is accepted once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

import pyotp
import segno
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from streamward.authn.mfa.models import TOTP_SECRET_PURPOSE, TotpFactor
from streamward.crypto import SecretBox, same
from streamward.db import utcnow

PERIOD_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1  # steps accepted either side of the current one
ISSUER = "Streamward"

# The clock codes are judged by (seconds since the epoch). Tests move it, instead of waiting for the
# next 30-second step.
clock: Callable[[], float] = time.time


def new_secret() -> str:
    """160 random bits in base32 (RFC 4226's recommended key length), as apps take it."""
    return pyotp.random_base32()


def sealed(box: SecretBox, secret: str) -> str:
    return box.seal(secret, purpose=TOTP_SECRET_PURPOSE)


def provisioning_uri(secret: str, *, account_email: str, issuer: str = ISSUER) -> str:
    """The ``otpauth://`` URI an app scans: issuer and account name label the entry."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_SECONDS).provisioning_uri(
        name=account_email, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """The URI as a QR code in inline SVG markup (no image request, no script)."""
    return str(segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff"))


def normalised(code: str) -> str | None:
    """The six digits of what someone typed (spaces allowed, as apps show "123 456"), or None."""
    digits = "".join(code.split())
    if len(digits) != DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return digits


def current_step(now: float | None = None) -> int:
    return int((clock() if now is None else now) // PERIOD_SECONDS)


def matching_step(secret: str, code: str, *, after_step: int, now: float | None = None) -> int | None:
    """The step ``code`` belongs to among the current one and ``DRIFT_STEPS`` either side, provided
    it is later than ``after_step``; else None. Every candidate is compared (in constant time), so
    the time taken does not tell which step nearly matched."""
    digits = normalised(code)
    if digits is None:
        return None
    otp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_SECONDS)
    step = current_step(now)
    found = None
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        if same(otp.at(candidate * PERIOD_SECONDS), digits) and candidate > after_step and found is None:
            found = candidate
    return found


def matching_app(
    box: SecretBox, factors: Sequence[TotpFactor], code: str, *, now: float | None = None
) -> tuple[TotpFactor, int] | None:
    """The factor among ``factors`` that accepts ``code`` and the step the code belongs to, later
    than the factor's last accepted one; None when none does (wrong, too old, or already used). The
    caller records the step (``advance``, or a statement of its own) before it counts as used."""
    for factor in factors:
        secret = box.open(factor.secret_sealed, purpose=TOTP_SECRET_PURPOSE)
        step = matching_step(secret, code, after_step=factor.last_used_step, now=now)
        if step is not None:
            return factor, step
    return None


async def use_code(
    session: AsyncSession,
    box: SecretBox,
    factors: Sequence[TotpFactor],
    code: str,
    *,
    now: float | None = None,
) -> TotpFactor | None:
    """The factor among ``factors`` that accepts ``code``, its step recorded so that the code is not
    accepted again; None when none does (wrong, too old, or already used)."""
    for factor in factors:
        found = matching_app(box, [factor], code, now=now)
        if found is None:
            continue
        _, step = found
        used_at = utcnow()
        if await advance(session, factor.id, step, used_at):
            set_committed_value(factor, "last_used_step", step)
            set_committed_value(factor, "last_used_at", used_at)
            return factor
    return None


async def advance(session: AsyncSession, factor_id: uuid.UUID, step: int, used_at: datetime) -> bool:
    """Record ``step`` as the factor's last used one, unless it already got that far (the code was
    used meanwhile, by a concurrent request): the row count decides."""
    result = await session.execute(
        update(TotpFactor)
        .where(TotpFactor.id == factor_id, TotpFactor.last_used_step < step)
        .values(last_used_step=step, last_used_at=used_at)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
