"""payment_refusal_log: unverifiable callback refusals kept apart from the inbox, capped

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "payment_refusal_log",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(12), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("code", sa.String(24), nullable=False),
        sa.Column("detail", sa.String(200), nullable=True),
        sa.Column("claimed_transaction_id", sa.String(64), nullable=True),
        sa.Column("body_sha256", sa.String(64), nullable=True),
        sa.Column("body_size", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_refusal_log")),
    )
    op.create_index("ix_payment_refusal_log_last_at", "payment_refusal_log", ["last_at"])


def downgrade() -> None:
    op.drop_index("ix_payment_refusal_log_last_at", table_name="payment_refusal_log")
    op.drop_table("payment_refusal_log")
