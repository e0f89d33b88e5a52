"""Second factors: authenticator apps, passkeys, recovery codes, login challenges; the account's
"has a usable factor" flag and the organisation's "second factor required" policy.

Revision ID: 0009_second_factor
Revises: 0008_operations
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_second_factor"
down_revision: str | Sequence[str] | None = "0008_operations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _account_fk() -> sa.Column[uuid.UUID]:
    return sa.Column("account_id", sa.Uuid(), sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite does it in place with a constant default): no table rebuild.
    op.add_column(
        "account", sa.Column("mfa_enrolled", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "organisation", sa.Column("mfa_required", sa.Boolean(), nullable=False, server_default=sa.false())
    )

    op.create_table(
        "totp_factor",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _account_fk(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("secret_sealed", sa.String(255), nullable=False),
        sa.Column("last_used_step", sa.BigInteger(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_totp_factor_account", "totp_factor", ["account_id"])

    op.create_table(
        "passkey",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _account_fk(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("credential_id", sa.String(1400), nullable=False, unique=True),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("transports", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_passkey_account", "passkey", ["account_id"])

    op.create_table(
        "recovery_code",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _account_fk(),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("account_id", "code_hash"),
    )

    op.create_table(
        "login_challenge",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=True),
        sa.Column(
            "membership_id", sa.Uuid(), sa.ForeignKey("membership.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("client_address", sa.String(64), nullable=False),
        sa.Column("webauthn_challenge", sa.String(128), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_login_challenge_expires", "login_challenge", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_login_challenge_expires", table_name="login_challenge")
    op.drop_table("login_challenge")
    op.drop_table("recovery_code")
    op.drop_index("ix_passkey_account", table_name="passkey")
    op.drop_table("passkey")
    op.drop_index("ix_totp_factor_account", table_name="totp_factor")
    op.drop_table("totp_factor")
    with op.batch_alter_table("organisation") as batch:
        batch.drop_column("mfa_required")
    with op.batch_alter_table("account") as batch:
        batch.drop_column("mfa_enrolled")
