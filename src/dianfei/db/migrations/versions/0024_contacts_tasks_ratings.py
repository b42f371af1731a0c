"""collector operations (C): contact flags and checks, tasks between departments, credit ratings

- ``collection_tasks`` gains department, owner, outcome, escalated_at, escalated_to: a task is
  handed between collections, marketing and customer service with an owner, a due time and an
  outcome, and escalates to the department's supervisor when overdue;
- ``contact_flags`` (联系方式待核实) and ``contact_checks`` (when a phone / e-mail was verified);
- ``credit_ratings`` (信用等级): the good-payer rating and the repeat-defaulter mark.

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("collection_tasks") as batch:
        batch.add_column(sa.Column("department", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("escalated_at", dianfei.db.types.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("escalated_to", sa.String(length=64), nullable=True))
    op.create_index("ix_collection_tasks_owner", "collection_tasks", ["owner", "status"])

    op.create_table(
        "contact_flags",
        sa.Column("flag_id", _ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=220), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("field", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("opened_at", dianfei.db.types.UTCDateTime(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=True),
        sa.Column("closed_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("flag_id", name=op.f("pk_contact_flags")),
    )
    op.create_index("uq_contact_flags_key", "contact_flags", ["key"], unique=True)
    op.create_index("uq_contact_flags_open", "contact_flags", ["account_id", "field"], unique=True,
                    sqlite_where=sa.text("status = 'open'"),
                    postgresql_where=sa.text("status = 'open'"))
    op.create_index("ix_contact_flags_status", "contact_flags", ["status", "account_id"])

    op.create_table(
        "contact_checks",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("phone_verified_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("phone_verified_by", sa.String(length=64), nullable=True),
        sa.Column("email_verified_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("email_verified_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_contact_checks")),
    )

    op.create_table(
        "credit_ratings",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("grade", sa.String(length=2), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("on_time", sa.Integer(), nullable=False),
        sa.Column("late", sa.Integer(), nullable=False),
        sa.Column("broken", sa.Integer(), nullable=False),
        sa.Column("suspensions", sa.Integer(), nullable=False),
        sa.Column("repeat_defaulter", sa.Boolean(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("since", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_credit_ratings")),
    )
    op.create_index("ix_credit_ratings_grade", "credit_ratings", ["grade"])


def downgrade() -> None:
    op.drop_index("ix_credit_ratings_grade", table_name="credit_ratings")
    op.drop_table("credit_ratings")
    op.drop_table("contact_checks")
    op.drop_index("ix_contact_flags_status", table_name="contact_flags")
    op.drop_index("uq_contact_flags_open", table_name="contact_flags")
    op.drop_index("uq_contact_flags_key", table_name="contact_flags")
    op.drop_table("contact_flags")
    op.drop_index("ix_collection_tasks_owner", table_name="collection_tasks")
    with op.batch_alter_table("collection_tasks") as batch:
        for col in ("escalated_to", "escalated_at", "outcome", "owner", "department"):
            batch.drop_column(col)
