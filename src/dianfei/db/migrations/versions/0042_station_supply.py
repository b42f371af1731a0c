"""station_supply: each supply station's metered supply per month (台区供电量)

The supply side of station line loss (台区线损 = (supply − Σ the station's customers' metered
energy) / supply), which the theft warnings compare with the station's own level (risk,
docs/risk-insight.md). One row per station and month, in 0.01 kWh, with the import batch that
stored it (``dianfei import stations``).

Revision ID: 0042
Revises: 0041
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0042"
down_revision = "0041"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "station_supply",
        sa.Column("station_id", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("kwh", sa.BigInteger(), nullable=False),
        sa.Column("batch_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("station_id", "period"),
    )


def downgrade() -> None:
    op.drop_table("station_supply")
