"""The catalogue of events: every event Streamward queues for an organisation's webhook, whether an
organisation may subscribe to it, how it is sent, and what its payload holds.

``EventType`` is the one list: ``emit`` takes its members, the webhook settings offer the
subscribable ones (API and dashboard), and the README's table is checked against it by a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class EventSpec:
    description: str
    fields: tuple[str, ...]  # the payload's keys: ``payload()`` insists on exactly these (plus extras)
    optional: tuple[str, ...] = ()
    subscribable: bool = True  # management events: sent only to organisations that subscribed
    form_encoded: bool = False  # media-server stream events: bintu's form-encoded call, always sent


_USER = ("userId", "email")
_STREAM = ("id", "name", "state")


class EventType(StrEnum):
    APIKEY_ROTATED = "apikey.rotated"
    ORGANISATION_UPDATED = "organisation.updated"
    STREAM_CREATED = "stream.created"
    STREAM_UPDATED = "stream.updated"
    STREAM_DELETED = "stream.deleted"
    USER_INVITED = "user.invited"
    USER_JOINED = "user.joined"
    USER_ROLE_CHANGED = "user.role_changed"
    USER_TOKEN_RESET = "user.token_reset"
    USER_DELETED = "user.deleted"
    INVITE_REVOKED = "invite.revoked"
    ROLE_CREATED = "role.created"
    ROLE_UPDATED = "role.updated"
    ROLE_DELETED = "role.deleted"
    MEDIA_UPDATE_PUBLISH = "media.update_publish"
    MEDIA_PUBLISH_DONE = "media.publish_done"
    WEBHOOK_TEST = "webhook.test"

    @property
    def spec(self) -> EventSpec:
        return _SPECS[self]

    @property
    def subscribable(self) -> bool:
        return self.spec.subscribable

    @property
    def form_encoded(self) -> bool:
        return self.spec.form_encoded

    def payload(self, **fields: Any) -> dict[str, Any]:
        """The event's payload, checked against the catalogue: a missing key is a programming
        error caught by the first test that emits the event, not a receiver's surprise."""
        missing = [name for name in self.spec.fields if name not in fields]
        if missing:
            raise ValueError(f"{self.value} payload lacks {', '.join(missing)}")
        return fields


_SPECS: dict[EventType, EventSpec] = {
    EventType.APIKEY_ROTATED: EventSpec("The organisation's API key was replaced.", ("id", "rotatedBy")),
    EventType.ORGANISATION_UPDATED: EventSpec(
        "Organisation settings changed (packages, levels, player key, webhook, VOD visibility...).",
        ("id", "changed"),
    ),
    EventType.STREAM_CREATED: EventSpec("A stream was created.", (*_STREAM, "tags")),
    EventType.STREAM_UPDATED: EventSpec(
        "A stream changed: lifecycle action, tags or push URL (``change`` says which).",
        (*_STREAM, "change"),
        optional=("previousState", "tags"),
    ),
    EventType.STREAM_DELETED: EventSpec("A stream was deleted.", (*_STREAM, "previousState")),
    EventType.USER_INVITED: EventSpec(
        "An invitation was created.", ("inviteId", "role", "email", "expiresAt")
    ),
    EventType.USER_JOINED: EventSpec("Someone joined with an invitation.", (*_USER, "role", "inviteId")),
    EventType.USER_ROLE_CHANGED: EventSpec("A member's role changed.", (*_USER, "from", "to")),
    EventType.USER_TOKEN_RESET: EventSpec(
        "A member's token key was renewed: their bintu tokens ended.", _USER
    ),
    EventType.USER_DELETED: EventSpec("A member was removed.", (*_USER, "role")),
    EventType.INVITE_REVOKED: EventSpec(
        "An invitation was revoked.", ("inviteId", "role", "email", "expiresAt")
    ),
    EventType.ROLE_CREATED: EventSpec("A custom role was created.", ("name", "permissions")),
    EventType.ROLE_UPDATED: EventSpec(
        "A custom role's permissions or description changed.", ("name", "permissions")
    ),
    EventType.ROLE_DELETED: EventSpec(
        "A custom role was deleted.", ("name", "reassignedTo", "reassignedMembers", "revokedInvitations")
    ),
    EventType.MEDIA_UPDATE_PUBLISH: EventSpec(
        "A media server's periodic report on a live stream (bintu ``call=update_publish``).",
        ("fields",),
        subscribable=False,
        form_encoded=True,
    ),
    EventType.MEDIA_PUBLISH_DONE: EventSpec(
        "A live stream ended at the media server (bintu ``call=publish_done``).",
        ("fields",),
        subscribable=False,
        form_encoded=True,
    ),
    EventType.WEBHOOK_TEST: EventSpec("A test event sent from the webhook settings.", (), subscribable=False),
}

SUBSCRIBABLE: tuple[EventType, ...] = tuple(event for event in EventType if event.subscribable)
FORM_ENCODED: frozenset[EventType] = frozenset(event for event in EventType if event.form_encoded)
