"""kept meter profiles for VEE: vee_meter_profiles

The spike and high/low usage rules judge an interval or a day against the meter's own usual
high and usual days by season and time of day. Computed from the data a run examines, a run over
one day (the daily run of a wide utility) had no history to judge by: spikes only by the safety
floor, usage not at all. ``dianfei vee profile`` keeps each meter's statistics over its last
months; a run uses them wherever they count more than its own window.

Revision ID: 0038
Revises: 0037
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dianfei.db.types import UTCDateTime

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vee_meter_profiles",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("meter_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("season", sa.SmallInteger(), nullable=False),
        sa.Column("band", sa.SmallInteger(), nullable=False),
        sa.Column("hi", sa.Float(), nullable=False),
        sa.Column("lo", sa.Float(), nullable=False),
        sa.Column("med", sa.Float(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("data_from", sa.Date(), nullable=False),
        sa.Column("data_to", sa.Date(), nullable=False),
        sa.Column("built_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vee_meter_profiles")),
    )
    with op.batch_alter_table("vee_meter_profiles") as batch_op:
        batch_op.create_index("uq_vee_meter_profiles_key", ["meter_id", "kind", "season", "band"],
                              unique=True)


def downgrade() -> None:
    op.drop_table("vee_meter_profiles")
