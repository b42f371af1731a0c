"""payment plans: two kinds (pay_plan, instalment on the coming bills), policy facts, approval

- ``payment_plans`` gains kind, customer_class, segment, down_payment, grace_days, approved_at,
  ended_by, end_reason and request_key (unique: a retried proposal is stored once);
- one open plan per account now means ``proposed`` or ``active`` (a plan awaiting approval
  blocks a second proposal);
- ``plan_instalments`` gains period (the bill an instalment falls due with) and bill_id (set
  once that bill is issued).

``ledger_mark`` stays (no longer read; dropping a NOT NULL column means rebuilding the table
on SQLite).

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dianfei.db.types

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

_OPEN = "status IN ('proposed', 'active')"


def upgrade() -> None:
    for column in (
        sa.Column("kind", sa.String(12), nullable=False, server_default="pay_plan"),
        sa.Column("customer_class", sa.String(20), nullable=True),
        sa.Column("segment", sa.String(20), nullable=True),
        sa.Column("down_payment", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("grace_days", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("approved_at", dianfei.db.types.UTCDateTime(), nullable=True),
        sa.Column("ended_by", sa.String(64), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("request_key", sa.String(120), nullable=True),
    ):
        op.add_column("payment_plans", column)
    op.drop_index("uq_payment_plans_live_account", table_name="payment_plans")
    op.create_index("uq_payment_plans_open_account", "payment_plans", ["account_id"], unique=True,
                    sqlite_where=sa.text(_OPEN), postgresql_where=sa.text(_OPEN))
    op.create_index("uq_payment_plans_request_key", "payment_plans", ["request_key"], unique=True)
    op.add_column("plan_instalments", sa.Column("period", sa.String(7), nullable=True))
    op.add_column("plan_instalments", sa.Column("bill_id", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("plan_instalments", "bill_id")
    op.drop_column("plan_instalments", "period")
    op.drop_index("uq_payment_plans_request_key", table_name="payment_plans")
    op.drop_index("uq_payment_plans_open_account", table_name="payment_plans")
    op.execute("UPDATE payment_plans SET status = 'cancelled' WHERE status = 'proposed'")
    op.create_index("uq_payment_plans_live_account", "payment_plans", ["account_id"], unique=True,
                    sqlite_where=sa.text("status = 'active'"),
                    postgresql_where=sa.text("status = 'active'"))
    for name in ("request_key", "end_reason", "ended_by", "approved_at", "grace_days",
                 "down_payment", "segment", "customer_class", "kind"):
        op.drop_column("payment_plans", name)
