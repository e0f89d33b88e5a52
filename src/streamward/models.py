"""Every table, imported in one place so that Alembic and the tests see the whole schema."""

from streamward.audit.models import AuditEntry
from streamward.authn.mfa.models import LoginChallenge, Passkey, RecoveryCode, TotpFactor
from streamward.authn.models import BintuSession, PasswordReset
from streamward.db import Base
from streamward.events.models import OutboxEvent, WebhookDelivery
from streamward.invites.models import Invitation
from streamward.orgs.models import Organisation
from streamward.playback.models import PlaybackRevocation, PlaybackSigningKey
from streamward.roles.models import CustomRole
from streamward.streams.models import Stream, StreamTag
from streamward.users.models import Account, Membership
from streamward.vod.models import VodAsset

metadata = Base.metadata

__all__ = [
    "Account",
    "AuditEntry",
    "BintuSession",
    "CustomRole",
    "Invitation",
    "LoginChallenge",
    "Membership",
    "Organisation",
    "OutboxEvent",
    "Passkey",
    "PasswordReset",
    "PlaybackRevocation",
    "PlaybackSigningKey",
    "RecoveryCode",
    "Stream",
    "StreamTag",
    "TotpFactor",
    "VodAsset",
    "WebhookDelivery",
    "metadata",
]
