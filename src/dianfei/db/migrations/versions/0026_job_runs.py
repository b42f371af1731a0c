"""job_runs: the calendar's job runs (queued, running, done, failed, skipped)

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("run_id", _ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("scheduled_for", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("triggered_by", sa.String(80), nullable=False),
        sa.Column("claimed_by", sa.String(120), nullable=True),
        sa.Column("lease_until", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("started_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("finished_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("args", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_job_runs")),
    )
    op.create_index("uq_job_runs_key", "job_runs", ["key"], unique=True)
    op.create_index("ix_job_runs_claimable", "job_runs", ["status", "next_attempt_at"])
    op.create_index("ix_job_runs_job", "job_runs", ["job", "scheduled_for"])
    op.create_index("uq_job_runs_one_running", "job_runs", ["job"], unique=True,
                    sqlite_where=sa.text("status = 'running'"),
                    postgresql_where=sa.text("status = 'running'"))


def downgrade() -> None:
    op.drop_index("uq_job_runs_one_running", table_name="job_runs")
    op.drop_index("ix_job_runs_job", table_name="job_runs")
    op.drop_index("ix_job_runs_claimable", table_name="job_runs")
    op.drop_index("uq_job_runs_key", table_name="job_runs")
    op.drop_table("job_runs")
