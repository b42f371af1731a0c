"""rendered bill documents (账单文件): file, format, language and content hash per bill

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bill_renders",
        sa.Column("bill_id", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=4), nullable=False),
        sa.Column("lang", sa.String(length=5), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("rendered_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["bill_id"], ["bills.bill_id"],
                                name=op.f("fk_bill_renders_bill_id_bills")),
        sa.PrimaryKeyConstraint("bill_id", "format", "lang", name=op.f("pk_bill_renders")),
    )
    op.create_index("ix_bill_renders_period", "bill_renders", ["period", "format", "lang"])


def downgrade() -> None:
    op.drop_index("ix_bill_renders_period", table_name="bill_renders")
    op.drop_table("bill_renders")
