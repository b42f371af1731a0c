"""approval_requests: maker-checker requests for waivers, write-offs, bill corrections,
suspensions and tariff changes

Revision ID: 0027
Revises: 0026
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "approval_requests",
        sa.Column("request_id", _ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("requested_by", sa.String(80), nullable=False),
        sa.Column("requested_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("decided_by", sa.String(80), nullable=True),
        sa.Column("decided_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("open_key", sa.String(96), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_approval_requests")),
    )
    op.create_index("uq_approval_requests_open_key", "approval_requests", ["open_key"],
                    unique=True)
    op.create_index("ix_approval_requests_state", "approval_requests",
                    ["state", "kind", "request_id"])
    op.create_index("ix_approval_requests_subject", "approval_requests", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_approval_requests_subject", table_name="approval_requests")
    op.drop_index("ix_approval_requests_state", table_name="approval_requests")
    op.drop_index("uq_approval_requests_open_key", table_name="approval_requests")
    op.drop_table("approval_requests")
