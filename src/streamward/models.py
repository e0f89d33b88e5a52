"""Every table, imported in one place so that Alembic and the tests see the whole schema."""

from streamward.audit.models import AuditEntry
from streamward.authn.models import BintuSession
from streamward.db import Base
from streamward.events.models import OutboxEvent
from streamward.orgs.models import Organisation
from streamward.users.models import Account, Membership

metadata = Base.metadata

__all__ = ["Account", "AuditEntry", "BintuSession", "Membership", "Organisation", "OutboxEvent", "metadata"]
