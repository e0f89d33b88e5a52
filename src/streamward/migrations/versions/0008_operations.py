"""Operations: what housekeeping needs to purge cheaply; the request id on audit entries; the
anonymous stream-group lookup by group id across organisations.

Revision ID: 0008_operations
Revises: 0007_bintu_streams
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_operations"
down_revision: str | Sequence[str] | None = "0007_bintu_streams"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Housekeeping deletes expired bintu sessions in batches; without this every batch scanned the table.
    op.create_index("ix_session_expires", "session", ["expires_at"])
    # The X-Request-ID of the request that made the entry: joins an audit entry to its log lines.
    op.add_column("audit_entry", sa.Column("request_id", sa.String(128), nullable=True))
    # Players without credentials name a group by its id alone: the first organisation to use it.
    op.create_index("ix_stream_group_id", "stream", ["group_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_stream_group_id", table_name="stream")
    with op.batch_alter_table("audit_entry") as batch:
        batch.drop_column("request_id")
    op.drop_index("ix_session_expires", table_name="session")
