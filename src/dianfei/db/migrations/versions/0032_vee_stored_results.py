"""vee stored results: ``vee report`` / ``vee findings`` answer from the last run when nothing
changed since

``vee_runs`` gets the run's ``scope`` (the business days it examined), the ``fingerprint`` of
what its results depend on (interval store catalogue, within-import duplicates, register reads,
meters and their class, stored estimates, the ``[vee]`` settings and the VEE code) and its
``figures`` (the ``vee report`` JSON). ``vee_run_findings`` keeps that run's findings exactly as
computed (text and values as ``vee findings`` shows them; ``vee_findings`` keeps each finding as
first found). Only the newest run's findings are kept.

Revision ID: 0032
Revises: 0031
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vee_runs") as batch:
        batch.add_column(sa.Column("scope", sa.String(length=24), nullable=True))
        batch.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("figures", sa.Text(), nullable=True))
    op.create_table(
        "vee_run_findings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("meter_id", sa.String(length=32), nullable=False),
        sa.Column("ts", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("ref", sa.String(length=80), nullable=False),
        sa.Column("value_wh", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vee_run_findings")),
    )
    with op.batch_alter_table("vee_run_findings") as batch:
        batch.create_index("ix_vee_run_findings_run_rule", ["run_id", "rule", "meter_id"],
                           unique=False)


def downgrade() -> None:
    op.drop_table("vee_run_findings")
    with op.batch_alter_table("vee_runs") as batch:
        batch.drop_column("figures")
        batch.drop_column("fingerprint")
        batch.drop_column("scope")
