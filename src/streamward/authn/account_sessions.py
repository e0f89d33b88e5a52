"""Which bintu tokens are an account's: those of every membership it has. A password and a second
factor belong to the account, not to one membership, so what changes them ends all of these."""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, select

from streamward.authn.models import BintuSession
from streamward.users.models import Membership


def account_sessions(account_id: uuid.UUID) -> ColumnElement[bool]:
    """Sessions of every membership of the account."""
    return BintuSession.membership_id.in_(select(Membership.id).where(Membership.account_id == account_id))
