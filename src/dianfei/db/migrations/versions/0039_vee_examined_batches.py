"""the nightly VEE run examines what arrived: vee_examined_batches

The scheduled ``vee_run`` examined the whole interval store each night: its cost grew with the
history, and with many meters it would not fit in memory after a while. It now examines the
days of the import batches no run has examined yet, with each meter's readings just before and
after those days as context; a batch is recorded here by the run that examined it.

Revision ID: 0039
Revises: 0038
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dianfei.db.types import UTCDateTime

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vee_examined_batches",
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("examined_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_vee_examined_batches")),
    )


def downgrade() -> None:
    op.drop_table("vee_examined_batches")
