"""Join the three feature branches (users, overview, delivery) into one head again.

Revision ID: 0006_merge
Revises: 0003_users, 0004_overview, 0005_delivery
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0006_merge"
down_revision: str | Sequence[str] | None = ("0003_users", "0004_overview", "0005_delivery")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: the branches touch different tables."""


def downgrade() -> None:
    """Nothing to undo."""
