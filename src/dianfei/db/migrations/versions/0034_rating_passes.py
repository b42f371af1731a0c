"""the daily rating costs what the day holds: credit_rating_passes, credit_rating_queue and an
index on collection_events.business_date

The good-payer rating re-read twelve months of every account's collection events each day (the
cost of a day grew with the history). Now a day re-rates only the accounts whose facts could
have changed since the previous day's pass (``credit_rating_passes`` records the passes), found
by the business dates of their events (the index), the accounts a payment with an earlier date
was recorded for (``credit_rating_queue``), and the accounts whose count of late bills moved; the
first day of each month, a gap of days or changed rules re-rate every open account.

Revision ID: 0034
Revises: 0033
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_rating_passes",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("rules", sa.String(length=64), nullable=False),
        sa.Column("full_pass", sa.Boolean(), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_credit_rating_passes")),
    )
    op.create_table(
        "credit_rating_queue",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_credit_rating_queue")),
    )
    op.create_index("ix_collection_events_day", "collection_events", ["business_date"])


def downgrade() -> None:
    op.drop_index("ix_collection_events_day", table_name="collection_events")
    op.drop_table("credit_rating_queue")
    op.drop_table("credit_rating_passes")
