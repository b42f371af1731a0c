"""register reads indexed instant first: a day's reads append instead of touching a page per meter

The unique index (meter_id, register, read_at) put each meter's new read on that meter's own
index page, so a day of prepaid meters' frozen reads rewrote thousands of pages per commit. The
same uniqueness, instant first, appends; a plain (meter_id, read_at) index keeps a meter's reads
at hand, and the old index on read_at alone is covered by the new unique one.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("uq_register_reads_at_meter_register", "register_reads",
                    ["read_at", "meter_id", "register"], unique=True)
    op.create_index("ix_register_reads_meter_at", "register_reads", ["meter_id", "read_at"])
    op.drop_index("uq_register_reads_meter_register_at", table_name="register_reads")
    op.drop_index("ix_register_reads_read_at", table_name="register_reads")


def downgrade() -> None:
    op.create_index("ix_register_reads_read_at", "register_reads", ["read_at"])
    op.create_index("uq_register_reads_meter_register_at", "register_reads",
                    ["meter_id", "register", "read_at"], unique=True)
    op.drop_index("ix_register_reads_meter_at", table_name="register_reads")
    op.drop_index("uq_register_reads_at_meter_register", table_name="register_reads")
