"""bill_run_partitions: the partitions of accounts a Spark bill run has written

One row per (run, job, partition), inserted first in the transaction that writes the
partition's bills, lines, debits and exceptions. A retried or speculative Spark task of the same
job finds the row (or waits on it, then finds it) and writes nothing: no account is billed twice
whatever Spark runs again (dianfei.scale.billing, docs/scaling.md).

Revision ID: 0043
Revises: 0042
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0043"
down_revision = "0042"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bill_run_partitions",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("billed", sa.Integer(), nullable=False),
        sa.Column("exceptions", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("kwh", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("written_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "job_id", "part"),
    )


def downgrade() -> None:
    op.drop_table("bill_run_partitions")
