"""bills on several meters (一户多表): the meter of each energy line, and each meter's reads

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bill_lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("meter_id", sa.String(length=32), nullable=True))
    op.create_table(
        "bill_meters",
        sa.Column("bill_id", sa.String(length=64), nullable=False),
        sa.Column("meter_id", sa.String(length=32), nullable=False),
        sa.Column("multiplier", sa.Integer(), nullable=False),
        sa.Column("kwh", sa.BigInteger(), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("read_from_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("read_from", sa.BigInteger(), nullable=True),
        sa.Column("read_to_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("read_to", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["bill_id"], ["bills.bill_id"],
                                name=op.f("fk_bill_meters_bill_id_bills")),
        sa.PrimaryKeyConstraint("bill_id", "meter_id", name=op.f("pk_bill_meters")),
    )
    op.create_index("ix_bill_meters_meter", "bill_meters", ["meter_id"])


def downgrade() -> None:
    op.drop_index("ix_bill_meters_meter", table_name="bill_meters")
    op.drop_table("bill_meters")
    with op.batch_alter_table("bill_lines", schema=None) as batch_op:
        batch_op.drop_column("meter_id")
