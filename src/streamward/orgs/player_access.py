"""Player access to an organisation's stream info: the player key, and Secure Playback's
"playback token required" setting for reads without credentials.

The player key identifies an organisation to its web players (it is embedded in public pages): it
allows read-only stream listings and nothing else. Whether players also need a playback token is
the organisation's choice (``player_token_required``), off by default: bintu players read stream
info anonymously, and turning the requirement on breaks every embed that has no token.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authz.principal import Principal
from streamward.crypto import digest
from streamward.db import LookupSource, PreparedSelect, detached, loaded_columns
from streamward.orgs.models import Organisation, organisation_of
from streamward.orgs.packages import require_package
from streamward.orgs.service import record_settings_change

# Built once; the digest column is unique, so this is one index probe.
_PLAYER_KEY_LOOKUP = PreparedSelect(
    select(*loaded_columns(Organisation)).where(Organisation.player_key_hash == bindparam("key_hash"))
)


async def organisation_by_player_key(source: LookupSource, player_key: str) -> Organisation | None:
    """The organisation whose player key this is, detached (read-only). Looked up by SHA-256 like the
    API key: the database compares digests, never the key itself, so timing tells nothing about it."""
    rows = await _PLAYER_KEY_LOOKUP.rows(source, {"key_hash": digest(player_key)})
    if not rows:
        return None
    return detached(Organisation, dict(zip(_PLAYER_KEY_LOOKUP.names, rows[0], strict=True)))


async def set_player_token_required(session: AsyncSession, principal: Principal, required: bool) -> bool:
    """Require (or stop requiring) a playback token for anonymous and player-key stream reads.

    Requiring one needs the Secure Playback package (players could not get a token otherwise);
    turning it off is always allowed, so an organisation that lost the package is never stuck.
    """
    organisation = organisation_of(principal)
    if required:
        require_package(organisation.packages, "secure_playback")
    if organisation.player_token_required != required:
        record_settings_change(
            session,
            principal,
            "organisation.player_access_changed",
            organisation,
            before={"playerTokenRequired": organisation.player_token_required},
            after={"playerTokenRequired": required},
        )
        organisation.player_token_required = required
        await session.flush()
    return organisation.player_token_required
