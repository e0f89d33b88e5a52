"""Credentials: login (the password, then the second factor of an account that has one), bintu tokens
(sessions, named tokens), logout. Passwords (change, reset) are ``authn.password_changes``; the second
factors themselves ``authn.mfa``; from a credential to a Principal is ``authn.principals``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.models import AuditEntry
from streamward.audit.service import Actor, entry, record
from streamward.authn import login_statements
from streamward.authn.account_audit import Memberships, memberships_of, record_for_account
from streamward.authn.mail import MailMessage, recovery_code_used_mail
from streamward.authn.mfa import challenges, factors, second_step, totp
from streamward.authn.mfa.errors import ChallengeEndedMeanwhile, InvalidChallenge, InvalidSecondFactor
from streamward.authn.mfa.models import TotpFactor
from streamward.authn.mfa.passkeys import RelyingParty
from streamward.authn.models import BintuSession
from streamward.authn.principals import limited_to_enrolment
from streamward.authz.permissions import Role
from streamward.authz.principal import Principal
from streamward.authz.scoping import get_scoped
from streamward.crypto import SecretBox, digest, new_token
from streamward.db import new_id, utcnow
from streamward.errors import AppError, BadRequest, InvalidCredentials, NotFound, RateLimited, Unauthenticated
from streamward.limits import LoginThrottle
from streamward.orgs.models import Organisation
from streamward.orgs.service import api_key_login_reveal
from streamward.passwords import hash_password, needs_rehash, verify_password
from streamward.request_context import note_login, note_rate_limit
from streamward.roles.lookup import resolve_role
from streamward.users.models import Account, Membership, normalise_email
from streamward.users.service import lock_account, share_lock_account, store_rehashed_password

SESSION_TOKEN_PREFIX = "swt"
# How a login was proven (``user.login``'s method is the first alone, or it and one answer of
# ``authn.mfa.second_step``: "password+totp").
PASSWORD = "password"


# Login refusals keep the request's changes: the audit entry of the failed attempt.
class LoginFailed(InvalidCredentials):
    keep_changes = True


class LoginRateLimited(RateLimited):
    keep_changes = True


class OrganisationChoiceRequired(AppError):
    status_code = 409
    code = "organisation_required"
    message = "This account belongs to several organisations; say which one."
    keep_changes = True


class NotAMember(NotFound):
    code = "organisation_not_found"
    message = "You are not a member of that organisation."
    keep_changes = True


@dataclass(frozen=True)
class IssuedToken:
    token: str
    session: BintuSession


@dataclass(frozen=True)
class LoginResult:
    issued: IssuedToken
    membership: Membership
    organisation: Organisation
    role: Role | None
    account: Account
    # Whether the answer carries the API key (its reveal is audited with the login: ``with_api_key``).
    api_key_revealed: bool = False
    # A mail to send once the login is committed (a recovery code was used).
    notice: MailMessage | None = None

    @property
    def enrolment_only(self) -> bool:
        """Whether the new session may only set up a second factor (the credential look-up will say
        the same on each of its requests; the session is not committed yet to be looked up)."""
        return limited_to_enrolment(self.organisation, self.account.mfa_enrolled)


def new_session(membership: Membership, lifetime: timedelta, *, name: str | None = None) -> IssuedToken:
    """A bintu token of ``membership`` and its session row, not written yet."""
    token = new_token(SESSION_TOKEN_PREFIX)
    now = utcnow()
    stored = BintuSession(
        id=new_id(),
        token_hash=digest(token),
        membership_id=membership.id,
        token_key=membership.token_key,
        name=name,
        created_at=now,
        expires_at=now + lifetime,
        last_used_at=now,
    )
    return IssuedToken(token=token, session=stored)


async def issue_token(
    session: AsyncSession, membership: Membership, lifetime: timedelta, *, name: str | None = None
) -> IssuedToken:
    issued = new_session(membership, lifetime, name=name)
    # Inserted with the rest of the login at its commit: one unit of work, not two.
    session.add(issued.session)
    return issued


@dataclass(frozen=True)
class _Attempt:
    """One login attempt, as its audit entries name it and as failures are counted."""

    session: AsyncSession
    email: str
    client_address: str

    @property
    def anonymous(self) -> Actor:
        return Actor("anonymous", self.email, self.client_address)

    def failed(self, reason: str, memberships: Memberships, refusal: AppError) -> AppError:
        """``refusal``, once the failure is audited (in each organisation of the account) and counted."""
        record_for_account(
            self.session, self.anonymous, "user.login_failed", memberships, after={"reason": reason}
        )
        note_login(reason)
        return refusal


async def _refuse_when_throttled(throttle: LoginThrottle, attempt: _Attempt) -> None:
    """Too many attempts from this address or failures for this email: refused before the account
    is looked up, audited once per refusal streak (outside any organisation)."""
    wait = await throttle.per_address.take(attempt.client_address)
    wait = wait or await throttle.failures_per_account.retry_after(attempt.email)
    if not wait:
        return
    if await throttle.first_refusal(f"{attempt.client_address}|{attempt.email}", wait):
        record(
            attempt.session,
            attempt.anonymous,
            "user.login_failed",
            organisation_id=None,
            after={"reason": "rate_limited"},
        )
    note_login("rate_limited")
    note_rate_limit("login")
    raise LoginRateLimited(wait)


async def _verified_candidate(
    throttle: LoginThrottle, attempt: _Attempt, password: str
) -> login_statements.Candidate:
    """The account of the email and what it may log into, provided the password is its password."""
    found = await login_statements.candidate(attempt.session, attempt.email)
    # Unknown email and wrong password: same work, same answer.
    if not await verify_password(found.account.password_hash if found else None, password) or found is None:
        await throttle.failures_per_account.take(attempt.email)
        memberships = _memberships(found.choices) if found else []
        raise attempt.failed("invalid_credentials", memberships, LoginFailed())
    return found


def _memberships(choices: list[login_statements.Choice]) -> Memberships:
    return [(choice.membership.id, choice.organisation.id) for choice in choices]


def _chosen(
    attempt: _Attempt, choices: list[login_statements.Choice], organisation_id: uuid.UUID | None
) -> login_statements.Choice:
    """The membership logged into: the one in ``organisation_id``, or the account's only one."""
    if not choices:
        raise attempt.failed("no_membership", [], LoginFailed())
    if organisation_id is not None:
        chosen = [choice for choice in choices if choice.organisation.id == organisation_id]
        if not chosen:
            raise attempt.failed("organisation_not_found", _memberships(choices), NotAMember())
        return chosen[0]
    if len(choices) > 1:
        named = [{"id": str(choice.organisation.id), "name": choice.organisation.name} for choice in choices]
        refusal = OrganisationChoiceRequired(details={"organisations": named})
        raise attempt.failed("organisation_required", _memberships(choices), refusal)
    return choices[0]


# Built once (as users.service's account look-up): every login reads it.
_MEMBERSHIPS_OF_ACCOUNT = (
    select(Membership, Organisation)
    .join(Organisation, Organisation.id == Membership.organisation_id)
    .where(Membership.account_id == bindparam("account_id"))
    .order_by(Organisation.name, Organisation.id)
)


async def _chosen_membership(
    attempt: _Attempt, account: Account, organisation_id: uuid.UUID | None
) -> tuple[Membership, Organisation]:
    """As ``_chosen``, read in the request's transaction, after the account's lock (a login judged
    there: its role is resolved by ``sign_in``)."""
    rows = (await attempt.session.execute(_MEMBERSHIPS_OF_ACCOUNT, {"account_id": account.id})).all()
    choices = [login_statements.Choice(membership, organisation, None) for membership, organisation in rows]
    choice = _chosen(attempt, choices, organisation_id)
    return choice.membership, choice.organisation


async def login(
    session: AsyncSession,
    throttle: LoginThrottle,
    *,
    email: str,
    password: str,
    organisation_id: uuid.UUID | None,
    client_address: str,
    lifetime: timedelta,
    rp: RelyingParty | None = None,
    with_api_key: bool = False,
) -> LoginResult:
    """Every attempt leaves an audit entry: a success in the organisation logged into; a failure in
    each organisation of the account, or outside any when the email is unknown (or the attempt was
    throttled, which is decided before the account is looked up).

    An account with a second factor is not signed in here: once the password is right and the
    membership chosen, MfaRequired carries the challenge that ``complete_second_factor`` finishes
    (its refusal keeps the challenge). ``rp``: the relying party passkeys answer for; without it a
    passkey is not offered as the second step. ``with_api_key``: the answer will carry the API key
    to a role that may read it (bintu's login body), a reveal audited with the login.

    The account is read before the hash and unlocked (``authn.login_statements``); whatever is
    written after it first checks, under the account's lock, that the password verified is still
    the account's."""
    attempt = _Attempt(session, normalise_email(email), client_address)
    await _refuse_when_throttled(throttle, attempt)
    found = await _verified_candidate(throttle, attempt, password)
    account = found.account
    choice = _chosen(attempt, found.choices, organisation_id)
    if not account.mfa_enrolled and not needs_rehash(account.password_hash):
        result = await _password_only(attempt, account, choice, lifetime, with_api_key)
        if result is not None:
            return result
        # Something the login was decided on changed since the read: judged again, in the transaction.
    return await _in_transaction(attempt, account, password, organisation_id, lifetime, rp, with_api_key)


async def _in_transaction(
    attempt: _Attempt,
    account: Account,
    password: str,
    organisation_id: uuid.UUID | None,
    lifetime: timedelta,
    rp: RelyingParty | None,
    with_api_key: bool,
) -> LoginResult:
    """A login whose password is verified, in the request's transaction: a hash to upgrade, a second
    factor to ask for, or what the read saw changed before the write. The account is share-locked
    there and must still have the password given (a concurrent login may have upgraded its hash:
    then it is verified again); the memberships are read again under that lock."""
    session = attempt.session
    locked = await share_lock_account(session, account.id)
    if locked is None:  # gone meanwhile: as an unknown email, outside any organisation
        raise attempt.failed("invalid_credentials", [], LoginFailed())
    if locked.password_hash != account.password_hash and not await verify_password(
        locked.password_hash, password
    ):
        raise attempt.failed("invalid_credentials", await memberships_of(session, locked.id), LoginFailed())
    membership, organisation = await _chosen_membership(attempt, locked, organisation_id)
    if needs_rehash(locked.password_hash):
        await store_rehashed_password(session, locked, await hash_password(password))
    if locked.mfa_enrolled:
        raise await second_step.required(session, locked, membership, attempt.client_address, rp)
    return await sign_in(
        session,
        account=locked,
        organisation_id=organisation.id,
        client_address=attempt.client_address,
        lifetime=lifetime,
        method=PASSWORD,
        chosen=(membership, organisation),
        with_api_key=with_api_key,
    )


def _login_entries(
    account: Account,
    membership: Membership,
    organisation: Organisation,
    role: Role | None,
    *,
    client_address: str,
    method: str,
    with_api_key: bool,
) -> tuple[list[AuditEntry], bool]:
    """``user.login``, and ``apikey.revealed`` when the answer carries the API key (then True)."""
    actor = Actor(f"user:{membership.id}", account.email, client_address)
    entries = [
        entry(
            actor,
            "user.login",
            organisation_id=organisation.id,
            target_type="user",
            target_id=membership.id,
            # A password alone is how logins always were: its entries stay as they were.
            after=None if method == PASSWORD else {"method": method},
        )
    ]
    # A session limited to setting up a second factor gets no key: the key holds every permission
    # and knows no such limit.
    if with_api_key and not limited_to_enrolment(organisation, account.mfa_enrolled):
        reveal = api_key_login_reveal(actor, organisation.id, role)
        if reveal is not None:
            return [*entries, reveal], True
    return entries, False


async def _password_only(
    attempt: _Attempt,
    account: Account,
    choice: login_statements.Choice,
    lifetime: timedelta,
    with_api_key: bool,
) -> LoginResult | None:
    """The login of an account without a second factor: its session and audit entries written by
    one statement (on PostgreSQL), provided what it was decided on is still as read (the password
    verified, no second factor, the membership, its role, the organisation's policy); None, with
    nothing written, when not."""
    membership, organisation, role = choice.membership, choice.organisation, choice.role
    issued = new_session(membership, lifetime)
    entries, reveals = _login_entries(
        account,
        membership,
        organisation,
        role,
        client_address=attempt.client_address,
        method=PASSWORD,
        with_api_key=with_api_key,
    )
    written = await login_statements.write_session(
        attempt.session, account=account, choice=choice, new=issued.session, entries=entries
    )
    if not written:
        return None
    note_login("success")
    return LoginResult(issued, membership, organisation, role, account, api_key_revealed=reveals)


async def sign_in(
    session: AsyncSession,
    *,
    account: Account,
    organisation_id: uuid.UUID | None,
    client_address: str,
    lifetime: timedelta,
    method: str,
    chosen: tuple[Membership, Organisation] | None = None,
    with_api_key: bool = False,
) -> LoginResult:
    """The end of every login, once the person has proven who they are (``method``: "password",
    "password+totp", "password+passkey", "password+recoveryCode", "passkey"): the membership
    chosen (``organisation_id``, or the account's only one; refusals audited like a failed login)
    unless the caller chose it already (``chosen``), a bintu token issued, ``user.login`` audited
    (and the API key's reveal, ``with_api_key``: as ``login``)."""
    attempt = _Attempt(session, account.email, client_address)
    membership, organisation = chosen or await _chosen_membership(attempt, account, organisation_id)
    issued = await issue_token(session, membership, lifetime)
    role = await resolve_role(session, organisation.id, membership.role)
    entries, reveals = _login_entries(
        account,
        membership,
        organisation,
        role,
        client_address=client_address,
        method=method,
        with_api_key=with_api_key,
    )
    session.add_all(entries)
    note_login("success")
    return LoginResult(issued, membership, organisation, role, account, api_key_revealed=reveals)


# --- the second step of a login ---------------------------------------------------------------------


async def complete_second_factor(
    session: AsyncSession,
    throttle: LoginThrottle,
    box: SecretBox,
    *,
    challenge: str,
    answer: second_step.Answer,
    client_address: str,
    lifetime: timedelta,
    rp: RelyingParty | None = None,
    with_api_key: bool = False,
) -> LoginResult:
    """Finish a login that ``login`` answered with MfaRequired: the answer must be right for the
    account of the client's own challenge. A wrong answer counts against the challenge (the fifth
    uses it up) and against the account's failed-login budget, and is audited; the budget spent,
    429. No password is hashed or verified here. A recovery code signs in too, ends every other
    session of the account, and the result carries the mail that tells the owner (``notice``).

    The challenge and what it signs into are read unlocked (``authn.login_statements``). An app's
    right code is then written by one statement that locks the account first, as a password change
    does; any other answer takes the account's lock in the request's transaction before it is
    judged, so that the second steps of an account (two answers to one challenge among them) are
    judged one after the other, and a password change or reset waits for a step under way and then
    ends the session it made too. What the challenge's row is given there is conditional or
    relative (``challenges.consume``, ``challenges.count_wrong_answer``): read before the lock, it
    may have changed since."""
    token_hash = challenges.token_hash_of(challenge)
    step = await login_statements.second_step(session, token_hash) if token_hash else None
    taken = challenges.usable(
        step.challenge if step else None, purpose=challenges.MFA, client_address=client_address
    )
    assert step is not None  # usable() refused a missing challenge
    account, membership, organisation = step.account, step.choice.membership, step.choice.organisation
    attempt = _Attempt(session, account.email, client_address)
    wait = await throttle.failures_per_account.retry_after(account.email)
    if wait:
        note_login("rate_limited")
        note_rate_limit("login")
        raise LoginRateLimited(wait)
    method: str | None = None
    changed = False
    if answer.code is not None:
        app = totp.matching_app(box, step.apps, answer.code)
        outcome = await _app_code_only(attempt, step, app, lifetime, with_api_key) if app else None
        if isinstance(outcome, LoginResult):
            return outcome
        # REPLAYED: the code was accepted meanwhile, by another answer: a wrong answer now.
        # CHANGED (the role or the policy): nothing written; judged below, in the transaction.
        changed = outcome is login_statements.AppStep.CHANGED
    if changed or answer.code is None:
        locked = await lock_account(session, account.id)
        if locked is None:
            raise InvalidChallenge()  # the account is gone (its challenge with it)
        account = locked
        method = await second_step.verified_answer(session, box, rp, account, taken, step.apps, answer)
    if method is None:
        await throttle.failures_per_account.take(account.email)
        await challenges.count_wrong_answer(session, taken)
        kind = second_step.answer_kind(answer)
        record(
            session,
            attempt.anonymous,
            "user.login_failed",
            organisation_id=organisation.id,
            target_type="user",
            target_id=membership.id,
            after={"reason": "invalid_second_factor", "method": f"{PASSWORD}+{kind}"},
        )
        note_login("invalid_second_factor")
        raise InvalidSecondFactor()
    await challenges.consume(session, taken)
    notice = None
    if method == second_step.RECOVERY_CODE:
        actor = Actor(f"user:{membership.id}", account.email, client_address)
        left = await factors.recovery_code_used(session, account, actor=actor)
        notice = recovery_code_used_mail(account.email, remaining=left, client_address=client_address)
    # The membership (its role) and organisation (its policy) read again, under the account's lock.
    result = await sign_in(
        session,
        account=account,
        organisation_id=organisation.id,
        client_address=client_address,
        lifetime=lifetime,
        method=f"{PASSWORD}+{method}",
        with_api_key=with_api_key,
    )
    return replace(result, notice=notice)


async def _app_code_only(
    attempt: _Attempt,
    step: login_statements.SecondStep,
    app: tuple[TotpFactor, int],
    lifetime: timedelta,
    with_api_key: bool,
) -> LoginResult | login_statements.AppStep:
    """The second step of an app's right code (``app``: the app and the code's step), written by one
    statement (on PostgreSQL): the login, or what kept it from being written (ChallengeEndedMeanwhile
    when the challenge ended meanwhile)."""
    membership, organisation, role = step.choice.membership, step.choice.organisation, step.choice.role
    issued = new_session(membership, lifetime)
    entries, reveals = _login_entries(
        step.account,
        membership,
        organisation,
        role,
        client_address=attempt.client_address,
        method=f"{PASSWORD}+{second_step.TOTP}",
        with_api_key=with_api_key,
    )
    factor, code_step = app
    written = await login_statements.write_app_session(
        attempt.session,
        step=step,
        app=factor,
        code_step=code_step,
        now=utcnow(),
        new=issued.session,
        entries=entries,
    )
    if written is login_statements.AppStep.ENDED:
        raise ChallengeEndedMeanwhile()
    if written is not login_statements.AppStep.SIGNED_IN:
        return written
    note_login("success")
    return LoginResult(issued, membership, organisation, role, step.account, api_key_revealed=reveals)


async def logout(session: AsyncSession, principal: Principal) -> None:
    if principal.session_id is not None:
        await session.execute(delete(BintuSession).where(BintuSession.id == principal.session_id))


# Whether a session is still valid, read after its account's share lock (a statement of its own:
# one that locked the account and joined the session would, having waited for the lock, still see
# the session as it was when it began, though a reset had deleted it meanwhile).
_SESSION_STILL_VALID = (
    select(BintuSession.id)
    .join(
        Membership,
        (Membership.id == BintuSession.membership_id) & (Membership.token_key == BintuSession.token_key),
    )
    .where(BintuSession.id == bindparam("session_id"), BintuSession.expires_at > bindparam("now"))
)


async def account_still_signed_in(
    session: AsyncSession, account_id: uuid.UUID | None, session_id: uuid.UUID | None
) -> Account:
    """For a request that makes a new bintu token out of the one it presents (a named token, joining
    an organisation with one's token): the account, as long as the presented session has not ended
    since the request was authenticated; else Unauthenticated. A password change or reset updates
    the account row before it ends the account's sessions: with the share lock it waits for this
    request and then ends the token it made too; committed first, it leaves no session to present.
    (Unlocked, the token was inserted after the reset had ended "every session", and outlived it.)"""
    if account_id is None or session_id is None:
        raise Unauthenticated()
    account = await share_lock_account(session, account_id)
    values = {"session_id": session_id, "now": utcnow()}
    if account is None or (await session.execute(_SESSION_STILL_VALID, values)).first() is None:
        raise Unauthenticated()
    return account


MAX_NAMED_TOKEN_DAYS = 365


async def create_named_token(
    session: AsyncSession, principal: Principal, *, name: str, expires_in_days: int
) -> IssuedToken:
    """A long-lived bintu token of the calling user, for automation. Issued under the user's token
    key like any other, so renewing the key (or a role change) ends it."""
    if principal.membership_id is None:
        raise BadRequest(
            "A named bintu token belongs to a user: create it with your bintu token, not the API key.",
            code="user_required",
        )
    if not 1 <= expires_in_days <= MAX_NAMED_TOKEN_DAYS:
        raise BadRequest(f"expiresInDays must be 1 to {MAX_NAMED_TOKEN_DAYS}.", code="invalid_value")
    await account_still_signed_in(session, principal.account_id, principal.session_id)
    membership = await get_scoped(session, Membership, principal.membership_id, principal, what="user")
    issued = await issue_token(session, membership, timedelta(days=expires_in_days), name=name)
    record(
        session,
        Actor.of(principal),
        "token.created",
        organisation_id=principal.organisation_id,
        target_type="session",
        target_id=issued.session.id,
        after={"name": name, "expiresAt": issued.session.expires_at.isoformat()},
    )
    return issued
