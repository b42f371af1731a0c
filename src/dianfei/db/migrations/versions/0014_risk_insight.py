"""risk intelligence: inspection outcomes (the theft model's labels), strategy experiments and
their random assignments

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "inspection_outcomes",
        sa.Column("inspection_id", _ID, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("inspected_on", sa.Date(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("inspector", sa.String(64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_at", dianfei.db.types.UTCDateTime(), nullable=False),
    )
    op.create_index("uq_inspection_outcomes_account_day", "inspection_outcomes",
                    ["account_id", "inspected_on"], unique=True)
    op.create_table(
        "experiments",
        sa.Column("experiment_id", sa.String(64), primary_key=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("arms", sa.Text(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.Column("created_at", dianfei.db.types.UTCDateTime(), nullable=False),
    )
    op.create_table(
        "experiment_assignments",
        sa.Column("experiment_id", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(32), primary_key=True),
        sa.Column("arm", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("experiment_assignments")
    op.drop_table("experiments")
    op.drop_index("uq_inspection_outcomes_account_day", table_name="inspection_outcomes")
    op.drop_table("inspection_outcomes")
