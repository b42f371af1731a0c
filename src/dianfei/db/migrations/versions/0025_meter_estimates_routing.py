"""estimated register reads for billing (read_estimates), per-meter gateways (meter_gateways,
meters.gateway_id) and meter clock checks (meter_clock_checks)

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = dianfei.db.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "read_estimates",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("meter_id", sa.String(32), nullable=False),
        sa.Column("register", sa.String(12), nullable=False),
        sa.Column("read_at", _AT(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("from_value", sa.BigInteger(), nullable=False),
        sa.Column("from_at", _AT(), nullable=False),
        sa.Column("from_source", sa.String(10), nullable=False),
        sa.Column("interval_wh", sa.BigInteger(), nullable=False),
        sa.Column("intervals", sa.Integer(), nullable=False),
        sa.Column("estimated_intervals", sa.Integer(), nullable=False),
        sa.Column("created_at", _AT(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_read_estimates")),
    )
    op.create_index("uq_read_estimates_meter_at", "read_estimates",
                    ["meter_id", "read_at", "register"], unique=True)
    op.create_table(
        "meter_gateways",
        sa.Column("gateway_id", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(12), nullable=False),
        sa.Column("password", sa.String(8), nullable=True),
        sa.Column("operator", sa.String(8), nullable=True),
        sa.Column("created_at", _AT(), nullable=False),
        sa.PrimaryKeyConstraint("gateway_id", name=op.f("pk_meter_gateways")),
    )
    with op.batch_alter_table("meters") as batch:
        batch.add_column(sa.Column("gateway_id", sa.String(32), nullable=True))
    op.create_table(
        "meter_clock_checks",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("meter_id", sa.String(32), nullable=False),
        sa.Column("received_at", _AT(), nullable=False),
        sa.Column("meter_time", _AT(), nullable=False),
        sa.Column("drift_s", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meter_clock_checks")),
    )
    op.create_index("ix_meter_clock_checks_meter_at", "meter_clock_checks",
                    ["meter_id", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_meter_clock_checks_meter_at", table_name="meter_clock_checks")
    op.drop_table("meter_clock_checks")
    with op.batch_alter_table("meters") as batch:
        batch.drop_column("gateway_id")
    op.drop_table("meter_gateways")
    op.drop_index("uq_read_estimates_meter_at", table_name="read_estimates")
    op.drop_table("read_estimates")
