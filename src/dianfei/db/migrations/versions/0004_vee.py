"""vee tables

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _id(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        "vee_runs",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("started_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("findings_added", sa.Integer(), nullable=False),
        sa.Column("estimates_added", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_vee_runs")),
    )
    op.create_table(
        "vee_findings",
        _id("id"),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("meter_id", sa.String(length=32), nullable=False),
        sa.Column("ts", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("ref", sa.String(length=80), nullable=False),
        sa.Column("value_wh", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vee_findings")),
    )
    with op.batch_alter_table("vee_findings", schema=None) as batch_op:
        batch_op.create_index("uq_vee_findings_key", ["rule", "meter_id", "ts", "ref"], unique=True)
        batch_op.create_index("ix_vee_findings_meter", ["meter_id", "ts"], unique=False)

    op.create_table(
        "vee_estimates",
        _id("id"),
        sa.Column("meter_id", sa.String(length=32), nullable=False),
        sa.Column("ts", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("minutes", sa.SmallInteger(), nullable=False),
        sa.Column("wh", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=24), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vee_estimates")),
    )
    with op.batch_alter_table("vee_estimates", schema=None) as batch_op:
        batch_op.create_index("uq_vee_estimates_meter_ts", ["meter_id", "ts"], unique=True)

    op.create_table(
        "vee_edits",
        _id("edit_id"),
        sa.Column("meter_id", sa.String(length=32), nullable=False),
        sa.Column("ts", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("minutes", sa.SmallInteger(), nullable=False),
        sa.Column("old_wh", sa.BigInteger(), nullable=True),
        sa.Column("old_source", sa.String(length=10), nullable=False),
        sa.Column("new_wh", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("edited_by", sa.String(length=64), nullable=False),
        sa.Column("edited_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("edit_id", name=op.f("pk_vee_edits")),
    )
    with op.batch_alter_table("vee_edits", schema=None) as batch_op:
        batch_op.create_index("ix_vee_edits_meter_ts", ["meter_id", "ts", "edit_id"], unique=False)

    # manual edits are an audit record: append-only, like the ledger
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER vee_edits_no_{action.lower()} BEFORE {action} "
                "ON vee_edits BEGIN SELECT RAISE(ABORT, 'vee_edits is append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION vee_edits_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'vee_edits is append-only'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER vee_edits_append_only BEFORE UPDATE OR DELETE ON vee_edits "
            "FOR EACH ROW EXECUTE FUNCTION vee_edits_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER IF EXISTS vee_edits_append_only ON vee_edits")
        op.execute("DROP FUNCTION IF EXISTS vee_edits_append_only()")
    op.drop_table("vee_edits")
    op.drop_table("vee_estimates")
    op.drop_table("vee_findings")
    op.drop_table("vee_runs")
