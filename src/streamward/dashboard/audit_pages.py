"""The audit log: filters, keyset pages, and the CSV download (same service and CSV writer as
``/api/audit``, behind the dashboard's cookie session).

Rows read as sentences — who did what to whom — with the change as "field: before → after" lines.
Targets are named (a user's email, a stream's name, a role's title) by one query per kind of target
on the page, never one per row; what cannot be named any more (a deleted stream) keeps its id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from streamward.audit import export
from streamward.audit.models import AuditEntry
from streamward.audit.service import ACTOR_FILTER_LENGTH, AuditFilter, list_entries
from streamward.authz.principal import Principal
from streamward.dashboard.core import Viewer, page, render
from streamward.dashboard.page_tools import list_url
from streamward.dashboard.templating import role_label
from streamward.errors import InvalidTime
from streamward.invites.models import Invitation
from streamward.pagination import DEFAULT_LIMIT
from streamward.roles.lookup import role_title
from streamward.runtime import Runtime
from streamward.schemas import column_query
from streamward.streams.models import Stream
from streamward.users.models import Account, Membership
from streamward.web.params import Cursor
from streamward.web.routing import Router
from streamward.web.session import DbSession, reads

router = Router(include_in_schema=False)

Actor = Annotated[str | None, Query(max_length=ACTOR_FILTER_LENGTH)]
Action = Annotated[str | None, column_query(AuditEntry.action)]
TargetType = Annotated[str | None, column_query(AuditEntry.target_type, alias="target_type")]
Target = Annotated[str | None, column_query(AuditEntry.target_id)]
# Times are checked by the audit service (400 invalid_time), not here.
Since = Annotated[str | None, Query(alias="from")]
Until = Annotated[str | None, Query(alias="to")]

# Every action the services record (tests/test_dash_overview.py checks the sources against it):
# the words of a row's sentence, and the filter's label.
ACTIONS: dict[str, tuple[str, str]] = {
    "apikey.revealed": ("revealed the API key", "API key revealed"),
    "apikey.rotated": ("rotated the API key", "API key rotated"),
    "playerkey.rotated": ("rotated the player key", "Player key rotated"),
    "token.created": ("created a bintu token", "Bintu token created"),
    "organisation.updated": ("updated the organisation", "Organisation updated"),
    "organisation.vod_visibility_changed": ("changed VOD visibility", "VOD visibility changed"),
    "organisation.player_access_changed": ("changed player access", "Player access changed"),
    "organisation.mfa_policy_changed": ("changed the second-factor policy", "Second-factor policy changed"),
    "webhook.updated": ("updated the webhook", "Webhook updated"),
    "webhook.secret_rotated": ("rotated the webhook secret", "Webhook secret rotated"),
    "webhook.deleted": ("removed the webhook", "Webhook removed"),
    "webhook.disabled": ("disabled the webhook", "Webhook disabled (410 Gone)"),
    "webhook.delivery_failed": ("gave up delivering an event", "Delivery given up"),
    "webhook.redelivered": ("redelivered an event", "Event redelivered"),
    "user.login": ("signed in", "Signed in"),
    "user.login_failed": ("failed to sign in", "Sign-in failed"),
    "user.joined": ("joined the organisation", "User joined"),
    "user.role_changed": ("changed the role of", "Role changed"),
    "user.token_reset": ("reset the token of", "Token reset"),
    "user.deleted": ("deleted the user", "User deleted"),
    "user.password_changed": ("changed the password of", "Password changed"),
    "user.password_reset": ("reset the password of", "Password reset"),
    "user.password_reset_requested": ("asked to reset the password of", "Password reset asked for"),
    "user.mfa_added": ("added a second factor for", "Second factor added"),
    "user.mfa_removed": ("removed a second factor of", "Second factor removed"),
    "user.mfa_reset": ("removed every second factor of", "Second factors reset"),
    "user.recovery_code_used": ("signed in with a recovery code as", "Recovery code used"),
    "user.recovery_codes_regenerated": ("made new recovery codes for", "Recovery codes replaced"),
    "invite.created": ("created an invitation", "Invitation created"),
    "invite.renewed": ("renewed an invitation", "Invitation renewed"),
    "invite.revoked": ("revoked an invitation", "Invitation revoked"),
    "role.created": ("created the role", "Role created"),
    "role.updated": ("changed the role", "Role changed (permissions)"),
    "role.deleted": ("deleted the role", "Role deleted"),
    "stream.created": ("created the stream", "Stream created"),
    "stream.published": ("started publishing", "Stream published"),
    "stream.publish_rejected": ("was refused publishing", "Publishing refused"),
    "stream.publish_done": ("stopped publishing", "Stream ended"),
    "stream.stopped": ("stopped the stream", "Stream stopped"),
    "stream.locked": ("locked the stream", "Stream locked"),
    "stream.unlocked": ("unlocked the stream", "Stream unlocked"),
    "stream.deleted": ("deleted the stream", "Stream deleted"),
    "stream.tags_updated": ("changed the tags of", "Stream tags changed"),
    "stream.push_url_changed": ("changed the push URL of", "Push URL changed"),
    "tag.renamed": ("renamed the tag", "Tag renamed"),
    "tag.deleted": ("deleted the tag", "Tag deleted"),
    "vod.created": ("added the VOD asset", "VOD asset added"),
    "vod.deleted": ("deleted the VOD asset", "VOD asset deleted"),
    "playback.key_created": ("created the playback signing key", "Playback key created"),
    "playback.keys_rotated": ("rotated the playback signing keys", "Playback keys rotated"),
    "playback.token_revoked": ("revoked the playback token", "Playback token revoked"),
}
TARGET_TYPES: dict[str, str] = {
    "user": "User",
    "invite": "Invitation",
    "role": "Role",
    "stream": "Stream",
    "tag": "Tag",
    "organisation": "Organisation",
    "event": "Webhook event",
    "vod": "VOD asset",
    "session": "Bintu token",
    "playback_key": "Playback signing key",
    "playback_token": "Playback token",
}
# Who acted, when it was no member (members are named by their email).
ACTORS = {
    "apikey": "The API key",
    "operator": "The platform operator",
    "system": "Streamward",
    "anonymous": "Someone not signed in",
}
# Fields of before/after whose values are role names: shown as roles are everywhere.
_ROLE_FIELDS = {"role", "reassignedTo", "reassigned_to"}


@dataclass(frozen=True)
class Change:
    field: str
    before: str | None  # None: the side did not have it (a field set or cleared)
    after: str | None


@dataclass(frozen=True)
class Row:
    entry: AuditEntry
    actor: str
    actor_is_member: bool
    action: str
    target: str | None  # its name, when it has one we know
    target_kind: str | None
    changes: list[Change]


def _value(field: str, value: Any) -> str:
    if value is None or value == "" or value == []:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if field in _ROLE_FIELDS and isinstance(value, str):
        return role_label(value, role_title(value))
    if isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
        return ", ".join(str(item) for item in value)
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def changes_of(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Change]:
    """One line per field that changed: "field: before → after". A field on one side only (what a
    deletion removed, what a sign-in failure reports) is a line of its own; unchanged fields of a
    snapshot are left out."""
    before, after = before or {}, after or {}
    lines: list[Change] = []
    for field in [*before, *(key for key in after if key not in before)]:
        if field in before and field in after:
            if before[field] != after[field]:
                lines.append(Change(field, _value(field, before[field]), _value(field, after[field])))
        elif field in before:
            lines.append(Change(field, _value(field, before[field]), None))
        else:
            lines.append(Change(field, None, _value(field, after[field])))
    return lines


def _uuids(values: Iterable[str]) -> list[uuid.UUID]:
    ids = []
    for value in values:
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            continue
    return ids


async def target_names(
    db: DbSession, principal: Principal, entries: Sequence[AuditEntry]
) -> dict[tuple[str, str], str]:
    """Names of the page's targets, keyed by (target type, target id): one query per kind of target
    on the page (users, streams, invitations), whatever the number of rows; scoped to the viewer's
    organisation like every read."""
    wanted: dict[str, set[str]] = {}
    for entry in entries:
        if entry.target_type and entry.target_id:
            wanted.setdefault(entry.target_type, set()).add(entry.target_id)
    org = principal.organisation_id
    names: dict[tuple[str, str], str] = {}
    if ids := _uuids(wanted.get("user", ())):
        rows = await db.execute(
            select(Membership.id, Account.email)
            .join(Account, Account.id == Membership.account_id)
            .where(Membership.organisation_id == org, Membership.id.in_(ids))
        )
        names |= {("user", str(member)): email for member, email in rows}
    if ids := _uuids(wanted.get("stream", ())):
        streams = await db.execute(
            select(Stream.id, Stream.name).where(Stream.organisation_id == org, Stream.id.in_(ids))
        )
        names |= {("stream", str(stream)): name for stream, name in streams}
    if ids := _uuids(wanted.get("invite", ())):
        invitations = await db.execute(
            select(Invitation.id, Invitation.email, Invitation.role).where(
                Invitation.organisation_id == org, Invitation.id.in_(ids)
            )
        )
        for invitation, email, role in invitations:
            as_role = role_label(role, role_title(role))
            names[("invite", str(invitation))] = (
                f"the invitation for {email or 'anyone with the link'} as {as_role}"
            )
    for name in wanted.get("role", ()):  # roles are recorded by name; predefined ones have a title
        names[("role", name)] = role_label(name, role_title(name))
    for name in wanted.get("tag", ()):
        names[("tag", name)] = name
    if "organisation" in wanted:
        names |= {("organisation", target): principal.organisation.name for target in wanted["organisation"]}
    return names


def _deleted_name(entry: AuditEntry) -> str | None:
    """A target that is gone may still be named by the entry itself (a deleted user's email)."""
    for side in (entry.before or {}, entry.after or {}):
        for field in ("email", "name"):
            if isinstance(side.get(field), str):
                return str(side[field])
    return None


def describe(entries: Sequence[AuditEntry], names: dict[tuple[str, str], str]) -> list[Row]:
    rows = []
    for entry in entries:
        member = entry.actor.startswith("user:")
        actor = entry.actor_email if entry.actor_email else ACTORS.get(entry.actor, entry.actor)
        target = None
        if entry.target_type and entry.target_id:
            target = names.get((entry.target_type, entry.target_id)) or _deleted_name(entry)
        rows.append(
            Row(
                entry=entry,
                actor=actor,
                actor_is_member=member,
                action=ACTIONS.get(entry.action, (entry.action, ""))[0],
                target=target,
                target_kind=TARGET_TYPES.get(entry.target_type or "", entry.target_type),
                changes=changes_of(entry.before, entry.after),
            )
        )
    return rows


def _options(catalogue: dict[str, str], chosen: str | None) -> list[tuple[str, str]]:
    """A select's (value, label) pairs; a value from an older link that the catalogue lacks stays."""
    options = sorted(catalogue.items(), key=lambda item: item[1])
    if chosen and chosen not in catalogue:
        options.insert(0, (chosen, chosen))
    return options


def _filter(
    actor: str | None,
    action: str | None,
    target_type: str | None,
    target: str | None,
    since: str | None,
    until: str | None,
) -> AuditFilter:
    """The page's date fields are whole days: "to" includes its day."""
    return AuditFilter.of(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target,
        since=since,
        until=until,
        whole_days=True,
    )


@router.get("/audit")
@reads
async def audit_log(
    request: Request,
    viewer: Annotated[Viewer, page("audit:read")],
    db: DbSession,
    actor: Actor = None,
    action: Action = None,
    target_type: TargetType = None,
    target: Target = None,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
) -> Response:
    filters = {
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target": target,
        "from": since,
        "to": until,
    }
    where: AuditFilter | None = None
    error: str | None = None
    try:
        where = _filter(actor, action, target_type, target, since, until)
    except InvalidTime as invalid:
        error = invalid.message
    entries = (
        await list_entries(db, viewer.principal, where, limit=DEFAULT_LIMIT, cursor=cursor)
        if where is not None
        else None
    )
    items = list(entries.items) if entries else []
    rows = describe(items, await target_names(db, viewer.principal, items))
    return render(
        request,
        "audit.html",
        status_code=400 if error else 200,
        title="Audit log",
        section="audit",
        filters={key: value or "" for key, value in filters.items()},
        rows=rows,
        action_options=_options({a: label for a, (_, label) in ACTIONS.items()}, action),
        target_type_options=_options(TARGET_TYPES, target_type),
        error=error,
        filtered=any(filters.values()),
        cursor=cursor,
        first_url=list_url("/audit", **filters),
        next_url=list_url("/audit", **filters, cursor=entries.next_cursor)
        if entries and entries.next_cursor
        else None,
        csv_url=list_url("/audit/export.csv", **filters),
    )


@router.get("/audit/export.csv")
@reads
async def audit_csv(
    request: Request,
    viewer: Annotated[Viewer, page("audit:read")],
    actor: Actor = None,
    action: Action = None,
    target_type: TargetType = None,
    target: Target = None,
    since: Since = None,
    until: Until = None,
) -> Response:
    """Every entry the filters select (not one page), streamed; the JSON API's writer."""
    runtime: Runtime = request.app.state.runtime
    where = _filter(actor, action, target_type, target, since, until)
    return export.csv_response(runtime.database, viewer.principal, where)
