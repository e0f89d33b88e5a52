"""The statements of the two common logins: a password alone, and a password then an authenticator
app's code. Each is two statements: one read, one write (``authn.service`` runs the logins around
them; a passkey, a recovery code, a hash to upgrade or a refusal take the general way there, through
the request's transaction).

**The read** runs apart from the request's transaction and unlocked: for a password, the account of
the email with its memberships, their organisations and custom roles (``candidate``); for the
second step, the challenge with its membership, organisation, role, account and confirmed apps
(``second_step``). Nothing is held while a password hash (tens of milliseconds) or a code is checked.
(On SQLite the second step reads in its transaction: no hash follows.)

**The write** makes the session, after checking under the account's lock what the read saw and may
have changed meanwhile, and inserts the session and the login's audit entries only if it holds. On
PostgreSQL it is one statement, committed on its own: the account row stays locked until it commits,
so a password change or reset (which takes that row first, then ends the account's open second steps
and sessions) either waits for it and then ends its session, or committed first and leaves it
nothing to insert. On SQLite it is the same checks and inserts in the request's transaction, which
holds the database's one write lock. When a check fails nothing is written, and ``authn.service``
judges the login again in the request's transaction.

- A password login checks that the account still has the hash just verified (a change or reset
  replaces it) and no second factor, and that the membership still exists (``write_session``).
- The second step locks the account as a password change does (``FOR NO KEY UPDATE``, before the
  challenge: the same order), then needs the challenge still open, and the app's code for a later
  step than the app last accepted (two answers with one code: one wins); it uses both up and signs in
  (``write_app_session``).
- Both check that the membership's role, a custom role's permissions and the organisation's
  second-factor policy are as read: the answer (the API key for a role that may read it) and the
  audit were decided on them.

Measured in-process on PostgreSQL (the hash stubbed), an admin's password login went from 4.4 ms of
CPU through the ORM (a transaction, the locked account read, the memberships, the flush of the
session and two audit entries: six round trips) to about 1.8 ms with these two statements."""

# The statements below are built from constant text and parameter numbers; no value is ever
# spliced into one (they are run with bind parameters).
# ruff: noqa: S608

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.models import AuditEntry
from streamward.authn.mfa import challenges, totp
from streamward.authn.mfa.models import LoginChallenge, TotpFactor
from streamward.authn.models import BintuSession
from streamward.authz.permissions import Role
from streamward.db import Base, PreparedSelect, detached, pool_apart, rows_apart
from streamward.orgs.models import Organisation
from streamward.roles.lookup import role_named
from streamward.roles.models import CustomRole
from streamward.users.models import Account, Membership

ModelT = TypeVar("ModelT", bound=Base)


@dataclass(frozen=True)
class Choice:
    """One membership an account may log into."""

    membership: Membership
    organisation: Organisation
    role: Role | None  # None: a role name that no longer resolves (grants nothing), or not read
    # A custom role's permissions as stored when read (None: a predefined role, or none of that name):
    # the write checks they are still the same, with the role's name and the organisation's policy.
    custom_permissions: list[str] | None = None


@dataclass(frozen=True)
class Candidate:
    """The account of an email, as read before its password is verified (detached: in no session)."""

    account: Account
    choices: list[Choice]  # by organisation name


@dataclass(frozen=True)
class SecondStep:
    """A challenge and what its answer signs into, as read before the answer is checked (detached)."""

    challenge: LoginChallenge
    account: Account
    choice: Choice
    apps: list[TotpFactor]  # confirmed authenticator apps


class _Columns:
    """The columns of several models side by side in one row, and the instances they make back."""

    def __init__(self, *models: type[Base]) -> None:
        self.columns: list[Any] = []
        self._slices: dict[type[Base], tuple[list[str], int, int]] = {}
        for model in models:
            props = model.__mapper__.column_attrs
            start = len(self.columns)
            self.columns += [prop.columns[0] for prop in props]
            self._slices[model] = ([prop.key for prop in props], start, len(self.columns))
        self.end = len(self.columns)  # where columns selected after these begin

    def instance(self, model: type[ModelT], row: Sequence[Any]) -> ModelT | None:
        """The ``model`` of ``row``, detached; None where an outer join found none (its id is NULL)."""
        keys, start, end = self._slices[model]
        values = row[start:end]
        return None if values[0] is None else detached(model, dict(zip(keys, values, strict=True)))


_ROLE_OF_MEMBERSHIP = (CustomRole.organisation_id == Membership.organisation_id) & (
    CustomRole.name == Membership.role
)


def _choice(columns: _Columns, row: Sequence[Any]) -> Choice | None:
    membership = columns.instance(Membership, row)
    organisation = columns.instance(Organisation, row)
    if membership is None or organisation is None:
        return None
    description, permissions = row[columns.end], row[columns.end + 1]
    return Choice(
        membership, organisation, role_named(membership.role, description, permissions), permissions
    )


# --- the reads ------------------------------------------------------------------------------------

_CANDIDATE_COLUMNS = _Columns(Account, Membership, Organisation)
_CANDIDATE = PreparedSelect(
    select(*_CANDIDATE_COLUMNS.columns, CustomRole.description, CustomRole.permissions)
    .select_from(Account)
    .outerjoin(Membership, Membership.account_id == Account.id)
    .outerjoin(Organisation, Organisation.id == Membership.organisation_id)
    .outerjoin(CustomRole, _ROLE_OF_MEMBERSHIP)
    .where(Account.email == bindparam("email"))
    .order_by(Organisation.name, Organisation.id)
)


async def candidate(session: AsyncSession, email: str) -> Candidate | None:
    """The account of ``email`` (normalised) with what it may log into; None when there is none."""
    rows = await rows_apart(session, _CANDIDATE, {"email": email})
    account = _CANDIDATE_COLUMNS.instance(Account, rows[0]) if rows else None
    if account is None:
        return None
    choices = [choice for row in rows if (choice := _choice(_CANDIDATE_COLUMNS, row)) is not None]
    return Candidate(account, choices)


_SECOND_STEP_COLUMNS = _Columns(LoginChallenge, Membership, Organisation, Account, TotpFactor)
_SECOND_STEP = PreparedSelect(
    select(*_SECOND_STEP_COLUMNS.columns, CustomRole.description, CustomRole.permissions)
    .select_from(LoginChallenge)
    .join(Membership, Membership.id == LoginChallenge.membership_id)
    .join(Organisation, Organisation.id == Membership.organisation_id)
    .join(Account, (Account.id == LoginChallenge.account_id) & (Account.id == Membership.account_id))
    .outerjoin(TotpFactor, (TotpFactor.account_id == Account.id) & TotpFactor.confirmed_at.is_not(None))
    .outerjoin(CustomRole, _ROLE_OF_MEMBERSHIP)
    .where(LoginChallenge.token_hash == bindparam("token_hash"))
    .order_by(TotpFactor.created_at, TotpFactor.id)
)


async def second_step(session: AsyncSession, token_hash: str) -> SecondStep | None:
    """The challenge of ``token_hash`` (whatever its state: ``challenges.usable`` judges) with what
    it signs into; None when there is none. Apart from the request's transaction on PostgreSQL; on
    SQLite in it (no hash follows: holding the write lock from the read on costs nothing, and the
    write then needs no second look)."""
    pool = await pool_apart(session)
    rows = await _SECOND_STEP.rows(session if pool is None else pool, {"token_hash": token_hash})
    if not rows:
        return None
    columns = _SECOND_STEP_COLUMNS
    challenge = columns.instance(LoginChallenge, rows[0])
    account = columns.instance(Account, rows[0])
    choice = _choice(columns, rows[0])
    assert challenge is not None and account is not None and choice is not None  # inner joins
    apps = [app for row in rows if (app := columns.instance(TotpFactor, row)) is not None]
    return SecondStep(challenge, account, choice, apps)


# --- the writes -----------------------------------------------------------------------------------

_AUDIT_COLUMNS = (
    "id, organisation_id, actor, actor_email, action, target_type, target_id, before, after, "
    "client_address, request_id, created_at"
)
_AUDIT_VALUES = 12  # parameters per entry
_SESSION_VALUES = 4  # id, token hash, created, expires


def _made(first: int, entries: int) -> str:
    """The CTEs that insert the session (of the membership and token key in ``signer``) and the
    audit entries, given ``signer``; their parameters start at ``$first``. Constant text and
    parameter numbers: no value is ever spliced into the statement."""
    session_id, token_hash, created, expires = (f"${first + offset}" for offset in range(_SESSION_VALUES))
    sql = (
        "made AS (INSERT INTO session "
        "(id, token_hash, membership_id, token_key, created_at, expires_at, last_used_at) "
        f"SELECT {session_id}, {token_hash}, signer.id, signer.token_key, {created}, {expires}, {created} "
        "FROM signer RETURNING id)"
    )
    for index in range(entries):
        start = first + _SESSION_VALUES + index * _AUDIT_VALUES
        values = [f"${start + offset}" for offset in range(_AUDIT_VALUES)]
        values[7], values[8] = f"{values[7]}::json", f"{values[8]}::json"  # before, after: JSON text
        sql += (
            f", audited_{index} AS (INSERT INTO audit_entry ({_AUDIT_COLUMNS}) "
            f"SELECT {', '.join(values)} FROM made)"
        )
    return sql


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _made_values(new: BintuSession, entries: Sequence[AuditEntry]) -> list[Any]:
    values: list[Any] = [new.id, new.token_hash, new.created_at, new.expires_at]
    for entry in entries:
        values += [
            entry.id,
            entry.organisation_id,
            entry.actor,
            entry.actor_email,
            entry.action,
            entry.target_type,
            entry.target_id,
            _json_text(entry.before),
            _json_text(entry.after),
            entry.client_address,
            entry.request_id,
            entry.created_at,
        ]
    return values


@cache
def _password_write(entries: int) -> str:
    """A password login's write on PostgreSQL. ``signer`` holds the account row's share lock, and the
    membership's key-share lock (it cannot be deleted meanwhile); a locked row that a transaction it
    waited for changed is checked again as that transaction left it, so a password changed meanwhile,
    a second factor added or the membership removed leave ``signer`` empty, and nothing is inserted.
    What the login's answer and audit were decided on must be as read too: the membership's role, a
    custom role's permissions (an API key is revealed to a role that may read it) and the
    organisation's second-factor policy (a member without one gets a session limited to enrolment,
    and no key). The session takes the membership's token key as the statement finds it: a key
    renewed meanwhile makes it invalid."""
    return (
        "WITH signer AS ("
        "SELECT m.id, m.token_key FROM account a JOIN membership m ON m.account_id = a.id "
        "JOIN organisation o ON o.id = m.organisation_id "
        "LEFT JOIN role r ON r.organisation_id = m.organisation_id AND r.name = m.role "
        "WHERE a.id = $1 AND a.password_hash = $2 AND NOT a.mfa_enrolled AND m.id = $3 "
        "AND m.role = $4 AND o.mfa_required = $5 AND r.permissions::jsonb IS NOT DISTINCT FROM $6::jsonb "
        "FOR SHARE OF a FOR KEY SHARE OF m), "
        f"{_made(7, entries)} "
        "SELECT count(*) FROM made"
    )


# The same check on SQLite, in the request's transaction (its writer holds the database).
_STILL_SIGNABLE = (
    select(Membership.token_key, Membership.role, Organisation.mfa_required, CustomRole.permissions)
    .join(Account, Account.id == Membership.account_id)
    .join(Organisation, Organisation.id == Membership.organisation_id)
    .outerjoin(CustomRole, _ROLE_OF_MEMBERSHIP)
    .where(
        Account.id == bindparam("account_id"),
        Account.password_hash == bindparam("password_hash"),
        Account.mfa_enrolled.is_(False),
        Membership.id == bindparam("membership_id"),
    )
)


async def write_session(
    session: AsyncSession,
    *,
    account: Account,
    choice: Choice,
    new: BintuSession,
    entries: Sequence[AuditEntry],
) -> bool:
    """Insert ``new`` and ``entries``, provided ``account`` still has the password hash it was
    verified with and no second factor, and the membership, its role and the organisation's
    second-factor policy are still as ``choice`` read them (``_password_write``); False, with
    nothing written, when not."""
    membership, organisation = choice.membership, choice.organisation
    pool = await pool_apart(session)
    if pool is not None:
        parameters = [account.id, account.password_hash, membership.id, membership.role]
        parameters += [organisation.mfa_required, _json_text(choice.custom_permissions)]
        made = await pool.fetchrow(_password_write(len(entries)), *parameters, *_made_values(new, entries))
        return bool(made[0])
    values = {
        "account_id": account.id,
        "password_hash": account.password_hash,
        "membership_id": membership.id,
    }
    found = (await session.execute(_STILL_SIGNABLE, values)).one_or_none()
    if found is None or (found.role, found.mfa_required, found.permissions) != (
        membership.role,
        organisation.mfa_required,
        choice.custom_permissions,
    ):
        return False
    new.token_key = found.token_key
    session.add(new)
    session.add_all(entries)
    return True


class AppStep(enum.Enum):
    """How an app's right code fared at the write."""

    SIGNED_IN = "signed_in"
    ENDED = "ended"  # the challenge ended meanwhile (a password change, wrong answers, its membership gone)
    REPLAYED = "replayed"  # the code's step was accepted meanwhile (another answer with the same code)
    CHANGED = "changed"  # the role or the policy changed since the read: nothing written, judge it again


@cache
def _app_write(entries: int) -> str:
    """The second step's write on PostgreSQL. ``held`` locks the account as a password change does,
    and first (``answered`` cannot begin before it); ``answered`` locks the challenge, provided it is
    still open as the transaction it waited for left it; ``stepped`` records the code's step unless
    the app accepted that step or a later one meanwhile; only then is the challenge used up and the
    session inserted. ``as_read``: the membership's role, a custom role's permissions and the
    organisation's policy are still what the answer and the audit were decided on (as in
    ``_password_write``). Counts say which held."""
    return (
        "WITH held AS (SELECT id FROM account WHERE id = $1 FOR NO KEY UPDATE), "
        "as_read AS (SELECT m.id FROM membership m JOIN organisation o ON o.id = m.organisation_id "
        "LEFT JOIN role r ON r.organisation_id = m.organisation_id AND r.name = m.role "
        "WHERE m.id = $6 AND m.role = $7 AND o.mfa_required = $8 "
        "AND r.permissions::jsonb IS NOT DISTINCT FROM $9::jsonb), "
        "answered AS (SELECT id FROM login_challenge WHERE id = $2 AND used_at IS NULL "
        "AND EXISTS (SELECT 1 FROM held) AND EXISTS (SELECT 1 FROM as_read) FOR UPDATE), "
        "stepped AS (UPDATE totp_factor SET last_used_step = $3, last_used_at = $4 "
        "WHERE id = $5 AND account_id = $1 AND confirmed_at IS NOT NULL AND last_used_step < $3 "
        "AND EXISTS (SELECT 1 FROM answered) RETURNING id), "
        "consumed AS (UPDATE login_challenge SET used_at = $4 "
        "WHERE id = $2 AND EXISTS (SELECT 1 FROM stepped) RETURNING membership_id), "
        "signer AS (SELECT m.id, m.token_key FROM membership m "
        "JOIN consumed ON m.id = consumed.membership_id), "
        f"{_made(10, entries)} "
        "SELECT (SELECT count(*) FROM as_read), (SELECT count(*) FROM answered), "
        "(SELECT count(*) FROM stepped), (SELECT count(*) FROM made)"
    )


async def write_app_session(
    session: AsyncSession,
    *,
    step: SecondStep,
    app: TotpFactor,
    code_step: int,
    now: datetime,
    new: BintuSession,
    entries: Sequence[AuditEntry],
) -> AppStep:
    """Use up the challenge and the app's ``code_step`` and insert ``new`` and ``entries``, provided
    the challenge is still open, the app has not accepted that step meanwhile, and the membership's
    role and the organisation's policy are as read; otherwise nothing is written (the module's
    docstring)."""
    pool = await pool_apart(session)
    if pool is not None:
        membership, organisation = step.choice.membership, step.choice.organisation
        parameters = [step.account.id, step.challenge.id, code_step, now, app.id]
        parameters += [membership.id, membership.role, organisation.mfa_required]
        parameters += [_json_text(step.choice.custom_permissions), *_made_values(new, entries)]
        as_read, answered, stepped, made = await pool.fetchrow(_app_write(len(entries)), *parameters)
        if not as_read:
            return AppStep.CHANGED
        if not answered or (stepped and not made):
            return AppStep.ENDED
        return AppStep.SIGNED_IN if made else AppStep.REPLAYED
    # SQLite: read in this transaction, which has held the database's write lock since (``second_step``);
    # the conditional updates' row counts decide.
    if not await totp.advance(session, app.id, code_step, now):
        return AppStep.REPLAYED
    await challenges.consume(session, step.challenge)  # ChallengeEndedMeanwhile: nothing kept
    session.add(new)
    session.add_all(entries)
    return AppStep.SIGNED_IN
