"""risk: the model registry and the daily early-warning list

Revision ID: 0013
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "risk_models",
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("trained_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("cutoff", sa.Date(), nullable=False),
        sa.Column("window_from", sa.Date(), nullable=True),
        sa.Column("n_train", sa.Integer(), nullable=False),
        sa.Column("n_valid", sa.Integer(), nullable=False),
        sa.Column("features", sa.Text(), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("auc", sa.Float(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_risk_models")),
    )
    op.create_table(
        "risk_warnings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("previous", sa.Float(), nullable=True),
        sa.Column("band", sa.String(8), nullable=False),
        sa.Column("scorer", sa.String(12), nullable=False),
        sa.Column("model_version", sa.String(40), nullable=True),
        sa.Column("reasons_zh", sa.Text(), nullable=False),
        sa.Column("reasons_en", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_warnings")),
    )
    op.create_index("uq_risk_warnings_day_account", "risk_warnings", ["day", "account_id"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("uq_risk_warnings_day_account", table_name="risk_warnings")
    op.drop_table("risk_warnings")
    op.drop_table("risk_models")
