"""stored figures: the console dashboard's KPIs (dashboard_refresh job) and every account's
next-bill forecast (forecast_store job)

Revision ID: 0029
Revises: 0028
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_figures",
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("filter_key", sa.String(96), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("computed_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("period", "filter_key", name=op.f("pk_dashboard_figures")),
    )
    op.create_table(
        "bill_forecasts",
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("kwh", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("amount_low", sa.BigInteger(), nullable=True),
        sa.Column("amount_high", sa.BigInteger(), nullable=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("computed_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("period", "account_id", name=op.f("pk_bill_forecasts")),
    )


def downgrade() -> None:
    op.drop_table("bill_forecasts")
    op.drop_table("dashboard_figures")
