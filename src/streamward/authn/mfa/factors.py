"""An account's second factors as a whole: setting up and confirming an authenticator app, removing
a factor, replacing the recovery codes, an administrator's reset, and what every one of
those changes does to the account (``_account_changed``).

Account safety, one rule for every path: adding or removing a factor, using a recovery code and
replacing the codes refresh ``account.mfa_enrolled`` under the account's row lock, end the account's
*other* sessions (in every organisation: the factors are the person's), and leave an audit entry in
each organisation of the account (never a secret or a code).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record
from streamward.authn.account_audit import memberships_of, record_for_account
from streamward.authn.account_sessions import account_sessions
from streamward.authn.mail import MailMessage, factor_added_mail, second_factors_reset_mail
from streamward.authn.mfa import recovery, totp
from streamward.authn.mfa.errors import (
    FactorAlreadyConfirmed,
    InvalidCode,
    InvalidProof,
    NoSecondFactor,
    OwnReset,
    ProofRequired,
    ResetElsewhere,
    TooManyFactors,
)
from streamward.authn.mfa.models import Passkey, TotpFactor
from streamward.authn.mfa.overview import FactorView, account_id_of, view
from streamward.authn.models import BintuSession
from streamward.authz.grants import ensure_can_act_on
from streamward.authz.principal import Principal
from streamward.authz.scoping import get_scoped
from streamward.crypto import SecretBox
from streamward.db import utcnow
from streamward.errors import NotFound, RateLimited
from streamward.limits import LoginThrottle
from streamward.passwords import verify_password
from streamward.roles.lookup import resolve_role
from streamward.users.models import Account, Membership
from streamward.users.service import lock_account

TOTP = "totp"
PASSKEY = "passkey"
KINDS = (TOTP, PASSKEY)
# Authenticator apps per account, set up or pending: enough for a phone, a spare and a password
# manager; a bound on what one session can make the account store.
MAX_TOTP_FACTORS = 10
# An app whose set-up was never confirmed is dropped when another set-up starts this much later.
PENDING_TOTP_LIFETIME = timedelta(hours=1)
DEFAULT_TOTP_NAME = "Authenticator app"
FactorModel = TypeVar("FactorModel", TotpFactor, Passkey)


@dataclass(frozen=True)
class TotpEnrolment:
    """An authenticator app being set up: shown once, confirmed with its first code."""

    factor: FactorView
    secret: str  # base32, for typing into the app
    otpauth_uri: str
    qr_svg: str


@dataclass(frozen=True)
class FactorAdded:
    recovery_codes: list[str] | None  # only when this made the account's first factor
    notice: MailMessage  # tells the owner; to send after the commit


@dataclass(frozen=True)
class ConfirmedTotp:
    factor: FactorView
    recovery_codes: list[str] | None  # only when this made the account's first factor
    notice: MailMessage


# --- what every change does ------------------------------------------------------------------------


async def _locked_account(session: AsyncSession, account_id: uuid.UUID) -> Account:
    """The account row, locked (PostgreSQL; SQLite's writer already holds the database) and read
    again, so that concurrent changes of its factors count one after the other. ``FOR NO KEY
    UPDATE``: rows that only reference the account (a login's challenge) are not held up."""
    account = await lock_account(session, account_id)
    assert account is not None  # the caller's own account, authenticated in this transaction
    return account


async def _usable_factor_count(session: AsyncSession, account_id: uuid.UUID) -> int:
    apps = (
        select(func.count())
        .select_from(TotpFactor)
        .where(TotpFactor.account_id == account_id, TotpFactor.confirmed_at.is_not(None))
        .scalar_subquery()
    )
    keys = select(func.count()).select_from(Passkey).where(Passkey.account_id == account_id).scalar_subquery()
    return int(await session.scalar(select(apps + keys)) or 0)


async def _end_sessions(session: AsyncSession, account_id: uuid.UUID, *, keep: uuid.UUID | None) -> int:
    """End the account's sessions in every organisation, except ``keep`` (the caller's own)."""
    statement = delete(BintuSession).where(account_sessions(account_id))
    if keep is not None:
        statement = statement.where(BintuSession.id != keep)
    result = await session.execute(statement.execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def _account_changed(
    session: AsyncSession,
    account: Account,
    *,
    actor: Actor,
    action: str,
    keep_session: uuid.UUID | None,
    after: dict[str, object],
) -> int:
    """The one account of a change to an account's factors (its row locked by the caller): the
    enrolment flag refreshed, the other sessions ended, the audit entries. Returns how many factors
    the account has now."""
    count = await _usable_factor_count(session, account.id)
    account.mfa_enrolled = count > 0
    if not count:
        # No factor left: the login asks for none, so the codes would only be a way in later.
        await recovery.forget(session, account.id)
    ended = await _end_sessions(session, account.id, keep=keep_session)
    memberships = await memberships_of(session, account.id)
    record_for_account(session, actor, action, memberships, after=after | {"otherSessionsEnded": ended})
    await session.flush()
    return count


async def factor_added(session: AsyncSession, principal: Principal, *, kind: str, name: str) -> FactorAdded:
    """A confirmed app or a registered passkey was just flushed for the caller's account: enrolment
    refreshed, other sessions ended, audited. Returns the account's first recovery codes (shown
    once) when this is its first factor, and the mail that tells the owner."""
    if kind not in KINDS:
        raise ValueError(f"unknown factor kind {kind!r}")
    account = await _locked_account(session, account_id_of(principal))
    count = await _account_changed(
        session,
        account,
        actor=Actor.of(principal),
        action="user.mfa_added",
        keep_session=principal.session_id,
        after={"kind": kind, "name": name},
    )
    notice = factor_added_mail(account.email, kind=kind, name=name, client_address=principal.client_address)
    codes = await recovery.replace_codes(session, account.id) if count == 1 else None
    return FactorAdded(codes, notice)


# --- who may add a factor --------------------------------------------------------------------------

# A sign-in this recent has just proven the password (and the second factor, when there is one):
# adding a factor right after it, as the enrolment a policy asks for, needs nothing more.
FRESH_SIGN_IN = timedelta(minutes=10)


async def ensure_may_add(
    session: AsyncSession,
    principal: Principal,
    throttle: LoginThrottle,
    box: SecretBox,
    *,
    password: str | None = None,
    code: str | None = None,
) -> Account:
    """The caller's account (locked), provided the caller may add a factor to it: from a login of
    the last ``FRESH_SIGN_IN``, or with the proof removing one needs (the password or a fresh app
    code). A factor is a way in of its own (a passkey signs in without the password, in every
    organisation of the account): a stolen session, or a named token, must not be able to add one."""
    account = await _locked_account(session, account_id_of(principal))
    if password is None and code is None:
        if await freshly_signed_in(session, principal):
            return account
        raise ProofRequired()
    await _prove(session, throttle, box, account, password=password, code=code)
    return account


async def freshly_signed_in(session: AsyncSession, principal: Principal) -> bool:
    """Whether the caller's session is a login of the last ``FRESH_SIGN_IN`` (pages ask, to know
    whether adding a factor will ask for the password)."""
    if principal.session_id is None:
        return False
    signed_in = await session.get(BintuSession, principal.session_id)
    return (
        signed_in is not None
        and signed_in.name is None  # a login's session, not a named token
        and signed_in.created_at > utcnow() - FRESH_SIGN_IN
    )


# --- authenticator apps ----------------------------------------------------------------------------


async def start_totp(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    throttle: LoginThrottle,
    *,
    name: str | None,
    password: str | None = None,
    code: str | None = None,
) -> TotpEnrolment:
    """A new authenticator app for the caller (see ``ensure_may_add``), pending until
    ``confirm_totp``. The secret is sealed at rest and shown this once."""
    account = await ensure_may_add(session, principal, throttle, box, password=password, code=code)
    account_id = account.id
    now = utcnow()
    await session.execute(
        delete(TotpFactor)
        .where(
            TotpFactor.account_id == account_id,
            TotpFactor.confirmed_at.is_(None),
            TotpFactor.created_at < now - PENDING_TOTP_LIFETIME,
        )
        .execution_options(synchronize_session=False)
    )
    existing = await session.scalar(
        select(func.count()).select_from(TotpFactor).where(TotpFactor.account_id == account_id)
    )
    if (existing or 0) >= MAX_TOTP_FACTORS:
        raise TooManyFactors()
    secret = totp.new_secret()
    factor = TotpFactor(
        account_id=account_id,
        name=name or DEFAULT_TOTP_NAME,
        secret_sealed=totp.sealed(box, secret),
        last_used_step=0,
        created_at=now,
    )
    session.add(factor)
    await session.flush()
    uri = totp.provisioning_uri(secret, account_email=account.email)
    return TotpEnrolment(view(factor), secret, uri, totp.qr_svg(uri))


async def _own_factor(
    session: AsyncSession, model: type[FactorModel], principal: Principal, factor_id: uuid.UUID
) -> FactorModel:
    """One of the caller's factors; another account's (or none, or any for the API key, which has no
    account) is not found."""
    factor = await session.get(model, factor_id)
    if factor is None or principal.account_id is None or factor.account_id != principal.account_id:
        raise NotFound()
    return factor


async def confirm_totp(
    session: AsyncSession, principal: Principal, box: SecretBox, factor_id: uuid.UUID, *, code: str
) -> ConfirmedTotp:
    """Confirm an app with a first code it shows: from now on it is a factor. The code counts as
    used (it cannot sign in afterwards)."""
    factor = await _own_factor(session, TotpFactor, principal, factor_id)
    if factor.confirmed_at is not None:
        raise FactorAlreadyConfirmed()
    if await totp.use_code(session, box, [factor], code) is None:
        raise InvalidCode()
    factor.confirmed_at = utcnow()
    await session.flush()
    added = await factor_added(session, principal, kind=TOTP, name=factor.name)
    return ConfirmedTotp(view(factor), added.recovery_codes, added.notice)


# --- proofs, removal, new codes --------------------------------------------------------------------


async def _prove(
    session: AsyncSession,
    throttle: LoginThrottle,
    box: SecretBox,
    account: Account,
    *,
    password: str | None,
    code: str | None,
) -> None:
    """The caller knows the password or holds an app of the account (a fresh code): a stolen
    session alone must not remove a factor. Wrong proofs spend the same per-account budget as
    failed logins."""
    if (password is None) == (code is None):
        raise InvalidProof("Give either your password or a code from your authenticator app.")
    wait = await throttle.failures_per_account.retry_after(account.email)
    if wait:
        raise RateLimited(wait)
    if password is not None:
        proven = await verify_password(account.password_hash, password)
    else:
        apps = (
            await session.execute(
                select(TotpFactor).where(
                    TotpFactor.account_id == account.id, TotpFactor.confirmed_at.is_not(None)
                )
            )
        ).scalars()
        proven = await totp.use_code(session, box, list(apps), code or "") is not None
    if not proven:
        await throttle.failures_per_account.take(account.email)
        raise InvalidProof()


_MODELS: dict[str, type[TotpFactor] | type[Passkey]] = {TOTP: TotpFactor, PASSKEY: Passkey}


async def remove_factor(
    session: AsyncSession,
    principal: Principal,
    throttle: LoginThrottle,
    box: SecretBox,
    *,
    kind: str,
    factor_id: uuid.UUID,
    password: str | None = None,
    code: str | None = None,
) -> None:
    """Remove one of the caller's apps (confirmed or pending) or passkeys, proven with the password
    or a fresh app code. The last factor gone, the recovery codes go too."""
    factor: TotpFactor | Passkey
    if kind == TOTP:
        factor = await _own_factor(session, TotpFactor, principal, factor_id)
    elif kind == PASSKEY:
        factor = await _own_factor(session, Passkey, principal, factor_id)
    else:
        raise ValueError(f"unknown factor kind {kind!r}")
    account = await _locked_account(session, factor.account_id)
    await _prove(session, throttle, box, account, password=password, code=code)
    name = factor.name
    await session.delete(factor)
    await session.flush()
    await _account_changed(
        session,
        account,
        actor=Actor.of(principal),
        action="user.mfa_removed",
        keep_session=principal.session_id,
        after={"kind": kind, "name": name},
    )


async def regenerate_recovery_codes(
    session: AsyncSession,
    principal: Principal,
    throttle: LoginThrottle,
    box: SecretBox,
    *,
    password: str | None = None,
    code: str | None = None,
) -> list[str]:
    """Ten new recovery codes (shown once); every earlier code stops working."""
    account_id = account_id_of(principal)
    account = await _locked_account(session, account_id)
    if not await _usable_factor_count(session, account_id):
        raise NoSecondFactor()
    await _prove(session, throttle, box, account, password=password, code=code)
    codes = await recovery.replace_codes(session, account_id)
    await _account_changed(
        session,
        account,
        actor=Actor.of(principal),
        action="user.recovery_codes_regenerated",
        keep_session=principal.session_id,
        after={},
    )
    return codes


async def recovery_code_used(session: AsyncSession, account: Account, *, actor: Actor) -> int:
    """A recovery code just signed the account in (before its new session is issued): every
    session of the account ends, audited. Returns how many unused codes are left (for the mail)."""
    locked = await _locked_account(session, account.id)
    await _account_changed(
        session, locked, actor=actor, action="user.recovery_code_used", keep_session=None, after={}
    )
    return await recovery.remaining(session, account.id)


# --- an administrator's reset ----------------------------------------------------------------------


async def reset_member(session: AsyncSession, principal: Principal, user_id: uuid.UUID) -> MailMessage:
    """Remove every factor and recovery code of a member's account and end all its sessions (a member
    who lost their phone and their codes). Not on a member whose role holds more than the caller's;
    not on oneself (that is ``remove_factor``, which asks for proof); and not on a person who also
    belongs to another organisation, whose access the factors guard too (an administrator of one
    organisation must not be able to open another's). Returns the mail that tells the member, to
    send after the commit."""
    membership = await get_scoped(session, Membership, user_id, principal, what="user")
    if membership.id == principal.membership_id:
        raise OwnReset()
    ensure_can_act_on(principal, await resolve_role(session, membership.organisation_id, membership.role))
    account = await _locked_account(session, membership.account_id)
    if len(await memberships_of(session, account.id)) > 1:
        raise ResetElsewhere()
    removed: dict[str, int] = {}
    for kind, model in _MODELS.items():
        result = await session.execute(
            delete(model).where(model.account_id == account.id).execution_options(synchronize_session=False)
        )
        removed[kind] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    await recovery.forget(session, account.id)
    account.mfa_enrolled = False
    ended = await _end_sessions(session, account.id, keep=None)
    record(
        session,
        Actor.of(principal),
        "user.mfa_reset",
        organisation_id=principal.organisation_id,
        target_type="user",
        target_id=membership.id,
        after={"totp": removed[TOTP], "passkeys": removed[PASSKEY], "sessionsEnded": ended},
    )
    await session.flush()
    return second_factors_reset_mail(account.email, organisation_name=principal.organisation.name)
