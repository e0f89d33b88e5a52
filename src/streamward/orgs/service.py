"""Organisations: creation, their keys (API key, player key, named bintu tokens), the VOD flag,
and the operator's changes to packages, levels and trial."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.models import AuditEntry
from streamward.audit.service import Actor, entry, record, record_change
from streamward.authz.permissions import Role
from streamward.authz.principal import Principal
from streamward.crypto import SecretBox, digest, new_token
from streamward.errors import BadRequest, NotFound
from streamward.events.catalogue import EventType
from streamward.orgs import packages as package_catalogue
from streamward.orgs.models import ANALYTICS_LEVELS, SUPPORT_LEVELS, Organisation, organisation_of
from streamward.pagination import Page, keyset_page

API_KEY_PREFIX = "swk"
PLAYER_KEY_PREFIX = "swp"
API_KEY_PURPOSE = "organisation.api_key"


@dataclass(frozen=True)
class CreatedOrganisation:
    organisation: Organisation
    api_key: str  # shown once to whoever created the organisation


async def lock_organisation(session: AsyncSession, organisation_id: uuid.UUID) -> None:
    """Serialise the membership changes of one organisation (role change, delete, joining,
    role deletion), so that rules counting members, such as "at least one nanoAdmin", hold under
    concurrent requests.

    PostgreSQL: a row lock on the organisation, taken before anything is counted; a concurrent
    request waits here and, under READ COMMITTED, counts again after the first one committed.
    ``FOR NO KEY UPDATE`` rather than ``FOR UPDATE``: it does not block other transactions from
    inserting rows that reference the organisation (audit entries, events). SQLite: a writing request
    already holds the database's write lock from its first statement (BEGIN IMMEDIATE, see db.py).
    """
    if session.get_bind().dialect.name == "sqlite":
        return
    await session.execute(
        select(Organisation.id).where(Organisation.id == organisation_id).with_for_update(key_share=True)
    )


MAX_NAME_LENGTH = 200  # the column's length


def _checked_name(name: str) -> str:
    """An organisation's name as stored: trimmed, 1 to 200 characters."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise ValueError(f"organisation name must be 1 to {MAX_NAME_LENGTH} characters")
    return name


def _check_level(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; one of: {', '.join(allowed)}")
    return value


async def create_organisation(
    session: AsyncSession,
    box: SecretBox,
    *,
    name: str,
    support_level: str = "basic",
    analytics_level: str = "basic",
    packages: list[str] | None = None,
    trial: bool = False,
) -> CreatedOrganisation:
    organisation = Organisation(
        name=_checked_name(name),
        support_level=_check_level(support_level, SUPPORT_LEVELS, "support level"),
        analytics_level=_check_level(analytics_level, ANALYTICS_LEVELS, "analytics level"),
        trial=trial,
        packages=package_catalogue.normalise(packages or []),
        webhook_events=[],
        vod_public=False,
        player_key=new_player_key(),
    )
    api_key = _set_new_api_key(organisation, box)
    session.add(organisation)
    await session.flush()
    return CreatedOrganisation(organisation, api_key)


def _set_new_api_key(organisation: Organisation, box: SecretBox) -> str:
    """Give the organisation a new API key and return it; the previous one stops matching at once
    (lookups go by the stored hash)."""
    api_key = new_token(API_KEY_PREFIX)
    organisation.api_key_hash = digest(api_key)
    organisation.api_key_sealed = box.seal(api_key, purpose=API_KEY_PURPOSE)
    return api_key


def new_player_key() -> str:
    return new_token(PLAYER_KEY_PREFIX)[:64]


def reveal_api_key(box: SecretBox, organisation: Organisation) -> str:
    return box.open(organisation.api_key_sealed, purpose=API_KEY_PURPOSE)


def record_settings_change(
    session: AsyncSession,
    actor: Actor | Principal,
    action: str,
    organisation: Organisation,
    *,
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    """A change to the organisation's own settings: its audit entry, and ``organisation.updated``
    naming the changed fields (the keys of ``after``)."""
    record_change(
        session,
        actor,
        action,
        organisation_id=organisation.id,
        target_type="organisation",
        target_id=organisation.id,
        event=EventType.ORGANISATION_UPDATED,
        payload=EventType.ORGANISATION_UPDATED.payload(id=str(organisation.id), changed=list(after)),
        before=before,
        after=after,
    )


async def reveal_api_key_audited(session: AsyncSession, box: SecretBox, principal: Principal) -> str:
    """The API key, for a caller holding ``apikey:read``; every reveal leaves an audit entry."""
    record(
        session,
        Actor.of(principal),
        "apikey.revealed",
        organisation_id=principal.organisation_id,
        target_type="organisation",
        target_id=principal.organisation_id,
    )
    return reveal_api_key(box, organisation_of(principal))


def api_key_login_reveal(actor: Actor, organisation_id: uuid.UUID, role: Role | None) -> AuditEntry | None:
    """bintu's login answer carries the API key for roles holding ``apikey:read``. That is a reveal
    like any other, so it is audited too: the entry the login writes with its session, or None when
    the role does not see the key (the answer then carries none)."""
    if role is None or "apikey:read" not in role.permissions:
        return None
    return entry(
        actor,
        "apikey.revealed",
        organisation_id=organisation_id,
        target_type="organisation",
        target_id=organisation_id,
        after={"via": "login"},
    )


async def _locked_for_rotation(session: AsyncSession, principal: Principal) -> Organisation:
    """The caller's organisation, locked and read again before one of its keys is replaced.

    The keys are unique columns: on PostgreSQL, updating one needs the row's strongest lock, which
    waits for every transaction holding even the weakest (any insert of a row referencing the
    organisation, such as an audit entry or an event). Two rotations that both got that far first
    waited for each other: a deadlock, a 500. Taking the organisation lock before writing anything
    makes concurrent rotations queue instead; the last one to commit wins, and the audit's
    ``before`` is what the previous one committed.
    """
    await lock_organisation(session, principal.organisation_id)
    organisation = organisation_of(principal)
    await session.refresh(organisation)
    return organisation


async def rotate_api_key(session: AsyncSession, box: SecretBox, principal: Principal) -> str:
    """A new API key, shown once to the caller; the old key stops working with this transaction."""
    organisation = await _locked_for_rotation(session, principal)
    api_key = _set_new_api_key(organisation, box)
    record_change(
        session,
        principal,
        "apikey.rotated",
        organisation_id=organisation.id,
        target_type="organisation",
        target_id=organisation.id,
        event=EventType.APIKEY_ROTATED,
        payload=EventType.APIKEY_ROTATED.payload(id=str(organisation.id), rotatedBy=principal.actor),
    )
    await session.flush()
    return api_key


async def rotate_player_key(session: AsyncSession, principal: Principal) -> str:
    organisation = await _locked_for_rotation(session, principal)
    before = organisation.player_key
    organisation.player_key = new_player_key()
    # The player key is public by design (embedded in web pages), so it may be audited.
    record_settings_change(
        session,
        principal,
        "playerkey.rotated",
        organisation,
        before={"playerKey": before},
        after={"playerKey": organisation.player_key},
    )
    await session.flush()
    return organisation.player_key


async def set_vod_public(session: AsyncSession, principal: Principal, public: bool) -> bool:
    organisation = organisation_of(principal)
    if organisation.vod_public != public:
        record_settings_change(
            session,
            principal,
            "organisation.vod_visibility_changed",
            organisation,
            before={"vodPublic": organisation.vod_public},
            after={"vodPublic": public},
        )
        organisation.vod_public = public
        await session.flush()
    return organisation.vod_public


async def set_mfa_required(session: AsyncSession, principal: Principal, required: bool) -> bool:
    """Require a second factor of every member, or stop requiring it. Applies from each member's
    next request: a member without one then reaches only enrolment and logout."""
    # This session's own row (the credential's look-up may have loaded it elsewhere): no query
    # when it is already here.
    organisation = await session.get(Organisation, principal.organisation_id)
    if organisation is None:  # deleted since the credential was looked up
        raise NotFound()
    if organisation.mfa_required != required:
        record_settings_change(
            session,
            principal,
            "organisation.mfa_policy_changed",
            organisation,
            before={"mfaRequired": organisation.mfa_required},
            after={"mfaRequired": required},
        )
        organisation.mfa_required = required
        await session.flush()
    return organisation.mfa_required


class InvalidOrganisationChange(BadRequest):
    code = "invalid_value"


@dataclass(frozen=True)
class OrganisationChanges:
    """What the platform operator changes; None leaves a field as it is."""

    name: str | None = None
    support_level: str | None = None
    analytics_level: str | None = None
    trial: bool | None = None
    packages: list[str] | None = None  # replaces the whole set
    add_packages: list[str] | None = None
    remove_packages: list[str] | None = None


OPERATOR = Actor("operator")


async def get_organisation(session: AsyncSession, organisation_id: uuid.UUID) -> Organisation:
    """Any organisation by id: for the platform operator only, who stands above the tenants."""
    organisation = await session.get(Organisation, organisation_id)
    if organisation is None:
        raise NotFound("No such organisation.")
    return organisation


async def list_organisations(session: AsyncSession, *, limit: int, cursor: str | None) -> Page[Organisation]:
    """Every organisation, newest first (platform operator only)."""
    return await keyset_page(session, select(Organisation), Organisation.id, limit=limit, cursor=cursor)


async def update_organisation(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    changes: OrganisationChanges,
    *,
    actor: Actor = OPERATOR,
) -> Organisation:
    """The operator's change of name, levels, trial flag and packages; organisation users cannot."""
    organisation = await session.get(Organisation, organisation_id, with_for_update=True)
    if organisation is None:
        raise NotFound("No such organisation.")
    before = _operator_view(organisation)
    try:
        if changes.name is not None:
            organisation.name = _checked_name(changes.name)
        if changes.support_level is not None:
            organisation.support_level = _check_level(changes.support_level, SUPPORT_LEVELS, "support level")
        if changes.analytics_level is not None:
            organisation.analytics_level = _check_level(
                changes.analytics_level, ANALYTICS_LEVELS, "analytics level"
            )
        if changes.trial is not None:
            organisation.trial = changes.trial
        if changes.packages is not None or changes.add_packages or changes.remove_packages:
            organisation.packages = package_catalogue.change(
                organisation.packages,
                replace=changes.packages,
                add=changes.add_packages,
                remove=changes.remove_packages,
            )
    except ValueError as exc:
        raise InvalidOrganisationChange(str(exc)) from None
    after = _operator_view(organisation)
    changed = [field for field in after if after[field] != before[field]]
    if changed:
        record_settings_change(
            session,
            actor,
            "organisation.updated",
            organisation,
            before={field: before[field] for field in changed},
            after={field: after[field] for field in changed},
        )
        await session.flush()
    return organisation


def _operator_view(organisation: Organisation) -> dict[str, Any]:
    return {
        "name": organisation.name,
        "supportLevel": organisation.support_level,
        "analyticsLevel": organisation.analytics_level,
        "trial": organisation.trial,
        "packages": sorted(organisation.packages),
    }
