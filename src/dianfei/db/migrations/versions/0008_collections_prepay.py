"""smart prepayment: what the available balance was computed from (charges accrued since the
last bill, the daily frozen read used)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prepay_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("accrued", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("read_at", dianfei.db.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prepay_state", schema=None) as batch_op:
        batch_op.drop_column("read_at")
        batch_op.drop_column("accrued")
