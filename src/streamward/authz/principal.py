from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal, Protocol

AuthMethod = Literal["session", "api_key"]


class OrganisationRecord(Protocol):
    """What the access core knows of the organisation a Principal acts for. The row itself belongs
    to the orgs feature, which hands it back typed (``orgs.models.organisation_of``)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: an organisation member through a bintu token, or the organisation itself
    through its API key (the master key, holding every permission)."""

    organisation: OrganisationRecord
    permissions: frozenset[str]
    method: AuthMethod
    membership_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None
    email: str | None = None
    role: str | None = None
    session_id: uuid.UUID | None = None
    client_address: str | None = None
    # The organisation requires a second factor and the account has none: this session may reach
    # enrolment and logout only (web.authenticate refuses it everywhere else).
    enrolment_only: bool = False

    @property
    def organisation_id(self) -> uuid.UUID:
        return self.organisation.id

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        return f"user:{self.membership_id}" if self.membership_id else "apikey"
