"""metering import tables: import batches, quarantine, interval store catalogue, interval
duplicates; register reads remember their import batch.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "import_batches",
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("origin", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("interval_minutes", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("data_rows", sa.BigInteger(), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("duplicates", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_import_batches")),
    )
    with op.batch_alter_table("import_batches", schema=None) as batch_op:
        batch_op.create_index("ix_import_batches_sha256", ["sha256"], unique=False)

    op.create_table(
        "import_quarantine",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("line", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_quarantine")),
    )
    with op.batch_alter_table("import_quarantine", schema=None) as batch_op:
        batch_op.create_index("ix_import_quarantine_batch", ["batch_id", "line"], unique=False)

    op.create_table(
        "interval_files",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("meter_group", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("min_ts", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("max_ts", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interval_files")),
    )
    with op.batch_alter_table("interval_files", schema=None) as batch_op:
        batch_op.create_index("ix_interval_files_day_group", ["day", "meter_group"], unique=False)
        batch_op.create_index("uq_interval_files_path", ["path"], unique=True)
        batch_op.create_index("ix_interval_files_batch", ["batch_id"], unique=False)

    op.create_table(
        "interval_duplicates",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("line", sa.BigInteger(), nullable=False),
        sa.Column("meter_id", sa.String(length=32), nullable=False),
        sa.Column("ts", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("wh", sa.BigInteger(), nullable=False),
        sa.Column("first_wh", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interval_duplicates")),
    )
    with op.batch_alter_table("interval_duplicates", schema=None) as batch_op:
        batch_op.create_index("ix_interval_duplicates_day", ["day"], unique=False)
        batch_op.create_index("ix_interval_duplicates_meter_ts", ["meter_id", "ts"], unique=False)

    with op.batch_alter_table("register_reads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("register_reads", schema=None) as batch_op:
        batch_op.drop_column("batch_id")
    op.drop_table("interval_duplicates")
    op.drop_table("interval_files")
    op.drop_table("import_quarantine")
    op.drop_table("import_batches")
