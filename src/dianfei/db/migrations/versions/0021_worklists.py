"""daily worklists: worklist_entries, the collections roster of collectors, customers.language

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worklist_entries",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("collector_id", sa.String(length=32), nullable=False),
        sa.Column("station_id", sa.String(length=32), nullable=True),
        sa.Column("region_id", sa.String(length=32), nullable=True),
        sa.Column("amount_overdue", sa.BigInteger(), nullable=False),
        sa.Column("days_overdue", sa.Integer(), nullable=False),
        sa.Column("pay_probability", sa.Float(), nullable=False),
        sa.Column("expected", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("rule", sa.String(length=80), nullable=False),
        sa.Column("task_kinds", sa.String(length=120), nullable=False),
        sa.Column("assigned_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("moved_from", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("day", "account_id", name=op.f("pk_worklist_entries")),
    )
    op.create_index("ix_worklist_entries_collector", "worklist_entries", ["day", "collector_id"])
    op.create_table(
        "collector_roster",
        sa.Column("collector_id", sa.String(length=32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("languages", sa.Text(), nullable=True),
        sa.Column("daily_capacity", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("collector_id", name=op.f("pk_collector_roster")),
        sa.UniqueConstraint("username", name=op.f("uq_collector_roster_username")),
    )
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("language", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("language")
    op.drop_table("collector_roster")
    op.drop_index("ix_worklist_entries_collector", table_name="worklist_entries")
    op.drop_table("worklist_entries")
