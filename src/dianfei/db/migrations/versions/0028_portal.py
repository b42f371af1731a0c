"""portal: customers.phone_lookup (keyed hash of the phone), one-time sign-in codes

The look-up column is filled by ``dianfei portal index-phones`` (it needs the PII keys, which a
migration must not require); customers added from now on get it from the import path.

Revision ID: 0028
Revises: 0027
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("phone_lookup", sa.String(80), nullable=True))
    op.create_index("ix_customers_phone_lookup", "customers", ["phone_lookup"])
    op.create_table(
        "portal_otp_challenges",
        sa.Column("challenge_id", _ID, autoincrement=True, nullable=False),
        sa.Column("phone_key", sa.String(80), nullable=False),
        sa.Column("customer_id", sa.String(32), nullable=True),
        sa.Column("code_hash", sa.String(120), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("created_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("used_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("challenge_id", name=op.f("pk_portal_otp_challenges")),
    )
    op.create_index("ix_portal_otp_challenges_phone", "portal_otp_challenges",
                    ["phone_key", "created_at"])
    op.create_index("ix_portal_otp_challenges_source", "portal_otp_challenges",
                    ["source", "created_at"])
    op.create_table(
        "portal_otp_failures",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("phone_key", sa.String(80), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_otp_failures")),
    )
    op.create_index("ix_portal_otp_failures_phone", "portal_otp_failures", ["phone_key", "at"])
    op.create_index("ix_portal_otp_failures_source", "portal_otp_failures", ["source", "at"])


def downgrade() -> None:
    op.drop_index("ix_portal_otp_failures_source", table_name="portal_otp_failures")
    op.drop_index("ix_portal_otp_failures_phone", table_name="portal_otp_failures")
    op.drop_table("portal_otp_failures")
    op.drop_index("ix_portal_otp_challenges_source", table_name="portal_otp_challenges")
    op.drop_index("ix_portal_otp_challenges_phone", table_name="portal_otp_challenges")
    op.drop_table("portal_otp_challenges")
    op.drop_index("ix_customers_phone_lookup", table_name="customers")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("phone_lookup")
