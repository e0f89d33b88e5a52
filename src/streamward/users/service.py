"""Accounts and memberships: the "users" of an organisation, their roles, token keys and removal."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from streamward.audit.service import record_change
from streamward.authz.grants import ensure_can_act_on
from streamward.authz.permissions import ADMIN_ROLE, Role
from streamward.authz.principal import Principal
from streamward.authz.scoping import get_scoped, scoped, scoped_rows, scoped_template
from streamward.db import LookupSource, PreparedSelect, dialect_name
from streamward.errors import AppError, BadRequest, Forbidden
from streamward.events.catalogue import EventType
from streamward.orgs.models import Organisation
from streamward.orgs.service import lock_organisation
from streamward.pagination import Page, keyset_rows, keyset_template, keyset_values
from streamward.password_policy import check_password
from streamward.passwords import hash_password
from streamward.roles.lookup import grantable_role, resolve_role
from streamward.schemas import ColumnText
from streamward.users.models import Account, Membership, new_token_key, normalise_email


class LastAdmin(AppError):
    status_code = 409
    code = "last_admin"
    message = "The organisation must keep at least one nanoAdmin."


# Special-use top-level domains (RFC 6761/6762: local, test, ...) that email_validator refuses and a
# deployment admits for intranet addresses (STREAMWARD_ALLOWED_SPECIAL_EMAIL_DOMAINS). Process state,
# set from the settings by create_app and by the CLI: the rule also runs inside the API's request
# models, which see no settings, and one process serves one deployment. (A context variable would
# need setting on every request and in every command as well, for the same value.)
_special_email_domains: frozenset[str] = frozenset()


def allow_special_email_domains(domains: frozenset[str]) -> None:
    """Admit addresses under these top-level domains from now on (the setting's value)."""
    global _special_email_domains
    _special_email_domains = frozenset(domain.lower() for domain in domains)


def checked_email(email: str, *, field: str = "email") -> str:
    """The normalised form of an email a person gives us, or a 400 naming ``field``: the one rule for
    what an account or invitation email is, whatever surface it came through (the JSON API's models
    call it through ``users.schemas.EmailAddress``; the dashboard's forms and the CLI reach the
    services, which call it)."""
    value = ColumnText(Account.email, normalise=normalise_email).clean(email, field=field)
    local, _, domain = value.rpartition("@")
    stem, dot, top = domain.rpartition(".")
    # email_validator refuses special-use names outright. For an admitted one the rest of the
    # address is still checked, with its top-level domain swapped for an ordinary one.
    checked = f"{local}@{stem}.example" if dot and stem and top in _special_email_domains else value
    try:
        validate_email(checked, check_deliverability=False)
    except EmailNotValidError:
        raise BadRequest(
            f"{field}: not a valid email address.",
            code="validation_error",
            details={"field": field, "problem": "not a valid email address"},
        ) from None
    return value


# Built once: every login looks an account up, and building the statement cost as much CPU as
# SQLAlchemy's running of it (py-spy on logins).
_ACCOUNT_BY_EMAIL = select(Account).where(Account.email == bindparam("email"))


async def find_account(session: AsyncSession, email: str) -> Account | None:
    result = await session.execute(_ACCOUNT_BY_EMAIL, {"email": normalise_email(email)})
    return result.scalar_one_or_none()


# FOR SHARE on PostgreSQL (SQLite's writers hold the database's one write lock from BEGIN already).
_ACCOUNT_FOR_SIGN_IN = _ACCOUNT_BY_EMAIL.with_for_update(read=True)


async def account_for_sign_in(session: AsyncSession, email: str) -> Account | None:
    """The account whose password a sign-in is about to verify, its row share-locked until the
    sign-in's transaction ends. A password change or reset updates that row: it waits for a sign-in
    that verified the old password to commit, then ends the session that sign-in made with every
    other; committed first, it makes the sign-in read the new hash. Unlocked, a sign-in verifying
    the old password (tens of milliseconds of hashing) inserted its session after the change had
    ended "every session", and the session outlived it. Sign-ins of one account share the lock."""
    result = await session.execute(_ACCOUNT_FOR_SIGN_IN, {"email": normalise_email(email)})
    return result.scalar_one_or_none()


_ACCOUNT_SHARED = select(Account).where(Account.id == bindparam("id")).with_for_update(read=True)
# FOR NO KEY UPDATE: rows that only reference the account (a login's challenge) are not held up.
_ACCOUNT_FOR_CHANGE = (
    select(Account)
    .where(Account.id == bindparam("id"))
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)


async def lock_account(session: AsyncSession, account_id: uuid.UUID) -> Account | None:
    """The account, locked for a change of its credentials (its password, its second factors) and
    read again; None when it is gone. A sign-in under way holds the row (account_for_sign_in,
    share_lock_account, a login's one statement in authn.login_statements): the change waits for it,
    then ends what it made with the rest."""
    return (await session.execute(_ACCOUNT_FOR_CHANGE, {"id": account_id})).scalar_one_or_none()


async def share_lock_account(session: AsyncSession, account_id: uuid.UUID) -> Account | None:
    """The account, share-locked as account_for_sign_in locks it, for a sign-in that learns the
    account from something else (a passkey, the session it presents) or has verified the password
    before taking the lock (a password login, which then checks the hash it verified is still the
    account's); None when it is gone."""
    return (await session.execute(_ACCOUNT_SHARED, {"id": account_id})).scalar_one_or_none()


# FOR NO KEY UPDATE SKIP LOCKED: no row when another transaction holds any lock on it.
_ACCOUNT_UNLESS_LOCKED = (
    select(Account.id).where(Account.id == bindparam("id")).with_for_update(key_share=True, skip_locked=True)
)


async def store_rehashed_password(session: AsyncSession, account: Account, password_hash: str) -> None:
    """Replace a sign-in's verified hash with one at today's parameters, unless another sign-in of
    the account holds its share lock (account_for_sign_in): two sign-ins that both upgraded their
    share lock to write would wait for each other, a deadlock. The next sign-in rehashes then."""
    if (await session.execute(_ACCOUNT_UNLESS_LOCKED, {"id": account.id})).first() is not None:
        account.password_hash = password_hash


async def add_account(session: AsyncSession, *, email: str, password_hash: str) -> Account:
    """An account from an already computed hash (hashing is slow: callers do it before taking locks)."""
    account = Account(email=checked_email(email), password_hash=password_hash)
    session.add(account)
    await session.flush()
    return account


async def create_account(session: AsyncSession, *, email: str, password: str) -> Account:
    check_password(password)
    return await add_account(session, email=email, password_hash=await hash_password(password))


async def add_membership(
    session: AsyncSession, organisation: Organisation, account: Account, role: str
) -> Membership:
    membership = Membership(
        organisation_id=organisation.id, account_id=account.id, role=role, token_key=new_token_key()
    )
    session.add(membership)
    await session.flush()
    return membership


def email_prefix(column: InstrumentedAttribute[Any], prefix: str, dialect: str) -> ColumnElement[bool]:
    """``column`` starts with ``prefix``: ``email_prefix_template`` with its values in place."""
    return _email_prefix(column, dialect, email_prefix_values(prefix, dialect).__getitem__)


def email_prefix_template(column: InstrumentedAttribute[Any], dialect: str) -> ColumnElement[bool]:
    """``column`` starts with a prefix given as parameters (``email_prefix_values``), answered from
    an index.

    PostgreSQL: ``LIKE 'prefix%'`` with the user's ``%``, ``_`` and ``\\`` escaped, served by the
    text_pattern_ops index. SQLite compares text bytewise, so the same set is a range on the plain
    index (its LIKE is case-insensitive and would not use it).
    """
    return _email_prefix(column, dialect, bindparam)


def _email_prefix(
    column: InstrumentedAttribute[Any], dialect: str, value: Callable[[str], Any]
) -> ColumnElement[bool]:
    if dialect == "sqlite":
        within: ColumnElement[bool] = (column >= value("email_from")) & (column < value("email_before"))
        return within
    return column.like(value("email_like"), escape="\\")


def email_prefix_values(prefix: str, dialect: str) -> dict[str, str]:
    """The parameters of ``email_prefix`` for ``prefix`` (emails are stored lower-cased)."""
    prefix = normalise_email(prefix)
    if dialect == "sqlite":
        return {"email_from": prefix, "email_before": prefix + "\U0010ffff"}
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {"email_like": escaped + "%"}


_USER_COLUMNS = (
    Membership.id,
    Account.email,
    Membership.role,
    Membership.token_key,
    Membership.created_at,
)
# A users-list row: these positions, then the columns a caller adds (``also``), in its order.
USER_ID, USER_EMAIL, USER_ROLE, USER_TOKEN_KEY, USER_CREATED_AT = range(len(_USER_COLUMNS))

# The users list's statement for each shape it is asked in (db.PreparedSelect): built once.
_user_lists: dict[tuple[Any, ...], PreparedSelect] = {}


def _users_list(
    dialect: str, *, by_role: bool, by_email: bool, after_cursor: bool, also: Sequence[ColumnElement[Any]]
) -> PreparedSelect:
    # ``also`` is one of the callers' constant tuples: known by identity (its columns' == is SQL).
    shape = (dialect, by_role, by_email, after_cursor, tuple(id(column) for column in also))
    prepared = _user_lists.get(shape)
    if prepared is None:
        statement = scoped_template(
            select(*_USER_COLUMNS, *also).join(Account, Account.id == Membership.account_id), Membership
        )
        if by_role:
            statement = statement.where(Membership.role == bindparam("role"))
        if by_email:
            statement = statement.where(email_prefix_template(Account.email, dialect))
        template = keyset_template(statement, Membership.id, after_cursor=after_cursor)
        prepared = _user_lists[shape] = PreparedSelect(template)
    return prepared


async def list_users(
    source: LookupSource,
    principal: Principal,
    *,
    role: str | None,
    email_starts_with: str | None,
    limit: int,
    cursor: str | None,
    also: Sequence[ColumnElement[Any]] = (),
) -> Page[Any]:
    """One page of the organisation's users, newest first. Rows hold ``_USER_COLUMNS`` at the
    positions ``USER_ID`` ... ``USER_CREATED_AT``, then the labelled columns ``also`` (a surface's
    per-account facts, such as the second-factor flags, correlated with ``Account``: read in the
    same statement, not in a second round trip); ``also`` must be a constant of its caller."""
    dialect = dialect_name(source)
    template = _users_list(
        dialect,
        by_role=role is not None,
        by_email=bool(email_starts_with),
        after_cursor=bool(cursor),
        also=also,
    )
    values = keyset_values(limit, cursor)
    if role is not None:
        values["role"] = role
    if email_starts_with:
        values |= email_prefix_values(email_starts_with, dialect)
    rows = await scoped_rows(source, template, principal, values)
    return keyset_rows(rows, limit, id_position=USER_ID)


@dataclass(frozen=True)
class UserView:
    membership: Membership
    email: str
    role: Role | None  # None only for a role name that no longer resolves


async def get_user(session: AsyncSession, principal: Principal, user_id: uuid.UUID) -> UserView:
    membership = await get_scoped(session, Membership, user_id, principal, what="user")
    return await _view(session, membership)


async def _view(session: AsyncSession, membership: Membership) -> UserView:
    email = (
        await session.execute(select(Account.email).where(Account.id == membership.account_id))
    ).scalar_one()
    return UserView(
        membership, email, await resolve_role(session, membership.organisation_id, membership.role)
    )


async def _ensure_another_admin(session: AsyncSession, membership: Membership) -> None:
    """Refuse when ``membership`` is the organisation's only nanoAdmin (call under lock_organisation)."""
    if membership.role != ADMIN_ROLE:
        return
    others = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(
            Membership.organisation_id == membership.organisation_id,
            Membership.role == ADMIN_ROLE,
            Membership.id != membership.id,
        )
    )
    if not others:
        raise LastAdmin()


async def _member_under_lock(session: AsyncSession, principal: Principal, user_id: uuid.UUID) -> Membership:
    """The target membership, read after lock_organisation. The caller's own membership was loaded
    while authenticating, before the lock: it is read again, so the rules see what is committed now."""
    membership = await get_scoped(session, Membership, user_id, principal, what="user")
    if membership.id == principal.membership_id:
        await session.refresh(membership)
    return membership


def _record_role_change(
    session: AsyncSession, principal: Principal, member_id: uuid.UUID, email: str, before: str, after: str
) -> None:
    """The one account of a member's role change: its audit entry and its ``user.role_changed``."""
    record_change(
        session,
        principal,
        "user.role_changed",
        organisation_id=principal.organisation_id,
        target_type="user",
        target_id=member_id,
        event=EventType.USER_ROLE_CHANGED,
        # As a mapping: "from" is a Python keyword.
        payload=EventType.USER_ROLE_CHANGED.payload(
            **{"userId": str(member_id), "email": email, "from": before, "to": after}
        ),
        before={"role": before},
        after={"role": after},
    )


async def change_role(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID, role_name: str
) -> UserView:
    """Give a member another role. Renews their token key: their bintu tokens end, and the new
    permissions apply from their next login (and to anyone's next request, since roles are
    resolved per request)."""
    await lock_organisation(session, principal.organisation_id)
    membership = await _member_under_lock(session, principal, user_id)
    new_role = await grantable_role(session, principal, role_name)
    current = await _view(session, membership)
    ensure_can_act_on(principal, current.role)
    if membership.role == new_role.name:
        return current
    if new_role.name != ADMIN_ROLE:
        await _ensure_another_admin(session, membership)
    before = membership.role
    membership.role = new_role.name
    membership.token_key = new_token_key()
    await session.flush()
    _record_role_change(session, principal, membership.id, current.email, before, new_role.name)
    return UserView(membership, current.email, new_role)


async def reassign_role_holders(
    session: AsyncSession, principal: Principal, from_role: str, to_role: Role
) -> int:
    """Move every member holding ``from_role`` to ``to_role`` (a custom role being deleted, say):
    for each, a role change as ``change_role`` makes one (new token key, audit entry, event).
    Returns how many moved. The caller holds lock_organisation and has checked that it may grant
    ``to_role``."""
    members = (
        await session.execute(
            scoped(select(Membership.id, Account.email), Membership, principal)
            .join(Account, Account.id == Membership.account_id)
            .where(Membership.role == from_role)
        )
    ).all()
    if not members:
        return 0
    await session.execute(
        update(Membership),
        [{"id": member_id, "role": to_role.name, "token_key": new_token_key()} for member_id, _ in members],
    )
    for member_id, email in members:
        _record_role_change(session, principal, member_id, email, from_role, to_role.name)
    return len(members)


async def count_role_holders(session: AsyncSession, principal: Principal, role: str) -> int:
    """How many members of the caller's organisation hold ``role``."""
    count = await session.scalar(
        scoped(select(func.count()).select_from(Membership), Membership, principal).where(
            Membership.role == role
        )
    )
    return count or 0


async def reset_token_key(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID | None
) -> Membership:
    """A new token key for a member: every bintu token of theirs ends at once (one UPDATE,
    whatever their number). Anyone may renew their own; others' need ``user:token_reset``.
    Playback tokens are not tied to the token key and stay valid."""
    target_id = user_id or principal.membership_id
    if target_id is None:
        raise BadRequest("Say whose token key to reset (userId).", code="user_id_required")
    if target_id != principal.membership_id and not principal.can("user:token_reset"):
        raise Forbidden(
            "Your role only allows resetting your own token.", details={"permission": "user:token_reset"}
        )
    membership = await get_scoped(session, Membership, target_id, principal, what="user")
    if membership.id != principal.membership_id:
        # As for role changes and deletes: nobody logs out a member whose role holds more than theirs.
        ensure_can_act_on(principal, await resolve_role(session, membership.organisation_id, membership.role))
    membership.token_key = new_token_key()
    await session.flush()
    email = (
        await session.execute(select(Account.email).where(Account.id == membership.account_id))
    ).scalar_one()
    # The token key itself stays out of the audit log and the event: it is a credential's scope.
    record_change(
        session,
        principal,
        "user.token_reset",
        organisation_id=principal.organisation_id,
        target_type="user",
        target_id=membership.id,
        event=EventType.USER_TOKEN_RESET,
        payload=EventType.USER_TOKEN_RESET.payload(userId=str(membership.id), email=email),
    )
    return membership


# The account of a member being removed, locked before the membership is (FOR UPDATE: the account
# may go too). A login holds its account's share lock (its one-statement write in
# authn.login_statements, or share_lock_account in its transaction) and then, inserting its
# session, checks the membership: removing the membership first and then waiting for
# the account's lock was a deadlock, one request of the two ending in a 500. In this order the
# removal waits for the login to commit and takes its new session with the membership.
_ACCOUNT_LOCK = select(Account.id).where(Account.id == bindparam("id")).with_for_update()


async def delete_user(session: AsyncSession, principal: Principal, user_id: uuid.UUID) -> None:
    """Remove a member: their sessions go with the membership (foreign key cascade), and the
    account too when it belongs to no other organisation. Playback tokens they issued stay valid."""
    await lock_organisation(session, principal.organisation_id)
    membership = await _member_under_lock(session, principal, user_id)
    view = await _view(session, membership)
    ensure_can_act_on(principal, view.role)
    await _ensure_another_admin(session, membership)
    account_id = membership.account_id
    await session.execute(_ACCOUNT_LOCK, {"id": account_id})
    await session.delete(membership)
    await session.flush()
    remaining = await session.scalar(
        select(func.count()).select_from(Membership).where(Membership.account_id == account_id)
    )
    if not remaining:
        await session.execute(delete(Account).where(Account.id == account_id))
    record_change(
        session,
        principal,
        "user.deleted",
        organisation_id=principal.organisation_id,
        target_type="user",
        target_id=membership.id,
        event=EventType.USER_DELETED,
        payload=EventType.USER_DELETED.payload(
            userId=str(membership.id), email=view.email, role=membership.role
        ),
        before={"email": view.email, "role": membership.role},
        after={"accountDeleted": not remaining},
    )
