"""held register reads released or rejected by a person: vee_read_reviews

A read held as implausible (finding ``implausible_read``) was left out of prepaid balances for
ever: nobody could say "the meter did register it". A review records that decision (released:
the read counts from then on; rejected: it stays out), who made it and why, once per meter and
instant, with an audit record.

Revision ID: 0035
Revises: 0034
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dianfei.db.types import UTCDateTime

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vee_read_reviews",
        sa.Column("meter_id", sa.String(length=32), nullable=False),
        sa.Column("read_at", UTCDateTime(), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("meter_id", "read_at", name=op.f("pk_vee_read_reviews")),
    )


def downgrade() -> None:
    op.drop_table("vee_read_reviews")
